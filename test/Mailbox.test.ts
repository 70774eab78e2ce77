import * as v8 from "node:v8"
import * as vm from "node:vm"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Mailbox, maxCapacity, type Taken } from "../src/Mailbox.ts"

interface Entry {
  readonly item: number
  readonly stamp: number
  readonly extra: unknown
}

/** The items of a take, each with its stamp and extra. */
const entries = (t: Taken<number>): Array<Entry> =>
  t.items.map((item, i) => ({ item, stamp: t.base + t.offsets[i]!, extra: t.extras?.[i] }))

/** Takes (and settles as processed) everything queued, `max` at a time. */
const drainAll = (mb: Mailbox<number>, max = 1_000): Array<Entry> => {
  const out: Array<Entry> = []
  for (let t = mb.take(max); t !== undefined; t = mb.take(max)) {
    out.push(...entries(t))
    mb.settle(t.segment, "processed")
  }
  return out
}

const balanced = (mb: Mailbox<number>) => {
  const c = mb.counts()
  assert.strictEqual(
    c.accepted,
    c.processed + c.queued + c.inFlight + c.dropped.overflow + c.dropped.shutdown + c.dropped.failed + c.deadLettered,
    `accounting broken: ${JSON.stringify(c)}`
  )
}

/** Waiters are resumed through the scheduler: let ready fibers run. */
const yieldMany = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

describe("Mailbox: order, stamps and extras", () => {
  it("the ring doubles past its first 16 slots and a single take returns 300 items in order", () => {
    const mb = new Mailbox<number>(1_000, "backpressure")
    const expected: Array<Entry> = []
    for (let i = 0; i < 300; i++) {
      const extra = i % 11 === 0 ? `p${i}` : undefined
      assert.strictEqual(mb.offer(i, 5_000 + i * 7, extra), "accepted")
      expected.push({ item: i, stamp: 5_000 + i * 7, extra })
    }
    assert.strictEqual(mb.size, 300)
    const t = mb.take(1_000)!
    assert.strictEqual(t.items.length, 300)
    assert.strictEqual(t.offsets.length, 300)
    assert.deepStrictEqual(entries(t), expected)
    assert.deepStrictEqual(t.segment, { start: 0, end: 300, done: false })
    assert.strictEqual(mb.size, 0)
    assert.isUndefined(mb.take(10))
  })

  it("interleaved offers and takes keep FIFO order, stamps and extras across the ring's wrap and growth", () => {
    // takes of every size: the head wraps around the ring, and the ring grows while wrapped
    for (const chunkSize of [1, 3, 8, 16, 64, 512]) {
      const mb = new Mailbox<number>(2_000, "backpressure", chunkSize, 1_000)
      const expected: Array<Entry> = []
      const got: Array<Entry> = []
      let next = 0
      let segmentStart = 0
      for (let round = 0; round < 60; round++) {
        const n = (round * 37) % 90
        for (let i = 0; i < n; i++) {
          const extra = next % 7 === 0 ? { parent: next } : undefined
          // stamps jump back and forth: offsets may be negative
          const stamp = 1_000 + ((next * 7919) % 5_000) - 2_500
          assert.strictEqual(mb.offer(next, stamp, extra), "accepted")
          expected.push({ item: next, stamp, extra })
          next++
        }
        const t = mb.take((round % 6) * 25 + 1)
        if (t !== undefined) {
          assert.strictEqual(t.segment.start, segmentStart, "queue indices are consecutive")
          assert.strictEqual(t.segment.end, segmentStart + t.items.length)
          segmentStart = t.segment.end
          got.push(...entries(t))
          mb.settle(t.segment, "processed")
        }
        assert.strictEqual(mb.size, expected.length - got.length)
        balanced(mb)
      }
      got.push(...drainAll(mb, 13))
      assert.deepStrictEqual(got, expected, `chunkSize ${chunkSize}`)
      assert.strictEqual(mb.counts().processed, next)
      assert.strictEqual(mb.counts().accepted, next)
    }
  })

  it("a take of stamps far apart gives every item its own stamp", () => {
    const mb = new Mailbox<number>(100, "backpressure", 4, 0)
    const stamps = [10, 11, 12, 13, 1_000_000, 1_000_001, 999_999, 7, 42, 43]
    for (const [i, s] of stamps.entries()) mb.offer(i, s)
    const first = mb.take(3)!
    assert.deepStrictEqual(
      entries(first).map((e) => e.stamp),
      [10, 11, 12]
    )
    const rest = mb.take(100)!
    assert.deepStrictEqual(
      entries(rest).map((e) => e.stamp),
      stamps.slice(3)
    )
    assert.deepStrictEqual(rest.items, [3, 4, 5, 6, 7, 8, 9])
  })

  it("extras is undefined when no item of the take has one, even if an earlier take had some", () => {
    const mb = new Mailbox<number>(100, "backpressure", 4)
    mb.offer(0, 0, "x")
    mb.offer(1, 0)
    mb.offer(2, 0)
    mb.offer(3, 0)
    mb.offer(4, 0)
    const a = mb.take(1)!
    assert.deepStrictEqual(a.extras, ["x"])
    const b = mb.take(4)!
    assert.deepStrictEqual(b.items, [1, 2, 3, 4])
    assert.isUndefined(b.extras, "the ring has an extras column, but none of these items has one")
  })

  it("a take has exactly one extra slot per item", () => {
    const mb = new Mailbox<number>(100, "backpressure")
    mb.offer(1, 10)
    mb.offer(2, 11, "parent")
    mb.offer(3, 12)
    const t = mb.take(10)!
    assert.deepStrictEqual(t.items, [1, 2, 3])
    assert.strictEqual(t.offsets.length, 3)
    assert.strictEqual(t.extras?.[1], "parent")
    assert.strictEqual(t.extras?.length, 3)
  })

  it("a take hands out copies of its own: later offers never write into them", () => {
    const mb = new Mailbox<number>(1_000, "backpressure", 10)
    for (let i = 0; i < 25; i++) mb.offer(i, i)
    const first = mb.take(10)!
    assert.deepStrictEqual(first.items, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert.strictEqual(mb.size, 15)
    // offering more must not write into the arrays handed out
    for (let i = 25; i < 40; i++) mb.offer(i, i)
    assert.deepStrictEqual(first.items, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    const rest = mb.take(100)!
    assert.deepStrictEqual(
      rest.items,
      Array.from({ length: 30 }, (_, i) => i + 10)
    )
    assert.deepStrictEqual(
      entries(rest).map((e) => e.stamp),
      Array.from({ length: 30 }, (_, i) => i + 10)
    )
  })

  it("take(max) takes at most max and at most what is queued; an empty mailbox gives undefined", () => {
    const mb = new Mailbox<number>(10, "backpressure")
    assert.isUndefined(mb.take(5))
    assert.isUndefined(mb.drain())
    for (let i = 0; i < 4; i++) mb.offer(i, 0)
    assert.deepStrictEqual(mb.take(3)!.items, [0, 1, 2])
    assert.deepStrictEqual(mb.take(3)!.items, [3])
    assert.isUndefined(mb.take(3))
    assert.strictEqual(mb.counts().inFlight, 4)
  })
})

describe("Mailbox: the ring", () => {
  it("grows only up to the capacity: a full ring refuses, then takes and offers go on around it", () => {
    const mb = new Mailbox<number>(100, "backpressure", 10)
    for (let i = 0; i < 100; i++) assert.strictEqual(mb.offer(i, i), "accepted")
    assert.strictEqual(mb.offer(100, 100), "full")
    assert.isAtMost(mb.slots, 128)
    const expected: Array<number> = []
    for (let i = 0; i < 100; i++) expected.push(i)
    const got: Array<number> = []
    // the head moves around the full ring many times
    for (let next = 100; next < 2_000; next++) {
      const t = mb.take(7)!
      got.push(...t.items)
      mb.settle(t.segment, "processed")
      for (let k = 0; k < t.items.length; k++) {
        assert.strictEqual(mb.offer(next + k, next + k), "accepted")
        expected.push(next + k)
      }
      next += t.items.length - 1
    }
    got.push(...drainAll(mb).map((e) => e.item))
    assert.deepStrictEqual(got, expected)
    assert.isAtMost(mb.slots, 128)
    balanced(mb)
  })

  it("an oversized ring is halved after it stays quiet, never below room for two batches, and keeps working", () => {
    const mb = new Mailbox<number>(100_000, "backpressure", 256)
    for (let i = 0; i < 50_000; i++) mb.offer(i, i)
    assert.isAtLeast(mb.slots, 50_000)
    drainAll(mb, 50_000)
    const burst = mb.slots
    for (let i = 0; i < 64 * 12; i++) {
      mb.offer(i, i)
      const t = mb.take(10)!
      mb.settle(t.segment, "processed")
    }
    assert.isBelow(mb.slots, burst)
    assert.strictEqual(mb.slots, 512, "floor: twice the batch size, as a power of two")
    // and a new burst grows it again, in order
    for (let i = 0; i < 3_000; i++) mb.offer(i, i)
    assert.deepStrictEqual(
      drainAll(mb, 256).map((e) => e.item),
      Array.from({ length: 3_000 }, (_, i) => i)
    )
    balanced(mb)
  })

  it("stamps are kept as small offsets once the queue has emptied, whatever the base given", () => {
    const now = 1_780_000_000_000
    const mb = new Mailbox<number>(100, "backpressure", 10, 0)
    mb.offer(0, now)
    const first = mb.take(10)!
    assert.strictEqual(first.base + first.offsets[0]!, now)
    mb.offer(1, now + 5)
    mb.offer(2, now + 3)
    const second = mb.take(10)!
    assert.deepStrictEqual(
      second.offsets.map((o) => second.base + o),
      [now + 5, now + 3]
    )
    for (const o of second.offsets) assert.isBelow(Math.abs(o), 2 ** 30, "a small integer, not a boxed number")
  })

  it("keeps no reference to what left it once swept: taken, evicted and drained items can be collected", async () => {
    // a collection on demand, without running the test process with --expose-gc
    v8.setFlagsFromString("--expose-gc")
    const gc = vm.runInNewContext("gc") as () => void
    const mb = new Mailbox<{ payload: Array<number> }>(4, "dropOldest", 2)
    const refs: Array<WeakRef<object>> = []
    const offer = (stamp: number, extra?: unknown) => {
      const item = { payload: new Array(1_000).fill(stamp) }
      refs.push(new WeakRef(item))
      mb.offer(item, stamp, extra)
    }
    for (let i = 0; i < 6; i++) offer(i, { parent: i }) // two evicted (dropOldest)
    let taken = mb.take(3)
    mb.settle(taken!.segment, "processed")
    taken = undefined
    assert.isTrue(mb.stale, "a take leaves its slots to be swept")
    mb.sweep()
    assert.isFalse(mb.stale)
    await new Promise((resolve) => setTimeout(resolve, 0))
    gc()
    // the five that left are gone; the one still queued is not
    assert.deepStrictEqual(
      refs.map((r) => r.deref() === undefined),
      [true, true, true, true, true, false]
    )
    taken = mb.drain()
    assert.strictEqual(taken!.items[0]!.payload[0], 5, "the sweep left the queued item in place")
    mb.settle(taken!.segment, "processed")
    taken = undefined
    // drain sweeps by itself; the ring stays (an empty mailbox keeps its slots), the items must not
    await new Promise((resolve) => setTimeout(resolve, 0))
    gc()
    assert.deepStrictEqual(
      refs.map((r) => r.deref() === undefined),
      refs.map(() => true)
    )
    assert.strictEqual(mb.size, 0)
  })

  it("a sweep clears only what left, across a wrapped ring", () => {
    const mb = new Mailbox<number>(64, "backpressure", 8)
    for (let i = 0; i < 12; i++) mb.offer(i, 0)
    mb.settle(mb.take(10)!.segment, "processed")
    // the ring (16 slots) wraps: 2 queued at slots 10-11, then 10 more at 12-15 and 0-5
    for (let i = 12; i < 22; i++) mb.offer(i, 0)
    mb.settle(mb.take(4)!.segment, "processed")
    mb.sweep()
    const rest = mb.drain()!
    assert.deepStrictEqual(rest.items, [14, 15, 16, 17, 18, 19, 20, 21])
    mb.settle(rest.segment, "processed")
    for (let i = 0; i < 5; i++) assert.strictEqual(mb.offer(100 + i, 0), "accepted")
    assert.deepStrictEqual(mb.drain()!.items, [100, 101, 102, 103, 104])
  })

  it("a capacity outside 1..maxCapacity is a RangeError", () => {
    assert.throws(() => new Mailbox<number>(0, "backpressure"), RangeError)
    assert.throws(() => new Mailbox<number>(maxCapacity + 1, "backpressure"), RangeError)
    assert.throws(() => new Mailbox<number>(1.5, "backpressure"), RangeError)
    // the largest is fine: the ring grows on demand
    assert.strictEqual(new Mailbox<number>(maxCapacity, "backpressure").offer(1, 0), "accepted")
  })
})

describe("Mailbox: overflow policies", () => {
  it("backpressure: a full mailbox refuses with full, without counting; refuseFull counts", () => {
    const mb = new Mailbox<number>(3, "backpressure")
    assert.deepStrictEqual(
      [1, 2, 3, 4, 5].map((n) => mb.offer(n, 0)),
      ["accepted", "accepted", "accepted", "full", "full"]
    )
    assert.strictEqual(mb.offer(6, 0, "with extra"), "full")
    const c = mb.counts()
    assert.strictEqual(c.refused.full, 0, "offer does not count a full refusal")
    assert.strictEqual(c.accepted, 3)
    assert.strictEqual(c.queued, 3)
    assert.strictEqual(c.dropped.overflow, 0)
    assert.strictEqual(mb.watermark(), 3, "a refused event does not enter")
    mb.refuseFull()
    mb.refuseFull()
    assert.strictEqual(mb.counts().refused.full, 2)
    assert.strictEqual(mb.counts().accepted, 3, "refusals are counted apart")
    balanced(mb)
    const t = mb.take(1)!
    assert.strictEqual(mb.offer(7, 0), "accepted", "room again after a take")
    assert.strictEqual(mb.offer(8, 0), "full")
    mb.settle(t.segment, "processed")
    assert.deepStrictEqual(
      drainAll(mb).map((e) => e.item),
      [2, 3, 7]
    )
    balanced(mb)
  })

  it("dropNewest keeps the oldest and counts each drop as accepted and dropped", () => {
    const mb = new Mailbox<number>(3, "dropNewest")
    const before = mb.watermark()
    const results = [1, 2, 3, 4, 5].map((n) => mb.offer(n, n, n === 5 ? "x" : undefined))
    assert.deepStrictEqual(results, ["accepted", "accepted", "accepted", "dropped", "dropped"])
    const c = mb.counts()
    assert.strictEqual(c.dropped.overflow, 2)
    assert.strictEqual(c.accepted, 5)
    assert.strictEqual(c.queued, 3)
    assert.deepStrictEqual(c.refused, { full: 0, closed: 0 })
    assert.strictEqual(mb.watermark(), before + 3, "a dropped event never enters the queue")
    balanced(mb)
    assert.deepStrictEqual(drainAll(mb), [
      { item: 1, stamp: 1, extra: undefined },
      { item: 2, stamp: 2, extra: undefined },
      { item: 3, stamp: 3, extra: undefined }
    ])
    balanced(mb)
  })

  it("dropOldest keeps the newest; an evicted event is terminal at once", () => {
    const mb = new Mailbox<number>(3, "dropOldest")
    for (let i = 1; i <= 3; i++) mb.offer(i, i, `e${i}`)
    const mark = mb.watermark()
    assert.isFalse(mb.isTerminal(mark))
    assert.strictEqual(mb.offer(4, 4), "accepted")
    assert.strictEqual(mb.offer(5, 5), "accepted")
    assert.strictEqual(mb.counts().dropped.overflow, 2)
    assert.strictEqual(mb.counts().accepted, 5)
    assert.strictEqual(mb.size, 3)
    assert.isFalse(mb.isTerminal(mark), "event 3 is still queued")
    assert.isTrue(mb.isTerminal(2), "events 1 and 2 were evicted: terminal")
    mb.offer(6, 6)
    assert.isTrue(mb.isTerminal(mark), "1, 2 and 3 were evicted: terminal")
    balanced(mb)
    assert.deepStrictEqual(drainAll(mb), [
      { item: 4, stamp: 4, extra: undefined },
      { item: 5, stamp: 5, extra: undefined },
      { item: 6, stamp: 6, extra: undefined }
    ])
  })

  it("dropOldest evicts across the ring's wrap and never leaks an evicted extra", () => {
    const mb = new Mailbox<number>(5, "dropOldest", 2)
    for (let i = 0; i < 23; i++) mb.offer(i, 100 + i, i % 2 === 0 ? `e${i}` : undefined)
    assert.strictEqual(mb.counts().dropped.overflow, 18)
    const got = drainAll(mb, 2)
    assert.deepStrictEqual(got, [
      { item: 18, stamp: 118, extra: "e18" },
      { item: 19, stamp: 119, extra: undefined },
      { item: 20, stamp: 120, extra: "e20" },
      { item: 21, stamp: 121, extra: undefined },
      { item: 22, stamp: 122, extra: "e22" }
    ])
    assert.isTrue(mb.isTerminal(mb.watermark()))
    balanced(mb)
  })
})

describe("Mailbox: close, drain and settle", () => {
  it("closed refuses and counts refused.closed; what was queued can still be drained", () => {
    const mb = new Mailbox<number>(100, "backpressure", 4)
    for (let i = 0; i < 9; i++) mb.offer(i, 0)
    mb.close()
    mb.close()
    assert.isTrue(mb.closed)
    assert.strictEqual(mb.offer(99, 0), "closed")
    assert.strictEqual(mb.offer(100, 0, "x"), "closed")
    let c = mb.counts()
    assert.strictEqual(c.refused.closed, 2)
    assert.strictEqual(c.accepted, 9, "refused events are not accepted")
    assert.strictEqual(mb.watermark(), 9)
    const rest = mb.drain()!
    assert.deepStrictEqual(rest.items, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    assert.isUndefined(mb.drain())
    mb.settle(rest.segment, "shutdown")
    c = mb.counts()
    assert.strictEqual(c.dropped.shutdown, 9)
    assert.strictEqual(c.inFlight, 0)
    assert.isTrue(mb.isTerminal(mb.watermark()))
    balanced(mb)
  })

  it("a full dropping mailbox still refuses once closed", () => {
    for (const overflow of ["dropNewest", "dropOldest"] as const) {
      const mb = new Mailbox<number>(2, overflow)
      mb.offer(1, 0)
      mb.offer(2, 0)
      mb.close()
      assert.strictEqual(mb.offer(3, 0), "closed", overflow)
      assert.strictEqual(mb.counts().dropped.overflow, 0, overflow)
      assert.strictEqual(mb.counts().refused.closed, 1, overflow)
      assert.deepStrictEqual(mb.drain()!.items, [1, 2], overflow)
    }
  })

  it("each outcome lands in its own counter; settling twice counts once", () => {
    const mb = new Mailbox<number>(100, "backpressure")
    for (let i = 0; i < 15; i++) mb.offer(i, 0)
    const outcomes = ["processed", "deadLettered", "failed", "shutdown", "overflow"] as const
    for (const outcome of outcomes) {
      const t = mb.take(3)!
      mb.settle(t.segment, outcome)
      mb.settle(t.segment, "processed")
      assert.isTrue(t.segment.done)
      balanced(mb)
    }
    assert.deepStrictEqual(mb.counts(), {
      accepted: 15,
      processed: 3,
      queued: 0,
      inFlight: 0,
      dropped: { overflow: 3, shutdown: 3, failed: 3 },
      deadLettered: 3,
      refused: { full: 0, closed: 0 }
    })
  })
})

describe("Mailbox: flush watermarks", () => {
  it("stay exact when batches settle out of order", () => {
    const mb = new Mailbox<number>(100, "backpressure", 5)
    for (let i = 0; i < 10; i++) mb.offer(i, 0)
    const markA = mb.watermark() - 5 // the first five
    const a = mb.take(5)!
    const b = mb.take(5)!
    const markB = mb.watermark()
    assert.strictEqual(markB, 10)
    mb.settle(b.segment, "processed")
    assert.isFalse(mb.isTerminal(markA), "the first batch has not settled")
    assert.isFalse(mb.isTerminal(markB))
    assert.isTrue(mb.isTerminal(0))
    mb.settle(a.segment, "deadLettered")
    assert.isTrue(mb.isTerminal(markA))
    assert.isTrue(mb.isTerminal(markB))
    assert.strictEqual(mb.counts().deadLettered, 5)
    assert.strictEqual(mb.counts().processed, 5)
    balanced(mb)
  })

  it("a mark waits for the slowest batch before it, not for those after it", () => {
    const mb = new Mailbox<number>(100, "backpressure")
    for (let i = 0; i < 3; i++) mb.offer(i, 0)
    const a = mb.take(1)!
    const b = mb.take(1)!
    const markAB = mb.watermark() - 1 // events 0 and 1
    const c = mb.take(1)!
    mb.settle(b.segment, "processed")
    mb.settle(c.segment, "processed")
    assert.isFalse(mb.isTerminal(1))
    assert.isFalse(mb.isTerminal(markAB))
    mb.settle(a.segment, "failed")
    assert.isTrue(mb.isTerminal(markAB))
    assert.isTrue(mb.isTerminal(3))
    assert.isFalse(mb.isTerminal(4), "nothing has entered at index 3 yet")
  })

  it("dropOldest evictions while a batch is in flight keep the flush watermark exact", () => {
    const mb = new Mailbox<number>(2, "dropOldest", 2)
    mb.offer(1, 0)
    mb.offer(2, 0)
    const inFlight = mb.take(2)!
    mb.offer(3, 0)
    mb.offer(4, 0)
    const mark = mb.watermark()
    mb.offer(5, 0) // evicts 3
    mb.offer(6, 0) // evicts 4
    assert.isFalse(mb.isTerminal(mark), "1 and 2 are still in flight")
    assert.isFalse(mb.isTerminal(1))
    mb.settle(inFlight.segment, "processed")
    assert.isTrue(mb.isTerminal(mark))
    assert.isFalse(mb.isTerminal(mark + 1), "5 is still queued")
    balanced(mb)
  })

  it("evictions after a settled batch that waits behind an in-flight one join the right run", () => {
    const mb = new Mailbox<number>(2, "dropOldest", 1)
    mb.offer(0, 0)
    mb.offer(1, 0)
    const a = mb.take(1)! // 0
    const b = mb.take(1)! // 1
    mb.settle(b.segment, "processed") // done, but behind a
    mb.offer(2, 0)
    mb.offer(3, 0)
    mb.offer(4, 0) // evicts 2
    mb.offer(5, 0) // evicts 3
    assert.isFalse(mb.isTerminal(1))
    assert.isFalse(mb.isTerminal(4))
    mb.settle(a.segment, "processed")
    assert.isTrue(mb.isTerminal(4), "0 and 1 settled, 2 and 3 evicted")
    assert.isFalse(mb.isTerminal(5), "4 is still queued")
    const rest = mb.drain()!
    assert.deepStrictEqual(rest.items, [4, 5])
    mb.settle(rest.segment, "processed")
    assert.isTrue(mb.isTerminal(mb.watermark()))
    assert.strictEqual(mb.counts().dropped.overflow, 2)
    balanced(mb)
  })
})

describe("Mailbox: waiting", () => {
  it.effect("awaitSpace resumes after a take, through the scheduler", () =>
    Effect.gen(function* () {
      const mb = new Mailbox<number>(2, "backpressure")
      mb.offer(1, 0)
      mb.offer(2, 0)
      const spaced = yield* Effect.forkChild(mb.awaitSpace())
      yield* yieldMany
      assert.isUndefined(spaced.pollUnsafe(), "full: waits for room")
      mb.offer(3, 0)
      yield* yieldMany
      assert.isUndefined(spaced.pollUnsafe(), "a refused offer makes no room")
      mb.take(1)
      assert.isUndefined(spaced.pollUnsafe(), "not resumed inside take")
      yield* yieldMany
      assert.isDefined(spaced.pollUnsafe())
      yield* Fiber.join(spaced)
      assert.strictEqual(mb.offer(3, 0), "accepted")
    })
  )

  it.effect("awaitSpace returns at once with room, and resumes when the mailbox closes", () =>
    Effect.gen(function* () {
      const mb = new Mailbox<number>(1, "backpressure")
      yield* mb.awaitSpace()
      mb.offer(1, 0)
      const spaced = yield* Effect.forkChild(mb.awaitSpace())
      yield* yieldMany
      assert.isUndefined(spaced.pollUnsafe())
      mb.close()
      yield* yieldMany
      assert.isDefined(spaced.pollUnsafe())
      yield* Fiber.join(spaced)
      assert.strictEqual(mb.offer(2, 0), "closed")
    })
  )

  it.effect("several awaitSpace waiters are all resumed by a take", () =>
    Effect.gen(function* () {
      const mb = new Mailbox<number>(1, "backpressure")
      mb.offer(1, 0)
      const fibers = yield* Effect.forEach([1, 2, 3], () => Effect.forkChild(mb.awaitSpace()))
      yield* yieldMany
      for (const f of fibers) assert.isUndefined(f.pollUnsafe())
      mb.take(1)
      yield* yieldMany
      for (const f of fibers) assert.isDefined(f.pollUnsafe())
    })
  )

  it.effect("awaitSize resumes once n items are queued, or on close", () =>
    Effect.gen(function* () {
      const mb = new Mailbox<number>(10, "backpressure")
      const sized = yield* Effect.forkChild(mb.awaitSize(3))
      yield* yieldMany
      mb.offer(1, 0)
      mb.offer(2, 0)
      yield* yieldMany
      assert.isUndefined(sized.pollUnsafe(), "2 of 3")
      mb.offer(3, 0)
      assert.isUndefined(sized.pollUnsafe(), "not resumed inside offer")
      yield* yieldMany
      assert.isDefined(sized.pollUnsafe())
      yield* Fiber.join(sized)

      yield* mb.awaitSize(3) // already there: at once
      mb.take(10)
      const waiting = yield* Effect.forkChild(mb.awaitSize(1))
      yield* yieldMany
      assert.isUndefined(waiting.pollUnsafe())
      mb.close()
      yield* yieldMany
      assert.isDefined(waiting.pollUnsafe(), "close wakes it")
      yield* mb.awaitSize(100) // closed: at once
    })
  )

  it.effect("awaitTerminal resumes when the mark's events have settled, through the scheduler", () =>
    Effect.gen(function* () {
      const mb = new Mailbox<number>(10, "backpressure")
      yield* mb.awaitTerminal(mb.watermark()) // nothing entered: at once
      mb.offer(1, 0)
      mb.offer(2, 0)
      const mark = mb.watermark()
      const t = mb.take(1)!
      const flushed = yield* Effect.forkChild(mb.awaitTerminal(mark))
      yield* yieldMany
      assert.isUndefined(flushed.pollUnsafe())
      mb.offer(3, 0) // after the mark: not waited for
      mb.settle(t.segment, "processed")
      yield* yieldMany
      assert.isUndefined(flushed.pollUnsafe(), "event 2 is still queued")
      const u = mb.take(1)!
      mb.settle(u.segment, "processed")
      assert.isUndefined(flushed.pollUnsafe(), "not resumed inside settle")
      yield* yieldMany
      assert.isDefined(flushed.pollUnsafe())
      yield* Fiber.join(flushed)
      assert.isFalse(mb.isTerminal(mb.watermark()), "event 3 is still queued")
    })
  )

  it("a watch with arm: arm on the first event, listener at the threshold or on close", () => {
    const mb = new Mailbox<number>(100, "backpressure")
    const calls: Array<string> = []
    mb.watch(
      3,
      () => calls.push("full"),
      () => calls.push("arm")
    )
    mb.offer(1, 0)
    assert.deepStrictEqual(calls, ["arm"])
    mb.offer(2, 0)
    mb.offer(3, 0)
    assert.deepStrictEqual(calls, ["arm", "full"])
    mb.offer(4, 0)
    assert.deepStrictEqual(calls, ["arm", "full"], "a watch fires once")
    mb.watch(
      50,
      () => calls.push("closed"),
      () => calls.push("arm-now")
    )
    assert.deepStrictEqual(calls, ["arm", "full", "arm-now"], "events already queued arm at once")
    mb.close()
    assert.deepStrictEqual(calls, ["arm", "full", "arm-now", "closed"])
  })
})
