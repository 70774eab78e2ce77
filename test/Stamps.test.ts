/**
 * Timestamps at high call rates (docs/guarantees.md, "Timestamps"): the trail's clock
 * reuses a reading within a burst, a mailbox stamping its own offers keeps one for a
 * few of its offers without calling the clock, and neither keeps a reading past a
 * turn of the event loop or past a reading that showed a new time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { TestClock } from "effect/testing"
import { type Batch, EventType, Trail } from "../src/index.ts"
import { nextGen, SampledClock, UNREAD } from "../src/internal/clock.ts"
import { Mailbox, type Taken } from "../src/Mailbox.ts"

/** A clock whose time the test sets, counting its reads. */
const fakeTime = () => {
  const state = { now: 0, reads: 0 }
  const read = () => {
    state.reads++
    return state.now
  }
  return { state, read }
}

const stamps = (t: Taken<number>): Array<number> => t.items.map((_, i) => t.base + t.offsets[i]!)

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve))

describe("SampledClock", () => {
  it("with a step of 1 it reads the clock on every call", () => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 1)
    for (let i = 0; i < 100; i++) clock.millis()
    assert.strictEqual(time.state.reads, 100)
  })

  it("in a burst within one millisecond it reads far less often, but at least every maxStep calls", () => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    for (let i = 0; i < 6_400; i++) clock.millis()
    assert.isAtMost(time.state.reads, 100 + 7)
    assert.isAtLeast(time.state.reads, 100)
  })

  it("a reading that shows a new time moves gen and sets the step back to 1", () => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    for (let i = 0; i < 200; i++) clock.millis()
    assert.isAbove(clock.step, 1)
    const gen = clock.gen
    time.state.now = 5
    // the reading in use may serve up to `step - 1` more calls; then the new time shows
    let seen = 0
    for (let i = 0; i < 64 && seen !== 5; i++) seen = clock.millis()
    assert.strictEqual(seen, 5)
    assert.strictEqual(clock.step, 1)
    assert.notStrictEqual(clock.gen, gen)
  })

  it("never reuses a reading across a turn of the event loop", async () => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    for (let i = 0; i < 200; i++) clock.millis()
    time.state.now = 7
    await nextTurn()
    assert.strictEqual(clock.gen, UNREAD, "no reading of the last turn is current once it ended")
    const reads = time.state.reads
    assert.strictEqual(clock.millis(), 7)
    assert.strictEqual(time.state.reads, reads + 1, "the turn's first call reads the clock")
  })

  it("after a turn, a reading that shows the same time brings the generation back", async () => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    for (let i = 0; i < 200; i++) clock.millis()
    const gen = clock.gen
    await nextTurn()
    assert.strictEqual(clock.gen, UNREAD)
    clock.millis()
    assert.strictEqual(clock.gen, gen, "the time did not move: readings of it are current again")
    await nextTurn()
    time.state.now = 1
    clock.millis()
    assert.notStrictEqual(clock.gen, gen, "the time moved: a new generation")
    assert.notStrictEqual(clock.gen, UNREAD)
  })

  it("the generation wraps within the small integers, and readings still expire across the wrap", async () => {
    assert.strictEqual(nextGen(2 ** 30 - 1), 0)
    assert.strictEqual(nextGen(41), 42)
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    ;(clock as unknown as { nowGen: number }).nowGen = 2 ** 30 - 1
    const mb = new Mailbox<number>(10_000, "backpressure", 512, 0, clock)
    for (let i = 0; i < 100; i++) mb.offerNow(i)
    time.state.now = 4
    await nextTurn()
    assert.isAtMost(clock.gen, 2 ** 30 - 1)
    mb.offerNow(100)
    assert.strictEqual(stamps(mb.take(1_000)!).at(-1), 4)
  })
})

describe("Mailbox.offerNow", () => {
  it("stamps each offer with the clock's time, reading it for every offer with a step of 1", () => {
    const time = fakeTime()
    const mb = new Mailbox<number>(1_000, "backpressure", 512, 0, new SampledClock(time.read, 1))
    for (let i = 0; i < 50; i++) {
      time.state.now = i * 3
      assert.strictEqual(mb.offerNow(i), "accepted")
    }
    assert.deepStrictEqual(
      stamps(mb.take(100)!),
      Array.from({ length: 50 }, (_, i) => i * 3)
    )
  })

  it("keeps a reading for at most maxStep of its offers in one synchronous run", () => {
    const time = fakeTime()
    const mb = new Mailbox<number>(10_000, "backpressure", 512, 0, new SampledClock(time.read, 16))
    for (let i = 0; i < 1_000; i++) mb.offerNow(i)
    const readsBefore = time.state.reads
    time.state.now = 42
    for (let i = 0; i < 100; i++) mb.offerNow(1_000 + i)
    const all = stamps(mb.take(2_000)!)
    // the new time shows within 16 offers of the change, and stays
    const first = all.indexOf(42)
    assert.isAtLeast(first, 1_000)
    assert.isAtMost(first, 1_000 + 16)
    for (let i = first; i < all.length; i++) assert.strictEqual(all[i], 42)
    assert.isAbove(time.state.reads, readsBefore)
    // a burst of 1,000 offers in one millisecond read the clock a few dozen times, not 1,000
    assert.isAtMost(readsBefore, 1_000 / 16 + 8)
  })

  it("the first offer after a turn of the event loop carries the time of that turn", async () => {
    const time = fakeTime()
    const mb = new Mailbox<number>(10_000, "backpressure", 512, 0, new SampledClock(time.read, 64))
    for (let i = 0; i < 500; i++) mb.offerNow(i)
    time.state.now = 9
    await nextTurn()
    mb.offerNow(500)
    const all = stamps(mb.take(1_000)!)
    assert.strictEqual(all[499], 0)
    assert.strictEqual(all[500], 9)
  })

  /**
   * Two mailboxes on one clock, 300 offers each at time 0; then the time moves to
   * `later` and `a` offers 200 more, reading it within its budget. `b` has not read since.
   */
  const twoThenMove = (later: number) => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    const a = new Mailbox<number>(10_000, "backpressure", 512, 0, clock)
    const b = new Mailbox<number>(10_000, "backpressure", 512, 0, clock)
    for (let i = 0; i < 300; i++) {
      a.offerNow(i)
      b.offerNow(i)
    }
    time.state.now = later
    for (let i = 0; i < 200; i++) a.offerNow(300 + i)
    return { a, b }
  }

  it("a new time read by one mailbox reaches the others sharing the clock on their next offer", () => {
    const { a, b } = twoThenMove(3)
    // b gets it on its very next offer
    b.offerNow(300)
    const bs = stamps(b.take(1_000)!)
    assert.strictEqual(bs[300], 3)
    assert.strictEqual(stamps(a.take(1_000)!).at(-1), 3)
  })

  it("a stale reading stays stale through a take (which recomputes the fast-path limit)", () => {
    const { b } = twoThenMove(8)
    // b's take makes room and recomputes how many offers may take the fast path: its
    // stale reading must not come back to life
    const before = b.take(100)!
    b.settle(before.segment, "processed")
    b.offerNow(300)
    assert.strictEqual(stamps(b.take(1_000)!).at(-1), 8)
  })

  it("a mailbox keeps its reading across a turn when the next turn's first reading shows the same time", async () => {
    const time = fakeTime()
    const clock = new SampledClock(time.read, 64)
    const a = new Mailbox<number>(10_000, "backpressure", 512, 0, clock)
    const b = new Mailbox<number>(10_000, "backpressure", 512, 0, clock)
    time.state.now = 2
    // a burst grows the clock's step; b's one offer then takes a reading for a step of offers
    for (let i = 0; i < 200; i++) a.offerNow(i)
    b.offerNow(0)
    await nextTurn()
    // the turn's first offer (a's) reads the clock: the same time
    const reads = time.state.reads
    a.offerNow(200)
    assert.strictEqual(time.state.reads, reads + 1)
    // b uses its reading without a call of its own, and it is the time just read
    b.offerNow(1)
    assert.strictEqual(time.state.reads, reads + 1)
    assert.deepStrictEqual(stamps(b.take(100)!), [2, 2])
    // the next turn shows a new time: b's reading is stale, whoever reads first
    await nextTurn()
    time.state.now = 3
    a.offerNow(201)
    b.offerNow(2)
    assert.strictEqual(stamps(b.take(100)!).at(-1), 3)
    assert.strictEqual(stamps(a.take(1_000)!).at(-1), 3)
  })

  it("a mailbox fed by offer alone keeps its stamp room at 0, and offerNow then reads the clock", () => {
    const time = fakeTime()
    const mb = new Mailbox<number>(10_000, "backpressure", 512, 0, new SampledClock(time.read, 64))
    const room = () => (mb as unknown as { stampRoom: number }).stampRoom
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 1_000; i++) mb.offer(i, 0)
      mb.settle(mb.take(1_000)!.segment, "processed")
    }
    assert.strictEqual(room(), 0, "20,000 items left: the room stops at 0")
    time.state.now = 6
    const reads = time.state.reads
    mb.offerNow(1)
    assert.strictEqual(time.state.reads, reads + 1)
    assert.deepStrictEqual(stamps(mb.take(10)!), [6])
  })

  it("offers with an extra, on a full ring and on a closed mailbox take the slow path with correct stamps", () => {
    const time = fakeTime()
    const mb = new Mailbox<number>(40, "backpressure", 8, 0, new SampledClock(time.read, 64))
    for (let i = 0; i < 20; i++) mb.offerNow(i, i % 5 === 0 ? `p${i}` : undefined)
    time.state.now = 1
    for (let i = 20; i < 40; i++) mb.offerNow(i)
    assert.strictEqual(mb.offerNow(40), "full")
    const taken = mb.take(100)!
    assert.deepStrictEqual(
      taken.items,
      Array.from({ length: 40 }, (_, i) => i)
    )
    assert.strictEqual(taken.extras?.[5], "p5")
    const s = stamps(taken)
    for (let i = 1; i < s.length; i++) assert.isAtLeast(s[i]!, s[i - 1]!)
    assert.strictEqual(s[39], 1)
    mb.close()
    assert.strictEqual(mb.offerNow(41), "closed")
  })
})

describe("Trail timestamps", () => {
  const Tick = EventType.make("stamp.Tick", 1, Schema.Struct({ n: Schema.Number }), { batch: { maxSize: 1_000 } })

  it.effect("events logged after the clock moved and a turn passed carry the new time", () =>
    Effect.gen(function* () {
      const seen: Array<number> = []
      const trail = yield* Trail.make({
        source: "stamps",
        types: [
          {
            type: Tick,
            process: (batch) =>
              Effect.sync(() => {
                seen.push(...batch.happenedAt)
              })
          }
        ]
      })
      const start = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      for (let i = 0; i < 300; i++) trail.logUnsafe(Tick, { n: i })
      yield* TestClock.adjust(1_234)
      yield* Effect.promise(nextTurn)
      for (let i = 0; i < 3; i++) trail.logUnsafe(Tick, { n: i })
      yield* trail.flush
      assert.strictEqual(seen.length, 303)
      for (let i = 0; i < 300; i++) assert.strictEqual(seen[i], start)
      for (let i = 300; i < 303; i++) assert.strictEqual(seen[i], start + 1_234)
    }).pipe(Effect.scoped)
  )

  it.effect("after a turn, a type that logs second carries the time the first one read, moved or not", () =>
    Effect.gen(function* () {
      const Tock = EventType.make("stamp.Tock", 1, Schema.Struct({ n: Schema.Number }), { batch: { maxSize: 1_000 } })
      const seen: Record<string, Array<number>> = { [Tick.key]: [], [Tock.key]: [] }
      const record = (batch: Batch.Batch) =>
        Effect.sync(() => {
          seen[batch.key]!.push(...batch.happenedAt)
        })
      const trail = yield* Trail.make({
        source: "stamps",
        types: [
          { type: Tick, process: record },
          { type: Tock, process: record }
        ]
      })
      const start = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
      const both = () => {
        for (let i = 0; i < 200; i++) trail.logUnsafe(Tick, { n: i })
        for (let i = 0; i < 200; i++) trail.logUnsafe(Tock, { n: i })
      }
      both()
      // the same millisecond in the next turn: Tock's reading of the last turn is the time Tick reads
      yield* Effect.promise(nextTurn)
      both()
      // a new millisecond: Tick reads it first, and Tock must not keep its older reading
      yield* TestClock.adjust(7)
      yield* Effect.promise(nextTurn)
      both()
      yield* trail.flush
      const expected = [...Array(400).fill(start), ...Array(200).fill(start + 7)]
      assert.deepStrictEqual(seen[Tick.key], expected)
      assert.deepStrictEqual(seen[Tock.key], expected)
    }).pipe(Effect.scoped)
  )
})
