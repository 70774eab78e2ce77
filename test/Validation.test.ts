import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Metric, Schema, SchemaGetter } from "effect"
import { Errors, EventType, Handler, Metrics, Trail } from "../src/index.ts"
import type { Batch } from "../src/Batch.ts"

/** An order: a transformation (qty from a string), a decoding default (note), nesting and an array. */
const OrderSchema = Schema.Struct({
  id: Schema.String,
  qty: Schema.NumberFromString,
  customer: Schema.Struct({ name: Schema.String, age: Schema.Number }),
  items: Schema.Array(Schema.Struct({ sku: Schema.String, price: Schema.Number })),
  note: Schema.String.pipe(Schema.optional, Schema.withDecodingDefault(Effect.succeed("none")))
})

const validInput = () => ({
  id: "o1",
  qty: "12",
  customer: { name: "Ann", age: 30 },
  items: [{ sku: "a", price: 1.5 }],
  extra: "not in the schema"
})
const decodedOrder = {
  id: "o1",
  qty: 12,
  customer: { name: "Ann", age: 30 },
  items: [{ sku: "a", price: 1.5 }],
  note: "none"
}

/** Six issues: a wrong type at the top, in a nested object, a missing nested key, two in an array item. */
const invalidInput = () => ({
  id: 1,
  qty: 5,
  customer: { name: 2 },
  items: [
    { sku: "a", price: 1 },
    { sku: 3, price: "p" }
  ]
})
const invalidIssues = [
  { path: ["id"], message: "Expected string" },
  { path: ["qty"], message: "Expected string" },
  { path: ["customer", "name"], message: "Expected string" },
  { path: ["customer", "age"], message: "Missing key" },
  { path: ["items", 1, "sku"], message: "Expected string" },
  { path: ["items", 1, "price"], message: "Expected number" }
]
const invalidMessage =
  "invalid data for shop.Order@1 (6 issues): id: Expected string; qty: Expected string; customer.name: Expected string; " +
  "customer.age: Missing key; items[1].sku: Expected string; items[1].price: Expected number"

const orderType = (options?: EventType.MakeOptions) =>
  EventType.make("shop.Order", 1, OrderSchema, { batch: { lingerMs: 0 }, ...options })

const recorder = () => {
  const seen: Array<{ key: string; data: ReadonlyArray<unknown> }> = []
  const process: Trail.Processor = (batch: Batch) =>
    Effect.sync(() => {
      seen.push({ key: batch.key, data: batch.data })
    })
  const dataOf = (key: string) => seen.filter((b) => b.key === key).flatMap((b) => b.data)
  return { seen, process, dataOf }
}

/** Runs `f`, which must throw an instance of `E`, and returns the error. */
const throws = <E>(ctor: abstract new (...args: never) => E, f: () => unknown): E => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, ctor as never)
    return e as E
  }
  return assert.fail(`expected ${ctor.name}`)
}

/** The typed failure of an exit (asserting it failed with exactly one typed failure, no defect). */
const failureOf = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const reasons = (exit as Exit.Failure<A, E>).cause.reasons
  assert.strictEqual(reasons.length, 1)
  assert.isTrue(Cause.isFailReason(reasons[0]!), "a typed failure, not a defect")
  return (reasons[0] as Cause.Fail<E>).error
}

const accounting = (s: Trail.TypeStats) => {
  const d = s.dropped.overflow + s.dropped.shutdown + s.dropped.failed
  assert.strictEqual(s.accepted, s.processed + s.queued + s.inFlight + d + s.deadLettered, JSON.stringify(s))
}

describe("Validation: valid data by name", () => {
  it.effect("logUnsafe decodes: the processor and the handlers get the decoded value", () =>
    Effect.gen(function* () {
      const handled: Array<unknown> = []
      const T = orderType({
        handlers: [
          Handler.make("h", (e) =>
            Effect.sync(() => {
              handled.push(e.data)
            })
          )
        ]
      })
      const { process, dataOf } = recorder()
      const trail = yield* Trail.make({ source: "t", types: [Trail.route(T, process)] })
      const input = validInput()
      assert.strictEqual(trail.logUnsafe("shop.Order", input), "accepted")
      yield* trail.flush
      assert.deepStrictEqual(dataOf("shop.Order@1"), [decodedOrder])
      assert.deepStrictEqual(handled, [decodedOrder])
      assert.deepStrictEqual(input, validInput(), "the caller's object is left as it was")
      const s = trail.statsUnsafe().types["shop.Order@1"]!
      assert.strictEqual(s.accepted, 1)
      assert.strictEqual(s.processed, 1)
      assert.deepStrictEqual(s.rejected, { invalid: 0 })
    })
  )

  it.effect("the Effect log decodes too", () =>
    Effect.gen(function* () {
      const T = orderType()
      const { process, dataOf } = recorder()
      const trail = yield* Trail.make({ source: "t", types: [Trail.route(T, process)] })
      assert.strictEqual(yield* trail.log("shop.Order", validInput()), "accepted")
      assert.strictEqual(yield* trail.log("shop.Order@1", { ...validInput(), qty: "-3.5", note: "n" }), "accepted")
      yield* trail.flush
      assert.deepStrictEqual(dataOf("shop.Order@1"), [decodedOrder, { ...decodedOrder, qty: -3.5, note: "n" }])
      assert.strictEqual(trail.statsUnsafe().types["shop.Order@1"]!.processed, 2)
    })
  )
})

describe("Validation: invalid data by name", () => {
  it.effect("logUnsafe throws a ValidationError with every issue and its path; nothing is queued", () =>
    Effect.gen(function* () {
      const T = orderType()
      const { process, dataOf } = recorder()
      const trail = yield* Trail.make({ source: "t", types: [Trail.route(T, process)] })
      trail.logUnsafe("shop.Order", validInput())
      const error = throws(Errors.ValidationError, () => trail.logUnsafe("shop.Order", invalidInput()))
      assert.strictEqual(error.message, invalidMessage)
      assert.strictEqual(error._tag, "ValidationError")
      assert.strictEqual(error.code, "CAIRN_VALIDATION")
      assert.strictEqual(error.type, "shop.Order@1")
      assert.deepStrictEqual(error.issues, invalidIssues)
      const rightAfter = trail.statsUnsafe().types["shop.Order@1"]!
      assert.strictEqual(rightAfter.accepted, 1, "accepted unchanged by the invalid event")
      assert.strictEqual(rightAfter.queued + rightAfter.inFlight + rightAfter.processed, 1)
      trail.logUnsafe("shop.Order", { ...validInput(), id: "o2" })
      yield* trail.flush
      assert.deepStrictEqual(
        dataOf("shop.Order@1").map((d) => (d as { id: string }).id),
        ["o1", "o2"],
        "the processor never sees the invalid event"
      )
      const stats = trail.statsUnsafe()
      const s = stats.types["shop.Order@1"]!
      assert.strictEqual(s.accepted, 2)
      assert.strictEqual(s.processed, 2)
      assert.deepStrictEqual(s.rejected, { invalid: 1 })
      assert.deepStrictEqual(stats.rejected, { unknownType: 0, invalid: 1 })
      assert.strictEqual(stats.totals.accepted, 2)
      accounting(s)
    })
  )

  it.effect("the Effect log fails in the error channel with the same error", () =>
    Effect.gen(function* () {
      const T = orderType()
      const { process, seen } = recorder()
      const trail = yield* Trail.make({ source: "t", types: [Trail.route(T, process)] })
      const exit = yield* Effect.exit(trail.log("shop.Order", invalidInput()))
      const error = failureOf(exit)
      assert.instanceOf(error, Errors.ValidationError)
      assert.strictEqual(error.message, invalidMessage)
      assert.deepStrictEqual((error as Errors.ValidationError).issues, invalidIssues)
      const flipped = yield* Effect.flip(trail.log("shop.Order@1", invalidInput()))
      assert.strictEqual(flipped._tag, "ValidationError")
      yield* trail.flush
      assert.deepStrictEqual(seen, [])
      const stats = trail.statsUnsafe()
      assert.strictEqual(stats.types["shop.Order@1"]!.accepted, 0)
      assert.deepStrictEqual(stats.types["shop.Order@1"]!.rejected, { invalid: 2 })
      assert.deepStrictEqual(stats.rejected, { unknownType: 0, invalid: 2 })
    })
  )

  it.effect("data that is not an object is one issue, without a path", () =>
    Effect.gen(function* () {
      const trail = yield* Trail.make({ source: "t", types: [orderType()] })
      for (const data of [null, undefined, 5, "order", [1, 2]]) {
        const error = throws(Errors.ValidationError, () => trail.logUnsafe("shop.Order", data))
        assert.strictEqual(error.message, "invalid data for shop.Order@1 (1 issue): Expected object", String(data))
        assert.deepStrictEqual(error.issues, [{ path: [], message: "Expected object" }])
      }
      const error = throws(Errors.ValidationError, () =>
        trail.logUnsafe("shop.Order", { id: "x", qty: "1", customer: "c", items: {} })
      )
      assert.strictEqual(
        error.message,
        "invalid data for shop.Order@1 (2 issues): customer: Expected object; items: Expected array"
      )
      assert.deepStrictEqual(trail.statsUnsafe().rejected, { unknownType: 0, invalid: 6 })
    })
  )

  it.effect("unknown names are rejected with EventNotFound and counted as unknownType", () =>
    Effect.gen(function* () {
      const trail = yield* Trail.make({ source: "t", types: [orderType()] })
      const sync = throws(Errors.EventNotFound, () => trail.logUnsafe("shop.Ordr", validInput()))
      assert.strictEqual(
        sync.message,
        "there is no event named Ordr in the shop app (it has shop.Order); did you mean shop.Order?"
      )
      const viaEffect = failureOf(yield* Effect.exit(trail.log("shop.Order@2", validInput())))
      assert.instanceOf(viaEffect, Errors.EventNotFound)
      assert.strictEqual(
        viaEffect.message,
        "there is no version 2 of event shop.Order: registered versions are 1; did you mean shop.Order@1?"
      )
      const malformed = yield* Effect.flip(trail.log("not a name", {}))
      assert.strictEqual(malformed._tag, "EventNotFound")
      const stats = trail.statsUnsafe()
      assert.deepStrictEqual(stats.rejected, { unknownType: 3, invalid: 0 })
      assert.deepStrictEqual(Object.keys(stats.types), ["shop.Order@1"], "no type was made up")
      assert.strictEqual(stats.totals.accepted, 0)
    })
  )

  it.effect("invalid data is counted per version, and summed", () =>
    Effect.gen(function* () {
      const V1 = EventType.make("shop.Item", 1, Schema.Struct({ sku: Schema.String }), { batch: { lingerMs: 0 } })
      const V2 = EventType.make("shop.Item", 2, Schema.Struct({ sku: Schema.String, n: Schema.Number }), {
        batch: { lingerMs: 0 }
      })
      const trail = yield* Trail.make({ source: "t", types: [V1, V2] })
      throws(Errors.ValidationError, () => trail.logUnsafe("shop.Item@1", {}))
      throws(Errors.ValidationError, () => trail.logUnsafe("shop.Item", { sku: "a" }))
      throws(Errors.ValidationError, () => trail.logUnsafe("shop.Item@2", { sku: 1, n: 1 }))
      const stats = trail.statsUnsafe()
      assert.deepStrictEqual(stats.types["shop.Item@1"]!.rejected, { invalid: 1 })
      assert.deepStrictEqual(stats.types["shop.Item@2"]!.rejected, { invalid: 2 })
      assert.deepStrictEqual(stats.rejected, { unknownType: 0, invalid: 3 })
    })
  )

  it("the Promise facade: log throws, send rejects, with the typed errors", async () => {
    const trail = await Trail.start({ source: "p", types: [orderType()] })
    try {
      const error = throws(Errors.ValidationError, () => trail.log("shop.Order", invalidInput()))
      assert.strictEqual(error.message, invalidMessage)
      const rejected = await trail.send("shop.Order", invalidInput()).then(
        () => assert.fail("send must reject"),
        (e: unknown) => e
      )
      assert.instanceOf(rejected, Errors.ValidationError)
      assert.deepStrictEqual((rejected as Errors.ValidationError).issues, invalidIssues)
      const unknown = await trail.send("shop.Nope", {}).then(
        () => assert.fail("send must reject"),
        (e: unknown) => e
      )
      assert.instanceOf(unknown, Errors.EventNotFound)
      assert.strictEqual(await trail.send("shop.Order", validInput()), "accepted")
      await trail.flush()
      const stats = trail.stats()
      assert.deepStrictEqual(stats.rejected, { unknownType: 1, invalid: 2 })
      assert.strictEqual(stats.types["shop.Order@1"]!.processed, 1)
    } finally {
      await trail.dispose()
    }
  })
})

describe("Validation: versions", () => {
  it.effect("an explicit version goes to that version's processor; a bare name to the latest", () =>
    Effect.gen(function* () {
      const V1 = EventType.make("shop.Paid", 1, Schema.Struct({ amount: Schema.Number }), { batch: { lingerMs: 0 } })
      const V2 = EventType.make("shop.Paid", 2, Schema.Struct({ amount: Schema.Number, currency: Schema.String }), {
        batch: { lingerMs: 0 }
      })
      const one = recorder()
      const two = recorder()
      const trail = yield* Trail.make({
        source: "t",
        types: [Trail.route(V2, two.process), Trail.route(V1, one.process)]
      })
      trail.logUnsafe("shop.Paid@1", { amount: 1 })
      trail.logUnsafe("shop.Paid", { amount: 2, currency: "EUR" })
      yield* trail.log("shop.Paid@1", { amount: 3 })
      yield* trail.log("shop.Paid@2", { amount: 4, currency: "USD" })
      // data valid for v1 only: accepted by key, refused by the bare name (v2's schema)
      const error = throws(Errors.ValidationError, () => trail.logUnsafe("shop.Paid", { amount: 5 }))
      assert.strictEqual(error.message, "invalid data for shop.Paid@2 (1 issue): currency: Missing key")
      yield* trail.flush
      assert.deepStrictEqual(one.dataOf("shop.Paid@1"), [{ amount: 1 }, { amount: 3 }])
      assert.deepStrictEqual(two.dataOf("shop.Paid@2"), [
        { amount: 2, currency: "EUR" },
        { amount: 4, currency: "USD" }
      ])
      assert.deepStrictEqual(one.dataOf("shop.Paid@2"), [])
      assert.deepStrictEqual(two.dataOf("shop.Paid@1"), [])
      assert.deepStrictEqual(trail.statsUnsafe().types["shop.Paid@2"]!.rejected, { invalid: 1 })
      assert.deepStrictEqual(trail.statsUnsafe().types["shop.Paid@1"]!.rejected, { invalid: 0 })
    })
  )
})

describe("Validation: EventType.decode and decodeUnsafe", () => {
  it.effect("decode succeeds with the decoded value, or fails with the ValidationError", () =>
    Effect.gen(function* () {
      const T = orderType()
      assert.deepStrictEqual(yield* EventType.decode(T, validInput()), decodedOrder)
      const error = yield* Effect.flip(EventType.decode(T, invalidInput()))
      assert.instanceOf(error, Errors.ValidationError)
      assert.strictEqual(error.message, invalidMessage)
      assert.deepStrictEqual(EventType.decodeUnsafe(T, validInput()), decodedOrder)
      assert.strictEqual(
        throws(Errors.ValidationError, () => EventType.decodeUnsafe(T, invalidInput())).message,
        invalidMessage
      )
    })
  )

  it("a failing decode after a successful one, and the reverse, are both right (the decoder is cached)", () => {
    const T = EventType.make("cache.T", 1, Schema.Struct({ n: Schema.Number, s: Schema.String }))
    assert.deepStrictEqual(EventType.decodeUnsafe(T, { n: 1, s: "a" }), { n: 1, s: "a" })
    assert.strictEqual(
      throws(Errors.ValidationError, () => EventType.decodeUnsafe(T, { n: "x", s: 2 })).message,
      "invalid data for cache.T@1 (2 issues): n: Expected number; s: Expected string"
    )
    assert.deepStrictEqual(EventType.decodeUnsafe(T, { n: 2, s: "b" }), { n: 2, s: "b" })
  })

  it("a transformation that throws is reported as one issue, not thrown as is", () => {
    const Boom = EventType.make(
      "cache.Boom",
      1,
      Schema.String.pipe(
        Schema.decodeTo(Schema.Number, {
          decode: SchemaGetter.transform((s: string) => {
            if (s === "boom") throw new Error("kaboom")
            return s.length
          }),
          encode: SchemaGetter.transform((n: number) => String(n))
        })
      )
    )
    assert.strictEqual(EventType.decodeUnsafe(Boom, "four"), 4)
    const error = throws(Errors.ValidationError, () => EventType.decodeUnsafe(Boom, "boom"))
    assert.strictEqual(error.issues.length, 1)
    assert.deepStrictEqual(error.issues[0]!.path, [])
    assert.include(error.issues[0]!.message, "kaboom")
  })

  it("paths with keys that are not identifiers are quoted", () => {
    const T = EventType.make(
      "cache.Odd",
      1,
      Schema.Struct({ "odd key": Schema.Number, list: Schema.Array(Schema.Array(Schema.Number)) })
    )
    const error = throws(Errors.ValidationError, () =>
      EventType.decodeUnsafe(T, { "odd key": "x", list: [[1], [2, "y"]] })
    )
    assert.deepStrictEqual(error.issues, [
      { path: ["odd key"], message: "Expected number" },
      { path: ["list", 1, 1], message: "Expected number" }
    ])
    assert.strictEqual(
      error.message,
      'invalid data for cache.Odd@1 (2 issues): ["odd key"]: Expected number; list[1][1]: Expected number'
    )
  })
})

describe("Validation: requireKeys", () => {
  const Click = EventType.make("deals.DealClick", 1, EventType.requireKeys(["deal_id", "user_id", "code"]), {
    batch: { lingerMs: 0 }
  })

  it("present keys pass, whatever their values; other keys are kept", () => {
    const data = {
      deal_id: null,
      user_id: undefined,
      code: { nested: [1, "two"] },
      extra: false,
      more: 0
    }
    const decoded = EventType.decodeUnsafe(Click, data)
    assert.deepStrictEqual(decoded, data)
    assert.isTrue(Object.hasOwn(decoded, "user_id"), "a key set to undefined is present")
    assert.deepStrictEqual(EventType.decodeUnsafe(Click, { deal_id: 1, user_id: "u", code: "" }), {
      deal_id: 1,
      user_id: "u",
      code: ""
    })
  })

  it("each missing key is one issue at its path", () => {
    const all = throws(Errors.ValidationError, () => EventType.decodeUnsafe(Click, {}))
    assert.strictEqual(
      all.message,
      "invalid data for deals.DealClick@1 (3 issues): deal_id: Missing key; user_id: Missing key; code: Missing key"
    )
    assert.deepStrictEqual(all.issues, [
      { path: ["deal_id"], message: "Missing key" },
      { path: ["user_id"], message: "Missing key" },
      { path: ["code"], message: "Missing key" }
    ])
    const one = throws(Errors.ValidationError, () => EventType.decodeUnsafe(Click, { deal_id: 1, code: 2, other: 3 }))
    assert.strictEqual(one.message, "invalid data for deals.DealClick@1 (1 issue): user_id: Missing key")
    assert.deepStrictEqual(one.issues, [{ path: ["user_id"], message: "Missing key" }])
  })

  it("only own keys count", () => {
    const T = EventType.make("deals.Own", 1, EventType.requireKeys(["a", "constructor", "odd key"]))
    const error = throws(Errors.ValidationError, () => EventType.decodeUnsafe(T, Object.create({ a: 1 })))
    assert.strictEqual(
      error.message,
      'invalid data for deals.Own@1 (3 issues): a: Missing key; constructor: Missing key; ["odd key"]: Missing key'
    )
  })

  it("input that is not an object is one issue", () => {
    for (const data of [null, undefined, 42, "deal", true, [], ["deal_id"]]) {
      const error = throws(Errors.ValidationError, () => EventType.decodeUnsafe(Click, data))
      assert.strictEqual(error.message, "invalid data for deals.DealClick@1 (1 issue): Expected object", String(data))
      assert.deepStrictEqual(error.issues, [{ path: [], message: "Expected object" }])
    }
  })

  it.effect("through a trail: complete events are processed as given, incomplete ones rejected", () =>
    Effect.gen(function* () {
      const { process, dataOf } = recorder()
      const trail = yield* Trail.make({ source: "t", types: [Trail.route(Click, process)] })
      trail.logUnsafe("deals.DealClick", { deal_id: 7, user_id: "u1", code: "X", ref: "mail" })
      const error = yield* Effect.flip(trail.log("deals.DealClick", { deal_id: 8 }))
      assert.strictEqual(
        error.message,
        "invalid data for deals.DealClick@1 (2 issues): user_id: Missing key; code: Missing key"
      )
      yield* trail.flush
      assert.deepStrictEqual(dataOf("deals.DealClick@1"), [{ deal_id: 7, user_id: "u1", code: "X", ref: "mail" }])
      assert.deepStrictEqual(trail.statsUnsafe().types["deals.DealClick@1"]!.rejected, { invalid: 1 })
    })
  )
})

describe("Validation: metrics", () => {
  it.effect("the rejected counter reads the exact counts, by reason", () =>
    Effect.gen(function* () {
      const T = orderType()
      const trail = yield* Trail.make({ source: "t", types: [T] })
      for (let i = 0; i < 3; i++) throws(Errors.ValidationError, () => trail.logUnsafe("shop.Order", invalidInput()))
      yield* Effect.flip(trail.log("shop.Order", null))
      trail.logUnsafe("shop.Order", validInput())
      for (let i = 0; i < 2; i++) throws(Errors.EventNotFound, () => trail.logUnsafe("shop.Unknown", {}))
      const rejected = Metrics.series.rejected()
      const invalid = yield* Metric.value(Metric.withAttributes(rejected, { type: "shop.Order@1", reason: "invalid" }))
      const unknown = yield* Metric.value(Metric.withAttributes(rejected, { reason: "unknown_type" }))
      assert.strictEqual(invalid.count, 4)
      assert.strictEqual(unknown.count, 2)
      // read live: one more of each shows at once
      throws(Errors.ValidationError, () => trail.logUnsafe("shop.Order", {}))
      throws(Errors.EventNotFound, () => trail.logUnsafe("shop.Unknown", {}))
      const invalidNow = yield* Metric.value(
        Metric.withAttributes(rejected, { type: "shop.Order@1", reason: "invalid" })
      )
      const unknownNow = yield* Metric.value(Metric.withAttributes(rejected, { reason: "unknown_type" }))
      assert.strictEqual(invalidNow.count, 5)
      assert.strictEqual(unknownNow.count, 3)
      const accepted = yield* Metric.value(Metric.withAttributes(Metrics.accepted, { type: "shop.Order@1" }))
      assert.strictEqual(accepted.count, 1, "rejected events are not accepted")
    }).pipe(Effect.provideService(Metric.MetricRegistry, new Map()))
  )
})

describe("Validation: the typed API does not decode", () => {
  it.effect("typed data reaches the processor as given (the compiler checked it)", () =>
    Effect.gen(function* () {
      const T = orderType()
      const { process, dataOf } = recorder()
      const trail = yield* Trail.make({ source: "t", types: [Trail.route(T, process)] })
      const typed = { ...decodedOrder, extra: "kept" }
      assert.strictEqual(trail.logUnsafe(T, typed), "accepted")
      // data the schema would refuse, forced past the compiler: not checked either
      const forced = { id: 1, qty: "12" } as unknown as EventType.Data<typeof T>
      assert.strictEqual(yield* trail.log(T, forced), "accepted")
      yield* trail.flush
      const data = dataOf("shop.Order@1")
      assert.strictEqual(data[0], typed, "the very object given: no decoding, no copy")
      assert.strictEqual(data[1], forced)
      assert.deepStrictEqual(trail.statsUnsafe().rejected, { unknownType: 0, invalid: 0 })
      assert.strictEqual(trail.statsUnsafe().types["shop.Order@1"]!.processed, 2)
    })
  )
})
