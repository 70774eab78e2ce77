import { spawnSync } from "node:child_process"
import { pathToFileURL } from "node:url"
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schedule, Schema } from "effect"
import { type WebSocket, WebSocketServer } from "ws"
import type { Batch } from "../src/Batch.ts"
import { Errors, EventType, Protocol, Trail, Transport } from "../src/index.ts"

// ---------------------------------------------------------------------------------------
// A scripted fake gateway: a real ws server speaking the protocol with Protocol's codec
// ---------------------------------------------------------------------------------------

interface FakeConn {
  /** Connection number, from 1. */
  readonly n: number
  readonly ws: WebSocket
  welcomed: boolean
  nextSeq: number
  /** BATCHes received and not acked, by seq, in the order received. */
  readonly inFlight: Map<number, Protocol.BatchFrame>
  drained: boolean
  /** The session's rate bucket (protocol §9): tokens, and when they were counted. */
  tokens: number
  tokensAt: number
  /** The ids of the frames left unacked when the gateway dropped this connection, in order. */
  unackedAtDrop: Array<string> | undefined
}

interface Received {
  readonly conn: number
  readonly seq: number
  readonly key: string
  readonly ids: ReadonlyArray<string>
  readonly data: ReadonlyArray<unknown>
}

interface Script {
  readonly limits?: Partial<Protocol.WelcomeLimits>
  /** A code to refuse the HELLO with (ERROR, then close with its close code). */
  readonly refuse?: (hello: Protocol.HelloFrame, conn: FakeConn) => Protocol.Code | undefined
  /** Each BATCH, once recorded; default: `gateway.ack(conn, frame)` at once. */
  readonly onBatch?: (gateway: FakeGateway, conn: FakeConn, frame: Protocol.BatchFrame) => void
  /** Answer PINGs (default `true`). */
  readonly pong?: boolean
  /** Never answer HELLO. */
  readonly silent?: boolean
}

class FakeGateway {
  readonly wss: WebSocketServer
  readonly script: Script
  readonly limits: Protocol.WelcomeLimits
  readonly conns: Array<FakeConn> = []
  readonly hellos: Array<Protocol.HelloFrame> = []
  readonly frames: Array<Received> = []
  /** Ids recorded (acked as accepted or duplicate). */
  readonly recorded = new Set<string>()
  /** Every protocol rule the client broke. */
  readonly violations: Array<string> = []
  maxInFlight = 0
  pings = 0

  constructor(wss: WebSocketServer, script: Script) {
    this.wss = wss
    this.script = script
    this.limits = Protocol.welcomeLimits(Protocol.limits(script.limits ?? {}))
    wss.on("connection", (ws) => this.connected(ws))
  }

  get url(): string {
    const address = this.wss.address()
    if (typeof address === "string" || address === null) throw new Error("no port")
    return `ws://127.0.0.1:${address.port}/ingest`
  }

  private connected(ws: WebSocket): void {
    const conn: FakeConn = {
      n: this.conns.length + 1,
      ws,
      welcomed: false,
      nextSeq: 1,
      inFlight: new Map(),
      drained: false,
      tokens: 0,
      tokensAt: 0,
      unackedAtDrop: undefined
    }
    this.conns.push(conn)
    ws.on("message", (data, isBinary) => {
      let frame: Protocol.Frame
      try {
        frame = Protocol.decodeFrame(isBinary ? (data as Uint8Array) : data.toString(), this.limits)
      } catch (error) {
        this.violations.push(`conn ${conn.n}: ${String(error)}`)
        return
      }
      this.frame(conn, frame)
    })
  }

  private frame(conn: FakeConn, frame: Protocol.Frame): void {
    switch (frame._tag) {
      case "Hello": {
        if (conn.welcomed) this.violations.push(`conn ${conn.n}: a second HELLO`)
        this.hellos.push(frame)
        const refused = this.script.refuse?.(frame, conn)
        if (refused !== undefined) {
          this.error(conn, refused, `refused: ${refused}`)
          return
        }
        if (this.script.silent === true) return
        conn.welcomed = true
        conn.tokens = this.limits.maxEventsPerSecond
        conn.tokensAt = Date.now()
        this.send(conn, { _tag: "Welcome", version: 1, session: `s-${conn.n}`, limits: this.limits })
        return
      }
      case "Batch": {
        if (!conn.welcomed) this.violations.push(`conn ${conn.n}: BATCH before WELCOME`)
        if (conn.drained) this.violations.push(`conn ${conn.n}: BATCH ${frame.seq} after DRAIN`)
        if (frame.seq !== conn.nextSeq) {
          this.violations.push(`conn ${conn.n}: BATCH ${frame.seq}, expected ${conn.nextSeq}`)
        }
        conn.nextSeq = frame.seq + 1
        conn.inFlight.set(frame.seq, frame)
        this.maxInFlight = Math.max(this.maxInFlight, conn.inFlight.size)
        if (conn.inFlight.size > this.limits.maxInFlight) {
          this.violations.push(`conn ${conn.n}: ${conn.inFlight.size} in flight`)
        }
        const n = Protocol.eventCount(frame)
        const now = Date.now()
        const rate = this.limits.maxEventsPerSecond
        conn.tokens = Math.min(rate, conn.tokens + ((now - conn.tokensAt) * rate) / 1_000)
        conn.tokensAt = now
        if (conn.tokens < n) this.violations.push(`conn ${conn.n}: BATCH ${frame.seq} rate_limited`)
        conn.tokens -= n
        const data: Array<unknown> = []
        for (let i = 0; i < n; i++) data.push(Protocol.eventData(frame, i))
        this.frames.push({ conn: conn.n, seq: frame.seq, key: frame.key, ids: Protocol.eventIds(frame), data })
        if (this.script.onBatch !== undefined) this.script.onBatch(this, conn, frame)
        else this.ack(conn, frame)
        return
      }
      case "Ping":
        this.pings++
        if (this.script.pong !== false) this.send(conn, { _tag: "Pong", nonce: frame.nonce })
        return
      case "Pong":
        return
      case "Error":
        this.violations.push(`conn ${conn.n}: client sent ERROR ${frame.code}: ${frame.message}`)
        return
      default:
        this.violations.push(`conn ${conn.n}: unexpected ${frame._tag}`)
    }
  }

  send(conn: FakeConn, frame: Protocol.Frame): void {
    if (conn.ws.readyState === conn.ws.OPEN) conn.ws.send(Protocol.encodeFrame(frame))
  }

  /** Records the frame's ids and acks it: `duplicate` for ids recorded before, plus `extra` outcomes. */
  ack(conn: FakeConn, frame: Protocol.BatchFrame, extra: ReadonlyArray<Protocol.Outcome> = []): void {
    if (!conn.inFlight.delete(frame.seq)) return
    const ids = Protocol.eventIds(frame)
    const outcomes: Array<Protocol.Outcome> = [...extra]
    const listed = new Set(extra.map((o) => o[0]))
    for (let i = 0; i < ids.length; i++) {
      if (listed.has(i)) continue
      if (this.recorded.has(ids[i]!)) outcomes.push([i, "duplicate", ""])
      else this.recorded.add(ids[i]!)
    }
    outcomes.sort((a, b) => a[0] - b[0])
    this.send(conn, { _tag: "Ack", seq: frame.seq, outcomes: outcomes.length === 0 ? undefined : outcomes })
  }

  ackAll(conn: FakeConn): void {
    for (const frame of [...conn.inFlight.values()]) this.ack(conn, frame)
  }

  /** Drops the connection at once (no close frame), leaving what is in flight unacked. */
  drop(conn: FakeConn): void {
    conn.unackedAtDrop = [...conn.inFlight.values()].flatMap((f) => Protocol.eventIds(f))
    conn.ws.terminate()
  }

  error(conn: FakeConn, code: Protocol.Code, message: string): void {
    this.send(conn, { _tag: "Error", code, message, seq: undefined })
    conn.ws.close(Protocol.codes[code].closeCode, code)
  }

  /** Frames received on connection `n`. */
  on(n: number): Array<Received> {
    return this.frames.filter((f) => f.conn === n)
  }
}

const gateway = (script: Script = {}) =>
  Effect.map(
    Effect.acquireRelease(
      Effect.callback<WebSocketServer>((resume) => {
        const s = new WebSocketServer({ host: "127.0.0.1", port: 0 })
        s.once("listening", () => resume(Effect.succeed(s)))
        s.once("error", (e) => resume(Effect.die(e)))
      }),
      (s) =>
        Effect.callback<void>((resume) => {
          for (const c of s.clients) c.terminate()
          s.close(() => resume(Effect.void))
        })
    ),
    (wss) => new FakeGateway(wss, script)
  )

/** A URL where nothing listens (a server is opened on a free port, then closed). */
const deadUrl = Effect.callback<string>((resume) => {
  const s = new WebSocketServer({ host: "127.0.0.1", port: 0 })
  s.once("listening", () => {
    const address = s.address()
    const port = typeof address === "string" || address === null ? 0 : address.port
    s.close(() => resume(Effect.succeed(`ws://127.0.0.1:${port}/ingest`)))
  })
})

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const I = Schema.Struct({ i: Schema.Number })
/** Small, quick reconnects for tests. */
const fast = Schedule.spaced("10 millis")

const waitFor = (what: string, cond: () => boolean, timeoutMs = 5_000) =>
  Effect.gen(function* () {
    const start = Date.now()
    while (!cond()) {
      if (Date.now() - start > timeoutMs) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
      yield* Effect.sleep(5)
    }
  })

const checkAccounting = (trail: Trail.Service) => {
  for (const s of Object.values(trail.statsUnsafe().types)) {
    const dropped = s.dropped.overflow + s.dropped.shutdown + s.dropped.failed
    assert.strictEqual(
      s.accepted,
      s.processed + s.queued + s.inFlight + dropped + s.deadLettered,
      `accounting broken for ${s.type}: ${JSON.stringify(s)}`
    )
  }
}

const dataOf = (r: Received): Array<number> => r.data.map((d) => (d as { i: number }).i)

/** Within each connection, each type's events arrive in log order (resends before newer batches). */
const checkOrder = (gw: FakeGateway) => {
  for (const conn of gw.conns) {
    const last = new Map<string, number>()
    for (const f of gw.on(conn.n)) {
      for (const i of dataOf(f)) {
        const before = last.get(f.key) ?? -1
        assert.isAbove(i, before, `conn ${conn.n}: ${f.key} event ${i} after ${before}`)
        last.set(f.key, i)
      }
    }
  }
}

describe("Transport", () => {
  it.live("says HELLO, waits for WELCOME, and acks release the events as processed", () =>
    Effect.gen(function* () {
      const gw = yield* gateway()
      const A = EventType.make("wire.Hello", 1, I, { batch: { maxSize: 7, lingerMs: 0 } })
      const transport = yield* Transport.make({
        url: gw.url,
        harness: "trainer-7",
        token: "s3cret",
        client: { purpose: "test" }
      })
      const trail = yield* Trail.make({ source: "trainer-7", process: transport.process, types: [A] })
      for (let i = 0; i < 100; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      const s = trail.statsUnsafe().types["wire.Hello@1"]!
      assert.strictEqual(s.accepted, 100)
      assert.strictEqual(s.processed, 100)
      checkAccounting(trail)
      assert.strictEqual(gw.hellos.length, 1)
      const hello = gw.hellos[0]!
      assert.strictEqual(hello.harness, "trainer-7")
      assert.strictEqual(hello.token, "s3cret")
      assert.deepStrictEqual(hello.client, { name: "cairn", version: "0.1.0", purpose: "test" })
      // every id once, in log order, with the data as logged
      const ids = gw.frames.flatMap((f) => f.ids)
      assert.strictEqual(ids.length, 100)
      assert.strictEqual(new Set(ids).size, 100)
      assert.deepStrictEqual(
        gw.frames.flatMap(dataOf),
        Array.from({ length: 100 }, (_, i) => i)
      )
      assert.deepStrictEqual(
        gw.frames.map((f) => f.seq),
        gw.frames.map((_, i) => i + 1)
      )
      const t = transport.stats()
      assert.strictEqual(t.status, "open")
      assert.strictEqual(t.session, "s-1")
      assert.strictEqual(t.sent, gw.frames.length)
      assert.strictEqual(t.acked, t.sent)
      assert.strictEqual(t.inFlight, 0)
      assert.strictEqual(t.pending, 0)
      assert.strictEqual(t.reconnects, 0)
      assert.deepStrictEqual(gw.violations, [])
    })
  )

  it.live("per-event rejections become dead letters with the server's reason; duplicates count as delivered", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({
        onBatch: (g, conn, frame) => {
          if (frame.seq === 1) {
            g.recorded.add(Protocol.eventId(frame, 2)) // recorded before: a duplicate
            g.ack(conn, frame, [
              [0, "invalid", "invalid data for wire.Reject@1 (1 issue): i: Expected number"],
              [3, "unknown_type", "no type wire.Reject@1"],
              [4, "something_new", "a code from a newer server"]
            ])
          } else g.ack(conn, frame)
        }
      })
      const A = EventType.make("wire.Reject", 1, I, { batch: { maxSize: 5, lingerMs: 0 } })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      for (let i = 0; i < 10; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      const s = trail.statsUnsafe().types["wire.Reject@1"]!
      assert.strictEqual(s.accepted, 10)
      assert.strictEqual(s.deadLettered, 3)
      assert.strictEqual(s.processed, 7)
      checkAccounting(trail)
      const letters = trail.deadLettersUnsafe()
      assert.strictEqual(letters.length, 1)
      const letter = letters[0]!
      assert.strictEqual(letter.reason, "rejected")
      assert.deepStrictEqual(
        letter.events.map((e) => e.data),
        [{ i: 0 }, { i: 3 }, { i: 4 }]
      )
      const error = Cause.squash(letter.cause)
      assert.instanceOf(error, Errors.EventRejected)
      const rejected = (error as Errors.EventRejected).events
      assert.deepStrictEqual(
        rejected.map((e) => [e.id, e.code, e.reason]),
        [
          [gw.frames[0]!.ids[0], "invalid", "invalid data for wire.Reject@1 (1 issue): i: Expected number"],
          [gw.frames[0]!.ids[3], "unknown_type", "no type wire.Reject@1"],
          [gw.frames[0]!.ids[4], "something_new", "a code from a newer server"]
        ]
      )
      assert.strictEqual(transport.stats().rejected, 3)
      assert.strictEqual(transport.stats().duplicates, 1)
      assert.deepStrictEqual(gw.violations, [])
    })
  )

  it.live("a droppable type's rejected events are counted as dropped", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ onBatch: (g, conn, frame) => g.ack(conn, frame, [[1, "rejected", "no"]]) })
      const A = EventType.make("wire.Droppable", 1, I, { delivery: "droppable", batch: { maxSize: 4, lingerMs: 0 } })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      for (let i = 0; i < 8; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      const s = trail.statsUnsafe().types["wire.Droppable@1"]!
      assert.strictEqual(s.dropped.failed, 2)
      assert.strictEqual(s.processed, 6)
      assert.strictEqual(s.deadLettered, 0)
      checkAccounting(trail)
    })
  )

  it.live("never has more than `window` batches in flight, nor more than the server's maxInFlight", () =>
    Effect.gen(function* () {
      for (const [window, serverMax, expected] of [
        [3, 8, 3],
        [8, 2, 2]
      ] as const) {
        const gw = yield* gateway({
          limits: { maxInFlight: serverMax },
          // acks come late, so the client fills its window
          onBatch: (g, conn, frame) => setTimeout(() => g.ack(conn, frame), 3)
        })
        const types = [0, 1, 2, 3].map((k) =>
          EventType.make(`wire.Window${window}x${k}`, 1, I, { batch: { maxSize: 2, lingerMs: 0 }, concurrency: 4 })
        )
        const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t", window })
        const trail = yield* Trail.make({ source: "h", process: transport.process, types, concurrency: 16 })
        for (let i = 0; i < 100; i++) for (const A of types) trail.logUnsafe(A, { i })
        yield* trail.flush
        assert.strictEqual(gw.maxInFlight, expected, `window ${window}, server ${serverMax}`)
        assert.strictEqual(trail.statsUnsafe().totals.processed, 400)
        assert.strictEqual(gw.recorded.size, 400)
        checkAccounting(trail)
        checkOrder(gw)
        assert.deepStrictEqual(gw.violations, [])
        yield* transport.close
      }
    })
  )

  it.live(
    "a server that drops the connection mid-stream: every unacked batch is resent first, same ids, none lost",
    () =>
      Effect.gen(function* () {
        let received = 0
        const gw = yield* gateway({
          onBatch: (g, conn, frame) => {
            received++
            // drop the connection now and then, with batches in flight; ack the rest late
            if (received % 9 === 0 && conn.n <= 4) g.drop(conn)
            else setTimeout(() => g.ack(conn, frame), 2)
          }
        })
        const types = ["A", "B", "C"].map((k) =>
          EventType.make(`wire.Drop${k}`, 1, I, { batch: { maxSize: 3, lingerMs: 0 }, concurrency: 2 })
        )
        const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t", window: 4, backoff: fast })
        const trail = yield* Trail.make({ source: "h", process: transport.process, types, concurrency: 8 })
        for (let i = 0; i < 150; i++) for (const A of types) trail.logUnsafe(A, { i })
        yield* trail.flush
        const stats = trail.statsUnsafe()
        assert.strictEqual(stats.totals.accepted, 450)
        assert.strictEqual(stats.totals.processed, 450)
        checkAccounting(trail)
        // the server saw every id, at least once; each event recorded once
        assert.strictEqual(gw.recorded.size, 450)
        const seen = new Set(gw.frames.flatMap((f) => f.ids))
        assert.strictEqual(seen.size, 450)
        assert.isAtLeast(gw.conns.length, 5)
        const t = transport.stats()
        assert.isAtLeast(t.reconnects, 4)
        assert.isAbove(t.resent, 0)
        assert.isAbove(t.duplicates, 0)
        // each new connection starts with what the dropped one left unacked, in order, same ids
        for (const conn of gw.conns) {
          const unacked = conn.unackedAtDrop
          if (unacked === undefined) continue
          const next = gw.on(conn.n + 1).flatMap((f) => f.ids)
          assert.deepStrictEqual(next.slice(0, unacked.length), unacked, `after dropping conn ${conn.n}`)
        }
        checkOrder(gw)
        assert.deepStrictEqual(gw.violations, [])
      })
  )

  it.live("ERROR unauthorized: the batches fail with it, no reconnect, later batches fail at once", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ refuse: () => "unauthorized" })
      const A = EventType.make("wire.Unauthorized", 1, I, {
        batch: { maxSize: 5, lingerMs: 0 },
        retry: Schedule.recurs(1)
      })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "wrong", backoff: fast })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      for (let i = 0; i < 10; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      const s = trail.statsUnsafe().types["wire.Unauthorized@1"]!
      assert.strictEqual(s.deadLettered, 10)
      checkAccounting(trail)
      const letter = trail.deadLettersUnsafe()[0]!
      const error = Cause.squash(letter.cause)
      assert.instanceOf(error, Errors.ProtocolError)
      assert.strictEqual((error as Errors.ProtocolError).wireCode, "unauthorized")
      assert.strictEqual(transport.status(), "failed")
      // a later batch fails at once with the same error
      const exit = yield* Effect.exit(transport.process(letter.batch!))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.strictEqual(Cause.squash(exit.cause), error)
      // no reconnect, even given the time for several
      yield* Effect.sleep(100)
      assert.strictEqual(gw.conns.length, 1)
      assert.match(transport.stats().lastError ?? "", /unauthorized/)
      assert.strictEqual(gw.frames.length, 0)
    })
  )

  it.live("a close code that means no retry (4003 without an ERROR frame) stops the transport too", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ onBatch: (_g, conn) => conn.ws.close(4003) })
      const A = EventType.make("wire.Revoked", 1, I, { batch: { maxSize: 5, lingerMs: 0 }, retry: Schedule.recurs(0) })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t", backoff: fast })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      for (let i = 0; i < 5; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      assert.strictEqual(trail.statsUnsafe().types["wire.Revoked@1"]!.deadLettered, 5)
      const error = Cause.squash(trail.deadLettersUnsafe()[0]!.cause) as Errors.ProtocolError
      assert.strictEqual(error.wireCode, "token_revoked")
      assert.strictEqual(error.closeCode, 4003)
      yield* Effect.sleep(50)
      assert.strictEqual(gw.conns.length, 1)
      assert.strictEqual(transport.status(), "failed")
    })
  )

  it.live(
    "DRAIN: nothing new is sent on that connection; after ERROR going_away and close 1001 it reconnects and resends",
    () =>
      Effect.gen(function* () {
        const gw = yield* gateway({
          onBatch: (g, conn, frame) => {
            if (conn.n === 1 && frame.seq === 3) {
              g.send(conn, { _tag: "Drain", reason: "the server is shutting down" })
              conn.drained = true
              // acks one of the three, then goes away leaving the others unacked
              setTimeout(() => {
                const first = conn.inFlight.get(1)
                if (first !== undefined) g.ack(conn, first)
                conn.unackedAtDrop = [...conn.inFlight.values()].flatMap((f) => Protocol.eventIds(f))
                g.error(conn, "going_away", "the server is shutting down")
              }, 50)
            } else if (conn.n > 1) g.ack(conn, frame)
          }
        })
        const A = EventType.make("wire.Drain", 1, I, { batch: { maxSize: 2, lingerMs: 0 }, concurrency: 4 })
        // window 3: a 4th batch can only go once an ack came, and the ack comes after the DRAIN
        const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t", backoff: fast, window: 3 })
        const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A], concurrency: 8 })
        for (let i = 0; i < 40; i++) trail.logUnsafe(A, { i })
        yield* waitFor("DRAIN", () => transport.status() === "draining" || gw.conns.length > 1)
        yield* trail.flush
        assert.strictEqual(trail.statsUnsafe().types["wire.Drain@1"]!.processed, 40)
        checkAccounting(trail)
        assert.strictEqual(gw.conns.length, 2)
        assert.strictEqual(gw.on(1).length, 3)
        const unacked = gw.conns[0]!.unackedAtDrop!
        assert.strictEqual(unacked.length, 4)
        assert.deepStrictEqual(
          gw
            .on(2)
            .flatMap((f) => f.ids)
            .slice(0, 4),
          unacked
        )
        assert.strictEqual(gw.recorded.size, 40)
        assert.match(transport.stats().lastError ?? "", /going_away/)
        assert.strictEqual(transport.stats().reconnects, 1)
        checkOrder(gw)
        assert.deepStrictEqual(gw.violations, [])
      })
  )

  it.live("a batch larger than maxBatchEvents goes as several frames with the same ids; outcomes map back", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({
        limits: { maxBatchEvents: 4 },
        onBatch: (g, conn, frame) => {
          // refuse the event logged with i = 6, wherever it lands
          const at = gw.frames[gw.frames.length - 1]!.data.findIndex((d) => (d as { i: number }).i === 6)
          g.ack(conn, frame, at >= 0 ? [[at, "invalid", "six is not allowed"]] : [])
        }
      })
      const A = EventType.make("wire.Split", 1, I, { batch: { maxSize: 10, lingerMs: 0 } })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      const ids: Array<string> = []
      const B = EventType.make("wire.SplitIds", 1, I, { batch: { maxSize: 10, lingerMs: 0 } })
      // the same batches through a local processor, to know the ids the trail gave
      const local = yield* Trail.make({
        source: "h",
        types: [Trail.route(B, (batch) => Effect.sync(() => ids.push(...batch.events.map((e) => e.id))))]
      })
      for (let i = 0; i < 10; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      yield* local.flush
      assert.deepStrictEqual(
        gw.frames.map((f) => f.ids.length),
        [4, 4, 2]
      )
      assert.deepStrictEqual(gw.frames.flatMap(dataOf), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      const received = gw.frames.flatMap((f) => f.ids)
      assert.strictEqual(new Set(received).size, 10)
      // ids are consecutive in the trail's numbering: the same as if sent whole
      assert.deepStrictEqual(received.slice().sort(), received)
      const s = trail.statsUnsafe().types["wire.Split@1"]!
      assert.strictEqual(s.processed, 9)
      assert.strictEqual(s.deadLettered, 1)
      checkAccounting(trail)
      const letter = trail.deadLettersUnsafe()[0]!
      assert.deepStrictEqual(
        letter.events.map((e) => e.data),
        [{ i: 6 }]
      )
      assert.strictEqual(letter.events[0]!.id, received[6])
      assert.deepStrictEqual(gw.violations, [])
    })
  )

  it.live("an event alone larger than maxFrameBytes is refused locally (frame_too_large); the rest goes", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ limits: { maxFrameBytes: 400 } })
      const S = Schema.Struct({ i: Schema.Number, s: Schema.String })
      const A = EventType.make("wire.Big", 1, S, { batch: { maxSize: 8, lingerMs: 0 } })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      for (let i = 0; i < 8; i++) trail.logUnsafe(A, { i, s: i === 5 ? "x".repeat(1_000) : "y".repeat(40) })
      yield* trail.flush
      const s = trail.statsUnsafe().types["wire.Big@1"]!
      assert.strictEqual(s.processed, 7)
      assert.strictEqual(s.deadLettered, 1)
      checkAccounting(trail)
      const letter = trail.deadLettersUnsafe()[0]!
      assert.deepStrictEqual(
        letter.events.map((e) => (e.data as { i: number }).i),
        [5]
      )
      const error = Cause.squash(letter.cause) as Errors.EventRejected
      assert.strictEqual(error.events[0]!.code, "frame_too_large")
      assert.deepStrictEqual(gw.frames.flatMap(dataOf).sort(), [0, 1, 2, 3, 4, 6, 7])
      assert.deepStrictEqual(gw.violations, [])
    })
  )

  it.live("PINGs when idle, answered by PONGs", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ limits: { heartbeatMs: 20, idleTimeoutMs: 2_000 } })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      yield* waitFor("PINGs", () => gw.pings >= 3)
      assert.strictEqual(transport.status(), "open")
      assert.strictEqual(gw.conns.length, 1)
    })
  )

  it.live("a server that sends nothing for idleTimeoutMs is left (idle_timeout) and the transport reconnects", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ limits: { heartbeatMs: 20, idleTimeoutMs: 60 }, pong: false })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t", backoff: fast })
      yield* waitFor("a reconnect", () => gw.conns.length >= 2)
      assert.match(transport.stats().lastError ?? "", /idle_timeout/)
      assert.deepStrictEqual(gw.violations, ["conn 1: client sent ERROR idle_timeout: nothing received for 60 ms"])
    })
  )

  it.live("flush and shutdown work through the wire", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ onBatch: (g, conn, frame) => setTimeout(() => g.ack(conn, frame), 1) })
      const A = EventType.make("wire.Shutdown", 1, I, { batch: { maxSize: 16, lingerMs: 5 } })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      let last: Batch | undefined
      const send = (batch: Batch) => {
        last = batch
        return transport.process(batch)
      }
      const trail = yield* Trail.make({ source: "h", process: send, types: [A] })
      for (let i = 0; i < 100; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      assert.strictEqual(gw.recorded.size, 100)
      for (let i = 100; i < 300; i++) trail.logUnsafe(A, { i })
      const stats = yield* trail.shutdown
      assert.strictEqual(stats.totals.processed, 300)
      assert.strictEqual(gw.recorded.size, 300)
      checkAccounting(trail)
      yield* transport.close
      assert.strictEqual(transport.status(), "closed")
      yield* waitFor("the server to see the close", () => gw.conns[0]!.ws.readyState === gw.conns[0]!.ws.CLOSED)
      // a batch after close fails at once
      const exit = yield* Effect.exit(transport.process(last!))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.instanceOf(Cause.squash(exit.cause), Errors.TransportClosed)
    })
  )

  it.live(
    "shutdown with the server unreachable dead-letters must events after shutdownTimeoutMs; nothing uncounted",
    () =>
      Effect.gen(function* () {
        const url = yield* deadUrl
        const M = EventType.make("wire.Unreachable", 1, I, { batch: { maxSize: 5, lingerMs: 0 } })
        const D = EventType.make("wire.UnreachableDrop", 1, I, {
          delivery: "droppable",
          batch: { maxSize: 5, lingerMs: 0 }
        })
        const transport = yield* Transport.make({ url, harness: "h", token: "t", backoff: fast })
        const trail = yield* Trail.make({
          source: "h",
          process: transport.process,
          types: [M, D],
          concurrency: 4,
          shutdownTimeoutMs: 200,
          droppableBudgetMs: 50
        })
        for (let i = 0; i < 20; i++) {
          trail.logUnsafe(M, { i })
          trail.logUnsafe(D, { i })
        }
        yield* waitFor("the batches to reach the transport", () => transport.stats().pending > 0)
        const stats = yield* trail.shutdown
        const m = stats.types["wire.Unreachable@1"]!
        const d = stats.types["wire.UnreachableDrop@1"]!
        assert.strictEqual(m.accepted, 20)
        assert.strictEqual(m.deadLettered, 20)
        assert.strictEqual(d.accepted, 20)
        assert.strictEqual(d.dropped.shutdown, 20)
        checkAccounting(trail)
        const causes = trail.deadLettersUnsafe().map((l) => Cause.squash(l.cause))
        assert.isTrue(causes.every((c) => c instanceof Errors.ShutdownDeadline))
        // the interrupted batches left the transport's queue: nothing is sent later
        const t = transport.stats()
        assert.strictEqual(t.pending, 0)
        assert.strictEqual(t.inFlight, 0)
        assert.strictEqual(t.sent, 0)
        assert.include(["connecting", "waiting"], t.status)
        assert.match(t.lastError ?? "", /ECONNREFUSED|connection/)
      })
  )

  it.live("close waits for the acks in flight, then closes with 1000", () =>
    Effect.gen(function* () {
      const closes: Array<number> = []
      const gw = yield* gateway({ onBatch: (g, conn, frame) => setTimeout(() => g.ack(conn, frame), 30) })
      gw.wss.on("connection", (ws) => ws.on("close", (code) => closes.push(code)))
      const A = EventType.make("wire.Close", 1, I, { batch: { maxSize: 5, lingerMs: 0 }, retry: Schedule.recurs(1) })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      yield* waitFor("WELCOME", () => transport.status() === "open")
      trail.logUnsafe(A, { i: 0 })
      yield* waitFor("a batch in flight", () => transport.stats().inFlight === 1)
      yield* transport.close
      assert.strictEqual(transport.stats().acked, 1)
      yield* waitFor("the close", () => closes.length === 1)
      assert.deepStrictEqual(closes, [1000])
      yield* trail.flush
      assert.strictEqual(trail.statsUnsafe().types["wire.Close@1"]!.processed, 1)
      // refused after close
      trail.logUnsafe(A, { i: 1 })
      yield* trail.flush
      const s = trail.statsUnsafe().types["wire.Close@1"]!
      assert.strictEqual(s.processed, 1)
      assert.strictEqual(s.deadLettered, 1)
      assert.instanceOf(Cause.squash(trail.deadLettersUnsafe()[0]!.cause), Errors.TransportClosed)
    })
  )

  it.live("a server that never answers HELLO is left after connectTimeoutMs, and tried again", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ silent: true })
      const transport = yield* Transport.make({
        url: gw.url,
        harness: "h",
        token: "t",
        connectTimeoutMs: 30,
        backoff: fast
      })
      yield* waitFor("a second connection", () => gw.conns.length >= 2)
      assert.match(transport.stats().lastError ?? "", /no WELCOME within 30 ms/)
      assert.isTrue(gw.hellos.length >= 1)
    })
  )

  it.live("an ACK for a seq not in flight: ERROR unexpected_frame to the server, and the transport stops", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({
        onBatch: (g, conn, frame) => g.send(conn, { _tag: "Ack", seq: frame.seq + 100, outcomes: undefined })
      })
      const A = EventType.make("wire.BadAck", 1, I, { batch: { maxSize: 5, lingerMs: 0 }, retry: Schedule.recurs(0) })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t", backoff: fast })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
      for (let i = 0; i < 5; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      assert.strictEqual(trail.statsUnsafe().types["wire.BadAck@1"]!.deadLettered, 5)
      const error = Cause.squash(trail.deadLettersUnsafe()[0]!.cause) as Errors.ProtocolError
      assert.strictEqual(error.wireCode, "unexpected_frame")
      assert.strictEqual(transport.status(), "failed")
      yield* waitFor("the ERROR at the server", () => gw.violations.length > 0)
      assert.deepStrictEqual(gw.violations, [
        "conn 1: client sent ERROR unexpected_frame: ACK for BATCH 101, which is not in flight"
      ])
      assert.strictEqual(gw.conns.length, 1)
    })
  )

  it.live("paces itself to maxEventsPerSecond: the server's rate bucket never runs dry", () =>
    Effect.gen(function* () {
      const gw = yield* gateway({ limits: { maxEventsPerSecond: 200, maxBatchEvents: 20 } })
      const A = EventType.make("wire.Paced", 1, I, { batch: { maxSize: 20, lingerMs: 0 }, concurrency: 4 })
      const transport = yield* Transport.make({ url: gw.url, harness: "h", token: "t" })
      const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A], concurrency: 4 })
      for (let i = 0; i < 320; i++) trail.logUnsafe(A, { i })
      yield* trail.flush
      assert.strictEqual(gw.recorded.size, 320)
      assert.deepStrictEqual(gw.violations, [])
    })
  )

  it.live("invalid options fail make with InvalidOptions", () =>
    Effect.gen(function* () {
      for (const options of [
        { url: "http://127.0.0.1:1/x", harness: "h", token: "t" },
        { url: "not a url", harness: "h", token: "t" },
        { url: "ws://127.0.0.1:1/x", harness: "", token: "t" },
        { url: "ws://127.0.0.1:1/x", harness: "h", token: "t", window: 0 },
        { url: "ws://127.0.0.1:1/x", harness: "h", token: "t", connectTimeoutMs: -1 }
      ]) {
        const exit = yield* Effect.exit(Transport.make(options))
        assert.isTrue(Exit.isFailure(exit), JSON.stringify(options))
        if (Exit.isFailure(exit)) assert.instanceOf(Cause.squash(exit.cause), Errors.InvalidOptions)
      }
    })
  )

  it("lets the process exit: no timer or socket is left once the scope is closed", () => {
    const src = pathToFileURL(`${process.cwd()}/src/index.ts`).href
    const script = `
      import { Effect, Schedule, Schema } from "effect"
      import { WebSocketServer } from "ws"
      import { EventType, Protocol, Trail, Transport } from ${JSON.stringify(src)}
      const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 })
      await new Promise((r) => wss.once("listening", r))
      wss.on("connection", (ws) => ws.on("message", (data) => {
        const f = Protocol.decodeFrame(data)
        if (f._tag === "Hello") ws.send(Protocol.encodeFrame({ _tag: "Welcome", version: 1, session: "s",
          limits: Protocol.welcomeLimits({ ...Protocol.defaults, heartbeatMs: 30, idleTimeoutMs: 1000 }) }))
        if (f._tag === "Batch") ws.send(Protocol.encodeFrame({ _tag: "Ack", seq: f.seq, outcomes: undefined }))
        if (f._tag === "Ping") ws.send(Protocol.encodeFrame({ _tag: "Pong", nonce: f.nonce }))
      }))
      const A = EventType.make("exit.Wire", 1, Schema.Struct({ i: Schema.Number }), { batch: { maxSize: 10, lingerMs: 5 } })
      const url = "ws://127.0.0.1:" + wss.address().port + "/x"
      const processed = await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
        const transport = yield* Transport.make({ url, harness: "h", token: "t" })
        // a second transport that never connects: it is waiting for a long backoff when closed
        yield* Transport.make({ url: "ws://127.0.0.1:1/none", harness: "h", token: "t", backoff: Schedule.spaced("1 hour") })
        const trail = yield* Trail.make({ source: "h", process: transport.process, types: [A] })
        for (let i = 0; i < 500; i++) trail.logUnsafe(A, { i })
        yield* trail.flush
        yield* Effect.sleep(100)
        return trail.statsUnsafe().totals.processed
      })))
      await new Promise((r) => wss.close(r))
      process.stdout.write(JSON.stringify({ processed }) + "\\n")
    `
    const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: process.cwd(),
      encoding: "utf8",
      timeout: 10_000
    })
    assert.isNull(result.error ?? null, `the child did not exit: ${String(result.error)}\n${result.stderr}`)
    assert.strictEqual(result.status, 0, result.stderr)
    assert.deepStrictEqual(JSON.parse(result.stdout), { processed: 500 })
  })
})
