/**
 * The id set behind the in-memory store's de-duplication: exact (never says an id
 * was seen when it was not), remembers at least the last `capacity` ids, and stays
 * correct for strings that are not ids and for ids crafted to collide.
 */
import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { IdSet } from "../src/internal/idSet.ts"
import { formatId } from "../src/Protocol.ts"

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
const NODES = ["K5X2J9QM", "00000000", "ZZZZZZZZ", "7A7A7A7A"]
/** The 40 bits of a node's 8 characters. */
const nodeValue = (node: string) => [...node].reduce((n, c) => n * 32 + ALPHABET.indexOf(c), 0)
const NODE_VALUE = nodeValue("K5X2J9QM")

/** Ids from a small space, so that repeats are frequent. */
const anId = fc.oneof(
  fc
    .record({
      ms: fc.integer({ min: 0, max: 40 }),
      node: fc.constantFrom(...NODES),
      seq: fc.integer({ min: 0, max: 300 })
    })
    .map(({ ms, node, seq }) => formatId(1_767_225_600_000 + ms, node, seq)),
  // extremes of every field
  fc
    .record({
      ms: fc.constantFrom(0, 2 ** 48 - 1),
      node: fc.constantFrom(...NODES),
      seq: fc.constantFrom(0, 1, 2 ** 40 - 1)
    })
    .map(({ ms, node, seq }) => formatId(ms, node, seq)),
  // any string of the id's form, and strings that are not ids at all
  fc.stringMatching(/^[0-7][0-9A-HJKMNP-TV-Z]{25}$/),
  fc.constantFrom(
    "",
    "not an id",
    "01KDVDNA00K5X2J9QM0000001",
    "01KDVDNA00K5X2J9QM0000001I",
    "é1KDVDNA00K5X2J9QM00000019"
  )
)

describe("IdSet", () => {
  it("answers exactly as a set would, and remembers at least the last `capacity` ids", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }), fc.array(anId, { maxLength: 400 }), (capacity, ids) => {
        const set = new IdSet(capacity)
        const ever = new Set<string>()
        // distinct ids in the order first added (what "the last capacity" counts)
        const order: Array<string> = []
        for (const id of ids) {
          const fresh = set.add(id)
          if (!ever.has(id)) {
            // never seen: it must be new
            assert.isTrue(fresh, `${id} reported as a duplicate but never added`)
            ever.add(id)
            order.push(id)
          } else {
            // seen among the last `capacity` distinct ids: it must be a duplicate
            const recent = order.slice(-capacity).includes(id)
            if (recent) assert.isFalse(fresh, `${id} forgotten though among the last ${capacity}`)
            if (fresh) order.push(id)
          }
          assert.isTrue(set.has(id), `${id} not remembered just after add`)
        }
        for (const id of order.slice(-capacity)) assert.isTrue(set.has(id))
        // ids of the standard form and other strings are bounded apart, each to twice the capacity
        assert.isAtMost(set.size, 4 * capacity)
      }),
      { numRuns: 300 }
    )
  })

  it("forgets by age: past twice its capacity the oldest are gone", () => {
    const set = new IdSet(100)
    const id = (i: number) => formatId(1_767_225_600_000, "K5X2J9QM", i)
    for (let i = 0; i < 250; i++) assert.isTrue(set.add(id(i)))
    assert.isFalse(set.has(id(0)), "the first id is still remembered")
    for (let i = 150; i < 250; i++) assert.isTrue(set.has(id(i)))
    assert.isAtMost(set.size, 200)
  })

  it("a recycled table forgets what it held: over many rotations exactly the last one or two generations are remembered", () => {
    const capacity = 64
    const set = new IdSet(capacity)
    const id = (i: number) => formatId(1_767_225_600_000, "K5X2J9QM", i)
    for (let i = 0; i < capacity * 20; i++) {
      assert.isTrue(set.add(id(i)), `${i} reported as a duplicate`)
      // the generation being filled and the one before are remembered, nothing older
      const generationStart = i - (i % capacity)
      const oldestKept = Math.max(0, generationStart - capacity)
      for (let j = Math.max(0, oldestKept - capacity); j < oldestKept; j++) {
        assert.isFalse(set.has(id(j)), `${j} still remembered after adding ${i}`)
      }
      assert.isTrue(set.has(id(oldestKept)), `${oldestKept} forgotten after adding ${i}`)
    }
    // an id forgotten long ago is new again, in a table that held it before
    assert.isTrue(set.add(id(0)))
    assert.isFalse(set.add(id(0)))
    assert.isAtMost(set.size, 2 * capacity)
  })

  it("ids crafted to probe one run of slots: past the probe limit they go to the side set, still exact", () => {
    const set = new IdSet(100)
    const internals = set as unknown as { parse(id: string): boolean; home(): number; slots: number }
    const mask = internals.slots - 1
    // ids whose probing starts at slot 0 of the 256
    const colliding: Array<string> = []
    for (let seq = 0; colliding.length < 90; seq++) {
      const id = formatId(1_767_225_600_000, "K5X2J9QM", seq)
      internals.parse(id)
      if ((internals.home() & mask) === 0) colliding.push(id)
    }
    for (const id of colliding) assert.isTrue(set.add(id), `${id} new`)
    for (const id of colliding) assert.isFalse(set.add(id), `${id} recorded twice`)
    for (const id of colliding) assert.isTrue(set.has(id))
    // the same ids by their parts
    for (const id of colliding) {
      const seq = Number.parseInt(
        [...id.slice(18)].map((c) => ALPHABET.indexOf(c).toString(2).padStart(5, "0")).join(""),
        2
      )
      assert.isFalse(set.addParts(1_767_225_600_000, NODE_VALUE, "K5X2J9QM", seq), `${id} by parts`)
    }
    assert.isAbove((set as unknown as { odd: Set<string> }).odd.size, 0, "nothing reached the side set")
    assert.isFalse(set.has(formatId(1_767_225_600_001, "K5X2J9QM", 0)))
  })

  it("an id by its parts and by its string are the same id", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 48 - 1 }),
        fc.constantFrom(...NODES),
        fc.integer({ min: 0, max: 2 ** 40 - 1 }),
        fc.boolean(),
        (ms, node, seq, partsFirst) => {
          const set = new IdSet(8)
          const id = formatId(ms, node, seq)
          const value = nodeValue(node)
          if (partsFirst) {
            assert.isTrue(set.addParts(ms, value, node, seq))
            assert.isFalse(set.add(id))
          } else {
            assert.isTrue(set.add(id))
            assert.isFalse(set.addParts(ms, value, node, seq))
          }
          assert.isTrue(set.has(id) && set.hasParts(ms, value, node, seq))
          assert.isFalse(set.hasParts(ms, value, node, (seq + 1) % 2 ** 40))
          assert.isFalse(set.hasParts((ms + 1) % 2 ** 48, value, node, seq))
        }
      ),
      { numRuns: 2_000 }
    )
  })

  it("the all-zero id and the all-ones id are ids like the others", () => {
    const set = new IdSet(4)
    const zero = "0".repeat(26)
    const top = `7${"Z".repeat(25)}`
    assert.isFalse(set.has(zero))
    assert.isTrue(set.add(zero))
    assert.isFalse(set.add(zero))
    assert.isTrue(set.add(top))
    assert.isFalse(set.add(top))
    assert.isTrue(set.has(zero) && set.has(top))
    // lower case is another string: not the same id
    assert.isTrue(set.add(`7${"z".repeat(25)}`))
  })

  it("every character of an id counts", () => {
    const set = new IdSet(1_000)
    const base = "01KDVDNA00K5X2J9QM00000019"
    set.add(base)
    for (let i = 0; i < 26; i++) {
      for (const c of ALPHABET) {
        const other = base.slice(0, i) + c + base.slice(i + 1)
        if (other === base || (i === 0 && c > "7")) continue
        assert.isFalse(set.has(other), `${other} taken for ${base}`)
      }
    }
  })
})
