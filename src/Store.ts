/**
 * The durable store: events recorded in SQL, once per id, and queried back.
 *
 * A store is an {@link Ingest.Store}: the gateway's ingest hands it the valid events of
 * each batch and acks the batch only once `record` resolves, which is after the
 * transaction that wrote them committed. The envelope id is the primary key, so a
 * resend after a reconnect (or after the service was killed and restarted on the same
 * database) is recorded once: the second time it is a `duplicate`. In the same
 * transaction, each new event gets a delivery row for every subscription of its type
 * (the transactional outbox, see `Outbox`): an event is never recorded without its
 * deliveries, nor a delivery written for an event that was not.
 *
 * It runs on any `effect/sql` client: SQLite in a file (`Sqlite.layer`, the embedded
 * default, one process) or Postgres (`@effect/sql-pg`, several processes sharing one
 * database). The schema and its migrations are the same for both (`docs/storage.md`).
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import type { MigrationError } from "effect/sql/Migrator"
import type { Envelope } from "./Envelope.ts"
import { InvalidOptions, InvalidQuery } from "./Errors.ts"
import * as EventType from "./EventType.ts"
import type * as Ingest from "./Ingest.ts"
import { migrate } from "./internal/storeSchema.ts"

// ---------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------

/**
 * Options of a store. Every field has a default.
 *
 * @category models
 */
export interface Options {
  /**
   * The event's `authuser` column: who caused it. Default: the data's `authuser`
   * field when it is a string, else none.
   */
  readonly authuser?: (event: Envelope) => string | undefined
  /**
   * The event's `group` column: what it belongs to (a job, a run, a request). Default:
   * the data's `group` field when it is a string, else none.
   */
  readonly group?: (event: Envelope) => string | undefined
  /** Rows per INSERT statement (a batch larger than this takes several), 1 to 2,900. Default `1_000`. */
  readonly rowsPerStatement?: number
  /** Runs the schema's migrations when the store is made. Default `true`. */
  readonly migrate?: boolean
  /**
   * Called after a commit that wrote deliveries (with how many): to wake this
   * process's outbox workers (`worker.wake`) instead of waiting for their next poll.
   */
  readonly onDeliveries?: (count: number) => void
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = { rowsPerStatement: 1_000, migrate: true } as const

/**
 * An event as the store keeps it. `data` is the data in its encoded form (JSON), as
 * its type's schema encodes it; {@link decode} gives it back as the type's value.
 *
 * @category models
 */
export interface StoredEvent {
  readonly id: string
  /** The type key, `name@version`. */
  readonly type: string
  readonly name: string
  readonly version: number
  /** Milliseconds since the epoch, from the producer's clock. */
  readonly happenedAt: number
  /** Milliseconds since the epoch, from the service's clock, when it was committed. */
  readonly recordedAt: number
  readonly source: string
  readonly authuser: string | undefined
  readonly parent: string | undefined
  readonly group: string | undefined
  readonly data: unknown
}

/**
 * What {@link Store.query} selects. Every field narrows the selection; none selects
 * every event. Events come ordered by `happenedAt`, then id.
 *
 * @category models
 */
export interface Query {
  /** A type key `name@version`, or a name (every version of it). */
  readonly type?: string
  /** `happenedAt` at least this (milliseconds since the epoch). */
  readonly from?: number
  /** `happenedAt` before this. */
  readonly to?: number
  readonly source?: string
  readonly parent?: string
  readonly group?: string
  readonly authuser?: string
  /**
   * An attribute of the data equals a value: `path` is the keys from the top of the
   * data (`["run", "id"]`, or `"status"` for a top-level key), `equals` a string,
   * number, boolean or null, compared with its JSON type (`1` is not `true`, nor `"1"`).
   */
  readonly data?: {
    readonly path: string | ReadonlyArray<string>
    readonly equals: string | number | boolean | null
  }
  /** Events per page, 1 to 1,000. Default `100`. */
  readonly limit?: number
  /** `"asc"` (oldest first, the default) or `"desc"`. */
  readonly order?: "asc" | "desc"
  /** The `next` of the previous page: the page after it. */
  readonly after?: string
}

/**
 * One page of a query: its events and the cursor of the next page (`undefined` when
 * this is the last one).
 *
 * @category models
 */
export interface Page {
  readonly events: ReadonlyArray<StoredEvent>
  readonly next: string | undefined
}

/**
 * A store (see the module doc).
 *
 * @category models
 */
export interface Store extends Ingest.Store {
  /** The SQL dialect it runs on. */
  readonly dialect: "sqlite" | "pg"
  /** One event by id. */
  readonly get: (id: string) => Effect.Effect<StoredEvent | undefined, SqlError>
  /** A page of the events a query selects. */
  readonly query: (query?: Query) => Effect.Effect<Page, SqlError | InvalidQuery>
  /** How many events a query selects (its `limit`, `order` and `after` are ignored). */
  readonly count: (query?: Query) => Effect.Effect<number, SqlError | InvalidQuery>
  /**
   * An event and every event below it (children by `parent`, their children…), in
   * `happenedAt` order; empty when the id is not recorded. At most `limit` events
   * (default 10,000).
   */
  readonly tree: (id: string, limit?: number) => Effect.Effect<ReadonlyArray<StoredEvent>, SqlError | InvalidQuery>
  /** The events of a group, in `happenedAt` order (a page, as `query`). */
  readonly group: (group: string, query?: Query) => Effect.Effect<Page, SqlError | InvalidQuery>
}

// ---------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------

const bigints = (_key: string, value: unknown) => (typeof value === "bigint" ? value.toString() : value)

/**
 * The data as JSON text: as it is for a plain struct (its decoded and encoded forms
 * are the same), else encoded by the type's schema first. A NUL character, which
 * Postgres's JSONB cannot hold, becomes U+FFFD.
 */
const jsonOf = (encode: ((data: unknown) => unknown) | undefined, data: unknown): string => {
  const value = encode === undefined ? data : encode(data)
  // a replacer makes JSON.stringify several times slower: only when a bigint needs it
  let json: string
  try {
    json = JSON.stringify(value) ?? "null"
  } catch {
    json = JSON.stringify(value, bigints) ?? "null"
  }
  return json.includes("\\u0000") ? json.replaceAll("\\u0000", "\\ufffd") : json
}

/**
 * The data of a stored event decoded by its type's schema (a type of the same key:
 * `type.key === event.type`); throws a `ValidationError` when it does not decode.
 *
 * @category getters
 */
export const decode = <A, I>(type: EventType.EventType<A, I>, event: StoredEvent): A =>
  EventType.decodeUnsafe(type, event.data)

const stringField = (field: string) => (event: Envelope) => {
  const data = event.data
  if (typeof data !== "object" || data === null) return undefined
  const value = (data as Record<string, unknown>)[field]
  return typeof value === "string" ? value : undefined
}

// ---------------------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------------------

interface Row {
  readonly id: string
  readonly type: string
  readonly name: string
  readonly version: number | bigint
  readonly happened_at: number | bigint
  readonly recorded_at: number | bigint
  readonly source: string
  readonly authuser: string | null
  readonly parent: string | null
  readonly grp: string | null
  readonly data: unknown
}

const columns = "id, type, name, version, happened_at, recorded_at, source, authuser, parent, grp, data"
const COLUMN_COUNT = 11

const toStored = (row: Row): StoredEvent => ({
  id: row.id,
  type: row.type,
  name: row.name,
  version: Number(row.version),
  happenedAt: Number(row.happened_at),
  recordedAt: Number(row.recorded_at),
  source: row.source,
  authuser: row.authuser ?? undefined,
  parent: row.parent ?? undefined,
  group: row.grp ?? undefined,
  data: typeof row.data === "string" ? JSON.parse(row.data) : row.data
})

const cursorOf = (event: StoredEvent): string => `${event.happenedAt}.${event.id}`

const CURSOR = /^(\d{1,15})\.([0-7][0-9A-HJKMNP-TV-Z]{25}|[^\s]{1,200})$/

const parseCursor = (cursor: string): { readonly at: number; readonly id: string } => {
  const m = CURSOR.exec(cursor)
  if (m === null)
    throw new InvalidQuery({ reason: `after: ${JSON.stringify(cursor.slice(0, 60))} is not a cursor of this store` })
  return { at: Number(m[1]), id: m[2]! }
}

const identity = (n: number): number | bigint => n
/** The ids of flat rows (`COLUMN_COUNT` values each, the id first). */
const idsOf = (values: ReadonlyArray<unknown>): Array<string> => {
  const ids = new Array<string>(values.length / COLUMN_COUNT)
  for (let r = 0; r < ids.length; r++) ids[r] = values[r * COLUMN_COUNT] as string
  return ids
}

/** Rows an INSERT wrote, from the driver's result (`node:sqlite`'s `{ changes }`). */
const changesOf = (result: unknown): number => {
  const changes = (result as { changes?: number | bigint } | null)?.changes
  return changes === undefined ? -1 : Number(changes)
}

/** Fails the savepoint of an insert that met ids already recorded (caught at once). */
const partialInsert = { _tag: "PartialInsert" } as const

const toBigInt = (n: number): number | bigint => (Number.isSafeInteger(n) ? BigInt(n) : n)

const maxLimit = 1_000
const defaultLimit = 100
const maxTree = 10_000

const isPositiveInt = (n: number) => Number.isSafeInteger(n) && n > 0

// ---------------------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------------------

/**
 * Makes a store on the `SqlClient` in context, running the schema's migrations first
 * (unless `migrate: false`). Fails with {@link InvalidOptions} for invalid options,
 * with `SqlError` or `MigrationError` when the database cannot be migrated.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Gateway, Ingest, Sqlite, Store, Trail } from "cairn"
 *
 * const program = Effect.gen(function* () {
 *   const trail = yield* Trail.make({ types: [Step] })
 *   const store = yield* Store.make()
 *   yield* Gateway.make({ ingest: Ingest.make({ trail, store }), tokens })
 *   return yield* Effect.never
 * }).pipe(Effect.provide(Sqlite.layer({ filename: "cairn.sqlite" })))
 * ```
 *
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<Store, SqlError | MigrationError | InvalidOptions, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const rowsPerStatement = options.rowsPerStatement ?? defaults.rowsPerStatement
    if (!isPositiveInt(rowsPerStatement) || rowsPerStatement > 2_900) {
      return yield* new InvalidOptions({
        subject: "Store",
        reason: "rowsPerStatement must be an integer from 1 to 2900 (SQLite binds at most 32,766 parameters)"
      })
    }
    const sql = yield* SqlClient.SqlClient
    const dialect = sql.onDialectOrElse({
      pg: () => "pg" as const,
      sqlite: () => "sqlite" as const,
      orElse: () => "other" as const
    })
    if (dialect === "other") {
      return yield* new InvalidOptions({ subject: "Store", reason: "the SQL client must be SQLite or Postgres" })
    }
    if (options.migrate ?? defaults.migrate) yield* migrate
    const authuserOf = options.authuser ?? stringField("authuser")
    const groupOf = options.group ?? stringField("group")
    const onDeliveries = options.onDeliveries

    /**
     * The INSERT of `n` rows, written once per row count: the statement helpers of
     * `effect/sql` build a fragment per value, which for 5,000 parameters costs more
     * than the insert itself. The text is the same for every batch of `n`, so the
     * driver's prepared statement is reused. `returning`: with `RETURNING id`.
     */
    const insertTexts = new Map<number, string>()
    const insertText = (n: number, returning: boolean): string => {
      const slot = returning ? n : -n
      let text = insertTexts.get(slot)
      if (text === undefined) {
        const rows = new Array<string>(n)
        for (let r = 0; r < n; r++) {
          const cells = new Array<string>(COLUMN_COUNT)
          for (let c = 0; c < COLUMN_COUNT; c++) cells[c] = dialect === "pg" ? `$${r * COLUMN_COUNT + c + 1}` : "?"
          rows[r] = `(${cells.join(",")})`
        }
        text = `INSERT INTO cairn_events (${columns}) VALUES ${rows.join(",")} ON CONFLICT (id) DO NOTHING`
        if (returning) text += " RETURNING id"
        if (insertTexts.size < 64) insertTexts.set(slot, text)
      }
      return text
    }

    /**
     * SQLite: inserts the rows of one statement without `RETURNING` (which costs a
     * third of the insert there) in a savepoint, and tells whether every row was new;
     * when some were not (a resend), the savepoint is rolled back, to be redone with
     * `RETURNING`.
     */
    const insertCounted = (n: number, params: ReadonlyArray<unknown>) =>
      sql
        .withTransaction(
          Effect.flatMap(sql.unsafe(insertText(n, false), params).raw, (result) =>
            changesOf(result) === n ? Effect.void : Effect.fail(partialInsert)
          )
        )
        .pipe(
          Effect.as(true),
          Effect.catchIf(
            (error): error is typeof partialInsert => error === partialInsert,
            () => Effect.succeed(false)
          )
        )

    /**
     * Inserts the rows (`COLUMN_COUNT` values each, flat); the ids that were new, or
     * `undefined` when every row was.
     */
    const insertEvents = (values: ReadonlyArray<unknown>) =>
      Effect.gen(function* () {
        let fresh: Set<string> | undefined
        const total = values.length / COLUMN_COUNT
        for (let at = 0; at < total; at += rowsPerStatement) {
          const n = Math.min(rowsPerStatement, total - at)
          const params = n === total ? values : values.slice(at * COLUMN_COUNT, (at + n) * COLUMN_COUNT)
          if (dialect === "sqlite" && (yield* insertCounted(n, params))) {
            if (fresh !== undefined) for (let r = 0; r < n; r++) fresh.add(params[r * COLUMN_COUNT] as string)
            continue
          }
          if (fresh === undefined) {
            // the rows of the statements before were all new
            fresh = new Set<string>()
            for (let r = 0; r < at; r++) fresh.add(values[r * COLUMN_COUNT] as string)
          }
          // the returned ids as arrays: no object per row
          const inserted = yield* sql.unsafe(insertText(n, true), params).values
          for (let r = 0; r < inserted.length; r++) fresh.add(inserted[r]![0] as string)
        }
        return fresh
      })

    /** A delivery row per new event and active subscription of its type. */
    const insertDeliveries = (ids: ReadonlyArray<string>, now: number) =>
      Effect.gen(function* () {
        let written = 0
        for (let at = 0; at < ids.length; at += rowsPerStatement) {
          const chunk = ids.slice(at, at + rowsPerStatement)
          yield* sql`INSERT INTO cairn_deliveries (subscription_id, event_id, state, attempts, due_at, created_at)
            SELECT DISTINCT st.subscription_id, e.id, 'pending', 0, ${now}, ${now}
            FROM cairn_events e
            JOIN cairn_subscription_types st ON st.pattern = e.type OR st.pattern = e.name OR st.pattern = '*'
            JOIN cairn_subscriptions s ON s.id = st.subscription_id AND s.active = 1
            WHERE e.id IN ${sql.in(chunk)}
            ON CONFLICT (subscription_id, event_id) DO NOTHING RETURNING id`.pipe(
            Effect.tap((rows) =>
              Effect.sync(() => {
                written += rows.length
              })
            )
          )
        }
        return written
      })

    /**
     * Whether an active subscription may match the key: a lookup on the patterns'
     * index, in the recording transaction, so that a batch nobody subscribes to skips
     * the delivery insert (and its join over the batch's ids).
     */
    const subscribed = (key: string, name: string) =>
      Effect.map(
        sql<{ one: number }>`SELECT 1 AS one FROM cairn_subscription_types st
          JOIN cairn_subscriptions s ON s.id = st.subscription_id AND s.active = 1
          WHERE st.pattern IN (${key}, ${name}, '*') LIMIT 1`,
        (rows) => rows.length > 0
      )

    const record = (key: string, events: ReadonlyArray<Envelope>, type?: EventType.Any) =>
      Effect.suspend(() => {
        const parsed = EventType.parseKey(key)
        const name = parsed?.name ?? key
        const version = parsed?.version ?? 0
        const now = Date.now()
        const encode =
          type === undefined || EventType.planOfType(type) !== null
            ? undefined
            : Schema.encodeUnknownSync(type.schema as Schema.Codec<unknown, unknown>)
        // first occurrence of each id in the batch: a candidate; later ones duplicates
        // ids strictly ascending (a Cairn harness's batch): no repeats, nothing to track;
        // else the first occurrence of each id is a candidate and later ones duplicates
        let ascending = true
        for (let i = 1; i < events.length && ascending; i++) ascending = events[i - 1]!.id < events[i]!.id
        const first = ascending ? undefined : new Map<string, number>()
        // SQLite: integers as bigints, which the driver binds as they are (a number it
        // would convert, copying every parameter)
        const int = dialect === "sqlite" ? toBigInt : identity
        const versionValue = int(version)
        const nowValue = int(now)
        // the rows, flat, in the order of `columns`
        const values: Array<unknown> = []
        for (let i = 0; i < events.length; i++) {
          const e = events[i]!
          const id = e.id
          if (first !== undefined) {
            if (first.has(id)) continue
            first.set(id, i)
          }
          values.push(
            id,
            key,
            name,
            versionValue,
            int(e.happenedAt),
            nowValue,
            e.source,
            authuserOf(e) ?? null,
            e.parent ?? null,
            groupOf(e) ?? null,
            jsonOf(encode, e.data)
          )
        }
        return Effect.gen(function* () {
          // undefined: every candidate was new
          const fresh = yield* insertEvents(values)
          const newIds = fresh === undefined ? idsOf(values) : [...fresh]
          const deliveries =
            newIds.length > 0 && (yield* subscribed(key, name)) ? yield* insertDeliveries(newIds, now) : 0
          const out = new Array<boolean>(events.length)
          for (let i = 0; i < events.length; i++) {
            const id = events[i]!.id
            out[i] = (first === undefined || first.get(id) === i) && (fresh === undefined || fresh.has(id))
          }
          return { out, deliveries }
        }).pipe(
          sql.withTransaction,
          Effect.map(({ out, deliveries }) => {
            if (deliveries > 0) onDeliveries?.(deliveries)
            return out
          })
        )
      })

    // queries ------------------------------------------------------------------------

    const where = (query: Query): Array<unknown> => {
      const clauses: Array<unknown> = []
      if (query.type !== undefined) {
        clauses.push(query.type.includes("@") ? sql`type = ${query.type}` : sql`name = ${query.type}`)
      }
      if (query.from !== undefined) clauses.push(sql`happened_at >= ${query.from}`)
      if (query.to !== undefined) clauses.push(sql`happened_at < ${query.to}`)
      if (query.source !== undefined) clauses.push(sql`source = ${query.source}`)
      if (query.parent !== undefined) clauses.push(sql`parent = ${query.parent}`)
      if (query.group !== undefined) clauses.push(sql`grp = ${query.group}`)
      if (query.authuser !== undefined) clauses.push(sql`authuser = ${query.authuser}`)
      if (query.data !== undefined) clauses.push(dataClause(query.data))
      return clauses
    }

    const dataClause = (d: NonNullable<Query["data"]>) => {
      const path = typeof d.path === "string" ? [d.path] : d.path
      if (path.length === 0 || path.some((k) => typeof k !== "string" || k === "")) {
        throw new InvalidQuery({ reason: "data.path must be one or more non-empty keys" })
      }
      const v = d.equals
      if (
        v !== null &&
        typeof v !== "string" &&
        typeof v !== "boolean" &&
        !(typeof v === "number" && Number.isFinite(v))
      ) {
        throw new InvalidQuery({ reason: "data.equals must be a string, a finite number, a boolean or null" })
      }
      if (dialect === "pg") {
        // containment: exact JSON equality of the value at the path (and it can use a GIN index)
        let doc: unknown = v
        for (let i = path.length - 1; i >= 0; i--) doc = { [path[i]!]: doc }
        return sql`data @> ${JSON.stringify(doc)}::jsonb`
      }
      const jsonPath = `$${path.map((k) => `."${k.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`).join("")}`
      if (v === null) return sql`json_type(data, ${jsonPath}) = 'null'`
      if (typeof v === "boolean") return sql`json_type(data, ${jsonPath}) = ${v ? "true" : "false"}`
      if (typeof v === "number") {
        return sql`json_type(data, ${jsonPath}) IN ('integer', 'real') AND json_extract(data, ${jsonPath}) = ${v}`
      }
      return sql`json_type(data, ${jsonPath}) = 'text' AND json_extract(data, ${jsonPath}) = ${v}`
    }

    const checked = <A>(f: () => A): Effect.Effect<A, InvalidQuery> =>
      Effect.try({
        try: f,
        catch: (error) => (error instanceof InvalidQuery ? error : new InvalidQuery({ reason: String(error) }))
      })

    const query = (q: Query = {}): Effect.Effect<Page, SqlError | InvalidQuery> =>
      Effect.gen(function* () {
        const limit = q.limit ?? defaultLimit
        if (!isPositiveInt(limit) || limit > maxLimit) {
          return yield* new InvalidQuery({ reason: `limit must be an integer from 1 to ${maxLimit}, got ${limit}` })
        }
        const desc = q.order === "desc"
        if (q.order !== undefined && q.order !== "asc" && q.order !== "desc") {
          return yield* new InvalidQuery({ reason: `order must be "asc" or "desc"` })
        }
        const clauses = yield* checked(() => {
          const c = where(q)
          if (q.after !== undefined) {
            const { at, id } = parseCursor(q.after)
            c.push(
              desc
                ? sql`(happened_at < ${at} OR (happened_at = ${at} AND id < ${id}))`
                : sql`(happened_at > ${at} OR (happened_at = ${at} AND id > ${id}))`
            )
          }
          return c
        })
        const order = desc ? "happened_at DESC, id DESC" : "happened_at ASC, id ASC"
        const rows = yield* sql<Row>`SELECT ${sql.unsafe(columns)} FROM cairn_events
          WHERE ${sql.and(clauses as Array<never>)}
          ORDER BY ${sql.unsafe(order)} LIMIT ${limit + 1}`
        const events = rows.slice(0, limit).map(toStored)
        return { events, next: rows.length > limit ? cursorOf(events[events.length - 1]!) : undefined }
      })

    const count = (q: Query = {}): Effect.Effect<number, SqlError | InvalidQuery> =>
      Effect.gen(function* () {
        const clauses = yield* checked(() => where(q))
        const rows = yield* sql<{ n: number | bigint }>`SELECT count(*) AS n FROM cairn_events
          WHERE ${sql.and(clauses as Array<never>)}`
        return Number(rows[0]?.n ?? 0)
      })

    const get = (id: string): Effect.Effect<StoredEvent | undefined, SqlError> =>
      Effect.map(sql<Row>`SELECT ${sql.unsafe(columns)} FROM cairn_events WHERE id = ${id}`, (rows) =>
        rows[0] === undefined ? undefined : toStored(rows[0])
      )

    const tree = (id: string, limit = maxTree): Effect.Effect<ReadonlyArray<StoredEvent>, SqlError | InvalidQuery> =>
      Effect.gen(function* () {
        if (!isPositiveInt(limit) || limit > maxTree) {
          return yield* new InvalidQuery({ reason: `a tree's limit must be an integer from 1 to ${maxTree}` })
        }
        // UNION (not UNION ALL): a cycle of parents ends instead of looping
        const rows = yield* sql<Row>`WITH RECURSIVE tree(id) AS (
            SELECT id FROM cairn_events WHERE id = ${id}
            UNION
            SELECT e.id FROM cairn_events e JOIN tree t ON e.parent = t.id
          )
          SELECT ${sql.unsafe(
            columns
              .split(", ")
              .map((c) => `e.${c}`)
              .join(", ")
          )}
          FROM cairn_events e JOIN tree t ON e.id = t.id
          ORDER BY e.happened_at, e.id LIMIT ${limit}`
        return rows.map(toStored)
      })

    return {
      dialect,
      record,
      get,
      query,
      count,
      tree,
      group: (group, q = {}) => query({ ...q, group })
    } satisfies Store
  })
