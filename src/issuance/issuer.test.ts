import { describe, it, expect } from "vitest";
import { Issuer, IssuerClosedError, type TokenFetcher } from "./issuer.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { RefreshTokenGuard, type RefreshTokenStore, type StoredRefreshToken } from "./refresh.ts";
import type { FetchContext, LimiterWait, ShareScope } from "./types.ts";

const H = 3_600_000;

/** A controllable clock + sleep: sleeps resolve when `advance` passes their deadline. */
function fakeTime(start = 1_000_000) {
  let now = start;
  const sleepers: { at: number; resolve: () => void }[] = [];
  return {
    now: () => now,
    sleep(ms: number, signal: AbortSignal): Promise<void> {
      return new Promise<void>((resolve) => {
        sleepers.push({ at: now + ms, resolve });
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    },
    async advance(ms: number) {
      now += ms;
      for (const s of sleepers.splice(0)) {
        if (s.at <= now) s.resolve();
        else sleepers.push(s);
      }
      await flush();
    },
    sleepers,
  };
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** A fake token endpoint: records requests; each answer can be held back with `hold()`. */
function fakeEndpoint(time: { now: () => number }, lifetimeMs = 24 * H) {
  const requests: TokenRequest[] = [];
  let n = 0;
  let gate: Promise<void> | undefined;
  let openGate: (() => void) | undefined;
  let failWith: Error | undefined;
  let rotate = false;
  const fetcher: TokenFetcher = {
    async fetchToken(req) {
      requests.push(req);
      const sentAt = time.now();
      if (gate) await gate;
      if (failWith) throw failWith;
      n++;
      const t: IssuedToken = {
        accessToken: `token-${n}`,
        tokenType: "Bearer",
        scopes: [...req.scopes],
        receivedAtMs: sentAt,
        expiresAtMs: sentAt + lifetimeMs,
        lifetimeSource: "expires_in",
      };
      if (rotate) t.refreshToken = `${req.refreshToken ?? "rt"}+`;
      return t;
    },
  };
  return {
    fetcher,
    requests,
    hold() {
      gate = new Promise((r) => (openGate = r));
    },
    release() {
      gate = undefined;
      openGate?.();
    },
    fail(e: Error | undefined) {
      failWith = e;
    },
    rotate(on: boolean) {
      rotate = on;
    },
  };
}

const req = (over: Partial<TokenRequest> = {}): TokenRequest => ({
  tokenUrl: "https://identity.example/connect/token",
  grant: "ClientCredentials",
  clientAuthentication: "ClientSecretPost",
  clientId: "app",
  clientSecret: "secret-0123456789",
  scopes: ["supply.domain"],
  ...over,
});

function setup(opts: { limits?: { limit: number; windowMs: number }[]; lifetimeMs?: number } = {}) {
  const time = fakeTime();
  const ep = fakeEndpoint(time, opts.lifetimeMs);
  const waits: LimiterWait[] = [];
  const guard = new RefreshTokenGuard();
  const raw = new Issuer(ep.fetcher, {
    now: time.now,
    sleep: time.sleep,
    limits: opts.limits ?? [],
    onLimiterWait: (w) => waits.push(w),
    refreshTokens: guard,
  });
  /** The issuer, fetched as the reconciler does: a Credential (keys computed once) plus the hints. */
  const issuer = Object.assign(raw, {
    fetch: (r: TokenRequest, ctx: FetchContext = {}, scope: ShareScope = {}) =>
      raw.fetchToken(
        { request: r, keys: raw.keysFor(r, scope), fallbackLifetimeSeconds: scope.fallbackLifetimeSeconds },
        ctx,
      ),
  });
  return { time, ep, issuer, waits, guard };
}

/** An in-memory credentials Secret key holding a refresh token, with optimistic concurrency like the API server. */
function memoryStore(secret: string, first: string, o: { failPersist?: Error } = {}) {
  let value = first;
  let version = 1;
  const log: string[] = [];
  const store: RefreshTokenStore<StoredRefreshToken & { version: number }> = {
    secret,
    key: "refreshToken",
    read: () => Promise.resolve({ value, version }),
    persist: (used, rotated) => {
      log.push(`persist:${rotated}`);
      if (o.failPersist) return Promise.reject(o.failPersist);
      if (used.version !== version) return Promise.resolve("superseded");
      value = rotated;
      version++;
      return Promise.resolve("stored");
    },
  };
  return { store, log, value: () => value };
}

describe("Issuer: shared tokens", () => {
  it("1,000 concurrent fetches of one key cost one request and all get the same token", async () => {
    const { ep, issuer } = setup();
    ep.hold();
    const all = Array.from({ length: 1000 }, () => issuer.fetch(req(), { reason: "NoToken" }));
    await flush();
    ep.release();
    const tokens = await Promise.all(all);
    expect(ep.requests).toHaveLength(1);
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set(["token-1"]));
    expect(issuer.stats()).toMatchObject({ requests: 1, joined: 999, inFlight: 0 });
  });

  it("scope order does not matter; a different secret, scope set or token URL is a different token", async () => {
    const { ep, issuer } = setup();
    const join = { reason: "NoToken" } as const;
    await issuer.fetch(req({ scopes: ["a", "b"] }), join);
    await issuer.fetch(req({ scopes: ["b", "a"] }), join);
    expect(ep.requests).toHaveLength(1);
    await issuer.fetch(req({ scopes: ["a", "b"], clientSecret: "other-secret-0123" }), join);
    await issuer.fetch(req({ scopes: ["a"] }), join);
    await issuer.fetch(req({ scopes: ["a", "b"], tokenUrl: "https://other.example/token" }), join);
    expect(ep.requests).toHaveLength(4);
  });

  it("a NexarToken joining later gets the cached token without a request", async () => {
    const { ep, issuer, time } = setup();
    const first = await issuer.fetch(req(), { reason: "NoToken" });
    await time.advance(H);
    const later = await issuer.fetch(req(), { reason: "NoToken" });
    expect(later.accessToken).toBe(first.accessToken);
    expect(later.receivedAtMs).toBe(first.receivedAtMs);
    expect(ep.requests).toHaveLength(1);
    expect(issuer.stats().cacheHits).toBe(1);
  });

  it("hands out the cached token only while it is not due from the asker's renewBefore; then all sharers move on", async () => {
    const { ep, issuer, time } = setup();
    await issuer.fetch(req(), { renewBefore: { kind: "Duration", seconds: 3600 } }); // A: renews at ~23 h
    await time.advance(13 * H);
    // B renews 12 h before expiry: at 13 h the cached token is already due for B → a new request
    const b = await issuer.fetch(req(), {
      reason: "NoToken",
      renewBefore: { kind: "Duration", seconds: 12 * 3600 },
    });
    expect(b.accessToken).toBe("token-2");
    // A's renewal (RenewalDue at ~23 h) takes B's newer token: no request
    await time.advance(10 * H);
    const a = await issuer.fetch(req(), {
      reason: "RenewalDue",
      renewBefore: { kind: "Duration", seconds: 3600 },
    });
    expect(a.accessToken).toBe("token-2");
    expect(ep.requests).toHaveLength(2);
  });

  it("a renewal due for the caller never gets the token it already holds back (no renewal loop)", async () => {
    const { ep, issuer, time } = setup();
    await issuer.fetch(req(), {});
    await time.advance(16 * H); // past the default earliest renewal (16 h − 5 min)
    const t = await issuer.fetch(req(), { reason: "RenewalDue" });
    expect(t.accessToken).toBe("token-2");
    expect(ep.requests).toHaveLength(2);
  });
});

describe("Issuer: forcing reasons", () => {
  it("a caller that gives no reason keeps the pre-sharing contract: a token requested after its call", async () => {
    const { ep, issuer, time } = setup();
    await issuer.fetch(req(), { reason: "NoToken" });
    await time.advance(1_000);
    expect((await issuer.fetch(req(), {})).accessToken).toBe("token-2");
    expect(ep.requests).toHaveLength(2);
    // but a NexarToken joining afterwards shares the newest token
    expect((await issuer.fetch(req(), { reason: "NoToken" })).accessToken).toBe("token-2");
    expect(ep.requests).toHaveLength(2);
  });

  it("RefreshRequested never takes the cached token; NexarTokens annotated with one timestamp share one new token", async () => {
    const { ep, issuer, time } = setup();
    await issuer.fetch(req(), {});
    await time.advance(60_000);
    const annotatedAt = time.now();
    await time.advance(1_000);
    const many = await Promise.all(
      Array.from({ length: 50 }, () => issuer.fetch(req(), { reason: "RefreshRequested", notBeforeMs: annotatedAt })),
    );
    expect(new Set(many.map((t) => t.accessToken))).toEqual(new Set(["token-2"]));
    expect(ep.requests).toHaveLength(2);
    // a later request with the same annotation value takes the token requested after it
    await time.advance(5_000);
    expect((await issuer.fetch(req(), { reason: "RefreshRequested", notBeforeMs: annotatedAt })).accessToken).toBe(
      "token-2",
    );
    expect(ep.requests).toHaveLength(2);
  });

  it("a forcing caller does not join a request that started before its trigger; forcing callers queue for ONE next request", async () => {
    const { ep, issuer, time } = setup();
    ep.hold();
    const ordinary = issuer.fetch(req(), { reason: "RenewalDue" });
    await time.advance(1);
    const forced = Array.from({ length: 10 }, () => issuer.fetch(req(), { reason: "SpecChanged" }));
    await flush();
    expect(ep.requests).toHaveLength(1);
    ep.release();
    expect((await ordinary).accessToken).toBe("token-1");
    const f = await Promise.all(forced);
    expect(new Set(f.map((t) => t.accessToken))).toEqual(new Set(["token-2"]));
    expect(ep.requests).toHaveLength(2);
  });

  it("CredentialsChanged: one request for all NexarTokens of a rotated secret; A → B → A does not reuse A's old token", async () => {
    const { ep, issuer, time } = setup();
    const A = req({ clientSecret: "secret-A-0123456789" });
    const B = req({ clientSecret: "secret-B-0123456789" });
    const a1 = await issuer.fetch(A, { reason: "NoToken" });
    await time.advance(1_000);
    const bs = [];
    for (let i = 0; i < 10; i++) {
      bs.push(await issuer.fetch(B, { reason: "CredentialsChanged" }));
      await time.advance(100);
    }
    expect(new Set(bs.map((t) => t.accessToken)).size).toBe(1);
    expect(ep.requests).toHaveLength(2);
    await time.advance(1_000);
    const a2 = await issuer.fetch(A, { reason: "CredentialsChanged" });
    expect(a2.accessToken).not.toBe(a1.accessToken);
    expect(ep.requests).toHaveLength(3);
  });
});

describe("Issuer: per-client limiter", () => {
  it("queues requests of one client (2 per second) instead of failing, and reports waiting to every caller", async () => {
    const { ep, issuer, time, waits } = setup({ limits: [{ limit: 2, windowMs: 1_000 }] });
    const seen: Record<string, LimiterWait[]> = {};
    const fetch = (scope: string, who: string) =>
      issuer.fetch(req({ scopes: [scope] }), {
        reason: "NoToken",
        onWaiting: (w) => (seen[who] ??= []).push(w),
      });
    const ps = [fetch("a", "a1"), fetch("b", "b1"), fetch("c", "c1"), fetch("d", "d1")];
    await flush();
    const joiner = fetch("c", "c2");
    await flush();
    expect(ep.requests).toHaveLength(2);
    expect(issuer.stats().waiting).toBe(2);
    expect(waits.map((w) => w.delayMs)).toEqual([1_000, 1_000]);
    expect(seen.c1?.[0]?.delayMs).toBe(1_000);
    expect(seen.c2?.[0]?.delayMs).toBe(1_000); // joined a waiting request: told at once
    expect(seen.a1).toBeUndefined();
    await time.advance(1_000);
    await Promise.all([...ps, joiner]);
    expect(ep.requests).toHaveLength(4);
    expect(issuer.stats().waiting).toBe(0);
  });

  it("reports waits to a hook set after construction (metrics wiring)", async () => {
    const { issuer } = setup({ limits: [{ limit: 1, windowMs: 1_000 }] });
    const seen: number[] = [];
    issuer.observeLimiterWaits((w) => seen.push(w.delayMs));
    await issuer.fetch(req(), { reason: "NoToken" });
    const p = issuer.fetch(req({ scopes: ["other"] }), { reason: "NoToken" });
    await flush();
    expect(seen).toEqual([1_000]);
    issuer.close();
    await expect(p).rejects.toBeInstanceOf(IssuerClosedError);
  });

  it("keeps clients apart: another client id is not delayed", async () => {
    const { ep, issuer } = setup({ limits: [{ limit: 1, windowMs: 1_000 }] });
    await issuer.fetch(req(), {});
    await issuer.fetch(req({ clientId: "other" }), {});
    expect(ep.requests).toHaveLength(2);
  });

  it("an HTTP 429 blocks the client for Retry-After (an explicit refresh request is not blocked)", async () => {
    const { ep, issuer, time, waits } = setup({ limits: [{ limit: 100, windowMs: 1_000 }] });
    ep.fail(
      new TokenEndpointError({ kind: "rateLimited", reason: "RateLimited", message: "429", retryAfterHeader: "30" }),
    );
    await expect(issuer.fetch(req(), { reason: "NoToken" })).rejects.toBeInstanceOf(TokenEndpointError);
    ep.fail(undefined);
    const p = issuer.fetch(req({ scopes: ["other.scope"] }), { reason: "NoToken" });
    await flush();
    expect(waits[0]?.delayMs).toBe(30_000);
    expect(ep.requests).toHaveLength(1);
    const forced = await issuer.fetch(req({ scopes: ["third"] }), { reason: "RefreshRequested" });
    expect(forced.accessToken).toBe("token-1");
    await time.advance(30_000);
    await p;
    expect(ep.requests).toHaveLength(3);
  });

  it("a 503 with Retry-After blocks the client as a 429 does; one without it does not (RFC 9110 §10.2.3)", async () => {
    const { ep, issuer, time, waits } = setup({ limits: [{ limit: 100, windowMs: 1_000 }] });
    const unavailable = (retryAfterHeader?: string) =>
      new TokenEndpointError({
        kind: "transient",
        reason: "TokenEndpointUnavailable",
        message: "503",
        ...(retryAfterHeader ? { retryAfterHeader } : {}),
      });
    ep.fail(unavailable());
    await expect(issuer.fetch(req(), { reason: "NoToken" })).rejects.toBeInstanceOf(TokenEndpointError);
    ep.fail(unavailable("120"));
    await expect(issuer.fetch(req({ scopes: ["b"] }), { reason: "NoToken" })).rejects.toBeInstanceOf(
      TokenEndpointError,
    );
    expect(waits).toHaveLength(0); // the first 503 (no Retry-After) held nothing
    ep.fail(undefined);
    const p = issuer.fetch(req({ scopes: ["c"] }), { reason: "NoToken" });
    await flush();
    expect(waits[0]?.delayMs).toBe(120_000);
    expect(ep.requests).toHaveLength(2);
    await time.advance(120_000);
    await p;
    expect(ep.requests).toHaveLength(3);
  });

  it("close() fails requests waiting for the limiter at once and refuses new fetches", async () => {
    const { issuer } = setup({ limits: [{ limit: 1, windowMs: 3_600_000 }] });
    await issuer.fetch(req(), {});
    const waiting = issuer.fetch(req({ scopes: ["x"] }), {});
    await flush();
    issuer.close();
    await expect(waiting).rejects.toBeInstanceOf(IssuerClosedError);
    await expect(issuer.fetch(req(), {})).rejects.toBeInstanceOf(IssuerClosedError);
  });
});

describe("Issuer.fromFlags", () => {
  it("holds a credential failure for the backoff it is given (scaled by the test-only option, 1 by default)", async () => {
    let requests = 0;
    const client: TokenFetcher = {
      fetchToken: () => {
        requests++;
        return Promise.reject(new TokenEndpointError({ kind: "credential", reason: "InvalidClient", message: "no" }));
      },
    };
    const fetch = (issuer: Issuer) =>
      issuer.fetchToken({ request: req(), keys: issuer.keysFor(req(), {}) }, { reason: "NoToken" }).catch(() => {});
    const unscaled = Issuer.fromFlags(client, { issuanceLimits: "none" });
    await fetch(unscaled);
    await new Promise((r) => setTimeout(r, 100));
    await fetch(unscaled);
    expect(requests).toBe(1); // the credential failure is held 30 s
    const scaled = Issuer.fromFlags(client, { issuanceLimits: "none" }, undefined, { backoffScale: 0.001 });
    await fetch(scaled);
    await new Promise((r) => setTimeout(r, 100));
    await fetch(scaled);
    expect(requests).toBe(3); // held 30 ms
  });
});

describe("Issuer: failures", () => {
  it("shares a failure with every caller of the request; a transient failure is not held", async () => {
    const { ep, issuer } = setup();
    ep.fail(new TokenEndpointError({ kind: "transient", reason: "TokenEndpointUnavailable", message: "503" }));
    const r = await Promise.allSettled(Array.from({ length: 5 }, () => issuer.fetch(req(), { reason: "RenewalDue" })));
    expect(r.every((x) => x.status === "rejected" && x.reason instanceof TokenEndpointError)).toBe(true);
    expect(ep.requests).toHaveLength(1);
    ep.fail(undefined);
    expect((await issuer.fetch(req(), { reason: "RenewalDue" })).accessToken).toBe("token-1");
    expect(ep.requests).toHaveLength(2);
  });

  it("holds a credential error for ordinary callers; forcing callers and the end of the hold ask again", async () => {
    const { ep, issuer, time } = setup();
    ep.fail(new TokenEndpointError({ kind: "credential", reason: "InvalidClient", message: "invalid_client" }));
    await expect(issuer.fetch(req(), { reason: "NoToken" })).rejects.toBeInstanceOf(TokenEndpointError);
    await time.advance(10);
    for (let i = 0; i < 20; i++) {
      await expect(issuer.fetch(req(), { reason: "NoToken" })).rejects.toBeInstanceOf(TokenEndpointError);
    }
    expect(ep.requests).toHaveLength(1);
    ep.fail(undefined);
    expect((await issuer.fetch(req(), { reason: "SpecChanged" })).accessToken).toBe("token-1");
    expect(ep.requests).toHaveLength(2);
  });

  it("a credential error hold ends after credentialFailureHoldMs", async () => {
    const { ep, issuer, time } = setup();
    ep.fail(new TokenEndpointError({ kind: "credential", reason: "InvalidClient", message: "invalid_client" }));
    await expect(issuer.fetch(req(), { reason: "NoToken" })).rejects.toBeInstanceOf(TokenEndpointError);
    ep.fail(undefined);
    await time.advance(30_000);
    expect((await issuer.fetch(req(), { reason: "NoToken" })).accessToken).toBe("token-1");
  });
});

describe("Issuer: RefreshToken grant", () => {
  const rt = (over: Partial<TokenRequest> = {}) => req({ grant: "RefreshToken", refreshToken: "stale-rt", ...over });

  it("presents the token the Secret holds now and stores the rotated one before any caller gets the access token; joiners share", async () => {
    const { ep, issuer } = setup();
    ep.rotate(true);
    const m = memoryStore("ns/creds", "rt-1");
    let unblock!: () => void;
    const persisted = new Promise<void>((r) => (unblock = r));
    const slow: RefreshTokenStore<StoredRefreshToken & { version: number }> = {
      ...m.store,
      persist: async (used, rotated) => {
        await persisted;
        return m.store.persist(used, rotated);
      },
    };
    const order: string[] = [];
    const scope = { credentialsRef: "ns/creds" };
    const a = issuer.fetch(rt(), { refreshTokens: slow }, scope).then((t) => order.push(`a:${t.accessToken}`));
    const b = issuer.fetch(rt(), { refreshTokens: slow }, scope).then((t) => order.push(`b:${t.accessToken}`));
    await flush();
    expect(m.log).toEqual([]);
    expect(order).toEqual([]);
    expect(ep.requests.map((r) => r.refreshToken)).toEqual(["rt-1"]); // not the caller's stale copy
    unblock();
    await Promise.all([a, b]);
    expect(m.log).toEqual(["persist:rt-1+"]);
    expect(m.value()).toBe("rt-1+");
    expect(order.sort()).toEqual(["a:token-1", "b:token-1"]);
    expect(ep.requests).toHaveLength(1);
  });

  it("never shares across credentials Secrets, and one credentials Secret has one request in flight at a time", async () => {
    const { ep, issuer } = setup();
    ep.hold();
    const creds = memoryStore("ns/creds", "rt-1").store;
    const other = memoryStore("ns/other", "rt-9").store;
    const x = issuer.fetch(rt({ scopes: ["a"] }), { refreshTokens: creds }, { credentialsRef: "ns/creds" });
    const y = issuer.fetch(rt({ scopes: ["b"] }), { refreshTokens: creds }, { credentialsRef: "ns/creds" });
    const z = issuer.fetch(rt({ scopes: ["a"] }), { refreshTokens: other }, { credentialsRef: "ns/other" });
    await flush();
    expect(ep.requests).toHaveLength(2); // x and z (different Secrets); y waits for x's Secret
    ep.release();
    await Promise.all([x, y, z]);
    expect(ep.requests).toHaveLength(3);
  });

  it("a new credentials version (e.g. a new login's refresh-token lineage) never gets the previous version's token", async () => {
    const { ep, issuer } = setup();
    const refreshTokens = memoryStore("ns/creds", "rt-1").store;
    const ctx = { refreshTokens, reason: "NoToken" as const };
    await issuer.fetch(rt(), ctx, { credentialsRef: "ns/creds", credentialsVersion: "lineage-1" });
    expect(
      (await issuer.fetch(rt(), ctx, { credentialsRef: "ns/creds", credentialsVersion: "lineage-1" })).accessToken,
    ).toBe("token-1");
    expect(
      (await issuer.fetch(rt(), ctx, { credentialsRef: "ns/creds", credentialsVersion: "lineage-2" })).accessToken,
    ).toBe("token-2");
    expect(ep.requests).toHaveLength(2);
  });

  it("after a rotation, another fetch of the Secret presents the rotated token, never the consumed one", async () => {
    const { ep, issuer } = setup();
    ep.rotate(true);
    const m = memoryStore("ns/creds", "rt-1");
    await issuer.fetch(rt({ scopes: ["a"] }), { refreshTokens: m.store }, { credentialsRef: "ns/creds" });
    await issuer.fetch(rt({ scopes: ["b"] }), { refreshTokens: m.store }, { credentialsRef: "ns/creds" });
    expect(ep.requests.map((r) => r.refreshToken)).toEqual(["rt-1", "rt-1+"]);
    expect(m.value()).toBe("rt-1++");
  });

  it("a storage failure fails the fetch, caches nothing, and the kept token is stored before the next request", async () => {
    const { ep, issuer, guard } = setup();
    ep.rotate(true);
    const boom = new Error("409 after retries");
    const failing = memoryStore("ns/c", "rt-1", { failPersist: boom });
    await expect(issuer.fetch(rt(), { refreshTokens: failing.store }, { credentialsRef: "ns/c" })).rejects.toBe(boom);
    expect(issuer.stats().cachedTokens).toBe(0);
    expect(guard.pendingCount()).toBe(1);
  });

  it("refuses a RefreshToken fetch without a refresh-token store", async () => {
    const { ep, issuer } = setup();
    await expect(issuer.fetch(rt(), {}, { credentialsRef: "ns/c" })).rejects.toThrow(/refresh-token store/);
    expect(ep.requests).toHaveLength(0);
  });
});
