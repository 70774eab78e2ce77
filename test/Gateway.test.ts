/**
 * The gateway on 127.0.0.1 with real `ws` clients speaking raw frames: the session
 * lifecycle, authentication and revocation, every limit with its code and close code,
 * malformed input, per-event outcomes, de-duplication, backpressure, drain, many
 * sessions at once, the HTTP side and the metrics.
 */
import { createConnection } from "node:net"
import { setTimeout as sleep } from "node:timers/promises"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Metric, Schema } from "effect"
import { Errors, EventType, Gateway, type Ingest, Protocol, Trail } from "../src/index.ts"
import {
  Client,
  columns,
  type Env,
  gate,
  HARNESS,
  hello,
  id,
  rows,
  Step,
  start,
  TOKEN,
  wireFrame
} from "./fixtures/gateway-client.ts"
import { fixtures } from "./fixtures/protocol/frames.ts"

const bytesOf = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ""), "hex"))
const fixture = (name: string): Uint8Array => {
  const f = fixtures.find((x) => x.name === name)
  if (f === undefined) throw new Error(`no fixture ${name}`)
  return bytesOf(f.hex)
}

/** Runs a test against a fresh gateway, stopped at the end whatever happens. */
const withGateway = async (options: Parameters<typeof start>[0], body: (env: Env) => Promise<void>) => {
  const env = await start(options)
  try {
    await body(env)
  } finally {
    await env.stop()
  }
  // a session's failure is a protocol error, never a crash of ours
  assert.deepStrictEqual(
    env.logs.filter((l) => l.message.includes("unexpectedly")),
    []
  )
}

const rejects = async (promise: Promise<unknown>, message: RegExp) => {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e
  )
  assert.instanceOf(error, Error)
  assert.match((error as Error).message, message)
}

const processed = (env: Env, key = "train.Step@1"): number => env.trail.statsUnsafe().types[key]?.processed ?? 0
const accepted = (env: Env, key = "train.Step@1"): number => env.trail.statsUnsafe().types[key]?.accepted ?? 0
const flush = (env: Env) => Effect.runPromise(env.trail.flush)

/** Polls a condition of the server (its sessions, stats), with a deadline. */
const eventually = async (check: () => boolean, what: string) => {
  for (let i = 0; i < 1_000; i++) {
    if (check()) return
    await sleep(5)
  }
  throw new Error(`never: ${what}`)
}

describe("Gateway: session", () => {
  it("HELLO gets a WELCOME with the session id and the limits; BATCHes are acked; PING gets PONG", () =>
    withGateway({ limits: { maxInFlight: 4 } }, async (env) => {
      const client = new Client(env.gateway.url)
      await client.opened()
      client.send(hello())
      const welcome = await client.next("Welcome")
      assert.strictEqual(welcome.version, 1)
      assert.match(welcome.session, /^s-[0-9a-z]+$/)
      assert.deepStrictEqual(welcome.limits, Protocol.welcomeLimits(Protocol.limits({ maxInFlight: 4 })))
      const [info] = env.gateway.sessions()
      assert.strictEqual(info?.id, welcome.session)
      assert.strictEqual(info?.harness, HARNESS)
      assert.strictEqual(info?.state, "streaming")
      assert.deepStrictEqual(info?.client, { name: "test", version: "0" })

      client.send(
        rows(1, [
          [id(0), { step: 0 }],
          [id(1), { step: 1 }]
        ])
      )
      client.send(columns(2, 10, 50))
      assert.deepStrictEqual(await client.next("Ack"), { _tag: "Ack", seq: 1, outcomes: undefined })
      assert.deepStrictEqual(await client.next("Ack"), { _tag: "Ack", seq: 2, outcomes: undefined })
      client.send({ _tag: "Ping", nonce: 4_000_000_000 })
      assert.deepStrictEqual(await client.next("Pong"), { _tag: "Pong", nonce: 4_000_000_000 })
      await flush(env)
      assert.strictEqual(processed(env), 52)
      const stats = env.gateway.stats()
      assert.deepStrictEqual(stats.sessions, { open: 1, total: 1, paused: 0 })
      assert.deepStrictEqual(stats.batches, { received: 2, acked: 2, inFlight: 0 })
      assert.strictEqual(stats.events.accepted, 52)
      const session = env.gateway.sessions()[0]!
      assert.strictEqual(session.batches, 2)
      assert.strictEqual(session.events, 52)

      // a clean close by the client ends the session
      client.ws.close(1000)
      assert.strictEqual((await client.close()).code, 1000)
      await eventually(() => env.gateway.sessions().length === 0, "the session is gone")
      assert.deepStrictEqual(env.gateway.stats().errors, zeroErrors())
    }))

  it("the fixtures of docs/protocol.md, sent as bytes, are acked", () =>
    withGateway({}, async (env) => {
      const client = new Client(env.gateway.url)
      await client.opened()
      // the fixture's HELLO is trainer-7 / s3cret: our test harness
      client.sendRaw(fixture("hello"))
      await client.next("Welcome")
      client.sendRaw(fixture("batch-rows"))
      assert.deepStrictEqual(await client.next("Ack"), { _tag: "Ack", seq: 1, outcomes: undefined })
      // the same two events in columns, as seq 2: both duplicates
      client.sendRaw(fixture("batch-columns"))
      assert.deepStrictEqual((await client.next("Ack")).outcomes, [
        [0, "duplicate", ""],
        [1, "duplicate", ""]
      ])
      client.sendRaw(fixture("ping"))
      assert.deepStrictEqual(await client.next("Pong"), { _tag: "Pong", nonce: 42 })
      await flush(env)
      assert.strictEqual(processed(env), 2)
    }))

  it("acks of different keys may pass each other; one key's batches are acked in seq order", () =>
    withGateway(
      {
        types: [Step, EventType.make("train.Loss", 2, Schema.Number, { batch: { maxSize: 64, lingerMs: 0 } })]
      },
      async (env) => {
        const client = await Client.open(env.gateway.url)
        let seq = 0
        for (let b = 0; b < 6; b++) {
          client.send(columns(++seq, b * 10, 10))
          client.send(rows(++seq, [[id(1000 + b, "MMMMMMMM"), 0.5]], "train.Loss@2"))
        }
        await client.until(() => (client.all("Ack").length === 12 ? true : undefined), "12 acks")
        const stepAcks = client
          .all("Ack")
          .map((a) => a.seq)
          .filter((s) => s % 2 === 1)
        assert.deepStrictEqual(stepAcks, [1, 3, 5, 7, 9, 11])
        await flush(env)
        assert.strictEqual(processed(env), 60)
        assert.strictEqual(processed(env, "train.Loss@2"), 6)
      }
    ))
})

describe("Gateway: many keys", () => {
  it("a session cycling through 200 keys is served in order", () =>
    withGateway({}, async (env) => {
      const client = await Client.open(env.gateway.url)
      for (let k = 1; k <= 200; k++) {
        client.send(rows(k, [[id(k), { step: k }]], k % 2 === 0 ? "train.Step@1" : `other.Key${k}@1`))
      }
      await client.until(() => (client.all("Ack").length === 200 ? true : undefined), "200 acks")
      for (const ack of client.all("Ack")) {
        assert.strictEqual(ack.outcomes?.[0]?.[1], ack.seq % 2 === 0 ? undefined : "unknown_type")
      }
      await flush(env)
      assert.strictEqual(processed(env), 100)
    }))
})

const zeroErrors = () => {
  const out: Record<string, number> = {}
  for (const code of Object.keys(Protocol.codes)) out[code] = 0
  return out
}

describe("Gateway: authentication", () => {
  it("a wrong, empty or unknown token is unauthorized (4001) and nothing of the connection is accepted", () =>
    withGateway({}, async (env) => {
      for (const [harness, token] of [
        [HARNESS, "wrong"],
        [HARNESS, ""],
        ["someone-else", TOKEN]
      ] as const) {
        const client = new Client(env.gateway.url)
        await client.opened()
        client.send(hello(harness, token))
        // sent before the answer: discarded with the connection
        client.send(rows(1, [[id(0), { step: 0 }]]))
        const { error, closed } = await client.error()
        assert.strictEqual(error.code, "unauthorized")
        assert.strictEqual(error.message, `no valid token for harness ${harness}`)
        assert.deepStrictEqual(closed, { code: 4001, reason: "unauthorized" })
        assert.strictEqual(client.all("Welcome").length, 0)
        assert.strictEqual(client.all("Ack").length, 0)
      }
      await flush(env)
      assert.strictEqual(accepted(env), 0)
      assert.strictEqual(env.ingest.stats().batches, 0)
      assert.strictEqual(env.gateway.stats().errors.unauthorized, 3)
    }))

  it("revoking a token closes its sessions with token_revoked (4003); what was acked stays; set brings it back", () =>
    withGateway({ tokens: { [HARNESS]: TOKEN, other: "other-token" } }, async (env) => {
      const client = await Client.open(env.gateway.url)
      const bystander = await Client.open(env.gateway.url, "other", "other-token")
      client.send(
        rows(1, [
          [id(0), { step: 0 }],
          [id(1), { step: 1 }]
        ])
      )
      await client.next("Ack")
      env.gateway.tokens.revoke(HARNESS)
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "token_revoked")
      assert.strictEqual(error.message, `the token of harness ${HARNESS} was revoked`)
      assert.deepStrictEqual(closed, { code: 4003, reason: "token_revoked" })
      assert.isFalse(env.gateway.tokens.has(HARNESS))
      // a new connection with the old token is refused
      const again = new Client(env.gateway.url)
      await again.opened()
      again.send(hello())
      assert.strictEqual((await again.error()).closed.code, 4001)
      // the other harness is untouched
      bystander.send(rows(1, [[id(5, "BBBBBBBB"), { step: 5 }]]))
      await bystander.next("Ack")
      await flush(env)
      assert.strictEqual(processed(env), 3)

      // set: the harness may connect again; replacing its token closes sessions opened with the old one
      env.gateway.tokens.set(HARNESS, "new-token")
      const renewed = await Client.open(env.gateway.url, HARNESS, "new-token")
      env.gateway.tokens.set(HARNESS, "newer-token")
      assert.strictEqual((await renewed.error()).closed.code, 4003)
      env.gateway.tokens.set("other", "other-token") // the same token: nothing happens
      bystander.send({ _tag: "Ping", nonce: 1 })
      await bystander.next("Pong")
      bystander.end()
    }))
})

describe("Gateway: limits", () => {
  it("a frame over maxFrameBytes is frame_too_large (1009), before decoding; far over it ws closes with 1009", () =>
    withGateway({ limits: { maxFrameBytes: 1_024 } }, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send(rows(1, [[id(0), { step: 0 }]]))
      await client.next("Ack")
      const big = new Uint8Array(2_000).fill(0xc1) // not even MessagePack: never decoded
      client.sendRaw(big)
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "frame_too_large")
      assert.strictEqual(error.message, "a frame of 2000 bytes is larger than the limit of 1024")
      assert.deepStrictEqual(closed, { code: 1009, reason: "frame_too_large" })
      // the HELLO too
      const early = new Client(env.gateway.url)
      await early.opened()
      early.sendRaw(new Uint8Array(1_025))
      assert.strictEqual((await early.error()).error.code, "frame_too_large")
      // beyond the WebSocket layer's own limit (maxFrameBytes doubled): ws refuses it
      const huge = await Client.open(env.gateway.url)
      huge.sendRaw(new Uint8Array(10_000))
      assert.strictEqual((await huge.close()).code, 1009)
      await flush(env)
      assert.strictEqual(processed(env), 1)
    }))

  it("a BATCH over maxBatchEvents is batch_too_large (4013)", () =>
    withGateway({ limits: { maxBatchEvents: 4, maxEventsPerSecond: 1_000 } }, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send(columns(1, 0, 4))
      await client.next("Ack")
      client.send(columns(2, 4, 5))
      const { error, closed } = await client.error()
      assert.deepStrictEqual(error, {
        _tag: "Error",
        code: "batch_too_large",
        message: "a BATCH has 5 events, more than the limit of 4",
        seq: 2
      })
      assert.deepStrictEqual(closed, { code: 4013, reason: "batch_too_large" })
      await flush(env)
      assert.strictEqual(processed(env), 4)
    }))

  it("a BATCH beyond maxInFlight unacked batches is window_exceeded (4009)", () => {
    const blocked = gate()
    const Slow = EventType.make("train.Slow", 1, Schema.Number, {
      batch: { maxSize: 1, lingerMs: 0 },
      mailbox: { capacity: 1, overflow: "backpressure" }
    })
    return withGateway(
      { types: [Trail.route(Slow, () => blocked.wait)], limits: { maxInFlight: 2 }, drainMs: 0 },
      async (env) => {
        const client = await Client.open(env.gateway.url)
        // three batches written to the socket at once: the third arrives with two unacked
        const frames = [1, 2, 3].map((seq) =>
          wireFrame(
            Protocol.encodeFrame(
              rows(
                seq,
                [0, 1, 2].map((i) => [id(seq * 10 + i), i] as const),
                "train.Slow@1"
              )
            ).slice()
          )
        )
        const socket = (client.ws as unknown as { _socket: import("node:net").Socket })._socket
        socket.write(Buffer.concat(frames))
        const { error, closed } = await client.error()
        assert.deepStrictEqual(error, {
          _tag: "Error",
          code: "window_exceeded",
          message: "BATCH 3 sent with 2 batches unacked, at most 2",
          seq: 3
        })
        assert.deepStrictEqual(closed, { code: 4009, reason: "window_exceeded" })
        assert.strictEqual(client.all("Ack").length, 0)
        blocked.open()
      }
    )
  })

  it("more events than the rate bucket holds is rate_limited (4029)", () =>
    withGateway({ limits: { maxEventsPerSecond: 10, maxBatchEvents: 10 } }, async (env) => {
      const client = await Client.open(env.gateway.url)
      // 30 events at once on a bucket of 10 refilled at 10 per second
      client.send(columns(1, 0, 10))
      client.send(columns(2, 10, 10))
      client.send(columns(3, 20, 10))
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "rate_limited")
      assert.match(error.message, /^a BATCH of 10 events is over the limit of 10 events per second \(\d left\)$/)
      assert.deepStrictEqual(closed, { code: 4029, reason: "rate_limited" })
      const acked = client.all("Ack").length
      assert.isAtLeast(acked, 1)
      assert.strictEqual(error.seq, acked + 1)
      await flush(env)
      assert.strictEqual(processed(env), acked * 10)
    }))

  it("past maxSessions a connection is refused with too_many_sessions (1013)", () =>
    withGateway({ limits: { maxSessions: 2 } }, async (env) => {
      const a = await Client.open(env.gateway.url)
      const b = new Client(env.gateway.url) // a session even before its HELLO
      await b.opened()
      await eventually(() => env.gateway.sessions().length === 2, "two sessions")
      const c = new Client(env.gateway.url)
      const { error, closed } = await c.error()
      assert.deepStrictEqual(error, {
        _tag: "Error",
        code: "too_many_sessions",
        message: "2 sessions are open, at most 2",
        seq: undefined
      })
      assert.deepStrictEqual(closed, { code: 1013, reason: "too_many_sessions" })
      // a slot frees: the next one gets in
      a.ws.close(1000)
      await eventually(() => env.gateway.sessions().length === 1, "a slot")
      const d = await Client.open(env.gateway.url)
      d.send({ _tag: "Ping", nonce: 3 })
      await d.next("Pong")
      assert.strictEqual(env.gateway.stats().errors.too_many_sessions, 1)
      b.end()
      d.end()
    }))

  it("no HELLO within helloTimeoutMs is hello_timeout (4008)", () =>
    withGateway({ limits: { helloTimeoutMs: 100 } }, async (env) => {
      const client = new Client(env.gateway.url)
      await client.opened()
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "hello_timeout")
      assert.strictEqual(error.message, "no HELLO within 100 ms")
      assert.deepStrictEqual(closed, { code: 4008, reason: "hello_timeout" })
    }))

  it("the server PINGs when it has sent nothing for heartbeatMs, and closes after idleTimeoutMs of silence (4008)", () =>
    withGateway({ limits: { heartbeatMs: 40, idleTimeoutMs: 300 } }, async (env) => {
      const client = await Client.open(env.gateway.url)
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "idle_timeout")
      assert.strictEqual(error.message, "nothing received for 300 ms")
      assert.deepStrictEqual(closed, { code: 4008, reason: "idle_timeout" })
      assert.isAtLeast(client.all("Ping").length, 1)
      // while a client answers (any frame counts), it stays
      const live = await Client.open(env.gateway.url)
      live.ws.on("message", (data) => {
        const frame = Protocol.decodeFrame(data as Uint8Array)
        if (frame._tag === "Ping") live.send({ _tag: "Pong", nonce: frame.nonce })
      })
      await live.until(() => (live.all("Ping").length >= 12 ? true : undefined), "12 PINGs")
      assert.isUndefined(live.closed)
      live.end()
    }))
})

describe("Gateway: protocol errors", () => {
  it("malformed and truncated frames: an ERROR with its code, the close code; what was acked stays", () =>
    withGateway({}, async (env) => {
      const batchRows = fixture("batch-rows")
      const cases: ReadonlyArray<readonly [string, Uint8Array, string, number, RegExp]> = [
        ["a byte never used", Uint8Array.of(0xc1), "bad_msgpack", 1007, /0xc1/],
        [
          "a truncated BATCH",
          batchRows.subarray(0, batchRows.length - 5),
          "bad_msgpack",
          1007,
          /the input ends in the middle of a value/
        ],
        ["bytes left over", Uint8Array.from([...fixture("ping"), 0x01]), "bad_msgpack", 1007, /left|byte 3/],
        ["not an array", Uint8Array.of(0x2a), "bad_frame", 1002, /a frame must be a MessagePack array, got 42/],
        ["an unknown kind", Uint8Array.of(0x92, 0x09, 0x01), "bad_frame", 1002, /kind/],
        [
          "a bad key",
          Protocol.encodeFrame(rows(2, [[id(9), { step: 9 }]], "no-version")),
          "bad_frame",
          1002,
          /BATCH key/
        ],
        [
          "a bad event id",
          Protocol.encodeFrame(rows(2, [["not-an-id", { step: 9 }]])),
          "bad_frame",
          1002,
          /event 0 id/
        ],
        ["an empty BATCH", Protocol.encodeFrame(rows(2, [])), "bad_frame", 1002, /at least 1 event/]
      ]
      let n = 0
      for (const [what, bytes, code, closeCode, message] of cases) {
        const client = await Client.open(env.gateway.url)
        client.send(rows(1, [[id(100 + n), { step: n }]]))
        await client.next("Ack")
        n++
        client.sendRaw(bytes)
        const { error, closed } = await client.error()
        assert.strictEqual(error.code, code, what)
        assert.match(error.message, message, what)
        assert.deepStrictEqual(closed, { code: closeCode, reason: code }, what)
      }
      await flush(env)
      assert.strictEqual(processed(env), cases.length)
      assert.strictEqual(env.gateway.stats().errors.bad_msgpack, 3)
      assert.strictEqual(env.gateway.stats().errors.bad_frame, 5)
    }))

  it("a text frame is text_frame (1003): exactly the ERROR of the fixture", () =>
    withGateway({}, async (env) => {
      const client = await Client.open(env.gateway.url)
      const raw: Array<Buffer> = []
      client.ws.on("message", (data) => raw.push(Buffer.from(data as Buffer)))
      client.sendRaw("hello")
      const { closed } = await client.error()
      assert.deepStrictEqual(closed, { code: 1003, reason: "text_frame" })
      assert.deepStrictEqual(new Uint8Array(raw.at(-1)!), fixture("error-text-frame"))
    }))

  it("session rules: hello_expected, unsupported_version, unexpected_frame, sequence", () =>
    withGateway({}, async (env) => {
      const expect = async (
        setup: (client: Client) => void,
        welcome: boolean,
        code: string,
        closeCode: number,
        message: string
      ) => {
        const client = welcome ? await Client.open(env.gateway.url) : new Client(env.gateway.url)
        await client.opened()
        setup(client)
        const { error, closed } = await client.error()
        assert.strictEqual(error.code, code)
        assert.strictEqual(error.message, message)
        assert.deepStrictEqual(closed, { code: closeCode, reason: code })
      }
      await expect(
        (c) => c.send(rows(1, [[id(0), { step: 0 }]])),
        false,
        "hello_expected",
        1002,
        "the first frame must be a HELLO, got a BATCH"
      )
      await expect(
        (c) => c.send({ _tag: "Ping", nonce: 1 }),
        false,
        "hello_expected",
        1002,
        "the first frame must be a HELLO, got a PING"
      )
      await expect(
        (c) => c.send(hello(HARNESS, TOKEN, 2)),
        false,
        "unsupported_version",
        4026,
        "protocol version 2 is not supported; supported: 1"
      )
      await expect((c) => c.send(hello()), true, "unexpected_frame", 1002, "a second HELLO on one connection")
      await expect(
        (c) => c.send({ _tag: "Welcome", version: 1, session: "x", limits: Protocol.welcomeLimits(Protocol.defaults) }),
        true,
        "unexpected_frame",
        1002,
        "a client does not send WELCOME"
      )
      await expect(
        (c) => c.send({ _tag: "Ack", seq: 1, outcomes: undefined }),
        true,
        "unexpected_frame",
        1002,
        "a client does not send ACK"
      )
      await expect(
        (c) => c.send(rows(2, [[id(0), { step: 0 }]])),
        true,
        "sequence",
        1002,
        "BATCH 2 as the first BATCH, expected 1"
      )
      await expect(
        (c) => {
          c.send(rows(1, [[id(0), { step: 0 }]]))
          c.send(rows(1, [[id(1), { step: 1 }]]))
        },
        true,
        "sequence",
        1002,
        "BATCH 1 after BATCH 1, expected 2"
      )
    }))

  it("an ERROR from the client ends its session; the server sends nothing back", () =>
    withGateway({}, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send({ _tag: "Error", code: "internal", message: "the harness is going down", seq: undefined })
      const closed = await client.close()
      assert.strictEqual(closed.code, 1011)
      assert.strictEqual(client.all("Error").length, 0)
      assert.strictEqual(env.gateway.stats().peerErrors, 1)
    }))
})

describe("Gateway: events", () => {
  it("validates per event: the invalid and unknown-typed are listed in the ACK, the valid ones reach the trail", () =>
    withGateway({}, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send(
        rows(1, [
          [id(0), { step: 0 }],
          [id(1), { step: "one" }],
          [id(2), { step: 2 }],
          [id(3), {}],
          [id(4), { step: 4 }]
        ])
      )
      const ack = await client.next("Ack")
      assert.deepStrictEqual(ack.outcomes, [
        [1, "invalid", "invalid data for train.Step@1 (1 issue): step: Expected number"],
        [3, "invalid", "invalid data for train.Step@1 (1 issue): step: Missing key"]
      ])
      client.send(
        rows(
          2,
          [
            [id(5), { step: 5 }],
            [id(6), { step: 6 }]
          ],
          "train.Nope@1"
        )
      )
      const unknown = await client.next("Ack")
      assert.deepStrictEqual(
        unknown.outcomes?.map(([i, code]) => [i, code]),
        [
          [0, "unknown_type"],
          [1, "unknown_type"]
        ]
      )
      assert.isAbove(unknown.outcomes![0]![2].length, 0)
      await flush(env)
      assert.strictEqual(processed(env), 3)
      const events = env.gateway.stats().events
      assert.deepStrictEqual(events, {
        received: 7,
        accepted: 3,
        duplicate: 0,
        invalid: 2,
        unknownType: 2,
        rejected: 0
      })
    }))

  it("a resent batch is acked as duplicates and recorded once, on the same or a new connection", () =>
    withGateway({}, async (env) => {
      const events = [0, 1, 2].map((i) => [id(i), { step: i }] as const)
      const first = await Client.open(env.gateway.url)
      first.send(rows(1, [...events, events[0]!]))
      assert.deepStrictEqual((await first.next("Ack")).outcomes, [[3, "duplicate", ""]])
      first.send(rows(2, events))
      assert.strictEqual((await first.next("Ack")).outcomes?.length, 3)
      first.end()
      const second = await Client.open(env.gateway.url)
      second.send(rows(1, [...events, [id(3), { step: 3 }]]))
      assert.deepStrictEqual(
        (await second.next("Ack")).outcomes,
        [0, 1, 2].map((i) => [i, "duplicate", ""])
      )
      await flush(env)
      assert.strictEqual(processed(env), 4)
      assert.strictEqual(env.gateway.stats().events.duplicate, 7)
    }))

  it("a failing store gets internal (1011): nothing of the batch is acked", () => {
    let fail = false
    const store: Ingest.Store = {
      record: (_key, events) => (fail ? Effect.fail("disk full") : Effect.succeed(events.map(() => true)))
    }
    return withGateway({ store }, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send(rows(1, [[id(0), { step: 0 }]]))
      await client.next("Ack")
      fail = true
      client.send(rows(2, [[id(1), { step: 1 }]]))
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "internal")
      assert.strictEqual(error.seq, 2)
      assert.match(error.message, /BATCH 2 could not be accepted: disk full/)
      assert.deepStrictEqual(closed, { code: 1011, reason: "internal" })
      assert.strictEqual(client.all("Ack").length, 1)
      assert.isTrue(env.logs.some((l) => l.level === "Error" && l.message === "BATCH 2 could not be accepted"))
    })
  })
})

describe("Gateway: backpressure and drain", () => {
  it("a full mailbox withholds acks; with its window full the session is not read, then resumes", () => {
    const blocked = gate()
    const Slow = EventType.make("train.Slow", 1, Schema.Number, {
      batch: { maxSize: 2, lingerMs: 0 },
      mailbox: { capacity: 2, overflow: "backpressure" }
    })
    return withGateway({ types: [Trail.route(Slow, () => blocked.wait)], limits: { maxInFlight: 2 } }, async (env) => {
      const client = await Client.open(env.gateway.url)
      let seq = 0
      const send = () => {
        seq++
        client.send(
          rows(
            seq,
            [0, 1, 2, 3].map((i) => [id(seq * 10 + i), seq * 10 + i] as const),
            "train.Slow@1"
          )
        )
      }
      // keep the window full (as a client does) until the server stops reading for
      // good: the first batch filled the mailbox and was acked, and the two batches of
      // the window wait for room (a pause seen while an earlier batch's ack is still on
      // its way ends with that ack)
      await eventually(() => {
        while (seq - client.all("Ack").length < 2) send()
        const acks = client.all("Ack").length
        return env.gateway.sessions()[0]?.paused === true && acks >= 1 && acks === seq - 2
      }, "the session paused")
      const acked = client.all("Ack").length
      const session = env.gateway.sessions()[0]!
      assert.strictEqual(session.inFlight, 2)
      assert.strictEqual(env.gateway.stats().sessions.paused, 1)
      // what is sent now is not read: no PONG, no frame counted
      const received = env.gateway.stats().frames.received
      client.send({ _tag: "Ping", nonce: 77 })
      await sleep(100)
      assert.strictEqual(client.all("Pong").length, 0)
      assert.strictEqual(env.gateway.stats().frames.received, received)
      assert.strictEqual(client.all("Ack").length, acked)

      blocked.open()
      await client.next("Pong")
      await client.until(() => (client.all("Ack").length === seq ? true : undefined), "every ack")
      assert.deepStrictEqual(
        client.all("Ack").map((a) => a.seq),
        Array.from({ length: seq }, (_, i) => i + 1)
      )
      await flush(env)
      assert.strictEqual(processed(env, "train.Slow@1"), seq * 4)
      assert.strictEqual(env.gateway.stats().sessions.paused, 0)
      assert.isFalse(env.gateway.sessions()[0]!.paused)
    })
  })

  it("shutdown: DRAIN, the batches in flight are acked, then going_away (1001)", () => {
    const blocked = gate()
    const Slow = EventType.make("train.Slow", 1, Schema.Number, {
      batch: { maxSize: 1, lingerMs: 0 },
      mailbox: { capacity: 1, overflow: "backpressure" }
    })
    return withGateway({ types: [Trail.route(Slow, () => blocked.wait)], drainMs: 10_000 }, async (env) => {
      const client = await Client.open(env.gateway.url)
      const waiting = new Client(env.gateway.url) // no HELLO yet: goes at once
      await waiting.opened()
      client.send(
        rows(
          1,
          [0, 1, 2, 3].map((i) => [id(i), i] as const),
          "train.Slow@1"
        )
      )
      await eventually(() => env.gateway.stats().batches.inFlight === 1, "a batch in flight")
      const stopping = Effect.runPromise(env.gateway.shutdown)
      const drain = await client.next("Drain")
      assert.strictEqual(drain.reason, "the server is shutting down")
      assert.strictEqual((await waiting.error()).closed.code, 1001)
      assert.strictEqual(client.all("Ack").length, 0)
      // a new connection is refused now
      const late = new Client(env.gateway.url)
      await rejects(late.opened(), /./)
      blocked.open()
      const ack = await client.next("Ack")
      assert.strictEqual(ack.seq, 1)
      const { error, closed } = await client.error()
      assert.strictEqual(error.code, "going_away")
      assert.deepStrictEqual(closed, { code: 1001, reason: "going_away" })
      // the ACK came before the ERROR
      assert.deepStrictEqual(
        client.frames.map((f) => f._tag),
        ["Welcome", "Drain", "Ack", "Error"]
      )
      await stopping
      await Effect.runPromise(env.gateway.shutdown) // idempotent
    })
  })

  it("shutdown: past drainMs, going_away leaves what is not acked unacked", () => {
    const blocked = gate()
    const Slow = EventType.make("train.Slow", 1, Schema.Number, {
      batch: { maxSize: 1, lingerMs: 0 },
      mailbox: { capacity: 1, overflow: "backpressure" }
    })
    return withGateway({ types: [Trail.route(Slow, () => blocked.wait)], drainMs: 50 }, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send(
        rows(
          1,
          [0, 1, 2, 3].map((i) => [id(i), i] as const),
          "train.Slow@1"
        )
      )
      await eventually(() => env.gateway.stats().batches.inFlight === 1, "a batch in flight")
      await Effect.runPromise(env.gateway.shutdown)
      assert.deepStrictEqual(
        client.frames.map((f) => f._tag),
        ["Welcome", "Drain", "Error"]
      )
      assert.deepStrictEqual(await client.close(), { code: 1001, reason: "going_away" })
      blocked.open()
    })
  })
})

describe("Gateway: many sessions", () => {
  it("100 concurrent sessions sending batches: every one acked, the counts exact", () =>
    withGateway(
      {
        tokens: Object.fromEntries(Array.from({ length: 10 }, (_, h) => [`harness-${h}`, `token-${h}`]))
      },
      async (env) => {
        const SESSIONS = 100
        const BATCHES = 8
        const EVENTS = 32
        const nodeOf = (s: number) => `N${String(s).padStart(7, "0")}`
        const clients = await Promise.all(
          Array.from({ length: SESSIONS }, (_, s) =>
            Client.open(env.gateway.url, `harness-${s % 10}`, `token-${s % 10}`)
          )
        )
        assert.strictEqual(env.gateway.sessions().length, SESSIONS)
        await Promise.all(
          clients.map(async (client, s) => {
            for (let b = 0; b < BATCHES; b++) {
              // windows of 4: send 4, wait for an ack before the 5th
              if (b >= 4) await client.until(() => (client.all("Ack").length >= b - 3 ? true : undefined), "an ack")
              client.send(columns(b + 1, b * EVENTS, EVENTS, nodeOf(s)))
            }
            await client.until(() => (client.all("Ack").length === BATCHES ? true : undefined), "every ack")
            for (const ack of client.all("Ack")) assert.isUndefined(ack.outcomes)
          })
        )
        await flush(env)
        assert.strictEqual(processed(env), SESSIONS * BATCHES * EVENTS)
        const stats = env.gateway.stats()
        assert.strictEqual(stats.batches.acked, SESSIONS * BATCHES)
        assert.strictEqual(stats.events.accepted, SESSIONS * BATCHES * EVENTS)
        assert.strictEqual(stats.sessions.total, SESSIONS)
        assert.strictEqual(
          env.gateway.sessions().reduce((n, s) => n + s.events, 0),
          SESSIONS * BATCHES * EVENTS
        )
        for (const client of clients) client.end()
      }
    ))
})

describe("Gateway: server", () => {
  it("HTTP: extra routes first, 426 on the WebSocket path, 404 otherwise; an upgrade elsewhere is refused", () =>
    withGateway(
      {
        http: (req, res) => {
          if (req.url !== "/hello") return false
          res.writeHead(200, { "content-type": "text/plain" }).end("hi")
          return true
        }
      },
      async (env) => {
        const hi = await fetch(`${env.gateway.httpUrl}/hello`)
        assert.strictEqual(hi.status, 200)
        assert.strictEqual(await hi.text(), "hi")
        assert.strictEqual((await fetch(`${env.gateway.httpUrl}/v1/stream`)).status, 426)
        assert.strictEqual((await fetch(`${env.gateway.httpUrl}/nothing`)).status, 404)
        const elsewhere = new Client(`ws://127.0.0.1:${env.gateway.port}/elsewhere`)
        await rejects(elsewhere.opened(), /404/)
        assert.strictEqual(env.gateway.url, `ws://127.0.0.1:${env.gateway.port}/v1/stream`)
      }
    ))

  it("a taken port is GatewayListenFailed; bad options are InvalidOptions", () =>
    withGateway({}, async (env) => {
      const make = (options: Partial<Gateway.Options>) =>
        Effect.runPromiseExit(Effect.scoped(Gateway.make({ ingest: env.ingest, ...options })).pipe(Effect.asVoid))
      const taken = await make({ port: env.gateway.port })
      assert.isTrue(Exit.isFailure(taken))
      const error = Exit.isFailure(taken) ? taken.cause.reasons[0] : undefined
      assert.instanceOf(error && "error" in error ? error.error : undefined, Errors.GatewayListenFailed)
      for (const options of [
        { port: -1 },
        { path: "no-slash" },
        { drainMs: -5 },
        { tokens: { h: "" } },
        { limits: { maxInFlight: 0 } }
      ]) {
        const exit = await make(options)
        const reason = Exit.isFailure(exit) ? exit.cause.reasons[0] : undefined
        assert.instanceOf(reason && "error" in reason ? reason.error : undefined, Errors.InvalidOptions)
      }
    }))

  it("no timer or socket is left once the scope closes", async () => {
    const env = await start({ limits: { heartbeatMs: 20, idleTimeoutMs: 1_000 } })
    const client = await Client.open(env.gateway.url)
    await env.stop()
    assert.strictEqual((await client.close()).code, 1001)
    // the port is free again
    const free = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port: env.gateway.port })
      socket.once("connect", () => {
        socket.destroy()
        resolve(false)
      })
      socket.once("error", () => resolve(true))
    })
    assert.isTrue(free)
  })

  it("metrics: cairn_gateway_* series read the gateway's counters", () =>
    withGateway({}, async (env) => {
      const client = await Client.open(env.gateway.url)
      client.send(
        rows(1, [
          [id(0), { step: 0 }],
          [id(1), { step: "x" }]
        ])
      )
      await client.next("Ack")
      const snapshot = await Effect.runPromise(Metric.snapshot)
      const value = (name: string, attributes: Record<string, string> = {}) => {
        const found = snapshot.find(
          (m) =>
            m.id === name &&
            Object.entries(attributes).every(([k, v]) => (m.attributes as Record<string, string>)?.[k] === v)
        )
        return found?.state
      }
      assert.deepStrictEqual(value("cairn_gateway_events_total", { outcome: "accepted" }), {
        count: 1,
        incremental: false
      })
      assert.deepStrictEqual(value("cairn_gateway_events_total", { outcome: "invalid" }), {
        count: 1,
        incremental: false
      })
      assert.deepStrictEqual(value("cairn_gateway_sessions_open"), { value: 1 })
      assert.deepStrictEqual(value("cairn_gateway_batches_acked_total"), { count: 1, incremental: false })
      const latency = value("cairn_gateway_ack_latency_ms") as Metric.HistogramState | undefined
      assert.strictEqual(latency?.count, 1)
      // per harness, over its sessions
      const harness = { harness: HARNESS }
      assert.deepStrictEqual(value("cairn_gateway_harness_sessions_open", harness), { value: 1 })
      assert.deepStrictEqual(value("cairn_gateway_harness_events_received_total", harness), {
        count: 2,
        incremental: false
      })
      assert.deepStrictEqual(value("cairn_gateway_harness_events_total", { ...harness, outcome: "refused" }), {
        count: 1,
        incremental: false
      })
      const second = await Client.open(env.gateway.url)
      second.send(rows(1, [[id(0), { step: 0 }]]))
      await second.next("Ack")
      const after = await Effect.runPromise(Metric.snapshot)
      const again = (name: string, attributes: Record<string, string>) =>
        after.find(
          (m) =>
            m.id === name &&
            Object.entries(attributes).every(([k, v]) => (m.attributes as Record<string, string>)?.[k] === v)
        )?.state
      assert.deepStrictEqual(again("cairn_gateway_harness_sessions_open", harness), { value: 2 })
      assert.deepStrictEqual(again("cairn_gateway_harness_events_total", { ...harness, outcome: "duplicate" }), {
        count: 1,
        incremental: false
      })
      assert.deepStrictEqual(again("cairn_gateway_harness_batches_acked_total", harness), {
        count: 2,
        incremental: false
      })
      second.end()
      client.end()
    }))
})
