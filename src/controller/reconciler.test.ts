import { describe, expect, it } from "vitest";
import type { Secret } from "../kube/client.ts";
import {
  BACKOFF_SCALE_ENV,
  backoffScaleFromEnv,
  DerivedCredentialsCache,
  fingerprintOf,
  writtenIsNewer,
} from "./reconciler.ts";

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

describe("writtenIsNewer (the status this process wrote against the informer's copy)", () => {
  const w = { uid: "u1", resourceVersion: "120" };
  it("is true only for the same uid and a higher integer resourceVersion", () => {
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "119" })).toBe(true);
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "120" })).toBe(false); // the echo arrived
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "121" })).toBe(false);
    // revisions compare as integers, not strings
    expect(writtenIsNewer({ uid: "u1", resourceVersion: "1000" }, { uid: "u1", resourceVersion: "999" })).toBe(true);
  });
  it("is false for another uid (deleted and recreated) or a resourceVersion that is not an integer", () => {
    expect(writtenIsNewer(w, { uid: "u2", resourceVersion: "1" })).toBe(false);
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: undefined })).toBe(false);
    expect(writtenIsNewer(w, { uid: "u1", resourceVersion: "abc" })).toBe(false);
    expect(writtenIsNewer({ uid: "u1", resourceVersion: "x1" }, { uid: "u1", resourceVersion: "1" })).toBe(false);
  });
});

describe("DerivedCredentialsCache (token request per credentials Secret object and spec)", () => {
  const b64 = (s: string) => Buffer.from(s).toString("base64");
  const secret = (clientSecret: string): Secret => ({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "nexar-app", namespace: "ns", resourceVersion: "1" },
    data: { clientId: b64("app"), clientSecret: b64(`${clientSecret}\n`) },
  });
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
  };

  it("returns the same frozen request for the same Secret object and spec fields", () => {
    const cache = new DerivedCredentialsCache();
    const s = secret("s3cr3t");
    const a = cache.get(s, spec);
    const b = cache.get(s, { ...spec, credentialsSecretRef: { ...spec.credentialsSecretRef } });
    if ("error" in a) throw new Error(a.error);
    expect(b).toBe(a);
    expect(Object.isFrozen(a.request)).toBe(true);
    expect(a.request).toMatchObject({ clientId: "app", clientSecret: "s3cr3t", scopes: ["supply.domain"] });
    expect(a.fingerprint).toBe(fingerprintOf(a.request, undefined));
  });

  it("derives again for another Secret object (a changed Secret) or other spec fields", () => {
    const cache = new DerivedCredentialsCache();
    const a = cache.get(secret("s3cr3t"), spec);
    const changed = cache.get(secret("n3w-s3cr3t"), spec);
    const otherScopes = cache.get(secret("s3cr3t"), { ...spec, scopes: ["supply.domain", "user.access"] });
    if ("error" in a || "error" in changed || "error" in otherScopes) throw new Error("unexpected error");
    expect(changed.request.clientSecret).toBe("n3w-s3cr3t");
    expect(changed.fingerprint).not.toBe(a.fingerprint);
    expect(otherScopes.fingerprint).not.toBe(a.fingerprint);
  });

  it("names missing keys without values", () => {
    const cache = new DerivedCredentialsCache();
    const s = secret("s3cr3t");
    const out = cache.get(s, {
      ...spec,
      credentialsSecretRef: { ...spec.credentialsSecretRef, clientSecretKey: "secret" },
    });
    expect(out).toEqual({ error: 'credentials Secret "nexar-app" lacks non-empty key(s): secret' });
  });
});
