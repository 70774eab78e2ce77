/**
 * Every metric Cairn exports, in one place.
 *
 * Names are snake_case with the `cairn_` prefix; per-type series carry a `type`
 * attribute (`name@version`), drops and refusals a `reason`. The trail updates them
 * synchronously after every batch and on `flush`, `stats` and shutdown, so they
 * trail the exact counters of `Trail.stats` by at most one batch.
 *
 * @since 0.1.0
 */
import { Metric } from "effect"

/** @category metrics */
export const accepted = Metric.counter("cairn_trail_events_accepted_total", {
  description: "Events accepted by the trail, per type"
})
/** @category metrics */
export const processed = Metric.counter("cairn_trail_events_processed_total", {
  description: "Events whose batch was processed successfully, per type"
})
/** @category metrics */
export const dropped = Metric.counter("cairn_trail_events_dropped_total", {
  description: "Events dropped, per type and reason (overflow, shutdown, failed)"
})
/** @category metrics */
export const deadLettered = Metric.counter("cairn_trail_events_dead_lettered_total", {
  description: "Events written to the dead-letter record, per type"
})
/** @category metrics */
export const refused = Metric.counter("cairn_trail_events_refused_total", {
  description: "Events refused (never accepted), per type and reason (full, closed)"
})
/** @category metrics */
export const depth = Metric.gauge("cairn_trail_mailbox_depth", { description: "Events queued, per type" })
/** @category metrics */
export const inFlight = Metric.gauge("cairn_trail_events_in_flight", {
  description: "Events taken for processing and not yet settled, per type"
})
/** @category metrics */
export const batchSize = Metric.histogram("cairn_trail_batch_size", {
  description: "Events per processed batch, per type",
  boundaries: Metric.exponentialBoundaries({ start: 1, factor: 2, count: 14 })
})
/** @category metrics */
export const processingLatency = Metric.histogram("cairn_trail_processing_latency_ms", {
  description: "Milliseconds from taking a batch to settling it (retries included), per type",
  boundaries: Metric.exponentialBoundaries({ start: 0.5, factor: 2, count: 18 })
})
