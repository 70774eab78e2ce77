/**
 * The event envelope and its id.
 *
 * Every event travels in an envelope: a unique, time-sortable id (the de-duplication
 * key end to end), the type key `name@version`, when it happened, where it came from
 * (the source, e.g. a harness id), an optional parent id, and the data.
 *
 * Ids are 26 characters of Crockford base32, sortable as strings by time, like a ULID:
 * 48 bits of milliseconds since the epoch, then 40 random bits chosen once per
 * generator (one per event type of a trail) and a 40-bit counter. Two generators collide only if they
 * draw the same 40 random bits *and* use the same counter value in the same
 * millisecond. The id is computed lazily from the envelope's fields, so `log` never
 * pays for the string.
 *
 * @since 0.1.0
 */

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
/** Two base32 characters for every 10-bit value. */
const PAIRS: ReadonlyArray<string> = Array.from({ length: 1024 }, (_, i) => ALPHABET[i >> 5]! + ALPHABET[i & 31]!)
const TWO_POW_40 = 2 ** 40
const TWO_POW_20 = 2 ** 20

/** Encodes a non-negative integer below 2^40 as 8 characters. */
const encode40 = (n: number): string => {
  const hi = Math.floor(n / TWO_POW_20)
  const lo = n - hi * TWO_POW_20
  return PAIRS[hi >>> 10]! + PAIRS[hi & 1023]! + PAIRS[lo >>> 10]! + PAIRS[lo & 1023]!
}

/** Encodes milliseconds (below 2^48) as 10 characters. */
const encodeTime = (ms: number): string => {
  const hi = Math.floor(ms / TWO_POW_40) // at most 8 bits
  return PAIRS[hi & 1023]! + encode40(ms - hi * TWO_POW_40)
}

/**
 * Makes event ids for one producer. Not shared between trails, so no module state.
 *
 * @category models
 */
export class IdGenerator {
  /** 8 characters encoding the generator's 40 random bits. */
  readonly node: string
  /** The same 40 bits as a number. */
  readonly nodeValue: number
  private lastMs = -1
  private lastTime = ""

  /**
   * A generator with a random node, or with the given one (8 characters of
   * Crockford base32, not checked here): the service derives the ids of a columns
   * BATCH with the node the harness drew.
   */
  constructor(node?: string) {
    this.node = node ?? randomNode()
    let value = 0
    for (let i = 0; i < 8; i++) value = value * 32 + ALPHABET.indexOf(this.node[i]!)
    this.nodeValue = value
  }

  /**
   * The id of the event with this time and sequence number. Sequence numbers must be
   * unique per generator (below 2^40); the trail uses each type's queue index.
   */
  format(ms: number, seq: number): string {
    if (ms !== this.lastMs) {
      this.lastMs = ms
      this.lastTime = encodeTime(Math.max(ms, 0))
    }
    return this.lastTime + this.node + encode40(seq % TWO_POW_40)
  }
}

const randomNode = (): string => {
  const b = new Uint8Array(5)
  globalThis.crypto.getRandomValues(b)
  return encode40(b[0]! * 2 ** 32 + b[1]! * 2 ** 24 + b[2]! * 2 ** 16 + b[3]! * 2 ** 8 + b[4]!)
}

/**
 * What the events of one type from one producer share: type key, source and id
 * generator. Kept once, referenced by every envelope, so an envelope stays small.
 *
 * @category models
 */
export class Origin {
  readonly type: string
  readonly source: string
  readonly ids: IdGenerator | undefined
  constructor(type: string, source: string, ids: IdGenerator | undefined) {
    this.type = type
    this.source = source
    this.ids = ids
  }
}

/**
 * An event in its envelope.
 *
 * @category models
 */
export class Envelope<A = unknown> {
  /** Milliseconds since the epoch, from the producer's clock. */
  readonly happenedAt: number
  readonly data: A
  /** Id of the parent event, if any. */
  readonly parent: string | undefined
  private readonly origin: Origin
  /** The id once known; otherwise computed from `seq` on first read. */
  private _id: string | undefined
  private readonly seq: number

  constructor(
    origin: Origin,
    happenedAt: number,
    data: A,
    parent: string | undefined,
    id: string | undefined,
    seq: number
  ) {
    this.origin = origin
    this.happenedAt = happenedAt
    this.data = data
    this.parent = parent
    this._id = id
    this.seq = seq
  }

  /** Type key, `name@version`. */
  get type(): string {
    return this.origin.type
  }

  /** Who recorded it (a harness id, a service name). */
  get source(): string {
    return this.origin.source
  }

  /** The unique, time-sortable id (computed on first read). */
  get id(): string {
    if (this._id === undefined) this._id = this.origin.ids!.format(this.happenedAt, this.seq)
    return this._id
  }

  /**
   * Adds the id to a set of ids: by its parts when it is derived (no string made),
   * else as its string. What the in-memory store de-duplicates with.
   *
   * @internal
   */
  addIdTo(set: IdSink): boolean {
    const ids = this.origin.ids
    if (ids === undefined) return set.add(this._id!)
    return set.addParts(Math.max(this.happenedAt, 0), ids.nodeValue, ids.node, this.seq % TWO_POW_40)
  }

  toJSON(): EnvelopeJson<A> {
    const json: {
      id: string
      type: string
      happenedAt: number
      source: string
      parent?: string
      data: A
    } = { id: this.id, type: this.type, happenedAt: this.happenedAt, source: this.source, data: this.data }
    if (this.parent !== undefined) json.parent = this.parent
    return json
  }
}

/**
 * Where {@link Envelope.addIdTo} puts an id: a set taking ids as strings or as their
 * parts (milliseconds, the node as a number and as characters, sequence number).
 *
 * @internal
 */
export interface IdSink {
  add(id: string): boolean
  addParts(ms: number, node: number, nodeChars: string, seq: number): boolean
}

/**
 * The plain-object form of an envelope.
 *
 * @category models
 */
export interface EnvelopeJson<A = unknown> {
  readonly id: string
  readonly type: string
  readonly happenedAt: number
  readonly source: string
  readonly parent?: string
  readonly data: A
}

/**
 * Builds an envelope with a known id (one that came over the wire, say).
 *
 * @category constructors
 */
export const make = <A>(fields: EnvelopeJson<A>): Envelope<A> =>
  new Envelope(
    new Origin(fields.type, fields.source, undefined),
    fields.happenedAt,
    fields.data,
    fields.parent,
    fields.id,
    0
  )

const ID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/

/**
 * Whether a string has the form of an event id.
 *
 * @category guards
 */
export const isEventId = (s: string): boolean => ID.test(s)

/**
 * The milliseconds encoded in an id (its first 10 characters).
 *
 * @category getters
 */
export const idTime = (id: string): number => {
  let ms = 0
  for (let i = 0; i < 10; i++) ms = ms * 32 + ALPHABET.indexOf(id[i]!)
  return ms
}
