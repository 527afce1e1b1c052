/**
 * Issue 4, item 1: leader election on a coordination.k8s.io/v1 Lease with several operator
 * processes against the real apiserver — failover after SIGKILL of the leader (time measured,
 * no token request while tokens are valid), and a partitioned leader (apiserver unreachable
 * through a loopback TCP proxy) that stops by itself before another replica may take over.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEnv, waitFor, type Env } from "./env.ts";
import { startOperator, type OperatorProcess } from "../harness/operator.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { leasePath, type Lease } from "../../src/kube/lease.ts";
import { parseMicroTime } from "../../src/kube/leaderelection.ts";

const LEASE_NS = "default"; // no POD_NAMESPACE and no service-account file: the documented fallback
const LEASE_NAME = "nexar-token-operator";
const MICROTIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/;
const N = 5;

let env: Env;
let kube: KubeClient;
let tmp: string;
const extra: OperatorProcess[] = [];

beforeAll(async () => {
  env = await startEnv({ operatorEnv: { POD_NAME: "op-a" } });
  kube = await KubeClient.create(env.kc);
  tmp = await mkdtemp(join(tmpdir(), "nexar-le-"));
});
afterAll(async () => {
  if (!env) return;
  try {
    await env.scanForSecrets();
  } finally {
    await Promise.all(extra.map((o) => o.stop()));
    await kube?.close();
    await env.stop();
    await rm(tmp, { recursive: true, force: true });
  }
});

async function startReplica(podName: string, kubeconfig?: string): Promise<OperatorProcess> {
  const op = await startOperator({
    kubeconfig: kubeconfig ?? env.cp.kubeconfigPath,
    env: { POD_NAME: podName },
    waitFor: "synced",
  });
  extra.push(op);
  env.operators.push(op);
  return op;
}

const readLease = () => kube.getOrUndefined<Lease>(leasePath(LEASE_NS, LEASE_NAME));

function waitForHolder(holder: string, timeoutMs: number): Promise<Lease> {
  return waitFor(
    `Lease held by ${holder}`,
    async () => {
      const l = await readLease();
      return l?.spec?.holderIdentity === holder ? l : undefined;
    },
    timeoutMs,
    100,
  );
}

async function readyz(op: OperatorProcess): Promise<{ status: number; body: string }> {
  const res = await fetch(`${op.httpUrl}/readyz`);
  return { status: res.status, body: await res.text() };
}

/** resourceVersions of every NexarToken and target Secret, and the identity server's counters. */
async function snapshot(ns: string) {
  const objects: Record<string, { nexarToken?: string; secret?: string }> = {};
  for (let i = 0; i < N; i++) {
    const nt = await env.getToken(ns, `t${i}`);
    const s = await env.readSecret(ns, `t${i}-token`);
    objects[`t${i}`] = { nexarToken: nt.metadata.resourceVersion, secret: s?.metadata?.resourceVersion };
  }
  return { objects, tokenRequests: env.idp.requests.length, tokensIssued: env.idp.tokensIssued() };
}

/** Resolves when `op` has logged a successful reconcile of every key. */
function waitReconciled(op: OperatorProcess, keys: string[], timeoutMs = 30_000): Promise<true> {
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

/**
 * A loopback TCP proxy to the apiserver. `cut()` turns it into a black hole: open connections
 * stay open but no byte passes any more, new connections are accepted and left hanging — what a
 * network partition looks like to the client (requests hang until their own deadlines).
 */
async function startProxy(targetPort: number): Promise<{ port: number; cut(): void; close(): Promise<void> }> {
  const pairs = new Set<[Socket, Socket]>();
  const held = new Set<Socket>();
  let cut = false;
  const server: Server = createServer((client) => {
    client.on("error", () => undefined);
    if (cut) {
      held.add(client);
      return;
    }
    const upstream = connect(targetPort, "127.0.0.1");
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("close", () => {
      upstream.destroy();
      pairs.delete(pair);
    });
    upstream.on("close", () => {
      if (!cut) client.destroy();
      pairs.delete(pair);
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    port: (server.address() as { port: number }).port,
    cut() {
      cut = true;
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        held.add(client);
        upstream.destroy();
      }
    },
    async close() {
      for (const s of held) s.destroy();
      for (const [c, u] of pairs) {
        c.destroy();
        u.destroy();
      }
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe("leader election", () => {
  const ns = "le";
  const keys = Array.from({ length: N }, (_, i) => `${ns}/t${i}`);

  it("kill -9 of the leader: the standby takes over within 20 s, with no token request while tokens are valid", async () => {
    const a = env.op;
    // The first replica found no Lease and took it at once (no 15 s wait).
    const first = await readLease();
    expect(first?.spec).toMatchObject({ holderIdentity: "op-a", leaseDurationSeconds: 15 });
    expect(first?.spec?.acquireTime).toMatch(MICROTIME);
    expect(first?.spec?.renewTime).toMatch(MICROTIME);
    const attempted = a.logs().find((r) => r.msg === "attempting to acquire leader lease");
    const became = a.logs().find((r) => r.msg === "became leader");
    expect(Date.parse(became?.time as string) - Date.parse(attempted?.time as string)).toBeLessThan(5_000);

    const b = await startReplica("op-b");
    expect(await readyz(a)).toEqual({ status: 200, body: "ok (leader)\n" });
    expect(await readyz(b)).toEqual({ status: 200, body: "ok (standby)\n" });

    await env.namespace(ns);
    env.client({ clientId: "le-app", clientSecret: "le-secret-0123456789abcdef" });
    await env.credentials(ns, "nexar-app", { clientId: "le-app", clientSecret: "le-secret-0123456789abcdef" });
    for (let i = 0; i < N; i++) {
      await env.createToken(ns, `t${i}`, {
        scopes: ["supply.domain"],
        tokenUrl: env.idp.tokenUrl,
        credentialsSecretRef: { name: "nexar-app" },
        target: { name: `t${i}-token` },
      });
    }
    for (let i = 0; i < N; i++) await env.waitReady(ns, `t${i}`, "True");
    await waitReconciled(a, keys);
    // The standby wrote nothing and reconciled nothing.
    expect(b.logs().filter((r) => r.msg === "reconciled")).toEqual([]);
    // the leader renews (every retry period, 2 s; the tokens above may be Ready sooner than that)
    const renewed = await waitFor(
      "the leader to renew its Lease",
      async () => {
        const l = await readLease();
        return l?.spec?.renewTime !== first?.spec?.renewTime ? l : undefined;
      },
      10_000,
    );
    expect(renewed?.spec?.holderIdentity).toBe("op-a");
    const transitions = renewed?.spec?.leaseTransitions ?? 0;
    const before = await snapshot(ns);

    const killedAt = Date.now();
    await a.kill();
    const lease = await waitForHolder("op-b", 40_000);
    const failoverMs = Date.now() - killedAt;
    console.log(`[leader-election] failover after SIGKILL of the leader: ${(failoverMs / 1000).toFixed(1)} s`);
    // client-go semantics: B waits a full LeaseDuration after it last saw the record change…
    expect(failoverMs).toBeGreaterThanOrEqual(10_000);
    // …and takes over within the bound.
    expect(failoverMs).toBeLessThanOrEqual(20_000);
    expect(lease.spec?.leaseTransitions).toBe(transitions + 1);
    expect(lease.spec?.acquireTime).toMatch(MICROTIME);
    expect(parseMicroTime(lease.spec?.acquireTime as string)).toBeGreaterThan(killedAt - 1_000);

    await b.waitForLog((r) => r.msg === "caches synced; starting workers", 10_000);
    await waitReconciled(b, keys);
    expect(await readyz(b)).toEqual({ status: 200, body: "ok (leader)\n" });
    const after = await snapshot(ns);
    console.log(
      `[leader-election] token requests caused by the failover: ${after.tokenRequests - before.tokenRequests}`,
    );
    expect(after).toEqual(before); // 0 token requests, 0 Secret writes, 0 status writes
    env.op = b;
  });

  it("a partitioned leader stops by itself within the renew deadline, before the standby takes over", async () => {
    const b = env.op;
    const proxy = await startProxy(Number(new URL(env.cp.server).port));
    const kubeconfig = join(tmp, "via-proxy.kubeconfig");
    const text = await readFile(env.cp.kubeconfigPath, "utf8");
    expect(text).toContain(env.cp.server);
    await writeFile(kubeconfig, text.replaceAll(env.cp.server, `https://127.0.0.1:${proxy.port}`), { mode: 0o600 });
    try {
      const c = await startReplica("op-c", kubeconfig);
      // Graceful hand-over B → C (B releases the Lease on SIGTERM), so the leader is behind the proxy.
      expect(await b.stop()).toBe(0);
      await waitForHolder("op-c", 15_000);
      await c.waitForLog((r) => r.msg === "caches synced; starting workers", 15_000);
      const d = await startReplica("op-d");
      await d.waitForLog((r) => r.msg === "new leader observed" && r.leader === "op-c", 15_000);
      const before = await snapshot(ns);

      const cutAt = Date.now();
      proxy.cut();
      const code = await c.exited;
      const exitedAt = Date.now();
      console.log(
        `[leader-election] partitioned leader exited ${((exitedAt - cutAt) / 1000).toFixed(1)} s after the cut`,
      );
      expect(code).toBe(1);
      // RetryPeriod (2 s) + RenewDeadline (10 s) after its last renewal, plus scheduling slack.
      expect(exitedAt - cutAt).toBeLessThanOrEqual(15_000);
      expect(c.logs().some((r) => r.msg === "leadership lost; exiting")).toBe(true);

      const lease = await waitForHolder("op-d", 40_000);
      const acquiredAt = parseMicroTime(lease.spec?.acquireTime as string);
      console.log(`[leader-election] standby took over ${((acquiredAt - cutAt) / 1000).toFixed(1)} s after the cut`);
      // Safety: the old leader had stopped before the new one could write anything.
      expect(acquiredAt).toBeGreaterThan(exitedAt);
      await d.waitForLog((r) => r.msg === "caches synced; starting workers", 10_000);
      await waitReconciled(d, keys);
      const after = await snapshot(ns);
      expect(after).toEqual(before);
      env.op = d;
    } finally {
      await proxy.close();
    }
  });
});
