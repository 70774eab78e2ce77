/**
 * Demo harness: a simulated training job that records events of several types on a
 * trail whose processing sends them to the telemetry service over the wire.
 *
 *   node demo/harness.ts --url ws://127.0.0.1:4600/v1/stream [--seconds N]
 *
 * It prints a live progress line (accepted/processed(acked)/queued/dropped per type)
 * and, at the end, its accounting and the transport's counters. Exit code 0 when the
 * accounting identity holds for every type and no `must` event was lost, 1 otherwise.
 * SIGINT/SIGTERM stop it early, gracefully.
 */
import { setTimeout as sleep } from "node:timers/promises"
import { parseArgs } from "node:util"
import { Effect, Exit, Scope } from "effect"
import { Trail, Transport } from "../src/index.ts"
import { Checkpoint, HARNESS, Log, Metric, StepFinished, TOKEN, types } from "./types.ts"

const { values } = parseArgs({ options: { url: { type: "string" }, seconds: { type: "string" } } })
const url = values.url ?? process.env.CAIRN_URL ?? "ws://127.0.0.1:4600/v1/stream"
const seconds = Number(values.seconds ?? process.env.CAIRN_DEMO_SECONDS ?? 10)
if (!(seconds > 0)) throw new Error(`invalid duration: ${values.seconds}`)

// the first SIGINT or SIGTERM stops gracefully; a second SIGINT (Ctrl-C again) exits at once.
// Ctrl-C in a terminal reaches this process and the service, which also sends SIGTERM:
// that one must not count as the second.
let stopping = false
let interrupts = 0
process.on("SIGINT", () => {
  if (++interrupts > 1) process.exit(130)
  stopping = true
})
process.on("SIGTERM", () => {
  stopping = true
})

// the transport in a scope of its own, closed after the trail (which delivers its must
// events through the wire first)
const scope = await Effect.runPromise(Scope.make())
const transport = await Effect.runPromise(
  Transport.make({ url, harness: HARNESS, token: TOKEN, client: { name: "cairn-demo" } }).pipe(Scope.provide(scope))
)
const trail = await Trail.start({
  source: HARNESS,
  types: [...types],
  process: transport.process,
  concurrency: 8,
  shutdownTimeoutMs: 5_000
})

const short = (key: string) => key.slice(key.indexOf(".") + 1)
const dropped = (d: Trail.TypeStats["dropped"]) => d.overflow + d.shutdown + d.failed
const line = (): string => {
  const t = transport.stats()
  const perType = Object.values(trail.stats().types)
    .map((s) => `${short(s.type)} ${s.accepted}/${s.processed}/${s.queued}/${dropped(s.dropped)}`)
    .join("  ")
  return `harness [${t.status}] ${perType}  (acked ${t.acked}, resent ${t.resent}, reconnects ${t.reconnects})`
}
const tty = process.stdout.isTTY === true
let lastPrinted = 0
const progress = setInterval(() => {
  const now = Date.now()
  if (tty) process.stdout.write(`\r\x1b[K${line()}`)
  else if (now - lastPrinted >= 2_000) {
    lastPrinted = now
    console.log(line())
  }
}, 250)

console.log(`harness ${HARNESS}: streaming to ${url} for ${seconds}s (accepted/acked/queued/dropped per type)`)
const deadline = Date.now() + seconds * 1000
let step = 0
let burst = 0
while (!stopping && Date.now() < deadline) {
  burst++
  for (let i = 0; i < 200; i++) {
    step++
    trail.log(StepFinished, { step, loss: 1 / Math.sqrt(step) })
  }
  for (const name of ["lr", "grad_norm", "throughput"]) trail.log(Metric, { name, value: Math.random() })
  if (burst % 10 === 0) trail.log(Checkpoint, { step, path: `/ckpt/step-${step}.pt` })
  if (burst % 5 === 0) trail.log(Log, { level: "info", message: `burst ${burst} done at step ${step}` })
  await sleep(10)
}

clearInterval(progress)
if (tty) process.stdout.write(`\r\x1b[K${line()}\n`)
console.log(
  stopping ? "harness: interrupted, flushing through the wire..." : "harness: done, flushing through the wire..."
)
await trail.flush()
const stats = await trail.dispose()
await Effect.runPromise(Scope.close(scope, Exit.void))

let ok = true
for (const t of Object.values(stats.types)) {
  const balanced = t.accepted === t.processed + t.queued + t.inFlight + dropped(t.dropped) + t.deadLettered
  ok &&= balanced && (t.delivery !== "must" || t.deadLettered === 0)
  console.log(
    `harness ${t.type} (${t.delivery}): ${t.accepted} accepted, ${t.processed} acked, ${dropped(t.dropped)} dropped, ${t.deadLettered} dead-lettered${balanced ? "" : " NOT BALANCED"}`
  )
}
const t = transport.stats()
console.log(
  `harness transport: ${t.sent} batches sent, ${t.acked} acked, ${t.resent} resent, ${t.reconnects} reconnects`
)
console.log(ok ? "harness: every event accounted for, no must event lost" : "harness: accounting FAILED")
process.exitCode = ok ? 0 : 1
