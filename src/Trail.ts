/**
 * The event trail: record events anywhere, process them in the background.
 *
 * A trail has one actor per registered event type. `logUnsafe` (and the Promise
 * facade's `log`) is the hot path: synchronous, O(1), it never runs an Effect and
 * never blocks — it puts the event in its type's bounded mailbox and returns what
 * happened. The Effect API `log` waits for room instead when a `backpressure`
 * mailbox is full. Each type's actor hands batches to the type's processing
 * function, by priority, with retries; `must` events that cannot be processed become
 * dead letters, `droppable` ones are counted as dropped.
 *
 * For every type, at every moment:
 * `accepted = processed + queued + inFlight + dropped + deadLettered`.
 * `flush` waits for exactly the events accepted before it. Shutdown (closing the
 * layer's scope, `shutdown`, or the facade's `dispose`) refuses new events, delivers
 * every `must` event within `shutdownTimeoutMs` (dead-lettering what is left after
 * it), and gives `droppable` events `droppableBudgetMs`.
 *
 * @since 0.1.0
 */
import * as os from "node:os"
import { Cause, Clock, Context, Deferred, Effect, Layer, ManagedRuntime, Scope } from "effect"
import * as Actor from "./Actor.ts"
import { Batch } from "./Batch.ts"
import { type Envelope, IdGenerator, Origin } from "./Envelope.ts"
import {
  DuplicateEventType,
  type DuplicateHandler,
  EventRejected,
  type EventNotFound,
  InvalidOptions,
  TrailClosed,
  type ValidationError
} from "./Errors.ts"
import * as EventType from "./EventType.ts"
import * as Handler from "./Handler.ts"
import { SampledClock, smallInt } from "./internal/clock.ts"
import * as Pool from "./internal/pool.ts"
import { type Counts, Mailbox, type OfferResult } from "./Mailbox.ts"
import * as Metrics from "./Metrics.ts"
import * as Registry from "./Registry.ts"
import * as Supervisor from "./Supervisor.ts"

/**
 * Processes one batch. A failure or defect is retried on the type's schedule.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: a processor may serve types of any data
export type Processor<A = any> = (batch: Batch<A>) => Effect.Effect<void, unknown>

/**
 * An event type with its own processing function.
 *
 * @category models
 */
export interface Route {
  readonly type: EventType.Any
  readonly process: Processor
}

/**
 * Pairs an event type with its processing function.
 *
 * @category constructors
 */
export const route = <A, I>(type: EventType.EventType<A, I>, process: Processor<A>): Route => ({
  type,
  process: process as Processor
})

/**
 * A batch of `must` events that could not be delivered, with why.
 *
 * @category models
 */
export interface DeadLetter {
  /** Type key, `name@version`. */
  readonly type: string
  /** The handler that could not handle the events; absent for the type's own processing. */
  readonly handler?: string
  /** The events, column by column (the type's own processing; `undefined` for a handler's). */
  readonly batch: Batch | undefined
  /** The events in their envelopes (`batch.events`). */
  readonly events: ReadonlyArray<Envelope>
  readonly cause: Cause.Cause<unknown>
  readonly reason: Actor.DeadLetterReason
  /** When it was written, in milliseconds since the epoch. */
  readonly at: number
}

/**
 * @category models
 */
export interface LogOptions {
  /** Id of the parent event. */
  readonly parent?: string
}

/**
 * Counters of one type.
 *
 * @category models
 */
export interface TypeStats extends Counts {
  readonly type: string
  readonly delivery: EventType.Delivery
  /** Events refused by validation (never accepted, not in `accepted`). */
  readonly rejected: { readonly invalid: number }
  /** Each handler's own accounting, by handler name, in the order handlers get events. */
  readonly handlers: Readonly<Record<string, HandlerStats>>
}

/**
 * Counters of one handler: its own accounting identity over the events handed to
 * it, and its supervision.
 *
 * @category models
 */
export interface HandlerStats extends Counts {
  readonly handler: string
  /** Failed attempts (typed failures, defects, timeouts), retries included. */
  readonly failures: number
  readonly restarts: number
  /** Stopped by its supervisor: it takes no more events. */
  readonly stopped: boolean
}

/**
 * Counters of every type, and their sum.
 *
 * @category models
 */
export interface Stats {
  readonly types: Readonly<Record<string, TypeStats>>
  readonly totals: Counts
  /** Events rejected before queueing: unknown type names, and invalid data (all types). */
  readonly rejected: { readonly unknownType: number; readonly invalid: number }
  /** Dead-letter batches kept in memory now (at most `deadLetterCapacity`). */
  readonly deadLetters: number
  /** Dead-letter batches let go from memory to respect `deadLetterCapacity` (oldest first). */
  readonly deadLettersEvicted: number
  readonly closed: boolean
}

/**
 * Options of a trail. Every field has a default.
 *
 * @category models
 */
export interface Options {
  /** Who records the events (a harness id). Default `<hostname>/<pid>`. */
  readonly source?: string
  /** Types to register at start; a type can also be registered later, or on first log. */
  readonly types?: ReadonlyArray<EventType.Any | Route>
  /** Processing function of the types registered without one. Default: one that does nothing. */
  readonly process?: Processor
  /** Batches processed at once across all types; waiting types are served by priority. Default `4`. */
  readonly concurrency?: number
  /** Overall shutdown deadline; `must` events left after it are dead-lettered. Default `10_000`. */
  readonly shutdownTimeoutMs?: number
  /** Time `droppable` events get at shutdown before the rest is dropped. Default `100`. */
  readonly droppableBudgetMs?: number
  /**
   * At high call rates the clock is read at most every `clockSampling` calls within
   * one millisecond and one synchronous run, and a type's events reuse a reading for
   * at most `clockSampling` of them (`1`: read it on every call); see
   * docs/guarantees.md, "Timestamps". Default `64`.
   */
  readonly clockSampling?: number
  /** Called for every dead letter as it is written (e.g. to persist it). */
  readonly onDeadLetter?: (deadLetter: DeadLetter) => void
  /**
   * Dead-letter batches kept in memory for `deadLetters`; past it the oldest are let go
   * (their events stay counted as dead-lettered, and `onDeadLetter` saw every one).
   * Default `1_000`.
   */
  readonly deadLetterCapacity?: number
  /**
   * The registry of event types and handlers the trail follows (types registered
   * there get an actor; handlers added there start). Default: a new one.
   */
  readonly registry?: Registry.Registry
  /** Handler batches run at once across all handlers of the trail. Default `4`. */
  readonly handlerConcurrency?: number
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  concurrency: 4,
  shutdownTimeoutMs: 10_000,
  droppableBudgetMs: 100,
  clockSampling: 64,
  deadLetterCapacity: 1_000,
  handlerConcurrency: 4
} as const

/**
 * The trail service.
 *
 * @category models
 */
export interface Service {
  readonly source: string
  /**
   * Registers a type with its processing function (default: the trail's). Registering
   * the same type again is a no-op; a different schema under the same key fails.
   */
  readonly register: <A, I>(
    type: EventType.EventType<A, I>,
    process?: Processor<A>
  ) => Effect.Effect<void, DuplicateEventType>
  /**
   * Records an event; waits for room when a `backpressure` mailbox is full. Succeeds
   * with `"accepted"`, or `"dropped"` when a droppable type's policy dropped it.
   *
   * By name (`"app.Name"`: the latest registered version; `"app.Name@2"`: that
   * version), the data is decoded with the type's schema first: an unknown name
   * fails with {@link EventNotFound}, invalid data with {@link ValidationError}
   * (never queued; counted as rejected).
   */
  readonly log: {
    <A, I>(
      type: EventType.EventType<A, I>,
      data: A,
      options?: LogOptions
    ): Effect.Effect<"accepted" | "dropped", TrailClosed>
    (
      name: string,
      data: unknown,
      options?: LogOptions
    ): Effect.Effect<"accepted" | "dropped", TrailClosed | EventNotFound | ValidationError>
  }
  /**
   * Records an event synchronously; never blocks, never throws for a full mailbox:
   * the result says what happened (`"full"` and `"closed"` are refusals, counted).
   * Throws {@link DuplicateEventType} if the type is new and its key is taken. By
   * name, as `log`, it throws {@link EventNotFound} or {@link ValidationError}.
   */
  readonly logUnsafe: {
    <A, I>(type: EventType.EventType<A, I>, data: A, options?: LogOptions): OfferResult
    (name: string, data: unknown, options?: LogOptions): OfferResult
  }
  /**
   * Adds a handler after the declared ones (see {@link Registry.Registry.on}): to every
   * version of a name, to one version (`name@version`), or to a type. It starts at once
   * and gets the events dispatched from then on.
   */
  readonly on: (
    target: string | EventType.Any,
    handler: Handler.Handler
  ) => Effect.Effect<void, EventNotFound | DuplicateHandler | DuplicateEventType | InvalidOptions>
  /** The registry the trail follows. */
  readonly registry: Registry.Registry
  /**
   * Waits until every event accepted before the call has reached a terminal state.
   * What is queued goes to processing at once, without waiting out its linger.
   */
  readonly flush: Effect.Effect<void>
  readonly stats: Effect.Effect<Stats>
  readonly statsUnsafe: () => Stats
  readonly deadLetters: Effect.Effect<ReadonlyArray<DeadLetter>>
  readonly deadLettersUnsafe: () => ReadonlyArray<DeadLetter>
  /** Shuts the trail down (idempotent); returns the final counters. */
  readonly shutdown: Effect.Effect<Stats>
  /**
   * The way in for events recorded elsewhere (the service side of the wire), for one
   * type key or name. Throws {@link EventNotFound} (counted as rejected) for a key
   * that resolves to nothing. Resolve once per session and key, then offer each event.
   */
  readonly intake: (key: string) => Intake
}

/**
 * Takes events of one type recorded elsewhere, keeping their ids, sources, parents
 * and times (see {@link Trail.intake}).
 *
 * @category models
 */
export interface Intake {
  readonly type: EventType.Any
  /** Decodes data with the type's schema; throws {@link ValidationError}, counted as rejected. */
  readonly decode: (data: unknown) => unknown
  /**
   * Offers an event in its own envelope (id, source, parent, time; data already
   * decoded). Synchronous, never blocks: `"full"` (not counted) means wait with
   * `awaitRoom` and offer it again.
   */
  readonly offer: (event: Envelope) => OfferResult
  /** Resolves when the type's mailbox has room (or is closed). */
  readonly awaitRoom: Effect.Effect<void>
}

/**
 * The trail, as a service.
 *
 * @category services
 */
export class Trail extends Context.Service<Trail, Service>()("cairn/Trail") {}

interface Lane {
  /** The type's actor in the trail's pool (set once added). */
  actor: Pool.Lane<unknown, Batch> | undefined
  readonly type: EventType.Any
  readonly mailbox: Mailbox<unknown>
  readonly key: string
  /** Its handlers, in the order they get events. */
  readonly children: Array<Child>
  /** Events refused by validation. */
  rejectedInvalid: number
}

/** A handler of one type, run as an actor on the trail's handler pool. */
interface Child {
  readonly handler: Handler.Handler
  readonly mailbox: Mailbox<Envelope>
  readonly supervisor: Supervisor.Child
  /** Whether a full mailbox holds the type's actor back (`backpressure`) rather than dropping. */
  readonly holds: boolean
  actor: Pool.Lane<Envelope, HandlerBatch> | undefined
  /** The handle function built by the handler's `start` (again at each restart). */
  handle: Handler.Handle | undefined
  failures: number
}

/**
 * A batch of a handler: its events, how far it went (a retry resumes there), and
 * how many of those were given up (skipped after their retries).
 */
interface HandlerBatch {
  readonly events: ReadonlyArray<Envelope>
  done: number
  skipped: number
}

const zeroCounts = (): {
  accepted: number
  processed: number
  queued: number
  inFlight: number
  dropped: { overflow: number; shutdown: number; failed: number }
  deadLettered: number
  refused: { full: number; closed: number }
} => ({
  accepted: 0,
  processed: 0,
  queued: 0,
  inFlight: 0,
  dropped: { overflow: 0, shutdown: 0, failed: 0 },
  deadLettered: 0,
  refused: { full: 0, closed: 0 }
})

const noop: Processor = () => Effect.void
const CacheOwner: typeof EventType.CacheOwner = EventType.CacheOwner
const CacheValue: typeof EventType.CacheValue = EventType.CacheValue

/**
 * Builds a trail in the current scope; closing the scope shuts it down gracefully.
 *
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<Service, DuplicateEventType, Scope.Scope> =>
  Effect.gen(function* () {
    const source = options.source ?? `${os.hostname()}/${process.pid}`
    const defaultProcess = options.process ?? noop
    const concurrency = options.concurrency ?? defaults.concurrency
    const shutdownTimeoutMs = options.shutdownTimeoutMs ?? defaults.shutdownTimeoutMs
    const droppableBudgetMs = options.droppableBudgetMs ?? defaults.droppableBudgetMs
    const clockService = yield* Clock.Clock
    // The types' mailboxes are stamped in milliseconds since the trail started: small
    // integers (for 12 days), which V8 keeps unboxed in the mailbox's fields and ring.
    const epoch = clockService.currentTimeMillisUnsafe()
    const sinceEpoch = () => smallInt(clockService.currentTimeMillisUnsafe() - epoch)
    const clock = new SampledClock(sinceEpoch, options.clockSampling ?? defaults.clockSampling)
    // Actors live in a child scope created before the shutdown finalizer is added, so
    // closing the trail's scope first shuts down gracefully, then releases the actors
    // (including those registered later, on first log).
    const scope = yield* Scope.fork(yield* Scope.Scope)
    const context = yield* Effect.context<never>()
    const runSync = Effect.runSyncWith(context)
    const runFork = Effect.runForkWith(context)
    const pool = new Pool.Pool(concurrency, clockService, scope, runFork)
    yield* pool.start()
    // handlers run on a pool of their own: a type's actor waiting for room in a
    // handler's mailbox can never hold the workers that handler needs
    const handlerPool = new Pool.Pool(
      options.handlerConcurrency ?? defaults.handlerConcurrency,
      clockService,
      scope,
      runFork
    )
    yield* handlerPool.start()
    const registry = options.registry ?? Registry.make()
    const lanes = new Map<EventType.Any, Lane>()
    const byKey = new Map<string, Lane>()
    const deadLetters: Array<DeadLetter> = []
    const deadLetterCapacity = options.deadLetterCapacity ?? defaults.deadLetterCapacity
    let deadLettersEvicted = 0
    let rejectedUnknown = 0
    Metrics.registerUnknown(() => rejectedUnknown, context)
    let closed = false
    /** This trail's token in the types' cache slots. */
    const token = {}
    /** The type the trail itself is registering (its registry echo is ignored). */
    let registering: EventType.Any | undefined

    const recordDeadLetter = (deadLetter: DeadLetter): void => {
      deadLetters.push(deadLetter)
      if (deadLetters.length > deadLetterCapacity) {
        deadLetters.shift()
        deadLettersEvicted++
      }
      options.onDeadLetter?.(deadLetter)
    }

    /** Events a processing function refused in a batch it completed: dead letters for `must`. */
    const refusedOf = (batch: Batch): number => {
      const rejected = batch.rejected
      if (rejected === undefined || rejected.length === 0) return 0
      if (batch.type.delivery === "must") {
        const all = batch.events
        const events = rejected.map((r) => all[r.index]!)
        recordDeadLetter({
          type: batch.key,
          batch: undefined,
          events,
          cause: Cause.fail(
            new EventRejected({
              type: batch.key,
              events: rejected.map((r) => ({ id: all[r.index]!.id, code: r.code, reason: r.reason }))
            })
          ),
          reason: "rejected",
          at: clockService.currentTimeMillisUnsafe()
        })
      }
      return Math.min(rejected.length, batch.size)
    }

    /** Events the type's actor may take now: the least room among handlers that hold it back. */
    const roomOf = (lane: Lane) => (): number => {
      let room = Number.POSITIVE_INFINITY
      for (const child of lane.children) {
        if (!child.holds) continue
        const free = child.mailbox.capacity - child.mailbox.size
        if (free < room) room = free
      }
      return room
    }

    /** Hands each event of a batch to each handler, in order. Synchronous, once per batch. */
    const dispatch = (lane: Lane, batch: Batch): void => {
      const children = lane.children
      const events = batch.events
      for (let c = 0; c < children.length; c++) {
        const child = children[c]!
        for (let i = 0; i < events.length; i++) {
          const event = events[i]!
          // a handler gets envelopes (with their times): its mailbox needs no stamps
          const result = child.mailbox.offer(event, 0)
          // cannot happen: the actor took no more than the room (counted if it ever does)
          if (result === "full") child.mailbox.refuseFull()
        }
      }
    }

    const addChild = (lane: Lane, handler: Handler.Handler): Effect.Effect<void> =>
      Effect.suspend(() => {
        const type = lane.type
        const overflow = handler.options.mailbox?.overflow ?? (type.delivery === "must" ? "backpressure" : "dropNewest")
        if (type.delivery === "must" && overflow !== "backpressure") {
          return Effect.die(
            new InvalidOptions({
              subject: `handler "${handler.name}" of ${type.key}`,
              reason: `a must type is never dropped: the handler's mailbox overflow must be "backpressure", not "${overflow}"`
            })
          )
        }
        const maxBatch = handler.options.maxBatch ?? Handler.defaults.maxBatch
        const mailbox = new Mailbox<Envelope>(
          handler.options.mailbox?.capacity ?? Handler.defaults.capacity,
          overflow,
          Math.min(maxBatch, 512),
          clockService.currentTimeMillisUnsafe()
        )
        const name = `${type.key}/${handler.name}`
        const child: Child = {
          handler,
          mailbox,
          supervisor: new Supervisor.Child(name, handler.options.supervisor),
          holds: overflow === "backpressure",
          actor: undefined,
          handle: undefined,
          failures: 0
        }
        // builds the handle function on first use and after a failed start
        const startThenHandle = (event: Envelope) =>
          Effect.flatMap(handler.start, (handle) => {
            child.handle = handle
            return handle(event)
          })
        // one loop per batch, no generator: each event costs the handler's own Effect
        const run = (batch: HandlerBatch): Effect.Effect<void, unknown> => {
          const events = batch.events
          return Effect.whileLoop({
            while: () => batch.done < events.length,
            body: () => {
              const event = events[batch.done]!
              return child.handle === undefined ? startThenHandle(event) : child.handle(event)
            },
            step: () => {
              batch.done++
            }
          })
        }
        Metrics.registerHandler(
          type.key,
          handler.name,
          mailbox as Mailbox<unknown>,
          {
            failures: () => child.failures,
            restarts: () => child.supervisor.restarts,
            stopped: () => child.supervisor.stopped !== undefined
          },
          context
        )
        const actorOptions = Actor.laneOptions<Envelope, HandlerBatch>({
          name,
          mailbox,
          prepare: (taken) => {
            // room was made in the handler's mailbox: the type's actor may be waiting for it
            if (child.holds && lane.actor !== undefined) pool.notify(lane.actor as Pool.Lane<unknown, unknown>)
            return { events: taken.items, done: 0, skipped: 0 }
          },
          behaviour: run,
          delivery: type.delivery,
          batch: { maxSize: maxBatch, lingerMs: 0 },
          priority: type.priority,
          concurrency: 1,
          retry: handler.options.retry ?? Handler.defaults.retry,
          timeoutMs: handler.options.timeoutMs ?? Handler.defaults.timeoutMs,
          progress: (batch) => batch.done - batch.skipped,
          // resume: the event that failed is given up (a dead letter of its own), the rest goes on
          skip: (batch, cause) => {
            if (batch.done >= batch.events.length) return false
            if (type.delivery === "must") {
              recordDeadLetter({
                type: type.key,
                handler: handler.name,
                batch: undefined,
                events: [batch.events[batch.done]!],
                cause,
                reason: "retriesExhausted",
                at: clockService.currentTimeMillisUnsafe()
              })
            }
            batch.done++
            batch.skipped++
            return true
          },
          onFailure: (cause) => {
            child.failures++
            return Effect.logWarning(`handler ${handler.name} of ${type.key} failed`, cause).pipe(
              Effect.annotateLogs({ type: type.key, handler: handler.name })
            )
          },
          supervise: (now, cause) => child.supervisor.decide(now, cause),
          restart: () =>
            Effect.map(handler.start, (handle) => {
              child.handle = handle
            }),
          onStop: (escalated) => {
            if (!closed) logUnsafe(Supervisor.Escalated, escalated)
          },
          onDeadLetter: (batch, cause, reason) => {
            const events = batch.events.slice(batch.done)
            recordDeadLetter({
              type: type.key,
              handler: handler.name,
              batch: undefined,
              events,
              cause,
              reason,
              at: clockService.currentTimeMillisUnsafe()
            })
          }
        })
        if (closed) mailbox.close()
        return Effect.flatMap(handlerPool.add(actorOptions), (actor) =>
          Effect.sync(() => {
            child.actor = actor
            lane.children.push(child)
          })
        )
      })

    const addLane = (type: EventType.Any, process: Processor): Effect.Effect<Lane, DuplicateEventType> =>
      Effect.suspend(() => {
        const existing = lanes.get(type) ?? byKey.get(type.key)
        if (existing !== undefined) {
          if (existing.type !== type && existing.type.schema !== type.schema) {
            return Effect.fail(new DuplicateEventType({ key: type.key }))
          }
          lanes.set(type, existing) // another definition object of the same type
          return Effect.succeed(existing)
        }
        registering = type
        try {
          registry.register(type)
        } catch (error) {
          return error instanceof DuplicateEventType ? Effect.fail(error) : Effect.die(error)
        } finally {
          registering = undefined
        }
        const origin = new Origin(type.key, source, new IdGenerator())
        const mailbox = new Mailbox<unknown>(
          type.mailbox.capacity,
          type.mailbox.overflow,
          type.batch.maxSize,
          sinceEpoch(),
          clock
        )
        if (closed) mailbox.close()
        const lane: Lane = { type, mailbox, key: type.key, actor: undefined, children: [], rejectedInvalid: 0 }
        const metrics = Metrics.registerType(type.key, mailbox, context, () => lane.rejectedInvalid)
        lanes.set(type, lane)
        byKey.set(type.key, lane)
        const actorOptions = Actor.laneOptions<unknown, Batch>({
          name: type.key,
          mailbox,
          prepare: (taken) => {
            const batch = new Batch(
              type,
              origin,
              taken.items,
              taken.base + epoch,
              taken,
              taken.extras,
              taken.segment.start
            )
            // handed to the handlers as it is taken (once, even if processing is retried);
            // not what is given up at shutdown
            if (lane.children.length > 0 && lane.actor?.abandoned !== true) dispatch(lane, batch)
            return batch
          },
          behaviour: process,
          delivery: type.delivery,
          batch: type.batch,
          priority: type.priority,
          concurrency: type.concurrency,
          retry: type.retry,
          timeoutMs: type.timeoutMs,
          room: roomOf(lane),
          onDeadLetter: (batch, cause, reason) =>
            recordDeadLetter({
              type: type.key,
              batch,
              get events() {
                return batch.events
              },
              cause,
              reason,
              at: clockService.currentTimeMillisUnsafe()
            }),
          onBatch: metrics.observeBatch,
          refused: refusedOf
        })
        return pool.add(actorOptions).pipe(
          Effect.tap((actor) =>
            Effect.sync(() => {
              lane.actor = actor
            })
          ),
          Effect.andThen(Effect.forEach(registry.handlers(type), (h) => addChild(lane, h), { discard: true })),
          Effect.as(lane)
        )
      })

    // types and handlers added to the registry from anywhere join the trail
    const unsubscribe = registry.subscribe((change) => {
      if (change._tag === "TypeAdded") {
        if (change.type !== registering && !byKey.has(change.type.key)) {
          runSync(Effect.orDie(addLane(change.type, defaultProcess)))
        }
      } else {
        const lane = byKey.get(change.type.key)
        if (lane !== undefined && !lane.children.some((c) => c.handler === change.handler)) {
          runSync(addChild(lane, change.handler))
        }
      }
    })
    yield* Scope.addFinalizer(scope, Effect.sync(unsubscribe))

    const laneOf = (type: EventType.Any): Lane => {
      let lane = lanes.get(type)
      if (lane === undefined) lane = runSync(Effect.orDie(addLane(type, defaultProcess)))
      type[CacheOwner] = token
      type[CacheValue] = lane.mailbox
      return lane
    }

    for (const entry of options.types ?? []) {
      if ("process" in entry && "type" in entry && !("key" in entry)) yield* addLane(entry.type, entry.process)
      else yield* addLane(entry as EventType.Any, defaultProcess)
    }
    for (const type of registry.types()) if (!byKey.has(type.key)) yield* addLane(type, defaultProcess)

    /** Lanes by the names and keys logged so far (a new type may change what a name means). */
    const names = new Map<string, Lane>()
    const unsubscribeNames = registry.subscribe((change) => {
      if (change._tag === "TypeAdded") names.clear()
    })
    yield* Scope.addFinalizer(scope, Effect.sync(unsubscribeNames))

    /** The lane of a name or key (cached); throws {@link EventNotFound}, counted. */
    const laneNamed = (name: string): Lane => {
      let lane = names.get(name)
      if (lane === undefined) {
        let type: EventType.Any
        try {
          type = registry.resolve(name)
        } catch (error) {
          rejectedUnknown++
          throw error
        }
        lane = lanes.get(type) ?? laneOf(type)
        names.set(name, lane)
      }
      return lane
    }

    /** Resolves a name and decodes the data, counting what is rejected; throws the typed error. */
    const byName = (name: string, data: unknown): { lane: Lane; value: unknown } => {
      const lane = laneNamed(name)
      const type = lane.type
      try {
        return { lane, value: EventType.decodeUnsafe(type, data) }
      } catch (error) {
        lane.rejectedInvalid++
        throw error
      }
    }

    const logUnsafe = (type: EventType.Any | string, data: unknown, logOptions?: LogOptions): OfferResult => {
      let mailbox: Mailbox<unknown>
      if (typeof type === "string") {
        const found = byName(type, data)
        mailbox = found.lane.mailbox
        data = found.value
      } else {
        mailbox = type[CacheOwner] === token ? (type[CacheValue] as Mailbox<unknown>) : laneOf(type).mailbox
      }
      return mailbox.offerNow(data, logOptions?.parent)
    }

    const offer = (
      lane: Lane,
      data: unknown,
      at: number,
      parent: string | undefined
    ): Effect.Effect<"accepted" | "dropped", TrailClosed> => {
      const result = lane.mailbox.offer(data, at, parent)
      if (result === "accepted" || result === "dropped") return Effect.succeed(result)
      if (result === "closed") return Effect.fail(new TrailClosed({ type: lane.key }))
      return Effect.flatMap(lane.mailbox.awaitSpace(), () => offer(lane, data, at, parent))
    }

    const log = (
      type: EventType.Any | string,
      data: unknown,
      logOptions?: LogOptions
    ): Effect.Effect<"accepted" | "dropped", TrailClosed | EventNotFound | ValidationError> =>
      Effect.suspend((): Effect.Effect<"accepted" | "dropped", TrailClosed | EventNotFound | ValidationError> => {
        if (typeof type !== "string") {
          return offer(lanes.get(type) ?? laneOf(type), data, clock.millis(), logOptions?.parent)
        }
        let found: { lane: Lane; value: unknown }
        try {
          found = byName(type, data)
        } catch (error) {
          return Effect.fail(error as EventNotFound | ValidationError)
        }
        return offer(found.lane, found.value, clock.millis(), logOptions?.parent)
      })

    const on = (
      target: string | EventType.Any,
      handler: Handler.Handler
    ): Effect.Effect<void, EventNotFound | DuplicateHandler | DuplicateEventType | InvalidOptions> =>
      Effect.suspend(() => {
        try {
          registry.on(target, handler)
          return Effect.void
        } catch (error) {
          return Effect.fail(error as EventNotFound | DuplicateHandler | DuplicateEventType | InvalidOptions)
        }
      })

    const flush: Effect.Effect<void> = Effect.suspend(() => {
      const waits: Array<Effect.Effect<void>> = []
      // a flush waits for what is queued: it goes now, without lingering for more
      for (const lane of byKey.values()) {
        const mark = lane.mailbox.watermark()
        if (lane.actor !== undefined) pool.hurry(lane.actor as Pool.Lane<unknown, unknown>, mark)
        const done = lane.mailbox.isTerminal(mark)
        const typeDone = done ? Effect.void : lane.mailbox.awaitTerminal(mark)
        if (lane.children.length === 0) {
          if (!done) waits.push(typeDone)
          continue
        }
        // once the type's events are dispatched, wait for the handlers to settle them
        waits.push(
          Effect.andThen(
            typeDone,
            Effect.suspend(() =>
              Effect.forEach(lane.children, (child) => child.mailbox.awaitTerminal(child.mailbox.watermark()), {
                discard: true
              })
            )
          )
        )
      }
      // one after the other: each watermark is already taken, so waiting in turn ends
      // when the last is terminal, as waiting for all at once would, without a fiber
      // per type (a thousand types made the fibers most of a flush's cost)
      return Effect.forEach(waits, (wait) => wait, { discard: true })
    })

    const statsUnsafe = (): Stats => {
      const types: Record<string, TypeStats> = {}
      const totals = zeroCounts()
      let invalid = 0
      for (const lane of byKey.values()) {
        const c = lane.mailbox.counts()
        const handlers: Record<string, HandlerStats> = {}
        for (const child of lane.children) {
          handlers[child.handler.name] = {
            handler: child.handler.name,
            ...child.mailbox.counts(),
            failures: child.failures,
            restarts: child.supervisor.restarts,
            stopped: child.supervisor.stopped !== undefined
          }
        }
        types[lane.key] = {
          type: lane.key,
          delivery: lane.type.delivery,
          ...c,
          rejected: { invalid: lane.rejectedInvalid },
          handlers
        }
        invalid += lane.rejectedInvalid
        totals.accepted += c.accepted
        totals.processed += c.processed
        totals.queued += c.queued
        totals.inFlight += c.inFlight
        totals.dropped.overflow += c.dropped.overflow
        totals.dropped.shutdown += c.dropped.shutdown
        totals.dropped.failed += c.dropped.failed
        totals.deadLettered += c.deadLettered
        totals.refused.full += c.refused.full
        totals.refused.closed += c.refused.closed
      }
      return {
        types,
        totals,
        rejected: { unknownType: rejectedUnknown, invalid },
        deadLetters: deadLetters.length,
        deadLettersEvicted,
        closed
      }
    }

    const done = yield* Deferred.make<Stats>()
    let shuttingDown = false
    const shutdown: Effect.Effect<Stats> = Effect.suspend(() => {
      if (shuttingDown) return Deferred.await(done)
      shuttingDown = true
      closed = true
      const started = clockService.currentTimeMillisUnsafe()
      const limitOf = (delivery: EventType.Delivery, left: number) =>
        Math.max(0, delivery === "must" ? left : Math.min(droppableBudgetMs, left))
      for (const lane of byKey.values()) lane.mailbox.close()
      const stopTypes = Effect.forEach(
        [...byKey.values()],
        (lane) => Actor.stopLane(pool, lane.actor!, limitOf(lane.type.delivery, shutdownTimeoutMs), shutdownTimeoutMs),
        { concurrency: "unbounded", discard: true }
      )
      // then the handlers, with what is left of the deadline
      const stopHandlers = Effect.suspend(() => {
        const left = shutdownTimeoutMs - (clockService.currentTimeMillisUnsafe() - started)
        const children = [...byKey.values()].flatMap((lane) => lane.children.map((child) => ({ lane, child })))
        for (const { child } of children) child.mailbox.close()
        return Effect.forEach(
          children,
          ({ lane, child }) =>
            Actor.stopLane(handlerPool, child.actor!, limitOf(lane.type.delivery, left), shutdownTimeoutMs),
          { concurrency: "unbounded", discard: true }
        )
      })
      return stopTypes.pipe(
        Effect.andThen(stopHandlers),
        Effect.andThen(pool.stop()),
        Effect.andThen(handlerPool.stop()),
        Effect.map(statsUnsafe),
        Effect.tap((stats) => Deferred.succeed(done, stats)),
        Effect.uninterruptible
      )
    })

    yield* Effect.addFinalizer(() => shutdown)

    const intake = (key: string): Intake => {
      const lane = laneNamed(key)
      const { type, mailbox } = lane
      const found = lane
      // a plain struct is decoded by its compiled plan, resolved once here
      const plan = EventType.planOfType(type)
      const decode = (data: unknown): unknown => {
        if (plan !== null) {
          const out = plan.decode(data)
          if (out !== undefined) return out
        }
        try {
          return EventType.decodeUnsafe(type, data)
        } catch (error) {
          found.rejectedInvalid++
          throw error
        }
      }
      return {
        type,
        decode,
        offer: (event) => mailbox.offer(event.data, smallInt(event.happenedAt - epoch), event),
        awaitRoom: mailbox.awaitSpace()
      }
    }

    return {
      source,
      register: (type, process) => Effect.asVoid(addLane(type, (process as Processor | undefined) ?? defaultProcess)),
      log: log as Service["log"],
      logUnsafe: logUnsafe as Service["logUnsafe"],
      on,
      registry,
      flush,
      stats: Effect.sync(statsUnsafe),
      statsUnsafe,
      deadLetters: Effect.sync(() => deadLetters.slice()),
      deadLettersUnsafe: () => deadLetters.slice(),
      shutdown,
      intake
    } satisfies Service
  })

/**
 * The trail as a layer; the layer's scope owns it, so releasing the layer shuts it down.
 *
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<Trail, DuplicateEventType> =>
  Layer.effect(Trail, make(options))

/**
 * The Promise facade of a trail, for code that does not use Effect.
 *
 * @category models
 */
export interface Handle {
  readonly source: string
  /**
   * Synchronous, never blocks; see {@link Service.logUnsafe}. By name it throws
   * {@link EventNotFound} or {@link ValidationError}.
   */
  log<A, I>(type: EventType.EventType<A, I>, data: A, options?: LogOptions): OfferResult
  log(name: string, data: unknown, options?: LogOptions): OfferResult
  /**
   * Resolves once the event is accepted (waiting for room); rejects with
   * {@link TrailClosed} (by name, also {@link EventNotFound} or {@link ValidationError}).
   */
  send<A, I>(type: EventType.EventType<A, I>, data: A, options?: LogOptions): Promise<"accepted" | "dropped">
  send(name: string, data: unknown, options?: LogOptions): Promise<"accepted" | "dropped">
  /** Adds a handler (see {@link Service.on}); throws its typed errors. */
  on(target: string | EventType.Any, handler: Handler.Handler): void
  readonly registry: Registry.Registry
  register<A, I>(type: EventType.EventType<A, I>, process?: Processor<A>): Promise<void>
  flush(): Promise<void>
  stats(): Stats
  deadLetters(): ReadonlyArray<DeadLetter>
  /** Shuts down (delivering `must` events) and releases everything; returns the final counters. */
  dispose(): Promise<Stats>
}

/**
 * Starts a trail for Promise-based code. Call `dispose()` at the end: it delivers the
 * `must` events still queued.
 *
 * @example
 * ```ts
 * const trail = await Trail.start({ source: "job-42", process: (batch) => Effect.log(batch.events.length) })
 * trail.log(StepFinished, { step: 1 })
 * await trail.dispose()
 * ```
 *
 * @category constructors
 */
export const start = async (options: Options = {}): Promise<Handle> => {
  const runtime = ManagedRuntime.make(layer(options))
  const trail = await runtime.runPromise(Effect.service(Trail))
  let disposed = false
  const run = <A, E>(effect: Effect.Effect<A, E>, type: EventType.Any | string): Promise<A> =>
    disposed
      ? Promise.reject(new TrailClosed({ type: typeof type === "string" ? type : type.key }))
      : runtime.runPromise(effect)
  return {
    source: trail.source,
    log: trail.logUnsafe,
    send: (type: EventType.Any | string, data: unknown, logOptions?: LogOptions) =>
      run(
        (
          trail.log as (
            t: EventType.Any | string,
            d: unknown,
            o?: LogOptions
          ) => Effect.Effect<"accepted" | "dropped", unknown>
        )(type, data, logOptions),
        type
      ),
    on: (target, handler) => trail.registry.on(target, handler),
    registry: trail.registry,
    register: (type, process) => run(trail.register(type, process), type),
    flush: () => (disposed ? Promise.resolve() : runtime.runPromise(trail.flush)),
    stats: () => trail.statsUnsafe(),
    deadLetters: () => trail.deadLettersUnsafe(),
    dispose: async () => {
      if (disposed) return trail.statsUnsafe()
      const stats = await runtime.runPromise(trail.shutdown)
      disposed = true
      await runtime.dispose()
      return stats
    }
  }
}
