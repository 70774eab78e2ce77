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
import { Envelope, type Origin } from "./Envelope.ts"
import type * as EventType from "./EventType.ts"

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
  readonly timeOffsets: ReadonlyArray<number>
  /** Parent id of each event, or `undefined` when no event of the batch has one. */
  readonly parents: ReadonlyArray<string | undefined> | undefined
  /** Sequence number of the first event; the i-th has `firstSeq + i`. */
  readonly firstSeq: number
  private readonly origin: Origin
  private envelopes: ReadonlyArray<Envelope<A>> | undefined = undefined
  private times: ReadonlyArray<number> | undefined = undefined

  constructor(
    type: EventType.EventType<A, unknown>,
    origin: Origin,
    data: ReadonlyArray<A>,
    timeBase: number,
    timeOffsets: ReadonlyArray<number>,
    parents: ReadonlyArray<unknown> | undefined,
    firstSeq: number
  ) {
    this.type = type
    this.origin = origin
    this.data = data
    this.timeBase = timeBase
    this.timeOffsets = timeOffsets
    this.parents = parents as ReadonlyArray<string | undefined> | undefined
    this.firstSeq = firstSeq
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

  /** Who recorded the events. */
  get source(): string {
    return this.origin.source
  }

  /** The 8 characters shared by every id of this batch (the generator's random bits). */
  get idNode(): string {
    return this.origin.ids!.node
  }

  /** The id of the i-th event. */
  id(i: number): string {
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
      for (let i = 0; i < n; i++) {
        out[i] = new Envelope(this.origin, this.time(i), this.data[i]!, this.parents?.[i], undefined, this.firstSeq + i)
      }
      this.envelopes = out
    }
    return this.envelopes
  }
}
