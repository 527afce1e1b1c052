/**
 * Issue 3: the operator's watches under real faults, and the bounded Secret cache (SPEC §3.8).
 *
 * The operator reaches the real kube-apiserver through a loopback TCP proxy (TLS passes through
 * untouched) that the test can cut or pause. The apiserver serves Secrets without its watch cache
 * (`--watch-cache-sizes=secrets#0`), so a Secret watch resumed from a resourceVersion that etcd
 * has compacted gets a real `410 Gone` — the compaction is done through etcd's v3 JSON gateway.
 * The audit log (Secrets, level Metadata) shows which watches and reads the operator made.
 *
 * - watch connections cut five times in a row still deliver events afterwards;
 * - a 410 Gone relists, and the relist notices a Secret deleted while the watch was down;
 * - 1,000 unrelated 100 KiB Secrets neither reach the operator (metadata-only watch: bytes through
 *   the proxy) nor wake a reconcile (index of referenced names: no reads in the audit log), and
 *   its memory stays flat.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { readAudit, type AuditEvent } from "../harness/audit.ts";
import { startTcpProxy, type TcpProxy } from "../harness/tcp-proxy.ts";
import type { ControlPlane } from "../harness/controlplane.ts";
import { decode, startEnv, waitFor, type Env } from "./env.ts";
import { dumpOperatorLogs, issued, requestsOf, sleep } from "./faults-helpers.ts";

let env: Env;
let proxy: TcpProxy | undefined;

/** A copy of the admin kubeconfig whose server is the proxy in front of the apiserver. */
async function viaProxy(cp: ControlPlane): Promise<string> {
  proxy = await startTcpProxy({ host: "127.0.0.1", port: Number(new URL(cp.server).port) });
  const doc = parse(readFileSync(cp.kubeconfigPath, "utf8")) as { clusters: { cluster: { server: string } }[] };
  for (const c of doc.clusters) c.cluster.server = `https://127.0.0.1:${proxy.port}`;
  const path = join(cp.dir, "operator-via-proxy.kubeconfig");
  writeFileSync(path, stringify(doc), { mode: 0o600 });
  return path;
}

beforeAll(async () => {
  env = await startEnv({
    controlPlane: { audit: true, apiserverArgs: ["--watch-cache-sizes=secrets#0"] },
    operatorKubeconfig: viaProxy,
  });
});
afterAll(async () => {
  proxy?.resume();
  if (!env) return;
  dumpOperatorLogs(env, "watch");
  await env.scanForSecrets();
  await env.stop();
  await proxy?.close();
});

/** The operator's Secret watch requests (started), from the audit log. */
function secretWatches(): AuditEvent[] {
  return readAudit(env.cp.auditLogPath as string).filter(
    (e) =>
      e.verb === "watch" &&
      e.stage === "ResponseStarted" &&
      e.objectRef?.resource === "secrets" &&
      (e as AuditEvent & { userAgent?: string }).userAgent === "nexar-token-operator",
  );
}

/** The operator's reads and writes of named Secrets, from the audit log. */
function secretReads(): AuditEvent[] {
  return readAudit(env.cp.auditLogPath as string).filter(
    (e) =>
      e.stage === "ResponseComplete" &&
      e.objectRef?.resource === "secrets" &&
      e.objectRef.name !== undefined &&
      (e as AuditEvent & { userAgent?: string }).userAgent === "nexar-token-operator",
  );
}

async function etcd<T>(path: string, body: unknown): Promise<T> {
  const res = await fetch(`${env.cp.etcdUrl}${path}`, { method: "POST", body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`etcd ${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

describe("watch faults", () => {
  it("watch connections cut five times in a row still deliver events afterwards", async () => {
    const ns = "cut";
    const token0 = await issued(env, ns, ns);
    const p = proxy as TcpProxy;
    for (let i = 1; i <= 5; i++) {
      // Each cut hits a live watch: the next cut waits until the operator has watched again.
      const before = secretWatches().length;
      await sleep(200);
      expect(p.cut()).toBeGreaterThan(0);
      await waitFor(
        `a new Secret watch after cut ${i}`,
        async () => (secretWatches().length > before ? true : undefined),
        45_000,
        100,
      );
    }
    const failures = env.op.logs().filter((r) => r.msg === "list/watch failed; retrying");
    expect(failures.length).toBeGreaterThanOrEqual(5);

    // Events still flow: a deleted target Secret is restored (Secret watch) …
    await env.core.deleteNamespacedSecret({ namespace: ns, name: "supply" });
    const restored = await waitFor("the Secret restored after five cuts", () => env.readSecret(ns, "supply"), 45_000);
    expect(decode(restored.data?.access_token)).toBe(token0);
    // … and a new NexarToken is served (NexarToken watch).
    await env.createToken(ns, "second", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await env.waitReady(ns, "second", "True", "TokenIssued", 45_000);
  }, 200_000);

  it("a 410 Gone relists, and the relist notices a Secret deleted while the watch was down", async () => {
    const ns = "gone";
    const token0 = await issued(env, ns, ns);
    const p = proxy as TcpProxy;
    p.pause();
    try {
      await env.core.deleteNamespacedSecret({ namespace: ns, name: "supply" });
      await env.core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: "filler" } } });
      // Compact etcd up to now: the operator's last-seen resourceVersion is gone.
      const range = await etcd<{ header: { revision: string } }>("/v3/kv/range", {
        key: Buffer.from("/").toString("base64"),
      });
      await etcd("/v3/kv/compaction", { revision: range.header.revision, physical: true });
    } finally {
      p.resume();
    }
    await env.op.waitForLog((r) => r.msg === "resourceVersion too old (410 Gone); relisting", 45_000);
    const restored = await waitFor("the Secret restored after the relist", () => env.readSecret(ns, "supply"), 30_000);
    expect(decode(restored.data?.access_token)).toBe(token0);
    expect(requestsOf(env, ns)).toHaveLength(1);
  }, 120_000);
});

describe("bounded Secret cache", () => {
  it("1,000 unrelated 100 KiB Secrets: not transferred, no reconcile, memory flat", async () => {
    const ns = "bulk";
    await issued(env, ns, ns);
    await sleep(2_000);
    const p = proxy as TcpProxy;
    const rss = (): number => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${env.op.child.pid}/status`, "utf8"));
      return Number(m?.[1] ?? NaN) * 1024;
    };
    const rssBefore = rss();
    const bytesBefore = p.bytesToClient;
    const readsBefore = secretReads().length;
    const payload = Buffer.alloc(100 * 1024, "x").toString("base64");
    const started = Date.now();
    const N = 1000;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < N) {
        const i = next++;
        await env.core.createNamespacedSecret({
          namespace: ns,
          body: { metadata: { name: `unrelated-${i}`, labels: { bulk: "yes" } }, data: { blob: payload } },
        });
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const createdMs = Date.now() - started;
    await sleep(5_000);
    const transferred = p.bytesToClient - bytesBefore;
    const grown = rss() - rssBefore;
    console.log(
      `bulk: ${N} × 100 KiB Secrets created in ${createdMs} ms; operator received ${(transferred / 1e6).toFixed(2)} MB; RSS ${(rssBefore / 1e6).toFixed(0)} → ${(rss() / 1e6).toFixed(0)} MB`,
    );
    // Full objects would be ≥ 137 MB (base64 of 100 MB); metadata is a few hundred bytes each.
    expect(transferred).toBeLessThan(10_000_000);
    // Memory flat: generous bound (a full cache would hold ≥ 100 MB).
    expect(grown).toBeLessThan(60 * 1024 * 1024);
    // No reconcile was woken: the operator read no Secret meanwhile.
    expect(secretReads().length).toBe(readsBefore);
  }, 240_000);
});
