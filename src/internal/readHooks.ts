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

/** A histogram kept as plain numbers, read as a `HistogramState`. */
export class Histogram {
  private readonly bounds: ReadonlyArray<number>
  private readonly counts: Array<number>
  private count = 0
  private min = Number.POSITIVE_INFINITY
  private max = Number.NEGATIVE_INFINITY
  private sum = 0

  constructor(bounds: ReadonlyArray<number>) {
    this.bounds = bounds
    this.counts = new Array(bounds.length + 1).fill(0)
  }

  observe(value: number): void {
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]!++
    this.count++
    this.sum += value
    if (value < this.min) this.min = value
    if (value > this.max) this.max = value
  }

  state(): Metric.HistogramState {
    const buckets: Array<[number, number]> = []
    let cumulative = 0
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!
      buckets.push([this.bounds[i]!, cumulative])
    }
    buckets.push([Number.POSITIVE_INFINITY, this.count])
    return { buckets, count: this.count, min: this.min, max: this.max, sum: this.sum }
  }
}
