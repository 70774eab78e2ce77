/**
 * Small helpers shared by the benchmarks: timing, percentiles and the JSON result line.
 */

export interface Case {
  readonly name: string
  readonly events_per_s: number
  readonly baseline_events_per_s: number
  readonly ratio: number
  readonly [extra: string]: unknown
}

/** Builds a case; `ratio` is ours over the baseline's (higher is better). */
export const makeCase = (name: string, ours: number, baseline: number, extra: Record<string, unknown> = {}): Case => ({
  name,
  events_per_s: Math.round(ours),
  baseline_events_per_s: Math.round(baseline),
  ratio: Number((ours / baseline).toFixed(3)),
  ...extra
})

export const percentile = (sorted: ReadonlyArray<number>, p: number): number => {
  if (sorted.length === 0) return Number.NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]!
}

export const summarize = (samples: Array<number>): { p50: number; p99: number; max: number } => {
  const s = samples.slice().sort((a, b) => a - b)
  const round = (n: number) => Number(n.toFixed(3))
  return { p50: round(percentile(s, 50)), p99: round(percentile(s, 99)), max: round(s[s.length - 1] ?? Number.NaN) }
}

/**
 * Collects garbage between measurements when node runs with `--expose-gc` (npm run bench
 * does), then waits for the collector's background work (sweeping the freed pages runs
 * on helper threads after a full collection) so that it does not share the machine's
 * cores with the next round: on two cores it slowed the first milliseconds of a round
 * by a third, more for the side with the larger heap.
 */
export const collect = async (): Promise<void> => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return
  gc()
  await new Promise((resolve) => setTimeout(resolve, 30))
}

export const yieldMacrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

export const printResult = (bench: string, cases: ReadonlyArray<Case>): void => {
  const table = cases.map((c) => ({
    case: c.name,
    "ours ev/s": c.events_per_s.toLocaleString("en-US"),
    "baseline ev/s": c.baseline_events_per_s.toLocaleString("en-US"),
    ratio: c.ratio,
    "median ratio": c.ratio_median
  }))
  console.table(table)
  console.log(JSON.stringify({ bench, cases }))
}

/** One measured round: events (or calls) per second, and per-batch latencies if any. */
export interface Round {
  readonly rate: number
  readonly latencies?: Array<number>
}

const ROUNDS = process.env.CAIRN_BENCH_QUICK === "1" ? 3 : 9

/**
 * Alternates rounds of ours and the baseline after `warmup` rounds of each (default
 * one), with a garbage collection before each round; reports the best round of each
 * side and the median of the per-round ratios.
 */
export const compare = async (
  name: string,
  ours: () => Promise<Round> | Round,
  baseline: () => Promise<Round> | Round,
  extra: (best: { ours: Round; baseline: Round }) => Record<string, unknown> = () => ({}),
  warmup = 1
): Promise<Case> => {
  for (let i = 0; i < warmup; i++) {
    await ours()
    await baseline()
  }
  let bestOurs: Round | undefined
  let bestBase: Round | undefined
  const ratios: Array<number> = []
  for (let i = 0; i < ROUNDS; i++) {
    await collect()
    const a = await ours()
    await collect()
    const b = await baseline()
    ratios.push(a.rate / b.rate)
    if (process.env.CAIRN_BENCH_ROUNDS === "1") {
      console.error(`${name}: ours ${(a.rate / 1e6).toFixed(2)}M/s, baseline ${(b.rate / 1e6).toFixed(2)}M/s`)
    }
    if (bestOurs === undefined || a.rate > bestOurs.rate) bestOurs = a
    if (bestBase === undefined || b.rate > bestBase.rate) bestBase = b
  }
  ratios.sort((x, y) => x - y)
  const median = ratios[Math.floor(ratios.length / 2)]!
  return makeCase(name, bestOurs!.rate, bestBase!.rate, {
    ratio_median: Number(median.toFixed(3)),
    ...extra({ ours: bestOurs!, baseline: bestBase! })
  })
}

/** Latency percentiles of the best rounds, for `compare`'s `extra`. */
export const withLatency = (best: { ours: Round; baseline: Round }) => ({
  latency_ms: summarize(best.ours.latencies ?? []),
  baseline_latency_ms: summarize(best.baseline.latencies ?? [])
})
