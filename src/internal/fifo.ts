/**
 * A first-in first-out queue on one array with a head and a tail index.
 *
 * For queues that empty often (once a batch): `Array.prototype.shift` and
 * `array.length = 0` leave optimized code for the runtime, 50–60 ns a call, while
 * moving two indices costs a few. The array keeps the largest length it reached;
 * slots are cleared as items leave, and both indices go back to 0 when it empties.
 */
export class Fifo<T> {
  private items: Array<T | undefined> = []
  private head = 0
  private tail = 0

  get size(): number {
    return this.tail - this.head
  }

  push(item: T): void {
    this.items[this.tail++] = item
  }

  /** The oldest item, or `undefined` when empty. */
  peek(): T | undefined {
    return this.head < this.tail ? this.items[this.head] : undefined
  }

  /** The newest item, or `undefined` when empty. */
  last(): T | undefined {
    return this.head < this.tail ? this.items[this.tail - 1] : undefined
  }

  /** Removes and returns the oldest item, or `undefined` when empty. */
  shift(): T | undefined {
    if (this.head === this.tail) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head === this.tail) {
      this.head = 0
      this.tail = 0
    } else if (this.head >= 1024 && this.head * 2 >= this.tail) {
      // mostly a dead prefix: move the live items down (amortized, as they moved once)
      this.items.copyWithin(0, this.head, this.tail)
      this.items.fill(undefined, this.tail - this.head, this.tail)
      this.tail -= this.head
      this.head = 0
    }
    return item
  }
}
