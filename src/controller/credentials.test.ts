import { describe, it, expect } from "vitest";
import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { SecretsApi } from "../kube/secrets.ts";
import {
  ANNOTATION_REFRESH_ROTATION,
  CredentialsCache,
  fingerprintOf,
  legacyFingerprintOf,
  persistRefreshToken,
  refreshTokenStore,
  refreshTokenDigest,
  refreshTokenLineage,
  rotationAnnotation,
  secretValue,
} from "./credentials.ts";
import { createHash } from "node:crypto";

/** A fixed fingerprint key. */
const KEY = Buffer.alloc(32, 1);

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

describe("CredentialsCache (one credentials value per Secret version and spec)", () => {
  const spec = {
    tokenUrl: "https://identity.nexar.com/connect/token",
    grant: "ClientCredentials" as const,
    clientAuthentication: "ClientSecretPost" as const,
    credentialsSecretRef: {
      name: "nexar-app",
      clientIdKey: "clientId",
      clientSecretKey: "clientSecret",
      refreshTokenKey: "refreshToken",
    },
    scopes: ["supply.domain"],
    fallbackLifetimeSeconds: undefined,
  };
  const creds = (clientSecret: string, rv: string): Secret => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "nexar-app", namespace: "ns", resourceVersion: rv },
    data: { clientId: b64("app"), clientSecret: b64(`${clientSecret}\n`), refreshToken: b64("rt-0") },
  });
  function setup(initial: Secret | undefined) {
    let current = initial;
    let gets = 0;
    let keyed = 0;
    let release: (() => void) | undefined;
    const secrets = {
      get: async () => {
        gets++;
        if (release === undefined) return current;
        await new Promise<void>((r) => (release = r));
        return current;
      },
    } as unknown as SecretsApi;
    const tokens = {
      keysFor: (r: { clientSecret: string }, scope: object) => {
        keyed++;
        return { share: `share:${r.clientSecret}:${JSON.stringify(scope)}`, client: "client", secret: r.clientSecret };
      },
    };
    let seen: string | undefined = initial?.metadata.resourceVersion;
    const cache = new CredentialsCache(secrets, tokens, {
      fingerprintKey: KEY,
      versionOf: () => seen,
      fallbackLifetimeSeconds: 900,
    });
    return {
      cache,
      gets: () => gets,
      keyed: () => keyed,
      set(s: Secret | undefined) {
        current = s;
        seen = s?.metadata.resourceVersion;
      },
      hold() {
        release = () => {};
      },
      open() {
        const r = release;
        release = undefined;
        r?.();
      },
    };
  }

  it("reads a Secret once while the watch reports the version read, and builds each spec's value once", async () => {
    const t = setup(creds("s3cr3t", "1"));
    const a = await t.cache.get("ns", spec);
    const b = await t.cache.get("ns", { ...spec, credentialsSecretRef: { ...spec.credentialsSecretRef } });
    if (!a.found || "error" in a) throw new Error("expected a value");
    expect(b).toBe(a);
    expect(t.gets()).toBe(1);
    expect(t.keyed()).toBe(1);
    expect(a.credential.request).toMatchObject({ clientId: "app", clientSecret: "s3cr3t", scopes: ["supply.domain"] });
    expect(Object.isFrozen(a.credential.request)).toBe(true);
    expect(a.credential.fallbackLifetimeSeconds).toBe(900); // the operator's default
    expect(a.fingerprint).toBe(fingerprintOf(KEY, a.credential.request, { fallbackLifetimeSeconds: 900 }));
    expect(a.legacyFingerprint).toBe(legacyFingerprintOf(a.credential.request));
    expect(a).toMatchObject({ ref: "ns/nexar-app", resourceVersion: "1", lineage: undefined, refreshToken: undefined });
    // another spec variant of the same Secret version: built, not read again
    const other = await t.cache.get("ns", { ...spec, scopes: ["supply.domain", "user.access"] });
    expect(t.gets()).toBe(1);
    expect(other).not.toBe(a);
  });

  it("reads again when the watch reports a new version, and the new secret gives a new fingerprint", async () => {
    const t = setup(creds("s3cr3t", "1"));
    const a = await t.cache.get("ns", spec);
    t.set(creds("n3w-s3cr3t", "2"));
    const b = await t.cache.get("ns", spec);
    if (!a.found || "error" in a || !b.found || "error" in b) throw new Error("expected values");
    expect(t.gets()).toBe(2);
    expect(b.credential.request.clientSecret).toBe("n3w-s3cr3t");
    expect(b.fingerprint).not.toBe(a.fingerprint);
    expect(b.resourceVersion).toBe("2");
  });

  it("concurrent reconciles sharing a Secret wait for one GET", async () => {
    const t = setup(creds("s3cr3t", "1"));
    t.set(creds("s3cr3t", "1"));
    t.hold();
    const all = Promise.all(Array.from({ length: 20 }, () => t.cache.get("ns", spec)));
    await new Promise((r) => setImmediate(r));
    t.open();
    const values = await all;
    expect(t.gets()).toBe(1);
    expect(new Set(values).size).toBe(1);
  });

  it("a missing Secret, or one lacking keys (named, never their values)", async () => {
    expect(await setup(undefined).cache.get("ns", spec)).toEqual({ found: false });
    const t = setup(creds("s3cr3t", "1"));
    expect(
      await t.cache.get("ns", {
        ...spec,
        credentialsSecretRef: { ...spec.credentialsSecretRef, clientSecretKey: "secret" },
      }),
    ).toEqual({ found: true, error: 'credentials Secret "nexar-app" lacks non-empty key(s): secret' });
  });

  it("RefreshToken grant: the lineage and credentials Secret are part of the value and of the share key", async () => {
    const t = setup(creds("s3cr3t", "1"));
    const v = await t.cache.get("ns", { ...spec, grant: "RefreshToken", scopes: ["design.domain"] });
    if (!v.found || "error" in v) throw new Error("expected a value");
    expect(v.lineage).toBe(refreshTokenDigest("rt-0"));
    expect(v.refreshToken).toEqual({ namespace: "ns", name: "nexar-app", key: "refreshToken" });
    expect(v.fingerprint).toBe(
      fingerprintOf(KEY, v.credential.request, { lineage: v.lineage, fallbackLifetimeSeconds: 900 }),
    );
    expect(v.credential.keys.share).toContain(`"credentialsRef":"ns/nexar-app"`);
    expect(v.credential.keys.share).toContain(`"credentialsVersion":"${v.lineage}"`);
  });
});

describe("fingerprintOf", () => {
  const req = {
    tokenUrl: "https://identity.nexar.com/connect/token",
    grant: "ClientCredentials" as const,
    clientAuthentication: "ClientSecretPost" as const,
    clientId: "app",
    clientSecret: "s3cr3t",
    scopes: ["a", "b"],
  };
  it("changes with every input but the scope order, and never contains the secret", () => {
    const fp = fingerprintOf(KEY, req);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(fingerprintOf(KEY, { ...req, scopes: ["b", "a", "a"] })).toBe(fp);
    for (const other of [
      { ...req, clientSecret: "other" },
      { ...req, clientId: "other" },
      { ...req, tokenUrl: "https://other.example/token" },
      { ...req, clientAuthentication: "ClientSecretBasic" as const },
      { ...req, scopes: ["a"] },
    ]) {
      expect(fingerprintOf(KEY, other)).not.toBe(fp);
    }
    expect(fingerprintOf(KEY, req, { lineage: "lineage-1" })).not.toBe(
      fingerprintOf(KEY, req, { lineage: "lineage-2" }),
    );
    expect(fingerprintOf(KEY, req, { fallbackLifetimeSeconds: 600 })).not.toBe(fp);
    expect(fp).not.toContain("s3cr3t");
  });

  it("is keyed: another key gives another fingerprint, and none equals the unkeyed legacy one", () => {
    const fp = fingerprintOf(KEY, req);
    expect(fingerprintOf(Buffer.alloc(32, 2), req)).not.toBe(fp);
    // Without the key, a guess of the client secret cannot be tested against the annotation.
    expect(fp).not.toBe(legacyFingerprintOf(req));
    expect(legacyFingerprintOf(req)).toBe(
      createHash("sha256")
        .update(
          [
            "nexar-token-operator/v1",
            req.tokenUrl,
            req.grant,
            req.clientAuthentication,
            req.clientId,
            req.clientSecret,
            "a b",
            "",
          ].join("\0"),
        )
        .digest("hex"),
    );
  });
});

describe("refreshTokenStore", () => {
  it("reads the Secret fresh each time, and stores a rotated token with the rotation annotation", async () => {
    const f = fakeKube(secret("rt-0"));
    const store = refreshTokenStore(f.kube, { namespace: "ns", name: "creds", key: "refreshToken" });
    expect(store.secret).toBe("ns/creds");
    const used = await store.read();
    expect(used.value).toBe("rt-0");
    expect(await store.persist(used, "rt-1")).toBe("stored");
    expect((await store.read()).value).toBe("rt-1");
    expect(refreshTokenLineage(f.get(), "refreshToken")).toBe(refreshTokenDigest("rt-0"));
    expect(await store.persist(used, "rt-2")).toBe("superseded"); // rt-0 is no longer there
  });

  it("names the Secret when it is gone", async () => {
    const gone = refreshTokenStore({ get: async () => undefined } as unknown as SecretsApi, {
      namespace: "ns",
      name: "creds",
      key: "refreshToken",
    });
    await expect(gone.read()).rejects.toThrow('credentials Secret "creds" not found in namespace "ns"');
  });
});
