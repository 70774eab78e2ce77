/**
 * Supervision: what a failure of a child (a handler, a machine, any actor) means.
 *
 * A child's batch is first retried on the child's own retry schedule. When those
 * retries are exhausted, the child's supervisor decides, by its strategy:
 *
 * - `resume`: the failed batch is given up (`must` events become dead letters with
 *   the cause, `droppable` ones are counted as dropped) and the child goes on with
 *   its state as it is. The default.
 * - `restart`: the child's state is rebuilt after a backoff (exponential with
 *   jitter), then the failed batch is tried again from where it failed. Restarts are
 *   limited by an *intensity*: at most `maxRestarts` within `windowMs`. One more
 *   escalates: the child is stopped.
 * - `stop`: the child is stopped at its first exhausted batch.
 *
 * A stopped child takes no more work: every batch it holds or receives later is
 * settled at once (dead letters with the stopping cause for `must`, drops for
 * `droppable`), so nothing disappears from the accounting. Every stop is reported as
 * a {@link Escalated} event, logged on the trail like any event.
 *
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Exit, Schedule, Schema } from "effect"
import { InvalidOptions } from "./Errors.ts"
import * as EventType from "./EventType.ts"

/**
 * What a supervisor does with a child whose retries are exhausted.
 *
 * @category models
 */
export type Strategy = "resume" | "restart" | "stop"

/**
 * Options of a supervisor; every field has a default.
 *
 * @category models
 */
export interface Options {
  /** Default `"resume"`. */
  readonly strategy?: Strategy
  /** Most restarts within `windowMs`; one more escalates (the child is stopped). Default `3`. */
  readonly maxRestarts?: number
  /** Window of the restart intensity, in milliseconds. Default `5_000`. */
  readonly windowMs?: number
  /**
   * Delay before each restart; its input is the failure, stepped once per restart
   * within the window. Default: exponential from 100 ms, factor 2, jittered.
   */
  readonly backoff?: Schedule.Schedule<unknown, unknown>
}

/**
 * The default restart backoff: exponential from 100 ms, factor 2, jittered.
 *
 * @category constructors
 */
export const defaultBackoff: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.jittered
)

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  strategy: "resume",
  maxRestarts: 3,
  windowMs: 5_000,
  backoff: defaultBackoff
} as const satisfies Required<Options>

/**
 * The event logged when a supervisor stops a child: `reason` is `"intensity"` when
 * the child restarted too often, `"strategy"` when its strategy is `stop`.
 *
 * @category events
 */
export const Escalated = EventType.make(
  "cairn.supervisor.escalated",
  1,
  Schema.Struct({
    /** Which child: `<type key>/<handler name>` for a handler, the actor's name otherwise. */
    child: Schema.String,
    reason: Schema.Literals(["intensity", "strategy"]),
    /** The last failure, printed (`Cause.pretty`). */
    cause: Schema.String,
    /** Restarts within the window when it stopped. */
    restarts: Schema.Number,
    maxRestarts: Schema.Number,
    windowMs: Schema.Number
  }),
  { priority: 10, batch: { maxSize: 64, lingerMs: 0 } }
)

/**
 * The data of an {@link Escalated} event.
 *
 * @category models
 */
export type EscalatedData = EventType.Data<typeof Escalated>

/**
 * What to do with a child whose retries are exhausted.
 *
 * @category models
 */
export type Decision =
  | { readonly _tag: "Resume" }
  | { readonly _tag: "Restart"; readonly delayMs: number }
  | { readonly _tag: "Stop"; readonly escalated: EscalatedData }

type Step = (now: number, input: unknown) => unknown

/**
 * The supervision state of one child: its strategy and the restarts it had lately.
 * Pure bookkeeping; the runtime asks it what to do and does it.
 *
 * @category models
 */
export class Child {
  readonly name: string
  readonly strategy: Strategy
  readonly maxRestarts: number
  readonly windowMs: number
  private readonly backoff: Schedule.Schedule<unknown, unknown>
  /** Times of the restarts within the window, oldest first. */
  private readonly restartTimes: Array<number> = []
  private step: Step | undefined
  /** Restarts over the child's life. */
  restarts = 0
  /** Failures (exhausted batches) over the child's life. */
  failures = 0
  /** Set once stopped. */
  stopped: Cause.Cause<unknown> | undefined = undefined
  /** Why it stopped, once stopped: later decisions report the same reason. */
  stoppedFor: "intensity" | "strategy" | undefined = undefined

  constructor(name: string, options: Options = {}) {
    this.name = name
    this.strategy = options.strategy ?? defaults.strategy
    this.maxRestarts = options.maxRestarts ?? defaults.maxRestarts
    this.windowMs = options.windowMs ?? defaults.windowMs
    this.backoff = options.backoff ?? defaults.backoff
    if (this.strategy !== "resume" && this.strategy !== "restart" && this.strategy !== "stop") {
      throw new InvalidOptions({
        subject: `supervisor of ${name}`,
        reason: `strategy must be "resume", "restart" or "stop"`
      })
    }
    if (!Number.isSafeInteger(this.maxRestarts) || this.maxRestarts < 0) {
      throw new InvalidOptions({ subject: `supervisor of ${name}`, reason: `maxRestarts must be an integer >= 0` })
    }
    if (!(this.windowMs > 0 && Number.isFinite(this.windowMs))) {
      throw new InvalidOptions({ subject: `supervisor of ${name}`, reason: `windowMs must be a finite number > 0` })
    }
  }

  /** Decides, at `now` (ms), what an exhausted failure with `cause` means. */
  decide(now: number, cause: Cause.Cause<unknown>): Decision {
    this.failures++
    if (this.stoppedFor !== undefined) return this.stop(now, cause, this.stoppedFor)
    switch (this.strategy) {
      case "resume":
        return { _tag: "Resume" }
      case "stop":
        return this.stop(now, cause, "strategy")
      case "restart": {
        const times = this.restartTimes
        while (times.length > 0 && times[0]! <= now - this.windowMs) times.shift()
        if (times.length === 0) this.step = undefined // a quiet window: the backoff starts over
        if (times.length >= this.maxRestarts) return this.stop(now, cause, "intensity")
        times.push(now)
        this.restarts++
        return { _tag: "Restart", delayMs: this.nextDelay(now, cause) }
      }
    }
  }

  private stop(_now: number, cause: Cause.Cause<unknown>, reason: "intensity" | "strategy"): Decision {
    this.stopped ??= cause
    this.stoppedFor ??= reason
    return {
      _tag: "Stop",
      escalated: {
        child: this.name,
        reason,
        cause: Cause.pretty(cause),
        restarts: this.restartTimes.length,
        maxRestarts: this.maxRestarts,
        windowMs: this.windowMs
      }
    }
  }

  private nextDelay(now: number, cause: Cause.Cause<unknown>): number {
    if (this.step === undefined) this.step = stepOf(this.backoff)
    const out = this.step(now, Cause.squash(cause))
    // a finished backoff schedule keeps its last delay
    if (out === undefined) return this.lastDelay
    this.lastDelay = out as number
    return this.lastDelay
  }

  private lastDelay = 0
}

/**
 * Turns a schedule into a synchronous step function giving the next delay in ms, or
 * `undefined` when the schedule is done. Backoff schedules need no services here.
 */
const stepOf = (schedule: Schedule.Schedule<unknown, unknown>): Step => {
  const step = Effect.runSync(
    Schedule.toStep(schedule) as Effect.Effect<
      (now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>
    >
  )
  return (now, input) => {
    const exit = Effect.runSyncExit(step(now, input))
    return Exit.isSuccess(exit) ? Duration.toMillis(exit.value[1]) : undefined
  }
}
