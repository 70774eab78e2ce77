/**
 * Handlers benchmark: the name-based `log` (resolve + schema decode) and dispatch to
 * handlers, each next to a raw baseline measured in the same run.
 *
 * - name: `logUnsafe("bench.Named", data)` per call vs the same schema's
 *   `decodeUnknownSync` plus `Array.prototype.push`.
 * - handlers: events/s from the first log to the end of the flush through a type with
 *   3 no-op handlers (each its own actor and mailbox) vs an array mailbox drained in
 *   batches of 64 calling the same 3 functions per event.
 */
import { Effect, Schema } from "effect"
import { EventType, Handler, Trail } from "../src/index.ts"
import { type Case, compare, printResult, type Round, withLatency, yieldMacrotask } from "./lib.ts"

const quick = process.env.CAIRN_BENCH_QUICK === "1"
const TOTAL = quick ? 100_000 : 1_000_000
const CHUNK = 8 * 512

const Data = Schema.Struct({ step: Schema.Number, loss: Schema.Number, tag: Schema.String })
const data = { step: 1, loss: 0.25, tag: "train" }

// ---- log by name vs decode + push ----------------------------------------------------
const byName = async (): Promise<Case> => {
  const Named = EventType.make("bench.Named", 1, Data, { mailbox: { capacity: 1 << 20 } })
  const trail = await Trail.start({ source: "bench", types: [Named] })
  const decode = Schema.decodeUnknownSync(Data)
  const sink: Array<unknown> = []
  const reps = Math.floor(TOTAL / CHUNK)
  const result = await compare(
    "log by name (resolve + decode) vs decodeUnknownSync + push",
    async () => {
      let ns = 0
      for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < CHUNK; i++) trail.log("bench.Named", data)
        ns += Number(process.hrtime.bigint() - t0)
        await trail.flush()
      }
      return { rate: (reps * CHUNK * 1e9) / ns }
    },
    () => {
      let ns = 0
      for (let r = 0; r < reps; r++) {
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < CHUNK; i++) sink.push(decode(data))
        ns += Number(process.hrtime.bigint() - t0)
        sink.length = 0
      }
      return { rate: (reps * CHUNK * 1e9) / ns }
    },
    (best) => ({
      ns_per_log: Number((1e9 / best.ours.rate).toFixed(1)),
      ns_per_decode_push: Number((1e9 / best.baseline.rate).toFixed(1))
    })
  )
  await trail.dispose()
  return result
}

// ---- dispatch to 3 handlers vs an array mailbox calling 3 functions ------------------
const handlers = async (): Promise<Case> => {
  const counts = [0, 0, 0]
  let latencies: Array<number> = []
  let chunkStart = 0
  const handle = (k: number) => () =>
    Effect.sync(() => {
      // one latency sample per 64 events of the first handler
      if (k === 0 && (counts[0]! & 63) === 0) latencies.push(performance.now() - chunkStart)
      counts[k]!++
    })
  const T = EventType.make("bench.Handled", 1, Data, {
    mailbox: { capacity: 1 << 20 },
    handlers: [0, 1, 2].map((k) => Handler.make(`h${k}`, handle(k), { mailbox: { capacity: 1 << 16 } }))
  })
  const trail = await Trail.start({ source: "bench", types: [T] })
  const ours = async (): Promise<Round> => {
    latencies = []
    const t0 = performance.now()
    let logged = 0
    while (logged < TOTAL) {
      chunkStart = performance.now()
      for (let i = 0; i < CHUNK; i++) trail.log(T, data)
      logged += CHUNK
      await yieldMacrotask()
    }
    await trail.flush()
    return { rate: (logged * 1000) / (performance.now() - t0), latencies }
  }
  const calls = [0, 1, 2].map((k) => (_: unknown) => {
    if (k === 0 && (counts[0]! & 63) === 0) latencies.push(performance.now() - chunkStart)
    counts[k]!++
  })
  const baseline = async (): Promise<Round> => {
    latencies = []
    let mailbox: Array<unknown> = []
    const drain = () => {
      const all = mailbox
      mailbox = []
      for (let i = 0; i < all.length; i += 64) {
        const batch = all.slice(i, i + 64)
        for (const call of calls) for (const event of batch) call(event)
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
  const result = await compare("3 handlers per event vs array mailbox + 3 calls per event", ours, baseline, withLatency)
  const stats = await trail.dispose()
  const h = stats.types["bench.Handled@1"]!.handlers
  for (const name of ["h0", "h1", "h2"]) {
    if (h[name]!.processed !== stats.types["bench.Handled@1"]!.accepted) {
      throw new Error(`bench: handler ${name} did not handle every event`)
    }
  }
  return result
}

const cases: Array<Case> = []
cases.push(await byName())
cases.push(await handlers())
printResult("handlers", cases)
