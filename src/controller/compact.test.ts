import { describe, expect, it } from "vitest";
import type { NexarToken } from "../api/types.ts";
import { stripManagedFields } from "./compact.ts";

/** A NexarToken as the API server sends it (with managedFields). */
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

describe("stripManagedFields", () => {
  it("drops managedFields of a NexarToken and leaves every other value as it was", () => {
    const before = parsed("t1");
    const after = stripManagedFields(parsed("t1"));
    const { managedFields: _dropped, ...meta } = before.metadata as Record<string, unknown>;
    expect(after).toEqual({ ...before, metadata: meta });
    expect("managedFields" in after.metadata).toBe(false);
  });

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
