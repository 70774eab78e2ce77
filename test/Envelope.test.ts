import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import type { Batch } from "../src/Batch.ts"
import { Envelope, EventType, Trail } from "../src/index.ts"

const MAX_MS = 2 ** 48 - 1
const CROCKFORD = /^[0-9A-HJKMNP-TV-Z]+$/

describe("Envelope ids", () => {
  it("are 26 Crockford base32 characters and recognized by isEventId", () => {
    const gen = new Envelope.IdGenerator()
    const times = [0, 1, 999, 1_700_000_000_000, 1_700_000_000_001, 2 ** 47, MAX_MS]
    const seqs = [0, 1, 31, 32, 1023, 2 ** 20, 2 ** 40 - 1]
    for (const t of times) {
      for (const s of seqs) {
        const id = gen.format(t, s)
        assert.strictEqual(id.length, 26, id)
        assert.match(id, CROCKFORD)
        assert.isTrue(Envelope.isEventId(id), id)
      }
    }
  })

  it("are the time, then the generator's node, then the sequence number", () => {
    const gen = new Envelope.IdGenerator()
    assert.strictEqual(gen.node.length, 8)
    assert.match(gen.node, CROCKFORD)
    const id = gen.format(1_700_000_000_000, 5)
    assert.strictEqual(id.slice(10, 18), gen.node)
    assert.strictEqual(id.slice(18), "00000005")
    assert.strictEqual(gen.format(0, 0).slice(0, 10), "0000000000")
    assert.strictEqual(gen.format(MAX_MS, 2 ** 40 - 1).slice(18), "ZZZZZZZZ")
    assert.strictEqual(gen.format(MAX_MS, 0).slice(0, 10), "7ZZZZZZZZZ")
  })

  it("idTime recovers the millisecond", () => {
    const gen = new Envelope.IdGenerator()
    for (const t of [0, 1, 31, 32, 1_023, 1_024, 1_700_000_000_123, 2 ** 40, 2 ** 47 + 12_345, MAX_MS]) {
      assert.strictEqual(Envelope.idTime(gen.format(t, 7)), t)
    }
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_MS }), fc.integer({ min: 0, max: 2 ** 40 - 1 }), (t, s) => {
        assert.strictEqual(Envelope.idTime(gen.format(t, s)), t)
      }),
      { numRuns: 500 }
    )
  })

  it("sort by time as strings, whatever the sequence numbers", () => {
    const gen = new Envelope.IdGenerator()
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: MAX_MS - 1 }),
        fc.integer({ min: 1, max: 2 ** 40 }),
        fc.integer({ min: 0, max: 2 ** 40 - 1 }),
        fc.integer({ min: 0, max: 2 ** 40 - 1 }),
        (t, dt, s1, s2) => {
          const later = Math.min(t + dt, MAX_MS)
          assert.isTrue(gen.format(t, s1) < gen.format(later, s2), `${t}/${s1} vs ${later}/${s2}`)
        }
      ),
      { numRuns: 500 }
    )
    const times = [0, 1, 999, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2 ** 47, MAX_MS]
    const ids = times.map((t, i) => gen.format(t, 1_000 - i))
    assert.deepStrictEqual(ids.slice().sort(), ids)
  })

  it("within a millisecond, sort by sequence number and differ for every one", () => {
    const gen = new Envelope.IdGenerator()
    const ids = Array.from({ length: 5_000 }, (_, i) => gen.format(1_700_000_000_000, i))
    assert.strictEqual(new Set(ids).size, 5_000)
    assert.deepStrictEqual(ids.slice().sort(), ids)
    assert.isTrue(gen.format(5, 2 ** 39) > gen.format(5, 2 ** 39 - 1))
  })

  it("the time cached for a millisecond is not reused for another", () => {
    const gen = new Envelope.IdGenerator()
    const a = gen.format(1_000, 0)
    const b = gen.format(2_000, 1)
    const c = gen.format(1_000, 2)
    assert.deepStrictEqual([a, b, c].map(Envelope.idTime), [1_000, 2_000, 1_000])
  })

  it("two generators draw different node bits", () => {
    const nodes = new Set(Array.from({ length: 200 }, () => new Envelope.IdGenerator().node))
    assert.strictEqual(nodes.size, 200)
    const a = new Envelope.IdGenerator()
    const b = new Envelope.IdGenerator()
    assert.notStrictEqual(a.format(5, 0), b.format(5, 0))
    assert.strictEqual(a.format(5, 0).slice(0, 10), b.format(5, 0).slice(0, 10), "same millisecond")
  })

  it("isEventId refuses what is not an id", () => {
    const id = new Envelope.IdGenerator().format(1_700_000_000_000, 1)
    assert.isTrue(Envelope.isEventId(id))
    assert.isFalse(Envelope.isEventId(`8${id.slice(1)}`), "beyond 48 bits of time")
    assert.isFalse(Envelope.isEventId(`${id.slice(0, 25)}I`), "I is not Crockford base32")
    assert.isFalse(Envelope.isEventId(`${id.slice(0, 25)}U`), "U is not Crockford base32")
    assert.isFalse(Envelope.isEventId(id.toLowerCase()))
    assert.isFalse(Envelope.isEventId(id.slice(1)), "25 characters")
    assert.isFalse(Envelope.isEventId(`${id}0`), "27 characters")
    assert.isFalse(Envelope.isEventId(""))
  })
})

describe("Envelope", () => {
  it("made from fields, keeps its id and fields; toJSON omits a missing parent", () => {
    const e = Envelope.make({
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      type: "a.B@1",
      happenedAt: 7,
      source: "s",
      data: { x: 1 }
    })
    assert.strictEqual(e.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert.strictEqual(e.type, "a.B@1")
    assert.strictEqual(e.source, "s")
    assert.strictEqual(e.happenedAt, 7)
    assert.isUndefined(e.parent)
    assert.deepStrictEqual(e.toJSON(), {
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      type: "a.B@1",
      happenedAt: 7,
      source: "s",
      data: { x: 1 }
    })
    assert.isFalse("parent" in e.toJSON())
    assert.strictEqual(JSON.stringify(e), JSON.stringify(e.toJSON()))
  })

  it("toJSON includes a parent when there is one", () => {
    const e = Envelope.make({
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      type: "a.B@1",
      happenedAt: 7,
      source: "s",
      parent: "01ARZ3NDEKTSV4RRFFQ69G5FAA",
      data: 3
    })
    assert.strictEqual(e.parent, "01ARZ3NDEKTSV4RRFFQ69G5FAA")
    assert.strictEqual(e.toJSON().parent, "01ARZ3NDEKTSV4RRFFQ69G5FAA")
    assert.deepStrictEqual(e.toJSON(), {
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      type: "a.B@1",
      happenedAt: 7,
      source: "s",
      parent: "01ARZ3NDEKTSV4RRFFQ69G5FAA",
      data: 3
    })
  })
})

/** A trail that keeps every batch it processes. */
const recordingTrail = (source?: string) =>
  Effect.gen(function* () {
    const batches: Array<Batch> = []
    const trail = yield* Trail.make({
      ...(source === undefined ? {} : { source }),
      process: (batch) =>
        Effect.sync(() => {
          batches.push(batch)
        })
    })
    return { trail, batches }
  })

const Burst = EventType.make("ids.Burst", 1, Schema.Struct({ i: Schema.Number }), { batch: { lingerMs: 0 } })

/** Checks the ids of every event of the batches, in log order. */
const checkIds = (batches: ReadonlyArray<Batch>, n: number) => {
  const ids: Array<string> = []
  const data: Array<unknown> = []
  for (const batch of batches) {
    assert.isAtMost(batch.size, Burst.batch.maxSize)
    for (let i = 0; i < batch.size; i++) {
      const e = batch.events[i]!
      assert.strictEqual(batch.id(i), e.id, `batch.id(${i})`)
      assert.strictEqual(batch.envelope(i), e)
      assert.isTrue(Envelope.isEventId(e.id), e.id)
      assert.strictEqual(Envelope.idTime(e.id), e.happenedAt, "the id carries the event's millisecond")
      assert.strictEqual(e.id.slice(10, 18), batch.idNode)
      ids.push(e.id)
      data.push(e.data)
    }
  }
  assert.deepStrictEqual(
    data,
    Array.from({ length: n }, (_, i) => ({ i })),
    "delivered in log order"
  )
  assert.strictEqual(new Set(ids).size, n, "distinct ids")
  for (let i = 1; i < n; i++) {
    if (!(ids[i - 1]! < ids[i]!)) assert.fail(`ids out of log order at ${i}: ${ids[i - 1]} >= ${ids[i]}`)
  }
  return ids
}

describe("ids through a trail", () => {
  it.effect("10,000 events logged in a burst get distinct ids, sorted in log order", () =>
    Effect.gen(function* () {
      const { trail, batches } = yield* recordingTrail()
      yield* TestClock.setTime(1_700_000_000_000)
      for (let i = 0; i < 10_000; i++) assert.strictEqual(trail.logUnsafe(Burst, { i }), "accepted")
      yield* trail.flush
      assert.strictEqual(trail.statsUnsafe().types[Burst.key]!.processed, 10_000)
      assert.isAbove(batches.length, 1, "several batches")
      checkIds(batches, 10_000)
    })
  )

  it.effect("the clock moving during the burst keeps ids sorted in log order", () =>
    Effect.gen(function* () {
      const { trail, batches } = yield* recordingTrail()
      yield* TestClock.setTime(1_700_000_000_000)
      for (let i = 0; i < 10_000; i++) {
        if (i % 1_000 === 999) yield* TestClock.adjust(1)
        assert.strictEqual(trail.logUnsafe(Burst, { i }), "accepted")
      }
      yield* trail.flush
      const ids = checkIds(batches, 10_000)
      const times = new Set(ids.map(Envelope.idTime))
      assert.isAbove(times.size, 1, "several milliseconds")
    })
  )

  it.live("with the real clock, a burst gets distinct ids sorted in log order", () =>
    Effect.gen(function* () {
      const { trail, batches } = yield* recordingTrail()
      for (let i = 0; i < 10_000; i++) assert.strictEqual(trail.logUnsafe(Burst, { i }), "accepted")
      yield* trail.flush
      checkIds(batches, 10_000)
    })
  )

  it.effect("envelopes carry type, source and parent; batch ids match envelope ids", () =>
    Effect.gen(function* () {
      const { trail, batches } = yield* recordingTrail("harness-7")
      yield* TestClock.setTime(1_000)
      trail.logUnsafe(Burst, { i: 0 })
      const parent = new Envelope.IdGenerator().format(999, 0)
      trail.logUnsafe(Burst, { i: 1 }, { parent })
      trail.logUnsafe(Burst, { i: 2 })
      yield* trail.flush
      const events = batches.flatMap((b) => b.events)
      assert.deepStrictEqual(
        events.map((e) => e.toJSON()),
        events.map((e, i) => ({
          id: e.id,
          type: "ids.Burst@1",
          happenedAt: 1_000,
          source: "harness-7",
          ...(i === 1 ? { parent } : {}),
          data: { i }
        }))
      )
      for (const b of batches) for (let i = 0; i < b.size; i++) assert.strictEqual(b.id(i), b.events[i]!.id)
    })
  )

  // The zero-copy take trims the parent column with the data and time columns.
  it.effect("Batch.parents has one entry per event", () =>
    Effect.gen(function* () {
      const { trail, batches } = yield* recordingTrail()
      const parent = new Envelope.IdGenerator().format(999, 0)
      trail.logUnsafe(Burst, { i: 0 })
      trail.logUnsafe(Burst, { i: 1 }, { parent })
      trail.logUnsafe(Burst, { i: 2 })
      yield* trail.flush
      assert.strictEqual(batches.length, 1)
      const batch = batches[0]!
      assert.strictEqual(batch.size, 3)
      assert.strictEqual(batch.parents?.[1], parent)
      assert.strictEqual(batch.parents?.length, batch.size)
    })
  )
})
