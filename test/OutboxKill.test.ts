/**
 * An outbox worker killed (SIGKILL) mid-delivery, in a child process, against a real
 * HTTP receiver: after restarts every delivery completes, the receiver sees each
 * idempotency key at least once, and the store shows each delivered once. The first
 * restart has another worker id (it takes the dead worker's claims over when their
 * lease ends); the second the same id (it takes its own claims back at once).
 */
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import { PgClient } from "@effect/sql-pg"
import { afterEach, assert, describe, it } from "@effect/vitest"
import { Effect, ManagedRuntime, Redacted, Schema } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import { Envelope, EventType, Outbox, Store } from "../src/index.ts"
import { kill, killAll, start } from "./fixtures/children.ts"
import { dbLayer } from "./fixtures/db.ts"
import { pgReachable, pgUrl } from "./fixtures/pg.ts"
import { receiver } from "./fixtures/receiver.ts"

const Job = EventType.make("kill.Job", 1, Schema.Struct({ n: Schema.Number }))
const TOTAL = 60
afterEach(killAll)

const startWorker = async (spec: string, id: string) =>
  (await start(new URL("./fixtures/outbox-worker-child.ts", import.meta.url), [spec, id, "1500"], "worker")).child

const scenario = async (spec: string) => {
  const hooks = await receiver(() => ({ status: 200, delayMs: 40 }))
  const runtime = ManagedRuntime.make(dbLayer(spec))
  try {
    const { outbox } = await runtime.runPromise(
      Effect.gen(function* () {
        const store = yield* Store.make()
        const outbox = yield* Outbox.make
        yield* outbox.subscribe({ kind: "webhook", name: "receiver", types: ["kill.Job"], url: hooks.url })
        const events = Array.from({ length: TOTAL }, (_, n) =>
          Envelope.make({
            id: `01KDVDNA00K5X2J9QM${String(n).padStart(8, "0")}`,
            type: "kill.Job@1",
            source: "kill",
            happenedAt: 1_767_225_600_000 + n,
            data: { n }
          })
        )
        yield* store.record("kill.Job@1", events, Job)
        return { outbox }
      })
    )
    const counts = () => runtime.runPromise(outbox.counts)
    const whileDelivering = async (seen: number) => {
      // kill only with a request being answered: mid-delivery
      for (let waited = 0; hooks.received.length < seen || hooks.inFlight() === 0; waited += 2) {
        if (waited > 20_000) assert.fail(`the receiver saw ${hooks.received.length} requests, waiting for ${seen}`)
        await sleep(2)
      }
    }
    let worker = await startWorker(spec, "worker-a")
    await whileDelivering(8)
    await kill(worker)
    worker = await startWorker(spec, "worker-b")
    await whileDelivering(hooks.received.length + 8)
    await kill(worker)
    worker = await startWorker(spec, "worker-b")
    for (let waited = 0; (await counts()).delivered < TOTAL; waited += 20) {
      if (waited > 30_000) assert.fail(`not every delivery completed: ${JSON.stringify(await counts())}`)
      await sleep(20)
    }
    await kill(worker)
    // the receiver saw every key, at least once
    const keys = new Set(hooks.received.map((r) => r.key))
    assert.strictEqual(keys.size, TOTAL)
    // the store: one delivery per event, each delivered
    const rows = await runtime.runPromise(
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ event_id: string; state: string }>`SELECT event_id, state FROM cairn_deliveries`
      })
    )
    assert.strictEqual(rows.length, TOTAL)
    assert.strictEqual(new Set(rows.map((r) => r.event_id)).size, TOTAL)
    assert.isTrue(rows.every((r) => r.state === "delivered"))
    assert.deepStrictEqual(await counts(), { pending: 0, delivering: 0, delivered: TOTAL, dead: 0 })
  } finally {
    await runtime.dispose()
    await hooks.close()
  }
}

const reachable = await pgReachable()

describe("an outbox worker killed mid-delivery", () => {
  it("on SQLite: twice, then every delivery completes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cairn-outbox-kill-"))
    try {
      await scenario(`sqlite:${join(dir, "cairn.sqlite")}`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 90_000)

  if (reachable === true) {
    it("on Postgres: twice, then every delivery completes", async () => {
      const schema = `cairn_kill_${randomBytes(4).toString("hex")}`
      const admin = ManagedRuntime.make(PgClient.layer({ url: Redacted.make(pgUrl) }))
      const exec = (text: string) => admin.runPromise(Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(text)))
      await exec(`CREATE SCHEMA ${schema}`)
      try {
        await scenario(`pg:${schema}`)
      } finally {
        await exec(`DROP SCHEMA ${schema} CASCADE`)
        await admin.dispose()
      }
    }, 90_000)
  } else {
    console.log(`OutboxKill.test.ts: the Postgres case is skipped: no server at ${pgUrl} (${reachable})`)
  }
})
