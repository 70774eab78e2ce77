/**
 * The gateway killed (SIGKILL) and restarted mid-stream, in a child process: the
 * harness reconnects and resends every unacked batch; no `must` event is lost and none
 * is recorded twice (the gateway's store keeps the ids it recorded in a file).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import { setTimeout as sleep } from "node:timers/promises"
import { afterEach, assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope, Schedule } from "effect"
import type { Batch } from "../src/Batch.ts"
import { Trail, Transport } from "../src/index.ts"
import { kill, killAll, start } from "./fixtures/children.ts"
import { HARNESS, Step, TOKEN } from "./fixtures/kill-types.ts"

afterEach(killAll)

type Kind = "ids" | "sqlite"

const startGateway = async (file: string, port: number, kind: Kind) => {
  const { child, message } = await start<{ port: number }>(
    new URL("./fixtures/gateway-child.ts", import.meta.url),
    [file, String(port), kind],
    "gateway"
  )
  return { child, port: message.port }
}

/** Recorded ids: in the order the gateways wrote them, or every row of the events table. */
const recorded = (file: string, kind: Kind): Array<string> => {
  if (kind === "ids") {
    return readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => l.split(" ")[0]!)
  }
  const db = new DatabaseSync(file, { readOnly: true })
  try {
    return (db.prepare("SELECT id FROM cairn_events").all() as Array<{ id: string }>).map((r) => r.id)
  } finally {
    db.close()
  }
}

describe("gateway killed mid-stream", () => {
  const kinds: ReadonlyArray<readonly [Kind, string]> = [
    ["ids", "a store that appends ids to a file"],
    ["sqlite", "the SQLite store"]
  ]
  for (const [kind, what] of kinds)
    it(`twice, with ${what}: every must event is recorded exactly once, the harness's accounting is exact`, async () => {
      const dir = mkdtempSync(join(tmpdir(), "cairn-kill-"))
      const file = join(dir, kind === "ids" ? "ids" : "cairn.sqlite")
      try {
        let gateway = await startGateway(file, 0, kind)
        const port = gateway.port
        const scope = await Effect.runPromise(Scope.make())
        const transport = await Effect.runPromise(
          Transport.make({
            url: `ws://127.0.0.1:${port}/v1/stream`,
            harness: HARNESS,
            token: TOKEN,
            backoff: Schedule.spaced("20 millis")
          }).pipe(Scope.provide(scope))
        )
        // every id the harness hands to the wire
        const sent = new Set<string>()
        const process = (batch: Batch) => {
          for (let i = 0; i < batch.size; i++) sent.add(batch.id(i))
          return transport.process(batch)
        }
        const trail = await Trail.start({
          source: HARNESS,
          types: [Step],
          process,
          concurrency: 8,
          shutdownTimeoutMs: 30_000
        })
        const total = 6_000
        let sinceStart = 0
        const ackedBeyond = async (n: number) => {
          for (let waited = 0; transport.stats().acked <= n; waited += 5) {
            if (waited > 20_000) assert.fail(`no batch acked by the gateway in 20 s (${n} acked before)`)
            await sleep(5)
          }
        }
        for (let n = 0; n < total; n++) {
          trail.log(Step, { n })
          if (n % 200 === 199) await sleep(2)
          // kill the gateway twice while batches are in flight, restart it on the same port and file
          // (once the current gateway has acked something: the harness is connected to it)
          if (n === 2_000 || n === 4_000) {
            await ackedBeyond(sinceStart)
            await kill(gateway.child)
            gateway = await startGateway(file, port, kind)
            sinceStart = transport.stats().acked
          }
        }
        await trail.flush()
        const stats = await trail.dispose()
        await Effect.runPromise(Scope.close(scope, Exit.void))
        const t = stats.types["kill.Step@1"]!
        assert.strictEqual(t.accepted, total)
        assert.strictEqual(t.processed, total)
        assert.strictEqual(t.deadLettered, 0)
        assert.isAtLeast(transport.stats().reconnects, 2)
        await kill(gateway.child)
        const ids = recorded(file, kind)
        // none recorded twice…
        assert.strictEqual(new Set(ids).size, ids.length)
        // …and every event the harness logged is recorded
        assert.strictEqual(sent.size, total)
        const stored = new Set(ids)
        const missing = [...sent].filter((id) => !stored.has(id))
        assert.deepStrictEqual(missing, [], "events never recorded")
        assert.strictEqual(ids.length, total)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }, 60_000)
})
