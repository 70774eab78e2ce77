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

  it("one node and sequence number at many times: every id new once, a duplicate after", () => {
    // the ids hash alike (the time's low bits are not hashed): long probes end in the side set
    const set = new IdSet(10_000)
    const id = (ms: number) => formatId(1_767_225_600_000 + ms, "00000000", 0)
    for (let ms = 0; ms < 2_000; ms++) assert.isTrue(set.add(id(ms)))
    for (let ms = 0; ms < 2_000; ms++) assert.isFalse(set.add(id(ms)), `id at +${ms} ms recorded twice`)
    assert.isFalse(set.has(id(2_000)))
    assert.strictEqual(set.size, 2_000)
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
