/**
 * The demo's event types, shared by the harness (which records them) and the
 * service (which validates them against the same schemas).
 */
import { Schedule, Schema } from "effect"
import { EventType } from "../src/index.ts"

export const StepFinished = EventType.make(
  "train.StepFinished",
  1,
  Schema.Struct({ step: Schema.Number, loss: Schema.Number }),
  { delivery: "droppable", mailbox: { capacity: 4096, overflow: "dropOldest" }, batch: { maxSize: 256, lingerMs: 20 } }
)

export const Checkpoint = EventType.make(
  "train.Checkpoint",
  1,
  Schema.Struct({ step: Schema.Number, path: Schema.String }),
  { delivery: "must", retry: Schedule.spaced("20 millis").pipe(Schedule.upTo({ times: 3 })) }
)

export const Metric = EventType.make("train.Metric", 2, Schema.Struct({ name: Schema.String, value: Schema.Number }), {
  delivery: "droppable",
  mailbox: { capacity: 1024 }
})

export const Log = EventType.make("job.Log", 1, Schema.Struct({ level: Schema.String, message: Schema.String }), {
  delivery: "must",
  priority: 5,
  batch: { lingerMs: 0 }
})

export const types = [StepFinished, Checkpoint, Metric, Log] as const

/** The demo harness's id and token (configured on the demo service). */
export const HARNESS = "demo-harness"
export const TOKEN = "demo-token"
