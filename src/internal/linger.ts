/**
 * Linger timers shared by many targets.
 *
 * A type whose batch is not full waits for more events for `lingerMs` after the
 * first one. Racing a sleep against the mailbox for every batch costs two fibers per
 * batch; with a thousand types that is most of the work. Instead, all types with
 * the same `lingerMs` share one timer fiber and one FIFO of deadlines: deadlines of
 * one `lingerMs` only grow, so the head is always the next to fire, and the fiber
 * sleeps (on Effect's `Clock`, so `TestClock` drives it) until it is due, then
 * releases every target whose deadline has passed.
 */
import { type Clock, Effect, type Scope } from "effect"

/** What a linger timer ends: the wait of one generation. */
export interface Target {
  release(generation: number): void
}

class Lane {
  readonly lingerMs: number
  private deadlines: Array<number> = []
  private targets: Array<Target> = []
  private generations: Array<number> = []
  private head = 0
  private waiter: ((effect: Effect.Effect<void>) => void) | undefined = undefined

  constructor(lingerMs: number) {
    this.lingerMs = lingerMs
  }

  push(deadline: number, target: Target, generation: number): void {
    this.deadlines.push(deadline)
    this.targets.push(target)
    this.generations.push(generation)
    const waiter = this.waiter
    if (waiter !== undefined) {
      this.waiter = undefined
      waiter(Effect.yieldNow)
    }
  }

  /** The timer fiber: never ends; interrupted with its scope. */
  run(clock: Clock.Clock): Effect.Effect<never> {
    const awaitEntry = Effect.callback<void>((resume) => {
      if (this.head < this.deadlines.length) return resume(Effect.void)
      this.waiter = resume
      return Effect.sync(() => {
        this.waiter = undefined
      })
    })
    const step = Effect.suspend(() => {
      if (this.head >= this.deadlines.length) return awaitEntry
      const wait = this.deadlines[this.head]! - clock.currentTimeMillisUnsafe()
      return wait > 0 ? Effect.sleep(wait) : Effect.sync(() => this.fire(clock.currentTimeMillisUnsafe()))
    })
    return Effect.forever(step)
  }

  private fire(now: number): void {
    const { deadlines, targets, generations } = this
    let h = this.head
    while (h < deadlines.length && deadlines[h]! <= now) {
      targets[h]!.release(generations[h]!)
      targets[h] = undefined as unknown as Target
      h++
    }
    if (h === deadlines.length) {
      // emptied in place: new arrays here made the optimized code of every path that
      // schedules a linger (the first `log` after each batch) be thrown away at the
      // next full collection ("embedded weak objects cleared")
      deadlines.length = 0
      targets.length = 0
      generations.length = 0
      this.head = 0
    } else if (h > 1024 && h * 2 > deadlines.length) {
      this.deadlines = deadlines.slice(h)
      this.targets = targets.slice(h)
      this.generations = generations.slice(h)
      this.head = 0
    } else {
      this.head = h
    }
  }
}

/** Linger timers for one trail (or one standalone actor). */
export class Linger {
  private readonly lanes = new Map<number, Lane>()
  private readonly clock: Clock.Clock
  private readonly scope: Scope.Scope

  constructor(clock: Clock.Clock, scope: Scope.Scope) {
    this.clock = clock
    this.scope = scope
  }

  /** Makes sure a timer fiber runs for `lingerMs`; call when an actor starts. */
  register(lingerMs: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.lanes.has(lingerMs)) return Effect.void
      const lane = new Lane(lingerMs)
      this.lanes.set(lingerMs, lane)
      return Effect.asVoid(Effect.forkIn(lane.run(this.clock), this.scope))
    })
  }

  /** Releases `target`'s wait of this generation `lingerMs` from now. Synchronous. */
  schedule(lingerMs: number, target: Target, generation: number): void {
    this.lanes.get(lingerMs)!.push(this.clock.currentTimeMillisUnsafe() + lingerMs, target, generation)
  }
}
