/**
 * A clock that is cheap to read at very high call rates.
 *
 * Reading the wall clock costs 20–70 ns depending on the machine, several times the
 * rest of `log`. This clock reads the underlying clock on every call while calls are
 * sparse. When two consecutive readings fall in the same millisecond, it starts
 * reusing a reading for the next calls, doubling that step up to `maxStep`; as soon
 * as a reading shows a new millisecond the step falls back to 1. A reading is never
 * reused across a turn of the event loop: the first call after any `await` or
 * callback reads the clock again. The cost: in one synchronous run that logs a fast
 * burst and then keeps computing, up to `maxStep - 1` later calls can get the
 * burst's time.
 *
 * A mailbox that stamps its own offers (`Mailbox.offerNow`) goes further: it keeps a
 * reading for up to `step` of its own offers without calling the clock at all, for
 * as long as `gen` is the generation it read, and reads afresh when it used a reading
 * up. `gen` moves whenever a reading shows a new value, so no mailbox keeps a reading
 * past one that showed a new time: a type's events carry a reused reading for at most
 * `maxStep - 1` of its later events in one synchronous run, and never one older than a
 * reading any other type made since.
 *
 * At the end of a turn in which a reading was shared, `gen` becomes {@link UNREAD},
 * which no mailbox holds, so that the next turn's first offer reads the clock. When
 * that reading shows the time of the last one, `gen` comes back: every mailbox holding
 * a reading of it may use it again (it is the time just read) without a call of its
 * own. With a thousand types logged in turn, re-reading each one's reading after every
 * turn cost a tenth of the time (the type's slow path, once a turn each, and a pass
 * over every type at the end of the turn); comparing `gen` on each offer costs a few
 * percent of `log` for one type.
 */

/** The generation between turns: no mailbox holds a reading of it. */
export const UNREAD = -1

/**
 * The generation after `gen`, wrapping at 2^30: it moves about a thousand times a
 * second, and counting on past V8's small-integer range (in two to four weeks) would
 * turn it into a boxed number that every `log` reads. A mailbox would take a stale
 * reading for a fresh one only if it saw exactly 2^30 generations go by between two
 * of its events, and then for at most a step of them.
 */
export const nextGen = (gen: number): number => (gen + 1) & (2 ** 30 - 1)

/**
 * `t` as a small integer where it is one. V8 computes the difference of two
 * `Date.now()` readings as a double and boxes it in every field and array it is stored
 * into, widening that field for every object of the same shape: stamped so, each
 * mailbox kept its last stamp in a box of its own, one more cache line for every type's
 * first `log` of a turn. `t | 0` is a small integer in both of V8's tiers.
 */
export const smallInt = (t: number): number => {
  const i = t | 0
  return i === t ? i : t
}

export class SampledClock {
  /** The generation of the last reading; {@link UNREAD} from the end of a turn to the next reading. Read-only outside. */
  gen = 0
  /** Calls the last reading may serve, this one included (1 when it showed a new time). Read-only outside. */
  step = 1
  private now = 0
  /** The generation of `now` (what `gen` comes back to while the time has not moved). */
  private nowGen = 0
  private left = 0
  private resetQueued = false
  private readonly read: () => number
  private readonly maxStep: number

  constructor(read: () => number, maxStep: number) {
    this.read = read
    this.maxStep = Math.max(1, Math.floor(maxStep))
  }

  /** Current time in milliseconds (a reading may be reused). */
  millis(): number {
    if (this.left > 0) {
      this.left--
      return this.now
    }
    return this.sample()
  }

  /** Current time in milliseconds, read now (the step grows when it did not change). */
  fresh(): number {
    return this.sample()
  }

  private sample(): number {
    const t = this.read()
    if (t === this.now) {
      if (this.step < this.maxStep) this.step = Math.min(this.maxStep, this.step * 2)
    } else {
      this.step = 1
      this.now = t
      this.nowGen = nextGen(this.nowGen)
    }
    this.gen = this.nowGen
    this.left = this.step - 1
    if (!this.resetQueued && this.left > 0) {
      this.resetQueued = true
      queueMicrotask(this.reset)
    }
    return t
  }

  /** The end of a turn that shared a reading: the next offer of any mailbox reads again. */
  private readonly reset = (): void => {
    this.resetQueued = false
    this.left = 0
    this.gen = UNREAD
  }
}

/**
 * Stamps for a mailbox whose stamps nobody reads (a handler's): always 0. A clock of
 * the same class as the trail's, so that a mailbox's `clock` field holds one kind of
 * object and `offerNow` reads its `gen` without checking which. Its step stays well
 * within the small integers, and so does every count a mailbox derives from it.
 */
export const noStamps: SampledClock = new SampledClock(() => 0, 2 ** 20)
