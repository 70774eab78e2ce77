/**
 * Versioned event types.
 *
 * An event type is plain data: a dotted name (`app.Name`), an integer version, an
 * Effect `Schema` for its data, and how Cairn should treat its events — delivery
 * guarantee, batching, priority, mailbox, processing concurrency, retries and timeout.
 * Its key, `name@version`, identifies it everywhere (on the wire included). Any change
 * to the data is a new version; versions of one name coexist.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Schedule, Schema, SchemaAST, SchemaIssue } from "effect"
import { InvalidEventType, ValidationError } from "./Errors.ts"
import type { Handler } from "./Handler.ts"
import { maxCapacity } from "./Mailbox.ts"
import { type Plan, planOf } from "./internal/plainStruct.ts"

/**
 * `must`: never dropped; a full mailbox applies backpressure; shutdown delivers them.
 * `droppable`: may be dropped under overload or at shutdown, every drop counted.
 *
 * @category models
 */
export type Delivery = "must" | "droppable"

/**
 * What a full mailbox does with a new event: `backpressure` (the Effect API waits,
 * the synchronous API refuses), `dropNewest` (the new event is dropped) or
 * `dropOldest` (the oldest queued event is dropped to make room).
 *
 * @category models
 */
export type Overflow = "backpressure" | "dropNewest" | "dropOldest"

/**
 * @category models
 */
export interface BatchOptions {
  /** Largest batch handed to the processing function. Default `512`. */
  readonly maxSize: number
  /**
   * After the first event arrives, how long to wait for more before processing a
   * partial batch. `0` sends at once (latency-sensitive types). Default `10`.
   */
  readonly lingerMs: number
}

/**
 * @category models
 */
export interface MailboxOptions {
  /** Most events queued for this type. Default `10_000`. */
  readonly capacity: number
  /**
   * Policy when full. Default `backpressure` for `must` types, `dropNewest` for
   * `droppable` ones. A `must` type only accepts `backpressure`.
   */
  readonly overflow: Overflow
}

/**
 * Options of an event type; every one has a default.
 *
 * @category models
 */
export interface Options {
  /** Default `"must"`. */
  readonly delivery: Delivery
  readonly batch: BatchOptions
  /** Higher goes first when several types have batches ready. Default `0`. */
  readonly priority: number
  readonly mailbox: MailboxOptions
  /** Batches of this type processed at once; order is kept only with `1`. Default `1`. */
  readonly concurrency: number
  /**
   * Retry schedule of the processing function (its input is the failure).
   * Default: exponential from 100 ms, factor 2, jittered, at most 5 retries.
   */
  readonly retry: Schedule.Schedule<unknown, unknown>
  /** Time limit of one processing attempt; a hanging attempt fails and is retried. Default `30_000`. */
  readonly timeoutMs: number
}

/**
 * The default retry schedule: exponential from 100 ms, factor 2, jittered, 5 retries.
 *
 * @category constructors
 */
export const defaultRetry: Schedule.Schedule<unknown, unknown> = Schedule.exponential("100 millis", 2).pipe(
  Schedule.jittered,
  Schedule.upTo({ times: 5 })
)

/**
 * Default options (the mailbox overflow default depends on the delivery).
 *
 * @category constructors
 */
export const defaults: Options = {
  delivery: "must",
  batch: { maxSize: 512, lingerMs: 10 },
  priority: 0,
  mailbox: { capacity: 10_000, overflow: "backpressure" },
  concurrency: 1,
  retry: defaultRetry,
  timeoutMs: 30_000
}

const TypeId: unique symbol = Symbol.for("cairn/EventType")

/**
 * A cache slot on each type for the trail that logs it most: the owner (a trail's
 * token) and what that trail keeps for the type. It saves a map lookup per `log`;
 * a type logged into several trails just falls back to the map.
 *
 * @internal
 */
export const CacheOwner: unique symbol = Symbol.for("cairn/EventType/cacheOwner")
/** @internal */
export const CacheValue: unique symbol = Symbol.for("cairn/EventType/cacheValue")

/**
 * A versioned event type whose data has type `A` (and encoded form `I`).
 *
 * @category models
 */
export interface EventType<A, I = A> extends Options {
  readonly [TypeId]: typeof TypeId
  /** @internal */
  [CacheOwner]: unknown
  /** @internal */
  [CacheValue]: unknown
  readonly name: string
  readonly version: number
  /** `name@version`. */
  readonly key: string
  readonly schema: Schema.Codec<A, I>
  /** Handlers declared with the type; they run before those registered by name. */
  // biome-ignore lint/suspicious/noExplicitAny: erased so that EventType stays covariant in A
  readonly handlers: ReadonlyArray<Handler<any>>
  /** Set when a front end may send this type through the HTTP relay (see {@link Relay}). */
  readonly relay?: Relay
}

/**
 * How the HTTP relay (`POST /analytics`, see `docs/http.md`) treats the properties a
 * front end sends for a relayable type, before they are validated by the schema:
 * a key the schema declares passes as it is, a key listed in `hash` is replaced by
 * the SHA-256 hex of its value, and every other key is dropped. So nothing the type
 * does not declare reaches the service, and declared personal data can be kept
 * only as a hash.
 *
 * @category models
 */
export interface Relay {
  /** Keys whose values are replaced by their SHA-256 hex (declare them as strings). */
  readonly hash: ReadonlyArray<string>
  /** The keys the schema declares (of its encoded form): the only ones that pass. */
  readonly keys: ReadonlyArray<string>
}

/**
 * Any event type, whatever its data.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: the data type is erased on purpose here
export type Any = EventType<any, any>

/**
 * The data type of an event type.
 *
 * @category models
 */
export type Data<T> = T extends EventType<infer A, infer _I> ? A : never

/**
 * Options accepted by {@link make}: every field optional, nested ones too.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: the handlers' data type follows the schema's
export interface MakeOptions<A = any> {
  readonly delivery?: Delivery
  readonly batch?: Partial<BatchOptions>
  readonly priority?: number
  readonly mailbox?: Partial<MailboxOptions>
  readonly concurrency?: number
  readonly retry?: Schedule.Schedule<unknown, unknown>
  readonly timeoutMs?: number
  /** Handlers of this type's events, run before handlers registered by name, in this order. */
  readonly handlers?: ReadonlyArray<Handler<NoInfer<A>>>
  /**
   * Makes the type relayable: front ends may send it through the HTTP relay, which
   * passes only the declared keys and hashes those listed in `hash` (see
   * {@link Relay}). `true` relays with nothing hashed. The schema must be a struct
   * (it declares the keys), and every key in `hash` one of its keys. Default: not
   * relayable (the relay refuses the type).
   */
  readonly relay?: true | { readonly hash?: ReadonlyArray<string> }
}

const NAME = /^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)+$/

/**
 * Defines an event type.
 *
 * Throws {@link InvalidEventType} for an invalid name, version or option: a type is
 * defined once at module load, so a bad definition is a bug to see at start-up.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { EventType } from "cairn"
 *
 * const StepFinished = EventType.make("train.StepFinished", 1, Schema.Struct({ step: Schema.Number }), {
 *   delivery: "droppable",
 *   batch: { maxSize: 256, lingerMs: 50 }
 * })
 * ```
 *
 * @category constructors
 */
export const make = <A, I>(
  name: string,
  version: number,
  schema: Schema.Codec<A, I>,
  options: MakeOptions<A> = {}
): EventType<A, I> => {
  const key = `${name}@${version}`
  const fail = (reason: string): never => {
    throw new InvalidEventType({ key, reason })
  }
  if (!NAME.test(name)) fail(`name must be dotted segments of letters, digits, _ or - (like "app.Name")`)
  if (!Number.isSafeInteger(version) || version < 1) fail("version must be a positive integer")
  const delivery = options.delivery ?? defaults.delivery
  const batch: BatchOptions = {
    maxSize: options.batch?.maxSize ?? defaults.batch.maxSize,
    lingerMs: options.batch?.lingerMs ?? defaults.batch.lingerMs
  }
  const mailbox: MailboxOptions = {
    capacity: options.mailbox?.capacity ?? defaults.mailbox.capacity,
    overflow: options.mailbox?.overflow ?? (delivery === "must" ? "backpressure" : "dropNewest")
  }
  const concurrency = options.concurrency ?? defaults.concurrency
  const timeoutMs = options.timeoutMs ?? defaults.timeoutMs
  const priority = options.priority ?? defaults.priority
  if (delivery !== "must" && delivery !== "droppable") fail(`delivery must be "must" or "droppable"`)
  if (!isPositiveInt(batch.maxSize)) fail("batch.maxSize must be a positive integer")
  if (!(batch.lingerMs >= 0 && Number.isFinite(batch.lingerMs))) fail("batch.lingerMs must be >= 0")
  if (!(isPositiveInt(mailbox.capacity) && mailbox.capacity <= maxCapacity)) {
    fail(`mailbox.capacity must be an integer from 1 to ${maxCapacity}`)
  }
  if (mailbox.overflow !== "backpressure" && mailbox.overflow !== "dropNewest" && mailbox.overflow !== "dropOldest") {
    fail(`mailbox.overflow must be "backpressure", "dropNewest" or "dropOldest"`)
  }
  if (delivery === "must" && mailbox.overflow !== "backpressure") {
    fail(`a must type is never dropped: its mailbox overflow must be "backpressure", not "${mailbox.overflow}"`)
  }
  if (!isPositiveInt(concurrency)) fail("concurrency must be a positive integer")
  if (!(timeoutMs > 0)) fail("timeoutMs must be > 0")
  if (!Number.isFinite(priority)) fail("priority must be a finite number")
  const handlers = options.handlers ?? []
  const names = new Set<string>()
  for (const h of handlers) {
    if (names.has(h.name)) fail(`two handlers are named "${h.name}"`)
    names.add(h.name)
  }
  const relay = options.relay === undefined ? undefined : relayOf(schema, options.relay, fail)
  return {
    ...(relay === undefined ? {} : { relay }),
    [TypeId]: TypeId,
    [CacheOwner]: undefined,
    [CacheValue]: undefined,
    name,
    version,
    key,
    schema,
    delivery,
    batch,
    priority,
    mailbox,
    concurrency,
    retry: options.retry ?? defaults.retry,
    timeoutMs,
    handlers
  }
}

const isPositiveInt = (n: number) => Number.isSafeInteger(n) && n > 0

/** The relay of a type: its declared keys, and the hashed ones checked against them. */
const relayOf = (
  schema: { readonly ast: SchemaAST.AST },
  option: true | { readonly hash?: ReadonlyArray<string> },
  fail: (reason: string) => never
): Relay => {
  const keys = declaredKeys(schema.ast)
  if (keys.length === 0) fail("relay needs a schema that declares its keys (a struct)")
  const hash = option === true ? [] : [...(option.hash ?? [])]
  for (const k of hash) {
    if (!keys.includes(k)) fail(`relay.hash: "${k}" is not a key of the schema (keys: ${keys.join(", ")})`)
  }
  if (new Set(hash).size !== hash.length) fail("relay.hash lists a key twice")
  return { hash, keys }
}

/** The property names of a schema's encoded form (of every member of a union). */
const declaredKeys = (ast: SchemaAST.AST): Array<string> => {
  const keys = new Set<string>()
  const visit = (node: SchemaAST.AST, depth: number): void => {
    if (depth > 8) return
    const encoded = SchemaAST.toEncoded(node)
    if (SchemaAST.isObjects(encoded)) {
      for (const p of encoded.propertySignatures) if (typeof p.name === "string") keys.add(p.name)
    } else if (SchemaAST.isUnion(encoded)) {
      for (const member of encoded.types) visit(member, depth + 1)
    } else if (SchemaAST.isSuspend(encoded)) {
      visit(encoded.thunk(), depth + 1)
    }
  }
  visit(ast, 0)
  return [...keys]
}

/**
 * @category guards
 */
export const isEventType = (u: unknown): u is Any => typeof u === "object" && u !== null && TypeId in u

/**
 * Splits a key `name@version` into its parts; `undefined` when it is not a key.
 *
 * @category getters
 */
export const parseKey = (key: string): { readonly name: string; readonly version: number } | undefined => {
  const at = key.lastIndexOf("@")
  if (at <= 0) return undefined
  const version = Number(key.slice(at + 1))
  if (!Number.isSafeInteger(version) || version < 1) return undefined
  return { name: key.slice(0, at), version }
}

type Decoder = (input: unknown) => Exit.Exit<unknown, Schema.SchemaError>
const decoders = new WeakMap<Any, Decoder>()
const plans = new WeakMap<Any, Plan | null>()
const formatIssues = SchemaIssue.makeFormatterStandardSchemaV1()

/**
 * Decodes stopping at the first issue (the fast path: most data is valid); a failure
 * is decoded again collecting every issue, so the error lists them all.
 */
const decoderOf = (type: Any): Decoder => {
  let decoder = decoders.get(type)
  if (decoder === undefined) {
    const schema = type.schema as Schema.Codec<unknown, unknown>
    const first = Schema.decodeUnknownExit(schema)
    const all = Schema.decodeUnknownExit(schema, { errors: "all" })
    decoder = (input) => {
      const exit = first(input)
      return Exit.isSuccess(exit) ? exit : all(input)
    }
    decoders.set(type, decoder)
  }
  return decoder
}

/**
 * The plan of a type whose schema is a plain struct (strings, numbers, booleans and
 * literals, no checks or transformations), decoded without the generic parser; `null`
 * for any other schema. See `internal/plainStruct.ts`.
 *
 * @internal
 */
export const planOfType = (type: Any): Plan | null => {
  let plan = plans.get(type)
  if (plan === undefined) {
    plan = planOf(type.schema.ast) ?? null
    plans.set(type, plan)
  }
  return plan
}

/**
 * Decodes data with the type's schema, or throws a {@link ValidationError} listing
 * every issue with its path. The name-based `log` runs it before an event is queued.
 *
 * @category validation
 */
export const decodeUnsafe = <A, I>(type: EventType<A, I>, data: unknown): A => {
  const plan = planOfType(type)
  if (plan !== null) {
    const out = plan.decode(data)
    if (out !== undefined) return out as A
  }
  const exit = decoderOf(type)(data)
  if (Exit.isSuccess(exit)) return exit.value as A
  throw validationError(type, exit)
}

/**
 * Decodes data with the type's schema; fails with a {@link ValidationError}.
 *
 * @category validation
 */
export const decode = <A, I>(type: EventType<A, I>, data: unknown): Effect.Effect<A, ValidationError> =>
  Effect.suspend(() => {
    const plan = planOfType(type)
    if (plan !== null) {
      const out = plan.decode(data)
      if (out !== undefined) return Effect.succeed(out as A)
    }
    const exit = decoderOf(type)(data)
    return Exit.isSuccess(exit) ? Effect.succeed(exit.value as A) : Effect.fail(validationError(type, exit))
  })

const validationError = (type: Any, exit: Exit.Failure<unknown, Schema.SchemaError>): ValidationError => {
  const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
  if (failure === undefined || !Schema.isSchemaError(failure.error)) {
    // a defect in a schema transformation: report it as one issue rather than crash the caller
    return new ValidationError({ type: type.key, issues: [{ path: [], message: String(exit.cause) }] })
  }
  const issues = formatIssues(failure.error.issue).issues.map((i) => ({
    path: (i.path ?? []).map((p) => {
      const k = typeof p === "object" && p !== null ? p.key : p
      return typeof k === "number" ? k : String(k)
    }),
    message: i.message
  }))
  return new ValidationError({ type: type.key, issues })
}

/**
 * A schema for the common "these keys must be present" case: an object whose listed
 * keys are all present (any value, other keys allowed). Each missing key is one
 * issue at its path.
 *
 * @example
 * ```ts
 * const DealClick = EventType.make("deals.DealClick", 1, EventType.requireKeys(["deal_id", "user_id", "code"]))
 * ```
 *
 * @category validation
 */
export const requireKeys = <const K extends string>(
  keys: ReadonlyArray<K>
): Schema.Codec<{ readonly [k in K]: unknown } & { readonly [k: string]: unknown }> =>
  Schema.Record(Schema.String, Schema.Unknown).check(
    Schema.makeFilter((o: { readonly [k: string]: unknown }) => {
      const missing = keys.filter((k) => !Object.hasOwn(o, k))
      return missing.map((k) => ({ path: [k], issue: "Missing key" }))
    })
  ) as unknown as Schema.Codec<{ readonly [k in K]: unknown } & { readonly [k: string]: unknown }>
