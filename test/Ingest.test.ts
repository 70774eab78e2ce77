import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Schema } from "effect"
import * as Envelope from "../src/Envelope.ts"
import { Errors, EventType, Handler, Ingest, Protocol, Trail } from "../src/index.ts"

const N = Schema.Struct({ n: Schema.Number })
/** Batches leave at once (no linger to wait for under the TestClock). */
const now = { batch: { maxSize: 64, lingerMs: 0 } } as const
const T0 = 1_767_225_600_000

const ID = (i: number) => `01KAAAAAAA00000000${String(i).padStart(8, "0")}`

/** A BATCH in rows: each event `[id, data]`, times T0 + index. */
const rows = (key: string, events: ReadonlyArray<readonly [string, unknown]>, seq = 1): Protocol.BatchFrame => ({
  _tag: "Batch",
  seq,
  key,
  events: { _tag: "Rows", rows: events.map(([id, data], i) => [id, T0 + i, data, undefined] as const) }
})

const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

describe("Ingest.batch", () => {
  it.effect("validates per event: the invalid and the unknown are refused with reasons, the rest accepted", () =>
    Effect.gen(function* () {
      const seen: Array<Envelope.Envelope> = []
      const type = EventType.make("app.Step", 1, N, {
        ...now,
        handlers: [Handler.make("h", (e) => Effect.sync(() => void seen.push(e)))]
      })
      const trail = yield* Trail.make({ types: [type] })
      const ingest = Ingest.make({ trail })
      const outcomes = yield* ingest.batch(
        "harness-1",
        rows("app.Step@1", [
          [ID(0), { n: 0 }],
          [ID(1), { n: "one" }],
          [ID(2), { n: 2 }],
          [ID(3), {}]
        ])
      )
      assert.deepStrictEqual(outcomes, [
        [1, "invalid", "invalid data for app.Step@1 (1 issue): n: Expected number"],
        [3, "invalid", "invalid data for app.Step@1 (1 issue): n: Missing key"]
      ])
      const unknown = yield* ingest.batch("harness-1", rows("app.Step@2", [[ID(4), { n: 4 }]]))
      assert.strictEqual(unknown.length, 1)
      assert.strictEqual(unknown[0]![1], "unknown_type")
      assert.match(unknown[0]![2], /^there is no version 2 of event app\.Step/)
      yield* trail.flush
      assert.deepStrictEqual(
        seen.map((e) => [e.id, e.source, e.type, e.happenedAt, e.data]),
        [
          [ID(0), "harness-1", "app.Step@1", T0, { n: 0 }],
          [ID(2), "harness-1", "app.Step@1", T0 + 2, { n: 2 }]
        ]
      )
      const stats = trail.statsUnsafe()
      assert.strictEqual(stats.types["app.Step@1"]!.processed, 2)
      assert.deepStrictEqual(stats.rejected, { unknownType: 1, invalid: 2 })
      assert.deepStrictEqual(ingest.stats(), {
        batches: 2,
        accepted: 2,
        duplicate: 0,
        unknownType: 1,
        invalid: 2,
        rejected: 0,
        storeFailures: 0
      })
    }).pipe(Effect.scoped)
  )

  it.effect("a resend is acked as duplicate and recorded once, also a repeat within one batch", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const type = EventType.make("app.Step", 1, N, {
        ...now,
        handlers: [Handler.make("h", (e) => Effect.sync(() => void seen.push(e.id)))]
      })
      const trail = yield* Trail.make({ types: [type] })
      const ingest = Ingest.make({ trail })
      const first = yield* ingest.batch(
        "h",
        rows("app.Step@1", [
          [ID(0), { n: 0 }],
          [ID(1), { n: 1 }],
          [ID(0), { n: 0 }]
        ])
      )
      assert.deepStrictEqual(first, [[2, "duplicate", ""]])
      // the same events resent after a reconnect (new seq), plus a new one
      const again = yield* ingest.batch(
        "h",
        rows(
          "app.Step@1",
          [
            [ID(0), { n: 0 }],
            [ID(1), { n: 1 }],
            [ID(2), { n: 2 }]
          ],
          7
        )
      )
      assert.deepStrictEqual(again, [
        [0, "duplicate", ""],
        [1, "duplicate", ""]
      ])
      yield* trail.flush
      assert.deepStrictEqual(seen, [ID(0), ID(1), ID(2)])
    }).pipe(Effect.scoped)
  )

  it.effect("columns: ids are derived from the frame, as the harness made them", () =>
    Effect.gen(function* () {
      const seen: Array<string> = []
      const type = EventType.make("app.Step", 1, N, {
        ...now,
        handlers: [Handler.make("h", (e) => Effect.sync(() => void seen.push(e.id)))]
      })
      const trail = yield* Trail.make({ types: [type] })
      const ingest = Ingest.make({ trail })
      const frame: Protocol.BatchFrame = {
        _tag: "Batch",
        seq: 1,
        key: "app.Step@1",
        events: {
          _tag: "Columns",
          node: "ABCDEFGH",
          firstSeq: 5,
          timeBase: T0,
          offsets: [0, 0, 1],
          data: [{ n: 1 }, { n: 2 }, { n: 3 }],
          parents: undefined
        }
      }
      assert.deepStrictEqual(yield* ingest.batch("h", frame), [])
      yield* trail.flush
      assert.deepStrictEqual(seen, Protocol.eventIds(frame))
      assert.strictEqual(new Set(seen).size, 3)
    }).pipe(Effect.scoped)
  )

  it.effect("a failing store fails the batch: nothing is handed over, and a resend is not a duplicate", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Step", 1, N)
      const trail = yield* Trail.make({ types: [type] })
      const memory = Ingest.memoryStore()
      let down = true
      const store: Ingest.Store = {
        record: (key, events) => (down ? Effect.fail("disk full") : memory.record(key, events))
      }
      const ingest = Ingest.make({ trail, store })
      const frame = rows("app.Step@1", [[ID(0), { n: 0 }]])
      const failed = yield* Effect.exit(ingest.batch("h", frame))
      assert.isTrue(Exit.isFailure(failed))
      assert.strictEqual(trail.statsUnsafe().types["app.Step@1"]!.accepted, 0)
      down = false
      assert.deepStrictEqual(yield* ingest.batch("h", frame), [])
      assert.strictEqual(trail.statsUnsafe().types["app.Step@1"]!.accepted, 1)
      assert.strictEqual(ingest.stats().storeFailures, 1)
    }).pipe(Effect.scoped)
  )

  it.effect("a full mailbox holds the batch (backpressure) until the actors make room; nothing is lost", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Step", 1, N, {
        mailbox: { capacity: 4, overflow: "backpressure" },
        batch: { maxSize: 4, lingerMs: 0 }
      })
      const gate = yield* Deferred.make<void>()
      const trail = yield* Trail.make({ types: [type], process: () => Deferred.await(gate) })
      yield* Effect.addFinalizer(() => Deferred.succeed(gate, undefined))
      const ingest = Ingest.make({ trail })
      const events = Array.from({ length: 20 }, (_, i) => [ID(i), { n: i }] as const)
      const fiber = yield* Effect.forkChild(ingest.batch("h", rows("app.Step@1", events)))
      yield* settle
      assert.isUndefined(fiber.pollUnsafe(), "the batch resolved while the mailbox was full")
      const held = trail.statsUnsafe().types["app.Step@1"]!
      assert.isAtMost(held.queued, 4)
      assert.isBelow(held.accepted, 20)
      yield* Deferred.succeed(gate, undefined)
      const outcomes = yield* Fiber.await(fiber)
      assert.deepStrictEqual(outcomes, Exit.succeed([]))
      yield* trail.flush
      const done = trail.statsUnsafe().types["app.Step@1"]!
      assert.strictEqual(done.processed, 20)
      assert.strictEqual(done.refused.full, 0)
    }).pipe(Effect.scoped)
  )

  it.effect("a closed trail fails the batch with TrailClosed", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Step", 1, N)
      const trail = yield* Trail.make({ types: [type] })
      const ingest = Ingest.make({ trail })
      yield* trail.shutdown
      const exit = yield* Effect.exit(ingest.batch("h", rows("app.Step@1", [[ID(0), { n: 0 }]])))
      assert.isTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause : undefined
      assert.include(String(error), "TrailClosed")
      assert.strictEqual(ingest.stats().rejected, 1)
    }).pipe(Effect.scoped)
  )
})

describe("Ingest.memoryStore", () => {
  it("remembers at least its capacity of recent ids, and forgets the oldest past twice that", () => {
    const store = Ingest.memoryStore({ capacity: 3 })
    const ev = (i: number) => Envelope.make({ id: ID(i), type: "app.Step@1", source: "h", happenedAt: 0, data: null })
    assert.deepStrictEqual(store.recordUnsafe([ev(0), ev(1), ev(2)]), [true, true, true])
    assert.deepStrictEqual(store.recordUnsafe([ev(3), ev(4), ev(5), ev(6)]), [true, true, true, true])
    // the last 3 are remembered; 0 is past twice the capacity
    assert.deepStrictEqual(store.recordUnsafe([ev(4), ev(5), ev(6)]), [false, false, false])
    assert.isFalse(store.has(ID(0)))
    assert.isAtMost(store.size, 6)
    assert.deepStrictEqual(store.recordUnsafe([ev(0)]), [true])
  })

  it("refuses a capacity below 1 with InvalidOptions", () => {
    assert.throws(() => Ingest.memoryStore({ capacity: 0 }), Errors.InvalidOptions)
  })
})
