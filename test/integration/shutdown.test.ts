/**
 * Issue 4, item 5: health endpoints and graceful shutdown. SIGTERM stops intake (`/readyz` 503),
 * lets the reconcile in flight finish its writes, releases the Lease (so the standby takes over
 * at its next attempt instead of after the 15 s lease) and exits 0 within the grace period.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnv, waitFor, type Env } from "./env.ts";
import { startOperator, type OperatorProcess } from "../harness/operator.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { leasePath, type Lease } from "../../src/kube/lease.ts";

/** Kubernetes' default `terminationGracePeriodSeconds`, ms. */
const GRACE_MS = 30_000;
let env: Env;
let kube: KubeClient;
const extra: OperatorProcess[] = [];

beforeAll(async () => {
  env = await startEnv({ operatorEnv: { POD_NAME: "op-a" } });
  kube = await KubeClient.create(env.kc);
});
afterAll(async () => {
  if (!env) return;
  try {
    await env.scanForSecrets();
  } finally {
    await Promise.all(extra.map((o) => o.stop()));
    await kube?.close();
    await env.stop();
  }
});

const readLease = () => kube.getOrUndefined<Lease>(leasePath("default", "nexar-token-operator"));

async function readyz(op: OperatorProcess): Promise<{ status: number; body: string }> {
  const res = await fetch(`${op.httpUrl}/readyz`);
  return { status: res.status, body: await res.text() };
}

async function startReplica(podName: string): Promise<OperatorProcess> {
  const op = await startOperator({ kubeconfig: env.cp.kubeconfigPath, env: { POD_NAME: podName }, waitFor: "synced" });
  extra.push(op);
  env.operators.push(op);
  return op;
}

describe("health and graceful shutdown", () => {
  it("/healthz is ok and /readyz tells leader from standby once caches synced", async () => {
    const res = await fetch(`${env.op.httpUrl}/healthz`);
    expect(res.status).toBe(200);
    expect(await readyz(env.op)).toEqual({ status: 200, body: "ok (leader)\n" });
  });

  it("SIGTERM on a standby exits 0 and leaves the Lease alone", async () => {
    const c = await startReplica("op-c");
    expect(await readyz(c)).toEqual({ status: 200, body: "ok (standby)\n" });
    const before = await readLease();
    expect(await c.stop()).toBe(0);
    const after = await readLease();
    expect(after?.spec?.holderIdentity).toBe("op-a");
    expect(after?.spec?.leaseTransitions).toBe(before?.spec?.leaseTransitions);
    expect(c.logs().some((r) => r.msg === "released leader lease")).toBe(false);
  });

  it("SIGTERM on the leader: intake stops, the in-flight write completes, the Lease is released, exit 0", async () => {
    const a = env.op;
    const b = await startReplica("op-b");
    const ns = await env.namespace("shutdown");
    env.client({ clientId: "sd-app", clientSecret: "sd-secret-0123456789abcdef" });
    await env.credentials(ns, "nexar-app", { clientId: "sd-app", clientSecret: "sd-secret-0123456789abcdef" });
    // The token request will take 4 s: SIGTERM arrives while it is in flight.
    env.idp.setFault({ kind: "delay", ms: 4_000, times: 1 });
    await env.createToken(ns, "slow", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await waitFor("a token request in flight", async () =>
      env.idp.requests.some((r) => r.clientId === "sd-app" && r.status === 0) ? true : undefined,
    );

    const termAt = Date.now();
    a.signal("SIGTERM");
    // Intake stopped: not ready any more while the reconcile in flight finishes.
    const draining = await waitFor(
      "/readyz 503",
      async () => {
        const r = await readyz(a);
        return r.status === 503 ? r : undefined;
      },
      3_000,
      50,
    );
    expect(draining.body).toBe("shutting down\n");
    expect(await readLease().then((l) => l?.spec?.holderIdentity)).toBe("op-a"); // not released before the write

    const code = await a.exited;
    const exitedAt = Date.now();
    expect(code).toBe(0);
    expect(exitedAt - termAt).toBeLessThan(GRACE_MS);
    // The write of the reconcile in flight happened before the exit: Secret and status are there now.
    const secret = await env.readSecret(ns, "slow");
    expect(secret?.data?.access_token).toBeTruthy();
    const nt = await env.getToken(ns, "slow");
    expect(nt.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
    // …and only then was the Lease released (a standby could not have written it: it fetched nothing).
    const order = a
      .logs()
      .map((r) => r.msg)
      .filter((m) => m === "reconciled" || m === "released leader lease" || m === "stopped");
    expect(order.slice(-3)).toEqual(["reconciled", "released leader lease", "stopped"]);

    // Released: the standby takes over at its next attempt (≤ 4.4 s), not after the 15 s lease.
    const lease = await waitFor(
      "Lease held by op-b",
      async () => {
        const l = await readLease();
        return l?.spec?.holderIdentity === "op-b" ? l : undefined;
      },
      20_000,
      100,
    );
    const takeoverMs = Date.now() - exitedAt;
    console.log(`[shutdown] exit ${exitedAt - termAt} ms after SIGTERM; standby took over ${takeoverMs} ms after exit`);
    expect(takeoverMs).toBeLessThan(10_000);
    expect(lease.spec?.leaseDurationSeconds).toBe(15);

    // The new leader keeps the token the old one fetched: still exactly one token request.
    await b.waitForLog((r) => r.msg === "reconciled" && r.nexartoken === `${ns}/slow`, 15_000);
    expect(env.idp.requests.filter((r) => r.clientId === "sd-app")).toHaveLength(1);
    env.op = b;
  });

  it("flags: --leader-election-namespace/--leader-election-id choose the Lease; --leader-elect=false uses none", async () => {
    const e = await startOperator({
      kubeconfig: env.cp.kubeconfigPath,
      env: { POD_NAME: "op-e" },
      extraArgs: ["--leader-election-namespace", "kube-system", "--leader-election-id", "alt-lease"],
    });
    env.operators.push(e);
    const alt = await kube.getOrUndefined<Lease>(leasePath("kube-system", "alt-lease"));
    expect(alt?.spec?.holderIdentity).toBe("op-e");
    expect(await e.stop()).toBe(0);
    const released = await kube.getOrUndefined<Lease>(leasePath("kube-system", "alt-lease"));
    expect(released?.spec).toMatchObject({ holderIdentity: "", leaseDurationSeconds: 1 });

    const before = await readLease();
    const f = await startOperator({ kubeconfig: env.cp.kubeconfigPath, extraArgs: ["--leader-elect=false"] });
    env.operators.push(f);
    expect(f.logs().some((r) => r.msg === "leader election disabled")).toBe(true);
    expect(f.logs().some((r) => r.msg === "attempting to acquire leader lease")).toBe(false);
    expect(await f.stop()).toBe(0);
    expect((await readLease())?.spec?.holderIdentity).toBe(before?.spec?.holderIdentity);
  });
});
