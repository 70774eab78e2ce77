import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Fiber, Schema } from "effect"
import { Errors, EventType, Handler, Trail } from "../src/index.ts"
import { foreignOrigin } from "../src/Batch.ts"
import type { Batch } from "../src/Batch.ts"
import { Envelope } from "../src/Envelope.ts"

const N = Schema.Struct({ n: Schema.Number })

const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const identity = (s: Trail.TypeStats) => {
  const d = s.dropped.overflow + s.dropped.shutdown + s.dropped.failed
  assert.strictEqual(s.accepted, s.processed + s.queued + s.inFlight + d + s.deadLettered, JSON.stringify(s))
}

/** An event recorded elsewhere, as the gateway hands it over (data decoded). */
const event = (origin: ReturnType<typeof foreignOrigin>, id: string, at: number, data: unknown, parent?: string) =>
  new Envelope(origin, at, data, parent, id, 0)

const ID = (i: number) => `01KAAAAAAA00000000${String(i).padStart(8, "0")}`

describe("Trail.intake: events recorded elsewhere", () => {
  it.effect("keeps each event's id, source, parent and time through processing and handlers", () =>
    Effect.gen(function* () {
      const seen: Array<Envelope> = []
      const processed: Array<string> = []
      const type = EventType.make("app.Step", 1, N, {
        batch: { maxSize: 10, lingerMs: 0 },
        handlers: [Handler.make("h", (e) => Effect.sync(() => void seen.push(e)))]
      })
      const trail = yield* Trail.make({
        types: [type],
        process: (batch: Batch) =>
          Effect.sync(() => {
            for (let i = 0; i < batch.size; i++) processed.push(`${batch.id(i)} ${batch.sourceOf(i)}`)
          })
      })
      const intake = trail.intake("app.Step@1")
      const a = foreignOrigin("app.Step@1", "harness-a")
      const b = foreignOrigin("app.Step@1", "harness-b")
      assert.strictEqual(intake.offer(event(a, ID(1), 1_000, { n: 1 })), "accepted")
      assert.strictEqual(intake.offer(event(b, ID(2), 500, { n: 2 }, ID(1))), "accepted")
      // a local event of the same type is in the same batch: it keeps the trail's own id
      assert.strictEqual(trail.logUnsafe(type, { n: 3 }), "accepted")
      yield* trail.flush
      assert.deepStrictEqual(processed.slice(0, 2), [`${ID(1)} harness-a`, `${ID(2)} harness-b`])
      assert.strictEqual(processed[2]!.split(" ")[1], trail.source)
      assert.notStrictEqual(processed[2]!.split(" ")[0], ID(3))
      assert.deepStrictEqual(
        seen.map((e) => [e.id, e.source, e.parent, e.happenedAt, (e.data as { n: number }).n]),
        [
          [ID(1), "harness-a", undefined, 1_000, 1],
          [ID(2), "harness-b", ID(1), 500, 2],
          [seen[2]!.id, trail.source, undefined, seen[2]!.happenedAt, 3]
        ]
      )
    }).pipe(Effect.scoped)
  )

  it.effect("an unknown key throws EventNotFound and an invalid event ValidationError; both are counted", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Step", 1, N)
      const trail = yield* Trail.make({ types: [type] })
      const unknown = (() => {
        try {
          trail.intake("app.Step@2")
        } catch (error) {
          return error
        }
      })()
      assert.instanceOf(unknown, Errors.EventNotFound)
      const intake = trail.intake("app.Step@1")
      const invalid = (() => {
        try {
          intake.decode({ n: "two" })
        } catch (error) {
          return error
        }
      })()
      assert.instanceOf(invalid, Errors.ValidationError)
      assert.strictEqual(
        (invalid as Errors.ValidationError).message,
        "invalid data for app.Step@1 (1 issue): n: Expected number"
      )
      const stats = trail.statsUnsafe()
      assert.deepStrictEqual(stats.rejected, { unknownType: 1, invalid: 1 })
      assert.strictEqual(stats.types["app.Step@1"]!.accepted, 0)
    }).pipe(Effect.scoped)
  )

  it.effect("a full backpressure mailbox answers full; awaitRoom resolves once the actor takes a batch", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Step", 1, N, {
        mailbox: { capacity: 2, overflow: "backpressure" },
        batch: { maxSize: 2, lingerMs: 0 }
      })
      const gate = yield* Deferred.make<void>()
      const trail = yield* Trail.make({
        types: [type],
        process: () => Deferred.await(gate)
      })
      // a failed assertion must not leave the processor stuck at shutdown
      yield* Effect.addFinalizer(() => Deferred.succeed(gate, undefined))
      const intake = trail.intake("app.Step@1")
      const origin = foreignOrigin("app.Step@1", "h")
      let accepted = 0
      while (intake.offer(event(origin, ID(accepted), 0, { n: accepted })) === "accepted") {
        accepted++
        yield* settle
        assert.isBelow(accepted, 10, "the mailbox never filled")
      }
      const stuck = trail.statsUnsafe().types["app.Step@1"]!
      // a batch in flight (stuck) and a full mailbox behind it
      assert.strictEqual(stuck.queued, 2)
      assert.strictEqual(stuck.inFlight + stuck.queued, accepted)
      assert.strictEqual(intake.offer(event(origin, ID(9), 0, { n: 9 })), "full")
      const waiting = yield* Effect.forkChild(intake.awaitRoom)
      yield* settle
      assert.isUndefined(waiting.pollUnsafe())
      identity(trail.statsUnsafe().types["app.Step@1"]!)
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(waiting)
      assert.strictEqual(intake.offer(event(origin, ID(9), 0, { n: 9 })), "accepted")
      yield* trail.flush
      const done = trail.statsUnsafe().types["app.Step@1"]!
      identity(done)
      assert.strictEqual(done.processed, accepted + 1)
    }).pipe(Effect.scoped)
  )
})

describe("Batch.reject: events a processing function refuses", () => {
  it.effect("must: refused events become one dead letter with EventRejected; the rest are processed", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Step", 1, N, { batch: { maxSize: 5, lingerMs: 0 } })
      const trail = yield* Trail.make({
        types: [type],
        process: (batch: Batch) =>
          Effect.sync(() => {
            batch.reject(1, "invalid", "n: Expected number")
            batch.reject(3, "unknown_type", "no such type")
          })
      })
      for (let i = 0; i < 5; i++) trail.logUnsafe(type, { n: i })
      yield* trail.flush
      const stats = trail.statsUnsafe().types["app.Step@1"]!
      identity(stats)
      assert.strictEqual(stats.processed, 3)
      assert.strictEqual(stats.deadLettered, 2)
      const [letter, ...others] = trail.deadLettersUnsafe()
      assert.strictEqual(others.length, 0)
      assert.strictEqual(letter!.reason, "rejected")
      assert.deepStrictEqual(
        letter!.events.map((e) => (e.data as { n: number }).n),
        [1, 3]
      )
      const error = Cause.squash(letter!.cause)
      assert.instanceOf(error, Errors.EventRejected)
      assert.deepStrictEqual(
        (error as Errors.EventRejected).events.map((e) => [e.id, e.code]),
        [
          [letter!.events[0]!.id, "invalid"],
          [letter!.events[1]!.id, "unknown_type"]
        ]
      )
      assert.match((error as Errors.EventRejected).message, /refused \(invalid\): n: Expected number \(and 1 more\)$/)
    }).pipe(Effect.scoped)
  )

  it.effect("droppable: refused events are counted as dropped (failed), not dead-lettered", () =>
    Effect.gen(function* () {
      const type = EventType.make("app.Tick", 1, N, { delivery: "droppable", batch: { maxSize: 4, lingerMs: 0 } })
      const trail = yield* Trail.make({
        types: [type],
        process: (batch: Batch) => Effect.sync(() => batch.reject(0, "rejected", "no"))
      })
      for (let i = 0; i < 4; i++) trail.logUnsafe(type, { n: i })
      yield* trail.flush
      const stats = trail.statsUnsafe().types["app.Tick@1"]!
      identity(stats)
      assert.strictEqual(stats.processed, 3)
      assert.strictEqual(stats.dropped.failed, 1)
      assert.strictEqual(trail.deadLettersUnsafe().length, 0)
    }).pipe(Effect.scoped)
  )
})
