/**
 * Actors: a mailbox and a behaviour, run by fibers.
 *
 * An actor waits for its first message, gathers a batch (until the batch's
 * `maxSize`, or `lingerMs` after the first message), and runs its behaviour on the
 * batch: with a time limit per attempt, retried on its schedule, typed failures,
 * thrown exceptions and defects alike. The actor survives every outcome of its
 * behaviour. When retries are exhausted a `must` batch becomes a dead letter (with
 * its cause) and a `droppable` one is counted as dropped. Every outcome is settled
 * in the mailbox's accounting.
 *
 * Actors run on a pool of worker fibers: a standalone actor has a pool of its own
 * (`concurrency` workers); a trail runs all its per-type actors on one pool, whose
 * workers serve ready actors by priority. A batch waiting for a retry does not hold
 * a worker.
 *
 * Stopping closes the mailbox, lets the actor drain it within a time limit, then
 * gives up on what is left: `must` messages still queued or in flight become dead
 * letters with a `ShutdownDeadline` cause, `droppable` ones are counted as
 * dropped at shutdown. Nothing leaves uncounted.
 *
 * @since 0.1.0
 */
import { Clock, Effect, Scope } from "effect"
import * as Pool from "./internal/pool.ts"
import type { Mailbox, Taken } from "./Mailbox.ts"
import * as Supervisor from "./Supervisor.ts"

/**
 * Why a batch became a dead letter.
 *
 * @category models
 */
export type DeadLetterReason = Pool.DeadLetterReason

/**
 * How one batch ended, for metrics.
 *
 * @category models
 */
export type BatchOutcome = Pool.BatchOutcome

/**
 * What an actor is made of: its mailbox, how a batch is built and processed, and
 * its limits. `concurrency` is also the size of a standalone actor's own pool.
 *
 * @category models
 */
export interface Options<A, B = ReadonlyArray<A>> extends Omit<Pool.LaneOptions<A, B>, "prepare"> {
  /** Turns what was taken from the mailbox into a batch (default: the items). Once per batch. */
  readonly prepare?: ((taken: Taken<A>) => B) | undefined
  /**
   * The actor's supervisor, used when `supervise` is not given: what a batch whose
   * retries are exhausted means (see {@link Supervisor}). Default: resume.
   */
  readonly supervisor?: Supervisor.Options | undefined
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
   * Closes the mailbox and drains it within `limitMs`; then gives up on what is
   * left (dead letters for `must`, drops for `droppable`). `deadlineMs` is the
   * overall shutdown deadline reported in dead letters.
   */
  readonly stop: (limitMs: number, deadlineMs?: number) => Effect.Effect<void>
}

/** Turns actor options into the pool's lane options. */
export const laneOptions = <A, B>(options: Options<A, B>): Pool.LaneOptions<A, B> => {
  let supervise = options.supervise
  if (supervise === undefined && options.supervisor !== undefined) {
    const child = new Supervisor.Child(options.name, options.supervisor)
    supervise = (now, cause) => child.decide(now, cause)
  }
  return {
    ...options,
    prepare: options.prepare ?? ((taken: Taken<A>) => taken.items as unknown as B),
    supervise
  }
}

/**
 * Drains a lane's mailbox within `limitMs`, then abandons what is left.
 *
 * @internal
 */
export const stopLane = <A, B>(
  pool: Pool.Pool,
  lane: Pool.Lane<A, B>,
  limitMs: number,
  deadlineMs: number
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const mailbox = lane.mailbox
    mailbox.close()
    pool.notify(lane as Pool.Lane<unknown, unknown>)
    const drained = yield* Effect.timeoutOption(mailbox.awaitTerminal(mailbox.watermark()), limitMs)
    if (drained._tag === "None") yield* pool.abandon(lane as Pool.Lane<unknown, unknown>, deadlineMs)
  })

/**
 * Starts an actor (with a pool of its own) in the current scope. Closing the scope
 * stops its workers; use `stop` first for a graceful drain.
 *
 * @category constructors
 */
export const make = <A, B = ReadonlyArray<A>>(options: Options<A, B>): Effect.Effect<Actor<A>, never, Scope.Scope> =>
  Effect.gen(function* () {
    const clock = yield* Clock.Clock
    const scope = yield* Scope.Scope
    const context = yield* Effect.context<never>()
    const pool = new Pool.Pool(options.concurrency, clock, scope, Effect.runForkWith(context))
    yield* pool.start()
    const lane = yield* pool.add(laneOptions(options))
    const stop = (limitMs: number, deadlineMs = limitMs) =>
      stopLane(pool, lane, limitMs, deadlineMs).pipe(Effect.andThen(pool.stop()))
    return { name: options.name, mailbox: options.mailbox, stop }
  })
