import { describe, it, expect } from "vitest";
import { canJoin, canReuse, demandOf, earliestRenewalMs, SecretEpochs, type CachedToken } from "./sharing.ts";
import { KeyHasher } from "./keys.ts";
import type { TokenRequest } from "../oauth/types.ts";

const H = 3_600_000;
/** A 24 h token received at t = 0, requested at t = 0. */
const day: CachedToken = { receivedAtMs: 0, expiresAtMs: 24 * H, requestedAtMs: 0 };

describe("earliestRenewalMs", () => {
  it("is the renewal time with the jitter at its maximum (default: a third of the lifetime)", () => {
    // rb = 8 h, jitter ≤ min(10 % · 8 h, 5 min) = 5 min → 16 h − 5 min
    expect(earliestRenewalMs(day)).toBe(16 * H - 5 * 60_000);
    expect(earliestRenewalMs(day, { kind: "Duration", seconds: 2 * 3600 })).toBe(22 * H - 5 * 60_000);
    expect(earliestRenewalMs(day, { kind: "Fraction", fraction: 0.5 })).toBe(12 * H - 5 * 60_000);
  });
});

describe("canReuse", () => {
  const ordinary = demandOf({ reason: "RenewalDue", nowMs: 10 * H });
  it("hands an ordinary caller a cached token that is not due from its point of view", () => {
    expect(canReuse(day, ordinary, 10 * H)).toBe(true);
    expect(canReuse(day, ordinary, 16 * H - 5 * 60_000 - 1)).toBe(true);
    expect(canReuse(day, ordinary, 16 * H - 5 * 60_000)).toBe(false);
  });

  it("judges due-ness with the caller's own renewBefore (a later sharer with a longer renewBefore fetches)", () => {
    const longRb = demandOf({
      reason: "NoToken",
      nowMs: 13 * H,
      renewBefore: { kind: "Duration", seconds: 12 * 3600 },
    });
    const shortRb = demandOf({ reason: "NoToken", nowMs: 13 * H, renewBefore: { kind: "Duration", seconds: 3600 } });
    expect(canReuse(day, longRb, 13 * H)).toBe(false);
    expect(canReuse(day, shortRb, 13 * H)).toBe(true);
  });

  it("never hands out an expired token or one with no lifetime", () => {
    expect(canReuse(day, ordinary, 24 * H)).toBe(false);
    expect(canReuse({ receivedAtMs: 5, expiresAtMs: 5, requestedAtMs: 5 }, ordinary, 1)).toBe(false);
  });

  it("forcing reasons take only a token requested at or after notBefore", () => {
    for (const reason of ["SpecChanged", "CredentialsChanged", "RefreshRequested", undefined] as const) {
      const d = demandOf({ reason, nowMs: H });
      expect(d.forced).toBe(true);
      expect(canReuse(day, d, H)).toBe(false);
      expect(canReuse({ ...day, requestedAtMs: H }, d, H)).toBe(true);
    }
    for (const reason of ["NoToken", "RenewalDue", "Expired"] as const) {
      expect(demandOf({ reason, nowMs: H }).forced).toBe(false);
    }
  });
});

describe("demandOf", () => {
  it("uses the caller's notBefore, else the secret epoch for CredentialsChanged, else now; never after now", () => {
    expect(demandOf({ reason: "RefreshRequested", notBeforeMs: 5, nowMs: 10 }).notBeforeMs).toBe(5);
    expect(demandOf({ reason: "RefreshRequested", notBeforeMs: 50, nowMs: 10 }).notBeforeMs).toBe(10);
    expect(demandOf({ reason: "CredentialsChanged", secretSinceMs: 3, nowMs: 10 }).notBeforeMs).toBe(3);
    expect(demandOf({ reason: "SpecChanged", secretSinceMs: 3, nowMs: 10 }).notBeforeMs).toBe(10);
  });
});

describe("canJoin", () => {
  it("ordinary callers join any request; forcing callers only one started at or after notBefore", () => {
    expect(canJoin(0, demandOf({ reason: "NoToken", nowMs: 10 }))).toBe(true);
    expect(canJoin(9, demandOf({ nowMs: 10 }))).toBe(false); // no reason: a fresh token
    const forced = demandOf({ reason: "RefreshRequested", nowMs: 10 });
    expect(canJoin(9, forced)).toBe(false);
    expect(canJoin(10, forced)).toBe(true);
    expect(canJoin(Infinity, forced)).toBe(true);
  });
});

describe("SecretEpochs", () => {
  it("starts a new epoch when a client's secret changes, also back to an earlier one (A → B → A)", () => {
    const e = new SecretEpochs();
    expect(e.observe("c", "A", 1)).toBe(1);
    expect(e.observe("c", "A", 5)).toBe(1);
    expect(e.observe("c", "B", 7)).toBe(7);
    expect(e.observe("c", "A", 9)).toBe(9);
    expect(e.observe("d", "A", 10)).toBe(10);
  });

  it("is bounded", () => {
    const e = new SecretEpochs(2);
    e.observe("a", "x", 1);
    e.observe("b", "x", 2);
    e.observe("c", "x", 3);
    expect(e.observe("a", "x", 4)).toBe(4); // forgotten, new epoch
  });
});

describe("KeyHasher", () => {
  const base: TokenRequest = {
    tokenUrl: "https://identity.nexar.com/connect/token",
    grant: "ClientCredentials",
    clientAuthentication: "ClientSecretPost",
    clientId: "app",
    clientSecret: "s3cr3t-value-0123456789",
    scopes: ["supply.domain", "user.access"],
  };
  const k = new KeyHasher(Buffer.alloc(32, 7));

  it("ignores scope order and duplicates", () => {
    expect(k.shareKey({ ...base, scopes: ["user.access", "supply.domain", "user.access"] })).toBe(k.shareKey(base));
  });

  it("differs for each field that decides the token", () => {
    const keys = new Set([
      k.shareKey(base),
      k.shareKey({ ...base, tokenUrl: "https://other/connect/token" }),
      k.shareKey({ ...base, clientId: "app2" }),
      k.shareKey({ ...base, clientSecret: "other-secret-0123456789" }),
      k.shareKey({ ...base, scopes: ["supply.domain"] }),
      k.shareKey({ ...base, clientAuthentication: "ClientSecretBasic" }),
      k.shareKey({ ...base, grant: "RefreshToken", refreshToken: "r1" }),
      k.shareKey(base, { fallbackLifetimeSeconds: 60 }),
      k.shareKey(base, { credentialsVersion: "lineage-2" }),
    ]);
    expect(keys.size).toBe(9);
  });

  it("never holds the secret in clear text and depends on the per-process key", () => {
    const key = k.shareKey(base);
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(key).not.toContain(base.clientSecret);
    expect(new KeyHasher(Buffer.alloc(32, 8)).shareKey(base)).not.toBe(key);
    expect(new KeyHasher().shareKey(base)).not.toBe(new KeyHasher().shareKey(base));
  });

  it("RefreshToken grant: scoped to the credentials Secret when named, else to the refresh token", () => {
    const rt = { ...base, grant: "RefreshToken" as const, refreshToken: "r1" };
    expect(k.shareKey(rt, { credentialsRef: "ns/a" })).toBe(
      k.shareKey({ ...rt, refreshToken: "r2" }, { credentialsRef: "ns/a" }),
    );
    expect(k.shareKey(rt, { credentialsRef: "ns/a" })).not.toBe(k.shareKey(rt, { credentialsRef: "ns/b" }));
    expect(k.shareKey(rt)).not.toBe(k.shareKey({ ...rt, refreshToken: "r2" }));
    expect(k.clientKey(base)).toBe(k.clientKey({ tokenUrl: base.tokenUrl, clientId: base.clientId }));
  });
});
