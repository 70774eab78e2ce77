/**
 * The gateway under random and mutated frames (bit flips, truncations, insertions into
 * valid frames; random bytes; random MessagePack arrays), over many connections at
 * once, before and after HELLO, while a healthy session streams next to them: the
 * server never crashes, every bad frame gets the code `Protocol.decodeFrame` gives it
 * (or a session rule's code) with that code's close code, and the healthy session
 * keeps being acked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import fc from "fast-check"
import { Packr } from "msgpackr"
import { ProtocolError } from "../src/Errors.ts"
import { Protocol } from "../src/index.ts"
import { Client, columns, hello, id, rows, start } from "./fixtures/gateway-client.ts"
import { fixtures } from "./fixtures/protocol/frames.ts"

const limits = { maxFrameBytes: 4_096, maxBatchEvents: 16, maxInFlight: 4, maxSessions: 500 } as const

const valid: ReadonlyArray<Uint8Array> = [
  ...fixtures
    .filter((f) =>
      ["hello", "batch-rows", "batch-columns", "batch-columns-no-parents", "ping", "pong"].includes(f.name)
    )
    .map((f) => Uint8Array.from(Buffer.from(f.hex.replace(/\s+/g, ""), "hex"))),
  Protocol.encodeFrame(rows(1, [[id(1), { step: 1 }]])).slice(),
  Protocol.encodeFrame(columns(1, 0, 3)).slice()
]

const packr = new Packr({ useRecords: false, moreTypes: false })

/** A frame to throw at the server. */
const frameArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  // a valid frame with bits flipped
  fc
    .record({
      base: fc.constantFrom(...valid),
      flips: fc.array(fc.record({ at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }), { minLength: 1, maxLength: 4 })
    })
    .map(({ base, flips }) => {
      const out = base.slice()
      for (const { at, bit } of flips) out[at % out.length]! ^= 1 << bit
      return out
    }),
  // a valid frame cut short
  fc
    .record({ base: fc.constantFrom(...valid), cut: fc.nat() })
    .map(({ base, cut }) => base.subarray(0, cut % base.length)),
  // a valid frame with bytes inserted
  fc
    .record({ base: fc.constantFrom(...valid), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) })
    .map(({ base, at, bytes }) => {
      const i = at % (base.length + 1)
      return Uint8Array.from([...base.subarray(0, i), ...bytes, ...base.subarray(i)])
    }),
  // random bytes
  fc.uint8Array({ minLength: 0, maxLength: 64 }),
  // a MessagePack array with a frame kind and random elements
  fc
    .tuple(fc.integer({ min: 0, max: 9 }), fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 6 }))
    .map(([kind, rest]) => Uint8Array.from(packr.pack([kind, ...rest])))
)

interface Sample {
  readonly frame: Uint8Array
  /** Say HELLO first. */
  readonly welcomed: boolean
}

const sampleArb: fc.Arbitrary<Sample> = fc.record({ frame: frameArb, welcomed: fc.boolean() })

/** What decoding alone says of a frame: its error code, or the frame. */
const decoded = (bytes: Uint8Array): { readonly code: string } | { readonly frame: Protocol.Frame } => {
  try {
    return { frame: Protocol.decodeFrame(bytes, limits) }
  } catch (error) {
    if (error instanceof ProtocolError) return { code: error.wireCode }
    throw error
  }
}

/** Codes a session rule may give a frame that decodes, by state. */
const ruleCodes = new Set(["hello_expected", "unauthorized", "unexpected_frame", "sequence", "window_exceeded"])

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")

describe("Gateway fuzz", () => {
  it("random and mutated frames over many connections: documented codes, no crash, a healthy session acked", async () => {
    const env = await start({ limits, drainMs: 1_000 })
    let healthyDone = false
    let healthyEvents = 0
    try {
      // the healthy session: batches of 8, a window of 4, until the fuzzing ends
      const healthy = await Client.open(env.gateway.url)
      const streaming = (async () => {
        let seq = 0
        while (!healthyDone) {
          await healthy.until(() => (seq - healthy.all("Ack").length < 4 ? true : undefined), "room in the window")
          seq++
          healthy.send(columns(seq, seq * 8, 8, "HHHHHHHH"))
          healthyEvents += 8
          if (seq % 8 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
        }
        await healthy.until(() => (healthy.all("Ack").length === seq ? true : undefined), "every healthy ack")
        return seq
      })()

      let checked = 0
      await fc.assert(
        fc.asyncProperty(fc.array(sampleArb, { minLength: 10, maxLength: 10 }), async (samples) => {
          await Promise.all(
            samples.map(async ({ frame, welcomed }) => {
              const client = welcomed ? await Client.open(env.gateway.url) : new Client(env.gateway.url)
              await client.opened()
              client.sendRaw(frame)
              // a probe: its PONG says the frame was taken without error
              client.send({ _tag: "Ping", nonce: 99 })
              const outcome = await client.until(
                () => (client.closed !== undefined ? "closed" : client.all("Pong").length > 0 ? "pong" : undefined),
                `the answer to ${hex(frame)}`
              )
              const expected = decoded(frame)
              const what = `${welcomed ? "after" : "before"} HELLO: ${hex(frame)}`
              if (outcome === "pong") {
                // taken: a frame that decodes and breaks no rule
                assert.isTrue("frame" in expected, what)
                client.end()
                checked++
                return
              }
              const errors = client.all("Error")
              if (errors.length === 0 && frame.byteLength > limits.maxFrameBytes * 2) {
                // beyond ws's own limit: it closes by itself
                assert.strictEqual(client.closed?.code, 1009, what)
              } else if (errors.length === 0) {
                // the server closes without an ERROR only after the client's own ERROR
                assert.isTrue("frame" in expected && expected.frame._tag === "Error", what)
              } else {
                assert.strictEqual(errors.length, 1, what)
                const code = errors[0]!.code
                if ("code" in expected) assert.strictEqual(code, expected.code, what)
                else assert.isTrue(ruleCodes.has(code) || (code === "hello_expected" && !welcomed), `${code}: ${what}`)
                assert.isTrue(Protocol.isCode(code), what)
                assert.deepStrictEqual(
                  client.closed,
                  { code: Protocol.codes[code as Protocol.Code].closeCode, reason: code },
                  what
                )
              }
              checked++
            })
          )
        }),
        { numRuns: 40 }
      )
      healthyDone = true
      const batches = await streaming
      assert.isAbove(checked, 350)
      assert.isAbove(batches, 0)
      assert.isUndefined(healthy.closed)
      for (const ack of healthy.all("Ack")) assert.isUndefined(ack.outcomes)
      await Effect.runPromise(env.trail.flush)
      // every healthy event recorded once; what the fuzz frames got accepted is on top
      assert.isAtLeast(env.trail.statsUnsafe().types["train.Step@1"]?.processed ?? 0, healthyEvents)
      assert.strictEqual(env.gateway.stats().batches.inFlight, 0)
      healthy.end()
      // and a fresh connection is served as usual
      const after = await Client.open(env.gateway.url)
      after.send(hello())
      assert.strictEqual((await after.error()).error.code, "unexpected_frame")
    } finally {
      healthyDone = true
      await env.stop()
    }
    assert.deepStrictEqual(
      env.logs.filter((l) => l.message.includes("unexpectedly")),
      []
    )
  })
})
