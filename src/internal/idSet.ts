/**
 * A set of event ids for de-duplication, bounded, with no per-id allocation.
 *
 * An event id (see `docs/protocol.md` §5) is 26 characters of Crockford base32 whose
 * top 2 bits are zero: exactly 128 bits. The set stores those bits as four 32-bit
 * words in open-addressing hash tables (typed arrays, linear probing, at most half
 * full), instead of a `Set<string>`: on a million ids that is about ten times faster
 * (no string hashing of rope strings, no rehash of a huge table, nothing for the GC to
 * trace) and a third of the memory.
 *
 * Bounded by generations: ids go into the current table; when it holds `capacity`
 * ids, it becomes the previous one and a clean table the current one. A lookup checks
 * both, so the set always remembers at least the last `capacity` ids added (and at
 * most twice that): forgetting is by age, as a ring would, without deletions.
 *
 * The table forgotten at a rotation is recycled: it is cleared a chunk at a time while
 * the next generation fills (a `fill` of 64 KB every few thousand adds) and becomes the
 * current table at the rotation after. A new table instead would cost its 32 MB (at the
 * default capacity) in page faults, as the system zeroes each page on its first write:
 * measured at 25-40 ms spread over the first batches of each generation, where these
 * clears cost well under a millisecond in all. Memory: three tables once two
 * generations were filled, 16 bytes per slot each (slots: twice the capacity,
 * rounded up to a power of two): 96 MiB at the default capacity of a million.
 *
 * A string that is not an id in that form (wrong length or character) is kept in a
 * plain `Set` on the side, bounded the same way (by generations of `capacity`), so the
 * set is correct for any string.
 */
import { formatId } from "../Protocol.ts"

/** Base32 value of each char code (Crockford, upper case), 255 for any other. */
const VALUE = (() => {
  const table = new Uint8Array(128).fill(255)
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
  for (let i = 0; i < 32; i++) table[alphabet.charCodeAt(i)] = i
  return table
})()

/** 20 bits from the 4 characters at `at`, or 2^20 when one is not a base32 character. */
const bits20 = (s: string, at: number): number => {
  const a = s.charCodeAt(at)
  const b = s.charCodeAt(at + 1)
  const c = s.charCodeAt(at + 2)
  const d = s.charCodeAt(at + 3)
  if ((a | b | c | d) > 127) return 1 << 20
  const va = VALUE[a]!
  const vb = VALUE[b]!
  const vc = VALUE[c]!
  const vd = VALUE[d]!
  if ((va | vb | vc | vd) > 31) return 1 << 20
  return (va << 15) | (vb << 10) | (vc << 5) | vd
}

/** Words of a recycled table cleared at once (64 KB). */
const clearChunk = 16_384

/** Slots a lookup probes at most; past it the id goes to the side set. */
const maxProbes = 64

/** What {@link Table.find} answers when it probed `maxProbes` slots in vain. */
const tooFar = -(2 ** 31)

/** One generation: keys as 4 words per slot, a power-of-two number of slots. */
class Table {
  readonly keys: Uint32Array
  readonly mask: number
  count = 0
  /** Whether the all-zero id is in (an all-zero slot means empty). */
  zero = false

  constructor(slots: number) {
    this.keys = new Uint32Array(slots * 4)
    this.mask = slots - 1
  }

  /**
   * The slot holding the key, `-1 - slot` for the empty slot where it would go, or
   * {@link tooFar}.
   */
  find(w0: number, w1: number, w2: number, w3: number, home: number): number {
    const keys = this.keys
    const mask = this.mask
    let slot = home & mask
    for (let probes = 0; probes < maxProbes; probes++) {
      const at = slot << 2
      const k0 = keys[at]!
      const k1 = keys[at + 1]!
      const k2 = keys[at + 2]!
      const k3 = keys[at + 3]!
      if (k0 === w0 && k1 === w1 && k2 === w2 && k3 === w3) return slot
      if ((k0 | k1 | k2 | k3) === 0) return -1 - slot
      slot = (slot + 1) & mask
    }
    return tooFar
  }
}

const nextPowerOfTwo = (n: number): number => {
  let p = 16
  while (p < n) p *= 2
  return p
}

/**
 * A bounded set of event ids: `add` says whether an id is new, remembering at least
 * the last `capacity` added (see the module doc). An id is given as its string or as
 * its three parts (time, node, sequence number), which need no string at all.
 */
export class IdSet {
  readonly capacity: number
  private readonly slots: number
  private current: Table
  private previous: Table | undefined
  /** The table forgotten at the last rotation, cleared up to `clearedTo` (words); the next current one. */
  private spare: Table | undefined = undefined
  private clearedTo = 0
  /** Adds until the next chunk of the spare is cleared. */
  private clearIn = 0
  /** Adds between two chunks: the whole spare is clean after `capacity` adds. */
  private readonly clearEvery: number
  /** Strings that are not ids of the standard form, in two generations too. */
  private odd = new Set<string>()
  private oddPrevious = new Set<string>()
  // the key of the id at hand
  private w0 = 0
  private w1 = 0
  private w2 = 0
  private w3 = 0

  constructor(capacity: number) {
    this.capacity = capacity
    this.slots = nextPowerOfTwo(capacity * 2)
    this.current = new Table(this.slots)
    this.clearEvery = Math.max(1, Math.floor(capacity / Math.ceil((this.slots * 4) / clearChunk)))
  }

  /** Ids remembered now (between the last `capacity` and twice that, of each kind). */
  get size(): number {
    return this.current.count + (this.previous?.count ?? 0) + this.odd.size + this.oddPrevious.size
  }

  /** Whether an id is remembered. */
  has(id: string): boolean {
    if (!this.parse(id)) return this.oddHas(id)
    return this.hasKey(id)
  }

  /** Adds an id; `true` when it was not remembered (it is now). */
  add(id: string): boolean {
    if (!this.parse(id)) return this.addOdd(id)
    return this.addKey(id)
  }

  /**
   * Adds the id of these parts — `ms` (below 2^48), the node's 40 bits as a number and
   * as its 8 characters, `seq` (below 2^40) — as `add` would add its string, which is
   * made only in the rare case it must go to the side set.
   */
  addParts(ms: number, node: number, nodeChars: string, seq: number): boolean {
    this.fromParts(ms, node, seq)
    return this.addKey(undefined, ms, nodeChars, seq)
  }

  /** Whether the id of these parts is remembered (see {@link addParts}). */
  hasParts(ms: number, node: number, nodeChars: string, seq: number): boolean {
    this.fromParts(ms, node, seq)
    return this.hasKey(undefined, ms, nodeChars, seq)
  }

  private hasKey(id: string | undefined, ms = 0, nodeChars = "", seq = 0): boolean {
    const w0 = this.w0
    const w1 = this.w1
    const w2 = this.w2
    const w3 = this.w3
    if ((w0 | w1 | w2 | w3) === 0) return this.current.zero || this.previous?.zero === true
    const home = this.home()
    const a = this.current.find(w0, w1, w2, w3, home)
    if (a >= 0) return true
    const b = this.previous === undefined ? -1 : this.previous.find(w0, w1, w2, w3, home)
    if (b >= 0) return true
    return (a === tooFar || b === tooFar) && this.oddHas(id ?? formatId(ms, nodeChars, seq))
  }

  private addKey(id: string | undefined, ms = 0, nodeChars = "", seq = 0): boolean {
    const w0 = this.w0
    const w1 = this.w1
    const w2 = this.w2
    const w3 = this.w3
    if ((w0 | w1 | w2 | w3) === 0) return this.addZero()
    const home = this.home()
    const previous = this.previous
    const inPrevious = previous === undefined ? -1 : previous.find(w0, w1, w2, w3, home)
    if (inPrevious >= 0) return false
    let table = this.current
    let found = table.find(w0, w1, w2, w3, home)
    if (found >= 0) return false
    if (found === tooFar || inPrevious === tooFar) {
      id ??= formatId(ms, nodeChars, seq)
      if (this.oddHas(id)) return false
    }
    if (table.count >= this.capacity) {
      table = this.rotate()
      found = table.find(w0, w1, w2, w3, home)
    }
    if (found === tooFar) return this.addOdd(id ?? formatId(ms, nodeChars, seq))
    const at = (-1 - found) << 2
    const keys = table.keys
    keys[at] = w0
    keys[at + 1] = w1
    keys[at + 2] = w2
    keys[at + 3] = w3
    table.count++
    if (this.spare !== undefined && --this.clearIn <= 0) this.clearSome()
    return true
  }

  private addZero(): boolean {
    if (this.current.zero || this.previous?.zero === true) return false
    let table = this.current
    if (table.count >= this.capacity) table = this.rotate()
    table.zero = true
    table.count++
    if (this.spare !== undefined && --this.clearIn <= 0) this.clearSome()
    return true
  }

  /**
   * The previous generation is forgotten; the current one becomes it, and the spare
   * (cleared by now) the current one. The forgotten table is the next spare. New
   * tables are made only for the first two rotations.
   */
  private rotate(): Table {
    let next = this.spare
    if (next === undefined) {
      next = new Table(this.slots)
    } else {
      // cleared in chunks during the generation; this finishes it if adds were fewer
      // than the chunks needed (never, with `clearEvery` as computed)
      if (this.clearedTo < next.keys.length) next.keys.fill(0, this.clearedTo)
      next.count = 0
      next.zero = false
    }
    this.spare = this.previous
    this.clearedTo = 0
    this.clearIn = this.clearEvery
    this.previous = this.current
    this.current = next
    return next
  }

  /** Clears the next chunk of the spare table. */
  private clearSome(): void {
    this.clearIn = this.clearEvery
    const keys = this.spare!.keys
    const from = this.clearedTo
    if (from >= keys.length) return
    const to = Math.min(keys.length, from + clearChunk)
    keys.fill(0, from, to)
    this.clearedTo = to
  }

  private oddHas(id: string): boolean {
    return this.odd.has(id) || this.oddPrevious.has(id)
  }

  private addOdd(id: string): boolean {
    if (this.oddHas(id)) return false
    if (this.odd.size >= this.capacity) {
      this.oddPrevious = this.odd
      this.odd = new Set()
    }
    this.odd.add(id)
    return true
  }

  /** The key of an id's parts (the same words as {@link parse} reads from its string). */
  private fromParts(ms: number, node: number, seq: number): void {
    this.w0 = Math.floor(ms / 65_536) >>> 0
    this.w1 = (((ms % 65_536) << 16) | Math.floor(node / 16_777_216)) >>> 0
    this.w2 = (((node % 16_777_216) << 8) | Math.floor(seq / 4_294_967_296)) >>> 0
    this.w3 = (seq % 4_294_967_296) >>> 0
  }

  /**
   * Reads the 128 bits of an id into `w0..w3`; `false` when the string is not an id
   * of the standard form. The id is three fields of 10 + 8 + 8 characters (time,
   * node, sequence), each read as 20-bit pieces, packed most significant first:
   * `w0` = time >> 16, `w1` = the time's low 16 bits and the node's top 16, `w2` = the
   * node's low 24 bits and the sequence's top 8, `w3` = the sequence's low 32.
   */
  private parse(id: string): boolean {
    if (id.length !== 26) return false
    const c0 = id.charCodeAt(0)
    const c1 = id.charCodeAt(1)
    if (c0 > 127 || c1 > 127) return false
    const v0 = VALUE[c0]!
    const v1 = VALUE[c1]!
    // the first character is 0..7: the top 2 of the 130 bits are zero
    if (v0 > 7 || v1 > 31) return false
    const t8 = (v0 << 5) | v1
    const ta = bits20(id, 2)
    const tb = bits20(id, 6)
    const na = bits20(id, 10)
    const nb = bits20(id, 14)
    const sa = bits20(id, 18)
    const sb = bits20(id, 22)
    if ((ta | tb | na | nb | sa | sb) >= 1 << 20) return false
    this.w0 = ((t8 << 24) | (ta << 4) | (tb >>> 16)) >>> 0
    this.w1 = (((tb & 0xffff) << 16) | (na >>> 4)) >>> 0
    this.w2 = (((na & 0xf) << 28) | (nb << 8) | (sa >>> 12)) >>> 0
    this.w3 = (((sa & 0xfff) << 20) | sb) >>> 0
    return true
  }

  /** Where the probing of the key at hand starts: a mix of all 128 bits. */
  private home(): number {
    let h = Math.imul(this.w3, 0x9e3779b1) ^ Math.imul(this.w2, 0x85ebca77) ^ Math.imul(this.w1, 0xc2b2ae3d) ^ this.w0
    h ^= h >>> 16
    h = Math.imul(h, 0x7feb352d)
    h ^= h >>> 15
    h = Math.imul(h, 0x846ca68b)
    h ^= h >>> 16
    return h >>> 0
  }
}
