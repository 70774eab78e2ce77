/**
 * The store and outbox conformance suite on SQLite: a database file of its own, in a
 * temporary directory, through Cairn's node:sqlite driver.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll } from "@effect/vitest"
import { Sqlite } from "../src/index.ts"
import { conformance } from "./conformance/store.ts"

const dir = mkdtempSync(join(tmpdir(), "cairn-store-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

conformance({
  name: "SQLite",
  layer: () => Sqlite.layer({ filename: join(dir, "cairn.sqlite") }),
  concurrentWorkers: false
})
