import * as v8 from "node:v8"
import * as vm from "node:vm"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Metric, Schedule, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Errors, EventType, Metrics, Trail } from "../src/index.ts"
import type { Batch } from "../src/Batch.ts"
import * as Pool from "../src/internal/pool.ts"

const Step = Schema.Struct({ step: Schema.Number })

/** Lets every ready fiber run (the actors are woken through the scheduler). */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const invariant = (s: Trail.TypeStats) => {
  const d = s.dropped.overflow + s.dropped.shutdown + s.dropped.failed
  assert.strictEqual(
    s.accepted,
    s.processed + s.queued + s.inFlight + d + s.deadLettered,
    `accounting broken for ${s.type}: ${JSON.stringify(s)}`
  )
}
const checkAll = (trail: Trail.Service) => {
  for (const s of Object.values(trail.statsUnsafe().types)) invariant(s)
}

/** Shuts the trail down while moving the test clock, so pending delayed work can finish. */
const shutdownAdvancing = (trail: Trail.Service, stepMs: number, steps: number) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(trail.shutdown)
    for (let i = 0; i < steps && fiber.pollUnsafe() === undefined; i++) {
      yield* TestClock.adjust(stepMs)
      yield* settle
    }
    return yield* Fiber.join(fiber)
  })

const recorder = () => {
  const seen: Array<{ key: string; data: ReadonlyArray<unknown> }> = []
  const process: Trail.Processor = (batch: Batch) =>
    Effect.sync(() => {
      seen.push({ key: batch.key, data: batch.data })
    })
  return { seen, process }
}

describe("Trail", () => {
  it.effect("delivers batches in log order, with envelopes and ids", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.A", 1, Step, { batch: { maxSize: 3, lingerMs: 0 } })
      const events: Array<{ id: string; type: string; source: string; data: unknown; parent: string | undefined }> = []
      const trail = yield* Trail.make({
        source: "h1",
        process: (batch) =>
          Effect.sync(() => {
            for (const e of batch.events)
              events.push({ id: e.id, type: e.type, source: e.source, data: e.data, parent: e.parent })
          })
      })
      for (let i = 0; i < 7; i++) trail.logUnsafe(A, { step: i }, i === 3 ? { parent: "P" } : undefined)
      yield* trail.flush
      assert.deepStrictEqual(
        events.map((e) => e.data),
        [0, 1, 2, 3, 4, 5, 6].map((step) => ({ step }))
      )
      assert.strictEqual(events[0]!.type, "test.A@1")
      assert.strictEqual(events[0]!.source, "h1")
      assert.strictEqual(events[3]!.parent, "P")
      assert.strictEqual(events[2]!.parent, undefined)
      assert.strictEqual(new Set(events.map((e) => e.id)).size, 7)
      const sorted = events
        .map((e) => e.id)
        .slice()
        .sort()
      assert.deepStrictEqual(
        sorted,
        events.map((e) => e.id)
      )
      const s = trail.statsUnsafe().types["test.A@1"]!
      assert.strictEqual(s.accepted, 7)
      assert.strictEqual(s.processed, 7)
      invariant(s)
    })
  )

  it.effect("size fills a batch before linger; linger sends a partial batch", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Linger", 1, Step, { batch: { maxSize: 4, lingerMs: 100 } })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ types: [Trail.route(A, process)] })
      for (let i = 0; i < 4; i++) trail.logUnsafe(A, { step: i })
      yield* settle
      assert.strictEqual(seen.length, 1, "a full batch goes without waiting for linger")
      assert.strictEqual(seen[0]!.data.length, 4)
      trail.logUnsafe(A, { step: 4 })
      trail.logUnsafe(A, { step: 5 })
      yield* settle
      assert.strictEqual(seen.length, 1, "a partial batch waits for linger")
      yield* TestClock.adjust(99)
      yield* settle
      assert.strictEqual(seen.length, 1)
      yield* TestClock.adjust(1)
      yield* settle
      assert.strictEqual(seen.length, 2)
      assert.deepStrictEqual(seen[1]!.data, [{ step: 4 }, { step: 5 }])
    })
  )

  it.effect("lingerMs 0 sends at once", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Now", 1, Step, { batch: { maxSize: 100, lingerMs: 0 } })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ types: [Trail.route(A, process)] })
      trail.logUnsafe(A, { step: 1 })
      yield* settle
      assert.strictEqual(seen.length, 1)
    })
  )

  it.effect("log never runs the processor in the caller's stack", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Async", 1, Step, { batch: { maxSize: 1, lingerMs: 0 } })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ types: [Trail.route(A, process)] })
      for (let i = 0; i < 10; i++) trail.logUnsafe(A, { step: i })
      assert.strictEqual(seen.length, 0)
      yield* trail.flush
      assert.strictEqual(seen.length, 10)
    })
  )

  it.effect("a full backpressure mailbox: the sync API refuses, the Effect API waits", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Full", 1, Step, {
        mailbox: { capacity: 3, overflow: "backpressure" },
        batch: { maxSize: 10, lingerMs: 0 }
      })
      let release = false
      const trail = yield* Trail.make({
        types: [
          Trail.route(A, () => (release ? Effect.void : Effect.never.pipe(Effect.timeout(1_000_000), Effect.orDie)))
        ]
      })
      // first event is taken and hangs in processing; then fill the mailbox
      trail.logUnsafe(A, { step: 0 })
      yield* settle
      for (let i = 1; i <= 3; i++) assert.strictEqual(trail.logUnsafe(A, { step: i }), "accepted")
      assert.strictEqual(trail.logUnsafe(A, { step: 4 }), "full")
      const s = trail.statsUnsafe().types["test.Full@1"]!
      assert.strictEqual(s.refused.full, 1)
      assert.strictEqual(s.accepted, 4)
      invariant(s)
      const waiting = yield* Effect.forkChild(trail.log(A, { step: 5 }))
      yield* settle
      assert.isUndefined(waiting.pollUnsafe(), "the Effect log suspends while full")
      release = true
      yield* TestClock.adjust(1_000_000) // the hanging attempt times out; the retry succeeds
      yield* TestClock.adjust(1_000)
      yield* settle
      const result = yield* Fiber.join(waiting)
      assert.strictEqual(result, "accepted")
      yield* TestClock.adjust(60_000)
      yield* trail.flush
      const after = trail.statsUnsafe().types["test.Full@1"]!
      assert.strictEqual(after.accepted, 5)
      assert.strictEqual(after.processed, 5)
      assert.strictEqual(after.refused.full, 1)
      invariant(after)
    })
  )

  it.effect("droppable dropNewest and dropOldest drop and count", () =>
    Effect.gen(function* () {
      const New = EventType.make("test.DropNew", 1, Step, {
        delivery: "droppable",
        mailbox: { capacity: 2, overflow: "dropNewest" },
        batch: { maxSize: 10, lingerMs: 50 }
      })
      const Old = EventType.make("test.DropOld", 1, Step, {
        delivery: "droppable",
        mailbox: { capacity: 2, overflow: "dropOldest" },
        batch: { maxSize: 10, lingerMs: 50 }
      })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ process })
      const results = [0, 1, 2, 3].map((step) => trail.logUnsafe(New, { step }))
      assert.deepStrictEqual(results, ["accepted", "accepted", "dropped", "dropped"])
      const oldResults = [0, 1, 2, 3].map((step) => trail.logUnsafe(Old, { step }))
      assert.deepStrictEqual(oldResults, ["accepted", "accepted", "accepted", "accepted"])
      checkAll(trail)
      yield* TestClock.adjust(50)
      yield* trail.flush
      const byKey = new Map(seen.map((b) => [b.key, b.data]))
      assert.deepStrictEqual(byKey.get("test.DropNew@1"), [{ step: 0 }, { step: 1 }])
      assert.deepStrictEqual(byKey.get("test.DropOld@1"), [{ step: 2 }, { step: 3 }])
      const stats = trail.statsUnsafe().types
      assert.strictEqual(stats["test.DropNew@1"]!.dropped.overflow, 2)
      assert.strictEqual(stats["test.DropOld@1"]!.dropped.overflow, 2)
      assert.strictEqual(stats["test.DropOld@1"]!.accepted, 4)
      checkAll(trail)
    })
  )

  it.effect("a failing processor is retried on the type's schedule, then must events are dead-lettered", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Fail", 1, Step, {
        batch: { maxSize: 10, lingerMs: 0 },
        retry: Schedule.spaced(1_000).pipe(Schedule.upTo({ times: 3 }))
      })
      let attempts = 0
      const trail = yield* Trail.make({
        types: [
          Trail.route(A, () =>
            Effect.suspend(() => {
              attempts++
              return Effect.fail("boom" as const)
            })
          )
        ]
      })
      trail.logUnsafe(A, { step: 1 })
      trail.logUnsafe(A, { step: 2 })
      yield* settle
      assert.strictEqual(attempts, 1)
      yield* TestClock.adjust(1_000)
      yield* settle
      assert.strictEqual(attempts, 2)
      assert.strictEqual(trail.statsUnsafe().types["test.Fail@1"]!.inFlight, 2)
      yield* TestClock.adjust(2_000)
      yield* settle
      assert.strictEqual(attempts, 4, "one attempt and three retries")
      const s = trail.statsUnsafe().types["test.Fail@1"]!
      assert.strictEqual(s.deadLettered, 2)
      assert.strictEqual(s.processed, 0)
      invariant(s)
      const letters = yield* trail.deadLetters
      assert.strictEqual(letters.length, 1)
      assert.strictEqual(letters[0]!.type, "test.Fail@1")
      assert.strictEqual(letters[0]!.reason, "retriesExhausted")
      assert.deepStrictEqual(letters[0]!.batch!.data, [{ step: 1 }, { step: 2 }])
      assert.deepStrictEqual(
        letters[0]!.events.map((e) => [e.type, e.data]),
        [
          ["test.Fail@1", { step: 1 }],
          ["test.Fail@1", { step: 2 }]
        ]
      )
      assert.deepStrictEqual(Cause.squash(letters[0]!.cause), "boom")
    })
  )

  it.effect("dead letters beyond deadLetterCapacity are let go oldest first, still counted and reported", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.DeadCap", 1, Step, {
        batch: { maxSize: 1, lingerMs: 0 },
        retry: Schedule.recurs(0)
      })
      const reported: Array<number> = []
      const trail = yield* Trail.make({
        deadLetterCapacity: 3,
        onDeadLetter: (letter) => reported.push((letter.batch!.data[0] as { step: number }).step),
        types: [Trail.route(A, () => Effect.fail("no"))]
      })
      for (let i = 0; i < 5; i++) trail.logUnsafe(A, { step: i })
      yield* trail.flush
      const kept = yield* trail.deadLetters
      assert.deepStrictEqual(
        kept.map((l) => (l.batch!.data[0] as { step: number }).step),
        [2, 3, 4]
      )
      assert.deepStrictEqual(reported, [0, 1, 2, 3, 4])
      const stats = trail.statsUnsafe()
      assert.strictEqual(stats.deadLetters, 3)
      assert.strictEqual(stats.deadLettersEvicted, 2)
      assert.strictEqual(stats.types["test.DeadCap@1"]!.deadLettered, 5)
    })
  )

  it.effect("defects and throws are retried like failures and kept as the cause", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Die", 1, Step, {
        batch: { maxSize: 10, lingerMs: 0 },
        retry: Schedule.recurs(1)
      })
      let calls = 0
      const trail = yield* Trail.make({
        types: [
          Trail.route(A, () => {
            calls++
            if (calls === 1) throw new Error("thrown")
            return Effect.die(new Error("died"))
          })
        ]
      })
      trail.logUnsafe(A, { step: 1 })
      yield* trail.flush
      assert.strictEqual(calls, 2)
      const [letter] = yield* trail.deadLetters
      const error = Cause.squash(letter!.cause)
      assert.instanceOf(error, Errors.ProcessingDefect)
      assert.strictEqual((error as Errors.ProcessingDefect).message, "processing a batch of test.Die@1 died: died")
      // the actor survived: a later event is processed normally
      calls = 100
      const B = EventType.make("test.Die", 1, Step)
      assert.strictEqual(B.key, A.key)
      checkAll(trail)
    })
  )

  it.effect("a hanging processor times out per attempt and the actor goes on", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Hang", 1, Step, {
        batch: { maxSize: 1, lingerMs: 0 },
        timeoutMs: 500,
        retry: Schedule.recurs(1)
      })
      const done: Array<number> = []
      const trail = yield* Trail.make({
        types: [
          Trail.route(A, (batch) => {
            const step = (batch.data[0] as { step: number }).step
            return step === 0 ? Effect.never : Effect.sync(() => done.push(step))
          })
        ]
      })
      trail.logUnsafe(A, { step: 0 })
      trail.logUnsafe(A, { step: 1 })
      yield* settle
      yield* TestClock.adjust(500)
      yield* settle
      yield* TestClock.adjust(500)
      yield* trail.flush
      assert.deepStrictEqual(done, [1])
      const [letter] = yield* trail.deadLetters
      assert.instanceOf(Cause.squash(letter!.cause), Errors.ProcessingTimeout)
      const s = trail.statsUnsafe().types["test.Hang@1"]!
      assert.strictEqual(s.processed, 1)
      assert.strictEqual(s.deadLettered, 1)
      invariant(s)
    })
  )

  it.effect("droppable events whose retries are exhausted are counted as dropped (failed)", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.DropFail", 1, Step, {
        delivery: "droppable",
        batch: { maxSize: 10, lingerMs: 0 },
        retry: Schedule.recurs(0)
      })
      const trail = yield* Trail.make({ types: [Trail.route(A, () => Effect.fail("no"))] })
      trail.logUnsafe(A, { step: 1 })
      yield* trail.flush
      const s = trail.statsUnsafe().types["test.DropFail@1"]!
      assert.strictEqual(s.dropped.failed, 1)
      assert.strictEqual((yield* trail.deadLetters).length, 0)
      invariant(s)
    })
  )

  it.effect("priority: a high-priority type is served before a low-priority flood", () =>
    Effect.gen(function* () {
      const Low = EventType.make("test.Low", 1, Step, { priority: 0, batch: { maxSize: 1, lingerMs: 0 } })
      const High = EventType.make("test.High", 1, Step, { priority: 10, batch: { maxSize: 1, lingerMs: 0 } })
      const order: Array<string> = []
      const trail = yield* Trail.make({
        concurrency: 1,
        process: (batch) => Effect.sync(() => order.push(batch.type.name)).pipe(Effect.delay(10))
      })
      for (let i = 0; i < 50; i++) trail.logUnsafe(Low, { step: i })
      yield* settle
      trail.logUnsafe(High, { step: 0 })
      yield* settle
      for (let i = 0; i < 60; i++) {
        yield* TestClock.adjust(10)
        yield* settle
      }
      yield* trail.flush
      assert.strictEqual(order.length, 51)
      const highAt = order.indexOf("test.High")
      assert.isTrue(highAt >= 0 && highAt <= 1, `high was served at position ${highAt}`)
    })
  )

  it.effect("equal priorities share the slots: a flood does not starve its peer", () =>
    Effect.gen(function* () {
      const Flood = EventType.make("test.Flood", 1, Step, { batch: { maxSize: 1, lingerMs: 0 } })
      const Peer = EventType.make("test.Peer", 1, Step, { batch: { maxSize: 1, lingerMs: 0 } })
      const order: Array<string> = []
      const trail = yield* Trail.make({
        concurrency: 1,
        process: (batch) => Effect.sync(() => order.push(batch.type.name)).pipe(Effect.delay(10))
      })
      for (let i = 0; i < 100; i++) trail.logUnsafe(Flood, { step: i })
      yield* settle
      for (let i = 0; i < 3; i++) trail.logUnsafe(Peer, { step: i })
      for (let i = 0; i < 10; i++) {
        yield* TestClock.adjust(10)
        yield* settle
      }
      const peers = order.filter((n) => n === "test.Peer").length
      assert.strictEqual(peers, 3, `peer batches after 10 slots: ${order.join(",")}`)
      const stats = yield* shutdownAdvancing(trail, 10, 200)
      assert.strictEqual(stats.totals.processed, 103)
    })
  )

  it.effect("flush does not wait out a linger: what is queued goes at once (the clock never moves)", () =>
    Effect.gen(function* () {
      const Slow = EventType.make("test.Lingering", 1, Step, { batch: { maxSize: 1_000, lingerMs: 60_000 } })
      const seen: Array<number> = []
      const trail = yield* Trail.make({
        types: [Trail.route(Slow, (batch) => Effect.sync(() => seen.push(batch.size)))]
      })
      for (let i = 0; i < 3; i++) trail.logUnsafe(Slow, { step: i })
      const flusher = yield* Effect.forkChild(trail.flush)
      yield* settle
      assert.isDefined(flusher.pollUnsafe(), "flushed with the TestClock still at 0")
      assert.deepStrictEqual(seen, [3])
      // without a flush, the linger holds the next events back
      trail.logUnsafe(Slow, { step: 3 })
      yield* settle
      assert.deepStrictEqual(seen, [3])
      yield* TestClock.adjust(60_000)
      yield* settle
      assert.deepStrictEqual(seen, [3, 1])
    })
  )

  it.effect("flush behind full batches does not wait out the linger of the rest (the clock never moves)", () =>
    Effect.gen(function* () {
      // 20 events, batches of 8: two full batches are ready before the flush starts; the
      // take of the first used to reset the flush's hurry, leaving the last 4 to linger
      const Mixed = EventType.make("test.Behind", 1, Step, { batch: { maxSize: 8, lingerMs: 60_000 } })
      const seen: Array<number> = []
      const trail = yield* Trail.make({
        types: [
          Trail.route(Mixed, (batch) =>
            Effect.sync(() => {
              seen.push(batch.size)
            })
          )
        ]
      })
      for (let i = 0; i < 20; i++) trail.logUnsafe(Mixed, { step: i })
      // the flush starts before any worker takes a batch
      const flusher = yield* Effect.forkChild(trail.flush, { startImmediately: true })
      yield* settle
      assert.isDefined(flusher.pollUnsafe(), "flushed with the TestClock still at 0")
      assert.deepStrictEqual(seen, [8, 8, 4])
      // the hurry ends with the flush: later events linger again
      trail.logUnsafe(Mixed, { step: 20 })
      yield* settle
      assert.deepStrictEqual(seen, [8, 8, 4])
    })
  )

  it.effect("flush waits for exactly the events accepted before it", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Flush", 1, Step, {
        batch: { maxSize: 5, lingerMs: 0 },
        mailbox: { capacity: 100_000, overflow: "backpressure" }
      })
      const processed: Array<number> = []
      const trail = yield* Trail.make({
        types: [
          Trail.route(A, (batch) =>
            Effect.sync(() => {
              for (const d of batch.data) processed.push((d as { step: number }).step)
            }).pipe(Effect.delay(10))
          )
        ]
      })
      for (let i = 0; i < 20; i++) trail.logUnsafe(A, { step: i })
      const flusher = yield* Effect.forkChild(trail.flush)
      yield* Effect.yieldNow // the flush starts: its watermark is the 20 events above
      // keep logging while the flush is pending
      for (let round = 0; round < 10; round++) {
        for (let i = 0; i < 5; i++) trail.logUnsafe(A, { step: 1000 + round * 5 + i })
        yield* TestClock.adjust(10)
        yield* settle
        const done = flusher.pollUnsafe() !== undefined
        const firstTwenty = [...Array(20).keys()].every((s) => processed.includes(s))
        assert.strictEqual(done, firstTwenty, `flush done=${done} but first twenty processed=${firstTwenty}`)
        checkAll(trail)
      }
      assert.isDefined(flusher.pollUnsafe())
      assert.isTrue(trail.statsUnsafe().types["test.Flush@1"]!.queued > 0, "later events are not waited for")
      const shutdown = yield* Effect.forkChild(trail.shutdown)
      for (let i = 0; i < 20; i++) yield* TestClock.adjust(10)
      const stats = yield* Fiber.join(shutdown)
      assert.strictEqual(stats.types["test.Flush@1"]!.processed, 70)
    })
  )

  it.effect("shutdown delivers every must event and refuses later logs", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.ShutMust", 1, Step, { batch: { maxSize: 10, lingerMs: 1_000 } })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ types: [Trail.route(A, process)] })
      for (let i = 0; i < 95; i++) trail.logUnsafe(A, { step: i })
      const stats = yield* trail.shutdown
      assert.strictEqual(seen.flatMap((b) => b.data).length, 95)
      assert.strictEqual(stats.types["test.ShutMust@1"]!.processed, 95)
      assert.strictEqual(trail.logUnsafe(A, { step: 999 }), "closed")
      const exit = yield* Effect.exit(trail.log(A, { step: 999 }))
      assert.isTrue(Exit.isFailure(exit))
      const after = trail.statsUnsafe().types["test.ShutMust@1"]!
      assert.strictEqual(after.refused.closed, 2)
      assert.strictEqual(after.accepted, 95)
      invariant(after)
    })
  )

  it.effect("shutdown with a failing processor: must events are dead-lettered at the deadline, never lost", () =>
    Effect.gen(function* () {
      const Must = EventType.make("test.ShutFail", 1, Step, {
        batch: { maxSize: 4, lingerMs: 0 },
        retry: Schedule.spaced(100)
      })
      const Drop = EventType.make("test.ShutDrop", 1, Step, {
        delivery: "droppable",
        batch: { maxSize: 4, lingerMs: 0 },
        retry: Schedule.spaced(100)
      })
      const trail = yield* Trail.make({
        shutdownTimeoutMs: 1_000,
        droppableBudgetMs: 50,
        process: () => Effect.fail("down")
      })
      for (let i = 0; i < 10; i++) {
        trail.logUnsafe(Must, { step: i })
        trail.logUnsafe(Drop, { step: i })
      }
      yield* settle
      const shutdown = yield* Effect.forkChild(trail.shutdown)
      yield* settle
      assert.strictEqual(trail.logUnsafe(Must, { step: 99 }), "closed")
      yield* TestClock.adjust(50)
      yield* settle
      const mid = trail.statsUnsafe().types
      assert.strictEqual(mid["test.ShutDrop@1"]!.dropped.shutdown, 10, "droppable gone after its budget")
      assert.strictEqual(mid["test.ShutFail@1"]!.deadLettered, 0, "must still being retried")
      yield* TestClock.adjust(1_000)
      const stats = yield* Fiber.join(shutdown)
      const must = stats.types["test.ShutFail@1"]!
      assert.strictEqual(must.deadLettered, 10)
      assert.strictEqual(must.queued + must.inFlight, 0)
      invariant(must)
      invariant(stats.types["test.ShutDrop@1"]!)
      const letters = yield* trail.deadLetters
      assert.strictEqual(
        letters.reduce((n, l) => n + l.batch!.size, 0),
        10
      )
      for (const l of letters) {
        assert.strictEqual(l.reason, "shutdown")
        assert.instanceOf(Cause.squash(l.cause), Errors.ShutdownDeadline)
      }
    })
  )

  it.effect("shutdown with full mailboxes: queued backpressure and in-flight events all end counted", () =>
    Effect.gen(function* () {
      const Must = EventType.make("test.FullMust", 1, Step, {
        mailbox: { capacity: 20, overflow: "backpressure" },
        batch: { maxSize: 5, lingerMs: 0 }
      })
      const Drop = EventType.make("test.FullDrop", 1, Step, {
        delivery: "droppable",
        mailbox: { capacity: 20, overflow: "dropOldest" },
        batch: { maxSize: 5, lingerMs: 0 }
      })
      let calls = 0
      const trail = yield* Trail.make({
        concurrency: 1,
        shutdownTimeoutMs: 1_000,
        droppableBudgetMs: 100,
        // slow, and failing every third batch once
        process: () => Effect.suspend(() => (++calls % 3 === 0 ? Effect.fail("flaky") : Effect.sleep(50)))
      })
      let refusedFull = 0
      for (let i = 0; i < 40; i++) {
        if (trail.logUnsafe(Must, { step: i }) === "full") refusedFull++
        trail.logUnsafe(Drop, { step: i })
      }
      assert.isTrue(refusedFull > 0, "the must mailbox filled up")
      // a backpressured Effect log waits at shutdown time and is refused when the trail closes
      const waiting = yield* Effect.forkChild(Effect.exit(trail.log(Must, { step: 99 })))
      yield* settle
      const stats = yield* shutdownAdvancing(trail, 50, 100)
      const waited = yield* Fiber.join(waiting)
      const must = stats.types["test.FullMust@1"]!
      const drop = stats.types["test.FullDrop@1"]!
      invariant(must)
      invariant(drop)
      assert.strictEqual(must.queued + must.inFlight, 0)
      assert.strictEqual(drop.queued + drop.inFlight, 0)
      assert.strictEqual(must.refused.full, refusedFull)
      assert.strictEqual(must.processed + must.deadLettered, must.accepted)
      assert.strictEqual(drop.dropped.overflow, 20)
      // the waiting log either got in before the close (and is accounted) or was refused as closed
      if (Exit.isFailure(waited)) assert.strictEqual(must.refused.closed, 1)
      else assert.strictEqual(must.accepted, 41 - refusedFull)
    })
  )

  it.effect(
    "a processor that ignores interruption is given up on: its worker is replaced, shutdown keeps its deadline",
    () =>
      Effect.gen(function* () {
        const Stubborn = EventType.make("test.Stubborn", 1, Step, {
          batch: { maxSize: 10, lingerMs: 0 },
          timeoutMs: 100,
          retry: Schedule.recurs(1)
        })
        const Other = EventType.make("test.AfterStubborn", 1, Step, { batch: { maxSize: 10, lingerMs: 0 } })
        let attempts = 0
        const seen: Array<number> = []
        const trail = yield* Trail.make({
          concurrency: 1,
          shutdownTimeoutMs: 500,
          types: [
            Trail.route(Stubborn, () =>
              Effect.uninterruptible(Effect.sync(() => attempts++).pipe(Effect.andThen(Effect.never)))
            ),
            Trail.route(Other, (batch) => Effect.sync(() => seen.push(batch.size)))
          ]
        })
        trail.logUnsafe(Stubborn, { step: 1 })
        yield* settle
        trail.logUnsafe(Other, { step: 1 })
        yield* settle
        assert.deepStrictEqual(seen, [], "the only worker is stuck")
        yield* TestClock.adjust(100)
        yield* settle
        assert.deepStrictEqual(seen, [1], "a replacement worker serves the other type")
        yield* TestClock.adjust(100)
        yield* settle
        assert.strictEqual(attempts, 2, "retried once on another worker")
        assert.strictEqual(trail.statsUnsafe().types["test.Stubborn@1"]!.deadLettered, 1)
        const [letter] = yield* trail.deadLetters
        assert.instanceOf(Cause.squash(letter!.cause), Errors.ProcessingTimeout)
        trail.logUnsafe(Other, { step: 2 })
        const stats = yield* shutdownAdvancing(trail, 100, 10)
        assert.strictEqual(stats.types["test.AfterStubborn@1"]!.processed, 2)
        invariant(stats.types["test.Stubborn@1"]!)
      })
  )

  it.effect("closing the scope shuts down gracefully", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Scope", 1, Step, { batch: { maxSize: 100, lingerMs: 5_000 } })
      const Later = EventType.make("test.ScopeLater", 1, Step, { batch: { maxSize: 100, lingerMs: 5_000 } })
      const { seen, process } = recorder()
      yield* Effect.scoped(
        Effect.gen(function* () {
          const trail = yield* Trail.make({ types: [Trail.route(A, process)], process })
          for (let i = 0; i < 30; i++) trail.logUnsafe(A, { step: i })
          // registered on first log, after the trail was built
          for (let i = 0; i < 7; i++) trail.logUnsafe(Later, { step: i })
        })
      )
      assert.strictEqual(seen.filter((b) => b.key === "test.Scope@1").flatMap((b) => b.data).length, 30)
      assert.strictEqual(seen.filter((b) => b.key === "test.ScopeLater@1").flatMap((b) => b.data).length, 7)
    })
  )

  it.effect("registration: versions coexist; a different schema under a key fails", () =>
    Effect.gen(function* () {
      const V1 = EventType.make("test.Reg", 1, Step)
      const V2 = EventType.make("test.Reg", 2, Schema.Struct({ step: Schema.Number, note: Schema.String }))
      const Other = EventType.make("test.Reg", 1, Schema.Struct({ other: Schema.String }))
      const trail = yield* Trail.make({ types: [V1, V2] })
      yield* trail.register(V1)
      const V1Again = EventType.make("test.Reg", 1, Step)
      yield* trail.register(V1Again)
      const error = yield* Effect.flip(trail.register(Other))
      assert.instanceOf(error, Errors.DuplicateEventType)
      assert.strictEqual(
        error.message,
        "event type test.Reg@1 is already registered with a different schema; change the version to change the data"
      )
      assert.throws(() => trail.logUnsafe(Other, { other: "x" }))
      trail.logUnsafe(V1, { step: 1 })
      trail.logUnsafe(V2, { step: 1, note: "n" })
      const flushed = yield* Effect.forkChild(trail.flush)
      yield* TestClock.adjust(EventType.defaults.batch.lingerMs)
      yield* Fiber.join(flushed)
      assert.deepStrictEqual(Object.keys(trail.statsUnsafe().types).sort(), ["test.Reg@1", "test.Reg@2"])
    })
  )

  it.effect("a type logged without registration is registered with the default processor", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Lazy", 1, Step, { batch: { maxSize: 10, lingerMs: 0 } })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ process })
      assert.strictEqual(trail.logUnsafe(A, { step: 1 }), "accepted")
      yield* trail.flush
      assert.strictEqual(seen.length, 1)
    })
  )

  it.effect("per-type concurrency processes several batches at once", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Conc", 1, Step, { batch: { maxSize: 1, lingerMs: 0 }, concurrency: 3 })
      let active = 0
      let peak = 0
      const trail = yield* Trail.make({
        concurrency: 10,
        types: [
          Trail.route(A, () =>
            Effect.sync(() => {
              active++
              peak = Math.max(peak, active)
            }).pipe(Effect.andThen(Effect.sleep(10)), Effect.ensuring(Effect.sync(() => active--)))
          )
        ]
      })
      for (let i = 0; i < 9; i++) trail.logUnsafe(A, { step: i })
      yield* settle
      assert.strictEqual(active, 3)
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust(10)
        yield* settle
      }
      yield* trail.flush
      assert.strictEqual(peak, 3)
      assert.strictEqual(trail.statsUnsafe().types["test.Conc@1"]!.processed, 9)
    })
  )

  it.effect("a batch waiting for its retry does not hold a worker", () =>
    Effect.gen(function* () {
      const Failing = EventType.make("test.Backoff", 1, Step, {
        batch: { maxSize: 10, lingerMs: 0 },
        retry: Schedule.spaced(10_000).pipe(Schedule.upTo({ times: 1 }))
      })
      const Other = EventType.make("test.Other", 1, Step, { batch: { maxSize: 10, lingerMs: 0 } })
      const seen: Array<string> = []
      let failures = 0
      const trail = yield* Trail.make({
        concurrency: 1,
        types: [
          Trail.route(Failing, () => Effect.suspend(() => (failures++ === 0 ? Effect.fail("once") : Effect.void))),
          Trail.route(Other, (batch) => Effect.sync(() => seen.push(batch.key)))
        ]
      })
      trail.logUnsafe(Failing, { step: 1 })
      yield* settle
      assert.strictEqual(failures, 1)
      trail.logUnsafe(Other, { step: 1 })
      yield* settle
      assert.deepStrictEqual(seen, ["test.Other@1"], "the only worker served another type during the backoff")
      yield* TestClock.adjust(10_000)
      yield* trail.flush
      assert.strictEqual(failures, 2)
      assert.strictEqual(trail.statsUnsafe().types["test.Backoff@1"]!.processed, 1)
    })
  )

  it.effect("types with different lingers each send on their own time", () =>
    Effect.gen(function* () {
      const Fast = EventType.make("test.Fast", 1, Step, { batch: { maxSize: 100, lingerMs: 20 } })
      const Slow = EventType.make("test.Slow", 1, Step, { batch: { maxSize: 100, lingerMs: 200 } })
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ process, types: [Fast, Slow] })
      trail.logUnsafe(Slow, { step: 1 })
      trail.logUnsafe(Fast, { step: 1 })
      yield* TestClock.adjust(20)
      yield* settle
      assert.deepStrictEqual(
        seen.map((b) => b.key),
        ["test.Fast@1"]
      )
      trail.logUnsafe(Fast, { step: 2 })
      yield* TestClock.adjust(20)
      yield* settle
      assert.deepStrictEqual(
        seen.map((b) => b.key),
        ["test.Fast@1", "test.Fast@1"]
      )
      yield* TestClock.adjust(160)
      yield* settle
      assert.deepStrictEqual(
        seen.map((b) => b.key),
        ["test.Fast@1", "test.Fast@1", "test.Slow@1"]
      )
    })
  )

  it.effect("shutdown dead-letters a must batch whose processor hangs, and does not hang itself", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.HangShut", 1, Step, {
        batch: { maxSize: 10, lingerMs: 0 },
        timeoutMs: 1_000_000
      })
      const trail = yield* Trail.make({ shutdownTimeoutMs: 2_000, types: [Trail.route(A, () => Effect.never)] })
      for (let i = 0; i < 15; i++) trail.logUnsafe(A, { step: i })
      yield* settle
      const stats = yield* shutdownAdvancing(trail, 500, 10)
      const s = stats.types["test.HangShut@1"]!
      assert.strictEqual(s.deadLettered, 15)
      assert.strictEqual(s.processed, 0)
      invariant(s)
      const letters = yield* trail.deadLetters
      assert.deepStrictEqual(letters.map((l) => l.batch!.size).sort(), [10, 5])
      for (const l of letters) assert.instanceOf(Cause.squash(l.cause), Errors.ShutdownDeadline)
    })
  )

  it.effect("metrics follow the counters", () =>
    Effect.gen(function* () {
      const A = EventType.make("test.Metric", 1, Step, {
        delivery: "droppable",
        mailbox: { capacity: 2, overflow: "dropNewest" },
        batch: { maxSize: 10, lingerMs: 0 }
      })
      const trail = yield* Trail.make()
      for (let i = 0; i < 5; i++) trail.logUnsafe(A, { step: i })
      yield* trail.flush
      yield* trail.stats
      const attrs = { type: "test.Metric@1" }
      const accepted = yield* Metric.value(Metric.withAttributes(Metrics.accepted, attrs))
      const processed = yield* Metric.value(Metric.withAttributes(Metrics.processed, attrs))
      const dropped = yield* Metric.value(Metric.withAttributes(Metrics.dropped, { ...attrs, reason: "overflow" }))
      const depth = yield* Metric.value(Metric.withAttributes(Metrics.depth, attrs))
      assert.strictEqual(depth.value, 0)
      trail.logUnsafe(A, { step: 9 })
      const depthNow = yield* Metric.value(Metric.withAttributes(Metrics.depth, attrs))
      assert.strictEqual(depthNow.value, 1, "metrics read the live counters, no flush needed")
      yield* trail.flush
      const sizes = yield* Metric.value(Metric.withAttributes(Metrics.batchSize, attrs))

      assert.strictEqual(sizes.count, 2)
      assert.strictEqual(sizes.max, 2)
      assert.strictEqual(sizes.min, 1)
      assert.strictEqual(sizes.sum, 3)
      // cumulative buckets: the batch of 1 in the first, both by the bucket of 2, all in +Inf
      assert.deepStrictEqual(
        sizes.buckets.filter(([bound]) => bound <= 2 || bound === Number.POSITIVE_INFINITY),
        [
          [1, 1],
          [2, 2],
          [Number.POSITIVE_INFINITY, 2]
        ]
      )
      assert.strictEqual(accepted.count, 5)
      assert.strictEqual(processed.count, 2)
      assert.strictEqual(dropped.count, 3)
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )

  it.effect(
    "a batch's processing latency runs from its own take: not from the batch before it, not across an idle wait",
    () =>
      Effect.gen(function* () {
        const A = EventType.make("test.Latency", 1, Step, { batch: { maxSize: 1, lingerMs: 0 } })
        const trail = yield* Trail.make({
          types: [
            Trail.route(A, (batch) => ((batch.data[0] as { step: number }).step === 0 ? Effect.sleep(40) : Effect.void))
          ]
        })
        // two batches at once: the second is taken the moment the first settles
        trail.logUnsafe(A, { step: 0 })
        trail.logUnsafe(A, { step: 1 })
        const first = yield* Effect.forkChild(trail.flush)
        for (let i = 0; i < 10 && first.pollUnsafe() === undefined; i++) {
          yield* settle
          yield* TestClock.adjust(10)
        }
        yield* Fiber.join(first)
        // the worker parks; a batch logged a second later is timed from its own take
        yield* TestClock.adjust(1_000)
        trail.logUnsafe(A, { step: 2 })
        yield* trail.flush
        const latency = yield* Metric.value(
          Metric.withAttributes(Metrics.processingLatency, { type: "test.Latency@1" })
        )
        assert.strictEqual(latency.count, 3)
        assert.strictEqual(latency.max, 40)
        assert.strictEqual(latency.sum, 40, "only the first batch took time")
        assert.strictEqual(latency.min, 0)
      }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )
})

describe("Trail.start (Promise facade)", () => {
  it("logs, flushes and disposes", async () => {
    const A = EventType.make("test.Facade", 1, Step, { batch: { maxSize: 100, lingerMs: 1 } })
    let count = 0
    const trail = await Trail.start({ source: "p", process: (b) => Effect.sync(() => (count += b.size)) })
    for (let i = 0; i < 250; i++) assert.strictEqual(trail.log(A, { step: i }), "accepted")
    assert.strictEqual(await trail.send(A, { step: 250 }), "accepted")
    await trail.flush()
    assert.strictEqual(count, 251)
    const stats = await trail.dispose()
    assert.strictEqual(stats.totals.processed, 251)
    assert.strictEqual(trail.log(A, { step: 0 }), "closed")
    assert.deepStrictEqual(trail.deadLetters(), [], "readable after dispose")
    assert.strictEqual(trail.stats().totals.refused.closed, 1)
    await trail.send(A, { step: 0 }).then(
      () => assert.fail("send after dispose must reject"),
      (e) => assert.instanceOf(e, Errors.TrailClosed)
    )
  })

  it.effect("a bare name follows the latest version, also when one is registered after it was first logged", () =>
    Effect.gen(function* () {
      const { seen, process } = recorder()
      const V1 = EventType.make("names.Later", 1, Step, { batch: { lingerMs: 0 } })
      const V2 = EventType.make("names.Later", 2, Schema.Struct({ step: Schema.Number, note: Schema.String }), {
        batch: { lingerMs: 0 }
      })
      const trail = yield* Trail.make({ source: "t", process, types: [V1] })
      trail.logUnsafe("names.Later", { step: 1 })
      yield* trail.register(V2)
      trail.logUnsafe("names.Later", { step: 2, note: "v2" })
      trail.logUnsafe("names.Later@1", { step: 3 })
      const invalid = yield* Effect.flip(trail.log("names.Later", { step: 4 }))
      assert.strictEqual(invalid._tag, "ValidationError")
      yield* trail.flush
      const dataOf = (key: string) => seen.filter((b) => b.key === key).flatMap((b) => b.data)
      assert.deepStrictEqual(dataOf("names.Later@1"), [{ step: 1 }, { step: 3 }])
      assert.deepStrictEqual(dataOf("names.Later@2"), [{ step: 2, note: "v2" }])
      assert.strictEqual(trail.statsUnsafe().types["names.Later@2"]!.rejected.invalid, 1)
    })
  )
})

describe("Trail: memory", () => {
  const Blob = EventType.make("memory.Blob", 1, Schema.Struct({ payload: Schema.Array(Schema.Number) }), {
    batch: { maxSize: 8, lingerMs: 5 }
  })

  it.effect("what was processed is not kept: the type's ring lets go of it within sweepMs", () =>
    Effect.gen(function* () {
      let processed = 0
      const trail = yield* Trail.make({
        source: "memory",
        types: [
          Trail.route(Blob, (batch) =>
            Effect.sync(() => {
              processed += batch.size
            })
          )
        ]
      })
      const refs: Array<WeakRef<object>> = []
      // made in a function of its own: the test's generator would keep its last one
      const logOne = (i: number) => {
        const data = { payload: new Array(1_000).fill(i) }
        refs.push(new WeakRef(data))
        trail.logUnsafe(Blob, data)
      }
      for (let i = 0; i < 20; i++) logOne(i)
      yield* trail.flush
      assert.strictEqual(processed, 20)
      yield* TestClock.adjust(Pool.sweepMs)
      yield* settle
      // a collection on demand, without running the test process with --expose-gc
      v8.setFlagsFromString("--expose-gc")
      const gc = vm.runInNewContext("gc") as () => void
      gc()
      assert.deepStrictEqual(
        refs.map((r) => r.deref() === undefined),
        refs.map(() => true),
        "processed events still referenced after the sweep"
      )
    })
  )
})
