/**
 * Handlers: what a program does with the events of a type, in-process.
 *
 * A handler receives each event of its type, one at a time, in order. Each handler
 * runs isolated, as an actor of its own: its own bounded mailbox (so a slow handler
 * does not hold the others back until its mailbox is full), its own retries and
 * time limit, and its own supervisor. A handler's typed failure, defect or timeout
 * never reaches another handler, the type's actor or the caller; it is logged
 * through Effect's logger with its cause and counted for that handler.
 *
 * Handlers declared with the event type (`EventType.make(..., { handlers })`) run
 * first, in declaration order; handlers registered by name (`registry.on(...)`,
 * `trail.on(...)`) come after them, in registration order. "Run first" is the order
 * in which each event is handed to them; since each handler is an actor, a later
 * handler does not wait for an earlier one to finish.
 *
 * A handler is stateless (`make`) or builds its state when it starts (`stateful`):
 * a supervisor's `restart` runs that again to rebuild the state.
 *
 * @since 0.1.0
 */
import { Effect, Schedule } from "effect"
import type { Envelope } from "./Envelope.ts"
import { InvalidOptions } from "./Errors.ts"
import type { Overflow } from "./EventType.ts"
import { maxCapacity } from "./Mailbox.ts"
import * as Supervisor from "./Supervisor.ts"

/**
 * Handles one event.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: a handler registered by name may take any data
export type Handle<A = any> = (event: Envelope<A>) => Effect.Effect<void, unknown>

/**
 * Options of a handler; every field has a default.
 *
 * @category models
 */
export interface Options {
  readonly mailbox?: {
    /** Most events waiting for this handler. Default `1_000`. */
    readonly capacity?: number
    /**
     * Policy when full. Default: `backpressure` for `must` types (the type's actor
     * waits for room: a `must` handler never loses an event), `dropNewest` for
     * `droppable` ones. A `must` type's handler only accepts `backpressure`.
     */
    readonly overflow?: Overflow
  }
  /**
   * Events taken at once; within a batch they are handled one by one, and a retry
   * resumes at the event that failed. Default `64`.
   */
  readonly maxBatch?: number
  /** Retry schedule of a failed event (its input is the failure). Default: exponential from 50 ms, jittered, 3 retries. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
  /** Time limit of one attempt at a batch. Default `10_000`. */
  readonly timeoutMs?: number
  /** What an event whose retries are exhausted means. Default: see {@link Supervisor.defaults}. */
  readonly supervisor?: Supervisor.Options
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  capacity: 1_000,
  maxBatch: 64,
  retry: Schedule.exponential("50 millis", 2).pipe(Schedule.jittered, Schedule.upTo({ times: 3 })) as Schedule.Schedule<
    unknown,
    unknown
  >,
  timeoutMs: 10_000
} as const

const TypeId: unique symbol = Symbol.for("cairn/Handler")

/**
 * A handler of events whose data has type `A`.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: see Handle
export interface Handler<A = any> {
  readonly [TypeId]: typeof TypeId
  /** Identifies the handler among its type's handlers (metrics, logs, dead letters). */
  readonly name: string
  /** Builds the handle function (and its state); run at start and at each restart. */
  readonly start: Effect.Effect<Handle<A>, unknown>
  readonly options: Options
}

const NAME = /^[A-Za-z0-9_.:-]+$/

const validate = (name: string, options: Options): void => {
  const fail = (reason: string): never => {
    throw new InvalidOptions({ subject: `handler "${name}"`, reason })
  }
  if (!NAME.test(name)) fail("the name must be letters, digits, _ . : or -")
  const capacity = options.mailbox?.capacity
  if (capacity !== undefined && !(Number.isSafeInteger(capacity) && capacity > 0 && capacity <= maxCapacity)) {
    fail(`mailbox.capacity must be an integer from 1 to ${maxCapacity}`)
  }
  const overflow = options.mailbox?.overflow
  if (overflow !== undefined && overflow !== "backpressure" && overflow !== "dropNewest" && overflow !== "dropOldest") {
    fail(`mailbox.overflow must be "backpressure", "dropNewest" or "dropOldest"`)
  }
  if (options.maxBatch !== undefined && !(Number.isSafeInteger(options.maxBatch) && options.maxBatch > 0)) {
    fail("maxBatch must be a positive integer")
  }
  if (options.timeoutMs !== undefined && !(options.timeoutMs > 0 && Number.isFinite(options.timeoutMs))) {
    fail("timeoutMs must be a finite number > 0")
  }
  // the supervisor's options are checked here too, where the handler is defined
  if (options.supervisor !== undefined) new Supervisor.Child(name, options.supervisor)
}

/**
 * A stateless handler.
 *
 * Throws {@link InvalidOptions} for an invalid name or option (a definition bug, found at
 * start-up).
 *
 * @example
 * ```ts
 * const count = Handler.make("count", (event) => Effect.sync(() => seen.push(event.data)))
 * ```
 *
 * @category constructors
 */
// biome-ignore lint/suspicious/noExplicitAny: see Handle
export const make = <A = any>(name: string, handle: Handle<A>, options: Options = {}): Handler<A> => {
  validate(name, options)
  return { [TypeId]: TypeId, name, start: Effect.succeed(handle), options }
}

/**
 * A handler with state: `start` builds the state and returns the handle function
 * over it. A supervisor's `restart` runs `start` again (fresh state). A `start`
 * that fails counts as a failure of the event being handled.
 *
 * @example
 * ```ts
 * const totals = Handler.stateful("totals", Effect.sync(() => {
 *   let total = 0
 *   return (event: Envelope.Envelope<{ amount: number }>) => Effect.sync(() => { total += event.data.amount })
 * }))
 * ```
 *
 * @category constructors
 */
// biome-ignore lint/suspicious/noExplicitAny: see Handle
export const stateful = <A = any>(
  name: string,
  start: Effect.Effect<Handle<A>, unknown>,
  options: Options = {}
): Handler<A> => {
  validate(name, options)
  return { [TypeId]: TypeId, name, start, options }
}

/**
 * @category guards
 */
export const isHandler = (u: unknown): u is Handler => typeof u === "object" && u !== null && TypeId in u
