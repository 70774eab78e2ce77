/**
 * Metrics read from plain counters: series registered in Effect's registry with read
 * hooks, so that a read gives the value of that moment and the hot paths update
 * nothing but numbers. Shared by the trail's, the handlers' and the gateway's series.
 */
import { type Context, Metric } from "effect"

const noop = () => {}

/** Registers a counter whose value is `read()`. */
export const counterOf = (context: Context.Context<never>, metric: Metric.Counter<number>, read: () => number) =>
  Metric.registerUnsafe(metric, context, {
    get: () => ({ count: read(), incremental: false }),
    update: noop,
    modify: noop
  })

/** Registers a gauge whose value is `read()`. */
export const gaugeOf = (context: Context.Context<never>, metric: Metric.Gauge<number>, read: () => number) =>
  Metric.registerUnsafe(metric, context, { get: () => ({ value: read() }), update: noop, modify: noop })

/** Registers a histogram read from a {@link Histogram}. */
export const histogramOf = (
  context: Context.Context<never>,
  metric: Metric.Metric<number, Metric.HistogramState>,
  histogram: Histogram
) => Metric.registerUnsafe(metric, context, { get: () => histogram.state(), update: noop, modify: noop })

/**
 * A histogram kept as plain numbers, read as a `HistogramState`. Count, sum, min,
 * max and the buckets share one `Float64Array`: an observation (once per batch, for
 * each of a thousand types, say) touches one block of memory, not a field per number.
 */
export class Histogram {
  private readonly bounds: ReadonlyArray<number>
  /** `[count, sum, min, max, bucket 0, …, bucket n]`; the last bucket is past every bound. */
  private readonly cells: Float64Array

  /** @param bounds upper bounds of the buckets; an infinite one is implied (Effect's boundaries end with it) */
  constructor(bounds: ReadonlyArray<number>) {
    this.bounds = bounds.filter(Number.isFinite)
    this.cells = new Float64Array(4 + this.bounds.length + 1)
    this.cells[MIN] = Number.POSITIVE_INFINITY
    this.cells[MAX] = Number.NEGATIVE_INFINITY
  }

  observe(value: number): void {
    const bounds = this.bounds
    const cells = this.cells
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    cells[BUCKETS + i]!++
    cells[COUNT]!++
    cells[SUM]! += value
    if (value < cells[MIN]!) cells[MIN] = value
    if (value > cells[MAX]!) cells[MAX] = value
  }

  state(): Metric.HistogramState {
    const cells = this.cells
    const buckets: Array<[number, number]> = []
    let cumulative = 0
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += cells[BUCKETS + i]!
      buckets.push([this.bounds[i]!, cumulative])
    }
    buckets.push([Number.POSITIVE_INFINITY, cells[COUNT]!])
    return { buckets, count: cells[COUNT]!, min: cells[MIN]!, max: cells[MAX]!, sum: cells[SUM]! }
  }
}

const COUNT = 0
const SUM = 1
const MIN = 2
const MAX = 3
const BUCKETS = 4
