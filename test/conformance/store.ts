/**
 * The store and outbox conformance suite: every test runs against each SQL dialect
 * (test/Store.sqlite.test.ts, test/Store.pg.test.ts) through the same `SqlClient`
 * interface, so both behave alike.
 */
import { afterAll, assert, beforeAll, beforeEach, describe, it } from "@effect/vitest"
import { Effect, Exit, type Layer, ManagedRuntime, Metric, Schema, type Scope } from "effect"
import * as SqlClient from "effect/sql/SqlClient"
import { Envelope, EventType, Outbox, Store } from "../../src/index.ts"
import { type Receiver, receiver } from "../fixtures/receiver.ts"

const Step = EventType.make(
  "store.Step",
  1,
  Schema.Struct({
    n: Schema.Number,
    group: Schema.optionalKey(Schema.String),
    authuser: Schema.optionalKey(Schema.String)
  })
)
const Step2 = EventType.make("store.Step", 2, Schema.Struct({ n: Schema.Number, note: Schema.String }))
const Other = EventType.make("store.Other", 1, Schema.Struct({ tag: Schema.String }))
/** A type whose data is not stored as it is: its schema encodes it (a Date as ISO text). */
const Dated = EventType.make(
  "store.Dated",
  1,
  Schema.Struct({ at: Schema.DateFromString, big: Schema.BigIntFromString })
)
const Attrs = EventType.make(
  "store.Attrs",
  1,
  Schema.Struct({ v: Schema.Unknown, run: Schema.optionalKey(Schema.Struct({ id: Schema.String })) })
)

const T0 = 1_767_225_600_000
const ids = Array.from({ length: 2_000 }, (_, i) => `01KDVDNA00K5X2J9QM${String(i).padStart(8, "0")}`)
const ev = (
  i: number,
  data: unknown,
  extra: { type?: string; source?: string; parent?: string; at?: number } = {}
): Envelope.Envelope =>
  Envelope.make({
    id: ids[i]!,
    type: extra.type ?? "store.Step@1",
    source: extra.source ?? "harness-a",
    happenedAt: extra.at ?? T0 + i,
    data,
    ...(extra.parent === undefined ? {} : { parent: extra.parent })
  })

const reset = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`DELETE FROM cairn_deliveries`
  yield* sql`DELETE FROM cairn_subscription_types`
  yield* sql`DELETE FROM cairn_subscriptions`
  yield* sql`DELETE FROM cairn_events`
})

export interface Dialect {
  readonly name: string
  /** A client on a database (or schema) of this suite's own. */
  readonly layer: () => Layer.Layer<SqlClient.SqlClient, unknown>
  /** Several workers claiming from one database at once (Postgres). */
  readonly concurrentWorkers: boolean
  /** Clients of their own, for workers that must not share a connection. */
  readonly extraLayer?: () => Layer.Layer<SqlClient.SqlClient, unknown>
}

export const conformance = (dialect: Dialect) =>
  describe(`Store and Outbox on ${dialect.name}`, () => {
    let runtime: ManagedRuntime.ManagedRuntime<SqlClient.SqlClient, unknown>
    let store: Store.Store
    let outbox: Outbox.Outbox
    let hooks: Receiver
    beforeAll(async () => {
      runtime = ManagedRuntime.make(dialect.layer())
      store = await runtime.runPromise(Store.make())
      outbox = await runtime.runPromise(Outbox.make)
      hooks = await receiver()
    })
    afterAll(async () => {
      await hooks?.close()
      await runtime?.dispose()
    })
    beforeEach(async () => {
      hooks.reset()
      await runtime.runPromise(reset)
    })
    const run = <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient | Scope.Scope>): Promise<A> =>
      runtime.runPromise(Effect.scoped(effect))

    // ---- recording ----------------------------------------------------------------

    it("records each id once: a resend and a repeat within a batch are duplicates", () =>
      run(
        Effect.gen(function* () {
          const first = yield* store.record("store.Step@1", [ev(0, { n: 0 }), ev(1, { n: 1 }), ev(0, { n: 0 })], Step)
          assert.deepStrictEqual(first, [true, true, false])
          const again = yield* store.record("store.Step@1", [ev(1, { n: 1 }), ev(2, { n: 2 })], Step)
          assert.deepStrictEqual(again, [false, true])
          assert.strictEqual(yield* store.count(), 3)
        })
      ))

    it("keeps every field: type, version, times, source, parent, authuser and group from the data", () =>
      run(
        Effect.gen(function* () {
          const before = Date.now()
          yield* store.record(
            "store.Step@1",
            [ev(0, { n: 7, group: "run-1", authuser: "ann" }, { source: "job-9", parent: ids[5]! })],
            Step
          )
          const e = (yield* store.get(ids[0]!))!
          assert.deepStrictEqual(
            { ...e, recordedAt: 0 },
            {
              id: ids[0]!,
              type: "store.Step@1",
              name: "store.Step",
              version: 1,
              happenedAt: T0,
              recordedAt: 0,
              source: "job-9",
              authuser: "ann",
              parent: ids[5]!,
              group: "run-1",
              data: { n: 7, group: "run-1", authuser: "ann" }
            }
          )
          assert.isAtLeast(e.recordedAt, before - 1)
          assert.isUndefined(yield* store.get(ids[1]!))
        })
      ))

    it("stores data in its encoded form and decodes it back by the type's schema", () =>
      run(
        Effect.gen(function* () {
          const at = new Date(T0)
          const data = { at, big: 2n ** 70n }
          yield* store.record("store.Dated@1", [ev(0, data, { type: "store.Dated@1" })], Dated)
          const stored = (yield* store.get(ids[0]!))!
          assert.deepStrictEqual(stored.data, { at: at.toISOString(), big: (2n ** 70n).toString() })
          assert.deepStrictEqual(Store.decode(Dated, stored), data)
        })
      ))

    it("a NUL character in data is kept as U+FFFD (Postgres JSONB cannot hold it), not a failed batch", () =>
      run(
        Effect.gen(function* () {
          const fresh = yield* store.record(
            "store.Other@1",
            [ev(0, { tag: "a\u0000b" }, { type: "store.Other@1" })],
            Other
          )
          assert.deepStrictEqual(fresh, [true])
          assert.deepStrictEqual((yield* store.get(ids[0]!))!.data, { tag: "a\ufffdb" })
        })
      ))

    it("a batch larger than one statement's rows is recorded whole", () =>
      run(
        Effect.gen(function* () {
          const small = yield* Store.make({ rowsPerStatement: 7, migrate: false })
          const events = Array.from({ length: 100 }, (_, i) => ev(i, { n: i }))
          const fresh = yield* small.record("store.Step@1", events, Step)
          assert.strictEqual(fresh.filter(Boolean).length, 100)
          assert.strictEqual(yield* small.count(), 100)
          assert.deepStrictEqual(yield* small.record("store.Step@1", events.slice(90), Step), new Array(10).fill(false))
        })
      ))

    it("a resend mixed into new events, across statements: each new one recorded and delivered once, the rest duplicates", () =>
      run(
        Effect.gen(function* () {
          const sub = yield* outbox.subscribe({ kind: "subscriber", name: "mixed", types: ["store.Step@1"] })
          const small = yield* Store.make({ rowsPerStatement: 7, migrate: false })
          // recorded before: 10..14, which fall in the second and third statements of 30
          yield* small.record(
            "store.Step@1",
            [10, 11, 12, 13, 14].map((i) => ev(i, { n: i })),
            Step
          )
          const events = Array.from({ length: 30 }, (_, i) => ev(i, { n: i }))
          const fresh = yield* small.record("store.Step@1", events, Step)
          assert.deepStrictEqual(
            fresh,
            events.map((_, i) => i < 10 || i > 14)
          )
          assert.strictEqual(yield* small.count(), 30)
          // one delivery per event, whichever batch recorded it
          for (const i of [0, 6, 7, 10, 14, 15, 29]) {
            const ds = yield* outbox.deliveriesOf(ids[i]!)
            assert.deepStrictEqual(
              ds.map((d) => d.subscriptionId),
              [sub.id],
              `event ${i}`
            )
          }
          assert.strictEqual((yield* outbox.counts).pending, 30)
          // the whole batch again: nothing new, nothing more delivered
          assert.deepStrictEqual(yield* small.record("store.Step@1", events, Step), new Array(30).fill(false))
          assert.strictEqual((yield* outbox.counts).pending, 30)
        })
      ))

    it("invalid options are InvalidOptions", () =>
      run(
        Effect.gen(function* () {
          const exit = yield* Effect.exit(Store.make({ rowsPerStatement: 0, migrate: false }))
          assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("rowsPerStatement"))
        })
      ))

    // ---- queries ----------------------------------------------------------------

    const seed = Effect.gen(function* () {
      yield* store.record(
        "store.Step@1",
        Array.from({ length: 30 }, (_, i) =>
          ev(
            i,
            { n: i, group: i % 3 === 0 ? "g0" : "g1", ...(i < 5 ? { authuser: "ann" } : {}) },
            { source: i % 2 ? "odd" : "even" }
          )
        ),
        Step
      )
      yield* store.record(
        "store.Step@2",
        Array.from({ length: 5 }, (_, k) => ev(100 + k, { n: k, note: "v2" }, { type: "store.Step@2" })),
        Step2
      )
      yield* store.record(
        "store.Other@1",
        Array.from({ length: 5 }, (_, k) => ev(200 + k, { tag: `t${k}` }, { type: "store.Other@1", at: T0 + 10 + k })),
        Other
      )
    })

    it("queries by type key, by name (every version), time range, source, group and authuser", () =>
      run(
        Effect.gen(function* () {
          yield* seed
          const n = (q: Store.Query) => Effect.map(store.count(q), (c) => c)
          assert.strictEqual(yield* n({ type: "store.Step@1" }), 30)
          assert.strictEqual(yield* n({ type: "store.Step@2" }), 5)
          assert.strictEqual(yield* n({ type: "store.Step" }), 35)
          assert.strictEqual(yield* n({ type: "store.Other" }), 5)
          assert.strictEqual(yield* n({ type: "store.Step@1", from: T0 + 10, to: T0 + 20 }), 10)
          assert.strictEqual(yield* n({ type: "store.Step@1", source: "odd" }), 15)
          assert.strictEqual(yield* n({ group: "g0" }), 10)
          assert.strictEqual(yield* n({ authuser: "ann" }), 5)
          assert.strictEqual(yield* n({ type: "store.Nope" }), 0)
          const page = yield* store.query({ type: "store.Other@1" })
          assert.deepStrictEqual(
            page.events.map((e) => e.data),
            [0, 1, 2, 3, 4].map((k) => ({ tag: `t${k}` }))
          )
          assert.isUndefined(page.next)
        })
      ))

    it("pages with cursors, ascending and descending: every event exactly once, in order", () =>
      run(
        Effect.gen(function* () {
          yield* seed
          for (const order of ["asc", "desc"] as const) {
            const seen: Array<string> = []
            let after: string | undefined
            let pages = 0
            do {
              const page: Store.Page = yield* store.query({
                limit: 4,
                order,
                ...(after === undefined ? {} : { after })
              })
              seen.push(...page.events.map((e) => e.id))
              after = page.next
              pages++
            } while (after !== undefined)
            assert.strictEqual(seen.length, 40)
            assert.strictEqual(new Set(seen).size, 40)
            assert.strictEqual(pages, 10)
            const all = (yield* store.query({ limit: 1_000, order })).events.map((e) => e.id)
            assert.deepStrictEqual(seen, all)
            // happenedAt then id, as the order says
            const times = (yield* store.query({ limit: 1_000, order })).events.map((e) => e.happenedAt)
            const sorted = [...times].sort((a, b) => (order === "asc" ? a - b : b - a))
            assert.deepStrictEqual(times, sorted)
          }
        })
      ))

    it('queries by an attribute of the data, with its JSON type: 1 is not true nor "1"', () =>
      run(
        Effect.gen(function* () {
          const values: Array<unknown> = [1, true, "1", null, 1.5, "x", false, 0]
          yield* store.record(
            "store.Attrs@1",
            values.map((v, i) => ev(i, { v, run: { id: i < 4 ? "r1" : "r2" } }, { type: "store.Attrs@1" })),
            Attrs
          )
          const match = (equals: string | number | boolean | null) =>
            Effect.map(store.query({ data: { path: "v", equals } }), (p) =>
              p.events.map((e) => (e.data as { v: unknown }).v)
            )
          assert.deepStrictEqual(yield* match(1), [1])
          assert.deepStrictEqual(yield* match(true), [true])
          assert.deepStrictEqual(yield* match("1"), ["1"])
          assert.deepStrictEqual(yield* match(null), [null])
          assert.deepStrictEqual(yield* match(1.5), [1.5])
          assert.deepStrictEqual(yield* match(false), [false])
          assert.deepStrictEqual(yield* match(0), [0])
          assert.strictEqual((yield* store.query({ data: { path: ["run", "id"], equals: "r2" } })).events.length, 4)
          assert.strictEqual(yield* store.count({ data: { path: ["run", "nope"], equals: "r2" } }), 0)
        })
      ))

    it("an event's tree: itself and every descendant by parent, in time order; safe on a cycle", () =>
      run(
        Effect.gen(function* () {
          // 0 ← 1 ← 2, 0 ← 3; 4 unrelated; 5 ↔ 6 a cycle
          yield* store.record(
            "store.Step@1",
            [
              ev(0, { n: 0 }),
              ev(1, { n: 1 }, { parent: ids[0]! }),
              ev(2, { n: 2 }, { parent: ids[1]! }),
              ev(3, { n: 3 }, { parent: ids[0]! }),
              ev(4, { n: 4 }),
              ev(5, { n: 5 }, { parent: ids[6]! }),
              ev(6, { n: 6 }, { parent: ids[5]! })
            ],
            Step
          )
          assert.deepStrictEqual(
            (yield* store.tree(ids[0]!)).map((e) => e.id),
            [ids[0], ids[1], ids[2], ids[3]]
          )
          assert.deepStrictEqual(
            (yield* store.tree(ids[1]!)).map((e) => e.id),
            [ids[1], ids[2]]
          )
          assert.deepStrictEqual(
            (yield* store.tree(ids[5]!)).map((e) => e.id),
            [ids[5], ids[6]]
          )
          assert.deepStrictEqual(yield* store.tree(ids[99]!), [])
        })
      ))

    it("bad queries are InvalidQuery: a limit out of range, a foreign cursor, an empty path, a NaN", () =>
      run(
        Effect.gen(function* () {
          const fails = (q: Store.Query, says: string) =>
            Effect.gen(function* () {
              const exit = yield* Effect.exit(store.query(q))
              assert.isTrue(Exit.isFailure(exit), `${JSON.stringify(q)} did not fail`)
              const text = String(Exit.isFailure(exit) ? exit.cause : "")
              assert.include(text, "InvalidQuery")
              assert.include(text, says)
            })
          yield* fails({ limit: 0 }, "limit")
          yield* fails({ limit: 1_001 }, "limit")
          yield* fails({ after: "not a cursor" }, "cursor")
          yield* fails({ data: { path: [], equals: 1 } }, "path")
          yield* fails({ data: { path: "v", equals: Number.NaN } }, "finite")
        })
      ))

    // ---- the transactional outbox -------------------------------------------------

    it("recording writes a delivery per matching active subscription, in the same transaction", () =>
      run(
        Effect.gen(function* () {
          const byKey = yield* outbox.subscribe({ kind: "subscriber", name: "k", types: ["store.Step@1"] })
          const byName = yield* outbox.subscribe({
            kind: "subscriber",
            name: "n",
            types: ["store.Step", "store.Step@1"]
          })
          const all = yield* outbox.subscribe({ kind: "subscriber", name: "a", types: ["*"] })
          yield* outbox.subscribe({ kind: "subscriber", name: "off", types: ["*"], active: false })
          const other = yield* outbox.subscribe({ kind: "subscriber", name: "o", types: ["store.Other"] })
          yield* store.record("store.Step@1", [ev(0, { n: 0 }), ev(1, { n: 1 })], Step)
          yield* store.record("store.Step@2", [ev(2, { n: 2, note: "x" }, { type: "store.Step@2" })], Step2)
          const subsOf = (i: number) =>
            Effect.map(outbox.deliveriesOf(ids[i]!), (ds) => ds.map((d) => d.subscriptionId).sort())
          assert.deepStrictEqual(yield* subsOf(0), [byKey.id, byName.id, all.id].sort())
          assert.deepStrictEqual(yield* subsOf(2), [byName.id, all.id].sort())
          assert.deepStrictEqual(
            yield* outbox.deliveriesOf(ids[0]!).pipe(Effect.map((ds) => ds.every((d) => d.state === "pending"))),
            true
          )
          // a resend writes nothing more
          yield* store.record("store.Step@1", [ev(0, { n: 0 })], Step)
          // 3 for each Step@1 event, 2 for the Step@2 one
          assert.strictEqual((yield* outbox.counts).pending, 8)
          assert.deepStrictEqual((yield* outbox.deliveriesOf(ids[0]!)).length, 3)
          assert.notInclude(yield* subsOf(0), other.id)
        })
      ))

    it("an event whose transaction fails leaves no event and no delivery rows", () =>
      run(
        Effect.gen(function* () {
          const sql = yield* SqlClient.SqlClient
          yield* outbox.subscribe({ kind: "subscriber", name: "a", types: ["*"] })
          const exit = yield* Effect.exit(
            store
              .record("store.Step@1", [ev(0, { n: 0 })], Step)
              .pipe(Effect.andThen(Effect.fail("after the insert")), sql.withTransaction)
          )
          assert.isTrue(Exit.isFailure(exit))
          assert.strictEqual(yield* store.count(), 0)
          assert.deepStrictEqual(yield* outbox.counts, { pending: 0, delivering: 0, delivered: 0, dead: 0 })
          // and recorded later, it gets them
          yield* store.record("store.Step@1", [ev(0, { n: 0 })], Step)
          assert.strictEqual((yield* outbox.counts).pending, 1)
        })
      ))

    it("subscriptions: validated, listed, changed at runtime (new deliveries follow), removed", () =>
      run(
        Effect.gen(function* () {
          const bad: Array<Outbox.SubscriptionInput> = [
            { kind: "webhook", name: "w", types: ["*"] },
            { kind: "webhook", name: "w", types: ["*"], url: "ftp://x" },
            { kind: "subscriber", name: "", types: ["*"] },
            { kind: "subscriber", name: "s", types: [] },
            { kind: "subscriber", name: "s", types: ["not a type"] },
            { kind: "subscriber", name: "s", types: ["*"], maxAttempts: 0 },
            { kind: "nope" as Outbox.Kind, name: "s", types: ["*"] }
          ]
          for (const input of bad) {
            const exit = yield* Effect.exit(outbox.subscribe(input))
            assert.isTrue(Exit.isFailure(exit) && String(exit.cause).includes("InvalidOptions"), JSON.stringify(input))
          }
          const s = yield* outbox.subscribe({
            kind: "webhook",
            name: "hook",
            types: ["store.Other"],
            url: `${hooks.url}/a`,
            secret: "k"
          })
          assert.deepStrictEqual(
            { ...s, id: "", createdAt: 0 },
            {
              id: "",
              kind: "webhook",
              name: "hook",
              types: ["store.Other"],
              url: `${hooks.url}/a`,
              signed: true,
              maxAttempts: 10,
              active: true,
              createdAt: 0
            }
          )
          assert.deepStrictEqual(
            (yield* outbox.subscriptions).map((x) => x.id),
            [s.id]
          )
          yield* store.record("store.Step@1", [ev(0, { n: 0 })], Step)
          assert.strictEqual((yield* outbox.counts).pending, 0)
          const changed = yield* outbox.update(s.id, { types: ["store.Step@1"], maxAttempts: 3 })
          assert.deepStrictEqual([changed.types, changed.maxAttempts, changed.signed], [["store.Step@1"], 3, true])
          yield* store.record("store.Step@1", [ev(1, { n: 1 })], Step)
          assert.strictEqual((yield* outbox.counts).pending, 1)
          yield* outbox.update(s.id, { active: false })
          yield* store.record("store.Step@1", [ev(2, { n: 2 })], Step)
          assert.strictEqual((yield* outbox.counts).pending, 1)
          const missing = yield* Effect.exit(outbox.update("sub_nope", { active: true }))
          assert.isTrue(Exit.isFailure(missing) && String(missing.cause).includes("SubscriptionNotFound"))
          yield* outbox.unsubscribe(s.id)
          assert.deepStrictEqual(yield* outbox.subscriptions, [])
          assert.strictEqual((yield* outbox.counts).pending, 0)
          const again = yield* Effect.exit(outbox.unsubscribe(s.id))
          assert.isTrue(Exit.isFailure(again) && String(again.cause).includes("SubscriptionNotFound"))
        })
      ))

    // ---- workers ---------------------------------------------------------------------

    const until = (check: () => Effect.Effect<boolean, unknown, SqlClient.SqlClient>, what: string, ms = 15_000) =>
      Effect.gen(function* () {
        const deadline = Date.now() + ms
        while (!(yield* check())) {
          if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${what}`))
          yield* Effect.sleep(10)
        }
      })

    it("a webhook gets each event as signed JSON with its idempotency key; the delivery is marked delivered", () =>
      run(
        Effect.gen(function* () {
          const s = yield* outbox.subscribe({
            kind: "webhook",
            name: "hook",
            types: ["store.Step"],
            url: `${hooks.url}/hook`,
            secret: "s3cret"
          })
          yield* store.record("store.Step@1", [ev(0, { n: 0 }), ev(1, { n: 1, group: "g" })], Step)
          const w = yield* Outbox.worker({ pollMs: 10 })
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 2), "2 delivered")
          assert.strictEqual(hooks.received.length, 2)
          for (const r of hooks.received) {
            assert.strictEqual(r.path, "/hook")
            assert.strictEqual(r.headers["content-type"], "application/json")
            assert.isTrue(Outbox.verify("s3cret", r.body, String(r.headers[Outbox.signatureHeader])), "signature")
            assert.isFalse(Outbox.verify("other", r.body, String(r.headers[Outbox.signatureHeader])))
            assert.isFalse(Outbox.verify("s3cret", `${r.body} `, String(r.headers[Outbox.signatureHeader])))
            const body = JSON.parse(r.body)
            assert.strictEqual(body.event.id, r.key)
            assert.strictEqual(body.subscription, "hook")
            assert.strictEqual(r.headers["cairn-event-type"], "store.Step@1")
          }
          assert.deepStrictEqual(hooks.received.map((r) => r.key).sort(), [ids[0], ids[1]])
          const body = JSON.parse(hooks.received.find((r) => r.key === ids[1])!.body)
          assert.deepStrictEqual(body.event.data, { n: 1, group: "g" })
          assert.strictEqual(body.event.group, "g")
          const d = (yield* outbox.deliveriesOf(ids[0]!))[0]!
          assert.deepStrictEqual([d.subscriptionId, d.state, d.attempts, d.lastStatus], [s.id, "delivered", 1, 200])
          assert.strictEqual(w.stats().delivered, 2)
        })
      ))

    it("failures are retried with backoff, honouring Retry-After; past maxAttempts dead with the last error; retryDead", () =>
      run(
        Effect.gen(function* () {
          // event 0: 500 twice, then 200; event 1: always 503 with Retry-After 0
          hooks.respond = (r, nth) =>
            r.key === ids[0]! ? { status: nth <= 2 ? 500 : 200 } : { status: 503, headers: { "retry-after": "0" } }
          yield* outbox.subscribe({
            kind: "webhook",
            name: "flaky",
            types: ["*"],
            url: `${hooks.url}/f`,
            maxAttempts: 4
          })
          yield* store.record("store.Step@1", [ev(0, { n: 0 }), ev(1, { n: 1 })], Step)
          const w = yield* Outbox.worker({ pollMs: 10, backoff: { baseMs: 5, maxMs: 50 } })
          yield* until(
            () => Effect.map(outbox.counts, (c) => c.delivered === 1 && c.dead === 1),
            "one delivered, one dead"
          )
          assert.strictEqual(hooks.received.filter((r) => r.key === ids[0]!).length, 3)
          assert.strictEqual(hooks.received.filter((r) => r.key === ids[1]!).length, 4)
          const [dead] = yield* outbox.dead()
          assert.deepStrictEqual([dead!.eventId, dead!.attempts, dead!.lastStatus], [ids[1], 4, 503])
          assert.include(dead!.lastError!, "503")
          assert.deepStrictEqual(
            { ...w.stats(), claimed: 0 },
            { claimed: 0, delivered: 1, failed: 6, dead: 1, lost: 0, running: 0 }
          )
          // fixed receiver: retry the dead one
          hooks.respond = () => ({ status: 204 })
          assert.strictEqual(yield* outbox.retryDead(), 1)
          w.wake()
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 2 && c.dead === 0), "retried")
          assert.strictEqual(yield* outbox.retryDead(), 0)
        })
      ))

    it("a Retry-After longer than the backoff delays the next attempt", () =>
      run(
        Effect.gen(function* () {
          hooks.respond = (_r, nth) => (nth === 1 ? { status: 429, headers: { "retry-after": "1" } } : { status: 200 })
          yield* outbox.subscribe({ kind: "webhook", name: "slow", types: ["*"], url: hooks.url })
          yield* store.record("store.Step@1", [ev(0, { n: 0 })], Step)
          yield* Outbox.worker({ pollMs: 10, backoff: { baseMs: 1 } })
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 1), "delivered")
          const [a, b] = hooks.received
          assert.isAtLeast(b!.at - a!.at, 900, "the second attempt came before the Retry-After")
        })
      ))

    it("no answer within timeoutMs is a failed attempt", () =>
      run(
        Effect.gen(function* () {
          hooks.respond = (_r, nth) => (nth === 1 ? { status: 200, delayMs: 2_000 } : { status: 200 })
          yield* outbox.subscribe({ kind: "webhook", name: "t", types: ["*"], url: hooks.url })
          yield* store.record("store.Step@1", [ev(0, { n: 0 })], Step)
          yield* Outbox.worker({ pollMs: 10, timeoutMs: 200, leaseMs: 5_000, backoff: { baseMs: 1 } })
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 1), "delivered")
          const d = (yield* outbox.deliveriesOf(ids[0]!))[0]!
          assert.strictEqual(d.attempts, 2)
          assert.include(d.lastError!, "200 ms")
        })
      ))

    it("in-process subscribers: run with the event; a failure or a missing subscriber is retried", () =>
      run(
        Effect.gen(function* () {
          const seen: Array<string> = []
          let failures = 1
          yield* outbox.subscribe({ kind: "subscriber", name: "audit", types: ["store.Step@1"] })
          yield* outbox.subscribe({ kind: "subscriber", name: "nobody", types: ["store.Step@1"], maxAttempts: 2 })
          yield* store.record("store.Step@1", [ev(0, { n: 0 }), ev(1, { n: 1 })], Step)
          yield* Outbox.worker({
            pollMs: 10,
            backoff: { baseMs: 1 },
            subscribers: {
              audit: ({ event, attempt }) =>
                event.id === ids[1]! && failures-- > 0
                  ? Effect.fail(`attempt ${attempt} refused`)
                  : Effect.sync(() => {
                      seen.push(event.id)
                    })
            }
          })
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 2 && c.dead === 2), "settled")
          assert.deepStrictEqual(seen.sort(), [ids[0], ids[1]])
          const dead = yield* outbox.dead()
          assert.isTrue(dead.every((d) => d.lastError!.includes('no subscriber named "nobody"')))
        })
      ))

    it("analytics sinks get only the telemetry properties, never the data", () =>
      run(
        Effect.gen(function* () {
          yield* outbox.subscribe({ kind: "analytics", name: "ga", types: ["*"], url: `${hooks.url}/collect` })
          yield* store.record("store.Step@1", [ev(0, { n: 42, authuser: "ann@example.com" })], Step)
          yield* Outbox.worker({
            pollMs: 10,
            telemetry: (event) => ({ n: (event.data as { n: number }).n })
          })
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 1), "delivered")
          const body = JSON.parse(hooks.received[0]!.body)
          assert.deepStrictEqual(body, { event: "store.Step", id: ids[0], timestamp: T0, properties: { n: 42 } })
          assert.notInclude(hooks.received[0]!.body, "ann@example.com")
        })
      ))

    it("counts by state, also as the cairn_outbox_deliveries gauge and the delivered counter", () =>
      run(
        Effect.gen(function* () {
          hooks.respond = (r) => ({ status: r.key === ids[2]! ? 400 : 200 })
          yield* outbox.subscribe({ kind: "webhook", name: "m", types: ["*"], url: hooks.url, maxAttempts: 1 })
          yield* store.record("store.Step@1", [ev(0, { n: 0 }), ev(1, { n: 1 }), ev(2, { n: 2 })], Step)
          assert.deepStrictEqual(yield* outbox.counts, { pending: 3, delivering: 0, delivered: 0, dead: 0 })
          const registry = new Map()
          const gauge = (state: string) =>
            Metric.value(Outbox.metrics.deliveries.pipe(Metric.withAttributes({ state }))).pipe(
              Effect.provideService(Metric.MetricRegistry, registry)
            )
          yield* Outbox.worker({ pollMs: 10, countsEveryMs: 20 }).pipe(
            Effect.provideService(Metric.MetricRegistry, registry)
          )
          yield* until(() => Effect.map(outbox.counts, (c) => c.delivered === 2 && c.dead === 1), "settled")
          yield* until(() => Effect.map(gauge("delivered"), (g) => g.value === 2), "the gauge")
          assert.deepStrictEqual((yield* gauge("dead")).value, 1)
          assert.deepStrictEqual((yield* gauge("pending")).value, 0)
          const delivered = yield* Metric.value(Outbox.metrics.delivered).pipe(
            Effect.provideService(Metric.MetricRegistry, registry)
          )
          assert.strictEqual(delivered.count, 2)
        })
      ))

    it("a worker's invalid options are InvalidOptions (lease not above the timeout, a zero concurrency)", () =>
      run(
        Effect.gen(function* () {
          for (const options of [
            { leaseMs: 1_000, timeoutMs: 1_000 },
            { concurrency: 0 },
            { backoff: { jitter: 1 } }
          ]) {
            const exit = yield* Effect.exit(Outbox.worker(options))
            assert.isTrue(
              Exit.isFailure(exit) && String(exit.cause).includes("InvalidOptions"),
              JSON.stringify(options)
            )
          }
        })
      ))

    if (dialect.concurrentWorkers) {
      it("three workers on their own connections: every delivery done once, none attempted twice at once", async () => {
        const extra = dialect.extraLayer!
        await run(
          Effect.gen(function* () {
            hooks.respond = () => ({ status: 200, delayMs: 3 })
            yield* outbox.subscribe({ kind: "webhook", name: "many", types: ["*"], url: hooks.url })
            for (let b = 0; b < 6; b++) {
              yield* store.record(
                "store.Step@1",
                Array.from({ length: 50 }, (_, i) => ev(b * 50 + i, { n: b * 50 + i })),
                Step
              )
            }
          })
        )
        const runtimes = [extra(), extra(), extra()].map((l) => ManagedRuntime.make(l))
        try {
          const workers = await Promise.all(
            runtimes.map((rt, k) =>
              rt.runPromise(
                Effect.gen(function* () {
                  const w = yield* Outbox.worker({ id: `w${k}`, pollMs: 5, batchSize: 7, concurrency: 4 })
                  yield* until(
                    () =>
                      Effect.promise(() => runtime.runPromise(Effect.map(outbox.counts, (c) => c.delivered === 300))),
                    "300 delivered",
                    30_000
                  )
                  return w.stats()
                }).pipe(Effect.scoped)
              )
            )
          )
          const keys = hooks.received.map((r) => r.key)
          assert.strictEqual(keys.length, 300, "a delivery was attempted twice")
          assert.strictEqual(new Set(keys).size, 300)
          assert.strictEqual(hooks.maxConcurrentPerKey(), 1)
          assert.strictEqual(
            workers.reduce((a, s) => a + s.delivered, 0),
            300
          )
          assert.isTrue(
            workers.every((s) => s.delivered > 0),
            `a worker got nothing: ${JSON.stringify(workers)}`
          )
        } finally {
          await Promise.all(runtimes.map((rt) => rt.dispose()))
        }
      }, 60_000)
    }
  })
