/**
 * Trail benchmark: the cost of `log`, and events/s through the trail, each next to a
 * raw baseline measured in the same run.
 *
 * - log: `Trail.logUnsafe` per call vs `Array.prototype.push` of the same data.
 * - mailbox: our Mailbox offer + batch take vs Effect's Queue (offerUnsafe + takeUnsafe).
 * - throughput: 1 type, batches of 512, no-op processor vs an array mailbox drained
 *   in batches of 512.
 * - encode: the same with a msgpackr encode per batch vs array + msgpackr.
 * - 1000 types logged round-robin vs 1 type (both through the trail).
 *
 * Producers log in chunks of 8 batches and yield to the event loop between chunks, as
 * a real program does; throughput runs from the first log to the end of the flush.
 * Rounds of ours and of the baseline alternate (so both see the same machine), with a
 * garbage collection before each; a case reports the best round of each side and the
 * median of the per-round ratios.
 */
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Effect, Queue, Schema } from "effect"
import { Packr } from "msgpackr"
import { type Batch, EventType, Trail } from "../src/index.ts"
import { Mailbox } from "../src/Mailbox.ts"
import { type Case, compare, printResult, type Round, withLatency, yieldMacrotask } from "./lib.ts"

const quick = process.env.CAIRN_BENCH_QUICK === "1"
const TOTAL = quick ? 200_000 : 2_000_000
const CHUNK = 8 * 512
/**
 * Warm-up rounds of each side before measuring: a trail of a thousand types reaches
 * its steady speed only after two or three rounds (its code optimized, its heap
 * grown), and its first rounds ran at 60 % of the later ones.
 */
const WARMUP = quick ? 1 : 3

const Data = Schema.Struct({ step: Schema.Number, loss: Schema.Number, tag: Schema.String })
const data = { step: 1, loss: 0.25, tag: "train" }

const makeType = (i: number) =>
  EventType.make(`bench.Event${i}`, 1, Data, {
    batch: { maxSize: 512 },
    mailbox: { capacity: 1 << 20, overflow: "backpressure" }
  })
const One = makeType(0)

// ---- log vs push -------------------------------------------------------------------
const logCost = async (): Promise<Case> => {
  const trail = await Trail.start({ source: "bench" })
  const reps = Math.floor(TOTAL / CHUNK)
  const sink: Array<unknown> = []
  const result = await compare(
    "log (calls/s) vs array push",
    async () => {
      let ns = 0
      for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < CHUNK; i++) trail.log(One, data)
        ns += Number(process.hrtime.bigint() - t0)
        await trail.flush()
      }
      return { rate: (reps * CHUNK * 1e9) / ns }
    },
    () => {
      let ns = 0
      for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < CHUNK; i++) sink.push(data)
        ns += Number(process.hrtime.bigint() - t0)
        sink.length = 0
      }
      return { rate: (reps * CHUNK * 1e9) / ns }
    },
    (best) => ({
      ns_per_log: Number((1e9 / best.ours.rate).toFixed(2)),
      ns_per_push: Number((1e9 / best.baseline.rate).toFixed(2))
    })
  )
  await trail.dispose()
  return result
}

// ---- mailbox vs Effect's Queue -----------------------------------------------------
// Why the mailbox is ours: offer + batch take, both synchronous, as the trail uses them.
const mailboxVsQueue = (): Promise<Case> => {
  const reps = Math.floor(TOTAL / CHUNK)
  // a trail stamps its mailboxes in milliseconds since it started: small integers. A
  // stamp of Date.now() here (a double) made V8 widen the stamp fields of every
  // mailbox in the process to doubles, boxed, and slowed the trail cases that follow
  const stamp = 1
  const mailbox = new Mailbox<unknown>(CHUNK * 2, "backpressure", 512)
  const queue = Effect.runSync(Queue.bounded<unknown>(CHUNK * 2))
  return compare(
    "mailbox offer+take vs Effect Queue offerUnsafe+take",
    () => {
      const t0 = process.hrtime.bigint()
      for (let r = 0; r < reps; r++) {
        for (let i = 0; i < CHUNK; i++) mailbox.offer(data, stamp)
        for (let taken = mailbox.take(512); taken !== undefined; taken = mailbox.take(512)) {
          mailbox.settle(taken.segment, "processed")
        }
      }
      return { rate: (reps * CHUNK * 1e9) / Number(process.hrtime.bigint() - t0) }
    },
    () => {
      const t0 = process.hrtime.bigint()
      for (let r = 0; r < reps; r++) {
        for (let i = 0; i < CHUNK; i++) Queue.offerUnsafe(queue, data)
        // batches of 512 taken synchronously (Queue has no synchronous batch take)
        let batch: Array<unknown> = []
        for (let exit = Queue.takeUnsafe(queue); exit !== undefined; exit = Queue.takeUnsafe(queue)) {
          if (exit._tag === "Success") batch.push(exit.value)
          if (batch.length === 512) batch = []
        }
      }
      return { rate: (reps * CHUNK * 1e9) / Number(process.hrtime.bigint() - t0) }
    }
  )
}

// ---- throughput -------------------------------------------------------------------

/**
 * A trail of `types` types, kept across rounds as a real program keeps its trail (a
 * new trail per round would measure the JIT warming up new closures); `run()` logs
 * TOTAL events (round-robin over the types if `roundRobin`) and returns events/s from
 * the first log to the end of the flush. `work` runs per batch.
 */
const trailRunner = async (
  types: ReadonlyArray<EventType.Any>,
  work: (batch: Batch.Batch) => void,
  roundRobin = types.length > 1
) => {
  let latencies: Array<number> = []
  let chunkStart = 0
  const trail = await Trail.start({
    source: "bench",
    types,
    process: (batch) =>
      Effect.sync(() => {
        work(batch)
        latencies.push(performance.now() - chunkStart)
      })
  })
  const run = async (): Promise<Round> => {
    latencies = []
    const t0 = performance.now()
    let logged = 0
    let k = 0
    // against the array, one type is logged as the array is pushed to, with nothing
    // else per event: the round-robin's bookkeeping cost 2 ns a call, a quarter of
    // `log`, and was charged to ours alone until 2026-12-03. Trail against trail (the
    // 1000-type case), both sides round-robin.
    const only = roundRobin ? undefined : types[0]!
    while (logged < TOTAL) {
      chunkStart = performance.now()
      if (only !== undefined) {
        for (let i = 0; i < CHUNK; i++) trail.log(only, data)
      } else {
        for (let i = 0; i < CHUNK; i++) {
          trail.log(types[k]!, data)
          if (++k === types.length) k = 0
        }
      }
      logged += CHUNK
      await yieldMacrotask()
    }
    await trail.flush()
    return { rate: (logged * 1000) / (performance.now() - t0), latencies }
  }
  const dispose = async () => {
    const stats = await trail.dispose()
    if (stats.totals.processed !== stats.totals.accepted) throw new Error("bench: not every event was processed")
  }
  return { run, dispose }
}

/** The raw baseline: an array mailbox drained in batches of 512 by a consumer task. */
const arrayRun = async (work: (events: ReadonlyArray<unknown>) => void): Promise<Round> => {
  const latencies: Array<number> = []
  let mailbox: Array<unknown> = []
  let chunkStart = 0
  const drain = () => {
    const all = mailbox
    mailbox = []
    for (let i = 0; i < all.length; i += 512) {
      work(all.slice(i, i + 512))
      latencies.push(performance.now() - chunkStart)
    }
  }
  const t0 = performance.now()
  let logged = 0
  while (logged < TOTAL) {
    chunkStart = performance.now()
    for (let i = 0; i < CHUNK; i++) mailbox.push(data)
    logged += CHUNK
    await yieldMacrotask()
    drain()
  }
  drain()
  return { rate: (logged * 1000) / (performance.now() - t0), latencies }
}

const noWork = (_: unknown) => {}

const throughput = async (): Promise<Case> => {
  const ours = await trailRunner([One], noWork)
  const result = await compare(
    "throughput 1 type, batch 512, no-op vs array mailbox",
    ours.run,
    () => arrayRun(noWork),
    withLatency,
    WARMUP
  )
  await ours.dispose()
  return result
}

const encode = async (): Promise<Case> => {
  const ourPackr = new Packr({ useRecords: false })
  const basePackr = new Packr({ useRecords: false })
  let ourBytes = 0
  let ourEvents = 0
  let baseBytes = 0
  let baseEvents = 0
  // Ours encodes what identifies each event too: one type per batch, the id prefix and
  // first sequence number (ids are derived from them), the times and the data, as columns.
  const ourWork = (batch: Batch.Batch) => {
    ourEvents += batch.size
    ourBytes += ourPackr.pack({
      type: batch.key,
      node: batch.idNode,
      seq: batch.firstSeq,
      at: batch.timeBase,
      dt: batch.timeOffsets,
      data: batch.data
    }).length
  }
  const baseWork = (events: ReadonlyArray<unknown>) => {
    baseEvents += events.length
    baseBytes += basePackr.pack(events).length
  }
  const ours = await trailRunner([One], ourWork)
  const result = await compare(
    "encode msgpackr per batch vs array + msgpackr",
    ours.run,
    () => arrayRun(baseWork),
    (best) => ({
      ...withLatency(best),
      bytes_per_event: Number((ourBytes / ourEvents).toFixed(2)),
      baseline_bytes_per_event: Number((baseBytes / baseEvents).toFixed(2)),
      note: "ours packs type, id prefix, first seq, time base and offsets, and data; the baseline packs data only"
    }),
    WARMUP
  )
  await ours.dispose()
  return result
}

const manyTypes = async (): Promise<Case> => {
  const types = Array.from({ length: 1000 }, (_, i) => makeType(i + 1))
  const many = await trailRunner(types, noWork)
  const one = await trailRunner([One], noWork, true)
  const result = await compare("1000 types round-robin vs 1 type (both trail)", many.run, one.run, withLatency, WARMUP)
  await many.dispose()
  await one.dispose()
  return result
}

/**
 * Each case runs in a process of its own (this file again, with `CAIRN_TRAIL_CASE`
 * naming the case): run one after the other in one process, the cases changed each
 * other's numbers through the JIT's feedback and the heap they left behind (the
 * 1000-type case: 0.58-0.62 alone in four processes, 0.39-0.58 after the others).
 * Both sides of a case still share their process, alternating rounds.
 */
const byName: Record<string, () => Promise<Case>> = {
  log: logCost,
  mailbox: mailboxVsQueue,
  throughput,
  encode,
  many: manyTypes
}

const runAlone = (name: string): Promise<Case> =>
  new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, CAIRN_TRAIL_CASE: name },
      execArgv: process.execArgv,
      stdio: ["ignore", "pipe", "inherit", "ipc"]
    })
    child.stdout!.resume()
    child.once("message", (message) => resolve(message as Case))
    child.once("exit", (code) => reject(new Error(`trail bench case ${name} exited with ${code} before reporting`)))
  })

const only = process.env.CAIRN_TRAIL_CASE
if (only !== undefined) {
  const run = byName[only]
  if (run === undefined) throw new Error(`unknown trail bench case ${only}`)
  const result = await run()
  // run by hand (no parent to report to): print it
  if (process.send === undefined) printResult("trail", [result])
  else {
    process.send(result)
    process.disconnect?.()
  }
} else {
  const cases: Array<Case> = []
  for (const name of Object.keys(byName)) cases.push(await runAlone(name))
  printResult("trail", cases)
}
