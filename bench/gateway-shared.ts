/**
 * What both sides of the gateway benchmark share: the event type and the token.
 */
import { Schema } from "effect"
import { EventType } from "../src/index.ts"

export const TOKEN = "bench-token"
export const BATCH = 512
export const WINDOW = 8

/** Batches of 512, up to 8 of them processed (in flight on the wire) at once. */
export const BenchEvent = EventType.make(
  "bench.Step",
  1,
  Schema.Struct({ step: Schema.Number, loss: Schema.Number, tag: Schema.String }),
  {
    batch: { maxSize: BATCH, lingerMs: 2 },
    mailbox: { capacity: 64 * BATCH, overflow: "backpressure" },
    concurrency: WINDOW
  }
)
