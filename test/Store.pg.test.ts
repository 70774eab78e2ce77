/**
 * The store and outbox conformance suite on Postgres: the server of this machine
 * (127.0.0.1:5432, database `test`, or CAIRN_PG_URL), in a schema of this run's own.
 * Where no server answers, the suite is skipped with the reason printed.
 */
import { randomBytes } from "node:crypto"
import { assert, it } from "@effect/vitest"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Redacted } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import { Store } from "../src/index.ts"
import { conformance } from "./conformance/store.ts"
import { pgReachable, pgUrl } from "./fixtures/pg.ts"

const schema = `cairn_test_${randomBytes(4).toString("hex")}`
const reachable = await pgReachable()

const client = () =>
  PgClient.layer({ url: Redacted.make(pgUrl), startupParameters: { search_path: schema }, maxConnections: 4 })

/** The schema exists for the suite's life, then goes. */
const withSchema = Layer.effectDiscard(
  Effect.acquireRelease(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
    }),
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* sql.unsafe(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
      }).pipe(Effect.ignore)
  )
).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl) })))

if (reachable === true) {
  conformance({
    name: "Postgres",
    layer: () => Layer.provideMerge(client(), withSchema),
    concurrentWorkers: true,
    extraLayer: client
  })
} else {
  console.log(
    `Store.pg.test.ts: the conformance suite is not run: no Postgres at ${pgUrl} (${reachable}); set CAIRN_PG_URL to run it`
  )
  // what can be checked without a server: a store on an unreachable Postgres fails
  // with a typed connection error, promptly, rather than hanging or dying
  it("without a server, making a store fails with SqlError (ConnectionError)", async () => {
    const exit = await Effect.runPromiseExit(
      Store.make().pipe(Effect.provide(PgClient.layer({ url: Redacted.make(pgUrl), connectTimeout: "2 seconds" })))
    )
    assert.isTrue(Exit.isFailure(exit))
    const text = String(Exit.isFailure(exit) ? exit.cause : "")
    assert.include(text, "SqlError")
    assert.include(text, "ConnectionError")
  }, 20_000)
}
