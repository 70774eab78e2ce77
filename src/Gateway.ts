/**
 * The gateway: the service's end of the wire. A WebSocket server (the `ws` package on
 * a Node HTTP server) that speaks the protocol of `docs/protocol.md` with harnesses,
 * one session per connection, and hands each BATCH to an {@link Ingest.Ingest}; the
 * same HTTP server answers extra routes (the HTTP views) given as an option.
 *
 * A session authenticates with its HELLO (the harness's bearer token), then streams
 * BATCHes; each is acked once its ingest resolves (validated per event, recorded
 * once per id, handed to the trail's per-type actors). Every limit of
 * {@link Protocol.Limits} is enforced with its error code and close code; a session's
 * error closes that session only, and what was acked before stays accepted. A full
 * window pauses reading from that socket until an ACK frees a slot: that is how a slow
 * service pushes back on a fast harness. At shutdown every session gets a DRAIN, its
 * batches are acked (up to `drainMs`), then ERROR `going_away` and close 1001.
 *
 * Running one, its options, limits and metrics: `docs/gateway.md`.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import type { Duplex } from "node:stream"
import { Cause, Clock, type Context, Deferred, Effect, Fiber, Metric, Option, type Scope } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import { GatewayListenFailed, InvalidOptions } from "./Errors.ts"
import type * as Ingest from "./Ingest.ts"
import {
  type Counters,
  errorBytes,
  type Host,
  type Info,
  lifecycle as sessionLifecycle,
  makeCounters,
  Session,
  sameSecret,
  type State,
  type Tally
} from "./internal/session.ts"
import { counterOf, gaugeOf, Histogram, histogramOf } from "./internal/readHooks.ts"
import * as Protocol from "./Protocol.ts"

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/**
 * An extra HTTP route: answers the request and returns `true`, or returns `false` to
 * let the next route (finally a 404) answer. It may answer asynchronously; it must not
 * throw (a throw is logged and answered 500).
 *
 * @category models
 */
export type HttpRoute = (request: IncomingMessage, response: ServerResponse) => boolean

/**
 * Options of a gateway. Every field but `ingest` has a default.
 *
 * @category models
 */
export interface Options {
  /** Where BATCHes go: validated per event, de-duplicated, recorded, handed to the trail. */
  readonly ingest: Ingest.Ingest
  /** Interface to listen on. Default `"127.0.0.1"` (loopback only: use `"0.0.0.0"` to serve a network, behind TLS). */
  readonly host?: string
  /** TCP port; `0` takes any free port (read it from `gateway.port`). Default `4600`. */
  readonly port?: number
  /** Path of the WebSocket endpoint. Default `"/v1/stream"`. */
  readonly path?: string
  /**
   * The bearer token of each harness id that may connect (`{ "trainer-7": "s3cret" }`);
   * change them at runtime with `gateway.tokens`. A HELLO whose token is not its
   * harness's is refused (`unauthorized`). Default `{}`: no harness may connect.
   */
  readonly tokens?: Readonly<Record<string, string>>
  /** Protocol limits (see `Protocol.Limits`); the rest from `Protocol.defaults`. */
  readonly limits?: Partial<Protocol.Limits>
  /** Extra HTTP routes (the HTTP views), tried in order before the 404. Default none. */
  readonly http?: HttpRoute | ReadonlyArray<HttpRoute>
  /**
   * At shutdown: time given to sessions to have their batches acked after the DRAIN,
   * before `going_away` is sent regardless (leaving the rest unacked, to be resent
   * elsewhere). Default `5_000`.
   */
  readonly drainMs?: number
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  host: "127.0.0.1",
  port: 4600,
  path: "/v1/stream",
  drainMs: 5_000
} as const

/**
 * Time given to sockets to finish their close handshake at shutdown before they are
 * dropped.
 */
const closeGraceMs = 1_000

// ---------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------

/**
 * A session's lifecycle state: `hello` (waiting for the HELLO), `authenticated` (its
 * token checked, WELCOME on its way), `streaming`, `draining` (DRAIN sent, acking
 * what it received), `closed` (ERROR sent or connection closed; its socket may still
 * be closing).
 *
 * @category models
 */
export type SessionState = State

/**
 * One session, as `gateway.sessions()` reports it.
 *
 * @category models
 */
export type SessionInfo = Info

/**
 * The session lifecycle as an xstate v5 machine (hello → authenticated → streaming →
 * draining → closed; any state → closed). Each session owns a snapshot of it and
 * advances it with xstate's pure `transition`.
 *
 * @category constants
 */
export const lifecycle = sessionLifecycle

/**
 * Counters of a gateway since it started.
 *
 * @category models
 */
export interface Stats {
  readonly sessions: {
    /** Connections open as sessions now. */
    readonly open: number
    /** Connections accepted as sessions since the start (refused ones not counted). */
    readonly total: number
    /** Sessions not read from now: their window is full. */
    readonly paused: number
  }
  readonly frames: { readonly received: number; readonly sent: number }
  readonly bytesReceived: number
  readonly batches: {
    readonly received: number
    readonly acked: number
    /** Received and not yet acked, now. */
    readonly inFlight: number
  }
  readonly events: {
    /** Events in BATCHes received. */
    readonly received: number
    /** Acked as plainly accepted. */
    readonly accepted: number
    readonly duplicate: number
    readonly invalid: number
    readonly unknownType: number
    /** Acked with another outcome (`rejected`). */
    readonly rejected: number
  }
  /** ERROR frames sent (and connections refused), by code. */
  readonly errors: Readonly<Record<Protocol.Code, number>>
  /** ERROR frames received from clients. */
  readonly peerErrors: number
}

/**
 * The tokens of a running gateway.
 *
 * @category models
 */
export interface Tokens {
  /**
   * Sets the token of a harness id. Sessions of that harness opened with another
   * token are closed with `token_revoked` (4003).
   */
  readonly set: (harness: string, token: string) => void
  /**
   * Removes a harness's token: its open sessions are closed with `token_revoked`
   * (4003; what was acked stays accepted) and new ones are `unauthorized`.
   */
  readonly revoke: (harness: string) => void
  /** Whether a harness id has a token. */
  readonly has: (harness: string) => boolean
}

/**
 * A running gateway.
 *
 * @category models
 */
export interface Gateway {
  /** The WebSocket endpoint, `ws://host:port/path`. */
  readonly url: string
  /** The HTTP server, `http://host:port`. */
  readonly httpUrl: string
  /** The port listened on (the one taken when the option was `0`). */
  readonly port: number
  readonly tokens: Tokens
  /** Every open session, now. */
  readonly sessions: () => ReadonlyArray<SessionInfo>
  readonly stats: () => Stats
  /**
   * Stops the gateway (idempotent; also run when its scope closes): no new
   * connection; each session gets a DRAIN and its batches are acked, up to `drainMs`;
   * then ERROR `going_away` and close 1001; then the server closes.
   */
  readonly shutdown: Effect.Effect<void>
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

type Attributes = Readonly<Record<string, string>>

const counter = (name: string, description: string) => (attributes?: Attributes) =>
  Metric.counter(name, attributes === undefined ? { description } : { description, attributes })
const gauge = (name: string, description: string) => (attributes?: Attributes) =>
  Metric.gauge(name, attributes === undefined ? { description } : { description, attributes })

const ackLatencyBoundaries = Metric.exponentialBoundaries({ start: 0.5, factor: 2, count: 18 })

/**
 * Every series of a gateway, given its attributes. A gateway registers them with read
 * hooks over its own counters: reading a metric gives the value of that moment, and
 * the batch path updates nothing but plain numbers. A second gateway in the same
 * registry replaces the first one's series.
 *
 * @category metrics
 */
export const series = {
  sessionsOpen: gauge("cairn_gateway_sessions_open", "Sessions open now"),
  sessionsTotal: counter("cairn_gateway_sessions_total", "Connections accepted as sessions"),
  sessionsPaused: gauge("cairn_gateway_sessions_paused", "Sessions not read from now: their window is full"),
  framesReceived: counter("cairn_gateway_frames_received_total", "Frames received"),
  framesSent: counter("cairn_gateway_frames_sent_total", "Frames sent"),
  bytesReceived: counter("cairn_gateway_bytes_received_total", "Bytes of binary frames received"),
  batchesReceived: counter(
    "cairn_gateway_batches_received_total",
    "BATCHes received (and passing the session's rules)"
  ),
  batchesAcked: counter("cairn_gateway_batches_acked_total", "BATCHes acked"),
  batchesInFlight: gauge("cairn_gateway_batches_in_flight", "BATCHes received and not yet acked"),
  eventsReceived: counter("cairn_gateway_events_received_total", "Events in BATCHes received"),
  events: counter(
    "cairn_gateway_events_total",
    "Events acked, per outcome (accepted, duplicate, invalid, unknown_type, rejected)"
  ),
  errors: counter("cairn_gateway_errors_total", "ERROR frames sent and connections refused, per code"),
  peerErrors: counter("cairn_gateway_peer_errors_total", "ERROR frames received from clients"),
  harnessSessions: gauge("cairn_gateway_harness_sessions_open", "Sessions of the harness open now (past HELLO)"),
  harnessBatches: counter("cairn_gateway_harness_batches_received_total", "BATCHes received from the harness"),
  harnessBatchesAcked: counter("cairn_gateway_harness_batches_acked_total", "BATCHes of the harness acked"),
  harnessEvents: counter("cairn_gateway_harness_events_received_total", "Events received from the harness"),
  harnessOutcomes: counter(
    "cairn_gateway_harness_events_total",
    "Events of the harness acked, per outcome (accepted, duplicate, refused)"
  ),
  ackLatency: (attributes?: Attributes) =>
    Metric.histogram("cairn_gateway_ack_latency_ms", {
      description: "Milliseconds from receiving a BATCH to sending its ACK",
      boundaries: ackLatencyBoundaries,
      ...(attributes === undefined ? {} : { attributes })
    })
} as const

const noop = () => {}

/** The `cairn_gateway_harness_*` series of one harness id, read from its tally. */
const registerHarnessMetrics = (harness: string, t: Tally, context: Context.Context<never>): void => {
  const s = series
  const a = { harness }
  gaugeOf(context, s.harnessSessions(a), () => t.sessions)
  counterOf(context, s.harnessBatches(a), () => t.batches)
  counterOf(context, s.harnessBatchesAcked(a), () => t.acked)
  counterOf(context, s.harnessEvents(a), () => t.events)
  counterOf(context, s.harnessOutcomes({ harness, outcome: "accepted" }), () => t.accepted)
  counterOf(context, s.harnessOutcomes({ harness, outcome: "duplicate" }), () => t.duplicate)
  counterOf(context, s.harnessOutcomes({ harness, outcome: "refused" }), () => t.refused)
}

const registerMetrics = (core: Core, latency: Histogram, context: Context.Context<never>): void => {
  const c = core.counters
  const counter = (metric: Metric.Counter<number>, read: () => number) => counterOf(context, metric, read)
  const gauge = (metric: Metric.Gauge<number>, read: () => number) => gaugeOf(context, metric, read)
  const s = series
  gauge(s.sessionsOpen(), () => core.sessions.size)
  counter(s.sessionsTotal(), () => c.sessionsTotal)
  gauge(s.sessionsPaused(), () => c.paused)
  counter(s.framesReceived(), () => c.framesReceived)
  counter(s.framesSent(), () => c.framesSent)
  counter(s.bytesReceived(), () => c.bytesReceived)
  counter(s.batchesReceived(), () => c.batches)
  counter(s.batchesAcked(), () => c.acked)
  gauge(s.batchesInFlight(), () => c.inFlight)
  counter(s.eventsReceived(), () => c.events)
  counter(s.events({ outcome: "accepted" }), () => c.accepted)
  counter(s.events({ outcome: "duplicate" }), () => c.duplicate)
  counter(s.events({ outcome: "invalid" }), () => c.invalid)
  counter(s.events({ outcome: "unknown_type" }), () => c.unknownType)
  counter(s.events({ outcome: "rejected" }), () => c.rejected)
  for (const code of Object.keys(c.errors) as Array<Protocol.Code>) {
    counter(s.errors({ code }), () => c.errors[code])
  }
  counter(s.peerErrors(), () => c.peerErrors)
  histogramOf(context, s.ackLatency(), latency)
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

const pathOf = (url: string | undefined): string => {
  if (url === undefined) return "/"
  const q = url.indexOf("?")
  return q < 0 ? url : url.slice(0, q)
}

/** Answers an upgrade request with a plain HTTP status and drops the socket. */
const refuseUpgrade = (socket: Duplex, status: number, text: string): void => {
  try {
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  } catch {
    socket.destroy()
  }
}

/** The gateway's state, shared with its sessions (as their {@link Host}). */
class Core implements Host {
  readonly limits: Protocol.Limits
  readonly ingest: Ingest.Ingest
  readonly counters: Counters = makeCounters()
  readonly sessions = new Set<Session>()
  /** Connections refused (too many sessions, shutting down) until their socket closes. */
  readonly refused = new Set<WebSocket>()
  readonly tokens: Map<string, string>
  closing = false
  readonly now: () => number
  readonly run: Host["run"]
  readonly log: Host["log"]
  readonly observeAck: (ms: number) => void
  private readonly tallies = new Map<string, Tally>()
  private readonly context: Context.Context<never>
  private readonly waiters = new Set<() => void>()
  private readonly prefix = randomBytes(3).toString("hex")
  private nextId = 0

  constructor(
    options: Options,
    limits: Protocol.Limits,
    context: Context.Context<never>,
    clock: Clock.Clock,
    latency: Histogram
  ) {
    this.limits = limits
    this.ingest = options.ingest
    this.tokens = new Map(Object.entries(options.tokens ?? {}))
    this.now = () => clock.currentTimeMillisUnsafe()
    const runFork = Effect.runForkWith(context)
    this.run = (effect, onExit) => {
      runFork(effect).addObserver(onExit)
    }
    this.log = (level, message, annotations, cause) => {
      const parts: Array<unknown> = cause === undefined ? [message] : [message, cause]
      const log =
        level === "Debug"
          ? Effect.logDebug(...parts)
          : level === "Info"
            ? Effect.logInfo(...parts)
            : level === "Warning"
              ? Effect.logWarning(...parts)
              : Effect.logError(...parts)
      runFork(log.pipe(Effect.annotateLogs({ module: "Gateway", ...annotations })))
    }
    this.observeAck = (ms) => latency.observe(ms)
    this.context = context
  }

  readonly tallyOf = (harness: string): Tally => {
    let tally = this.tallies.get(harness)
    if (tally === undefined) {
      tally = { sessions: 0, batches: 0, acked: 0, events: 0, accepted: 0, duplicate: 0, refused: 0 }
      this.tallies.set(harness, tally)
      registerHarnessMetrics(harness, tally, this.context)
    }
    return tally
  }

  readonly authenticate = (harness: string, token: string): boolean => {
    const expected = this.tokens.get(harness)
    return expected !== undefined && token !== "" && sameSecret(expected, token)
  }

  readonly ended = (_session: Session): void => this.notify()

  readonly removed = (session: Session): void => {
    this.sessions.delete(session)
    const harness = session.harness
    if (harness !== undefined) {
      let other = false
      for (const s of this.sessions) if (s.harness === harness) other = true
      if (!other) this.ingest.forget(harness)
    }
    this.notify()
  }

  private notify(): void {
    for (const waiter of this.waiters) waiter()
  }

  /** Waits until `check()` holds (re-checked when a session ends or goes). */
  until(check: () => boolean): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (check()) {
        resume(Effect.void)
        return
      }
      const waiter = () => {
        if (!check()) return
        this.waiters.delete(waiter)
        resume(Effect.void)
      }
      this.waiters.add(waiter)
      return Effect.sync(() => {
        this.waiters.delete(waiter)
      })
    })
  }

  /** A new connection on the WebSocket path. */
  connection(ws: WebSocket, request: IncomingMessage): void {
    const remote =
      request.socket.remoteAddress === undefined
        ? undefined
        : `${request.socket.remoteAddress}:${request.socket.remotePort}`
    if (this.closing) {
      this.refuse(ws, Protocol.failure("going_away", "the server is shutting down"), remote)
      return
    }
    const max = this.limits.maxSessions
    if (this.sessions.size >= max) {
      const detail = `${this.sessions.size} sessions are open, at most ${max}`
      this.refuse(ws, Protocol.failure("too_many_sessions", detail), remote)
      return
    }
    const id = `s-${this.prefix}${(++this.nextId).toString(36)}`
    this.counters.sessionsTotal++
    this.sessions.add(new Session(ws, this, id, remote))
  }

  /** Refuses a connection before its HELLO: ERROR, then close. */
  private refuse(ws: WebSocket, error: ReturnType<typeof Protocol.failure>, remote: string | undefined): void {
    const code = error.wireCode as Protocol.Code
    this.counters.errors[code]++
    this.log("Warning", `connection refused with ${code}: ${error.detail}`, { remote, code })
    this.refused.add(ws)
    ws.on("error", noop)
    ws.on("close", () => this.refused.delete(ws))
    try {
      ws.send(errorBytes(error, this.limits.maxFrameBytes))
      ws.close(error.closeCode, code)
    } catch {
      ws.terminate()
    }
  }

  /** Hello timeouts, idle timeouts and heartbeats. */
  tick(): void {
    const now = this.now()
    for (const session of this.sessions) session.tick(now)
  }

  setToken(harness: string, token: string): void {
    if (harness === "" || token === "") {
      throw new InvalidOptions({ subject: "Gateway tokens", reason: "a harness id and its token must be non-empty" })
    }
    this.tokens.set(harness, token)
    for (const session of this.sessions) {
      if (session.harness === harness && session.state !== "closed" && session.token !== token) session.revoke()
    }
  }

  revoke(harness: string): void {
    this.tokens.delete(harness)
    for (const session of this.sessions) {
      if (session.harness === harness && session.state !== "closed") session.revoke()
    }
  }

  sessionInfos(): ReadonlyArray<SessionInfo> {
    const out: Array<SessionInfo> = []
    for (const session of this.sessions) out.push(session.info())
    return out
  }

  stats(): Stats {
    const c = this.counters
    return {
      sessions: { open: this.sessions.size, total: c.sessionsTotal, paused: c.paused },
      frames: { received: c.framesReceived, sent: c.framesSent },
      bytesReceived: c.bytesReceived,
      batches: { received: c.batches, acked: c.acked, inFlight: c.inFlight },
      events: {
        received: c.events,
        accepted: c.accepted,
        duplicate: c.duplicate,
        invalid: c.invalid,
        unknownType: c.unknownType,
        rejected: c.rejected
      },
      errors: { ...c.errors },
      peerErrors: c.peerErrors
    }
  }
}

const invalid = (reason: string) => new InvalidOptions({ subject: "Gateway", reason })

const checkOptions = (options: Options): Protocol.Limits => {
  const port = options.port ?? defaults.port
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw invalid("port must be an integer from 0 to 65535")
  const path = options.path ?? defaults.path
  if (!path.startsWith("/") || path.includes("?")) throw invalid(`path must start with "/" and have no query: ${path}`)
  const drainMs = options.drainMs ?? defaults.drainMs
  if (!Number.isSafeInteger(drainMs) || drainMs < 0) throw invalid("drainMs must be an integer >= 0")
  for (const [harness, token] of Object.entries(options.tokens ?? {})) {
    if (harness === "" || typeof token !== "string" || token === "") {
      throw invalid(`the token of harness ${JSON.stringify(harness)} must be a non-empty string`)
    }
  }
  return Protocol.limits(options.limits)
}

const listen = (server: Server, host: string, port: number): Effect.Effect<void, GatewayListenFailed> =>
  Effect.callback<void, GatewayListenFailed>((resume) => {
    const onError = (error: Error) => {
      server.off("listening", onListening)
      resume(Effect.fail(new GatewayListenFailed({ host, port, reason: error.message })))
    }
    const onListening = () => {
      server.off("error", onError)
      resume(Effect.void)
    }
    server.once("error", onError)
    server.once("listening", onListening)
    server.listen(port, host)
  })

/**
 * Starts a gateway listening on `host:port`, for the life of the current scope (its
 * close runs `shutdown`). Fails with {@link InvalidOptions} for invalid options or
 * limits, and with {@link GatewayListenFailed} when the server cannot listen (the
 * port is taken, the host is not an address of this machine…).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Gateway, Ingest, Trail } from "cairn"
 *
 * const program = Effect.gen(function* () {
 *   const trail = yield* Trail.make({ types: [Step] })
 *   const gateway = yield* Gateway.make({
 *     ingest: Ingest.make({ trail }),
 *     port: 4600,
 *     tokens: { "trainer-7": process.env.TRAINER_7_TOKEN! }
 *   })
 *   yield* Effect.log(`listening on ${gateway.url}`)
 *   return yield* Effect.never
 * })
 * ```
 *
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Gateway, GatewayListenFailed | InvalidOptions, Scope.Scope> =>
  Effect.gen(function* () {
    const limits = yield* Effect.try({
      try: () => checkOptions(options),
      catch: (error) => (error instanceof InvalidOptions ? error : invalid(String(error)))
    })
    const host = options.host ?? defaults.host
    const path = options.path ?? defaults.path
    const drainMs = options.drainMs ?? defaults.drainMs
    const routes: ReadonlyArray<HttpRoute> =
      options.http === undefined ? [] : typeof options.http === "function" ? [options.http] : options.http
    const context = yield* Effect.context<never>()
    const clock = yield* Clock.Clock
    const latency = new Histogram(ackLatencyBoundaries)
    const core = new Core(options, limits, context, clock, latency)

    const wss = new WebSocketServer({
      noServer: true,
      // above the limit, so that a frame a little too large gets our frame_too_large
      // (ERROR frame, then 1009); beyond this ws closes with 1009 by itself
      maxPayload: limits.maxFrameBytes + Math.min(limits.maxFrameBytes, 1_048_576),
      perMessageDeflate: false,
      clientTracking: false
    })
    wss.on("error", (error) => core.log("Warning", `WebSocket server error: ${error.message}`, {}))

    const server = createServer()
    server.on("request", (request: IncomingMessage, response: ServerResponse) => {
      try {
        for (const route of routes) if (route(request, response)) return
        if (pathOf(request.url) === path) {
          response.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" })
          response.end("this path takes WebSocket connections (see docs/protocol.md)\n")
          return
        }
        response.writeHead(404, { "content-type": "text/plain" })
        response.end("not found\n")
      } catch (error) {
        core.log("Error", `an HTTP route failed on ${request.method} ${pathOf(request.url)}`, {}, Cause.die(error))
        if (!response.headersSent) response.writeHead(500, { "content-type": "text/plain" })
        response.end()
      }
    })
    server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on("error", noop)
      if (pathOf(request.url) !== path) {
        refuseUpgrade(socket, 404, "Not Found")
        return
      }
      if (core.closing) {
        refuseUpgrade(socket, 503, "Service Unavailable")
        return
      }
      try {
        wss.handleUpgrade(request, socket, head, (ws) => {
          try {
            core.connection(ws, request)
          } catch (error) {
            core.log("Error", `connection failed: ${String(error)}`, {})
            ws.terminate()
          }
        })
      } catch (error) {
        core.log("Warning", `upgrade failed: ${String(error)}`, {})
        socket.destroy()
      }
    })

    // from listening to the finalizer that stops it, uninterruptibly: nothing leaks
    const { port, shutdown } = yield* Effect.uninterruptible(
      Effect.gen(function* () {
        yield* listen(server, host, options.port ?? defaults.port)
        server.on("error", (error) => core.log("Warning", `HTTP server error: ${error.message}`, {}))
        const port = (server.address() as AddressInfo).port
        registerMetrics(core, latency, context)

        const tickMs = Math.max(
          5,
          Math.min(1_000, Math.floor(Math.min(limits.helloTimeoutMs, limits.heartbeatMs, limits.idleTimeoutMs) / 10))
        )
        const ticker = yield* Effect.forkDetach(
          Effect.forever(Effect.flatMap(Effect.sleep(tickMs), () => Effect.sync(() => core.tick())))
        )

        // stops listening (and closes idle keep-alive connections); resolves once every
        // HTTP connection has ended
        const serverClosed = Effect.callback<void>((resume) => {
          server.close(() => resume(Effect.void))
        })

        const stop = Effect.gen(function* () {
          core.closing = true
          // no new connection (the listener stops; upgrades in progress are refused)
          const closed = yield* Effect.forkDetach(serverClosed)
          const reason = "the server is shutting down"
          for (const session of core.sessions) session.drain(reason)
          const drained = yield* core
            .until(() => {
              for (const session of core.sessions) if (session.state !== "closed") return false
              return true
            })
            .pipe(Effect.timeoutOption(drainMs))
          if (Option.isNone(drained)) {
            for (const session of core.sessions) if (session.state !== "closed") session.goAway()
          }
          // the close handshakes, then drop what is left
          yield* core
            .until(() => core.sessions.size === 0 && core.refused.size === 0)
            .pipe(Effect.timeoutOption(closeGraceMs))
          for (const session of core.sessions) session.terminate()
          for (const ws of core.refused) ws.terminate()
          yield* Fiber.interrupt(ticker)
          // HTTP requests still running are cut now
          server.closeAllConnections()
          yield* Fiber.join(closed).pipe(Effect.timeoutOption(closeGraceMs))
          wss.close()
          yield* Effect.logDebug("gateway stopped").pipe(Effect.annotateLogs({ module: "Gateway", port }))
        })

        const done = Deferred.makeUnsafe<void>()
        let started = false
        const shutdown: Effect.Effect<void> = Effect.suspend(() => {
          if (started) return Deferred.await(done)
          started = true
          return stop.pipe(
            Effect.catchCause((cause) => Effect.logError("gateway shutdown failed", cause)),
            Effect.ensuring(Deferred.succeed(done, undefined)),
            Effect.uninterruptible
          )
        })
        yield* Effect.addFinalizer(() => shutdown)
        return { port, shutdown }
      })
    )

    const urlHost = host.includes(":") ? `[${host}]` : host
    yield* Effect.logDebug(`gateway listening on ws://${urlHost}:${port}${path}`).pipe(
      Effect.annotateLogs({ module: "Gateway" })
    )
    return {
      url: `ws://${urlHost}:${port}${path}`,
      httpUrl: `http://${urlHost}:${port}`,
      port,
      tokens: {
        set: (harness, token) => core.setToken(harness, token),
        revoke: (harness) => core.revoke(harness),
        has: (harness) => core.tokens.has(harness)
      },
      sessions: () => core.sessionInfos(),
      stats: () => core.stats(),
      shutdown
    } satisfies Gateway
  })
