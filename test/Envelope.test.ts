import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import type { Batch } from "../src/Batch.ts"
import { Envelope, EventType, Trail } from "../src/index.ts"

describe("Envelope ids", () => {
  it("are 26 characters, sort by time, and carry their millisecond", () => {
    const gen = new Envelope.IdGenerator()
    const times = [0, 1, 999, 1_700_000_000_000, 1_700_000_000_001, 2 ** 47]
    const ids = times.map((t, i) => gen.format(t, i))
    for (const id of ids) {
      assert.strictEqual(id.length, 26)
      assert.isTrue(Envelope.isEventId(id), id)
    }
    assert.deepStrictEqual(ids.slice().sort(), ids)
    assert.deepStrictEqual(ids.map(Envelope.idTime), times)
  })

  it("differ by sequence within a millisecond, and by generator", () => {
    const a = new Envelope.IdGenerator()
    const b = new Envelope.IdGenerator()
    assert.notStrictEqual(a.node, b.node)
    const same = new Set(Array.from({ length: 1000 }, (_, i) => a.format(5, i)))
    assert.strictEqual(same.size, 1000)
    assert.notStrictEqual(a.format(5, 0), b.format(5, 0))
  })

  it("are not mistaken for other strings", () => {
    assert.isFalse(Envelope.isEventId("8ZZZZZZZZZZZZZZZZZZZZZZZZZ"), "beyond 48 bits of time")
    assert.isFalse(Envelope.isEventId("0000000000000000000000000I"), "I is not Crockford base32")
    assert.isFalse(Envelope.isEventId("short"))
  })

  it("an envelope made from fields keeps its id; toJSON omits a missing parent", () => {
    const e = Envelope.make({
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      type: "a.B@1",
      happenedAt: 7,
      source: "s",
      data: { x: 1 }
    })
    assert.strictEqual(e.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert.deepStrictEqual(e.toJSON(), {
      id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
      type: "a.B@1",
      happenedAt: 7,
      source: "s",
      data: { x: 1 }
    })
    assert.isFalse("parent" in e.toJSON())
  })

  it.effect("10,000 events logged in a burst get distinct ids, sorted in log order", () =>
    Effect.gen(function* () {
      const A = EventType.make("ids.Burst", 1, Schema.Struct({ i: Schema.Number }), {
        batch: { maxSize: 1000, lingerMs: 0 },
        mailbox: { capacity: 20_000, overflow: "backpressure" }
      })
      const ids: Array<string> = []
      const batches: Array<Batch> = []
      const trail = yield* Trail.make({
        process: (batch) =>
          Effect.sync(() => {
            batches.push(batch)
            for (const e of batch.events) ids.push(e.id)
          })
      })
      for (let i = 0; i < 10_000; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      assert.strictEqual(ids.length, 10_000)
      assert.strictEqual(new Set(ids).size, 10_000)
      assert.deepStrictEqual(ids.slice().sort(), ids)
      const batch = batches[3]!
      for (let i = 0; i < batch.size; i += 97) {
        assert.strictEqual(batch.id(i), batch.events[i]!.id)
        assert.strictEqual(batch.time(i), batch.events[i]!.happenedAt)
        assert.strictEqual(batch.happenedAt[i], batch.events[i]!.happenedAt)
      }
    })
  )
})
