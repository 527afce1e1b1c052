/**
 * Issue "Foundation": the main job end to end against a real kube-apiserver/etcd/
 * kube-controller-manager and a real OAuth server (oidc-provider), with the operator running as
 * its own process.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { decode, startEnv, waitFor, type Env } from "./env.ts";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  if (!env) return;
  await env.scanForSecrets();
  await env.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("main job", () => {
  it("creates the target Secret within seconds with a JWT the identity server verifies, scope matching", async () => {
    const ns = await env.namespace("basic");
    env.client({ clientId: "basic-app", clientSecret: "basic-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "basic-app", clientSecret: "basic-secret-0123456789" });
    const created = Date.now();
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
      target: { name: "supply-token", labels: { team: "parts" } },
    });
    const secret = await waitFor("target Secret", () => env.readSecret(ns, "supply-token"), 15_000);
    expect(Date.now() - created).toBeLessThan(15_000);
    const token = decode(secret.data?.access_token) as string;
    const claims = await env.idp.verify(token);
    expect(claims.scope).toBe("supply.domain");
    expect(decode(secret.data?.scope)).toBe("supply.domain");
    expect(decode(secret.data?.token_type)).toBe("Bearer");
    const expiresAt = decode(secret.data?.expires_at) as string;
    expect(expiresAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(Math.abs(Date.parse(expiresAt) / 1000 - (claims.exp as number))).toBeLessThanOrEqual(5);
    expect(secret.metadata?.labels).toMatchObject({
      "app.kubernetes.io/managed-by": "nexar-token-operator",
      team: "parts",
    });
    expect(secret.metadata?.annotations).toMatchObject({
      "nexar-operator.io/owner": `${ns}/supply`,
      "nexar-operator.io/expires-at": expiresAt,
    });
    const nt = await env.waitReady(ns, "supply", "True");
    expect(nt.status?.expiresAt).toBe(expiresAt);
    expect(nt.status?.grantedScopes).toEqual(["supply.domain"]);
    expect(nt.status?.observedGeneration).toBe(nt.metadata.generation);
    expect(nt.status?.secretName).toBe("supply-token");
    expect(Date.parse(nt.status?.renewalTime as string)).toBeLessThan(Date.parse(expiresAt));
    const ready = nt.status?.conditions?.find((c) => c.type === "Ready");
    expect(ready?.observedGeneration).toBe(nt.metadata.generation);
  });

  it("renews 60-second tokens (renewBefore 20s) before the old one expires, renewals at most a lifetime apart", async () => {
    const ns = await env.namespace("renewal");
    env.client({ clientId: "renew-app", clientSecret: "renew-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "renew-app", clientSecret: "renew-secret-0123456789" });
    env.idp.setAccessTokenLifetime(60);
    try {
      await env.createToken(ns, "short", {
        scopes: ["supply.domain"],
        tokenUrl: env.idp.tokenUrl,
        credentialsSecretRef: { name: "nexar-app" },
        renewBefore: "20s",
      });
      const seen: { token: string; exp: number; at: number }[] = [];
      await waitFor(
        "three distinct tokens",
        async () => {
          const t = await env.accessToken(ns, "short");
          if (t && !seen.some((s) => s.token === t)) {
            const now = Date.now();
            // the previous token must still be valid when it is replaced
            const prev = seen.at(-1);
            if (prev) expect(now).toBeLessThan(prev.exp * 1000);
            seen.push({ token: t, exp: decodeJwt(t).exp as number, at: now });
          }
          return seen.length >= 3 ? seen : undefined;
        },
        150_000,
        250,
      );
      for (let i = 1; i < seen.length; i++) {
        const gap = (seen[i] as { at: number }).at - (seen[i - 1] as { at: number }).at;
        expect(gap).toBeLessThan(60_000);
      }
    } finally {
      env.idp.setAccessTokenLifetime(3600);
    }
  }, 200_000);

  it("fetches a new token within seconds when the client secret changes", async () => {
    const ns = await env.namespace("rotate");
    env.client({ clientId: "rotate-app", clientSecret: "rotate-secret-old-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "rotate-app", clientSecret: "rotate-secret-old-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await env.waitReady(ns, "supply", "True");
    const first = await env.accessToken(ns, "supply");
    env.client({ clientId: "rotate-app", clientSecret: "rotate-secret-new-9876543210" });
    const changed = Date.now();
    await env.credentials(ns, "nexar-app", { clientId: "rotate-app", clientSecret: "rotate-secret-new-9876543210" });
    await waitFor(
      "a token issued with the new secret",
      async () => {
        const t = await env.accessToken(ns, "supply");
        return t && t !== first ? t : undefined;
      },
      15_000,
    );
    expect(Date.now() - changed).toBeLessThan(15_000);
    await env.waitReady(ns, "supply", "True");
  });

  it("reports a missing credentials Secret and recovers when it appears", async () => {
    const ns = await env.namespace("missing");
    env.client({ clientId: "late-app", clientSecret: "late-secret-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "not-yet" },
    });
    const nt = await env.waitReady(ns, "supply", "False", "CredentialsNotFound");
    const cond = nt.status?.conditions?.find((c) => c.type === "Ready");
    expect(cond?.message).toContain('"not-yet"');
    expect(await env.readSecret(ns, "supply")).toBeUndefined();
    await env.credentials(ns, "not-yet", { clientId: "late-app", clientSecret: "late-secret-0123456789" });
    await env.waitReady(ns, "supply", "True", undefined, 15_000);
    expect(await env.accessToken(ns, "supply")).toBeTruthy();
  });

  it("garbage-collects the Owner target Secret when the NexarToken is deleted", async () => {
    const ns = await env.namespace("gc");
    env.client({ clientId: "gc-app", clientSecret: "gc-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "gc-app", clientSecret: "gc-secret-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const secret = await waitFor("target Secret", () => env.readSecret(ns, "supply"), 15_000);
    const owner = secret.metadata?.ownerReferences?.[0];
    expect(owner).toMatchObject({ kind: "NexarToken", name: "supply", controller: true });
    await env.custom.deleteNamespacedCustomObject({
      group: "nexar-operator.io",
      version: "v1alpha1",
      plural: "nexartokens",
      namespace: ns,
      name: "supply",
    });
    await waitFor("garbage collection", async () => ((await env.readSecret(ns, "supply")) ? undefined : true), 60_000);
  });

  it("leaves an existing unmanaged Secret byte-for-byte untouched and says why", async () => {
    const ns = await env.namespace("conflict");
    env.client({ clientId: "c-app", clientSecret: "conflict-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "c-app", clientSecret: "conflict-secret-0123456789" });
    const before = await env.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "taken", labels: { mine: "yes" } }, stringData: { access_token: "not-yours" } },
    });
    const issuedBefore = env.idp.tokensIssued();
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
      target: { name: "taken" },
    });
    const nt = await env.waitReady(ns, "supply", "False", "SecretConflict");
    expect(nt.status?.conditions?.find((c) => c.type === "Ready")?.message).toMatch(
      /not managed by this NexarToken.*adopt/,
    );
    await sleep(2_000);
    const after = await env.readSecret(ns, "taken");
    expect(after?.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
    expect(after?.data).toEqual(before.data);
    expect(after?.metadata?.labels).toEqual(before.metadata?.labels);
    expect(after?.metadata?.annotations).toEqual(before.metadata?.annotations);
    expect(env.idp.tokensIssued()).toBe(issuedBefore);
  });

  it("does not request a token for metadata-only or status-only edits", async () => {
    const ns = await env.namespace("noop");
    env.client({ clientId: "noop-app", clientSecret: "noop-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "noop-app", clientSecret: "noop-secret-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await env.waitReady(ns, "supply", "True");
    const token = await env.accessToken(ns, "supply");
    const before = env.idp.requests.filter((r) => r.clientId === "noop-app").length;
    expect(before).toBe(1);
    const patch = (body: unknown, status = false) =>
      (status ? env.custom.patchNamespacedCustomObjectStatus : env.custom.patchNamespacedCustomObject).call(
        env.custom,
        { group: "nexar-operator.io", version: "v1alpha1", plural: "nexartokens", namespace: ns, name: "supply", body },
        // merge patch
        undefined,
      );
    await patchMerge(env, ns, "supply", { metadata: { labels: { edited: "yes" }, annotations: { note: "hello" } } });
    await patchMerge(env, ns, "supply", { status: { lastFailureReason: "Edited" } }, true);
    void patch;
    // Give the operator time to see both edits and settle.
    await waitFor(
      "operator to settle",
      async () => {
        const nt = await env.getToken(ns, "supply");
        return nt.status?.lastFailureReason === undefined ? nt : undefined;
      },
      10_000,
    ).catch(() => undefined);
    await sleep(3_000);
    expect(env.idp.requests.filter((r) => r.clientId === "noop-app").length).toBe(before);
    expect(await env.accessToken(ns, "supply")).toBe(token);
  });
});

async function patchMerge(e: Env, ns: string, name: string, body: unknown, status = false): Promise<void> {
  const { setHeaderOptions, PatchStrategy } = await import("@kubernetes/client-node");
  const args = { group: "nexar-operator.io", version: "v1alpha1", plural: "nexartokens", namespace: ns, name, body };
  const opts = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
  if (status) await e.custom.patchNamespacedCustomObjectStatus(args, opts);
  else await e.custom.patchNamespacedCustomObject(args, opts);
}
