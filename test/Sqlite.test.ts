import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { assert, describe, it, vi } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Schema, Scope, Stream } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"
import { SqlError } from "effect/sql/SqlError"
import * as SqlSchema from "effect/sql/SqlSchema"
import { Errors, Sqlite } from "../src/index.ts"

/** A client on a fresh in-memory database, closed with the test's scope. */
const memory = (options: Partial<Sqlite.Options> = {}) =>
  Sqlite.make({ filename: ":memory:", ...options }).pipe(Effect.provide(Reactivity.layer))

/** A client on a file, closed with the test's scope. */
const onFile = (filename: string, options: Partial<Sqlite.Options> = {}) =>
  Sqlite.make({ filename, ...options }).pipe(Effect.provide(Reactivity.layer))

/** A temporary directory, removed with the test's scope. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "cairn-sqlite-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

/** Rows as plain objects (node:sqlite returns null-prototype ones). */
const plain = (rows: ReadonlyArray<object>) => rows.map((row) => ({ ...row }))

/** The failure of an effect, which must fail with a SqlError. */
const sqlFailure = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(effect)
    assert.isTrue(Exit.isFailure(exit), "expected a failure")
    const error = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : undefined
    assert.isTrue(error !== undefined && error._tag === "Some", "expected a typed failure")
    const value = error?._tag === "Some" ? error.value : undefined
    assert.instanceOf(value, SqlError)
    return value as SqlError
  })

const events = (sql: SqlClient.SqlClient) =>
  sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload TEXT NOT NULL)`

describe("Sqlite queries", () => {
  it.effect("creates, inserts one row and an array of rows, selects with sql.in", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      assert.strictEqual(sql.driver, "cairn-sqlite")
      yield* events(sql)
      yield* sql`INSERT INTO events ${sql.insert({ topic: "orders", payload: "{}" })}`
      yield* sql`INSERT INTO events ${sql.insert([
        { topic: "users", payload: "[1]" },
        { topic: "orders", payload: "[2]" }
      ])}`
      const all = yield* sql<{ id: number; topic: string }>`SELECT id, topic FROM events ORDER BY id`
      assert.deepStrictEqual(plain(all), [
        { id: 1, topic: "orders" },
        { id: 2, topic: "users" },
        { id: 3, topic: "orders" }
      ])
      const some = yield* sql<{ payload: string }>`SELECT payload FROM events WHERE id IN ${sql.in([1, 3])} ORDER BY id`
      assert.deepStrictEqual(
        some.map((r) => r.payload),
        ["{}", "[2]"]
      )
      const byTopic = yield* sql<{ n: number }>`SELECT count(*) AS n FROM events WHERE topic = ${"orders"}`
      assert.strictEqual(byTopic[0]!.n, 2)
    })
  )

  it.effect("INSERT … RETURNING gives the new rows; ON CONFLICT DO NOTHING RETURNING only the inserted ones", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE ids (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`
      const first = yield* sql<{ id: string; n: number }>`INSERT INTO ids ${sql.insert([
        { id: "a", n: 1 },
        { id: "b", n: 2 }
      ])} RETURNING id, n`
      assert.deepStrictEqual(plain(first), [
        { id: "a", n: 1 },
        { id: "b", n: 2 }
      ])
      const second = yield* sql<{ id: string }>`INSERT INTO ids ${sql.insert([
        { id: "b", n: 20 },
        { id: "c", n: 3 },
        { id: "a", n: 10 }
      ])} ON CONFLICT DO NOTHING RETURNING id`
      assert.deepStrictEqual(
        second.map((r) => r.id),
        ["c"]
      )
      const rows = yield* sql<{ id: string; n: number }>`SELECT id, n FROM ids ORDER BY id`
      assert.deepStrictEqual(plain(rows), [
        { id: "a", n: 1 },
        { id: "b", n: 2 },
        { id: "c", n: 3 }
      ])
    })
  )

  it.effect("SqlSchema.findAll decodes the rows (and fails on a row that does not decode)", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* events(sql)
      yield* sql`INSERT INTO events ${sql.insert([
        { topic: "orders", payload: '{"n":1}' },
        { topic: "users", payload: '{"n":2}' },
        { topic: "orders", payload: '{"n":3}' },
        { topic: "bad", payload: '{"n":"x"}' }
      ])}`
      const Row = Schema.Struct({
        id: Schema.Number,
        payload: Schema.fromJsonString(Schema.Struct({ n: Schema.Number }))
      })
      const byTopic = SqlSchema.findAll({
        Request: Schema.String,
        Result: Row,
        execute: (topic) => sql`SELECT id, payload FROM events WHERE topic = ${topic} ORDER BY id`
      })
      assert.deepStrictEqual(yield* byTopic("orders"), [
        { id: 1, payload: { n: 1 } },
        { id: 3, payload: { n: 3 } }
      ])
      assert.deepStrictEqual(yield* byTopic("nothing"), [])
      const bad = yield* Effect.flip(byTopic("bad"))
      assert.isTrue(Schema.isSchemaError(bad))
    })
  )

  it.effect("parameters round trip: null, undefined → NULL, booleans → 1/0, bigint, Uint8Array, Date → ISO text", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE p (k TEXT PRIMARY KEY, v)`
      const when = new Date("2026-01-02T03:04:05.678Z")
      const blob = new Uint8Array([0, 1, 254, 255])
      const values: ReadonlyArray<readonly [string, unknown]> = [
        ["null", null],
        ["undefined", undefined],
        ["true", true],
        ["false", false],
        ["bigint", 42n],
        ["big", 2n ** 60n],
        ["blob", blob],
        ["date", when],
        ["real", 1.5],
        ["int", 7],
        ["negative", -3],
        ["text", "héllo"]
      ]
      for (const [k, v] of values) yield* sql`INSERT INTO p (k, v) VALUES (${k}, ${v})`
      const rows = yield* sql<{ k: string; t: string; v: unknown }>`
        SELECT k, typeof(v) AS t, CASE WHEN k = 'big' THEN CAST(v AS TEXT) ELSE v END AS v FROM p`
      const got = Object.fromEntries(rows.map((r) => [r.k, [r.t, r.v]]))
      assert.deepStrictEqual(got, {
        null: ["null", null],
        undefined: ["null", null],
        true: ["integer", 1],
        false: ["integer", 0],
        int: ["integer", 7],
        negative: ["integer", -3],
        bigint: ["integer", 42],
        big: ["integer", "1152921504606846976"],
        blob: ["blob", blob],
        date: ["text", "2026-01-02T03:04:05.678Z"],
        real: ["real", 1.5],
        text: ["text", "héllo"]
      })
      // a whole number is an INTEGER for SQLite too (node:sqlite alone binds REAL 1.0)
      const [json] = yield* sql<{
        j: string
        t: string
      }>`SELECT json_object('n', ${1}, 'r', ${0.5}) AS j, typeof(${2}) AS t`
      assert.deepStrictEqual(plain([json!]), [{ j: '{"n":1,"r":0.5}', t: "integer" }])
      // a boolean parameter compares with the stored 1
      const flagged = yield* sql<{ k: string }>`SELECT k FROM p WHERE v = ${true} ORDER BY k`
      assert.deepStrictEqual(
        flagged.map((r) => r.k),
        ["true"]
      )
    })
  )

  it.effect("reading an integer outside ±(2^53 - 1) fails with a SqlError, as documented", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      const error = yield* sqlFailure(sql`SELECT ${2n ** 53n} AS x`)
      assert.match(error.message, /too large/)
      const safe = yield* sql<{ x: number }>`SELECT ${2n ** 53n - 1n} AS x`
      assert.strictEqual(safe[0]!.x, Number.MAX_SAFE_INTEGER)
    })
  )

  it.effect("an unsupported parameter fails with a SqlError naming it, and nothing is run", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE p (a, b)`
      const cases: ReadonlyArray<readonly [unknown, RegExp]> = [
        [{ x: 1 }, /parameter 2 is a plain object/],
        [[1, 2], /parameter 2 is an array/],
        [Symbol("s"), /parameter 2 is a symbol/],
        [new Map(), /parameter 2 is a Map/],
        [() => 1, /parameter 2 is a function/],
        [new Date(Number.NaN), /parameter 2 is an invalid Date/],
        [2n ** 64n, /parameter 2 is a bigint outside the 64-bit range/]
      ]
      for (const [value, message] of cases) {
        const error = yield* sqlFailure(sql`INSERT INTO p (a, b) VALUES (${1}, ${value})`)
        assert.match(error.message, message)
        assert.match(error.message, /JSON\.stringify/)
      }
      const count = yield* sql<{ n: number }>`SELECT count(*) AS n FROM p`
      assert.strictEqual(count[0]!.n, 0)
    })
  )

  it.effect("several statements in one text fail with SqlSyntaxError instead of running only the first", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE t (x)`
      const error = yield* sqlFailure(sql`INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)`)
      assert.strictEqual(error.reason._tag, "SqlSyntaxError")
      assert.match(error.message, /more than one statement/)
      const unprepared = yield* sqlFailure(sql`INSERT INTO t VALUES (1); DROP TABLE t`.unprepared)
      assert.strictEqual(unprepared.reason._tag, "SqlSyntaxError")
      // a trailing semicolon or comment is not another statement
      yield* sql`INSERT INTO t VALUES (3); -- done`
      yield* sql`INSERT INTO t VALUES (4);;  `
      const rows = yield* sql<{ x: number }>`SELECT x FROM t ORDER BY x`
      assert.deepStrictEqual(
        rows.map((r) => r.x),
        [3, 4]
      )
    })
  )

  it.effect("values, raw and unprepared: arrays, the run() result for writes, rows for reads", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)`
      const insert = yield* sql`INSERT INTO t (name) VALUES (${"a"}), (${"b"})`.raw
      assert.deepStrictEqual(insert, { changes: 2, lastInsertRowid: 2 })
      const read = yield* sql`SELECT id, name FROM t ORDER BY id`.raw
      assert.deepStrictEqual(plain(read as ReadonlyArray<object>), [
        { id: 1, name: "a" },
        { id: 2, name: "b" }
      ])
      const select = () => sql`SELECT id, name FROM t ORDER BY id`
      assert.deepStrictEqual(yield* select().values, [
        [1, "a"],
        [2, "b"]
      ])
      // the same (cached) statement gives objects again
      assert.deepStrictEqual(plain(yield* select()), [
        { id: 1, name: "a" },
        { id: 2, name: "b" }
      ])
      assert.deepStrictEqual(yield* select().valuesUnprepared, [
        [1, "a"],
        [2, "b"]
      ])
      assert.deepStrictEqual(plain(yield* select().unprepared), [
        { id: 1, name: "a" },
        { id: 2, name: "b" }
      ])
      const returning = yield* sql`UPDATE t SET name = 'c' WHERE id = 2 RETURNING id`.raw
      assert.deepStrictEqual(plain(returning as ReadonlyArray<object>), [{ id: 2 }])
    })
  )

  it.effect("transformQueryNames and transformResultNames rename identifiers and columns", () =>
    Effect.gen(function* () {
      const toSnake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
      const toCamel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())
      const sql = yield* memory({ transformQueryNames: toSnake, transformResultNames: toCamel })
      yield* sql`CREATE TABLE t (event_id TEXT, happened_at INTEGER)`
      yield* sql`INSERT INTO t ${sql.insert({ eventId: "e1", happenedAt: 7 })}`
      const rows = yield* sql`SELECT * FROM t`
      assert.deepStrictEqual(plain(rows), [{ eventId: "e1", happenedAt: 7 }])
      const raw = yield* sql.withoutTransforms()`SELECT * FROM t`
      assert.deepStrictEqual(plain(raw), [{ event_id: "e1", happened_at: 7 }])
    })
  )
})

describe("Sqlite streams", () => {
  it.effect("sql`…`.stream yields every row in order, across chunks", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE n (i INTEGER PRIMARY KEY)`
      yield* sql`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1000) INSERT INTO n SELECT i FROM c`
      const rows = yield* Stream.runCollect(sql<{ i: number }>`SELECT i FROM n WHERE i > ${0} ORDER BY i`.stream)
      assert.strictEqual(rows.length, 1000)
      assert.deepStrictEqual(
        rows.map((r) => r.i),
        Array.from({ length: 1000 }, (_, i) => i + 1)
      )
    })
  )

  it.effect("a stream ended early releases the connection; a failing stream fails with a SqlError", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE n (i INTEGER)`
      yield* sql`INSERT INTO n ${sql.insert([{ i: 1 }, { i: 2 }, { i: 3 }])}`
      const two = yield* Stream.runCollect(Stream.take(sql<{ i: number }>`SELECT i FROM n ORDER BY i`.stream, 2))
      assert.deepStrictEqual(
        two.map((r) => r.i),
        [1, 2]
      )
      // the lease is back: a write (which needs no open read on the connection) goes through
      yield* sql`INSERT INTO n (i) VALUES (4)`
      yield* sql.withTransaction(sql`INSERT INTO n (i) VALUES (5)`)
      const count = yield* sql<{ n: number }>`SELECT count(*) AS n FROM n`
      assert.strictEqual(count[0]!.n, 5)
      // and the statement was reset: an unfinished read (more rows than one pull) would keep the table locked
      yield* sql`CREATE TABLE m AS WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 600) SELECT i FROM c`
      yield* Stream.runCollect(Stream.take(sql<{ i: number }>`SELECT i FROM m`.stream, 1))
      yield* sql`DROP TABLE m`
      const error = yield* Effect.flip(Stream.runCollect(sql`SELECT nope FROM n`.stream))
      assert.instanceOf(error, SqlError)
      assert.strictEqual(error.reason._tag, "SqlSyntaxError")
      const tooBig = yield* Effect.flip(Stream.runCollect(sql`SELECT i * 9007199254740993 AS x FROM n`.stream))
      assert.instanceOf(tooBig, SqlError)
    })
  )
})

describe("Sqlite transactions", () => {
  it.effect("commits on success", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE t (x INTEGER)`
      const result = yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`INSERT INTO t VALUES (1)`
          yield* sql`INSERT INTO t VALUES (2)`
          return "done"
        })
      )
      assert.strictEqual(result, "done")
      const rows = yield* sql<{ x: number }>`SELECT x FROM t ORDER BY x`
      assert.deepStrictEqual(
        rows.map((r) => r.x),
        [1, 2]
      )
    })
  )

  it.effect("rolls back on a typed failure and on a defect", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE t (x INTEGER)`
      const failed = yield* Effect.flip(
        sql.withTransaction(sql`INSERT INTO t VALUES (1)`.pipe(Effect.andThen(Effect.fail("nope" as const))))
      )
      assert.strictEqual(failed, "nope")
      const died = yield* Effect.exit(
        sql.withTransaction(sql`INSERT INTO t VALUES (2)`.pipe(Effect.andThen(Effect.die(new Error("boom")))))
      )
      assert.isTrue(Exit.isFailure(died) && Cause.hasDies(died.cause))
      const rows = yield* sql`SELECT x FROM t`
      assert.strictEqual(rows.length, 0)
      // the connection is usable (no transaction left open)
      yield* sql.withTransaction(sql`INSERT INTO t VALUES (3)`)
      assert.strictEqual((yield* sql`SELECT x FROM t`).length, 1)
    })
  )

  it.effect("nested transactions are savepoints: an inner failure caught keeps the outer's writes", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE t (x TEXT)`
      yield* sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`INSERT INTO t VALUES ('outer-1')`
          const inner = yield* Effect.flip(
            sql.withTransaction(sql`INSERT INTO t VALUES ('inner-failed')`.pipe(Effect.andThen(Effect.fail("inner"))))
          )
          assert.strictEqual(inner, "inner")
          yield* sql.withTransaction(sql`INSERT INTO t VALUES ('inner-ok')`)
          yield* sql`INSERT INTO t VALUES ('outer-2')`
        })
      )
      const rows = yield* sql<{ x: string }>`SELECT x FROM t ORDER BY rowid`
      assert.deepStrictEqual(
        rows.map((r) => r.x),
        ["outer-1", "inner-ok", "outer-2"]
      )
      // an inner success inside an outer failure is rolled back with it
      yield* Effect.flip(
        sql.withTransaction(
          sql.withTransaction(sql`INSERT INTO t VALUES ('lost')`).pipe(Effect.andThen(Effect.fail(1)))
        )
      )
      assert.strictEqual((yield* sql`SELECT x FROM t`).length, 3)
    })
  )

  it.effect("concurrent transactions are serialized: no lost update, no interleaving", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE counter (n INTEGER NOT NULL)`
      yield* sql`CREATE TABLE log (fiber INTEGER NOT NULL, step TEXT NOT NULL)`
      yield* sql`INSERT INTO counter VALUES (0)`
      const increment = (fiber: number) =>
        sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`INSERT INTO log VALUES (${fiber}, 'begin')`
            const [row] = yield* sql<{ n: number }>`SELECT n FROM counter`
            for (let i = 0; i < 5; i++) yield* Effect.yieldNow
            yield* sql`UPDATE counter SET n = ${row!.n + 1}`
            yield* sql`INSERT INTO log VALUES (${fiber}, 'end')`
          })
        )
      yield* Effect.all(
        Array.from({ length: 10 }, (_, i) => increment(i)),
        { concurrency: "unbounded", discard: true }
      )
      const [counter] = yield* sql<{ n: number }>`SELECT n FROM counter`
      assert.strictEqual(counter!.n, 10)
      const log = yield* sql<{ fiber: number; step: string }>`SELECT fiber, step FROM log ORDER BY rowid`
      assert.strictEqual(log.length, 20)
      for (let i = 0; i < log.length; i += 2) {
        assert.strictEqual(log[i]!.step, "begin")
        assert.strictEqual(log[i + 1]!.step, "end")
        assert.strictEqual(log[i]!.fiber, log[i + 1]!.fiber)
      }
    })
  )
})

describe("Sqlite files", () => {
  it.effect("data persists after the scope closes and a new client opens the same file; WAL is on", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "data.sqlite")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const sql = yield* onFile(filename)
          yield* sql`CREATE TABLE t (x TEXT)`
          yield* sql.withTransaction(sql`INSERT INTO t ${sql.insert([{ x: "a" }, { x: "b" }])}`)
        })
      )
      // the first client closed the file: node:sqlite itself can open it now
      const direct = new DatabaseSync(filename, { readOnly: true })
      assert.strictEqual(direct.prepare("SELECT count(*) AS n FROM t").get()!.n, 2)
      direct.close()
      const sql = yield* onFile(filename)
      const rows = yield* sql<{ x: string }>`SELECT x FROM t ORDER BY x`
      assert.deepStrictEqual(
        rows.map((r) => r.x),
        ["a", "b"]
      )
      const [mode] = yield* sql<{ journal_mode: string }>`PRAGMA journal_mode`
      assert.strictEqual(mode!.journal_mode, "wal")
    })
  )

  it.effect("pragmas follow the options: busy timeout, synchronous, foreign keys, wal: false", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const sql = yield* onFile(join(dir, "opts.sqlite"), { busyTimeoutMs: 1234, synchronous: "FULL", wal: false })
      assert.deepStrictEqual(plain(yield* sql`PRAGMA busy_timeout`), [{ timeout: 1234 }])
      assert.deepStrictEqual(plain(yield* sql`PRAGMA synchronous`), [{ synchronous: 2 }])
      assert.deepStrictEqual(plain(yield* sql`PRAGMA foreign_keys`), [{ foreign_keys: 1 }])
      assert.deepStrictEqual(plain(yield* sql`PRAGMA journal_mode`), [{ journal_mode: "delete" }])
      const defaults = yield* onFile(join(dir, "defaults.sqlite"))
      assert.deepStrictEqual(plain(yield* defaults`PRAGMA busy_timeout`), [{ timeout: 5_000 }])
      assert.deepStrictEqual(plain(yield* defaults`PRAGMA synchronous`), [{ synchronous: 1 }])
    })
  )

  it.effect("foreign keys are enforced: a dangling reference fails with ConstraintError", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE parent (id INTEGER PRIMARY KEY)`
      yield* sql`CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES parent (id))`
      const error = yield* sqlFailure(sql`INSERT INTO child (parent) VALUES (1)`)
      assert.strictEqual(error.reason._tag, "ConstraintError")
    })
  )

  it.effect("readonly: reads work, writes fail with a SqlError", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "ro.sqlite")
      yield* Effect.scoped(
        Effect.gen(function* () {
          const sql = yield* onFile(filename)
          yield* sql`CREATE TABLE t (x INTEGER)`
          yield* sql`INSERT INTO t VALUES (1)`
        })
      )
      const sql = yield* onFile(filename, { readonly: true })
      assert.strictEqual((yield* sql`SELECT x FROM t`).length, 1)
      const error = yield* sqlFailure(sql`INSERT INTO t VALUES (2)`)
      assert.match(error.message, /readonly/)
      const inTransaction = yield* sqlFailure(sql.withTransaction(sql`INSERT INTO t VALUES (3)`))
      assert.match(inTransaction.message, /readonly/)
      assert.strictEqual((yield* sql.withTransaction(sql`SELECT x FROM t`)).length, 1)
    })
  )

  it.effect("a second client on the same file waits busyTimeoutMs for the write lock, then LockTimeoutError", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "busy.sqlite")
      const a = yield* onFile(filename)
      const b = yield* onFile(filename, { busyTimeoutMs: 50 })
      yield* a`CREATE TABLE t (x INTEGER)`
      const error = yield* a.withTransaction(
        Effect.gen(function* () {
          yield* a`INSERT INTO t VALUES (1)`
          const started = Date.now()
          const error = yield* sqlFailure(b.withTransaction(b`INSERT INTO t VALUES (2)`))
          assert.isAtLeast(Date.now() - started, 40)
          return error
        })
      )
      assert.strictEqual(error.reason._tag, "LockTimeoutError")
      // once a committed, b writes
      yield* b.withTransaction(b`INSERT INTO t VALUES (2)`)
      assert.strictEqual((yield* b`SELECT x FROM t`).length, 2)
    })
  )

  it.effect("a transaction holds the write lock from BEGIN: another connection's write cannot break it", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "immediate.sqlite")
      const a = yield* onFile(filename)
      const b = yield* onFile(filename, { busyTimeoutMs: 20 })
      yield* a`CREATE TABLE counter (n INTEGER NOT NULL)`
      yield* a`INSERT INTO counter VALUES (0)`
      yield* a.withTransaction(
        Effect.gen(function* () {
          const [row] = yield* a<{ n: number }>`SELECT n FROM counter`
          // with a deferred BEGIN, b's write would commit here and a's UPDATE would then fail (SQLITE_BUSY_SNAPSHOT)
          const blocked = yield* sqlFailure(b`UPDATE counter SET n = n + 100`)
          assert.strictEqual(blocked.reason._tag, "LockTimeoutError")
          yield* a`UPDATE counter SET n = ${row!.n + 1}`
        })
      )
      const [after] = yield* b<{ n: number }>`SELECT n FROM counter`
      assert.strictEqual(after!.n, 1)
    })
  )

  it.effect("closing the scope waits for the running transaction, then closes; later statements fail", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "close.sqlite")
      const scope = yield* Scope.make()
      const sql = yield* onFile(filename).pipe(Scope.provide(scope))
      yield* sql`CREATE TABLE t (x INTEGER)`
      const inside = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const writer = yield* Effect.forkChild(
        sql.withTransaction(
          Effect.gen(function* () {
            yield* sql`INSERT INTO t VALUES (1)`
            yield* Deferred.succeed(inside, undefined)
            yield* Deferred.await(release)
            yield* sql`INSERT INTO t VALUES (2)`
          })
        )
      )
      yield* Deferred.await(inside)
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow
      assert.isUndefined(closing.pollUnsafe(), "the close waits for the transaction")
      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(writer)
      yield* Fiber.join(closing)
      const after = yield* sqlFailure(sql`SELECT x FROM t`)
      assert.strictEqual(after.reason._tag, "ConnectionError")
      const direct = new DatabaseSync(filename, { readOnly: true })
      assert.strictEqual(direct.prepare("SELECT count(*) AS n FROM t").get()!.n, 2)
      direct.close()
    })
  )
})

describe("Sqlite errors", () => {
  it.effect("a statement that does not compile is a SqlSyntaxError", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      const syntax = yield* sqlFailure(sql`SELEC 1`)
      assert.strictEqual(syntax.reason._tag, "SqlSyntaxError")
      assert.match(syntax.message, /syntax error/)
      const table = yield* sqlFailure(sql`SELECT * FROM missing`)
      assert.strictEqual(table.reason._tag, "SqlSyntaxError")
      assert.match(table.message, /no such table: missing/)
    })
  )

  it.effect("a unique violation is a UniqueViolation naming the constraint", () =>
    Effect.gen(function* () {
      const sql = yield* memory()
      yield* sql`CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)`
      yield* sql`INSERT INTO t (name) VALUES ('a')`
      const error = yield* sqlFailure(sql`INSERT INTO t (name) VALUES ('a')`)
      assert.strictEqual(error.reason._tag, "UniqueViolation")
      assert.strictEqual(error.reason._tag === "UniqueViolation" ? error.reason.constraint : "", "t.name")
      assert.match(error.message, /UNIQUE constraint failed: t\.name/)
      // SQLite reports a primary key conflict with its own code; it is a UniqueViolation too
      const pk = yield* sqlFailure(sql`INSERT INTO t (id, name) VALUES (1, 'b')`)
      assert.strictEqual(pk.reason._tag, "UniqueViolation")
      assert.strictEqual(pk.reason._tag === "UniqueViolation" ? pk.reason.constraint : "", "t.id")
      yield* sql`CREATE TABLE k (a TEXT, b TEXT, PRIMARY KEY (a, b))`
      yield* sql`INSERT INTO k VALUES ('x', 'y')`
      const composite = yield* sqlFailure(sql`INSERT INTO k VALUES (${"x"}, ${"y"})`)
      assert.strictEqual(composite.reason._tag === "UniqueViolation" ? composite.reason.constraint : "", "k.a, k.b")
      // other constraints stay ConstraintError
      yield* sql`CREATE TABLE c (n INTEGER CHECK (n > 0))`
      assert.strictEqual((yield* sqlFailure(sql`INSERT INTO c VALUES (${0})`)).reason._tag, "ConstraintError")
    })
  )

  it.effect("invalid options fail with InvalidOptions", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [Partial<Sqlite.Options>, RegExp]> = [
        [{ busyTimeoutMs: -1 }, /busyTimeoutMs must be an integer from 0/],
        [{ busyTimeoutMs: 1.5 }, /busyTimeoutMs/],
        [{ statementCacheSize: -1 }, /statementCacheSize must be an integer of at least 0/],
        [{ synchronous: "EXTRA" as "FULL" }, /synchronous must be "OFF", "NORMAL" or "FULL"/],
        [{ filename: "" }, /filename must be a path/],
        [{ wal: "yes" as unknown as boolean }, /wal must be a boolean/]
      ]
      for (const [options, reason] of cases) {
        const error = yield* Effect.flip(memory(options))
        assert.instanceOf(error, Errors.InvalidOptions)
        assert.strictEqual(error._tag, "InvalidOptions")
        assert.match(error.message, /^Sqlite: /)
        assert.match(error.message, reason)
      }
      const both = yield* Effect.flip(memory({ busyTimeoutMs: -1, statementCacheSize: -1 }))
      assert.match(both.message, /busyTimeoutMs.*; statementCacheSize/)
    })
  )

  it.effect("a file that cannot be opened fails with SqlError (ConnectionError)", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const missingDir = yield* Effect.flip(onFile(join(dir, "no", "such", "dir", "x.sqlite")))
      assert.instanceOf(missingDir, SqlError)
      assert.strictEqual(missingDir._tag === "SqlError" ? missingDir.reason._tag : "", "ConnectionError")
      const missingReadonly = yield* Effect.flip(onFile(join(dir, "absent.sqlite"), { readonly: true }))
      assert.strictEqual(missingReadonly._tag === "SqlError" ? missingReadonly.reason._tag : "", "ConnectionError")
      const garbage = join(dir, "garbage.sqlite")
      writeFileSync(garbage, "this is not a database, just some text that is long enough".repeat(20))
      const notADatabase = yield* Effect.flip(onFile(garbage))
      assert.strictEqual(notADatabase._tag === "SqlError" ? notADatabase.reason._tag : "", "ConnectionError")
      assert.match(notADatabase.message, /not a database/)
    })
  )
})

describe("Sqlite statement cache", () => {
  /** Counts DatabaseSync#prepare calls per SQL text while the scope is open. */
  const countPrepares = Effect.acquireRelease(
    Effect.sync(() => {
      const original = DatabaseSync.prototype.prepare
      const counts = new Map<string, number>()
      const spy = vi.spyOn(DatabaseSync.prototype, "prepare").mockImplementation(function (this: DatabaseSync, sql) {
        counts.set(sql, (counts.get(sql) ?? 0) + 1)
        return original.call(this, sql)
      })
      return { counts, spy }
    }),
    ({ spy }) => Effect.sync(() => spy.mockRestore())
  )

  it.effect("keeps the most recently used statements: a hit is not prepared again, the LRU one is dropped", () =>
    Effect.gen(function* () {
      const { counts } = yield* countPrepares
      const sql = yield* memory({ statementCacheSize: 2 })
      const a = sql`SELECT ${1} AS a`
      const b = sql`SELECT ${1} AS b`
      const c = sql`SELECT ${1} AS c`
      // A B A C B: with LRU, C drops B (A was used after it), so B is prepared twice
      for (const statement of [a, b, a, c, b]) yield* statement
      assert.deepStrictEqual(
        ["SELECT ? AS a", "SELECT ? AS b", "SELECT ? AS c"].map((s) => counts.get(s)),
        [1, 2, 1]
      )
      // A was dropped by the second B (C and B are the two most recent now)
      yield* a
      assert.strictEqual(counts.get("SELECT ? AS a"), 2)
      // many distinct statements still give the right answers
      for (let i = 0; i < 300; i++) {
        const [row] = yield* sql<{ v: number }>`SELECT ${i} + ${i % 7} AS v, ${`s${i}`} AS ${sql(`c${i}`)}`
        assert.strictEqual(row!.v, i + (i % 7))
      }
      const [row] = yield* sql<{ v: number }>`SELECT ${1} + ${1} AS v, ${"x"} AS ${sql("c5")}`
      assert.strictEqual(row!.v, 2)
    })
  )

  it.effect("transaction controls are prepared once; statementCacheSize 0 prepares every time", () =>
    Effect.gen(function* () {
      const { counts } = yield* countPrepares
      const sql = yield* memory()
      for (let i = 0; i < 3; i++) yield* sql.withTransaction(sql`SELECT ${i} AS x`)
      assert.strictEqual(counts.get("BEGIN IMMEDIATE"), 1)
      assert.strictEqual(counts.get("COMMIT"), 1)
      assert.strictEqual(counts.get("SELECT ? AS x"), 1)
      const uncached = yield* memory({ statementCacheSize: 0 })
      for (let i = 0; i < 3; i++) yield* uncached`SELECT ${i} AS y`
      assert.strictEqual(counts.get("SELECT ? AS y"), 3)
    })
  )
})

describe("Sqlite with Migrator", () => {
  it.effect("runs migrations once and records them; a later one runs alone", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const filename = join(dir, "migrate.sqlite")
      const run = Migrator.make({})
      const first = {
        "1_create": Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql`CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)`
        }),
        "2_seed": Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* sql`INSERT INTO items ${sql.insert([{ name: "a" }, { name: "b" }])}`
        })
      }
      const layer = Sqlite.layer({ filename })
      const applied = yield* run({ loader: Migrator.fromRecord(first) }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(applied, [
        [1, "create"],
        [2, "seed"]
      ])
      const again = yield* run({ loader: Migrator.fromRecord(first) }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(again, [])
      const third = yield* run({
        loader: Migrator.fromRecord({
          ...first,
          "3_more": Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            yield* sql`INSERT INTO items (name) VALUES ('c')`
          })
        })
      }).pipe(Effect.provide(layer))
      assert.deepStrictEqual(third, [[3, "more"]])
      const check = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const items = yield* sql<{ name: string }>`SELECT name FROM items ORDER BY id`
        const recorded = yield* sql<{ migration_id: number; name: string }>`
          SELECT migration_id, name FROM effect_sql_migrations ORDER BY migration_id`
        return [items.map((r) => r.name), plain(recorded)] as const
      })
      assert.deepStrictEqual(yield* check.pipe(Effect.provide(layer)), [
        ["a", "b", "c"],
        [
          { migration_id: 1, name: "create" },
          { migration_id: 2, name: "seed" },
          { migration_id: 3, name: "more" }
        ]
      ])
    })
  )

  it.effect("a failing migration is rolled back and not recorded", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const layer = Sqlite.layer({ filename: join(dir, "fail.sqlite") })
      const error = yield* Migrator.make({})({
        loader: Migrator.fromRecord({
          "1_create": Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            yield* sql`CREATE TABLE items (id INTEGER PRIMARY KEY)`
          }),
          "2_broken": Effect.gen(function* () {
            const sql = yield* SqlClient.SqlClient
            yield* sql`INSERT INTO nowhere VALUES (1)`
          })
        })
      }).pipe(Effect.provide(layer), Effect.flip)
      assert.strictEqual(error._tag, "MigrationError")
      const state = Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        const tables = yield* sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`
        const recorded = yield* sql`SELECT * FROM effect_sql_migrations`
        return [tables.map((t) => t.name), recorded.length] as const
      })
      assert.deepStrictEqual(yield* state.pipe(Effect.provide(layer)), [["effect_sql_migrations"], 0])
    })
  )
})

describe("Sqlite.layer", () => {
  it.effect("provides SqlClient (with its own Reactivity); invalid options fail the layer", () =>
    Effect.gen(function* () {
      const driver = yield* Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return sql.driver
      }).pipe(Effect.provide(Sqlite.layer({ filename: ":memory:" })))
      assert.strictEqual(driver, "cairn-sqlite")
      const error = yield* Layer.build(Sqlite.layer({ filename: ":memory:", busyTimeoutMs: -5 })).pipe(Effect.flip)
      assert.instanceOf(error, Errors.InvalidOptions)
    })
  )
})
