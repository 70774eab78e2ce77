/**
 * Event data encoding: MessagePack through msgpackr, plus custom types registered once.
 *
 * Event data is anything msgpackr encodes in plain MessagePack: `null`, booleans,
 * numbers, strings, plain objects, arrays, `Uint8Array`, `Date` (the MessagePack
 * timestamp, ext type -1, to the millisecond), `undefined` (ext 0, see
 * {@link Options.undefinedAsNil}) and every `bigint`, plus instances of classes
 * registered as an {@link Extension}. A codec ({@link make}) writes no msgpackr records,
 * structures or tag extensions, so a client with a plain MessagePack library in any
 * language decodes what it writes; a registered type is a plain ext value (type code +
 * payload bytes), and the same registration serves the wire.
 *
 * Registration is process-wide: msgpackr keeps one extension table per process, so a
 * type is {@link register}ed once, at start-up, and every codec sees it.
 *
 * Numbers and bigints never share a format: an integer number is written in the
 * smallest int format up to 32 bits and as float 64 above (exact up to 2^53); a bigint is
 * int 64 (`0xd3`) from -2^63 to 2^63 - 1, uint 64 (`0xcf`) from 2^63 to 2^64 - 1, and the
 * {@link bigInt} extension (ext type 66) beyond. Decoding gives a bigint for all three,
 * so every bigint round-trips exactly, whatever its size.
 *
 * What is not kept: `-0` becomes `0`; a `Map` is written as a MessagePack map and
 * decodes as a plain object (keys become strings); a `Set` decodes as an array; an
 * `Error` as `[name, message, cause]`; a `RegExp` as `[source, flags]`; other typed
 * arrays as bytes; an instance of an unregistered class as a plain object of its own
 * enumerable properties (or of its `toJSON()`); a hole in an array as `undefined`; a
 * lone UTF-16 surrogate in a string as U+FFFD. Register an extension to keep a class.
 * Functions, symbols, circular references, invalid Dates and objects of more than 65535
 * keys fail with an {@link EncodeError}.
 *
 * Decoding takes exactly one value: malformed or truncated input, or bytes left over
 * after the value, fail with a {@link DecodeError} (with the byte position when known),
 * and input over {@link Options.maxBytes} (default 16 MiB) with {@link PayloadTooLarge}
 * before any decoding. The decoder is msgpackr's: it also accepts msgpackr's own ext
 * types (Set, Error, RegExp, typed arrays, records), which a codec never writes.
 *
 * Cost per value: a registered type with a `"bytes"` payload adds the extension call
 * and its bytes; a `"msgpack"` payload adds a nested encode, for which msgpackr
 * allocates a fresh 8 KiB buffer (a few times slower: prefer `"bytes"` for a type logged
 * at high rates). Decoding reads a `"msgpack"` payload in place.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import { addExtension, Packr, Unpackr } from "msgpackr"
import { DecodeError, EncodeError, InvalidExtension, InvalidOptions, PayloadTooLarge } from "./Errors.ts"

/**
 * The lowest ext type code an application extension may use.
 *
 * @category constants
 */
export const minType = 1

/**
 * The highest ext type code an application extension may use. Codes 1 to 64 are the
 * application's; MessagePack reserves -128 to -1 (-1 is the timestamp), msgpackr uses 0
 * (`undefined`) and, from 65 up, 66 (`B`, bigint), 98 (`b`), 101 (`e`), 105 (`i`),
 * 112 (`p`), 114 (`r`), 115 (`s`), 116 (`t`) and 120 (`x`). Codes 65 to 127 stay
 * reserved for msgpackr and for Cairn.
 *
 * @category constants
 */
export const maxType = 64

/**
 * How an extension's representation becomes the ext payload: `"msgpack"` (the
 * MessagePack encoding of whatever `write` returns; `read` gets it decoded) or
 * `"bytes"` (`write` returns the payload `Uint8Array` itself; `read` gets the payload).
 *
 * @category models
 */
export type Payload = "msgpack" | "bytes"

/**
 * A custom type carried as a MessagePack ext value: instances of `Class` are written
 * as ext type `type` whose payload is made by `write` (see {@link Payload}), and read
 * back by `read`. `R` is the representation `write` returns.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: the representation read back is only as typed as the peer that wrote it
export interface Extension<T, R = any> {
  /** Names the extension in errors and in {@link registered}. */
  readonly name: string
  /** The MessagePack ext type code, from {@link minType} to {@link maxType}. */
  readonly type: number
  /** The class whose instances (subclasses included) this extension writes. */
  readonly Class: Function
  readonly payload: Payload
  /** The value's representation: any encodable value, or the payload bytes for `"bytes"`. */
  write(value: T): R
  /**
   * Builds the value back from its representation. For `"bytes"` the array is a view
   * into the input, valid during the call only: copy it to keep it. A throw is a
   * {@link DecodeError}.
   */
  read(data: R): T
}

/**
 * Any extension, whatever its type.
 *
 * @category models
 */
// biome-ignore lint/suspicious/noExplicitAny: the type is erased on purpose here
export type Any = Extension<any, any>

/**
 * What {@link extension} takes: an {@link Extension} whose `payload` may be left out
 * (default `"msgpack"`), with a constructor as `Class` so that `T` is inferred.
 *
 * @category models
 */
export interface Definition<T, R> {
  readonly name: string
  readonly type: number
  readonly Class: abstract new (...args: never) => T
  /** Default `"msgpack"`. */
  readonly payload?: Payload
  readonly write: (value: T) => R
  readonly read: (data: R) => T
}

const refusedClasses = new Map<Function, string>([
  [Object, "plain objects are always MessagePack maps, and every object is an instance of Object"],
  [Array, "arrays are always MessagePack arrays"],
  [Map, "msgpackr writes a Map as a MessagePack map before it looks at extensions"],
  [Date, "a Date is always the MessagePack timestamp (ext -1)"],
  [Uint8Array, "a Uint8Array is always MessagePack bin"],
  [BigInt, "a bigint is a primitive, never handed to extensions; bigints are built in (ext 66)"],
  [Number, "a number is a primitive, never handed to extensions"],
  [String, "a string is a primitive, never handed to extensions"],
  [Boolean, "a boolean is a primitive, never handed to extensions"],
  [Symbol, "a symbol is a primitive, never handed to extensions"]
])
if (typeof Buffer === "function") refusedClasses.set(Buffer, "a Buffer is always MessagePack bin")

/** Why an extension is invalid on its own, or `undefined`. */
const invalidReason = (ext: Any): string | undefined => {
  if (typeof ext.name !== "string" || ext.name.length === 0) return "name must be a non-empty string"
  if (!Number.isInteger(ext.type) || ext.type < minType || ext.type > maxType) {
    return `type must be an integer from ${minType} to ${maxType} (MessagePack reserves the negative codes, msgpackr uses 0 and codes from 66 up)`
  }
  if (typeof ext.Class !== "function") return "Class must be a constructor"
  const refused = refusedClasses.get(ext.Class)
  if (refused !== undefined) return `class ${ext.Class.name} cannot have an extension: ${refused}`
  if (ext.payload !== "msgpack" && ext.payload !== "bytes") return `payload must be "msgpack" or "bytes"`
  if (typeof ext.write !== "function" || typeof ext.read !== "function") return "write and read must be functions"
  return undefined
}

/**
 * Defines an extension (it still has to be {@link register}ed, or given to
 * {@link make} in `extensions`).
 *
 * Throws {@link InvalidExtension} for a type code outside {@link minType}..{@link maxType},
 * or a class msgpackr never hands to extensions (`Object`, `Array`, `Map`, the
 * primitives) or always writes itself (`Date`, `Uint8Array`): a definition error,
 * found at start-up.
 *
 * @example
 * ```ts
 * import { Serialization } from "cairn"
 *
 * class Money {
 *   readonly currency: string
 *   readonly cents: bigint
 *   constructor(currency: string, cents: bigint) {
 *     this.currency = currency
 *     this.cents = cents
 *   }
 * }
 *
 * // the payload is the MessagePack array [currency, cents]
 * const MoneyExt = Serialization.extension({
 *   name: "money",
 *   type: 1,
 *   Class: Money,
 *   write: (m) => [m.currency, m.cents] as const,
 *   read: ([currency, cents]) => new Money(currency, cents)
 * })
 * Serialization.register(MoneyExt)
 * ```
 *
 * @category constructors
 */
export const extension = <T, R>(definition: Definition<T, R>): Extension<T, R> => {
  const ext: Extension<T, R> = {
    name: definition.name,
    type: definition.type,
    Class: definition.Class,
    payload: definition.payload ?? "msgpack",
    write: definition.write,
    read: definition.read
  }
  const reason = invalidReason(ext)
  if (reason !== undefined) throw new InvalidExtension({ name: String(ext.name), type: Number(ext.type), reason })
  return ext
}

// ---------------------------------------------------------------------------------------
// The built-in bigint extension
// ---------------------------------------------------------------------------------------

/** The payload of a bigint written as ext 66, exactly as msgpackr writes it. */
const bigIntPayload = (n: bigint): Uint8Array => {
  const sign = n < 0n ? -1n : 0n
  const magnitude = n < 0n ? ~n : n
  const bits = magnitude === 0n ? 0 : magnitude.toString(2).length
  // below 2^65536 msgpackr writes whole 64-bit words, above the fewest bytes
  const unit = n >> 65536n === sign ? 8 : 1
  const size = Math.ceil((bits + 1) / (8 * unit)) * unit
  const hex = BigInt.asUintN(size * 8, n)
    .toString(16)
    .padStart(size * 2, "0")
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = Number.parseInt(hex.slice(i * 2, i * 2 + 2), 16)
  return bytes
}

/** A bigint back from its payload: two's complement, big-endian, any length from 1. */
const bigIntFromPayload = (bytes: Uint8Array): bigint => {
  if (bytes.length === 0) throw new Error("an empty payload is not a bigint")
  let hex = ""
  for (let i = 0; i < bytes.length; i++) hex += bytes[i]!.toString(16).padStart(2, "0")
  return BigInt.asIntN(bytes.length * 8, BigInt(`0x${hex}`))
}

/**
 * The built-in bigint extension: ext type 66 (`0x42`, msgpackr's own code), for the
 * bigints that do not fit int 64 or uint 64 (smaller ones are written as those ints).
 *
 * Payload layout: the bigint in two's complement, big-endian (most significant byte
 * first), the sign being the top bit of the first byte. Below 2^65536 in magnitude the
 * length is a multiple of 8: the fewest 64-bit words that hold the value and its sign;
 * above, the fewest bytes. A reader must accept any length from 1. For example
 * `2n ** 64n` is `d8 42 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 00` and
 * `-(2n ** 64n)` is `d8 42 ff ff ff ff ff ff ff ff 00 00 00 00 00 00 00 00`.
 *
 * It is registered from the start. msgpackr writes and reads these itself (a bigint is
 * a primitive, never handed to an extension): this entry holds code 66 and the class
 * `BigInt` so nothing else takes them, and its `write`/`read` are the reference
 * implementation of the payload, for a peer or a tool that handles ext payloads itself.
 *
 * @category constructors
 */
export const bigInt: Extension<bigint, Uint8Array> = {
  name: "bigint",
  type: 0x42,
  Class: BigInt,
  payload: "bytes",
  write: bigIntPayload,
  read: bigIntFromPayload
}

// ---------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------

const byType = new Map<number, Any>([[bigInt.type, bigInt]])
const byClass = new Map<Function, Any>([[bigInt.Class, bigInt]])
const order: Array<Any> = [bigInt]

/** A failure inside an extension's `write` or `read`, with the value being written. */
class ExtensionFailure extends Error {
  readonly value: unknown
  constructor(extension: Any, value: unknown, reason: string) {
    super(`extension "${extension.name}" (type ${extension.type}) ${reason}`)
    this.value = value
  }
}

/** A value msgpackr was about to write that Cairn refuses (a function, an invalid Date). */
class Unencodable extends Error {}

const messageOf = (u: unknown): string => (u instanceof Error ? u.message : String(u))

const writeWith = (ext: Any, value: unknown): unknown => {
  try {
    return ext.write(value)
  } catch (cause) {
    throw cause instanceof ExtensionFailure
      ? cause
      : new ExtensionFailure(ext, value, `failed to write: ${messageOf(cause)}`)
  }
}

const readWith = (ext: Any, data: unknown): unknown => {
  try {
    return ext.read(data)
  } catch (cause) {
    throw cause instanceof ExtensionFailure
      ? cause
      : new ExtensionFailure(ext, undefined, `failed to read: ${messageOf(cause)}`)
  }
}

/**
 * The input of the top-level decode in progress. An ext payload that is a view into it
 * is read in place through msgpackr's `readNested` (its position in the input is known);
 * otherwise msgpackr's nested `unpack` is used, which copies the whole input first.
 */
let activeSource: Uint8Array | undefined

/**
 * Reads a payload that is not a view into the active input (msgpackr called directly,
 * or after a decode nested in an extension's `read`, which leaves msgpackr on a copy).
 */
const nestedDecoder = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  int64AsType: "bigint",
  copyBuffers: true
})

/** The one MessagePack value a 1-byte payload can hold. */
const oneByteValue = (b: number): unknown => {
  if (b < 0x80) return b
  if (b >= 0xe0) return b - 0x100
  switch (b) {
    case 0xc0:
      return null
    case 0xc2:
      return false
    case 0xc3:
      return true
    case 0xa0:
      return ""
    case 0x90:
      return []
    case 0x80:
      return {}
  }
  throw new Error(`the 1-byte payload 0x${b.toString(16)} is not one MessagePack value`)
}

const payloadValue = (data: Uint8Array, readNested: ((position: number) => unknown) | undefined): unknown => {
  if (data.length === 1) return oneByteValue(data[0]!)
  const source = activeSource
  if (typeof readNested === "function" && source !== undefined && data.buffer === source.buffer) {
    // in place, no copy; a malformed payload may read past its end, but msgpackr goes on
    // after the payload whatever was read
    return readNested(data.byteOffset - source.byteOffset)
  }
  return nestedDecoder.unpack(data)
}

/** The msgpackr extension that carries `ext`; its functions are made once, here. */
const toMsgpackr = (ext: Any) =>
  ext.payload === "bytes"
    ? {
        Class: ext.Class,
        type: ext.type,
        pack(value: unknown): Uint8Array {
          const bytes = writeWith(ext, value)
          if (!(bytes instanceof Uint8Array)) {
            throw new ExtensionFailure(ext, value, "must write a Uint8Array (its payload is bytes)")
          }
          return bytes
        },
        unpack(data: Uint8Array): unknown {
          return readWith(ext, data)
        }
      }
    : {
        Class: ext.Class,
        type: ext.type,
        pack(this: Packr, value: unknown): Uint8Array {
          const representation = writeWith(ext, value)
          try {
            // a nested encode: msgpackr saves its state and encodes into a fresh buffer
            return this.pack(representation)
          } catch (cause) {
            throw cause instanceof ExtensionFailure
              ? cause
              : new ExtensionFailure(ext, value, `wrote a value that cannot be encoded: ${messageOf(cause)}`)
          }
        },
        unpack(data: Uint8Array, readNested?: (position: number) => unknown): unknown {
          let representation: unknown
          try {
            representation = payloadValue(data, readNested)
          } catch (cause) {
            throw new ExtensionFailure(
              ext,
              undefined,
              `has a payload that is not one MessagePack value: ${messageOf(cause)}`
            )
          }
          return readWith(ext, representation)
        }
      }

const className = (c: Function): string => (c.name === "" ? "(anonymous class)" : c.name)

/**
 * Registers an extension, once, process-wide (msgpackr's extension table is global):
 * every codec, made before or after, writes and reads the type from then on.
 * Registering the same extension object again does nothing.
 *
 * Throws {@link InvalidExtension} when the extension is invalid, when another one holds
 * its type code or its class, or when its class is a base class of a registered one
 * (msgpackr tries the latest registration first, so a base class registered later
 * would take its subclasses' instances: register base classes first).
 *
 * *Gotchas*: register at start-up, before any data holding the type is decoded (an
 * unregistered ext type fails to decode). Each registered class adds an `instanceof`
 * test to the encoding of every object that is not a plain object, array or Map.
 *
 * @category registry
 */
export const register = (ext: Any): void => {
  if (byType.get(ext.type) === ext) return
  const fail = (reason: string): never => {
    throw new InvalidExtension({ name: String(ext.name), type: Number(ext.type), reason })
  }
  const reason = invalidReason(ext)
  if (reason !== undefined) fail(reason)
  const typeHolder = byType.get(ext.type)
  if (typeHolder !== undefined) fail(`type ${ext.type} is already held by extension "${typeHolder.name}"`)
  const classHolder = byClass.get(ext.Class)
  if (classHolder !== undefined) {
    fail(`class ${className(ext.Class)} is already held by extension "${classHolder.name}" (type ${classHolder.type})`)
  }
  for (const other of order) {
    if (other.Class.prototype instanceof ext.Class) {
      fail(
        `class ${className(ext.Class)} is a base class of ${className(other.Class)}, held by extension "${other.name}" (type ${other.type}): register base classes first`
      )
    }
  }
  addExtension(toMsgpackr(ext))
  byType.set(ext.type, ext)
  byClass.set(ext.Class, ext)
  order.push(ext)
}

/**
 * The registered extensions, in registration order, the built-in {@link bigInt} first.
 *
 * @category registry
 */
export const registered = (): ReadonlyArray<Any> => order.slice()

// ---------------------------------------------------------------------------------------
// Codec
// ---------------------------------------------------------------------------------------

/**
 * Options of a codec; every one has a default.
 *
 * @category models
 */
export interface Options {
  /**
   * Largest input `decode` accepts, in bytes; a larger one fails with
   * {@link PayloadTooLarge} before any decoding. Default `16_777_216` (16 MiB).
   */
  readonly maxBytes: number
  /**
   * Write `undefined` as nil, so it decodes as `null`. Default `false`: `undefined` is
   * ext type 0 with one zero byte (`d4 00 00`), which msgpackr (and notepack) decode as
   * `undefined`; another MessagePack library sees an unknown ext value.
   */
  readonly undefinedAsNil: boolean
  /** Extensions to {@link register} when the codec is made. Default none. */
  readonly extensions: ReadonlyArray<Any>
}

/**
 * The default {@link Options}.
 *
 * @category constructors
 */
export const defaults: Options = {
  maxBytes: 16 * 1024 * 1024,
  undefinedAsNil: false,
  extensions: []
}

/**
 * Encodes values to MessagePack bytes and decodes them back; made by {@link make}.
 *
 * @category models
 */
export interface Codec {
  readonly options: Options
  /**
   * Encodes a value, or throws an {@link EncodeError}. The bytes are a view into a
   * buffer msgpackr shares between encodes: they never change, but they keep that
   * buffer (8 KiB or more) alive; `slice()` them to keep a small result for long.
   */
  readonly encodeUnsafe: (value: unknown) => Uint8Array
  /**
   * Decodes exactly one value from the bytes, or throws {@link PayloadTooLarge} (checked
   * first) or a {@link DecodeError}. Binary values decode as plain `Uint8Array` copies.
   */
  readonly decodeUnsafe: (bytes: Uint8Array) => unknown
  /** Encodes a value; fails with an {@link EncodeError}. */
  readonly encode: (value: unknown) => Effect.Effect<Uint8Array, EncodeError>
  /** Decodes exactly one value; fails with {@link PayloadTooLarge} or a {@link DecodeError}. */
  readonly decode: (bytes: Uint8Array) => Effect.Effect<unknown, DecodeError | PayloadTooLarge>
}

const rejectFunction = (): never => {
  throw new Unencodable("a function cannot be encoded")
}

const rejectInvalidDate = (): never => {
  throw new Unencodable("an invalid Date cannot be encoded")
}

/** What the top-level decode read: set by {@link takeFirst}, read right after. */
let taken: unknown
let takenEnd = 0
/** Nesting of decodes (an extension's `read` may decode): only the outermost reads with `unpackMultiple`. */
let decodeDepth = 0

const takeFirst = (value: unknown, _start?: number, end?: number): boolean => {
  taken = value
  takenEnd = end ?? 0
  return false
}

/**
 * Makes a codec. Throws {@link InvalidOptions} for a `maxBytes` that is not a positive
 * integer, and {@link InvalidExtension} for an extension that cannot be registered.
 *
 * A codec owns one msgpackr `Packr` in plain mode: no records or structures
 * (`useRecords: false`), no msgpackr tag extensions (`moreTypes: false`), no
 * structured-clone references, bigints beyond 64 bits as the {@link bigInt}
 * extension, int 64 and uint 64 read as bigints, binary values read as copies.
 *
 * @example
 * ```ts
 * import { Serialization } from "cairn"
 *
 * const codec = Serialization.make()
 * const bytes = codec.encodeUnsafe({ step: 3, loss: 0.25, at: new Date(), tokens: 2n ** 70n })
 * const data = codec.decodeUnsafe(bytes)
 * ```
 *
 * @category constructors
 */
export const make = (options: Partial<Options> = {}): Codec => {
  const resolved: Options = {
    maxBytes: options.maxBytes ?? defaults.maxBytes,
    undefinedAsNil: options.undefinedAsNil ?? defaults.undefinedAsNil,
    extensions: options.extensions ?? defaults.extensions
  }
  const maxBytes = resolved.maxBytes
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new InvalidOptions({ subject: "Serialization codec", reason: "maxBytes must be a positive integer" })
  }
  for (const ext of resolved.extensions) register(ext)
  const packr = new Packr({
    useRecords: false,
    mapsAsObjects: true,
    moreTypes: false,
    structuredClone: false,
    useBigIntExtension: true,
    int64AsType: "bigint",
    copyBuffers: true,
    encodeUndefinedAsNil: resolved.undefinedAsNil,
    writeFunction: rejectFunction,
    onInvalidDate: rejectInvalidDate
  })

  const encodeUnsafe = (value: unknown): Uint8Array => {
    try {
      return packr.pack(value)
    } catch (cause) {
      throw encodeError(value, cause)
    }
  }

  const decodeUnsafe = (bytes: Uint8Array): unknown => {
    if (!(bytes instanceof Uint8Array)) {
      throw new DecodeError({ size: 0, incomplete: false, reason: "the input is not a Uint8Array" })
    }
    const size = bytes.byteLength
    if (size > maxBytes) throw new PayloadTooLarge({ size, maxBytes })
    if (size === 0) throw new DecodeError({ size, position: 0, incomplete: true, reason: "the input is empty" })
    // a plain Uint8Array view, so that binary values decode as Uint8Array even from a Buffer
    const input = bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, size)
    const previousSource = activeSource
    activeSource = input
    decodeDepth++
    try {
      if (decodeDepth > 1) {
        // msgpackr's unpackMultiple is not re-entrant, its plain unpack is (nested in the
        // outer unpackMultiple, it does not report bytes left over)
        return packr.unpack(input)
      }
      packr.unpackMultiple(input, takeFirst)
    } catch (cause) {
      throw decodeError(size, cause)
    } finally {
      decodeDepth--
      activeSource = previousSource
    }
    const value = taken
    taken = undefined
    if (takenEnd !== size) {
      throw new DecodeError({
        size,
        position: takenEnd,
        incomplete: false,
        reason:
          size - takenEnd === 1
            ? "1 byte is left over after the value"
            : `${size - takenEnd} bytes are left over after the value`
      })
    }
    return value
  }

  return {
    options: resolved,
    encodeUnsafe,
    decodeUnsafe,
    encode: (value) => Effect.try({ try: () => packr.pack(value), catch: (cause) => encodeError(value, cause) }),
    decode: (bytes) => Effect.try({ try: () => decodeUnsafe(bytes), catch: asDecodeFailure })
  }
}

const asDecodeFailure = (cause: unknown): DecodeError | PayloadTooLarge =>
  cause instanceof DecodeError || cause instanceof PayloadTooLarge
    ? cause
    : new DecodeError({ size: 0, incomplete: false, reason: messageOf(cause) })

const decodeError = (size: number, cause: unknown): DecodeError | PayloadTooLarge => {
  // a decode nested in an extension's read already made its error
  if (cause instanceof DecodeError || cause instanceof PayloadTooLarge) return cause
  if (cause instanceof ExtensionFailure) return new DecodeError({ size, incomplete: false, reason: cause.message })
  const facts = (typeof cause === "object" && cause !== null ? cause : {}) as {
    readonly incomplete?: unknown
    readonly missingBytes?: unknown
  }
  if (facts.incomplete === true) {
    const missing = typeof facts.missingBytes === "number" ? ` (at least ${facts.missingBytes} more needed)` : ""
    return new DecodeError({
      size,
      position: size,
      incomplete: true,
      reason: `the input ends in the middle of a value${missing}`
    })
  }
  return new DecodeError({ size, incomplete: false, reason: messageOf(cause) })
}

// ---------------------------------------------------------------------------------------
// Where an encode failed (the error path only)
// ---------------------------------------------------------------------------------------

type Path = Array<string | number>
interface Found {
  readonly path: Path
  readonly reason: string | undefined
}

const isRegisteredInstance = (v: object): boolean => {
  for (let i = 0; i < order.length; i++) if (v instanceof order[i]!.Class) return true
  return false
}

/**
 * The first thing in `root` msgpackr cannot encode, in the order it writes: `target`
 * (by identity; reason left to the caller), a function, a symbol, an invalid Date, a
 * circular reference, an object with more keys than msgpackr writes.
 */
const locate = (root: unknown, target: unknown): Found | undefined => {
  const ancestors = new Set<object>()
  const path: Path = []
  const visit = (v: unknown): Found | undefined => {
    if (target !== undefined && v === target) return { path: path.slice(), reason: undefined }
    if (typeof v === "function") return { path: path.slice(), reason: "a function cannot be encoded" }
    if (typeof v === "symbol") return { path: path.slice(), reason: "a symbol cannot be encoded" }
    if (typeof v !== "object" || v === null) return undefined
    if (v instanceof Date) {
      return Number.isNaN(v.getTime()) ? { path: path.slice(), reason: "an invalid Date cannot be encoded" } : undefined
    }
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || isRegisteredInstance(v)) return undefined
    if (ancestors.has(v)) return { path: path.slice(), reason: "a circular reference cannot be encoded" }
    ancestors.add(v)
    const child = (key: string | number, value: unknown): Found | undefined => {
      path.push(key)
      const found = visit(value)
      path.pop()
      return found
    }
    let found: Found | undefined
    if (Array.isArray(v) || v instanceof Set) {
      let i = 0
      for (const item of v) {
        found = child(i++, item)
        if (found !== undefined) break
      }
    } else if (v instanceof Map) {
      for (const [k, item] of v) {
        found = child(typeof k === "number" ? k : String(k), item)
        if (found !== undefined) break
      }
    } else {
      const keys = Object.keys(v)
      if (keys.length > 0xffff) {
        found = { path: path.slice(), reason: "an object with more than 65535 keys cannot be encoded" }
      }
      for (let i = 0; found === undefined && i < keys.length; i++) {
        found = child(keys[i]!, (v as Record<string, unknown>)[keys[i]!])
      }
    }
    ancestors.delete(v)
    return found
  }
  return visit(root)
}

const encodeError = (root: unknown, cause: unknown): EncodeError => {
  const failure = cause instanceof ExtensionFailure ? cause : undefined
  let found: Found | undefined
  try {
    found = locate(root, failure?.value)
  } catch {
    found = undefined // too deep to walk, or a getter threw: report without a path
  }
  const reason = failure !== undefined ? failure.message : (found?.reason ?? messageOf(cause))
  return new EncodeError({ path: found?.path ?? [], reason })
}
