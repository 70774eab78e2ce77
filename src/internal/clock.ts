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
 */
export class SampledClock {
  private now = 0
  private left = 0
  private step = 1
  private resetQueued = false
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

  private sample(): number {
    const t = this.read()
    if (t === this.now) {
      if (this.step < this.maxStep) this.step *= 2
    } else {
      this.step = 1
      this.now = t
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
  }
}
