/**
 * The harness side of the wire: a trail's processing function that sends each batch
 * to the gateway over one WebSocket and completes when the batch is acked.
 *
 * `make` connects at once (in the background: it does not wait for the gateway), says
 * HELLO, and keeps the connection up for as long as its scope is open. Give
 * `transport.process` to `Trail.make({ process })`: every batch the trail hands it is
 * queued (first in, first out, in the order `process` was called), sent as one BATCH
 * frame (or several, when it has more events than the server's `maxBatchEvents`) with
 * at most `window` frames unacked at once, and the Effect completes when every frame
 * of the batch is acked. Events an ACK lists as not delivered (`invalid`,
 * `unknown_type`, `rejected`, …) are refused with `batch.reject`, so the trail turns
 * them into dead letters (`must`) or drops (`droppable`); `duplicate` counts as
 * delivered.
 *
 * When the connection drops (or the server sends an ERROR that says retry, or
 * drains), the transport reconnects with backoff and jitter and resends every unacked
 * frame first, in their original order, with new sequence numbers and the same event
 * ids: the service de-duplicates by id, so each event is recorded once. An ERROR that
 * says not to retry (`unauthorized`, `bad_frame`, …) stops the transport: every batch
 * it holds fails with the {@link ProtocolError}, and so does every later one; the
 * trail retries them on the type's schedule and dead-letters `must` events.
 *
 * `docs/protocol.md` is the specification this module follows (§6, §8, §10);
 * `docs/transport.md` says how to use it.
 *
 * @since 0.1.0
 */
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Schedule, type Scope } from "effect"
import WebSocket from "ws"
import type { Batch } from "./Batch.ts"
import { ConnectionFailed, InvalidOptions, ProtocolError, TransportClosed } from "./Errors.ts"
import * as Protocol from "./Protocol.ts"
import type { Processor } from "./Trail.ts"

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/**
 * Options of a transport. `url`, `harness` and `token` are required; every other
 * field has a default ({@link defaults}).
 *
 * @category models
 */
export interface Options {
  /** The gateway's URL, `ws://host:port/path` or `wss://…` (use `wss` beyond loopback: the token travels in HELLO). */
  readonly url: string
  /** The harness id sent in HELLO: the source of every event of the session. */
  readonly harness: string
  /** The bearer token sent in HELLO (`""` for none: the server then answers `unauthorized`). */
  readonly token: string
  /**
   * Most BATCH frames sent and not yet acked. Never more than the server's WELCOME
   * `maxInFlight`, whatever is asked here. Default `8`.
   */
  readonly window?: number
  /**
   * Delay before each reconnect; its input is why the connection ended (a
   * {@link ProtocolError}, or a description). It starts over after a good session (one
   * that got an ACK, or stayed open 5 s). If it ends, the transport gives up with
   * {@link ConnectionFailed}. Default: exponential from 100 ms, factor 2, jittered
   * (±20 %), capped at 30 s ({@link defaultBackoff}). After `rate_limited` the delay
   * is at least 1 s.
   */
  readonly backoff?: Schedule.Schedule<unknown, unknown>
  /** Time to open the connection and get WELCOME in answer to HELLO, else reconnect. Default `10_000`. */
  readonly connectTimeoutMs?: number
  /**
   * A PING is sent when nothing was sent for this long; the server's WELCOME
   * `heartbeatMs` is used when it is smaller. Default: the server's.
   */
  readonly heartbeatMs?: number
  /** How long `close` waits for every batch to be acked before it gives up on them. Default `5_000`. */
  readonly closeTimeoutMs?: number
  /** Entries of HELLO's `client` map, over `{ name: "cairn", version: "0.1.0" }`. */
  readonly client?: Readonly<Record<string, string>>
}

/**
 * The default reconnect delay: exponential from 100 ms, factor 2, jittered (each
 * delay between 80 % and 120 % of its step), capped at 30 s.
 *
 * @category constructors
 */
export const defaultBackoff: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.jittered,
  Schedule.modifyDelay(({ duration }) => Effect.succeed(Duration.min(duration, Duration.seconds(30))))
)

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  window: 8,
  backoff: defaultBackoff,
  connectTimeoutMs: 10_000,
  closeTimeoutMs: 5_000
} as const

/**
 * What the transport says in HELLO's `client` map, unless `Options.client` overrides it.
 *
 * @category constants
 */
export const clientInfo: Readonly<Record<string, string>> = { name: "cairn", version: "0.1.0" }

/** A WELCOME or ERROR is accepted up to this size before the limits are known (protocol §9). */
const helloLimits: Protocol.DecodeLimits = { maxFrameBytes: 65_536, maxBatchEvents: Protocol.defaults.maxBatchEvents }
/** After sending or receiving an ERROR (or closing), the socket is cut if the peer has not closed by then. */
const closeGraceMs = 1_000
/**
 * The share of the server's rate bucket the client leaves unused. The server takes a
 * BATCH's tokens when it receives it: while a BATCH is on the wire, the server's bucket
 * may be full and lose the refill the client counted. A bucket 10 % smaller than the
 * server's (100 ms of refill) absorbs that much delay, so the server's bucket does not
 * run dry (`rate_limited`) under a client that paces itself.
 */
const bucketMargin = 0.1
/** A session this long counts as good: the backoff starts over. */
const goodSessionMs = 5_000
const TWO_POW_40 = 2 ** 40
/** Close codes that mean "do not retry" when they come without an ERROR frame (protocol §8). */
const noRetryCloseCodes: ReadonlySet<number> = new Set([1002, 1003, 1007, 1009, 4001, 4003, 4009, 4013, 4026])

// ---------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------

/**
 * Where the transport is:
 * - `connecting`: opening a connection, or waiting for WELCOME;
 * - `open`: WELCOME received, batches are sent;
 * - `draining`: the server sent DRAIN: nothing new is sent, acks are read, and the
 *   transport reconnects once the server closes;
 * - `waiting`: the connection ended; waiting for the backoff before reconnecting;
 * - `closed`: `close` ran (or the scope closed);
 * - `failed`: an error that says not to retry, or the backoff ended: see `lastError`.
 *
 * @category models
 */
export type Status = "connecting" | "open" | "draining" | "waiting" | "closed" | "failed"

/**
 * Counters of a transport. Frames are BATCH frames: a batch is one frame, or several
 * when it is split.
 *
 * @category models
 */
export interface Stats {
  readonly status: Status
  /** BATCH frames sent, resends included. */
  readonly sent: number
  /** BATCH frames acked. */
  readonly acked: number
  /** BATCH frames sent again after a reconnect (counted in `sent` too). */
  readonly resent: number
  /** Sessions (WELCOME received) after the first one. */
  readonly reconnects: number
  /** BATCH frames sent and not yet acked on the current connection. */
  readonly inFlight: number
  /** BATCH frames waiting to be sent (resends first). */
  readonly pending: number
  /** Events not delivered: listed in an ACK with a code other than `duplicate`, or refused before sending. */
  readonly rejected: number
  /** Events acked as `duplicate` (recorded before: delivered). */
  readonly duplicates: number
  /** The session id of the current (or last) WELCOME. */
  readonly session: string | undefined
  /** Why the last connection ended or could not be made, or the error that stopped the transport. */
  readonly lastError: string | undefined
}

/**
 * What a batch given to {@link Transport.process} may fail with.
 *
 * @category models
 */
export type ProcessError = ProtocolError | TransportClosed | ConnectionFailed

/**
 * A connection to a gateway, as a trail processing function.
 *
 * @category models
 */
export interface Transport {
  /**
   * Sends a batch and completes when it is acked (events refused by the server are
   * refused with `batch.reject` first). Give it to `Trail.make({ process })`.
   * Interrupting it (a trail's shutdown deadline, a timeout) takes the batch out of
   * the queue, or out of the resend list if it was sent.
   */
  readonly process: Processor
  readonly status: () => Status
  readonly stats: () => Stats
  /**
   * Refuses new batches, waits (at most `closeTimeoutMs`) for every batch to be
   * acked, fails what is left with {@link TransportClosed}, and closes the connection
   * with 1000. Idempotent; also run when the scope closes.
   */
  readonly close: Effect.Effect<void>
}

// ---------------------------------------------------------------------------------------
// Internals
// ---------------------------------------------------------------------------------------

type Resume = (effect: Effect.Effect<void, ProcessError>) => void

interface Refusal {
  readonly index: number
  readonly code: string
  readonly reason: string
}

/** One call of `process`: a batch until every one of its parts is acked. */
class Entry {
  readonly batch: Batch
  readonly resume: Resume
  /** Settled: completed, failed or interrupted. */
  done = false
  /** Parts not yet acked (nor refused before sending). */
  open = 1
  refusals: Array<Refusal> | undefined = undefined
  /** The batch's BATCH frame (its seq is replaced at each send), made on first send. */
  frame: Protocol.BatchFrame | undefined = undefined
  constructor(batch: Batch, resume: Resume) {
    this.batch = batch
    this.resume = resume
  }
}

/** The events `start` to `end` (excluded) of an entry's batch: one BATCH frame. */
class Part {
  readonly entry: Entry
  start: number
  readonly end: number
  /** Sent on a connection that ended before its ACK: the next send is a resend. */
  resend = false
  constructor(entry: Entry, start: number, end: number) {
    this.entry = entry
    this.start = start
    this.end = end
  }
}

/** Why a connection ended. */
interface End {
  /** Reconnect (`true`) or stop. */
  readonly retry: boolean
  /** The protocol error, when there is one (an ERROR frame, or a close code of the protocol). */
  readonly error: ProtocolError | undefined
  readonly description: string
  /** A good session: the backoff starts over. */
  readonly good: boolean
}

type ConnState = "opening" | "hello" | "open" | "draining" | "ending" | "ended"

const messageOf = (u: unknown): string => (u instanceof Error ? u.message : String(u))

/** The BATCH frame of a part, with its seq: the batch's own frame, or a slice of it (same ids). */
const frameOf = (part: Part, seq: number): Protocol.BatchFrame => {
  const entry = part.entry
  const batch = entry.batch
  entry.frame ??= Protocol.fromBatch(seq, batch)
  const whole = entry.frame
  const { start, end } = part
  if (start === 0 && end === batch.size) return { ...whole, seq }
  const events = whole.events
  if (events._tag === "Rows") return { ...whole, seq, events: { _tag: "Rows", rows: events.rows.slice(start, end) } }
  const shared = {
    node: events.node,
    firstSeq: (events.firstSeq + start) % TWO_POW_40,
    timeBase: events.timeBase,
    offsets: events.offsets.slice(start, end),
    parents: events.parents?.slice(start, end)
  }
  return {
    ...whole,
    seq,
    events:
      events._tag === "Columns"
        ? { _tag: "Columns", ...shared, data: events.data.slice(start, end) }
        : { _tag: "Fields", ...shared, names: events.names, columns: events.columns.map((c) => c.slice(start, end)) }
  }
}

/** The code of a close without an ERROR frame: its reason if that is the code, else the first code with that close code. */
const codeOfClose = (closeCode: number, reason: string): Protocol.Code | undefined => {
  if (Protocol.isCode(reason) && Protocol.codes[reason].closeCode === closeCode) return reason
  for (const code of Object.keys(Protocol.codes) as Array<Protocol.Code>) {
    if (Protocol.codes[code].closeCode === closeCode) return code
  }
  return undefined
}

class Client {
  readonly url: string
  readonly hello: Uint8Array
  readonly windowOption: number
  readonly heartbeatOption: number
  readonly connectTimeoutMs: number
  readonly clock: Clock.Clock
  status: Status = "connecting"
  /** Frames waiting to be sent, in order (resends first). */
  readonly queue: Array<Part> = []
  /** Every entry not settled. */
  readonly entries = new Set<Entry>()
  conn: Conn | undefined = undefined
  /** Set once the transport stops for good: every later batch fails with it. */
  failure: ProcessError | undefined = undefined
  /** `close` began: new batches are refused. */
  refusing = false
  /** Do not reconnect (closing). */
  stopping = false
  readonly idleWaiters: Array<() => void> = []
  sent = 0
  acked = 0
  resent = 0
  sessions = 0
  rejected = 0
  duplicates = 0
  session: string | undefined = undefined
  lastError: string | undefined = undefined

  constructor(
    url: string,
    hello: Uint8Array,
    windowOption: number,
    heartbeatOption: number,
    connectTimeoutMs: number,
    clock: Clock.Clock
  ) {
    this.url = url
    this.hello = hello
    this.windowOption = windowOption
    this.heartbeatOption = heartbeatOption
    this.connectTimeoutMs = connectTimeoutMs
    this.clock = clock
  }

  now(): number {
    return this.clock.currentTimeMillisUnsafe()
  }

  // ---- batches -----------------------------------------------------------------------

  readonly process = (batch: Batch): Effect.Effect<void, ProcessError> => {
    if (this.failure !== undefined) return Effect.fail(this.failure)
    if (this.refusing) return Effect.fail(new TransportClosed({ url: this.url }))
    if (batch.size === 0) return Effect.void
    return Effect.callback<void, ProcessError>((resume) => {
      if (this.failure !== undefined) return resume(Effect.fail(this.failure))
      const entry = new Entry(batch, resume)
      this.entries.add(entry)
      this.queue.push(new Part(entry, 0, batch.size))
      this.pump()
      return Effect.sync(() => this.cancel(entry))
    })
  }

  /** An interrupted `process`: its frames not sent are dropped, those in flight will not be resent. */
  cancel(entry: Entry): void {
    if (entry.done) return
    entry.done = true
    this.entries.delete(entry)
    const queue = this.queue
    let j = 0
    for (let i = 0; i < queue.length; i++) {
      const part = queue[i]!
      if (part.entry !== entry) queue[j++] = part
    }
    queue.length = j
    this.checkIdle()
  }

  /** Sends what the window, the pacing and the state allow. */
  pump(): void {
    const conn = this.conn
    if (conn === undefined || conn.state !== "open") return
    const limits = conn.limits!
    const queue = this.queue
    while (queue.length > 0 && conn.inflight.size < conn.window) {
      const part = queue[0]!
      const n = part.end - part.start
      if (n > limits.maxBatchEvents) {
        this.splitFront(part, part.start + limits.maxBatchEvents)
        continue
      }
      if (!conn.hasTokens(n)) return
      const seq = conn.nextSeq
      let bytes: Uint8Array
      try {
        bytes = Protocol.encodeFrame(frameOf(part, seq))
      } catch (error) {
        // some event's data cannot be encoded: narrow it down to that event, refuse it
        if (n > 1) this.splitFront(part, part.start + (n >> 1))
        else this.refuseLocally(part, "unencodable", messageOf(error))
        continue
      }
      if (bytes.byteLength > limits.maxFrameBytes) {
        if (n > 1) this.splitFront(part, part.start + (n >> 1))
        else {
          const id = part.entry.batch.id(part.start)
          this.refuseLocally(
            part,
            "frame_too_large",
            `event ${id} alone makes a frame of ${bytes.byteLength} bytes, more than the server's limit of ${limits.maxFrameBytes}`
          )
        }
        continue
      }
      queue.shift()
      conn.spend(n)
      conn.nextSeq = seq + 1
      conn.inflight.set(seq, part)
      this.sent++
      if (part.resend) this.resent++
      conn.send(bytes)
    }
  }

  /** Splits the first part of the queue at `at`: `[start, at)` goes first. */
  splitFront(part: Part, at: number): void {
    const head = new Part(part.entry, part.start, at)
    head.resend = part.resend
    part.start = at
    part.entry.open++
    this.queue.unshift(head)
  }

  /** The first part of the queue (one event) cannot be sent: refused, not sent. */
  refuseLocally(part: Part, code: string, reason: string): void {
    this.queue.shift()
    const entry = part.entry
    entry.refusals ??= []
    for (let i = part.start; i < part.end; i++) entry.refusals.push({ index: i, code, reason })
    this.partDone(part)
  }

  partDone(part: Part): void {
    const entry = part.entry
    if (entry.done) return
    if (--entry.open === 0) this.complete(entry)
  }

  /** Every part acked: refuse the events the server did not take, then succeed. */
  complete(entry: Entry): void {
    entry.done = true
    this.entries.delete(entry)
    const refusals = entry.refusals
    if (refusals !== undefined) {
      refusals.sort((a, b) => a.index - b.index)
      for (const r of refusals) entry.batch.reject(r.index, r.code, r.reason)
      this.rejected += refusals.length
    }
    entry.resume(Effect.void)
    this.checkIdle()
  }

  onAck(conn: Conn, frame: Protocol.AckFrame): void {
    const part = conn.inflight.get(frame.seq)
    if (part === undefined) {
      conn.abort(Protocol.failure("unexpected_frame", `ACK for BATCH ${frame.seq}, which is not in flight`, frame.seq))
      return
    }
    const outcomes = frame.outcomes
    const n = part.end - part.start
    if (outcomes !== undefined && outcomes[outcomes.length - 1]![0] >= n) {
      conn.abort(
        Protocol.failure(
          "bad_frame",
          `ACK of BATCH ${frame.seq} lists event ${outcomes[outcomes.length - 1]![0]}, the BATCH has ${n}`,
          frame.seq
        )
      )
      return
    }
    conn.inflight.delete(frame.seq)
    conn.acks++
    this.acked++
    const entry = part.entry
    if (outcomes !== undefined && !entry.done) {
      for (let i = 0; i < outcomes.length; i++) {
        const [index, code, reason] = outcomes[i]!
        if (Protocol.isAccepted(code)) {
          this.duplicates++
          continue
        }
        entry.refusals ??= []
        entry.refusals.push({ index: part.start + index, code, reason })
      }
    }
    this.partDone(part)
    this.pump()
  }

  /** Stops for good: every batch fails with `error`, and every later one. */
  fail(error: ProcessError, status: Status): void {
    this.failure ??= error
    this.status = status
    if (status === "failed") this.lastError = error.message
    const entries = [...this.entries]
    this.entries.clear()
    this.queue.length = 0
    for (const entry of entries) {
      entry.done = true
      entry.resume(Effect.fail(error))
    }
    this.checkIdle()
  }

  checkIdle(): void {
    if (this.entries.size > 0 || this.idleWaiters.length === 0) return
    const waiters = this.idleWaiters.splice(0)
    for (const w of waiters) w()
  }

  /** Resolves when no batch is outstanding. */
  readonly awaitIdle: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.entries.size === 0) return resume(Effect.void)
    const waiter = () => resume(Effect.void)
    this.idleWaiters.push(waiter)
    return Effect.sync(() => {
      const i = this.idleWaiters.indexOf(waiter)
      if (i >= 0) this.idleWaiters.splice(i, 1)
    })
  })

  // ---- connections -------------------------------------------------------------------

  /** One connection, from opening to its end. */
  readonly connection: Effect.Effect<End> = Effect.callback<End>((resume) => {
    this.status = "connecting"
    const conn = new Conn(this, (end) => resume(Effect.succeed(end)))
    this.conn = conn
    conn.open()
    return Effect.sync(() => conn.kill())
  })

  welcomed(conn: Conn, frame: Protocol.WelcomeFrame): void {
    this.sessions++
    this.session = frame.session
    if (this.conn === conn) this.status = "open"
    this.pump()
  }

  /** A connection ended: what it had in flight goes back to the front of the queue, in order. */
  ended(conn: Conn, end: End): void {
    if (this.conn === conn) this.conn = undefined
    const back: Array<Part> = []
    for (const part of conn.inflight.values()) {
      if (part.entry.done) continue
      part.resend = true
      back.push(part)
    }
    conn.inflight.clear()
    if (back.length > 0) this.queue.unshift(...back)
    if (!this.stopping) this.lastError = end.description
  }

  /** Connects, and reconnects with backoff, until stopped or told not to retry. */
  loop(backoff: Schedule.Schedule<unknown, unknown>): Effect.Effect<void> {
    const client = this
    return Effect.gen(function* () {
      let step = yield* Schedule.toStep(backoff)
      let attempts = 0
      while (true) {
        const end = yield* client.connection
        attempts++
        if (client.stopping) return
        if (!end.retry) {
          client.fail(end.error ?? Protocol.failure("internal", end.description), "failed")
          return
        }
        if (end.good) {
          step = yield* Schedule.toStep(backoff)
          attempts = 1
        }
        client.status = "waiting"
        const next = yield* Effect.exit(step(client.now(), end.error ?? end.description))
        if (Exit.isFailure(next)) {
          client.fail(new ConnectionFailed({ url: client.url, attempts, reason: end.description }), "failed")
          return
        }
        let delay = Duration.toMillis(next.value[1])
        if (end.error?.wireCode === "rate_limited") delay = Math.max(delay, 1_000)
        if (delay > 0) yield* Effect.sleep(delay)
        if (client.stopping) return
      }
    })
  }
}

/** One WebSocket connection: HELLO, WELCOME, then frames until it closes. */
class Conn {
  readonly client: Client
  readonly onEnd: (end: End) => void
  ws: WebSocket | undefined = undefined
  state: ConnState = "opening"
  limits: Protocol.WelcomeLimits | undefined = undefined
  window = 0
  heartbeatMs = 0
  idleTimeoutMs = 0
  nextSeq = 1
  /** Frames sent and not acked, by seq, in the order sent. */
  readonly inflight = new Map<number, Part>()
  acks = 0
  welcomedAt = 0
  lastSent = 0
  lastReceived = 0
  nonce = 0
  /**
   * Pacing: the rate bucket of protocol §9, refilled from `tokensAt`, holding at most
   * `capacity` tokens (see {@link bucketMargin}).
   */
  tokens = 0
  tokensAt = 0
  capacity = 0
  timer: ReturnType<typeof setTimeout> | undefined = undefined
  paceTimer: ReturnType<typeof setTimeout> | undefined = undefined
  /** Why it ends, once known (an ERROR sent or received, a timeout). */
  end: End | undefined = undefined
  /** The socket's last error (e.g. `connect ECONNREFUSED …`), for the description of a close. */
  socketError: string | undefined = undefined

  constructor(client: Client, onEnd: (end: End) => void) {
    this.client = client
    this.onEnd = onEnd
  }

  open(): void {
    const client = this.client
    let ws: WebSocket
    try {
      ws = new WebSocket(client.url, { perMessageDeflate: false })
    } catch (error) {
      this.state = "ended"
      const end = { retry: true, error: undefined, description: messageOf(error), good: false }
      client.ended(this, end)
      this.onEnd(end)
      return
    }
    this.ws = ws
    ws.on("open", () => {
      if (this.state !== "opening") return
      this.state = "hello"
      this.send(client.hello)
    })
    ws.on("message", (data, isBinary) => this.receive(isBinary ? (data as Uint8Array) : data.toString()))
    ws.on("error", (error) => {
      this.socketError = error.message
    })
    ws.on("close", (code, reason) => this.closed(code, reason.toString()))
    this.arm(client.connectTimeoutMs, () => {
      this.end = {
        retry: true,
        error: undefined,
        description: `no WELCOME within ${client.connectTimeoutMs} ms`,
        good: false
      }
      this.cut()
    })
  }

  arm(ms: number, f: () => void): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = setTimeout(f, Math.max(1, ms))
    this.timer.unref()
  }

  send(bytes: Uint8Array): void {
    this.lastSent = this.client.now()
    this.ws!.send(bytes)
  }

  receive(data: Uint8Array | string): void {
    if (this.state === "ended") return
    this.lastReceived = this.client.now()
    let frame: Protocol.Frame
    try {
      frame = Protocol.decodeFrame(data, this.limits ?? helloLimits)
    } catch (error) {
      this.abort(error instanceof ProtocolError ? error : Protocol.failure("bad_msgpack", messageOf(error)))
      return
    }
    switch (frame._tag) {
      case "Ack":
        if (this.state === "open" || this.state === "draining") this.client.onAck(this, frame)
        else if (this.state !== "ending") this.abort(Protocol.failure("unexpected_frame", "an ACK before WELCOME"))
        return
      case "Welcome":
        if (this.state === "hello") this.welcome(frame)
        else this.abort(Protocol.failure("unexpected_frame", "a second WELCOME"))
        return
      case "Ping":
        if (this.state !== "ending") this.send(Protocol.encodeFrame({ _tag: "Pong", nonce: frame.nonce }))
        return
      case "Pong":
        return
      case "Drain":
        if (this.state === "open") {
          this.state = "draining"
          if (this.client.conn === this) this.client.status = "draining"
        }
        return
      case "Error":
        this.received(Protocol.fromErrorFrame(frame))
        return
      default:
        this.abort(Protocol.failure("unexpected_frame", `a server does not send ${frame._tag.toUpperCase()}`))
    }
  }

  welcome(frame: Protocol.WelcomeFrame): void {
    const client = this.client
    const limits = frame.limits
    const now = client.now()
    this.limits = limits
    this.window = Math.min(client.windowOption, limits.maxInFlight)
    this.heartbeatMs = Math.min(client.heartbeatOption, limits.heartbeatMs)
    this.idleTimeoutMs = limits.idleTimeoutMs
    this.capacity = Math.max(
      Math.min(limits.maxBatchEvents, limits.maxEventsPerSecond),
      Math.floor(limits.maxEventsPerSecond * (1 - bucketMargin))
    )
    this.tokens = this.capacity
    this.tokensAt = now
    this.welcomedAt = now
    this.state = "open"
    this.heartbeat()
    client.welcomed(this, frame)
  }

  /** PING when nothing was sent for `heartbeatMs`; give up when nothing was received for `idleTimeoutMs`. */
  heartbeat(): void {
    const now = this.client.now()
    if (now - this.lastReceived >= this.idleTimeoutMs) {
      this.abort(Protocol.failure("idle_timeout", `nothing received for ${this.idleTimeoutMs} ms`))
      return
    }
    if (now - this.lastSent >= this.heartbeatMs) {
      this.nonce = (this.nonce + 1) % (Protocol.maxNonce + 1)
      this.send(Protocol.encodeFrame({ _tag: "Ping", nonce: this.nonce }))
    }
    const due = Math.min(this.lastSent + this.heartbeatMs, this.lastReceived + this.idleTimeoutMs)
    this.arm(due - this.client.now(), this.onHeartbeat)
  }

  readonly onHeartbeat = (): void => {
    this.timer = undefined
    if (this.state === "open" || this.state === "draining") this.heartbeat()
  }

  /** Whether the rate bucket holds `n` tokens; if not, pumps again when it will. */
  hasTokens(n: number): boolean {
    const rate = this.limits!.maxEventsPerSecond
    const now = this.client.now()
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.tokensAt) * rate) / 1_000)
    this.tokensAt = now
    if (this.tokens >= n) return true
    if (this.paceTimer === undefined) {
      this.paceTimer = setTimeout(
        () => {
          this.paceTimer = undefined
          this.client.pump()
        },
        Math.max(1, Math.ceil(((n - this.tokens) * 1_000) / rate))
      )
      this.paceTimer.unref()
    }
    return false
  }

  spend(n: number): void {
    this.tokens -= n
  }

  /** We found a protocol error: ERROR to the server, then close with its close code. */
  abort(error: ProtocolError): void {
    if (this.state === "ending" || this.state === "ended") return
    this.end = {
      retry: Protocol.codeInfo(error.wireCode).retry,
      error,
      description: error.message,
      good: this.isGood()
    }
    this.state = "ending"
    const ws = this.ws!
    if (ws.readyState === WebSocket.OPEN) {
      this.send(Protocol.encodeFrame(Protocol.errorFrame(error)))
      ws.close(error.closeCode, error.wireCode)
    }
    this.arm(closeGraceMs, () => this.cut())
  }

  /** The server sent ERROR: it closes next; nothing more is sent. */
  received(error: ProtocolError): void {
    if (this.state === "ending" || this.state === "ended") return
    this.end = {
      retry: Protocol.codeInfo(error.wireCode).retry,
      error,
      description: `the server sent ${error.message}`,
      good: this.isGood()
    }
    this.state = "ending"
    this.arm(closeGraceMs, () => this.cut())
  }

  /** Closes with 1000 (the transport is closing). */
  closeNormally(): void {
    if (this.state === "ending" || this.state === "ended") return
    this.state = "ending"
    const ws = this.ws
    if (ws === undefined) return
    if (ws.readyState === WebSocket.OPEN) ws.close(1000, "closing")
    else ws.terminate()
    this.arm(closeGraceMs, () => this.cut())
  }

  isGood(): boolean {
    return this.welcomedAt > 0 && (this.acks > 0 || this.client.now() - this.welcomedAt >= goodSessionMs)
  }

  /** Drops the connection at once. */
  cut(): void {
    this.ws?.terminate()
  }

  /** The fiber waiting for this connection was interrupted. */
  kill(): void {
    if (this.state === "ended") return
    this.cut()
    this.closed(1006, "")
  }

  closed(code: number, reason: string): void {
    if (this.state === "ended") return
    this.state = "ended"
    if (this.timer !== undefined) clearTimeout(this.timer)
    if (this.paceTimer !== undefined) clearTimeout(this.paceTimer)
    this.timer = undefined
    this.paceTimer = undefined
    const end = this.end ?? this.endOfClose(code, reason)
    this.client.ended(this, end)
    this.onEnd(end)
  }

  /** Why a close without an ERROR frame ended the connection (protocol §8). */
  endOfClose(code: number, reason: string): End {
    const good = this.isGood()
    const why = reason === "" ? `${code}` : `${code} ${reason}`
    if (noRetryCloseCodes.has(code)) {
      const wire = codeOfClose(code, reason) ?? "bad_frame"
      const error = Protocol.failure(wire, `the server closed the connection with ${why}`)
      return { retry: false, error, description: error.message, good }
    }
    const known = Protocol.isCode(reason) && Protocol.codes[reason].closeCode === code ? reason : undefined
    const description =
      this.socketError !== undefined && code === 1006
        ? `connection lost: ${this.socketError}`
        : `the connection closed with ${why}`
    const error = known === undefined ? undefined : Protocol.failure(known, description)
    return { retry: true, error, description, good }
  }
}

// ---------------------------------------------------------------------------------------
// Constructor
// ---------------------------------------------------------------------------------------

const invalid = (reason: string) => new InvalidOptions({ subject: "Transport", reason })

const isPositiveInt = (n: number): boolean => Number.isSafeInteger(n) && n > 0

const check = (options: Options): InvalidOptions | undefined => {
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    return invalid(`url must be a ws:// or wss:// URL, got ${JSON.stringify(options.url)}`)
  }
  if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    return invalid(`url must be a ws:// or wss:// URL, got ${JSON.stringify(options.url)}`)
  }
  if (typeof options.harness !== "string" || options.harness.length === 0) {
    return invalid("harness must be a non-empty string")
  }
  if (typeof options.token !== "string") return invalid("token must be a string")
  if (options.window !== undefined && !isPositiveInt(options.window)) {
    return invalid("window must be a positive integer")
  }
  if (options.connectTimeoutMs !== undefined && !(options.connectTimeoutMs > 0)) {
    return invalid("connectTimeoutMs must be > 0")
  }
  if (options.heartbeatMs !== undefined && !(options.heartbeatMs > 0)) return invalid("heartbeatMs must be > 0")
  if (options.closeTimeoutMs !== undefined && !(options.closeTimeoutMs >= 0)) {
    return invalid("closeTimeoutMs must be >= 0")
  }
  for (const [k, v] of Object.entries(options.client ?? {})) {
    if (typeof v !== "string") return invalid(`client entry ${JSON.stringify(k)} must be a string`)
  }
  return undefined
}

/**
 * Makes a transport in the current scope and starts connecting (in the background:
 * batches given to `process` before WELCOME wait in the queue). Closing the scope
 * runs `close`. Fails with {@link InvalidOptions} for a URL that is not `ws://` or
 * `wss://`, an empty harness id, or a limit that is not positive.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Trail, Transport } from "cairn"
 *
 * const program = Effect.gen(function* () {
 *   const transport = yield* Transport.make({ url: "ws://127.0.0.1:7070/ingest", harness: "trainer-7", token })
 *   const trail = yield* Trail.make({ source: "trainer-7", process: transport.process, concurrency: 8 })
 *   trail.logUnsafe(StepFinished, { step: 1 })
 *   yield* trail.flush // acked by the gateway
 * })
 * ```
 *
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Transport, InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const problem = check(options)
    if (problem !== undefined) return yield* Effect.fail(problem)
    const clock = yield* Clock.Clock
    const hello = Protocol.encodeFrame({
      _tag: "Hello",
      version: Protocol.version,
      harness: options.harness,
      token: options.token,
      client: { ...clientInfo, ...options.client }
    }).slice()
    const client = new Client(
      options.url,
      hello,
      options.window ?? defaults.window,
      options.heartbeatMs ?? Number.POSITIVE_INFINITY,
      options.connectTimeoutMs ?? defaults.connectTimeoutMs,
      clock
    )
    const closeTimeoutMs = options.closeTimeoutMs ?? defaults.closeTimeoutMs
    const fiber = yield* Effect.forkScoped(client.loop(options.backoff ?? defaults.backoff))
    const done = yield* Deferred.make<void>()
    let closing = false
    const close: Effect.Effect<void> = Effect.suspend(() => {
      if (closing) return Deferred.await(done)
      closing = true
      client.refusing = true
      return Effect.gen(function* () {
        if (client.failure === undefined) yield* Effect.timeoutOption(client.awaitIdle, closeTimeoutMs)
        client.stopping = true
        client.fail(new TransportClosed({ url: client.url }), client.status === "failed" ? "failed" : "closed")
        const conn = client.conn
        if (conn !== undefined) {
          // the loop ends once the server has answered the close
          conn.closeNormally()
          yield* Effect.timeoutOption(Fiber.await(fiber), closeGraceMs + 500)
        }
        yield* Fiber.interrupt(fiber)
        yield* Deferred.succeed(done, undefined)
      }).pipe(Effect.uninterruptible)
    })
    yield* Effect.addFinalizer(() => close)
    const stats = (): Stats => ({
      status: client.status,
      sent: client.sent,
      acked: client.acked,
      resent: client.resent,
      reconnects: Math.max(0, client.sessions - 1),
      inFlight: client.conn?.inflight.size ?? 0,
      pending: client.queue.length,
      rejected: client.rejected,
      duplicates: client.duplicates,
      session: client.session,
      lastError: client.lastError
    })
    return {
      process: client.process as Processor,
      status: () => client.status,
      stats,
      close
    } satisfies Transport
  })
