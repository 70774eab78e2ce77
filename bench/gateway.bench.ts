/**
 * Gateway benchmark: a harness and a gateway in separate processes on loopback.
 *
 * - ours: a harness trail (one type, batches of 512, 8 processed at once) whose
 *   processing is `Transport.process`, sending to the Cairn gateway in a child process
 *   (`bench/gateway-server.ts cairn`): every event validated with its schema,
 *   de-duplicated by id, handed to the service's per-type actors, then acked. Rate: from
 *   the first `log` to the end of the `flush` (every event acked).
 * - baseline: plain `ws` + msgpackr to a plain `ws` server in a child process
 *   (`bench/gateway-server.ts raw`) that decodes each message and acks it: the same
 *   events as rows `[id, time, data]`, batches of 512, 8 in flight, no validation.
 *
 * Both report the batch round trip (send to ack) p50/p99 in milliseconds.
 */
import { type ChildProcess, fork } from "node:child_process"
import { Effect, Exit, Scope } from "effect"
import { Packr } from "msgpackr"
import WebSocket from "ws"
import type { Batch } from "../src/Batch.ts"
import { Envelope, Trail, Transport } from "../src/index.ts"
import { BATCH, BenchEvent, TOKEN, WINDOW } from "./gateway-shared.ts"
import { type Case, compare, printResult, type Round, withLatency, yieldMacrotask } from "./lib.ts"

const quick = process.env.CAIRN_BENCH_QUICK === "1"
const TOTAL = quick ? 200_000 : 1_000_000

const server = (mode: "raw" | "cairn"): Promise<{ child: ChildProcess; port: number }> =>
  new Promise((resolve, reject) => {
    const child = fork(new URL("./gateway-server.ts", import.meta.url), [mode], {
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    child.once("message", (message) => resolve({ child, port: (message as { port: number }).port }))
    child.once("error", reject)
    child.once("exit", (code) => reject(new Error(`${mode} server exited with ${code}`)))
  })

const data = (i: number) => ({ step: i, loss: 1 / (1 + i), tag: "train" })

// ---- baseline: plain ws + msgpackr, 8 batches of 512 in flight --------------------------
const rawRound = async (port: number): Promise<Round> => {
  const socket = new WebSocket(`ws://127.0.0.1:${port}`)
  await new Promise((resolve, reject) => {
    socket.once("open", resolve)
    socket.once("error", reject)
  })
  const packr = new Packr({ useRecords: false })
  const ids = new Envelope.IdGenerator()
  const batches = Math.ceil(TOTAL / BATCH)
  const sentAt = new Map<number, number>()
  const latencies: Array<number> = []
  let next = 1
  let acked = 0
  let logged = 0
  const t0 = performance.now()
  await new Promise<void>((resolve) => {
    const send = () => {
      while (next <= batches && next - acked <= WINDOW) {
        const rows = new Array(BATCH)
        const now = Date.now()
        for (let i = 0; i < BATCH; i++) {
          rows[i] = [ids.format(now, logged), now, data(logged)]
          logged++
        }
        sentAt.set(next, performance.now())
        socket.send(packr.pack([3, next, "bench.Step@1", rows]))
        next++
      }
    }
    socket.on("message", (bytes: Buffer) => {
      const ack = packr.unpack(bytes) as [number, number, unknown]
      latencies.push(performance.now() - sentAt.get(ack[1])!)
      sentAt.delete(ack[1])
      acked++
      if (acked === batches) resolve()
      else send()
    })
    send()
  })
  const seconds = (performance.now() - t0) / 1000
  socket.close()
  return { rate: (batches * BATCH) / seconds, latencies }
}

// ---- ours: trail + transport to the Cairn gateway ------------------------------------------
const cairnRound = async (port: number): Promise<Round> => {
  const scope = await Effect.runPromise(Scope.make())
  const transport = await Effect.runPromise(
    Transport.make({ url: `ws://127.0.0.1:${port}/v1/stream`, harness: "bench-harness", token: TOKEN }).pipe(
      Scope.provide(scope)
    )
  )
  const latencies: Array<number> = []
  const timed = (batch: Batch) => {
    const start = performance.now()
    return Effect.map(transport.process(batch), () => {
      latencies.push(performance.now() - start)
    })
  }
  const trail = await Trail.start({ source: "bench-harness", types: [BenchEvent], process: timed, concurrency: WINDOW })
  const t0 = performance.now()
  for (let i = 0; i < TOTAL; i++) {
    // a full mailbox (backpressure): let the wire drain it
    while (trail.log(BenchEvent, data(i)) === "full") await yieldMacrotask()
  }
  await trail.flush()
  const seconds = (performance.now() - t0) / 1000
  const stats = await trail.dispose()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  const t = stats.types["bench.Step@1"]!
  if (t.processed !== TOTAL) throw new Error(`only ${t.processed} of ${TOTAL} events acked: ${JSON.stringify(t)}`)
  return { rate: TOTAL / seconds, latencies }
}

const raw = await server("raw")
const cairn = await server("cairn")
const cases: Array<Case> = []
try {
  cases.push(
    await compare(
      `gateway: ${BATCH}-event batches, ${WINDOW} in flight, validated + deduped + acked vs plain ws + msgpackr`,
      () => cairnRound(cairn.port),
      () => rawRound(raw.port),
      withLatency
    )
  )
} finally {
  // the servers exit when they lose their parent (so a profiler run writes its profile)
  raw.child.disconnect()
  cairn.child.disconnect()
}
printResult("gateway", cases)
