import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import type { Overflow } from "../src/EventType.ts"
import { Mailbox, type Segment } from "../src/Mailbox.ts"

/**
 * Random operation sequences against a Mailbox, for each overflow policy, checked
 * after every step against the accounting identity and against a plain array model:
 * which events are queued, taken (in which order, with which stamp and extra), how
 * each one ended, and when a flush watermark becomes terminal.
 */

type Outcome = "processed" | "deadLettered" | "failed" | "shutdown"

type Op =
  | { readonly _tag: "offer"; readonly extra: boolean; readonly stamp: number }
  | { readonly _tag: "take"; readonly max: number }
  | { readonly _tag: "settle"; readonly pick: number; readonly outcome: Outcome }
  | { readonly _tag: "mark" }
  | { readonly _tag: "close" }
  | { readonly _tag: "drain" }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      _tag: fc.constant("offer" as const),
      extra: fc.boolean(),
      // repeated stamps (runs, as a sampled clock gives) as well as any
      stamp: fc.oneof(
        fc.constantFrom(0, 7, 7, 1_780_000_000_000),
        fc.integer({ min: -1_000_000, max: 2_000_000_000_000 })
      )
    })
  },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("take" as const), max: fc.integer({ min: 1, max: 40 }) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("settle" as const),
      pick: fc.nat(),
      outcome: fc.constantFrom<Outcome>("processed", "deadLettered", "failed", "shutdown")
    })
  },
  { weight: 2, arbitrary: fc.constant({ _tag: "mark" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "close" as const }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "drain" as const }) }
)

/** Chunk sizes: tiny, around the first chunk (16), and the default (512, clamped to the capacity). */
const chunkSize = fc.constantFrom(1, 2, 3, 5, 8, 16, 17, 33, 512)

interface Model {
  /** Queued, oldest first. */
  queue: Array<number>
  /** Entered the queue (accepted and not dropped at once), in order. */
  readonly entered: Array<number>
  /** Every accepted event, in order (dropped-newest ones included). */
  readonly accepted: Array<number>
  /** Dropped by the overflow policy (newest refused, or oldest evicted). */
  readonly droppedByPolicy: Set<number>
  readonly taken: Array<number>
  readonly inFlight: Array<{ readonly segment: Segment; readonly items: ReadonlyArray<number> }>
  /** Settled or evicted. */
  readonly terminal: Set<number>
  readonly marks: Array<{ readonly mark: number; readonly before: ReadonlyArray<number> }>
  readonly ended: Record<Outcome | "overflow", number>
  readonly refused: { full: number; closed: number }
  closed: boolean
}

// Thousands of steps are checked per run: assert only on a mismatch (chai is slow per call).
const ensure = (ok: boolean, message: () => string): void => {
  if (!ok) assert.fail(message())
}
const same = (actual: unknown, expected: unknown, message: string): void => {
  if (actual !== expected && JSON.stringify(actual) !== JSON.stringify(expected)) {
    assert.deepStrictEqual(actual, expected, message)
  }
}

type MakeMailbox = (capacity: number, overflow: Overflow, chunk: number) => Mailbox<number>
const makeMailbox: MakeMailbox = (capacity, overflow, chunk) => new Mailbox<number>(capacity, overflow, chunk, 0)

const run = (overflow: Overflow, capacity: number, chunk: number, ops: ReadonlyArray<Op>, make = makeMailbox) => {
  const mb = make(capacity, overflow, chunk)
  const m: Model = {
    queue: [],
    entered: [],
    accepted: [],
    droppedByPolicy: new Set(),
    taken: [],
    inFlight: [],
    terminal: new Set(),
    marks: [],
    ended: { processed: 0, deadLettered: 0, failed: 0, shutdown: 0, overflow: 0 },
    refused: { full: 0, closed: 0 },
    closed: false
  }
  const stamps = new Map<number, number>()
  /** Queue index of each event that entered. */
  const indexOf = new Map<number, number>()
  let settledPrefix = 0
  const extras = new Map<number, string>()
  let next = 0

  const takeOut = (max: number, t: ReturnType<typeof mb.take>) => {
    if (m.queue.length === 0) {
      assert.isUndefined(t, "nothing queued: nothing taken")
      return
    }
    assert.isDefined(t)
    const items = t!.items
    same(items.length, Math.min(max, m.queue.length), "takes as many as asked and queued")
    same(items, m.queue.slice(0, items.length), "takes come in arrival order")
    same(t!.offsets.length, items.length, "one offset per item")
    items.forEach((item, i) => {
      same(t!.base + t!.offsets[i]!, stamps.get(item), `stamp of ${item} travels with it`)
      same(t!.extras?.[i], extras.get(item), `extra of ${item} travels with it`)
    })
    same(
      t!.extras === undefined,
      items.every((item) => !extras.has(item)),
      "extras is undefined exactly when no item has one"
    )
    // queue index of the first item taken: how many entered before it
    same(t!.segment.start, indexOf.get(items[0]!), "segment start is the queue index")
    same(t!.segment.end - t!.segment.start, items.length, "segment length")
    m.queue = m.queue.slice(items.length)
    m.taken.push(...items)
    m.inFlight.push({ segment: t!.segment, items })
  }

  const step = (o: Op) => {
    switch (o._tag) {
      case "offer": {
        const n = next++
        const extra = o.extra ? `x${n}` : undefined
        const result = mb.offer(n, o.stamp, extra)
        if (m.closed) {
          assert.strictEqual(result, "closed")
          m.refused.closed++
          return
        }
        if (m.queue.length >= capacity && overflow === "backpressure") {
          assert.strictEqual(result, "full")
          mb.refuseFull() // as the trail's synchronous log does
          m.refused.full++
          return
        }
        m.accepted.push(n)
        if (m.queue.length >= capacity && overflow === "dropNewest") {
          assert.strictEqual(result, "dropped")
          m.droppedByPolicy.add(n)
          m.ended.overflow++
          return
        }
        assert.strictEqual(result, "accepted")
        if (m.queue.length >= capacity) {
          const oldest = m.queue.shift()!
          m.droppedByPolicy.add(oldest)
          m.terminal.add(oldest)
          m.ended.overflow++
        }
        m.queue.push(n)
        indexOf.set(n, m.entered.length)
        m.entered.push(n)
        stamps.set(n, o.stamp)
        if (extra !== undefined) extras.set(n, extra)
        return
      }
      case "take":
        return takeOut(o.max, mb.take(o.max))
      case "drain":
        return takeOut(Number.MAX_SAFE_INTEGER, mb.drain())
      case "settle": {
        if (m.inFlight.length === 0) return
        const [batch] = m.inFlight.splice(o.pick % m.inFlight.length, 1)
        mb.settle(batch!.segment, o.outcome)
        for (const item of batch!.items) m.terminal.add(item)
        m.ended[o.outcome] += batch!.items.length
        return
      }
      case "mark":
        assert.strictEqual(mb.watermark(), m.entered.length)
        m.marks.push({ mark: mb.watermark(), before: m.entered.slice() })
        return
      case "close":
        mb.close()
        m.closed = true
        return
    }
  }

  const check = () => {
    const c = mb.counts()
    const inFlight = m.inFlight.reduce((n, b) => n + b.items.length, 0)
    // the identity
    const sum =
      c.processed + c.queued + c.inFlight + c.dropped.overflow + c.dropped.shutdown + c.dropped.failed + c.deadLettered
    ensure(c.accepted === sum, () => `accepted ${c.accepted} !== ${sum}: ${JSON.stringify(c)}`)
    // and each term against the model
    same(
      c,
      {
        accepted: m.accepted.length,
        processed: m.ended.processed,
        queued: m.queue.length,
        inFlight,
        dropped: { overflow: m.ended.overflow, shutdown: m.ended.shutdown, failed: m.ended.failed },
        deadLettered: m.ended.deadLettered,
        refused: m.refused
      },
      "counters against the model"
    )
    ensure(mb.size === m.queue.length, () => "size")
    ensure(c.queued <= capacity, () => "over capacity")
    // every flush mark is terminal exactly when everything that entered before it is:
    // `settledPrefix` events, counted from the oldest, are all settled or evicted
    while (settledPrefix < m.entered.length && m.terminal.has(m.entered[settledPrefix]!)) settledPrefix++
    for (const { mark, before } of m.marks) {
      ensure(mark === before.length, () => `mark ${mark} taken after ${before.length} entered`)
      const terminal = mb.isTerminal(mark)
      ensure(terminal === mark <= settledPrefix, () => `isTerminal(${mark}) is ${terminal}, ${settledPrefix} settled`)
    }
    // and so is the current watermark
    ensure(mb.isTerminal(mb.watermark()) === (settledPrefix === m.entered.length), () => "current watermark")
  }

  /** Taken = accepted, in order, minus what the policy dropped and what is still queued. */
  const checkTaken = () => {
    const queued = new Set(m.queue)
    assert.deepStrictEqual(
      m.taken,
      m.accepted.filter((n) => !m.droppedByPolicy.has(n) && !queued.has(n))
    )
  }

  for (const o of ops) {
    step(o)
    check()
    if (o._tag === "take" || o._tag === "drain") checkTaken()
  }
  // settle what is left: every accepted event ends somewhere, every mark is reached
  const rest = mb.drain()
  takeOut(Number.MAX_SAFE_INTEGER, rest)
  for (const batch of m.inFlight.splice(0)) {
    mb.settle(batch.segment, "processed")
    for (const item of batch.items) m.terminal.add(item)
    m.ended.processed += batch.items.length
  }
  check()
  checkTaken()
  const c = mb.counts()
  assert.strictEqual(c.queued + c.inFlight, 0)
  for (const { mark } of m.marks) assert.isTrue(mb.isTerminal(mark))
}

describe("accounting (property)", () => {
  for (const overflow of ["backpressure", "dropNewest", "dropOldest"] as const) {
    it(`holds after every operation of random sequences with ${overflow}`, () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 40 }),
          chunkSize,
          fc.array(op, { minLength: 1, maxLength: 200, size: "max" }),
          (capacity, chunk, ops) => run(overflow, capacity, chunk, ops)
        ),
        { numRuns: 200 }
      )
    })
  }

  // The property must be able to fail: mailboxes with a planted fault are caught.
  const caught = (make: MakeMailbox) =>
    fc.check(
      fc.property(
        fc.constantFrom<Overflow>("backpressure", "dropNewest", "dropOldest"),
        fc.integer({ min: 1, max: 40 }),
        chunkSize,
        fc.array(op, { minLength: 1, maxLength: 200, size: "max" }),
        (overflow, capacity, chunk, ops) => run(overflow, capacity, chunk, ops, make)
      ),
      { numRuns: 200, seed: 42 }
    ).failed

  it("catches a mailbox that books failures as shutdown drops", () => {
    class Miscounts extends Mailbox<number> {
      override settle(segment: Segment, outcome: Parameters<Mailbox<number>["settle"]>[1]): void {
        super.settle(segment, outcome === "failed" ? "shutdown" : outcome)
      }
    }
    assert.isTrue(caught((capacity, overflow, chunk) => new Miscounts(capacity, overflow, chunk)))
  })

  it("catches a flush mark that forgets events in flight", () => {
    class Forgets extends Mailbox<number> {
      override isTerminal(mark: number): boolean {
        return mark <= this.watermark() - this.size
      }
    }
    assert.isTrue(caught((capacity, overflow, chunk) => new Forgets(capacity, overflow, chunk)))
  })
})
