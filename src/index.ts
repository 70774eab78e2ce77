/**
 * Cairn: an Effect-native actor runtime for event trails and telemetry.
 *
 * @since 0.1.0
 */
export * as Actor from "./Actor.ts"
export * as Batch from "./Batch.ts"
export * as Envelope from "./Envelope.ts"
export * as Errors from "./Errors.ts"
export * as EventType from "./EventType.ts"
export * as Gateway from "./Gateway.ts"
export * as Handler from "./Handler.ts"
export * as Http from "./Http.ts"
export * as Ingest from "./Ingest.ts"
export * as Machine from "./Machine.ts"
export * as Mailbox from "./Mailbox.ts"
export * as Metrics from "./Metrics.ts"
export * as Outbox from "./Outbox.ts"
export * as Protocol from "./Protocol.ts"
export * as Registry from "./Registry.ts"
export * as Serialization from "./Serialization.ts"
export * as Sqlite from "./Sqlite.ts"
export * as Store from "./Store.ts"
export * as Supervisor from "./Supervisor.ts"
export * as Trail from "./Trail.ts"
export * as Transport from "./Transport.ts"
