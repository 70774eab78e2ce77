/**
 * Demo harness: a simulated training job records events on a trail for a few seconds,
 * shows live counters, then shuts down and checks the accounting of every type.
 *
 *   node demo/trail-demo.ts [--seconds N]     (or CAIRN_DEMO_SECONDS=N)
 *
 * Exit code 0 when `accepted = processed + queued + inFlight + dropped + deadLettered`
 * holds for every type, 1 otherwise. Ctrl-C stops early (a second Ctrl-C exits at once).
 */
import { setTimeout as sleep } from "node:timers/promises"
import { parseArgs } from "node:util"
import { Effect, Schedule, Schema } from "effect"
import { type Batch, EventType, Handler, Trail } from "../src/index.ts"

// --- Options ----------------------------------------------------------------------

const { values } = parseArgs({ options: { seconds: { type: "string" } } })
const seconds = Number(values.seconds ?? process.env.CAIRN_DEMO_SECONDS ?? 3)
if (!(seconds > 0)) throw new Error(`invalid duration: ${values.seconds ?? process.env.CAIRN_DEMO_SECONDS}`)

// --- Event types -------------------------------------------------------------------

const StepFinished = EventType.make(
  "train.StepFinished",
  1,
  Schema.Struct({ step: Schema.Number, loss: Schema.Number }),
  { delivery: "droppable", mailbox: { capacity: 64, overflow: "dropOldest" }, batch: { maxSize: 16, lingerMs: 5 } }
)
// a declared handler: it gets every checkpoint first
let lastCheckpoint = 0
const Checkpoint = EventType.make("train.Checkpoint", 1, Schema.Struct({ step: Schema.Number, path: Schema.String }), {
  delivery: "must",
  retry: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 3 })),
  handlers: [
    Handler.make<{ step: number; path: string }>("remember", (event) =>
      Effect.sync(() => {
        lastCheckpoint = event.data.step
      })
    )
  ]
})
const Metric = EventType.make("train.Metric", 2, Schema.Struct({ name: Schema.String, value: Schema.Number }), {
  delivery: "droppable",
  mailbox: { capacity: 256 }
})
const Log = EventType.make("job.Log", 1, Schema.Struct({ level: Schema.String, message: Schema.String }), {
  delivery: "must",
  priority: 5,
  batch: { lingerMs: 0 }
})

// --- Processing functions: simulated work, and a flaky checkpoint store -------------

const work = (ms: number) => (_batch: Batch.Batch) => Effect.sleep(`${ms} millis`)

let checkpointAttempts = 0
let checkpointFailures = 0
const storeCheckpoints = (batch: Batch.Batch<{ step: number; path: string }>) =>
  Effect.suspend(() => {
    checkpointAttempts++
    if (checkpointAttempts % 7 === 0) {
      checkpointFailures++
      return Effect.fail(new Error(`checkpoint store busy (${batch.size} events)`))
    }
    return Effect.sleep("3 millis")
  })

const trail = await Trail.start({
  source: "demo-harness",
  types: [Trail.route(StepFinished, work(4)), Trail.route(Checkpoint, storeCheckpoints), Metric, Log],
  process: work(2)
})

// a handler registered by name that fails now and then: its supervisor resumes (the
// failed event is dropped, counted), the other handlers and the type never notice
let alerts = 0
trail.on(
  "train.Metric",
  Handler.make<{ name: string; value: number }>(
    "alert",
    (event) =>
      event.data.value > 0.99
        ? Effect.fail(new Error(`metric ${event.data.name} out of range`))
        : Effect.sync(() => alerts++),
    { retry: Schedule.recurs(1) }
  )
)
// by name, the data is validated first: a typo is a clear error, not a lost event
try {
  trail.log("train.Chekpoint", { step: 0, path: "/nowhere" })
} catch (error) {
  console.log(`by name: ${(error as Error).message}`)
}

// --- Ctrl-C -------------------------------------------------------------------------

let stopping = false
const onSigint = () => {
  if (stopping) process.exit(130)
  stopping = true
}
process.on("SIGINT", onSigint)

// --- Live progress ------------------------------------------------------------------

const short = (key: string) => key.slice(key.indexOf(".") + 1)
const dropped = (d: Trail.TypeStats["dropped"]) => d.overflow + d.shutdown + d.failed
const progressLine = (): string =>
  Object.values(trail.stats().types)
    .map((t) => `${short(t.type)} ${t.accepted}/${t.processed}/${t.queued}/${dropped(t.dropped)}`)
    .join("  ")

const tty = process.stdout.isTTY === true
let lastPrinted = 0
const progress = setInterval(() => {
  const now = Date.now()
  if (tty) process.stdout.write(`\r\x1b[K${progressLine()}`)
  else if (now - lastPrinted >= 1000) {
    lastPrinted = now
    console.log(progressLine())
  }
}, 250)

// --- Producer -----------------------------------------------------------------------

console.log(`cairn demo: producing for ${seconds}s (accepted/processed/queued/dropped per type)`)
const deadline = Date.now() + seconds * 1000
let step = 0
let burst = 0
while (!stopping && Date.now() < deadline) {
  burst++
  for (let i = 0; i < 50; i++) {
    step++
    trail.log(StepFinished, { step, loss: 1 / Math.sqrt(step) })
  }
  for (const name of ["lr", "grad_norm", "throughput"]) trail.log(Metric, { name, value: Math.random() })
  if (burst % 10 === 0) trail.log(Checkpoint, { step, path: `/ckpt/step-${step}.pt` })
  if (burst % 5 === 0) trail.log("job.Log", { level: "info", message: `burst ${burst} done at step ${step}` })
  await sleep(10)
}

// --- Shutdown and accounting --------------------------------------------------------

clearInterval(progress)
if (tty) process.stdout.write(`\r\x1b[K${progressLine()}\n`)
console.log(stopping ? "interrupted: flushing..." : "done producing: flushing...")
await trail.flush()
const stats = await trail.dispose()
process.off("SIGINT", onSigint)

const rows: Record<string, Record<string, number | string>> = {}
let allHold = true
const balanced = (t: Trail.TypeStats | Trail.HandlerStats) =>
  t.accepted === t.processed + t.queued + t.inFlight + dropped(t.dropped) + t.deadLettered
for (const t of Object.values(stats.types)) {
  const holds = balanced(t)
  allHold &&= holds
  for (const h of Object.values(t.handlers)) {
    allHold &&= balanced(h)
    console.log(
      `handler ${t.type}/${h.handler}: ${h.accepted} accepted, ${h.processed} handled, ${dropped(h.dropped)} dropped, ${h.deadLettered} dead-lettered, ${h.failures} failed attempts${balanced(h) ? "" : " (NOT balanced)"}`
    )
  }
  rows[t.type] = {
    delivery: t.delivery,
    accepted: t.accepted,
    processed: t.processed,
    queued: t.queued,
    inFlight: t.inFlight,
    "dropped overflow": t.dropped.overflow,
    "dropped shutdown": t.dropped.shutdown,
    "dropped failed": t.dropped.failed,
    deadLettered: t.deadLettered,
    refused: t.refused.full + t.refused.closed,
    balanced: holds ? "yes" : "NO"
  }
}
console.table(rows)
console.log(`checkpoint batches: ${checkpointAttempts} attempts, ${checkpointFailures} failed and retried`)
console.log(`dead letters: ${stats.deadLetters}; last checkpoint seen by its handler: step ${lastCheckpoint}`)
console.log(
  allHold
    ? "accepted = processed + queued + inFlight + dropped + deadLettered holds for every type"
    : "accepted = processed + queued + inFlight + dropped + deadLettered does NOT hold for every type"
)
process.exitCode = allHold ? 0 : 1
