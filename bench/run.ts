/**
 * Entry point: `npm run bench -- <name>` runs `bench/<name>.bench.ts` (all of them without a name).
 */
import { readdirSync } from "node:fs"

const names = process.argv.slice(2)
const available = readdirSync(new URL(".", import.meta.url))
  .filter((f) => f.endsWith(".bench.ts"))
  .map((f) => f.slice(0, -".bench.ts".length))
const selected = names.length === 0 ? available : names
for (const name of selected) {
  if (!available.includes(name)) {
    console.error(`unknown benchmark "${name}"; available: ${available.join(", ")}`)
    process.exit(2)
  }
  await import(`./${name}.bench.ts`)
}
