/**
 * Typed errors shared across Cairn.
 *
 * Every failure a caller can expect is one tagged class here: its fields carry the
 * facts, its `message` is derived from them, and its `code` is a stable string that
 * does not change between releases (documented in `docs/errors.md`).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * An event type definition is invalid (bad name, version or option). Thrown by
 * `EventType.make`: an invalid definition is a programming error found at start-up.
 *
 * @category errors
 */
export class InvalidEventType extends Schema.TaggedError<InvalidEventType>()("InvalidEventType", {
  key: Schema.String,
  reason: Schema.String
}) {
  readonly code = "CAIRN_INVALID_EVENT_TYPE"
  override get message(): string {
    return `invalid event type ${this.key}: ${this.reason}`
  }
}

/**
 * A different event type (a different schema) is already registered under the same
 * `name@version` key. Two versions of one name may coexist; one key has one schema.
 *
 * @category errors
 */
export class DuplicateEventType extends Schema.TaggedError<DuplicateEventType>()("DuplicateEventType", {
  key: Schema.String
}) {
  readonly code = "CAIRN_DUPLICATE_EVENT_TYPE"
  override get message(): string {
    return `event type ${this.key} is already registered with a different schema; change the version to change the data`
  }
}

/**
 * The trail is shutting down or closed: the event was not accepted.
 *
 * @category errors
 */
export class TrailClosed extends Schema.TaggedError<TrailClosed>()("TrailClosed", {
  type: Schema.String
}) {
  readonly code = "CAIRN_TRAIL_CLOSED"
  override get message(): string {
    return `trail is closed: event of type ${this.type} was refused`
  }
}

/**
 * One processing attempt of a batch took longer than the type's `timeoutMs`.
 *
 * @category errors
 */
export class ProcessingTimeout extends Schema.TaggedError<ProcessingTimeout>()("ProcessingTimeout", {
  type: Schema.String,
  timeoutMs: Schema.Number
}) {
  readonly code = "CAIRN_PROCESSING_TIMEOUT"
  override get message(): string {
    return `processing a batch of ${this.type} took longer than ${this.timeoutMs} ms`
  }
}

/**
 * A processing function died (threw, or an Effect defect). The defect is kept so the
 * dead-letter record says what happened; it is retried like a typed failure.
 *
 * @category errors
 */
export class ProcessingDefect extends Schema.TaggedError<ProcessingDefect>()("ProcessingDefect", {
  type: Schema.String,
  defect: Schema.Unknown
}) {
  readonly code = "CAIRN_PROCESSING_DEFECT"
  override get message(): string {
    const d = this.defect
    return `processing a batch of ${this.type} died: ${d instanceof Error ? d.message : String(d)}`
  }
}

/**
 * The cause of a dead letter written at shutdown: the overall deadline passed while
 * `must` events were still queued or in flight.
 *
 * @category errors
 */
export class ShutdownDeadline extends Schema.TaggedError<ShutdownDeadline>()("ShutdownDeadline", {
  type: Schema.String,
  timeoutMs: Schema.Number
}) {
  readonly code = "CAIRN_SHUTDOWN_DEADLINE"
  override get message(): string {
    return `shutdown deadline of ${this.timeoutMs} ms passed before ${this.type} events were delivered`
  }
}

/**
 * No registered event type answers to the name (or `name@version`) asked for. The
 * message says what was asked, what the app has, and close names as suggestions.
 *
 * @category errors
 */
export class EventNotFound extends Schema.TaggedError<EventNotFound>()("EventNotFound", {
  /** What was asked, as given. */
  asked: Schema.String,
  /** Why nothing matched, in words (a sentence without a final period). */
  reason: Schema.String,
  /** Close names (or keys) that do exist, closest first. */
  suggestions: Schema.Array(Schema.String)
}) {
  readonly code = "CAIRN_EVENT_NOT_FOUND"
  override get message(): string {
    const hint = this.suggestions.length > 0 ? `; did you mean ${this.suggestions.join(" or ")}?` : ""
    return `${this.reason}${hint}`
  }
}

/**
 * One problem found in event data: where (a path of keys and indexes) and what.
 *
 * @category models
 */
export const ValidationIssue = Schema.Struct({
  path: Schema.Array(Schema.Union([Schema.String, Schema.Number])),
  message: Schema.String
})

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/

/** A path as code would write it: `items[2].name`, `["odd key"]`. */
const formatPath = (path: ReadonlyArray<string | number>): string =>
  path
    .map((p, i) =>
      typeof p === "number" ? `[${p}]` : IDENTIFIER.test(p) ? (i === 0 ? p : `.${p}`) : `[${JSON.stringify(p)}]`
    )
    .join("")

/**
 * Event data did not decode with its type's schema; every issue is listed with its
 * path. The event was not queued (it is counted as rejected).
 *
 * @category errors
 */
export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  type: Schema.String,
  issues: Schema.Array(ValidationIssue)
}) {
  readonly code = "CAIRN_VALIDATION"
  override get message(): string {
    const n = this.issues.length
    const list = this.issues
      .map((i) => (i.path.length === 0 ? i.message : `${formatPath(i.path)}: ${i.message}`))
      .join("; ")
    return `invalid data for ${this.type} (${n} issue${n === 1 ? "" : "s"}): ${list}`
  }
}

/**
 * A handler with the same name is already registered for the event type: handler
 * names identify them in metrics, logs and dead letters.
 *
 * @category errors
 */
export class DuplicateHandler extends Schema.TaggedError<DuplicateHandler>()("DuplicateHandler", {
  type: Schema.String,
  handler: Schema.String
}) {
  readonly code = "CAIRN_DUPLICATE_HANDLER"
  override get message(): string {
    return `a handler named "${this.handler}" is already registered for ${this.type}`
  }
}

/**
 * An option of a handler or supervisor is invalid. Thrown where it is defined: an
 * invalid definition is a programming error found at start-up.
 *
 * @category errors
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  /** What was being defined, e.g. `handler "audit"`. */
  subject: Schema.String,
  reason: Schema.String
}) {
  readonly code = "CAIRN_INVALID_OPTIONS"
  override get message(): string {
    return `${this.subject}: ${this.reason}`
  }
}

/**
 * A serialization extension definition is invalid (type code out of the app range, a
 * class msgpackr never hands to extensions), or it clashes with one already
 * registered under its type code or class. Thrown by `Serialization.extension` and
 * `Serialization.register`: a definition error found at start-up.
 *
 * @category errors
 */
export class InvalidExtension extends Schema.TaggedError<InvalidExtension>()("InvalidExtension", {
  /** The extension's name, as given. */
  name: Schema.String,
  /** Its MessagePack ext type code, as given. */
  type: Schema.Number,
  reason: Schema.String
}) {
  readonly code = "CAIRN_INVALID_EXTENSION"
  override get message(): string {
    return `invalid extension "${this.name}" (type ${this.type}): ${this.reason}`
  }
}

/**
 * A value could not be encoded to MessagePack: a function, a symbol, a circular
 * reference, an invalid Date, or an extension whose `write` failed. `path` says where
 * in the value (empty for the value itself, or when it could not be found).
 *
 * @category errors
 */
export class EncodeError extends Schema.TaggedError<EncodeError>()("EncodeError", {
  path: Schema.Array(Schema.Union([Schema.String, Schema.Number])),
  reason: Schema.String
}) {
  readonly code = "CAIRN_ENCODE"
  override get message(): string {
    const where = this.path.length === 0 ? "the value" : `the value at ${formatPath(this.path)}`
    return `cannot encode ${where}: ${this.reason}`
  }
}

/**
 * Bytes could not be decoded as one MessagePack value: malformed, truncated
 * (`incomplete`), followed by left-over bytes, or an extension's `read` failed.
 * `position` is the byte offset where decoding stopped, when known.
 *
 * @category errors
 */
export class DecodeError extends Schema.TaggedError<DecodeError>()("DecodeError", {
  /** Length of the input, in bytes. */
  size: Schema.Number,
  /** Byte offset where decoding stopped, when known (the input's end for a truncated value). */
  position: Schema.optional(Schema.Number),
  /** The input ends in the middle of a value: more bytes would have been needed. */
  incomplete: Schema.Boolean,
  reason: Schema.String
}) {
  readonly code = "CAIRN_DECODE"
  override get message(): string {
    const at = this.position === undefined ? "" : ` at byte ${this.position}`
    return `cannot decode ${this.size} bytes of MessagePack${at}: ${this.reason}`
  }
}

/**
 * Input to decode is larger than the codec's `maxBytes`: refused before decoding.
 *
 * @category errors
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  size: Schema.Number,
  maxBytes: Schema.Number
}) {
  readonly code = "CAIRN_PAYLOAD_TOO_LARGE"
  override get message(): string {
    return `payload of ${this.size} bytes is larger than the limit of ${this.maxBytes} bytes`
  }
}

/**
 * A frame broke the wire protocol (see `docs/protocol.md`), or the peer said that ours
 * did. `wireCode` is the protocol's stable error code (`bad_frame`, `window_exceeded`,
 * …, the table `Protocol.codes`), `closeCode` the WebSocket close code that goes with
 * it, `detail` what exactly was wrong, and `seq` the BATCH concerned, when there is one.
 * The side that finds the problem sends an ERROR frame with `wireCode`, `detail` and
 * `seq`, then closes the connection with `closeCode`.
 *
 * @category errors
 */
export class ProtocolError extends Schema.TaggedError<ProtocolError>()("ProtocolError", {
  /** The protocol error code, e.g. `bad_frame`; the ERROR frame's code. */
  wireCode: Schema.String,
  /** The WebSocket close code to close with (1002, 1009, 4009, …). */
  closeCode: Schema.Number,
  /** What was wrong, in words; the ERROR frame's message. */
  detail: Schema.String,
  /** Sequence number of the BATCH concerned, when there is one. */
  seq: Schema.optional(Schema.Number)
}) {
  readonly code = "CAIRN_PROTOCOL"
  override get message(): string {
    const on = this.seq === undefined ? "" : ` on BATCH ${this.seq}`
    return `protocol error ${this.wireCode}${on} (close ${this.closeCode}): ${this.detail}`
  }
}

/** The message of something thrown or failed with, for a derived message. */
const describe = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : String(cause)

/**
 * An action of a machine actor failed: its Effect failed or died, its
 * implementation threw, or it is an xstate action the actor does not run (a child
 * actor, a `sendTo` another actor). `action` is the action's type (`notify`,
 * `xstate.emit`, `xstate.spawnChild`, …), `cause` what it failed with. The
 * transition it belongs to is not committed, and the message is retried and
 * supervised like any failure (see `docs/machines.md`).
 *
 * @category errors
 */
export class MachineActionFailed extends Schema.TaggedError<MachineActionFailed>()("MachineActionFailed", {
  machine: Schema.String,
  action: Schema.String,
  cause: Schema.Unknown
}) {
  readonly code = "CAIRN_MACHINE_ACTION"
  override get message(): string {
    return `action ${this.action} of machine ${this.machine} failed: ${describe(this.cause)}`
  }
}

/**
 * xstate's `transition` threw for an event (a guard, an `assign` or a delay
 * expression threw, or an action targets an actor that does not exist). The
 * snapshot is unchanged; the message is retried and supervised like any failure.
 *
 * @category errors
 */
export class MachineTransitionFailed extends Schema.TaggedError<MachineTransitionFailed>()("MachineTransitionFailed", {
  machine: Schema.String,
  /** The type of the event being processed (`xstate.init` for the initial state). */
  event: Schema.String,
  cause: Schema.Unknown
}) {
  readonly code = "CAIRN_MACHINE_TRANSITION"
  override get message(): string {
    return `machine ${this.machine} could not take event ${this.event}: ${describe(this.cause)}`
  }
}

/**
 * A persisted snapshot given to a machine actor does not restore with its machine
 * (a state that does not exist, a malformed value or timer list).
 *
 * @category errors
 */
export class MachineSnapshotInvalid extends Schema.TaggedError<MachineSnapshotInvalid>()("MachineSnapshotInvalid", {
  machine: Schema.String,
  reason: Schema.String
}) {
  readonly code = "CAIRN_MACHINE_SNAPSHOT"
  override get message(): string {
    return `persisted snapshot of machine ${this.machine} does not restore: ${this.reason}`
  }
}

/**
 * A machine actor is stopped (its mailbox is closed): the event was not accepted.
 *
 * @category errors
 */
export class MachineClosed extends Schema.TaggedError<MachineClosed>()("MachineClosed", {
  machine: Schema.String
}) {
  readonly code = "CAIRN_MACHINE_CLOSED"
  override get message(): string {
    return `machine ${this.machine} is stopped: the event was refused`
  }
}

/**
 * Events the processing function refused (a service's per-event outcome in an ack:
 * `invalid`, `unknown_type`, `rejected`…): the cause of their dead letter. They are
 * not resent.
 *
 * @category errors
 */
export class EventRejected extends Schema.TaggedError<EventRejected>()("EventRejected", {
  type: Schema.String,
  /** One entry per refused event: its id, the code and the reason. */
  events: Schema.Array(Schema.Struct({ id: Schema.String, code: Schema.String, reason: Schema.String }))
}) {
  override get message(): string {
    const first = this.events[0]
    const more = this.events.length > 1 ? ` (and ${this.events.length - 1} more)` : ""
    return first === undefined
      ? `no event of ${this.type} was refused`
      : `${this.type} event ${first.id} refused (${first.code}): ${first.reason}${more}`
  }
}

/**
 * The transport (harness side of the wire) is closed: a batch given to its `process`
 * after `close` began, or one still unacked when `close`'s deadline passed. The trail
 * retries it on the type's schedule, then dead-letters `must` events with it.
 *
 * @category errors
 */
export class TransportClosed extends Schema.TaggedError<TransportClosed>()("TransportClosed", {
  /** The gateway's URL. */
  url: Schema.String
}) {
  readonly code = "CAIRN_TRANSPORT_CLOSED"
  override get message(): string {
    return `the transport to ${this.url} is closed: the batch was not delivered`
  }
}

/**
 * The transport gave up connecting: its reconnect `backoff` schedule ended (the
 * default one never does). Every unacked batch fails with it, and so does every later
 * batch given to `process`.
 *
 * @category errors
 */
export class ConnectionFailed extends Schema.TaggedError<ConnectionFailed>()("ConnectionFailed", {
  url: Schema.String,
  /** Connections tried since the last good session. */
  attempts: Schema.Number,
  /** Why the last connection ended (or could not be made). */
  reason: Schema.String
}) {
  readonly code = "CAIRN_CONNECTION_FAILED"
  override get message(): string {
    return `gave up connecting to ${this.url} after ${this.attempts} attempt${this.attempts === 1 ? "" : "s"}: ${this.reason}`
  }
}

/**
 * An HTTP view refused a request (see `docs/http.md`): the body was malformed, too
 * large or of an unsupported type, the token was missing or wrong, the type is not
 * relayable, the service is closing… `httpCode` is the stable code sent as the JSON
 * body's `error` (the table `Http.codes`), `status` the HTTP status that goes with
 * it, `detail` what exactly was wrong (the body's `message`). Unknown event names and
 * invalid data are answered with {@link EventNotFound} (404) and
 * {@link ValidationError} (422) instead.
 *
 * @category errors
 */
export class HttpError extends Schema.TaggedError<HttpError>()("HttpError", {
  /** The HTTP status answered: 400, 401, 403, 405, 413, 415, 500 or 503. */
  status: Schema.Number,
  /** The stable code of the JSON body's `error` field, e.g. `not_relayable`. */
  httpCode: Schema.String,
  /** What was wrong, in words; the JSON body's `message`. */
  detail: Schema.String
}) {
  readonly code = "CAIRN_HTTP"
  override get message(): string {
    return `HTTP ${this.status} ${this.httpCode}: ${this.detail}`
  }
}

/**
 * A gateway could not start listening: the port is taken, the host is not an address
 * of this machine, or the process may not bind it. `reason` is the system's message.
 *
 * @category errors
 */
export class GatewayListenFailed extends Schema.TaggedError<GatewayListenFailed>()("GatewayListenFailed", {
  host: Schema.String,
  port: Schema.Number,
  reason: Schema.String
}) {
  readonly code = "CAIRN_GATEWAY_LISTEN"
  override get message(): string {
    return `the gateway cannot listen on ${this.host}:${this.port}: ${this.reason}`
  }
}

/**
 * A store query is invalid: a cursor that is not one the store gave, a limit out of
 * range, an empty attribute path… `reason` says which.
 *
 * @category errors
 */
export class InvalidQuery extends Schema.TaggedError<InvalidQuery>()("InvalidQuery", {
  reason: Schema.String
}) {
  readonly code = "CAIRN_INVALID_QUERY"
  override get message(): string {
    return `invalid store query: ${this.reason}`
  }
}

/**
 * No subscription has this id (to change, remove or retry deliveries of).
 *
 * @category errors
 */
export class SubscriptionNotFound extends Schema.TaggedError<SubscriptionNotFound>()("SubscriptionNotFound", {
  id: Schema.String
}) {
  readonly code = "CAIRN_SUBSCRIPTION_NOT_FOUND"
  override get message(): string {
    return `no subscription ${this.id}`
  }
}

/**
 * One attempt at a delivery failed: the receiver answered with a status that is not
 * 2xx, did not answer within the timeout, could not be reached, or an in-process
 * subscriber failed. `status` is the HTTP status when there was one, `retryAfterMs`
 * what its `Retry-After` asked for. Kept as the delivery's last error.
 *
 * @category errors
 */
export class DeliveryFailed extends Schema.TaggedError<DeliveryFailed>()("DeliveryFailed", {
  reason: Schema.String,
  status: Schema.optional(Schema.Number),
  retryAfterMs: Schema.optional(Schema.Number)
}) {
  readonly code = "CAIRN_DELIVERY_FAILED"
  override get message(): string {
    return this.status === undefined ? this.reason : `HTTP ${this.status}: ${this.reason}`
  }
}
