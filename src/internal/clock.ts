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
 * A mailbox that stamps its own offers ({@link Stamps}) goes further: it keeps a
 * reading for up to `step` of its own offers without calling the clock at all, for
 * as long as `gen` is unchanged, and reads afresh when it used a reading up. `gen`
 * moves whenever a reading shows a new value and at the end of every turn in which a
 * reading was shared, so no mailbox keeps a reading past either: a type's events
 * carry a reused reading for at most `maxStep - 1` of its later events in one
 * synchronous run, and never one older than a reading any other type made since.
 *
 * A mailbox does not compare `gen` on each offer: it registers as a holder when it
 * takes a reading of a new generation ({@link Stamps.hold}), and the clock expires
 * every holder's reading when `gen` moves. The comparison cost a tenth of `log`
 * (two dependent loads, the mailbox's clock and the clock's `gen`, on every call).
 */

/** Whoever keeps a reading of the current generation (a mailbox): told when it expires. */
export interface Holder {
  /** The reading it keeps is stale: read again before using it. Synchronous. */
  expireStamp(): void
}

/** What a mailbox stamping its own offers reads (see the module doc). */
export interface Stamps {
  /** Changes when a reading shows a new value, and at the end of a turn that shared one. */
  readonly gen: number
  /** Calls the last reading may serve, this one included (1 when it was just read fresh). */
  readonly step: number
  /** The current time (a reading may be reused). */
  millis(): number
  /** The current time, read now. */
  fresh(): number
  /** Registers a holder of a reading of the current `gen`, expired when `gen` moves. Once per generation. */
  hold(holder: Holder): void
}

/** Stamps for a mailbox whose stamps nobody reads (a handler's): always 0, never stale. */
export const noStamps: Stamps = { gen: 0, step: 2 ** 30 - 1, millis: () => 0, fresh: () => 0, hold: () => {} }

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

export class SampledClock implements Stamps {
  gen = 0
  step = 1
  private now = 0
  private left = 0
  private resetQueued = false
  /** Holders of a reading of the current generation: the first `held` slots. */
  private readonly holders: Array<Holder | undefined> = []
  private held = 0
  private readonly read: () => number
  private readonly maxStep: number

  constructor(read: () => number, maxStep: number) {
    this.read = read
    this.maxStep = Math.max(1, Math.floor(maxStep))
  }

  /** Current time in milliseconds. */
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

  hold(holder: Holder): void {
    this.holders[this.held++] = holder
  }

  /** Moves `gen`, expiring every reading of the generation that ends. */
  private advance(): void {
    this.gen = nextGen(this.gen)
    const n = this.held
    if (n === 0) return
    // (slots cleared one by one: `length = 0` leaves optimized code for the runtime)
    const holders = this.holders
    for (let i = 0; i < n; i++) {
      holders[i]!.expireStamp()
      holders[i] = undefined
    }
    this.held = 0
  }

  private sample(): number {
    const t = this.read()
    if (t === this.now) {
      if (this.step < this.maxStep) this.step = Math.min(this.maxStep, this.step * 2)
    } else {
      this.step = 1
      this.now = t
      this.advance()
    }
    this.left = this.step - 1
    if (!this.resetQueued && this.left > 0) {
      this.resetQueued = true
      queueMicrotask(this.reset)
    }
    return t
  }

  private readonly reset = (): void => {
    this.resetQueued = false
    this.left = 0
    this.advance()
  }
}
