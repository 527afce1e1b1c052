import { afterEach, describe, expect, it } from "vitest";
import { pino } from "pino";
import { API_VERSION, KIND } from "../api/constants.ts";
import type { NexarToken } from "../api/types.ts";
import type { Secret } from "../kube/client.ts";
import type { SecretsApi } from "../kube/secrets.ts";
import type { StatusApi } from "../kube/status.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { FetchContext, TokenSource } from "../issuance/types.ts";
import type { Metrics } from "../observability/metrics.ts";
import { BACKOFF_SCALE_ENV } from "../renewal/index.ts";
import type { SecretWritePlan } from "../secrets/desired.ts";
import { Reconciler, writtenIsNewer, type ReconcilerConfig } from "./reconciler.ts";
import type { TokenStatus } from "./status.ts";

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

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const H = 3_600_000;
const b64 = (v: string) => Buffer.from(v).toString("base64");

/**
 * A Reconciler over in-memory adapters: one NexarToken `parts/supply`, its credentials Secret,
 * the target Secret as written, a status subresource that echoes resourceVersions, and a token
 * source whose answer each test sets.
 */
function world(o: { config?: Partial<ReconcilerConfig>; fetch?: (ctx: FetchContext) => Promise<unknown> } = {}) {
  let now = T0;
  let rv = 10;
  const nt: NexarToken = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: { namespace: "parts", name: "supply", uid: "uid-1", generation: 1, resourceVersion: "1" },
    spec: { scopes: ["supply.domain"], credentialsSecretRef: { name: "nexar-app" } },
  } as NexarToken;
  const store = new Map<string, Secret>([
    [
      "parts/nexar-app",
      {
        metadata: { name: "nexar-app", namespace: "parts", resourceVersion: "2" },
        data: { clientId: b64("app"), clientSecret: b64("s3cret") },
      },
    ],
  ]);
  const calls = { gets: [] as string[], writes: [] as string[], patches: [] as Record<string, unknown>[], fetches: 0 };
  const secrets = {
    get: async (ns: string, name: string) => {
      calls.gets.push(`${ns}/${name}`);
      return structuredClone(store.get(`${ns}/${name}`));
    },
    write: async (
      ns: string,
      name: string,
      current: Secret | undefined,
      plan: (c: Secret | undefined) => SecretWritePlan,
    ) => {
      const p = plan(current);
      if (p.action === "none") return { action: "none", resourceVersion: current?.metadata.resourceVersion };
      const out = { ...p.secret, metadata: { ...p.secret.metadata, resourceVersion: String(++rv) } };
      store.set(`${ns}/${name}`, out);
      calls.writes.push(p.action);
      return { action: p.action, resourceVersion: out.metadata.resourceVersion };
    },
  } as unknown as SecretsApi;
  const statuses = {
    patch: async (_ns: string, _name: string, patch: Record<string, unknown>) => {
      calls.patches.push(patch);
      const status = { ...(nt.status ?? {}) } as Record<string, unknown>;
      for (const [k, v] of Object.entries(patch)) {
        if (v === null) delete status[k];
        else status[k] = v;
      }
      nt.status = status as TokenStatus;
      nt.metadata.resourceVersion = String(++rv); // the informer delivers at once
      return structuredClone(nt);
    },
  } as unknown as StatusApi;
  let answer: (ctx: FetchContext) => Promise<unknown> =
    o.fetch ??
    (async () => ({
      accessToken: "at-1",
      tokenType: "Bearer",
      scopes: ["supply.domain"],
      receivedAtMs: now,
      expiresAtMs: now + 24 * H,
      lifetimeSource: "expires_in",
    }));
  const tokens: TokenSource = {
    keysFor: () => ({ share: "share", client: "client", secret: "secret" }),
    fetchToken: async (_c, ctx) => {
      calls.fetches++;
      return (await answer(ctx)) as Awaited<ReturnType<TokenSource["fetchToken"]>>;
    },
  };
  const events: string[] = [];
  const metrics: Metrics = {
    refresh: () => {},
    tokenRequest: () => {},
    secretWrite: () => {},
    statusWrite: () => {},
    reconcile: () => {},
  };
  const reconciler = new Reconciler({
    getNexarToken: (k) => (k === "parts/supply" ? nt : undefined),
    secrets,
    statuses,
    tokens,
    secretVersion: (k) => store.get(k)?.metadata.resourceVersion,
    events: { normal: (_o, r) => events.push(`Normal ${r}`), warn: (_o, r) => events.push(`Warning ${r}`) },
    metrics,
    logger: pino({ level: "silent" }),
    config: { allowInsecureTokenUrl: false, recheckMs: 60_000, fingerprintKey: Buffer.alloc(32, 1), ...o.config },
    now: () => now,
    random: () => 0.5,
  });
  return {
    reconciler,
    nt,
    calls,
    events,
    advance: (ms: number) => (now += ms),
    answer: (a: (ctx: FetchContext) => Promise<unknown>) => (answer = a),
    store,
  };
}

const ready = (nt: NexarToken) => nt.status?.conditions?.find((c) => c.type === "Ready");

describe("Reconciler: gather → decide → apply over the adapters", () => {
  afterEach(() => {
    delete process.env[BACKOFF_SCALE_ENV];
  });

  it("a new NexarToken: one fetch, the Secret created, status written; then no read, no write, no fetch while nothing changes", async () => {
    const w = world();
    const r = await w.reconciler.reconcile("parts/supply");
    expect(w.calls.fetches).toBe(1);
    expect(w.calls.writes).toEqual(["create"]);
    expect(w.calls.patches).toHaveLength(1);
    expect(ready(w.nt)).toMatchObject({ status: "True", reason: "TokenIssued" });
    expect(w.events).toEqual(["Normal TokenIssued"]);
    expect(r.requeueAfterMs).toBe(16 * H - 150_000);
    expect(w.calls.gets).toEqual(["parts/nexar-app"]); // the target was never seen by the watch: created
    expect(
      w.reconciler.knowsTargetVersion("parts/supply", w.store.get("parts/supply")?.metadata.resourceVersion ?? ""),
    ).toBe(true);

    w.advance(60_000);
    const again = await w.reconciler.reconcile("parts/supply");
    expect(w.calls.fetches).toBe(1);
    expect(w.calls.writes).toEqual(["create"]);
    expect(w.calls.patches).toHaveLength(1);
    expect(w.calls.gets).toEqual(["parts/nexar-app"]); // credentials and target known at their versions
    expect(again.requeueAfterMs).toBe(16 * H - 150_000 - 60_000);
  });

  it("a deleted target Secret is restored from the held token without a fetch", async () => {
    const w = world();
    await w.reconciler.reconcile("parts/supply");
    w.store.delete("parts/supply");
    await w.reconciler.reconcile("parts/supply");
    expect(w.calls.fetches).toBe(1);
    expect(w.calls.writes).toEqual(["create", "create"]);
  });

  it("the test-only backoff scale comes from the options only, never from the environment", async () => {
    process.env[BACKOFF_SCALE_ENV] = "0.01";
    const failing = () =>
      Promise.reject(new TokenEndpointError({ kind: "transient", reason: "Timeout", message: "timed out" }));
    const unscaled = world({ fetch: failing });
    const r1 = await unscaled.reconciler.reconcile("parts/supply");
    expect(r1.requeueAfterMs).toBe(1_500); // production: 1–2 s
    const scaled = world({ fetch: failing, config: { backoffScale: 0.01 } });
    const r2 = await scaled.reconciler.reconcile("parts/supply");
    expect(r2.requeueAfterMs).toBe(15);
    expect(ready(scaled.nt)).toMatchObject({ status: "False", reason: "Timeout" });
  });

  it("a wait for the issuance limiter is reported in status, and the outcome is written against that report", async () => {
    const w = world();
    w.answer(async (ctx) => {
      ctx.onWaiting?.({ delayMs: 1_000, untilMs: T0 + 1_000 });
      await new Promise((res) => setImmediate(res));
      expect(ready(w.nt)).toMatchObject({ status: "False", reason: "IssuanceLimited" });
      return {
        accessToken: "at-1",
        tokenType: "Bearer",
        scopes: ["supply.domain"],
        receivedAtMs: T0,
        expiresAtMs: T0 + 24 * H,
        lifetimeSource: "expires_in",
      };
    });
    await w.reconciler.reconcile("parts/supply");
    expect(w.calls.patches).toHaveLength(2);
    expect(ready(w.nt)).toMatchObject({ status: "True", reason: "TokenIssued" });
    // the second patch changes only what differs from the reported status
    expect(Object.keys(w.calls.patches[1] ?? {})).not.toContain("secretName");
  });

  it("an error that is not the token endpoint's is thrown (a rate-limited requeue), nothing is written", async () => {
    const w = world({ fetch: () => Promise.reject(new Error("API server unavailable")) });
    await expect(w.reconciler.reconcile("parts/supply")).rejects.toThrow("API server unavailable");
    expect(w.calls.writes).toEqual([]);
    expect(w.calls.patches).toEqual([]);
  });

  it("a deleted NexarToken is forgotten", async () => {
    const w = world();
    await w.reconciler.reconcile("parts/supply");
    expect(await w.reconciler.reconcile("parts/gone")).toEqual({});
    w.reconciler.forget("parts/supply");
    expect(
      w.reconciler.knowsTargetVersion("parts/supply", w.store.get("parts/supply")?.metadata.resourceVersion ?? ""),
    ).toBe(false);
  });
});
