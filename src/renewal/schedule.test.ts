import { describe, it, expect } from "vitest";
import { computeRenewal, renewalTimeMs, type RenewalInput } from "./schedule.ts";

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

const T0 = Date.UTC(2026, 11, 1, 0, 0, 0);
const H = 3_600_000;
const DAY = 24 * H;
const zero = (): number => 0;
const almostOne = (): number => 1 - Number.EPSILON;

describe("computeRenewal: table", () => {
  const cases: {
    name: string;
    input: Omit<RenewalInput, "receivedAtMs" | "random"> & {
      random?: () => number;
    };
    renewAtMs: number;
    effectiveRenewBeforeSeconds: number;
    clamped: boolean;
  }[] = [
    {
      name: "24 h token, default a third, no jitter",
      input: { expiresAtMs: T0 + DAY },
      renewAtMs: T0 + 16 * H,
      effectiveRenewBeforeSeconds: 8 * 3600,
      clamped: false,
    },
    {
      name: "24 h token, maximum jitter is 5 min (10 % of 8 h is larger)",
      input: { expiresAtMs: T0 + DAY, random: almostOne },
      renewAtMs: T0 + 16 * H - 300_000,
      effectiveRenewBeforeSeconds: 8 * 3600,
      clamped: false,
    },
    {
      name: "1 h token, jitter 10 % of renewBefore (20 min → 2 min), random 0.5",
      input: { expiresAtMs: T0 + H, random: () => 0.5 },
      renewAtMs: T0 + 40 * 60_000 - 60_000,
      effectiveRenewBeforeSeconds: 1200,
      clamped: false,
    },
    {
      name: "renewBefore 8h",
      input: { expiresAtMs: T0 + DAY, renewBeforeSeconds: 8 * 3600 },
      renewAtMs: T0 + 16 * H,
      effectiveRenewBeforeSeconds: 8 * 3600,
      clamped: false,
    },
    {
      name: "renewBefore 20h on a 24 h token is clamped to half the lifetime",
      input: { expiresAtMs: T0 + DAY, renewBeforeSeconds: 20 * 3600 },
      renewAtMs: T0 + 12 * H,
      effectiveRenewBeforeSeconds: 12 * 3600,
      clamped: true,
    },
    {
      name: "renewBefore 10 s is raised to 60 s",
      input: { expiresAtMs: T0 + DAY, renewBeforeSeconds: 10 },
      renewAtMs: T0 + DAY - 60_000,
      effectiveRenewBeforeSeconds: 60,
      clamped: true,
    },
    {
      name: "negative renewBefore is raised to 60 s",
      input: { expiresAtMs: T0 + DAY, renewBeforeSeconds: -5 },
      renewAtMs: T0 + DAY - 60_000,
      effectiveRenewBeforeSeconds: 60,
      clamped: true,
    },
    {
      name: "60 s token: upper bound wins, renews after 30 s",
      input: { expiresAtMs: T0 + 60_000 },
      renewAtMs: T0 + 30_000,
      effectiveRenewBeforeSeconds: 30,
      clamped: true,
    },
    {
      name: "renewBefore equal to the lifetime does not renew at once",
      input: { expiresAtMs: T0 + H, renewBeforeSeconds: 3600 },
      renewAtMs: T0 + H / 2,
      effectiveRenewBeforeSeconds: 1800,
      clamped: true,
    },
    {
      name: "renewBefore far beyond the lifetime does not renew at once",
      input: { expiresAtMs: T0 + H, renewBeforeSeconds: 10 * 24 * 3600 },
      renewAtMs: T0 + H / 2,
      effectiveRenewBeforeSeconds: 1800,
      clamped: true,
    },
    {
      name: "percentage 25 of 24 h",
      input: { expiresAtMs: T0 + DAY, renewBeforePercentage: 25 },
      renewAtMs: T0 + 18 * H,
      effectiveRenewBeforeSeconds: 6 * 3600,
      clamped: false,
    },
    {
      name: "percentage 33 of 24 h",
      input: { expiresAtMs: T0 + DAY, renewBeforePercentage: 33 },
      renewAtMs: T0 + DAY - 28_512_000,
      effectiveRenewBeforeSeconds: 28_512,
      clamped: false,
    },
    {
      name: "percentage 100 is clamped to half",
      input: { expiresAtMs: T0 + DAY, renewBeforePercentage: 100 },
      renewAtMs: T0 + 12 * H,
      effectiveRenewBeforeSeconds: 12 * 3600,
      clamped: true,
    },
    {
      name: "percentage 0 is raised to 60 s",
      input: { expiresAtMs: T0 + DAY, renewBeforePercentage: 0 },
      renewAtMs: T0 + DAY - 60_000,
      effectiveRenewBeforeSeconds: 60,
      clamped: true,
    },
    {
      name: "renewBeforeSeconds takes precedence over renewBeforePercentage",
      input: {
        expiresAtMs: T0 + DAY,
        renewBeforeSeconds: 3600,
        renewBeforePercentage: 50,
      },
      renewAtMs: T0 + 23 * H,
      effectiveRenewBeforeSeconds: 3600,
      clamped: false,
    },
    {
      name: "random() above 1 is clamped to 1",
      input: { expiresAtMs: T0 + DAY, random: () => 7 },
      renewAtMs: T0 + 16 * H - 300_000,
      effectiveRenewBeforeSeconds: 8 * 3600,
      clamped: false,
    },
    {
      name: "random() negative or NaN counts as 0",
      input: { expiresAtMs: T0 + DAY, random: () => Number.NaN },
      renewAtMs: T0 + 16 * H,
      effectiveRenewBeforeSeconds: 8 * 3600,
      clamped: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { random = zero, ...rest } = c.input;
      expect(computeRenewal({ receivedAtMs: T0, random, ...rest })).toEqual({
        renewAtMs: c.renewAtMs,
        effectiveRenewBeforeSeconds: c.effectiveRenewBeforeSeconds,
        clamped: c.clamped,
      });
    });
  }
});

describe("computeRenewal: errors", () => {
  const bad: [string, Partial<RenewalInput>][] = [
    ["expired on receipt", { expiresAtMs: T0 - 1 }],
    ["zero lifetime", { expiresAtMs: T0 }],
    ["NaN expiry", { expiresAtMs: Number.NaN }],
    ["infinite receive time", { receivedAtMs: Number.POSITIVE_INFINITY }],
    ["NaN renewBefore", { renewBeforeSeconds: Number.NaN }],
    ["infinite percentage", { renewBeforePercentage: Number.POSITIVE_INFINITY }],
  ];
  for (const [name, override] of bad) {
    it(`throws RangeError: ${name}`, () => {
      expect(() =>
        computeRenewal({
          receivedAtMs: T0,
          expiresAtMs: T0 + DAY,
          random: zero,
          ...override,
        }),
      ).toThrow(RangeError);
    });
  }
});

describe("computeRenewal: properties over 1000 random inputs", () => {
  it("renews strictly inside (receivedAt, expiresAt), within the stated bounds", () => {
    for (let seed = 1; seed <= 1000; seed++) {
      const rnd = mulberry32(seed);
      const receivedAtMs = Math.floor(T0 + rnd() * DAY);
      // Lifetimes from 1 s to 30 days, log-uniform.
      const lifetimeMs = Math.round(1000 * Math.exp(rnd() * Math.log(30 * 86_400)));
      const expiresAtMs = receivedAtMs + lifetimeMs;
      const mode = Math.floor(rnd() * 3);
      const renewBeforeSeconds = mode === 1 ? (rnd() * 2 * lifetimeMs) / 1000 : undefined;
      const renewBeforePercentage = mode === 2 ? rnd() * 100 : undefined;
      const draw = rnd();
      const input = {
        receivedAtMs,
        expiresAtMs,
        renewBeforeSeconds,
        renewBeforePercentage,
        random: () => draw,
      };
      const r = computeRenewal(input);
      const rbMs = r.effectiveRenewBeforeSeconds * 1000;
      const maxJitterMs = Math.min(0.1 * rbMs, 300_000);
      const ctx = { seed, ...input, ...r };

      expect(r.renewAtMs, JSON.stringify(ctx)).toBeGreaterThan(receivedAtMs);
      expect(r.renewAtMs, JSON.stringify(ctx)).toBeLessThan(expiresAtMs);
      expect(Number.isInteger(r.renewAtMs)).toBe(true);
      // Exact bounds from the docstring.
      // (rbMs is recomputed from seconds here, so allow one float rounding step.)
      expect(r.renewAtMs).toBeLessThanOrEqual(expiresAtMs - rbMs + 1e-6);
      expect(r.renewAtMs).toBeGreaterThan(receivedAtMs + lifetimeMs / 2 - maxJitterMs - 1);
      expect(r.renewAtMs).toBeGreaterThan(receivedAtMs + 0.45 * lifetimeMs - 1);
      // The window is inside [min(60 s, lifetime/2), lifetime/2].
      expect(r.effectiveRenewBeforeSeconds).toBeLessThanOrEqual(lifetimeMs / 2000);
      expect(r.effectiveRenewBeforeSeconds).toBeGreaterThanOrEqual(Math.min(60, lifetimeMs / 2000));
      // Deterministic: the same draw gives the same answer.
      expect(computeRenewal(input)).toEqual(r);
    }
  });

  it("renewing at renewAt with a same-lifetime token never loops (≥ 0.45·lifetime between fetches)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rnd = mulberry32(seed);
      const lifetimeMs = 60_000 + Math.floor(rnd() * 2 * H);
      const renewBeforeSeconds = (rnd() * 3 * lifetimeMs) / 1000; // often ≥ lifetime
      let now = T0;
      let fetches = 0;
      while (now < T0 + DAY) {
        fetches++;
        const { renewAtMs } = computeRenewal({
          receivedAtMs: now,
          expiresAtMs: now + lifetimeMs,
          renewBeforeSeconds,
          random: rnd,
        });
        expect(renewAtMs - now).toBeGreaterThanOrEqual(0.45 * lifetimeMs - 1);
        now = renewAtMs;
      }
      expect(fetches).toBeLessThanOrEqual(Math.ceil(DAY / (0.45 * lifetimeMs - 1)) + 1);
    }
  });
});

describe("renewalTimeMs (a held token's renewal time)", () => {
  const T = Date.UTC(2026, 11, 1);
  const H = 3_600_000;
  it("is computeRenewal with the jitter draw for a token whose receipt time is known", () => {
    // 24 h, default third (8 h), jitter 0.5 of 5 min
    expect(renewalTimeMs({ receivedAtMs: T, expiresAtMs: T + 24 * H }, undefined, 0.5, T)).toBe(T + 16 * H - 150_000);
    expect(renewalTimeMs({ receivedAtMs: T, expiresAtMs: T + 24 * H }, { kind: "Duration", seconds: 3600 }, 0, T)).toBe(
      T + 23 * H,
    );
    expect(renewalTimeMs({ receivedAtMs: T, expiresAtMs: T + 24 * H }, { kind: "Fraction", fraction: 0.5 }, 1, T)).toBe(
      T + 12 * H - 300_000,
    );
  });
  it("renews at once (now) when the receipt time is unknown or not before the expiry: no lifetime is assumed, nothing throws", () => {
    const now = T + 5 * H;
    expect(renewalTimeMs({ receivedAtMs: undefined, expiresAtMs: T + 24 * H }, undefined, 0.5, now)).toBe(now);
    expect(renewalTimeMs({ receivedAtMs: T + 24 * H, expiresAtMs: T + 24 * H }, undefined, 0.5, now)).toBe(now);
    expect(renewalTimeMs({ receivedAtMs: T + 25 * H, expiresAtMs: T + 24 * H }, undefined, 0.5, now)).toBe(now);
    expect(renewalTimeMs({ receivedAtMs: Number.NaN, expiresAtMs: T + 24 * H }, undefined, 0.5, now)).toBe(now);
  });
});
