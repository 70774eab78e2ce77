/**
 * The instances kept so that V8 does not collect the batch path's hidden classes (and
 * throw away its optimized code) at a full collection are useful only if they share
 * their hidden class with the real ones: a field of another kind in the kept instance
 * (a number where real ones hold an object, say) gives it a map of its own. This
 * checks it with V8's own `%HaveSameMap`, in a child process started with
 * `--allow-natives-syntax`, before and after a full collection.
 */
import { fork } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"

interface Shapes {
  readonly batch: boolean
  readonly taken: boolean
  readonly segment: boolean
  readonly keptOffsets: boolean
  readonly effects: ReadonlyArray<boolean>
}

const run = (): Promise<{ before: Shapes; after: Shapes }> =>
  new Promise((resolve, reject) => {
    const child = fork(new URL("./fixtures/shapes-child.ts", import.meta.url), [], {
      execArgv: ["--allow-natives-syntax", "--expose-gc"],
      stdio: ["ignore", "inherit", "inherit", "ipc"]
    })
    child.once("message", (message) => resolve(message as { before: Shapes; after: Shapes }))
    child.once("exit", (code) => reject(new Error(`shapes child exited with ${code} before reporting`)))
  })

describe("kept shapes", () => {
  it("a real batch, its take, its segment and the effects of a batch have the hidden classes of the kept ones, before and after a full collection", async () => {
    const { before, after } = await run()
    for (const [when, shapes] of [
      ["before", before],
      ["after", after]
    ] as const) {
      assert.isTrue(shapes.batch, `batch ${when} the collection`)
      assert.isTrue(shapes.taken, `take ${when} the collection`)
      assert.isTrue(shapes.segment, `segment ${when} the collection`)
      assert.isTrue(shapes.keptOffsets)
      assert.deepStrictEqual(shapes.effects, [true, true, true, true, true], `effects ${when} the collection`)
    }
  })
})
