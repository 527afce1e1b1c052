import { describe, it, expect } from "vitest";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { IssuedToken } from "../oauth/types.ts";
import { RefreshTokenGuard, refreshTokenDigest, type RefreshTokenStore, type StoredRefreshToken } from "./refresh.ts";

class StoreUnavailable extends Error {}

/**
 * A credentials Secret key in memory: reads, and writes with a version precondition ("superseded"
 * when the version moved), like the controller's store over the API server.
 */
function memoryStore(first: string, hooks: { failPersists?: number } = {}) {
  let value: string | undefined = first;
  let version = 1;
  let failures = hooks.failPersists ?? 0;
  const store: RefreshTokenStore<StoredRefreshToken & { version: number }> = {
    secret: "ns/creds",
    key: "refreshToken",
    read: () => Promise.resolve({ value, version }),
    persist: (used, rotated) => {
      if (failures > 0) {
        failures--;
        return Promise.reject(new StoreUnavailable("etcd is unavailable"));
      }
      if (used.version !== version) return Promise.resolve("superseded");
      value = rotated;
      version++;
      return Promise.resolve("stored");
    },
  };
  return {
    store,
    token: () => value,
    /** Another writer (a new `login`, a restore) replaces the token. */
    login(t: string) {
      value = t;
      version++;
    },
  };
}

/**
 * A token server with rotation: each refresh token works once; it records what was presented,
 * and how many requests overlapped.
 */
function rotatingServer(first: string) {
  const valid = new Set([first]);
  const presented: string[] = [];
  let n = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  return {
    presented,
    maxInFlight: () => maxInFlight,
    add: (t: string) => valid.add(t),
    async refresh(rt: string): Promise<IssuedToken> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await new Promise((r) => setTimeout(r, 5));
        presented.push(rt);
        if (!valid.delete(rt)) {
          throw new TokenEndpointError({ kind: "credential", reason: "InvalidGrant", message: "invalid_grant" });
        }
        const rotated = `rt-${++n}`;
        valid.add(rotated);
        return {
          accessToken: `at-${n}`,
          tokenType: "Bearer",
          scopes: ["design.domain"],
          receivedAtMs: 0,
          expiresAtMs: 3_600_000,
          lifetimeSource: "expires_in",
          refreshToken: rotated,
        };
      } finally {
        inFlight--;
      }
    },
  };
}

describe("RefreshTokenGuard", () => {
  it("uses the token the store holds now and stores the rotated one before returning", async () => {
    const k = memoryStore("rt-0");
    const server = rotatingServer("rt-0");
    const guard = new RefreshTokenGuard();
    const t = await guard.run(k.store, async (rt) => {
      const out = await server.refresh(rt);
      expect(k.token()).toBe("rt-0"); // not yet stored while the request runs
      return out;
    });
    expect(t.accessToken).toBe("at-1");
    expect(server.presented).toEqual(["rt-0"]);
    expect(k.token()).toBe("rt-1");
  });

  it("never presents one refresh token twice, even for concurrent callers sharing the Secret", async () => {
    const k = memoryStore("rt-0");
    const server = rotatingServer("rt-0");
    const guard = new RefreshTokenGuard();
    const results = await Promise.all(Array.from({ length: 8 }, () => guard.run(k.store, (rt) => server.refresh(rt))));
    expect(results.map((t) => t.accessToken).sort()).toHaveLength(8);
    expect(new Set(server.presented).size).toBe(8);
    expect(server.maxInFlight()).toBe(1);
    expect(k.token()).toBe("rt-8");
  });

  it("keeps a rotated token whose write failed and stores it before the next refresh", async () => {
    const k = memoryStore("rt-0", { failPersists: 1 });
    const server = rotatingServer("rt-0");
    const guard = new RefreshTokenGuard();
    await expect(guard.run(k.store, (rt) => server.refresh(rt))).rejects.toThrow(StoreUnavailable);
    expect(k.token()).toBe("rt-0"); // not written; rt-0 is consumed at the server
    expect(guard.pendingCount()).toBe(1);
    const t = await guard.run(k.store, (rt) => server.refresh(rt));
    expect(t.accessToken).toBe("at-2");
    expect(server.presented).toEqual(["rt-0", "rt-1"]); // rt-0 never presented again
    expect(k.token()).toBe("rt-2");
    expect(guard.pendingCount()).toBe(0);
  });

  it("does not refresh while the kept token cannot be written", async () => {
    const k = memoryStore("rt-0", { failPersists: 2 });
    const server = rotatingServer("rt-0");
    const guard = new RefreshTokenGuard();
    await expect(guard.run(k.store, (rt) => server.refresh(rt))).rejects.toThrow(StoreUnavailable);
    await expect(guard.run(k.store, (rt) => server.refresh(rt))).rejects.toThrow(StoreUnavailable);
    expect(server.presented).toEqual(["rt-0"]);
    await guard.run(k.store, (rt) => server.refresh(rt));
    expect(server.presented).toEqual(["rt-0", "rt-1"]);
  });

  it("drops a kept token when a new login replaced the consumed one, and uses the login's", async () => {
    const k = memoryStore("rt-0", { failPersists: 1 });
    const server = rotatingServer("rt-0");
    const guard = new RefreshTokenGuard();
    await expect(guard.run(k.store, (rt) => server.refresh(rt))).rejects.toThrow(StoreUnavailable);
    k.login("rt-login");
    server.add("rt-login");
    await guard.run(k.store, (rt) => server.refresh(rt));
    expect(server.presented).toEqual(["rt-0", "rt-login"]);
    expect(guard.pendingCount()).toBe(0);
  });

  it("refuses, without a request, a token it saw consumed (e.g. an old Secret restored)", async () => {
    const k = memoryStore("rt-0");
    const server = rotatingServer("rt-0");
    const guard = new RefreshTokenGuard();
    await guard.run(k.store, (rt) => server.refresh(rt));
    k.login("rt-0"); // restored from a manifest
    const err = await guard.run(k.store, (rt) => server.refresh(rt)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenEndpointError);
    expect((err as TokenEndpointError).reason).toBe("InvalidGrant");
    expect((err as TokenEndpointError).kind).toBe("credential");
    expect(server.presented).toEqual(["rt-0"]);
  });

  it("after invalid_grant, a NexarToken sharing the Secret does not present the dead token again", async () => {
    const k = memoryStore("rt-revoked");
    const server = rotatingServer("something-else");
    const guard = new RefreshTokenGuard();
    const first = await guard.run(k.store, (rt) => server.refresh(rt)).catch((e: unknown) => e);
    const second = await guard.run(k.store, (rt) => server.refresh(rt)).catch((e: unknown) => e);
    expect((first as TokenEndpointError).reason).toBe("InvalidGrant");
    expect((second as TokenEndpointError).reason).toBe("InvalidGrant");
    expect(server.presented).toEqual(["rt-revoked"]);
    // a new login's token is used at once
    k.login("rt-new");
    server.add("rt-new");
    await guard.run(k.store, (rt) => server.refresh(rt));
    expect(server.presented).toEqual(["rt-revoked", "rt-new"]);
  });

  it("stores nothing when the server does not rotate", async () => {
    const k = memoryStore("rt-0");
    const guard = new RefreshTokenGuard();
    const t = await guard.run(k.store, async (rt) => ({
      accessToken: `at-for-${refreshTokenDigest(rt)}`,
      tokenType: "Bearer",
      scopes: [],
      receivedAtMs: 0,
      expiresAtMs: 1,
      lifetimeSource: "expires_in",
    }));
    expect(t.accessToken).toBe(`at-for-${refreshTokenDigest("rt-0")}`);
    expect(k.token()).toBe("rt-0");
  });

  it("fails with a message naming the Secret and key, never a token, when the store holds none", async () => {
    const k = memoryStore("rt-0");
    k.login(undefined as unknown as string);
    const guard = new RefreshTokenGuard();
    await expect(guard.run(k.store, () => Promise.reject(new Error("not called")))).rejects.toThrow(
      'credentials Secret "ns/creds" lacks a non-empty key "refreshToken"',
    );
  });
});

describe("refreshTokenDigest", () => {
  it("is a one-way 128-bit hex identifier, not the token", () => {
    const d = refreshTokenDigest("rt-secret-value");
    expect(d).toMatch(/^[0-9a-f]{32}$/);
    expect(d).not.toContain("rt-secret");
    expect(refreshTokenDigest("rt-secret-value")).toBe(d);
    expect(refreshTokenDigest("rt-other")).not.toBe(d);
  });
});
