import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schedule, Schema } from "effect"
import { TestClock } from "effect/testing"
import { assign, cancel, emit, raise, sendTo, setup, spawnChild } from "xstate"
import { Errors, EventType, Machine, type Supervisor, Trail } from "../src/index.ts"

/** Lets every ready fiber run (actors and timers are woken through the scheduler). */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

/** Moves the test clock, then lets what woke up run. */
const advance = (ms: number) => Effect.andThen(TestClock.adjust(ms), settle)

/** No retries and a deterministic restart backoff: every test decides exactly when things happen. */
const quiet = { retry: Schedule.recurs(0), onFailure: () => Effect.void } as const

type CounterEvent = { type: "inc"; by: number } | { type: "reset" } | { type: "poison" }

/** A counter whose `record` action (an Effect, given in the actor's options) sees every change. */
const counter = setup({
  types: { context: {} as { n: number; log: ReadonlyArray<number> }, events: {} as CounterEvent },
  actions: { record: () => {}, poison: () => {} }
}).createMachine({
  id: "counter",
  context: { n: 0, log: [] },
  on: {
    inc: {
      actions: [
        assign({
          n: ({ context, event }) => context.n + event.by,
          log: ({ context, event }) => [...context.log, event.by]
        }),
        "record"
      ]
    },
    reset: { actions: assign({ n: 0 }) },
    poison: { actions: [assign({ n: ({ context }) => context.n + 1000 }), "poison"] }
  }
})

/** A machine with a delayed transition, a delayed self-send that can be cancelled, and a re-entrable wait. */
const timed = setup({
  types: {
    context: {} as { pings: number },
    events: {} as
      | { type: "arm" }
      | { type: "disarm" }
      | { type: "ping" }
      | { type: "leave" }
      | { type: "back" }
      | { type: "slow" }
      | { type: "echo" }
  },
  actions: { slow: () => {} }
}).createMachine({
  id: "timed",
  context: { pings: 0 },
  initial: "waiting",
  on: {
    arm: { actions: raise({ type: "ping" }, { id: "ping", delay: 300 }) },
    disarm: { actions: cancel("ping") },
    ping: { actions: assign({ pings: ({ context }) => context.pings + 1 }) },
    echo: { actions: sendTo(({ self }) => self, { type: "ping" }, { delay: 50 }) },
    slow: { actions: "slow" }
  },
  states: {
    waiting: { after: { 1000: "late" }, on: { leave: "away" } },
    away: { on: { back: "waiting" } },
    late: {}
  }
})

describe("Machine: transitions", () => {
  it.effect("applies every message in order, context and Effect actions alike", () =>
    Effect.gen(function* () {
      const seen: Array<number> = []
      const actor = yield* Machine.make(counter, {
        ...quiet,
        actions: { record: ({ context }) => Effect.sync(() => seen.push(context.n)) }
      })
      let expected = 0
      const sums: Array<number> = []
      for (let i = 1; i <= 500; i++) {
        assert.strictEqual(actor.send({ type: "inc", by: i }), "accepted")
        expected += i
        sums.push(expected)
        if (i % 97 === 0) yield* settle // several batches, of several sizes
      }
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, expected)
      assert.deepStrictEqual(
        actor.snapshot.context.log,
        Array.from({ length: 500 }, (_, i) => i + 1)
      )
      assert.deepStrictEqual(seen, sums, "each action saw the context as assigned just before it, in order")
      const stats = actor.stats()
      assert.strictEqual(stats.accepted, 500)
      assert.strictEqual(stats.processed, 500)
      assert.strictEqual(stats.queued + stats.inFlight + stats.deadLettered, 0)
    })
  )

  it.effect("runs the machine's own implementations: an Effect is run, a plain function just runs", () =>
    Effect.gen(function* () {
      const calls: Array<string> = []
      const machine = setup({
        types: { events: {} as { type: "go" } },
        actions: {
          plain: () => {
            calls.push("plain")
          },
          effectful: () => Effect.sync(() => calls.push("effect"))
        }
      }).createMachine({ on: { go: { actions: ["plain", "effectful", "plain"] } } })
      const actor = yield* Machine.make(machine, quiet)
      actor.send({ type: "go" })
      yield* settle
      assert.deepStrictEqual(calls, ["plain", "effect", "plain"])
    })
  )

  it.effect("a self-send is queued after the messages already waiting, once its transition commits", () =>
    Effect.gen(function* () {
      const order: Array<string> = []
      const machine = setup({
        types: { events: {} as { type: "a" } | { type: "b" } | { type: "c" } }
      }).createMachine({
        on: {
          a: { actions: [() => order.push("a"), sendTo(({ self }) => self, { type: "c" })] },
          b: { actions: () => order.push("b") },
          c: { actions: () => order.push("c") }
        }
      })
      const actor = yield* Machine.make(machine, quiet)
      actor.send({ type: "a" })
      actor.send({ type: "b" })
      yield* settle
      assert.deepStrictEqual(order, ["a", "b", "c"])
    })
  )

  it.effect("the initial state's entry actions run at start", () =>
    Effect.gen(function* () {
      const entered: Array<number> = []
      const machine = setup({ types: { input: {} as { at: number }, context: {} as { at: number } } }).createMachine({
        context: ({ input }) => ({ at: input.at }),
        entry: ({ context }) => Effect.sync(() => entered.push(context.at))
      })
      const actor = yield* Machine.make(machine, { ...quiet, input: { at: 7 } })
      assert.deepStrictEqual(entered, [7])
      assert.strictEqual(actor.snapshot.context.at, 7)
    })
  )

  it.effect('a full mailbox refuses with "full" (counted); offer waits for room', () =>
    Effect.gen(function* () {
      const actor = yield* Machine.make(counter, { ...quiet, capacity: 2 })
      assert.strictEqual(actor.send({ type: "inc", by: 1 }), "accepted")
      assert.strictEqual(actor.send({ type: "inc", by: 1 }), "accepted")
      assert.strictEqual(actor.send({ type: "inc", by: 1 }), "full")
      assert.strictEqual(actor.stats().refused.full, 1)
      const offered = yield* Effect.forkChild(actor.offer({ type: "inc", by: 10 }))
      yield* settle
      assert.deepStrictEqual(offered.pollUnsafe(), Exit.succeed("accepted" as const))
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, 12)
      yield* actor.stop(100)
      assert.strictEqual(actor.send({ type: "inc", by: 1 }), "closed")
      const closed = yield* Effect.flip(actor.offer({ type: "inc", by: 1 }))
      assert.instanceOf(closed, Errors.MachineClosed)
      assert.strictEqual(closed.code, "CAIRN_MACHINE_CLOSED")
    })
  )
})

describe("Machine: delays under TestClock", () => {
  it.effect("an `after` transition fires only once the clock passes its delay", () =>
    Effect.gen(function* () {
      const actor = yield* Machine.make(timed, quiet)
      yield* settle
      assert.strictEqual(actor.stats().timers, 1)
      yield* advance(999)
      assert.strictEqual(actor.snapshot.value, "waiting")
      yield* advance(1)
      assert.strictEqual(actor.snapshot.value, "late")
      assert.strictEqual(actor.stats().timers, 0)
    })
  )

  it.effect("leaving the state cancels its `after` timer", () =>
    Effect.gen(function* () {
      const actor = yield* Machine.make(timed, quiet)
      actor.send({ type: "leave" })
      yield* settle
      assert.strictEqual(actor.stats().timers, 0)
      yield* advance(5_000)
      assert.strictEqual(actor.snapshot.value, "away")
    })
  )

  it.effect("delayed raise and sendTo to itself; cancel stops a pending one", () =>
    Effect.gen(function* () {
      const actor = yield* Machine.make(timed, quiet)
      actor.send({ type: "leave" }) // no `after` in the way
      actor.send({ type: "arm" })
      actor.send({ type: "echo" })
      yield* advance(49)
      assert.strictEqual(actor.snapshot.context.pings, 0)
      yield* advance(1)
      assert.strictEqual(actor.snapshot.context.pings, 1, "the echo, after 50 ms")
      yield* advance(250)
      assert.strictEqual(actor.snapshot.context.pings, 2, "the raise, after 300 ms")
      actor.send({ type: "arm" })
      yield* advance(100)
      actor.send({ type: "disarm" })
      yield* advance(1_000)
      assert.strictEqual(actor.snapshot.context.pings, 2, "cancelled")
      assert.strictEqual(actor.stats().timers, 0)
    })
  )

  it.effect("scheduling the same id again replaces the pending timer", () =>
    Effect.gen(function* () {
      const actor = yield* Machine.make(timed, quiet)
      actor.send({ type: "leave" })
      actor.send({ type: "arm" })
      yield* advance(200)
      actor.send({ type: "arm" })
      yield* advance(200)
      assert.strictEqual(actor.snapshot.context.pings, 0, "the first was replaced")
      yield* advance(100)
      assert.strictEqual(actor.snapshot.context.pings, 1)
      yield* advance(1_000)
      assert.strictEqual(actor.snapshot.context.pings, 1)
    })
  )

  it.effect("a timer that fired but was cancelled before its event was processed delivers nothing", () =>
    Effect.gen(function* () {
      const actor = yield* Machine.make(timed, {
        ...quiet,
        actions: { slow: () => Effect.sleep(1_500) }
      })
      // one batch: the slow action holds the actor past the `after` delay; meanwhile
      // the timer fires and its event is queued behind leave/back
      actor.send({ type: "slow" })
      actor.send({ type: "leave" })
      actor.send({ type: "back" })
      yield* settle
      yield* advance(1_500)
      // leave cancelled the fired timer, back armed a new one (due at 2_500): the old event is stale
      assert.strictEqual(actor.snapshot.value, "waiting")
      assert.strictEqual(actor.stats().timers, 1)
      yield* advance(999)
      assert.strictEqual(actor.snapshot.value, "waiting")
      yield* advance(1)
      assert.strictEqual(actor.snapshot.value, "late")
    })
  )
})

describe("Machine: persistence", () => {
  it.effect("persist, start a new actor from it: same state, timers re-armed, and it goes on", () =>
    Effect.gen(function* () {
      const first = yield* Machine.make(timed, quiet)
      first.send({ type: "ping" })
      first.send({ type: "ping" })
      yield* advance(400)
      // through JSON, as a store would keep it
      const persisted = JSON.parse(JSON.stringify(first.persisted())) as Machine.Persisted
      assert.deepStrictEqual(persisted.timers, [
        { id: "xstate.after.1000.timed.waiting", event: { type: "xstate.after.1000.timed.waiting" }, dueAt: 1_000 }
      ])
      yield* first.stop(100)
      const second = yield* Machine.make(timed, { ...quiet, snapshot: persisted })
      assert.strictEqual(second.snapshot.value, "waiting")
      assert.strictEqual(second.snapshot.context.pings, 2)
      second.send({ type: "ping" })
      yield* advance(599)
      assert.strictEqual(second.snapshot.value, "waiting", "the timer keeps its due time")
      assert.strictEqual(second.snapshot.context.pings, 3)
      yield* advance(1)
      assert.strictEqual(second.snapshot.value, "late")
    })
  )

  it.effect("a plain xstate persisted snapshot (no timers) restores too", () =>
    Effect.gen(function* () {
      const first = yield* Machine.make(counter, quiet)
      first.send({ type: "inc", by: 5 })
      yield* settle
      const { timers: _timers, ...plain } = first.persisted()
      const second = yield* Machine.make(counter, { ...quiet, snapshot: plain as Machine.Persisted })
      second.send({ type: "inc", by: 1 })
      yield* settle
      assert.strictEqual(second.snapshot.context.n, 6)
    })
  )

  it.effect("onSnapshot gets the persisted snapshot after each batch that changed it", () =>
    Effect.gen(function* () {
      const saved: Array<number> = []
      const actor = yield* Machine.make(counter, {
        ...quiet,
        onSnapshot: (p) => Effect.sync(() => saved.push((p as unknown as { context: { n: number } }).context.n))
      })
      actor.send({ type: "inc", by: 1 })
      actor.send({ type: "inc", by: 2 })
      yield* settle
      actor.send({ type: "inc", by: 3 })
      yield* settle
      assert.deepStrictEqual(saved, [3, 6])
    })
  )

  it.effect("a failing onSnapshot fails the batch; its retry runs only onSnapshot again", () =>
    Effect.gen(function* () {
      let calls = 0
      const saved: Array<number> = []
      const actor = yield* Machine.make(counter, {
        ...quiet,
        retry: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 1 })),
        onSnapshot: (p) =>
          Effect.suspend(() =>
            calls++ === 0
              ? Effect.fail("store down")
              : Effect.sync(() => saved.push((p as unknown as { context: { n: number } }).context.n))
          )
      })
      actor.send({ type: "inc", by: 1 })
      actor.send({ type: "inc", by: 2 })
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, 3)
      assert.deepStrictEqual(saved, [])
      yield* advance(10)
      assert.deepStrictEqual(saved, [3])
      assert.strictEqual(actor.snapshot.context.n, 3, "the messages were not applied twice")
      assert.strictEqual(actor.stats().processed, 2)
    })
  )

  it.effect("a snapshot that does not restore fails with MachineSnapshotInvalid", () =>
    Effect.gen(function* () {
      const good = (yield* Machine.make(timed, quiet)).persisted()
      const cases: ReadonlyArray<[unknown, string]> = [
        [{ ...good, value: "nowhere" }, "nowhere"],
        [42, "not an object"],
        [{ ...good, timers: [{ event: "ping", dueAt: 1 }] }, "timer"],
        [{ ...good, timers: {} }, "timers is not an array"]
      ]
      for (const [snapshot, reason] of cases) {
        const error = yield* Effect.flip(Machine.make(timed, { ...quiet, snapshot: snapshot as Machine.Persisted }))
        assert.instanceOf(error, Errors.MachineSnapshotInvalid)
        assert.strictEqual((error as Errors.MachineSnapshotInvalid).code, "CAIRN_MACHINE_SNAPSHOT")
        assert.include(error.message, reason)
        assert.include(error.message, "timed")
      }
    })
  )
})

/** A counter whose `poison` action fails while `failing()` says so. */
const poisoned = (failing: () => boolean, attempts: { n: number }) => ({
  actions: {
    poison: () =>
      Effect.suspend(() => {
        attempts.n++
        return failing() ? Effect.fail("poisoned") : Effect.void
      })
  }
})

describe("Machine: supervision", () => {
  it.effect("resume: the failed message is dead-lettered, not applied, and later messages go on", () =>
    Effect.gen(function* () {
      const attempts = { n: 0 }
      const letters: Array<[ReadonlyArray<CounterEvent>, string, unknown]> = []
      const actor = yield* Machine.make(counter, {
        ...quiet,
        ...poisoned(() => true, attempts),
        retry: Schedule.spaced("10 millis").pipe(Schedule.upTo({ times: 2 })),
        onDeadLetter: (events, cause, reason) => letters.push([events, reason, Cause.squash(cause)])
      })
      actor.send({ type: "inc", by: 1 })
      actor.send({ type: "poison" })
      actor.send({ type: "inc", by: 2 })
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, 1, "waiting for a retry: nothing after the failure ran")
      yield* advance(10)
      yield* advance(10)
      assert.strictEqual(attempts.n, 3)
      assert.strictEqual(actor.snapshot.context.n, 3, "the poison's assign was never committed")
      assert.strictEqual(letters.length, 1)
      const [events, reason, error] = letters[0]!
      assert.deepStrictEqual(events, [{ type: "poison" }])
      assert.strictEqual(reason, "retriesExhausted")
      assert.instanceOf(error, Errors.MachineActionFailed)
      const failed = error as Errors.MachineActionFailed
      assert.strictEqual(failed.code, "CAIRN_MACHINE_ACTION")
      assert.strictEqual(failed.action, "poison")
      assert.strictEqual(failed.cause, "poisoned")
      assert.strictEqual(failed.message, "action poison of machine counter failed: poisoned")
      const stats = actor.stats()
      assert.strictEqual(stats.processed, 2)
      assert.strictEqual(stats.deadLettered, 1)
      assert.strictEqual(stats.failures, 3)
      actor.send({ type: "inc", by: 4 })
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, 7)
    })
  )

  it.effect("restart: the state is rebuilt from the initial state and the failed batch runs again", () =>
    Effect.gen(function* () {
      const attempts = { n: 0 }
      const actor = yield* Machine.make(counter, {
        ...quiet,
        ...poisoned(() => attempts.n === 1, attempts),
        supervisor: { strategy: "restart", maxRestarts: 3, windowMs: 1_000, backoff: Schedule.spaced("10 millis") }
      })
      actor.send({ type: "inc", by: 5 })
      yield* settle
      actor.send({ type: "inc", by: 1 })
      actor.send({ type: "poison" })
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, 6, "the batch got as far as the poison")
      yield* advance(10)
      assert.strictEqual(attempts.n, 2)
      // rebuilt from the initial state (n = 0); the failed batch (inc 1, poison) ran again
      assert.strictEqual(actor.snapshot.context.n, 1_001)
      assert.deepStrictEqual(actor.snapshot.context.log, [1])
      const stats = actor.stats()
      assert.strictEqual(stats.restarts, 1)
      assert.strictEqual(stats.processed, 3)
      assert.isFalse(stats.stopped)
    })
  )

  it.effect("restart with onSnapshot: the state is rebuilt from the last snapshot saved", () =>
    Effect.gen(function* () {
      const attempts = { n: 0 }
      const saved: Array<Machine.Persisted> = []
      const actor = yield* Machine.make(counter, {
        ...quiet,
        ...poisoned(() => attempts.n === 1, attempts),
        supervisor: { strategy: "restart", backoff: Schedule.spaced("10 millis") },
        onSnapshot: (p) => Effect.sync(() => saved.push(p))
      })
      actor.send({ type: "inc", by: 5 })
      yield* settle
      actor.send({ type: "inc", by: 1 })
      actor.send({ type: "poison" })
      yield* advance(10)
      assert.deepStrictEqual(actor.snapshot.context.log, [5, 1])
      assert.strictEqual(actor.snapshot.context.n, 1_006)
      assert.strictEqual(saved.length, 2)
    })
  )

  it.effect("restart clears the timers of the discarded state and re-enters the initial one", () =>
    Effect.gen(function* () {
      let fail = true
      const machine = timed.provide({
        actions: {
          slow: () =>
            Effect.suspend(() => {
              if (!fail) return Effect.void
              fail = false
              return Effect.fail("once")
            })
        }
      })
      const actor = yield* Machine.make(machine, {
        ...quiet,
        supervisor: { strategy: "restart", backoff: Schedule.spaced("10 millis") }
      })
      actor.send({ type: "leave" })
      actor.send({ type: "arm" })
      yield* settle
      assert.strictEqual(actor.stats().timers, 1, "the ping, in `away`")
      actor.send({ type: "slow" })
      yield* advance(10)
      assert.strictEqual(actor.stats().restarts, 1)
      // initial state again (with its `after` timer), then leave, arm, slow were replayed
      assert.strictEqual(actor.snapshot.value, "waiting")
      yield* advance(300)
      assert.strictEqual(actor.snapshot.context.pings, 0, "the old ping was cleared")
      yield* advance(700)
      assert.strictEqual(actor.snapshot.value, "late")
    })
  )

  it.effect("past the restart intensity the actor is stopped; onStop gets the escalation", () =>
    Effect.gen(function* () {
      let failing = true
      const attempts = { n: 0 }
      const stops: Array<Supervisor.EscalatedData> = []
      const letters: Array<[ReadonlyArray<CounterEvent>, string]> = []
      const actor = yield* Machine.make(counter, {
        ...quiet,
        ...poisoned(() => failing, attempts),
        supervisor: { strategy: "restart", maxRestarts: 2, windowMs: 1_000, backoff: Schedule.spaced("10 millis") },
        onStop: (e) => stops.push(e),
        onDeadLetter: (events, _cause, reason) => letters.push([events, reason])
      })
      // one poison, healed by its restart; far apart, the window forgets each restart
      actor.send({ type: "poison" })
      yield* settle
      failing = false
      yield* advance(10)
      failing = true
      yield* advance(2_000)
      assert.strictEqual(actor.stats().restarts, 1)
      // within one window: two restarts, then the third failure stops it
      actor.send({ type: "poison" })
      yield* settle
      assert.strictEqual(actor.stats().restarts, 2)
      yield* advance(10)
      assert.strictEqual(actor.stats().restarts, 3)
      assert.deepStrictEqual(stops, [])
      yield* advance(10)
      assert.strictEqual(attempts.n, 5, "1 + 1 healed, then 3 in the window")
      assert.strictEqual(actor.stats().restarts, 3)
      assert.strictEqual(stops.length, 1)
      const escalated = stops[0]!
      assert.strictEqual(escalated.child, "counter")
      assert.strictEqual(escalated.reason, "intensity")
      assert.strictEqual(escalated.restarts, 2)
      assert.strictEqual(escalated.maxRestarts, 2)
      assert.strictEqual(escalated.windowMs, 1_000)
      assert.include(escalated.cause, "poisoned")
      assert.isTrue(actor.stats().stopped)
      // a stopped actor processes nothing more: messages are dead letters at once
      actor.send({ type: "inc", by: 1 })
      yield* settle
      assert.deepStrictEqual(letters, [
        [[{ type: "poison" }], "stopped"],
        [[{ type: "inc", by: 1 }], "stopped"]
      ])
      const stats = actor.stats()
      assert.strictEqual(stats.deadLettered, 2)
      assert.strictEqual(stats.queued + stats.inFlight, 0)
    })
  )

  it.effect("a transition commits as a whole: a failed action leaves neither snapshot nor timers", () =>
    Effect.gen(function* () {
      const machine = setup({
        types: { context: {} as { n: number }, events: {} as { type: "go" } | { type: "tick" } },
        actions: { boom: () => Effect.fail("boom") }
      }).createMachine({
        context: { n: 0 },
        on: {
          go: { actions: [assign({ n: 1 }), raise({ type: "tick" }, { delay: 10 }), "boom"] },
          tick: { actions: assign({ n: 2 }) }
        }
      })
      const actor = yield* Machine.make(machine, quiet)
      actor.send({ type: "go" })
      yield* settle
      assert.strictEqual(actor.snapshot.context.n, 0)
      assert.strictEqual(actor.stats().timers, 0)
      yield* advance(100)
      assert.strictEqual(actor.snapshot.context.n, 0)
      assert.strictEqual(actor.stats().deadLettered, 1)
    })
  )

  it.effect("typed failures: a throwing transition, an emit that fails, a child actor", () =>
    Effect.gen(function* () {
      const causes: Array<unknown> = []
      const machine = setup({
        types: {
          context: {} as { n: number },
          events: {} as { type: "throw" } | { type: "emit" } | { type: "spawn" },
          emitted: {} as { type: "out" }
        }
      }).createMachine({
        context: { n: 0 },
        on: {
          throw: {
            actions: assign({
              n: () => {
                throw new Error("bad assign")
              }
            })
          },
          emit: { actions: emit({ type: "out" }) },
          spawn: { actions: spawnChild(setup({}).createMachine({})) }
        }
      })
      const actor = yield* Machine.make(machine, {
        ...quiet,
        emit: () => Effect.fail("emit failed"),
        onDeadLetter: (_events, cause) => causes.push(Cause.squash(cause))
      })
      actor.send({ type: "throw" })
      actor.send({ type: "emit" })
      actor.send({ type: "spawn" })
      yield* settle
      assert.instanceOf(causes[0], Errors.MachineTransitionFailed)
      const t = causes[0] as Errors.MachineTransitionFailed
      assert.strictEqual(t.code, "CAIRN_MACHINE_TRANSITION")
      assert.strictEqual(t.event, "throw")
      assert.strictEqual(t.message, "machine (machine) could not take event throw: bad assign")
      assert.instanceOf(causes[1], Errors.MachineActionFailed)
      assert.strictEqual((causes[1] as Errors.MachineActionFailed).action, "xstate.emit")
      assert.strictEqual((causes[1] as Errors.MachineActionFailed).cause, "emit failed")
      assert.instanceOf(causes[2], Errors.MachineActionFailed)
      assert.strictEqual((causes[2] as Errors.MachineActionFailed).action, "xstate.spawnChild")
      assert.include((causes[2] as Errors.MachineActionFailed).message, "not supported")
      assert.strictEqual(actor.snapshot.context.n, 0)
    })
  )
})

describe("Machine: subscriptions", () => {
  const Heartbeat = EventType.make("app.Heartbeat", 1, Schema.Struct({ ok: Schema.Boolean }), {
    batch: { maxSize: 16, lingerMs: 0 }
  })

  it.effect("a handler feeds trail events to the machine, type key as event type", () =>
    Effect.gen(function* () {
      const trail = yield* Trail.make({ source: "test", types: [Heartbeat] })
      const received: Array<Machine.TrailEvent> = []
      const machine = setup({
        types: { events: {} as Machine.TrailEvent<"app.Heartbeat@1", { readonly ok: boolean }> }
      }).createMachine({
        on: { "app.Heartbeat@1": { actions: ({ event }) => Effect.sync(() => received.push(event)) } }
      })
      const actor = yield* Machine.make(machine, { ...quiet, name: "beats" })
      yield* trail.on("app.Heartbeat", Machine.handler(actor))
      yield* advance(1_234)
      trail.logUnsafe(Heartbeat, { ok: true })
      trail.logUnsafe(Heartbeat, { ok: false })
      yield* trail.flush
      yield* settle
      assert.strictEqual(received.length, 2)
      const [first, second] = received
      assert.strictEqual(first!.type, "app.Heartbeat@1")
      assert.strictEqual(first!.source, "test")
      assert.strictEqual(first!.happenedAt, 1_234)
      assert.deepStrictEqual(first!.data, { ok: true })
      assert.deepStrictEqual(second!.data, { ok: false })
      assert.isTrue(first!.id < second!.id)
      assert.notProperty(first!, "parent")
    })
  )
})

describe("Machine: watchdog", () => {
  const Heartbeat = EventType.make("app.Heartbeat", 1, Schema.Struct({ ok: Schema.Boolean }), {
    batch: { maxSize: 16, lingerMs: 0 }
  })
  const beat = (at: number): Machine.TrailEvent => ({
    type: "app.Heartbeat@1",
    id: `id-${at}`,
    happenedAt: at,
    source: "test",
    data: { ok: true }
  })

  it.effect("emits after withinMs of silence, again every withinMs (missed counts), never while events arrive", () =>
    Effect.gen(function* () {
      const emitted: Array<Machine.WatchdogData> = []
      const actor = yield* Machine.make(Machine.watchdog({ name: "db", expected: "app.Heartbeat", withinMs: 1_000 }), {
        ...quiet,
        emit: (e) => Effect.sync(() => emitted.push(e.data))
      })
      for (let t = 900; t <= 9_000; t += 900) {
        yield* advance(900)
        actor.send(beat(t))
        yield* settle
      }
      assert.deepStrictEqual(emitted, [], "a heartbeat every 900 ms keeps it quiet")
      actor.send({ type: "app.Other@1" }) // other events change nothing
      yield* advance(999)
      assert.deepStrictEqual(emitted, [])
      yield* advance(1)
      const data = { watchdog: "db", expected: "app.Heartbeat", withinMs: 1_000, lastSeenAt: 9_000 }
      assert.deepStrictEqual(emitted, [{ ...data, missed: 1 }])
      yield* advance(1_000)
      yield* advance(1_000)
      assert.deepStrictEqual(emitted, [
        { ...data, missed: 1 },
        { ...data, missed: 2 },
        { ...data, missed: 3 }
      ])
      actor.send(beat(12_500))
      yield* settle
      assert.strictEqual(actor.snapshot.context.missed, 0)
      yield* advance(999)
      assert.strictEqual(emitted.length, 3)
      yield* advance(1)
      assert.deepStrictEqual(emitted[3], { ...data, lastSeenAt: 12_500, missed: 1 })
    })
  )

  it.effect("repeat: false emits once per silence; lastSeenAt is null before any event", () =>
    Effect.gen(function* () {
      const emitted: Array<Machine.WatchdogData> = []
      yield* Machine.make(
        Machine.watchdog({ name: "once", expected: "app.Heartbeat@1", withinMs: 100, repeat: false }),
        {
          ...quiet,
          emit: (e) => Effect.sync(() => emitted.push(e.data))
        }
      )
      yield* advance(100)
      yield* advance(1_000)
      assert.deepStrictEqual(emitted, [
        { watchdog: "once", expected: "app.Heartbeat@1", withinMs: 100, missed: 1, lastSeenAt: null }
      ])
    })
  )

  it("invalid watchdog options throw InvalidOptions", () => {
    assert.throws(() => Machine.watchdog({ name: "a b", expected: "x", withinMs: 1 }), Errors.InvalidOptions)
    assert.throws(() => Machine.watchdog({ name: "a", expected: "x", withinMs: 0 }), Errors.InvalidOptions)
    assert.throws(() => Machine.watchdog({ name: "a", expected: "", withinMs: 1 }), Errors.InvalidOptions)
  })

  it.effect("startWatchdog on a trail: heartbeats feed it, a silence logs a cairn.watchdog event", () =>
    Effect.gen(function* () {
      const logged: Array<Machine.WatchdogData> = []
      const trail = yield* Trail.make({
        source: "test",
        types: [Heartbeat, Trail.route(Machine.Watchdog, (batch) => Effect.sync(() => logged.push(...batch.data)))]
      })
      const actor = yield* Machine.startWatchdog(trail, { name: "db", expected: "app.Heartbeat", withinMs: 1_000 })
      assert.strictEqual(actor.name, "cairn.watchdog.db")
      for (let i = 0; i < 5; i++) {
        yield* advance(500)
        trail.logUnsafe(Heartbeat, { ok: true })
        yield* settle
      }
      assert.deepStrictEqual(logged, [])
      yield* advance(1_000)
      yield* trail.flush
      assert.deepStrictEqual(logged, [
        { watchdog: "db", expected: "app.Heartbeat", withinMs: 1_000, missed: 1, lastSeenAt: 2_500 }
      ])
    })
  )
})
