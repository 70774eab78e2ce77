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
import { type Cause, Clock, Context, Deferred, Effect, Layer, ManagedRuntime, Scope } from "effect"
import * as Actor from "./Actor.ts"
import { Batch } from "./Batch.ts"
import { type Envelope, IdGenerator, Origin } from "./Envelope.ts"
import { DuplicateEventType, TrailClosed } from "./Errors.ts"
import * as EventType from "./EventType.ts"
import { SampledClock } from "./internal/clock.ts"
import * as Pool from "./internal/pool.ts"
import { type Counts, Mailbox, type OfferResult } from "./Mailbox.ts"
import * as Metrics from "./Metrics.ts"

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
  /** The events, column by column. */
  readonly batch: Batch
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
}

/**
 * Counters of every type, and their sum.
 *
 * @category models
 */
export interface Stats {
  readonly types: Readonly<Record<string, TypeStats>>
  readonly totals: Counts
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
   * one millisecond and one synchronous run (`1`: read it on every call). Default `64`.
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
  deadLetterCapacity: 1_000
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
   */
  readonly log: <A, I>(
    type: EventType.EventType<A, I>,
    data: A,
    options?: LogOptions
  ) => Effect.Effect<"accepted" | "dropped", TrailClosed>
  /**
   * Records an event synchronously; never blocks, never throws for a full mailbox:
   * the result says what happened (`"full"` and `"closed"` are refusals, counted).
   * Throws {@link DuplicateEventType} if the type is new and its key is taken.
   */
  readonly logUnsafe: <A, I>(type: EventType.EventType<A, I>, data: A, options?: LogOptions) => OfferResult
  /** Waits until every event accepted before the call has reached a terminal state. */
  readonly flush: Effect.Effect<void>
  readonly stats: Effect.Effect<Stats>
  readonly statsUnsafe: () => Stats
  readonly deadLetters: Effect.Effect<ReadonlyArray<DeadLetter>>
  readonly deadLettersUnsafe: () => ReadonlyArray<DeadLetter>
  /** Shuts the trail down (idempotent); returns the final counters. */
  readonly shutdown: Effect.Effect<Stats>
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
    const clock = new SampledClock(
      () => clockService.currentTimeMillisUnsafe(),
      options.clockSampling ?? defaults.clockSampling
    )
    // Actors live in a child scope created before the shutdown finalizer is added, so
    // closing the trail's scope first shuts down gracefully, then releases the actors
    // (including those registered later, on first log).
    const scope = yield* Scope.fork(yield* Scope.Scope)
    const context = yield* Effect.context<never>()
    const runSync = Effect.runSyncWith(context)
    const runFork = Effect.runForkWith(context)
    const pool = new Pool.Pool(concurrency, clockService, scope, runFork)
    yield* pool.start()
    const lanes = new Map<EventType.Any, Lane>()
    const byKey = new Map<string, Lane>()
    const deadLetters: Array<DeadLetter> = []
    const deadLetterCapacity = options.deadLetterCapacity ?? defaults.deadLetterCapacity
    let deadLettersEvicted = 0
    let closed = false
    /** This trail's token in the types' cache slots. */
    const token = {}

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
        const origin = new Origin(type.key, source, new IdGenerator())
        const mailbox = new Mailbox<unknown>(
          type.mailbox.capacity,
          type.mailbox.overflow,
          type.batch.maxSize,
          clockService.currentTimeMillisUnsafe()
        )
        if (closed) mailbox.close()
        const metrics = Metrics.registerType(type.key, mailbox, context)
        const lane: Lane = { type, mailbox, key: type.key, actor: undefined }
        lanes.set(type, lane)
        byKey.set(type.key, lane)
        const actorOptions = Actor.laneOptions<unknown, Batch>({
          name: type.key,
          mailbox,
          prepare: (taken) =>
            new Batch(type, origin, taken.items, taken.base, taken.offsets, taken.extras, taken.segment.start),
          behaviour: process,
          delivery: type.delivery,
          batch: type.batch,
          priority: type.priority,
          concurrency: type.concurrency,
          retry: type.retry,
          timeoutMs: type.timeoutMs,
          onDeadLetter: (batch, cause, reason) => {
            const deadLetter: DeadLetter = {
              type: type.key,
              batch,
              get events() {
                return batch.events
              },
              cause,
              reason,
              at: clockService.currentTimeMillisUnsafe()
            }
            deadLetters.push(deadLetter)
            if (deadLetters.length > deadLetterCapacity) {
              deadLetters.shift()
              deadLettersEvicted++
            }
            options.onDeadLetter?.(deadLetter)
          },
          onBatch: metrics.observeBatch
        })
        return pool.add(actorOptions).pipe(
          Effect.map((actor) => {
            lane.actor = actor
            return lane
          })
        )
      })

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

    const logUnsafe = <A, I>(type: EventType.EventType<A, I>, data: A, logOptions?: LogOptions): OfferResult => {
      const mailbox = type[CacheOwner] === token ? (type[CacheValue] as Mailbox<unknown>) : laneOf(type).mailbox
      const result = mailbox.offer(data, clock.millis(), logOptions?.parent)
      if (result === "full") mailbox.refuseFull()
      return result
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

    const log = <A, I>(
      type: EventType.EventType<A, I>,
      data: A,
      logOptions?: LogOptions
    ): Effect.Effect<"accepted" | "dropped", TrailClosed> =>
      Effect.suspend(() => offer(lanes.get(type) ?? laneOf(type), data, clock.millis(), logOptions?.parent))

    const flush: Effect.Effect<void> = Effect.suspend(() => {
      const waits: Array<Effect.Effect<void>> = []
      for (const lane of byKey.values()) {
        const mark = lane.mailbox.watermark()
        if (!lane.mailbox.isTerminal(mark)) waits.push(lane.mailbox.awaitTerminal(mark))
      }
      return Effect.all(waits, { concurrency: "unbounded", discard: true })
    })

    const statsUnsafe = (): Stats => {
      const types: Record<string, TypeStats> = {}
      const totals = zeroCounts()
      for (const lane of byKey.values()) {
        const c = lane.mailbox.counts()
        types[lane.key] = { type: lane.key, delivery: lane.type.delivery, ...c }
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
      return { types, totals, deadLetters: deadLetters.length, deadLettersEvicted, closed }
    }

    const done = yield* Deferred.make<Stats>()
    let shuttingDown = false
    const shutdown: Effect.Effect<Stats> = Effect.suspend(() => {
      if (shuttingDown) return Deferred.await(done)
      shuttingDown = true
      closed = true
      for (const lane of byKey.values()) lane.mailbox.close()
      return Effect.forEach(
        [...byKey.values()],
        (lane) =>
          Actor.stopLane(
            pool,
            lane.actor!,
            lane.type.delivery === "must" ? shutdownTimeoutMs : Math.min(droppableBudgetMs, shutdownTimeoutMs),
            shutdownTimeoutMs
          ),
        { concurrency: "unbounded", discard: true }
      ).pipe(
        Effect.andThen(pool.stop()),
        Effect.map(statsUnsafe),
        Effect.tap((stats) => Deferred.succeed(done, stats)),
        Effect.uninterruptible
      )
    })

    yield* Effect.addFinalizer(() => shutdown)

    return {
      source,
      register: (type, process) => Effect.asVoid(addLane(type, (process as Processor | undefined) ?? defaultProcess)),
      log,
      logUnsafe,
      flush,
      stats: Effect.sync(statsUnsafe),
      statsUnsafe,
      deadLetters: Effect.sync(() => deadLetters.slice()),
      deadLettersUnsafe: () => deadLetters.slice(),
      shutdown
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
  /** Synchronous, never blocks; see {@link Service.logUnsafe}. */
  log<A, I>(type: EventType.EventType<A, I>, data: A, options?: LogOptions): OfferResult
  /** Resolves once the event is accepted (waiting for room); rejects with {@link TrailClosed}. */
  send<A, I>(type: EventType.EventType<A, I>, data: A, options?: LogOptions): Promise<"accepted" | "dropped">
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
  const run = <A, E>(effect: Effect.Effect<A, E>, type: EventType.Any): Promise<A> =>
    disposed ? Promise.reject(new TrailClosed({ type: type.key })) : runtime.runPromise(effect)
  return {
    source: trail.source,
    log: trail.logUnsafe,
    send: (type, data, logOptions) => run(trail.log(type, data, logOptions), type),
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
