import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, describe, it } from "@effect/vitest"

const child = fileURLToPath(new URL("./fixtures/exit-child.ts", import.meta.url))

const run = (mode: string) => spawnSync(process.execPath, [child, mode], { encoding: "utf8", timeout: 20_000 })

describe("process exit", () => {
  it("a disposed trail delivers everything and lets the process exit", () => {
    const result = run("dispose")
    assert.isNull(result.error ?? null, String(result.error))
    assert.strictEqual(result.status, 0, result.stderr)
    assert.deepStrictEqual(JSON.parse(result.stdout), { processed: 1234, accepted: 1234 })
  })

  it("a trail left open keeps no timer alive: the process exits on its own", () => {
    const result = run("open")
    assert.isNull(result.error ?? null, `the child did not exit: ${String(result.error)}`)
    assert.strictEqual(result.status, 0, result.stderr)
    assert.deepStrictEqual(JSON.parse(result.stdout), { processed: 1234, accepted: 1234 })
  })
})
