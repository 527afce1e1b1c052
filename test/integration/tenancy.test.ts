/**
 * Issue 3: tenancy (SPEC §3.8) and https-only token URLs (SPEC §3.9), against the real control
 * plane with the kube-apiserver audit log on (every Secret request at level Metadata).
 *
 * The operator runs under its own identity (user `nexar-token-operator`, group system:masters: it
 * COULD read every Secret), so the audit log shows exactly which Secrets it touched.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudit, type AuditEvent } from "../harness/audit.ts";
import { startEnv, waitFor, type Env } from "./env.ts";
import { G, dumpOperatorLogs, ready, requestsOf } from "./faults-helpers.ts";
import type { NexarToken } from "../../src/api/types.ts";
import { DEFAULT_FINGERPRINT_KEY_SECRET } from "../../src/controller/fingerprint-key.ts";

const OPERATOR_USER = "nexar-token-operator";

let env: Env;
beforeAll(async () => {
  env = await startEnv({
    controlPlane: { audit: true },
    operatorKubeconfig: (cp) => cp.kubeconfigFor(OPERATOR_USER, ["system:masters"]),
  });
});
afterAll(async () => {
  if (!env) return;
  dumpOperatorLogs(env, "tenancy");
  await env.scanForSecrets();
  await env.stop();
});

/** Audit events of the operator's identity on Secrets. */
function operatorSecretRequests(): AuditEvent[] {
  return readAudit(env.cp.auditLogPath as string).filter(
    (e) => e.user.username === OPERATOR_USER && e.objectRef?.resource === "secrets",
  );
}

describe("tenancy", () => {
  it("a NexarToken in namespace A never causes any request for a Secret in namespace B", async () => {
    const a = await env.namespace("tenant-a");
    const b = await env.namespace("tenant-b");
    env.client({ clientId: "b-app", clientSecret: "tenant-b-secret-0123456789" });
    // Namespace B holds Secrets with exactly the names A's NexarToken refers to.
    await env.credentials(b, "nexar-app", { clientId: "b-app", clientSecret: "tenant-b-secret-0123456789" });
    await env.core.createNamespacedSecret({
      namespace: b,
      body: { metadata: { name: "supply" }, stringData: { access_token: "b-owns-this" } },
    });
    const bBefore = (await env.core.listNamespacedSecret({ namespace: b })).items.map((s) => [
      s.metadata?.name,
      s.metadata?.resourceVersion,
    ]);

    // The schema has no namespace field: one smuggled in is pruned by the API server.
    const created = await env.createToken(a, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app", namespace: b },
      target: { name: "supply", namespace: b },
    });
    expect(created.spec.credentialsSecretRef).toEqual(expect.not.objectContaining({ namespace: b }));
    expect(created.spec.target).toEqual(expect.not.objectContaining({ namespace: b }));

    const nt = await env.waitReady(a, "supply", "False", "CredentialsNotFound");
    expect(ready(nt)?.message).toBe('credentials Secret "nexar-app" not found in namespace "tenant-a"');

    // Now give A its own credentials: the token lands in A; B is untouched.
    env.client({ clientId: "a-app", clientSecret: "tenant-a-secret-0123456789" });
    await env.credentials(a, "nexar-app", { clientId: "a-app", clientSecret: "tenant-a-secret-0123456789" });
    await env.waitReady(a, "supply", "True", "TokenIssued", 20_000);
    expect(await env.accessToken(a, "supply")).toBeTruthy();
    expect(requestsOf(env, "b-app")).toHaveLength(0);
    const bAfter = (await env.core.listNamespacedSecret({ namespace: b })).items.map((s) => [
      s.metadata?.name,
      s.metadata?.resourceVersion,
    ]);
    expect(bAfter).toEqual(bBefore);

    const requests = await waitFor(
      "the operator's requests in tenant-a in the audit log",
      async () => {
        const r = operatorSecretRequests();
        return r.some((e) => e.objectRef?.namespace === a && e.verb === "get") ? r : undefined;
      },
      10_000,
    );
    const inB = requests.filter((e) => e.objectRef?.namespace === b);
    expect(inB, JSON.stringify(inB.slice(0, 3))).toEqual([]);
    // What it did do: GET/CREATE/UPDATE of named Secrets in A, and the cluster-wide metadata-only list/watch.
    for (const e of requests) {
      if (e.objectRef?.namespace === undefined) {
        expect(["list", "watch"]).toContain(e.verb);
        expect(e.objectRef?.name).toBeUndefined();
      } else if (e.objectRef.namespace === "default") {
        // The operator's own namespace (the harness runs it outside a cluster): its fingerprint key.
        expect(e.objectRef.name).toBe(DEFAULT_FINGERPRINT_KEY_SECRET);
      } else {
        expect(e.objectRef.namespace).toBe(a);
        expect(["nexar-app", "supply"]).toContain(e.objectRef.name);
      }
    }
  });
});

describe("https only", () => {
  it("without --allow-insecure-token-url an http:// token URL is InvalidSpec and nothing is requested", async () => {
    await env.restartOperator({ allowInsecureTokenUrl: false });
    const ns = await env.namespace("insecure");
    env.client({ clientId: "insecure-app", clientSecret: "insecure-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "insecure-app", clientSecret: "insecure-secret-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl, // http://127.0.0.1:…
      credentialsSecretRef: { name: "nexar-app" },
    });
    const nt = await env.waitReady(ns, "supply", "False", "InvalidSpec", 20_000);
    expect(ready(nt)?.message).toMatch(/must use https:\/\//);
    expect(requestsOf(env, "insecure-app")).toHaveLength(0);
    expect(await env.readSecret(ns, "supply")).toBeUndefined();
    // The CRD itself only admits http(s) URLs; the operator decides on http.
    const list = (await env.custom.listNamespacedCustomObject({ ...G, namespace: ns })) as { items: NexarToken[] };
    expect(list.items[0]?.spec.tokenUrl?.startsWith("http://")).toBe(true);
  });
});
