/**
 * Issue 4, item 2: restart without re-fetch. With N Ready NexarTokens whose tokens are valid, a
 * restart of the operator causes 0 token requests, 0 Secret writes and 0 status writes: the new
 * process takes its state from the NexarToken status and the target Secrets. The restarted
 * process acquires the Lease its predecessor released at once (no 15 s wait), and reads the
 * credentials Secret the N NexarTokens share once (the audit log), not once per NexarToken.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudit, type AuditEvent } from "../harness/audit.ts";
import { startEnv, waitFor, type Env } from "./env.ts";
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
