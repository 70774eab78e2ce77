/**
 * The index-based queue behind the pool's ready lanes and a mailbox's in-flight
 * segments: order, emptiness, and the compaction of a long dead prefix.
 */
import { assert, describe, it } from "@effect/vitest"
import { Fifo } from "../src/internal/fifo.ts"

describe("Fifo", () => {
  it("gives items back in the order they came, and nothing once empty", () => {
    const q = new Fifo<number>()
    assert.strictEqual(q.shift(), undefined)
    assert.strictEqual(q.peek(), undefined)
    assert.strictEqual(q.last(), undefined)
    q.push(1)
    q.push(2)
    assert.strictEqual(q.peek(), 1)
    assert.strictEqual(q.last(), 2)
    assert.strictEqual(q.shift(), 1)
    q.push(3)
    assert.deepStrictEqual([q.shift(), q.shift(), q.shift()], [2, 3, undefined])
    assert.strictEqual(q.size, 0)
  })

  it("keeps order and size through interleaved pushes and shifts that never empty it, past the compaction", () => {
    const q = new Fifo<number>()
    const model: Array<number> = []
    let next = 0
    // grows by one item every three steps: the dead prefix passes 1024 many times
    for (let step = 0; step < 30_000; step++) {
      if (step % 3 === 2) {
        assert.strictEqual(q.shift(), model.shift())
      } else {
        q.push(next)
        model.push(next++)
      }
      assert.strictEqual(q.size, model.length)
      assert.strictEqual(q.peek(), model[0])
      assert.strictEqual(q.last(), model[model.length - 1])
    }
    const rest: Array<number | undefined> = []
    while (q.size > 0) rest.push(q.shift())
    assert.deepStrictEqual(rest, model)
  })

  it("lets go of the items that left (no reference kept in the array)", () => {
    const q = new Fifo<object>()
    for (let i = 0; i < 3_000; i++) {
      q.push({ i })
      if (i % 2 === 1) q.shift()
    }
    const items = (q as unknown as { items: Array<object | undefined> }).items
    const live = items.filter((x) => x !== undefined).length
    assert.strictEqual(live, q.size)
  })
})
