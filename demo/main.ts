/**
 * The main job (`npm start`): the Cairn telemetry service, with a demo harness.
 *
 *   node demo/main.ts [--port 4600] [--seconds N] [--no-harness] [--db PATH | --pg URL]
 *
 * The service: a gateway (WebSocket `/v1/stream` and the HTTP views on the same port)
 * in front of a service trail — per-type actors that validate, de-duplicate and hand
 * events to handlers (a per-type counter, a watchdog that notices missing checkpoints)
 * — and a durable store: every event committed to SQLite in a file (`--db`, default
 * `.cairn/cairn.sqlite`) or to Postgres (`--pg URL` or `CAIRN_PG_URL`) before its batch
 * is acked, with an outbox worker delivering checkpoints to an in-process subscriber.
 * It prints where it listens, then a one-line summary every 2 s (sessions, events/s,
 * events per type, deliveries).
 *
 * The demo harness (`demo/harness.ts`) runs as a child process: it connects, streams
 * events of several types with a live progress line, and prints its own accounting
 * when it stops. Ctrl-C (or SIGTERM, or `--seconds N`) shuts both down gracefully,
 * the harness first (it delivers its `must` events through the wire), then the service,
 * which prints its final accounting. Exit code 0 when both balance.
 */
import { fork } from "node:child_process"
import { mkdirSync } from "node:fs"
import { dirname } from "node:path"
import { parseArgs } from "node:util"
import { PgClient } from "@effect/sql-pg"
import { Deferred, Effect, Fiber, Layer, Redacted, Schedule } from "effect"
import type * as SqlClient from "effect/sql/SqlClient"
import { Gateway, Handler, Http, Ingest, Machine, Outbox, Sqlite, Store, Trail } from "../src/index.ts"
import { HARNESS, TOKEN, types } from "./types.ts"

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    seconds: { type: "string" },
    "no-harness": { type: "boolean" },
    db: { type: "string" },
    pg: { type: "string" }
  }
})
const pgUrl = values.pg ?? process.env.CAIRN_PG_URL
const dbFile = values.db ?? process.env.CAIRN_DB ?? ".cairn/cairn.sqlite"
if (pgUrl === undefined) mkdirSync(dirname(dbFile), { recursive: true })
const database: Layer.Layer<SqlClient.SqlClient, unknown> =
  pgUrl !== undefined ? PgClient.layer({ url: Redacted.make(pgUrl) }) : Sqlite.layer({ filename: dbFile })
const port = Number(values.port ?? process.env.CAIRN_PORT ?? 4600)
const seconds = values.seconds === undefined ? undefined : Number(values.seconds)
if (seconds !== undefined && !(seconds > 0)) throw new Error(`invalid --seconds: ${values.seconds}`)

const dropped = (d: Trail.TypeStats["dropped"]) => d.overflow + d.shutdown + d.failed

const program = Effect.gen(function* () {
  const trail = yield* Trail.make({ source: "cairn-service", types: [...types], concurrency: 4 })
  // service-side handlers: every type counted per harness; a watchdog on checkpoints
  const perSource = new Map<string, number>()
  for (const type of types) {
    yield* trail.on(
      type,
      Handler.make("count", (event) =>
        Effect.sync(() => {
          perSource.set(event.source, (perSource.get(event.source) ?? 0) + 1)
        })
      )
    )
  }
  yield* Machine.startWatchdog(trail, { name: "checkpoints", expected: "train.Checkpoint", withinMs: 5_000 })

  // the durable store, and an outbox worker delivering checkpoints to an in-process subscriber
  let worker: Outbox.Worker | undefined
  const store = yield* Store.make({ onDeliveries: () => worker?.wake() })
  const outbox = yield* Outbox.make
  if (!(yield* outbox.subscriptions).some((s) => s.name === "checkpoint-log")) {
    yield* outbox.subscribe({ kind: "subscriber", name: "checkpoint-log", types: ["train.Checkpoint"] })
  }
  let checkpointsDelivered = 0
  worker = yield* Outbox.worker({
    id: "demo-service",
    subscribers: {
      "checkpoint-log": () =>
        Effect.sync(() => {
          checkpointsDelivered++
        })
    }
  })
  const storedBefore = yield* store.count()
  console.log(
    `cairn service: store ${pgUrl !== undefined ? "Postgres" : `SQLite ${dbFile}`} (${storedBefore} events already there)`
  )
  const ingest = Ingest.make({ trail, store })
  const gateway = yield* Gateway.make({
    ingest,
    port,
    tokens: { [HARNESS]: TOKEN },
    http: Http.routes({ ingest, trail, tokens: { [HARNESS]: TOKEN } })
  })
  console.log(`cairn service: WebSocket ${gateway.url}`)
  console.log(
    `cairn service: HTTP ${gateway.httpUrl} (/healthz, /metrics, /api/v1/harness-events, /event/log, /analytics)`
  )

  // one summary line every 2 s
  let lastTotal = 0
  let lastAt = Date.now()
  const summary = Effect.sync(() => {
    const stats = trail.statsUnsafe()
    const now = Date.now()
    const total = stats.totals.accepted
    const rate = Math.round(((total - lastTotal) * 1000) / Math.max(1, now - lastAt))
    lastTotal = total
    lastAt = now
    const perType = Object.values(stats.types)
      .filter((t) => t.accepted > 0)
      .map((t) => `${t.type} ${t.accepted}`)
      .join(", ")
    console.log(
      `service: ${gateway.sessions().length} session(s), ${rate} events/s, ${total} events (${perType || "none yet"}), ${checkpointsDelivered} checkpoints delivered`
    )
  })
  const ticker = yield* Effect.forkChild(Effect.repeat(summary, Schedule.spaced("2 seconds")))

  // the demo harness, as a child process
  const done = yield* Deferred.make<number>()
  if (values["no-harness"] !== true) {
    const args = ["--url", gateway.url]
    if (seconds !== undefined) args.push("--seconds", String(seconds))
    else args.push("--seconds", String(365 * 24 * 3600))
    const harness = fork(new URL("./harness.ts", import.meta.url), args, { stdio: "inherit" })
    harness.once("exit", (code) => Deferred.doneUnsafe(done, Effect.succeed(code ?? 1)))
    const stop = () => harness.kill("SIGTERM")
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
  } else {
    const stop = () => Deferred.doneUnsafe(done, Effect.succeed(0))
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
    if (seconds !== undefined) setTimeout(stop, seconds * 1000)
  }
  const harnessCode = yield* Deferred.await(done)

  yield* Fiber.interrupt(ticker)
  yield* summary
  console.log("service: shutting down...")
  yield* gateway.shutdown
  const stats = yield* trail.shutdown
  let ok = harnessCode === 0
  for (const t of Object.values(stats.types)) {
    const balanced = t.accepted === t.processed + t.queued + t.inFlight + dropped(t.dropped) + t.deadLettered
    ok &&= balanced
    console.log(
      `service ${t.type}: ${t.accepted} accepted, ${t.processed} processed, ${dropped(t.dropped)} dropped, ${t.deadLettered} dead-lettered, ${t.rejected.invalid} invalid${balanced ? "" : " NOT BALANCED"}`
    )
  }
  const i = ingest.stats()
  console.log(
    `service ingest: ${i.batches} batches, ${i.accepted} accepted, ${i.duplicate} duplicates, ${i.invalid} invalid, ${i.unknownType} unknown type`
  )
  for (const [source, n] of perSource) console.log(`service: ${n} events handled from ${source}`)
  // every accepted event is in the store, once
  const stored = (yield* store.count()) - storedBefore
  const storeOk = stored === i.accepted
  ok &&= storeOk
  console.log(`service store: ${stored} events committed this run${storeOk ? "" : ` NOT the ${i.accepted} accepted`}`)
  // the outbox delivers what is due before the worker stops
  for (let waited = 0; waited < 3_000 && (yield* outbox.counts).pending > 0; waited += 50) yield* Effect.sleep(50)
  const counts = yield* outbox.counts
  console.log(
    `service outbox: ${counts.delivered} delivered, ${counts.pending} pending, ${counts.delivering} delivering, ${counts.dead} dead (${checkpointsDelivered} this run)`
  )
  console.log(ok ? "service: every event accounted for" : "service: accounting FAILED")
  return ok
})

const ok = await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Layer.orDie(database))))
process.exitCode = ok ? 0 : 1
