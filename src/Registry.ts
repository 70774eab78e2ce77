/**
 * The registry: event types by name and version, and their handlers.
 *
 * It serves the name-based API: `log("app.EventName", data)` resolves the latest
 * registered version of `app.EventName`, `log("app.EventName@2", data)` that exact
 * version. A name that resolves to nothing fails with {@link EventNotFound}, which
 * says what was asked, what the app has, and close names.
 *
 * Handlers: those declared with a type come first, in declaration order; then those
 * registered with {@link Registry.on}, in registration order. `on("app.Name", h)`
 * applies to every version of the name, those registered later included;
 * `on("app.Name@2", h)` or `on(type, h)` to one version.
 *
 * A registry is plain synchronous state, safe to fill at module load; a trail uses
 * one (its own by default, or one given in its options) and follows its changes.
 *
 * @since 0.1.0
 */
import { DuplicateEventType, DuplicateHandler, EventNotFound, InvalidOptions } from "./Errors.ts"
import type * as EventType from "./EventType.ts"
import type { Handler } from "./Handler.ts"

/**
 * A change a trail follows: a type registered, or a handler added to a type.
 *
 * @category models
 */
export type Change =
  | { readonly _tag: "TypeAdded"; readonly type: EventType.Any }
  | { readonly _tag: "HandlerAdded"; readonly type: EventType.Any; readonly handler: Handler }

interface Named {
  /** A name (every version) or a key (one version). */
  readonly target: string
  readonly handler: Handler
}

const NAME = /^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_-]*)+$/
const VERSION = /^[1-9][0-9]*$/

/**
 * Event types and handlers by name.
 *
 * @category models
 */
export class Registry {
  private readonly byKey = new Map<string, EventType.Any>()
  /** Versions of each name, ascending. */
  private readonly byName = new Map<string, Array<EventType.Any>>()
  private readonly named: Array<Named> = []
  private readonly listeners = new Set<(change: Change) => void>()

  /**
   * Registers a type (again: a no-op). Throws {@link DuplicateEventType} when another
   * schema holds the key, {@link DuplicateHandler} when one of its declared handlers
   * has the name of a handler registered for its name.
   */
  register(type: EventType.Any): void {
    const existing = this.byKey.get(type.key)
    if (existing !== undefined) {
      if (existing !== type && existing.schema !== type.schema) throw new DuplicateEventType({ key: type.key })
      return
    }
    for (const n of this.named) {
      if (n.target !== type.name && n.target !== type.key) continue
      if (type.handlers.some((h) => h.name === n.handler.name)) {
        throw new DuplicateHandler({ type: type.key, handler: n.handler.name })
      }
      checkDelivery(type, n.handler)
    }
    for (const h of type.handlers) checkDelivery(type, h)
    this.byKey.set(type.key, type)
    const versions = this.byName.get(type.name)
    if (versions === undefined) this.byName.set(type.name, [type])
    else {
      versions.push(type)
      versions.sort((a, b) => a.version - b.version)
    }
    this.emit({ _tag: "TypeAdded", type })
  }

  /** The type registered under `key` (`name@version`), if any. */
  get(key: string): EventType.Any | undefined {
    return this.byKey.get(key)
  }

  /** Every registered type, by name then version. */
  types(): ReadonlyArray<EventType.Any> {
    return [...this.byName.keys()].sort().flatMap((name) => this.byName.get(name)!)
  }

  /**
   * The type a name stands for: `app.Name@2` that version, `app.Name` the latest
   * registered version. Throws {@link EventNotFound}.
   */
  resolve(asked: string): EventType.Any {
    const found = this.byKey.get(asked)
    if (found !== undefined) return found
    const versions = this.byName.get(asked)
    if (versions !== undefined) return versions[versions.length - 1]!
    throw this.notFound(asked)
  }

  /**
   * Adds a handler after the declared ones: for every version of a name
   * (`"app.Name"`), or for one version (`"app.Name@2"` or the type itself, which is
   * registered if it was not). Throws {@link EventNotFound} for a name that is not
   * registered, {@link DuplicateHandler} when a type it applies to already has a
   * handler of that name, {@link InvalidOptions} when the handler would drop events
   * of a `must` type.
   */
  on(target: string | EventType.Any, handler: Handler): void {
    let key: string
    let types: ReadonlyArray<EventType.Any>
    if (typeof target !== "string") {
      this.register(target)
      key = target.key
      types = [target]
    } else if (this.byKey.has(target)) {
      key = target
      types = [this.byKey.get(target)!]
    } else if (this.byName.has(target)) {
      key = target
      types = this.byName.get(target)!
    } else {
      throw this.notFound(target)
    }
    for (const type of types) {
      if (this.handlers(type).some((h) => h.name === handler.name)) {
        throw new DuplicateHandler({ type: type.key, handler: handler.name })
      }
      checkDelivery(type, handler)
    }
    this.named.push({ target: key, handler })
    for (const type of types) this.emit({ _tag: "HandlerAdded", type, handler })
  }

  /** The handlers of a type in the order they get its events: declared, then by name. */
  handlers(type: EventType.Any | string): ReadonlyArray<Handler> {
    const t = typeof type === "string" ? this.byKey.get(type) : type
    if (t === undefined) return []
    const out: Array<Handler> = [...t.handlers]
    for (const n of this.named) if (n.target === t.key || n.target === t.name) out.push(n.handler)
    return out
  }

  /** Follows changes; returns the function that stops following. */
  subscribe(listener: (change: Change) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private emit(change: Change): void {
    for (const l of this.listeners) l(change)
  }

  /** Builds the error for a name that resolves to nothing, with suggestions. */
  notFound(asked: string): EventNotFound {
    const at = asked.lastIndexOf("@")
    const name = at >= 0 ? asked.slice(0, at) : asked
    const version = at >= 0 ? asked.slice(at + 1) : undefined
    const names = [...this.byName.keys()].sort()
    if (!NAME.test(name) || (version !== undefined && !VERSION.test(version))) {
      return new EventNotFound({
        asked,
        reason: `"${asked}" is not an event name: expected "app.Name" or "app.Name@version" (version a positive integer)`,
        suggestions: !NAME.test(name)
          ? []
          : this.byName.has(name)
            ? [this.byName.get(name)!.at(-1)!.key]
            : closest(name, names)
      })
    }
    const versions = this.byName.get(name)
    if (versions !== undefined) {
      const latest = versions[versions.length - 1]!
      return new EventNotFound({
        asked,
        reason: `there is no version ${version} of event ${name}: registered versions are ${versions.map((t) => t.version).join(", ")}`,
        suggestions: [latest.key]
      })
    }
    const dot = name.lastIndexOf(".")
    const app = name.slice(0, dot)
    const event = name.slice(dot + 1)
    const inApp = names.filter((n) => n.slice(0, n.lastIndexOf(".")) === app)
    const suggestions = closest(name, names)
    if (inApp.length > 0) {
      return new EventNotFound({
        asked,
        reason: `there is no event named ${event} in the ${app} app (it has ${inApp.join(", ")})`,
        suggestions
      })
    }
    const apps = [...new Set(names.map((n) => n.slice(0, n.lastIndexOf("."))))]
    return new EventNotFound({
      asked,
      reason:
        apps.length === 0
          ? `there is no event named ${event} in the ${app} app: no event types are registered`
          : `there is no event named ${event} in the ${app} app: there is no ${app} app (apps: ${apps.join(", ")})`,
      suggestions
    })
  }
}

/** A `must` type is never dropped: its handlers cannot have a dropping mailbox. */
const checkDelivery = (type: EventType.Any, handler: Handler): void => {
  const overflow = handler.options.mailbox?.overflow
  if (type.delivery === "must" && overflow !== undefined && overflow !== "backpressure") {
    throw new InvalidOptions({
      subject: `handler "${handler.name}" of ${type.key}`,
      reason: `a must type is never dropped: the handler's mailbox overflow must be "backpressure", not "${overflow}"`
    })
  }
}

/**
 * Makes an empty registry, or one holding `types`.
 *
 * @category constructors
 */
export const make = (types: ReadonlyArray<EventType.Any> = []): Registry => {
  const registry = new Registry()
  for (const t of types) registry.register(t)
  return registry
}

/** Up to three names within a small edit distance of `name`, closest first. */
const closest = (name: string, names: ReadonlyArray<string>): Array<string> => {
  const lower = name.toLowerCase()
  const limit = Math.max(2, Math.floor(name.length / 4))
  return names
    .map((n) => ({ n, d: n.toLowerCase() === lower ? 0 : distance(lower, n.toLowerCase()) }))
    .filter((x) => x.d <= limit && x.n !== name)
    .sort((a, b) => a.d - b.d || (a.n < b.n ? -1 : 1))
    .slice(0, 3)
    .map((x) => x.n)
}

/** Optimal string alignment distance (Levenshtein with adjacent transpositions). */
const distance = (a: string, b: string): number => {
  const rows = a.length + 1
  const cols = b.length + 1
  const d: Array<Array<number>> = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0))
  )
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[rows - 1]![cols - 1]!
}
