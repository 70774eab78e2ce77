/**
 * SQLite for `effect/sql`: a `SqlClient` over Node's built-in `node:sqlite`
 * (`DatabaseSync`, SQLite 3.53 bundled with Node 24), for running Cairn's stores on one
 * file with nothing to install.
 *
 * One connection serves the whole client, behind a semaphore of one permit: statements
 * and transactions run one at a time, in the order they asked for it (a transaction
 * holds the connection until it commits or rolls back, so two fibers' transactions never
 * interleave). `node:sqlite` is synchronous: a statement runs on the calling thread, so
 * keep statements short (an index per lookup) and stream large reads. Prepared statements
 * are kept by SQL text, the `statementCacheSize` most recently used. Transactions begin
 * with `BEGIN IMMEDIATE` (the write lock is taken up front, waiting up to `busyTimeoutMs`
 * when another process writes the file, instead of failing half-way when a read turns
 * into a write; a `readonly` client uses `BEGIN`); nested ones are savepoints.
 *
 * Values: parameters may be `null`, numbers, bigints (64-bit), strings and `Uint8Array`s
 * (BLOB); `undefined` is bound as `NULL`, booleans as `1`/`0` and a `Date` as its ISO
 * string. A number without a fraction (within ±(2^53 − 1)) is bound as an INTEGER, other
 * numbers as REAL (`node:sqlite` alone would bind `1` as `1.0`, which `typeof()` and the
 * JSON functions show). Anything else fails the statement, before it runs, with a
 * `SqlError` (reason `UnknownError`, operation `"bind"`) naming the parameter and its
 * kind: encode it first (`JSON.stringify` for a JSON column). Integers are read as
 * JS numbers; reading one outside ±(2^53 − 1) fails with a `SqlError` (`node:sqlite`
 * refuses to round it), so keep such values in a TEXT column or select `CAST(x AS TEXT)`.
 *
 * Errors: every failure is a `SqlError`. Its reason is `ConnectionError` when the file
 * cannot be opened, `SqlSyntaxError` when a statement does not compile (a syntax error,
 * an unknown table or column, or several statements in one text, which is refused
 * rather than running only the first), `UniqueViolation` for a duplicate key (primary keys included, as in Postgres),
 * otherwise what `SqlError.classifySqliteError` says for the SQLite result code
 * (`ConstraintError` for the other constraints, `LockTimeoutError` when busy...).
 *
 * @since 0.1.0
 */
import { DatabaseSync, type SQLInputValue, type SQLOutputValue, type StatementSync } from "node:sqlite"
import { Cause, Effect, Layer, type Scope, Semaphore, Stream } from "effect"
import type * as Arr from "effect/Array"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as SqlClient from "effect/sql/SqlClient"
import type * as SqlConnection from "effect/sql/SqlConnection"
import {
  classifySqliteError,
  ConnectionError,
  isSqlError,
  SqlError,
  SqlSyntaxError,
  UniqueViolation,
  UnknownError
} from "effect/sql/SqlError"
import * as Statement from "effect/sql/Statement"
import { InvalidOptions } from "./Errors.ts"

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

/**
 * Options of a SQLite client. Every field but `filename` has a default.
 *
 * @category models
 */
export interface Options {
  /**
   * Path of the database file (created when missing, unless `readonly`), or
   * `":memory:"` for a private in-memory database that lives as long as the client.
   * The directory must exist. Required.
   */
  readonly filename: string
  /** Open the database read-only: writes fail with a `SqlError`, the file must exist. Default `false`. */
  readonly readonly?: boolean
  /**
   * How long a statement waits for a lock held by another connection to the same file
   * (another process, or another client) before failing with a `LockTimeoutError`
   * reason, in milliseconds. The wait blocks the thread. Default `5_000`.
   */
  readonly busyTimeoutMs?: number
  /**
   * Put the file in write-ahead-log mode (`PRAGMA journal_mode = WAL`): readers do not
   * block the writer nor the writer them. Only meaningful for a writable file (ignored for
   * `":memory:"` and `readonly`); the mode is kept in the file. Default `true`.
   */
  readonly wal?: boolean
  /**
   * `PRAGMA synchronous`: `"FULL"` syncs the file at every commit; `"NORMAL"` (safe in
   * WAL mode: a power loss may lose the last commits, never corrupt the file) syncs at
   * checkpoints; `"OFF"` never (for throwaway data). Default `"NORMAL"`.
   */
  readonly synchronous?: "OFF" | "NORMAL" | "FULL"
  /**
   * Prepared statements kept for reuse, by SQL text: the least recently used is dropped
   * when one more is needed. `0` prepares every statement anew. Default `256`.
   */
  readonly statementCacheSize?: number
  /**
   * Renames the columns of every result row, e.g. `snake_case` to `camelCase`. Default
   * none (columns as the database names them). `sql.withoutTransforms()` skips it.
   */
  readonly transformResultNames?: (name: string) => string
  /**
   * Renames the identifiers written into statements (`sql("name")`, the columns of
   * `sql.insert`), e.g. `camelCase` to `snake_case`. Default none.
   */
  readonly transformQueryNames?: (name: string) => string
}

/**
 * The defaults of {@link Options}.
 *
 * @category constructors
 */
export const defaults = {
  readonly: false,
  busyTimeoutMs: 5_000,
  wal: true,
  synchronous: "NORMAL",
  statementCacheSize: 256
} as const

/** Rows handed out per pull by `executeStream`. */
const streamChunkSize = 256

const INT64_MIN = -(2n ** 63n)
const INT64_MAX = 2n ** 63n - 1n
/** SQLite's primary result code SQLITE_ERROR: while preparing, the statement is invalid. */
const SQLITE_ERROR = 1
/** SQLITE_CONSTRAINT_PRIMARYKEY: a uniqueness violation too, which `classifySqliteError` calls a ConstraintError. */
const SQLITE_CONSTRAINT_PRIMARYKEY = 1555
const UNIQUE_FAILED = "UNIQUE constraint failed:"

const problems = (options: Options): Array<string> => {
  const out: Array<string> = []
  const { filename, busyTimeoutMs, statementCacheSize, synchronous } = options
  if (typeof filename !== "string" || filename.length === 0) out.push('filename must be a path or ":memory:"')
  if (options.readonly !== undefined && typeof options.readonly !== "boolean") out.push("readonly must be a boolean")
  if (options.wal !== undefined && typeof options.wal !== "boolean") out.push("wal must be a boolean")
  if (
    busyTimeoutMs !== undefined &&
    (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0 || busyTimeoutMs > 2 ** 31 - 1)
  ) {
    out.push(`busyTimeoutMs must be an integer from 0 to 2^31 - 1 (got ${String(busyTimeoutMs)})`)
  }
  if (synchronous !== undefined && synchronous !== "OFF" && synchronous !== "NORMAL" && synchronous !== "FULL") {
    out.push(`synchronous must be "OFF", "NORMAL" or "FULL" (got ${JSON.stringify(synchronous)})`)
  }
  if (statementCacheSize !== undefined && (!Number.isSafeInteger(statementCacheSize) || statementCacheSize < 0)) {
    out.push(`statementCacheSize must be an integer of at least 0 (got ${String(statementCacheSize)})`)
  }
  for (const key of ["transformResultNames", "transformQueryNames"] as const) {
    if (options[key] !== undefined && typeof options[key] !== "function") out.push(`${key} must be a function`)
  }
  return out
}

// ---------------------------------------------------------------------------------------
// Errors and parameters
// ---------------------------------------------------------------------------------------

const messageOf = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)

/**
 * The `SqlError` for what `node:sqlite` threw. Its errors carry the SQLite (extended)
 * result code as `errcode`, where `classifySqliteError` reads `errno`: it is copied
 * there. Two refinements on top: SQLITE_ERROR while preparing is a `SqlSyntaxError` (the
 * statement does not compile: syntax, unknown table or column), and a primary key
 * conflict a `UniqueViolation`.
 */
const toSqlError = (cause: unknown, operation: string, preparing = false): SqlError => {
  if (isSqlError(cause)) return cause
  const message = messageOf(cause)
  if (typeof cause === "object" && cause !== null && "errcode" in cause && typeof cause.errcode === "number") {
    if (!("errno" in cause)) Object.defineProperty(cause, "errno", { value: cause.errcode, configurable: true })
    if (preparing && (cause.errcode & 0xff) === SQLITE_ERROR) {
      return new SqlError({ reason: new SqlSyntaxError({ cause, message, operation }) })
    }
    if (cause.errcode === SQLITE_CONSTRAINT_PRIMARYKEY) {
      const at = message.indexOf(UNIQUE_FAILED)
      const constraint = at === -1 ? "PRIMARY KEY" : message.slice(at + UNIQUE_FAILED.length).trim()
      return new SqlError({ reason: new UniqueViolation({ cause, message, operation, constraint }) })
    }
  }
  return new SqlError({ reason: classifySqliteError(cause, { message, operation }) })
}

const describe = (value: unknown): string => {
  switch (typeof value) {
    case "symbol":
      return "a symbol"
    case "function":
      return "a function"
    case "object": {
      if (Array.isArray(value)) return "an array"
      const proto: unknown = Object.getPrototypeOf(value)
      if (proto === null || proto === Object.prototype) return "a plain object"
      const name = (value as object).constructor?.name
      return typeof name === "string" && name.length > 0 ? `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}` : "an object"
    }
    default:
      return `a ${typeof value}`
  }
}

const badParameter = (index: number, what: string): SqlError => {
  const message =
    `parameter ${index + 1} is ${what}: node:sqlite binds only null, numbers, bigints, strings and ` +
    "Uint8Arrays (undefined, booleans and Dates are converted); encode it first, e.g. JSON.stringify for JSON"
  return new SqlError({ reason: new UnknownError({ cause: new TypeError(message), message, operation: "bind" }) })
}

/**
 * The parameters as `node:sqlite` binds them; the array itself when nothing needs
 * converting. Throws a `SqlError` (caught by the `Effect.try` around every call) for a
 * value it cannot bind.
 */
const bind = (params: ReadonlyArray<unknown>): Array<SQLInputValue> => {
  let out: Array<SQLInputValue> | undefined
  for (let i = 0; i < params.length; i++) {
    const value = params[i]
    let bound: SQLInputValue
    switch (typeof value) {
      case "string":
        bound = value
        break
      case "number":
        // node:sqlite binds every number as REAL (`json_object('n', 1)` would say `1.0`)
        bound = Number.isSafeInteger(value) ? BigInt(value) : value
        break
      case "bigint":
        if (value < INT64_MIN || value > INT64_MAX) throw badParameter(i, "a bigint outside the 64-bit range")
        bound = value
        break
      case "boolean":
        bound = value ? 1n : 0n
        break
      case "undefined":
        bound = null
        break
      case "object":
        if (value === null || ArrayBuffer.isView(value)) {
          bound = value as SQLInputValue
        } else if (value instanceof Date) {
          if (Number.isNaN(value.getTime())) throw badParameter(i, "an invalid Date")
          bound = value.toISOString()
        } else {
          throw badParameter(i, describe(value))
        }
        break
      default:
        throw badParameter(i, describe(value))
    }
    if (out === undefined && bound !== value) out = params.slice(0, i) as Array<SQLInputValue>
    if (out !== undefined) out.push(bound)
  }
  return out ?? (params as Array<SQLInputValue>)
}

// ---------------------------------------------------------------------------------------
// Prepared statements
// ---------------------------------------------------------------------------------------

/** A prepared statement and the row shape it is set to return. */
interface Prepared {
  readonly statement: StatementSync
  arrays: boolean
  /** Whether it returns rows (a SELECT, a RETURNING): known once asked. */
  reader: boolean | undefined
}

/** Whether what follows the first statement holds another one (not only blanks or comments). */
const holdsMore = (db: DatabaseSync, tail: string): boolean => {
  if (/^[\s;]*$/.test(tail)) return false
  try {
    db.prepare(tail)
    return true
  } catch (cause) {
    return !(cause instanceof Error && "code" in cause && cause.code === "ERR_INVALID_ARG_VALUE")
  }
}

const prepare = (db: DatabaseSync, sql: string): Prepared => {
  let statement: StatementSync
  try {
    statement = db.prepare(sql)
  } catch (cause) {
    throw toSqlError(cause, "prepare", true)
  }
  const source = statement.sourceSQL
  if (source.length < sql.length && holdsMore(db, sql.slice(source.length))) {
    const message = "the SQL holds more than one statement: node:sqlite runs only the first, run them one by one"
    throw new SqlError({ reason: new SqlSyntaxError({ cause: new Error(message), message, operation: "prepare" }) })
  }
  return { statement, arrays: false, reader: undefined }
}

/** Prepared statements by SQL text, the `capacity` most recently used (a Map keeps insertion order). */
class StatementCache {
  private readonly entries = new Map<string, Prepared>()
  private last: string | undefined
  private readonly db: DatabaseSync
  private readonly capacity: number

  constructor(db: DatabaseSync, capacity: number) {
    this.db = db
    this.capacity = capacity
  }

  get(sql: string): Prepared {
    const entries = this.entries
    const hit = entries.get(sql)
    if (hit !== undefined) {
      if (sql !== this.last) {
        entries.delete(sql)
        entries.set(sql, hit)
        this.last = sql
      }
      return hit
    }
    const prepared = prepare(this.db, sql)
    if (this.capacity > 0) {
      if (entries.size >= this.capacity) entries.delete(entries.keys().next().value!)
      entries.set(sql, prepared)
      this.last = sql
    }
    return prepared
  }
}

const setArrays = (prepared: Prepared, arrays: boolean): StatementSync => {
  if (prepared.arrays !== arrays) {
    prepared.statement.setReturnArrays(arrays)
    prepared.arrays = arrays
  }
  return prepared.statement
}

const objects = (prepared: Prepared, params: ReadonlyArray<unknown>): Array<Record<string, SQLOutputValue>> =>
  setArrays(prepared, false).all(...bind(params))

const arrays = (prepared: Prepared, params: ReadonlyArray<unknown>): Array<Array<SQLOutputValue>> =>
  setArrays(prepared, true).all(...bind(params)) as unknown as Array<Array<SQLOutputValue>>

const raw = (prepared: Prepared, params: ReadonlyArray<unknown>): unknown => {
  if (prepared.reader === undefined) prepared.reader = prepared.statement.columns().length > 0
  return prepared.reader ? objects(prepared, params) : prepared.statement.run(...bind(params))
}

type TransformRows = (<A extends object>(rows: ReadonlyArray<A>) => ReadonlyArray<A>) | undefined

const makeConnection = (db: DatabaseSync, cache: StatementCache): SqlConnection.Connection => ({
  execute: (sql, params, transformRows) =>
    Effect.try({
      try: () => {
        const result = objects(cache.get(sql), params)
        return transformRows === undefined ? result : transformRows(result)
      },
      catch: (cause) => toSqlError(cause, "execute")
    }),
  executeRaw: (sql, params) =>
    Effect.try({ try: () => raw(cache.get(sql), params), catch: (cause) => toSqlError(cause, "executeRaw") }),
  executeValues: (sql, params) =>
    Effect.try({ try: () => arrays(cache.get(sql), params), catch: (cause) => toSqlError(cause, "executeValues") }),
  executeUnprepared: (sql, params, transformRows) =>
    Effect.try({
      try: () => {
        const result = objects(prepare(db, sql), params)
        return transformRows === undefined ? result : transformRows(result)
      },
      catch: (cause) => toSqlError(cause, "executeUnprepared")
    }),
  executeValuesUnprepared: (sql, params) =>
    Effect.try({
      try: () => arrays(prepare(db, sql), params),
      catch: (cause) => toSqlError(cause, "executeValuesUnprepared")
    }),
  executeStream: (sql, params, transformRows) => stream(db, sql, params, transformRows)
})

/**
 * Rows as they are read, `streamChunkSize` per pull. The statement is prepared for the
 * stream alone (a query run while consuming it cannot reset it) and reset when the
 * stream ends, however it ends.
 */
const stream = (
  db: DatabaseSync,
  sql: string,
  params: ReadonlyArray<unknown>,
  transformRows: TransformRows
): Stream.Stream<object, SqlError> =>
  Stream.suspend(() => {
    let iterator: Iterator<unknown> | undefined
    const pull = Effect.suspend((): Effect.Effect<Arr.NonEmptyReadonlyArray<object>, SqlError | Cause.Done> => {
      const chunk: Array<object> = []
      try {
        iterator ??= prepare(db, sql).statement.iterate(...bind(params))
        for (let i = 0; i < streamChunkSize; i++) {
          const next = iterator.next()
          if (next.done === true) break
          chunk.push(next.value as object)
        }
      } catch (cause) {
        return Effect.fail(toSqlError(cause, "executeStream"))
      }
      if (chunk.length === 0) return Cause.done()
      return Effect.succeed(
        (transformRows === undefined ? chunk : transformRows(chunk)) as Arr.NonEmptyReadonlyArray<object>
      )
    })
    return Stream.fromPull(Effect.succeed(pull)).pipe(Stream.ensuring(Effect.sync(() => iterator?.return?.())))
  })

// ---------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------

const open = (
  filename: string,
  readonly: boolean,
  busyTimeoutMs: number,
  wal: boolean,
  synchronous: string
): DatabaseSync => {
  let db: DatabaseSync
  try {
    db = new DatabaseSync(filename, { readOnly: readonly, timeout: busyTimeoutMs, enableForeignKeyConstraints: true })
  } catch (cause) {
    throw new SqlError({
      reason: new ConnectionError({ cause, message: `cannot open ${filename}: ${messageOf(cause)}`, operation: "open" })
    })
  }
  try {
    db.exec("PRAGMA foreign_keys = ON")
    db.exec(`PRAGMA synchronous = ${synchronous}`)
    if (wal && !readonly && db.location() !== null) db.exec("PRAGMA journal_mode = WAL")
  } catch (cause) {
    db.close()
    throw new SqlError({
      reason: new ConnectionError({
        cause,
        message: `cannot set up ${filename}: ${messageOf(cause)}`,
        operation: "open"
      })
    })
  }
  return db
}

/**
 * A `SqlClient` on one SQLite database, opened now and closed when the scope closes
 * (after the statement or transaction running, if any; statements asked for later fail
 * with a `ConnectionError` reason). Invalid options fail with `InvalidOptions`; a file
 * that cannot be opened (a missing directory, not a database, missing while `readonly`)
 * with a `SqlError` whose reason is `ConnectionError`.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as Reactivity from "effect/reactivity/Reactivity"
 * import { Sqlite } from "cairn"
 *
 * const program = Effect.gen(function* () {
 *   const sql = yield* Sqlite.make({ filename: "events.sqlite" })
 *   yield* sql`CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, body TEXT NOT NULL)`
 *   yield* sql`INSERT INTO events ${sql.insert({ id: "e1", body: "{}" })} ON CONFLICT DO NOTHING`
 *   return yield* sql<{ id: string }>`SELECT id FROM events`
 * }).pipe(Effect.scoped, Effect.provide(Reactivity.layer))
 * ```
 *
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<SqlClient.SqlClient, SqlError | InvalidOptions, Scope.Scope | Reactivity.Reactivity> =>
  Effect.gen(function* () {
    const found = problems(options)
    if (found.length > 0) return yield* new InvalidOptions({ subject: "Sqlite", reason: found.join("; ") })
    const readonly = options.readonly ?? defaults.readonly
    const busyTimeoutMs = options.busyTimeoutMs ?? defaults.busyTimeoutMs
    const wal = options.wal ?? defaults.wal
    const synchronous = options.synchronous ?? defaults.synchronous
    const statementCacheSize = options.statementCacheSize ?? defaults.statementCacheSize

    const semaphore = yield* Semaphore.make(1)
    let closed = false
    const db = yield* Effect.acquireRelease(
      Effect.try({
        try: () => open(options.filename, readonly, busyTimeoutMs, wal, synchronous),
        catch: (cause) => toSqlError(cause, "open")
      }),
      (db) =>
        Effect.sync(() => {
          closed = true
        }).pipe(
          Effect.andThen(
            semaphore.withPermit(
              Effect.sync(() => {
                if (db.isOpen) db.close()
              })
            )
          )
        )
    )

    const connection = makeConnection(db, new StatementCache(db, statementCacheSize))
    const available = Effect.succeed(connection)
    const isClosed = Effect.suspend(() => {
      const message = `the database ${options.filename} is closed`
      return Effect.fail(
        new SqlError({ reason: new ConnectionError({ cause: new Error(message), message, operation: "acquire" }) })
      )
    })
    const acquirers = SqlClient.makeSqliteAcquirers({
      connection: Effect.suspend(() => (closed ? isClosed : available)),
      semaphore,
      isTransaction: () => db.isOpen && db.isTransaction
    })

    return yield* SqlClient.make({
      ...acquirers,
      compiler: Statement.makeCompilerSqlite(options.transformQueryNames),
      transformRows:
        options.transformResultNames === undefined
          ? undefined
          : Statement.defaultTransforms(options.transformResultNames).array,
      driver: "cairn-sqlite",
      spanAttributes: [["db.system.name", "sqlite"]],
      prepareTransactionControls: true,
      beginTransaction: readonly ? "BEGIN" : "BEGIN IMMEDIATE",
      releaseSavepoint: (name) => `RELEASE SAVEPOINT ${name}`
    })
  })

/**
 * The `SqlClient` service on one SQLite database (see {@link make}), with its own
 * `Reactivity`; the database is closed when the layer is released.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import * as SqlClient from "effect/sql/SqlClient"
 * import { Sqlite } from "cairn"
 *
 * const count = Effect.gen(function* () {
 *   const sql = yield* SqlClient.SqlClient
 *   return yield* sql<{ n: number }>`SELECT count(*) AS n FROM events`
 * }).pipe(Effect.provide(Sqlite.layer({ filename: "events.sqlite" })))
 * ```
 *
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<SqlClient.SqlClient, SqlError | InvalidOptions> =>
  Layer.effect(SqlClient.SqlClient, make(options)).pipe(Layer.provide(Reactivity.layer))
