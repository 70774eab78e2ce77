import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { TestClock } from "effect/testing"
import { Errors, EventType, Handler, Registry, Trail } from "../src/index.ts"
import type { Batch } from "../src/Batch.ts"

const S = Schema.Struct({ n: Schema.Number })

const type = (name: string, version = 1, options?: EventType.MakeOptions) => EventType.make(name, version, S, options)

const handler = (name: string, options?: Handler.Options) => Handler.make(name, () => Effect.void, options)

/** Runs `f`, which must throw an instance of `E`, and returns the error. */
const throws = <E>(ctor: abstract new (...args: never) => E, f: () => unknown): E => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, ctor as never)
    return e as E
  }
  return assert.fail(`expected ${ctor.name}`)
}

const notFound = (registry: Registry.Registry, asked: string): Errors.EventNotFound =>
  throws(Errors.EventNotFound, () => registry.resolve(asked))

const NOT_A_NAME = 'is not an event name: expected "app.Name" or "app.Name@version" (version a positive integer)'

describe("Registry.resolve", () => {
  it("an exact key gives that version; a bare name the latest registered version", () => {
    const v1 = type("app.Name", 1)
    const v2 = type("app.Name", 2)
    const v3 = type("app.Name", 3)
    // registered out of order: "latest" is the highest version, not the last registered
    const registry = Registry.make([v1, v3, v2])
    assert.strictEqual(registry.resolve("app.Name"), v3)
    assert.strictEqual(registry.resolve("app.Name@1"), v1)
    assert.strictEqual(registry.resolve("app.Name@2"), v2)
    assert.strictEqual(registry.resolve("app.Name@3"), v3)
    assert.strictEqual(registry.get("app.Name@2"), v2)
    assert.isUndefined(registry.get("app.Name"), "get takes keys only")
    assert.isUndefined(registry.get("app.Name@4"))
  })

  it("a version registered later than the latest becomes the latest", () => {
    const registry = Registry.make([type("app.Name", 2)])
    assert.strictEqual(registry.resolve("app.Name").version, 2)
    registry.register(type("app.Name", 1))
    assert.strictEqual(registry.resolve("app.Name").version, 2, "an older version does not take over")
    const v5 = type("app.Name", 5)
    registry.register(v5)
    assert.strictEqual(registry.resolve("app.Name"), v5)
  })

  it("types() lists every type by name, then by version", () => {
    const registry = Registry.make([
      type("zeta.Last", 1),
      type("app.Name", 3),
      type("app.Other", 1),
      type("app.Name", 1),
      type("beta.Thing", 2),
      type("app.Name", 2)
    ])
    assert.deepStrictEqual(
      registry.types().map((t) => t.key),
      ["app.Name@1", "app.Name@2", "app.Name@3", "app.Other@1", "beta.Thing@2", "zeta.Last@1"]
    )
    assert.deepStrictEqual(Registry.make().types(), [])
  })
})

describe("Registry: EventNotFound", () => {
  const registry = Registry.make([
    type("app.EventName", 1),
    type("app.EventName", 3),
    type("app.EventName", 2),
    type("app.Other", 1),
    type("billing.Paid", 1)
  ])

  it("an unknown event in a known app lists the app's events and suggests the close name", () => {
    const error = notFound(registry, "app.EventNmae")
    assert.strictEqual(
      error.message,
      "there is no event named EventNmae in the app app (it has app.EventName, app.Other); did you mean app.EventName?"
    )
    assert.strictEqual(error._tag, "EventNotFound")
    assert.strictEqual(error.code, "CAIRN_EVENT_NOT_FOUND")
    assert.strictEqual(error.asked, "app.EventNmae")
    assert.deepStrictEqual(error.suggestions, ["app.EventName"])
    assert.strictEqual(
      error.reason,
      "there is no event named EventNmae in the app app (it has app.EventName, app.Other)"
    )
  })

  it("an unknown event with nothing close suggests nothing", () => {
    const error = notFound(registry, "app.Completely")
    assert.strictEqual(
      error.message,
      "there is no event named Completely in the app app (it has app.EventName, app.Other)"
    )
    assert.deepStrictEqual(error.suggestions, [])
  })

  it("an unknown app lists the apps", () => {
    const error = notFound(registry, "zzz.Foo")
    assert.strictEqual(
      error.message,
      "there is no event named Foo in the zzz app: there is no zzz app (apps: app, billing)"
    )
    assert.strictEqual(error.asked, "zzz.Foo")
    assert.deepStrictEqual(error.suggestions, [])
  })

  it("an app misspelt suggests the close name in the right app", () => {
    const error = notFound(registry, "ap.EventName")
    assert.strictEqual(
      error.message,
      "there is no event named EventName in the ap app: there is no ap app (apps: app, billing); did you mean app.EventName?"
    )
    assert.deepStrictEqual(error.suggestions, ["app.EventName"])
  })

  it("a multi-segment name splits the app at its last dot", () => {
    const error = notFound(Registry.make([type("org.app.Thing", 1)]), "org.app.Thong")
    assert.strictEqual(
      error.message,
      "there is no event named Thong in the org.app app (it has org.app.Thing); did you mean org.app.Thing?"
    )
  })

  it("an empty registry says nothing is registered", () => {
    const error = notFound(Registry.make(), "app.EventName")
    assert.strictEqual(error.message, "there is no event named EventName in the app app: no event types are registered")
    assert.deepStrictEqual(error.suggestions, [])
    assert.strictEqual(
      notFound(Registry.make(), "app.EventName@2").message,
      "there is no event named EventName in the app app: no event types are registered"
    )
  })

  it("an unknown version of a known name lists the versions and suggests the latest key", () => {
    const error = notFound(registry, "app.EventName@7")
    assert.strictEqual(
      error.message,
      "there is no version 7 of event app.EventName: registered versions are 1, 2, 3; did you mean app.EventName@3?"
    )
    assert.strictEqual(error.asked, "app.EventName@7")
    assert.deepStrictEqual(error.suggestions, ["app.EventName@3"])
    assert.strictEqual(
      notFound(registry, "billing.Paid@2").message,
      "there is no version 2 of event billing.Paid: registered versions are 1; did you mean billing.Paid@1?"
    )
  })

  for (const asked of ["foo", "app.", "app.Name@0", "app.Name@x", "app.Name@1.5", "", "@1", "app.Name@", "app..Name"]) {
    it(`a malformed name ${JSON.stringify(asked)} says what a name looks like`, () => {
      const error = notFound(registry, asked)
      assert.strictEqual(error.message, `${JSON.stringify(asked)} ${NOT_A_NAME}`)
      assert.strictEqual(error.asked, asked)
      assert.deepStrictEqual(error.suggestions, [])
    })
  }

  it("a malformed version of a close name still suggests the name", () => {
    const error = notFound(registry, "app.EventNam@x")
    assert.strictEqual(error.message, `"app.EventNam@x" ${NOT_A_NAME}; did you mean app.EventName?`)
    assert.deepStrictEqual(error.suggestions, ["app.EventName"])
  })

  // a known name with a bad version: its latest key, as for an unknown version
  it("a malformed version of a known name suggests its latest key", () => {
    const error = notFound(registry, "app.EventName@0")
    assert.deepStrictEqual(error.suggestions, ["app.EventName@3"])
  })

  it("a name differing only in case suggests the registered spelling", () => {
    const error = notFound(registry, "app.eventname")
    assert.strictEqual(
      error.message,
      "there is no event named eventname in the app app (it has app.EventName, app.Other); did you mean app.EventName?"
    )
    assert.deepStrictEqual(error.suggestions, ["app.EventName"])
    assert.deepStrictEqual(notFound(registry, "APP.EVENTNAME").suggestions, ["app.EventName"])
  })

  it("at most three suggestions, closest first, ties in name order", () => {
    // distances from "app.Point": app.point 0 (case only), app.Joint / app.Poin / app.Points 1,
    // app.Pointer 2, app.Pt 3 (too far)
    const many = Registry.make(
      ["app.Pt", "app.Pointer", "app.Points", "app.point", "app.Poin", "app.Joint"].map((n) => type(n))
    )
    const error = notFound(many, "app.Point")
    assert.deepStrictEqual(error.suggestions, ["app.point", "app.Joint", "app.Poin"])
    assert.strictEqual(
      error.message,
      "there is no event named Point in the app app (it has app.Joint, app.Poin, app.Pointer, app.Points, app.Pt, app.point); did you mean app.point or app.Joint or app.Poin?"
    )
    // distances from "app.Pointt": app.Points / app.point 1, app.Joint / app.Poin / app.Pointer 2
    assert.deepStrictEqual(notFound(many, "app.Pointt").suggestions, ["app.Points", "app.point", "app.Joint"])
    // far from everything: none
    assert.deepStrictEqual(notFound(many, "app.Zzzzzz").suggestions, [])
  })

  it("notFound builds the same error resolve throws", () => {
    const thrown = notFound(registry, "app.EventNmae")
    const built = registry.notFound("app.EventNmae")
    assert.instanceOf(built, Errors.EventNotFound)
    assert.strictEqual(built.message, thrown.message)
    assert.deepStrictEqual(built.suggestions, thrown.suggestions)
  })
})

describe("Registry.register", () => {
  it("registering the same type again is a no-op", () => {
    const T = type("app.Name")
    const registry = Registry.make([T])
    const changes: Array<string> = []
    registry.subscribe((c) => changes.push(`${c._tag}:${c.type.key}`))
    registry.register(T)
    registry.register(T)
    assert.deepStrictEqual(changes, [], "no TypeAdded for a type already there")
    assert.strictEqual(registry.types().length, 1)
    assert.strictEqual(registry.get("app.Name@1"), T)
  })

  it("another definition with the same schema under the same key is taken as the same type", () => {
    const T = type("app.Name")
    const Again = EventType.make("app.Name", 1, S, { delivery: "droppable" })
    const registry = Registry.make([T])
    registry.register(Again)
    assert.strictEqual(registry.get("app.Name@1"), T, "the first definition stays")
  })

  it("a different schema under a registered key fails with DuplicateEventType", () => {
    const T = type("app.Name", 2)
    const registry = Registry.make([T])
    const error = throws(Errors.DuplicateEventType, () =>
      registry.register(EventType.make("app.Name", 2, Schema.Struct({ n: Schema.String })))
    )
    assert.strictEqual(
      error.message,
      "event type app.Name@2 is already registered with a different schema; change the version to change the data"
    )
    assert.strictEqual(error._tag, "DuplicateEventType")
    assert.strictEqual(error.code, "CAIRN_DUPLICATE_EVENT_TYPE")
    assert.strictEqual(error.key, "app.Name@2")
    assert.strictEqual(registry.get("app.Name@2"), T, "the registered type stays")
    // a structurally equal but distinct schema is a different schema too
    throws(Errors.DuplicateEventType, () =>
      registry.register(EventType.make("app.Name", 2, Schema.Struct({ n: Schema.Number })))
    )
  })

  it("versions of one name coexist, each with its own schema", () => {
    const V1 = EventType.make("app.Name", 1, S)
    const V2 = EventType.make("app.Name", 2, Schema.Struct({ n: Schema.Number, note: Schema.String }))
    const registry = Registry.make([V1, V2])
    assert.strictEqual(registry.get("app.Name@1"), V1)
    assert.strictEqual(registry.get("app.Name@2"), V2)
    assert.deepStrictEqual(
      registry.types().map((t) => t.key),
      ["app.Name@1", "app.Name@2"]
    )
  })
})

describe("Registry handlers", () => {
  it("declared handlers come first in declaration order, then by-name ones in registration order", () => {
    const T = type("app.T", 1, { handlers: [handler("d2"), handler("d1")] })
    const registry = Registry.make([T])
    registry.on("app.T", handler("n3"))
    registry.on(T, handler("n1"))
    registry.on("app.T@1", handler("n2"))
    const names = ["d2", "d1", "n3", "n1", "n2"]
    assert.deepStrictEqual(
      registry.handlers(T).map((h) => h.name),
      names
    )
    assert.deepStrictEqual(
      registry.handlers("app.T@1").map((h) => h.name),
      names,
      "by key too"
    )
    assert.deepStrictEqual(registry.handlers("app.T@2"), [], "an unknown key has none")
    assert.deepStrictEqual(registry.handlers("app.T"), [], "handlers takes a key, not a name")
  })

  it('on("app.Name", h) applies to every version, those registered later included', () => {
    const V1 = type("app.Name", 1)
    const V2 = type("app.Name", 2, { handlers: [handler("declared")] })
    const registry = Registry.make([V1])
    const h = handler("every")
    registry.on("app.Name", h)
    registry.register(V2)
    assert.deepStrictEqual(registry.handlers(V1), [h])
    assert.deepStrictEqual(
      registry.handlers(V2).map((x) => x.name),
      ["declared", "every"]
    )
    assert.strictEqual(registry.handlers(V2)[1], h)
    assert.deepStrictEqual(registry.handlers(type("app.Other")), [], "not another name")
  })

  it('on("app.Name@2", h) applies to that version only', () => {
    const V1 = type("app.Name", 1)
    const V2 = type("app.Name", 2)
    const V3 = type("app.Name", 3)
    const registry = Registry.make([V1, V2])
    const h = handler("only2")
    registry.on("app.Name@2", h)
    registry.register(V3)
    assert.deepStrictEqual(registry.handlers(V1), [])
    assert.deepStrictEqual(registry.handlers(V2), [h])
    assert.deepStrictEqual(registry.handlers(V3), [])
  })

  it("on(type, h) registers the type and applies to that version only", () => {
    const V1 = type("app.Name", 1)
    const V2 = type("app.Name", 2)
    const registry = Registry.make()
    const h = handler("h")
    registry.on(V1, h)
    assert.strictEqual(registry.get("app.Name@1"), V1)
    assert.strictEqual(registry.resolve("app.Name"), V1)
    registry.register(V2)
    assert.deepStrictEqual(registry.handlers(V1), [h])
    assert.deepStrictEqual(registry.handlers(V2), [])
  })

  it("on an unknown name fails with EventNotFound and leaves nothing behind", () => {
    const registry = Registry.make([type("app.Name", 1)])
    const error = throws(Errors.EventNotFound, () => registry.on("app.Nmae", handler("h")))
    assert.strictEqual(
      error.message,
      "there is no event named Nmae in the app app (it has app.Name); did you mean app.Name?"
    )
    const missingVersion = throws(Errors.EventNotFound, () => registry.on("app.Name@2", handler("h")))
    assert.strictEqual(
      missingVersion.message,
      "there is no version 2 of event app.Name: registered versions are 1; did you mean app.Name@1?"
    )
    // the failed registrations do not apply to types registered afterwards
    const Nmae = type("app.Nmae", 1)
    const V2 = type("app.Name", 2)
    registry.register(Nmae)
    registry.register(V2)
    assert.deepStrictEqual(registry.handlers(Nmae), [])
    assert.deepStrictEqual(registry.handlers(V2), [])
  })

  it("a second handler of the same name on a type fails with DuplicateHandler", () => {
    const T = type("app.T", 1, { handlers: [handler("declared")] })
    const registry = Registry.make([T])
    registry.on("app.T", handler("audit"))
    const again = throws(Errors.DuplicateHandler, () => registry.on("app.T", handler("audit")))
    assert.strictEqual(again.message, 'a handler named "audit" is already registered for app.T@1')
    assert.strictEqual(again._tag, "DuplicateHandler")
    assert.strictEqual(again.code, "CAIRN_DUPLICATE_HANDLER")
    assert.strictEqual(again.type, "app.T@1")
    assert.strictEqual(again.handler, "audit")
    // by key, by type, and against a declared handler: the same
    throws(Errors.DuplicateHandler, () => registry.on("app.T@1", handler("audit")))
    throws(Errors.DuplicateHandler, () => registry.on(T, handler("audit")))
    const declared = throws(Errors.DuplicateHandler, () => registry.on(T, handler("declared")))
    assert.strictEqual(declared.message, 'a handler named "declared" is already registered for app.T@1')
    assert.deepStrictEqual(
      registry.handlers(T).map((h) => h.name),
      ["declared", "audit"],
      "the refused ones were not added"
    )
  })

  it("a by-name handler clashing on one version of the name is refused for all of them", () => {
    const V1 = type("app.T", 1)
    const V2 = type("app.T", 2, { handlers: [handler("audit")] })
    const registry = Registry.make([V1, V2])
    const error = throws(Errors.DuplicateHandler, () => registry.on("app.T", handler("audit")))
    assert.strictEqual(error.message, 'a handler named "audit" is already registered for app.T@2')
    assert.deepStrictEqual(registry.handlers(V1), [], "not added to v1 either")
  })

  it("a new version whose declared handler clashes with a by-name one fails with DuplicateHandler", () => {
    const V1 = type("app.T", 1)
    const registry = Registry.make([V1])
    registry.on("app.T", handler("audit"))
    const changes: Array<string> = []
    registry.subscribe((c) => changes.push(c._tag))
    const V2 = type("app.T", 2, { handlers: [handler("audit")] })
    const error = throws(Errors.DuplicateHandler, () => registry.register(V2))
    assert.strictEqual(error.message, 'a handler named "audit" is already registered for app.T@2')
    assert.isUndefined(registry.get("app.T@2"), "the clashing version is not registered")
    assert.strictEqual(registry.resolve("app.T"), V1)
    assert.deepStrictEqual(changes, [])
    // a handler registered for another version's key does not clash
    const W1 = type("app.W", 1)
    const reg2 = Registry.make([W1])
    reg2.on("app.W@1", handler("audit"))
    const W2 = type("app.W", 2, { handlers: [handler("audit")] })
    reg2.register(W2)
    assert.strictEqual(reg2.get("app.W@2"), W2)
  })

  it("two declared handlers with the same name fail at EventType.make", () => {
    const error = throws(Errors.InvalidEventType, () =>
      EventType.make("app.T", 1, S, { handlers: [handler("a"), handler("b"), handler("a")] })
    )
    assert.strictEqual(error.message, 'invalid event type app.T@1: two handlers are named "a"')
  })

  it("a handler that would drop events of a must type fails with InvalidOptions", () => {
    const Must = type("app.Must", 1)
    const Drop = type("app.Drop", 1, { delivery: "droppable" })
    const registry = Registry.make([Must, Drop])
    const error = throws(Errors.InvalidOptions, () =>
      registry.on("app.Must", handler("lossy", { mailbox: { overflow: "dropOldest" } }))
    )
    assert.strictEqual(
      error.message,
      'handler "lossy" of app.Must@1: a must type is never dropped: the handler\'s mailbox overflow must be "backpressure", not "dropOldest"'
    )
    assert.deepStrictEqual(registry.handlers(Must), [])
    registry.on("app.Drop", handler("lossy", { mailbox: { overflow: "dropOldest" } }))
    assert.strictEqual(registry.handlers(Drop).length, 1)
  })

  it("a new must version is refused when a by-name handler of the name would drop its events", () => {
    const registry = Registry.make([type("app.Drop", 1, { delivery: "droppable" })])
    registry.on("app.Drop", handler("lossy", { mailbox: { overflow: "dropNewest" } }))
    const error = throws(Errors.InvalidOptions, () => registry.register(type("app.Drop", 2)))
    assert.strictEqual(
      error.message,
      'handler "lossy" of app.Drop@2: a must type is never dropped: the handler\'s mailbox overflow must be "backpressure", not "dropNewest"'
    )
    assert.isUndefined(registry.get("app.Drop@2"))
    assert.strictEqual(registry.resolve("app.Drop").version, 1)
  })
})

describe("Registry.subscribe", () => {
  it("sees TypeAdded and HandlerAdded in order; unsubscribing stops it", () => {
    const registry = Registry.make([type("app.A", 1)])
    const seen: Array<string> = []
    const unsubscribe = registry.subscribe((c) =>
      seen.push(c._tag === "TypeAdded" ? `type ${c.type.key}` : `handler ${c.handler.name} on ${c.type.key}`)
    )
    const other: Array<string> = []
    registry.subscribe((c) => other.push(c._tag))
    registry.register(type("app.A", 2))
    registry.on("app.A", handler("all"))
    registry.on("app.A@1", handler("one"))
    registry.on(type("app.B", 1), handler("b"))
    assert.deepStrictEqual(seen, [
      "type app.A@2",
      "handler all on app.A@1",
      "handler all on app.A@2",
      "handler one on app.A@1",
      "type app.B@1",
      "handler b on app.B@1"
    ])
    unsubscribe()
    registry.register(type("app.C", 1))
    registry.on("app.C", handler("c"))
    assert.strictEqual(seen.length, 6, "nothing after unsubscribing")
    assert.strictEqual(other.length, 8, "other listeners go on")
  })

  it("a refused registration emits nothing", () => {
    const registry = Registry.make([type("app.A", 1, { handlers: [handler("h")] })])
    const seen: Array<string> = []
    registry.subscribe((c) => seen.push(c._tag))
    throws(Errors.DuplicateHandler, () => registry.on("app.A", handler("h")))
    throws(Errors.EventNotFound, () => registry.on("app.Nope", handler("x")))
    throws(Errors.DuplicateEventType, () => registry.register(EventType.make("app.A", 1, Schema.String)))
    assert.deepStrictEqual(seen, [])
  })
})

/** Lets every ready fiber run (the actors are woken through the scheduler). */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

const recorder = () => {
  const seen: Array<{ key: string; data: ReadonlyArray<unknown> }> = []
  const process: Trail.Processor = (batch: Batch) =>
    Effect.sync(() => {
      seen.push({ key: batch.key, data: batch.data })
    })
  return { seen, process }
}

const recording = (name: string, into: Array<unknown>) =>
  Handler.make(name, (e) =>
    Effect.sync(() => {
      into.push(e.data)
    })
  )

describe("Registry through a trail", () => {
  it.effect("the trail follows the registry it is given: its types get actors", () =>
    Effect.gen(function* () {
      const T = type("reg.Given", 1, { batch: { lingerMs: 0 } })
      const registry = Registry.make([T])
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ source: "t", registry, process })
      assert.strictEqual(trail.registry, registry)
      assert.strictEqual(trail.logUnsafe("reg.Given", { n: 1 }), "accepted")
      yield* trail.flush
      assert.deepStrictEqual(seen, [{ key: "reg.Given@1", data: [{ n: 1 }] }])
    })
  )

  it.effect("a handler added with registry.on after start gets the events logged afterwards", () =>
    Effect.gen(function* () {
      const T = type("reg.Later", 1, { batch: { lingerMs: 0 } })
      const registry = Registry.make([T])
      const trail = yield* Trail.make({ source: "t", registry })
      trail.logUnsafe(T, { n: 1 })
      yield* trail.flush
      const got: Array<unknown> = []
      registry.on("reg.Later", recording("late", got))
      trail.logUnsafe(T, { n: 2 })
      trail.logUnsafe("reg.Later", { n: 3 })
      yield* trail.flush
      assert.deepStrictEqual(got, [{ n: 2 }, { n: 3 }])
      const stats = trail.statsUnsafe().types["reg.Later@1"]!
      assert.strictEqual(stats.handlers.late!.accepted, 2)
      assert.strictEqual(stats.handlers.late!.processed, 2)
    })
  )

  it.effect("a type registered in the registry after start can be logged by name", () =>
    Effect.gen(function* () {
      const registry = Registry.make()
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ source: "t", registry, process })
      const before = yield* Effect.flip(trail.log("reg.New", { n: 0 }))
      assert.strictEqual(before._tag, "EventNotFound")
      // default linger (10 ms): the actor's linger timer is set up from the registry's listener
      const T = type("reg.New", 1, { handlers: [recording("declared", [])] })
      registry.register(T)
      assert.strictEqual(trail.logUnsafe("reg.New", { n: 1 }), "accepted")
      assert.strictEqual(yield* trail.log("reg.New@1", { n: 2 }), "accepted")
      yield* settle
      yield* TestClock.adjust(10)
      yield* trail.flush
      assert.deepStrictEqual(
        seen.flatMap((b) => b.data),
        [{ n: 1 }, { n: 2 }]
      )
      const stats = trail.statsUnsafe()
      assert.strictEqual(stats.types["reg.New@1"]!.processed, 2)
      assert.strictEqual(stats.types["reg.New@1"]!.handlers.declared!.processed, 2)
      assert.strictEqual(stats.rejected.unknownType, 1)
    })
  )

  it.effect("a new version registered in the registry takes over the bare name", () =>
    Effect.gen(function* () {
      const V1 = type("reg.Ver", 1, { batch: { lingerMs: 0 } })
      const registry = Registry.make([V1])
      const { seen, process } = recorder()
      const trail = yield* Trail.make({ source: "t", registry, process })
      trail.logUnsafe("reg.Ver", { n: 1 })
      registry.register(type("reg.Ver", 2, { batch: { lingerMs: 0 } }))
      trail.logUnsafe("reg.Ver", { n: 2 })
      yield* trail.flush
      const dataOf = (key: string) => seen.filter((b) => b.key === key).flatMap((b) => b.data)
      assert.deepStrictEqual(dataOf("reg.Ver@1"), [{ n: 1 }])
      assert.deepStrictEqual(dataOf("reg.Ver@2"), [{ n: 2 }])
    })
  )

  it.effect("trail.on by name fails with EventNotFound in the error channel", () =>
    Effect.gen(function* () {
      const trail = yield* Trail.make({ source: "t", types: [type("reg.On", 1)] })
      const error = yield* Effect.flip(trail.on("reg.Onn", handler("h")))
      assert.instanceOf(error, Errors.EventNotFound)
      assert.strictEqual(
        error.message,
        "there is no event named Onn in the reg app (it has reg.On); did you mean reg.On?"
      )
    })
  )

  it("Trail.start: a registry's later handlers and types reach the Promise facade", async () => {
    const T = type("reg.Facade", 1, { batch: { lingerMs: 0 } })
    const registry = Registry.make([T])
    const trail = await Trail.start({ source: "p", registry })
    try {
      assert.strictEqual(trail.registry, registry)
      const got: Array<unknown> = []
      registry.on("reg.Facade", recording("h", got))
      assert.strictEqual(trail.log("reg.Facade", { n: 1 }), "accepted")
      registry.register(type("reg.Facade", 2, { batch: { lingerMs: 0 } }))
      const gotV2: Array<unknown> = []
      trail.on("reg.Facade@2", recording("h2", gotV2))
      assert.strictEqual(await trail.send("reg.Facade", { n: 2 }), "accepted")
      await trail.flush()
      assert.deepStrictEqual(got, [{ n: 1 }, { n: 2 }], "the by-name handler applies to v2 too")
      assert.deepStrictEqual(gotV2, [{ n: 2 }])
      assert.throws(() => trail.on("reg.Nope", handler("x")), /there is no event named Nope in the reg app/)
    } finally {
      await trail.dispose()
    }
  })
})
