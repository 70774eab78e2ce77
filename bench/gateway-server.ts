/**
 * The server side of the gateway benchmark, run as a child process:
 * `node bench/gateway-server.ts raw|cairn`. It sends `{ port }` to its parent over
 * IPC once it listens, and exits when the parent disconnects.
 *
 * - raw: a plain `ws` server that decodes each message with msgpackr and answers an
 *   ack `[4, seq, nil]`: no validation, no de-duplication, no actors.
 * - cairn: the Cairn gateway with the in-memory store and a service trail whose
 *   processing does nothing (events validated, de-duplicated, handed to the actors, acked).
 *   Its per-session rate limit is raised out of the way.
 */
import { Effect } from "effect"
import { Packr } from "msgpackr"
import { WebSocketServer } from "ws"
import { Gateway, Ingest, Trail } from "../src/index.ts"
import { BenchEvent, TOKEN } from "./gateway-shared.ts"

const mode = process.argv[2]

const send = (message: unknown) => process.send?.(message)
process.on("disconnect", () => process.exit(0))

if (mode === "raw") {
  const packr = new Packr({ useRecords: false })
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0, maxPayload: 64 * 1024 * 1024 })
  server.on("connection", (socket) => {
    socket.on("message", (bytes: Buffer) => {
      const frame = packr.unpack(bytes) as [number, number, string, ReadonlyArray<unknown>]
      socket.send(packr.pack([4, frame[1], null]))
    })
  })
  server.on("listening", () => {
    const address = server.address()
    send({ port: typeof address === "object" && address !== null ? address.port : 0 })
  })
} else if (mode === "cairn") {
  const program = Effect.gen(function* () {
    const trail = yield* Trail.make({
      source: "bench-service",
      types: [BenchEvent],
      concurrency: 2,
      shutdownTimeoutMs: 1_000
    })
    const ingest = Ingest.make({ trail })
    // the per-session rate limit (default 200,000 events/s) raised out of the way: this
    // measures throughput, and the client paces itself to the limit it is given
    const gateway = yield* Gateway.make({
      ingest,
      port: 0,
      tokens: { "bench-harness": TOKEN },
      limits: { maxEventsPerSecond: 1_000_000_000 }
    })
    send({ port: gateway.port })
    return yield* Effect.never
  })
  Effect.runFork(Effect.scoped(program))
} else {
  process.stderr.write(`usage: gateway-server.ts raw|cairn (got ${mode})\n`)
  process.exit(2)
}
