import { describe, it, expect } from "vitest";
import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { SecretsApi } from "../kube/secrets.ts";
import {
  ANNOTATION_REFRESH_ROTATION,
  persistRefreshToken,
  refreshTokenDigest,
  refreshTokenLineage,
  rotationAnnotation,
  secretValue,
} from "./credentials.ts";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

function secret(token: string | undefined, annotations: Record<string, string> = {}, rv = "1"): Secret {
  return {
    metadata: { name: "creds", namespace: "ns", resourceVersion: rv, annotations },
    data: token === undefined ? {} : { refreshToken: b64(token) },
  };
}

/**
 * An in-memory Secret behind the two calls persistRefreshToken makes: GET, and a JSON merge
 * PATCH with an optional resourceVersion precondition (409 on mismatch), like the API server.
 */
function fakeKube(initial: Secret, hooks: { beforePatch?: (n: number) => void } = {}) {
  let current: Secret = structuredClone(initial);
  let rv = Number(initial.metadata.resourceVersion ?? "1");
  let patches = 0;
  const kube = {
    async request<T>(method: string, _path: string, o: { body?: unknown } = {}): Promise<T> {
      if (method === "GET") return structuredClone(current) as T;
      if (method === "PATCH") {
        patches++;
        hooks.beforePatch?.(patches);
        const body = o.body as {
          metadata?: { resourceVersion?: string; annotations?: Record<string, string | null> };
          data?: Record<string, string>;
        };
        if (body.metadata?.resourceVersion && body.metadata.resourceVersion !== current.metadata.resourceVersion) {
          throw new KubeApiError(409, "Conflict", "the object has been modified");
        }
        const annotations = { ...current.metadata.annotations };
        for (const [k, v] of Object.entries(body.metadata?.annotations ?? {})) {
          if (v === null) delete annotations[k];
          else annotations[k] = v;
        }
        current = {
          ...current,
          metadata: { ...current.metadata, annotations, resourceVersion: String(++rv) },
          data: { ...current.data, ...body.data },
        };
        return structuredClone(current) as T;
      }
      throw new Error(`unexpected ${method}`);
    },
    async getOrUndefined<T>(path: string): Promise<T | undefined> {
      return kube.request<T>("GET", path);
    },
  };
  return {
    kube: new SecretsApi(kube as unknown as KubeClient),
    get: () => current,
    /** Simulates another writer (e.g. `login`) replacing the token. */
    write(token: string, annotations?: Record<string, string>) {
      current = {
        ...current,
        metadata: {
          ...current.metadata,
          resourceVersion: String(++rv),
          annotations: annotations ?? current.metadata.annotations,
        },
        data: { ...current.data, refreshToken: b64(token) },
      };
    },
    patches: () => patches,
  };
}

describe("refresh token lineage", () => {
  it("is the token's own digest for a token written from outside", () => {
    expect(refreshTokenLineage(secret("rt-login"), "refreshToken")).toBe(refreshTokenDigest("rt-login"));
    expect(refreshTokenLineage(secret(undefined), "refreshToken")).toBeUndefined();
    expect(refreshTokenLineage(secret("  "), "refreshToken")).toBeUndefined();
  });

  it("stays put while the operator rotates, and changes when a new login writes a token", () => {
    const s0 = secret("rt-0");
    const lineage = refreshTokenLineage(s0, "refreshToken");
    const a1 = rotationAnnotation(s0, "refreshToken", "rt-0", "rt-1");
    const s1 = secret("rt-1", { [ANNOTATION_REFRESH_ROTATION]: a1 });
    expect(refreshTokenLineage(s1, "refreshToken")).toBe(lineage);
    const s2 = secret("rt-2", {
      [ANNOTATION_REFRESH_ROTATION]: rotationAnnotation(s1, "refreshToken", "rt-1", "rt-2"),
    });
    expect(refreshTokenLineage(s2, "refreshToken")).toBe(lineage);
    // a new login writes rt-new but leaves the (stale) annotation: a new lineage
    const s3 = secret("rt-new", s2.metadata.annotations);
    expect(refreshTokenLineage(s3, "refreshToken")).toBe(refreshTokenDigest("rt-new"));
  });

  it("ignores a malformed annotation and keeps entries of other keys", () => {
    expect(refreshTokenLineage(secret("rt", { [ANNOTATION_REFRESH_ROTATION]: "{nope" }), "refreshToken")).toBe(
      refreshTokenDigest("rt"),
    );
    const s = secret("rt", { [ANNOTATION_REFRESH_ROTATION]: JSON.stringify({ other: { digest: "x", lineage: "y" } }) });
    expect(JSON.parse(rotationAnnotation(s, "refreshToken", "rt", "rt2"))).toMatchObject({
      other: { digest: "x", lineage: "y" },
      refreshToken: { digest: refreshTokenDigest("rt2"), lineage: refreshTokenDigest("rt") },
    });
  });

  it("digests are one-way identifiers, not the token", () => {
    const d = refreshTokenDigest("a-refresh-token");
    expect(d).toMatch(/^[0-9a-f]{32}$/);
    expect(d).not.toContain("a-refresh-token");
    expect(refreshTokenDigest("a-refresh-token2")).not.toBe(d);
  });
});

describe("persistRefreshToken", () => {
  it("stores the rotated token and the rotation annotation with the read resourceVersion", async () => {
    const f = fakeKube(secret("rt-0"));
    const read = f.get();
    const r = await persistRefreshToken(
      f.kube,
      { namespace: "ns", name: "creds", key: "refreshToken" },
      { refreshToken: "rt-0", secret: read },
      "rt-1",
    );
    expect(r).toBe("stored");
    expect(secretValue(f.get(), "refreshToken")).toBe("rt-1");
    expect(refreshTokenLineage(f.get(), "refreshToken")).toBe(refreshTokenDigest("rt-0"));
  });

  it("retries after a conflict that left the token alone", async () => {
    const f = fakeKube(secret("rt-0"));
    const read = f.get();
    // something else (a label edit) bumps the resourceVersion
    f.write("rt-0");
    const r = await persistRefreshToken(
      f.kube,
      { namespace: "ns", name: "creds", key: "refreshToken" },
      { refreshToken: "rt-0", secret: read },
      "rt-1",
    );
    expect(r).toBe("stored");
    expect(f.patches()).toBe(2);
    expect(secretValue(f.get(), "refreshToken")).toBe("rt-1");
  });

  it("keeps a token a new login wrote meanwhile (superseded)", async () => {
    const f = fakeKube(secret("rt-0"));
    const read = f.get();
    f.write("rt-login");
    const r = await persistRefreshToken(
      f.kube,
      { namespace: "ns", name: "creds", key: "refreshToken" },
      { refreshToken: "rt-0", secret: read },
      "rt-1",
    );
    expect(r).toBe("superseded");
    expect(secretValue(f.get(), "refreshToken")).toBe("rt-login");
  });

  it("throws other API errors", async () => {
    const f = fakeKube(secret("rt-0"), {
      beforePatch: () => {
        throw new KubeApiError(403, "Forbidden", "forbidden");
      },
    });
    const read = f.get();
    await expect(
      persistRefreshToken(
        f.kube,
        { namespace: "ns", name: "creds", key: "refreshToken" },
        { refreshToken: "rt-0", secret: read },
        "rt-1",
      ),
    ).rejects.toThrow(KubeApiError);
    expect(secretValue(f.get(), "refreshToken")).toBe("rt-0");
  });
});
