/**
 * The browser client end to end, in a real headless Chromium (Debian's `chromium`
 * package, driven by playwright-core): a page from one origin loads the client, logs
 * events to the service on another origin (fetch, and a preflighted fetch), then
 * navigates away; the events still queued must arrive by `sendBeacon` on `pagehide`.
 * Skipped, with the reason printed, where /usr/bin/chromium is absent.
 */
import { existsSync, readFileSync } from "node:fs"
import * as http from "node:http"
import { stripTypeScriptTypes } from "node:module"
import type { AddressInfo } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric, Schema, type Scope } from "effect"
import { type Browser, chromium } from "playwright-core"
import type { Envelope } from "../src/Envelope.ts"
import { EventType, Handler, Http, Ingest, Trail } from "../src/index.ts"

const CHROMIUM = "/usr/bin/chromium"
const hasChromium = existsSync(CHROMIUM)
if (!hasChromium) {
  console.log(`Browser.test.ts skipped: ${CHROMIUM} is absent (install it with: apt-get install -y chromium)`)
}

const seen: Array<Envelope> = []
const collect = Handler.make("collect", (e) => Effect.sync(() => void seen.push(e)))
const now = { batch: { maxSize: 64, lingerMs: 0 }, handlers: [collect] } as const
const Clicked = EventType.make("web.Clicked", 1, Schema.Struct({ button: Schema.String }), { ...now, relay: true })
const SignedUp = EventType.make("web.SignedUp", 1, Schema.Struct({ plan: Schema.String, email: Schema.String }), {
  ...now,
  relay: { hash: ["email"] }
})
const Viewed = EventType.make("web.Viewed", 1, Schema.Struct({ page: Schema.String, n: Schema.Number }), now)

/** Each request the service got: path, event name, and how the browser sent it. */
interface Seen {
  readonly path: string
  readonly method: string
  readonly mode: string | undefined
}

const listen = (handler: http.RequestListener): Effect.Effect<string, never, Scope.Scope> =>
  Effect.map(
    Effect.acquireRelease(
      Effect.callback<http.Server>((resume) => {
        const s = http.createServer(handler)
        s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
      }),
      (s) =>
        Effect.callback<void>((resume) => {
          s.closeAllConnections()
          s.close(() => resume(Effect.void))
        })
    ),
    (s) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`
  )

const page = (api: string) => `<!doctype html>
<html><head><title>cairn browser test</title></head><body>
<script type="module">
  import { createClient } from "/browser.js"
  const relay = createClient({ endpoint: ${JSON.stringify(api)}, flushMs: 60000 })
  const named = createClient({ endpoint: ${JSON.stringify(`${api}/`)}, target: "event", flushMs: 60000 })
  // sent now, by fetch
  relay.log("web.Clicked", { button: "one" })
  relay.log("web.Clicked", { button: "two" })
  relay.log("web.Clicked", { button: "three" })
  await relay.flush()
  // a request with a JSON content type is preflighted: CORS must let it through and be read
  const r = await fetch(${JSON.stringify(`${api}/analytics`)}, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ event: "web.Clicked", properties: { button: "preflighted", secret: "x" } })
  })
  window.preflighted = { status: r.status, body: await r.json() }
  // left queued: they go by sendBeacon when the page is left
  relay.log("web.Clicked", { button: "four" })
  relay.log("web.SignedUp", { plan: "pro", email: "cy@example.com", name: "Cy" })
  named.log("web.Viewed", { page: "/page.html", n: 2 })
  window.pending = relay.pending + named.pending
  window.ready = true
</script>
</body></html>`

describe.skipIf(!hasChromium)("cairn/browser in Chromium", () => {
  it.live(
    "events logged by a page arrive, those still queued by sendBeacon on pagehide",
    () =>
      Effect.gen(function* () {
        seen.length = 0
        const requests: Array<Seen> = []
        const trail = yield* Trail.make({ source: "service", types: [Clicked, SignedUp, Viewed] })
        const views = yield* Http.make({ ingest: Ingest.make({ trail }), trail, source: "web" })
        const api = yield* listen((req, res) => {
          requests.push({
            path: (req.url ?? "").split("?")[0]!,
            method: req.method ?? "",
            mode: req.headers["sec-fetch-mode"] as string | undefined
          })
          if (!views(req, res)) res.writeHead(404).end()
        })
        const client = stripTypeScriptTypes(readFileSync(new URL("../src/browser.ts", import.meta.url), "utf8"))
        const site = yield* listen((req, res) => {
          if (req.url === "/browser.js") res.writeHead(200, { "content-type": "text/javascript" }).end(client)
          else if (req.url === "/page.html") res.writeHead(200, { "content-type": "text/html" }).end(page(api))
          else res.writeHead(200, { "content-type": "text/html" }).end("<!doctype html><p>next</p>")
        })
        const browser = yield* Effect.acquireRelease(
          Effect.promise(() => chromium.launch({ executablePath: CHROMIUM })),
          (b: Browser) => Effect.promise(() => b.close())
        )
        const tab = yield* Effect.promise(() => browser.newPage())
        const errors: Array<string> = []
        tab.on("pageerror", (e) => errors.push(e.message))
        yield* Effect.promise(() => tab.goto(`${site}/page.html`))
        yield* Effect.promise(() => tab.waitForFunction(() => (globalThis as { ready?: boolean }).ready === true))
        assert.deepStrictEqual(errors, [])
        assert.strictEqual(
          yield* Effect.promise(() => tab.evaluate(() => (globalThis as { pending?: number }).pending)),
          3
        )
        const preflighted = yield* Effect.promise(() =>
          tab.evaluate(() => (globalThis as { preflighted?: unknown }).preflighted)
        )
        assert.deepStrictEqual((preflighted as { status: number }).status, 202)
        assert.deepStrictEqual((preflighted as { body: { dropped: Array<string> } }).body.dropped, ["secret"])
        yield* trail.flush
        assert.strictEqual(seen.length, 4)

        // leaving the page: pagehide sends the rest with sendBeacon
        yield* Effect.promise(() => tab.goto(`${site}/next.html`))
        for (let i = 0; i < 100 && seen.length < 7; i++) {
          yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 50)))
          yield* trail.flush
        }
        // beacons of the two clients may arrive in either order
        assert.deepStrictEqual(
          sorted(seen.map((e) => [e.type, e.source, e.data])),
          sorted([
            ["web.Clicked@1", "web", { button: "one" }],
            ["web.Clicked@1", "web", { button: "two" }],
            ["web.Clicked@1", "web", { button: "three" }],
            ["web.Clicked@1", "web", { button: "preflighted" }],
            ["web.Clicked@1", "web", { button: "four" }],
            ["web.SignedUp@1", "web", { plan: "pro", email: Http.hashValue("cy@example.com") }],
            ["web.Viewed@1", "web", { page: "/page.html", n: 2 }]
          ])
        )
        // the first batch went by fetch (cors), the preflight was answered, the rest by beacon
        const posts = requests.filter((r) => r.method === "POST")
        assert.deepStrictEqual(
          requests.filter((r) => r.method === "OPTIONS").map((r) => r.path),
          ["/analytics"]
        )
        assert.strictEqual(posts[0]!.mode, "cors")
        const beacons = posts.slice(2)
        assert.deepStrictEqual(beacons.map((r) => r.path).sort(), ["/analytics", "/event/log"])
        for (const b of beacons) assert.strictEqual(b.mode, "no-cors")
      }).pipe(Effect.scoped, Effect.provideService(Metric.MetricRegistry, new Map())),
    20_000
  )
})

const sorted = (rows: ReadonlyArray<unknown>): Array<string> => rows.map((r) => JSON.stringify(r)).sort()
