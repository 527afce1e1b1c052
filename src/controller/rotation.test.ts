import { describe, it, expect } from "vitest";
import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { refreshTokenDigest, refreshTokenLineage, secretValue } from "./credentials.ts";
import { RefreshTokenRotation, refreshTokenInvalidMessage } from "./rotation.ts";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const REF = { namespace: "ns", name: "creds", key: "refreshToken" };
const REQUEST: TokenRequest = {
  tokenUrl: "https://id.example/connect/token",
  grant: "RefreshToken",
  clientAuthentication: "ClientSecretPost",
  clientId: "app",
  clientSecret: "app-secret",
  refreshToken: "stale-value-from-the-caller",
  scopes: ["design.domain"],
};

/** In-memory Secret: GET, and JSON merge PATCH with a resourceVersion precondition (409), like the API server. */
function fakeKube(token: string, hooks: { failPatches?: number } = {}) {
  let rv = 1;
  let failures = hooks.failPatches ?? 0;
  let current: Secret = {
    metadata: { name: "creds", namespace: "ns", resourceVersion: "1", annotations: {} },
    data: { refreshToken: b64(token) },
  };
  const kube = {
    async request<T>(method: string, _path: string, o: { body?: unknown } = {}): Promise<T> {
      if (method === "GET") return structuredClone(current) as T;
      if (method !== "PATCH") throw new Error(`unexpected ${method}`);
      if (failures > 0) {
        failures--;
        throw new KubeApiError(503, "ServiceUnavailable", "etcd is unavailable");
      }
      const body = o.body as {
        metadata?: { resourceVersion?: string; annotations?: Record<string, string | null> };
        data?: Record<string, string>;
      };
      if (body.metadata?.resourceVersion && body.metadata.resourceVersion !== current.metadata.resourceVersion) {
        throw new KubeApiError(409, "Conflict", "the object has been modified");
      }
      const annotations: Record<string, string> = { ...current.metadata.annotations };
      for (const [k, v] of Object.entries(body.metadata?.annotations ?? {})) {
        if (v === null) delete annotations[k];
        else annotations[k] = v;
      }
      current = {
        metadata: { ...current.metadata, annotations, resourceVersion: String(++rv) },
        data: { ...current.data, ...body.data },
      };
      return structuredClone(current) as T;
    },
    async getOrUndefined<T>(path: string): Promise<T | undefined> {
      return kube.request<T>("GET", path);
    },
  };
  return {
    kube: kube as unknown as KubeClient,
    token: () => secretValue(current, "refreshToken"),
    secret: () => current,
    /** Another writer (a new `login`) replaces the token. */
    login(t: string) {
      current = {
        metadata: { ...current.metadata, resourceVersion: String(++rv) },
        data: { ...current.data, refreshToken: b64(t) },
      };
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
    async fetch(req: TokenRequest, persist: (rotated: string) => Promise<void>): Promise<IssuedToken> {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await new Promise((r) => setTimeout(r, 5));
        const rt = req.refreshToken as string;
        presented.push(rt);
        if (!valid.delete(rt)) {
          throw new TokenEndpointError({ kind: "credential", reason: "InvalidGrant", message: "invalid_grant" });
        }
        const rotated = `rt-${++n}`;
        valid.add(rotated);
        await persist(rotated);
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

describe("RefreshTokenRotation", () => {
  it("uses the token the Secret holds now, stores the rotated one, keeps the lineage", async () => {
    const k = fakeKube("rt-0");
    const server = rotatingServer("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    const lineage = refreshTokenLineage(k.secret(), "refreshToken");
    const t = await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p));
    expect(t.accessToken).toBe("at-1");
    expect(server.presented).toEqual(["rt-0"]);
    expect(k.token()).toBe("rt-1");
    expect(refreshTokenLineage(k.secret(), "refreshToken")).toBe(lineage);
  });

  it("never presents one refresh token twice, even for concurrent callers sharing the Secret", async () => {
    const k = fakeKube("rt-0");
    const server = rotatingServer("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p))),
    );
    expect(results.map((t) => t.accessToken).sort()).toHaveLength(8);
    expect(new Set(server.presented).size).toBe(8);
    expect(server.maxInFlight()).toBe(1);
    expect(k.token()).toBe("rt-8");
  });

  it("keeps a rotated token whose write failed and stores it before the next fetch", async () => {
    const k = fakeKube("rt-0", { failPatches: 1 });
    const server = rotatingServer("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    await expect(rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p))).rejects.toThrow(KubeApiError);
    expect(k.token()).toBe("rt-0"); // not written; rt-0 is consumed at the server
    expect(rotation.pendingCount()).toBe(1);
    const t = await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p));
    expect(t.accessToken).toBe("at-2");
    expect(server.presented).toEqual(["rt-0", "rt-1"]); // rt-0 never presented again
    expect(k.token()).toBe("rt-2");
    expect(rotation.pendingCount()).toBe(0);
  });

  it("does not fetch while the kept token cannot be written", async () => {
    const k = fakeKube("rt-0", { failPatches: 2 });
    const server = rotatingServer("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    await expect(rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p))).rejects.toThrow(KubeApiError);
    await expect(rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p))).rejects.toThrow(KubeApiError);
    expect(server.presented).toEqual(["rt-0"]);
    await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p));
    expect(server.presented).toEqual(["rt-0", "rt-1"]);
  });

  it("drops a kept token when a new login replaced the consumed one, and uses the login's", async () => {
    const k = fakeKube("rt-0", { failPatches: 1 });
    const server = rotatingServer("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    await expect(rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p))).rejects.toThrow(KubeApiError);
    k.login("rt-login");
    server.add("rt-login");
    await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p));
    expect(server.presented).toEqual(["rt-0", "rt-login"]);
    expect(rotation.pendingCount()).toBe(0);
  });

  it("refuses, without a request, a token it saw consumed (e.g. an old Secret restored)", async () => {
    const k = fakeKube("rt-0");
    const server = rotatingServer("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p));
    k.login("rt-0"); // restored from a manifest
    const err = await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenEndpointError);
    expect((err as TokenEndpointError).reason).toBe("InvalidGrant");
    expect((err as TokenEndpointError).kind).toBe("credential");
    expect(server.presented).toEqual(["rt-0"]);
  });

  it("after invalid_grant, a NexarToken sharing the Secret does not present the dead token again", async () => {
    const k = fakeKube("rt-revoked");
    const server = rotatingServer("something-else");
    const rotation = new RefreshTokenRotation(k.kube);
    const first = await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p)).catch((e: unknown) => e);
    const second = await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p)).catch((e: unknown) => e);
    expect((first as TokenEndpointError).reason).toBe("InvalidGrant");
    expect((second as TokenEndpointError).reason).toBe("InvalidGrant");
    expect(server.presented).toEqual(["rt-revoked"]);
    // a new login's token is used at once
    k.login("rt-new");
    server.add("rt-new");
    await rotation.fetch(REF, REQUEST, (r, p) => server.fetch(r, p));
    expect(server.presented).toEqual(["rt-revoked", "rt-new"]);
  });

  it("stores nothing when the server does not rotate", async () => {
    const k = fakeKube("rt-0");
    const rotation = new RefreshTokenRotation(k.kube);
    const t = await rotation.fetch(REF, REQUEST, async (req) => ({
      accessToken: `at-for-${refreshTokenDigest(req.refreshToken as string)}`,
      tokenType: "Bearer",
      scopes: [],
      receivedAtMs: 0,
      expiresAtMs: 1,
      lifetimeSource: "expires_in",
    }));
    expect(t.accessToken).toBe(`at-for-${refreshTokenDigest("rt-0")}`);
    expect(k.token()).toBe("rt-0");
    expect(k.secret().metadata.resourceVersion).toBe("1");
  });
});

describe("refreshTokenInvalidMessage", () => {
  it("tells the user to run login for that Secret", () => {
    const m = refreshTokenInvalidMessage("design", "nexar-credentials", "grant is invalid");
    expect(m).toContain("nexar-token-operator login --namespace design --secret nexar-credentials");
    expect(m).toContain("grant is invalid");
  });
});
