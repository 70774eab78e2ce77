import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Schedule, Schema } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { EventType, Trail } from "../src/index.ts"

/**
 * Random scenarios against a whole trail: several types (must and droppable, each
 * overflow policy, lingers, priorities, concurrency), processors that fail, die or
 * hang at random, random logging, clock moves, flushes, and a final shutdown. After
 * every step the accounting identity holds for every type; at the end every accepted
 * `must` event was either processed successfully (seen by a succeeding attempt) or
 * dead-lettered, and nothing is left queued or in flight.
 */

const Data = Schema.Struct({ id: Schema.Number })

interface TypeSpec {
  readonly delivery: "must" | "droppable"
  readonly overflow: "backpressure" | "dropNewest" | "dropOldest"
  readonly capacity: number
  readonly maxSize: number
  readonly lingerMs: number
  readonly priority: number
  readonly concurrency: number
}

const typeSpec: fc.Arbitrary<TypeSpec> = fc
  .record({
    delivery: fc.constantFrom("must" as const, "droppable" as const),
    overflow: fc.constantFrom("backpressure" as const, "dropNewest" as const, "dropOldest" as const),
    capacity: fc.integer({ min: 1, max: 40 }),
    maxSize: fc.integer({ min: 1, max: 10 }),
    lingerMs: fc.constantFrom(0, 5, 50),
    priority: fc.integer({ min: 0, max: 2 }),
    concurrency: fc.integer({ min: 1, max: 3 })
  })
  .map((t) => (t.delivery === "must" ? { ...t, overflow: "backpressure" as const } : t))

type Step =
  | { readonly _tag: "log"; readonly type: number; readonly count: number }
  | { readonly _tag: "tick"; readonly ms: number }
  | { readonly _tag: "flush" }

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ _tag: fc.constant("log" as const), type: fc.nat(), count: fc.integer({ min: 1, max: 30 }) })
  },
  { weight: 3, arbitrary: fc.record({ _tag: fc.constant("tick" as const), ms: fc.constantFrom(1, 5, 20, 100, 400) }) },
  { weight: 1, arbitrary: fc.constant({ _tag: "flush" as const }) }
)

/** What a processor does with a batch, decided by the batch's first id. */
const fate = (seed: number, id: number): "ok" | "fail" | "die" | "hang" => {
  const r = (id * 2654435761 + seed) % 100
  return r < 70 ? "ok" : r < 85 ? "fail" : r < 95 ? "die" : "hang"
}

const settle = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const scenario = (specs: ReadonlyArray<TypeSpec>, steps: ReadonlyArray<Step>, seed: number, workers: number) =>
  Effect.gen(function* () {
    const types = specs.map((s, i) =>
      EventType.make(`prop.T${i}`, 1, Data, {
        delivery: s.delivery,
        mailbox: { capacity: s.capacity, overflow: s.overflow },
        batch: { maxSize: s.maxSize, lingerMs: s.lingerMs },
        priority: s.priority,
        concurrency: s.concurrency,
        retry: Schedule.spaced(10).pipe(Schedule.upTo({ times: 2 })),
        timeoutMs: 200
      })
    )
    const succeeded = new Set<number>()
    const trail = yield* Trail.make({
      concurrency: workers,
      shutdownTimeoutMs: 2_000,
      droppableBudgetMs: 50,
      types,
      process: (batch) =>
        Effect.suspend(() => {
          const first = (batch.data[0] as { id: number }).id
          switch (fate(seed, first)) {
            case "ok":
              return Effect.sync(() => {
                for (const d of batch.data) succeeded.add((d as { id: number }).id)
              })
            case "fail":
              return Effect.fail("random failure")
            case "die":
              return Effect.die(new Error("random defect"))
            case "hang":
              return Effect.never
          }
        })
    })
    const accepted = new Map<number, number>() // id -> type index
    const check = () => {
      for (const s of Object.values(trail.statsUnsafe().types)) {
        const dropped = s.dropped.overflow + s.dropped.shutdown + s.dropped.failed
        assert.strictEqual(s.accepted, s.processed + s.queued + s.inFlight + dropped + s.deadLettered, s.type)
      }
    }
    let next = 0
    for (const st of steps) {
      if (st._tag === "log") {
        const t = st.type % types.length
        for (let i = 0; i < st.count; i++) {
          const id = next++
          const r = trail.logUnsafe(types[t]!, { id })
          if (r === "accepted") accepted.set(id, t)
        }
      } else if (st._tag === "tick") {
        yield* TestClock.adjust(st.ms)
        yield* settle
      } else {
        // a flush waits for what was accepted before it; drive the clock until it is done
        const f = yield* Effect.forkChild(trail.flush)
        for (let i = 0; i < 200 && f.pollUnsafe() === undefined; i++) {
          yield* TestClock.adjust(50)
          yield* settle
        }
        assert.isDefined(f.pollUnsafe(), "flush completes once retries and time limits have run out")
      }
      yield* settle
      check()
    }
    const shutdown = yield* Effect.forkChild(trail.shutdown)
    for (let i = 0; i < 100 && shutdown.pollUnsafe() === undefined; i++) {
      yield* TestClock.adjust(50)
      yield* settle
    }
    const stats = yield* Fiber.join(shutdown)
    check()
    assert.strictEqual(stats.totals.queued, 0)
    assert.strictEqual(stats.totals.inFlight, 0)
    const dead = new Set<number>()
    for (const letter of yield* trail.deadLetters) {
      for (const d of letter.batch!.data) dead.add((d as { id: number }).id)
    }
    for (const [id, t] of accepted) {
      if (specs[t]!.delivery !== "must") continue
      assert.isTrue(succeeded.has(id) || dead.has(id), `must event ${id} of type ${t} was lost`)
    }
  })

describe("trail accounting (property)", () => {
  it("every guarantee holds under random load, faults and shutdown", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(typeSpec, { minLength: 1, maxLength: 4 }),
        fc.array(step, { minLength: 1, maxLength: 40 }),
        fc.nat(1000),
        fc.integer({ min: 1, max: 4 }),
        (specs, steps, seed, workers) =>
          Effect.runPromise(
            scenario(specs, steps, seed, workers).pipe(Effect.scoped, Effect.provide(TestClock.layer()))
          )
      ),
      { numRuns: 150 }
    )
  })
})
