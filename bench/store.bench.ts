/**
 * Store benchmark: durable ingest, batches of 512 events (3-field data), one
 * transaction per batch, into a fresh database each round.
 *
 * - SQLite: `Store.record` through Cairn's node:sqlite driver vs raw `node:sqlite`
 *   batched inserts of the same rows into the same table and indexes (a prepared
 *   multi-row `INSERT`, `BEGIN IMMEDIATE` … `COMMIT` per batch).
 * - Postgres (when a server answers at CAIRN_PG_URL or 127.0.0.1:5432): `Store.record`
 *   vs raw batched inserts of the same rows through the same driver
 *   (`@effect/sql-pg`, one multi-row `INSERT` per batch in a transaction).
 *
 * Ours also does what makes it a store: `ON CONFLICT DO NOTHING RETURNING id` (which
 * events are new), the outbox's delivery insert in the same transaction (no
 * subscription here), the data encoded to JSON. Latency: per batch, p50/p99 ms.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { PgClient } from "@effect/sql-pg"
import { Effect, type Layer, ManagedRuntime, Redacted } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import { Envelope, Protocol, Sqlite, Store } from "../src/index.ts"
import { pgReachable, pgUrl } from "../test/fixtures/pg.ts"
import { BenchEvent } from "./gateway-shared.ts"
import { type Case, compare, printResult, type Round, withLatency } from "./lib.ts"

const quick = process.env.CAIRN_BENCH_QUICK === "1"
const TOTAL = quick ? 40_960 : 204_800
const BATCH = 512
const KEY = "bench.Step@1"
const T0 = 1_767_225_600_000

let round = 0
/** Fresh events for a round: ids never seen before, in batches of 512. */
const batches = (): Array<Array<Envelope.Envelope>> => {
  const node = Protocol.formatId(0, "K5X2J9QM", round++).slice(18, 26)
  const out: Array<Array<Envelope.Envelope>> = []
  for (let b = 0; b < TOTAL / BATCH; b++) {
    const batch: Array<Envelope.Envelope> = []
    for (let i = 0; i < BATCH; i++) {
      const n = b * BATCH + i
      batch.push(
        Envelope.make({
          id: Protocol.formatId(T0 + (n >> 6), node, n),
          type: KEY,
          source: "bench-harness",
          happenedAt: T0 + (n >> 6),
          data: { step: n, loss: 1 / (1 + n), tag: "train" }
        })
      )
    }
    out.push(batch)
  }
  return out
}

const rowOf = (e: Envelope.Envelope, now: number): Array<unknown> => [
  e.id,
  KEY,
  "bench.Step",
  1,
  e.happenedAt,
  now,
  e.source,
  null,
  e.parent ?? null,
  null,
  JSON.stringify(e.data)
]
const COLUMNS = "id, type, name, version, happened_at, recorded_at, source, authuser, parent, grp, data"
const placeholders = (n: number, dollar: boolean) => {
  const rows: Array<string> = []
  for (let r = 0; r < n; r++) {
    const cells: Array<string> = []
    for (let c = 0; c < 11; c++) cells.push(dollar ? `$${r * 11 + c + 1}` : "?")
    rows.push(`(${cells.join(", ")})`)
  }
  return rows.join(", ")
}

/** Ours: one `Store.record` per batch, sequentially; rate and per-batch latency. */
const storeRound = async (
  layer: Layer.Layer<SqlClient.SqlClient, unknown>,
  prepare?: Effect.Effect<void, unknown, SqlClient.SqlClient>
) => {
  const runtime = ManagedRuntime.make(layer)
  try {
    if (prepare !== undefined) await runtime.runPromise(prepare)
    const store = await runtime.runPromise(Store.make())
    const all = batches()
    const latencies: Array<number> = []
    const t0 = performance.now()
    await runtime.runPromise(
      Effect.gen(function* () {
        for (const batch of all) {
          const start = performance.now()
          yield* store.record(KEY, batch, BenchEvent)
          latencies.push(performance.now() - start)
        }
      })
    )
    const rate = TOTAL / ((performance.now() - t0) / 1000)
    const n = await runtime.runPromise(store.count())
    if (n !== TOTAL) throw new Error(`the store holds ${n} events, not ${TOTAL}`)
    return { rate, latencies } satisfies Round
  } finally {
    await runtime.dispose()
  }
}

// ---- SQLite -----------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), "cairn-bench-store-"))
let files = 0
const freshFile = () => join(dir, `round-${files++}.sqlite`)

const sqliteOurs = () => storeRound(Sqlite.layer({ filename: freshFile() }))

const sqliteRaw = async (): Promise<Round> => {
  // the same table and indexes, made by the store's migration, then raw node:sqlite
  const file = freshFile()
  const setup = ManagedRuntime.make(Sqlite.layer({ filename: file }))
  await setup.runPromise(Store.make())
  await setup.dispose()
  const db = new DatabaseSync(file)
  try {
    db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")
    const insert = db.prepare(`INSERT INTO cairn_events (${COLUMNS}) VALUES ${placeholders(BATCH, false)}`)
    const begin = db.prepare("BEGIN IMMEDIATE")
    const commit = db.prepare("COMMIT")
    const all = batches()
    const latencies: Array<number> = []
    const t0 = performance.now()
    for (const batch of all) {
      const start = performance.now()
      const now = Date.now()
      const params: Array<unknown> = []
      for (const e of batch) params.push(...rowOf(e, now))
      begin.run()
      insert.run(...(params as Array<null>))
      commit.run()
      latencies.push(performance.now() - start)
    }
    return { rate: TOTAL / ((performance.now() - t0) / 1000), latencies }
  } finally {
    db.close()
  }
}

// ---- Postgres ---------------------------------------------------------------------------

const pgLayer = (schema: string) =>
  PgClient.layer({ url: Redacted.make(pgUrl), startupParameters: { search_path: schema } })

const recreate = (schema: string) =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    yield* sql.unsafe(`CREATE SCHEMA ${schema}`)
  })

const pgOurs = () => storeRound(pgLayer("cairn_bench_ours"), recreate("cairn_bench_ours"))

const pgRaw = async (): Promise<Round> => {
  const runtime = ManagedRuntime.make(pgLayer("cairn_bench_raw"))
  try {
    await runtime.runPromise(recreate("cairn_bench_raw"))
    await runtime.runPromise(Store.make()) // the same table and indexes
    const all = batches()
    const text = `INSERT INTO cairn_events (${COLUMNS}) VALUES ${placeholders(BATCH, true)}`
    const latencies: Array<number> = []
    const t0 = performance.now()
    await runtime.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        for (const batch of all) {
          const start = performance.now()
          const now = Date.now()
          const params: Array<unknown> = []
          for (const e of batch) params.push(...rowOf(e, now))
          yield* sql.withTransaction(sql.unsafe(text, params))
          latencies.push(performance.now() - start)
        }
      })
    )
    return { rate: TOTAL / ((performance.now() - t0) / 1000), latencies }
  } finally {
    await runtime.dispose()
  }
}

const cases: Array<Case> = []
try {
  cases.push(
    await compare(
      `store: SQLite, ${BATCH}-event batches, Store.record vs raw node:sqlite batched inserts`,
      sqliteOurs,
      sqliteRaw,
      withLatency
    )
  )
  const reachable = await pgReachable()
  if (reachable === true) {
    cases.push(
      await compare(
        `store: Postgres, ${BATCH}-event batches, Store.record vs raw batched inserts (sql-pg)`,
        pgOurs,
        pgRaw,
        withLatency
      )
    )
    const cleanup = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(pgUrl) }))
    await cleanup.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe("DROP SCHEMA IF EXISTS cairn_bench_ours CASCADE")
        yield* sql.unsafe("DROP SCHEMA IF EXISTS cairn_bench_raw CASCADE")
      })
    )
    await cleanup.dispose()
  } else {
    console.log(`store bench: the Postgres case is skipped: no server at ${pgUrl} (${reachable})`)
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
printResult("store", cases)
