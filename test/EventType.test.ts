import { assert, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import { Errors, EventType } from "../src/index.ts"

const S = Schema.Struct({ n: Schema.Number })

const invalid = (f: () => unknown): Errors.InvalidEventType => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, Errors.InvalidEventType)
    return e as Errors.InvalidEventType
  }
  return assert.fail("expected InvalidEventType")
}

describe("EventType", () => {
  it("has a key and documented defaults", () => {
    const T = EventType.make("app.Thing", 2, S)
    assert.strictEqual(T.key, "app.Thing@2")
    assert.strictEqual(T.delivery, "must")
    assert.deepStrictEqual(T.batch, { maxSize: 512, lingerMs: 10 })
    assert.deepStrictEqual(T.mailbox, { capacity: 10_000, overflow: "backpressure" })
    assert.strictEqual(T.priority, 0)
    assert.strictEqual(T.concurrency, 1)
    assert.strictEqual(T.timeoutMs, 30_000)
    assert.strictEqual(T.retry, EventType.defaultRetry)
    assert.isTrue(EventType.isEventType(T))
    assert.isFalse(EventType.isEventType({ key: "app.Thing@2" }))
  })

  it("a droppable type defaults to dropNewest; options override field by field", () => {
    const T = EventType.make("app.Drop", 1, S, { delivery: "droppable", batch: { lingerMs: 0 } })
    assert.deepStrictEqual(T.mailbox, { capacity: 10_000, overflow: "dropNewest" })
    assert.deepStrictEqual(T.batch, { maxSize: 512, lingerMs: 0 })
  })

  it("parses keys", () => {
    assert.deepStrictEqual(EventType.parseKey("app.Thing@12"), { name: "app.Thing", version: 12 })
    assert.isUndefined(EventType.parseKey("app.Thing"))
    assert.isUndefined(EventType.parseKey("app.Thing@0"))
    assert.isUndefined(EventType.parseKey("@3"))
  })

  it("refuses invalid definitions with literal messages", () => {
    const cases: Array<[() => unknown, string]> = [
      [
        () => EventType.make("Thing", 1, S),
        'invalid event type Thing@1: name must be dotted segments of letters, digits, _ or - (like "app.Name")'
      ],
      [() => EventType.make("app.Thing", 0, S), "invalid event type app.Thing@0: version must be a positive integer"],
      [
        () => EventType.make("app.Thing", 1.5, S),
        "invalid event type app.Thing@1.5: version must be a positive integer"
      ],
      [
        () => EventType.make("app.Thing", 1, S, { batch: { maxSize: 0 } }),
        "invalid event type app.Thing@1: batch.maxSize must be a positive integer"
      ],
      [
        () => EventType.make("app.Thing", 1, S, { batch: { lingerMs: -1 } }),
        "invalid event type app.Thing@1: batch.lingerMs must be >= 0"
      ],
      [
        () => EventType.make("app.Thing", 1, S, { mailbox: { capacity: 0 } }),
        "invalid event type app.Thing@1: mailbox.capacity must be a positive integer"
      ],
      [
        () => EventType.make("app.Thing", 1, S, { mailbox: { overflow: "dropOldest" } }),
        'invalid event type app.Thing@1: a must type is never dropped: its mailbox overflow must be "backpressure", not "dropOldest"'
      ],
      [
        () => EventType.make("app.Thing", 1, S, { concurrency: 0 }),
        "invalid event type app.Thing@1: concurrency must be a positive integer"
      ],
      [
        () => EventType.make("app.Thing", 1, S, { timeoutMs: 0 }),
        "invalid event type app.Thing@1: timeoutMs must be > 0"
      ],
      [
        () => EventType.make("app.Thing", 1, S, { priority: Number.NaN }),
        "invalid event type app.Thing@1: priority must be a finite number"
      ]
    ]
    for (const [f, message] of cases) {
      const error = invalid(f)
      assert.strictEqual(error.message, message)
      assert.strictEqual(error.code, "CAIRN_INVALID_EVENT_TYPE")
    }
  })
})
