/**
 * The wire protocol between a harness and the telemetry service, as a pure codec.
 *
 * A connection is a WebSocket carrying binary frames; each frame is one MessagePack
 * array whose first element is the frame kind. This module holds the frames as typed
 * data (a union tagged by `_tag`), {@link encodeFrame} and {@link decodeFrame}, the
 * limits with their {@link defaults}, the error codes with their WebSocket close codes
 * ({@link codes}), the per-event ack outcomes ({@link outcomes}), and the bridges between
 * a harness {@link Batch} and a BATCH frame ({@link fromBatch}) and between a decoded BATCH
 * and envelopes ({@link toEnvelopes}). It opens no socket: the gateway and the transport
 * use it. `docs/protocol.md` is the specification; this module implements it.
 *
 * Decoding checks the cheapest things first: the size against `maxFrameBytes` before
 * any decoding, then that the bytes are one MessagePack value, the frame kind, the
 * field count and types, the event count against `maxBatchEvents`, the type key, and
 * only then each event. Every failure is a {@link ProtocolError} built by
 * {@link failure}, carrying a stable code and the close code to send.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { C1 } from "msgpackr"
import type { Batch } from "./Batch.ts"
import { Envelope, isEventId, Origin } from "./Envelope.ts"
import type { EncodeError } from "./Errors.ts"
import { InvalidOptions, ProtocolError } from "./Errors.ts"
import { parseKey } from "./EventType.ts"
import * as Serialization from "./Serialization.ts"

// ---------------------------------------------------------------------------------------
// Versions, kinds, encodings
// ---------------------------------------------------------------------------------------

/**
 * The protocol version this module speaks (sent in HELLO, answered in WELCOME).
 *
 * @category constants
 */
export const version = 1

/**
 * The protocol versions this module accepts in a HELLO; any other is `unsupported_version`.
 *
 * @category constants
 */
export const versions: ReadonlyArray<number> = [1]

/**
 * The frame kinds: the first element of every frame.
 *
 * @category constants
 */
export const kinds = {
  Hello: 1,
  Welcome: 2,
  Batch: 3,
  Ack: 4,
  Error: 5,
  Ping: 6,
  Pong: 7,
  Drain: 8
} as const

/**
 * Who may send each kind of frame. A frame received from the wrong side is
 * `unexpected_frame` (the receiver checks; {@link decodeFrame} decodes every kind).
 *
 * @category constants
 */
export const senders = {
  Hello: "client",
  Welcome: "server",
  Batch: "client",
  Ack: "server",
  Error: "either",
  Ping: "either",
  Pong: "either",
  Drain: "server"
} as const satisfies Record<keyof typeof kinds, "client" | "server" | "either">

/**
 * How a BATCH carries its events (its element 3): `Rows` (one array per event, what a
 * foreign client sends), `Columns` (ids derived from a shared node, one data value
 * per event) or `Fields` (as columns, with the data of objects that share their keys
 * sent as one array per key: what a Cairn harness sends for such data).
 *
 * @category constants
 */
export const encodings = { Rows: 1, Columns: 2, Fields: 3 } as const

/**
 * Most keys a `Fields` BATCH has (its data objects'); more is `bad_frame`, and a
 * harness sends objects with more keys in columns.
 *
 * @category constants
 */
export const maxFields = 256

/**
 * The largest `happenedAt` (milliseconds since the epoch) an event may have: the time
 * part of an event id has 48 bits.
 *
 * @category constants
 */
export const maxTime = 2 ** 48 - 1

/**
 * The largest BATCH sequence number (2^53 - 1, exact in every MessagePack reader that
 * maps integers to doubles).
 *
 * @category constants
 */
export const maxSeq = Number.MAX_SAFE_INTEGER

/**
 * The largest PING / PONG nonce (2^32 - 1).
 *
 * @category constants
 */
export const maxNonce = 2 ** 32 - 1

/**
 * The longest ack outcome reason, in UTF-8 bytes; a server cuts longer ones with
 * {@link truncateReason}, so that an ACK of `maxBatchEvents` outcomes fits in a frame.
 *
 * @category constants
 */
export const maxReasonBytes = 512

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/**
 * The limits of a session; every one has a default ({@link defaults}). The server
 * advertises those a client must respect in WELCOME ({@link WelcomeLimits}).
 *
 * @category models
 */
export interface Limits {
  /**
   * Largest frame, in bytes, either side accepts; a larger one is refused before it is
   * decoded (`frame_too_large`). Default `1_048_576` (1 MiB).
   */
  readonly maxFrameBytes: number
  /** Most events in one BATCH (`batch_too_large`). Default `1_024`. */
  readonly maxBatchEvents: number
  /** Most BATCHes a client may have sent and not yet seen acked (`window_exceeded`). Default `8`. */
  readonly maxInFlight: number
  /**
   * Most events per second per session: a token bucket of this many tokens, refilled at
   * this rate, starting full; a BATCH needing more tokens than are left is
   * `rate_limited`. Default `200_000`.
   */
  readonly maxEventsPerSecond: number
  /** Most sessions open at once on a server (`too_many_sessions`); not advertised. Default `1_000`. */
  readonly maxSessions: number
  /** Time a server waits for HELLO after the connection opens (`hello_timeout`); not advertised. Default `5_000`. */
  readonly helloTimeoutMs: number
  /** Each side sends a PING when it has sent nothing for this long. Default `15_000`. */
  readonly heartbeatMs: number
  /**
   * Each side closes a connection on which it has received nothing for this long
   * (`idle_timeout`); more than `heartbeatMs`. Default `45_000`.
   */
  readonly idleTimeoutMs: number
}

/**
 * The limits a server advertises in WELCOME: those the client must respect or use.
 *
 * @category models
 */
export type WelcomeLimits = Omit<Limits, "maxSessions" | "helloTimeoutMs">

/**
 * The keys of the WELCOME limits map, in the order Cairn writes them.
 *
 * @category constants
 */
export const welcomeLimitKeys: ReadonlyArray<keyof WelcomeLimits> = [
  "maxFrameBytes",
  "maxBatchEvents",
  "maxInFlight",
  "maxEventsPerSecond",
  "heartbeatMs",
  "idleTimeoutMs"
]

/**
 * The default limits.
 *
 * @category constructors
 */
export const defaults: Limits = {
  maxFrameBytes: 1_048_576,
  maxBatchEvents: 1_024,
  maxInFlight: 8,
  maxEventsPerSecond: 200_000,
  maxSessions: 1_000,
  helloTimeoutMs: 5_000,
  heartbeatMs: 15_000,
  idleTimeoutMs: 45_000
}

/**
 * What {@link decodeFrame} needs of the limits.
 *
 * @category models
 */
export type DecodeLimits = Pick<Limits, "maxFrameBytes" | "maxBatchEvents">

/**
 * Limits from options, the rest from {@link defaults}. Throws {@link InvalidOptions}
 * for a limit that is not a positive integer, an `idleTimeoutMs` not above
 * `heartbeatMs`, or a `maxEventsPerSecond` below `maxBatchEvents`: a configuration
 * error, found at start-up.
 *
 * @example
 * ```ts
 * import { Protocol } from "cairn"
 *
 * const limits = Protocol.limits({ maxInFlight: 16 })
 * ```
 *
 * @category constructors
 */
export const limits = (options: Partial<Limits> = {}): Limits => {
  const resolved: Limits = { ...defaults, ...definedOnly(options) }
  for (const key of Object.keys(defaults) as Array<keyof Limits>) {
    const value = resolved[key]
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new InvalidOptions({ subject: "Protocol limits", reason: `${key} must be a positive integer` })
    }
  }
  if (resolved.idleTimeoutMs <= resolved.heartbeatMs) {
    throw new InvalidOptions({ subject: "Protocol limits", reason: "idleTimeoutMs must be more than heartbeatMs" })
  }
  if (resolved.maxEventsPerSecond < resolved.maxBatchEvents) {
    throw new InvalidOptions({
      subject: "Protocol limits",
      reason: "maxEventsPerSecond must be at least maxBatchEvents (a full batch must be able to pass)"
    })
  }
  return resolved
}

const definedOnly = (options: Partial<Limits>): Partial<Limits> => {
  const out: Record<string, number> = {}
  for (const [k, v] of Object.entries(options)) if (v !== undefined) out[k] = v
  return out as Partial<Limits>
}

/**
 * The limits to advertise in WELCOME.
 *
 * @category getters
 */
export const welcomeLimits = (limits: Limits): WelcomeLimits => ({
  maxFrameBytes: limits.maxFrameBytes,
  maxBatchEvents: limits.maxBatchEvents,
  maxInFlight: limits.maxInFlight,
  maxEventsPerSecond: limits.maxEventsPerSecond,
  heartbeatMs: limits.heartbeatMs,
  idleTimeoutMs: limits.idleTimeoutMs
})

// ---------------------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------------------

/**
 * What an error code means: the WebSocket close code that goes with it, whether a
 * client should reconnect (with backoff) and resend its unacked batches, and when it
 * is sent.
 *
 * @category models
 */
export interface CodeInfo {
  readonly closeCode: number
  /**
   * `true`: a passing condition; reconnect with exponential backoff and jitter, and
   * resend every unacked batch. `false`: the same frames would fail again (a bug, a
   * configuration or an authorization problem); do not reconnect automatically.
   */
  readonly retry: boolean
  readonly description: string
}

/**
 * Every protocol error code, with its close code. The table of `docs/protocol.md`.
 *
 * @category constants
 */
export const codes = {
  bad_msgpack: {
    closeCode: 1007,
    retry: false,
    description: "the frame is not exactly one MessagePack value (malformed, truncated, bytes left over)"
  },
  bad_frame: {
    closeCode: 1002,
    retry: false,
    description:
      "the frame is MessagePack but not a valid frame: not an array, unknown kind, wrong field count or type, bad key, event id, node or time, columns of different lengths"
  },
  text_frame: { closeCode: 1003, retry: false, description: "a text frame was received; frames are binary" },
  frame_too_large: { closeCode: 1009, retry: false, description: "the frame is larger than maxFrameBytes" },
  unsupported_version: {
    closeCode: 4026,
    retry: false,
    description: "the server does not speak the protocol version of the HELLO"
  },
  unauthorized: {
    closeCode: 4001,
    retry: false,
    description: "the HELLO has no token, an unknown token, or one not valid for its harness id"
  },
  token_revoked: { closeCode: 4003, retry: false, description: "the session's token was revoked" },
  hello_expected: { closeCode: 1002, retry: false, description: "the first frame of a connection is not a HELLO" },
  hello_timeout: { closeCode: 4008, retry: true, description: "no HELLO arrived within helloTimeoutMs" },
  unexpected_frame: {
    closeCode: 1002,
    retry: false,
    description:
      "a valid frame that is not allowed here: sent by the wrong side, a second HELLO, an ACK or PONG for nothing outstanding"
  },
  sequence: {
    closeCode: 1002,
    retry: false,
    description: "a BATCH sequence number is not the previous one plus 1 (a gap or a repeat)"
  },
  window_exceeded: {
    closeCode: 4009,
    retry: false,
    description: "a BATCH was sent while maxInFlight batches were unacked"
  },
  batch_too_large: { closeCode: 4013, retry: false, description: "a BATCH has more than maxBatchEvents events" },
  rate_limited: {
    closeCode: 4029,
    retry: true,
    description: "the session sent more events than maxEventsPerSecond allows"
  },
  too_many_sessions: { closeCode: 1013, retry: true, description: "the server has maxSessions sessions open" },
  idle_timeout: { closeCode: 4008, retry: true, description: "nothing was received for idleTimeoutMs" },
  going_away: { closeCode: 1001, retry: true, description: "the server is shutting down" },
  internal: {
    closeCode: 1011,
    retry: true,
    description: "the server failed unexpectedly, or could not accept events durably"
  }
} as const satisfies Record<string, CodeInfo>

/**
 * A protocol error code.
 *
 * @category models
 */
export type Code = keyof typeof codes

/**
 * Whether a string is a known protocol error code.
 *
 * @category guards
 */
export const isCode = (code: string): code is Code => Object.hasOwn(codes, code)

/**
 * What a code received in an ERROR frame means; an unknown code (from a newer peer) is
 * treated as `internal` (retry with backoff).
 *
 * @category getters
 */
export const codeInfo = (code: string): CodeInfo => (isCode(code) ? codes[code] : codes.internal)

/**
 * Builds a protocol failure: the one place every {@link ProtocolError} of this module
 * is made, with its code's close code.
 *
 * @example
 * ```ts
 * import { Protocol } from "cairn"
 *
 * const error = Protocol.failure("window_exceeded", "9 batches in flight, at most 8", 17)
 * error.closeCode // 4009
 * ```
 *
 * @category constructors
 */
export const failure = (code: Code, detail: string, seq?: number): ProtocolError =>
  seq === undefined
    ? new ProtocolError({ wireCode: code, closeCode: codes[code].closeCode, detail })
    : new ProtocolError({ wireCode: code, closeCode: codes[code].closeCode, detail, seq })

/**
 * The ERROR frame that reports a failure to the peer (then close with `error.closeCode`).
 *
 * @category constructors
 */
export const errorFrame = (error: ProtocolError): ErrorFrame => ({
  _tag: "Error",
  code: error.wireCode,
  message: error.detail,
  seq: error.seq
})

/**
 * The failure an ERROR frame from the peer reports (an unknown code gets the close code
 * of `internal`).
 *
 * @category constructors
 */
export const fromErrorFrame = (frame: ErrorFrame): ProtocolError => {
  const closeCode = codeInfo(frame.code).closeCode
  return frame.seq === undefined
    ? new ProtocolError({ wireCode: frame.code, closeCode, detail: frame.message })
    : new ProtocolError({ wireCode: frame.code, closeCode, detail: frame.message, seq: frame.seq })
}

// ---------------------------------------------------------------------------------------
// Ack outcomes
// ---------------------------------------------------------------------------------------

/**
 * The outcomes an ACK reports for events that were not plainly accepted; `accepted`
 * says whether the event counts as delivered (recorded, now or before).
 *
 * @category constants
 */
export const outcomes = {
  duplicate: { accepted: true, description: "an event with this id was already recorded; it is not recorded again" },
  unknown_type: { accepted: false, description: "the service has no event type with the batch's key" },
  invalid: {
    accepted: false,
    description: "the data does not decode with the type's schema; the reason is the validation message"
  },
  rejected: { accepted: false, description: "the service refused the event for another reason, given as the reason" }
} as const satisfies Record<string, { readonly accepted: boolean; readonly description: string }>

/**
 * An outcome code.
 *
 * @category models
 */
export type OutcomeCode = keyof typeof outcomes

/**
 * One event's outcome in an ACK: its index in the batch, a code, a reason (may be empty).
 *
 * @category models
 */
export type Outcome = readonly [index: number, code: string, reason: string]

/**
 * Whether an outcome code means the event counts as delivered. Only `duplicate` does;
 * any other code, unknown ones included, means the event was not recorded and will not
 * be (do not resend it).
 *
 * @category guards
 */
export const isAccepted = (code: string): boolean => code === "duplicate"

/**
 * A reason cut to at most {@link maxReasonBytes} bytes of UTF-8, at a character
 * boundary, ending with `…` when cut.
 *
 * @category constructors
 */
export const truncateReason = (reason: string): string => {
  if (reason.length * 3 <= maxReasonBytes) return reason // at most 3 bytes per UTF-16 unit
  const budget = maxReasonBytes - 3 // room for "…"
  let bytes = 0
  let end = 0
  let cut = -1
  for (const ch of reason) {
    const cp = ch.codePointAt(0)!
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4
    if (cut < 0 && bytes > budget) cut = end
    if (bytes > maxReasonBytes) return `${reason.slice(0, cut)}…`
    end += ch.length
  }
  return reason
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/**
 * Client → server, first frame: `[1, version, harness, token, client]`.
 *
 * @category models
 */
export interface HelloFrame {
  readonly _tag: "Hello"
  readonly version: number
  /** The harness id: the source of every event of the session. */
  readonly harness: string
  /** The bearer token; empty when there is none. */
  readonly token: string
  /** Who the client is: `name`, `version`, and any other string entries. */
  readonly client: Readonly<Record<string, string>>
}

/**
 * Server → client, answer to HELLO: `[2, version, session, limits]`.
 *
 * @category models
 */
export interface WelcomeFrame {
  readonly _tag: "Welcome"
  readonly version: number
  readonly session: string
  readonly limits: WelcomeLimits
}

/**
 * One event in the rows encoding: `[id, happenedAt, data, parent]`.
 *
 * @category models
 */
export type Row = readonly [id: string, happenedAt: number, data: unknown, parent: string | undefined]

/**
 * A BATCH's events as rows, one array per event.
 *
 * @category models
 */
export interface Rows {
  readonly _tag: "Rows"
  readonly rows: ReadonlyArray<Row>
}

/**
 * A BATCH's events as columns, all with one id node: event `i` happened at
 * `timeBase + offsets[i]` and has the id made of that time, `node` and
 * `(firstSeq + i) mod 2^40` ({@link formatId}).
 *
 * @category models
 */
export interface Columns {
  readonly _tag: "Columns"
  /** 8 characters of Crockford base32: the 40 bits shared by every id of the batch. */
  readonly node: string
  /** Sequence part of the first event's id, from 0 to 2^40 - 1. */
  readonly firstSeq: number
  readonly timeBase: number
  readonly offsets: ReadonlyArray<number>
  readonly data: ReadonlyArray<unknown>
  /** Parent of each event, or `undefined` when no event has one. */
  readonly parents: ReadonlyArray<string | undefined> | undefined
}

/**
 * A BATCH's events as fields: like {@link Columns} (ids and times alike), with the
 * data of every event an object of the same keys, sent as one array per key: event
 * `i`'s data is `{ [names[k]]: columns[k][i] }` for each k, in that key order.
 *
 * @category models
 */
export interface Fields {
  readonly _tag: "Fields"
  readonly node: string
  readonly firstSeq: number
  readonly timeBase: number
  readonly offsets: ReadonlyArray<number>
  /** The data objects' keys, in order: distinct, none `__proto__`. */
  readonly names: ReadonlyArray<string>
  /** One array per key, each with an entry per event. */
  readonly columns: ReadonlyArray<ReadonlyArray<unknown>>
  readonly parents: ReadonlyArray<string | undefined> | undefined
}

/**
 * Client → server: `[3, seq, key, encoding, events]`.
 *
 * @category models
 */
export interface BatchFrame {
  readonly _tag: "Batch"
  readonly seq: number
  /** The events' type key, `name@version`. */
  readonly key: string
  readonly events: Rows | Columns | Fields
}

/**
 * Server → client: `[4, seq, outcomes]`; `outcomes` lists only the events not plainly
 * accepted, and is `undefined` when every event was.
 *
 * @category models
 */
export interface AckFrame {
  readonly _tag: "Ack"
  readonly seq: number
  readonly outcomes: ReadonlyArray<Outcome> | undefined
}

/**
 * Either direction: `[5, code, message, seq]`; the sender then closes the connection
 * with the code's close code.
 *
 * @category models
 */
export interface ErrorFrame {
  readonly _tag: "Error"
  readonly code: string
  readonly message: string
  readonly seq: number | undefined
}

/**
 * Either direction: `[6, nonce]`; answered by a PONG with the same nonce.
 *
 * @category models
 */
export interface PingFrame {
  readonly _tag: "Ping"
  readonly nonce: number
}

/**
 * Either direction: `[7, nonce]`, the answer to a PING.
 *
 * @category models
 */
export interface PongFrame {
  readonly _tag: "Pong"
  readonly nonce: number
}

/**
 * Server → client: `[8, reason]`: send no new BATCH; the server acks what it received,
 * then closes with `going_away`.
 *
 * @category models
 */
export interface DrainFrame {
  readonly _tag: "Drain"
  readonly reason: string
}

/**
 * Any frame.
 *
 * @category models
 */
export type Frame = HelloFrame | WelcomeFrame | BatchFrame | AckFrame | ErrorFrame | PingFrame | PongFrame | DrainFrame

// ---------------------------------------------------------------------------------------
// Event ids
// ---------------------------------------------------------------------------------------

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
/** Two base32 characters for every 10-bit value. */
const PAIRS: ReadonlyArray<string> = Array.from({ length: 1024 }, (_, i) => ALPHABET[i >> 5]! + ALPHABET[i & 31]!)
const TWO_POW_40 = 2 ** 40
const TWO_POW_20 = 2 ** 20

/** A non-negative integer below 2^40 as 8 characters. */
const encode40 = (n: number): string => {
  const hi = Math.floor(n / TWO_POW_20)
  const lo = n - hi * TWO_POW_20
  return PAIRS[hi >>> 10]! + PAIRS[hi & 1023]! + PAIRS[lo >>> 10]! + PAIRS[lo & 1023]!
}

/** Milliseconds below 2^48 as 10 characters. */
const encodeTime = (ms: number): string => {
  const hi = Math.floor(ms / TWO_POW_40)
  return PAIRS[hi & 1023]! + encode40(ms - hi * TWO_POW_40)
}

/**
 * The id of an event from its time, id node and sequence number, exactly as
 * `Envelope.IdGenerator` makes it: 10 characters for the 48-bit time, the 8-character
 * node, 8 characters for `seq mod 2^40`.
 *
 * @example
 * ```ts
 * import { Protocol } from "cairn"
 *
 * Protocol.formatId(1767225600000, "K5X2J9QM", 41) // "01KDVDNA00K5X2J9QM00000019"
 * ```
 *
 * @category constructors
 */
export const formatId = (ms: number, node: string, seq: number): string =>
  encodeTime(ms) + node + encode40(seq % TWO_POW_40)

const NODE = /^[0-9A-HJKMNP-TV-Z]{8}$/

/**
 * Whether a string is an id node: 8 characters of Crockford base32 (upper case).
 *
 * @category guards
 */
export const isNode = (s: string): boolean => NODE.test(s)

const KEY = /^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)+@[1-9][0-9]*$/

/**
 * Whether a string is a type key as the wire writes it: a dotted name (`app.Name`),
 * `@`, and a version without leading zeros, below 2^53.
 *
 * @category guards
 */
export const isKey = (key: string): boolean => KEY.test(key) && parseKey(key) !== undefined

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/**
 * The codec of every frame: plain MessagePack. Its own size limit is out of the way:
 * {@link decodeFrame} checks `maxFrameBytes` first.
 */
const codec = Serialization.make({ maxBytes: Number.MAX_SAFE_INTEGER })

const MAX_UINT32 = 0xffffffff
const MIN_INT32 = -0x80000000

/**
 * An integer field: as itself up to 32 bits; beyond, as a bigint, so that it is written
 * as int 64 (a plain number that large would be written as float 64).
 */
const int = (n: number): number | bigint => (n > MAX_UINT32 || n < MIN_INT32 ? BigInt(n) : n)

/** Offsets as written: the array itself, unless one is beyond 32 bits. */
const offsetsOut = (offsets: ReadonlyArray<number>): ReadonlyArray<number | bigint> => {
  const n = offsets.length
  for (let i = 0; i < n; i++) {
    const o = offsets[i]!
    if (o > MAX_UINT32 || o < MIN_INT32) return offsets.map(int)
  }
  return offsets
}

/** Parents as written: nil for every missing one (an `undefined` would be ext 0). */
const parentsOut = (parents: ReadonlyArray<string | undefined>): Array<string | null> => {
  const n = parents.length
  const out = new Array<string | null>(n)
  for (let i = 0; i < n; i++) out[i] = parents[i] ?? null
  return out
}

/** The fields map as written: key → column, in the names' order. */
const fieldsOut = (events: Fields): Record<string, ReadonlyArray<unknown>> => {
  const out: Record<string, ReadonlyArray<unknown>> = {}
  const names = events.names
  for (let k = 0; k < names.length; k++) out[names[k]!] = events.columns[k]!
  return out
}

const eventsOut = (events: Rows | Columns | Fields): unknown => {
  if (events._tag === "Fields") {
    return [
      events.node,
      events.firstSeq,
      int(events.timeBase),
      offsetsOut(events.offsets),
      fieldsOut(events),
      events.parents === undefined ? null : parentsOut(events.parents)
    ]
  }
  if (events._tag === "Columns") {
    return [
      events.node,
      events.firstSeq,
      int(events.timeBase),
      offsetsOut(events.offsets),
      events.data,
      events.parents === undefined ? null : parentsOut(events.parents)
    ]
  }
  const rows = events.rows
  const n = rows.length
  const out = new Array<unknown>(n)
  for (let i = 0; i < n; i++) {
    const row = rows[i]!
    out[i] = [row[0], int(row[1]), row[2], row[3] ?? null]
  }
  return out
}

/** The frame as the MessagePack array it is written as. */
const toWire = (frame: Frame): ReadonlyArray<unknown> => {
  switch (frame._tag) {
    case "Hello":
      return [kinds.Hello, frame.version, frame.harness, frame.token, frame.client]
    case "Welcome": {
      const l = frame.limits
      return [
        kinds.Welcome,
        frame.version,
        frame.session,
        {
          maxFrameBytes: int(l.maxFrameBytes),
          maxBatchEvents: int(l.maxBatchEvents),
          maxInFlight: int(l.maxInFlight),
          maxEventsPerSecond: int(l.maxEventsPerSecond),
          heartbeatMs: int(l.heartbeatMs),
          idleTimeoutMs: int(l.idleTimeoutMs)
        }
      ]
    }
    case "Batch":
      return [kinds.Batch, int(frame.seq), frame.key, encodings[frame.events._tag], eventsOut(frame.events)]
    case "Ack":
      return [
        kinds.Ack,
        int(frame.seq),
        frame.outcomes === undefined || frame.outcomes.length === 0 ? null : frame.outcomes
      ]
    case "Error":
      return [kinds.Error, frame.code, frame.message, frame.seq === undefined ? null : int(frame.seq)]
    case "Ping":
      return [kinds.Ping, frame.nonce]
    case "Pong":
      return [kinds.Pong, frame.nonce]
    case "Drain":
      return [kinds.Drain, frame.reason]
  }
}

/**
 * Encodes a frame. Throws an {@link EncodeError} when event data cannot be encoded
 * (a function, a circular reference…); the frame's own fields are not checked here
 * (the types say what they hold; {@link decodeFrame} checks what arrives).
 *
 * *Gotchas*: the bytes are a view into a buffer shared between encodes; they never
 * change, but `slice()` them to keep a small frame for long. A frame may be larger
 * than the peer's `maxFrameBytes`: check `bytes.byteLength` before sending.
 *
 * @category encoding
 */
export const encodeFrame = (frame: Frame): Uint8Array => codec.encodeUnsafe(toWire(frame))

/**
 * Encodes a frame; fails with an {@link EncodeError} (see {@link encodeFrame}).
 *
 * @category encoding
 */
export const encode = (frame: Frame): Effect.Effect<Uint8Array, EncodeError> =>
  Effect.suspend(() => codec.encode(toWire(frame)))

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER)
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER)

/**
 * An integer field as a number, or `undefined`: any MessagePack int (an int 64 decodes
 * as a bigint), or a float holding an integer (a reader cannot tell 1.0 from 1).
 */
const intOf = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isInteger(v) ? v + 0 : undefined // + 0: no -0
  if (typeof v === "bigint") return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : undefined
  return undefined
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype

/** A value in an error message: short, never throwing. */
const describe = (v: unknown): string => {
  switch (typeof v) {
    case "string":
      return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}…` : JSON.stringify(v)
    case "number":
    case "boolean":
      return String(v)
    case "bigint":
      return `${v}`
    case "undefined":
      return "undefined (ext 0)"
  }
  if (v === null) return "nil"
  if (v === C1) return "0xc1 (never used in MessagePack)"
  if (Array.isArray(v)) return `an array of ${v.length}`
  if (v instanceof Uint8Array) return `${v.byteLength} bytes of bin`
  if (v instanceof Date) return "a timestamp"
  if (isMap(v)) return "a map"
  return "an ext value"
}

const plural = (n: number, one: string): string => `${n} ${one}${n === 1 ? "" : "s"}`

const badFrame = (what: string, expected: string, got: unknown, seq?: number): ProtocolError =>
  failure("bad_frame", `${what} must be ${expected}, got ${describe(got)}`, seq)

const checkLength = (frame: ReadonlyArray<unknown>, name: string, expected: number): void => {
  if (frame.length !== expected) {
    throw failure("bad_frame", `${name} has ${plural(frame.length, "element")}, expected ${expected}`)
  }
}

const intField = (v: unknown, what: string, min: number, max: number, seq?: number): number => {
  const n = intOf(v)
  if (n === undefined || n < min || n > max) throw badFrame(what, `an integer from ${min} to ${max}`, v, seq)
  return n
}

const stringField = (v: unknown, what: string, nonEmpty: boolean, seq?: number): string => {
  if (typeof v !== "string" || (nonEmpty && v.length === 0)) {
    throw badFrame(what, nonEmpty ? "a non-empty string" : "a string", v, seq)
  }
  return v
}

const supported = (version: number): boolean => versions.includes(version)

const decodeHello = (f: Array<unknown>): HelloFrame => {
  // the version first: a HELLO of another version may have another layout
  if (f.length < 2) throw failure("bad_frame", `HELLO has ${plural(f.length, "element")}, expected 5`)
  const v = intField(f[1], "HELLO version", 1, maxSeq)
  if (!supported(v)) {
    throw failure("unsupported_version", `protocol version ${v} is not supported; supported: ${versions.join(", ")}`)
  }
  checkLength(f, "HELLO", 5)
  const harness = stringField(f[2], "HELLO harness id", true)
  const token = stringField(f[3], "HELLO token", false)
  const client = f[4]
  if (!isMap(client)) throw badFrame("HELLO client", "a map", client)
  for (const k of Object.keys(client)) {
    if (typeof client[k] !== "string") throw badFrame(`HELLO client entry ${JSON.stringify(k)}`, "a string", client[k])
  }
  return { _tag: "Hello", version: v, harness, token, client: client as Record<string, string> }
}

const decodeWelcome = (f: Array<unknown>): WelcomeFrame => {
  checkLength(f, "WELCOME", 4)
  const v = intField(f[1], "WELCOME version", 1, maxSeq)
  if (!supported(v)) {
    throw failure("unsupported_version", `protocol version ${v} is not supported; supported: ${versions.join(", ")}`)
  }
  const session = stringField(f[2], "WELCOME session id", true)
  const map = f[3]
  if (!isMap(map)) throw badFrame("WELCOME limits", "a map", map)
  const max = Number.MAX_SAFE_INTEGER
  return {
    _tag: "Welcome",
    version: v,
    session,
    limits: {
      maxFrameBytes: intField(map.maxFrameBytes, "WELCOME limit maxFrameBytes", 1, max),
      maxBatchEvents: intField(map.maxBatchEvents, "WELCOME limit maxBatchEvents", 1, max),
      maxInFlight: intField(map.maxInFlight, "WELCOME limit maxInFlight", 1, max),
      maxEventsPerSecond: intField(map.maxEventsPerSecond, "WELCOME limit maxEventsPerSecond", 1, max),
      heartbeatMs: intField(map.heartbeatMs, "WELCOME limit heartbeatMs", 1, max),
      idleTimeoutMs: intField(map.idleTimeoutMs, "WELCOME limit idleTimeoutMs", 1, max)
    }
  }
}

/** The event count of a BATCH, checked against the limit. */
const checkCount = (n: number, maxBatchEvents: number, seq: number): void => {
  if (n === 0) throw failure("bad_frame", "a BATCH has at least 1 event, got 0", seq)
  if (n > maxBatchEvents) {
    throw failure("batch_too_large", `a BATCH has ${n} events, more than the limit of ${maxBatchEvents}`, seq)
  }
}

const checkKey = (key: string, seq: number): void => {
  if (!isKey(key)) throw badFrame("BATCH key", "a type key name@version (like app.Name@1)", key, seq)
}

const decodeRows = (events: unknown, key: string, seq: number, maxBatchEvents: number): Rows => {
  if (!Array.isArray(events)) throw badFrame("BATCH rows", "an array", events, seq)
  const n = events.length
  checkCount(n, maxBatchEvents, seq)
  checkKey(key, seq)
  for (let i = 0; i < n; i++) {
    const row = events[i]
    if (!Array.isArray(row) || row.length !== 4) throw badFrame(`BATCH event ${i}`, "an array of 4", row, seq)
    const id = row[0]
    if (typeof id !== "string" || !isEventId(id)) {
      throw badFrame(`BATCH event ${i} id`, "an event id (26 characters of Crockford base32)", id, seq)
    }
    const t = row[1]
    if (typeof t !== "number" || !Number.isInteger(t) || t < 0 || t > maxTime) {
      row[1] = intField(t, `BATCH event ${i} happenedAt`, 0, maxTime, seq)
    }
    const parent = row[3]
    if (parent === null) row[3] = undefined
    else if (typeof parent !== "string") throw badFrame(`BATCH event ${i} parent`, "a string or nil", parent, seq)
  }
  return { _tag: "Rows", rows: events as Array<Row> }
}

/**
 * Columns (encoding 2) or fields (encoding 3): the same 6 elements, but for element 4,
 * the data (an array of n values) or the fields (a map of key → array of n values).
 */
const decodeColumns = (
  events: unknown,
  key: string,
  seq: number,
  maxBatchEvents: number,
  asFields: boolean
): Columns | Fields => {
  if (!Array.isArray(events) || events.length !== 6) {
    const shape = asFields
      ? "an array of 6 [node, firstSeq, timeBase, offsets, fields, parents]"
      : "an array of 6 [node, firstSeq, timeBase, offsets, data, parents]"
    throw badFrame(asFields ? "BATCH fields" : "BATCH columns", shape, events, seq)
  }
  const node = events[0]
  const offsets = events[3]
  const data = events[4]
  const parents = events[5]
  if (!Array.isArray(offsets)) throw badFrame("BATCH offsets", "an array", offsets, seq)
  let names: Array<string> | undefined
  let columns: Array<Array<unknown>> | undefined
  if (asFields) {
    if (!isMap(data)) throw badFrame("BATCH fields", "a map of key to array", data, seq)
    names = Object.keys(data)
    if (names.length > maxFields) {
      throw failure("bad_frame", `BATCH fields has ${names.length} keys, at most ${maxFields}`, seq)
    }
    columns = new Array(names.length)
    for (let k = 0; k < names.length; k++) {
      const column = data[names[k]!]
      if (!Array.isArray(column)) throw badFrame(`BATCH field ${JSON.stringify(names[k])}`, "an array", column, seq)
      columns[k] = column
    }
  } else if (!Array.isArray(data)) {
    throw badFrame("BATCH data", "an array", data, seq)
  }
  if (parents !== null && !Array.isArray(parents)) throw badFrame("BATCH parents", "an array or nil", parents, seq)
  const n = asFields ? offsets.length : (data as Array<unknown>).length
  checkCount(n, maxBatchEvents, seq)
  if (columns !== undefined) {
    for (let k = 0; k < columns.length; k++) {
      if (columns[k]!.length !== n) {
        const name = JSON.stringify(names![k])
        throw failure("bad_frame", `BATCH field ${name} has ${columns[k]!.length} entries, offsets has ${n}`, seq)
      }
    }
  } else if (offsets.length !== n) {
    throw failure("bad_frame", `BATCH offsets has ${offsets.length} entries, data has ${n}`, seq)
  }
  if (parents !== null && parents.length !== n) {
    throw failure(
      "bad_frame",
      `BATCH parents has ${parents.length} entries, ${asFields ? "offsets" : "data"} has ${n}`,
      seq
    )
  }
  checkKey(key, seq)
  if (typeof node !== "string" || !NODE.test(node)) {
    throw badFrame("BATCH node", "8 characters of Crockford base32", node, seq)
  }
  const firstSeq = intField(events[1], "BATCH firstSeq", 0, TWO_POW_40 - 1, seq)
  const timeBase = intField(events[2], "BATCH timeBase", 0, maxTime, seq)
  const low = -timeBase
  const high = maxTime - timeBase
  for (let i = 0; i < n; i++) {
    const o = offsets[i]
    if (typeof o !== "number" || !Number.isInteger(o) || o < low || o > high) {
      offsets[i] = intField(o, `BATCH offset ${i} (timeBase + offset)`, low, high, seq)
    }
  }
  if (parents !== null) {
    for (let i = 0; i < n; i++) {
      const parent = parents[i]
      if (parent === null) parents[i] = undefined
      else if (typeof parent !== "string") throw badFrame(`BATCH parent ${i}`, "a string or nil", parent, seq)
    }
  }
  const shared = {
    node,
    firstSeq,
    timeBase,
    offsets: offsets as Array<number>,
    parents: parents === null ? undefined : (parents as Array<string | undefined>)
  }
  return columns !== undefined
    ? { _tag: "Fields", ...shared, names: names!, columns }
    : { _tag: "Columns", ...shared, data: data as Array<unknown> }
}

const decodeBatch = (f: Array<unknown>, maxBatchEvents: number): BatchFrame => {
  checkLength(f, "BATCH", 5)
  const seq = intField(f[1], "BATCH seq", 1, maxSeq)
  const key = f[2]
  if (typeof key !== "string") throw badFrame("BATCH key", "a string", key, seq)
  const encoding = f[3]
  const events =
    encoding === encodings.Columns || encoding === encodings.Fields
      ? decodeColumns(f[4], key, seq, maxBatchEvents, encoding === encodings.Fields)
      : encoding === encodings.Rows
        ? decodeRows(f[4], key, seq, maxBatchEvents)
        : undefined
  if (events === undefined) {
    throw badFrame("BATCH encoding", "1 (rows), 2 (columns) or 3 (fields)", encoding, seq)
  }
  return { _tag: "Batch", seq, key, events }
}

const decodeAck = (f: Array<unknown>, maxBatchEvents: number): AckFrame => {
  checkLength(f, "ACK", 3)
  const seq = intField(f[1], "ACK seq", 1, maxSeq)
  const list = f[2]
  if (list === null) return { _tag: "Ack", seq, outcomes: undefined }
  if (!Array.isArray(list) || list.length === 0) throw badFrame("ACK outcomes", "nil or a non-empty array", list, seq)
  if (list.length > maxBatchEvents) {
    throw failure("bad_frame", `ACK has ${list.length} outcomes, more than maxBatchEvents (${maxBatchEvents})`, seq)
  }
  let previous = -1
  for (let i = 0; i < list.length; i++) {
    const o = list[i]
    if (!Array.isArray(o) || o.length !== 3) throw badFrame(`ACK outcome ${i}`, "an array of 3", o, seq)
    const index = intField(o[0], `ACK outcome ${i} index`, previous + 1, maxBatchEvents - 1, seq)
    o[0] = index
    previous = index
    stringField(o[1], `ACK outcome ${i} code`, true, seq)
    stringField(o[2], `ACK outcome ${i} reason`, false, seq)
  }
  return { _tag: "Ack", seq, outcomes: list as Array<Outcome> }
}

const decodeError = (f: Array<unknown>): ErrorFrame => {
  checkLength(f, "ERROR", 4)
  const code = stringField(f[1], "ERROR code", true)
  const message = stringField(f[2], "ERROR message", false)
  const seq = f[3] === null ? undefined : intField(f[3], "ERROR seq", 1, maxSeq)
  return { _tag: "Error", code, message, seq }
}

const decodeNonce = (f: Array<unknown>, name: "PING" | "PONG"): number => {
  checkLength(f, name, 2)
  return intField(f[1], `${name} nonce`, 0, maxNonce)
}

const decodeDrain = (f: Array<unknown>): DrainFrame => {
  checkLength(f, "DRAIN", 2)
  return { _tag: "Drain", reason: stringField(f[1], "DRAIN reason", false) }
}

const messageOf = (u: unknown): string => (u instanceof Error ? u.message : String(u))

/**
 * Decodes one frame, or throws a {@link ProtocolError}: `text_frame` for a string (a
 * text frame's payload), `frame_too_large` for more than `maxFrameBytes` bytes (before
 * any decoding), `bad_msgpack` for bytes that are not exactly one MessagePack value,
 * `unsupported_version` for a HELLO or WELCOME of another version, `batch_too_large`
 * for a BATCH of more than `maxBatchEvents` events, and `bad_frame` for anything else
 * that is not a valid frame. Only checks a frame on its own: the sender's side,
 * sequence numbers and the window are the session's to check.
 *
 * The decoded BATCH keeps the decoded arrays (nil parents become `undefined`, integers
 * written as int 64 become numbers, in place): no object per event.
 *
 * @example
 * ```ts
 * import { Protocol } from "cairn"
 *
 * const frame = Protocol.decodeFrame(Protocol.encodeFrame({ _tag: "Ping", nonce: 7 }))
 * ```
 *
 * @category decoding
 */
export const decodeFrame = (bytes: Uint8Array | string, limits: DecodeLimits = defaults): Frame => {
  if (typeof bytes === "string") throw failure("text_frame", "a text frame was received; frames are binary")
  if (!(bytes instanceof Uint8Array)) throw failure("bad_frame", `a frame must be bytes, got ${describe(bytes)}`)
  const size = bytes.byteLength
  if (size > limits.maxFrameBytes) {
    throw failure("frame_too_large", `a frame of ${size} bytes is larger than the limit of ${limits.maxFrameBytes}`)
  }
  let value: unknown
  try {
    value = codec.decodeUnsafe(bytes)
  } catch (cause) {
    throw failure("bad_msgpack", messageOf(cause))
  }
  // msgpackr reads the byte 0xc1, which MessagePack never uses, as a marker object
  if (value === C1) throw failure("bad_msgpack", "the byte 0xc1 is never used in MessagePack")
  if (!Array.isArray(value)) throw badFrame("a frame", "a MessagePack array", value)
  if (value.length === 0) throw failure("bad_frame", "a frame must have a kind, got an empty array")
  const kind = value[0]
  switch (kind) {
    case kinds.Hello:
      return decodeHello(value)
    case kinds.Welcome:
      return decodeWelcome(value)
    case kinds.Batch:
      return decodeBatch(value, limits.maxBatchEvents)
    case kinds.Ack:
      return decodeAck(value, limits.maxBatchEvents)
    case kinds.Error:
      return decodeError(value)
    case kinds.Ping:
      return { _tag: "Ping", nonce: decodeNonce(value, "PING") }
    case kinds.Pong:
      return { _tag: "Pong", nonce: decodeNonce(value, "PONG") }
    case kinds.Drain:
      return decodeDrain(value)
  }
  throw badFrame("the frame kind", "an integer from 1 to 8", kind)
}

/**
 * Decodes one frame; fails with a {@link ProtocolError} (see {@link decodeFrame}).
 *
 * @category decoding
 */
export const decode = (
  bytes: Uint8Array | string,
  limits: DecodeLimits = defaults
): Effect.Effect<Frame, ProtocolError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(decodeFrame(bytes, limits))
    } catch (error) {
      return error instanceof ProtocolError ? Effect.fail(error) : Effect.die(error)
    }
  })

// ---------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------

/**
 * The BATCH frame of a harness batch, in columns: no copy of its data, times or parents
 * (parents are turned into nils when encoded). Resent after a reconnect with a new
 * `seq`, it carries the same event ids.
 *
 * @category constructors
 */
export const fromBatch = (seq: number, batch: Batch): BatchFrame =>
  batch.hasForeign ? fromForeignBatch(seq, batch) : fromOwnBatch(seq, batch)

/** A batch holding events recorded elsewhere (their own ids): as rows. */
const fromForeignBatch = (seq: number, batch: Batch): BatchFrame => {
  const rows = new Array<Row>(batch.size)
  for (let i = 0; i < rows.length; i++) rows[i] = [batch.id(i), batch.time(i), batch.data[i], batch.parents?.[i]]
  return { _tag: "Batch", seq, key: batch.key, events: { _tag: "Rows", rows } }
}

/**
 * A harness batch of its own events: in fields when every event's data is a plain
 * object with the same keys in the same order (see {@link fieldsOf}), else in columns.
 */
const fromOwnBatch = (seq: number, batch: Batch): BatchFrame => {
  const node = batch.idNode
  const firstSeq = batch.firstSeq % TWO_POW_40
  const fields = fieldsOf(batch.data)
  return {
    _tag: "Batch",
    seq,
    key: batch.key,
    events:
      fields === undefined
        ? {
            _tag: "Columns",
            node,
            firstSeq,
            timeBase: batch.timeBase,
            offsets: batch.timeOffsets,
            data: batch.data,
            parents: batch.parents
          }
        : {
            _tag: "Fields",
            node,
            firstSeq,
            timeBase: batch.timeBase,
            offsets: batch.timeOffsets,
            names: fields.names,
            columns: fields.columns,
            parents: batch.parents
          }
  }
}

/**
 * The data of a batch as fields — its keys and one array per key — when every value
 * is a plain object (prototype `Object.prototype` or `null`) with the same own
 * enumerable keys in the same order as the first, 1 to {@link maxFields} of them, none
 * `__proto__`; otherwise `undefined` (the batch goes in columns). One pass, stopping
 * at the first object that differs.
 *
 * @category encoding
 */
export const fieldsOf = (
  data: ReadonlyArray<unknown>
): { readonly names: Array<string>; readonly columns: Array<Array<unknown>> } | undefined => {
  const n = data.length
  const first = data[0]
  if (!isPlainObject(first)) return undefined
  const names = Object.keys(first as object)
  const width = names.length
  if (width === 0 || width > maxFields) return undefined
  for (let k = 0; k < width; k++) if (names[k] === "__proto__") return undefined
  const columns = new Array<Array<unknown>>(width)
  for (let k = 0; k < width; k++) columns[k] = new Array(n)
  for (let i = 0; i < n; i++) {
    const o = data[i]
    if (i > 0 && !isPlainObject(o)) return undefined
    let k = 0
    for (const name in o as Record<string, unknown>) {
      // for..in also walks inherited enumerable keys: a plain object has none
      if (k === width || name !== names[k]) return undefined
      columns[k]![i] = (o as Record<string, unknown>)[name]
      k++
    }
    if (k !== width) return undefined
  }
  return { names, columns }
}

const isPlainObject = (v: unknown): boolean => {
  if (typeof v !== "object" || v === null) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/**
 * Number of events of a BATCH.
 *
 * @category getters
 */
export const eventCount = (frame: BatchFrame): number => {
  const events = frame.events
  return events._tag === "Rows" ? events.rows.length : events.offsets.length
}

/**
 * Id of the i-th event of a BATCH (derived, for columns and fields; see {@link formatId}).
 *
 * @category getters
 */
export const eventId = (frame: BatchFrame, i: number): string => {
  const events = frame.events
  return events._tag === "Rows"
    ? events.rows[i]![0]
    : formatId(events.timeBase + events.offsets[i]!, events.node, events.firstSeq + i)
}

/**
 * `happenedAt` of the i-th event of a BATCH, milliseconds since the epoch.
 *
 * @category getters
 */
export const eventTime = (frame: BatchFrame, i: number): number => {
  const events = frame.events
  return events._tag === "Rows" ? events.rows[i]![1] : events.timeBase + events.offsets[i]!
}

/**
 * Data of the i-th event of a BATCH (not yet validated against its type's schema);
 * for fields, a new object of the batch's keys.
 *
 * @category getters
 */
export const eventData = (frame: BatchFrame, i: number): unknown => {
  const events = frame.events
  switch (events._tag) {
    case "Rows":
      return events.rows[i]![2]
    case "Columns":
      return events.data[i]
    case "Fields": {
      const names = events.names
      const columns = events.columns
      const out: Record<string, unknown> = {}
      for (let k = 0; k < names.length; k++) out[names[k]!] = columns[k]![i]
      return out
    }
  }
}

/**
 * Parent id of the i-th event of a BATCH, if any.
 *
 * @category getters
 */
export const eventParent = (frame: BatchFrame, i: number): string | undefined => {
  const events = frame.events
  return events._tag === "Rows" ? events.rows[i]![3] : events.parents?.[i]
}

/**
 * Every event id of a BATCH, in order (for columns, the time part is made once per
 * distinct millisecond).
 *
 * @category getters
 */
export const eventIds = (frame: BatchFrame): Array<string> => {
  const events = frame.events
  if (events._tag === "Rows") {
    const rows = events.rows
    const out = new Array<string>(rows.length)
    for (let i = 0; i < rows.length; i++) out[i] = rows[i]![0]
    return out
  }
  const { node, firstSeq, timeBase, offsets } = events
  const n = offsets.length
  const out = new Array<string>(n)
  let lastMs = -1
  let lastTime = ""
  for (let i = 0; i < n; i++) {
    const ms = timeBase + offsets[i]!
    if (ms !== lastMs) {
      lastMs = ms
      lastTime = encodeTime(ms)
    }
    out[i] = lastTime + node + encode40((firstSeq + i) % TWO_POW_40)
  }
  return out
}

/**
 * The events of a decoded BATCH in envelopes: id, type key, happenedAt, `source` (the
 * session's harness id, from its HELLO), parent and data (not yet validated). One
 * origin is shared by all of them.
 *
 * @category constructors
 */
export const toEnvelopes = (frame: BatchFrame, source: string): Array<Envelope> => {
  const origin = new Origin(frame.key, source, undefined)
  const events = frame.events
  if (events._tag === "Rows") {
    const rows = events.rows
    const out = new Array<Envelope>(rows.length)
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!
      out[i] = new Envelope(origin, row[1], row[2], row[3], row[0], 0)
    }
    return out
  }
  const ids = eventIds(frame)
  const { timeBase, offsets, parents } = events
  const n = ids.length
  const out = new Array<Envelope>(n)
  for (let i = 0; i < n; i++) {
    out[i] = new Envelope(origin, timeBase + offsets[i]!, eventData(frame, i), parents?.[i], ids[i], 0)
  }
  return out
}
