import { createHash } from "node:crypto"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, Schema } from "effect"
import { Packr } from "msgpackr"
import type { Envelope } from "../src/Envelope.ts"
import { isEventId } from "../src/Envelope.ts"
import { Errors, EventType, Handler, Http, Ingest, Trail } from "../src/index.ts"

/** Batches leave at once (no linger). */
const now = { batch: { maxSize: 64, lingerMs: 0 } } as const
const T0 = 1_767_225_600_000
const ID = (i: number) => `01KAAAAAAA00000000${String(i).padStart(8, "0")}`
const TOKEN = "s3cret"
const HARNESS = "trainer-7"

const seen: Array<Envelope> = []
const collect = Handler.make("collect", (e) => Effect.sync(() => void seen.push(e)))

const Step = EventType.make(
  "app.Step",
  1,
  Schema.Struct({
    n: Schema.Number.check(Schema.isInt()),
    ok: Schema.Boolean,
    kind: Schema.Literals(["a", "b", 3]),
    note: Schema.optionalKey(Schema.String),
    tags: Schema.optionalKey(Schema.Array(Schema.Number)),
    ratio: Schema.optionalKey(Schema.NullOr(Schema.Number)),
    label: Schema.optionalKey(Schema.NumberFromString)
  }),
  { ...now, handlers: [collect] }
)
const SignedUp = EventType.make(
  "web.SignedUp",
  1,
  Schema.Struct({ plan: Schema.String, email: Schema.String, seats: Schema.optionalKey(Schema.Number) }),
  { ...now, handlers: [collect], relay: { hash: ["email"] } }
)
const Clicked = EventType.make("web.Clicked", 1, Schema.Struct({ button: Schema.String }), {
  ...now,
  handlers: [collect],
  relay: true
})
const Secret = EventType.make("web.Secret", 1, Schema.Struct({ x: Schema.String }), { ...now, handlers: [collect] })

interface Response {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  // biome-ignore lint/suspicious/noExplicitAny: test bodies are read loosely
  readonly body: any
}

const call = (url: string, init?: RequestInit): Effect.Effect<Response> =>
  Effect.promise(async () => {
    const r = await fetch(url, init)
    const text = await r.text()
    let body: unknown
    try {
      body = JSON.parse(text)
    } catch {
      body = undefined
    }
    return { status: r.status, headers: r.headers, text, body }
  })

const postJson = (url: string, value: unknown, headers: Record<string, string> = {}) =>
  call(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(value)
  })

const bearer = { authorization: `Bearer ${TOKEN}` }

/** A service trail, ingest and the views on a real server on 127.0.0.1, port 0. */
const setup = (options: Partial<Http.Options> = {}, withTokens = true, store?: Ingest.Store) =>
  Effect.gen(function* () {
    seen.length = 0
    const trail = yield* Trail.make({ source: "service", types: [Step, SignedUp, Clicked, Secret] })
    const ingest = Ingest.make(store === undefined ? { trail } : { trail, store })
    const views = yield* Http.make({
      ingest,
      trail,
      ...(withTokens ? { tokens: { [HARNESS]: TOKEN } } : {}),
      ...options
    })
    const server = yield* Effect.acquireRelease(
      Effect.callback<http.Server>((resume) => {
        const s = http.createServer((req, res) => {
          if (!views(req, res)) res.writeHead(404).end("not mine")
        })
        s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
      }),
      (s) =>
        Effect.callback<void>((resume) => {
          s.closeAllConnections()
          s.close(() => resume(Effect.void))
        })
    )
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    return { base, trail, ingest }
  })

/** Each test with its own metric registry, a real clock and its own scope. */
const live = (name: string, body: () => Effect.Effect<void, unknown, import("effect").Scope.Scope>) =>
  it.live(name, () => body().pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())))

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex")

describe("POST /api/v1/harness-events", () => {
  live("a JSON batch is ingested with per-event outcomes; a resend is all duplicates", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const batch = {
        harness: HARNESS,
        key: "app.Step@1",
        events: [
          { id: ID(0), happenedAt: T0, data: { n: 1, ok: true, kind: "a" } },
          { id: ID(1), happenedAt: T0 + 1, data: { n: "x", ok: true, kind: "a" } },
          [ID(2), T0 + 2, { n: 2, ok: false, kind: 3 }, ID(0)],
          { id: ID(0), happenedAt: T0, data: { n: 1, ok: true, kind: "a" } }
        ]
      }
      const r = yield* postJson(`${base}/api/v1/harness-events`, batch, bearer)
      assert.strictEqual(r.status, 200)
      assert.deepStrictEqual(r.body, {
        accepted: 2,
        outcomes: [
          { index: 1, id: ID(1), code: "invalid", reason: "invalid data for app.Step@1 (1 issue): n: Expected number" },
          { index: 3, id: ID(0), code: "duplicate", reason: "" }
        ]
      })
      const again = yield* postJson(`${base}/api/v1/harness-events`, batch, bearer)
      assert.strictEqual(again.status, 200)
      assert.deepStrictEqual(
        again.body.outcomes.map((o: { code: string }) => o.code),
        ["duplicate", "invalid", "duplicate", "duplicate"]
      )
      yield* trail.flush
      assert.deepStrictEqual(
        seen.map((e) => [e.id, e.source, e.type, e.happenedAt, e.parent]),
        [
          [ID(0), HARNESS, "app.Step@1", T0, undefined],
          [ID(2), HARNESS, "app.Step@1", T0 + 2, ID(0)]
        ]
      )
    })
  )

  live("a MessagePack batch (application/x-msgpack) in protocol rows", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const body = new Packr({ useRecords: false }).pack({
        harness: HARNESS,
        key: "app.Step@1",
        events: [
          [ID(5), T0, { n: 5, ok: true, kind: "b" }, null],
          [ID(6), T0, { n: 6, ok: true, kind: "b" }, null]
        ]
      })
      const r = yield* call(`${base}/api/v1/harness-events`, {
        method: "POST",
        headers: { "content-type": "application/x-msgpack", ...bearer },
        body: new Uint8Array(body)
      })
      assert.strictEqual(r.status, 200)
      assert.deepStrictEqual(r.body, { accepted: 2, outcomes: [] })
      yield* trail.flush
      assert.deepStrictEqual(
        seen.map((e) => e.data),
        [
          { n: 5, ok: true, kind: "b" },
          { n: 6, ok: true, kind: "b" }
        ]
      )
    })
  )

  live("an unknown key: every event is unknown_type", () =>
    Effect.gen(function* () {
      const { base } = yield* setup()
      const r = yield* postJson(
        `${base}/api/v1/harness-events`,
        { harness: HARNESS, key: "app.Step@9", events: [{ id: ID(0), happenedAt: T0, data: {} }] },
        bearer
      )
      assert.strictEqual(r.status, 200)
      assert.strictEqual(r.body.accepted, 0)
      assert.strictEqual(r.body.outcomes[0].code, "unknown_type")
      assert.match(r.body.outcomes[0].reason, /no version 9 of event app\.Step/)
    })
  )

  live("401 without a token, with a wrong one, with another harness's, and when no tokens are configured", () =>
    Effect.gen(function* () {
      const { base } = yield* setup({ tokens: { [HARNESS]: TOKEN, other: "0ther" } })
      const url = `${base}/api/v1/harness-events`
      const batch = { harness: HARNESS, key: "app.Step@1", events: [{ id: ID(0), happenedAt: T0, data: {} }] }
      const none = yield* postJson(url, batch)
      assert.strictEqual(none.status, 401)
      assert.deepStrictEqual(none.body, {
        error: "unauthorized",
        message: "a bearer token is required (Authorization: Bearer <token>)"
      })
      assert.strictEqual((yield* postJson(url, batch, { authorization: "Bearer nope" })).status, 401)
      const foreign = yield* postJson(url, batch, { authorization: "Bearer 0ther" })
      assert.strictEqual(foreign.status, 401)
      assert.strictEqual(foreign.body.message, `the token is not valid for harness ${HARNESS}`)
      assert.strictEqual((yield* postJson(url, batch, { authorization: "Basic abc" })).status, 401)
    }).pipe(
      Effect.andThen(
        Effect.gen(function* () {
          const { base } = yield* setup({}, false)
          const r = yield* postJson(
            `${base}/api/v1/harness-events`,
            { harness: HARNESS, key: "app.Step@1", events: [] },
            bearer
          )
          assert.strictEqual(r.status, 401)
          assert.strictEqual(r.body.message, "no harness tokens are configured")
        })
      )
    )
  )

  live("a token function decides per harness", () =>
    Effect.gen(function* () {
      const { base } = yield* setup({ tokens: (harness, token) => token === `t-${harness}` })
      const batch = { harness: "h9", key: "app.Step@1", events: [[ID(1), T0, { n: 1, ok: true, kind: "a" }]] }
      const url = `${base}/api/v1/harness-events`
      assert.strictEqual((yield* postJson(url, batch, { authorization: "Bearer t-h9" })).status, 200)
      assert.strictEqual((yield* postJson(url, batch, { authorization: "Bearer t-h8" })).status, 401)
    })
  )

  live("malformed bodies are 400 with a clear message; wrong type 415; wrong method 405", () =>
    Effect.gen(function* () {
      const { base } = yield* setup()
      const url = `${base}/api/v1/harness-events`
      const notJson = yield* call(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...bearer },
        body: "{nope"
      })
      assert.strictEqual(notJson.status, 400)
      assert.strictEqual(notJson.body.error, "bad_request")
      assert.match(notJson.body.message, /^the body is not valid JSON: /)
      const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
        [[1, 2], /must be an object \{ harness, key, events \}/],
        [{ harness: "", key: "app.Step@1", events: [] }, /harness must be a non-empty string/],
        [{ harness: HARNESS, key: "app.Step", events: [] }, /key must be a type key/],
        [{ harness: HARNESS, key: "app.Step@1", events: [] }, /events must be a non-empty array/],
        [{ harness: HARNESS, key: "app.Step@1", events: [{ id: "x", happenedAt: T0, data: {} }] }, /events\[0\]\.id/],
        [{ harness: HARNESS, key: "app.Step@1", events: [{ id: ID(0), happenedAt: -1, data: {} }] }, /happenedAt/],
        [{ harness: HARNESS, key: "app.Step@1", events: [{ id: ID(0), happenedAt: T0 }] }, /events\[0\]\.data/],
        [
          { harness: HARNESS, key: "app.Step@1", events: [{ id: ID(0), happenedAt: T0, data: {}, parent: 3 }] },
          /events\[0\]\.parent/
        ],
        [{ harness: HARNESS, key: "app.Step@1", events: ["row"] }, /events\[0\] must be an object/]
      ]
      for (const [body, message] of cases) {
        const r = yield* postJson(url, body, bearer)
        assert.strictEqual(r.status, 400, JSON.stringify(body))
        assert.strictEqual(r.body.error, "bad_request")
        assert.match(r.body.message, message)
      }
      const badPack = yield* call(url, {
        method: "POST",
        headers: { "content-type": "application/msgpack", ...bearer },
        body: new Uint8Array([0x92, 0x01])
      })
      assert.strictEqual(badPack.status, 400)
      assert.match(badPack.body.message, /^the body is not MessagePack: /)
      const xml = yield* call(url, { method: "POST", headers: { "content-type": "text/xml", ...bearer }, body: "<a/>" })
      assert.strictEqual(xml.status, 415)
      assert.strictEqual(xml.body.error, "unsupported_media_type")
      const get = yield* call(url)
      assert.strictEqual(get.status, 405)
      assert.strictEqual(get.headers.get("allow"), "POST")
      assert.strictEqual((yield* call(`${base}/api/v1/other`)).text, "not mine")
    })
  )

  live("413 for a body over maxBodyBytes (declared or streamed) and for more than maxEvents events", () =>
    Effect.gen(function* () {
      const { base } = yield* setup({ maxBodyBytes: 400, maxEvents: 2 })
      const url = `${base}/api/v1/harness-events`
      const padded = { harness: HARNESS, key: "app.Step@1", events: [], pad: "x".repeat(1_000) }
      const big = yield* postJson(url, padded, bearer)
      assert.strictEqual(big.status, 413)
      assert.deepStrictEqual(big.body, {
        error: "payload_too_large",
        message: `a body of ${JSON.stringify(padded).length} bytes is larger than the limit of 400`
      })
      // chunked, no declared length: cut while reading
      const streamed = yield* Effect.promise(
        () =>
          new Promise<{ status: number; body: string }>((resolve, reject) => {
            const req = http.request(url, {
              method: "POST",
              headers: { "content-type": "application/json", ...bearer }
            })
            req.on("response", (res) => {
              let body = ""
              res.on("data", (c) => {
                body += c
              })
              res.on("end", () => resolve({ status: res.statusCode ?? 0, body }))
            })
            req.on("error", reject)
            for (let i = 0; i < 10; i++) req.write("x".repeat(100))
            req.end()
          })
      )
      assert.strictEqual(streamed.status, 413)
      assert.strictEqual(JSON.parse(streamed.body).message, "the body is larger than the limit of 400 bytes")
      const events = [0, 1, 2].map((i) => [ID(i), T0, {}])
      const many = yield* postJson(url, { harness: HARNESS, key: "app.Step@1", events }, bearer)
      assert.strictEqual(many.status, 413)
      assert.deepStrictEqual(many.body, { error: "too_many_events", message: "3 events is more than the limit of 2" })
      // the server still answers on the same connections
      assert.strictEqual((yield* call(`${base}/healthz`)).status, 200)
    })
  )

  live("500 when the store cannot record the batch, or a token check dies; the server goes on", () =>
    Effect.gen(function* () {
      const failing: Ingest.Store = { record: () => Effect.fail("disk full") }
      const { base } = yield* setup({}, true, failing)
      const batch = { harness: HARNESS, key: "app.Step@1", events: [[ID(1), T0, { n: 1, ok: true, kind: "a" }]] }
      const r = yield* postJson(`${base}/api/v1/harness-events`, batch, bearer)
      assert.strictEqual(r.status, 500)
      assert.deepStrictEqual(r.body, {
        error: "internal",
        message: "the events could not be recorded; nothing was accepted, send them again"
      })
    }).pipe(
      Effect.andThen(
        Effect.gen(function* () {
          const { base } = yield* setup({
            tokens: () => {
              throw new Error("token store down")
            }
          })
          const batch = { harness: HARNESS, key: "app.Step@1", events: [[ID(1), T0, {}]] }
          const r = yield* postJson(`${base}/api/v1/harness-events`, batch, bearer)
          assert.strictEqual(r.status, 500)
          assert.strictEqual(r.body.error, "internal")
          assert.strictEqual((yield* call(`${base}/healthz`, { method: "HEAD" })).status, 200)
        })
      )
    )
  )

  live("503 while the service is closing, and once the trail is shut down", () =>
    Effect.gen(function* () {
      let closing = true
      const { base, trail } = yield* setup({ closing: () => closing })
      const batch = { harness: HARNESS, key: "app.Step@1", events: [[ID(1), T0, { n: 1, ok: true, kind: "a" }]] }
      const r = yield* postJson(`${base}/api/v1/harness-events`, batch, bearer)
      assert.strictEqual(r.status, 503)
      assert.strictEqual(r.headers.get("retry-after"), "1")
      assert.deepStrictEqual(r.body, { error: "closing", message: "the service is shutting down" })
      closing = false
      yield* trail.shutdown
      // the trail refuses: still 503
      const after = yield* postJson(`${base}/api/v1/harness-events`, batch, bearer)
      assert.strictEqual(after.status, 503)
      assert.strictEqual(after.body.error, "closing")
    }).pipe(
      Effect.andThen(
        Effect.gen(function* () {
          const { base, trail } = yield* setup()
          yield* trail.shutdown
          const r = yield* call(`${base}/event/log?__event__=app.Step&n=1&ok=true&kind=a`, { method: "POST" })
          assert.strictEqual(r.status, 503)
          const health = yield* call(`${base}/healthz`)
          assert.strictEqual(health.status, 503)
          assert.deepStrictEqual(health.body, { status: "closing", closing: true })
        })
      )
    )
  )
})

describe("POST /event/log", () => {
  live("query parameters become typed data; the server makes the id and the time", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const before = Date.now()
      const r = yield* call(
        `${base}/event/log?__event__=app.Step&n=3&ok=true&kind=3&tags=1&tags=2.5&ratio=null&label=7&note=007`,
        { method: "POST" }
      )
      assert.strictEqual(r.status, 202)
      assert.isTrue(isEventId(r.body.id))
      assert.strictEqual(r.headers.get("access-control-allow-origin"), "*")
      yield* trail.flush
      assert.strictEqual(seen.length, 1)
      const e = seen[0]!
      assert.strictEqual(e.id, r.body.id)
      assert.strictEqual(e.source, "http")
      assert.strictEqual(e.type, "app.Step@1")
      assert.isTrue(e.happenedAt >= before && e.happenedAt <= Date.now())
      // label is a NumberFromString: it gets the string it asks for, then decodes it
      assert.deepStrictEqual(e.data, { n: 3, ok: true, kind: 3, tags: [1, 2.5], ratio: null, label: 7, note: "007" })
    })
  )

  live("a JSON (or text/plain) body and a form body add data; the query wins", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const json = yield* call(`${base}/event/log?__event__=app.Step@1&n=4`, {
        method: "POST",
        headers: { "content-type": "text/plain;charset=UTF-8" },
        body: JSON.stringify({ n: 1, ok: false, kind: "a", tags: [9] })
      })
      assert.strictEqual(json.status, 202)
      const form = yield* call(`${base}/event/log?__event__=app.Step`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "n=5&ok=false&kind=b&tags=4"
      })
      assert.strictEqual(form.status, 202)
      yield* trail.flush
      assert.deepStrictEqual(
        seen.map((e) => e.data),
        [
          { n: 4, ok: false, kind: "a", tags: [9] },
          { n: 5, ok: false, kind: "b", tags: [4] }
        ]
      )
    })
  )

  live("an unknown name is 404 EventNotFound with suggestions; invalid data is 422 with every issue and path", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const missing = yield* call(`${base}/event/log?__event__=app.Stpe&n=1`, { method: "POST" })
      assert.strictEqual(missing.status, 404)
      assert.deepStrictEqual(missing.body, {
        error: "event_not_found",
        message: "there is no event named Stpe in the app app (it has app.Step); did you mean app.Step?",
        asked: "app.Stpe",
        suggestions: ["app.Step"]
      })
      const invalid = yield* call(`${base}/event/log?__event__=app.Step&n=1.5&ok=maybe&tags=1&tags=x`, {
        method: "POST"
      })
      assert.strictEqual(invalid.status, 422)
      assert.strictEqual(invalid.body.error, "validation")
      assert.strictEqual(invalid.body.type, "app.Step@1")
      assert.deepStrictEqual(
        invalid.body.issues.map((i: { path: ReadonlyArray<string | number> }) => i.path),
        [["n"], ["ok"], ["kind"], ["tags", 1]]
      )
      assert.match(invalid.body.message, /^invalid data for app\.Step@1 \(4 issues\): n: Expected an integer/)
      const noName = yield* call(`${base}/event/log?n=1`, { method: "POST" })
      assert.strictEqual(noName.status, 400)
      assert.strictEqual(noName.body.message, "the query must name the event: ?__event__=app.EventName")
      const notObject = yield* call(`${base}/event/log?__event__=app.Step`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "[1]"
      })
      assert.strictEqual(notObject.status, 400)
      const xml = yield* call(`${base}/event/log?__event__=app.Step`, {
        method: "POST",
        headers: { "content-type": "text/xml" },
        body: "<a/>"
      })
      assert.strictEqual(xml.status, 415)
      assert.strictEqual((yield* call(`${base}/event/log?__event__=app.Step`)).status, 405)
      yield* trail.flush
      assert.strictEqual(seen.length, 0)
      const stats = trail.statsUnsafe()
      assert.strictEqual(stats.rejected.unknownType, 1)
      assert.strictEqual(stats.types["app.Step@1"]!.rejected.invalid, 1)
    })
  )
})

describe("Http.queryData", () => {
  it("converts each key by what the schema expects for it", () => {
    const T = EventType.make(
      "q.Types",
      1,
      Schema.Struct({
        s: Schema.String,
        n: Schema.Number,
        b: Schema.Boolean,
        big: Schema.BigInt,
        lit: Schema.Literals([1, "1x", true]),
        numOrStr: Schema.Union([Schema.Number, Schema.String]),
        strOrNum: Schema.Union([Schema.String, Schema.Number]),
        maybe: Schema.optional(Schema.Boolean),
        pair: Schema.Tuple([Schema.Number, Schema.Boolean]),
        nfs: Schema.NumberFromString
      })
    )
    const data = Http.queryData(
      T,
      new URLSearchParams(
        "s=1&n=-2.5e3&b=false&big=12345678901234567890&lit=true&numOrStr=7&strOrNum=7&maybe=true&pair=1&pair=true&nfs=8&extra=1&__event__=x&__x=1"
      )
    )
    assert.deepStrictEqual(data, {
      s: "1",
      n: -2500,
      b: false,
      big: 12345678901234567890n,
      lit: true,
      numOrStr: 7,
      strOrNum: "7",
      maybe: true,
      pair: [1, true],
      nfs: "8",
      extra: "1"
    })
    // what matches nothing stays a string for validation to report
    assert.deepStrictEqual(Http.queryData(T, new URLSearchParams("n=abc&b=yes&lit=2")), {
      n: "abc",
      b: "yes",
      lit: "2"
    })
    const R = EventType.make("q.Record", 1, Schema.Record(Schema.String, Schema.Number))
    assert.deepStrictEqual(Http.queryData(R, new URLSearchParams("a=1&b=2")), { a: 1, b: 2 })
  })
})

describe("POST /analytics", () => {
  live("a relayable type: declared keys pass, hashed keys are SHA-256 hex, the rest is dropped", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const r = yield* postJson(`${base}/analytics`, {
        event: "web.SignedUp",
        properties: { plan: "pro", email: "ann@example.com", seats: 3, name: "Ann", ip: "10.1.2.3" }
      })
      assert.strictEqual(r.status, 202)
      assert.isTrue(isEventId(r.body.id))
      assert.deepStrictEqual(r.body.dropped, ["name", "ip"])
      yield* trail.flush
      assert.strictEqual(seen.length, 1)
      assert.deepStrictEqual(seen[0]!.data, { plan: "pro", email: sha256("ann@example.com"), seats: 3 })
      assert.strictEqual(seen[0]!.type, "web.SignedUp@1")
      assert.notInclude(JSON.stringify(seen[0]!.data), "ann@example.com")
    })
  )

  live("a type not declared relayable is 403; an unknown one 404; invalid properties 422", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const secret = yield* postJson(`${base}/analytics`, { event: "web.Secret", properties: { x: "1" } })
      assert.strictEqual(secret.status, 403)
      assert.deepStrictEqual(secret.body, {
        error: "not_relayable",
        message: "event type web.Secret@1 is not relayable (declare it with the relay option of EventType.make)"
      })
      const unknown = yield* postJson(`${base}/analytics`, { event: "web.Signup" })
      assert.strictEqual(unknown.status, 404)
      assert.strictEqual(unknown.body.error, "event_not_found")
      assert.deepStrictEqual(unknown.body.suggestions, ["web.SignedUp"])
      const invalid = yield* postJson(`${base}/analytics`, { event: "web.SignedUp", properties: { plan: 1 } })
      assert.strictEqual(invalid.status, 422)
      assert.deepStrictEqual(
        invalid.body.issues.map((i: { path: ReadonlyArray<string> }) => i.path),
        [["plan"], ["email"]]
      )
      const shape = yield* postJson(`${base}/analytics`, { properties: {} })
      assert.strictEqual(shape.status, 400)
      const props = yield* postJson(`${base}/analytics`, { event: "web.Clicked", properties: [1] })
      assert.strictEqual(props.status, 400)
      assert.strictEqual(props.body.message, "the body.properties must be an object")
      const form = yield* call(`${base}/analytics`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "event=web.Clicked"
      })
      assert.strictEqual(form.status, 415)
      yield* trail.flush
      assert.strictEqual(seen.length, 0)
    })
  )

  live("an array is a batch: one result per event, the accepted ones ingested (text/plain JSON too)", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup()
      const r = yield* call(`${base}/analytics`, {
        method: "POST",
        headers: { "content-type": "text/plain;charset=UTF-8" },
        body: JSON.stringify([
          { event: "web.Clicked", properties: { button: "a" } },
          { event: "web.Secret", properties: { x: "1" } },
          { event: "web.SignedUp@1", properties: { plan: "free", email: "b@example.com" } },
          { event: "web.Clicked", properties: { button: "b", where: "top" } }
        ])
      })
      assert.strictEqual(r.status, 200)
      const results = r.body.results as ReadonlyArray<Record<string, unknown>>
      assert.deepStrictEqual(
        results.map((x) => x.status),
        [202, 403, 202, 202]
      )
      assert.strictEqual(results[1]!.error, "not_relayable")
      assert.deepStrictEqual(results[3]!.dropped, ["where"])
      yield* trail.flush
      assert.deepStrictEqual(
        seen.map((e) => [e.id, e.type, e.data]).sort(),
        [
          [results[0]!.id, "web.Clicked@1", { button: "a" }],
          [results[2]!.id, "web.SignedUp@1", { plan: "free", email: sha256("b@example.com") }],
          [results[3]!.id, "web.Clicked@1", { button: "b" }]
        ].sort()
      )
      const empty = yield* postJson(`${base}/analytics`, [])
      assert.strictEqual(empty.status, 400)
    })
  )

  live("CORS: preflight answered; allowed origins are checked on preflight and post", () =>
    Effect.gen(function* () {
      const open = yield* setup()
      const pre = yield* call(`${open.base}/analytics`, {
        method: "OPTIONS",
        headers: { origin: "https://a.example", "access-control-request-method": "POST" }
      })
      assert.strictEqual(pre.status, 204)
      assert.strictEqual(pre.headers.get("access-control-allow-origin"), "*")
      assert.strictEqual(pre.headers.get("access-control-allow-methods"), "POST, OPTIONS")
      assert.strictEqual(pre.headers.get("access-control-allow-headers"), "Content-Type")
      const { base } = yield* setup({ allowedOrigins: ["https://app.example"] })
      const ok = yield* call(`${base}/event/log`, { method: "OPTIONS", headers: { origin: "https://app.example" } })
      assert.strictEqual(ok.status, 204)
      assert.strictEqual(ok.headers.get("access-control-allow-origin"), "https://app.example")
      assert.strictEqual(ok.headers.get("vary"), "Origin")
      const denied = yield* call(`${base}/analytics`, {
        method: "OPTIONS",
        headers: { origin: "https://evil.example" }
      })
      assert.strictEqual(denied.status, 403)
      assert.isNull(denied.headers.get("access-control-allow-origin"))
      const post = yield* postJson(
        `${base}/analytics`,
        { event: "web.Clicked", properties: { button: "x" } },
        { origin: "https://evil.example" }
      )
      assert.strictEqual(post.status, 403)
      assert.deepStrictEqual(post.body, {
        error: "origin_not_allowed",
        message: "origin https://evil.example is not allowed"
      })
      const good = yield* postJson(
        `${base}/analytics`,
        { event: "web.Clicked", properties: { button: "x" } },
        { origin: "https://app.example" }
      )
      assert.strictEqual(good.status, 202)
      assert.strictEqual(good.headers.get("access-control-allow-origin"), "https://app.example")
      // no CORS on the harness route
      const harness = yield* call(`${base}/api/v1/harness-events`, { method: "OPTIONS" })
      assert.strictEqual(harness.status, 405)
    })
  )
})

describe("GET /healthz and /metrics", () => {
  live("health with the session count; Prometheus text with the cairn_ series", () =>
    Effect.gen(function* () {
      const { base, trail } = yield* setup({ sessions: () => 3 })
      const health = yield* call(`${base}/healthz`)
      assert.strictEqual(health.status, 200)
      assert.deepStrictEqual(health.body, { status: "ok", closing: false, sessions: 3 })
      const r = yield* call(`${base}/event/log?__event__=app.Step&n=1&ok=true&kind=a`, { method: "POST" })
      assert.strictEqual(r.status, 202)
      yield* trail.flush
      const metrics = yield* call(`${base}/metrics`)
      assert.strictEqual(metrics.status, 200)
      assert.strictEqual(metrics.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8")
      const text = metrics.text
      assert.include(text, "# TYPE cairn_trail_events_accepted_total counter")
      assert.include(text, 'cairn_trail_events_accepted_total{type="app.Step@1"} 1')
      assert.include(text, 'cairn_trail_events_processed_total{type="app.Step@1"} 1')
      assert.include(text, "# TYPE cairn_trail_mailbox_depth gauge")
      assert.include(text, "# TYPE cairn_trail_batch_size histogram")
      assert.include(text, 'cairn_trail_batch_size_bucket{type="app.Step@1",le="+Inf"} 1')
      // one +Inf bucket per series: a duplicate series breaks a Prometheus scrape
      const lines = text.split("\n").filter((l) => l.length > 0 && !l.startsWith("#"))
      const series = lines.map((l) => l.slice(0, l.lastIndexOf(" ")))
      assert.strictEqual(new Set(series).size, series.length, "no series twice")
      assert.include(text, 'cairn_handler_events_processed_total{type="app.Step@1",handler="collect"} 1')
      assert.strictEqual((yield* call(`${base}/metrics`, { method: "POST" })).status, 405)
    })
  )
})

describe("EventType relay option", () => {
  it("keeps the declared keys and the hashed ones; refuses what cannot be relayed", () => {
    assert.deepStrictEqual(SignedUp.relay, { hash: ["email"], keys: ["plan", "email", "seats"] })
    assert.deepStrictEqual(Clicked.relay, { hash: [], keys: ["button"] })
    assert.isUndefined(Secret.relay)
    const S = Schema.Struct({ a: Schema.String })
    assert.throws(
      () => EventType.make("r.Bad", 1, S, { relay: { hash: ["b"] } }),
      Errors.InvalidEventType,
      'relay.hash: "b" is not a key of the schema (keys: a)'
    )
    assert.throws(
      () => EventType.make("r.Bad", 1, S, { relay: { hash: ["a", "a"] } }),
      Errors.InvalidEventType,
      "relay.hash lists a key twice"
    )
    assert.throws(
      () => EventType.make("r.Bad", 1, Schema.Record(Schema.String, Schema.String), { relay: true }),
      Errors.InvalidEventType,
      "relay needs a schema that declares its keys (a struct)"
    )
    const U = EventType.make(
      "r.Union",
      1,
      Schema.Union([Schema.Struct({ a: Schema.String }), Schema.Struct({ b: Schema.Number })]),
      { relay: { hash: ["a"] } }
    )
    assert.deepStrictEqual(U.relay?.keys, ["a", "b"])
    assert.deepStrictEqual(Http.relayProperties(U.relay!, { a: null, b: 2, c: 3 }), {
      data: { a: null, b: 2 },
      dropped: ["c"]
    })
    assert.strictEqual(Http.hashValue(42), sha256("42"))
  })

  it("limits must be positive integers", () => {
    assert.throws(
      () => Http.routes({ ingest: {} as Ingest.Ingest, trail: {} as Trail.Service, maxEvents: 0 }),
      Errors.InvalidOptions,
      "Http: maxEvents must be a positive integer"
    )
  })
})
