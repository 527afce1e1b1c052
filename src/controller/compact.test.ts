import { describe, expect, it } from "vitest";
import type { NexarToken } from "../api/types.ts";
import { compactNexarToken, Interner, stripManagedFields } from "./compact.ts";

/** A NexarToken as JSON.parse makes it: every string a fresh copy. */
function parsed(name: string, extra: Record<string, unknown> = {}): NexarToken {
  return JSON.parse(
    JSON.stringify({
      apiVersion: "nexar-operator.io/v1alpha1",
      kind: "NexarToken",
      metadata: {
        name,
        namespace: "team-a",
        uid: `uid-${name}`,
        managedFields: [{ manager: "kubectl", operation: "Update", fieldsV1: { "f:spec": {} } }],
      },
      spec: {
        grant: "ClientCredentials",
        clientAuthentication: "ClientSecretPost",
        tokenUrl: "https://identity.nexar.com/connect/token",
        scopes: ["supply.domain", "design.domain"],
        credentialsSecretRef: { name: "nexar-app", clientIdKey: "clientId", clientSecretKey: "clientSecret" },
        target: { type: "Opaque", creationPolicy: "Owner" },
      },
      status: {
        conditions: [
          { type: "Ready", status: "True", reason: "TokenIssued", message: `Secret "${name}" holds a token` },
        ],
        grantedScopes: ["supply.domain"],
        secretName: name,
      },
      ...extra,
    }),
  ) as NexarToken;
}

describe("Interner", () => {
  it("returns one instance per value, and stops pooling at its bound", () => {
    const pool = new Interner(2);
    expect(pool.intern("a")).toBe("a");
    expect(pool.intern("b")).toBe("b");
    expect(pool.intern("c")).toBe("c"); // not pooled: the pool is full
    expect(pool.size).toBe(2);
    expect(pool.intern(undefined)).toBeUndefined();
  });
});

describe("compactNexarToken", () => {
  it("drops managedFields and leaves every value as it was", () => {
    const before = parsed("t1");
    const after = compactNexarToken(parsed("t1"), new Interner());
    const { managedFields: _dropped, ...meta } = before.metadata as Record<string, unknown>;
    expect(after).toEqual({ ...before, metadata: meta });
    expect("managedFields" in after.metadata).toBe(false);
  });

  it("adds no field that was absent (an undefined own property would fail schema validation)", () => {
    const nt = parsed("t1");
    delete (nt.spec as { grant?: string }).grant;
    delete (nt as { status?: unknown }).status;
    compactNexarToken(nt, new Interner());
    expect("grant" in nt.spec).toBe(false);
    expect("status" in nt).toBe(false);
    const withStatus = compactNexarToken(parsed("t2"), new Interner());
    expect("lastFailureReason" in (withStatus.status ?? {})).toBe(false);
    expect("refreshTokenKey" in withStatus.spec.credentialsSecretRef).toBe(false);
  });

  it("interns repeated values so NexarTokens share them (fewer strings per cached object)", () => {
    // Identity of strings is not observable in JavaScript; the pool's size is: 16 distinct
    // repeated values from two objects, not 32.
    const pool = new Interner();
    compactNexarToken(parsed("t1"), pool);
    const n = pool.size;
    compactNexarToken(parsed("t2"), pool);
    expect(pool.size).toBe(n);
    expect(n).toBe(16);
  });
});

describe("stripManagedFields", () => {
  it("drops metadata.managedFields and keeps every other metadata field; an object without them is left as it is", () => {
    const secret = {
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "s", namespace: "ns", resourceVersion: "7", managedFields: [{ manager: "m" }] },
    };
    const out = stripManagedFields(secret);
    expect(out).toBe(secret);
    expect(out.metadata).toEqual({ name: "s", namespace: "ns", resourceVersion: "7" });
    const meta = out.metadata;
    expect(stripManagedFields(out).metadata).toBe(meta);
  });
});
