/**
 * A bounded mailbox with exact accounting.
 *
 * A queue of chunks (a full chunk is one batch, handed out without copying) that
 * grows on demand up to its capacity, with three overflow policies (`backpressure`,
 * `dropNewest`, `dropOldest`), batch takes, and the counters behind Cairn's
 * accounting invariant:
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
 * It is the hot path: `offer` is synchronous, O(1), allocates nothing but a new
 * chunk once a chunk is full, and runs no Effect. The owner learns that a batch is
 * ready through a synchronous `watch`; waiting (for a batch, for room, for a flush)
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
 * to settle. `items[i]` was offered with stamp `base + offsets[i]` and extra
 * `extras?.[i]`; its queue index is `segment.start + i` (unique per mailbox, in
 * arrival order). Stamps are kept as offsets from a base so that, for times, they
 * stay small integers: cheap to store and to encode.
 *
 * @category models
 */
export interface Taken<A> {
  readonly items: Array<A>
  readonly base: number
  readonly offsets: Array<number>
  readonly extras: Array<unknown> | undefined
  readonly segment: Segment
}

interface Columns<A> {
  items: Array<A>
  base: number
  offsets: Array<number>
  extras: Array<unknown> | undefined
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

// Waiting fibers are always resumed with `Effect.yieldNow`: Effect runs a resumed
// fiber's continuation synchronously, and a waiter must never run inside `offer`,
// `take` or `settle` (the caller's `log`, or the middle of an actor's bookkeeping).
// A `watch` listener is called synchronously and must only record and schedule.

interface FlushWaiter {
  readonly watermark: number
  readonly resume: (effect: Effect.Effect<void>) => void
}

/** A run of queued items; a full chunk is handed out whole, without copying. */
interface Chunk<A> {
  items: Array<A | undefined>
  /** Stamps as offsets from `base`. */
  stamps: Array<number>
  base: number
  extras: Array<unknown> | undefined
  /** Index of the first queued item (evictions move it). */
  start: number
  /** Items written. */
  len: number
}

// `offer` reads len, items, stamps and base: they come first (one cache line).
const makeChunk = <A>(size: number, base: number): Chunk<A> => ({
  len: 0,
  items: new Array(size),
  stamps: new Array<number>(size),
  base,
  start: 0,
  extras: undefined
})

/**
 * @category models
 */
export class Mailbox<A> {
  // The fields `offer` reads on its fast path come first, so they share a cache line:
  // with many types logged in turn, each `log` touches a different mailbox.
  private tail: Chunk<A>
  private count = 0
  /** `capacity` while open, `0` once closed: one compare on the fast path. */
  private limit: number
  /** Items that ever entered the queue; the index of the next one. */
  private entered = 0
  /** The single watch (the owning actor): the size that triggers it, its listener and arming hook. */
  private wakeAt = Number.POSITIVE_INFINITY

  readonly capacity: number
  readonly overflow: Overflow
  /** Largest chunk: a take of this many items from a full chunk copies nothing. */
  readonly chunkSize: number

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

  /** Queued chunks from `chunkHead` on (a head index, so removing the head is O(1)). */
  private chunks: Array<Chunk<A>> = []
  private chunkHead = 0
  /** Size of the next chunk: grows with use up to `chunkSize`. */
  private nextChunk: number
  private droppedNewest = 0

  /** Items that ever left the queue (taken or evicted). */
  private left = 0
  /** Every queue index below this is terminal. */
  private terminalBelow = 0
  private readonly segments: Array<Segment> = []
  private flushWaiters: Array<FlushWaiter> = []

  private fullAt = Number.POSITIVE_INFINITY
  private listener: (() => void) | undefined = undefined
  private arm: (() => void) | undefined = undefined
  private spaceWaiters: Array<(effect: Effect.Effect<void>) => void> = []

  /**
   * @param chunkSize the batch size; a take of a whole chunk copies nothing
   * @param stampBase a value near the stamps to come (the trail passes the time), so
   *   stamps are stored as small offsets from the start
   */
  constructor(capacity: number, overflow: Overflow, chunkSize = 512, stampBase = 0) {
    this.capacity = capacity
    this.overflow = overflow
    this.chunkSize = Math.max(1, Math.min(chunkSize, capacity))
    this.nextChunk = Math.min(16, this.chunkSize)
    this.limit = capacity
    this.tail = makeChunk(this.nextChunk, stampBase)
    this.chunks.push(this.tail)
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
    const tail = this.tail
    const n = tail.len
    if (n < tail.items.length && this.count < this.limit && extra === undefined) {
      tail.items[n] = item
      tail.stamps[n] = stamp - tail.base
      tail.len = n + 1
      this.entered++
      if (++this.count >= this.wakeAt) this.wake()
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
    let tail = this.tail
    if (tail.len === tail.items.length) tail = this.growTail(stamp)
    else if (tail.len === 0) tail.base = stamp
    const n = tail.len
    tail.items[n] = item
    tail.stamps[n] = stamp - tail.base
    if (extra !== undefined) {
      if (tail.extras === undefined) tail.extras = new Array(tail.items.length)
      tail.extras[n] = extra
    }
    tail.len = n + 1
    this.entered++
    if (++this.count >= this.wakeAt) this.wake()
    return "accepted"
  }

  /** Makes room at the tail: grows a small tail chunk, or starts a new one (based at `stamp`). */
  private growTail(stamp: number): Chunk<A> {
    const tail = this.tail
    const size = tail.items.length
    if (size < this.chunkSize && tail.start === 0 && this.chunks.length - this.chunkHead === 1) {
      const bigger = Math.min(size * 2, this.chunkSize)
      tail.items.length = bigger
      tail.stamps.length = bigger
      if (tail.extras !== undefined) tail.extras.length = bigger
      this.nextChunk = Math.max(this.nextChunk, bigger)
      return tail
    }
    const chunk = makeChunk<A>(this.chunkSize, stamp)
    this.chunks.push(chunk)
    this.tail = chunk
    return chunk
  }

  /** Counts a refusal of a synchronous caller on a full `backpressure` mailbox. */
  refuseFull(): void {
    this.refusedFull++
  }

  /**
   * Takes up to `max` items as one in-flight segment; `undefined` when empty. A take
   * that is exactly one whole chunk hands over its arrays without copying.
   */
  take(max: number): Taken<A> | undefined {
    const n = Math.min(max, this.count)
    if (n === 0) return undefined
    const head = this.chunks[this.chunkHead]!
    let taken: Columns<A>
    if (head.start === 0 && head.len === n) {
      // zero copy: the whole head chunk
      const items = head.items as Array<A>
      if (items.length !== n) {
        items.length = n
        head.stamps.length = n
        if (head.extras !== undefined) head.extras.length = n
      }
      taken = { items, base: head.base, offsets: head.stamps, extras: head.extras }
      this.shiftChunk()
      if (head === this.tail) {
        // keep later chunks about the size the last batches had, based at the latest stamp
        this.nextChunk = Math.min(this.chunkSize, Math.max(16, n + (n >> 1)))
        this.tail = makeChunk(this.nextChunk, head.base + head.stamps[n - 1]!)
        this.chunks.push(this.tail)
      }
    } else {
      taken = this.copyOut(n)
    }
    if (taken.extras !== undefined && !taken.extras.some((x) => x !== undefined)) taken.extras = undefined
    const start = this.left
    this.count -= n
    this.inFlight += n
    const segment: Segment = { start, end: start + n, done: false }
    this.left += n
    this.segments.push(segment)
    this.wakeSpace()
    return { items: taken.items, base: taken.base, offsets: taken.offsets, extras: taken.extras, segment }
  }

  /** Copies `n` items out of the head chunks, removing the chunks it empties. */
  private copyOut(n: number): Columns<A> {
    const items = new Array<A>(n)
    const stamps = new Array<number>(n)
    const base = this.chunks[this.chunkHead]!.base
    let extras: Array<unknown> | undefined
    let i = 0
    while (i < n) {
      const head = this.chunks[this.chunkHead]!
      const k = Math.min(n - i, head.len - head.start)
      for (let j = 0; j < k; j++) {
        const at = head.start + j
        items[i + j] = head.items[at] as A
        stamps[i + j] = head.stamps[at]! + (head.base - base)
        head.items[at] = undefined
      }
      if (head.extras !== undefined) {
        for (let j = 0; j < k; j++) {
          const x = head.extras[head.start + j]
          if (x !== undefined) {
            if (extras === undefined) extras = new Array(n)
            extras[i + j] = x
            head.extras[head.start + j] = undefined
          }
        }
      }
      head.start += k
      i += k
      if (head.start === head.len) this.dropHeadChunk(head)
    }
    return { items, base, offsets: stamps, extras }
  }

  /** Removes an emptied head chunk; an emptied tail is reset for reuse instead. */
  private dropHeadChunk(head: Chunk<A>): void {
    if (head === this.tail) {
      head.start = 0
      head.len = 0
      head.extras = undefined
    } else {
      this.shiftChunk()
    }
  }

  private shiftChunk(): void {
    const chunks = this.chunks
    chunks[this.chunkHead++] = undefined as unknown as Chunk<A>
    if (this.chunkHead === chunks.length) {
      chunks.length = 0
      this.chunkHead = 0
    } else if (this.chunkHead >= 64 && this.chunkHead * 2 >= chunks.length) {
      this.chunks = chunks.slice(this.chunkHead)
      this.chunkHead = 0
    }
  }

  /**
   * Settles an in-flight segment: all its items become `processed`, `deadLettered`
   * or dropped (`failed`, `shutdown`, `overflow`) — except its first `processedFirst`
   * items, which were processed before the rest failed.
   */
  settle(segment: Segment, outcome: "processed" | "deadLettered" | DropReason, processedFirst = 0): void {
    if (segment.done) return
    const all = segment.end - segment.start
    const first = Math.min(Math.max(0, processedFirst), all)
    const n = all - first
    this.inFlight -= all
    this.processed += first
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
   * Takes every queued item as one in-flight segment (then {@link settle} it as
   * dropped at `shutdown` or `deadLettered`).
   */
  drain(): Taken<A> | undefined {
    return this.take(this.count)
  }

  /** Stops accepting; wakes the batch waiter so it can drain and finish. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.limit = 0
    this.wake()
    this.wakeSpace()
  }

  /** Waits until at least `n` items are queued, or the mailbox is closed. */
  awaitSize(n: number): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.count >= n || this.closed) return resume(Effect.void)
      const listener = () => resume(Effect.yieldNow)
      this.watch(n, listener, undefined)
      return Effect.sync(() => this.unwatch(listener))
    })
  }

  /**
   * Calls `listener` once, synchronously, when `threshold` items are queued or the
   * mailbox closes (replacing any earlier watch). With `arm`, `arm()` is called
   * synchronously when the first item arrives before the threshold (at once if some
   * are already queued): the owner starts a linger timer there. Nothing is called if
   * the threshold is already reached: check `size` first.
   */
  watch(threshold: number, listener: () => void, arm: (() => void) | undefined): void {
    this.listener = listener
    this.fullAt = threshold
    if (arm === undefined) {
      this.wakeAt = threshold
    } else if (this.count > 0) {
      this.wakeAt = threshold
      arm()
    } else {
      this.wakeAt = 1
      this.arm = arm
    }
  }

  /** Removes the watch, if `listener` is still the one set. */
  unwatch(listener: () => void): void {
    if (this.listener === listener) this.clearWatch()
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
    for (let i = 0; i < n; i++) {
      const head = this.chunks[this.chunkHead]!
      head.items[head.start] = undefined
      if (head.extras !== undefined) head.extras[head.start] = undefined
      head.start++
      if (head.start === head.len) this.dropHeadChunk(head)
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

  /** The wake-up threshold was reached: arm a linger, or call the listener. */
  private wake(): void {
    const arm = this.arm
    if (arm !== undefined && !this.closed && this.count < this.fullAt) {
      this.arm = undefined
      this.wakeAt = this.fullAt
      arm()
      return
    }
    const listener = this.listener
    if (listener !== undefined) {
      this.clearWatch()
      listener()
    }
  }

  private clearWatch(): void {
    this.listener = undefined
    this.arm = undefined
    this.wakeAt = Number.POSITIVE_INFINITY
    this.fullAt = Number.POSITIVE_INFINITY
  }

  private wakeSpace(): void {
    if (this.spaceWaiters.length === 0) return
    const waiters = this.spaceWaiters
    this.spaceWaiters = []
    for (const w of waiters) w(Effect.yieldNow)
  }
}

/**
 * Makes a mailbox.
 *
 * @category constructors
 */
export const make = <A>(capacity: number, overflow: Overflow, chunkSize?: number, stampBase?: number): Mailbox<A> =>
  new Mailbox(capacity, overflow, chunkSize, stampBase)
