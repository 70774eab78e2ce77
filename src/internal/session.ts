/**
 * One gateway session: a WebSocket connection speaking the wire protocol
 * (`docs/protocol.md`), from its HELLO to its close.
 *
 * The lifecycle (hello → authenticated → streaming → draining → closed) is an xstate
 * machine ({@link lifecycle}) whose snapshot the session owns; it advances with xstate's
 * pure `transition` only at those few points, never per batch. Everything else is the
 * batch path, kept flat: each frame is decoded once, checked against the session's
 * rules (sequence, window, rate bucket) and handed to the ingest; per type key one
 * batch is ingested at a time, in seq order (different keys run concurrently), and
 * its ACK goes out when its ingest resolves. When the window is full the session stops
 * reading its socket until an ACK frees a slot: a slow service shows as late ACKs and
 * TCP backpressure, never as unbounded buffering.
 *
 * Every failure ends in {@link Session.fail}: an ERROR frame with its code, then a close
 * with the code's close code. Nothing a session does can throw into the server.
 *
 * @internal
 */
import { createHash, timingSafeEqual } from "node:crypto"
import { Cause, type Effect, type Exit } from "effect"
import type { WebSocket } from "ws"
import { initialTransition, type SnapshotFrom, setup, transition } from "xstate"
import { ProtocolError, TrailClosed } from "../Errors.ts"
import type { Ingest } from "../Ingest.ts"
import * as Protocol from "../Protocol.ts"

// ---------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------

/** A session's lifecycle state. */
export type State = "hello" | "authenticated" | "streaming" | "draining" | "closed"

/** The events of the lifecycle machine. */
export type LifecycleEvent =
  | { readonly type: "authenticated" }
  | { readonly type: "welcomed" }
  | { readonly type: "drain" }
  | { readonly type: "closed" }

/**
 * The session lifecycle as an xstate machine: a HELLO with a valid token authenticates,
 * the WELCOME starts streaming, a shutdown drains, and any error or close ends it.
 */
export const lifecycle = setup({
  types: { events: {} as LifecycleEvent }
}).createMachine({
  id: "cairn.gateway.session",
  initial: "hello",
  states: {
    hello: { on: { authenticated: "authenticated", closed: "closed" } },
    authenticated: { on: { welcomed: "streaming", closed: "closed" } },
    streaming: { on: { drain: "draining", closed: "closed" } },
    draining: { on: { closed: "closed" } },
    closed: { type: "final" }
  }
})

type Snapshot = SnapshotFrom<typeof lifecycle>

/** Every session starts from the same (immutable) snapshot. */
const initial: Snapshot = initialTransition(lifecycle)[0]

// ---------------------------------------------------------------------------------------
// What a session needs from its gateway
// ---------------------------------------------------------------------------------------

/** Counters of a gateway, updated in place by its sessions (plain numbers: cheap). */
export interface Counters {
  sessionsTotal: number
  framesReceived: number
  bytesReceived: number
  framesSent: number
  batches: number
  acked: number
  events: number
  accepted: number
  duplicate: number
  invalid: number
  unknownType: number
  rejected: number
  inFlight: number
  paused: number
  peerErrors: number
  readonly errors: Record<Protocol.Code, number>
}

/** Fresh counters. */
export const makeCounters = (): Counters => {
  const errors = {} as Record<Protocol.Code, number>
  for (const code of Object.keys(Protocol.codes) as Array<Protocol.Code>) errors[code] = 0
  return {
    sessionsTotal: 0,
    framesReceived: 0,
    bytesReceived: 0,
    framesSent: 0,
    batches: 0,
    acked: 0,
    events: 0,
    accepted: 0,
    duplicate: 0,
    invalid: 0,
    unknownType: 0,
    rejected: 0,
    inFlight: 0,
    paused: 0,
    peerErrors: 0,
    errors
  }
}

/**
 * Counters of one harness id, over all its sessions (the series of
 * `cairn_gateway_harness_*`): per harness rather than per session, since session ids
 * are new on every connection and their series would never go away.
 */
export interface Tally {
  /** Its sessions past HELLO and not yet closed. */
  sessions: number
  batches: number
  acked: number
  events: number
  accepted: number
  duplicate: number
  /** Events refused in ACKs (invalid, unknown type, rejected). */
  refused: number
}

/** A log level the host writes at. */
export type Level = "Debug" | "Info" | "Warning" | "Error"

/** The gateway, as its sessions see it. */
export interface Host {
  readonly limits: Protocol.Limits
  readonly ingest: Ingest
  readonly counters: Counters
  /** Milliseconds, from the gateway's Clock. */
  readonly now: () => number
  /** Whether `token` is the token of `harness` now. */
  readonly authenticate: (harness: string, token: string) => boolean
  /** Runs an Effect in the gateway's context, calling `onExit` with its exit (maybe at once). */
  readonly run: <A, E>(effect: Effect.Effect<A, E>, onExit: (exit: Exit.Exit<A, E>) => void) => void
  readonly log: (
    level: Level,
    message: string,
    annotations: Record<string, unknown>,
    cause?: Cause.Cause<unknown>
  ) => void
  /** Milliseconds from receiving a BATCH to sending its ACK. */
  readonly observeAck: (ms: number) => void
  /** The counters of a harness id (made on its first authenticated session). */
  readonly tallyOf: (harness: string) => Tally
  /** The session reached `closed` (its socket may still be closing). */
  readonly ended: (session: Session) => void
  /** The session's socket closed: forget it. */
  readonly removed: (session: Session) => void
}

/** What `gateway.sessions()` reports of one session. */
export interface Info {
  readonly id: string
  /** The harness id of its HELLO; `undefined` before. */
  readonly harness: string | undefined
  /** Who the client said it is (HELLO's `client` map); `undefined` before HELLO. */
  readonly client: Readonly<Record<string, string>> | undefined
  readonly remote: string | undefined
  readonly state: State
  /** BATCHes received. */
  readonly batches: number
  /** BATCHes acked. */
  readonly acked: number
  /** Events received in BATCHes. */
  readonly events: number
  /** BATCHes received and not yet acked. */
  readonly inFlight: number
  /** Whether reading is paused because the window is full. */
  readonly paused: boolean
  /** When the connection opened, milliseconds since the epoch. */
  readonly openedAt: number
}

// ---------------------------------------------------------------------------------------
// Session
// ---------------------------------------------------------------------------------------

const names: Record<Protocol.Frame["_tag"], string> = {
  Hello: "HELLO",
  Welcome: "WELCOME",
  Batch: "BATCH",
  Ack: "ACK",
  Error: "ERROR",
  Ping: "PING",
  Pong: "PONG",
  Drain: "DRAIN"
}

/** A BATCH waiting for, or in, its ingest. */
interface Pending {
  readonly frame: Protocol.BatchFrame
  readonly receivedAt: number
}

/** The batches of one type key: ingested one at a time, in seq order. */
interface Lane {
  readonly key: string
  busy: boolean
  readonly queue: Array<Pending>
}

/** Idle lanes kept per session; past this, idle ones are let go (a client cycling through keys). */
const maxIdleLanes = 64

const OPEN = 1

/** A string for a message: at most `max` characters. */
const cut = (s: string, max = 100): string => (s.length > max ? `${s.slice(0, max)}…` : s)

const digest = (s: string): Buffer => createHash("sha256").update(s).digest()

/** Compares two secrets in time independent of where they differ. */
export const sameSecret = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b))

const textFrame = (): ProtocolError => Protocol.failure("text_frame", "a text frame was received; frames are binary")

/**
 * One connection's session (see the module doc).
 */
export class Session {
  readonly id: string
  readonly openedAt: number
  readonly remote: string | undefined
  state: State = "hello"
  harness: string | undefined
  token: string | undefined
  client: Readonly<Record<string, string>> | undefined
  batches = 0
  acked = 0
  events = 0
  inFlight = 0
  paused = false
  private snapshot: Snapshot = initial
  private readonly ws: WebSocket
  private readonly host: Host
  private readonly limits: Protocol.Limits
  private readonly openedMs: number
  private lastSeq = 0
  /** The rate bucket: tokens left, and when they were counted. */
  private tokens = 0
  private countedAt = 0
  private lastReceived: number
  private lastSent: number
  private nonce = 0
  private readonly lanes = new Map<string, Lane>()
  private removedFromHost = false
  /** Its harness's counters, once authenticated. */
  private tally: Tally | undefined

  constructor(ws: WebSocket, host: Host, id: string, remote: string | undefined) {
    this.ws = ws
    this.host = host
    this.limits = host.limits
    this.id = id
    this.remote = remote
    const now = host.now()
    this.openedAt = now
    this.openedMs = now
    this.lastReceived = now
    this.lastSent = now
    ws.on("message", this.onMessage)
    ws.on("close", this.onClose)
    ws.on("error", this.onError)
  }

  /** What `gateway.sessions()` shows. */
  info(): Info {
    return {
      id: this.id,
      harness: this.harness,
      client: this.client,
      remote: this.remote,
      state: this.state,
      batches: this.batches,
      acked: this.acked,
      events: this.events,
      inFlight: this.inFlight,
      paused: this.paused,
      openedAt: this.openedAt
    }
  }

  // -------------------------------------------------------------------------------------
  // Receiving
  // -------------------------------------------------------------------------------------

  private readonly onMessage = (data: unknown, isBinary: boolean): void => {
    if (this.state === "closed") return
    try {
      this.receive(data, isBinary)
    } catch (error) {
      this.crash(error)
    }
  }

  private receive(data: unknown, isBinary: boolean): void {
    const host = this.host
    const counters = host.counters
    const now = host.now()
    this.lastReceived = now
    counters.framesReceived++
    if (!isBinary) {
      this.fail(textFrame())
      return
    }
    const bytes = data as Uint8Array
    counters.bytesReceived += bytes.byteLength
    let frame: Protocol.Frame
    try {
      frame = Protocol.decodeFrame(bytes, this.limits)
    } catch (error) {
      if (!(error instanceof ProtocolError)) throw error
      this.fail(error)
      return
    }
    if (this.state === "hello") this.hello(frame, now)
    else this.frame(frame, now)
  }

  /** A frame after the HELLO. */
  private frame(frame: Protocol.Frame, now: number): void {
    switch (frame._tag) {
      case "Batch":
        this.batch(frame, now)
        break
      case "Ping":
        this.send(Protocol.encodeFrame({ _tag: "Pong", nonce: frame.nonce }), now)
        break
      case "Pong":
        // nothing to do: any frame received resets the idle clock
        break
      case "Error":
        this.peerError(frame)
        break
      case "Hello":
        this.fail(Protocol.failure("unexpected_frame", "a second HELLO on one connection"))
        break
      default:
        this.fail(Protocol.failure("unexpected_frame", `a client does not send ${names[frame._tag]}`))
    }
  }

  private hello(frame: Protocol.Frame, now: number): void {
    if (frame._tag !== "Hello") {
      const name = names[frame._tag]
      this.fail(Protocol.failure("hello_expected", `the first frame must be a HELLO, got ${article(name)} ${name}`))
      return
    }
    if (!this.host.authenticate(frame.harness, frame.token)) {
      this.fail(Protocol.failure("unauthorized", `no valid token for harness ${cut(frame.harness)}`))
      return
    }
    this.harness = frame.harness
    this.token = frame.token
    this.tally = this.host.tallyOf(frame.harness)
    this.tally.sessions++
    this.client = frame.client
    this.to({ type: "authenticated" })
    this.tokens = this.limits.maxEventsPerSecond
    this.countedAt = now
    this.send(
      Protocol.encodeFrame({
        _tag: "Welcome",
        version: frame.version,
        session: this.id,
        limits: Protocol.welcomeLimits(this.limits)
      }),
      now
    )
    this.to({ type: "welcomed" })
    this.host.log("Debug", "session opened", this.annotations())
  }

  /** The session's rules for a BATCH (sequence, window, rate), then its ingest. */
  private batch(frame: Protocol.BatchFrame, now: number): void {
    const limits = this.limits
    const seq = frame.seq
    const expected = this.lastSeq + 1
    if (seq !== expected) {
      const after = this.lastSeq === 0 ? "as the first BATCH" : `after BATCH ${this.lastSeq}`
      this.fail(Protocol.failure("sequence", `BATCH ${seq} ${after}, expected ${expected}`, seq))
      return
    }
    if (this.inFlight >= limits.maxInFlight) {
      const detail = `BATCH ${seq} sent with ${this.inFlight} batches unacked, at most ${limits.maxInFlight}`
      this.fail(Protocol.failure("window_exceeded", detail, seq))
      return
    }
    const n = Protocol.eventCount(frame)
    const rate = limits.maxEventsPerSecond
    if (now > this.countedAt) {
      this.tokens = Math.min(rate, this.tokens + ((now - this.countedAt) * rate) / 1000)
      this.countedAt = now
    }
    if (this.tokens < n) {
      const left = Math.floor(this.tokens)
      const detail = `a BATCH of ${n} events is over the limit of ${rate} events per second (${left} left)`
      this.fail(Protocol.failure("rate_limited", detail, seq))
      return
    }
    this.tokens -= n
    this.lastSeq = seq
    this.batches++
    this.events += n
    const tally = this.tally!
    tally.batches++
    tally.events += n
    this.inFlight++
    const counters = this.host.counters
    counters.batches++
    counters.events += n
    counters.inFlight++
    if (this.inFlight >= limits.maxInFlight) this.pause()
    let lane = this.lanes.get(frame.key)
    if (lane === undefined) {
      lane = { key: frame.key, busy: false, queue: [] }
      this.lanes.set(frame.key, lane)
    }
    const pending: Pending = { frame, receivedAt: now }
    if (lane.busy) lane.queue.push(pending)
    else this.start(lane, pending)
  }

  /** Ingests a batch; its ACK is sent when the ingest resolves (at once, often). */
  private start(lane: Lane, pending: Pending): void {
    lane.busy = true
    this.host.run(this.host.ingest.batch(this.harness!, pending.frame), (exit) => this.done(lane, pending, exit))
  }

  private done(lane: Lane, pending: Pending, exit: Exit.Exit<ReadonlyArray<Protocol.Outcome>, unknown>): void {
    this.inFlight--
    this.host.counters.inFlight--
    if (this.state === "closed") {
      // unacked, so not accepted as far as the client knows
      lane.busy = false
      return
    }
    try {
      if (exit._tag === "Failure") {
        this.ingestFailed(pending.frame.seq, exit.cause)
        return
      }
      this.ack(pending, exit.value)
      if (this.paused && this.inFlight < this.limits.maxInFlight) this.resume()
      const next = lane.queue.shift()
      if (next !== undefined) this.start(lane, next)
      else {
        lane.busy = false
        if (this.lanes.size > maxIdleLanes) this.lanes.delete(lane.key)
      }
      if (this.state === "draining" && this.inFlight === 0) this.goAway()
    } catch (error) {
      this.crash(error)
    }
  }

  private ack(pending: Pending, outcomes: ReadonlyArray<Protocol.Outcome>): void {
    const frame = pending.frame
    const counters = this.host.counters
    const n = Protocol.eventCount(frame)
    counters.accepted += n - outcomes.length
    for (let i = 0; i < outcomes.length; i++) {
      switch (outcomes[i]![1]) {
        case "duplicate":
          counters.duplicate++
          break
        case "invalid":
          counters.invalid++
          break
        case "unknown_type":
          counters.unknownType++
          break
        default:
          counters.rejected++
      }
    }
    const now = this.host.now()
    this.send(ackFrame(frame.seq, outcomes, this.limits.maxFrameBytes), now)
    this.acked++
    const tally = this.tally!
    tally.acked++
    tally.accepted += n - outcomes.length
    for (let i = 0; i < outcomes.length; i++) {
      if (outcomes[i]![1] === "duplicate") tally.duplicate++
      else tally.refused++
    }
    counters.acked++
    this.host.observeAck(now - pending.receivedAt)
  }

  private ingestFailed(seq: number, cause: Cause.Cause<unknown>): void {
    const error = Cause.findErrorOption(cause)
    if (error._tag === "Some" && error.value instanceof TrailClosed) {
      this.fail(Protocol.failure("going_away", "the service is shutting down"))
      return
    }
    const squashed = Cause.squash(cause)
    const reason = squashed instanceof Error ? squashed.message : String(squashed)
    this.host.log("Error", `BATCH ${seq} could not be accepted`, this.annotations(), cause)
    this.fail(Protocol.failure("internal", `BATCH ${seq} could not be accepted: ${cut(reason, 200)}`, seq))
  }

  private peerError(frame: Protocol.ErrorFrame): void {
    this.host.counters.peerErrors++
    const peerCode = cut(frame.code, 40)
    this.host.log("Warning", `the client sent ERROR ${peerCode}: ${cut(frame.message, 200)}`, {
      ...this.annotations(),
      code: peerCode
    })
    const code = Protocol.isCode(frame.code) ? frame.code : "internal"
    this.close(Protocol.codes[code].closeCode, code)
  }

  // -------------------------------------------------------------------------------------
  // Sending, pausing, closing
  // -------------------------------------------------------------------------------------

  private send(bytes: Uint8Array, now: number): void {
    const ws = this.ws
    if (ws.readyState !== OPEN) return
    this.lastSent = now
    this.host.counters.framesSent++
    ws.send(bytes)
  }

  private pause(): void {
    if (this.paused) return
    this.paused = true
    this.host.counters.paused++
    this.ws.pause()
  }

  private resume(): void {
    if (!this.paused) return
    this.paused = false
    this.host.counters.paused--
    // the time spent paused is not idle time
    this.lastReceived = this.host.now()
    this.ws.resume()
  }

  private to(event: LifecycleEvent): void {
    this.snapshot = transition(lifecycle, this.snapshot, event)[0]
    this.state = this.snapshot.value as State
  }

  /**
   * Ends the session for `error`: an ERROR frame, then a close with its close code
   * and the code as the reason. Unacked batches stay unacked.
   */
  fail(error: ProtocolError): void {
    if (this.state === "closed") return
    const code = error.wireCode as Protocol.Code
    if (Object.hasOwn(this.host.counters.errors, code)) this.host.counters.errors[code]++
    const level: Level =
      code === "going_away" || code === "idle_timeout" || code === "hello_timeout" ? "Debug" : "Warning"
    this.host.log(level, `session closed with ${code}: ${error.detail}`, { ...this.annotations(), code })
    this.send(errorBytes(error, this.limits.maxFrameBytes), this.host.now())
    this.close(error.closeCode, code)
  }

  /** Ends the session without sending anything more than the close. */
  private close(closeCode: number, reason: string): void {
    if (this.state === "closed") return
    this.to({ type: "closed" })
    this.dropQueued()
    // the close handshake needs the socket read
    this.resume()
    try {
      this.ws.close(closeCode, reason)
    } catch {
      this.ws.terminate()
    }
    this.host.ended(this)
  }

  /** Forgets the batches not yet started: they stay unacked. */
  private dropQueued(): void {
    for (const lane of this.lanes.values()) {
      const n = lane.queue.length
      if (n === 0) continue
      lane.queue.length = 0
      this.inFlight -= n
      this.host.counters.inFlight -= n
    }
  }

  /** A bug on our side: log it, tell the client `internal`, never throw. */
  private crash(error: unknown): void {
    this.host.log("Error", "session failed unexpectedly", this.annotations(), Cause.die(error))
    try {
      this.fail(Protocol.failure("internal", "the server failed unexpectedly"))
    } catch {
      this.ws.terminate()
    }
  }

  private readonly onClose = (code: number): void => {
    if (this.state !== "closed") {
      this.host.log("Debug", `the client closed the connection (${code})`, this.annotations())
      this.to({ type: "closed" })
      this.dropQueued()
      this.host.ended(this)
    }
    if (this.paused) {
      this.paused = false
      this.host.counters.paused--
    }
    if (!this.removedFromHost) {
      this.removedFromHost = true
      if (this.tally !== undefined) this.tally.sessions--
      this.host.removed(this)
    }
  }

  private readonly onError = (error: Error): void => {
    this.host.log("Debug", `socket error: ${error.message}`, this.annotations())
  }

  private annotations(): Record<string, unknown> {
    return this.harness === undefined ? { session: this.id } : { session: this.id, harness: this.harness }
  }

  // -------------------------------------------------------------------------------------
  // Driven by the gateway
  // -------------------------------------------------------------------------------------

  /** Hello timeout, idle timeout and heartbeat, checked on the gateway's tick. */
  tick(now: number): void {
    try {
      const limits = this.limits
      if (this.state === "hello") {
        if (now - this.openedMs >= limits.helloTimeoutMs) {
          this.fail(Protocol.failure("hello_timeout", `no HELLO within ${limits.helloTimeoutMs} ms`))
        }
        return
      }
      if (this.state !== "streaming" && this.state !== "draining") return
      if (!this.paused && now - this.lastReceived >= limits.idleTimeoutMs) {
        this.fail(Protocol.failure("idle_timeout", `nothing received for ${limits.idleTimeoutMs} ms`))
        return
      }
      if (now - this.lastSent >= limits.heartbeatMs) {
        this.nonce = this.nonce === Protocol.maxNonce ? 0 : this.nonce + 1
        this.send(Protocol.encodeFrame({ _tag: "Ping", nonce: this.nonce }), now)
      }
    } catch (error) {
      this.crash(error)
    }
  }

  /** The harness's token was revoked or replaced. */
  revoke(): void {
    this.fail(Protocol.failure("token_revoked", `the token of harness ${cut(this.harness ?? "")} was revoked`))
  }

  /**
   * The gateway is shutting down: DRAIN, then `going_away` once every BATCH received
   * is acked (a session that has not said HELLO goes at once).
   */
  drain(reason: string): void {
    try {
      if (this.state === "hello" || this.state === "authenticated") this.goAway()
      if (this.state !== "streaming") return
      this.to({ type: "drain" })
      this.send(Protocol.encodeFrame({ _tag: "Drain", reason }), this.host.now())
      if (this.inFlight === 0) this.goAway()
    } catch (error) {
      this.crash(error)
    }
  }

  /** `going_away` now (at the end of a drain, or when its deadline passed). */
  goAway(): void {
    this.fail(Protocol.failure("going_away", "the server is shutting down"))
  }

  /** Drops the connection without a close handshake. */
  terminate(): void {
    this.ws.terminate()
  }
}

const article = (name: string): string => (name === "ACK" || name === "ERROR" ? "an" : "a")

// ---------------------------------------------------------------------------------------
// Frames within maxFrameBytes
// ---------------------------------------------------------------------------------------

/** Bytes of a string in UTF-8. */
const utf8Bytes = (s: string): number => Buffer.byteLength(s, "utf8")

/** A string cut to at most `bytes` bytes of UTF-8 (at a character boundary, with `…`). */
const cutBytes = (s: string, bytes: number): string => {
  if (utf8Bytes(s) <= bytes) return s
  if (bytes < 3) return ""
  let out = ""
  let used = 0
  for (const ch of s) {
    const b = utf8Bytes(ch)
    if (used + b > bytes - 3) break
    out += ch
    used += b
  }
  return `${out}…`
}

/**
 * The ACK of a batch; if it would be larger than `maxFrameBytes` (many outcomes with
 * long reasons under a small limit), its reasons are shortened until it fits.
 */
export const ackFrame = (seq: number, outcomes: ReadonlyArray<Protocol.Outcome>, maxFrameBytes: number): Uint8Array => {
  const bytes = Protocol.encodeFrame({ _tag: "Ack", seq, outcomes: outcomes.length === 0 ? undefined : outcomes })
  if (bytes.byteLength <= maxFrameBytes) return bytes
  // room per reason: what is left once every outcome has an empty reason
  const bare = outcomes.map(([i, code]) => [i, code, ""] as const)
  const floor = Protocol.encodeFrame({ _tag: "Ack", seq, outcomes: bare }).byteLength
  // a str header is at most 3 bytes (str 16: reasons are at most 512 bytes)
  const each = Math.floor((maxFrameBytes - floor) / outcomes.length) - 2
  const shorter = each <= 0 ? bare : outcomes.map(([i, code, reason]) => [i, code, cutBytes(reason, each)] as const)
  return Protocol.encodeFrame({ _tag: "Ack", seq, outcomes: shorter })
}

/** The ERROR frame of a failure, its message shortened to fit `maxFrameBytes`. */
export const errorBytes = (error: ProtocolError, maxFrameBytes: number): Uint8Array => {
  const frame = Protocol.errorFrame(error)
  const message = Protocol.truncateReason(frame.message)
  const bytes = Protocol.encodeFrame({ ...frame, message })
  if (bytes.byteLength <= maxFrameBytes) return bytes
  const over = bytes.byteLength - maxFrameBytes
  return Protocol.encodeFrame({ ...frame, message: cutBytes(message, utf8Bytes(message) - over - 2) })
}
