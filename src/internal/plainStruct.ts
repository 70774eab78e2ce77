/**
 * A fast decoder for the most common event schema: a struct of strings, numbers,
 * booleans and literals (each required or `optionalKey`), with no checks,
 * transformations or index signatures.
 *
 * Such a schema's decoding is a few `typeof` tests and a copy of the declared keys in
 * their declared order (undeclared keys are left out), which this module does without
 * the generic parser's per-property machinery: about 30 ns an event instead of about
 * 230. It only ever *accepts*: an input it is not sure of (a missing key, a value of
 * another type, an explicit `undefined` for an optional key…) is left to the schema's
 * own decoder, which gives the same answer or the detailed error. The test suite
 * checks it against Effect's decoder on random schemas and inputs.
 */
import type { SchemaAST } from "effect"

/** What a property must hold. 0: string, 1: number (any, NaN included, as `Schema.Number`), 2: boolean, 3: a literal. */
type Kind = 0 | 1 | 2 | 3

/**
 * The plan of a plain struct: its keys in declared order, what each must hold, and
 * whether it may be absent.
 */
export interface Plan {
  readonly keys: ReadonlyArray<string>
  readonly kinds: ReadonlyArray<Kind>
  /** For a literal property, its value; `undefined` otherwise. */
  readonly literals: ReadonlyArray<unknown>
  readonly optional: ReadonlyArray<boolean>
  /** The plan compiled (see {@link compile}). */
  readonly decode: Decode
}

const kindOf = (ast: SchemaAST.AST): { kind: Kind; literal: unknown } | undefined => {
  if (ast.checks !== undefined || ast.encoding !== undefined) return undefined
  switch (ast._tag) {
    case "String":
      return { kind: 0, literal: undefined }
    case "Number":
      return { kind: 1, literal: undefined }
    case "Boolean":
      return { kind: 2, literal: undefined }
    case "Literal": {
      const literal = (ast as SchemaAST.Literal).literal
      // bigint literals decode from bigints only; left to the schema
      return typeof literal === "bigint" ? undefined : { kind: 3, literal }
    }
    default:
      return undefined
  }
}

/** The plan of a schema's AST, or `undefined` when it is not a plain struct. */
export const planOf = (ast: SchemaAST.AST): Plan | undefined => {
  if (ast._tag !== "Objects") return undefined
  const objects = ast as SchemaAST.Objects
  if (objects.checks !== undefined || objects.encoding !== undefined || objects.indexSignatures.length > 0) {
    return undefined
  }
  // an empty struct decodes to its input itself: nothing to gain
  if (objects.encodingChecks !== undefined || objects.propertySignatures.length === 0) return undefined
  const keys: Array<string> = []
  const kinds: Array<Kind> = []
  const literals: Array<unknown> = []
  const optional: Array<boolean> = []
  for (const p of objects.propertySignatures) {
    if (typeof p.name !== "string" || p.name === "__proto__") return undefined
    const type = p.type
    const context = type.context
    if (context !== undefined && context.constructorDefault !== undefined && !context.isOptional) {
      // a constructor default does not change decoding, but stay on the safe side
      return undefined
    }
    const k = kindOf(type)
    if (k === undefined) return undefined
    keys.push(p.name)
    kinds.push(k.kind)
    literals.push(k.literal)
    optional.push(context?.isOptional === true)
  }
  const plan = { keys, kinds, literals, optional, decode: undefined as unknown as Decode }
  plan.decode = compile(plan)
  return plan
}

/** A plan's decoder: the decoded object, or `undefined` to use the schema's decoder. */
export type Decode = (input: unknown) => object | undefined

/**
 * The plan as a function of its own, with each key written in as a constant, so that
 * every property read and write has a site of its own that V8 keeps monomorphic (a
 * loop over the keys makes them megamorphic: about 4 times slower). Keys enter the
 * source only through `JSON.stringify`. Where code cannot be generated (a content
 * security policy), the plan is interpreted by {@link decodePlain}.
 */
export const compile = (plan: Omit<Plan, "decode">): Decode => {
  const lines = ['if (typeof r !== "object" || r === null || Array.isArray(r)) return undefined', "const o = {}"]
  for (let i = 0; i < plan.keys.length; i++) {
    const key = JSON.stringify(plan.keys[i])
    const kind = plan.kinds[i]!
    const test =
      kind === 0
        ? `typeof v${i} === "string"`
        : kind === 1
          ? `typeof v${i} === "number"`
          : kind === 2
            ? `typeof v${i} === "boolean"`
            : `v${i} === literals[${i}]`
    lines.push(`const v${i} = r[${key}]`)
    if (plan.optional[i]) {
      // absent: skipped; present (even as undefined): must hold the type
      lines.push(`if (${test}) o[${key}] = v${i}`, `else if (${key} in r) return undefined`)
    } else {
      // a value of the right type implies the key is there
      lines.push(`if (!(${test})) return undefined`, `o[${key}] = v${i}`)
    }
  }
  lines.push("return o")
  try {
    const make = new Function("literals", `return function decodePlainStruct(r) {\n${lines.join("\n")}\n}`)
    return make(plan.literals) as Decode
  } catch {
    return (input) => decodePlain(plan, input)
  }
}

/**
 * Decodes `input` by the plan: the decoded object, or `undefined` when the input
 * must go to the schema's decoder (it may still be valid).
 */
export const decodePlain = (plan: Omit<Plan, "decode">, input: unknown): object | undefined => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return undefined
  const record = input as Record<string, unknown>
  const keys = plan.keys
  const kinds = plan.kinds
  const out: Record<string, unknown> = {}
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (!(key in record)) {
      if (plan.optional[i]) continue
      return undefined
    }
    const value = record[key]
    if (!holds(kinds[i]!, plan.literals[i], value)) return undefined
    out[key] = value
  }
  return out
}

/** Whether a value is what a property of this kind holds. */
export const holds = (kind: Kind, literal: unknown, value: unknown): boolean => {
  switch (kind) {
    case 0:
      return typeof value === "string"
    case 1:
      return typeof value === "number"
    case 2:
      return typeof value === "boolean"
    default:
      return value === literal
  }
}
