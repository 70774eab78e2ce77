/**
 * `cairn/browser`: a tiny client for front ends, with no dependencies.
 *
 * `log(name, data)` queues an event; the queue is posted as JSON to the service's
 * relay (`POST /analytics`, as `[{ event, properties }, ...]`) when `maxBatch` events
 * are waiting or `flushMs` after the first one, or with `target: "event"` to the
 * name-based view (`POST /event/log?__event__=name`, one request per event, the data
 * as the JSON body). When the page is hidden or left (`visibilitychange` to hidden,
 * `pagehide`) what is queued goes with `navigator.sendBeacon`, which the browser
 * delivers even as the page goes away.
 *
 * Bodies are sent as `text/plain` JSON: a CORS "simple" request, so posting to
 * another origin needs no preflight, and `sendBeacon` may carry it. The service reads
 * `text/plain` bodies of these routes as JSON (see `docs/http.md`).
 *
 * Not guaranteed: a browser may drop a beacon, and a closed tab loses what was never
 * sent. Events the service refuses (4xx) are dropped and reported to `onError`; those
 * that failed on the network or with a 5xx are queued again and retried.
 *
 * @since 0.1.0
 */

/**
 * Options of a client; only `endpoint` is required.
 *
 * @category models
 */
export interface ClientOptions {
  /** Base URL of the service, e.g. `https://telemetry.example.com` (the paths are added). */
  readonly endpoint: string
  /**
   * `"analytics"`: batches to `POST /analytics`, for types declared relayable.
   * `"event"`: `POST /event/log?__event__=name` per event. Default `"analytics"`.
   */
  readonly target?: "analytics" | "event"
  /** Milliseconds from the first queued event to the post. Default `1_000`. */
  readonly flushMs?: number
  /** Most events in one post; a full batch is posted at once. Default `50`. */
  readonly maxBatch?: number
  /** Most events queued; past it the oldest are dropped. Default `1_000`. */
  readonly maxQueue?: number
  /** Told about refused or failed posts (their events are dropped or retried). Default: nothing. */
  readonly onError?: (error: ClientError) => void
}

/**
 * A post that did not go through.
 *
 * @category models
 */
export interface ClientError {
  /** The HTTP status, or `0` for a network failure. */
  readonly status: number
  /** The response body (the service's `{ error, message }` as text), or the network error. */
  readonly message: string
  /** Events of the post. */
  readonly events: number
  /** Whether they were queued again (network failure, 5xx, 429) or dropped (other 4xx). */
  readonly retried: boolean
}

/**
 * A client.
 *
 * @category models
 */
export interface Client {
  /** Queues an event: the name of a registered type (`app.Name` or `app.Name@2`) and its data. */
  log(name: string, data?: Readonly<Record<string, unknown>>): void
  /** Posts everything queued now; resolves when the posts are answered. */
  flush(): Promise<void>
  /** Sends everything queued now with `navigator.sendBeacon` (what leaving the page does). */
  beacon(): void
  /** Events queued and not yet posted. */
  readonly pending: number
  /** Stops the timer and the page listeners (what is queued stays queued). */
  close(): void
}

/**
 * The defaults of {@link ClientOptions}.
 *
 * @category constructors
 */
export const defaults = { target: "analytics", flushMs: 1_000, maxBatch: 50, maxQueue: 1_000 } as const

interface Queued {
  readonly event: string
  readonly properties: Readonly<Record<string, unknown>>
}

/** What the client uses of the browser, typed here so no DOM library is needed. */
interface Globals {
  readonly fetch?: (
    url: string,
    init: {
      readonly method: string
      readonly body: string
      readonly headers: Readonly<Record<string, string>>
      readonly keepalive: boolean
      readonly credentials: string
      readonly mode: string
    }
  ) => Promise<{ readonly ok: boolean; readonly status: number; text(): Promise<string> }>
  readonly navigator?: { readonly sendBeacon?: (url: string, data: string) => boolean }
  readonly document?: {
    readonly visibilityState?: string
    addEventListener(type: string, listener: () => void): void
    removeEventListener(type: string, listener: () => void): void
  }
  readonly addEventListener?: (type: string, listener: () => void) => void
  readonly removeEventListener?: (type: string, listener: () => void) => void
  setTimeout(callback: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

/** A keepalive fetch may carry at most 64 KiB; leave room for the headers. */
const KEEPALIVE_BYTES = 60_000

/**
 * Makes a client and starts listening for the page being hidden or left.
 *
 * @example
 * ```ts
 * import { createClient } from "cairn/browser"
 *
 * const telemetry = createClient({ endpoint: "https://telemetry.example.com" })
 * telemetry.log("web.ButtonClicked", { button: "signup" })
 * ```
 *
 * @category constructors
 */
export const createClient = (options: ClientOptions): Client => {
  const g = globalThis as unknown as Globals
  const base = options.endpoint.replace(/\/+$/, "")
  const target = options.target ?? defaults.target
  const flushMs = options.flushMs ?? defaults.flushMs
  const maxBatch = Math.max(1, options.maxBatch ?? defaults.maxBatch)
  const maxQueue = Math.max(maxBatch, options.maxQueue ?? defaults.maxQueue)
  const onError = options.onError
  let queue: Array<Queued> = []
  let timer: unknown
  let closed = false

  const urlOf = (event: string): string =>
    target === "event" ? `${base}/event/log?__event__=${encodeURIComponent(event)}` : `${base}/analytics`

  /** The posts for what is queued: one per batch (analytics) or per event. */
  const takePosts = (): Array<{ readonly url: string; readonly body: string; readonly items: Array<Queued> }> => {
    const items = queue
    queue = []
    if (timer !== undefined) {
      g.clearTimeout(timer)
      timer = undefined
    }
    const posts: Array<{ url: string; body: string; items: Array<Queued> }> = []
    if (target === "event") {
      for (const item of items)
        posts.push({ url: urlOf(item.event), body: JSON.stringify(item.properties), items: [item] })
      return posts
    }
    for (let i = 0; i < items.length; i += maxBatch) {
      const chunk = items.slice(i, i + maxBatch)
      posts.push({ url: urlOf(""), body: JSON.stringify(chunk), items: chunk })
    }
    return posts
  }

  const requeue = (items: ReadonlyArray<Queued>): void => {
    queue = [...items, ...queue]
    if (queue.length > maxQueue) queue = queue.slice(queue.length - maxQueue)
    schedule()
  }

  const report = (status: number, message: string, items: ReadonlyArray<Queued>, retried: boolean): void => {
    if (retried) requeue(items)
    onError?.({ status, message, events: items.length, retried })
  }

  const post = async (url: string, body: string, items: ReadonlyArray<Queued>): Promise<void> => {
    if (g.fetch === undefined) return report(0, "fetch is not available", items, false)
    try {
      const response = await g.fetch(url, {
        method: "POST",
        body,
        headers: { "content-type": "text/plain;charset=UTF-8" },
        keepalive: body.length <= KEEPALIVE_BYTES,
        credentials: "omit",
        mode: "cors"
      })
      if (response.ok) return
      const retry = response.status >= 500 || response.status === 429
      report(response.status, await response.text().catch(() => ""), items, retry && !closed)
    } catch (error) {
      report(0, error instanceof Error ? error.message : String(error), items, !closed)
    }
  }

  const flush = async (): Promise<void> => {
    const posts = takePosts()
    await Promise.all(posts.map((p) => post(p.url, p.body, p.items)))
  }

  const schedule = (): void => {
    if (timer !== undefined || closed || queue.length === 0) return
    timer = g.setTimeout(() => {
      timer = undefined
      void flush()
    }, flushMs)
  }

  const beacon = (): void => {
    const send = g.navigator?.sendBeacon
    for (const p of takePosts()) {
      // a refused beacon (too large, too many queued) falls back to a keepalive fetch
      const sent = send?.call(g.navigator, p.url, p.body) === true
      if (!sent) void post(p.url, p.body, p.items)
    }
  }

  const onHidden = (): void => {
    if (g.document?.visibilityState === "hidden") beacon()
  }
  g.addEventListener?.("pagehide", beacon)
  g.document?.addEventListener("visibilitychange", onHidden)

  return {
    log: (name, data) => {
      if (closed) return
      queue.push({ event: name, properties: data ?? {} })
      if (queue.length > maxQueue) queue.shift()
      if (queue.length >= maxBatch) void flush()
      else schedule()
    },
    flush,
    beacon,
    get pending() {
      return queue.length
    },
    close: () => {
      closed = true
      if (timer !== undefined) g.clearTimeout(timer)
      timer = undefined
      g.removeEventListener?.("pagehide", beacon)
      g.document?.removeEventListener("visibilitychange", onHidden)
    }
  }
}
