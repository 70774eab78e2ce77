/**
 * Every metric Cairn exports, in one place.
 *
 * Names are snake_case with the `cairn_` prefix; per-type series carry a `type`
 * attribute (`name@version`), drops and refusals a `reason`. A trail registers its
 * series in the metric registry with read hooks over its own counters, so reading a
 * metric gives the exact value of that moment and the hot path updates nothing but
 * plain numbers.
 *
 * @since 0.1.0
 */
import { type Context, Metric } from "effect"
import { counterOf, gaugeOf, Histogram, histogramOf } from "./internal/readHooks.ts"
import type { Mailbox } from "./Mailbox.ts"

type Attributes = Readonly<Record<string, string>>

function batchSizeBoundaries() {
  return Metric.exponentialBoundaries({ start: 1, factor: 2, count: 14 })
}
function latencyBoundaries() {
  return Metric.exponentialBoundaries({ start: 0.5, factor: 2, count: 18 })
}

const counter = (name: string, description: string) => (attributes?: Attributes) =>
  Metric.counter(name, attributes === undefined ? { description } : { description, attributes })
const gauge = (name: string, description: string) => (attributes?: Attributes) =>
  Metric.gauge(name, attributes === undefined ? { description } : { description, attributes })
const histogram = (name: string, description: string, boundaries: ReadonlyArray<number>) => (attributes?: Attributes) =>
  Metric.histogram(
    name,
    attributes === undefined ? { description, boundaries } : { description, boundaries, attributes }
  )

/**
 * Constructors of every series, given its attributes. A series built with its
 * attributes (rather than `Metric.withAttributes`) caches its registry key, so
 * updating it does not rebuild the key each time: the trail builds its series once
 * per type with these.
 *
 * @category constructors
 */
export const series = {
  accepted: counter("cairn_trail_events_accepted_total", "Events accepted by the trail, per type"),
  processed: counter("cairn_trail_events_processed_total", "Events whose batch was processed successfully, per type"),
  dropped: counter(
    "cairn_trail_events_dropped_total",
    "Events dropped, per type and reason (overflow, shutdown, failed)"
  ),
  deadLettered: counter("cairn_trail_events_dead_lettered_total", "Events written to the dead-letter record, per type"),
  refused: counter(
    "cairn_trail_events_refused_total",
    "Events refused (never accepted), per type and reason (full, closed)"
  ),
  rejected: counter(
    "cairn_trail_events_rejected_total",
    "Events rejected before queueing (never accepted), per type and reason (invalid); unknown_type without a type"
  ),
  depth: gauge("cairn_trail_mailbox_depth", "Events queued, per type"),
  inFlight: gauge("cairn_trail_events_in_flight", "Events taken for processing and not yet settled, per type"),
  batchSize: histogram("cairn_trail_batch_size", "Events per settled batch, per type", batchSizeBoundaries()),
  processingLatency: histogram(
    "cairn_trail_processing_latency_ms",
    "Milliseconds from taking a batch to settling it (retries included), per type",
    latencyBoundaries()
  )
} as const

/**
 * The series of handlers, with attributes `type` and `handler`.
 *
 * @category series
 */
export const handlerSeries = {
  accepted: counter("cairn_handler_events_accepted_total", "Events handed to a handler, per type and handler"),
  processed: counter("cairn_handler_events_processed_total", "Events a handler handled successfully"),
  dropped: counter(
    "cairn_handler_events_dropped_total",
    "Events a handler dropped, per reason (overflow, shutdown, failed)"
  ),
  deadLettered: counter("cairn_handler_events_dead_lettered_total", "Events of a must type a handler could not handle"),
  depth: gauge("cairn_handler_mailbox_depth", "Events waiting for a handler"),
  failures: counter("cairn_handler_failures_total", "Failed attempts of a handler (typed failures, defects, timeouts)"),
  restarts: counter("cairn_handler_restarts_total", "Restarts of a handler by its supervisor"),
  stopped: gauge("cairn_handler_stopped", "1 when the handler's supervisor stopped it")
} as const

/** @category metrics */
export const accepted = series.accepted()
/** @category metrics */
export const processed = series.processed()
/** @category metrics */
export const dropped = series.dropped()
/** @category metrics */
export const deadLettered = series.deadLettered()
/** @category metrics */
export const refused = series.refused()
/** @category metrics */
export const depth = series.depth()
/** @category metrics */
export const inFlight = series.inFlight()
/** @category metrics */
export const batchSize = series.batchSize()
/** @category metrics */
export const processingLatency = series.processingLatency()

/**
 * What a handler's metrics read, besides its mailbox.
 *
 * @category models
 */
export interface HandlerReadings {
  readonly failures: () => number
  readonly restarts: () => number
  readonly stopped: () => boolean
}

/**
 * Registers the series of one handler of a type: read hooks over its mailbox and
 * supervisor, exact at every read.
 *
 * @category constructors
 */
export const registerHandler = (
  type: string,
  handler: string,
  mailbox: Mailbox<unknown>,
  readings: HandlerReadings,
  context: Context.Context<never>
): void => {
  const s = handlerSeries
  const attrs = { type, handler }
  const reason = (r: string) => ({ type, handler, reason: r })
  counterOf(context, s.accepted(attrs), () => mailbox.accepted)
  counterOf(context, s.processed(attrs), () => mailbox.processed)
  counterOf(context, s.dropped(reason("overflow")), () => mailbox.droppedOverflow)
  counterOf(context, s.dropped(reason("shutdown")), () => mailbox.droppedShutdown)
  counterOf(context, s.dropped(reason("failed")), () => mailbox.droppedFailed)
  counterOf(context, s.deadLettered(attrs), () => mailbox.deadLettered)
  gaugeOf(context, s.depth(attrs), () => mailbox.size)
  counterOf(context, s.failures(attrs), readings.failures)
  counterOf(context, s.restarts(attrs), readings.restarts)
  gaugeOf(context, s.stopped(attrs), () => (readings.stopped() ? 1 : 0))
}

/**
 * Registers the counter of events rejected for an unknown type name.
 *
 * @category constructors
 */
export const registerUnknown = (read: () => number, context: Context.Context<never>): void => {
  counterOf(context, series.rejected({ reason: "unknown_type" }), read)
}

const batchSizeBounds = batchSizeBoundaries()
const latencyBounds = latencyBoundaries()

/**
 * The metrics of one event type of a trail.
 *
 * @category models
 */
export interface TypeMetrics {
  /** Records one settled batch: its size and how long it took, in milliseconds. */
  readonly observeBatch: (size: number, durationMs: number) => void
}

/**
 * Registers the series of one event type in the registry of `context`, read live
 * from its mailbox's counters. Registering the same type again (another trail in
 * the same process and registry) replaces the earlier series.
 *
 * @category constructors
 */
export const registerType = (
  type: string,
  mailbox: Mailbox<unknown>,
  context: Context.Context<never>,
  rejectedInvalid: () => number = () => 0
): TypeMetrics => {
  const attrs = { type }
  const reason = (r: string) => ({ type, reason: r })
  const counter = (metric: Metric.Counter<number>, read: () => number) => counterOf(context, metric, read)
  const gauge = (metric: Metric.Gauge<number>, read: () => number) => gaugeOf(context, metric, read)
  counter(series.accepted(attrs), () => mailbox.accepted)
  counter(series.processed(attrs), () => mailbox.processed)
  counter(series.dropped(reason("overflow")), () => mailbox.droppedOverflow)
  counter(series.dropped(reason("shutdown")), () => mailbox.droppedShutdown)
  counter(series.dropped(reason("failed")), () => mailbox.droppedFailed)
  counter(series.deadLettered(attrs), () => mailbox.deadLettered)
  counter(series.refused(reason("full")), () => mailbox.refusedFull)
  counter(series.refused(reason("closed")), () => mailbox.refusedClosed)
  counter(series.rejected(reason("invalid")), rejectedInvalid)
  gauge(series.depth(attrs), () => mailbox.size)
  gauge(series.inFlight(attrs), () => mailbox.inFlight)
  const sizes = new Histogram(batchSizeBounds)
  const latency = new Histogram(latencyBounds)
  histogramOf(context, series.batchSize(attrs), sizes)
  histogramOf(context, series.processingLatency(attrs), latency)
  return {
    observeBatch: (size, durationMs) => {
      sizes.observe(size)
      latency.observe(durationMs)
    }
  }
}
