/**
 * Actors: a fiber that owns a mailbox and a behaviour.
 *
 * The actor waits for the first message, gathers a batch (until the batch's
 * `maxSize`, or `lingerMs` after the first message), asks its dispatcher for a
 * processing slot (by priority), and runs its behaviour on the batch: with a timeout
 * per attempt, retried on its schedule, typed failures and defects alike. The actor
 * survives every outcome of its behaviour. When retries are exhausted a `must` batch
 * becomes a dead letter (with its cause) and a `droppable` one is counted as dropped.
 * Every outcome is settled in the mailbox's accounting.
 *
 * Stopping closes the mailbox, lets the actor drain it within a time limit, then
 * interrupts what is left: `must` messages still queued or in flight become dead
 * letters with a {@link ShutdownDeadline} cause, `droppable` ones are counted as
 * dropped at shutdown. Nothing leaves uncounted.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Effect, Exit, Fiber, FiberSet, type Schedule, type Scope } from "effect"
import { ProcessingDefect, ProcessingTimeout, ShutdownDeadline } from "./Errors.ts"
import type { BatchOptions, Delivery } from "./EventType.ts"
import { Dispatcher, type Ticket } from "./internal/dispatcher.ts"
import type { Mailbox, Segment, Taken } from "./Mailbox.ts"

/**
 * Why a batch became a dead letter.
 *
 * @category models
 */
export type DeadLetterReason = "retriesExhausted" | "shutdown"

/**
 * How one batch ended, for metrics.
 *
 * @category models
 */
export type BatchOutcome = "processed" | "deadLettered" | "dropped"

/**
 * @category models
 */
export interface Options<A, B = ReadonlyArray<A>> {
  /** Used in errors and metrics (for a trail actor, the type key). */
  readonly name: string
  readonly mailbox: Mailbox<A>
  /** Turns what was taken from the mailbox into a batch (default: the items). Once per batch. */
  readonly prepare?: (taken: Taken<A>) => B
  /** Processes one batch. Failures and defects are retried on `retry`. */
  readonly behaviour: (batch: B) => Effect.Effect<void, unknown>
  readonly delivery: Delivery
  readonly batch: BatchOptions
  readonly priority: number
  /** Batches processed at once by this actor. */
  readonly concurrency: number
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** Limit of one processing attempt, in milliseconds. */
  readonly timeoutMs: number
  /** Shared processing slots; default: a dispatcher of its own with `concurrency` slots. */
  readonly dispatcher?: Dispatcher
  /** Called once per dead-lettered batch, synchronously, before the accounting moves. */
  readonly onDeadLetter?: (batch: B, cause: Cause.Cause<unknown>, reason: DeadLetterReason) => void
  /** Called once per batch, synchronously, just before its outcome is settled in the accounting. */
  readonly onBatch?: (size: number, durationMs: number, outcome: BatchOutcome) => void
}

/**
 * A running actor.
 *
 * @category models
 */
export interface Actor<A> {
  readonly name: string
  readonly mailbox: Mailbox<A>
  /**
   * Closes the mailbox and drains it within `limitMs`; then interrupts what is still
   * running and settles everything left (dead letters for `must`, drops for
   * `droppable`). `deadlineMs` is the overall shutdown deadline reported in dead letters.
   */
  readonly stop: (limitMs: number, deadlineMs?: number) => Effect.Effect<void>
}

interface Running<B> {
  readonly batch: B
  readonly size: number
  readonly segment: Segment
  readonly startedAt: number
}

/**
 * Starts an actor in the current scope. Closing the scope interrupts it (use
 * `stop` first for a graceful drain).
 *
 * @category constructors
 */
export const make = <A, B = ReadonlyArray<A>>(options: Options<A, B>): Effect.Effect<Actor<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const { mailbox, name, delivery, priority, concurrency, timeoutMs } = options
    const { maxSize, lingerMs } = options.batch
    const dispatcher = options.dispatcher ?? new Dispatcher(concurrency)
    const clock = yield* Clock.Clock
    const processing = yield* FiberSet.make<void, never>()
    const running = new Set<Running<B>>()
    const prepare = options.prepare ?? ((taken: Taken<A>) => taken.items as unknown as B)
    let ticket: Ticket | undefined
    let freeWaiter: ((effect: Effect.Effect<void>) => void) | undefined
    let shutdownDeadlineMs = 0

    const awaitFree = Effect.callback<void>((resume) => {
      if (running.size < concurrency) return resume(Effect.void)
      freeWaiter = resume
      return Effect.sync(() => {
        freeWaiter = undefined
      })
    })

    const finish = (run: Running<B>, exit: Exit.Exit<void, unknown>): void => {
      if (!running.delete(run)) return
      const { batch, segment } = run
      const interrupted = Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
      const outcome: BatchOutcome = Exit.isSuccess(exit)
        ? "processed"
        : delivery === "must"
          ? "deadLettered"
          : "dropped"
      options.onBatch?.(run.size, clock.currentTimeMillisUnsafe() - run.startedAt, outcome)
      if (Exit.isSuccess(exit)) {
        mailbox.settle(segment, "processed")
      } else if (delivery === "must") {
        const cause = interrupted
          ? Cause.fail(new ShutdownDeadline({ type: name, timeoutMs: shutdownDeadlineMs }))
          : exit.cause
        options.onDeadLetter?.(batch, cause, interrupted ? "shutdown" : "retriesExhausted")
        mailbox.settle(segment, "deadLettered")
      } else {
        mailbox.settle(segment, interrupted ? "shutdown" : "failed")
      }
      dispatcher.release()
      const waiter = freeWaiter
      if (waiter !== undefined) {
        freeWaiter = undefined
        waiter(Effect.yieldNow)
      }
    }

    const attempt = (batch: B): Effect.Effect<void, unknown> =>
      Effect.suspend(() => options.behaviour(batch)).pipe(
        Effect.timeoutOrElse({
          duration: timeoutMs,
          orElse: () => Effect.fail(new ProcessingTimeout({ type: name, timeoutMs }))
        }),
        Effect.catchDefect((defect) => Effect.fail(new ProcessingDefect({ type: name, defect })))
      )

    const process = (run: Running<B>): Effect.Effect<void> =>
      attempt(run.batch).pipe(
        Effect.retry(options.retry),
        Effect.onExit((exit) => Effect.sync(() => finish(run, exit))),
        Effect.ignore,
        Effect.interruptible
      )

    /**
     * Takes a batch and hands it, with the slot, to its processing: inline with
     * concurrency 1 (no fork per batch), else in a fiber of its own. Runs with
     * interruption masked so the slot and the batch never get lost in between.
     */
    const dispatch = (restore: <X, Y, Z>(effect: Effect.Effect<X, Y, Z>) => Effect.Effect<X, Y, Z>) =>
      Effect.suspend(() => {
        ticket = undefined
        const taken = mailbox.take(maxSize)
        if (taken === undefined) {
          dispatcher.release()
          return Effect.void
        }
        const run: Running<B> = {
          batch: prepare(taken),
          size: taken.items.length,
          segment: taken.segment,
          startedAt: clock.currentTimeMillisUnsafe()
        }
        running.add(run)
        return concurrency === 1 ? restore(process(run)) : Effect.asVoid(FiberSet.run(processing, process(run)))
      })

    const loop: Effect.Effect<void> = Effect.gen(function* () {
      while (true) {
        if (mailbox.size === 0) {
          if (mailbox.closed) return
          yield* mailbox.awaitSize(1)
          continue
        }
        if (lingerMs > 0 && mailbox.size < maxSize && !mailbox.closed) {
          yield* Effect.timeoutOption(mailbox.awaitSize(maxSize), lingerMs)
        }
        if (running.size >= concurrency) {
          yield* awaitFree
          continue
        }
        const t: Ticket = { granted: false }
        ticket = t
        yield* Effect.uninterruptibleMask((restore) =>
          restore(dispatcher.acquire(priority, t)).pipe(Effect.andThen(dispatch(restore)))
        )
      }
    }).pipe(
      Effect.onInterrupt(() =>
        Effect.sync(() => {
          if (ticket?.granted) dispatcher.release()
          ticket = undefined
        })
      )
    )

    const loopFiber = yield* Effect.forkScoped(loop)

    const awaitIdle = Fiber.await(loopFiber).pipe(Effect.andThen(FiberSet.awaitEmpty(processing)))

    const stop = (limitMs: number, deadlineMs = limitMs): Effect.Effect<void> =>
      Effect.gen(function* () {
        shutdownDeadlineMs = deadlineMs
        mailbox.close()
        const drained = yield* Effect.timeoutOption(awaitIdle, limitMs)
        if (drained._tag === "Some" && mailbox.size === 0 && running.size === 0) return
        yield* Fiber.interrupt(loopFiber)
        yield* FiberSet.clear(processing)
        const interrupted = Exit.interrupt()
        for (const run of [...running]) finish(run, interrupted)
        const rest = mailbox.drain()
        if (rest !== undefined) {
          if (delivery === "must") {
            const cause = Cause.fail(new ShutdownDeadline({ type: name, timeoutMs: deadlineMs }))
            options.onDeadLetter?.(prepare(rest), cause, "shutdown")
            mailbox.settle(rest.segment, "deadLettered")
          } else {
            mailbox.settle(rest.segment, "shutdown")
          }
        }
      })

    return { name, mailbox, stop }
  })
