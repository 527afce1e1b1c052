/**
 * `make bench`: scale and footprint of the operator (issue 5), measured end to end.
 *
 * Starts the harness control plane (real etcd + kube-apiserver) and identity server
 * (oidc-provider) on loopback, runs the operator as its own process (test/harness/operator.ts),
 * and measures:
 *
 *   P1 p1_all_ready_seconds        N NexarTokens over C credentials created at once → all Ready
 *   P2 p2_token_requests           token requests during P1 (floor: C)
 *   P7 p7_create_to_ready_*_ms     single creates, one every --p7-interval ms, while P1 runs
 *   P4 p4_rss_mib                  operator RSS with --total-tokens NexarTokens and --secrets unrelated Secrets
 *   P5 p5_idle_cpu_percent         operator CPU over --idle-seconds of idle (no renewal due)
 *   P3 p3_restart_*                restart the operator with every token valid: requests, writes, catch-up time
 *   P6 p6_writes_per_renewal       API writes (Secret + status) per NexarToken renewal, short-lived tokens
 *
 * RSS and CPU come from /proc/<pid>/status and /proc/<pid>/stat of the operator process. Every
 * figure is measured in this run; nothing is estimated. Sizes are flags; `--quick` picks small
 * ones (the smoke run inside `make test`). Results go to `--out` (default bench-results.json;
 * bench-results.quick.json with --quick) and a table with ✓/✗ per target on stdout; `--check`
 * exits 1 when a full run misses a target. Sizes must be whole numbers (exit 2 otherwise).
 *
 * Flags: --tokens 1000 --total-tokens 10000 --credentials 10 --secrets 3000 --secret-kib 100
 *   --idle-seconds 60 --p7-samples 50 --p7-interval 100 --renewal-tokens 10 --renewal-lifetime 20
 *   --renewal-window 90 --concurrency 32 --out bench-results.json --quick --check
 *   --operator-arg <arg> (repeatable, passed to `run`) --node-options "<node flags>" (NODE_OPTIONS
 *   of the operator) --operator-env K=V (repeatable) --profile-dir <dir> (CPU profile of the operator + heap snapshot at P4; the API server's CPU profile over 8 s of P1)
 *   --log-level info --keep-logs <path prefix> (operator logs → <prefix>.1, <prefix>.2)
 *   --operator-auth serviceaccount|admin (default serviceaccount: the chart's ServiceAccount and
 *   RBAC, with a TokenRequest token, as in a cluster; admin: the harness's client certificate)
 *   --peers: instead of all the above, the same work through External Secrets Operator and
 *   through this operator, side by side (hack/bench-peers.ts; --quick picks small sizes)
 *
 * The operator runs as shipped: NODE_OPTIONS from the Helm chart's `nodeOptions` value and
 * MALLOC_ARENA_MAX from the Dockerfile, unless --node-options / --operator-env say otherwise.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import https from "node:https";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { KubeConfig } from "@kubernetes/client-node";
import { parse as parseYaml, parseAllDocuments } from "yaml";
import { KubeClient, isStatus, type KubeList } from "../src/kube/client.ts";
import { nexarTokenPath, secretPath } from "../src/kube/paths.ts";
import type { NexarToken } from "../src/api/types.ts";
import { startControlPlane, type ControlPlane } from "../test/harness/controlplane.ts";
import { startIdentityServer, type IdentityServer } from "../test/harness/identity.ts";
import { applyCrd, collectionPath, createNamespace } from "../test/harness/kube.ts";
import { CLI, startOperator, type OperatorProcess } from "../test/harness/operator.ts";
import { CHART, RELEASE, toolPath } from "../test/alerts/render-rules.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CRD_PATH = join(ROOT, "crds", "nexartokens.nexar-operator.io.yaml");

/**
 * How the shipped operator runs: NODE_OPTIONS from the chart's `nodeOptions` value, and
 * MALLOC_ARENA_MAX from the Dockerfile's `ENV` lines (undefined when absent).
 */
function shippedRuntime(): { nodeOptions?: string; mallocArenaMax?: string } {
  const values = parseYaml(readFileSync(join(ROOT, "charts", "nexar-token-operator", "values.yaml"), "utf8")) as {
    nodeOptions?: unknown;
  };
  const docker = readFileSync(join(ROOT, "Dockerfile"), "utf8");
  return {
    nodeOptions: typeof values.nodeOptions === "string" && values.nodeOptions ? values.nodeOptions : undefined,
    mallocArenaMax: /^ENV\s.*\bMALLOC_ARENA_MAX=(\d+)/m.exec(docker)?.[1],
  };
}

/** The figures `bench-results.json` always holds (the list), all numbers. */
const RESULT_FIELDS = [
  "p1_all_ready_seconds",
  "p2_token_requests",
  "p3_restart_token_requests",
  "p3_restart_secret_writes",
  "p3_restart_ready_seconds",
  "p4_rss_mib",
  "p5_idle_cpu_percent",
  "p6_writes_per_renewal",
  "p7_create_to_ready_p50_ms",
  "p7_create_to_ready_p99_ms",
] as const;

const { values: flags } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    tokens: { type: "string" },
    "total-tokens": { type: "string" },
    credentials: { type: "string" },
    secrets: { type: "string" },
    "secret-kib": { type: "string" },
    "idle-seconds": { type: "string" },
    "p7-samples": { type: "string" },
    "p7-interval": { type: "string" },
    "renewal-tokens": { type: "string" },
    "renewal-lifetime": { type: "string" },
    "renewal-window": { type: "string" },
    concurrency: { type: "string" },
    out: { type: "string" },
    check: { type: "boolean", default: false },
    "operator-arg": { type: "string", multiple: true, default: [] },
    "profile-dir": { type: "string" },
    "log-level": { type: "string", default: "info" },
    "node-options": { type: "string" },
    "keep-logs": { type: "string" },
    "operator-env": { type: "string", multiple: true, default: [] },
    "operator-auth": { type: "string", default: "serviceaccount" },
    peers: { type: "boolean", default: false },
  },
});

const quick = flags.quick === true;
if (flags.peers === true) {
  // The side-by-side run with External Secrets Operator (hack/bench-peers.ts): its own sizes.
  const { runPeers } = await import("./bench-peers.ts");
  process.exit(await runPeers({ quick, out: flags.out }));
}
if (flags["operator-auth"] !== "serviceaccount" && flags["operator-auth"] !== "admin") {
  process.stderr.write(`bench: --operator-auth must be serviceaccount or admin (got ${flags["operator-auth"]})\n`);
  process.exit(2);
}
/** A size flag: a whole number ≥ `min` (default for the full or the quick run). Exits 2 with a message otherwise. */
const num = (name: keyof typeof flags, full: number, q: number, min = 1): number => {
  const raw = flags[name];
  const v = typeof raw === "string" ? Number(raw) : quick ? q : full;
  if (!Number.isInteger(v) || v < min) {
    process.stderr.write(`bench: --${name} must be a whole number ≥ ${min} (got ${String(raw)})\n`);
    process.exit(2);
  }
  return v;
};
const SIZES = {
  tokens: num("tokens", 1000, 20),
  totalTokens: num("total-tokens", 10_000, 40),
  credentials: num("credentials", 10, 2),
  secrets: num("secrets", 3000, 6, 0),
  secretKiB: num("secret-kib", 100, 1),
  idleSeconds: num("idle-seconds", 60, 2),
  p7Samples: num("p7-samples", 50, 3),
  p7IntervalMs: num("p7-interval", 100, 100),
  renewalTokens: num("renewal-tokens", 10, 3),
  renewalLifetimeSeconds: num("renewal-lifetime", 20, 8, 4),
  renewalWindowSeconds: num("renewal-window", 90, 40),
  concurrency: num("concurrency", 32, 8),
};
/** Quick runs never overwrite the committed full-run figures. */
const OUT = flags.out ?? (quick ? "bench-results.quick.json" : "bench-results.json");
SIZES.totalTokens = Math.max(SIZES.totalTokens, SIZES.tokens);

const started = Date.now();
const log = (s: string) =>
  process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// /proc of the operator process.

const CLK_TCK = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of `pid` in seconds (/proc/<pid>/stat fields 14 and 15, proc(5)). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state); utime is field 14 → rest[11], stime field 15 → rest[12]
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

/** VmRSS and VmHWM of `pid` in MiB (/proc/<pid>/status, proc(5)). */
function memory(pid: number): { rssMiB: number; hwmMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
  return { rssMiB: kb("VmRSS") / 1024, hwmMiB: kb("VmHWM") / 1024 };
}

// ---------------------------------------------------------------------------------------------
// Prometheus text: sum of the samples of one metric (optionally filtered by labels).

function metricSum(text: string, names: readonly string[], labels: Record<string, string> = {}): number | undefined {
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !names.includes(m[1] as string)) continue;
    const ls = m[2] ?? "";
    if (Object.entries(labels).some(([k, v]) => !ls.includes(`${k}="${v}"`))) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

const WRITES = ["nexar_token_api_writes_total"];
const RECONCILES = ["nexar_token_reconcile_total"];
const DEPTH = ["nexar_token_workqueue_depth"];
const ACTIVE = ["nexar_token_active_workers", "nexar_token_workqueue_processing"];

// ---------------------------------------------------------------------------------------------
// The API server's own request counter (apiserver_request_total), to count the operator's calls
// per NexarToken independently of how loaded the machine is.

/**
 * GET `path` of the API server with the kubeconfig's credentials; resolves with the body.
 * @throws Error on a network failure or a status other than 200.
 */
async function apiserverGet(kc: KubeConfig, path: string): Promise<Buffer> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("no cluster");
  const opts: https.RequestOptions = {};
  await kc.applyToHTTPSOptions(opts as never);
  return await new Promise<Buffer>((resolveBody, reject) => {
    const req = https.get(`${cluster.server}${path}`, opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        res.statusCode === 200
          ? resolveBody(Buffer.concat(chunks))
          : reject(new Error(`${path}: HTTP ${res.statusCode}`)),
      );
    });
    req.on("error", reject);
  });
}

async function apiserverRequests(kc: KubeConfig): Promise<Map<string, number>> {
  const text = (await apiserverGet(kc, "/metrics")).toString("utf8");
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("apiserver_request_total{")) continue;
    const label = (k: string) => new RegExp(`${k}="([^"]*)"`).exec(line)?.[1] ?? "";
    const resource = label("resource") + (label("subresource") ? `/${label("subresource")}` : "");
    if (!["secrets", "nexartokens", "nexartokens/status", "events"].includes(resource)) continue;
    const key = `${label("verb")} ${resource}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(" ") + 1)));
  }
  return out;
}

/**
 * Takes a Go CPU profile of the API server (`/debug/pprof/profile?seconds=N`, needs
 * `--profiling=true`) and writes it to `path` (read with `go tool pprof`). Never throws: a failed
 * profile is logged.
 */
async function apiserverProfile(kc: KubeConfig, path: string, seconds: number): Promise<void> {
  try {
    const body = await apiserverGet(kc, `/debug/pprof/profile?seconds=${seconds}`);
    writeFileSync(path, body);
    log(`API server CPU profile (${seconds} s of P1) written to ${path}`);
  } catch (err) {
    log(`API server CPU profile failed: ${(err as Error).message}`);
  }
}

/**
 * Milliseconds of a fixed single-threaded CPU loop (300,000 SHA-256 of 64 bytes, then 3·10⁷ square
 * roots): how fast the machine is right now. Recorded next to the wall-clock figures, which move
 * with it (the same loop took 911–1,176 ms back to back on the idle 2-core machine).
 */
function calibrationMs(): number {
  const t0 = performance.now();
  const block = Buffer.alloc(64, 1);
  for (let i = 0; i < 300_000; i++) createHash("sha256").update(block).digest();
  let x = 0;
  for (let i = 1; i <= 30_000_000; i++) x += Math.sqrt(i);
  if (x < 0) throw new Error("unreachable"); // keeps the loop from being optimised away
  return Math.round(performance.now() - t0);
}

function diffCounts(a: Map<string, number>, b: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of b) if (v - (a.get(k) ?? 0) > 0) out[k] = v - (a.get(k) ?? 0);
  return out;
}

/**
 * Waits until the operator's trailing Event POSTs have stopped: `POST events` in the API server's
 * `apiserver_request_total` unchanged for `quietMs`, polled every second, at most `maxMs`.
 * Events trail a burst by design (one in flight); P4's rest and P5's idle window start after them.
 * Returns the milliseconds waited.
 */
async function eventsDrained(kc: KubeConfig, quietMs: number, maxMs: number): Promise<number> {
  const started = Date.now();
  let last = (await apiserverRequests(kc)).get("POST events") ?? 0;
  let since = Date.now();
  while (Date.now() - since < quietMs && Date.now() - started < maxMs) {
    await sleep(1000);
    const now = (await apiserverRequests(kc)).get("POST events") ?? 0;
    if (now !== last) {
      last = now;
      since = Date.now();
    }
  }
  return Date.now() - started;
}

// ---------------------------------------------------------------------------------------------
// A watch on every NexarToken, recording when each first became Ready and each refresh.

interface Seen {
  readyAtMs?: number;
  lastRefreshTime?: string;
  refreshes: number;
}

class Tracker {
  readonly seen = new Map<string, Seen>();
  readyCount = 0;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private readonly kube: KubeClient;
  constructor(kube: KubeClient) {
    this.kube = kube;
  }

  async start(): Promise<void> {
    let rv = "";
    let cont: string | undefined;
    do {
      const page = await this.kube.request<KubeList<NexarToken>>("GET", nexarTokenPath(undefined), {
        query: { limit: 500, continue: cont },
      });
      for (const nt of page.items) this.observe(nt);
      cont = page.metadata.continue || undefined;
      rv = page.metadata.resourceVersion ?? rv;
    } while (cont);
    this.loop = this.run(rv);
  }

  private async run(rv: string): Promise<void> {
    while (!this.abort.signal.aborted) {
      try {
        await this.kube.watch<NexarToken>(
          nexarTokenPath(undefined),
          {
            query: { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 300 },
            signal: this.abort.signal,
            idleTimeoutMs: 400_000,
          },
          (ev) => {
            if (ev.type === "ERROR") throw new Error("watch ERROR event");
            rv = ev.object.metadata.resourceVersion ?? rv;
            if (ev.type === "ADDED" || ev.type === "MODIFIED") this.observe(ev.object);
          },
        );
      } catch (err) {
        if (this.abort.signal.aborted) return;
        log(`tracker watch restarted: ${(err as Error).message}`);
        await sleep(500);
      }
    }
  }

  private observe(nt: NexarToken): void {
    const key = `${nt.metadata.namespace}/${nt.metadata.name}`;
    let s = this.seen.get(key);
    if (!s) {
      s = { refreshes: 0 };
      this.seen.set(key, s);
    }
    const ready = nt.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
    if (ready && s.readyAtMs === undefined) {
      s.readyAtMs = Date.now();
      this.readyCount++;
    }
    const lr = nt.status?.lastRefreshTime;
    if (lr !== undefined && lr !== s.lastRefreshTime) {
      if (s.lastRefreshTime !== undefined) s.refreshes++;
      s.lastRefreshTime = lr;
    }
  }

  async waitReady(keys: readonly string[], timeoutMs: number, what: string): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let lastLog = Date.now();
    for (;;) {
      let n = 0;
      let last = 0;
      for (const k of keys) {
        const at = this.seen.get(k)?.readyAtMs;
        if (at !== undefined) {
          n++;
          last = Math.max(last, at);
        }
      }
      if (n === keys.length) return last;
      if (Date.now() > deadline) throw new Error(`${what}: only ${n}/${keys.length} Ready after ${timeoutMs} ms`);
      if (Date.now() - lastLog > 10_000) {
        log(`${what}: ${n}/${keys.length} Ready`);
        lastLog = Date.now();
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++] as T);
    }),
  );
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx] as number;
}

const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

function nexarToken(ns: string, name: string, tokenUrl: string, credentials: string) {
  return {
    apiVersion: "nexar-operator.io/v1alpha1",
    kind: "NexarToken",
    metadata: { name, namespace: ns },
    spec: { scopes: ["supply.domain"], tokenUrl, credentialsSecretRef: { name: credentials } },
  };
}

async function createIgnoringConflict(kube: KubeClient, path: string, body: unknown): Promise<void> {
  try {
    await kube.request("POST", path, { body });
  } catch (err) {
    if (!isStatus(err, 409)) throw err;
  }
}

/**
 * The operator's identity as in a cluster: the chart's ServiceAccount and RBAC (`helm template`,
 * leader election off as in the bench) created in the release namespace, and a kubeconfig holding
 * a TokenRequest token of that ServiceAccount (1 h). Returns the kubeconfig's path.
 * @throws when helm, an API call or the TokenRequest fails.
 */
async function serviceAccountKubeconfig(cp: ControlPlane, kube: KubeClient): Promise<string> {
  const ns = RELEASE.namespace;
  const out = execFileSync(
    toolPath("helm"),
    [
      "template",
      RELEASE.name,
      CHART,
      "--namespace",
      ns,
      "--set",
      "leaderElection.enabled=false",
      "--show-only",
      "templates/serviceaccount.yaml",
      "--show-only",
      "templates/rbac.yaml",
    ],
    { encoding: "utf8" },
  );
  await createNamespace(cp.kubeconfigPath, ns);
  let sa: string | undefined;
  for (const doc of parseAllDocuments(out)) {
    const o = doc.toJS() as { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } } | null;
    if (!o) continue;
    await createIgnoringConflict(kube, collectionPath(o, ns), o);
    if (o.kind === "ServiceAccount") sa = o.metadata.name;
  }
  if (!sa) throw new Error("bench: the chart rendered no ServiceAccount");
  const tr = await kube.request<{ status?: { token?: string } }>(
    "POST",
    `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`,
    { body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } } },
  );
  const token = tr.status?.token;
  if (!token) throw new Error("bench: TokenRequest returned no token");
  return await cp.kubeconfigWithToken(token, "bench-operator");
}

function operatorSupports(flag: string): boolean {
  try {
    return execFileSync(process.execPath, [CLI, "run", "--help"], { encoding: "utf8" }).includes(flag);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The run.

/** How the operator was run (recorded in the results). */
const runConfig: {
  operator?: { cli: string; args: string[]; auth: string; nodeOptions?: string; env: Record<string, string> };
} = {};

interface Results {
  [k: string]: unknown;
}

async function main(): Promise<Results> {
  log(`sizes ${JSON.stringify(SIZES)}${quick ? " (quick)" : ""}`);
  const profileDir = flags["profile-dir"] ? resolve(flags["profile-dir"]) : undefined;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const operatorArgs = [...(flags["operator-arg"] ?? [])];
  if (operatorSupports("--leader-elect") && !operatorArgs.some((a) => a.startsWith("--leader-elect"))) {
    operatorArgs.push("--leader-elect=false");
  }
  const shipped = shippedRuntime();
  const nodeOptions = [
    process.env.NODE_OPTIONS ?? "",
    flags["node-options"] ?? shipped.nodeOptions ?? "",
    profileDir
      ? `--cpu-prof --cpu-prof-dir=${profileDir} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${profileDir}`
      : "",
  ]
    .filter(Boolean)
    .join(" ");
  const operatorEnv: Record<string, string> = nodeOptions ? { NODE_OPTIONS: nodeOptions } : {};
  if (shipped.mallocArenaMax) operatorEnv.MALLOC_ARENA_MAX = shipped.mallocArenaMax;
  for (const kv of flags["operator-env"] ?? []) {
    const i = kv.indexOf("=");
    if (i > 0) operatorEnv[kv.slice(0, i)] = kv.slice(i + 1);
  }

  let cp: ControlPlane | undefined;
  let idp: IdentityServer | undefined;
  let op: OperatorProcess | undefined;
  let tracker: Tracker | undefined;
  let kube: KubeClient | undefined;
  // Ctrl-C / SIGTERM: tear down what was started (the operator first), then exit.
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: tearing down …`);
    void (async () => {
      await op?.kill().catch(() => {});
      await idp?.stop().catch(() => {});
      await cp?.stop().catch(() => {});
      process.exit(130);
    })();
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  runConfig.operator = {
    cli: CLI,
    args: operatorArgs,
    auth: flags["operator-auth"],
    nodeOptions: nodeOptions || undefined,
    env: Object.fromEntries(Object.entries(operatorEnv).filter(([k]) => k !== "NODE_OPTIONS")),
  };
  const results: Results = {};
  const extra: Record<string, unknown> = {};
  try {
    log("starting control plane and identity server …");
    // With --profile-dir the API server serves /debug/pprof (a CPU profile of P1 is taken below).
    cp = await startControlPlane({ controllerManager: false, apiserverArgs: profileDir ? ["--profiling=true"] : [] });
    idp = await startIdentityServer({ accessTokenLifetimeSeconds: 86_400 });
    await applyCrd(cp.kubeconfigPath, CRD_PATH);
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    kube = await KubeClient.create(kc, { timeoutMs: 120_000 });
    const k = kube;
    const tokenUrl = idp.tokenUrl;

    // credentials: one namespace and one client per credential; P7 has its own namespace with copies.
    const nsOf = (i: number) => `bench-${i}`;
    const creds = Array.from({ length: SIZES.credentials }, (_, i) => ({
      clientId: `bench-client-${i}`,
      clientSecret: `bench-secret-${i}-${Math.random().toString(36).slice(2)}0123456789`,
    }));
    for (const [i, c] of creds.entries()) {
      idp.addClient({ ...c, authMethod: "client_secret_post" });
      await createNamespace(cp.kubeconfigPath, nsOf(i));
      await createIgnoringConflict(k, secretPath(nsOf(i)), {
        metadata: { name: "nexar-app", namespace: nsOf(i) },
        stringData: c,
      });
    }
    await createNamespace(cp.kubeconfigPath, "bench-p7");
    for (const [i, c] of creds.entries()) {
      await createIgnoringConflict(k, secretPath("bench-p7"), {
        metadata: { name: `nexar-app-${i}`, namespace: "bench-p7" },
        stringData: c,
      });
    }

    const operatorKubeconfig =
      flags["operator-auth"] === "admin" ? cp.kubeconfigPath : await serviceAccountKubeconfig(cp, k);
    tracker = new Tracker(k);
    await tracker.start();
    const t = tracker;
    log(`starting the operator (${operatorArgs.join(" ") || "default flags"}) …`);
    op = await startOperator({
      kubeconfig: operatorKubeconfig,
      logLevel: flags["log-level"],
      extraArgs: operatorArgs,
      env: operatorEnv,
    });
    const pid = op.child.pid as number;
    await sleep(quick ? 500 : 3000);
    extra.p0_rss_mib_no_tokens = round(memory(pid).rssMiB, 1);

    // ---- P1 + P2 + P7 ------------------------------------------------------------------------
    const tokenName = (n: number) => `t-${String(n).padStart(5, "0")}`;
    const p1 = Array.from({ length: SIZES.tokens }, (_, n) => ({
      ns: nsOf(n % SIZES.credentials),
      name: tokenName(n),
    }));
    const p1Keys = p1.map((x) => `${x.ns}/${x.name}`);
    extra.calibration_ms_before_p1 = calibrationMs();
    idp.reset();
    log(`P1: creating ${SIZES.tokens} NexarTokens over ${SIZES.credentials} credentials at once …`);
    const api0 = await apiserverRequests(kc);
    const cpu0 = cpuSeconds(pid);
    // CPU of every process on the machine that takes part: P1 is bound by the machine's two cores.
    const cpOf = (name: string) => cp?.processes.find((x) => x.name === name)?.pid;
    const others = { apiserver: cpOf("kube-apiserver"), etcd: cpOf("etcd"), bench: process.pid };
    const others0 = Object.fromEntries(Object.entries(others).map(([k, p]) => [k, p ? cpuSeconds(p) : 0]));
    const t0 = Date.now();
    const apiProfile = profileDir ? apiserverProfile(kc, join(profileDir, "kube-apiserver-p1.pprof"), 8) : undefined;
    const creating = pool(p1, SIZES.concurrency, (x) =>
      k.request("POST", nexarTokenPath(x.ns), { body: nexarToken(x.ns, x.name, tokenUrl, "nexar-app") }).then(() => {}),
    );
    let p1Done = false;
    const p7: { key: string; createdAtMs: number }[] = [];
    const sampler = (async () => {
      await sleep(Math.min(500, SIZES.p7IntervalMs)); // let the burst start first
      for (let i = 0; i < SIZES.p7Samples && (i === 0 || !p1Done); i++) {
        const name = `p7-${String(i).padStart(4, "0")}`;
        const createdAtMs = Date.now();
        await k.request("POST", nexarTokenPath("bench-p7"), {
          body: nexarToken("bench-p7", name, tokenUrl, `nexar-app-${i % SIZES.credentials}`),
        });
        p7.push({ key: `bench-p7/${name}`, createdAtMs });
        await sleep(SIZES.p7IntervalMs);
      }
    })();
    await creating;
    const createdS = (Date.now() - t0) / 1000;
    const lastReady = await t.waitReady(p1Keys, 600_000, "P1");
    p1Done = true;
    await sampler;
    await apiProfile;
    results.p1_all_ready_seconds = round((lastReady - t0) / 1000);
    extra.p1_create_seconds = round(createdS);
    extra.p1_operator_cpu_seconds = round(cpuSeconds(pid) - cpu0);
    for (const [k, p] of Object.entries(others)) {
      if (p) extra[`p1_${k}_cpu_seconds`] = round(cpuSeconds(p) - (others0[k] ?? 0));
    }
    extra.p1_apiserver_requests = diffCounts(api0, await apiserverRequests(kc));
    log(
      `P1: all ${SIZES.tokens} Ready after ${results.p1_all_ready_seconds} s (creates took ${createdS.toFixed(1)} s)`,
    );
    await t.waitReady(
      p7.map((x) => x.key),
      120_000,
      "P7",
    );
    await sleep(1000);
    results.p2_token_requests = idp.requests.length;
    const lat = p7.map((x) => (t.seen.get(x.key)?.readyAtMs as number) - x.createdAtMs).sort((a, b) => a - b);
    results.p7_create_to_ready_p50_ms = Math.round(percentile(lat, 50));
    results.p7_create_to_ready_p99_ms = Math.round(percentile(lat, 99));
    extra.p7_samples = lat.length;
    extra.p7_max_ms = lat.length ? lat[lat.length - 1] : null;
    log(`P2: ${results.p2_token_requests} token requests; P7: ${lat.length} samples`);

    // ---- fill to total + unrelated Secrets -----------------------------------------------------
    const rest = Array.from({ length: SIZES.totalTokens - SIZES.tokens - p7.length }, (_, j) => {
      const n = SIZES.tokens + j;
      return { ns: nsOf(n % SIZES.credentials), name: tokenName(n) };
    });
    log(`filling: ${rest.length} more NexarTokens and ${SIZES.secrets} unrelated Secrets of ${SIZES.secretKiB} KiB …`);
    const payload = Buffer.alloc(SIZES.secretKiB * 1024, 7).toString("base64");
    const fillT0 = Date.now();
    await Promise.all([
      pool(rest, SIZES.concurrency, (x) =>
        k
          .request("POST", nexarTokenPath(x.ns), { body: nexarToken(x.ns, x.name, tokenUrl, "nexar-app") })
          .then(() => {}),
      ),
      pool(
        Array.from({ length: SIZES.secrets }, (_, n) => n),
        8,
        (n) =>
          createIgnoringConflict(k, secretPath(nsOf(n % SIZES.credentials)), {
            metadata: { name: `noise-${String(n).padStart(5, "0")}`, namespace: nsOf(n % SIZES.credentials) },
            type: "Opaque",
            data: { blob: payload },
          }),
      ),
    ]);
    await t.waitReady(
      rest.map((x) => `${x.ns}/${x.name}`),
      1_800_000,
      "fill",
    );
    extra.fill_all_ready_seconds = round((Date.now() - fillT0) / 1000);
    extra.tokens_total = t.seen.size;
    log(
      `filled: ${t.seen.size} NexarTokens Ready after ${extra.fill_all_ready_seconds} s; requests so far ${idp.requests.length}`,
    );

    // ---- P4: RSS ----------------------------------------------------------------------------
    extra.fill_events_drained_seconds = round((await eventsDrained(kc, quick ? 1000 : 3000, 180_000)) / 1000);
    await sleep(quick ? 1000 : 10_000);
    const mem = memory(pid);
    results.p4_rss_mib = round(mem.rssMiB, 1);
    extra.p4_rss_hwm_mib = round(mem.hwmMiB, 1);
    log(`P4: RSS ${results.p4_rss_mib} MiB (peak ${extra.p4_rss_hwm_mib} MiB)`);
    if (profileDir) {
      op.child.kill("SIGUSR2");
      log(`heap snapshot requested into ${profileDir}`);
      await sleep(quick ? 3000 : 30_000);
    }

    // ---- P5: idle CPU -------------------------------------------------------------------------
    const api5 = await apiserverRequests(kc);
    const c0 = cpuSeconds(pid);
    const w0 = performance.now();
    // The same window in 10 s slices (CPU % each): shows whether the idle cost is steady or a tail.
    const slices: number[] = [];
    for (let left = SIZES.idleSeconds * 1000, prev = c0; left > 0; left -= 10_000) {
      const sliceMs = Math.min(10_000, left);
      await sleep(sliceMs);
      const now = cpuSeconds(pid);
      slices.push(round(((now - prev) / (sliceMs / 1000)) * 100, 2));
      prev = now;
    }
    extra.p5_cpu_percent_per_10s = slices;
    const c1 = cpuSeconds(pid);
    const wall = (performance.now() - w0) / 1000;
    results.p5_idle_cpu_percent = round(((c1 - c0) / wall) * 100, 3);
    extra.p5_apiserver_requests = diffCounts(api5, await apiserverRequests(kc));
    log(`P5: ${results.p5_idle_cpu_percent} % CPU over ${wall.toFixed(1)} s idle`);
    // V8 heap with every NexarToken held (after P5: a scrape is work): headroom under --max-old-space-size.
    const heapText = await op.metrics();
    extra.heap_used_mib = round((metricSum(heapText, ["nodejs_heap_size_used_bytes"]) ?? NaN) / 2 ** 20, 1);
    extra.heap_total_mib = round((metricSum(heapText, ["nodejs_heap_size_total_bytes"]) ?? NaN) / 2 ** 20, 1);
    log(`heap: ${extra.heap_used_mib} MiB used of ${extra.heap_total_mib} MiB`);

    // ---- P3: restart ------------------------------------------------------------------------
    log("P3: restarting the operator …");
    await op.stop();
    if (flags["keep-logs"]) writeFileSync(`${flags["keep-logs"]}.1`, `${op.lines.join("\n")}\n`);
    idp.reset();
    const api3 = await apiserverRequests(kc);
    const r0 = Date.now();
    op = await startOperator({
      kubeconfig: operatorKubeconfig,
      logLevel: flags["log-level"],
      extraArgs: operatorArgs,
      env: operatorEnv,
    });
    const restartedPid = op.child.pid as number;
    const total = t.seen.size;
    // Caught up = every NexarToken reconciled once and the queue empty (operator metrics). A
    // scrape is not free with 10,000 NexarTokens (per-token series), so the operator's CPU time is
    // watched (free, /proc) and /metrics is read only once it has been idle for a second; the
    // time reported is the end of its last busy 100 ms.
    let caughtUpAtMs: number | undefined;
    let lastText = "";
    let lastBusyMs = Date.now();
    let lastCpu = cpuSeconds(restartedPid);
    for (const deadline = Date.now() + 900_000; Date.now() < deadline;) {
      await sleep(100);
      const cpu = cpuSeconds(restartedPid);
      if (cpu - lastCpu > 0.02) lastBusyMs = Date.now(); // > 20 % of a core in the last 100 ms
      lastCpu = cpu;
      if (Date.now() - lastBusyMs < 1000) continue;
      const text = await op.metrics();
      lastCpu = cpuSeconds(restartedPid); // the scrape itself is not work
      lastText = text;
      const reconciled = metricSum(text, RECONCILES) ?? 0;
      const depth = metricSum(text, DEPTH) ?? 0;
      const active = metricSum(text, ACTIVE) ?? 0;
      if (reconciled >= total && depth === 0 && active === 0) {
        caughtUpAtMs = lastBusyMs;
        break;
      }
      lastBusyMs = Date.now() - 500; // not done: look again in half a second
    }
    if (caughtUpAtMs === undefined) throw new Error("P3: the restarted operator did not catch up in 15 minutes");
    results.p3_restart_ready_seconds = round((caughtUpAtMs - r0) / 1000);
    extra.p3_operator_cpu_seconds = round(cpuSeconds(restartedPid));
    extra.p3_apiserver_requests = diffCounts(api3, await apiserverRequests(kc));
    await sleep(3000);
    lastText = await op.metrics();
    results.p3_restart_token_requests = idp.requests.length;
    results.p3_restart_secret_writes = metricSum(lastText, WRITES, { resource: "secret" }) ?? 0;
    extra.p3_restart_status_writes = metricSum(lastText, WRITES, { resource: "status" }) ?? 0;
    extra.p3_restart_rss_mib = round(memory(restartedPid).rssMiB, 1);
    log(
      `P3: caught up in ${results.p3_restart_ready_seconds} s; ${results.p3_restart_token_requests} token requests, ` +
        `${results.p3_restart_secret_writes} Secret writes, ${extra.p3_restart_status_writes} status writes`,
    );

    // ---- P6: writes per renewal ----------------------------------------------------------------
    const rc = { clientId: "bench-renew", clientSecret: `bench-renew-secret-${Math.random().toString(36).slice(2)}` };
    idp.addClient({ ...rc, authMethod: "client_secret_post" });
    await createNamespace(cp.kubeconfigPath, "bench-renew");
    await createIgnoringConflict(k, secretPath("bench-renew"), {
      metadata: { name: "nexar-app", namespace: "bench-renew" },
      stringData: rc,
    });
    idp.setAccessTokenLifetime(SIZES.renewalLifetimeSeconds);
    const renewKeys: string[] = [];
    for (let i = 0; i < SIZES.renewalTokens; i++) {
      const name = `r-${i}`;
      await k.request("POST", nexarTokenPath("bench-renew"), {
        body: nexarToken("bench-renew", name, tokenUrl, "nexar-app"),
      });
      renewKeys.push(`bench-renew/${name}`);
    }
    await t.waitReady(renewKeys, 120_000, "P6");
    await sleep(500);
    const renewalsOf = () => renewKeys.reduce((acc, key) => acc + (t.seen.get(key)?.refreshes ?? 0), 0);
    const w0Writes = metricSum(await op.metrics(), WRITES) ?? 0;
    const rn0 = renewalsOf();
    const want = 2 * SIZES.renewalTokens;
    const until = Date.now() + SIZES.renewalWindowSeconds * 1000;
    while (renewalsOf() - rn0 < want && Date.now() < until) await sleep(200);
    await sleep(1500); // let the last renewal's writes land
    const renewals = renewalsOf() - rn0;
    const writes = (metricSum(await op.metrics(), WRITES) ?? 0) - w0Writes;
    idp.setAccessTokenLifetime(86_400);
    results.p6_writes_per_renewal = renewals > 0 ? round(writes / renewals, 2) : NaN;
    extra.p6_renewals = renewals;
    extra.p6_writes = writes;
    log(`P6: ${writes} writes over ${renewals} renewals`);

    return { ...results, extra };
  } finally {
    log("tearing down …");
    await tracker?.stop().catch(() => {});
    await op?.stop().catch(() => {});
    if (op && flags["keep-logs"]) writeFileSync(`${flags["keep-logs"]}.2`, `${op.lines.join("\n")}\n`);
    await kube?.close().catch(() => {});
    await idp?.stop().catch(() => {});
    await cp?.stop().catch(() => {});
  }
}

/** Issue 5's target per figure, as text ("≤ 10"); {@link verdict} checks it. */
const TARGETS: Record<string, string> = {
  p1_all_ready_seconds: "≤ 10",
  p2_token_requests: `= ${SIZES.credentials}`,
  p3_restart_token_requests: "= 0",
  p3_restart_secret_writes: "= 0",
  p3_restart_ready_seconds: "≤ 15",
  p4_rss_mib: "≤ 200",
  p5_idle_cpu_percent: "< 1",
  p6_writes_per_renewal: "≤ 2",
  p7_create_to_ready_p50_ms: "—",
  p7_create_to_ready_p99_ms: "—",
};

const out = await main();
const document = {
  ...Object.fromEntries(RESULT_FIELDS.map((f) => [f, out[f]])),
  extra: out.extra,
  sizes: SIZES,
  quick,
  operator: runConfig.operator,
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    loadavgAtEnd: readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number),
  },
  finishedAt: new Date().toISOString(),
  durationSeconds: round((Date.now() - started) / 1000, 1),
};
writeFileSync(OUT, `${JSON.stringify(document, null, 2)}\n`);
/** "✓" / "✗" for a target like "≤ 10", "= 0", "< 1"; "" when there is none. */
function verdict(value: unknown, target: string | undefined): string {
  const m = /^([≤=<]) ([\d.]+)$/.exec(target ?? "");
  if (!m || typeof value !== "number") return "";
  const t = Number(m[2]);
  const ok = m[1] === "≤" ? value <= t : m[1] === "<" ? value < t : value === t;
  return ok ? "✓" : "✗";
}
const rows = RESULT_FIELDS.map((f) => [f, String(out[f]), TARGETS[f] ?? "", verdict(out[f], TARGETS[f])]);
const w = [Math.max(...rows.map((r) => r[0]!.length)), Math.max(...rows.map((r) => r[1]!.length)), 6, 2];
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i] as number)).join(" | ")} |`;
console.log(line(["figure", "value", "target", ""]));
console.log(`|${w.map((x) => "-".repeat(x + 2)).join("|")}|`);
for (const r of rows) console.log(line(r));
const missed = rows.filter((r) => r[3] === "✗").map((r) => r[0]);
console.log(
  `\nwritten to ${OUT} (${document.durationSeconds} s)${quick ? "; quick sizes: the targets do not apply" : ""}`,
);
if (missed.length > 0 && !quick) console.log(`targets missed: ${missed.join(", ")}`);
process.exit(flags.check && missed.length > 0 && !quick ? 1 : 0);
