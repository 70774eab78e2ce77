import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import { unpack } from "msgpackr"
import { Batch, Envelope, Errors, EventType, Protocol, Serialization, Trail } from "../src/index.ts"
import { fixtures, ID_0, ID_1, NODE, T0 } from "./fixtures/protocol/frames.ts"

const fromHex = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ""), "hex"))
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex")
const compact = (hex: string): string => hex.replace(/\s+/g, "").toLowerCase()
const fixture = (name: string) => {
  const f = fixtures.find((x) => x.name === name)
  if (f === undefined) throw new Error(`no fixture ${name}`)
  return f
}
/** Plain MessagePack bytes of any value (for hand-made, possibly invalid, frames). */
const codec = Serialization.make()
const wire = (value: unknown): Uint8Array => codec.encodeUnsafe(value).slice()

/** The error a decode throws (fails the test if it does not throw one). */
const decodeError = (bytes: Uint8Array | string, limits?: Protocol.DecodeLimits): Errors.ProtocolError => {
  try {
    Protocol.decodeFrame(bytes, limits)
  } catch (error) {
    if (error instanceof Errors.ProtocolError) return error
    throw error
  }
  return assert.fail("decoded without an error")
}

describe("Protocol fixtures (docs/protocol.md §13)", () => {
  for (const f of fixtures) {
    it(`${f.name}: encodes to its bytes, and its bytes decode to it`, () => {
      assert.strictEqual(toHex(Protocol.encodeFrame(f.frame)), compact(f.hex))
      assert.deepStrictEqual(Protocol.decodeFrame(fromHex(f.hex)), f.frame)
    })
  }

  it("every frame kind has a fixture", () => {
    const tags = new Set(fixtures.map((f) => f.frame._tag))
    for (const tag of Object.keys(Protocol.kinds)) assert.isTrue(tags.has(tag as Protocol.Frame["_tag"]), tag)
    const encodings = new Set(
      fixtures.flatMap((f) => (f.frame._tag === "Batch" ? [f.frame.events._tag] : ([] as Array<string>)))
    )
    assert.deepStrictEqual([...encodings].sort(), ["Columns", "Fields", "Rows"])
  })

  it("every error code has an ERROR fixture whose code maps to its close code", () => {
    for (const code of Object.keys(Protocol.codes) as Array<Protocol.Code>) {
      const f = fixture(`error-${code.replace(/_/g, "-")}`)
      const frame = Protocol.decodeFrame(fromHex(f.hex))
      assert.strictEqual(frame._tag, "Error")
      if (frame._tag !== "Error") return
      assert.strictEqual(frame.code, code)
      const error = Protocol.fromErrorFrame(frame)
      assert.strictEqual(error.wireCode, code)
      assert.strictEqual(error.closeCode, Protocol.codes[code].closeCode)
      assert.deepStrictEqual(Protocol.errorFrame(error), frame)
      // the failure helper builds the same frame
      assert.deepStrictEqual(Protocol.errorFrame(Protocol.failure(code, frame.message, frame.seq)), frame)
    }
    const errorFixtures = fixtures.filter((f) => f.frame._tag === "Error")
    assert.strictEqual(errorFixtures.length, Object.keys(Protocol.codes).length)
  })

  it("docs/protocol.md shows every fixture, with the same bytes, under its name", () => {
    const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8")
    const shown = new Map<string, string>()
    for (const m of doc.matchAll(/<!-- fixture: ([a-z0-9-]+) -->\n.*\n\n```\n([0-9a-f \n]+)```/g)) {
      shown.set(m[1]!, compact(m[2]!))
    }
    assert.deepStrictEqual([...shown.keys()].sort(), fixtures.map((f) => f.name).sort())
    for (const f of fixtures) assert.strictEqual(shown.get(f.name), compact(f.hex), f.name)
  })

  it("the byte-by-byte walkthroughs of docs/protocol.md §13.1 add up to their fixtures", () => {
    const doc = readFileSync(new URL("../docs/protocol.md", import.meta.url), "utf8")
    const walked = [...doc.matchAll(/<!-- annotated: ([a-z0-9-]+) -->\n.*\n\n```\n([^`]+)```/g)]
    assert.deepStrictEqual(
      walked.map((m) => m[1]),
      ["hello", "batch-rows"]
    )
    for (const [, name, block] of walked) {
      // each line: its leading two-digit hex tokens, up to the comment
      let hex = ""
      for (const line of block!.split("\n")) {
        for (const token of line.trim().split(/\s+/)) {
          if (!/^[0-9a-f]{2}$/.test(token)) break
          hex += token
        }
      }
      assert.strictEqual(hex, compact(fixture(name!).hex), name)
    }
  })

  it("a plain MessagePack decoder (msgpackr's default unpack) reads every frame as a plain array", () => {
    for (const f of fixtures) {
      const value = unpack(Buffer.from(fromHex(f.hex)))
      assert.isTrue(Array.isArray(value), f.name)
      assert.strictEqual(value[0], Protocol.kinds[f.frame._tag], f.name)
    }
    assert.deepStrictEqual(unpack(Buffer.from(fromHex(fixture("hello").hex))), [
      1,
      1,
      "trainer-7",
      "s3cret",
      { name: "cairn", version: "0.1.0" }
    ])
    assert.deepStrictEqual(unpack(Buffer.from(fromHex(fixture("batch-rows").hex))), [
      3,
      1,
      "train.Step@1",
      1,
      [
        [ID_0, BigInt(T0), { step: 1 }, null],
        [ID_1, BigInt(T0 + 7), { step: 2 }, ID_0]
      ]
    ])
    assert.deepStrictEqual(unpack(Buffer.from(fromHex(fixture("batch-columns").hex))), [
      3,
      2,
      "train.Step@1",
      2,
      [NODE, 41, BigInt(T0), [0, 7], [{ step: 1 }, { step: 2 }], [null, ID_0]]
    ])
    assert.deepStrictEqual(unpack(Buffer.from(fromHex(fixture("ack").hex))), [4, 1, null])
  })

  it("the columns and rows examples carry the same events", () => {
    const rows = Protocol.decodeFrame(fromHex(fixture("batch-rows").hex)) as Protocol.BatchFrame
    const columns = Protocol.decodeFrame(fromHex(fixture("batch-columns").hex)) as Protocol.BatchFrame
    const envelopes = (frame: Protocol.BatchFrame) => Protocol.toEnvelopes(frame, "trainer-7").map((e) => e.toJSON())
    assert.deepStrictEqual(envelopes(columns), envelopes(rows))
    assert.deepStrictEqual(Protocol.eventIds(columns), [ID_0, ID_1])
  })
})

// ---------------------------------------------------------------------------------------
// Event ids
// ---------------------------------------------------------------------------------------

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

/** The id as docs/protocol.md §5 specifies it: the 128-bit number time ‖ node ‖ seq in base32. */
const specId = (ms: number, node: string, seq: number): string => {
  let nodeBits = 0n
  for (const c of node) nodeBits = nodeBits * 32n + BigInt(ALPHABET.indexOf(c))
  let n = (BigInt(ms) << 80n) | (nodeBits << 40n) | BigInt(seq % 2 ** 40)
  let out = ""
  for (let i = 0; i < 26; i++) {
    out = ALPHABET[Number(n & 31n)]! + out
    n >>= 5n
  }
  return out
}

const nodeArb = fc.array(fc.constantFrom(...ALPHABET), { minLength: 8, maxLength: 8 }).map((chars) => chars.join(""))
const timeArb = fc.integer({ min: 0, max: Protocol.maxTime })
const idArb = fc
  .tuple(timeArb, nodeArb, fc.integer({ min: 0, max: 2 ** 40 - 1 }))
  .map(([t, node, seq]) => Protocol.formatId(t, node, seq))

describe("Protocol event ids (docs/protocol.md §5)", () => {
  it("the worked example", () => {
    assert.strictEqual(Protocol.formatId(T0, NODE, 41), "01KDVDNA00K5X2J9QM00000019")
    assert.strictEqual(specId(T0, NODE, 41), "01KDVDNA00K5X2J9QM00000019")
    assert.strictEqual(Protocol.formatId(T0 + 7, NODE, 42), ID_1)
  })

  it("formatId is the specified bit layout, an event id, and carries its time", () => {
    fc.assert(
      fc.property(timeArb, nodeArb, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (ms, node, seq) => {
        const id = Protocol.formatId(ms, node, seq)
        assert.strictEqual(id, specId(ms, node, seq))
        assert.isTrue(Envelope.isEventId(id), id)
        assert.strictEqual(Envelope.idTime(id), ms)
        assert.strictEqual(id.slice(10, 18), node)
      }),
      { numRuns: 2_000 }
    )
  })

  it("equals the ids of Envelope's generator, and a Batch's, for any time, sequence number and offsets", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2 ** 20, max: Protocol.maxTime - 2 ** 20 }),
        fc.array(fc.integer({ min: -(2 ** 20), max: 2 ** 20 }), { minLength: 1, maxLength: 20 }),
        fc.oneof(fc.integer({ min: 0, max: 1_000_000 }), fc.integer({ min: 2 ** 40 - 10, max: 2 ** 41 })),
        (timeBase, offsets, firstSeq) => {
          const origin = new Envelope.Origin("test.Ids@1", "h", new Envelope.IdGenerator())
          const type = EventType.make("test.Ids", 1, Schema.Number)
          const batch = new Batch.Batch(type, origin, offsets, timeBase, offsets, undefined, firstSeq)
          const frame = Protocol.decodeFrame(Protocol.encodeFrame(Protocol.fromBatch(1, batch))) as Protocol.BatchFrame
          const ids = Protocol.eventIds(frame)
          for (let i = 0; i < offsets.length; i++) {
            assert.strictEqual(ids[i], batch.id(i))
            assert.strictEqual(Protocol.eventId(frame, i), batch.id(i))
            assert.strictEqual(ids[i], batch.events[i]!.id)
          }
        }
      ),
      { numRuns: 300 }
    )
  })

  it.effect("a real trail's batches: ids derived from the columns are Batch.id(i) and the envelopes' ids", () =>
    Effect.gen(function* () {
      const Step = EventType.make("wire.Step", 1, Schema.Struct({ step: Schema.Number }), {
        batch: { maxSize: 64, lingerMs: 0 }
      })
      const batches: Array<Batch.Batch> = []
      const trail = yield* Trail.make({
        source: "trainer-7",
        types: [
          Trail.route(Step, (batch) =>
            Effect.sync(() => {
              batches.push(batch)
            })
          )
        ]
      })
      yield* TestClock.setTime(T0)
      for (let i = 0; i < 300; i++) {
        trail.logUnsafe(Step, { step: i }, i % 7 === 3 ? { parent: ID_0 } : undefined)
        if (i % 50 === 49) yield* TestClock.adjust(3)
      }
      yield* trail.flush
      assert.isAbove(batches.length, 1)
      let seq = 0
      let events = 0
      for (const batch of batches) {
        const sent = Protocol.fromBatch(++seq, batch)
        const bytes = Protocol.encodeFrame(sent)
        const frame = Protocol.decodeFrame(bytes) as Protocol.BatchFrame
        // objects of the same keys: sent as fields
        assert.strictEqual(frame.events._tag, "Fields")
        assert.strictEqual(Protocol.eventCount(frame), batch.size)
        const ids = Protocol.eventIds(frame)
        const envelopes = Protocol.toEnvelopes(frame, "trainer-7")
        for (let i = 0; i < batch.size; i++) {
          const e = batch.events[i]!
          assert.strictEqual(ids[i], batch.id(i))
          assert.strictEqual(ids[i], e.id)
          assert.deepStrictEqual(envelopes[i]!.toJSON(), e.toJSON())
          assert.strictEqual(Protocol.eventTime(frame, i), e.happenedAt)
          assert.deepStrictEqual(Protocol.eventData(frame, i), e.data)
          assert.strictEqual(Protocol.eventParent(frame, i), e.parent)
        }
        events += batch.size
      }
      assert.strictEqual(events, 300)
      assert.isAbove(new Set(batches.flatMap((b) => b.events.map((e) => e.happenedAt))).size, 1)
    })
  )
})

// ---------------------------------------------------------------------------------------
// Malformed input
// ---------------------------------------------------------------------------------------

const batchRows = (seq: unknown, key: unknown, rows: unknown) => wire([3, seq, key, 1, rows])
const batchColumns = (columns: ReadonlyArray<unknown>, key: unknown = "train.Step@1") => wire([3, 7, key, 2, columns])
const goodColumns = [NODE, 41, T0, [0, 7], [{ step: 1 }, { step: 2 }], null]
const withColumn = (i: number, value: unknown) => goodColumns.map((c, j) => (j === i ? value : c))
const batchFields = (fields: ReadonlyArray<unknown>) => wire([3, 8, "train.Step@1", 3, fields])
const goodFields = [NODE, 41, T0, [0, 7], { step: [1, 2], tag: ["a", "b"] }, null]
const withField = (i: number, value: unknown) => goodFields.map((c, j) => (j === i ? value : c))
const row = (id: unknown = ID_0, t: unknown = T0, parent: unknown = null) => [id, t, { step: 1 }, parent]
const helloHex = compact(fixture("hello").hex)
const small: Protocol.DecodeLimits = { maxFrameBytes: Protocol.defaults.maxFrameBytes, maxBatchEvents: 2 }

interface Case {
  readonly name: string
  readonly input: Uint8Array | string
  readonly code: Protocol.Code
  /** A piece of the detail. */
  readonly says: string
  readonly seq?: number
  readonly limits?: Protocol.DecodeLimits
}

const cases: ReadonlyArray<Case> = [
  // the message itself
  { name: "a text frame", input: "[1,1]", code: "text_frame", says: "text frame" },
  {
    name: "an oversize frame, checked before decoding",
    input: new Uint8Array(49).fill(0xc1),
    limits: { maxFrameBytes: 48, maxBatchEvents: 1_024 },
    code: "frame_too_large",
    says: "49 bytes is larger than the limit of 48"
  },
  {
    name: "a valid frame one byte over the limit",
    input: fromHex(helloHex),
    limits: { maxFrameBytes: 47, maxBatchEvents: 1_024 },
    code: "frame_too_large",
    says: "48 bytes"
  },
  // not exactly one MessagePack value
  { name: "no bytes", input: new Uint8Array(0), code: "bad_msgpack", says: "empty" },
  { name: "not MessagePack (ASCII text)", input: fromHex("68656c6c6f"), code: "bad_msgpack", says: "left over" },
  { name: "the never-used byte 0xc1", input: fromHex("c1"), code: "bad_msgpack", says: "0xc1" },
  { name: "truncated", input: fromHex(helloHex.slice(0, -2)), code: "bad_msgpack", says: "ends in the middle" },
  { name: "truncated array header", input: fromHex("dc00"), code: "bad_msgpack", says: "ends in the middle" },
  { name: "bytes left over", input: fromHex(`${helloHex}00`), code: "bad_msgpack", says: "1 byte is left over" },
  { name: "an unknown ext type", input: fromHex("9206d40500"), code: "bad_msgpack", says: "Unknown extension" },
  {
    name: "an array claiming 2^32 - 1 elements",
    input: fromHex("ddffffffff01"),
    code: "bad_msgpack",
    says: "ends in the middle"
  },
  // not a frame
  { name: "a string, not an array", input: fromHex("a3616263"), code: "bad_frame", says: "a MessagePack array" },
  { name: "a map, not an array", input: fromHex("80"), code: "bad_frame", says: "got a map" },
  { name: "an empty array", input: fromHex("90"), code: "bad_frame", says: "empty array" },
  { name: "kind 0", input: fromHex("9100"), code: "bad_frame", says: "frame kind" },
  { name: "unknown kind 9", input: fromHex("9109"), code: "bad_frame", says: "frame kind" },
  { name: "a string kind", input: fromHex("91a131"), code: "bad_frame", says: "frame kind" },
  { name: "a float kind 1.5", input: wire([1.5]), code: "bad_frame", says: "frame kind" },
  // field counts and types
  { name: "PING with 3 elements", input: fromHex("93060102"), code: "bad_frame", says: "PING has 3 elements" },
  { name: "PONG with 1 element", input: fromHex("9107"), code: "bad_frame", says: "PONG has 1 element, expected 2" },
  { name: "PING nonce 2^32", input: wire([6, 2 ** 32]), code: "bad_frame", says: "PING nonce" },
  { name: "PING nonce -1", input: fromHex("9206ff"), code: "bad_frame", says: "PING nonce" },
  { name: "DRAIN reason not a string", input: fromHex("920801"), code: "bad_frame", says: "DRAIN reason" },
  { name: "HELLO harness not a string", input: wire([1, 1, 7, "", {}]), code: "bad_frame", says: "harness" },
  { name: "HELLO harness empty", input: wire([1, 1, "", "", {}]), code: "bad_frame", says: "non-empty" },
  { name: "HELLO token nil", input: wire([1, 1, "h", null, {}]), code: "bad_frame", says: "HELLO token" },
  { name: "HELLO client an array", input: wire([1, 1, "h", "t", []]), code: "bad_frame", says: "HELLO client" },
  {
    name: "HELLO client value not a string",
    input: wire([1, 1, "h", "t", { name: 1 }]),
    code: "bad_frame",
    says: 'entry "name"'
  },
  { name: "HELLO with 4 elements", input: wire([1, 1, "h", "t"]), code: "bad_frame", says: "HELLO has 4" },
  { name: "HELLO version 0", input: wire([1, 0, "h", "t", {}]), code: "bad_frame", says: "HELLO version" },
  {
    name: "HELLO version 2",
    input: wire([1, 2, "h", "t", {}]),
    code: "unsupported_version",
    says: "version 2 is not supported; supported: 1"
  },
  {
    name: "HELLO version 2 of another layout: the version is read first",
    input: wire([1, 2]),
    code: "unsupported_version",
    says: "version 2"
  },
  {
    name: "WELCOME without idleTimeoutMs",
    input: wire([2, 1, "s", { ...Protocol.welcomeLimits(Protocol.defaults), idleTimeoutMs: undefined }]),
    code: "bad_frame",
    says: "idleTimeoutMs"
  },
  { name: "WELCOME limits nil", input: wire([2, 1, "s", null]), code: "bad_frame", says: "WELCOME limits" },
  { name: "BATCH negative seq", input: batchRows(-1, "a.B@1", [row()]), code: "bad_frame", says: "BATCH seq" },
  { name: "BATCH seq 0", input: batchRows(0, "a.B@1", [row()]), code: "bad_frame", says: "BATCH seq" },
  { name: "BATCH float seq 1.5", input: batchRows(1.5, "a.B@1", [row()]), code: "bad_frame", says: "got 1.5" },
  { name: "BATCH seq a string", input: batchRows("1", "a.B@1", [row()]), code: "bad_frame", says: "BATCH seq" },
  { name: "BATCH seq 2^53", input: batchRows(2n ** 53n, "a.B@1", [row()]), code: "bad_frame", says: "BATCH seq" },
  { name: "BATCH key a number", input: batchRows(1, 1, [row()]), code: "bad_frame", says: "BATCH key", seq: 1 },
  {
    name: "BATCH with 6 elements",
    input: wire([3, 1, "a.B@1", 1, [row()], 0]),
    code: "bad_frame",
    says: "BATCH has 6"
  },
  { name: "BATCH encoding 4", input: wire([3, 1, "a.B@1", 4, []]), code: "bad_frame", says: "encoding", seq: 1 },
  { name: "BATCH encoding 0", input: wire([3, 1, "a.B@1", 0, []]), code: "bad_frame", says: "3 (fields)", seq: 1 },
  { name: "BATCH rows a map", input: batchRows(1, "a.B@1", {}), code: "bad_frame", says: "rows", seq: 1 },
  { name: "BATCH of no events", input: batchRows(4, "a.B@1", []), code: "bad_frame", says: "at least 1", seq: 4 },
  {
    name: "BATCH of too many events",
    input: fromHex(fixture("batch-rows").hex),
    limits: { maxFrameBytes: 1_048_576, maxBatchEvents: 1 },
    code: "batch_too_large",
    says: "2 events, more than the limit of 1",
    seq: 1
  },
  {
    name: "BATCH of too many events and a bad key: the count is checked first",
    input: batchRows(2, "not a key", [row(), row(), row()]),
    limits: small,
    code: "batch_too_large",
    says: "3 events",
    seq: 2
  },
  {
    name: "BATCH columns of too many events",
    input: batchColumns(withColumn(4, [1, 2, 3])),
    limits: small,
    code: "batch_too_large",
    says: "3 events",
    seq: 7
  },
  // keys
  ...[
    "train.Step",
    "train.Step@0",
    "Step@1",
    "train.Step@01",
    "train.Step@1.5",
    "train.Step@ 1",
    "1a.B@1",
    "a..B@1"
  ].map(
    (key): Case => ({
      name: `bad key ${JSON.stringify(key)}`,
      input: batchRows(3, key, [row()]),
      code: "bad_frame",
      says: "BATCH key",
      seq: 3
    })
  ),
  { name: "key version 2^53", input: batchRows(3, "a.B@9007199254740992", [row()]), code: "bad_frame", says: "key" },
  // rows
  { name: "a row of 3", input: batchRows(1, "a.B@1", [[ID_0, T0, 1]]), code: "bad_frame", says: "event 0" },
  { name: "a row that is a map", input: batchRows(1, "a.B@1", [{}]), code: "bad_frame", says: "event 0" },
  ...[
    ["lower case", ID_0.toLowerCase()],
    ["25 characters", ID_0.slice(1)],
    ["27 characters", `${ID_0}0`],
    ["first character 8", `8${ID_0.slice(1)}`],
    ["an I", `${ID_0.slice(0, 20)}I${ID_0.slice(21)}`],
    ["a number", 5]
  ].map(
    ([what, id]): Case => ({
      name: `bad id in rows: ${what}`,
      input: batchRows(1, "a.B@1", [row(), row(id)]),
      code: "bad_frame",
      says: "BATCH event 1 id",
      seq: 1
    })
  ),
  { name: "happenedAt -1", input: batchRows(1, "a.B@1", [row(ID_0, -1)]), code: "bad_frame", says: "happenedAt" },
  {
    name: "happenedAt 2^48",
    input: batchRows(1, "a.B@1", [row(ID_0, 2 ** 48)]),
    code: "bad_frame",
    says: "happenedAt"
  },
  { name: "happenedAt 0.5", input: batchRows(1, "a.B@1", [row(ID_0, 0.5)]), code: "bad_frame", says: "happenedAt" },
  {
    name: "happenedAt a string",
    input: batchRows(1, "a.B@1", [row(ID_0, "1")]),
    code: "bad_frame",
    says: "happenedAt"
  },
  { name: "a row parent 5", input: batchRows(1, "a.B@1", [row(ID_0, T0, 5)]), code: "bad_frame", says: "parent" },
  {
    name: "a row parent undefined (ext 0), not nil",
    input: batchRows(1, "a.B@1", [[ID_0, T0, 1, undefined]]),
    code: "bad_frame",
    says: "parent"
  },
  // columns
  { name: "columns of 5", input: batchColumns(goodColumns.slice(0, 5)), code: "bad_frame", says: "an array of 6" },
  { name: "columns nil", input: wire([3, 7, "a.B@1", 2, null]), code: "bad_frame", says: "columns" },
  {
    name: "offsets shorter than data",
    input: batchColumns(withColumn(3, [0])),
    code: "bad_frame",
    says: "offsets has 1 entries, data has 2",
    seq: 7
  },
  {
    name: "offsets longer than data",
    input: batchColumns(withColumn(3, [0, 1, 2])),
    code: "bad_frame",
    says: "offsets has 3 entries, data has 2"
  },
  {
    name: "parents longer than data",
    input: batchColumns(withColumn(5, [null, null, null])),
    code: "bad_frame",
    says: "parents has 3 entries"
  },
  { name: "offsets nil", input: batchColumns(withColumn(3, null)), code: "bad_frame", says: "BATCH offsets" },
  { name: "data a map", input: batchColumns(withColumn(4, {})), code: "bad_frame", says: "BATCH data" },
  { name: "parents a string", input: batchColumns(withColumn(5, ID_0)), code: "bad_frame", says: "BATCH parents" },
  { name: "a bad key in columns", input: batchColumns(goodColumns, "x"), code: "bad_frame", says: "BATCH key" },
  { name: "node of 7 characters", input: batchColumns(withColumn(0, "K5X2J9Q")), code: "bad_frame", says: "node" },
  { name: "node with an O", input: batchColumns(withColumn(0, "K5X2J9QO")), code: "bad_frame", says: "node" },
  { name: "node in lower case", input: batchColumns(withColumn(0, "k5x2j9qm")), code: "bad_frame", says: "node" },
  { name: "firstSeq 2^40", input: batchColumns(withColumn(1, 2 ** 40)), code: "bad_frame", says: "firstSeq" },
  { name: "firstSeq -1", input: batchColumns(withColumn(1, -1)), code: "bad_frame", says: "firstSeq" },
  { name: "timeBase 2^48", input: batchColumns(withColumn(2, 2 ** 48)), code: "bad_frame", says: "timeBase" },
  { name: "timeBase 1.5", input: batchColumns(withColumn(2, 1.5)), code: "bad_frame", says: "timeBase" },
  {
    name: "a time before the epoch (timeBase + offset < 0)",
    input: batchColumns(withColumn(2, 5).map((c, j) => (j === 3 ? [0, -6] : c))),
    code: "bad_frame",
    says: "BATCH offset 1",
    seq: 7
  },
  { name: "an offset 0.5", input: batchColumns(withColumn(3, [0, 0.5])), code: "bad_frame", says: "BATCH offset 1" },
  { name: "an offset nil", input: batchColumns(withColumn(3, [null, 0])), code: "bad_frame", says: "BATCH offset 0" },
  { name: "a parent 5", input: batchColumns(withColumn(5, [null, 5])), code: "bad_frame", says: "BATCH parent 1" },
  // fields
  { name: "fields of 5", input: batchFields(goodFields.slice(0, 5)), code: "bad_frame", says: "an array of 6" },
  { name: "fields nil", input: wire([3, 8, "a.B@1", 3, null]), code: "bad_frame", says: "BATCH fields" },
  { name: "fields an array", input: batchFields(withField(4, [[1, 2]])), code: "bad_frame", says: "a map of key" },
  {
    name: "a field not an array",
    input: batchFields(withField(4, { step: [1, 2], tag: "a" })),
    code: "bad_frame",
    says: 'BATCH field "tag"',
    seq: 8
  },
  {
    name: "a field shorter than offsets",
    input: batchFields(withField(4, { step: [1, 2], tag: ["a"] })),
    code: "bad_frame",
    says: 'field "tag" has 1 entries, offsets has 2'
  },
  {
    name: "fields of no events",
    input: batchFields(withField(4, { step: [] }).map((c, j) => (j === 3 ? [] : c))),
    code: "bad_frame",
    says: "at least 1"
  },
  {
    name: "fields of too many events",
    input: batchFields(withField(4, { step: [1, 2, 3] }).map((c, j) => (j === 3 ? [0, 0, 0] : c))),
    limits: small,
    code: "batch_too_large",
    says: "3 events"
  },
  {
    name: "fields of more than maxFields keys",
    input: batchFields(
      withField(4, Object.fromEntries(Array.from({ length: Protocol.maxFields + 1 }, (_, k) => [`k${k}`, [1, 2]])))
    ),
    code: "bad_frame",
    says: `at most ${Protocol.maxFields}`
  },
  {
    name: "fields: parents longer",
    input: batchFields(withField(5, [null])),
    code: "bad_frame",
    says: "parents has 1"
  },
  { name: "fields: a bad node", input: batchFields(withField(0, "nope")), code: "bad_frame", says: "node" },
  { name: "fields: an offset 0.5", input: batchFields(withField(3, [0, 0.5])), code: "bad_frame", says: "offset 1" },
  // ACK, ERROR
  { name: "ACK outcomes an empty array", input: wire([4, 1, []]), code: "bad_frame", says: "ACK outcomes" },
  {
    name: "ACK outcome indexes not increasing",
    input: wire([
      4,
      1,
      [
        [1, "invalid", ""],
        [1, "invalid", ""]
      ]
    ]),
    code: "bad_frame",
    says: "ACK outcome 1 index"
  },
  { name: "ACK outcome index -1", input: wire([4, 1, [[-1, "invalid", ""]]]), code: "bad_frame", says: "index" },
  { name: "ACK outcome code empty", input: wire([4, 1, [[0, "", ""]]]), code: "bad_frame", says: "code" },
  { name: "ACK outcome reason nil", input: wire([4, 1, [[0, "invalid", null]]]), code: "bad_frame", says: "reason" },
  {
    name: "ACK of more outcomes than maxBatchEvents",
    input: wire([
      4,
      1,
      [
        [0, "invalid", ""],
        [1, "invalid", ""],
        [2, "invalid", ""]
      ]
    ]),
    limits: small,
    code: "bad_frame",
    says: "3 outcomes"
  },
  { name: "ERROR seq 0", input: wire([5, "internal", "", 0]), code: "bad_frame", says: "ERROR seq" },
  { name: "ERROR code empty", input: wire([5, "", "", null]), code: "bad_frame", says: "ERROR code" },
  { name: "ERROR without seq", input: wire([5, "internal", ""]), code: "bad_frame", says: "ERROR has 3" }
]

describe("Protocol malformed input", () => {
  for (const c of cases) {
    it(`${c.name} → ${c.code}`, () => {
      const error = decodeError(c.input, c.limits)
      assert.strictEqual(error.wireCode, c.code, error.message)
      assert.strictEqual(error.closeCode, Protocol.codes[c.code].closeCode)
      assert.include(error.detail, c.says)
      if (c.seq !== undefined) assert.strictEqual(error.seq, c.seq)
      assert.strictEqual(error.code, "CAIRN_PROTOCOL")
      assert.strictEqual(error._tag, "ProtocolError")
      const failed = Effect.runSync(Effect.flip(Protocol.decode(c.input, c.limits)))
      assert.instanceOf(failed, Errors.ProtocolError)
      assert.strictEqual(failed.message, error.message)
    })
  }

  it("the message names the code, the close code and the BATCH", () => {
    const error = decodeError(batchRows(4, "a.B@1", []))
    assert.strictEqual(
      error.message,
      "protocol error bad_frame on BATCH 4 (close 1002): a BATCH has at least 1 event, got 0"
    )
  })
})

describe("Protocol lenient reading", () => {
  it("integers in any int format, or as integral floats, decode as numbers", () => {
    const frame = Protocol.decodeFrame(
      wire([3, 1.0, "a.B@1", 2, [NODE, 41n, BigInt(T0), [0n, 7.0], [1, 2], [null, null]]])
    ) as Protocol.BatchFrame
    assert.strictEqual(frame.seq, 1)
    assert.deepStrictEqual(frame.events, {
      _tag: "Columns",
      node: NODE,
      firstSeq: 41,
      timeBase: T0,
      offsets: [0, 7],
      data: [1, 2],
      parents: [undefined, undefined]
    })
    // uint 64, as another library may write a time
    const rows = Protocol.decodeFrame(
      fromHex(`9503 01 a5612e424031 01 91 94 ba${toHex(Buffer.from(ID_0))} cf0000019b76daa800 01 c0`)
    ) as Protocol.BatchFrame
    assert.deepStrictEqual(rows.events, { _tag: "Rows", rows: [[ID_0, T0, 1, undefined]] })
  })

  it("fixmaps and the smallest formats (as another library writes them) decode like Cairn's", () => {
    // HELLO with a fixmap (82) instead of map 16
    const hello = Protocol.decodeFrame(
      fromHex(
        "95 01 01 a9 747261696e65722d37 a6 733363726574 82 a4 6e616d65 a5 636169726e a7 76657273696f6e a5 302e312e30"
      )
    )
    assert.deepStrictEqual(hello, fixture("hello").frame)
  })

  it("unknown keys of the WELCOME limits are ignored", () => {
    const limits = { ...Protocol.welcomeLimits(Protocol.defaults), somethingNew: 5 }
    const frame = Protocol.decodeFrame(wire([2, 1, "s", limits]))
    assert.deepStrictEqual(frame, {
      _tag: "Welcome",
      version: 1,
      session: "s",
      limits: Protocol.welcomeLimits(Protocol.defaults)
    })
  })

  it("an ERROR of an unknown code decodes; it is handled like internal", () => {
    const frame = Protocol.decodeFrame(wire([5, "from_the_future", "?", null]))
    assert.deepStrictEqual(frame, { _tag: "Error", code: "from_the_future", message: "?", seq: undefined })
    assert.strictEqual(Protocol.codeInfo("from_the_future"), Protocol.codes.internal)
    assert.strictEqual(Protocol.fromErrorFrame(frame as Protocol.ErrorFrame).closeCode, 1011)
  })
})

// ---------------------------------------------------------------------------------------
// Encoding details
// ---------------------------------------------------------------------------------------

describe("Protocol encoding", () => {
  it("writes missing parents as nil, never as undefined (ext 0)", () => {
    const parents = new Array<string | undefined>(2) // holes
    parents[1] = ID_0
    const frame: Protocol.BatchFrame = {
      _tag: "Batch",
      seq: 1,
      key: "a.B@1",
      events: { _tag: "Columns", node: NODE, firstSeq: 0, timeBase: 0, offsets: [0, 0], data: [1, 2], parents }
    }
    const value = unpack(Buffer.from(Protocol.encodeFrame(frame)))
    assert.deepStrictEqual(value[4][5], [null, ID_0])
  })

  it("writes integers above 32 bits as int 64, and offsets beyond 32 bits too", () => {
    const frame: Protocol.BatchFrame = {
      _tag: "Batch",
      seq: 2 ** 40,
      key: "a.B@1",
      events: {
        _tag: "Columns",
        node: NODE,
        firstSeq: 0,
        timeBase: 0,
        offsets: [0, 2 ** 47],
        data: [1, 2],
        parents: undefined
      }
    }
    const hex = toHex(Protocol.encodeFrame(frame))
    assert.include(hex, "d30000010000000000") // seq 2^40
    assert.include(hex, "92" + "00" + "d30000800000000000") // offsets [0, 2^47]
    assert.deepStrictEqual(Protocol.decodeFrame(Protocol.encodeFrame(frame)), frame)
  })

  it("data that cannot be encoded is an EncodeError", () => {
    const frame: Protocol.BatchFrame = {
      _tag: "Batch",
      seq: 1,
      key: "a.B@1",
      events: { _tag: "Rows", rows: [[ID_0, 0, { f: () => 1 }, undefined]] }
    }
    assert.throws(() => Protocol.encodeFrame(frame), Errors.EncodeError)
    const exit = Effect.runSyncExit(Protocol.encode(frame))
    assert.isTrue(Exit.isFailure(exit) && exit.cause.reasons.some((r) => r._tag === "Fail"))
  })

  it("fromBatch sends the batch's arrays as they are, and the sequence part modulo 2^40", () => {
    const origin = new Envelope.Origin("a.B@1", "h", new Envelope.IdGenerator())
    const type = EventType.make("a.B", 1, Schema.Number)
    const data = [1, 2, 3]
    const offsets = [0, 1, 1]
    const batch = new Batch.Batch(type, origin, data, T0, offsets, undefined, 2 ** 40 + 3)
    const frame = Protocol.fromBatch(9, batch)
    assert.strictEqual(frame.seq, 9)
    assert.strictEqual(frame.key, "a.B@1")
    assert.strictEqual(frame.events._tag, "Columns")
    if (frame.events._tag !== "Columns") return
    assert.strictEqual(frame.events.data, data)
    assert.strictEqual(frame.events.offsets, offsets)
    assert.strictEqual(frame.events.firstSeq, 3)
    assert.strictEqual(frame.events.node, batch.idNode)
  })
})

// ---------------------------------------------------------------------------------------
// Codes, outcomes, limits
// ---------------------------------------------------------------------------------------

describe("Protocol codes, outcomes and limits", () => {
  it("every code has a close code a WebSocket may send, a retry flag and a description", () => {
    const retryable = new Set([1001, 1006, 1011, 1012, 1013, 4008, 4029])
    for (const [code, info] of Object.entries(Protocol.codes as Record<string, Protocol.CodeInfo>)) {
      assert.isTrue(
        (info.closeCode >= 1000 && info.closeCode <= 1014 && info.closeCode !== 1005 && info.closeCode !== 1006) ||
          (info.closeCode >= 4000 && info.closeCode <= 4999),
        code
      )
      assert.strictEqual(info.retry, retryable.has(info.closeCode), `${code}: retry follows the close code (§8)`)
      assert.isAbove(info.description.length, 10)
      assert.isAtMost(Buffer.byteLength(code), 123, "the close reason is the code")
      assert.match(code, /^[a-z_]+$/)
    }
  })

  it("failure builds the error with the code's close code", () => {
    const error = Protocol.failure("window_exceeded", "9 batches in flight, at most 8", 17)
    assert.strictEqual(error.closeCode, 4009)
    assert.strictEqual(error.seq, 17)
    assert.strictEqual(
      error.message,
      "protocol error window_exceeded on BATCH 17 (close 4009): 9 batches in flight, at most 8"
    )
    assert.isTrue(Protocol.isCode("window_exceeded"))
    assert.isFalse(Protocol.isCode("toString"))
  })

  it("only duplicate counts as accepted", () => {
    assert.isTrue(Protocol.isAccepted("duplicate"))
    for (const code of ["unknown_type", "invalid", "rejected", "something_new"])
      assert.isFalse(Protocol.isAccepted(code))
    for (const [code, o] of Object.entries(Protocol.outcomes)) assert.strictEqual(o.accepted, Protocol.isAccepted(code))
  })

  it("truncateReason keeps reasons within 512 bytes of UTF-8, at a character boundary", () => {
    assert.strictEqual(Protocol.truncateReason("short"), "short")
    const exact = "a".repeat(512)
    assert.strictEqual(Protocol.truncateReason(exact), exact)
    const cut = Protocol.truncateReason("a".repeat(600))
    assert.strictEqual(Buffer.byteLength(cut), 512)
    assert.isTrue(cut.endsWith("…"))
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 400 }), (s) => {
        const t = Protocol.truncateReason(s)
        assert.isAtMost(Buffer.byteLength(t), Protocol.maxReasonBytes)
        if (Buffer.byteLength(s) <= Protocol.maxReasonBytes) assert.strictEqual(t, s)
        else assert.isTrue(s.startsWith(t.slice(0, -1)) && t.endsWith("…"))
      })
    )
  })

  it("limits: defaults, overrides, and invalid ones refused", () => {
    assert.deepStrictEqual(Protocol.limits(), Protocol.defaults)
    assert.strictEqual(Protocol.limits({ maxInFlight: 16 }).maxInFlight, 16)
    assert.isAtLeast(Protocol.defaults.maxBatchEvents, EventType.defaults.batch.maxSize)
    for (const bad of [
      { maxInFlight: 0 },
      { maxFrameBytes: 1.5 },
      { heartbeatMs: 45_000 },
      { maxEventsPerSecond: 10 }
    ]) {
      assert.throws(() => Protocol.limits(bad), Errors.InvalidOptions)
    }
    assert.deepStrictEqual(Object.keys(Protocol.welcomeLimits(Protocol.defaults)), [...Protocol.welcomeLimitKeys])
  })
})

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

const safeKey = fc.stringMatching(/^[a-z][a-zA-Z0-9_]{0,8}$/)
const { data: dataArb } = fc.letrec((tie) => ({
  data: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double().map((x) => (Object.is(x, -0) ? 0 : x)),
    fc.string({ maxLength: 20 }),
    fc.uint8Array({ maxLength: 8 }),
    fc.array(tie("data"), { maxLength: 4 }),
    fc.dictionary(safeKey, tie("data"), { maxKeys: 4 })
  )
}))
const segment = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,6}$/)
const keyArb = fc
  .tuple(fc.array(segment, { minLength: 2, maxLength: 3 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }))
  .map(([segments, version]) => `${segments.join(".")}@${version}`)
const seqArb = fc.integer({ min: 1, max: Protocol.maxSeq })
const parentArb = fc.option(fc.oneof(idArb, fc.string({ maxLength: 30 })), { nil: undefined })
const positive = fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })

const rowsArb = fc.array(fc.tuple(idArb, timeArb, dataArb, parentArb), { minLength: 1, maxLength: 12 })
const columnsArb = fc.integer({ min: 1, max: 12 }).chain((n) =>
  fc.record({
    _tag: fc.constant("Columns" as const),
    node: nodeArb,
    firstSeq: fc.integer({ min: 0, max: 2 ** 40 - 1 }),
    timeBase: timeArb,
    times: fc.array(timeArb, { minLength: n, maxLength: n }),
    data: fc.array(dataArb, { minLength: n, maxLength: n }),
    parents: fc.option(fc.array(parentArb, { minLength: n, maxLength: n }), { nil: undefined })
  })
)

const frameArb: fc.Arbitrary<Protocol.Frame> = fc.oneof(
  fc.record({
    _tag: fc.constant("Hello" as const),
    version: fc.constant(1),
    harness: fc.string({ minLength: 1, maxLength: 20 }),
    token: fc.string({ maxLength: 40 }),
    client: fc.dictionary(safeKey, fc.string({ maxLength: 10 }), { maxKeys: 4 })
  }),
  fc.record({
    _tag: fc.constant("Welcome" as const),
    version: fc.constant(1),
    session: fc.string({ minLength: 1, maxLength: 20 }),
    limits: fc.record({
      maxFrameBytes: positive,
      maxBatchEvents: positive,
      maxInFlight: positive,
      maxEventsPerSecond: positive,
      heartbeatMs: positive,
      idleTimeoutMs: positive
    })
  }),
  fc.record({
    _tag: fc.constant("Batch" as const),
    seq: seqArb,
    key: keyArb,
    events: fc.oneof(
      rowsArb.map((rows): Protocol.Rows => ({ _tag: "Rows", rows })),
      columnsArb.map(
        (c): Protocol.Columns => ({
          _tag: "Columns",
          node: c.node,
          firstSeq: c.firstSeq,
          timeBase: c.timeBase,
          offsets: c.times.map((t) => t - c.timeBase),
          data: c.data,
          parents: c.parents
        })
      )
    )
  }),
  fc.record({
    _tag: fc.constant("Ack" as const),
    seq: seqArb,
    outcomes: fc.option(
      fc
        .uniqueArray(
          fc.tuple(
            fc.integer({ min: 0, max: 1_023 }),
            fc.oneof(fc.constantFrom(...Object.keys(Protocol.outcomes)), fc.string({ minLength: 1, maxLength: 12 })),
            fc.string({ maxLength: 30 })
          ),
          { minLength: 1, maxLength: 10, selector: (o) => o[0] }
        )
        .map((list): ReadonlyArray<Protocol.Outcome> => list.sort((a, b) => a[0] - b[0])),
      { nil: undefined }
    )
  }),
  fc.record({
    _tag: fc.constant("Error" as const),
    code: fc.oneof(fc.constantFrom(...Object.keys(Protocol.codes)), fc.string({ minLength: 1, maxLength: 12 })),
    message: fc.string({ maxLength: 40 }),
    seq: fc.option(seqArb, { nil: undefined })
  }),
  fc.record({ _tag: fc.constant("Ping" as const), nonce: fc.integer({ min: 0, max: Protocol.maxNonce }) }),
  fc.record({ _tag: fc.constant("Pong" as const), nonce: fc.integer({ min: 0, max: Protocol.maxNonce }) }),
  fc.record({ _tag: fc.constant("Drain" as const), reason: fc.string({ maxLength: 40 }) })
)

/** Decodes, and fails the test on anything thrown but a ProtocolError with a known code. */
const decodeOnlyProtocolErrors = (bytes: Uint8Array, limits?: Protocol.DecodeLimits): void => {
  let frame: Protocol.Frame
  try {
    frame = Protocol.decodeFrame(bytes, limits)
  } catch (error) {
    if (!(error instanceof Errors.ProtocolError)) {
      throw new Error(`${toHex(bytes)} threw ${String(error)}`)
    }
    assert.isTrue(Protocol.isCode(error.wireCode), error.wireCode)
    assert.strictEqual(error.closeCode, Protocol.codes[error.wireCode as Protocol.Code].closeCode)
    return
  }
  // what decodes is a frame that encodes again
  Protocol.encodeFrame(frame)
}

type Mutation =
  | { readonly op: "set"; readonly at: number; readonly byte: number }
  | { readonly op: "insert"; readonly at: number; readonly byte: number }
  | { readonly op: "delete"; readonly at: number }
  | { readonly op: "truncate"; readonly at: number }

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("set" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant("insert" as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant("delete" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() })
)

const mutate = (bytes: Uint8Array, mutations: ReadonlyArray<Mutation>): Uint8Array => {
  let b = Array.from(bytes)
  for (const m of mutations) {
    const at = b.length === 0 ? 0 : m.at % b.length
    if (m.op === "set" && b.length > 0) b[at] = m.byte
    else if (m.op === "insert") b.splice(at, 0, m.byte)
    else if (m.op === "delete") b.splice(at, 1)
    else if (m.op === "truncate") b = b.slice(0, at)
  }
  return Uint8Array.from(b)
}

describe("Protocol properties", () => {
  it("any valid frame round-trips: decode(encode(frame)) deep-equals frame", () => {
    fc.assert(
      fc.property(frameArb, (frame) => {
        const bytes = Protocol.encodeFrame(frame)
        assert.deepStrictEqual(Protocol.decodeFrame(bytes, { maxFrameBytes: 1 << 24, maxBatchEvents: 1_024 }), frame)
      }),
      { numRuns: 1_000 }
    )
  })

  it("random bytes only ever fail with a ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => decodeOnlyProtocolErrors(bytes)),
      { numRuns: 5_000 }
    )
  })

  it("random arrays headed by a frame kind only ever fail with a ProtocolError", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 9 }), fc.array(dataArb, { maxLength: 6 }), (kind, rest) =>
        decodeOnlyProtocolErrors(wire([kind, ...rest]))
      ),
      { numRuns: 3_000 }
    )
  })

  it("random mutations of the fixture frames only ever fail with a ProtocolError", () => {
    const valid = fixtures.map((f) => fromHex(f.hex))
    fc.assert(
      fc.property(
        fc.constantFrom(...valid),
        fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
        fc.constantFrom<Protocol.DecodeLimits>(Protocol.defaults, small, { maxFrameBytes: 64, maxBatchEvents: 1 }),
        (bytes, mutations, limits) => decodeOnlyProtocolErrors(mutate(bytes, mutations), limits)
      ),
      { numRuns: 10_000 }
    )
  })

  it("large hostile inputs are refused quickly", () => {
    const started = performance.now()
    // deep nesting within the size limit
    decodeOnlyProtocolErrors(new Uint8Array(Protocol.defaults.maxFrameBytes).fill(0x91))
    // a huge declared length with nothing behind it
    decodeOnlyProtocolErrors(fromHex("95 03 01 a5612e424031 01 dd7fffffff"))
    // a BATCH of 200,000 events in columns, over the count limit
    decodeOnlyProtocolErrors(wire([3, 1, "a.B@1", 2, [NODE, 0, 0, [], new Array(200_000).fill(null), null]]))
    assert.isBelow(performance.now() - started, 5_000)
  })
})

describe("Protocol.fieldsOf: when a batch's data goes as fields (§4.3)", () => {
  const roundTrip = (data: ReadonlyArray<unknown>) => {
    const fields = Protocol.fieldsOf(data)!
    const frame: Protocol.BatchFrame = {
      _tag: "Batch",
      seq: 1,
      key: "a.B@1",
      events: {
        _tag: "Fields",
        node: NODE,
        firstSeq: 0,
        timeBase: T0,
        offsets: data.map(() => 0),
        names: fields.names,
        columns: fields.columns,
        parents: undefined
      }
    }
    const decoded = Protocol.decodeFrame(Protocol.encodeFrame(frame)) as Protocol.BatchFrame
    return data.map((_, i) => Protocol.eventData(decoded, i))
  }

  it("objects of the same keys in the same order: fields, and the data comes back equal, key order included", () => {
    const bare = Object.create(null) as Record<string, unknown>
    bare.a = 3
    bare.b = { nested: [1, null] }
    const data = [{ a: 1, b: "x" }, { a: Number.NaN, b: null }, bare, { a: undefined, b: [1, 2] }]
    const back = roundTrip(data)
    assert.deepStrictEqual(
      back,
      data.map((d) => ({ ...d }))
    )
    for (const d of back) assert.deepStrictEqual(Object.keys(d as object), ["a", "b"])
  })

  it("anything else: columns", () => {
    class Point {
      x = 1
    }
    const cases: Array<[string, ReadonlyArray<unknown>]> = [
      ["another key", [{ a: 1 }, { b: 1 }]],
      ["a key more", [{ a: 1 }, { a: 1, b: 2 }]],
      ["a key less", [{ a: 1, b: 2 }, { a: 1 }]],
      [
        "another order",
        [
          { a: 1, b: 2 },
          { b: 2, a: 1 }
        ]
      ],
      ["a class instance", [{ x: 1 }, new Point()]],
      ["an array", [{ a: 1 }, [1]]],
      ["a number", [{ a: 1 }, 1]],
      ["numbers", [1, 2]],
      ["nulls", [null, null]],
      ["empty objects", [{}, {}]],
      ["a __proto__ key", [JSON.parse('{"__proto__": 1}'), JSON.parse('{"__proto__": 2}')]],
      ["too many keys", [Object.fromEntries(Array.from({ length: Protocol.maxFields + 1 }, (_, k) => [`k${k}`, k]))]],
      ["an inherited key", [{ a: 1 }, Object.assign(Object.create({ b: 2 }), { a: 1 })]]
    ]
    for (const [name, data] of cases) assert.isUndefined(Protocol.fieldsOf(data), name)
  })

  it("a harness batch of mixed shapes goes in columns, and decodes to the same data", () => {
    const batch = {
      hasForeign: false,
      idNode: NODE,
      firstSeq: 0,
      timeBase: T0,
      timeOffsets: [0, 0],
      key: "a.B@1",
      data: [{ a: 1 }, { b: 2 }],
      parents: undefined,
      size: 2
    } as unknown as Batch.Batch
    const frame = Protocol.decodeFrame(Protocol.encodeFrame(Protocol.fromBatch(1, batch))) as Protocol.BatchFrame
    assert.strictEqual(frame.events._tag, "Columns")
    assert.deepStrictEqual([Protocol.eventData(frame, 0), Protocol.eventData(frame, 1)], [{ a: 1 }, { b: 2 }])
  })
})
