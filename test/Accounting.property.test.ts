import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import type { Overflow } from "../src/EventType.ts"
import { Mailbox, type Segment } from "../src/Mailbox.ts"

/**
 * Random operation sequences against a Mailbox, checked after every step against
 * the accounting identity and against a plain model: which events were taken, in
 * which order, and when a flush watermark becomes terminal.
 */

type Op =
  | { readonly _tag: "offer"; readonly extra: boolean }
  | { readonly _tag: "take"; readonly max: number }
  | {
      readonly _tag: "settle"
      readonly pick: number
      readonly outcome: "processed" | "deadLettered" | "failed" | "shutdown"
    }
  | { readonly _tag: "mark" }
  | { readonly _tag: "close" }
  | { readonly _tag: "drain" }

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ _tag: fc.constant("offer" as const), extra: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("take" as const), max: fc.integer({ min: 1, max: 12 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      _tag: fc.constant("settle" as const),
      pick: fc.nat(),
      outcome: fc.constantFrom("processed" as const, "deadLettered" as const, "failed" as const, "shutdown" as const)
    })
  },
  { weight: 1, arbitrary: fc.record({ _tag: fc.constant("mark" as const) }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "close" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "drain" as const }) }
)

const check = (overflow: Overflow, capacity: number, chunk: number, ops: ReadonlyArray<Op>) => {
  const mb = new Mailbox<number>(capacity, overflow, chunk, 0)
  // model
  let queue: Array<number> = []
  const terminal = new Set<number>()
  const taken: Array<number> = []
  const inFlight: Array<{ segment: Segment; items: Array<number> }> = []
  const marks: Array<{ mark: number; before: Array<number> }> = []
  const entered: Array<number> = []
  const evicted = new Set<number>()
  const withExtra = new Set<number>()
  let next = 0
  let closed = false

  for (const o of ops) {
    switch (o._tag) {
      case "offer": {
        const n = next++
        if (o.extra) withExtra.add(n)
        const result = mb.offer(n, n * 2, o.extra ? `x${n}` : undefined)
        if (closed) assert.strictEqual(result, "closed")
        else if (queue.length < capacity) {
          assert.strictEqual(result, "accepted")
          queue.push(n)
          entered.push(n)
        } else if (overflow === "backpressure") {
          assert.strictEqual(result, "full")
        } else if (overflow === "dropNewest") {
          assert.strictEqual(result, "dropped")
        } else {
          assert.strictEqual(result, "accepted")
          const oldest = queue.shift()!
          terminal.add(oldest)
          evicted.add(oldest)
          queue.push(n)
          entered.push(n)
        }
        break
      }
      case "take":
      case "drain": {
        const max = o._tag === "take" ? o.max : Number.MAX_SAFE_INTEGER
        const t = o._tag === "take" ? mb.take(max) : mb.drain()
        if (queue.length === 0) {
          assert.isUndefined(t)
          break
        }
        assert.isDefined(t)
        const items = t!.items
        assert.isTrue(items.length >= 1 && items.length <= Math.min(max, queue.length))
        assert.deepStrictEqual(items, queue.slice(0, items.length), "takes come in arrival order")
        items.forEach((item, i) => {
          assert.strictEqual(t!.base + t!.offsets[i]!, item * 2, "stamp travels with its item")
          assert.strictEqual(
            t!.extras?.[i],
            withExtra.has(item) ? `x${item}` : undefined,
            "extra travels with its item"
          )
        })
        queue = queue.slice(items.length)
        taken.push(...items)
        inFlight.push({ segment: t!.segment, items })
        break
      }
      case "settle": {
        if (inFlight.length === 0) break
        const [run] = inFlight.splice(o.pick % inFlight.length, 1)
        mb.settle(run!.segment, o.outcome)
        for (const item of run!.items) terminal.add(item)
        break
      }
      case "mark":
        marks.push({ mark: mb.watermark(), before: entered.slice() })
        break
      case "close":
        mb.close()
        closed = true
        break
    }
    // the identity, at every step
    const c = mb.counts()
    assert.strictEqual(
      c.accepted,
      c.processed + c.queued + c.inFlight + c.dropped.overflow + c.dropped.shutdown + c.dropped.failed + c.deadLettered
    )
    assert.strictEqual(c.queued, queue.length)
    assert.strictEqual(
      c.inFlight,
      inFlight.reduce((n, r) => n + r.items.length, 0)
    )
    // every flush mark is terminal exactly when everything that entered before it is
    for (const { mark, before } of marks) {
      assert.strictEqual(
        mb.isTerminal(mark),
        before.every((item) => terminal.has(item))
      )
    }
  }
  // what was taken is what entered, in order, minus what the policy evicted and what is still queued
  const stillQueued = new Set(queue)
  assert.deepStrictEqual(
    taken,
    entered.filter((item) => !evicted.has(item) && !stillQueued.has(item))
  )
}

describe("accounting (property)", () => {
  for (const overflow of ["backpressure", "dropNewest", "dropOldest"] as const) {
    it(`holds for random operation sequences with ${overflow}`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 20 }),
          fc.integer({ min: 1, max: 8 }),
          fc.array(op, { minLength: 1, maxLength: 150 }),
          (capacity, chunk, ops) => check(overflow, capacity, chunk, ops)
        ),
        { numRuns: 250 }
      )
    })
  }
})
