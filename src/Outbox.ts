/**
 * The transactional outbox: subscriptions, their deliveries, and the workers that
 * deliver them.
 *
 * A subscription says who gets the events of some types: a **webhook** (a URL, with a
 * secret that signs each request), an **in-process subscriber** (an Effect function
 * registered by name on the workers), or an **analytics** sink (a URL that gets only
 * the anonymized telemetry properties). Subscriptions live in the database and can be
 * added, changed and removed at runtime.
 *
 * When the store records an event, it writes one delivery row per active subscription
 * of the event's type *in the same transaction* (see `Store`): an event is never
 * committed without its deliveries. Workers claim due deliveries, deliver them, and
 * mark each delivered, or reschedule it with exponential backoff and jitter (a
 * `Retry-After` is honoured), or mark it dead after the subscription's `maxAttempts`,
 * keeping the last error. A claim is a lease: a worker that dies mid-delivery (even
 * `kill -9`) loses its claims when the lease ends and another worker takes them over,
 * so every delivery completes at least once; receivers de-duplicate by the
 * idempotency key, the event id. On Postgres several workers in several processes
 * share the work (`FOR UPDATE SKIP LOCKED`); on SQLite run one.
 *
 * Webhooks, signatures, retries and the operations on dead deliveries: `docs/outbox.md`.
 *
 * @since 0.1.0
 */
import { createHmac, randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { Effect, Fiber, FiberSet, Metric, type Scope } from "effect"
import type { NonEmptyReadonlyArray } from "effect/Array"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { DeliveryFailed, InvalidOptions, SubscriptionNotFound } from "./Errors.ts"
import type { StoredEvent } from "./Store.ts"

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

/**
 * Who a subscription delivers to: `webhook` (POST of the event as JSON, signed),
 * `subscriber` (an in-process Effect function registered on the workers under the
 * subscription's `name`), `analytics` (POST of `{event, properties}` with only the
 * anonymized telemetry properties).
 *
 * @category models
 */
export type Kind = "webhook" | "subscriber" | "analytics"

/**
 * What a subscription is made of.
 *
 * @category models
 */
export interface SubscriptionInput {
  readonly kind: Kind
  /** A name for people; for a `subscriber`, the name it is registered under on the workers. */
  readonly name: string
  /**
   * The event types it gets: type keys (`app.Name@2`), names (every version of a name)
   * or `"*"` (every type). At least one.
   */
  readonly types: ReadonlyArray<string>
  /** Where to POST (`http:` or `https:`); required for `webhook` and `analytics`. */
  readonly url?: string
  /** The key of the HMAC-SHA256 signature of each request (webhook and analytics). Default: none (unsigned). */
  readonly secret?: string
  /** Attempts before a delivery is dead. Default `10`. */
  readonly maxAttempts?: number
  /** An inactive subscription gets no new deliveries. Default `true`. */
  readonly active?: boolean
}

/**
 * A subscription as stored.
 *
 * @category models
 */
export interface Subscription {
  readonly id: string
  readonly kind: Kind
  readonly name: string
  readonly types: ReadonlyArray<string>
  readonly url: string | undefined
  /** Whether it signs its requests (the secret itself is never read back). */
  readonly signed: boolean
  readonly maxAttempts: number
  readonly active: boolean
  readonly createdAt: number
}

/**
 * The states of a delivery: `pending` (due at `dueAt`), `delivering` (claimed by a
 * worker, until its lease ends), `delivered`, `dead` (attempts exhausted; can be
 * retried by hand).
 *
 * @category models
 */
export type State = "pending" | "delivering" | "delivered" | "dead"

/**
 * A delivery, as the operations list it.
 *
 * @category models
 */
export interface Delivery {
  readonly id: number
  readonly subscriptionId: string
  readonly eventId: string
  readonly state: State
  readonly attempts: number
  readonly dueAt: number
  readonly lastError: string | undefined
  readonly lastStatus: number | undefined
  readonly deliveredAt: number | undefined
  readonly createdAt: number
}

/**
 * The defaults of subscriptions and workers.
 *
 * @category constructors
 */
export const defaults = {
  maxAttempts: 10,
  concurrency: 8,
  batchSize: 32,
  pollMs: 500,
  leaseMs: 60_000,
  timeoutMs: 10_000,
  backoffBaseMs: 1_000,
  backoffMaxMs: 3_600_000,
  jitter: 0.2,
  shutdownGraceMs: 5_000,
  countsEveryMs: 5_000
} as const

const KINDS: ReadonlyArray<Kind> = ["webhook", "subscriber", "analytics"]
const PATTERN = /^(\*|[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)+(@[1-9][0-9]*)?)$/

const invalid = (reason: string) => new InvalidOptions({ subject: "Outbox subscription", reason })

const checkInput = (input: SubscriptionInput): InvalidOptions | undefined => {
  if (!KINDS.includes(input.kind)) return invalid(`kind must be one of ${KINDS.join(", ")}`)
  if (typeof input.name !== "string" || input.name === "") return invalid("name must be a non-empty string")
  if (!Array.isArray(input.types) || input.types.length === 0) return invalid("types must list at least one type")
  for (const t of input.types) {
    if (typeof t !== "string" || !PATTERN.test(t)) {
      return invalid(`types: ${JSON.stringify(t)} is not a type key, a name or "*"`)
    }
  }
  if (input.kind !== "subscriber") {
    let url: URL | undefined
    try {
      url = input.url === undefined ? undefined : new URL(input.url)
    } catch {
      url = undefined
    }
    if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
      return invalid(`a ${input.kind} needs an http: or https: url`)
    }
  }
  const max = input.maxAttempts ?? defaults.maxAttempts
  if (!Number.isSafeInteger(max) || max < 1 || max > 1_000)
    return invalid("maxAttempts must be an integer from 1 to 1000")
  if (input.secret !== undefined && (typeof input.secret !== "string" || input.secret === "")) {
    return invalid("secret must be a non-empty string")
  }
  return undefined
}

interface SubscriptionRow {
  readonly id: string
  readonly kind: Kind
  readonly name: string
  readonly url: string | null
  readonly secret: string | null
  readonly active: number | bigint
  readonly max_attempts: number | bigint
  readonly created_at: number | bigint
}

interface DeliveryRow {
  readonly id: number | bigint
  readonly subscription_id: string
  readonly event_id: string
  readonly state: State
  readonly attempts: number | bigint
  readonly due_at: number | bigint
  readonly last_error: string | null
  readonly last_status: number | bigint | null
  readonly delivered_at: number | bigint | null
  readonly created_at: number | bigint
}

const toDelivery = (r: DeliveryRow): Delivery => ({
  id: Number(r.id),
  subscriptionId: r.subscription_id,
  eventId: r.event_id,
  state: r.state,
  attempts: Number(r.attempts),
  dueAt: Number(r.due_at),
  lastError: r.last_error ?? undefined,
  lastStatus: r.last_status === null ? undefined : Number(r.last_status),
  deliveredAt: r.delivered_at === null ? undefined : Number(r.delivered_at),
  createdAt: Number(r.created_at)
})

// ---------------------------------------------------------------------------------------
// The outbox: subscriptions and operations
// ---------------------------------------------------------------------------------------

/**
 * Counts of deliveries by state.
 *
 * @category models
 */
export type Counts = Readonly<Record<State, number>>

/**
 * The outbox of a store's database (see the module doc).
 *
 * @category models
 */
export interface Outbox {
  readonly subscribe: (input: SubscriptionInput) => Effect.Effect<Subscription, SqlError | InvalidOptions>
  /** Changes a subscription; what is not given stays. New deliveries follow the change. */
  readonly update: (
    id: string,
    changes: Partial<SubscriptionInput>
  ) => Effect.Effect<Subscription, SqlError | InvalidOptions | SubscriptionNotFound>
  /** Removes a subscription and its deliveries, delivered or not. */
  readonly unsubscribe: (id: string) => Effect.Effect<void, SqlError | SubscriptionNotFound>
  readonly subscriptions: Effect.Effect<ReadonlyArray<Subscription>, SqlError>
  /** Deliveries by state, now. */
  readonly counts: Effect.Effect<Counts, SqlError>
  /** Every delivery of an event: where it went, and how far it got. */
  readonly deliveriesOf: (eventId: string) => Effect.Effect<ReadonlyArray<Delivery>, SqlError>
  /** Dead deliveries, oldest first (of one subscription when given), at most `limit` (default 100). */
  readonly dead: (options?: {
    readonly subscription?: string
    readonly limit?: number
  }) => Effect.Effect<ReadonlyArray<Delivery>, SqlError>
  /**
   * Makes dead deliveries pending again, due now, with their attempts counted from 0
   * (all of them, those of a subscription, or those listed); returns how many.
   */
  readonly retryDead: (options?: {
    readonly subscription?: string
    readonly ids?: ReadonlyArray<number>
  }) => Effect.Effect<number, SqlError>
}

const newId = () => `sub_${randomBytes(9).toString("base64url")}`

const STATES: ReadonlyArray<State> = ["pending", "delivering", "delivered", "dead"]

/**
 * The outbox on the `SqlClient` in context (whose database a `Store` migrated).
 *
 * @category constructors
 */
export const make: Effect.Effect<Outbox, never, SqlClient.SqlClient> = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient

  const typesOf = (id: string) =>
    Effect.map(
      sql<{
        pattern: string
      }>`SELECT pattern FROM cairn_subscription_types WHERE subscription_id = ${id} ORDER BY pattern`,
      (rows) => rows.map((r) => r.pattern)
    )

  const toSubscription = (r: SubscriptionRow, types: ReadonlyArray<string>): Subscription => ({
    id: r.id,
    kind: r.kind,
    name: r.name,
    types,
    url: r.url ?? undefined,
    signed: r.secret !== null,
    maxAttempts: Number(r.max_attempts),
    active: Number(r.active) === 1,
    createdAt: Number(r.created_at)
  })

  const read = (id: string) =>
    Effect.gen(function* () {
      const rows = yield* sql<SubscriptionRow>`SELECT * FROM cairn_subscriptions WHERE id = ${id}`
      const row = rows[0]
      if (row === undefined) return yield* new SubscriptionNotFound({ id })
      return toSubscription(row, yield* typesOf(id))
    })

  const writeTypes = (id: string, types: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      yield* sql`DELETE FROM cairn_subscription_types WHERE subscription_id = ${id}`
      const rows = [...new Set(types)].map((pattern) => ({ subscription_id: id, pattern }))
      yield* sql`INSERT INTO cairn_subscription_types ${sql.insert(rows as unknown as NonEmptyReadonlyArray<Record<string, unknown>>)}`
    })

  const subscribe = (input: SubscriptionInput) =>
    Effect.gen(function* () {
      const error = checkInput(input)
      if (error !== undefined) return yield* error
      const id = newId()
      yield* Effect.gen(function* () {
        yield* sql`INSERT INTO cairn_subscriptions ${sql.insert({
          id,
          kind: input.kind,
          name: input.name,
          url: input.url ?? null,
          secret: input.secret ?? null,
          active: input.active === false ? 0 : 1,
          max_attempts: input.maxAttempts ?? defaults.maxAttempts,
          created_at: Date.now()
        })}`
        yield* writeTypes(id, input.types)
      }).pipe(sql.withTransaction)
      return yield* read(id).pipe(Effect.orDie)
    })

  const update = (id: string, changes: Partial<SubscriptionInput>) =>
    Effect.gen(function* () {
      const rows = yield* sql<SubscriptionRow>`SELECT * FROM cairn_subscriptions WHERE id = ${id}`
      const row = rows[0]
      if (row === undefined) return yield* new SubscriptionNotFound({ id })
      const current: SubscriptionInput = {
        kind: row.kind,
        name: row.name,
        types: yield* typesOf(id),
        ...(row.url === null ? {} : { url: row.url }),
        ...(row.secret === null ? {} : { secret: row.secret }),
        maxAttempts: Number(row.max_attempts),
        active: Number(row.active) === 1
      }
      const next = { ...current, ...changes }
      const error = checkInput(next)
      if (error !== undefined) return yield* error
      yield* Effect.gen(function* () {
        yield* sql`UPDATE cairn_subscriptions SET ${sql.update({
          kind: next.kind,
          name: next.name,
          url: next.url ?? null,
          secret: next.secret ?? null,
          active: next.active === false ? 0 : 1,
          max_attempts: next.maxAttempts ?? defaults.maxAttempts
        })} WHERE id = ${id}`
        if (changes.types !== undefined) yield* writeTypes(id, next.types)
      }).pipe(sql.withTransaction)
      return yield* read(id)
    })

  const unsubscribe = (id: string) =>
    Effect.gen(function* () {
      const rows = yield* sql<{ id: string }>`DELETE FROM cairn_subscriptions WHERE id = ${id} RETURNING id`
      if (rows.length === 0) return yield* new SubscriptionNotFound({ id })
    })

  const subscriptions = Effect.gen(function* () {
    const rows = yield* sql<SubscriptionRow>`SELECT * FROM cairn_subscriptions ORDER BY created_at, id`
    const types = yield* sql<{ subscription_id: string; pattern: string }>`SELECT subscription_id, pattern
      FROM cairn_subscription_types ORDER BY pattern`
    return rows.map((r) =>
      toSubscription(
        r,
        types.filter((t) => t.subscription_id === r.id).map((t) => t.pattern)
      )
    )
  })

  const counts = Effect.map(
    sql<{ state: State; n: number | bigint }>`SELECT state, count(*) AS n FROM cairn_deliveries GROUP BY state`,
    (rows) => {
      const out: Record<State, number> = { pending: 0, delivering: 0, delivered: 0, dead: 0 }
      for (const r of rows) if (STATES.includes(r.state)) out[r.state] = Number(r.n)
      return out
    }
  )

  const deliveriesOf = (eventId: string) =>
    Effect.map(sql<DeliveryRow>`SELECT * FROM cairn_deliveries WHERE event_id = ${eventId} ORDER BY id`, (rows) =>
      rows.map(toDelivery)
    )

  const dead = (options: { readonly subscription?: string; readonly limit?: number } = {}) =>
    Effect.map(
      sql<DeliveryRow>`SELECT * FROM cairn_deliveries WHERE state = 'dead'
        ${options.subscription === undefined ? sql`` : sql`AND subscription_id = ${options.subscription}`}
        ORDER BY id LIMIT ${Math.max(1, Math.min(10_000, options.limit ?? 100))}`,
      (rows) => rows.map(toDelivery)
    )

  const retryDead = (options: { readonly subscription?: string; readonly ids?: ReadonlyArray<number> } = {}) =>
    Effect.map(
      sql<{ id: number }>`UPDATE cairn_deliveries SET state = 'pending', attempts = 0, due_at = ${Date.now()},
          claimed_by = NULL, claimed_until = NULL
        WHERE state = 'dead'
        ${options.subscription === undefined ? sql`` : sql`AND subscription_id = ${options.subscription}`}
        ${options.ids === undefined ? sql`` : options.ids.length === 0 ? sql`AND 1 = 0` : sql`AND id IN ${sql.in(options.ids)}`}
        RETURNING id`,
      (rows) => rows.length
    )

  return {
    subscribe,
    update,
    unsubscribe,
    subscriptions,
    counts,
    deliveriesOf,
    dead,
    retryDead
  } satisfies Outbox
})

// ---------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------

/**
 * What an in-process subscriber gets: the event, and which attempt this is.
 *
 * @category models
 */
export interface DeliveryInput {
  readonly deliveryId: number
  readonly subscription: { readonly id: string; readonly name: string }
  readonly event: StoredEvent
  /** 1 for the first attempt. */
  readonly attempt: number
}

/**
 * An in-process subscriber: succeeds when the event is handled. A failure or defect
 * is a failed attempt (retried with backoff, dead after `maxAttempts`).
 *
 * @category models
 */
export type Subscriber = (input: DeliveryInput) => Effect.Effect<void, unknown>

/**
 * Options of a worker. Every field has a default.
 *
 * @category models
 */
export interface WorkerOptions {
  /**
   * The worker's id, written on its claims. A worker starting with the id of one that
   * died takes its claims back at once instead of waiting for their lease to end:
   * give a stable id (per host, say) to recover fast. Default: `<hostname>/<pid>/<random>`.
   */
  readonly id?: string
  /** Deliveries in progress at once. Default `8`. */
  readonly concurrency?: number
  /** Deliveries claimed per poll. Default `32`. */
  readonly batchSize?: number
  /** Time between polls when nothing is due. Default `500` ms. */
  readonly pollMs?: number
  /**
   * How long a claim is the worker's: past it another worker may take the delivery
   * over. Must exceed `timeoutMs` (so no delivery runs twice at once). Default `60_000` ms.
   */
  readonly leaseMs?: number
  /** Time a webhook or analytics request may take, or a subscriber run. Default `10_000` ms. */
  readonly timeoutMs?: number
  /**
   * Backoff after a failed attempt n (from 1): `baseMs * 2^(n-1)`, at most `maxMs`,
   * times a random factor in `[1 - jitter, 1 + jitter]`; a `Retry-After` longer than
   * that wins (up to `maxMs`). Defaults `1_000`, `3_600_000`, `0.2`.
   */
  readonly backoff?: { readonly baseMs?: number; readonly maxMs?: number; readonly jitter?: number }
  /** In-process subscribers, by the name their subscriptions use. */
  readonly subscribers?: Readonly<Record<string, Subscriber>>
  /**
   * The properties an analytics sink gets for an event: anonymized, never the raw
   * data unless you say so. Default: none (`{}`).
   */
  readonly telemetry?: (event: StoredEvent) => Readonly<Record<string, unknown>>
  /** At scope close, time given to deliveries in progress; the rest are left to their lease. Default `5_000` ms. */
  readonly shutdownGraceMs?: number
  /** How often the worker counts deliveries by state for `cairn_outbox_deliveries`. Default `5_000` ms. */
  readonly countsEveryMs?: number
}

/**
 * Counters of a worker since it started.
 *
 * @category models
 */
export interface WorkerStats {
  readonly claimed: number
  readonly delivered: number
  /** Failed attempts (rescheduled or dead). */
  readonly failed: number
  readonly dead: number
  /** Results not written because the claim was no longer this worker's (its lease ended). */
  readonly lost: number
  /** Deliveries in progress now. */
  readonly running: number
}

/**
 * A running worker.
 *
 * @category models
 */
export interface Worker {
  readonly id: string
  readonly stats: () => WorkerStats
  /** Polls now rather than at the next `pollMs`. */
  readonly wake: () => void
}

/**
 * The header with the HMAC signature of a request (see `docs/outbox.md`).
 *
 * @category signatures
 */
export const signatureHeader = "cairn-signature"

/**
 * The signature header's value of a body: `t=<ms>,v1=<hex>` where the hex is the
 * HMAC-SHA256, keyed by the secret, of `<ms>.<body>`.
 *
 * @category signatures
 */
export const sign = (secret: string, body: string, timestampMs: number): string =>
  `t=${timestampMs},v1=${createHmac("sha256", secret).update(`${timestampMs}.${body}`).digest("hex")}`

/**
 * Checks a signature header against a body (for receivers): true when it was made
 * with this secret over this body, at most `toleranceMs` (default 5 minutes) from `now`.
 *
 * @category signatures
 */
export const verify = (
  secret: string,
  body: string,
  header: string,
  options: { readonly toleranceMs?: number; readonly now?: number } = {}
): boolean => {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header)
  if (m === null) return false
  const t = Number(m[1])
  const now = options.now ?? Date.now()
  if (Math.abs(now - t) > (options.toleranceMs ?? 300_000)) return false
  const expected = sign(secret, body, t).slice(-64)
  let diff = 0
  for (let i = 0; i < 64; i++) diff |= expected.charCodeAt(i) ^ m[2]!.charCodeAt(i)
  return diff === 0
}

/** A `Retry-After` header in milliseconds (seconds or an HTTP date), if any. */
const retryAfterOf = (header: string | null, now: number): number | undefined => {
  if (header === null) return undefined
  const trimmed = header.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  const at = Date.parse(trimmed)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/**
 * The event as a webhook's body carries it (`event` in `docs/outbox.md`): absent
 * optional fields are left out.
 *
 * @category encoding
 */
export const eventJson = (event: StoredEvent) => ({
  id: event.id,
  type: event.type,
  name: event.name,
  version: event.version,
  happenedAt: event.happenedAt,
  recordedAt: event.recordedAt,
  source: event.source,
  ...(event.authuser === undefined ? {} : { authuser: event.authuser }),
  ...(event.parent === undefined ? {} : { parent: event.parent }),
  ...(event.group === undefined ? {} : { group: event.group }),
  data: event.data
})

interface Claimed {
  readonly id: number
  readonly attempts: number
  readonly maxAttempts: number
  readonly subscription: {
    readonly id: string
    readonly kind: Kind
    readonly name: string
    readonly url: string | null
    readonly secret: string | null
  }
  readonly event: StoredEvent
}

const post = (
  url: string,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number
): Effect.Effect<number, DeliveryFailed> =>
  Effect.tryPromise({
    try: (signal) =>
      fetch(url, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", ...headers },
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        redirect: "manual"
      }),
    catch: (error) => {
      const e = error as { name?: string; message?: string; cause?: { code?: string; message?: string } }
      const reason =
        e.name === "TimeoutError"
          ? `no answer within ${timeoutMs} ms`
          : `${e.message ?? String(error)}${e.cause?.code ? ` (${e.cause.code})` : ""}`
      return new DeliveryFailed({ reason })
    }
  }).pipe(
    Effect.flatMap((response) => {
      // the body is not needed: drop it so the connection is freed
      void response.body?.cancel().catch(() => {})
      if (response.status >= 200 && response.status < 300) return Effect.succeed(response.status)
      const retryAfterMs = retryAfterOf(response.headers.get("retry-after"), Date.now())
      return Effect.fail(
        new DeliveryFailed({
          reason: `the receiver answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`,
          status: response.status,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs })
        })
      )
    })
  )

/**
 * Series of the outbox workers (counters over every worker of the registry's process).
 *
 * @category metrics
 */
export const metrics = {
  delivered: Metric.counter("cairn_outbox_delivered_total", { description: "Deliveries delivered" }),
  failed: Metric.counter("cairn_outbox_attempts_failed_total", { description: "Delivery attempts that failed" }),
  dead: Metric.counter("cairn_outbox_dead_total", { description: "Deliveries that became dead" }),
  deliveries: Metric.gauge("cairn_outbox_deliveries", {
    description: "Deliveries by state (attribute state), as a worker last counted them"
  }),
  latency: Metric.histogram("cairn_outbox_attempt_latency_ms", {
    description: "Milliseconds per delivery attempt",
    boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 16 })
  })
} as const

const positive = (name: string, value: number, max = Number.MAX_SAFE_INTEGER) => {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new InvalidOptions({ subject: "Outbox worker", reason: `${name} must be an integer from 1 to ${max}` })
  }
  return value
}

/**
 * Starts a worker for the life of the current scope: it polls for due deliveries,
 * claims up to `batchSize`, runs up to `concurrency` at once, and writes each outcome.
 * Fails with {@link InvalidOptions} for invalid options. At scope close it claims no
 * more and gives the running deliveries `shutdownGraceMs`.
 *
 * @category constructors
 */
export const worker = (
  options: WorkerOptions = {}
): Effect.Effect<Worker, InvalidOptions, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function* () {
    const config = yield* Effect.try({
      try: () => {
        const timeoutMs = positive("timeoutMs", options.timeoutMs ?? defaults.timeoutMs)
        const leaseMs = positive("leaseMs", options.leaseMs ?? defaults.leaseMs)
        if (leaseMs <= timeoutMs) {
          throw new InvalidOptions({ subject: "Outbox worker", reason: "leaseMs must be longer than timeoutMs" })
        }
        const jitter = options.backoff?.jitter ?? defaults.jitter
        if (!(jitter >= 0 && jitter < 1)) {
          throw new InvalidOptions({ subject: "Outbox worker", reason: "backoff.jitter must be from 0 to below 1" })
        }
        return {
          concurrency: positive("concurrency", options.concurrency ?? defaults.concurrency, 1_000),
          batchSize: positive("batchSize", options.batchSize ?? defaults.batchSize, 1_000),
          pollMs: positive("pollMs", options.pollMs ?? defaults.pollMs),
          leaseMs,
          timeoutMs,
          baseMs: positive("backoff.baseMs", options.backoff?.baseMs ?? defaults.backoffBaseMs),
          maxMs: positive("backoff.maxMs", options.backoff?.maxMs ?? defaults.backoffMaxMs),
          jitter,
          graceMs: Math.max(0, options.shutdownGraceMs ?? defaults.shutdownGraceMs),
          countsEveryMs: positive("countsEveryMs", options.countsEveryMs ?? defaults.countsEveryMs)
        }
      },
      catch: (error) =>
        error instanceof InvalidOptions
          ? error
          : new InvalidOptions({ subject: "Outbox worker", reason: String(error) })
    })
    const sql = yield* SqlClient.SqlClient
    const pg = sql.onDialectOrElse({ pg: () => true, orElse: () => false })
    const id = options.id ?? `${hostname()}/${process.pid}/${randomBytes(4).toString("hex")}`
    const subscribers = options.subscribers ?? {}
    const telemetry = options.telemetry ?? (() => ({}))
    const stats = { claimed: 0, delivered: 0, failed: 0, dead: 0, lost: 0, running: 0 }

    // claims of a worker of the same id that died are ours again at once
    yield* sql`UPDATE cairn_deliveries SET state = 'pending', claimed_by = NULL, claimed_until = NULL
      WHERE state = 'delivering' AND claimed_by = ${id}`.pipe(Effect.ignore)

    const claim = (n: number) =>
      Effect.gen(function* () {
        const now = Date.now()
        const due = sql`SELECT id FROM cairn_deliveries
          WHERE (state = 'pending' AND due_at <= ${now}) OR (state = 'delivering' AND claimed_until <= ${now})
          ORDER BY due_at LIMIT ${n} ${pg ? sql.unsafe("FOR UPDATE SKIP LOCKED") : sql``}`
        const ids = yield* sql<{ id: number | bigint }>`UPDATE cairn_deliveries
          SET state = 'delivering', claimed_by = ${id}, claimed_until = ${now + config.leaseMs}, attempts = attempts + 1
          WHERE id IN (${due}) RETURNING id`
        if (ids.length === 0) return []
        const rows = yield* sql<Record<string, unknown>>`SELECT d.id AS d_id, d.attempts AS d_attempts,
            s.id AS s_id, s.kind AS s_kind, s.name AS s_name, s.url AS s_url, s.secret AS s_secret,
            s.max_attempts AS s_max,
            e.id, e.type, e.name, e.version, e.happened_at, e.recorded_at, e.source, e.authuser, e.parent, e.grp, e.data
          FROM cairn_deliveries d
          JOIN cairn_subscriptions s ON s.id = d.subscription_id
          JOIN cairn_events e ON e.id = d.event_id
          WHERE d.id IN ${sql.in(ids.map((r) => Number(r.id)))} ORDER BY d.id`
        return rows.map(
          (r): Claimed => ({
            id: Number(r.d_id),
            attempts: Number(r.d_attempts),
            maxAttempts: Number(r.s_max),
            subscription: {
              id: r.s_id as string,
              kind: r.s_kind as Kind,
              name: r.s_name as string,
              url: r.s_url as string | null,
              secret: r.s_secret as string | null
            },
            event: {
              id: r.id as string,
              type: r.type as string,
              name: r.name as string,
              version: Number(r.version),
              happenedAt: Number(r.happened_at),
              recordedAt: Number(r.recorded_at),
              source: r.source as string,
              authuser: (r.authuser as string | null) ?? undefined,
              parent: (r.parent as string | null) ?? undefined,
              group: (r.grp as string | null) ?? undefined,
              data: typeof r.data === "string" ? JSON.parse(r.data) : r.data
            }
          })
        )
      }).pipe(sql.withTransaction)

    const attempt = (c: Claimed): Effect.Effect<number | undefined, DeliveryFailed> => {
      const s = c.subscription
      const headers = (body: string): Record<string, string> => {
        const h: Record<string, string> = {
          "idempotency-key": c.event.id,
          "cairn-event-id": c.event.id,
          "cairn-event-type": c.event.type,
          "cairn-delivery-id": String(c.id),
          "cairn-attempt": String(c.attempts),
          "user-agent": "cairn-outbox"
        }
        if (s.secret !== null) h[signatureHeader] = sign(s.secret, body, Date.now())
        return h
      }
      if (s.kind === "subscriber") {
        const subscriber = subscribers[s.name]
        if (subscriber === undefined) {
          return Effect.fail(
            new DeliveryFailed({ reason: `no subscriber named ${JSON.stringify(s.name)} on worker ${id}` })
          )
        }
        return Effect.suspend(() =>
          subscriber({
            deliveryId: c.id,
            subscription: { id: s.id, name: s.name },
            event: c.event,
            attempt: c.attempts
          })
        ).pipe(
          Effect.timeoutOption(config.timeoutMs),
          Effect.catchCause((cause) =>
            Effect.fail(new DeliveryFailed({ reason: `the subscriber failed: ${String(cause).slice(0, 500)}` }))
          ),
          Effect.flatMap((done) =>
            done._tag === "None"
              ? Effect.fail(new DeliveryFailed({ reason: `the subscriber took more than ${config.timeoutMs} ms` }))
              : Effect.succeed(undefined)
          )
        )
      }
      const body =
        s.kind === "webhook"
          ? JSON.stringify({ deliveryId: c.id, subscription: s.name, attempt: c.attempts, event: eventJson(c.event) })
          : JSON.stringify({
              event: c.event.name,
              id: c.event.id,
              timestamp: c.event.happenedAt,
              properties: telemetry(c.event)
            })
      return post(s.url!, body, headers(body), config.timeoutMs)
    }

    const backoffMs = (attempts: number, retryAfterMs: number | undefined): number => {
      const base = Math.min(config.maxMs, config.baseMs * 2 ** Math.min(attempts - 1, 40))
      const jittered = base * (1 - config.jitter + Math.random() * 2 * config.jitter)
      return Math.round(Math.min(config.maxMs, Math.max(jittered, retryAfterMs ?? 0)))
    }

    const settle = (
      c: Claimed,
      outcome: { ok: true; status: number | undefined } | { ok: false; error: DeliveryFailed }
    ) =>
      Effect.gen(function* () {
        const now = Date.now()
        let rows: ReadonlyArray<unknown>
        if (outcome.ok) {
          rows = yield* sql`UPDATE cairn_deliveries SET state = 'delivered', delivered_at = ${now},
              last_status = ${outcome.status ?? null}, claimed_by = NULL, claimed_until = NULL
            WHERE id = ${c.id} AND claimed_by = ${id} AND state = 'delivering' RETURNING id`
          if (rows.length > 0) {
            stats.delivered++
            yield* Metric.update(metrics.delivered, 1)
          }
        } else {
          const error = outcome.error
          const deadNow = c.attempts >= c.maxAttempts
          const message = error.message.slice(0, 2_000)
          rows = deadNow
            ? yield* sql`UPDATE cairn_deliveries SET state = 'dead', last_error = ${message},
                  last_status = ${error.status ?? null}, claimed_by = NULL, claimed_until = NULL
                WHERE id = ${c.id} AND claimed_by = ${id} AND state = 'delivering' RETURNING id`
            : yield* sql`UPDATE cairn_deliveries SET state = 'pending',
                  due_at = ${now + backoffMs(c.attempts, error.retryAfterMs)}, last_error = ${message},
                  last_status = ${error.status ?? null}, claimed_by = NULL, claimed_until = NULL
                WHERE id = ${c.id} AND claimed_by = ${id} AND state = 'delivering' RETURNING id`
          if (rows.length > 0) {
            stats.failed++
            yield* Metric.update(metrics.failed, 1)
            if (deadNow) {
              stats.dead++
              yield* Metric.update(metrics.dead, 1)
            }
          }
        }
        if (rows.length === 0) stats.lost++
      })

    const run = (c: Claimed) =>
      Effect.gen(function* () {
        const started = Date.now()
        const result = yield* Effect.result(attempt(c))
        yield* Metric.update(metrics.latency, Date.now() - started)
        yield* settle(
          c,
          result._tag === "Success" ? { ok: true, status: result.success } : { ok: false, error: result.failure }
        )
      }).pipe(
        Effect.catchCause((cause) =>
          Effect.logWarning("Outbox: a delivery's outcome could not be written; its lease will end", cause)
        ),
        Effect.ensuring(
          Effect.sync(() => {
            stats.running--
          })
        )
      )

    let wakeUp: (() => void) | undefined
    const sleep = Effect.callback<void>((resume) => {
      const timer = setTimeout(() => resume(Effect.void), config.pollMs)
      timer.unref?.()
      wakeUp = () => {
        wakeUp = undefined
        clearTimeout(timer)
        resume(Effect.void)
      }
      return Effect.sync(() => {
        clearTimeout(timer)
        wakeUp = undefined
      })
    })

    // deliveries run in a set of their own: the loop stopping does not cut them, the
    // set interrupts what is left once the grace below has passed (finalizers run in
    // reverse order)
    const deliveries = yield* FiberSet.make()
    let stopping = false
    let countedAt = 0
    const countStates = Effect.gen(function* () {
      const rows = yield* sql<{ state: State; n: number | bigint }>`SELECT state, count(*) AS n
        FROM cairn_deliveries GROUP BY state`
      for (const state of STATES) {
        const n = rows.find((r) => r.state === state)?.n ?? 0
        yield* Metric.update(metrics.deliveries.pipe(Metric.withAttributes({ state })), Number(n))
      }
    }).pipe(Effect.ignore)
    const loop = Effect.gen(function* () {
      while (!stopping) {
        if (Date.now() - countedAt >= config.countsEveryMs) {
          countedAt = Date.now()
          yield* countStates
        }
        const room = Math.min(config.batchSize, config.concurrency - stats.running)
        const claimed =
          room > 0
            ? yield* claim(room).pipe(
                Effect.catchCause((cause) =>
                  Effect.as(
                    Effect.logWarning("Outbox: claiming deliveries failed; trying again", cause),
                    [] as Array<Claimed>
                  )
                )
              )
            : []
        stats.claimed += claimed.length
        for (const c of claimed) {
          stats.running++
          yield* FiberSet.run(deliveries, run(c))
        }
        // a full claim: more may be due at once
        if (claimed.length === 0 || claimed.length < room) yield* sleep
        else if (stats.running >= config.concurrency) yield* sleep
      }
    })
    const fiber = yield* Effect.forkDetach(loop)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        stopping = true
        wakeUp?.()
        // the loop ends after its current claim (interrupted only if that hangs)
        yield* Fiber.await(fiber).pipe(Effect.timeoutOption(config.graceMs))
        yield* Fiber.interrupt(fiber)
        // let the deliveries in progress finish, within the grace
        yield* FiberSet.awaitEmpty(deliveries).pipe(Effect.timeoutOption(config.graceMs))
      })
    )
    return {
      id,
      stats: () => ({ ...stats }),
      wake: () => wakeUp?.()
    } satisfies Worker
  })
