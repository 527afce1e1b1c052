import { describe, it, expect, afterEach } from "vitest";
import {
  BACKOFF,
  BACKOFF_SCALE_ENV,
  backoffGate,
  backoffScaleFromEnv,
  failureDelayMs,
  failureKindOfReason,
  nextAttemptAtMs,
  nextAttemptTime,
  parseRetryAfter,
  retryDelayMs,
  type FailureKind,
} from "./backoff.ts";

/** Deterministic PRNG (mulberry32) so property checks are reproducible from their seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const S = 1000;
const MIN = 60 * S;
const fixed = (v: number) => (): number => v;

describe("retryDelayMs: table", () => {
  const cases: [FailureKind, number, number, number | undefined, number][] = [
    // kind, failedAttempts, random, retryAfterMs, expected ms
    ["credential", 1, 0.5, undefined, 5 * MIN],
    ["credential", 2, 0.5, undefined, 10 * MIN],
    ["credential", 3, 0.5, undefined, 20 * MIN],
    ["credential", 4, 0.5, undefined, 40 * MIN],
    ["credential", 5, 0.5, undefined, 60 * MIN],
    ["credential", 50, 0.5, undefined, 60 * MIN],
    ["credential", 1, 0, undefined, 4.5 * MIN],
    ["credential", 1, 1, undefined, 5.5 * MIN],
    ["credential", 5, 0, undefined, 54 * MIN],
    ["credential", 5, 1, undefined, 60 * MIN], // capped after jitter
    ["credential", 4, 1, undefined, 44 * MIN],
    ["transient", 1, 0, undefined, 1 * S],
    ["transient", 1, 1, undefined, 2 * S],
    ["transient", 2, 0.5, undefined, 3 * S],
    ["transient", 5, 1, undefined, 32 * S],
    ["transient", 8, 1, undefined, 256 * S],
    ["transient", 9, 0, undefined, 150 * S], // d = 5 min cap, half fixed
    ["transient", 9, 1, undefined, 300 * S],
    ["transient", 10_000, 1, undefined, 300 * S],
    ["rateLimited", 1, 0.5, 120 * S, 120 * S],
    ["rateLimited", 7, 0.5, 120 * S, 120 * S],
    ["rateLimited", 1, 0.5, 0, 1 * S],
    ["rateLimited", 1, 0.5, -5 * S, 1 * S],
    ["rateLimited", 1, 0.5, 3_600 * S, 15 * MIN],
    ["rateLimited", 1, 0.5, Number.POSITIVE_INFINITY, 15 * MIN],
    ["rateLimited", 1, 0, Number.NaN, 15 * S],
    ["rateLimited", 1, 0, undefined, 15 * S],
    ["rateLimited", 1, 1, undefined, 30 * S],
    ["rateLimited", 2, 1, undefined, 60 * S],
    ["rateLimited", 6, 0, undefined, 150 * S],
    ["rateLimited", 6, 1, undefined, 300 * S],
    ["transient", 0, 1, undefined, 2 * S], // below 1 counts as 1
    ["transient", -3, 1, undefined, 2 * S],
    ["transient", Number.NaN, 1, undefined, 2 * S],
    ["transient", 2.7, 1, undefined, 4 * S], // floored
    ["transient", 1, 5, undefined, 2 * S], // random clamped to 1
    ["transient", 1, -1, undefined, 1 * S], // random clamped to 0
    ["transient", Number.POSITIVE_INFINITY, 1, undefined, 300 * S],
  ];
  for (const [kind, failedAttempts, r, retryAfterMs, want] of cases) {
    it(`${kind} #${failedAttempts} random=${r} retryAfter=${retryAfterMs} → ${want} ms`, () => {
      expect(retryDelayMs({ kind, failedAttempts, retryAfterMs, random: fixed(r) })).toBeCloseTo(want, 6);
    });
  }
  it("retryAfterMs is ignored for credential and transient failures", () => {
    expect(
      retryDelayMs({
        kind: "transient",
        failedAttempts: 1,
        retryAfterMs: 600 * S,
        random: fixed(1),
      }),
    ).toBe(2 * S);
    expect(
      retryDelayMs({
        kind: "credential",
        failedAttempts: 1,
        retryAfterMs: 1 * S,
        random: fixed(0.5),
      }),
    ).toBe(5 * MIN);
  });
});

describe("retryDelayMs: properties over 1000 random inputs", () => {
  it("is finite, inside the documented bounds, and never collapses to ~0", () => {
    const kinds: FailureKind[] = ["credential", "transient", "rateLimited"];
    for (let seed = 1; seed <= 1000; seed++) {
      const rnd = mulberry32(seed);
      const kind = kinds[seed % 3]!;
      const n = 1 + Math.floor(rnd() * 40);
      const retryAfterMs = rnd() < 0.5 ? undefined : (rnd() - 0.1) * 2 * 3600 * S;
      const ms = retryDelayMs({
        kind,
        failedAttempts: n,
        retryAfterMs,
        random: rnd,
      });
      const ctx = JSON.stringify({ seed, kind, n, retryAfterMs, ms });
      expect(Number.isFinite(ms), ctx).toBe(true);
      if (kind === "credential") {
        const d = Math.min(BACKOFF.credentialBaseMs * 2 ** (n - 1), BACKOFF.credentialCapMs);
        expect(ms, ctx).toBeGreaterThanOrEqual(0.9 * d - 1e-6);
        expect(ms, ctx).toBeLessThanOrEqual(Math.min(1.1 * d, BACKOFF.credentialCapMs) + 1e-6);
      } else if (kind === "rateLimited" && retryAfterMs !== undefined) {
        expect(ms, ctx).toBeGreaterThanOrEqual(1 * S);
        expect(ms, ctx).toBeLessThanOrEqual(15 * MIN);
      } else {
        const baseMs = kind === "transient" ? BACKOFF.transientBaseMs : BACKOFF.rateLimitedBaseMs;
        const d = Math.min(baseMs * 2 ** (n - 1), BACKOFF.transientCapMs);
        expect(ms, ctx).toBeGreaterThanOrEqual(d / 2);
        expect(ms, ctx).toBeLessThanOrEqual(d);
        expect(ms, ctx).toBeGreaterThanOrEqual(1 * S);
      }
    }
  });

  it("a permanent credential error costs at most 4 requests in any hour, 1–2 once capped", () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rnd = mulberry32(seed);
      const attempts: number[] = [0];
      for (let n = 1; attempts.at(-1)! < 24 * 60 * MIN; n++) {
        attempts.push(
          attempts.at(-1)! +
            retryDelayMs({
              kind: "credential",
              failedAttempts: n,
              random: rnd,
            }),
        );
      }
      for (const start of attempts) {
        const inHour = attempts.filter((t) => t >= start && t < start + 60 * MIN).length;
        expect(inHour).toBeLessThanOrEqual(start === 0 ? 4 : start > 3 * 60 * MIN ? 2 : 3);
      }
      expect(attempts.length).toBeLessThanOrEqual(4 + 24 + 1);
    }
  });
});

describe("parseRetryAfter", () => {
  const now = Date.UTC(1994, 10, 6, 8, 49, 0); // Sun, 06 Nov 1994 08:49:00 GMT
  const cases: [string | undefined, number | undefined][] = [
    [undefined, undefined],
    ["", undefined],
    ["   ", undefined],
    ["120", 120_000],
    [" 5 ", 5_000],
    ["0", 0],
    ["007", 7_000],
    ["-5", 0],
    ["1.5", undefined],
    ["5s", undefined],
    ["+5", undefined],
    ["abc", undefined],
    ["9".repeat(400), undefined],
    // IMF-fixdate (RFC 9110 §5.6.7)
    ["Sun, 06 Nov 1994 08:49:37 GMT", 37_000],
    ["Sun, 06 Nov 1994 08:50:00 GMT", 60_000],
    ["sun, 06 nov 1994 08:49:37 gmt", 37_000],
    ["Sun, 06 Nov 1994 08:00:00 GMT", 0], // past
    ["Sun, 06 Nov 1994 08:49:60 GMT", 60_000], // leap second rolls over
    // obsolete RFC 850 and asctime
    ["Sunday, 06-Nov-94 08:49:37 GMT", 37_000],
    ["Sun Nov  6 08:49:37 1994", 37_000],
    ["Sun Nov 16 08:49:37 1994", 10 * 86_400_000 + 37_000],
    // malformed
    ["Sun, 31 Feb 1994 08:49:37 GMT", undefined],
    ["Sun, 00 Nov 1994 08:49:37 GMT", undefined],
    ["Sun, 06 Nov 1994 24:00:00 GMT", undefined],
    ["Sun, 06 Nov 1994 08:61:00 GMT", undefined],
    ["Sun, 06 Foo 1994 08:49:37 GMT", undefined],
    ["Sun, 06 Nov 1994 08:49:37 UTC", undefined],
    ["Sun, 6 Nov 1994 08:49:37 GMT", undefined],
    ["06 Nov 1994 08:49:37 GMT", undefined],
    ["1994-11-06T08:49:37Z", undefined],
    ["Sun Nov 6 08:49:37 1994", undefined],
  ];
  for (const [value, want] of cases) {
    it(`${JSON.stringify(value)} → ${want}`, () => {
      expect(parseRetryAfter(value, now)).toBe(want);
    });
  }

  it("RFC 850 two-digit years: more than 50 years ahead means the previous century", () => {
    const now2026 = Date.UTC(2026, 0, 1);
    expect(parseRetryAfter("Friday, 01-Jan-27 00:00:00 GMT", now2026)).toBe(Date.UTC(2027, 0, 1) - now2026);
    expect(parseRetryAfter("Sunday, 01-Jan-76 00:00:10 GMT", now2026)).toBe(Date.UTC(2076, 0, 1, 0, 0, 10) - now2026);
    expect(parseRetryAfter("Saturday, 01-Jan-77 00:00:00 GMT", now2026)).toBe(0); // 1977
    expect(parseRetryAfter("Thursday, 01-Jan-26 00:00:10 GMT", now2026)).toBe(10_000);
  });

  describe("does not depend on the process time zone", () => {
    const saved = process.env.TZ;
    afterEach(() => {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    });
    for (const tz of ["America/New_York", "Asia/Kolkata", "UTC"]) {
      it(tz, () => {
        process.env.TZ = tz;
        expect(parseRetryAfter("Sun Nov  6 08:49:37 1994", now)).toBe(37_000);
        expect(parseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now)).toBe(37_000);
        expect(parseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now)).toBe(37_000);
      });
    }
  });
});

describe("backoffScaleFromEnv (test-only setting)", () => {
  it("is 1 (production figures) unless a number in (0, 1] is set", () => {
    expect(backoffScaleFromEnv({})).toBe(1);
    expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: "" })).toBe(1);
    expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: "0.01" })).toBe(0.01);
    expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: "1" })).toBe(1);
    for (const bad of ["0", "-1", "2", "abc", "Infinity", "NaN"]) {
      expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: bad })).toBe(1);
    }
  });
});

describe("failureKindOfReason (the class after a restart)", () => {
  it("credential reasons, RateLimited, and transient for the rest (InvalidResponse included)", () => {
    for (const r of [
      "InvalidClient",
      "UnauthorizedClient",
      "InvalidScope",
      "InvalidGrant",
      "RefreshTokenInvalid",
      "AccessDenied",
    ]) {
      expect(failureKindOfReason(r), r).toBe("credential");
    }
    expect(failureKindOfReason("RateLimited")).toBe("rateLimited");
    for (const r of [
      "TokenEndpointUnavailable",
      "Timeout",
      "ConnectionFailed",
      "InvalidResponse",
      "ResponseTooLarge",
      "x",
    ]) {
      expect(failureKindOfReason(r), r).toBe("transient");
    }
  });
});

describe("failureDelayMs (the delay of one failure, scaled)", () => {
  const T = 1_000_000_000;
  const base = { failedAttempts: 1, jitter: 0.5, nowMs: T, scale: 1 };
  it("credential: the long backoff, also while a valid token is held", () => {
    expect(failureDelayMs({ ...base, kind: "credential" })).toBe(5 * MIN);
    expect(failureDelayMs({ ...base, kind: "credential", validUntilMs: T + 10 * S })).toBe(5 * MIN);
    expect(failureDelayMs({ ...base, kind: "credential", scale: 0.01 })).toBe(3 * S);
  });
  it("transient: never later than half-way to a valid token's expiry, at least the scaled base", () => {
    expect(failureDelayMs({ ...base, kind: "transient", failedAttempts: 9 })).toBe(225 * S);
    expect(failureDelayMs({ ...base, kind: "transient", failedAttempts: 9, validUntilMs: T + 60 * S })).toBe(30 * S);
    expect(failureDelayMs({ ...base, kind: "transient", failedAttempts: 9, validUntilMs: T + 1 * S })).toBe(2 * S);
    expect(failureDelayMs({ ...base, kind: "transient", failedAttempts: 9, validUntilMs: T - 1 })).toBe(225 * S); // expired: no clamp
    expect(failureDelayMs({ ...base, kind: "transient", scale: 0.1 })).toBe(150);
  });
  it("rate limited: the server's Retry-After as sent, only its 15 min cap scaled; without it, clamped like transient", () => {
    expect(failureDelayMs({ ...base, kind: "rateLimited", retryAfterMs: 5 * S, scale: 0.1 })).toBe(5 * S);
    expect(failureDelayMs({ ...base, kind: "rateLimited", retryAfterMs: 86_400 * S, scale: 0.1 })).toBe(90 * S);
    expect(failureDelayMs({ ...base, kind: "rateLimited", retryAfterMs: 5 * S, validUntilMs: T + 2 * S })).toBe(5 * S);
    expect(failureDelayMs({ ...base, kind: "rateLimited" })).toBe(22_500);
    expect(failureDelayMs({ ...base, kind: "rateLimited", validUntilMs: T + 10 * S })).toBe(5 * S);
  });
});

describe("failureDelayMs: a Retry-After on any status (RFC 9110 §10.2.3)", () => {
  const T = 1_000_000_000;
  const base = { failedAttempts: 1, jitter: 0.5, nowMs: T, scale: 1 };
  it("a 503's Retry-After is honoured as a floor, capped at 15 min × scale, over the clamp to a valid token's expiry", () => {
    expect(failureDelayMs({ ...base, kind: "transient", retryAfterMs: 120 * S })).toBe(120 * S);
    expect(failureDelayMs({ ...base, kind: "transient", retryAfterMs: 120 * S, validUntilMs: T + 60 * S })).toBe(
      120 * S,
    );
    expect(failureDelayMs({ ...base, kind: "transient", retryAfterMs: 86_400 * S })).toBe(15 * MIN);
    expect(failureDelayMs({ ...base, kind: "transient", retryAfterMs: 0 })).toBe(1_500); // own backoff when longer
    expect(failureDelayMs({ ...base, kind: "credential", retryAfterMs: 60 * S })).toBe(5 * MIN);
    expect(failureDelayMs({ ...base, kind: "credential", retryAfterMs: 10 * MIN })).toBe(10 * MIN);
  });
});

describe("nextAttemptAtMs (the backoff, from status)", () => {
  const failedAt = Date.parse("2026-12-01T10:00:00Z");
  const status = { failedAttempts: 2, lastFailureTime: "2026-12-01T10:00:00Z", lastFailureReason: "InvalidClient" };
  const o = { nowMs: failedAt + S, scale: 1 };
  it("is the recorded nextAttemptTime (class, Retry-After and jitter as decided at the failure)", () => {
    expect(nextAttemptAtMs({ ...status, nextAttemptTime: nextAttemptTime(failedAt + 7_001.2) }, o)).toBe(
      failedAt + 7_002,
    );
    expect(nextAttemptTime(failedAt + 0.2)).toBe("2026-12-01T10:00:00.001Z");
  });
  it("without one (an older operator's status): lastFailureTime + the nominal delay of the reason's class", () => {
    expect(nextAttemptAtMs(status, o)).toBe(failedAt + 10 * MIN);
    expect(nextAttemptAtMs({ ...status, nextAttemptTime: "soon" }, o)).toBe(failedAt + 10 * MIN);
    expect(nextAttemptAtMs({ ...status, lastFailureReason: "InvalidResponse" }, o)).toBe(failedAt + 3 * S);
    // a valid token held for the same inputs clamps a transient delay to half-way to its expiry
    const transient = { ...status, failedAttempts: 6, lastFailureReason: "TokenEndpointUnavailable" };
    expect(nextAttemptAtMs(transient, o)).toBe(failedAt + 48 * S);
    expect(nextAttemptAtMs(transient, { ...o, validUntilMs: failedAt + 21 * S })).toBe(failedAt + 10 * S);
  });
  it("is undefined when status records no failure", () => {
    expect(nextAttemptAtMs({}, o)).toBeUndefined();
    expect(nextAttemptAtMs({ ...status, failedAttempts: 0 }, o)).toBeUndefined();
    expect(nextAttemptAtMs({ ...status, lastFailureTime: undefined }, o)).toBeUndefined();
    expect(nextAttemptAtMs({ ...status, lastFailureReason: undefined }, o)).toBeUndefined();
    expect(nextAttemptAtMs({ ...status, lastFailureTime: "yesterday" }, o)).toBeUndefined();
  });
});

describe("backoffGate", () => {
  const g = { nextAttemptAtMs: 10_000, nowMs: 5_000, changedSinceFailure: undefined, newRefreshRequest: false };
  it("holds a fetch until the next attempt; a change or a new refresh request goes at once", () => {
    expect(backoffGate(g)).toEqual({ hold: true, untilMs: 10_000 });
    expect(backoffGate({ ...g, nowMs: 10_000 })).toEqual({ hold: false });
    expect(backoffGate({ ...g, nextAttemptAtMs: undefined })).toEqual({ hold: false });
    expect(backoffGate({ ...g, changedSinceFailure: "SpecChanged" })).toEqual({ hold: false });
    expect(backoffGate({ ...g, changedSinceFailure: "CredentialsChanged" })).toEqual({ hold: false });
    expect(backoffGate({ ...g, newRefreshRequest: true })).toEqual({ hold: false });
  });
});
