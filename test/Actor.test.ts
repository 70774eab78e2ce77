import { assert, describe, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { TestClock } from "effect/testing"
import { Actor, Mailbox } from "../src/index.ts"

const settle = Effect.gen(function* () {
  for (let i = 0; i < 30; i++) yield* Effect.yieldNow
})

const options = (
  mailbox: Mailbox.Mailbox<number>,
  behaviour: (batch: ReadonlyArray<number>) => Effect.Effect<void, unknown>
) => ({
  name: "test.actor",
  mailbox,
  behaviour,
  delivery: "must" as const,
  batch: { maxSize: 4, lingerMs: 50 },
  priority: 0,
  concurrency: 1,
  retry: Schedule.recurs(2),
  timeoutMs: 1_000
})

describe("Actor (standalone)", () => {
  it.effect("batches by size and by linger, in order, and survives a failing batch", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(100, "backpressure", 4)
      const seen: Array<ReadonlyArray<number>> = []
      const actor = yield* Actor.make(
        options(mailbox, (batch) =>
          batch.includes(13) ? Effect.fail("unlucky") : Effect.sync(() => seen.push(batch.slice()))
        )
      )
      for (let i = 0; i < 6; i++) mailbox.offer(i, 0)
      yield* settle
      assert.deepStrictEqual(seen, [[0, 1, 2, 3]], "a full batch goes at once; the rest lingers")
      yield* TestClock.adjust(50)
      yield* settle
      assert.deepStrictEqual(seen, [
        [0, 1, 2, 3],
        [4, 5]
      ])
      for (let i = 10; i < 18; i++) mailbox.offer(i, 0)
      yield* settle
      assert.deepStrictEqual(seen.slice(2), [[14, 15, 16, 17]], "the failing batch is retried, the next one goes on")
      const c = mailbox.counts()
      assert.strictEqual(c.deadLettered, 4)
      assert.strictEqual(c.processed, 10)
      yield* actor.stop(100)
    })
  )

  it.effect("stop drains what is queued, then refuses", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(100, "backpressure", 4)
      let processed = 0
      const actor = yield* Actor.make(options(mailbox, (batch) => Effect.sync(() => (processed += batch.length))))
      for (let i = 0; i < 10; i++) mailbox.offer(i, 0)
      yield* actor.stop(1_000)
      assert.strictEqual(processed, 10)
      assert.strictEqual(mailbox.offer(99, 0), "closed")
    })
  )

  it.effect("a supervisor option stops the actor past its restart intensity; later batches are settled at once", () =>
    Effect.gen(function* () {
      const mailbox = Mailbox.make<number>(100, "backpressure", 4)
      let restarts = 0
      const stops: Array<{ child: string; reason: string; restarts: number }> = []
      const letters: Array<[ReadonlyArray<number>, string]> = []
      const attempts: Array<ReadonlyArray<number>> = []
      const actor = yield* Actor.make({
        ...options(mailbox, (batch) => {
          attempts.push(batch.slice())
          return batch.includes(-1) ? Effect.fail("poison") : Effect.void
        }),
        batch: { maxSize: 4, lingerMs: 0 },
        retry: Schedule.recurs(0),
        supervisor: { strategy: "restart", maxRestarts: 1, windowMs: 1_000, backoff: Schedule.spaced("10 millis") },
        restart: () => Effect.sync(() => restarts++),
        onStop: (e) => stops.push({ child: e.child, reason: e.reason, restarts: e.restarts }),
        onDeadLetter: (batch, _cause, reason) => letters.push([batch, reason])
      })
      mailbox.offer(-1, 0)
      yield* settle
      assert.strictEqual(restarts, 0)
      yield* TestClock.adjust(10)
      yield* settle
      assert.strictEqual(restarts, 1, "one restart, then the batch is tried again")
      assert.deepStrictEqual(attempts, [[-1], [-1]])
      assert.deepStrictEqual(stops, [{ child: "test.actor", reason: "intensity", restarts: 1 }])
      mailbox.offer(1, 0)
      mailbox.offer(2, 0)
      yield* settle
      assert.deepStrictEqual(attempts.length, 2, "a stopped actor runs nothing more")
      assert.deepStrictEqual(letters, [
        [[-1], "stopped"],
        [[1, 2], "stopped"]
      ])
      const c = mailbox.counts()
      assert.strictEqual(c.deadLettered, 3)
      assert.strictEqual(c.queued + c.inFlight, 0)
      yield* actor.stop(100)
    })
  )
})
