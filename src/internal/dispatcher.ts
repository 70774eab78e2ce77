/**
 * Processing slots shared by the actors of one trail, granted by priority.
 *
 * At most `slots` batches are processed at once. When actors wait for a slot, the
 * highest priority goes first; equal priorities go in arrival order, so a flood of
 * one type cannot starve another type of the same or higher priority.
 */
import { Effect } from "effect"

/** One request for a slot; `granted` is set synchronously when the slot is given. */
export interface Ticket {
  granted: boolean
}

interface Waiter {
  readonly ticket: Ticket
  readonly resume: (effect: Effect.Effect<void>) => void
}

interface Level {
  readonly priority: number
  readonly waiters: Array<Waiter>
}

export class Dispatcher {
  private available: number
  /** Waiting levels, highest priority first. */
  private readonly levels: Array<Level> = []

  constructor(slots: number) {
    this.available = slots
  }

  /**
   * Waits for a slot. The ticket records the grant synchronously, so a caller
   * interrupted right after the grant can still see that it holds a slot and release it.
   */
  acquire(priority: number, ticket: Ticket): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (this.available > 0) {
        this.available--
        ticket.granted = true
        return resume(Effect.void)
      }
      const level = this.level(priority)
      const waiter: Waiter = { ticket, resume }
      level.waiters.push(waiter)
      return Effect.sync(() => {
        const i = level.waiters.indexOf(waiter)
        if (i >= 0) level.waiters.splice(i, 1)
      })
    })
  }

  release(): void {
    for (const level of this.levels) {
      const next = level.waiters.shift()
      if (next !== undefined) {
        next.ticket.granted = true
        next.resume(Effect.yieldNow) // never run the next actor inside this release
        return
      }
    }
    this.available++
  }

  /** Actors waiting for a slot. */
  waiting(): number {
    let n = 0
    for (const level of this.levels) n += level.waiters.length
    return n
  }

  private level(priority: number): Level {
    const levels = this.levels
    let i = 0
    while (i < levels.length && levels[i]!.priority > priority) i++
    const found = levels[i]
    if (found !== undefined && found.priority === priority) return found
    const level: Level = { priority, waiters: [] }
    levels.splice(i, 0, level)
    return level
  }
}
