/**
 * The store's schema: its tables for SQLite and Postgres, as migrations run by
 * `effect/sql`'s Migrator (recorded in `cairn_migrations`; on Postgres the Migrator
 * locks that table, so several processes starting at once migrate once).
 *
 * One schema, two dialects: times are integer milliseconds since the epoch (`BIGINT`;
 * SQLite's `INTEGER` is 64-bit), data is `JSONB` on Postgres and JSON text on SQLite,
 * booleans are integers 0/1 on both. See `docs/storage.md` for the tables.
 */
import { Effect } from "effect"
import * as Migrator from "effect/sql/Migrator"
import * as SqlClient from "effect/sql/SqlClient"

/** Where the Migrator records what it ran. */
export const migrationsTable = "cairn_migrations"

const init = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const big = sql.onDialectOrElse({ pg: () => "BIGINT", orElse: () => "INTEGER" })
  const json = sql.onDialectOrElse({ pg: () => "JSONB", orElse: () => "TEXT" })
  const serial = sql.onDialectOrElse({
    pg: () => "BIGSERIAL PRIMARY KEY",
    orElse: () => "INTEGER PRIMARY KEY AUTOINCREMENT"
  })
  yield* sql.unsafe(`CREATE TABLE cairn_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    happened_at ${big} NOT NULL,
    recorded_at ${big} NOT NULL,
    source TEXT NOT NULL,
    authuser TEXT,
    parent TEXT,
    grp TEXT,
    data ${json} NOT NULL
  )`)
  yield* sql.unsafe("CREATE INDEX cairn_events_type ON cairn_events (type, happened_at, id)")
  yield* sql.unsafe("CREATE INDEX cairn_events_name ON cairn_events (name, happened_at, id)")
  yield* sql.unsafe("CREATE INDEX cairn_events_time ON cairn_events (happened_at, id)")
  yield* sql.unsafe("CREATE INDEX cairn_events_source ON cairn_events (source, happened_at, id)")
  yield* sql.unsafe("CREATE INDEX cairn_events_parent ON cairn_events (parent)")
  yield* sql.unsafe("CREATE INDEX cairn_events_grp ON cairn_events (grp, happened_at, id)")
  yield* sql.unsafe("CREATE INDEX cairn_events_authuser ON cairn_events (authuser, happened_at, id)")

  yield* sql.unsafe(`CREATE TABLE cairn_subscriptions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT,
    secret TEXT,
    active INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    created_at ${big} NOT NULL
  )`)
  yield* sql.unsafe(`CREATE TABLE cairn_subscription_types (
    subscription_id TEXT NOT NULL REFERENCES cairn_subscriptions (id) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    PRIMARY KEY (subscription_id, pattern)
  )`)
  yield* sql.unsafe("CREATE INDEX cairn_subscription_types_pattern ON cairn_subscription_types (pattern)")

  yield* sql.unsafe(`CREATE TABLE cairn_deliveries (
    id ${serial},
    subscription_id TEXT NOT NULL REFERENCES cairn_subscriptions (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES cairn_events (id),
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    due_at ${big} NOT NULL,
    claimed_by TEXT,
    claimed_until ${big},
    last_error TEXT,
    last_status INTEGER,
    delivered_at ${big},
    created_at ${big} NOT NULL,
    UNIQUE (subscription_id, event_id)
  )`)
  yield* sql.unsafe("CREATE INDEX cairn_deliveries_due ON cairn_deliveries (state, due_at)")
  yield* sql.unsafe("CREATE INDEX cairn_deliveries_subscription ON cairn_deliveries (subscription_id, state)")
})

/** The migrations, in order. */
export const loader = Migrator.fromRecord({ "0001_init": init })

/** Runs the migrations not run yet; returns those it ran. */
export const migrate = Migrator.make({})({ loader, table: migrationsTable })
