/**
 * A bounded mailbox with exact accounting.
 *
 * A ring buffer that grows on demand up to its capacity, with three overflow
 * policies (`backpressure`, `dropNewest`, `dropOldest`), batch takes, and the
 * counters behind Cairn's accounting invariant:
 *
 * ```text
 * accepted = processed + queued + inFlight + dropped + deadLettered
 * ```
 *
 * (`refused` events were never accepted and are counted apart.) All counters are
 * plain numbers changed synchronously, so the invariant holds at every moment anyone
 * can observe. The mailbox also tracks which events reached a terminal state, in
 * the order they entered, so a flush can wait for exactly the events accepted before
 * it.
 *
 * It is the hot path: `offer` is synchronous, O(1), allocates nothing but an
 * occasional grow, and runs no Effect. Waiting (for a batch, for room, for a flush)
 * is done by the Effect-returning methods.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Overflow } from "./EventType.ts"

/**
 * What happened to an offered item.
 * - `accepted`: queued (with `dropOldest`, possibly after dropping the oldest);
 * - `dropped`: accepted and dropped at once (`dropNewest` on a full mailbox);
 * - `full`: refused, the mailbox is full and uses `backpressure`;
 * - `closed`: refused, the mailbox no longer accepts.
 *
 * @category models
 */
export type OfferResult = "accepted" | "dropped" | "full" | "closed"

/**
 * Why events were dropped.
 *
 * @category models
 */
export type DropReason = "overflow" | "shutdown" | "failed"

/**
 * A contiguous run of events that left the queue together (a batch, or evictions).
 *
 * @category models
 */
export interface Segment {
  readonly start: number
  end: number
  done: boolean
}

/**
 * Items taken from the mailbox for processing, column by column, with the segment
 * to settle. `stamps[i]` and `extras?.[i]` were offered with `items[i]`; the queue
 * index of `items[i]` is `segment.start + i` (unique per mailbox, in arrival order).
 *
 * @category models
 */
export interface Taken<A> {
  readonly items: Array<A>
  readonly stamps: Float64Array
  readonly extras: Array<unknown> | undefined
  readonly segment: Segment
}

/**
 * A snapshot of a mailbox's counters.
 *
 * @category models
 */
export interface Counts {
  readonly accepted: number
  readonly processed: number
  readonly queued: number
  readonly inFlight: number
  readonly dropped: { readonly overflow: number; readonly shutdown: number; readonly failed: number }
  readonly deadLettered: number
  readonly refused: { readonly full: number; readonly closed: number }
}

// Waiters are always resumed with `Effect.yieldNow`: Effect runs a resumed fiber's
// continuation synchronously, and a waiter must never run inside `offer`, `take` or
// `settle` (the caller's `log`, or the middle of an actor's bookkeeping).

interface FlushWaiter {
  readonly watermark: number
  readonly resume: (effect: Effect.Effect<void>) => void
}

/**
 * @category models
 */
export class Mailbox<A> {
  readonly capacity: number
  readonly overflow: Overflow

  // counters (the accounting); `accepted` is derived: entered + dropped newest
  processed = 0
  inFlight = 0
  droppedOverflow = 0
  droppedShutdown = 0
  droppedFailed = 0
  deadLettered = 0
  refusedFull = 0
  refusedClosed = 0

  /** No longer accepting offers. */
  closed = false

  private buf: Array<A | undefined>
  private stamps: Float64Array
  private extras: Array<unknown> | undefined = undefined
  private mask: number
  private head = 0
  private count = 0
  /** `count` below this takes the fast path: open, not full, no grow needed. */
  private room: number
  private droppedNewest = 0

  /** Items that ever entered the queue; the index of the next one. */
  private entered = 0
  /** Items that ever left the queue (taken or evicted). */
  private left = 0
  /** Every queue index below this is terminal. */
  private terminalBelow = 0
  private readonly segments: Array<Segment> = []
  private flushWaiters: Array<FlushWaiter> = []

  /** The single batch waiter (the owning actor) and the size that wakes it. */
  private wakeAt = Number.POSITIVE_INFINITY
  private waker: ((effect: Effect.Effect<void>) => void) | undefined = undefined
  private spaceWaiters: Array<(effect: Effect.Effect<void>) => void> = []

  constructor(capacity: number, overflow: Overflow) {
    this.capacity = capacity
    this.overflow = overflow
    const initial = Math.min(16, nextPow2(capacity))
    this.buf = new Array(initial)
    this.stamps = new Float64Array(initial)
    this.mask = initial - 1
    this.room = Math.min(initial, capacity)
  }

  /** Events ever accepted. */
  get accepted(): number {
    return this.entered + this.droppedNewest
  }

  /** Events queued now. */
  get size(): number {
    return this.count
  }

  /** Total dropped, whatever the reason. */
  get dropped(): number {
    return this.droppedOverflow + this.droppedShutdown + this.droppedFailed
  }

  /**
   * Offers an item with a number stamped on it (the trail stamps the time) and an
   * optional extra (the trail's parent id). Synchronous, never blocks. Does not count
   * a `full` refusal (see {@link refuseFull}).
   */
  offer(item: A, stamp: number, extra?: unknown): OfferResult {
    const count = this.count
    if (count < this.room && extra === undefined) {
      const i = (this.head + count) & this.mask
      this.buf[i] = item
      this.stamps[i] = stamp
      this.count = count + 1
      this.entered++
      if (count + 1 >= this.wakeAt) this.wake()
      return "accepted"
    }
    return this.offerSlow(item, stamp, extra)
  }

  private offerSlow(item: A, stamp: number, extra: unknown): OfferResult {
    if (this.closed) {
      this.refusedClosed++
      return "closed"
    }
    if (this.count >= this.capacity) {
      if (this.overflow === "backpressure") return "full"
      this.droppedOverflow++
      if (this.overflow === "dropNewest") {
        this.droppedNewest++
        return "dropped"
      }
      this.evict(1)
    }
    if (this.count === this.buf.length) this.grow()
    const i = (this.head + this.count) & this.mask
    this.buf[i] = item
    this.stamps[i] = stamp
    if (extra !== undefined || this.extras !== undefined) {
      if (this.extras === undefined) this.extras = new Array(this.buf.length)
      this.extras[i] = extra
    }
    this.count++
    this.entered++
    if (this.count >= this.wakeAt) this.wake()
    return "accepted"
  }

  /** Counts a refusal of a synchronous caller on a full `backpressure` mailbox. */
  refuseFull(): void {
    this.refusedFull++
  }

  /** Takes up to `max` items as one in-flight segment; `undefined` when empty. */
  take(max: number): Taken<A> | undefined {
    const n = Math.min(max, this.count)
    if (n === 0) return undefined
    const items = new Array<A>(n)
    const stamps = new Float64Array(n)
    const buf = this.buf
    const mask = this.mask
    const head = this.head
    let h = head
    for (let i = 0; i < n; i++) {
      items[i] = buf[h] as A
      buf[h] = undefined
      h = (h + 1) & mask
    }
    const firstRun = Math.min(n, buf.length - head)
    stamps.set(this.stamps.subarray(head, head + firstRun), 0)
    if (firstRun < n) stamps.set(this.stamps.subarray(0, n - firstRun), firstRun)
    let extras: Array<unknown> | undefined
    const extraBuf = this.extras
    if (extraBuf !== undefined) {
      let any = false
      for (let i = 0, e = head; i < n; i++, e = (e + 1) & mask) {
        const x = extraBuf[e]
        if (x !== undefined) {
          if (extras === undefined) extras = new Array(n)
          extras[i] = x
          extraBuf[e] = undefined
          any = true
        }
      }
      if (!any) extras = undefined
    }
    const start = this.left
    this.head = h
    this.count -= n
    this.inFlight += n
    const segment: Segment = { start, end: start + n, done: false }
    this.left += n
    this.segments.push(segment)
    this.wakeSpace()
    return { items, stamps, extras, segment }
  }

  /**
   * Settles an in-flight segment: `processed`, `deadLettered` and dropped-as-`failed`
   * (or `shutdown`) must add up to its length.
   */
  settle(segment: Segment, outcome: "processed" | "deadLettered" | DropReason): void {
    if (segment.done) return
    const n = segment.end - segment.start
    this.inFlight -= n
    switch (outcome) {
      case "processed":
        this.processed += n
        break
      case "deadLettered":
        this.deadLettered += n
        break
      case "failed":
        this.droppedFailed += n
        break
      case "shutdown":
        this.droppedShutdown += n
        break
      case "overflow":
        this.droppedOverflow += n
        break
    }
    segment.done = true
    this.advance()
  }

  /**
   * Removes every queued item, counting them as dropped (`shutdown`) or handing them
   * back to be dead-lettered (then call {@link settle} with `deadLettered`).
   */
  drain(): Taken<A> | undefined {
    return this.take(this.count)
  }

  /** Stops accepting; wakes the batch waiter so it can drain and finish. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.room = 0
    this.wake()
    this.wakeSpace()
  }

  /** Waits until at least `n` items are queued, or the mailbox is closed. */
  awaitSize(n: number): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.count >= n || this.closed) return resume(Effect.void)
      this.wakeAt = n
      this.waker = resume
      return Effect.sync(() => {
        if (this.waker === resume) {
          this.waker = undefined
          this.wakeAt = Number.POSITIVE_INFINITY
        }
      })
    })
  }

  /** Waits until there is room (or the mailbox is closed). */
  awaitSpace(): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.count < this.capacity || this.closed) return resume(Effect.void)
      this.spaceWaiters.push(resume)
      return Effect.sync(() => {
        const i = this.spaceWaiters.indexOf(resume)
        if (i >= 0) this.spaceWaiters.splice(i, 1)
      })
    })
  }

  /** The queue index that the next accepted item will get: a flush watermark. */
  watermark(): number {
    return this.entered
  }

  /** Whether every item that entered before `watermark` is terminal. */
  isTerminal(watermark: number): boolean {
    return this.terminalBelow >= watermark
  }

  /** Waits until every item that entered the queue before `watermark` is terminal. */
  awaitTerminal(watermark: number): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.terminalBelow >= watermark) return resume(Effect.void)
      const waiter: FlushWaiter = { watermark, resume }
      this.flushWaiters.push(waiter)
      return Effect.sync(() => {
        const i = this.flushWaiters.indexOf(waiter)
        if (i >= 0) this.flushWaiters.splice(i, 1)
      })
    })
  }

  /** A snapshot of the counters. */
  counts(): Counts {
    return {
      accepted: this.accepted,
      processed: this.processed,
      queued: this.count,
      inFlight: this.inFlight,
      dropped: { overflow: this.droppedOverflow, shutdown: this.droppedShutdown, failed: this.droppedFailed },
      deadLettered: this.deadLettered,
      refused: { full: this.refusedFull, closed: this.refusedClosed }
    }
  }

  /** Drops `n` oldest queued items (overflow); they are terminal at once. */
  private evict(n: number): void {
    const buf = this.buf
    const extras = this.extras
    for (let i = 0; i < n; i++) {
      buf[this.head] = undefined
      if (extras !== undefined) extras[this.head] = undefined
      this.head = (this.head + 1) & this.mask
    }
    this.count -= n
    const last = this.segments[this.segments.length - 1]
    if (last?.done && last.end === this.left) last.end += n
    else this.segments.push({ start: this.left, end: this.left + n, done: true })
    this.left += n
    this.advance()
  }

  private advance(): void {
    const segments = this.segments
    let moved = false
    while (segments.length > 0 && segments[0]!.done) {
      this.terminalBelow = segments.shift()!.end
      moved = true
    }
    if (moved && this.flushWaiters.length > 0) {
      const ready: Array<FlushWaiter> = []
      const waiting: Array<FlushWaiter> = []
      for (const w of this.flushWaiters) (w.watermark <= this.terminalBelow ? ready : waiting).push(w)
      this.flushWaiters = waiting
      for (const w of ready) w.resume(Effect.yieldNow)
    }
  }

  private wake(): void {
    const waker = this.waker
    if (waker !== undefined) {
      this.waker = undefined
      this.wakeAt = Number.POSITIVE_INFINITY
      waker(Effect.yieldNow)
    }
  }

  private wakeSpace(): void {
    if (this.spaceWaiters.length === 0) return
    const waiters = this.spaceWaiters
    this.spaceWaiters = []
    for (const w of waiters) w(Effect.yieldNow)
  }

  private grow(): void {
    const old = this.buf
    const oldStamps = this.stamps
    const oldExtras = this.extras
    const size = old.length * 2
    const buf = new Array<A | undefined>(size)
    const stamps = new Float64Array(size)
    const extras = oldExtras === undefined ? undefined : new Array<unknown>(size)
    for (let i = 0; i < this.count; i++) {
      const j = (this.head + i) & this.mask
      buf[i] = old[j]
      stamps[i] = oldStamps[j]!
      if (extras !== undefined) extras[i] = oldExtras![j]
    }
    this.buf = buf
    this.stamps = stamps
    this.extras = extras
    this.mask = size - 1
    this.head = 0
    if (!this.closed) this.room = Math.min(size, this.capacity)
  }
}

const nextPow2 = (n: number): number => {
  let p = 1
  while (p < n) p *= 2
  return p
}

/**
 * Makes a mailbox.
 *
 * @category constructors
 */
export const make = <A>(capacity: number, overflow: Overflow): Mailbox<A> => new Mailbox(capacity, overflow)
