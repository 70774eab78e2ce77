/**
 * The fast decoder of plain struct schemas against Effect's own decoder: whatever the
 * fast one accepts, Effect's accepts with the same output (keys and their order
 * included); schemas it cannot follow get no plan.
 */
import { assert, describe, it } from "@effect/vitest"
import { Exit, Schema } from "effect"
import fc from "fast-check"
import { decodePlain, planOf } from "../src/internal/plainStruct.ts"

type Field = {
  readonly kind: "string" | "number" | "boolean" | "literal"
  readonly literal: string | number | boolean
  readonly optional: boolean
}

const fieldSchema = (f: Field): Schema.Top => {
  const base =
    f.kind === "string"
      ? Schema.String
      : f.kind === "number"
        ? Schema.Number
        : f.kind === "boolean"
          ? Schema.Boolean
          : Schema.Literal(f.literal)
  return f.optional ? Schema.optionalKey(base) : base
}

const KEYS = ["a", "b", "step", "constructor", "toString", "x y", "0", "ü"]
const aField = fc.record({
  kind: fc.constantFrom("string", "number", "boolean", "literal") as fc.Arbitrary<Field["kind"]>,
  literal: fc.oneof(fc.constantFrom("on", ""), fc.integer({ min: -2, max: 2 }), fc.boolean()),
  optional: fc.boolean()
})
const aStruct = fc.uniqueArray(fc.tuple(fc.constantFrom(...KEYS), aField), {
  selector: ([k]) => k,
  minLength: 1,
  maxLength: 5
})
const aValue = fc.oneof(
  fc.string({ maxLength: 3 }),
  fc.double(),
  fc.integer({ min: -2, max: 2 }),
  fc.boolean(),
  fc.constantFrom(null, undefined, "on", "", Number.NaN, Number.POSITIVE_INFINITY),
  fc.constant([1]),
  fc.constant({ nested: 1 })
)
const anInput = fc.oneof(
  { weight: 8, arbitrary: fc.dictionary(fc.constantFrom(...KEYS, "extra"), aValue, { maxKeys: 7 }) },
  { weight: 1, arbitrary: fc.constantFrom(null, undefined, 1, "s", [], [1, 2], new Date(0)) },
  // a declared key inherited from a prototype
  {
    weight: 1,
    arbitrary: fc
      .dictionary(fc.constantFrom(...KEYS), aValue)
      .map((d) => Object.create({ a: "inherited", b: 1 }, Object.getOwnPropertyDescriptors(d)))
  }
)

/** Inputs that mostly fit the fields: a right value for each, sometimes a wrong one or none. */
const fitting = (fields: ReadonlyArray<readonly [string, Field]>) =>
  fc
    .tuple(
      ...fields.map(([, f]) =>
        fc.oneof(
          {
            weight: 6,
            arbitrary:
              f.kind === "string"
                ? fc.string({ maxLength: 3 })
                : f.kind === "number"
                  ? fc.double()
                  : f.kind === "boolean"
                    ? fc.boolean()
                    : fc.constant(f.literal)
          },
          { weight: 1, arbitrary: aValue },
          { weight: 1, arbitrary: fc.constant(ABSENT) }
        )
      ),
      fc.dictionary(fc.constantFrom("extra", "more"), aValue, { maxKeys: 2 })
    )
    .map(([...parts]) => {
      const extra = parts.pop() as Record<string, unknown>
      const input: Record<string, unknown> = { ...extra }
      parts.forEach((v, i) => {
        if (v !== ABSENT) input[fields[i]![0]] = v
      })
      return input
    })
const ABSENT = Symbol("absent")

describe("plain struct decoding", () => {
  it("accepts only what Effect's decoder accepts, with the same output", () => {
    let accepted = 0
    fc.assert(
      fc.property(
        aStruct.chain((fields) =>
          fc.tuple(fc.constant(fields), fc.array(fc.oneof(anInput, fitting(fields)), { minLength: 1, maxLength: 20 }))
        ),
        ([fields, inputs]) => {
          const schema = Schema.Struct(Object.fromEntries(fields.map(([k, f]) => [k, fieldSchema(f)])))
          const plan = planOf(schema.ast)
          assert.isDefined(plan, "a plain struct gets a plan")
          const effect = Schema.decodeUnknownExit(schema as unknown as Schema.Codec<unknown, unknown>)
          for (const input of inputs) {
            const fast = plan!.decode(input)
            // the interpreted plan and the compiled one agree
            assert.deepStrictEqual(decodePlain(plan!, input), fast)
            const exit = effect(input)
            if (fast === undefined) continue
            accepted++
            assert.isTrue(Exit.isSuccess(exit), `fast accepted ${JSON.stringify(input)}, Effect refused it`)
            const expected = Exit.isSuccess(exit) ? exit.value : undefined
            assert.deepStrictEqual(fast, expected)
            assert.deepStrictEqual(Object.keys(fast), Object.keys(expected as object), "key order")
          }
        }
      ),
      { numRuns: 500 }
    )
    // about a thousand in a run; far fewer would mean the comparison above hardly ran
    assert.isAbove(accepted, 200, "the fast path was hardly taken")
  })

  it("takes the fast path for valid data (so the test above compares something)", () => {
    const schema = Schema.Struct({ step: Schema.Number, tag: Schema.String, ok: Schema.optionalKey(Schema.Boolean) })
    const plan = planOf(schema.ast)!
    assert.deepStrictEqual(decodePlain(plan, { tag: "t", step: 1, extra: 2 }), { step: 1, tag: "t" })
    assert.deepStrictEqual(decodePlain(plan, { step: Number.NaN, tag: "", ok: false }), {
      step: Number.NaN,
      tag: "",
      ok: false
    })
    assert.isUndefined(decodePlain(plan, { step: 1, tag: "t", ok: undefined }))
    assert.isUndefined(decodePlain(plan, { step: "1", tag: "t" }))
    assert.isUndefined(decodePlain(plan, { tag: "t" }))
  })

  it("gives no plan to schemas with checks, transformations, index signatures or nesting", () => {
    const none = [
      Schema.Struct({ n: Schema.Number.check(Schema.isInt()) }),
      Schema.Struct({ n: Schema.Finite }),
      Schema.Struct({ at: Schema.DateFromString }),
      Schema.Struct({ nested: Schema.Struct({ a: Schema.String }) }),
      Schema.Struct({ n: Schema.Number }).check(Schema.makeFilter(() => true)),
      Schema.Record(Schema.String, Schema.Number),
      Schema.StructWithRest(Schema.Struct({ a: Schema.String }), [Schema.Record(Schema.String, Schema.String)]),
      Schema.Struct({ big: Schema.Literal(1n) }),
      Schema.Array(Schema.String),
      Schema.Struct({}),
      Schema.String
    ]
    for (const schema of none) assert.isUndefined(planOf(schema.ast), String(schema.ast._tag))
  })
})
