/**
 * A bounded mailbox with exact accounting.
 *
 * A ring buffer (grown on demand up to the capacity, shrunk again when it has been
 * oversized for a while) with three overflow policies (`backpressure`, `dropNewest`,
 * `dropOldest`), batch takes, and the counters behind Cairn's accounting invariant:
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
 * It is the hot path: `offer` is synchronous, O(1), allocates nothing (but when the
 * ring doubles), and runs no Effect. The items sit in one array reused batch after
 * batch, so an offer writes to memory the cache already holds, and a thousand types
 * logged in turn touch one array each, not a fresh chunk each. Stamps are kept as
 * runs of equal values (the trail's clock is read once for many events): an offer
 * with the last stamp writes only its item. A take copies the items out into an
 * array of exactly the batch's size, owned by whoever took it, and builds the
 * stamps' offsets only when they are read. The owner learns that a batch is ready
 * through a synchronous `watch`; waiting (for a batch, for room, for a flush) is
 * done by the Effect-returning methods.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Overflow } from "./EventType.ts"
import { noStamps, type SampledClock, UNREAD } from "./internal/clock.ts"
import { Fifo } from "./internal/fifo.ts"

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

/** A segment as the mailbox makes them (a class: see {@link keepShapes}). */
class Span implements Segment {
  readonly start: number
  end: number
  done: boolean

  constructor(start: number, end: number, done: boolean) {
    this.start = start
    this.end = end
    this.done = done
  }
}

/**
 * Items taken from the mailbox for processing, column by column, with the segment
 * to settle. `items[i]` was offered with stamp `base + offsets[i]` and extra
 * `extras?.[i]`; its queue index is `segment.start + i` (unique per mailbox, in
 * arrival order). Stamps are kept as offsets from a base so that, for times, they
 * stay small integers: cheap to store and to encode. The mailbox keeps stamps as
 * runs of equal values, so `offsets` is built when first read: a consumer that
 * never reads the times does not pay for them.
 *
 * @category models
 */
export class Taken<A> {
  readonly items: Array<A>
  readonly base: number
  readonly extras: Array<unknown> | undefined
  readonly segment: Segment
  /** Where each run of equal stamps starts among the items, and its offset from `base`. */
  private readonly runAt: Array<number>
  private readonly runOffset: Array<number>
  private built: Array<number> | undefined = undefined

  constructor(
    items: Array<A>,
    base: number,
    runAt: Array<number>,
    runOffset: Array<number>,
    extras: Array<unknown> | undefined,
    segment: Segment
  ) {
    this.items = items
    this.base = base
    this.runAt = runAt
    this.runOffset = runOffset
    this.extras = extras
    this.segment = segment
  }

  /** The stamp of each item, as an offset from `base` (built on first read). */
  get offsets(): Array<number> {
    if (this.built !== undefined) return this.built
    const n = this.items.length
    const offsets = new Array<number>(n)
    const { runAt, runOffset } = this
    for (let r = 0; r < runAt.length; r++) {
      const to = r + 1 < runAt.length ? runAt[r + 1]! : n
      const offset = runOffset[r]!
      for (let k = runAt[r]!; k < to; k++) offsets[k] = offset
    }
    this.built = offsets
    return offsets
  }
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

/**
 * The largest capacity a mailbox may have: 2^26 items (the ring is one array, and
 * an array holds at most about 2^27 values).
 *
 * @category constructors
 */
export const maxCapacity = 2 ** 26

/**
 * Keeps the shapes of what a take makes alive: an instance of each, for good.
 *
 * V8 holds the map (hidden class) of a class's instances only weakly, and so the
 * optimized code that embeds it: when a full collection finds no instance alive, the
 * map goes and every function compiled against it is thrown away ("embedded weak
 * objects cleared"), to be run slowly and compiled again. A trail idle at a full
 * collection lost the optimized code of its whole batch path that way, each time
 * (the 1000-type benchmark, with a collection before each round, ran at half speed).
 * The values are of the kinds real ones hold (another kind would make another map).
 * The trail's batch and the pool's run keep theirs the same way.
 */
export const keepShapes: Taken<unknown> = new Taken([], 0, [0], [0], undefined, new Span(0, 0, false))

/**
 * "No threshold": a small integer larger than any count, so that the comparison on
 * the fast path reads a field of the mailbox and not a boxed number elsewhere.
 */
const NEVER = 2 ** 30 - 1

/** Slots of a new ring; it doubles when full, up to the capacity. */
const FIRST_SLOTS = 16
/** Takes that leave an oversized ring empty before it is halved. */
const QUIET_TAKES = 64

const slotsFor = (n: number): number => {
  let slots = FIRST_SLOTS
  while (slots < n) slots *= 2
  return slots
}

/**
 * @category models
 */
export class Mailbox<A> {
  // The fields `offerNow` (the trail's `log`) reads on its fast path come first, then
  // those of `offer`, so that they share as few cache lines as can be: with many
  // types logged in turn, each `log` touches a different mailbox. Every number field
  // has an initializer: a class field declared without one starts as `undefined`, and
  // V8 then keeps it as a tagged value, checked and untagged on every read.
  /** The queued items, from slot `head` on, wrapping around. */
  private ring: Array<A | undefined>
  /** Slots in the ring minus one (slots are a power of two). */
  private mask = 0
  /** Slot of the oldest queued item. */
  private head = 0
  private count = 0
  /**
   * Items {@link offerNow} may queue on its fast path: `fastLimit`, or fewer when the
   * reading in `lastStamp` may serve fewer offers (see `stampRoom`).
   */
  private nowLimit = 0
  /** The clock's `gen` when `lastStamp` was read (below any until then): `offerNow` reads again once it moved. */
  private stampGen = UNREAD - 1
  /** Where `offerNow` stamps from (initialized so that the field only ever holds one class). */
  private readonly clock: SampledClock = noStamps
  /** The single watch (the owning actor): the size that triggers it. */
  private wakeAt = NEVER
  /** Items `offer` may queue on its fast path: the capacity or the ring's slots, whichever is less; `0` once closed. */
  private fastLimit = 0
  /** Stamp of the newest run: an offer with the same stamp just extends it. */
  private lastStamp = 0
  /**
   * The size from which `offerNow` must read the clock again. The size, not the queue
   * index (`left + count`): `left` lies four cache lines further on, and a thousand
   * types logged in turn each read it once a turn. Taking or evicting `n` items lowers
   * it by `n`.
   */
  private stampRoom = 0

  readonly capacity: number = 0
  readonly overflow: Overflow
  /** The batch size the owner takes; the ring is not shrunk below twice this. */
  readonly chunkSize: number = 0

  // counters (the accounting); `accepted` is derived: left + queued + dropped newest
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

  /**
   * Stamps as runs of equal values (a clock read once serves many offers): run `r`
   * covers the queue indices from `runIndex[r]` to the next run's start. Runs from
   * `runHead` on are live; the newest always is.
   */
  private runIndex: Array<number>
  private runStamp: Array<number>
  private runHead = 0
  /** Extras by slot (allocated on the first extra), and how many queued items have one. */
  private extras: Array<unknown> | undefined = undefined
  private extrasQueued = 0
  private droppedNewest = 0
  /** Smallest ring kept when shrinking. */
  private readonly floorSlots: number = 0
  /** Consecutive takes that emptied an oversized ring. */
  private quiet = 0
  /** Some slot outside the queued items may hold an item that left (see `sweep`). */
  private dirty = false

  /** Items that ever left the queue (taken or evicted). */
  private left = 0
  /** Every queue index below this is terminal. */
  private terminalBelow = 0
  private readonly segments = new Fifo<Segment>()
  private flushWaiters: Array<FlushWaiter> = []

  private fullAt = NEVER
  private listener: (() => void) | undefined = undefined
  private arm: (() => void) | undefined = undefined
  private spaceWaiters: Array<(effect: Effect.Effect<void>) => void> = []

  /**
   * @param chunkSize the batch size the owner takes (the ring keeps room for two)
   * @param stampBase the stamp most offers will carry first (the trail passes the
   *   time); any value is correct, this one is the cheapest
   * @param clock what {@link offerNow} stamps with (default: always 0)
   */
  constructor(capacity: number, overflow: Overflow, chunkSize = 512, stampBase = 0, clock: SampledClock = noStamps) {
    if (!(Number.isSafeInteger(capacity) && capacity > 0 && capacity <= maxCapacity)) {
      throw new RangeError(`mailbox capacity must be an integer from 1 to ${maxCapacity}, got ${capacity}`)
    }
    this.capacity = capacity
    this.overflow = overflow
    this.chunkSize = Math.max(1, Math.min(chunkSize, capacity))
    const slots = FIRST_SLOTS
    this.ring = new Array(slots)
    this.mask = slots - 1
    this.fastLimit = Math.min(capacity, slots)
    this.floorSlots = slotsFor(Math.min(capacity, Math.max(64, this.chunkSize * 2)))
    this.lastStamp = stampBase
    this.runIndex = [0]
    this.runStamp = [stampBase]
    this.clock = clock
  }

  /** Events ever accepted. */
  get accepted(): number {
    return this.left + this.count + this.droppedNewest
  }

  /** Events queued now. */
  get size(): number {
    return this.count
  }

  /** The queue index of the oldest queued item (the next to be taken). */
  get oldest(): number {
    return this.left
  }

  /** Slots in the ring now: the items it can hold before it doubles (memory in use). */
  get slots(): number {
    return this.mask + 1
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
    const c = this.count
    if (c < this.fastLimit && stamp === this.lastStamp && extra === undefined) {
      this.ring[(this.head + c) & this.mask] = item
      this.count = c + 1
      if (c + 1 >= this.wakeAt) this.wake()
      return "accepted"
    }
    return this.offerSlow(item, stamp, extra)
  }

  /**
   * Offers an item stamped with the mailbox's clock (the trail's `log`). The fast path
   * does not call the clock: a reading serves up to `step` offers of this mailbox
   * while the clock's generation is the one it read (see `internal/clock.ts`). For a
   * synchronous caller: a `full` refusal is counted (unlike {@link offer}).
   */
  offerNow(item: A, extra?: unknown): OfferResult {
    const c = this.count
    if (c < this.nowLimit && this.stampGen === this.clock.gen && extra === undefined) {
      this.ring[(this.head + c) & this.mask] = item
      this.count = c + 1
      if (c + 1 >= this.wakeAt) this.wake()
      return "accepted"
    }
    return this.offerNowSlow(item, extra)
  }

  private offerNowSlow(item: A, extra: unknown): OfferResult {
    const clock = this.clock
    let result: OfferResult
    if (this.stampGen !== clock.gen || this.count >= this.stampRoom) {
      // a reading this mailbox used up is not taken again: read afresh
      const stamp = this.stampGen === clock.gen ? clock.fresh() : clock.millis()
      // (of the generation the read may itself have moved)
      this.stampGen = clock.gen
      this.stampRoom = this.count + clock.step
      // the new stamp starts a run in `offer` (or extends the last one)
      result = this.offer(item, stamp, extra)
      this.limitNow()
    } else {
      result = this.offer(item, this.lastStamp, extra)
    }
    // the synchronous caller is refused: counted here, not by a comparison on every call
    if (result === "full") this.refusedFull++
    return result
  }

  /**
   * `n` items left the queue. Never below 0, which already means "read again": a
   * mailbox fed by `offer` alone (the gateway's) would otherwise count down out of the
   * small integers.
   */
  private lowerRoom(n: number): void {
    this.stampRoom = Math.max(0, this.stampRoom - n)
  }

  /** Recomputes `nowLimit` from `fastLimit` and `stampRoom`. */
  private limitNow(): void {
    this.nowLimit = Math.min(this.fastLimit, this.stampRoom)
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
    if (this.count > this.mask) this.resize((this.mask + 1) * 2)
    if (stamp !== this.lastStamp) {
      this.runIndex.push(this.left + this.count)
      this.runStamp.push(stamp)
      this.lastStamp = stamp
    }
    const slot = (this.head + this.count) & this.mask
    this.ring[slot] = item
    if (extra !== undefined) {
      if (this.extras === undefined) this.extras = new Array(this.mask + 1)
      this.extras[slot] = extra
      this.extrasQueued++
    }
    if (++this.count >= this.wakeAt) this.wake()
    return "accepted"
  }

  /** Moves the queued items to a ring of `slots` slots (at least the items queued), from slot 0. */
  private resize(slots: number): void {
    const { ring, mask, head, count, extras } = this
    const next = new Array<A | undefined>(slots)
    const nextExtras = extras === undefined || this.extrasQueued === 0 ? undefined : new Array(slots)
    for (let k = 0; k < count; k++) {
      const s = (head + k) & mask
      next[k] = ring[s]
      if (nextExtras !== undefined) nextExtras[k] = extras![s]
    }
    this.ring = next
    this.extras = nextExtras
    this.mask = slots - 1
    this.head = 0
    this.fastLimit = this.closed ? 0 : Math.min(this.capacity, slots)
    this.limitNow()
    this.quiet = 0
    // only the queued items were moved: nothing stale in the new ring
    this.dirty = false
  }

  /** Counts a refusal of a synchronous caller on a full `backpressure` mailbox. */
  refuseFull(): void {
    this.refusedFull++
  }

  /**
   * Takes up to `max` items as one in-flight segment, copied out into arrays of
   * their own; `undefined` when empty.
   */
  take(max: number): Taken<A> | undefined {
    const n = Math.min(max, this.count)
    if (n === 0) return undefined
    const ring = this.ring
    const head = this.head
    const end = head + n
    let items: Array<A>
    // the slots keep their items until later offers overwrite them or a sweep clears
    // them (see `sweep`): clearing each batch's slots here cost a sixth of a batch
    if (end <= this.mask + 1) {
      items = ring.slice(head, end) as Array<A>
    } else {
      // wrapped: the run up to the end of the ring, then the run from its start
      items = new Array<A>(n)
      const first = this.mask + 1 - head
      for (let k = 0; k < first; k++) items[k] = ring[head + k] as A
      for (let k = first; k < n; k++) items[k] = ring[k - first] as A
    }
    this.dirty = true
    const extras = this.extrasQueued > 0 ? this.takeExtras(head, n) : undefined
    const start = this.left
    const taken = this.takenOf(items, extras, start, n)
    this.head = end & this.mask
    this.count -= n
    this.left += n
    this.lowerRoom(n)
    this.limitNow()
    this.dropRuns()
    if (this.count === 0) this.emptied()
    this.inFlight += n
    this.segments.push(taken.segment)
    this.wakeSpace()
    return taken
  }

  /** The take of `items` (queue indices `start` to `start + n`), with the runs of their stamps. */
  private takenOf(items: Array<A>, extras: Array<unknown> | undefined, start: number, n: number): Taken<A> {
    const { runIndex, runStamp } = this
    let r = this.runHead
    const base = runStamp[r]!
    const runAt = [0]
    const runOffset = [0]
    const stop = start + n
    for (r++; r < runIndex.length && runIndex[r]! < stop; r++) {
      runAt.push(runIndex[r]! - start)
      runOffset.push(runStamp[r]! - base)
    }
    return new Taken(items, base, runAt, runOffset, extras, new Span(start, stop, false))
  }

  /** Lets go of the runs whose items all left the queue (the newest run always stays). */
  private dropRuns(): void {
    const { runIndex, left } = this
    let r = this.runHead
    while (r + 1 < runIndex.length && runIndex[r + 1]! <= left) r++
    if (r === this.runHead) return
    if (r + 1 === runIndex.length) {
      // only the newest is left: keep it alone
      runIndex[0] = runIndex[r]!
      this.runStamp[0] = this.runStamp[r]!
      runIndex.length = 1
      this.runStamp.length = 1
      this.runHead = 0
    } else if (r >= 64 && r * 2 >= runIndex.length) {
      this.runIndex = runIndex.slice(r)
      this.runStamp = this.runStamp.slice(r)
      this.runHead = 0
    } else {
      this.runHead = r
    }
  }

  /** The extras of `n` slots from `head` (cleared), or `undefined` when none has one. */
  private takeExtras(head: number, n: number): Array<unknown> | undefined {
    const all = this.extras!
    const mask = this.mask
    let out: Array<unknown> | undefined
    for (let k = 0; k < n; k++) {
      const s = (head + k) & mask
      const x = all[s]
      if (x !== undefined) {
        if (out === undefined) out = new Array(n)
        out[k] = x
        all[s] = undefined
        this.extrasQueued--
      }
    }
    return out
  }

  /**
   * The queue is empty: later items go from slot 0 again (the memory last written),
   * and a ring that stays oversized is halved.
   */
  private emptied(): void {
    this.head = 0
    const slots = this.mask + 1
    if (slots > this.floorSlots && ++this.quiet >= QUIET_TAKES) this.resize(slots / 2)
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
    const taken = this.take(this.count)
    this.sweep()
    return taken
  }

  /** Whether slots outside the queued items may still hold items that left (see {@link sweep}). */
  get stale(): boolean {
    return this.dirty
  }

  /**
   * Clears every slot of the ring outside the queued items: what was taken stays in
   * its slot until an offer overwrites it or this runs. The pool sweeps a mailbox
   * within `sweepMs` of a take (internal/pool.ts); the items a mailbox still refers to
   * are thus at most a ring's worth, and none after that.
   */
  sweep(): void {
    if (!this.dirty) return
    const ring = this.ring
    const mask = this.mask
    const head = this.head
    for (let k = this.count; k <= mask; k++) ring[(head + k) & mask] = undefined
    this.dirty = false
  }

  /** Stops accepting; wakes the batch waiter so it can drain and finish. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.fastLimit = 0
    this.nowLimit = 0
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
    if (!(threshold < NEVER)) threshold = NEVER
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
    return this.left + this.count
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
    const ring = this.ring
    const mask = this.mask
    let head = this.head
    for (let i = 0; i < n; i++) {
      ring[head] = undefined
      const extras = this.extras
      if (extras !== undefined && extras[head] !== undefined) {
        extras[head] = undefined
        this.extrasQueued--
      }
      head = (head + 1) & mask
    }
    this.head = head
    this.count -= n
    const last = this.segments.last()
    if (last?.done && last.end === this.left) last.end += n
    else this.segments.push(new Span(this.left, this.left + n, true))
    this.left += n
    this.lowerRoom(n)
    this.limitNow()
    this.dropRuns()
    this.advance()
  }

  private advance(): void {
    const segments = this.segments
    let moved = false
    while (segments.peek()?.done === true) {
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
    this.wakeAt = NEVER
    this.fullAt = NEVER
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
export const make = <A>(
  capacity: number,
  overflow: Overflow,
  chunkSize?: number,
  stampBase?: number,
  clock?: SampledClock
): Mailbox<A> => new Mailbox(capacity, overflow, chunkSize, stampBase, clock)
