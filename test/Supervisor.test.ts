import { assert, describe, it } from "@effect/vitest"
import { Cause, Schedule } from "effect"
import { Errors, EventType, Handler, Supervisor } from "../src/index.ts"

/** A deterministic backoff: 100, 200, 400, 800… ms (no jitter). */
const exponential = () => Schedule.exponential("100 millis", 2)

const failure = (message: string) => Cause.fail(new Error(message))

/** Asserts a decision is a Restart and returns its delay. */
const restartDelay = (decision: Supervisor.Decision): number => {
  assert.strictEqual(decision._tag, "Restart", JSON.stringify(decision))
  return (decision as { readonly delayMs: number }).delayMs
}

/** Asserts a decision is a Stop and returns its escalated data. */
const escalated = (decision: Supervisor.Decision): Supervisor.EscalatedData => {
  assert.strictEqual(decision._tag, "Stop", JSON.stringify(decision))
  return (decision as { readonly escalated: Supervisor.EscalatedData }).escalated
}

/** Runs `f`, which must throw an InvalidOptions, and returns the error. */
const invalidOptions = (f: () => unknown): Errors.InvalidOptions => {
  try {
    f()
  } catch (e) {
    assert.instanceOf(e, Errors.InvalidOptions)
    return e as Errors.InvalidOptions
  }
  return assert.fail("expected InvalidOptions")
}

describe("Supervisor defaults", () => {
  it("the exported defaults are the documented ones", () => {
    assert.strictEqual(Supervisor.defaults.strategy, "resume")
    assert.strictEqual(Supervisor.defaults.maxRestarts, 3)
    assert.strictEqual(Supervisor.defaults.windowMs, 5_000)
    assert.strictEqual(Supervisor.defaults.backoff, Supervisor.defaultBackoff)
  })

  it("a child with no options takes them", () => {
    const child = new Supervisor.Child("app.T@1/h")
    assert.strictEqual(child.name, "app.T@1/h")
    assert.strictEqual(child.strategy, "resume")
    assert.strictEqual(child.maxRestarts, 3)
    assert.strictEqual(child.windowMs, 5_000)
    assert.strictEqual(child.restarts, 0)
    assert.strictEqual(child.failures, 0)
    assert.isUndefined(child.stopped)
  })

  it("the default backoff is exponential from 100 ms, factor 2, jittered by 0.8 to 1.2", () => {
    // restart with every other option left to its default: 3 restarts in the window, then a stop
    const child = new Supervisor.Child("c", { strategy: "restart" })
    const delays = [0, 1, 2].map((t) => restartDelay(child.decide(t, failure("x"))))
    const bounds = [
      [80, 120],
      [160, 240],
      [320, 480]
    ] as const
    delays.forEach((d, i) => {
      assert.isAtLeast(d, bounds[i]![0], `delay ${i}: ${d}`)
      assert.isAtMost(d, bounds[i]![1], `delay ${i}: ${d}`)
    })
    assert.strictEqual(escalated(child.decide(3, failure("x"))).reason, "intensity")
  })
})

describe("Supervisor resume", () => {
  it("always resumes, counting failures, never restarting or stopping", () => {
    const child = new Supervisor.Child("c", { strategy: "resume", maxRestarts: 0, windowMs: 1 })
    for (let i = 0; i < 10; i++) assert.deepStrictEqual(child.decide(i, failure(`f${i}`)), { _tag: "Resume" })
    assert.strictEqual(child.failures, 10)
    assert.strictEqual(child.restarts, 0)
    assert.isUndefined(child.stopped)
  })
})

describe("Supervisor stop", () => {
  it("the first failure stops, with the escalated data of the child", () => {
    const child = new Supervisor.Child("app.T@1/audit", { strategy: "stop", maxRestarts: 7, windowMs: 1_234 })
    const cause = failure("disk on fire")
    const data = escalated(child.decide(50, cause))
    assert.include(data.cause, "disk on fire")
    assert.strictEqual(data.cause, Cause.pretty(cause))
    assert.deepStrictEqual(data, {
      child: "app.T@1/audit",
      reason: "strategy",
      cause: data.cause,
      restarts: 0,
      maxRestarts: 7,
      windowMs: 1_234
    })
    assert.strictEqual(child.stopped, cause)
    assert.strictEqual(child.failures, 1)
    assert.strictEqual(child.restarts, 0)
  })

  it("a stopped child stays stopped: later decisions are Stop, the stopping cause is kept", () => {
    const child = new Supervisor.Child("c", { strategy: "stop" })
    const first = failure("first")
    escalated(child.decide(0, first))
    const later = escalated(child.decide(10_000_000, failure("second")))
    assert.strictEqual(later.reason, "strategy")
    assert.include(later.cause, "second", "the escalated data describes the failure decided on")
    assert.strictEqual(child.stopped, first, "stopped keeps the cause that stopped it")
    assert.strictEqual(child.failures, 2)
  })
})

describe("Supervisor restart", () => {
  it("restarts with the backoff's delays, then the (maxRestarts+1)-th failure in the window stops", () => {
    const child = new Supervisor.Child("app.T@1/h", {
      strategy: "restart",
      maxRestarts: 3,
      windowMs: 1_000,
      backoff: exponential()
    })
    assert.deepStrictEqual(
      [0, 10, 20].map((t) => restartDelay(child.decide(t, failure(`f${t}`)))),
      [100, 200, 400]
    )
    assert.strictEqual(child.restarts, 3)
    assert.isUndefined(child.stopped)
    const last = failure("one too many")
    const data = escalated(child.decide(999, last))
    assert.deepStrictEqual(data, {
      child: "app.T@1/h",
      reason: "intensity",
      cause: Cause.pretty(last),
      restarts: 3,
      maxRestarts: 3,
      windowMs: 1_000
    })
    assert.include(data.cause, "one too many")
    assert.strictEqual(child.stopped, last)
    assert.strictEqual(child.restarts, 3, "the stopping failure is not a restart")
    assert.strictEqual(child.failures, 4)
    // and it stays stopped, even long after
    escalated(child.decide(1_000_000, failure("later")))
  })

  it("a restart leaves the window exactly windowMs after it", () => {
    const inside = new Supervisor.Child("c", { strategy: "restart", maxRestarts: 1, windowMs: 1_000 })
    restartDelay(inside.decide(0, failure("a")))
    assert.strictEqual(escalated(inside.decide(999, failure("b"))).reason, "intensity")

    const outside = new Supervisor.Child("c", { strategy: "restart", maxRestarts: 1, windowMs: 1_000 })
    restartDelay(outside.decide(0, failure("a")))
    restartDelay(outside.decide(1_000, failure("b")))
    assert.strictEqual(outside.restarts, 2)
    assert.isUndefined(outside.stopped)
  })

  it("failures spread wider than the window never escalate: old restarts slide out", () => {
    const child = new Supervisor.Child("c", {
      strategy: "restart",
      maxRestarts: 2,
      windowMs: 1_000,
      backoff: Schedule.spaced("10 millis")
    })
    // every 600 ms: at most 2 restarts in any 1 000 ms window, 50 restarts in all
    for (let i = 0; i < 50; i++) restartDelay(child.decide(i * 600, failure(`f${i}`)))
    assert.strictEqual(child.restarts, 50)
    assert.strictEqual(child.failures, 50)
    assert.isUndefined(child.stopped)
    // a third failure within the window (restarts at 28 800 and 29 400) does escalate
    const data = escalated(child.decide(29_500, failure("x")))
    assert.strictEqual(data.reason, "intensity")
    assert.strictEqual(data.restarts, 2)
  })

  it("after a quiet window the backoff starts over from its first delay", () => {
    const child = new Supervisor.Child("c", {
      strategy: "restart",
      maxRestarts: 5,
      windowMs: 1_000,
      backoff: exponential()
    })
    assert.deepStrictEqual(
      [0, 10, 20].map((t) => restartDelay(child.decide(t, failure("a")))),
      [100, 200, 400]
    )
    // 1 020 ms after the last restart the window is empty: 100 again, then on from there
    assert.deepStrictEqual(
      [1_020, 1_030].map((t) => restartDelay(child.decide(t, failure("b")))),
      [100, 200]
    )
    // one restart still in the window: the backoff goes on (no reset)
    assert.strictEqual(restartDelay(child.decide(2_025, failure("c"))), 400)
    assert.strictEqual(child.restarts, 6)
  })

  it("a finished backoff schedule keeps its last delay", () => {
    const child = new Supervisor.Child("c", {
      strategy: "restart",
      maxRestarts: 10,
      windowMs: 1_000,
      backoff: exponential().pipe(Schedule.upTo({ times: 2 }))
    })
    assert.deepStrictEqual(
      [0, 1, 2, 3].map((t) => restartDelay(child.decide(t, failure("a")))),
      [100, 200, 200, 200]
    )
  })

  it("maxRestarts 0: the first failure stops", () => {
    const child = new Supervisor.Child("c", { strategy: "restart", maxRestarts: 0, backoff: exponential() })
    const cause = failure("at once")
    const data = escalated(child.decide(0, cause))
    assert.strictEqual(data.reason, "intensity")
    assert.strictEqual(data.restarts, 0)
    assert.strictEqual(data.maxRestarts, 0)
    assert.strictEqual(data.windowMs, 5_000)
    assert.strictEqual(child.restarts, 0)
    assert.strictEqual(child.stopped, cause)
  })

  // a second Stop (two runs of one lane failing together) reports the first stop's reason
  it("a decision after an intensity stop keeps the reason intensity", () => {
    const child = new Supervisor.Child("c", { strategy: "restart", maxRestarts: 0 })
    assert.strictEqual(escalated(child.decide(0, failure("a"))).reason, "intensity")
    assert.strictEqual(escalated(child.decide(1, failure("b"))).reason, "intensity")
  })
})

describe("Supervisor options", () => {
  const cases: Array<readonly [string, Supervisor.Options, string]> = [
    [
      'strategy "bogus"',
      { strategy: "bogus" as Supervisor.Strategy },
      'supervisor of app.T@1/h: strategy must be "resume", "restart" or "stop"'
    ],
    ["maxRestarts -1", { maxRestarts: -1 }, "supervisor of app.T@1/h: maxRestarts must be an integer >= 0"],
    ["maxRestarts 1.5", { maxRestarts: 1.5 }, "supervisor of app.T@1/h: maxRestarts must be an integer >= 0"],
    [
      "maxRestarts Infinity",
      { maxRestarts: Number.POSITIVE_INFINITY },
      "supervisor of app.T@1/h: maxRestarts must be an integer >= 0"
    ],
    ["maxRestarts NaN", { maxRestarts: Number.NaN }, "supervisor of app.T@1/h: maxRestarts must be an integer >= 0"],
    ["windowMs 0", { windowMs: 0 }, "supervisor of app.T@1/h: windowMs must be a finite number > 0"],
    ["windowMs -5", { windowMs: -5 }, "supervisor of app.T@1/h: windowMs must be a finite number > 0"],
    ["windowMs NaN", { windowMs: Number.NaN }, "supervisor of app.T@1/h: windowMs must be a finite number > 0"],
    [
      "windowMs Infinity",
      { windowMs: Number.POSITIVE_INFINITY },
      "supervisor of app.T@1/h: windowMs must be a finite number > 0"
    ]
  ]
  for (const [what, options, message] of cases) {
    it(`refuses ${what}`, () => {
      const error = invalidOptions(() => new Supervisor.Child("app.T@1/h", options))
      assert.strictEqual(error.message, message)
      assert.strictEqual(error._tag, "InvalidOptions")
      assert.strictEqual(error.code, "CAIRN_INVALID_OPTIONS")
      assert.strictEqual(error.subject, "supervisor of app.T@1/h")
    })
  }

  it("accepts the limits: maxRestarts 0, a fractional windowMs", () => {
    const child = new Supervisor.Child("c", { strategy: "stop", maxRestarts: 0, windowMs: 0.5 })
    assert.strictEqual(child.maxRestarts, 0)
    assert.strictEqual(child.windowMs, 0.5)
  })

  it("a handler's supervisor options are checked where the handler is defined", () => {
    const error = invalidOptions(() =>
      Handler.make("audit", () => undefined as never, { supervisor: { strategy: "restart", windowMs: 0 } })
    )
    assert.strictEqual(error.message, "supervisor of audit: windowMs must be a finite number > 0")
  })
})

describe("Supervisor.Escalated", () => {
  it("is the event type cairn.supervisor.escalated@1", () => {
    assert.strictEqual(Supervisor.Escalated.key, "cairn.supervisor.escalated@1")
    assert.strictEqual(Supervisor.Escalated.name, "cairn.supervisor.escalated")
    assert.strictEqual(Supervisor.Escalated.version, 1)
    assert.strictEqual(Supervisor.Escalated.delivery, "must")
    assert.strictEqual(Supervisor.Escalated.priority, 10)
    assert.deepStrictEqual(Supervisor.Escalated.batch, { maxSize: 64, lingerMs: 0 })
  })

  it("its schema decodes the data of every kind of Stop decision", () => {
    const byStrategy = new Supervisor.Child("a.B@1/h", { strategy: "stop" })
    const byIntensity = new Supervisor.Child("a.B@1/g", { strategy: "restart", maxRestarts: 1, backoff: exponential() })
    restartDelay(byIntensity.decide(0, failure("first")))
    const datas = [
      escalated(byStrategy.decide(0, failure("stop me"))),
      escalated(byIntensity.decide(1, Cause.die(new Error("died")))),
      escalated(byIntensity.decide(2, Cause.fail("a plain string")))
    ]
    assert.strictEqual(datas[1]!.restarts, 1)
    for (const data of datas) assert.deepStrictEqual(EventType.decodeUnsafe(Supervisor.Escalated, data), data)
  })

  it("its schema refuses data that is not an escalation", () => {
    const data = escalated(new Supervisor.Child("c", { strategy: "stop" }).decide(0, failure("x")))
    try {
      EventType.decodeUnsafe(Supervisor.Escalated, { ...data, reason: "boredom", restarts: "3" })
      assert.fail("expected a ValidationError")
    } catch (e) {
      assert.instanceOf(e, Errors.ValidationError)
      const error = e as Errors.ValidationError
      assert.deepStrictEqual(
        error.issues.map((i) => i.path),
        [["reason"], ["restarts"]]
      )
    }
  })
})
