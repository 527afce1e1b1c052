/**
 * Issue 3: ownership of the target Secret (SPEC §3.6) and its content (SPEC §4), against the real
 * control plane (kube-controller-manager's garbage collector included) and the real identity
 * server.
 *
 * - `Merge` writes only the operator's keys and keeps every other key; `Owner` sets an
 *   ownerReference (garbage-collected with the NexarToken); `Orphan` leaves the Secret behind;
 * - `adopt: true` takes over a pre-existing Secret; without it → `SecretConflict`, untouched;
 * - two NexarTokens naming one target: the first keeps it, the second reports the conflict, no
 *   ping-pong of writes; the second takes over once the first is gone;
 * - a change of `spec.target.type` recreates the Secret with the new type;
 * - template keys, labels and annotations from `spec.target`, and the refresh annotation.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { decode, startEnv, waitFor, type Env } from "./env.ts";
import {
  deleteToken,
  dumpOperatorLogs,
  eventsFor,
  issued,
  patchToken,
  ready,
  requestRefresh,
  requestsOf,
  sleep,
} from "./faults-helpers.ts";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  if (!env) return;
  dumpOperatorLogs(env, "ownership");
  await env.scanForSecrets();
  await env.stop();
});

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const MERGE = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

/** Namespace + client + credentials Secret `nexar-app`; returns the spec fields that use them. */
async function setup(ns: string): Promise<Record<string, unknown>> {
  await env.namespace(ns);
  const secret = `${ns}-secret-0123456789abcdef`;
  env.client({ clientId: ns, clientSecret: secret });
  await env.credentials(ns, "nexar-app", { clientId: ns, clientSecret: secret });
  return { scopes: ["supply.domain"], tokenUrl: env.idp.tokenUrl, credentialsSecretRef: { name: "nexar-app" } };
}

describe("creation policies", () => {
  it("Merge (with adopt) writes only the operator's keys into an existing Secret and keeps the others", async () => {
    const ns = "merge";
    const base = await setup(ns);
    await env.core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: "app-config", labels: { app: "legacy" }, annotations: { note: "hand-made" } },
        stringData: { "config.yaml": "debug: true\n", access_token: "stale" },
      },
    });
    await env.createToken(ns, "supply", {
      ...base,
      target: { name: "app-config", creationPolicy: "Merge", adopt: true },
    });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    const s = await waitFor("merged Secret", async () => {
      const x = await env.readSecret(ns, "app-config");
      return decode(x?.data?.access_token) !== "stale" ? x : undefined;
    });
    expect(decode(s.data?.["config.yaml"])).toBe("debug: true\n");
    expect(Object.keys(s.data ?? {}).sort()).toEqual([
      "access_token",
      "config.yaml",
      "expires_at",
      "scope",
      "token_type",
    ]);
    expect(s.metadata?.labels).toMatchObject({ app: "legacy", "app.kubernetes.io/managed-by": "nexar-token-operator" });
    expect(s.metadata?.annotations).toMatchObject({ note: "hand-made", "nexar-operator.io/owner": `${ns}/supply` });
    expect(s.metadata?.ownerReferences ?? []).toHaveLength(0);

    // A key added later by someone else survives the operator's next write (a forced refresh).
    const token0 = decode(s.data?.access_token);
    await env.core.patchNamespacedSecret(
      { namespace: ns, name: "app-config", body: { data: { extra: b64("added later") } } },
      MERGE,
    );
    await requestRefresh(env, ns, "supply");
    const renewed = await waitFor("a new token merged", async () => {
      const x = await env.readSecret(ns, "app-config");
      return x && decode(x.data?.access_token) !== token0 ? x : undefined;
    });
    expect(decode(renewed.data?.extra)).toBe("added later");
    expect(decode(renewed.data?.["config.yaml"])).toBe("debug: true\n");

    // Deleting the NexarToken leaves a Merge Secret in place (no ownerReference).
    await deleteToken(env, ns, "supply");
    await sleep(3_000);
    expect(decode((await env.readSecret(ns, "app-config"))?.data?.["config.yaml"])).toBe("debug: true\n");
  });

  it("Merge without adopt does not touch an existing Secret: SecretConflict", async () => {
    const ns = "merge-no-adopt";
    const base = await setup(ns);
    const before = await env.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "app-config" }, stringData: { "config.yaml": "x: 1\n" } },
    });
    await env.createToken(ns, "supply", { ...base, target: { name: "app-config", creationPolicy: "Merge" } });
    const nt = await env.waitReady(ns, "supply", "False", "SecretConflict");
    expect(ready(nt)?.message).toMatch(/adopt/);
    await sleep(1_000);
    expect((await env.readSecret(ns, "app-config"))?.metadata?.resourceVersion).toBe(before.metadata?.resourceVersion);
    expect(requestsOf(env, ns)).toHaveLength(0);
  });

  it("on NexarToken deletion: Owner → the Secret is garbage-collected; Orphan → it stays", async () => {
    const ns = "deletion";
    const base = await setup(ns);
    await env.createToken(ns, "owned", { ...base, target: { creationPolicy: "Owner" } });
    await env.createToken(ns, "orphaned", { ...base, target: { creationPolicy: "Orphan" } });
    await env.waitReady(ns, "owned", "True");
    await env.waitReady(ns, "orphaned", "True");
    const orphan = await waitFor("orphan Secret", () => env.readSecret(ns, "orphaned"));
    expect(orphan.metadata?.ownerReferences ?? []).toHaveLength(0);
    expect((await env.readSecret(ns, "owned"))?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: "NexarToken",
      name: "owned",
      controller: true,
    });
    await deleteToken(env, ns, "owned");
    await deleteToken(env, ns, "orphaned");
    await waitFor("garbage collection of the Owner Secret", async () =>
      (await env.readSecret(ns, "owned")) ? undefined : true,
    );
    await sleep(3_000);
    const left = await env.readSecret(ns, "orphaned");
    expect(decode(left?.data?.access_token)).toBe(decode(orphan.data?.access_token));
  });

  it("a switch Owner → Orphan or Owner → Merge drops the ownerReference: deleting the NexarToken afterwards leaves the Secret", async () => {
    const ns = "policy-switch";
    const base = await setup(ns);
    for (const name of ["to-orphan", "to-merge", "control"]) {
      await env.createToken(ns, name, { ...base, target: { creationPolicy: "Owner" } });
      await env.waitReady(ns, name, "True", "TokenIssued");
      const s = await waitFor(`Secret ${name} with its ownerReference`, async () => {
        const x = await env.readSecret(ns, name);
        return x?.metadata?.ownerReferences?.length ? x : undefined;
      });
      expect(s.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "NexarToken", name, controller: true });
    }
    await patchToken(env, ns, "to-orphan", { spec: { target: { creationPolicy: "Orphan" } } });
    await patchToken(env, ns, "to-merge", { spec: { target: { creationPolicy: "Merge" } } });
    const kept = new Map<string, string | undefined>();
    for (const name of ["to-orphan", "to-merge"]) {
      // The operator has written the Secret for the switch once the status reports the new
      // generation with TokenIssued (IssuanceLimited, while the limiter holds the fetch, comes first).
      await waitFor(`${name}: the policy switch reconciled`, async () => {
        const nt = await env.getToken(ns, name);
        const c = ready(nt);
        return nt.status?.observedGeneration === nt.metadata?.generation && c?.reason === "TokenIssued"
          ? nt
          : undefined;
      });
      const s = await env.readSecret(ns, name);
      expect.soft(s?.metadata?.ownerReferences ?? [], `${name}: ownerReferences`).toHaveLength(0);
      kept.set(name, decode(s?.data?.access_token));
    }
    // Delete the switched ones first, then the Owner control: once the garbage collector has removed
    // the control's Secret, it has processed the deletions before it.
    await deleteToken(env, ns, "to-orphan");
    await deleteToken(env, ns, "to-merge");
    await deleteToken(env, ns, "control");
    await waitFor("garbage collection of the control's Secret", async () =>
      (await env.readSecret(ns, "control")) ? undefined : true,
    );
    for (const [name, token] of kept) {
      const left = await env.readSecret(ns, name);
      expect(left, `Secret ${name} survives`).toBeDefined();
      expect(decode(left?.data?.access_token)).toBe(token);
    }
  });

  it("adopt: true takes over an unmanaged Secret (Owner: ownerReference, the operator's data, others' labels kept)", async () => {
    const ns = "adopt";
    const base = await setup(ns);
    await env.core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: "legacy", labels: { keep: "me" } }, stringData: { access_token: "old", junk: "x" } },
    });
    await env.createToken(ns, "supply", { ...base, target: { name: "legacy", adopt: true } });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    const s = await env.readSecret(ns, "legacy");
    expect(decode(s?.data?.access_token)).not.toBe("old");
    expect(s?.data?.junk).toBeUndefined(); // Owner and Orphan own the whole data; Merge would keep it
    expect(s?.metadata?.labels).toMatchObject({ keep: "me", "app.kubernetes.io/managed-by": "nexar-token-operator" });
    expect(s?.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "NexarToken", name: "supply" });
  });
});

describe("two NexarTokens naming one target", () => {
  it("the first keeps it, the second reports SecretConflict, no ping-pong; the second takes over when the first is gone", async () => {
    const ns = "contested";
    const base = await setup(ns);
    await env.createToken(ns, "first", { ...base, target: { name: "shared" } });
    await env.waitReady(ns, "first", "True", "TokenIssued");
    const token = await env.accessToken(ns, "shared");
    await env.createToken(ns, "second", { ...base, target: { name: "shared" } });
    const nt = await env.waitReady(ns, "second", "False", "SecretConflict");
    expect(ready(nt)?.message).toContain(`NexarToken ${ns}/first`);

    // Poke both for a few seconds (metadata edits reconcile them): the Secret is not rewritten.
    const rv = (await env.readSecret(ns, "shared"))?.metadata?.resourceVersion;
    const versions = new Set<string | undefined>();
    for (let i = 0; i < 5; i++) {
      await patchToken(env, ns, "second", { metadata: { annotations: { poke: String(i) } } });
      await patchToken(env, ns, "first", { metadata: { annotations: { poke: String(i) } } });
      await sleep(800);
      versions.add((await env.readSecret(ns, "shared"))?.metadata?.resourceVersion);
    }
    expect([...versions]).toEqual([rv]);
    expect(await env.accessToken(ns, "shared")).toBe(token);
    expect((await env.readSecret(ns, "shared"))?.metadata?.annotations?.["nexar-operator.io/owner"]).toBe(
      `${ns}/first`,
    );
    // One SecretConflict Event despite the repeated reconciles.
    const conflicts = await waitFor("a SecretConflict Event", async () => {
      const ev = await eventsFor(env, ns, "second", "SecretConflict");
      return ev.length > 0 ? ev : undefined;
    });
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]?.type).toBe("Warning");

    // The first goes away (its Owner Secret is garbage-collected): the second takes over.
    await deleteToken(env, ns, "first");
    await env.waitReady(ns, "second", "True", "TokenIssued", 60_000);
    const s = await env.readSecret(ns, "shared");
    expect(s?.metadata?.annotations?.["nexar-operator.io/owner"]).toBe(`${ns}/second`);
  });
});

describe("Secret type", () => {
  it("a change of spec.target.type recreates the Secret with the new type", async () => {
    const ns = "retype";
    const token0 = await issued(env, ns, ns);
    const before = await env.readSecret(ns, "supply");
    expect(before?.type).toBe("Opaque");
    await patchToken(env, ns, "supply", { spec: { target: { type: "example.com/nexar-token" } } });
    const after = await waitFor("the retyped Secret", async () => {
      const s = await env.readSecret(ns, "supply");
      return s?.type === "example.com/nexar-token" ? s : undefined;
    });
    expect(after.metadata?.uid).not.toBe(before?.metadata?.uid);
    expect(decode(after.data?.access_token)).toBeTruthy();
    expect(after.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "NexarToken", name: "supply" });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    void token0;
  });
});

describe("output templates and metadata (SPEC §4)", () => {
  it("renders template keys, copies labels and annotations, and honours the refresh annotation", async () => {
    const ns = "templates";
    const token0 = await issued(env, ns, ns, {
      target: {
        labels: { "app.kubernetes.io/part-of": "parts" },
        annotations: { "reloader.stakater.com/match": "true" },
        template: {
          Authorization: "Bearer {{access_token}}",
          ".env": "NEXAR_TOKEN={{access_token}}\nNEXAR_TOKEN_EXPIRES_AT={{expires_at}}\n",
          "token.json": '{"token":"{{access_token}}","expiresAt":"{{expires_at}}","scope":"{{scope}}"}',
        },
      },
    });
    const s = await env.readSecret(ns, "supply");
    const expiresAt = decode(s?.data?.expires_at);
    expect(decode(s?.data?.Authorization)).toBe(`Bearer ${token0}`);
    expect(decode(s?.data?.[".env"])).toBe(`NEXAR_TOKEN=${token0}\nNEXAR_TOKEN_EXPIRES_AT=${expiresAt}\n`);
    expect(JSON.parse(decode(s?.data?.["token.json"]) ?? "{}")).toEqual({
      token: token0,
      expiresAt,
      scope: "supply.domain",
    });
    expect(s?.metadata?.labels?.["app.kubernetes.io/part-of"]).toBe("parts");
    expect(s?.metadata?.annotations?.["reloader.stakater.com/match"]).toBe("true");

    const when = new Date().toISOString();
    await patchToken(env, ns, "supply", {
      metadata: { annotations: { "nexar-operator.io/refresh-requested-at": when } },
    });
    const renewed = await waitFor("a refreshed token", async () => {
      const x = await env.readSecret(ns, "supply");
      return x && decode(x.data?.access_token) !== token0 ? x : undefined;
    });
    const token1 = decode(renewed.data?.access_token);
    expect(decode(renewed.data?.Authorization)).toBe(`Bearer ${token1}`);
    const nt = await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(nt.status?.lastRefreshRequest).toBe(when);
    expect(requestsOf(env, ns)).toHaveLength(2);
    // The same annotation value again does not fetch again.
    await patchToken(env, ns, "supply", { metadata: { labels: { touched: "yes" } } });
    await sleep(2_000);
    expect(requestsOf(env, ns)).toHaveLength(2);
    // Events are recorded asynchronously (fire-and-forget): wait for the second one to land.
    const issuedEvents = await waitFor("two TokenIssued Events", async () => {
      const evs = await eventsFor(env, ns, "supply", "TokenIssued");
      return evs.length >= 2 ? evs : undefined;
    });
    expect(issuedEvents.length).toBe(2);
    expect(issuedEvents.every((e) => e.type === "Normal")).toBe(true);
  });
});
