import { assert, describe, it } from "@effect/vitest"
import { Schedule, Schema } from "effect"
import { Errors, EventType } from "../src/index.ts"

const S = Schema.Struct({ n: Schema.Number })

/** Runs `f`, which must throw an InvalidEventType, and returns the error. */
const invalid = (f: () => unknown): Errors.InvalidEventType => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, Errors.InvalidEventType)
    return e as Errors.InvalidEventType
  }
  return assert.fail("expected InvalidEventType")
}

const NAME_RULE = 'name must be dotted segments of letters, digits, _ or - (like "app.Name")'

describe("EventType defaults", () => {
  it("a type with no options gets the documented defaults", () => {
    const T = EventType.make("app.Thing", 2, S)
    assert.strictEqual(T.name, "app.Thing")
    assert.strictEqual(T.version, 2)
    assert.strictEqual(T.key, "app.Thing@2")
    assert.strictEqual(T.schema, S)
    assert.strictEqual(T.delivery, "must")
    assert.deepStrictEqual(T.batch, { maxSize: 512, lingerMs: 10 })
    assert.deepStrictEqual(T.mailbox, { capacity: 10_000, overflow: "backpressure" })
    assert.strictEqual(T.priority, 0)
    assert.strictEqual(T.concurrency, 1)
    assert.strictEqual(T.timeoutMs, 30_000)
    assert.strictEqual(T.retry, EventType.defaultRetry)
  })

  it("the exported defaults are the documented ones", () => {
    assert.strictEqual(EventType.defaults.delivery, "must")
    assert.deepStrictEqual(EventType.defaults.batch, { maxSize: 512, lingerMs: 10 })
    assert.deepStrictEqual(EventType.defaults.mailbox, { capacity: 10_000, overflow: "backpressure" })
    assert.strictEqual(EventType.defaults.priority, 0)
    assert.strictEqual(EventType.defaults.concurrency, 1)
    assert.strictEqual(EventType.defaults.timeoutMs, 30_000)
    assert.strictEqual(EventType.defaults.retry, EventType.defaultRetry)
  })

  it("a droppable type defaults to dropNewest; options override field by field", () => {
    const T = EventType.make("app.Drop", 1, S, { delivery: "droppable", batch: { lingerMs: 0 } })
    assert.strictEqual(T.delivery, "droppable")
    assert.deepStrictEqual(T.mailbox, { capacity: 10_000, overflow: "dropNewest" })
    assert.deepStrictEqual(T.batch, { maxSize: 512, lingerMs: 0 })
    const U = EventType.make("app.Drop", 2, S, { delivery: "droppable", mailbox: { capacity: 5 } })
    assert.deepStrictEqual(U.mailbox, { capacity: 5, overflow: "dropNewest" })
    const V = EventType.make("app.Must", 1, S, { mailbox: { capacity: 5 }, batch: { maxSize: 7 } })
    assert.deepStrictEqual(V.mailbox, { capacity: 5, overflow: "backpressure" })
    assert.deepStrictEqual(V.batch, { maxSize: 7, lingerMs: 10 })
  })

  it("every option is taken as given", () => {
    const retry = Schedule.recurs(2)
    const T = EventType.make("app.Custom", 3, S, {
      delivery: "droppable",
      batch: { maxSize: 1, lingerMs: 250 },
      priority: -5,
      mailbox: { capacity: 1, overflow: "dropOldest" },
      concurrency: 8,
      retry,
      timeoutMs: 0.5
    })
    assert.deepStrictEqual(T.batch, { maxSize: 1, lingerMs: 250 })
    assert.deepStrictEqual(T.mailbox, { capacity: 1, overflow: "dropOldest" })
    assert.strictEqual(T.priority, -5)
    assert.strictEqual(T.concurrency, 8)
    assert.strictEqual(T.retry, retry)
    assert.strictEqual(T.timeoutMs, 0.5)
    const B = EventType.make("app.Back", 1, S, { delivery: "droppable", mailbox: { overflow: "backpressure" } })
    assert.strictEqual(B.mailbox.overflow, "backpressure", "a droppable type may use backpressure")
  })

  it("accepts names of dotted segments of letters, digits, _ and -", () => {
    for (const name of ["a.b", "app.Name", "App.sub_part.Event-2", "x1.y2.z3", "A.B.C.D.E"]) {
      assert.strictEqual(EventType.make(name, 1, S).name, name)
    }
  })
})

describe("EventType keys and guards", () => {
  it("key is name@version; parseKey splits it back", () => {
    const T = EventType.make("train.StepFinished", 12, S)
    assert.strictEqual(T.key, "train.StepFinished@12")
    assert.deepStrictEqual(EventType.parseKey(T.key), { name: "train.StepFinished", version: 12 })
    assert.deepStrictEqual(EventType.parseKey("a.b@1"), { name: "a.b", version: 1 })
  })

  it("parseKey gives undefined for what is not a key", () => {
    for (const s of [
      "app.Thing",
      "app.Thing@",
      "app.Thing@0",
      "app.Thing@-1",
      "app.Thing@1.5",
      "app.Thing@x",
      "@3",
      ""
    ]) {
      assert.isUndefined(EventType.parseKey(s), JSON.stringify(s))
    }
  })

  it("parseKey splits at the last @", () => {
    assert.deepStrictEqual(EventType.parseKey("a@b@3"), { name: "a@b", version: 3 })
  })

  it("isEventType recognizes types only", () => {
    assert.isTrue(EventType.isEventType(EventType.make("app.Thing", 1, S)))
    for (const u of [null, undefined, 1, "app.Thing@1", {}, { key: "app.Thing@1", name: "app.Thing", version: 1 }]) {
      assert.isFalse(EventType.isEventType(u), String(u))
    }
  })
})

describe("EventType validation", () => {
  const cases: Array<readonly [string, () => unknown, string]> = [
    ["a name without a dot", () => EventType.make("app", 1, S), `invalid event type app@1: ${NAME_RULE}`],
    ["an empty name", () => EventType.make("", 1, S), `invalid event type @1: ${NAME_RULE}`],
    ["a leading dot", () => EventType.make(".app.Name", 1, S), `invalid event type .app.Name@1: ${NAME_RULE}`],
    ["a trailing dot", () => EventType.make("app.", 1, S), `invalid event type app.@1: ${NAME_RULE}`],
    ["an empty segment", () => EventType.make("app..Name", 1, S), `invalid event type app..Name@1: ${NAME_RULE}`],
    [
      "a segment starting with a digit",
      () => EventType.make("app.1Name", 1, S),
      `invalid event type app.1Name@1: ${NAME_RULE}`
    ],
    ["a space", () => EventType.make("app.My Name", 1, S), `invalid event type app.My Name@1: ${NAME_RULE}`],
    ["an @ in the name", () => EventType.make("app.Name@2", 1, S), `invalid event type app.Name@2@1: ${NAME_RULE}`],
    [
      "version 0",
      () => EventType.make("app.Thing", 0, S),
      "invalid event type app.Thing@0: version must be a positive integer"
    ],
    [
      "a negative version",
      () => EventType.make("app.Thing", -1, S),
      "invalid event type app.Thing@-1: version must be a positive integer"
    ],
    [
      "a fractional version",
      () => EventType.make("app.Thing", 1.5, S),
      "invalid event type app.Thing@1.5: version must be a positive integer"
    ],
    [
      "a NaN version",
      () => EventType.make("app.Thing", Number.NaN, S),
      "invalid event type app.Thing@NaN: version must be a positive integer"
    ],
    [
      "an unsafe version",
      () => EventType.make("app.Thing", 2 ** 53, S),
      "invalid event type app.Thing@9007199254740992: version must be a positive integer"
    ],
    [
      "an unknown delivery",
      () => EventType.make("app.Thing", 1, S, { delivery: "sometimes" as EventType.Delivery }),
      'invalid event type app.Thing@1: delivery must be "must" or "droppable"'
    ],
    [
      "batch.maxSize 0",
      () => EventType.make("app.Thing", 1, S, { batch: { maxSize: 0 } }),
      "invalid event type app.Thing@1: batch.maxSize must be a positive integer"
    ],
    [
      "a fractional batch.maxSize",
      () => EventType.make("app.Thing", 1, S, { batch: { maxSize: 2.5 } }),
      "invalid event type app.Thing@1: batch.maxSize must be a positive integer"
    ],
    [
      "a negative batch.lingerMs",
      () => EventType.make("app.Thing", 1, S, { batch: { lingerMs: -1 } }),
      "invalid event type app.Thing@1: batch.lingerMs must be >= 0"
    ],
    [
      "a NaN batch.lingerMs",
      () => EventType.make("app.Thing", 1, S, { batch: { lingerMs: Number.NaN } }),
      "invalid event type app.Thing@1: batch.lingerMs must be >= 0"
    ],
    [
      "an infinite batch.lingerMs",
      () => EventType.make("app.Thing", 1, S, { batch: { lingerMs: Number.POSITIVE_INFINITY } }),
      "invalid event type app.Thing@1: batch.lingerMs must be >= 0"
    ],
    [
      "mailbox.capacity 0",
      () => EventType.make("app.Thing", 1, S, { mailbox: { capacity: 0 } }),
      "invalid event type app.Thing@1: mailbox.capacity must be an integer from 1 to 67108864"
    ],
    [
      "an infinite mailbox.capacity",
      () => EventType.make("app.Thing", 1, S, { mailbox: { capacity: Number.POSITIVE_INFINITY } }),
      "invalid event type app.Thing@1: mailbox.capacity must be an integer from 1 to 67108864"
    ],
    [
      "a mailbox.capacity past the largest (2^26)",
      () => EventType.make("app.Thing", 1, S, { mailbox: { capacity: 2 ** 26 + 1 } }),
      "invalid event type app.Thing@1: mailbox.capacity must be an integer from 1 to 67108864"
    ],
    [
      "an unknown overflow",
      () =>
        EventType.make("app.Thing", 1, S, {
          delivery: "droppable",
          mailbox: { overflow: "dropAll" as EventType.Overflow }
        }),
      'invalid event type app.Thing@1: mailbox.overflow must be "backpressure", "dropNewest" or "dropOldest"'
    ],
    [
      "a must type with dropOldest",
      () => EventType.make("app.Thing", 1, S, { mailbox: { overflow: "dropOldest" } }),
      'invalid event type app.Thing@1: a must type is never dropped: its mailbox overflow must be "backpressure", not "dropOldest"'
    ],
    [
      "a must type with dropNewest (delivery given)",
      () => EventType.make("app.Thing", 1, S, { delivery: "must", mailbox: { overflow: "dropNewest" } }),
      'invalid event type app.Thing@1: a must type is never dropped: its mailbox overflow must be "backpressure", not "dropNewest"'
    ],
    [
      "concurrency 0",
      () => EventType.make("app.Thing", 1, S, { concurrency: 0 }),
      "invalid event type app.Thing@1: concurrency must be a positive integer"
    ],
    [
      "a fractional concurrency",
      () => EventType.make("app.Thing", 1, S, { concurrency: 1.5 }),
      "invalid event type app.Thing@1: concurrency must be a positive integer"
    ],
    [
      "timeoutMs 0",
      () => EventType.make("app.Thing", 1, S, { timeoutMs: 0 }),
      "invalid event type app.Thing@1: timeoutMs must be > 0"
    ],
    [
      "a NaN timeoutMs",
      () => EventType.make("app.Thing", 1, S, { timeoutMs: Number.NaN }),
      "invalid event type app.Thing@1: timeoutMs must be > 0"
    ],
    [
      "a NaN priority",
      () => EventType.make("app.Thing", 1, S, { priority: Number.NaN }),
      "invalid event type app.Thing@1: priority must be a finite number"
    ],
    [
      "an infinite priority",
      () => EventType.make("app.Thing", 1, S, { priority: Number.NEGATIVE_INFINITY }),
      "invalid event type app.Thing@1: priority must be a finite number"
    ]
  ]

  for (const [what, f, message] of cases) {
    it(`refuses ${what}`, () => {
      const error = invalid(f)
      assert.strictEqual(error.message, message)
      assert.strictEqual(error._tag, "InvalidEventType")
      assert.strictEqual(error.code, "CAIRN_INVALID_EVENT_TYPE")
      assert.strictEqual(`${error.key}: ${error.reason}`, message.slice("invalid event type ".length))
    })
  }

  it("reports the name before the version, and the version before any option", () => {
    assert.strictEqual(invalid(() => EventType.make("bad", 0, S, { concurrency: 0 })).reason, NAME_RULE)
    assert.strictEqual(
      invalid(() => EventType.make("app.Ok", 0, S, { concurrency: 0 })).reason,
      "version must be a positive integer"
    )
  })
})
