/**
 * The HTTP views of the telemetry service, mounted on the gateway's `node:http` server.
 *
 * - `POST /api/v1/harness-events`: a batch of events over HTTP, for harnesses that
 *   cannot keep a WebSocket open. Bearer token per harness, as the gateway checks it;
 *   answered with the same per-event outcomes as a protocol ACK.
 * - `POST /event/log?__event__=app.Name&k=v`: the name-based API for browsers; the
 *   query parameters are the data, each converted to what the type's schema expects
 *   for its key (a number, a boolean, a literal…), then validated. The server makes
 *   the event's id and time.
 * - `POST /analytics` `{event, properties}`: the relay for front ends. Only types
 *   declared relayable pass, and their properties only as the type's {@link EventType.Relay}
 *   allows: declared keys pass, listed ones are hashed, the rest is dropped.
 * - `GET /healthz` and `GET /metrics` (Prometheus text of Effect's metric registry).
 *
 * Every request is checked cheapest first (path, method, origin, closing, token,
 * content type, declared length) before its body is read, and the body is read up to
 * `maxBodyBytes`. A refusal is a JSON body `{ error, message }` whose `error` is a
 * stable code ({@link codes}); `docs/http.md` is the reference.
 *
 * @since 0.1.0
 */
import { createHash, timingSafeEqual } from "node:crypto"
import type * as http from "node:http"
import { Cause, Clock, Context, Effect, SchemaAST } from "effect"
import { IdGenerator, isEventId } from "./Envelope.ts"
import { EventNotFound, HttpError, InvalidOptions, TrailClosed, ValidationError } from "./Errors.ts"
import type * as EventType from "./EventType.ts"
import type * as Ingest from "./Ingest.ts"
import * as Protocol from "./Protocol.ts"
import * as Serialization from "./Serialization.ts"
import type * as Trail from "./Trail.ts"

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/**
 * Who may post harness batches: harness id → its bearer token, or a function saying
 * whether a token is valid for a harness (a revocable store, say).
 *
 * @category models
 */
export type Tokens = Readonly<Record<string, string>> | ((harness: string, token: string) => boolean)

/**
 * Options of the HTTP views; only `ingest` and `trail` are required.
 *
 * @category models
 */
export interface Options {
  /** Where events enter the service (validated, de-duplicated, handed to the trail's actors). */
  readonly ingest: Ingest.Ingest
  /** The service's trail: its registry resolves names, its schemas validate data. */
  readonly trail: Trail.Service
  /**
   * Tokens of the harnesses allowed to post `/api/v1/harness-events`. Default: none,
   * so that route answers 401 to every request.
   */
  readonly tokens?: Tokens
  /** Largest request body, in bytes; a larger one is answered 413. Default `1_048_576` (1 MiB). */
  readonly maxBodyBytes?: number
  /** Most events in one request (a harness batch, an analytics array); more is 413. Default `1_024`. */
  readonly maxEvents?: number
  /**
   * Origins whose browsers may post `/event/log` and `/analytics`: `"*"` (any), or a
   * list of exact origins (`https://app.example.com`); a request from another origin is
   * refused 403 and its preflight gets no CORS headers. Default `"*"`.
   */
  readonly allowedOrigins?: "*" | ReadonlyArray<string>
  /** The source (harness id) of events received by `/event/log` and `/analytics`. Default `"http"`. */
  readonly source?: string
  /**
   * Whether the service is closing: POST routes then answer 503 and `/healthz` says
   * so. Default: whether the trail is closed.
   */
  readonly closing?: () => boolean
  /** Sessions open now, reported by `/healthz` (the gateway's count). Default: not reported. */
  readonly sessions?: () => number
  /**
   * The Effect context requests run in: its metric registry is what `/metrics` shows,
   * its clock dates `/event/log` and `/analytics` events. Default: the default services
   * (the global metric registry, the system clock). {@link make} passes the current one.
   */
  readonly context?: Context.Context<never>
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  maxBodyBytes: 1_048_576,
  maxEvents: 1_024,
  allowedOrigins: "*",
  source: "http"
} as const

/**
 * The paths the views answer; any other path is left to the server (`false`).
 *
 * @category constants
 */
export const paths = {
  harnessEvents: "/api/v1/harness-events",
  eventLog: "/event/log",
  analytics: "/analytics",
  healthz: "/healthz",
  metrics: "/metrics"
} as const

/**
 * A request handler for a `node:http` server: `true` when the request is one of the
 * views' (it is then answered asynchronously), `false` when it is not (the server
 * answers it).
 *
 * @category models
 */
export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => boolean

// ---------------------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------------------

/**
 * Every code a view answers in a JSON body's `error`, with its HTTP status. The
 * table of `docs/http.md`.
 *
 * @category constants
 */
export const codes = {
  bad_request: {
    status: 400,
    description: "the body or query is malformed: not JSON or MessagePack, or not the expected shape"
  },
  unauthorized: { status: 401, description: "no bearer token, or one not valid for the batch's harness" },
  origin_not_allowed: { status: 403, description: "the request's Origin is not one of allowedOrigins" },
  not_relayable: { status: 403, description: "the event type is not declared relayable (EventType option relay)" },
  event_not_found: { status: 404, description: "no registered event type answers to the name (EventNotFound)" },
  method_not_allowed: { status: 405, description: "the path does not take this method (see the Allow header)" },
  payload_too_large: { status: 413, description: "the body is larger than maxBodyBytes" },
  too_many_events: { status: 413, description: "the request holds more than maxEvents events" },
  unsupported_media_type: { status: 415, description: "the Content-Type is not one the path takes" },
  validation: { status: 422, description: "the data does not decode with the type's schema (ValidationError)" },
  internal: { status: 500, description: "the service failed, or could not record the events durably; send again" },
  closing: { status: 503, description: "the service is shutting down; send again later (to another instance)" }
} as const satisfies Record<string, { readonly status: number; readonly description: string }>

/**
 * A code of {@link codes}.
 *
 * @category models
 */
export type Code = keyof typeof codes

/**
 * Builds a refusal: the one place every {@link HttpError} of this module is made.
 *
 * @example
 * ```ts
 * import { Http } from "cairn"
 *
 * Http.failure("not_relayable", "app.Secret@1 is not relayable").status // 403
 * ```
 *
 * @category constructors
 */
export const failure = (code: Code, detail: string): HttpError =>
  new HttpError({ status: codes[code].status, httpCode: code, detail })

// ---------------------------------------------------------------------------------------
// Query strings to typed data
// ---------------------------------------------------------------------------------------

const NO_MATCH: unique symbol = Symbol("no match")
type Match = unknown

const NUMERIC = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?Infinity$|^NaN$/
const INTEGER = /^[+-]?\d+$/

const unwrap = (ast: SchemaAST.AST): SchemaAST.AST => {
  let node = ast
  for (let i = 0; i < 8 && SchemaAST.isSuspend(node); i++) node = node.thunk()
  return node
}

/** A string as the (encoded) scalar type wants it, or {@link NO_MATCH}. */
const match = (s: string, ast: SchemaAST.AST, depth = 0): Match | typeof NO_MATCH => {
  const t = unwrap(ast)
  switch (t._tag) {
    case "String":
    case "TemplateLiteral":
    case "Unknown":
    case "Any":
      return s
    case "Number":
      return NUMERIC.test(s) ? Number(s) : NO_MATCH
    case "Boolean":
      return s === "true" ? true : s === "false" ? false : NO_MATCH
    case "BigInt":
      return INTEGER.test(s) ? BigInt(s) : NO_MATCH
    case "Literal":
      return String(t.literal) === s ? t.literal : NO_MATCH
    case "Null":
      return s === "null" ? null : NO_MATCH
    case "Enum":
      for (const [, value] of t.enums) if (String(value) === s) return value
      return NO_MATCH
    case "Union":
      if (depth > 8) return NO_MATCH
      for (const member of t.types) {
        const m = match(s, member, depth + 1)
        if (m !== NO_MATCH) return m
      }
      return NO_MATCH
    default:
      return NO_MATCH
  }
}

/** The element type at index `i` when the type is (or a union member is) an array. */
const elementOf = (ast: SchemaAST.AST, i: number): SchemaAST.AST | undefined => {
  const t = unwrap(ast)
  if (SchemaAST.isArrays(t)) return t.elements[i] ?? t.rest[0]
  if (SchemaAST.isUnion(t)) {
    for (const member of t.types) {
      const m = unwrap(member)
      if (SchemaAST.isArrays(m)) return m.elements[i] ?? m.rest[0]
    }
  }
  return undefined
}

const convert = (s: string, ast: SchemaAST.AST | undefined): unknown => {
  if (ast === undefined) return s
  const m = match(s, ast)
  return m === NO_MATCH ? s : m
}

/** The values of one key, as the key's type wants them; what matches nothing stays a string. */
const convertValues = (values: ReadonlyArray<string>, ast: SchemaAST.AST | undefined): unknown => {
  if (ast === undefined) return values.length === 1 ? values[0] : values
  if (values.length === 1) {
    const m = match(values[0]!, ast)
    if (m !== NO_MATCH) return m
    const element = elementOf(ast, 0)
    return element === undefined ? values[0] : [convert(values[0]!, element)]
  }
  if (elementOf(ast, 0) !== undefined) return values.map((v, i) => convert(v, elementOf(ast, i)))
  return values.map((v) => convert(v, ast))
}

interface Fields {
  readonly properties: Map<string, SchemaAST.AST>
  readonly index: SchemaAST.AST | undefined
}

const fieldsCache = new WeakMap<EventType.Any, Fields>()

/** The keys a type's data declares (its encoded form), with their types. */
const fieldsOf = (type: EventType.Any): Fields => {
  let fields = fieldsCache.get(type)
  if (fields !== undefined) return fields
  const properties = new Map<string, SchemaAST.AST>()
  let index: SchemaAST.AST | undefined
  const visit = (ast: SchemaAST.AST, depth: number): void => {
    if (depth > 8) return
    const t = unwrap(SchemaAST.toEncoded(ast))
    if (SchemaAST.isObjects(t)) {
      for (const p of t.propertySignatures) {
        if (typeof p.name === "string" && !properties.has(p.name)) properties.set(p.name, p.type)
      }
      for (const s of t.indexSignatures) if (index === undefined) index = s.type
    } else if (SchemaAST.isUnion(t)) {
      for (const member of t.types) visit(member, depth + 1)
    }
  }
  visit(type.schema.ast, 0)
  fields = { properties, index }
  fieldsCache.set(type, fields)
  return fields
}

/**
 * Data of a type from query-string parameters (or a form body): each key's strings
 * converted to what the type's schema expects for that key, read from the encoded
 * side of its schema: `"3"` becomes `3` for a number, `"true"` becomes `true` for a
 * boolean, a literal or enum member is matched by its text, `"null"` is `null` where
 * null is allowed, and a key repeated (`tag=a&tag=b`) is an array for an array key
 * (a single value too). A union tries its members in order. What matches nothing
 * stays a string, so that validation reports it. Keys starting with `__` are
 * reserved (`__event__`) and left out.
 *
 * *Gotchas*: nested objects cannot be written in a query string; send them as a
 * JSON body. A schema whose encoded side is a string (`NumberFromString`) gets the
 * string, as it asks.
 *
 * @example
 * ```ts
 * const Click = EventType.make("app.Click", 1, Schema.Struct({ x: Schema.Number, ok: Schema.Boolean }))
 * Http.queryData(Click, new URLSearchParams("x=3&ok=true")) // { x: 3, ok: true }
 * ```
 *
 * @category conversions
 */
export const queryData = (type: EventType.Any, params: URLSearchParams): Record<string, unknown> => {
  const fields = fieldsOf(type)
  const out: Record<string, unknown> = {}
  for (const key of new Set(params.keys())) {
    if (key.startsWith("__")) continue
    out[key] = convertValues(params.getAll(key), fields.properties.get(key) ?? fields.index)
  }
  return out
}

// ---------------------------------------------------------------------------------------
// The relay's privacy rule
// ---------------------------------------------------------------------------------------

/**
 * The SHA-256 hex of a value: of its text for a string, of its JSON otherwise.
 *
 * @category conversions
 */
export const hashValue = (value: unknown): string =>
  createHash("sha256")
    .update(typeof value === "string" ? value : (JSON.stringify(value) ?? String(value)))
    .digest("hex")

/**
 * Properties as the relay lets them through for a relayable type: a declared key
 * passes as it is, a key listed in `relay.hash` gets the SHA-256 hex of its value
 * (`null` and `undefined` stay as they are), every other key is dropped and named in
 * `dropped`. The result is then validated by the type's schema.
 *
 * @example
 * ```ts
 * const SignedUp = EventType.make("web.SignedUp", 1, Schema.Struct({ plan: Schema.String, email: Schema.String }), {
 *   relay: { hash: ["email"] }
 * })
 * Http.relayProperties(SignedUp.relay!, { plan: "pro", email: "a@b.c", name: "Ann" })
 * // { data: { plan: "pro", email: "<64 hex digits>" }, dropped: ["name"] }
 * ```
 *
 * @category conversions
 */
export const relayProperties = (
  relay: EventType.Relay,
  properties: Readonly<Record<string, unknown>>
): { readonly data: Record<string, unknown>; readonly dropped: ReadonlyArray<string> } => {
  const data: Record<string, unknown> = {}
  const dropped: Array<string> = []
  for (const key of Object.keys(properties)) {
    const value = properties[key]
    if (relay.hash.includes(key)) {
      data[key] = value === null || value === undefined ? value : hashValue(value)
    } else if (relay.keys.includes(key)) {
      data[key] = value
    } else {
      dropped.push(key)
    }
  }
  return { data, dropped }
}

// ---------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------

interface Reply {
  readonly status: number
  readonly body: string
  readonly contentType: string
  readonly headers?: Readonly<Record<string, string>>
}

const JSON_TYPE = "application/json; charset=utf-8"

const json = (status: number, value: unknown, headers?: Readonly<Record<string, string>>): Reply =>
  headers === undefined
    ? { status, body: JSON.stringify(value), contentType: JSON_TYPE }
    : { status, body: JSON.stringify(value), contentType: JSON_TYPE, headers }

/** The JSON body of a refusal: `{ error, message, ...facts }`. */
const errorBody = (error: unknown): { readonly status: number; readonly body: Record<string, unknown> } => {
  if (error instanceof HttpError)
    return { status: error.status, body: { error: error.httpCode, message: error.detail } }
  if (error instanceof EventNotFound) {
    return {
      status: 404,
      body: { error: "event_not_found", message: error.message, asked: error.asked, suggestions: error.suggestions }
    }
  }
  if (error instanceof ValidationError) {
    return {
      status: 422,
      body: { error: "validation", message: error.message, type: error.type, issues: error.issues }
    }
  }
  if (error instanceof TrailClosed) return { status: 503, body: { error: "closing", message: error.message } }
  return {
    status: 500,
    body: { error: "internal", message: "the events could not be recorded; nothing was accepted, send them again" }
  }
}

const refusal = (error: unknown): Reply => {
  const { status, body } = errorBody(error)
  return json(status, body, status === 503 ? { "retry-after": "1" } : undefined)
}

const send = (res: http.ServerResponse, reply: Reply, extra: Readonly<Record<string, string>> | undefined): void => {
  if (res.headersSent || res.destroyed) return
  res.statusCode = reply.status
  res.setHeader("content-type", reply.contentType)
  res.setHeader("cache-control", "no-store")
  if (reply.headers !== undefined) for (const [k, v] of Object.entries(reply.headers)) res.setHeader(k, v)
  if (extra !== undefined) for (const [k, v] of Object.entries(extra)) res.setHeader(k, v)
  res.end(reply.body)
}

// ---------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------

const mimeOf = (req: http.IncomingMessage): string =>
  (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()

const MSGPACK = new Set(["application/msgpack", "application/x-msgpack", "application/vnd.msgpack"])
const JSONISH = new Set(["application/json", "text/plain"])
const FORM = "application/x-www-form-urlencoded"

/** Whether a request carries a body at all (a length above 0, or chunked). */
const hasBody = (req: http.IncomingMessage): boolean => {
  const length = req.headers["content-length"]
  if (length !== undefined) return Number(length) > 0
  return req.headers["transfer-encoding"] !== undefined
}

/** Reads the body, up to `max` bytes (413 past it, checked on the declared length first). */
const readBody = (req: http.IncomingMessage, max: number): Effect.Effect<Buffer, HttpError> =>
  Effect.callback<Buffer, HttpError>((resume) => {
    const declared = req.headers["content-length"]
    if (declared !== undefined && Number(declared) > max) {
      resume(
        Effect.fail(failure("payload_too_large", `a body of ${declared} bytes is larger than the limit of ${max}`))
      )
      return
    }
    const chunks: Array<Buffer> = []
    let size = 0
    let settled = false
    const cleanup = () => {
      req.off("data", onData)
      req.off("end", onEnd)
      req.off("error", onError)
      req.off("close", onClose)
    }
    const settle = (effect: Effect.Effect<Buffer, HttpError>) => {
      if (settled) return
      settled = true
      cleanup()
      resume(effect)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > max) {
        settle(Effect.fail(failure("payload_too_large", `the body is larger than the limit of ${max} bytes`)))
        req.resume() // the rest is read and discarded
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => settle(Effect.succeed(Buffer.concat(chunks, size)))
    const onError = (error: Error) =>
      settle(Effect.fail(failure("bad_request", `reading the body failed: ${error.message}`)))
    const onClose = () => settle(Effect.fail(failure("bad_request", "the request ended before its body")))
    req.on("data", onData)
    req.on("end", onEnd)
    req.on("error", onError)
    req.on("close", onClose)
    return Effect.sync(cleanup)
  })

const parseJson = (body: Buffer): Effect.Effect<unknown, HttpError> =>
  Effect.suspend(() => {
    try {
      return Effect.succeed(JSON.parse(body.toString("utf8")) as unknown)
    } catch (error) {
      return Effect.fail(failure("bad_request", `the body is not valid JSON: ${(error as Error).message}`))
    }
  })

const isObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && !(u instanceof Uint8Array)

/** Constant-time string equality (over the SHA-256 of each side, so lengths do not leak). */
const sameSecret = (a: string, b: string): boolean =>
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest())

const bearerOf = (req: http.IncomingMessage): string | undefined => {
  const header = req.headers.authorization
  if (header === undefined) return undefined
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header)
  return m === null ? undefined : m[1]
}

// ---------------------------------------------------------------------------------------
// The views
// ---------------------------------------------------------------------------------------

const MAX_TIME = Protocol.maxTime

/**
 * The HTTP views as a `node:http` request handler: mount it on the gateway's server
 * (its `http` option), or call it first in any `request` listener. It throws
 * {@link InvalidOptions} for a limit that is not a positive integer.
 *
 * @example
 * ```ts
 * import * as http from "node:http"
 * import { Http } from "cairn"
 *
 * const views = Http.routes({ ingest, trail, tokens: { "trainer-7": process.env.TRAINER_TOKEN! } })
 * http.createServer((req, res) => {
 *   if (!views(req, res)) res.writeHead(404).end()
 * }).listen(4600)
 * ```
 *
 * @category constructors
 */
export const routes = (options: Options): Handler => {
  const maxBodyBytes = options.maxBodyBytes ?? defaults.maxBodyBytes
  const maxEvents = options.maxEvents ?? defaults.maxEvents
  for (const [name, value] of [
    ["maxBodyBytes", maxBodyBytes],
    ["maxEvents", maxEvents]
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new InvalidOptions({ subject: "Http", reason: `${name} must be a positive integer` })
    }
  }
  const { ingest, trail } = options
  const allowed = options.allowedOrigins ?? defaults.allowedOrigins
  const source = options.source ?? defaults.source
  const closing = options.closing ?? (() => trail.statsUnsafe().closed)
  const context = options.context ?? Context.empty()
  const runFork = Effect.runForkWith(context)
  const codec = Serialization.make({ maxBytes: maxBodyBytes })
  const ids = new IdGenerator()
  let seq = 0
  const tokens = options.tokens
  const tokenValid = (harness: string, token: string): boolean => {
    if (tokens === undefined) return false
    if (typeof tokens === "function") return tokens(harness, token)
    const expected = Object.hasOwn(tokens, harness) ? tokens[harness] : undefined
    return expected !== undefined && expected.length > 0 && sameSecret(token, expected)
  }

  /** The CORS headers for a browser request, or `undefined` when its origin is not allowed. */
  const corsOf = (req: http.IncomingMessage): Record<string, string> | undefined => {
    if (allowed === "*") return { "access-control-allow-origin": "*" }
    const origin = req.headers.origin
    if (origin === undefined || !allowed.includes(origin)) return undefined
    return { "access-control-allow-origin": origin, vary: "Origin" }
  }

  const preflight = (req: http.IncomingMessage): Reply => {
    const cors = corsOf(req)
    if (cors === undefined) {
      return refusal(failure("origin_not_allowed", `origin ${req.headers.origin ?? "(none)"} is not allowed`))
    }
    return {
      status: 204,
      body: "",
      contentType: "text/plain",
      headers: {
        ...cors,
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": "Content-Type",
        "access-control-max-age": "600"
      }
    }
  }

  const checkOrigin = (req: http.IncomingMessage): Effect.Effect<void, HttpError> =>
    allowed === "*" || req.headers.origin === undefined || allowed.includes(req.headers.origin)
      ? Effect.void
      : Effect.fail(failure("origin_not_allowed", `origin ${req.headers.origin} is not allowed`))

  const checkOpen: Effect.Effect<void, HttpError> = Effect.suspend(() =>
    closing() ? Effect.fail(failure("closing", "the service is shutting down")) : Effect.void
  )

  /** An Intake for a name or key; fails with {@link EventNotFound} (counted by the trail). */
  const intakeOf = (name: string): Effect.Effect<Trail.Intake, EventNotFound> =>
    Effect.suspend(() => {
      try {
        return Effect.succeed(trail.intake(name))
      } catch (error) {
        return error instanceof EventNotFound ? Effect.fail(error) : Effect.die(error)
      }
    })

  /** Validates data with the type's schema; fails with every issue (counted as rejected). */
  const validate = (intake: Trail.Intake, data: unknown): Effect.Effect<void, ValidationError> =>
    Effect.suspend(() => {
      try {
        intake.decode(data)
        return Effect.void
      } catch (error) {
        return error instanceof ValidationError ? Effect.fail(error) : Effect.die(error)
      }
    })

  /** Ingests events made here (new ids, never duplicates); fails with the first refusal. */
  const ingestOwn = (
    key: string,
    rows: ReadonlyArray<Protocol.Row>
  ): Effect.Effect<ReadonlyArray<Protocol.Outcome>, unknown> =>
    ingest.batch(source, { _tag: "Batch", seq: 1, key, events: { _tag: "Rows", rows } })

  const now = Clock.currentTimeMillis
  const nextId = (ms: number): string => ids.format(ms, seq++)

  // POST /api/v1/harness-events ----------------------------------------------------------

  const harnessEvents = (req: http.IncomingMessage): Effect.Effect<Reply, unknown> =>
    Effect.gen(function* () {
      yield* checkOpen
      const token = bearerOf(req)
      if (token === undefined) {
        return yield* failure("unauthorized", "a bearer token is required (Authorization: Bearer <token>)")
      }
      if (tokens === undefined) return yield* failure("unauthorized", "no harness tokens are configured")
      const mime = mimeOf(req)
      const msgpack = MSGPACK.has(mime)
      if (!msgpack && mime !== "application/json") {
        return yield* failure(
          "unsupported_media_type",
          `Content-Type ${mime || "(none)"} is not taken; send application/msgpack or application/json`
        )
      }
      const body = yield* readBody(req, maxBodyBytes)
      const value = msgpack ? yield* decodeMsgpack(body) : yield* parseJson(body)
      const batch = yield* parseHarnessBatch(value, maxEvents)
      if (!tokenValid(batch.harness, token)) {
        return yield* failure("unauthorized", `the token is not valid for harness ${batch.harness}`)
      }
      const frame: Protocol.BatchFrame = {
        _tag: "Batch",
        seq: 1,
        key: batch.key,
        events: { _tag: "Rows", rows: batch.rows }
      }
      const outcomes = yield* ingest.batch(batch.harness, frame)
      return json(200, {
        accepted: batch.rows.length - outcomes.length,
        outcomes: outcomes.map(([index, code, reason]) => ({ index, id: batch.rows[index]![0], code, reason }))
      })
    })

  const decodeMsgpack = (body: Buffer): Effect.Effect<unknown, HttpError> =>
    Effect.suspend(() => {
      try {
        return Effect.succeed(codec.decodeUnsafe(body))
      } catch (error) {
        return Effect.fail(failure("bad_request", `the body is not MessagePack: ${(error as Error).message}`))
      }
    })

  // POST /event/log?__event__=app.Name&k=v -------------------------------------------------

  const eventLog = (req: http.IncomingMessage, query: string): Effect.Effect<Reply, unknown> =>
    Effect.gen(function* () {
      yield* checkOrigin(req)
      yield* checkOpen
      const params = new URLSearchParams(query)
      const name = params.get("__event__")
      if (name === null || name === "") {
        return yield* failure("bad_request", "the query must name the event: ?__event__=app.EventName")
      }
      let fromBody: Record<string, unknown> = {}
      let form: URLSearchParams | undefined
      if (hasBody(req)) {
        const mime = mimeOf(req)
        if (!JSONISH.has(mime) && mime !== FORM) {
          return yield* failure(
            "unsupported_media_type",
            `Content-Type ${mime || "(none)"} is not taken; send application/json, text/plain (JSON) or ${FORM}`
          )
        }
        const body = yield* readBody(req, maxBodyBytes)
        if (mime === FORM) {
          form = new URLSearchParams(body.toString("utf8"))
        } else if (body.length > 0) {
          const value = yield* parseJson(body)
          if (!isObject(value)) return yield* failure("bad_request", "a JSON body must be an object (the event's data)")
          fromBody = value
        }
      }
      const intake = yield* intakeOf(name)
      const data: Record<string, unknown> = { ...fromBody }
      if (form !== undefined) Object.assign(data, queryData(intake.type, form))
      Object.assign(data, queryData(intake.type, params))
      yield* validate(intake, data)
      const at = yield* now
      const id = nextId(at)
      const outcomes = yield* ingestOwn(intake.type.key, [[id, at, data, undefined]])
      const refused = outcomes[0]
      if (refused !== undefined && refused[1] !== "duplicate") {
        return yield* failure("bad_request", `${refused[1]}: ${refused[2]}`)
      }
      return json(202, { id })
    })

  // POST /analytics {event, properties} ------------------------------------------------------

  interface Relayed {
    readonly key: string
    readonly row: Protocol.Row
    readonly dropped: ReadonlyArray<string>
  }

  const relayOne = (item: unknown, where: string): Effect.Effect<Relayed, unknown> =>
    Effect.gen(function* () {
      if (!isObject(item) || typeof item.event !== "string" || item.event === "") {
        return yield* failure("bad_request", `${where} must be an object { event: "app.Name", properties: {...} }`)
      }
      const properties = item.properties ?? {}
      if (!isObject(properties)) return yield* failure("bad_request", `${where}.properties must be an object`)
      const intake = yield* intakeOf(item.event)
      const relay = intake.type.relay
      if (relay === undefined) {
        return yield* failure(
          "not_relayable",
          `event type ${intake.type.key} is not relayable (declare it with the relay option of EventType.make)`
        )
      }
      const { data, dropped } = relayProperties(relay, properties)
      yield* validate(intake, data)
      const at = yield* now
      return { key: intake.type.key, row: [nextId(at), at, data, undefined] as const, dropped }
    })

  /** Ingests relayed events, one batch per type in order of first appearance. */
  const ingestRelayed = (items: ReadonlyArray<Relayed>): Effect.Effect<void, unknown> =>
    Effect.gen(function* () {
      const byKey = new Map<string, Array<Protocol.Row>>()
      for (const item of items) {
        const rows = byKey.get(item.key)
        if (rows === undefined) byKey.set(item.key, [item.row])
        else rows.push(item.row)
      }
      for (const [key, rows] of byKey) {
        const outcomes = yield* ingestOwn(key, rows)
        const refused = outcomes.find((o) => o[1] !== "duplicate")
        if (refused !== undefined) return yield* failure("bad_request", `${refused[1]}: ${refused[2]}`)
      }
    })

  const accepted = (item: Relayed): Record<string, unknown> =>
    item.dropped.length === 0 ? { id: item.row[0] } : { id: item.row[0], dropped: item.dropped }

  const analytics = (req: http.IncomingMessage): Effect.Effect<Reply, unknown> =>
    Effect.gen(function* () {
      yield* checkOrigin(req)
      yield* checkOpen
      const mime = mimeOf(req)
      if (!JSONISH.has(mime)) {
        return yield* failure(
          "unsupported_media_type",
          `Content-Type ${mime || "(none)"} is not taken; send application/json or text/plain (JSON)`
        )
      }
      const value = yield* Effect.flatMap(readBody(req, maxBodyBytes), parseJson)
      if (!Array.isArray(value)) {
        const item = yield* relayOne(value, "the body")
        yield* ingestRelayed([item])
        return json(202, accepted(item))
      }
      if (value.length === 0) return yield* failure("bad_request", "an array body holds at least 1 event")
      if (value.length > maxEvents) {
        return yield* failure("too_many_events", `${value.length} events is more than the limit of ${maxEvents}`)
      }
      const results: Array<Record<string, unknown>> = []
      const relayed: Array<Relayed> = []
      for (let i = 0; i < value.length; i++) {
        const result = yield* Effect.result(relayOne(value[i], `body[${i}]`))
        if (result._tag === "Success") {
          relayed.push(result.success)
          results.push({ status: 202, ...accepted(result.success) })
        } else {
          const { status, body } = errorBody(result.failure)
          results.push({ status, ...body })
        }
      }
      if (relayed.length > 0) yield* ingestRelayed(relayed)
      return json(200, { results })
    })

  // GET /healthz, GET /metrics ------------------------------------------------------------------

  const healthz: Effect.Effect<Reply> = Effect.sync(() => {
    const isClosing = closing()
    const body: Record<string, unknown> = { status: isClosing ? "closing" : "ok", closing: isClosing }
    if (options.sessions !== undefined) body.sessions = options.sessions()
    return json(isClosing ? 503 : 200, body)
  })

  const metrics: Effect.Effect<Reply> = Effect.map(
    Effect.promise(() => import("effect/observability")),
    ({ PrometheusMetrics }) => ({
      status: 200,
      body: PrometheusMetrics.formatUnsafe(context),
      contentType: "text/plain; version=0.0.4; charset=utf-8"
    })
  )

  // dispatch ----------------------------------------------------------------------------------

  const methodNotAllowed = (allow: string): Reply => ({
    ...refusal(failure("method_not_allowed", `this path takes ${allow}`)),
    headers: { allow }
  })

  const answer = (
    res: http.ServerResponse,
    effect: Effect.Effect<Reply, unknown>,
    cors: Readonly<Record<string, string>> | undefined
  ): void => {
    runFork(
      effect.pipe(
        Effect.catchCause((cause) => {
          const failure = Cause.findErrorOption(cause)
          if (failure._tag === "Some") {
            const reply = refusal(failure.value)
            // a store that could not record the events: the client is told to send again
            return reply.status === 500
              ? Effect.as(Effect.logWarning("Http: events could not be recorded", failure.value), reply)
              : Effect.succeed(reply)
          }
          return Effect.as(Effect.logError("Http: a request failed unexpectedly", cause), refusal(cause))
        }),
        Effect.flatMap((reply) => Effect.sync(() => send(res, reply, cors)))
      )
    )
  }

  return (req, res) => {
    const url = req.url ?? "/"
    const q = url.indexOf("?")
    const path = q < 0 ? url : url.slice(0, q)
    const method = req.method ?? "GET"
    switch (path) {
      case paths.harnessEvents:
        answer(res, method === "POST" ? harnessEvents(req) : Effect.succeed(methodNotAllowed("POST")), undefined)
        return true
      case paths.eventLog:
      case paths.analytics: {
        const cors = corsOf(req)
        if (method === "OPTIONS") answer(res, Effect.succeed(preflight(req)), undefined)
        else if (method !== "POST") answer(res, Effect.succeed(methodNotAllowed("POST, OPTIONS")), cors)
        else answer(res, path === paths.analytics ? analytics(req) : eventLog(req, q < 0 ? "" : url.slice(q + 1)), cors)
        return true
      }
      case paths.healthz:
      case paths.metrics:
        answer(
          res,
          method === "GET" || method === "HEAD"
            ? path === paths.healthz
              ? healthz
              : metrics
            : Effect.succeed(methodNotAllowed("GET, HEAD")),
          undefined
        )
        return true
      default:
        return false
    }
  }
}

/**
 * The HTTP views, running in the current Effect context (its metric registry and
 * clock); see {@link routes}.
 *
 * @category constructors
 */
export const make = (options: Omit<Options, "context">): Effect.Effect<Handler> =>
  Effect.map(Effect.context<never>(), (context) => routes({ ...options, context }))

// ---------------------------------------------------------------------------------------
// Harness batches over HTTP
// ---------------------------------------------------------------------------------------

/**
 * A harness batch as posted to `/api/v1/harness-events` (JSON or MessagePack):
 * the harness id (the events' source), the events' type key, and the events, each an
 * object `{ id, happenedAt, data, parent? }` or a protocol row `[id, happenedAt, data, parent]`.
 *
 * @category models
 */
export interface HarnessBatch {
  readonly harness: string
  readonly key: string
  readonly events: ReadonlyArray<
    | { readonly id: string; readonly happenedAt: number; readonly data: unknown; readonly parent?: string | null }
    | readonly [id: string, happenedAt: number, data: unknown, parent?: string | null]
  >
}

const intOf = (v: unknown): number | undefined => {
  if (typeof v === "number") return Number.isInteger(v) ? v : undefined
  if (typeof v === "bigint") return v >= 0n && v <= BigInt(MAX_TIME) ? Number(v) : undefined
  return undefined
}

/** Checks a posted harness batch; its events become protocol rows. */
const parseHarnessBatch = (
  value: unknown,
  maxEvents: number
): Effect.Effect<{ readonly harness: string; readonly key: string; readonly rows: Array<Protocol.Row> }, HttpError> =>
  Effect.suspend(() => {
    const bad = (detail: string) => Effect.fail(failure("bad_request", detail))
    if (!isObject(value)) return bad("the body must be an object { harness, key, events }")
    const { harness, key, events } = value
    if (typeof harness !== "string" || harness === "") return bad("harness must be a non-empty string")
    if (typeof key !== "string" || !Protocol.isKey(key)) {
      return bad("key must be a type key name@version (like app.Name@1)")
    }
    if (!Array.isArray(events) || events.length === 0) return bad("events must be a non-empty array")
    if (events.length > maxEvents) {
      return Effect.fail(failure("too_many_events", `${events.length} events is more than the limit of ${maxEvents}`))
    }
    const rows = new Array<Protocol.Row>(events.length)
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as unknown
      let id: unknown
      let at: unknown
      let data: unknown
      let parent: unknown
      if (Array.isArray(e) && (e.length === 3 || e.length === 4)) {
        ;[id, at, data, parent] = e
      } else if (isObject(e)) {
        if (!Object.hasOwn(e, "data")) return bad(`events[${i}].data is missing`)
        ;({ id, happenedAt: at, data, parent } = e)
      } else {
        return bad(
          `events[${i}] must be an object { id, happenedAt, data, parent? } or a row [id, happenedAt, data, parent]`
        )
      }
      if (typeof id !== "string" || !isEventId(id)) {
        return bad(`events[${i}].id must be an event id (26 characters of Crockford base32)`)
      }
      const time = intOf(at)
      if (time === undefined || time < 0 || time > MAX_TIME) {
        return bad(`events[${i}].happenedAt must be an integer from 0 to ${MAX_TIME} (milliseconds since the epoch)`)
      }
      if (parent !== undefined && parent !== null && typeof parent !== "string") {
        return bad(`events[${i}].parent must be a string or null`)
      }
      rows[i] = [id, time, data, typeof parent === "string" ? parent : undefined]
    }
    return Effect.succeed({ harness, key, rows })
  })
