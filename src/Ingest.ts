/**
 * Ingest: how events from outside (a harness over the wire, an HTTP view) enter the
 * service.
 *
 * One batch of one type at a time: each event is validated on its own (an unknown
 * type or invalid data refuses that event, with its reason, and never the rest of
 * the batch); the valid ones are recorded by the {@link Store}, which knows every id
 * it recorded (a resend is a `duplicate`, recorded once); what is new is handed to
 * the trail's per-type actors (its handlers, machines and processing function),
 * waiting for room when their mailboxes are full — that wait is the gateway's
 * backpressure. The batch resolves once every event is durably accepted or refused:
 * that is when the gateway may ack it.
 *
 * The in-memory store remembers the last `capacity` ids; a durable store (SQL)
 * records the events themselves, so its answer survives a restart.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { foreignOrigin } from "./Batch.ts"
import { Envelope, IdGenerator, Origin } from "./Envelope.ts"
import { EventNotFound, InvalidOptions, TrailClosed, ValidationError } from "./Errors.ts"
import { IdSet } from "./internal/idSet.ts"
import * as Protocol from "./Protocol.ts"
import type * as EventType from "./EventType.ts"
import type * as Trail from "./Trail.ts"

/**
 * Where accepted events are recorded, once per id.
 *
 * @category models
 */
export interface Store {
  /**
   * Records the valid events of one batch (all of type `key`, data decoded) and says,
   * for each, whether it is new: `false` when an event with its id was recorded before
   * (by an earlier batch or earlier in this one). Resolves only once they are durable;
   * fails when it cannot record them (nothing of the batch may then be acked).
   * `type` is the events' type (its schema encodes the data for a store that keeps it).
   */
  readonly record: (
    key: string,
    events: ReadonlyArray<Envelope>,
    type: EventType.Any
  ) => Effect.Effect<ReadonlyArray<boolean>, unknown>
}

/**
 * Options of the in-memory store.
 *
 * @category models
 */
export interface MemoryOptions {
  /**
   * Ids remembered for de-duplication: at least the last `capacity` recorded (and at
   * most twice that); older ones are forgotten, and a resend of an event that old
   * would be recorded again. Memory: about 100 bytes per unit of capacity once twice
   * `capacity` ids were recorded (three tables of 32 MiB for the default, one of them
   * cleared a chunk at a time for reuse). Default `1_000_000`.
   */
  readonly capacity?: number
}

/**
 * The defaults of {@link MemoryOptions}.
 *
 * @category constructors
 */
export const memoryDefaults = { capacity: 1_000_000 } as const

/**
 * The in-memory store: it keeps no events (the trail's actors have them), only the
 * ids recorded lately (see {@link MemoryOptions.capacity}), to answer `duplicate`.
 * The ids live in typed-array hash tables, not a `Set<string>`: recording costs about
 * 0.1 µs per event instead of about 1 µs at a million ids.
 *
 * @category models
 */
export class MemoryStore implements Store {
  readonly capacity: number
  private readonly ids: IdSet

  constructor(options: MemoryOptions = {}) {
    const capacity = options.capacity ?? memoryDefaults.capacity
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 2 ** 26) {
      throw new InvalidOptions({ subject: "memory store", reason: "capacity must be an integer from 1 to 2^26" })
    }
    this.capacity = capacity
    this.ids = new IdSet(capacity)
  }

  /** Ids remembered now. */
  get size(): number {
    return this.ids.size
  }

  /** Whether an id is remembered as recorded. */
  has(id: string): boolean {
    return this.ids.has(id)
  }

  recordUnsafe(events: ReadonlyArray<Envelope>): Array<boolean> {
    const out = new Array<boolean>(events.length)
    const ids = this.ids
    for (let i = 0; i < events.length; i++) out[i] = events[i]!.addIdTo(ids)
    return out
  }

  record(_key: string, events: ReadonlyArray<Envelope>, _type?: EventType.Any): Effect.Effect<ReadonlyArray<boolean>> {
    return Effect.sync(() => this.recordUnsafe(events))
  }
}

/**
 * The in-memory store.
 *
 * @category constructors
 */
export const memoryStore = (options?: MemoryOptions): MemoryStore => new MemoryStore(options)

/**
 * Options of an {@link Ingest}.
 *
 * @category models
 */
export interface Options {
  /** The service's trail: its per-type actors get the accepted events. */
  readonly trail: Trail.Service
  /** Where events are recorded once per id. Default: an in-memory store ({@link memoryStore}). */
  readonly store?: Store
}

/**
 * Counters of an {@link Ingest} since it was made.
 *
 * @category models
 */
export interface Stats {
  readonly batches: number
  /** Events handed to the trail's actors. */
  readonly accepted: number
  readonly duplicate: number
  readonly unknownType: number
  readonly invalid: number
  /** Events refused for another reason (a closed trail). */
  readonly rejected: number
  /** Batches whose store failed (not acked). */
  readonly storeFailures: number
}

/** Per source: the origin of its events of each key. */
type Origins = Map<string, Origin>

/**
 * Takes batches of events from outside into the service (see the module doc).
 *
 * @category models
 */
export class Ingest {
  readonly trail: Trail.Service
  readonly store: Store
  private readonly intakes = new Map<string, Trail.Intake>()
  private readonly origins = new Map<string, Origins>()
  private counters = {
    batches: 0,
    accepted: 0,
    duplicate: 0,
    unknownType: 0,
    invalid: 0,
    rejected: 0,
    storeFailures: 0
  }

  constructor(options: Options) {
    this.trail = options.trail
    this.store = options.store ?? new MemoryStore()
  }

  /** The counters so far. */
  stats(): Stats {
    return { ...this.counters }
  }

  /**
   * Ingests one BATCH from `source` (a harness id): resolves with the outcomes of
   * the events not plainly accepted, in event order, once every event is recorded
   * and handed to the trail's actors, or refused. Fails when the store fails (no
   * event of the batch may be acked then; a resend will be de-duplicated) or with
   * {@link TrailClosed} when the service is shutting down.
   */
  batch(source: string, frame: Protocol.BatchFrame): Effect.Effect<Array<Protocol.Outcome>, unknown> {
    return Effect.suspend(() => {
      this.counters.batches++
      const key = frame.key
      const n = Protocol.eventCount(frame)
      const outcomes: Array<Protocol.Outcome> = []
      let intake: Trail.Intake
      try {
        intake = this.intakeOf(key)
      } catch (error) {
        if (!(error instanceof EventNotFound)) return Effect.die(error)
        const reason = Protocol.truncateReason(error.message)
        for (let i = 0; i < n; i++) outcomes.push([i, "unknown_type", reason])
        this.counters.unknownType += n
        return Effect.succeed(outcomes)
      }
      // rows carry their ids; columns and fields derive them (lazily: the in-memory
      // store de-duplicates by their parts, and the string is made only when read)
      const rows = frame.events._tag === "Rows" ? frame.events.rows : undefined
      const origin = this.originOf(
        source,
        key,
        rows === undefined ? (frame.events as Protocol.Columns).node : undefined
      )
      const firstSeq = rows === undefined ? (frame.events as Protocol.Columns).firstSeq : 0
      const events: Array<Envelope> = []
      const indexes: Array<number> = []
      for (let i = 0; i < n; i++) {
        let value: unknown
        try {
          value = intake.decode(Protocol.eventData(frame, i))
        } catch (error) {
          if (!(error instanceof ValidationError)) return Effect.die(error)
          outcomes.push([i, "invalid", Protocol.truncateReason(error.message)])
          this.counters.invalid++
          continue
        }
        events.push(
          rows === undefined
            ? new Envelope(
                origin,
                Protocol.eventTime(frame, i),
                value,
                Protocol.eventParent(frame, i),
                undefined,
                (firstSeq + i) % TWO_POW_40
              )
            : new Envelope(origin, rows[i]![1], value, rows[i]![3], rows[i]![0], 0)
        )
        indexes.push(i)
      }
      if (events.length === 0) return Effect.succeed(outcomes)
      return this.store.record(key, events, intake.type).pipe(
        Effect.tapError(() =>
          Effect.sync(() => {
            this.counters.storeFailures++
          })
        ),
        Effect.flatMap((fresh) => this.handOver(intake, events, indexes, fresh, outcomes, 0))
      )
    })
  }

  /**
   * Hands the new events to the trail's actors from `from` on, recording duplicates;
   * waits for room when a mailbox is full, then goes on.
   */
  private handOver(
    intake: Trail.Intake,
    events: ReadonlyArray<Envelope>,
    indexes: ReadonlyArray<number>,
    fresh: ReadonlyArray<boolean>,
    outcomes: Array<Protocol.Outcome>,
    from: number
  ): Effect.Effect<Array<Protocol.Outcome>, TrailClosed> {
    const counters = this.counters
    for (let j = from; j < events.length; j++) {
      if (!fresh[j]) {
        outcomes.push([indexes[j]!, "duplicate", ""])
        counters.duplicate++
        continue
      }
      const result = intake.offer(events[j]!)
      if (result === "full") {
        return Effect.flatMap(intake.awaitRoom, () => this.handOver(intake, events, indexes, fresh, outcomes, j))
      }
      if (result === "closed") {
        counters.rejected += events.length - j
        return Effect.fail(new TrailClosed({ type: intake.type.key }))
      }
      // "accepted", or "dropped" by a droppable type's own overflow policy: accepted
      counters.accepted++
    }
    if (outcomes.length > 1) outcomes.sort(byIndex)
    return Effect.succeed(outcomes)
  }

  private intakeOf(key: string): Trail.Intake {
    let intake = this.intakes.get(key)
    if (intake === undefined) {
      intake = this.trail.intake(key)
      this.intakes.set(key, intake)
    }
    return intake
  }

  /**
   * The origin of a source's events of a key: with an id generator of the batch's
   * node for columns and fields (their ids are derived), without for rows.
   */
  private originOf(source: string, key: string, node: string | undefined): Origin {
    let bySource = this.origins.get(source)
    if (bySource === undefined) {
      bySource = new Map()
      this.origins.set(source, bySource)
    }
    const cacheKey = node === undefined ? key : `${key} ${node}`
    let origin = bySource.get(cacheKey)
    if (origin === undefined) {
      origin = node === undefined ? foreignOrigin(key, source) : new Origin(key, source, new IdGenerator(node))
      // a source's harness draws a node per type per trail: a few per key at most
      if (bySource.size >= maxOrigins) bySource.clear()
      bySource.set(cacheKey, origin)
    }
    return origin
  }

  /** Forgets what is cached for a source (its session ended). */
  forget(source: string): void {
    this.origins.delete(source)
  }
}

/** Origins cached per source before they are let go (a source restarting often draws new nodes). */
const maxOrigins = 256

const TWO_POW_40 = 2 ** 40

const byIndex = (a: Protocol.Outcome, b: Protocol.Outcome): number => a[0] - b[0]

/**
 * Makes an {@link Ingest}.
 *
 * @category constructors
 */
export const make = (options: Options): Ingest => new Ingest(options)
