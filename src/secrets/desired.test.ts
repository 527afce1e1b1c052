import { describe, it, expect } from "vitest";
import {
  desiredSecret,
  JWT_EXP_TOLERANCE_MS,
  planSecretWrite,
  storedToken,
  storedTokenMismatch,
  rfc3339,
  type ResolvedTarget,
} from "./desired.ts";
import { checkOwnership } from "./ownership.ts";
import type { Secret } from "../kube/client.ts";

const owner = {
  apiVersion: "nexar-operator.io/v1alpha1",
  kind: "NexarToken",
  namespace: "parts",
  name: "supply",
  uid: "u-1",
};
const target: ResolvedTarget = {
  name: "supply-token",
  type: "Opaque",
  creationPolicy: "Owner",
  adopt: false,
  labels: { team: "parts" },
  annotations: { note: "x" },
  template: { Authorization: "Bearer {{access_token}}", ".env": "NEXAR_TOKEN={{access_token}}\nEXP={{expires_at}}" },
};
const token = {
  accessToken: "eyJ.token&<>",
  tokenType: "Bearer",
  scopes: ["supply.domain"],
  expiresAtMs: Date.parse("2026-12-01T10:00:00.750Z"),
  receivedAtMs: Date.parse("2026-11-30T10:00:00Z"),
};
const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("desiredSecret", () => {
  const d = desiredSecret(owner, target, token, "fp");
  it("writes the OAuth default keys with RFC 3339 UTC expiry", () => {
    expect(d.stringData).toMatchObject({
      access_token: "eyJ.token&<>",
      token_type: "Bearer",
      expires_at: "2026-12-01T10:00:00Z",
      scope: "supply.domain",
    });
  });
  it("renders templates without HTML escaping", () => {
    expect(d.stringData.Authorization).toBe("Bearer eyJ.token&<>");
    expect(d.stringData[".env"]).toBe("NEXAR_TOKEN=eyJ.token&<>\nEXP=2026-12-01T10:00:00Z");
  });
  it("labels, annotates and owns the Secret", () => {
    expect(d.labels).toEqual({ team: "parts", "app.kubernetes.io/managed-by": "nexar-token-operator" });
    expect(d.annotations).toMatchObject({
      note: "x",
      "nexar-operator.io/owner": "parts/supply",
      "nexar-operator.io/expires-at": "2026-12-01T10:00:00Z",
    });
    expect(d.ownerReference).toMatchObject({ uid: "u-1", controller: true, kind: "NexarToken" });
  });
  it("has no ownerReference for Orphan and Merge", () => {
    expect(desiredSecret(owner, { ...target, creationPolicy: "Orphan" }, token, "fp").ownerReference).toBeUndefined();
    expect(desiredSecret(owner, { ...target, creationPolicy: "Merge" }, token, "fp").ownerReference).toBeUndefined();
  });
  it("reports a broken template by key, without values", () => {
    expect(() => desiredSecret(owner, { ...target, template: { bad: "{{#x}}" } }, token, "fp")).toThrow(/key "bad"/);
  });
});

describe("planSecretWrite", () => {
  const d = desiredSecret(owner, target, token, "fp");
  const created = planSecretWrite(undefined, d, "Owner");
  if (created.action !== "create") throw new Error("expected create");
  const existing: Secret = {
    ...created.secret,
    metadata: { ...created.secret.metadata, resourceVersion: "7", uid: "s-1" },
  };

  it("creates a missing Secret with base64 data", () => {
    expect(created.secret.data?.access_token).toBe(b64("eyJ.token&<>"));
    expect(created.secret.metadata.ownerReferences).toHaveLength(1);
  });
  it("writes nothing when nothing differs", () => {
    expect(planSecretWrite(existing, d, "Owner")).toEqual({ action: "none" });
  });
  it("repairs drifted data, keeping others' labels and annotations and the resourceVersion", () => {
    const drifted: Secret = {
      ...existing,
      metadata: {
        ...existing.metadata,
        labels: { ...existing.metadata.labels, reloader: "on" },
        annotations: { ...existing.metadata.annotations, "other/x": "1" },
      },
      data: { ...existing.data, access_token: b64("hand-edited"), extra: b64("x") },
    };
    const plan = planSecretWrite(drifted, d, "Owner");
    expect(plan.action).toBe("update");
    if (plan.action !== "update") return;
    expect(plan.secret.metadata.resourceVersion).toBe("7");
    expect(plan.secret.data?.access_token).toBe(b64("eyJ.token&<>"));
    expect(plan.secret.data?.extra).toBeUndefined();
    expect(plan.secret.metadata.labels?.reloader).toBe("on");
    expect(plan.secret.metadata.annotations?.["other/x"]).toBe("1");
  });
  it("Merge keeps data keys it does not own", () => {
    const dm = desiredSecret(owner, { ...target, creationPolicy: "Merge" }, token, "fp");
    const foreign: Secret = {
      metadata: { name: "supply-token", namespace: "parts", resourceVersion: "3" },
      type: "Opaque",
      data: { theirs: b64("keep") },
    };
    const plan = planSecretWrite(foreign, dm, "Merge");
    expect(plan.action).toBe("update");
    if (plan.action === "update") {
      expect(plan.secret.data?.theirs).toBe(b64("keep"));
      expect(plan.secret.data?.access_token).toBe(b64("eyJ.token&<>"));
    }
  });
  it("recreates when the immutable type changes", () => {
    const plan = planSecretWrite(
      existing,
      desiredSecret(owner, { ...target, type: "example.com/token" }, token, "fp"),
      "Owner",
    );
    expect(plan.action).toBe("recreate");
  });
  it("replaces a stale ownerReference to a re-created NexarToken of the same name", () => {
    const stale: Secret = {
      ...existing,
      metadata: {
        ...existing.metadata,
        ownerReferences: [
          { apiVersion: owner.apiVersion, kind: "NexarToken", name: "supply", uid: "old", controller: true },
        ],
      },
    };
    const plan = planSecretWrite(stale, d, "Owner");
    expect(plan.action).toBe("update");
    if (plan.action === "update") expect(plan.secret.metadata.ownerReferences?.map((r) => r.uid)).toEqual(["u-1"]);
  });
  it.each(["Orphan", "Merge"] as const)(
    "a switch Owner → %s removes the operator's ownerReference and keeps others'",
    (policy) => {
      const theirs = { apiVersion: "apps/v1", kind: "Deployment", name: "app", uid: "d-1" };
      const owned: Secret = {
        ...existing,
        metadata: { ...existing.metadata, ownerReferences: [theirs, ...(existing.metadata.ownerReferences ?? [])] },
      };
      const plan = planSecretWrite(
        owned,
        desiredSecret(owner, { ...target, creationPolicy: policy }, token, "fp"),
        policy,
      );
      expect(plan.action).toBe("update");
      if (plan.action === "update") expect(plan.secret.metadata.ownerReferences).toEqual([theirs]);
      const alone = planSecretWrite(
        existing,
        desiredSecret(owner, { ...target, creationPolicy: policy }, token, "fp"),
        policy,
      );
      expect(alone.action === "update" && alone.secret.metadata.ownerReferences).toBeUndefined();
    },
  );
});

describe("storedToken", () => {
  it("reads back what desiredSecret wrote", () => {
    const c = planSecretWrite(undefined, desiredSecret(owner, target, token, "fp"), "Owner");
    if (c.action !== "create") throw new Error();
    const t = storedToken(c.secret);
    expect(t).toMatchObject({
      accessToken: "eyJ.token&<>",
      scopes: ["supply.domain"],
      fingerprint: "fp",
      receivedAtMs: token.receivedAtMs,
    });
    expect(t?.expiresAtMs).toBe(Date.parse(rfc3339(token.expiresAtMs)));
  });
  it("is undefined for a Secret without a token", () => {
    expect(storedToken({ metadata: {}, data: { other: b64("x") } })).toBeUndefined();
  });
  it("leaves the receipt time unknown without a readable issued-at (no lifetime is assumed)", () => {
    const c = planSecretWrite(undefined, desiredSecret(owner, target, token, "fp"), "Owner");
    if (c.action !== "create") throw new Error();
    for (const issued of [undefined, "not a time"]) {
      const annotations = { ...c.secret.metadata.annotations };
      if (issued === undefined) delete annotations["nexar-operator.io/issued-at"];
      else annotations["nexar-operator.io/issued-at"] = issued;
      const t = storedToken({ ...c.secret, metadata: { ...c.secret.metadata, annotations } });
      expect(t?.accessToken).toBe("eyJ.token&<>");
      expect(t?.receivedAtMs).toBeUndefined();
    }
  });
  it("a token whose receipt time is unknown is rendered without an issued-at annotation", () => {
    const d = desiredSecret(owner, target, { ...token, receivedAtMs: undefined }, "fp");
    expect(d.annotations).not.toHaveProperty("nexar-operator.io/issued-at");
    expect(d.annotations["nexar-operator.io/expires-at"]).toBe(rfc3339(token.expiresAtMs));
  });
});

describe("storedTokenMismatch", () => {
  const expiresAtMs = Date.parse("2026-12-01T10:00:00Z");
  /** An unsigned JWT (the operator never checks signatures) with `exp` in epoch seconds. */
  const jwt = (expMs: number) =>
    [{ alg: "none" }, { exp: Math.floor(expMs / 1000), sub: "x" }]
      .map((p) => Buffer.from(JSON.stringify(p)).toString("base64url"))
      .join(".") + ".";
  const stored = (accessToken: string) => ({ ...token, accessToken, expiresAtMs });
  it("trusts a token whose expires_at is status.expiresAt and whose JWT exp agrees", () => {
    expect(storedTokenMismatch(stored(jwt(expiresAtMs)), "2026-12-01T10:00:00Z")).toBeUndefined();
    // expires_in counts from the local send time: latency and a little clock skew are not a mismatch.
    expect(storedTokenMismatch(stored(jwt(expiresAtMs + JWT_EXP_TOLERANCE_MS)), undefined)).toBeUndefined();
    expect(storedTokenMismatch(stored(jwt(expiresAtMs - JWT_EXP_TOLERANCE_MS)), undefined)).toBeUndefined();
  });
  it("distrusts an expires_at that is not status.expiresAt (a restored or edited Secret)", () => {
    expect(storedTokenMismatch(stored(jwt(expiresAtMs)), "2026-12-01T09:00:00Z")).toMatch(/status\.expiresAt/);
    expect(storedTokenMismatch(stored("opaque"), "2026-12-01T10:00:01Z")).toMatch(/status\.expiresAt/);
  });
  it("distrusts a JWT whose exp disagrees with expires_at, with or without status", () => {
    const other = jwt(expiresAtMs - 3_600_000);
    for (const statusExpiresAt of ["2026-12-01T10:00:00Z", undefined]) {
      const why = storedTokenMismatch(stored(other), statusExpiresAt);
      expect(why).toMatch(/JWT exp \(2026-12-01T09:00:00Z\)/);
      expect(why).not.toContain(other);
    }
    expect(storedTokenMismatch(stored(jwt(expiresAtMs + JWT_EXP_TOLERANCE_MS + 1_000)), undefined)).toMatch(/JWT exp/);
  });
  it("cannot tell an opaque token edited in place, expires_at left as it was; a status without a time is skipped", () => {
    expect(storedTokenMismatch(stored("hand-edited"), "2026-12-01T10:00:00Z")).toBeUndefined();
    expect(storedTokenMismatch(stored("hand-edited"), "not a time")).toBeUndefined();
  });
});

describe("checkOwnership", () => {
  const managed = (ownerKey: string): Secret => ({
    metadata: {
      name: "t",
      labels: { "app.kubernetes.io/managed-by": "nexar-token-operator" },
      annotations: { "nexar-operator.io/owner": ownerKey },
    },
  });
  const exists = (k: string) => k === "parts/other";
  it("allows a missing Secret and our own", () => {
    expect(checkOwnership(undefined, "parts/supply", false, exists)).toEqual({ ok: true, adopting: false });
    expect(checkOwnership(managed("parts/supply"), "parts/supply", false, exists)).toEqual({
      ok: true,
      adopting: false,
    });
  });
  it("refuses a Secret of another live NexarToken, even with adopt", () => {
    for (const adopt of [false, true]) {
      const d = checkOwnership(managed("parts/other"), "parts/supply", adopt, exists);
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.message).toContain("parts/other");
    }
  });
  it("refuses an unmanaged Secret unless adopt", () => {
    expect(checkOwnership({ metadata: { name: "t" } }, "parts/supply", false, exists).ok).toBe(false);
    expect(checkOwnership({ metadata: { name: "t" } }, "parts/supply", true, exists)).toEqual({
      ok: true,
      adopting: true,
    });
  });
  it("lets adopt take over a Secret left by a deleted NexarToken", () => {
    expect(checkOwnership(managed("parts/gone"), "parts/supply", true, exists)).toEqual({ ok: true, adopting: true });
    expect(checkOwnership(managed("parts/gone"), "parts/supply", false, exists).ok).toBe(false);
  });
});
