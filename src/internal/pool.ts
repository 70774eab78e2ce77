/**
 * The machinery behind actors: lanes (a mailbox and its behaviour) scheduled on a
 * pool of worker fibers.
 *
 * A lane becomes *ready* when its mailbox holds a full batch, when its linger ran
 * out, when it closes with events left, or when a batch waiting for a retry is due.
 * Ready lanes wait in a queue ordered by priority (FIFO within a priority, and a
 * lane goes to the back after each batch, so equal priorities take turns). Each of
 * the pool's workers takes the next ready lane, takes one batch from it and runs the
 * lane's behaviour on it; at most `concurrency` batches of one lane run at once.
 *
 * Nothing here forks a fiber or races a timer per batch: readiness is signalled
 * synchronously by the mailbox, lingers share one timer per `lingerMs`, and only
 * failures (retry backoff) and timeouts cost fibers. A failed batch does not hold a
 * worker while it waits for its retry: it waits on a timer and comes back as ready.
 */
import { Cause, type Clock, Duration, Effect, Exit, type Fiber, Result, Schedule, Scope } from "effect"
import { ProcessingDefect, ProcessingTimeout, ShutdownDeadline } from "../Errors.ts"
import type { BatchOptions, Delivery } from "../EventType.ts"
import { keepShapes, type Mailbox, type Segment, type Taken } from "../Mailbox.ts"
import type { Decision, EscalatedData } from "../Supervisor.ts"
import { Fifo } from "./fifo.ts"
import { Linger, type Target } from "./linger.ts"

export type DeadLetterReason = "retriesExhausted" | "shutdown" | "stopped" | "rejected"
export type BatchOutcome = "processed" | "deadLettered" | "dropped"

export interface LaneOptions<A, B> {
  /** Used in errors and metrics (for a trail actor, the type key). */
  readonly name: string
  readonly mailbox: Mailbox<A>
  /** Turns what was taken from the mailbox into a batch. Once per batch. */
  readonly prepare: (taken: Taken<A>) => B
  /** Processes one batch. Failures and defects are retried on `retry`. */
  readonly behaviour: (batch: B) => Effect.Effect<void, unknown>
  readonly delivery: Delivery
  readonly batch: BatchOptions
  readonly priority: number
  /** Batches of this lane processed at once. */
  readonly concurrency: number
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** Limit of one processing attempt, in milliseconds. */
  readonly timeoutMs: number
  /** Called once per dead-lettered batch, synchronously, before the accounting moves. */
  readonly onDeadLetter?: ((batch: B, cause: Cause.Cause<unknown>, reason: DeadLetterReason) => void) | undefined
  /** Called once per batch, synchronously, just before its outcome is settled in the accounting. */
  readonly onBatch?: ((size: number, durationMs: number, outcome: BatchOutcome) => void) | undefined
  /** Runs after every failed attempt (timeouts included), before the retry is planned: log, count. */
  readonly onFailure?: ((cause: Cause.Cause<unknown>) => Effect.Effect<void>) | undefined
  /**
   * Asked when a batch's retries are exhausted (at the pool's clock time `now`).
   * Without it, the batch is given up (the `resume` strategy).
   */
  readonly supervise?: ((now: number, cause: Cause.Cause<unknown>) => Decision) | undefined
  /**
   * How many items of a batch were processed (when the rest is given up, or when
   * some were skipped, only these count as processed). Default: none on failure,
   * all on success.
   */
  readonly progress?: ((batch: B) => number) | undefined
  /**
   * Asked when the supervisor resumes after a batch's retries are exhausted: `true`
   * when the behaviour gave up just the item that failed (recording it) and the
   * batch should go on from the next one; `false` gives up the rest of the batch.
   * Default: the rest of the batch is given up.
   */
  readonly skip?: ((batch: B, cause: Cause.Cause<unknown>) => boolean) | undefined
  /**
   * Asked once when a batch succeeded: how many of its items the behaviour refused
   * (recording them itself, e.g. as dead letters); they do not count as processed.
   * Default: none.
   */
  readonly refused?: ((batch: B) => number) | undefined
  /** Rebuilds the behaviour's state before a restart tries the failed batch again. */
  readonly restart?: (() => Effect.Effect<void, unknown>) | undefined
  /** Called, synchronously, when the supervisor stops the lane. */
  readonly onStop?: ((escalated: EscalatedData) => void) | undefined
  /**
   * How many events the lane may take now (downstream room); `0` holds the lane until
   * `Pool.notify` is called again. Default: no limit.
   */
  readonly room?: (() => number) | undefined
}

/** One batch taken from a lane, until it is settled. */
class Run<B> {
  readonly lane: Lane<unknown, B>
  readonly batch: B
  readonly size: number
  readonly segment: Segment
  readonly startedAt: number
  step: ((now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>) | undefined = undefined
  backoff: Fiber.Fiber<void> | undefined = undefined
  settled = false

  constructor(lane: Lane<unknown, B>, batch: B, size: number, segment: Segment, startedAt: number) {
    this.lane = lane
    this.batch = batch
    this.size = size
    this.segment = segment
    this.startedAt = startedAt
  }
}

export class Lane<A, B> implements Target {
  readonly options: LaneOptions<A, B>
  readonly mailbox: Mailbox<A>
  /** Batches taken and not settled, including those waiting for a retry. */
  running = 0
  /** In the ready queue. */
  queued = false
  /** The linger of the current wait ran out. */
  lingerDue = false
  /** Generation of the current linger wait (stale timers are ignored). */
  generation = 0
  /** Runs whose backoff passed, to run before any new batch. */
  readonly retries: Array<Run<B>> = []
  /** Runs waiting for their retry's backoff (in-flight runs are on the workers' slots). */
  readonly backingOff = new Set<Run<B>>()
  /** Abandoned at shutdown: nothing more runs. */
  abandoned = false
  /** Stopped by its supervisor: every batch is settled at once with this cause. */
  halted: Cause.Cause<unknown> | undefined = undefined
  readonly pool: Pool
  readonly onFull: () => void
  readonly onFirst: () => void
  /**
   * Someone waits for the events before this queue index (a flush): while any of them
   * is queued the lane is ready, linger or not. (Not the linger's flag: a take resets
   * that, and a flush behind a full batch was left to wait out the linger.)
   */
  hurryUntil = 0
  /** A sweep of the mailbox is scheduled (see `sweepMs`). */
  sweepQueued = false
  readonly sweeper: Target
  // the options `wants` reads for every batch, on the lane itself: with many types,
  // each batch otherwise reads the options and their batch object from cold memory
  private readonly maxSize: number
  private readonly lingerMs: number
  private readonly concurrency: number
  private readonly room: (() => number) | undefined

  constructor(pool: Pool, options: LaneOptions<A, B>) {
    this.pool = pool
    this.options = options
    this.mailbox = options.mailbox
    this.maxSize = options.batch.maxSize
    this.lingerMs = options.batch.lingerMs
    this.concurrency = options.concurrency
    this.room = options.room
    this.onFull = () => pool.notify(this as Lane<unknown, unknown>)
    this.sweeper = {
      release: () => {
        this.sweepQueued = false
        this.mailbox.sweep()
      }
    }
    this.onFirst = () => pool.linger.schedule(this.lingerMs, this, this.generation)
  }

  release(generation: number): void {
    if (generation !== this.generation) return
    this.lingerDue = true
    this.pool.notify(this as Lane<unknown, unknown>)
  }

  /** Whether a worker has something to do here now. */
  wants(): boolean {
    if (this.abandoned) return false
    if (this.retries.length > 0) return true
    if (this.running >= this.concurrency) return false
    const size = this.mailbox.size
    if (size === 0) return false
    if (this.halted !== undefined) return true
    if (this.room !== undefined && this.room() <= 0) return false
    return (
      size >= this.maxSize ||
      this.lingerDue ||
      this.lingerMs === 0 ||
      this.mailbox.closed ||
      this.hurryUntil > this.mailbox.oldest
    )
  }

  /** Not ready: watch the mailbox (and arm the linger) so it says when it is. */
  rearm(): void {
    if (this.abandoned || this.running >= this.concurrency) return
    this.generation++
    this.lingerDue = false
    if (this.lingerMs === 0) this.mailbox.watch(1, this.onFull, undefined)
    else this.mailbox.watch(this.maxSize, this.onFull, this.onFirst)
  }
}

/** Keeps the shape of a run alive between batches (see `keepShapes` in Mailbox.ts). */
export const keepRun: Run<unknown> = new Run<unknown>(undefined as never, undefined, 0, keepShapes.segment, Date.now())

/**
 * The same for the effects each batch makes: Effect builds its primitives with a
 * constructor that adds a property, and the shape that results is held only weakly
 * too. After a full collection with none alive, the batch path (Effect's own code
 * included) was thrown away and ran slowly for a while (a sixth of a round of the
 * throughput benchmark, collecting before each round). An instance of each, for good.
 */
export const keepEffects: ReadonlyArray<unknown> = [
  Effect.sync(() => undefined),
  Effect.exit(Effect.sync(() => undefined)),
  Effect.suspend(() => Effect.void),
  Exit.succeed(undefined),
  Effect.gen(function* () {
    yield* Effect.void
  })
]

/**
 * Within how long of a take a lane's mailbox is swept: the slots of what it took are
 * cleared then (unless offers overwrote them first), so a mailbox refers to nothing
 * that left it for longer than this.
 */
export const sweepMs = 1_000

/**
 * A failure of the behaviour as the retries see it: a defect (a throw, a die)
 * becomes a typed {@link ProcessingDefect} naming the lane; any other cause stays.
 */
const defectOf = (run: AnyRun, cause: Cause.Cause<unknown>): Cause.Cause<unknown> => {
  const defect = Cause.findDefect(cause)
  if (Result.isFailure(defect)) return cause
  return Cause.fail(new ProcessingDefect({ type: run.lane.options.name, defect: defect.success }))
}

type AnyLane = Lane<unknown, unknown>
type AnyRun = Run<unknown>
type Step = (now: number, input: unknown) => Effect.Effect<[unknown, Duration.Duration], unknown>

const toStep = (schedule: Schedule.Schedule<unknown, unknown>): Effect.Effect<Step> =>
  Schedule.toStep(schedule) as Effect.Effect<Step>

/** What one worker is doing: the run it is on, if any, and until when it may take. */
interface Slot {
  run: AnyRun | undefined
  fiber: Fiber.Fiber<void> | undefined
  /** When the current attempt times out (milliseconds on the pool's clock). */
  deadline: number
  /** Set when the watchdog gave up on this worker's attempt and replaced the worker. */
  timedOut: boolean
}

/** Ready lanes by priority, highest first; FIFO within a priority. */
class ReadyQueue {
  private readonly levels: Array<{ readonly priority: number; readonly lanes: Fifo<AnyLane> }> = []

  push(lane: AnyLane): void {
    const priority = lane.options.priority
    const levels = this.levels
    let i = 0
    while (i < levels.length && levels[i]!.priority > priority) i++
    let level = levels[i]
    if (level === undefined || level.priority !== priority) {
      level = { priority, lanes: new Fifo() }
      levels.splice(i, 0, level)
    }
    level.lanes.push(lane)
  }

  pop(): AnyLane | undefined {
    const levels = this.levels
    for (let i = 0; i < levels.length; i++) {
      const lane = levels[i]!.lanes.shift()
      if (lane !== undefined) return lane
    }
    return undefined
  }
}

export class Pool {
  readonly linger: Linger
  private readonly clock: Clock.Clock
  private readonly scope: Scope.Scope
  private readonly runFork: <X, Y>(effect: Effect.Effect<X, Y>) => Fiber.Fiber<X, Y>
  private readonly ready = new ReadyQueue()
  private readonly idle: Array<(effect: Effect.Effect<void>) => void> = []
  /** Every worker with what it is on, to settle its run if it is interrupted. */
  private readonly workers = new Map<Fiber.Fiber<void>, Slot>()
  private readonly size: number
  private stopped = false

  constructor(
    size: number,
    clock: Clock.Clock,
    scope: Scope.Scope,
    runFork: <X, Y>(effect: Effect.Effect<X, Y>) => Fiber.Fiber<X, Y>
  ) {
    this.size = size
    this.clock = clock
    this.scope = scope
    this.runFork = runFork
    this.linger = new Linger(clock, scope)
  }

  /**
   * Starts the workers; run once. Workers are not children of the scope: closing a
   * scope waits for its fibers, and a processing function that ignores interruption
   * must not be able to hold a shutdown. Closing the scope stops them (see `stop`).
   */
  start(): Effect.Effect<void> {
    return Effect.suspend(() =>
      Scope.addFinalizer(this.scope, this.stop()).pipe(
        Effect.andThen(this.linger.register(sweepMs)),
        Effect.andThen(Effect.forEach(Array.from({ length: this.size }), () => this.spawn(), { discard: true }))
      )
    )
  }

  /** Adds a lane; its linger timer must be registered (an Effect) before events arrive. */
  add<A, B>(options: LaneOptions<A, B>): Effect.Effect<Lane<A, B>> {
    return Effect.suspend(() => {
      const lane = new Lane(this, options)
      this.granularity = Math.min(this.granularity, Math.max(10, Math.floor(options.timeoutMs / 10)))
      if (!this.watchdogStarted) {
        this.watchdogStarted = true
        this.runFork(Effect.forkIn(this.watchdog(), this.scope))
      }
      const register = options.batch.lingerMs > 0 ? this.linger.register(options.batch.lingerMs) : Effect.void
      return Effect.as(register, lane).pipe(
        Effect.tap(() =>
          Effect.sync(() => {
            if (lane.wants()) this.notify(lane as AnyLane)
            else lane.rearm()
          })
        )
      )
    })
  }

  /**
   * Puts a lane in the ready queue if it wants work; wakes an idle worker unless
   * `wake` is false (a worker queueing its own lane again takes it next itself:
   * workers park only when the ready queue is empty). Synchronous.
   */
  notify(lane: AnyLane, wake = true): void {
    if (lane.queued || !lane.wants()) return
    lane.queued = true
    this.ready.push(lane)
    if (!wake) return
    const worker = this.idle.pop()
    if (worker !== undefined) worker(Effect.yieldNow)
  }

  /**
   * Someone waits for this lane's events before queue index `watermark` (a flush):
   * they go now, batch after batch, without waiting for a linger. Synchronous.
   */
  hurry(lane: AnyLane, watermark: number): void {
    if (watermark <= lane.hurryUntil) return
    lane.hurryUntil = watermark
    this.notify(lane)
  }

  private spawn(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.stopped) return Effect.void
      const slot: Slot = { run: undefined, fiber: undefined, deadline: 0, timedOut: false }
      return Effect.forkDetach(this.work(slot)).pipe(
        Effect.tap((fiber) =>
          Effect.sync(() => {
            slot.fiber = fiber
            this.workers.set(fiber, slot)
            fiber.addObserver(() => this.workerExited(fiber, slot))
          })
        ),
        Effect.asVoid
      )
    })
  }

  private readonly awaitWork = Effect.callback<void>((resume) => {
    this.idle.push(resume)
    return Effect.sync(() => {
      const i = this.idle.indexOf(resume)
      if (i >= 0) this.idle.splice(i, 1)
    })
  })

  private work(slot: Slot): Effect.Effect<void> {
    const pool = this
    return Effect.gen(function* () {
      // the run at hand, declared out here so that it is cleared after each batch: a
      // suspended generator keeps its variables, and a parked worker held on to its
      // last batch (and every event in it) until it took the next
      let run: AnyRun | undefined
      // the same for the attempt's effect (it may close over the batch) and its exit
      let effect: Effect.Effect<void, unknown> | undefined
      let exit: Exit.Exit<void, unknown> | undefined
      // the time the last batch settled at, while this run goes straight on to the
      // next batch (it is that batch's start: one clock read per batch, not two)
      let now: number | undefined
      while (true) {
        const lane = pool.ready.pop()
        if (lane === undefined) {
          now = undefined
          yield* pool.awaitWork
          continue
        }
        lane.queued = false
        run = pool.nextRun(lane, now)
        now = undefined
        if (run === undefined) {
          pool.afterLane(lane, true)
          continue
        }
        // more of this lane for another worker (concurrency > 1, or leftovers later)
        pool.notify(lane)
        // a first attempt starts when the batch was taken; a retry, now
        slot.deadline =
          (run.step === undefined ? run.startedAt : pool.clock.currentTimeMillisUnsafe()) + run.lane.options.timeoutMs
        slot.run = run
        pool.watch()
        // the attempt: its time limit is kept by the watchdog, not by a race per
        // attempt; the behaviour's effect runs as it is (an exit, such as
        // `Effect.void`, costs no step at all), its defects are told apart afterwards
        try {
          effect = run.lane.options.behaviour(run.batch)
        } catch (defect) {
          effect = Effect.die(defect)
        }
        exit = yield* Effect.exit(effect)
        effect = undefined
        // given up on by the watchdog (the attempt ignored interruption): retire
        if (slot.timedOut) return
        slot.run = undefined
        if (Exit.isSuccess(exit)) now = pool.settle(run, exit)
        else yield* pool.failed(run, defectOf(run, exit.cause))
        exit = undefined
        run = undefined
        pool.afterLane(lane, true)
      }
    })
  }

  /** The next run of a lane, if it wants work; `now`: the time, if the caller just read it. */
  private nextRun(lane: AnyLane, now: number | undefined): AnyRun | undefined {
    if (lane.abandoned) return undefined
    // (shift on an empty array leaves optimized code for the runtime: a call per batch)
    if (lane.retries.length > 0) return lane.retries.shift()
    if (!lane.wants()) return undefined
    const { mailbox, options } = lane
    const max = options.room === undefined ? options.batch.maxSize : Math.min(options.batch.maxSize, options.room())
    const taken = mailbox.take(max)
    if (taken === undefined) return undefined
    if (!lane.sweepQueued) {
      lane.sweepQueued = true
      this.linger.schedule(sweepMs, lane.sweeper, 0)
    }
    lane.lingerDue = false
    lane.generation++
    lane.running++
    const run: AnyRun = new Run(
      lane,
      options.prepare(taken),
      taken.items.length,
      taken.segment,
      now ?? this.clock.currentTimeMillisUnsafe()
    )
    if (lane.halted !== undefined) {
      // a stopped lane settles what it takes at once, with the cause that stopped it
      this.settle(run, Exit.failCause(lane.halted), 0, "stopped")
      return undefined
    }
    return run
  }

  /**
   * After a batch (or nothing) on a lane: queue it again, or let its mailbox say when.
   * `byWorker`: called by the worker that goes on to the ready queue at once.
   */
  private afterLane(lane: AnyLane, byWorker: boolean): void {
    if (lane.wants()) this.notify(lane, !byWorker)
    else if (!lane.queued) lane.rearm()
  }

  // ---- watchdog: one fiber per pool, awake only while attempts run -----------------

  private watchdogWaiter: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  private watchdogStarted = false
  /** Longest a timeout may be detected late: a tenth of the shortest limit, 10 ms to 1 s. */
  private granularity = 1_000

  private watchQueued = false

  /**
   * Called when an attempt starts. Most attempts (a synchronous processing function)
   * end before the worker yields; waking the parked watchdog for each would cost a
   * scheduler turn per batch. So the check waits for a microtask: it runs once the
   * worker has yielded, and wakes the watchdog only if an attempt is still running.
   */
  private watch(): void {
    if (this.watchQueued || this.watchdogWaiter === undefined) return
    this.watchQueued = true
    queueMicrotask(this.wakeWatchdog)
  }

  private readonly wakeWatchdog = (): void => {
    this.watchQueued = false
    const waiter = this.watchdogWaiter
    if (waiter === undefined) return
    for (const slot of this.workers.values()) {
      if (slot.run !== undefined && !slot.timedOut) {
        this.watchdogWaiter = undefined
        waiter(Effect.yieldNow)
        return
      }
    }
  }

  private readonly parkWatchdog = Effect.callback<void>((resume) => {
    this.watchdogWaiter = resume
    return Effect.sync(() => {
      this.watchdogWaiter = undefined
    })
  })

  /** Interrupts workers whose attempt passed its deadline; parks when none is busy. */
  private watchdog(): Effect.Effect<never> {
    const step = Effect.suspend(() => {
      const now = this.clock.currentTimeMillisUnsafe()
      let next = Number.POSITIVE_INFINITY
      for (const slot of this.workers.values()) {
        if (slot.run === undefined || slot.timedOut) continue
        if (slot.deadline <= now) {
          this.timedOut(slot)
        } else if (slot.deadline < next) {
          next = slot.deadline
        }
      }
      if (next === Number.POSITIVE_INFINITY) return this.parkWatchdog
      return Effect.sleep(Math.min(next - now, this.granularity))
    })
    return Effect.forever(step)
  }

  /** A failed attempt: schedule its retry (off the worker), or settle it for good. */
  private failed(run: AnyRun, cause: Cause.Cause<unknown>): Effect.Effect<void> {
    if (Cause.hasInterruptsOnly(cause) || run.settled) {
      this.settle(run, Exit.failCause(cause))
      return Effect.void
    }
    const lane = run.lane
    const options = lane.options
    const pool = this
    return Effect.gen(function* () {
      // a failing hook (a broken logger, say) must not take the worker down with it
      if (options.onFailure !== undefined) yield* Effect.catchCause(options.onFailure(cause), () => Effect.void)
      if (lane.halted !== undefined) {
        pool.settle(run, Exit.failCause(lane.halted), 0, "stopped")
        return
      }
      if (run.step === undefined) run.step = yield* toStep(options.retry)
      const error = Cause.squash(cause)
      const now = pool.clock.currentTimeMillisUnsafe()
      const next = yield* Effect.exit(run.step(now, error))
      if (lane.abandoned) {
        pool.settle(run, Exit.failCause(cause))
        return
      }
      if (Exit.isSuccess(next)) {
        yield* pool.later(run, Duration.toMillis(next.value[1]), undefined)
        return
      }
      // retries exhausted: the supervisor decides
      const decision = options.supervise?.(now, cause)
      if (decision === undefined || decision._tag === "Resume") {
        if (options.skip?.(run.batch, cause) === true) {
          run.step = undefined
          yield* pool.later(run, 0, undefined)
          return
        }
        pool.settle(run, Exit.failCause(cause))
      } else if (decision._tag === "Stop") {
        // two runs of one lane can fail together: the lane stops (and reports) once
        const first = lane.halted === undefined
        lane.halted ??= cause
        pool.settle(run, Exit.failCause(cause), 0, "stopped")
        if (first) options.onStop?.(decision.escalated)
      } else {
        // restart: the state is rebuilt after the backoff, then the batch's retries start over
        run.step = undefined
        yield* pool.later(run, decision.delayMs, options.restart)
      }
    })
  }

  /** Brings a run back as ready after `delayMs` (waiting off the worker), after `before` if given. */
  private later(
    run: AnyRun,
    delayMs: number,
    before: (() => Effect.Effect<void, unknown>) | undefined
  ): Effect.Effect<void> {
    const lane = run.lane
    const due = Effect.suspend(() => {
      run.backoff = undefined
      lane.backingOff.delete(run)
      if (run.settled) return Effect.void
      const requeue = Effect.sync(() => {
        lane.retries.push(run)
        this.notify(lane)
      })
      if (before === undefined) return requeue
      // a restart that fails counts as one more failure of the batch
      return Effect.matchCauseEffect(before(), {
        onSuccess: () => requeue,
        onFailure: (cause) => this.failed(run, cause)
      })
    })
    lane.backingOff.add(run)
    if (delayMs <= 0) return due
    run.backoff = this.runFork(Effect.andThen(Effect.sleep(delayMs), due))
    return Effect.void
  }

  /**
   * Settles a run once: accounting, dead letter, hooks. Returns the time it read for
   * the batch's duration, if it did.
   */
  settle(run: AnyRun, exit: Exit.Exit<void, unknown>, deadlineMs = 0, reason?: DeadLetterReason): number | undefined {
    if (run.settled) return undefined
    run.settled = true
    const lane = run.lane
    const { options, mailbox } = lane
    lane.running--
    const outcome: BatchOutcome = Exit.isSuccess(exit)
      ? "processed"
      : options.delivery === "must"
        ? "deadLettered"
        : "dropped"
    let now: number | undefined
    if (options.onBatch !== undefined) {
      now = this.clock.currentTimeMillisUnsafe()
      options.onBatch(run.size, now - run.startedAt, outcome)
    }
    if (Exit.isSuccess(exit)) {
      // a batch that skipped items: those were given up
      let processed = options.progress === undefined ? run.size : options.progress(run.batch)
      if (options.refused !== undefined) processed -= options.refused(run.batch)
      if (processed >= run.size) mailbox.settle(run.segment, "processed")
      else mailbox.settle(run.segment, options.delivery === "must" ? "deadLettered" : "failed", processed)
      return now
    }
    const interrupted = Cause.hasInterruptsOnly(exit.cause)
    const done = options.progress === undefined ? 0 : options.progress(run.batch)
    if (options.delivery === "must") {
      const cause = interrupted
        ? Cause.fail(new ShutdownDeadline({ type: options.name, timeoutMs: deadlineMs }))
        : exit.cause
      options.onDeadLetter?.(run.batch, cause, reason ?? (interrupted ? "shutdown" : "retriesExhausted"))
      mailbox.settle(run.segment, "deadLettered", done)
    } else {
      mailbox.settle(run.segment, interrupted ? "shutdown" : "failed", done)
    }
    return now
  }

  /**
   * Gives up on a lane at shutdown: queued events and unsettled runs are settled as
   * dropped (`droppable`) or dead-lettered with a {@link ShutdownDeadline} (`must`).
   * A worker still running one of its batches is interrupted.
   */
  abandon(lane: AnyLane, deadlineMs: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      lane.abandoned = true
      const interrupted = Exit.interrupt()
      const stuck: Array<Fiber.Fiber<void>> = []
      for (const [worker, slot] of this.workers) if (slot.run?.lane === lane) stuck.push(worker)
      for (const slot of this.workers.values()) {
        if (slot.run?.lane === lane) this.settle(slot.run, interrupted, deadlineMs)
      }
      for (const run of [...lane.backingOff, ...lane.retries]) {
        if (run.backoff !== undefined) run.backoff.interruptUnsafe()
        this.settle(run, interrupted, deadlineMs)
      }
      lane.backingOff.clear()
      lane.retries.length = 0
      const rest = lane.mailbox.drain()
      if (rest !== undefined) {
        lane.running++
        this.settle(
          new Run(
            lane,
            lane.options.prepare(rest),
            rest.items.length,
            rest.segment,
            this.clock.currentTimeMillisUnsafe()
          ),
          interrupted,
          deadlineMs
        )
      }
      // workers stuck in this lane's behaviour are interrupted without waiting for
      // them (shutdown must not hang on a processor), and replaced (see workerExited)
      for (const w of stuck) w.interruptUnsafe()
      return Effect.void
    })
  }

  /**
   * An attempt passed its deadline: its worker is interrupted and replaced at once
   * (whether or not the attempt lets itself be interrupted), and the run fails like
   * any other failure, to be retried on the lane's schedule.
   */
  private timedOut(slot: Slot): void {
    const run = slot.run!
    slot.timedOut = true
    slot.run = undefined
    if (slot.fiber !== undefined) {
      this.workers.delete(slot.fiber)
      slot.fiber.interruptUnsafe()
    }
    const { name, timeoutMs } = run.lane.options
    this.runFork(
      this.failed(run, Cause.fail(new ProcessingTimeout({ type: name, timeoutMs }))).pipe(
        Effect.andThen(Effect.sync(() => this.afterLane(run.lane, false)))
      )
    )
    if (!this.stopped) this.runFork(this.spawn())
  }

  private workerExited(fiber: Fiber.Fiber<void>, slot: Slot): void {
    if (slot.timedOut) return // already replaced, its run already failed
    this.workers.delete(fiber)
    const run = slot.run
    slot.run = undefined
    if (run !== undefined) this.settle(run, Exit.interrupt())
    if (!this.stopped) this.runFork(this.spawn())
  }

  /** Stops every worker (without waiting for them); settles whatever is still running. */
  stop(): Effect.Effect<void> {
    return Effect.sync(() => {
      this.stopped = true
      for (const w of [...this.workers.keys()]) w.interruptUnsafe()
    })
  }
}
