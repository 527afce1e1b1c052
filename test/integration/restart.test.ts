/**
 * Issue 4, item 2: restart without re-fetch. With N Ready NexarTokens whose tokens are valid, a
 * restart of the operator causes 0 token requests, 0 Secret writes and 0 status writes: the new
 * process takes its state from the NexarToken status and the target Secrets. The restarted
 * process acquires the Lease its predecessor released at once (no 15 s wait), and reads the
 * credentials Secret the N NexarTokens share once (the audit log), not once per NexarToken.
 *
 * Issue 18, item 7: what the restarted process takes from a target Secret is cross-checked first.
 * A Secret restored from a backup, or whose `access_token` was replaced, while no operator ran
 * (annotations left intact) is not published as valid: the operator fetches a new token.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudit, type AuditEvent } from "../harness/audit.ts";
import { decode, startEnv, waitFor, type Env } from "./env.ts";
import { requestRefresh, requestsOf } from "./faults-helpers.ts";
import { startOperator, type OperatorProcess } from "../harness/operator.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { leasePath, type Lease } from "../../src/kube/lease.ts";

const N = 20;
let env: Env;
let kube: KubeClient;

beforeAll(async () => {
  env = await startEnv({ controlPlane: { audit: true } });
  kube = await KubeClient.create(env.kc);
});
afterAll(async () => {
  if (!env) return;
  try {
    await env.scanForSecrets();
  } finally {
    await kube?.close();
    await env.stop();
  }
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The operator's GETs of Secret `ns/name`, from the audit log. */
function operatorGets(ns: string, name: string): number {
  return readAudit(env.cp.auditLogPath as string).filter(
    (e) =>
      e.verb === "get" &&
      e.stage === "ResponseComplete" &&
      e.objectRef?.namespace === ns &&
      e.objectRef.name === name &&
      (e as AuditEvent & { userAgent?: string }).userAgent === "nexar-token-operator",
  ).length;
}

/** Milliseconds between the "attempting to acquire" and "became leader" log lines of `op`. */
function acquireMs(op: OperatorProcess): number {
  const attempted = op.logs().find((r) => r.msg === "attempting to acquire leader lease");
  const became = op.logs().find((r) => r.msg === "became leader");
  return Date.parse(became?.time as string) - Date.parse(attempted?.time as string);
}

function waitReconciled(op: OperatorProcess, keys: string[], timeoutMs = 60_000): Promise<true> {
  return waitFor(
    `reconciles of ${keys.length} NexarTokens`,
    async () => {
      const done = new Set(
        op
          .logs()
          .filter((r) => r.msg === "reconciled")
          .map((r) => r.nexartoken),
      );
      return keys.every((k) => done.has(k)) ? true : undefined;
    },
    timeoutMs,
  );
}

describe("restart", () => {
  const ns = "restart";
  const names = Array.from({ length: N }, (_, i) => `r${i}`);

  async function snapshot() {
    const objects: Record<string, { nexarToken?: string; secret?: string; token?: string }> = {};
    for (const n of names) {
      const nt = await env.getToken(ns, n);
      const s = await env.readSecret(ns, `${n}-token`);
      objects[n] = {
        nexarToken: nt.metadata.resourceVersion,
        secret: s?.metadata?.resourceVersion,
        token: s?.data?.access_token === undefined ? undefined : String(s.data.access_token.length),
      };
    }
    return { objects, tokenRequests: env.idp.requests.length, tokensIssued: env.idp.tokensIssued() };
  }

  it(`restarting with ${N} Ready NexarTokens makes 0 token requests, 0 Secret writes, 0 status writes`, async () => {
    // The very first replica found no Lease and took it at once.
    expect(acquireMs(env.op)).toBeLessThan(5_000);

    await env.namespace(ns);
    env.client({ clientId: "restart-app", clientSecret: "restart-secret-0123456789abcdef" });
    await env.credentials(ns, "nexar-app", {
      clientId: "restart-app",
      clientSecret: "restart-secret-0123456789abcdef",
    });
    for (const n of names) {
      await env.createToken(ns, n, {
        scopes: ["supply.domain"],
        tokenUrl: env.idp.tokenUrl,
        credentialsSecretRef: { name: "nexar-app" },
        target: { name: `${n}-token`, template: { Authorization: "Bearer {{access_token}}" } },
      });
    }
    for (const n of names) await env.waitReady(ns, n, "True");
    // Settled: nothing changes over a few seconds (the first reconciles' own writes have echoed back).
    let before = await snapshot();
    await waitFor(
      "a quiet operator",
      async () => {
        await sleep(2_000);
        const now = await snapshot();
        const same = JSON.stringify(now) === JSON.stringify(before);
        before = now;
        return same ? true : undefined;
      },
      60_000,
      0,
    );

    const credentialGets = operatorGets(ns, "nexar-app");
    const old = env.op;
    expect(await old.stop()).toBe(0);
    const released = await kube.getOrUndefined<Lease>(leasePath("default", "nexar-token-operator"));
    expect(released?.spec).toMatchObject({ holderIdentity: "", leaseDurationSeconds: 1 });

    const op = await startOperator({ kubeconfig: env.cp.kubeconfigPath });
    env.operators.push(op);
    env.op = op;
    expect(acquireMs(op)).toBeLessThan(5_000); // a released Lease is taken at once
    await waitReconciled(
      op,
      names.map((n) => `${ns}/${n}`),
    );
    await sleep(1_000);
    const after = await snapshot();
    console.log(
      `[restart] ${N} NexarTokens: ${after.tokenRequests - before.tokenRequests} token requests after the restart`,
    );
    expect(after).toEqual(before);
    expect(op.logs().filter((r) => r.msg === "target Secret written" || r.msg === "token issued")).toEqual([]);
    // N reconciles at once, one credentials Secret: one GET, the others wait for it.
    expect(operatorGets(ns, "nexar-app") - credentialGets).toBe(1);
  });
});

describe("restart after the target Secret was edited while no operator ran", () => {
  const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
  const secretOf = (ns: string) => `${ns}-secret-0123456789abcdef`;

  /**
   * Namespace `ns` with client `ns` (tokens of `lifetime` s), NexarToken `supply` Ready; returns
   * the target Secret as first written.
   */
  async function issue(ns: string, lifetime: number) {
    await env.namespace(ns);
    env.client({ clientId: ns, clientSecret: secretOf(ns), accessTokenLifetimeSeconds: lifetime });
    await env.credentials(ns, "nexar-app", { clientId: ns, clientSecret: secretOf(ns) });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    return waitFor(`${ns}: the target Secret`, () => env.readSecret(ns, "supply"));
  }

  /** A second token, of a shorter lifetime, replaces the first; returns the Secret once status agrees with it. */
  async function renew(ns: string, first: string | undefined) {
    env.client({ clientId: ns, clientSecret: secretOf(ns), accessTokenLifetimeSeconds: 3_600 });
    await requestRefresh(env, ns, "supply");
    return settled(ns, (t) => t !== first);
  }

  /** The target Secret once its token passes `ok` and Ready=True, TokenIssued reports its expiry. */
  function settled(ns: string, ok: (token: string | undefined) => boolean, timeoutMs = 30_000) {
    return waitFor(
      `${ns}: a token in the Secret that status agrees with`,
      async () => {
        const s = await env.readSecret(ns, "supply");
        const nt = await env.getToken(ns, "supply");
        const ready = nt.status?.conditions?.find((c) => c.type === "Ready");
        return ok(decode(s?.data?.access_token)) &&
          ready?.reason === "TokenIssued" &&
          nt.status?.expiresAt === decode(s?.data?.expires_at)
          ? s
          : undefined;
      },
      timeoutMs,
    );
  }

  it("a restored backup or a replaced access_token is not trusted: a new token is fetched; an untouched Secret is kept", async () => {
    // Tokens of 2 h, then of 1 h: the first token's expiry is an hour off the second's.
    const backup = await issue("restored", 7_200);
    const restored = await renew("restored", decode(backup.data?.access_token));
    const older = await issue("replaced", 7_200);
    const replaced = await renew("replaced", decode(older.data?.access_token));
    const kept = await issue("untouched", 3_600);
    const requests = (ns: string) => requestsOf(env, ns).length;
    expect([requests("restored"), requests("replaced"), requests("untouched")]).toEqual([2, 2, 1]);

    expect(await env.op.stop()).toBe(0);
    // The whole data of the earlier Secret is put back, its annotations left as they are now.
    await env.core.replaceNamespacedSecret({
      namespace: "restored",
      name: "supply",
      body: { ...restored, data: backup.data },
    });
    // Only access_token is replaced (by an earlier token of the same client): expires_at stays.
    await env.core.replaceNamespacedSecret({
      namespace: "replaced",
      name: "supply",
      body: { ...replaced, data: { ...replaced.data, access_token: b64(decode(older.data?.access_token) ?? "") } },
    });
    const op = await startOperator({ kubeconfig: env.cp.kubeconfigPath });
    env.operators.push(op);
    env.op = op;

    const stale = new Set([backup, restored, older, replaced].map((s) => decode(s.data?.access_token)));
    const fresh = await Promise.allSettled(
      ["restored", "replaced"].map((ns) => settled(ns, (t) => t !== undefined && !stale.has(t))),
    );
    expect.soft(fresh[0]?.status, "restored: a new token").toBe("fulfilled");
    expect.soft(fresh[1]?.status, "replaced: a new token").toBe("fulfilled");
    expect([requests("restored"), requests("replaced")]).toEqual([3, 3]);
    await waitReconciled(op, ["untouched/supply"]);
    expect(requests("untouched")).toBe(1);
    expect(await env.accessToken("untouched", "supply")).toBe(decode(kept.data?.access_token));
  });
});
