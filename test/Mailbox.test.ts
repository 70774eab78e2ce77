import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Mailbox } from "../src/Mailbox.ts"

const drainAll = (mb: Mailbox<number>, max = 1_000) => {
  const out: Array<{ item: number; stamp: number; extra: unknown }> = []
  for (let t = mb.take(max); t !== undefined; t = mb.take(max)) {
    for (let i = 0; i < t.items.length; i++) {
      out.push({ item: t.items[i]!, stamp: t.base + t.offsets[i]!, extra: t.extras?.[i] })
    }
    mb.settle(t.segment, "processed")
  }
  return out
}

const balanced = (mb: Mailbox<number>) => {
  const c = mb.counts()
  assert.strictEqual(
    c.accepted,
    c.processed + c.queued + c.inFlight + c.dropped.overflow + c.dropped.shutdown + c.dropped.failed + c.deadLettered
  )
}

const yieldMany = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

describe("Mailbox", () => {
  it("keeps FIFO order, stamps and extras through chunk growth and interleaved takes", () => {
    const mb = new Mailbox<number>(10_000, "backpressure", 64, 1_000)
    const expected: Array<{ item: number; stamp: number; extra: unknown }> = []
    const got: Array<{ item: number; stamp: number; extra: unknown }> = []
    let next = 0
    for (let round = 0; round < 50; round++) {
      const n = (round * 37) % 200
      for (let i = 0; i < n; i++) {
        const extra = next % 7 === 0 ? `p${next}` : undefined
        assert.strictEqual(mb.offer(next, 1_000 + next * 3, extra), "accepted")
        expected.push({ item: next, stamp: 1_000 + next * 3, extra })
        next++
      }
      const t = mb.take((round % 5) * 30 + 1)
      if (t !== undefined) {
        for (let i = 0; i < t.items.length; i++) {
          got.push({ item: t.items[i]!, stamp: t.base + t.offsets[i]!, extra: t.extras?.[i] })
        }
        mb.settle(t.segment, "processed")
      }
      balanced(mb)
    }
    got.push(...drainAll(mb))
    assert.deepStrictEqual(got, expected)
    assert.strictEqual(mb.counts().processed, next)
  })

  it("a take of a whole chunk hands out at most the chunk and keeps the rest queued", () => {
    const mb = new Mailbox<number>(1_000, "backpressure", 10)
    for (let i = 0; i < 25; i++) mb.offer(i, 0)
    const first = mb.take(10)!
    assert.deepStrictEqual(first.items, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert.strictEqual(mb.size, 15)
    const rest = mb.take(100)!
    assert.deepStrictEqual(
      rest.items,
      Array.from({ length: 15 }, (_, i) => i + 10)
    )
  })

  it("backpressure: a full mailbox refuses without counting; refuseFull counts", () => {
    const mb = new Mailbox<number>(3, "backpressure")
    assert.deepStrictEqual(
      [1, 2, 3, 4].map((n) => mb.offer(n, 0)),
      ["accepted", "accepted", "accepted", "full"]
    )
    assert.strictEqual(mb.counts().refused.full, 0)
    mb.refuseFull()
    assert.strictEqual(mb.counts().refused.full, 1)
    assert.strictEqual(mb.counts().accepted, 3)
    balanced(mb)
  })

  it("dropNewest keeps the oldest and counts each drop", () => {
    const mb = new Mailbox<number>(3, "dropNewest")
    const results = [1, 2, 3, 4, 5].map((n) => mb.offer(n, 0))
    assert.deepStrictEqual(results, ["accepted", "accepted", "accepted", "dropped", "dropped"])
    assert.strictEqual(mb.counts().dropped.overflow, 2)
    assert.strictEqual(mb.counts().accepted, 5)
    balanced(mb)
    assert.deepStrictEqual(
      drainAll(mb).map((e) => e.item),
      [1, 2, 3]
    )
  })

  it("dropOldest keeps the newest; an evicted event is terminal at once", () => {
    const mb = new Mailbox<number>(3, "dropOldest")
    for (let i = 1; i <= 3; i++) mb.offer(i, 0)
    const mark = mb.watermark()
    assert.isFalse(mb.isTerminal(mark))
    mb.offer(4, 0)
    mb.offer(5, 0)
    assert.strictEqual(mb.counts().dropped.overflow, 2)
    assert.isFalse(mb.isTerminal(mark), "event 3 is still queued")
    mb.offer(6, 0)
    assert.isTrue(mb.isTerminal(mark), "1, 2 and 3 were evicted: terminal")
    balanced(mb)
    assert.deepStrictEqual(
      drainAll(mb).map((e) => e.item),
      [4, 5, 6]
    )
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
    mb.settle(inFlight.segment, "processed")
    assert.isTrue(mb.isTerminal(mark))
    balanced(mb)
  })

  it("flush marks stay exact when batches settle out of order", () => {
    const mb = new Mailbox<number>(100, "backpressure", 5)
    for (let i = 0; i < 10; i++) mb.offer(i, 0)
    const a = mb.take(5)!
    const markA = 5
    const b = mb.take(5)!
    const markB = mb.watermark()
    mb.settle(b.segment, "processed")
    assert.isFalse(mb.isTerminal(markA), "the first batch has not settled")
    assert.isFalse(mb.isTerminal(markB))
    mb.settle(a.segment, "deadLettered")
    assert.isTrue(mb.isTerminal(markA))
    assert.isTrue(mb.isTerminal(markB))
    assert.strictEqual(mb.counts().deadLettered, 5)
    balanced(mb)
  })

  it("closed refuses and counts; drain takes everything left", () => {
    const mb = new Mailbox<number>(100, "backpressure", 4)
    for (let i = 0; i < 9; i++) mb.offer(i, 0)
    mb.close()
    assert.strictEqual(mb.offer(99, 0), "closed")
    assert.strictEqual(mb.counts().refused.closed, 1)
    const rest = mb.drain()!
    assert.deepStrictEqual(rest.items, [0, 1, 2, 3, 4, 5, 6, 7, 8])
    mb.settle(rest.segment, "shutdown")
    assert.strictEqual(mb.counts().dropped.shutdown, 9)
    assert.isTrue(mb.isTerminal(mb.watermark()))
    balanced(mb)
  })

  it.effect("awaitSize, awaitSpace and awaitTerminal resume when the condition holds", () =>
    Effect.gen(function* () {
      const mb = new Mailbox<number>(2, "backpressure")
      const sized = yield* Effect.forkChild(mb.awaitSize(2))
      yield* yieldMany
      mb.offer(1, 0)
      yield* yieldMany
      assert.isUndefined(sized.pollUnsafe())
      mb.offer(2, 0)
      yield* Fiber.join(sized)

      const spaced = yield* Effect.forkChild(mb.awaitSpace())
      yield* yieldMany
      assert.isUndefined(spaced.pollUnsafe(), "full: waits for room")
      const t = mb.take(1)!
      yield* Fiber.join(spaced)

      const flushed = yield* Effect.forkChild(mb.awaitTerminal(mb.watermark()))
      yield* yieldMany
      assert.isUndefined(flushed.pollUnsafe())
      mb.settle(t.segment, "processed")
      yield* yieldMany
      assert.isUndefined(flushed.pollUnsafe(), "one event is still queued")
      mb.settle(mb.take(10)!.segment, "processed")
      yield* Fiber.join(flushed)
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
