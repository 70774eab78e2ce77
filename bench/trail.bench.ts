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
 * Producers log in chunks and yield to the event loop between chunks, as a real
 * program does; throughput is measured from the first log to the end of the flush.
 */
import { Effect, Queue, Schema } from "effect"
import { Mailbox } from "../src/Mailbox.ts"
import { Packr } from "msgpackr"
import { type Batch, EventType, Trail } from "../src/index.ts"
import { bestOf, type Case, collect, makeCase, printResult, summarize, yieldMacrotask } from "./lib.ts"

const quick = process.env.CAIRN_BENCH_QUICK === "1"
const TOTAL = quick ? 200_000 : 2_000_000
const CHUNK = 8 * 512
const ROUNDS = quick ? 2 : 7

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
  const N = CHUNK
  const reps = Math.floor(TOTAL / N)
  const ours = await bestOf(ROUNDS, async () => {
    let ns = 0
    for (let r = 0; r < reps; r++) {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N; i++) trail.log(One, data)
      ns += Number(process.hrtime.bigint() - t0)
      await trail.flush()
    }
    return (reps * N * 1e9) / ns
  })
  await trail.dispose()
  const sink: Array<unknown> = []
  const baseline = await bestOf(ROUNDS, () => {
    let ns = 0
    for (let r = 0; r < reps; r++) {
      const t0 = process.hrtime.bigint()
      for (let i = 0; i < N; i++) sink.push(data)
      ns += Number(process.hrtime.bigint() - t0)
      sink.length = 0
    }
    return (reps * N * 1e9) / ns
  })
  return makeCase("log (calls/s) vs array push", ours, baseline, {
    ns_per_log: Number((1e9 / ours).toFixed(2)),
    ns_per_push: Number((1e9 / baseline).toFixed(2))
  })
}

// ---- mailbox vs Effect's Queue --------------------------------------------------------
// Why the mailbox is ours: offer + batch take, both synchronous, as the trail uses them.
const mailboxVsQueue = async (): Promise<Case> => {
  const N = CHUNK
  const reps = Math.floor(TOTAL / N)
  const stamp = Date.now()
  const mailbox = new Mailbox<unknown>(N * 2, "backpressure", 512)
  const ours = await bestOf(ROUNDS, () => {
    const t0 = process.hrtime.bigint()
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < N; i++) mailbox.offer(data, stamp)
      for (let taken = mailbox.take(512); taken !== undefined; taken = mailbox.take(512)) {
        mailbox.settle(taken.segment, "processed")
      }
    }
    return (reps * N * 1e9) / Number(process.hrtime.bigint() - t0)
  })
  const queue = Effect.runSync(Queue.bounded<unknown>(N * 2))
  const baseline = await bestOf(ROUNDS, () => {
    const t0 = process.hrtime.bigint()
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < N; i++) Queue.offerUnsafe(queue, data)
      // batches of 512 taken synchronously (Queue has no synchronous batch take)
      let batch: Array<unknown> = []
      for (let exit = Queue.takeUnsafe(queue); exit !== undefined; exit = Queue.takeUnsafe(queue)) {
        if (exit._tag === "Success") batch.push(exit.value)
        if (batch.length === 512) batch = []
      }
    }
    return (reps * N * 1e9) / Number(process.hrtime.bigint() - t0)
  })
  return makeCase("mailbox offer+take vs Effect Queue offerUnsafe+take", ours, baseline)
}

// ---- throughput -------------------------------------------------------------------
interface Run {
  readonly rate: number
  readonly latencies: Array<number>
}

/**
 * A trail of `types` types, kept across rounds as a real program keeps its trail (a
 * new trail per round would measure the JIT warming up new closures); `run()` logs
 * TOTAL events round-robin and returns events/s from the first log to the end of
 * the flush. `work` runs per batch.
 */
const trailRunner = async (types: ReadonlyArray<EventType.Any>, work: (batch: Batch.Batch) => void) => {
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
  const run = async (): Promise<Run> => {
    latencies = []
    const t0 = performance.now()
    let logged = 0
    let k = 0
    while (logged < TOTAL) {
      chunkStart = performance.now()
      for (let i = 0; i < CHUNK; i++) {
        trail.log(types[k]!, data)
        if (++k === types.length) k = 0
      }
      logged += CHUNK
      await yieldMacrotask()
    }
    await trail.flush()
    return { rate: (logged * 1000) / (performance.now() - t0), latencies }
  }
  return { run, dispose: () => trail.dispose() }
}

/** Best round of a trail runner, then disposes the trail. */
const bestTrail = async (types: ReadonlyArray<EventType.Any>, work: (batch: Batch.Batch) => void) => {
  const runner = await trailRunner(types, work)
  const result = await best(ROUNDS, runner.run)
  const stats = await runner.dispose()
  if (stats.totals.processed !== stats.totals.accepted) throw new Error("bench: not every event was processed")
  return result
}

/** The raw baseline: an array mailbox drained in batches of 512 by a consumer task. */
const arrayRun = async (work: (events: ReadonlyArray<unknown>) => void): Promise<Run> => {
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

const best = async (rounds: number, f: () => Promise<Run>): Promise<Run> => {
  await f()
  let top: Run | undefined
  for (let i = 0; i < rounds; i++) {
    collect()
    const r = await f()
    if (top === undefined || r.rate > top.rate) top = r
  }
  return top!
}

const noWork = (_: unknown) => {}

const throughput = async (): Promise<Case> => {
  const ours = await bestTrail([One], noWork)
  const base = await best(ROUNDS, () => arrayRun(noWork))
  return makeCase("throughput 1 type, batch 512, no-op vs array mailbox", ours.rate, base.rate, {
    latency_ms: summarize(ours.latencies),
    baseline_latency_ms: summarize(base.latencies)
  })
}

const encode = async (): Promise<Case> => {
  const ourPackr = new Packr({ useRecords: false })
  const basePackr = new Packr({ useRecords: false })
  let bytes = 0
  // Ours encodes what identifies each event too: one type per batch, the id prefix and
  // first sequence number (ids are derived from them), the times and the data, as columns.
  const ourWork = (batch: Batch.Batch) => {
    bytes += ourPackr.pack({
      type: batch.key,
      node: batch.idNode,
      seq: batch.firstSeq,
      at: batch.happenedAt,
      data: batch.data
    }).length
  }
  const baseWork = (events: ReadonlyArray<unknown>) => {
    bytes += basePackr.pack(events).length
  }
  const ours = await bestTrail([One], ourWork)
  const base = await best(ROUNDS, () => arrayRun(baseWork))
  return makeCase("encode msgpackr per batch vs array + msgpackr", ours.rate, base.rate, {
    latency_ms: summarize(ours.latencies),
    baseline_latency_ms: summarize(base.latencies),
    note: "ours packs type, id prefix, first seq, times and data; the baseline packs data only"
  })
}

const manyTypes = async (): Promise<Case> => {
  const types = Array.from({ length: 1000 }, (_, i) => makeType(i + 1))
  const ours = await bestTrail(types, noWork)
  const one = await bestTrail([One], noWork)
  return makeCase("1000 types round-robin vs 1 type (both trail)", ours.rate, one.rate, {
    latency_ms: summarize(ours.latencies),
    baseline_latency_ms: summarize(one.latencies)
  })
}

const cases: Array<Case> = []
cases.push(await logCost())
cases.push(await mailboxVsQueue())
cases.push(await throughput())
cases.push(await encode())
cases.push(await manyTypes())
printResult("trail", cases)
