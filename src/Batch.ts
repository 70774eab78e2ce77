/**
 * A batch of events of one type, stored column by column.
 *
 * A processing function receives a `Batch`: the events' data, times and parents as
 * columns, plus what they all share (type, source, id prefix). Envelopes are built
 * only if asked for (`events`, `envelope(i)`), so a processor that encodes columns
 * (as the wire does) never pays for per-event objects, and ids are derived from the
 * shared prefix and each event's sequence number.
 *
 * @since 0.1.0
 */
import { Envelope, Origin } from "./Envelope.ts"
import type * as EventType from "./EventType.ts"

/**
 * The origin of the events of one type recorded elsewhere by one source: their
 * envelopes keep their own ids (make it once per session and type, not per event).
 *
 * @category constructors
 */
export const foreignOrigin = (type: string, source: string): Origin => new Origin(type, source, undefined)

/**
 * An event of a batch the processing function refused (e.g. the service's reason,
 * coming back in an ack): it is not processed. A `must` event becomes a dead letter
 * with the reason, a `droppable` one is counted as dropped.
 *
 * @category models
 */
export interface Rejection {
  /** Index of the event in the batch. */
  readonly index: number
  /** A short code (`invalid`, `unknown_type`, `rejected`, …). */
  readonly code: string
  readonly reason: string
}

/**
 * @category models
 */
export class Batch<A = unknown> {
  readonly type: EventType.EventType<A, unknown>
  /** Data of each event, in the order logged. */
  readonly data: ReadonlyArray<A>
  /**
   * Times as a base and an offset per event: event i happened at
   * `timeBase + timeOffsets[i]` milliseconds since the epoch. Offsets are small
   * integers, which is how the wire encodes them.
   */
  readonly timeBase: number
  /** Parent id of each event, or `undefined` when no event of the batch has one. */
  readonly parents: ReadonlyArray<string | undefined> | undefined
  /** Sequence number of the first event; the i-th has `firstSeq + i`. */
  readonly firstSeq: number
  /**
   * Events the processing function refused (see {@link reject}); the others are
   * processed when it succeeds.
   */
  rejected: Array<Rejection> | undefined = undefined
  private readonly origin: Origin
  /** Per event: its own envelope when it was recorded elsewhere (see `Trail.intake`). */
  private readonly foreign: ReadonlyArray<unknown> | undefined
  private envelopes: ReadonlyArray<Envelope<A>> | undefined = undefined
  private times: ReadonlyArray<number> | undefined = undefined
  /** The offsets, or what builds them when first read (a mailbox's take). */
  private readonly offsetsFrom: ReadonlyArray<number> | { readonly offsets: ReadonlyArray<number> }

  /**
   * @param timeOffsets the offsets, or an object whose `offsets` gives them when
   *   first read (a mailbox take: a processor that never reads the times never builds them)
   */
  constructor(
    type: EventType.EventType<A, unknown>,
    origin: Origin,
    data: ReadonlyArray<A>,
    timeBase: number,
    timeOffsets: ReadonlyArray<number> | { readonly offsets: ReadonlyArray<number> },
    parents: ReadonlyArray<unknown> | undefined,
    firstSeq: number
  ) {
    this.type = type
    this.origin = origin
    this.data = data
    this.timeBase = timeBase
    this.offsetsFrom = timeOffsets
    let foreign: ReadonlyArray<unknown> | undefined
    if (parents !== undefined) {
      for (let i = 0; i < parents.length; i++) {
        if (parents[i] instanceof Envelope) {
          foreign = parents
          parents = parents.map((p) => (p instanceof Envelope ? p.parent : p))
          break
        }
      }
    }
    this.foreign = foreign
    this.parents = parents as ReadonlyArray<string | undefined> | undefined
    this.firstSeq = firstSeq
  }

  /**
   * Times as a base and an offset per event: event i happened at
   * `timeBase + timeOffsets[i]` milliseconds since the epoch (see {@link timeBase}).
   */
  get timeOffsets(): ReadonlyArray<number> {
    const from = this.offsetsFrom
    return Array.isArray(from) ? from : (from as { readonly offsets: ReadonlyArray<number> }).offsets
  }

  /** `happenedAt` of each event, milliseconds since the epoch (computed on first read). */
  get happenedAt(): ReadonlyArray<number> {
    if (this.times === undefined) {
      const base = this.timeBase
      this.times = this.timeOffsets.map((offset) => base + offset)
    }
    return this.times
  }

  /** `happenedAt` of the i-th event. */
  time(i: number): number {
    return this.timeBase + this.timeOffsets[i]!
  }

  /** Number of events. */
  get size(): number {
    return this.data.length
  }

  /** Type key, `name@version`. */
  get key(): string {
    return this.origin.type
  }

  /** Who recorded the events (for a batch with foreign events, see {@link sourceOf}). */
  get source(): string {
    return this.origin.source
  }

  /** Who recorded the i-th event. */
  sourceOf(i: number): string {
    const f = this.foreign?.[i]
    return f instanceof Envelope ? f.source : this.origin.source
  }

  /** Whether some events were recorded elsewhere (they keep their own ids and sources). */
  get hasForeign(): boolean {
    return this.foreign !== undefined
  }

  /** Refuses the i-th event (see {@link Rejection}); call before the processing function succeeds. */
  reject(index: number, code: string, reason: string): void {
    if (this.rejected === undefined) this.rejected = []
    this.rejected.push({ index, code, reason })
  }

  /** The 8 characters shared by every id of this batch (the generator's random bits). */
  get idNode(): string {
    return this.origin.ids!.node
  }

  /** The id of the i-th event. */
  id(i: number): string {
    const f = this.foreign?.[i]
    if (f instanceof Envelope) return f.id
    return this.origin.ids!.format(this.time(i), this.firstSeq + i)
  }

  /** The i-th event in its envelope. */
  envelope(i: number): Envelope<A> {
    return this.events[i]!
  }

  /** Every event in its envelope (built on first access, then kept). */
  get events(): ReadonlyArray<Envelope<A>> {
    if (this.envelopes === undefined) {
      const n = this.data.length
      const out = new Array<Envelope<A>>(n)
      const foreign = this.foreign
      for (let i = 0; i < n; i++) {
        const f = foreign?.[i]
        out[i] =
          f instanceof Envelope
            ? (f as Envelope<A>)
            : new Envelope(this.origin, this.time(i), this.data[i]!, this.parents?.[i], undefined, this.firstSeq + i)
      }
      this.envelopes = out
    }
    return this.envelopes
  }
}

/**
 * Keeps the shape of a batch alive between batches (see `keepShapes` in Mailbox.ts):
 * without it, a full collection while no batch was alive threw away the optimized
 * code of the trail's batch path.
 *
 * @internal
 */
export const keepBatch: Batch = new Batch(undefined as never, foreignOrigin("", ""), [], Date.now(), [0], undefined, 0)
