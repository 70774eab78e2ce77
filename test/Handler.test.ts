import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Logger, References, Schedule, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Errors, EventType, Handler, Supervisor, Trail } from "../src/index.ts"
import type { Envelope } from "../src/Envelope.ts"

const N = Schema.Struct({ n: Schema.Number })

/** Lets every ready fiber run (actors are woken through the scheduler). */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** Runs `effect` while moving the test clock by `stepMs`, until it completes. */
const advancing = <A, E>(effect: Effect.Effect<A, E>, stepMs: number, maxSteps = 10_000) =>
  Effect.gen(function* () {
    const fiber = yield* Effect.forkChild(effect)
    yield* settle
    for (let i = 0; i < maxSteps && fiber.pollUnsafe() === undefined; i++) {
      yield* TestClock.adjust(stepMs)
      yield* settle
    }
    assert.isDefined(fiber.pollUnsafe(), `did not complete within ${maxSteps} steps of ${stepMs} ms`)
    return yield* Fiber.join(fiber)
  })

type Counts = Trail.TypeStats | Trail.HandlerStats
const identity = (s: Counts) => {
  const d = s.dropped.overflow + s.dropped.shutdown + s.dropped.failed
  assert.strictEqual(s.accepted, s.processed + s.queued + s.inFlight + d + s.deadLettered, JSON.stringify(s))
}
const checkAll = (trail: Trail.Service) => {
  for (const t of Object.values(trail.statsUnsafe().types)) {
    identity(t)
    for (const h of Object.values(t.handlers)) identity(h)
  }
}

/** A deterministic pseudo-random sequence (so a failing run can be replayed). */
const lcg = (seed: number) => () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648
  return seed / 2_147_483_648
}

const recording = (name: string, into: Array<number>, options?: Handler.Options) =>
  Handler.make<{ readonly n: number }>(
    name,
    (e) =>
      Effect.sync(() => {
        into.push(e.data.n)
      }),
    options
  )

describe("Handlers: isolation under injected faults", () => {
  it.effect("3 of 5 handlers fail, die or hang at random: the 2 healthy ones get every event, in order", () =>
    Effect.gen(function* () {
      const total = 300
      const rand = lcg(42)
      // which events each faulty handler cannot handle (persistently: every attempt fails)
      const faulty = { fails: new Set<number>(), dies: new Set<number>(), hangs: new Set<number>() }
      for (let i = 0; i < total; i++) {
        if (rand() < 0.2) faulty.fails.add(i)
        if (rand() < 0.15) faulty.dies.add(i)
        if (rand() < 0.05) faulty.hangs.add(i)
      }
      // the seed gives every kind of fault some events
      assert.isTrue(faulty.fails.size > 10 && faulty.dies.size > 10 && faulty.hangs.size > 3)
      const healthy1: Array<number> = []
      const healthy2: Array<number> = []
      const handled = { fails: [] as Array<number>, dies: [] as Array<number>, hangs: [] as Array<number> }
      const attempts = { fails: 0, dies: 0, hangs: 0 }
      const faultOptions: Handler.Options = { retry: Schedule.recurs(2), timeoutMs: 100, maxBatch: 7 }
      const T = EventType.make("fault.Injected", 1, N, {
        batch: { maxSize: 16, lingerMs: 0 },
        handlers: [
          recording("healthy1", healthy1),
          Handler.make<{ readonly n: number }>(
            "fails",
            (e) =>
              Effect.suspend(() => {
                attempts.fails++
                if (faulty.fails.has(e.data.n)) return Effect.fail(new Error(`no ${e.data.n}`))
                handled.fails.push(e.data.n)
                return Effect.void
              }),
            faultOptions
          ),
          Handler.make<{ readonly n: number }>(
            "dies",
            (e) =>
              Effect.sync(() => {
                attempts.dies++
                if (faulty.dies.has(e.data.n)) throw new Error(`died on ${e.data.n}`)
                handled.dies.push(e.data.n)
              }),
            faultOptions
          )
        ]
      })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        "fault.Injected",
        Handler.make<{ readonly n: number }>(
          "hangs",
          (e) =>
            Effect.suspend(() => {
              attempts.hangs++
              if (faulty.hangs.has(e.data.n)) return Effect.never
              handled.hangs.push(e.data.n)
              return Effect.void
            }),
          faultOptions
        )
      )
      yield* trail.on("fault.Injected@1", recording("healthy2", healthy2))
      assert.deepStrictEqual(
        trail.registry.handlers(T).map((h) => h.name),
        ["healthy1", "fails", "dies", "hangs", "healthy2"]
      )
      const results: Array<string> = []
      for (let i = 0; i < total; i++) {
        results.push(trail.logUnsafe(T, { n: i }))
        if (i % 50 === 0) checkAll(trail)
      }
      // the caller never sees a handler's failure
      assert.isTrue(results.every((r) => r === "accepted"))
      yield* advancing(trail.flush, 20)
      checkAll(trail)

      const all = Array.from({ length: total }, (_, i) => i)
      assert.deepStrictEqual(healthy1, all)
      assert.deepStrictEqual(healthy2, all)
      const without = (bad: Set<number>) => all.filter((i) => !bad.has(i))
      assert.deepStrictEqual(handled.fails, without(faulty.fails))
      assert.deepStrictEqual(handled.dies, without(faulty.dies))
      assert.deepStrictEqual(handled.hangs, without(faulty.hangs))

      const stats = trail.statsUnsafe().types["fault.Injected@1"]!
      assert.strictEqual(stats.processed, total, "the type's actor is never stopped by a handler")
      for (const [name, bad] of [
        ["fails", faulty.fails],
        ["dies", faulty.dies],
        ["hangs", faulty.hangs]
      ] as const) {
        const h = stats.handlers[name]!
        assert.strictEqual(h.accepted, total, name)
        assert.strictEqual(h.deadLettered, bad.size, name)
        assert.strictEqual(h.processed, total - bad.size, name)
        // each bad event: 1 attempt + 2 retries, all failed
        assert.strictEqual(h.failures, bad.size * 3, name)
        assert.isFalse(h.stopped, name)
      }
      assert.strictEqual(attempts.fails, total - faulty.fails.size + faulty.fails.size * 3)
      for (const name of ["healthy1", "healthy2"]) {
        assert.strictEqual(stats.handlers[name]!.processed, total)
        assert.strictEqual(stats.handlers[name]!.failures, 0)
      }
      // one dead letter per given-up event, with its handler, event and cause
      const letters = trail.deadLettersUnsafe()
      for (const [name, bad] of [
        ["fails", faulty.fails],
        ["dies", faulty.dies],
        ["hangs", faulty.hangs]
      ] as const) {
        const mine = letters.filter((l) => l.handler === name)
        assert.deepStrictEqual(
          mine.flatMap((l) => l.events.map((e) => (e.data as { n: number }).n)),
          [...bad],
          name
        )
        assert.isTrue(mine.every((l) => l.type === "fault.Injected@1" && l.reason === "retriesExhausted"))
      }
      assert.isTrue(
        letters.filter((l) => l.handler === "hangs").every((l) => String(l.cause).includes("ProcessingTimeout"))
      )
      assert.isTrue(letters.filter((l) => l.handler === "dies").every((l) => String(l.cause).includes("died on")))
    })
  )

  it.effect("every failure is logged through Effect's logger with its cause, type and handler", () =>
    Effect.gen(function* () {
      const logged: Array<{ message: unknown; cause: string; annotations: Record<string, unknown> }> = []
      const capture = Logger.make((options) => {
        logged.push({
          message: options.message,
          cause: String(options.cause),
          annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) }
        })
      })
      const T = EventType.make("log.Failing", 1, N, { batch: { lingerMs: 0 } })
      yield* Effect.gen(function* () {
        const trail = yield* Trail.make({ source: "t", types: [T] })
        yield* trail.on(
          T,
          Handler.make("broken", () => Effect.fail(new Error("kaput")), { retry: Schedule.recurs(1) })
        )
        trail.logUnsafe(T, { n: 1 })
        yield* advancing(trail.flush, 10)
      }).pipe(Effect.provide(Logger.layer([capture])))
      const failures = logged.filter((l) => String(l.message).includes("handler broken of log.Failing@1 failed"))
      assert.strictEqual(failures.length, 2, "one line per failed attempt")
      assert.include(failures[0]!.cause, "kaput")
      assert.strictEqual(failures[0]!.annotations.type, "log.Failing@1")
      assert.strictEqual(failures[0]!.annotations.handler, "broken")
    }).pipe(Effect.scoped)
  )
})

describe("Handlers: order", () => {
  it.effect(
    "declared handlers get each event first, in declaration order; by-name ones after, in registration order",
    () =>
      Effect.gen(function* () {
        const order: Array<string> = []
        const h = (name: string) =>
          Handler.make<{ readonly n: number }>(name, (e) =>
            Effect.sync(() => {
              order.push(`${name}:${e.data.n}`)
            })
          )
        const T = EventType.make("order.T", 1, N, { batch: { lingerMs: 0 }, handlers: [h("d1"), h("d2")] })
        // one handler worker: the order in which handlers are served is the dispatch order
        const trail = yield* Trail.make({ source: "t", handlerConcurrency: 1 })
        yield* trail.on("order.T", h("named1")).pipe(
          Effect.flip,
          Effect.map((e) => assert.strictEqual(e._tag, "EventNotFound"))
        )
        yield* trail.register(T)
        yield* trail.on("order.T", h("named1"))
        yield* trail.on(T, h("named2"))
        trail.logUnsafe(T, { n: 0 })
        yield* trail.flush
        assert.deepStrictEqual(order, ["d1:0", "d2:0", "named1:0", "named2:0"])
      })
  )

  it.effect("within one handler, events arrive in log order across batches", () =>
    Effect.gen(function* () {
      const got: Array<number> = []
      const T = EventType.make("order.Many", 1, N, { batch: { maxSize: 5, lingerMs: 0 } })
      const trail = yield* Trail.make({ source: "t" })
      yield* trail.on(T, recording("r", got, { maxBatch: 3 }))
      for (let i = 0; i < 100; i++) trail.logUnsafe(T, { n: i })
      yield* trail.flush
      assert.deepStrictEqual(
        got,
        Array.from({ length: 100 }, (_, i) => i)
      )
    })
  )
})

describe("Handlers: mailboxes", () => {
  it.effect("a slow handler does not hold the others back while its mailbox has room", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const fast: Array<number> = []
      const slow: Array<number> = []
      const T = EventType.make("mb.Slow", 1, N, { batch: { lingerMs: 0 } })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        T,
        Handler.make<{ readonly n: number }>("slow", (e) =>
          Effect.andThen(
            Deferred.await(gate),
            Effect.sync(() => slow.push(e.data.n))
          )
        )
      )
      yield* trail.on(T, recording("fast", fast))
      for (let i = 0; i < 20; i++) trail.logUnsafe(T, { n: i })
      yield* settle
      assert.strictEqual(fast.length, 20, "the fast handler got everything")
      assert.strictEqual(slow.length, 0)
      const s = trail.statsUnsafe().types["mb.Slow@1"]!.handlers.slow!
      assert.strictEqual(s.accepted, 20)
      assert.strictEqual(s.processed, 0)
      yield* Deferred.succeed(gate, undefined)
      yield* trail.flush
      assert.deepStrictEqual(
        slow,
        Array.from({ length: 20 }, (_, i) => i)
      )
    })
  )

  it.effect("a full must handler holds its type's actor back (backpressure), and nothing accepted is lost", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const fast: Array<number> = []
      const slow: Array<number> = []
      const T = EventType.make("mb.Back", 1, N, {
        batch: { maxSize: 4, lingerMs: 0 },
        mailbox: { capacity: 8, overflow: "backpressure" }
      })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        T,
        Handler.make<{ readonly n: number }>(
          "slow",
          (e) =>
            Effect.andThen(
              Deferred.await(gate),
              Effect.sync(() => slow.push(e.data.n))
            ),
          { mailbox: { capacity: 5 }, maxBatch: 1 }
        )
      )
      yield* trail.on(T, recording("fast", fast))
      const results: Array<string> = []
      for (let i = 0; i < 40; i++) {
        results.push(trail.logUnsafe(T, { n: i }))
        yield* settle
      }
      const accepted = results.filter((r) => r === "accepted").length
      const full = results.filter((r) => r === "full").length
      assert.strictEqual(accepted + full, 40)
      assert.isAbove(full, 0, "the type's mailbox filled up behind the full handler")
      const before = trail.statsUnsafe().types["mb.Back@1"]!
      // slow: 1 taken (stuck) + 5 queued; the type holds the rest of what it accepted
      assert.strictEqual(before.handlers.slow!.accepted, 6)
      assert.strictEqual(before.handlers.slow!.dropped.overflow, 0)
      assert.strictEqual(before.handlers.slow!.refused.full, 0, "dispatch never overran the handler's mailbox")
      assert.strictEqual(before.queued + before.inFlight + before.processed, accepted)
      assert.strictEqual(before.refused.full, full)
      checkAll(trail)
      yield* Deferred.succeed(gate, undefined)
      yield* trail.flush
      const want = results.flatMap((r, i) => (r === "accepted" ? [i] : []))
      assert.deepStrictEqual(slow, want)
      assert.deepStrictEqual(fast, want)
      checkAll(trail)
    })
  )

  it.effect("a droppable type's full handler drops (counted) and does not hold the type back", () =>
    Effect.gen(function* () {
      const gate = yield* Deferred.make<void>()
      const fast: Array<number> = []
      const T = EventType.make("mb.Drop", 1, N, {
        delivery: "droppable",
        batch: { maxSize: 4, lingerMs: 0 },
        mailbox: { capacity: 8 }
      })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        T,
        Handler.make("slow", () => Deferred.await(gate), { mailbox: { capacity: 3 }, maxBatch: 1 })
      )
      yield* trail.on(T, recording("fast", fast))
      for (let i = 0; i < 30; i++) {
        assert.strictEqual(trail.logUnsafe(T, { n: i }), "accepted")
        yield* settle
      }
      const s = trail.statsUnsafe().types["mb.Drop@1"]!
      assert.strictEqual(fast.length, 30)
      assert.strictEqual(s.handlers.slow!.accepted, 30)
      assert.strictEqual(s.handlers.slow!.dropped.overflow, 30 - 1 - 3)
      checkAll(trail)
      yield* Deferred.succeed(gate, undefined)
      yield* trail.flush
      checkAll(trail)
    })
  )

  it.effect("a must type's handler cannot drop: a dropping overflow is refused when it is added", () =>
    Effect.gen(function* () {
      const T = EventType.make("mb.MustDrop", 1, N)
      const trail = yield* Trail.make({ source: "t", types: [T] })
      const exit = yield* Effect.exit(
        trail.on(
          T,
          Handler.make("lossy", () => Effect.void, { mailbox: { overflow: "dropOldest" } })
        )
      )
      assert.isTrue(exit._tag === "Failure")
      const error = yield* Effect.flip(
        trail.on(
          T,
          Handler.make("lossy", () => Effect.void, { mailbox: { overflow: "dropOldest" } })
        )
      )
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual(
        error.message,
        `handler "lossy" of mb.MustDrop@1: a must type is never dropped: the handler's mailbox overflow must be "backpressure", not "dropOldest"`
      )
      assert.deepStrictEqual(trail.registry.handlers(T), [], "nothing registered")
    })
  )
})

describe("Handlers: supervision", () => {
  it.effect(
    "restart rebuilds the state after the backoff; past the intensity the handler is stopped and escalated",
    () =>
      Effect.gen(function* () {
        let starts = 0
        const handled: Array<number> = []
        const escalations: Array<Supervisor.EscalatedData> = []
        const other: Array<number> = []
        const T = EventType.make("sup.Restart", 1, N, { batch: { lingerMs: 0 } })
        const trail = yield* Trail.make({ source: "t", types: [T] })
        yield* trail.on(
          Supervisor.Escalated,
          Handler.make<Supervisor.EscalatedData>("watch", (e) =>
            Effect.sync(() => {
              escalations.push(e.data)
            })
          )
        )
        yield* trail.on(
          T,
          Handler.stateful<{ readonly n: number }>(
            "poisoned",
            Effect.sync(() => {
              starts++
              return (e: Envelope<{ readonly n: number }>) =>
                e.data.n < 0
                  ? Effect.fail(new Error("poison"))
                  : Effect.sync(() => {
                      handled.push(e.data.n)
                    })
            }),
            {
              retry: Schedule.recurs(0),
              supervisor: {
                strategy: "restart",
                maxRestarts: 2,
                windowMs: 1_000,
                backoff: Schedule.spaced("100 millis")
              }
            }
          )
        )
        yield* trail.on(T, recording("other", other))
        trail.logUnsafe(T, { n: 1 })
        trail.logUnsafe(T, { n: -1 })
        trail.logUnsafe(T, { n: 2 })
        yield* settle
        assert.strictEqual(starts, 1)
        assert.deepStrictEqual(handled, [1])
        yield* TestClock.adjust(99)
        yield* settle
        assert.strictEqual(starts, 1, "no restart before the backoff")
        yield* TestClock.adjust(1)
        yield* settle
        assert.strictEqual(starts, 2, "restarted after 100 ms")
        const h = () => trail.statsUnsafe().types["sup.Restart@1"]!.handlers.poisoned!
        assert.isFalse(h().stopped)
        // the second restart, and at once the third failure within the window: stopped, escalated
        yield* TestClock.adjust(100)
        yield* settle
        assert.strictEqual(starts, 3)
        yield* TestClock.adjust(1_000)
        yield* settle
        assert.strictEqual(starts, 3, "no third restart")
        assert.isTrue(h().stopped)
        assert.strictEqual(h().restarts, 2)
        assert.strictEqual(h().failures, 3)
        yield* trail.flush
        yield* trail.flush // the escalation event is logged while the first flush runs
        assert.strictEqual(escalations.length, 1)
        const e = escalations[0]!
        assert.strictEqual(e.child, "sup.Restart@1/poisoned")
        assert.strictEqual(e.reason, "intensity")
        assert.strictEqual(e.restarts, 2)
        assert.strictEqual(e.maxRestarts, 2)
        assert.strictEqual(e.windowMs, 1_000)
        assert.include(e.cause, "poison")
        // the stopped handler takes no more events: must ones become dead letters, counted
        trail.logUnsafe(T, { n: 3 })
        yield* trail.flush
        assert.deepStrictEqual(handled, [1], "nothing after the stop")
        assert.deepStrictEqual(other, [1, -1, 2, 3], "the other handler is not affected")
        const stats = h()
        assert.strictEqual(stats.accepted, 4)
        assert.strictEqual(stats.processed, 1)
        assert.strictEqual(stats.deadLettered, 3)
        identity(stats)
        const letters = trail.deadLettersUnsafe().filter((l) => l.handler === "poisoned")
        assert.deepStrictEqual(
          letters.flatMap((l) => l.events.map((ev) => (ev.data as { n: number }).n)),
          [-1, 2, 3]
        )
        // [-1, 2] given up when it stopped (1 was handled before), then [3] on arrival
        assert.deepStrictEqual(
          letters.map((l) => l.reason),
          ["stopped", "stopped"]
        )
        assert.isTrue(letters.every((l) => String(l.cause).includes("poison")))
      })
  )

  it.effect("restart: a transient failure is retried with fresh state and the event is handled", () =>
    Effect.gen(function* () {
      let starts = 0
      let failOnce = true
      const seen: Array<[number, number]> = []
      const T = EventType.make("sup.Transient", 1, N, { batch: { lingerMs: 0 } })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        T,
        Handler.stateful<{ readonly n: number }>(
          "stateful",
          Effect.sync(() => {
            const generation = ++starts
            return (e: Envelope<{ readonly n: number }>) =>
              Effect.suspend(() => {
                if (failOnce && e.data.n === 2) {
                  failOnce = false
                  return Effect.fail(new Error("transient"))
                }
                seen.push([generation, e.data.n])
                return Effect.void
              })
          }),
          { retry: Schedule.recurs(0), supervisor: { strategy: "restart", backoff: Schedule.spaced("10 millis") } }
        )
      )
      for (let i = 1; i <= 3; i++) trail.logUnsafe(T, { n: i })
      yield* advancing(trail.flush, 10)
      assert.deepStrictEqual(seen, [
        [1, 1],
        [2, 2],
        [2, 3]
      ])
      const h = trail.statsUnsafe().types["sup.Transient@1"]!.handlers.stateful!
      assert.strictEqual(h.processed, 3)
      assert.strictEqual(h.restarts, 1)
      assert.strictEqual(h.deadLettered, 0)
    })
  )

  it.effect("stop: the first exhausted event stops the handler and is escalated with reason strategy", () =>
    Effect.gen(function* () {
      const escalations: Array<Supervisor.EscalatedData> = []
      const T = EventType.make("sup.Stop", 1, N, { delivery: "droppable", batch: { lingerMs: 0 } })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        Supervisor.Escalated,
        Handler.make<Supervisor.EscalatedData>("watch", (e) => Effect.sync(() => escalations.push(e.data)))
      )
      yield* trail.on(
        T,
        Handler.make("brittle", () => Effect.die("boom"), {
          retry: Schedule.recurs(0),
          supervisor: { strategy: "stop" }
        })
      )
      for (let i = 0; i < 5; i++) trail.logUnsafe(T, { n: i })
      yield* trail.flush
      yield* trail.flush // the escalation event is logged while the first flush runs
      const h = trail.statsUnsafe().types["sup.Stop@1"]!.handlers.brittle!
      assert.isTrue(h.stopped)
      assert.strictEqual(h.failures, 1)
      // droppable: what it cannot take is dropped (failed), not dead-lettered
      assert.strictEqual(h.dropped.failed, 5)
      assert.strictEqual(h.deadLettered, 0)
      assert.strictEqual(trail.deadLettersUnsafe().length, 0)
      assert.strictEqual(escalations.length, 1)
      assert.strictEqual(escalations[0]!.reason, "strategy")
      assert.strictEqual(escalations[0]!.child, "sup.Stop@1/brittle")
    })
  )

  it.effect("resume skips just the failed event; a start that fails counts as a failure", () =>
    Effect.gen(function* () {
      let starts = 0
      const T = EventType.make("sup.BadStart", 1, N, { batch: { lingerMs: 0 } })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      const got: Array<number> = []
      yield* trail.on(
        T,
        Handler.stateful<{ readonly n: number }>(
          "lazy",
          Effect.suspend(() => {
            starts++
            if (starts === 1) return Effect.fail(new Error("cannot start"))
            return Effect.succeed((e: Envelope<{ readonly n: number }>) => Effect.sync(() => got.push(e.data.n)))
          }),
          { retry: Schedule.recurs(0) }
        )
      )
      for (let i = 0; i < 3; i++) trail.logUnsafe(T, { n: i })
      yield* trail.flush
      assert.deepStrictEqual(got, [1, 2])
      const h = trail.statsUnsafe().types["sup.BadStart@1"]!.handlers.lazy!
      assert.strictEqual(h.deadLettered, 1)
      assert.strictEqual(h.processed, 2)
      const letter = trail.deadLettersUnsafe()[0]!
      assert.include(String(letter.cause), "cannot start")
      assert.deepStrictEqual(
        letter.events.map((e) => e.data),
        [{ n: 0 }]
      )
    })
  )
})

describe("Handlers: flush and shutdown", () => {
  it.effect("flush waits until the handlers have settled every event accepted before it", () =>
    Effect.gen(function* () {
      const got: Array<number> = []
      const T = EventType.make("fl.T", 1, N, { batch: { maxSize: 8, lingerMs: 50 } })
      const trail = yield* Trail.make({ source: "t", types: [T] })
      yield* trail.on(
        T,
        Handler.make<{ readonly n: number }>("delayed", (e) =>
          Effect.andThen(
            Effect.sleep(30),
            Effect.sync(() => got.push(e.data.n))
          )
        )
      )
      for (let i = 0; i < 5; i++) trail.logUnsafe(T, { n: i })
      const flush = yield* Effect.forkChild(trail.flush)
      yield* settle
      yield* TestClock.adjust(50) // the type's linger: dispatched now
      yield* settle
      assert.isUndefined(flush.pollUnsafe(), "the handler has not handled them yet")
      yield* advancing(Fiber.join(flush), 30)
      assert.deepStrictEqual(got, [0, 1, 2, 3, 4])
    })
  )

  it.effect(
    "shutdown delivers to the handlers; a stuck handler's must events become dead letters at the deadline",
    () =>
      Effect.gen(function* () {
        const got: Array<number> = []
        const T = EventType.make("sd.T", 1, N, { batch: { lingerMs: 0 } })
        const trail = yield* Trail.make({ source: "t", types: [T], shutdownTimeoutMs: 1_000 })
        yield* trail.on(T, recording("ok", got))
        yield* trail.on(
          T,
          Handler.make("stuck", () => Effect.never, { timeoutMs: 60_000 })
        )
        for (let i = 0; i < 10; i++) trail.logUnsafe(T, { n: i })
        const stats = yield* advancing(trail.shutdown, 100)
        assert.deepStrictEqual(
          got,
          Array.from({ length: 10 }, (_, i) => i)
        )
        const t = stats.types["sd.T@1"]!
        identity(t)
        assert.strictEqual(t.processed, 10)
        const stuck = t.handlers.stuck!
        identity(stuck)
        assert.strictEqual(stuck.deadLettered, 10)
        assert.strictEqual(stuck.queued + stuck.inFlight, 0)
        const letters = trail.deadLettersUnsafe().filter((l) => l.handler === "stuck")
        assert.strictEqual(
          letters.reduce((n, l) => n + l.events.length, 0),
          10
        )
        assert.isTrue(letters.every((l) => l.reason === "shutdown"))
        assert.isTrue(
          letters.some((l) => String(l.cause).includes(new Errors.ShutdownDeadline({ type: "x", timeoutMs: 1 })._tag))
        )
      })
  )
})
