/**
 * Machines: an xstate v5 state machine as the behaviour of an actor.
 *
 * The actor's fiber owns the machine's snapshot. For each message it applies
 * xstate's pure `transition`, then runs the returned actions, in order, as
 * Effects: an action implementation that returns an Effect is run (one that
 * returns nothing just runs), `emit` goes to the `emit` option, `log` to Effect's
 * logger. Delayed events (`after`, `raise`/`sendTo` with a `delay`) are timers on
 * Effect's `Clock` (so `TestClock` drives them) that put the event into the actor's
 * own mailbox when they fire; `cancel` stops them. No xstate interpreter runs.
 *
 * A transition commits as a whole, or not at all: the snapshot advances, timers
 * start or stop and events sent to the machine itself are queued only once every
 * action of the transition succeeded. When an action fails, nothing of the
 * transition is kept and the message is retried (its Effects run again) on the
 * actor's schedule, then handed to its supervisor (resume, restart, stop) like any
 * actor's failure.
 *
 * The actor has a bounded mailbox (`send` refuses with `"full"`, `offer` waits for
 * room), exact accounting, and its snapshot can be persisted (`persisted()`, or the
 * `onSnapshot` hook after each batch) and an actor started again from it, timers
 * included. {@link handler} subscribes an actor to event types of a trail;
 * {@link watchdog} is a machine built this way that emits a `cairn.watchdog`
 * event when an expected event has not arrived in time.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Effect, type Fiber, Schedule, Schema, Scope } from "effect"
import {
  type AnyEventObject,
  type AnyMachineSnapshot,
  type AnyStateMachine,
  assign,
  createActor,
  type EmittedFrom,
  type EventFromLogic,
  type EventObject,
  emit,
  type InputFrom,
  initialTransition,
  type Snapshot,
  type SnapshotFrom,
  setup,
  transition
} from "xstate"
import { type DeadLetterReason, make as makeActor } from "./Actor.ts"
import type { Envelope } from "./Envelope.ts"
import {
  InvalidOptions,
  MachineActionFailed,
  MachineClosed,
  MachineSnapshotInvalid,
  MachineTransitionFailed
} from "./Errors.ts"
import * as EventType from "./EventType.ts"
import * as Handler from "./Handler.ts"
import { type Counts, Mailbox, maxCapacity, type OfferResult, type Taken } from "./Mailbox.ts"
import * as Supervisor from "./Supervisor.ts"
import type * as Trail from "./Trail.ts"

// ---- models -------------------------------------------------------------------

/**
 * A pending delayed event, as persisted: the xstate send id (absent for an
 * anonymous delayed `raise`/`sendTo`), the event, and when it is due (ms since the
 * epoch, on the actor's clock).
 *
 * @category models
 */
export interface PersistedTimer {
  readonly id?: string
  readonly event: EventObject
  readonly dueAt: number
}

/**
 * A persisted snapshot: what xstate's `getPersistedSnapshot` gives, plus the
 * machine's pending delayed events (`timers`). JSON-safe as long as the machine's
 * context is. A plain xstate persisted snapshot (without `timers`) is accepted too.
 *
 * @category models
 */
export type Persisted = Snapshot<unknown> & { readonly timers?: ReadonlyArray<PersistedTimer> }

/**
 * An action implemented as an Effect, given xstate's action arguments (`context`
 * as it is at that action, `event`) and the action's `params`.
 *
 * @category models
 */
export type ActionEffect<M extends AnyStateMachine> = (
  args: { readonly context: SnapshotFrom<M>["context"]; readonly event: EventFromLogic<M> },
  // biome-ignore lint/suspicious/noExplicitAny: params are whatever the machine's action declares
  params: any
) => Effect.Effect<void, unknown>

/**
 * Options of a machine actor; every field but the machine has a default.
 *
 * @category models
 */
export interface Options<M extends AnyStateMachine> {
  /** Names the actor in errors, logs and its supervisor. Default: the machine's `id`. */
  readonly name?: string
  /** Input of the machine's initial state (ignored when starting from `snapshot`). */
  readonly input?: InputFrom<M>
  /** A persisted snapshot to start from (its timers are re-armed); default: the initial state. */
  readonly snapshot?: Persisted
  /** Most messages queued; past it `send` refuses with `"full"` and `offer` waits. Default `1_000`. */
  readonly capacity?: number
  /** Messages taken at once; `onSnapshot` runs after each batch. Default `64`. */
  readonly maxBatch?: number
  /**
   * Action implementations by action type, as Effects. They take precedence over the
   * machine's own implementations of the same type.
   */
  readonly actions?: { readonly [type: string]: ActionEffect<M> }
  /** Runs each event the machine emits (xstate `emit`); without it, emitted events are ignored. */
  readonly emit?: (event: EmittedFrom<M>) => Effect.Effect<void, unknown>
  /**
   * Called after each batch that changed the snapshot, with the persisted snapshot:
   * save it. The snapshot it accepted is the actor's restart point. A failure fails
   * the batch (retried: only `onSnapshot` runs again).
   */
  readonly onSnapshot?: (persisted: Persisted) => Effect.Effect<void, unknown>
  /** Retry schedule of a failed message (its input is the failure). Default: exponential from 10 ms, jittered, 3 retries. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
  /** Time limit of one attempt at a batch, in ms. Default `10_000`. */
  readonly timeoutMs?: number
  /** What a message whose retries are exhausted means. Default: see {@link Supervisor.defaults} (resume). */
  readonly supervisor?: Supervisor.Options
  /** Runs after every failed attempt. Default: a warning through Effect's logger. */
  readonly onFailure?: (cause: Cause.Cause<unknown>) => Effect.Effect<void>
  /** Called, synchronously, when the supervisor stops the actor. */
  readonly onStop?: (escalated: Supervisor.EscalatedData) => void
  /** Called, synchronously, with the messages given up (resumed past, or settled after a stop or at shutdown). */
  readonly onDeadLetter?: (
    events: ReadonlyArray<EventFromLogic<M>>,
    cause: Cause.Cause<unknown>,
    reason: DeadLetterReason
  ) => void
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  capacity: 1_000,
  maxBatch: 64,
  retry: Schedule.exponential("10 millis", 2).pipe(Schedule.jittered, Schedule.upTo({ times: 3 })) as Schedule.Schedule<
    unknown,
    unknown
  >,
  timeoutMs: 10_000,
  stopLimitMs: 10_000
} as const

/**
 * The counters of a machine actor: its mailbox's accounting (fired timers count as
 * messages), pending timers, failed attempts, restarts, and whether its supervisor
 * stopped it.
 *
 * @category models
 */
export interface Stats extends Counts {
  readonly timers: number
  readonly failures: number
  readonly restarts: number
  readonly stopped: boolean
}

/**
 * What starting a machine actor can fail with.
 *
 * @category errors
 */
export type StartError = MachineSnapshotInvalid | MachineTransitionFailed | MachineActionFailed

/**
 * A running machine actor.
 *
 * @category models
 */
export interface Actor<M extends AnyStateMachine> {
  readonly name: string
  readonly machine: M
  /** The current snapshot: the state after the last committed transition. */
  readonly snapshot: SnapshotFrom<M>
  /** Queues an event; synchronous, never blocks (`"full"` and `"closed"` are refusals). */
  readonly send: (event: EventFromLogic<M>) => OfferResult
  /** Queues an event, waiting for room; fails with {@link MachineClosed} once stopped. */
  readonly offer: (event: EventFromLogic<M>) => Effect.Effect<"accepted" | "dropped", MachineClosed>
  /** The current snapshot, persisted (with its pending timers). */
  readonly persisted: () => Persisted
  readonly stats: () => Stats
  /**
   * Stops its timers (pending ones never fire), closes the mailbox and processes what
   * is queued within `limitMs` (default `10_000`); what is left becomes dead letters.
   */
  readonly stop: (limitMs?: number) => Effect.Effect<void>
}

// ---- the actor ------------------------------------------------------------------

/** A delayed event, pending from its start until the message it put in the mailbox is processed. */
interface Timer {
  readonly key: string
  readonly id: string | undefined
  readonly event: EventObject
  readonly dueAt: number
  fiber: Fiber.Fiber<void> | undefined
}

/** What a transition does to timers and to the mailbox, applied when it commits. */
type Op =
  | { readonly _tag: "schedule"; readonly id: string | undefined; readonly event: EventObject; readonly delay: number }
  | { readonly _tag: "cancel"; readonly id: string }
  | { readonly _tag: "send"; readonly event: EventObject }

/** A batch: its messages (with the timer that sent each, if any) and how far it went. */
interface Batch {
  readonly events: ReadonlyArray<EventObject>
  readonly extras: ReadonlyArray<unknown> | undefined
  done: number
  skipped: number
}

const describe = (u: unknown): string => (u instanceof Error ? u.message : String(u))

const unsupported = (what: string) =>
  new Error(`${what} is not supported by a machine actor; run the other machine as an actor of its own`)

/**
 * Starts an xstate machine as an actor in the current scope: enters the initial
 * state (running its entry actions) or restores `snapshot`, then processes messages
 * one at a time, in order.
 *
 * Fails with {@link MachineSnapshotInvalid} when `snapshot` does not restore, and
 * with {@link MachineTransitionFailed} / {@link MachineActionFailed} when entering
 * the initial state fails. Closing the scope stops the actor and its timers; use
 * `stop` first to process what is queued.
 *
 * @example
 * ```ts
 * const counter = setup({ types: { context: {} as { n: number }, events: {} as { type: "inc" } } }).createMachine({
 *   context: { n: 0 },
 *   on: { inc: { actions: assign({ n: ({ context }) => context.n + 1 }) } }
 * })
 * const actor = yield* Machine.make(counter, { name: "counter" })
 * actor.send({ type: "inc" })
 * ```
 *
 * @category constructors
 */
export const make = <M extends AnyStateMachine>(
  machine: M,
  options: Options<M> = {}
): Effect.Effect<Actor<M>, StartError, Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? machine.id
    const capacity = options.capacity ?? defaults.capacity
    const maxBatch = options.maxBatch ?? defaults.maxBatch
    const timeoutMs = options.timeoutMs ?? defaults.timeoutMs
    const invalid = (reason: string) => new InvalidOptions({ subject: `machine actor ${name}`, reason })
    if (!(Number.isSafeInteger(capacity) && capacity > 0 && capacity <= maxCapacity)) {
      return yield* Effect.die(invalid(`capacity must be an integer from 1 to ${maxCapacity}`))
    }
    if (!(Number.isSafeInteger(maxBatch) && maxBatch > 0)) return yield* Effect.die(invalid("maxBatch must be > 0"))
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) return yield* Effect.die(invalid("timeoutMs must be > 0"))
    const supervisor = new Supervisor.Child(name, options.supervisor)
    const clock = yield* Clock.Clock
    const scope = yield* Scope.Scope
    const runFork = Effect.runForkWith(yield* Effect.context<never>())
    const logic = machine as AnyStateMachine
    const mailbox = new Mailbox<EventObject>(capacity, "backpressure", Math.min(maxBatch, 512))
    const now = () => clock.currentTimeMillisUnsafe()

    let current: AnyMachineSnapshot = undefined as unknown as AnyMachineSnapshot
    /** Bumped at every commit; the checkpoint's version says whether there is news to save. */
    let version = 0
    let savedVersion = 0
    /** Where a restart rebuilds from: the last snapshot `onSnapshot` saved, else the start snapshot. */
    let checkpoint: Persisted | undefined = options.snapshot
    let inflight: Batch | undefined
    let stopping = false
    let failures = 0
    let anonymous = 0

    // ---- timers and deliveries to the machine itself ----------------------------

    const timers = new Map<string, Timer>()
    /** Events for the machine itself waiting for room in its mailbox, in order. */
    const backlog: Array<{ readonly event: EventObject; readonly timer: Timer | undefined }> = []
    let drainer: Fiber.Fiber<void> | undefined
    let draining = false

    const drain = (): Effect.Effect<void> =>
      Effect.suspend(() => {
        while (backlog.length > 0) {
          const head = backlog[0]!
          if (mailbox.offer(head.event, 0, head.timer) === "full") {
            return Effect.flatMap(mailbox.awaitSpace(), drain)
          }
          backlog.shift()
        }
        draining = false
        drainer = undefined
        return Effect.void
      })

    /** Puts an event into the actor's own mailbox, behind those already waiting for room. */
    const deliver = (event: EventObject, timer: Timer | undefined): void => {
      if (backlog.length === 0 && mailbox.offer(event, 0, timer) !== "full") return
      backlog.push({ event, timer })
      if (!draining) {
        draining = true
        drainer = runFork(drain())
      }
    }

    const arm = (id: string | undefined, event: EventObject, dueAt: number): void => {
      if (stopping) return
      // ids and anonymous timers get keys of their own kinds: they never meet
      const key = id === undefined ? `#${anonymous++}` : `=${id}`
      const previous = timers.get(key)
      if (previous !== undefined) previous.fiber?.interruptUnsafe()
      const timer: Timer = { key, id, event, dueAt, fiber: undefined }
      timers.set(key, timer)
      timer.fiber = runFork(
        Effect.andThen(
          Effect.sleep(Math.max(0, dueAt - now())),
          Effect.sync(() => {
            timer.fiber = undefined
            if (timers.get(key) === timer) deliver(event, timer)
          })
        )
      )
    }

    const cancel = (id: string): void => {
      const key = `=${id}`
      const timer = timers.get(key)
      if (timer === undefined) return
      timers.delete(key)
      timer.fiber?.interruptUnsafe()
    }

    /** Drops every timer and every pending delivery to itself: they belong to the state being left. */
    const clearTimers = (): void => {
      for (const timer of timers.values()) timer.fiber?.interruptUnsafe()
      timers.clear()
      backlog.length = 0
      drainer?.interruptUnsafe()
      drainer = undefined
      draining = false
    }
    yield* Scope.addFinalizer(
      scope,
      Effect.sync(() => {
        stopping = true
        clearTimers()
      })
    )

    // ---- transitions ------------------------------------------------------------

    const failed = (action: string) => (cause: Cause.Cause<unknown>) =>
      Cause.hasInterruptsOnly(cause)
        ? Effect.failCause(cause)
        : Effect.fail(new MachineActionFailed({ machine: name, action, cause: Cause.squash(cause) }))

    /** The Effect of one action; timer and self-send actions only record what to do at commit. */
    const plan = (
      action: {
        type: string
        params: unknown
        info: unknown
        exec: ((info: never, params: unknown) => void) | undefined
      },
      ops: Array<Op>
    ): Effect.Effect<void, unknown> | undefined => {
      const type = action.type
      const params = action.params as Record<string, unknown>
      switch (type) {
        case "xstate.raise": {
          // an immediate raise was already taken by `transition` itself
          if (typeof params.delay === "number") {
            ops.push({
              _tag: "schedule",
              id: params.id as string | undefined,
              event: params.event as EventObject,
              delay: params.delay
            })
          }
          return undefined
        }
        case "xstate.sendTo": {
          if (params.to !== (action.info as { self: unknown }).self) {
            return Effect.fail(
              new MachineActionFailed({ machine: name, action: type, cause: unsupported("sendTo another actor") })
            )
          }
          const event = params.event as EventObject
          if (typeof params.delay === "number") {
            ops.push({ _tag: "schedule", id: params.id as string | undefined, event, delay: params.delay })
          } else {
            ops.push({ _tag: "send", event })
          }
          return undefined
        }
        case "xstate.cancel":
          ops.push({ _tag: "cancel", id: params.sendId as string })
          return undefined
        case "xstate.emit": {
          const run = options.emit
          if (run === undefined) return undefined
          return Effect.catchCause(
            Effect.suspend(() => run(params.event as EmittedFrom<M>)),
            failed(type)
          )
        }
        case "xstate.log":
          return params.label === undefined ? Effect.log(params.value) : Effect.log(params.label, params.value)
        case "xstate.spawnChild":
          return Effect.fail(
            new MachineActionFailed({
              machine: name,
              action: type,
              cause: unsupported("a child actor (invoke, spawnChild)")
            })
          )
        case "xstate.stopChild":
          return undefined
      }
      const own = options.actions?.[type]
      const exec = action.exec
      if (own === undefined && exec === undefined) return undefined // xstate ignores an unimplemented action too
      return Effect.catchCause(
        Effect.suspend(() => {
          const out: unknown =
            own !== undefined ? own(action.info as never, params) : exec!(action.info as never, params)
          return Effect.isEffect(out) ? (out as Effect.Effect<unknown, unknown>) : Effect.void
        }),
        failed(type)
      )
    }

    /** Runs a transition's actions in order, then commits it: snapshot, timers, sends. */
    const apply = (
      next: AnyMachineSnapshot,
      actions: ReadonlyArray<{ type: string; params: unknown; info: unknown; exec: unknown }>,
      fired: Timer | undefined
    ): Effect.Effect<void, unknown> => {
      const ops: Array<Op> = []
      let effects: Array<Effect.Effect<void, unknown>> | undefined
      for (const action of actions) {
        const effect = plan(action as Parameters<typeof plan>[0], ops)
        if (effect === undefined) continue
        if (effects === undefined) effects = [effect]
        else effects.push(effect)
      }
      const commit = Effect.sync(() => {
        current = next
        version++
        if (fired !== undefined && timers.get(fired.key) === fired) timers.delete(fired.key)
        for (const op of ops) {
          if (op._tag === "schedule") arm(op.id, op.event, now() + op.delay)
          else if (op._tag === "cancel") cancel(op.id)
          else deliver(op.event, undefined)
        }
      })
      if (effects === undefined) return commit
      return Effect.andThen(
        Effect.forEach(effects, (effect) => effect, { discard: true }),
        commit
      )
    }

    const transitionFailed = (event: string, cause: unknown) =>
      Effect.fail(new MachineTransitionFailed({ machine: name, event, cause }))

    /** Enters the initial state: its entry actions run and commit like a transition's. */
    const enterInitial = Effect.suspend(() => {
      let result: [AnyMachineSnapshot, Array<unknown>]
      try {
        result = initialTransition(logic, options.input) as [AnyMachineSnapshot, Array<unknown>]
      } catch (error) {
        return transitionFailed("xstate.init", error)
      }
      return apply(result[0], result[1] as Parameters<typeof apply>[1], undefined)
    }) as Effect.Effect<void, MachineTransitionFailed | MachineActionFailed>

    const restore = (persisted: unknown) => Effect.suspend(() => restoreSnapshot(logic, name, persisted))

    /** Takes a restored snapshot as the current one and re-arms its timers. */
    const adopt = (restored: Restored) =>
      Effect.sync(() => {
        current = restored.snapshot
        version++
        for (const t of restored.timers) arm(t.id, t.event, t.dueAt)
      })

    /** Processes the message at `batch.done`. */
    const step = (batch: Batch): Effect.Effect<void, unknown> => {
      const event = batch.events[batch.done]!
      const fired = batch.extras?.[batch.done] as Timer | undefined
      // a timer cancelled, replaced or cleared by a restart after it fired: its event is stale
      if (fired !== undefined && timers.get(fired.key) !== fired) return Effect.void
      let result: [AnyMachineSnapshot, Array<unknown>]
      try {
        result = transition(logic, current, event) as [AnyMachineSnapshot, Array<unknown>]
      } catch (error) {
        return transitionFailed(event.type, error)
      }
      return apply(result[0], result[1] as Parameters<typeof apply>[1], fired)
    }

    const saveCheckpoint = Effect.suspend(() => {
      const save = options.onSnapshot
      if (save === undefined || version === savedVersion) return Effect.void
      const at = version
      const persisted = persist()
      return Effect.map(save(persisted), () => {
        savedVersion = at
        checkpoint = persisted
      })
    })

    const behaviour = (batch: Batch): Effect.Effect<void, unknown> =>
      Effect.suspend(() => {
        inflight = batch
        return Effect.andThen(
          Effect.whileLoop({
            while: () => batch.done < batch.events.length,
            body: () => step(batch),
            step: () => {
              batch.done++
            }
          }),
          saveCheckpoint
        )
      })

    const persist = (): Persisted => {
      const list: Array<PersistedTimer> = []
      for (const t of timers.values()) {
        list.push(
          t.id === undefined ? { event: t.event, dueAt: t.dueAt } : { id: t.id, event: t.event, dueAt: t.dueAt }
        )
      }
      return { ...(logic.getPersistedSnapshot(current) as Snapshot<unknown>), timers: list }
    }

    // ---- start --------------------------------------------------------------------

    if (options.snapshot !== undefined) yield* Effect.flatMap(restore(options.snapshot), adopt)
    else yield* enterInitial
    savedVersion = version

    const actor = yield* makeActor<EventObject, Batch>({
      name,
      mailbox,
      prepare: (taken: Taken<EventObject>) => ({ events: taken.items, extras: taken.extras, done: 0, skipped: 0 }),
      behaviour,
      delivery: "must",
      batch: { maxSize: maxBatch, lingerMs: 0 },
      priority: 0,
      concurrency: 1,
      retry: options.retry ?? defaults.retry,
      timeoutMs,
      progress: (batch) => batch.done - batch.skipped,
      // resume: the message that failed is given up (a dead letter of its own), the rest goes on
      skip: (batch, cause) => {
        if (batch.done >= batch.events.length) return false
        const fired = batch.extras?.[batch.done] as Timer | undefined
        if (fired !== undefined && timers.get(fired.key) === fired) timers.delete(fired.key)
        options.onDeadLetter?.([batch.events[batch.done] as EventFromLogic<M>], cause, "retriesExhausted")
        batch.done++
        batch.skipped++
        return true
      },
      onFailure: (cause) => {
        failures++
        if (options.onFailure !== undefined) return options.onFailure(cause)
        return Effect.logWarning(`machine ${name} failed`, cause).pipe(Effect.annotateLogs({ machine: name }))
      },
      supervise: (at, cause) => supervisor.decide(at, cause),
      // the state is rebuilt from the checkpoint, and the failed batch is processed again from its start
      restart: () =>
        Effect.suspend((): Effect.Effect<void, StartError> => {
          clearTimers()
          if (inflight !== undefined) {
            inflight.done = 0
            inflight.skipped = 0
          }
          return checkpoint === undefined ? enterInitial : Effect.flatMap(restore(checkpoint), adopt)
        }),
      onStop: (escalated) => {
        clearTimers()
        options.onStop?.(escalated)
      },
      onDeadLetter: (batch, cause, reason) =>
        options.onDeadLetter?.(
          batch.events.slice(batch.done) as unknown as ReadonlyArray<EventFromLogic<M>>,
          cause,
          reason
        )
    })

    const offer = (event: EventObject): Effect.Effect<"accepted" | "dropped", MachineClosed> =>
      Effect.suspend(() => {
        const result = mailbox.offer(event, 0)
        if (result === "full") return Effect.flatMap(mailbox.awaitSpace(), () => offer(event))
        if (result === "closed") return Effect.fail(new MachineClosed({ machine: name }))
        return Effect.succeed(result)
      })

    const self: Actor<M> = {
      name,
      machine,
      get snapshot() {
        return current as SnapshotFrom<M>
      },
      send: (event) => {
        const result = mailbox.offer(event as EventObject, 0)
        if (result === "full") mailbox.refuseFull()
        return result
      },
      offer: (event) => offer(event as EventObject),
      persisted: persist,
      stats: () => ({
        ...mailbox.counts(),
        timers: timers.size,
        failures,
        restarts: supervisor.restarts,
        stopped: supervisor.stopped !== undefined
      }),
      stop: (limitMs = defaults.stopLimitMs) =>
        Effect.suspend(() => {
          stopping = true
          clearTimers()
          return actor.stop(limitMs)
        })
    }
    return self
  })

interface Restored {
  readonly snapshot: AnyMachineSnapshot
  readonly timers: ReadonlyArray<PersistedTimer>
}

const isRecord = (u: unknown): u is Record<string, unknown> => typeof u === "object" && u !== null

/** Restores a persisted snapshot with its machine (no interpreter is started). */
const restoreSnapshot = (
  machine: AnyStateMachine,
  name: string,
  persisted: unknown
): Effect.Effect<Restored, MachineSnapshotInvalid> => {
  const invalid = (reason: string) => Effect.fail(new MachineSnapshotInvalid({ machine: name, reason }))
  if (!isRecord(persisted)) return invalid("it is not an object")
  const raw = persisted.timers
  const timers: Array<PersistedTimer> = []
  if (raw !== undefined) {
    if (!Array.isArray(raw)) return invalid("timers is not an array")
    for (const t of raw as ReadonlyArray<unknown>) {
      if (
        !isRecord(t) ||
        !isRecord(t.event) ||
        typeof t.event.type !== "string" ||
        typeof t.dueAt !== "number" ||
        !Number.isFinite(t.dueAt) ||
        (t.id !== undefined && typeof t.id !== "string")
      ) {
        return invalid(`timer ${JSON.stringify(t)} is not { id?: string, event: { type: string }, dueAt: number }`)
      }
      timers.push(t as unknown as PersistedTimer)
    }
  }
  if (!isRecord(persisted.context) && persisted.context !== undefined) return invalid("context is not an object")
  // the Actor constructor restores the snapshot (children included) without starting anything;
  // a snapshot that does not restore comes back as { status: "error", error } without a machine
  let snapshot: unknown
  try {
    snapshot = createActor(machine, { snapshot: persisted as Snapshot<unknown> }).getSnapshot()
  } catch (error) {
    return invalid(describe(error))
  }
  if (!isRecord(snapshot) || !("machine" in snapshot)) {
    return invalid(describe(isRecord(snapshot) ? snapshot.error : snapshot))
  }
  return Effect.succeed({ snapshot: snapshot as unknown as AnyMachineSnapshot, timers })
}

// ---- subscriptions ----------------------------------------------------------------

/**
 * A trail event as a machine receives it: the envelope's fields, with the type key
 * (`name@version`) as the xstate event `type`.
 *
 * @example
 * ```ts
 * // { type: "app.Heartbeat@1", id: "01J…", happenedAt: 1_700_000_000_000, source: "worker-1", data: { ok: true } }
 * type Heartbeat = Machine.TrailEvent<"app.Heartbeat@1", { readonly ok: boolean }>
 * ```
 *
 * @category models
 */
export interface TrailEvent<K extends string = string, A = unknown> {
  readonly type: K
  readonly id: string
  readonly happenedAt: number
  readonly source: string
  readonly parent?: string
  readonly data: A
}

/**
 * The machine event of a trail event (see {@link TrailEvent}).
 *
 * @category constructors
 */
export const toEvent = <A>(envelope: Envelope<A>): TrailEvent<string, A> =>
  envelope.parent === undefined
    ? {
        type: envelope.type,
        id: envelope.id,
        happenedAt: envelope.happenedAt,
        source: envelope.source,
        data: envelope.data
      }
    : {
        type: envelope.type,
        id: envelope.id,
        happenedAt: envelope.happenedAt,
        source: envelope.source,
        parent: envelope.parent,
        data: envelope.data
      }

const HANDLER_NAME = /[^A-Za-z0-9_.:-]/g

/**
 * A handler that feeds every event it receives to a machine actor, as a
 * {@link TrailEvent}, waiting for room in the actor's mailbox (the handler's own
 * mailbox fills meanwhile). Register it on a trail with `trail.on(type, ...)`.
 * Once the actor is stopped, the handler fails with {@link MachineClosed}.
 *
 * The handler's name defaults to the actor's name (characters a handler name may
 * not have become `_`).
 *
 * @example
 * ```ts
 * const actor = yield* Machine.make(orders, { name: "orders" })
 * yield* trail.on("shop.Order", Machine.handler(actor))
 * ```
 *
 * @category constructors
 */
export const handler = <M extends AnyStateMachine>(
  actor: Actor<M>,
  name: string = actor.name.replace(HANDLER_NAME, "_"),
  options?: Handler.Options
): Handler.Handler => Handler.make(name, (event) => actor.offer(toEvent(event) as EventFromLogic<M>), options)

// ---- the watchdog -----------------------------------------------------------------

/**
 * The event a watchdog emits when its expected event has not arrived in time.
 * `missed` counts the windows of `withinMs` in a row without it (1 at the first);
 * `lastSeenAt` is the `happenedAt` of the last expected event, `null` if none came.
 *
 * @category events
 */
export const Watchdog = EventType.make(
  "cairn.watchdog",
  1,
  Schema.Struct({
    /** The watchdog's name. */
    watchdog: Schema.String,
    /** The expected event: a name (any version) or a `name@version` key. */
    expected: Schema.String,
    withinMs: Schema.Number,
    missed: Schema.Number,
    lastSeenAt: Schema.NullOr(Schema.Number)
  }),
  { priority: 10, batch: { maxSize: 64, lingerMs: 0 } }
)

/**
 * The data of a {@link Watchdog} event.
 *
 * @category models
 */
export type WatchdogData = EventType.Data<typeof Watchdog>

/**
 * Options of a {@link watchdog}.
 *
 * @category models
 */
export interface WatchdogOptions {
  /** Names the watchdog (letters, digits, `_ . : -`). */
  readonly name: string
  /** The expected event: a name (`app.Heartbeat`, any version) or a key (`app.Heartbeat@1`). */
  readonly expected: string
  /** How long the expected event may be absent, in ms (from the start, then from the last one). */
  readonly withinMs: number
  /**
   * Whether it emits again every `withinMs` while the event stays absent (`missed`
   * counting up), or only once until the event arrives again. Default `true`.
   */
  readonly repeat?: boolean
}

/**
 * The context of a watchdog machine.
 *
 * @category models
 */
export interface WatchdogContext {
  readonly missed: number
  readonly lastSeenAt: number | null
}

/**
 * What a watchdog machine emits.
 *
 * @category models
 */
export interface WatchdogEmitted {
  readonly type: "cairn.watchdog"
  readonly data: WatchdogData
}

const WATCHDOG_NAME = /^[A-Za-z0-9_.:-]+$/

/**
 * A watchdog machine: it emits a {@link WatchdogEmitted} event (`cairn.watchdog`)
 * when no event of type `expected` arrived within `withinMs` of its start or of
 * the last one. Each expected event re-arms it and resets `missed`; other events
 * are ignored. While the event stays absent it emits again every `withinMs`
 * (`missed` 2, 3, …) unless `repeat` is `false`.
 *
 * Run it with {@link make} (its `emit` option gets the events) and feed it with
 * {@link handler}, or let {@link startWatchdog} do both on a trail.
 *
 * Throws {@link InvalidOptions} for an invalid name, expected type or `withinMs`.
 *
 * @example
 * ```ts
 * const heartbeat = Machine.watchdog({ name: "db", expected: "db.Heartbeat", withinMs: 5_000 })
 * const actor = yield* Machine.make(heartbeat, { emit: (e) => trail.log(Machine.Watchdog, e.data) })
 * yield* trail.on("db.Heartbeat", Machine.handler(actor))
 * ```
 *
 * @category constructors
 */
export const watchdog = (options: WatchdogOptions) => {
  const { name, expected, withinMs } = options
  const fail = (reason: string): never => {
    throw new InvalidOptions({ subject: `watchdog "${name}"`, reason })
  }
  if (!WATCHDOG_NAME.test(name)) fail("the name must be letters, digits, _ . : or -")
  if (expected.length === 0) fail("expected must be an event name or key")
  if (!(withinMs > 0 && Number.isFinite(withinMs))) fail("withinMs must be a finite number > 0")
  const repeat = options.repeat ?? true
  const matches = (type: string) => type === expected || type.startsWith(`${expected}@`)
  return setup({
    types: {
      context: {} as WatchdogContext,
      events: {} as AnyEventObject,
      emitted: {} as WatchdogEmitted
    },
    delays: { within: withinMs },
    guards: { expected: ({ event }) => matches(event.type) }
  }).createMachine({
    id: `cairn.watchdog.${name}`,
    context: { missed: 0, lastSeenAt: null },
    initial: "watching",
    on: {
      "*": {
        guard: "expected",
        target: ".watching",
        reenter: true,
        actions: assign({
          missed: 0,
          lastSeenAt: ({ event, context }) =>
            typeof event.happenedAt === "number" ? (event.happenedAt as number) : context.lastSeenAt
        })
      }
    },
    states: {
      watching: {
        after: {
          within: {
            target: repeat ? "watching" : "silent",
            reenter: true,
            actions: [
              assign({ missed: ({ context }) => context.missed + 1 }),
              emit(({ context }) => ({
                type: "cairn.watchdog" as const,
                data: { watchdog: name, expected, withinMs, missed: context.missed, lastSeenAt: context.lastSeenAt }
              }))
            ]
          }
        }
      },
      silent: {}
    }
  })
}

/**
 * Starts a {@link watchdog} on a trail: the actor (named `cairn.watchdog.<name>`)
 * gets every `expected` event through a handler of the same name, and its
 * `cairn.watchdog` events are logged on the trail ({@link Watchdog}).
 *
 * @example
 * ```ts
 * const actor = yield* Machine.startWatchdog(trail, { name: "db", expected: "db.Heartbeat", withinMs: 5_000 })
 * ```
 *
 * @category constructors
 */
export const startWatchdog = (
  trail: Trail.Service,
  options: WatchdogOptions & Pick<Options<AnyStateMachine>, "supervisor" | "retry" | "capacity">
) =>
  Effect.gen(function* () {
    const name = `cairn.watchdog.${options.name}`
    const actorOptions: Options<ReturnType<typeof watchdog>> = {
      name,
      emit: (event) => Effect.asVoid(trail.log(Watchdog, event.data))
    }
    const actor = yield* make(watchdog(options), {
      ...actorOptions,
      ...(options.supervisor === undefined ? {} : { supervisor: options.supervisor }),
      ...(options.retry === undefined ? {} : { retry: options.retry }),
      ...(options.capacity === undefined ? {} : { capacity: options.capacity })
    })
    yield* trail.on(options.expected, handler(actor, name))
    return actor
  })
