/**
 * `make bench BENCH_ARGS=--peers`: the same work through External Secrets Operator (ESO) and
 * through this operator, in one run, on one harness control plane (real etcd + kube-apiserver)
 * and one identity server (oidc-provider, test/harness/identity.ts), printed side by side.
 *
 * ESO (module github.com/external-secrets/external-secrets, built and cached by
 * `hack/build-tools.sh eso`) runs as its own process with its default flags, outside a cluster
 * like any controller-runtime manager. It gets the token through its Webhook generator as its docs
 * show for a POST (docs/api/generator/webhook.md of the module): a `Webhook` per credential whose
 * body is the client_credentials form, the credentials Secret labelled
 * `external-secrets.io/type: webhook`, `result.jsonPath: "$"` so every key of the token response
 * lands in the target Secret, and one `ExternalSecret` per consumer with `dataFrom.sourceRef.generatorRef`.
 *
 * Phases, each run for ESO and then for the operator (the other controller stopped):
 *   A  N objects over C credentials created at once: token requests, API writes, time to all Ready
 *   R  the controller restarted with every token valid: token requests and API writes until quiet
 *   B  tokens that live L s while ESO's refreshInterval is I s (> L), over a window of W s: the
 *      seconds during which a target Secret holds an expired access token (JWT `exp` < now), summed
 *      over the Secrets, taken from a watch on them
 *
 * API writes are counted from the API server's audit log (create/update/patch/delete, per user:
 * each controller has its own client certificate), split into object writes, Events and Leases.
 * Figures go to stdout as a table and to `--out` (default bench-peers-results.json).
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeClient, isStatus, type KubeList, type Secret } from "../src/kube/client.ts";
import { nexarTokenPath, secretPath } from "../src/kube/paths.ts";
import { jwtExpiry } from "../src/oauth/jwt.ts";
import { readAudit } from "../test/harness/audit.ts";
import { startControlPlane, type ControlPlane } from "../test/harness/controlplane.ts";
import { startIdentityServer, type IdentityServer } from "../test/harness/identity.ts";
import { applyCrd, createNamespace } from "../test/harness/kube.ts";
import { freePort, startOperator, type OperatorProcess } from "../test/harness/operator.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CRD_PATH = join(ROOT, "crds", "nexartokens.nexar-operator.io.yaml");
const ES = { group: "external-secrets.io", version: "v1", plural: "externalsecrets" };

/** Sizes of a peer run (`--quick` picks small ones). */
export interface PeerSizes {
  objects: number;
  credentials: number;
  /** Phase B: objects per controller, token lifetime L (s), ESO refreshInterval I (s), window W (s). */
  shortObjects: number;
  shortLifetimeSeconds: number;
  esoRefreshIntervalSeconds: number;
  windowSeconds: number;
  /** Phase R: a restart is over when no token request and no write happened for this long (s). */
  quietSeconds: number;
}

const FULL: PeerSizes = {
  objects: 1000,
  credentials: 10,
  shortObjects: 10,
  shortLifetimeSeconds: 30,
  esoRefreshIntervalSeconds: 60,
  windowSeconds: 180,
  quietSeconds: 15,
};
const QUICK: PeerSizes = {
  objects: 20,
  credentials: 2,
  shortObjects: 3,
  shortLifetimeSeconds: 8,
  esoRefreshIntervalSeconds: 16,
  windowSeconds: 40,
  quietSeconds: 5,
};

const AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
`;

const started = Date.now();
const log = (s: string) =>
  process.stderr.write(`[peers +${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${s}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++] as T);
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// The two controllers behind one interface.

interface Controller {
  name: "eso" | "operator";
  /** Audit user of its client certificate. */
  user: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Collection path of its objects in `ns`, and the object for `name` → target Secret `name`. */
  path(ns: string): string;
  object(
    ns: string,
    name: string,
    c: { credentials: string; refreshIntervalSeconds: number; tokenUrl: string },
  ): unknown;
  /** Per-namespace set-up next to the credentials Secret (ESO: the Webhook generator). */
  setup(k: KubeClient, ns: string, credentials: string, tokenUrl: string): Promise<void>;
  /** Label the credentials Secret needs. */
  credentialsLabels: Record<string, string>;
}

/** ESO's binary and CRD bundle (built by hack/build-tools.sh eso). @throws Error with the build's output. */
function esoBuild(): { bin: string; crds: string } {
  const bin =
    process.env.ESO_BIN ??
    execFileSync("bash", [join(ROOT, "hack", "build-tools.sh"), "eso"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }).trim();
  return { bin, crds: join(bin, "..", "crds.yaml") };
}

function esoController(bin: string, kubeconfig: string): Controller {
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  const lines: string[] = [];
  return {
    name: "eso",
    user: "external-secrets",
    credentialsLabels: { "external-secrets.io/type": "webhook" },
    async start() {
      const port = await freePort();
      child = spawn(bin, ["--metrics-addr", `127.0.0.1:${port}`, "--loglevel", "error"], {
        env: { ...process.env, KUBECONFIG: kubeconfig },
        stdio: ["ignore", "pipe", "pipe"],
      });
      const c = child;
      exited = new Promise((r) => c.once("exit", r));
      process.once("exit", () => c.kill("SIGKILL"));
      for (const s of [c.stdout, c.stderr]) s?.on("data", (b: Buffer) => lines.push(...b.toString().split("\n")));
      const deadline = Date.now() + 60_000;
      for (;;) {
        if (c.exitCode !== null) throw new Error(`ESO exited (${c.exitCode}):\n${lines.slice(-20).join("\n")}`);
        const ok = await fetch(`http://127.0.0.1:${port}/metrics`).then(
          (r) => r.status === 200,
          () => false,
        );
        if (ok) return;
        if (Date.now() > deadline) throw new Error(`ESO metrics not up in 60 s:\n${lines.slice(-20).join("\n")}`);
        await sleep(200);
      }
    },
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child?.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(t);
    },
    path: (ns) => `/apis/${ES.group}/${ES.version}/namespaces/${ns}/${ES.plural}`,
    object: (ns, name, c) => ({
      apiVersion: `${ES.group}/${ES.version}`,
      kind: "ExternalSecret",
      metadata: { name, namespace: ns },
      spec: {
        refreshInterval: `${c.refreshIntervalSeconds}s`,
        target: { name },
        dataFrom: [
          {
            sourceRef: {
              generatorRef: {
                apiVersion: "generators.external-secrets.io/v1alpha1",
                kind: "Webhook",
                name: c.credentials,
              },
            },
          },
        ],
      },
    }),
    async setup(k, ns, credentials, tokenUrl) {
      await k.request("POST", `/apis/generators.external-secrets.io/v1alpha1/namespaces/${ns}/webhooks`, {
        body: {
          apiVersion: "generators.external-secrets.io/v1alpha1",
          kind: "Webhook",
          metadata: { name: credentials, namespace: ns },
          spec: {
            url: tokenUrl,
            method: "POST",
            headers: { "Content-Type": "application/x-www-form-urlencoded" },
            body:
              "grant_type=client_credentials&scope=supply.domain" +
              "&client_id={{ .auth.clientId | urlquery }}&client_secret={{ .auth.clientSecret | urlquery }}",
            result: { jsonPath: "$" },
            secrets: [{ name: "auth", secretRef: { name: credentials } }],
          },
        },
      });
    },
  };
}

function operatorController(kubeconfig: string): Controller {
  let op: OperatorProcess | undefined;
  return {
    name: "operator",
    user: "nexar-token-operator",
    credentialsLabels: {},
    async start() {
      op = await startOperator({ kubeconfig, logLevel: "info", extraArgs: ["--leader-elect=false"] });
    },
    async stop() {
      await op?.stop();
    },
    path: (ns) => nexarTokenPath(ns),
    object: (ns, name, c) => ({
      apiVersion: "nexar-operator.io/v1alpha1",
      kind: "NexarToken",
      metadata: { name, namespace: ns },
      spec: { scopes: ["supply.domain"], tokenUrl: c.tokenUrl, credentialsSecretRef: { name: c.credentials } },
    }),
    async setup() {},
  };
}

// ---------------------------------------------------------------------------------------------
// Measurements.

interface Condition {
  type: string;
  status: string;
}
interface Obj {
  metadata: { name: string; namespace: string; resourceVersion?: string };
  status?: { conditions?: Condition[] };
}

/** Watches a collection (all namespaces) and records when each object first had Ready=True. */
async function readyWatch(k: KubeClient, path: string) {
  const readyAt = new Map<string, number>();
  const see = (o: Obj) => {
    const key = `${o.metadata.namespace}/${o.metadata.name}`;
    if (!readyAt.has(key) && o.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")) {
      readyAt.set(key, Date.now());
    }
  };
  let list: KubeList<Obj> | undefined;
  for (let i = 0; list === undefined; i++) {
    try {
      list = await k.request<KubeList<Obj>>("GET", path);
    } catch (err) {
      // 429 "storage is (re)initializing": a CRD's storage right after CRDs were applied
      if (!isStatus(err, 429) || i > 100) throw err;
      await sleep(200);
    }
  }
  for (const o of list.items) see(o);
  const ac = new AbortController();
  let rv = list.metadata.resourceVersion ?? "";
  const loop = (async () => {
    while (!ac.signal.aborted) {
      await k
        .watch<Obj>(
          path,
          { query: { resourceVersion: rv, allowWatchBookmarks: true }, signal: ac.signal, idleTimeoutMs: 400_000 },
          (ev) => {
            rv = ev.object.metadata.resourceVersion ?? rv;
            if (ev.type === "ADDED" || ev.type === "MODIFIED") see(ev.object);
          },
        )
        .catch(() => sleep(200));
    }
  })();
  return {
    readyAt,
    async waitAll(keys: readonly string[], timeoutMs: number): Promise<number> {
      const deadline = Date.now() + timeoutMs;
      let lastLog = Date.now();
      for (;;) {
        const times = keys.map((x) => readyAt.get(x));
        if (times.every((t) => t !== undefined)) return Math.max(...(times as number[]));
        if (Date.now() > deadline) {
          throw new Error(`${times.filter((t) => t !== undefined).length}/${keys.length} Ready after ${timeoutMs} ms`);
        }
        if (Date.now() - lastLog > 10_000) {
          log(`  ${times.filter((t) => t !== undefined).length}/${keys.length} Ready`);
          lastLog = Date.now();
        }
        await sleep(50);
      }
    },
    async stop() {
      ac.abort();
      await loop;
    },
  };
}

/** Writes by `user` in the audit log since `sinceMs` (epoch ms): objects, Events, Leases. */
function writesBy(cp: ControlPlane, user: string, sinceMs: number) {
  const out = { objects: 0, events: 0, leases: 0, byResource: {} as Record<string, number> };
  for (const e of readAudit(cp.auditLogPath as string)) {
    if (e.stage !== "ResponseComplete" || e.user.username !== user) continue;
    if (Date.parse(e.requestReceivedTimestamp) < sinceMs) continue;
    const r = e.objectRef?.resource ?? "?";
    const sub = (e.requestURI.split("?")[0] ?? "").endsWith("/status") ? "/status" : "";
    const key = `${e.verb} ${r}${sub}`;
    out.byResource[key] = (out.byResource[key] ?? 0) + 1;
    if (r === "events") out.events++;
    else if (r === "leases") out.leases++;
    else out.objects++;
  }
  return out;
}

/** Resolves when no token request and no write by `user` happened for `quietMs` (at most `maxMs`). */
async function quiet(cp: ControlPlane, idp: IdentityServer, user: string, quietMs: number, maxMs: number) {
  const t0 = Date.now();
  let last = { req: idp.requests.length, writes: writesBy(cp, user, t0 - 1).objects };
  let since = Date.now();
  while (Date.now() - since < quietMs && Date.now() - t0 < maxMs) {
    await sleep(1000);
    const now = { req: idp.requests.length, writes: writesBy(cp, user, t0 - 1).objects };
    if (now.req !== last.req || now.writes !== last.writes) {
      last = now;
      since = Date.now();
    }
  }
}

/**
 * Watches the target Secrets of `ns` and integrates, per Secret, the time its `access_token` was
 * past its JWT `exp`, over [fromMs, toMs]. Also counts the writes seen (MODIFIED events).
 */
async function expiredSeconds(
  k: KubeClient,
  namespaces: readonly string[],
  names: readonly string[],
  windowMs: number,
) {
  type Timeline = { atMs: number; expMs: number }[];
  const lines = new Map<string, Timeline>();
  const watchers: { ac: AbortController; done: Promise<unknown> }[] = [];
  const record = (s: Secret) => {
    const key = `${s.metadata.namespace}/${s.metadata.name}`;
    if (!names.includes(s.metadata.name ?? "")) return;
    const at = s.data?.access_token;
    if (!at) return;
    const exp = jwtExpiry(Buffer.from(at, "base64").toString("utf8"));
    if (exp === undefined) return;
    const tl = lines.get(key) ?? [];
    if (tl.at(-1)?.expMs !== exp * 1000) tl.push({ atMs: Date.now(), expMs: exp * 1000 });
    lines.set(key, tl);
  };
  for (const ns of namespaces) {
    const list = await k.request<KubeList<Secret>>("GET", secretPath(ns));
    for (const s of list.items) record(s);
    const ac = new AbortController();
    const done = k
      .watch<Secret>(
        secretPath(ns),
        { query: { resourceVersion: list.metadata.resourceVersion ?? "" }, signal: ac.signal, idleTimeoutMs: 600_000 },
        (ev) => {
          if (ev.type === "ADDED" || ev.type === "MODIFIED") record(ev.object);
        },
      )
      .catch(() => undefined);
    watchers.push({ ac, done });
  }
  const fromMs = Date.now();
  await sleep(windowMs);
  const toMs = Date.now();
  for (const w of watchers) w.ac.abort();
  await Promise.all(watchers.map((w) => w.done));
  let total = 0;
  let max = 0;
  let renewals = 0;
  for (const tl of lines.values()) {
    let expired = 0;
    for (let i = 0; i < tl.length; i++) {
      const cur = tl[i] as Timeline[number];
      const start = Math.max(cur.atMs, fromMs);
      const end = Math.min(tl[i + 1]?.atMs ?? toMs, toMs);
      if (tl[i + 1] && (tl[i + 1] as Timeline[number]).atMs > fromMs && (tl[i + 1] as Timeline[number]).atMs <= toMs)
        renewals++;
      if (end <= start) continue;
      expired += Math.max(0, end - Math.max(start, cur.expMs));
    }
    total += expired / 1000;
    max = Math.max(max, expired / 1000);
  }
  return {
    totalSeconds: round(total),
    maxSeconds: round(max),
    secrets: lines.size,
    renewals,
    windowSeconds: round((toMs - fromMs) / 1000),
  };
}

// ---------------------------------------------------------------------------------------------
// The run.

interface PeerResult {
  a_token_requests: number;
  a_object_writes: number;
  a_event_writes: number;
  a_all_ready_seconds: number;
  a_writes_by_resource: Record<string, number>;
  r_token_requests: number;
  r_object_writes: number;
  r_event_writes: number;
  b_expired_secret_seconds: number;
  b_expired_max_per_secret_seconds: number;
  b_token_requests: number;
  b_renewals_seen: number;
  b_window_seconds: number;
}

async function runOne(
  c: Controller,
  cp: ControlPlane,
  idp: IdentityServer,
  k: KubeClient,
  sizes: PeerSizes,
  creds: { clientId: string; clientSecret: string }[],
): Promise<PeerResult> {
  const prefix = c.name === "eso" ? "eso" : "nto";
  const nsOf = (i: number) => `${prefix}-${i}`;
  const tokenUrl = idp.tokenUrl;
  const objectFor = (ns: string, name: string, refreshIntervalSeconds: number) =>
    c.object(ns, name, { credentials: "nexar-app", refreshIntervalSeconds, tokenUrl });
  for (const [i, cr] of creds.entries()) {
    await createNamespace(cp.kubeconfigPath, nsOf(i));
    await k.request("POST", secretPath(nsOf(i)), {
      body: { metadata: { name: "nexar-app", namespace: nsOf(i), labels: c.credentialsLabels }, stringData: cr },
    });
    await c.setup(k, nsOf(i), "nexar-app", tokenUrl);
  }
  const watch = await readyWatch(
    k,
    c.name === "eso" ? `/apis/${ES.group}/${ES.version}/${ES.plural}` : nexarTokenPath(undefined),
  );
  log(`${c.name}: starting …`);
  await c.start();

  // ---- A ----
  const items = Array.from({ length: sizes.objects }, (_, n) => ({
    ns: nsOf(n % sizes.credentials),
    name: `t-${String(n).padStart(5, "0")}`,
  }));
  idp.reset();
  const t0 = Date.now();
  log(`${c.name}: A: creating ${items.length} objects over ${sizes.credentials} credentials …`);
  await pool(items, 16, async (x) => {
    await k.request("POST", c.path(x.ns), { body: objectFor(x.ns, x.name, 3600) });
  });
  const last = await watch.waitAll(
    items.map((x) => `${x.ns}/${x.name}`),
    1_800_000,
  );
  await sleep(2000); // trailing writes
  const aWrites = writesBy(cp, c.user, t0);
  const a = {
    a_token_requests: idp.requests.length,
    a_object_writes: aWrites.objects,
    a_event_writes: aWrites.events,
    a_all_ready_seconds: round((last - t0) / 1000, 2),
    a_writes_by_resource: aWrites.byResource,
  };
  log(`${c.name}: A: ${JSON.stringify(a)}`);

  // ---- R ----
  await quiet(cp, idp, c.user, 3000, 60_000);
  log(`${c.name}: R: restarting with every token valid …`);
  await c.stop();
  idp.reset();
  const r0 = Date.now();
  await c.start();
  await quiet(cp, idp, c.user, sizes.quietSeconds * 1000, 300_000);
  const rWrites = writesBy(cp, c.user, r0);
  const r = { r_token_requests: idp.requests.length, r_object_writes: rWrites.objects, r_event_writes: rWrites.events };
  log(`${c.name}: R: ${JSON.stringify(r)} (${JSON.stringify(rWrites.byResource)})`);

  // ---- B ----
  const bNs = `${prefix}-short`;
  await createNamespace(cp.kubeconfigPath, bNs);
  await k.request("POST", secretPath(bNs), {
    body: { metadata: { name: "nexar-app", namespace: bNs, labels: c.credentialsLabels }, stringData: creds[0] },
  });
  await c.setup(k, bNs, "nexar-app", tokenUrl);
  idp.setAccessTokenLifetime(sizes.shortLifetimeSeconds);
  const bItems = Array.from({ length: sizes.shortObjects }, (_, n) => `s-${n}`);
  log(
    `${c.name}: B: ${bItems.length} objects, tokens live ${sizes.shortLifetimeSeconds} s` +
      (c.name === "eso" ? `, refreshInterval ${sizes.esoRefreshIntervalSeconds} s` : "") +
      `; window ${sizes.windowSeconds} s …`,
  );
  for (const name of bItems) {
    await k.request("POST", c.path(bNs), { body: objectFor(bNs, name, sizes.esoRefreshIntervalSeconds) });
  }
  await watch.waitAll(
    bItems.map((n) => `${bNs}/${n}`),
    120_000,
  );
  idp.reset();
  const exp = await expiredSeconds(k, [bNs], bItems, sizes.windowSeconds * 1000);
  const b = {
    b_expired_secret_seconds: exp.totalSeconds,
    b_expired_max_per_secret_seconds: exp.maxSeconds,
    b_token_requests: idp.requests.filter((q) => q.clientId === creds[0]?.clientId).length,
    b_renewals_seen: exp.renewals,
    b_window_seconds: exp.windowSeconds,
  };
  log(`${c.name}: B: ${JSON.stringify(b)}`);
  idp.setAccessTokenLifetime(86_400);
  await watch.stop();
  await c.stop();
  return { ...a, ...r, ...b };
}

/**
 * Runs the peer comparison and prints the table.
 * @returns the exit code: 0, or 1 when a controller could not be run (the error is printed; the
 *   other side still runs).
 */
export async function runPeers(o: { quick: boolean; out?: string }): Promise<number> {
  const sizes = o.quick ? QUICK : FULL;
  log(`sizes ${JSON.stringify(sizes)}${o.quick ? " (quick)" : ""}`);
  let eso: { bin: string; crds: string } | undefined;
  let esoError: string | undefined;
  try {
    eso = esoBuild();
  } catch (err) {
    esoError = `ESO could not be built: ${(err as Error).message}`;
    log(esoError);
  }
  let cp: ControlPlane | undefined;
  let idp: IdentityServer | undefined;
  let k: KubeClient | undefined;
  const results: Partial<Record<"eso" | "operator", PeerResult>> = {};
  try {
    cp = await startControlPlane({ controllerManager: false, audit: AUDIT_POLICY });
    idp = await startIdentityServer({ accessTokenLifetimeSeconds: 86_400 });
    await applyCrd(cp.kubeconfigPath, CRD_PATH);
    if (eso) await applyCrd(cp.kubeconfigPath, eso.crds);
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfigPath);
    k = await KubeClient.create(kc, { timeoutMs: 120_000 });
    const creds = Array.from({ length: sizes.credentials }, (_, i) => ({
      clientId: `peer-client-${i}`,
      clientSecret: `peer-secret-${i}-${Math.random().toString(36).slice(2)}0123456789`,
    }));
    for (const cr of creds) idp.addClient({ ...cr, authMethod: "client_secret_post" });
    const controllers: Controller[] = [];
    if (eso) controllers.push(esoController(eso.bin, await cp.kubeconfigFor("external-secrets", ["system:masters"])));
    controllers.push(operatorController(await cp.kubeconfigFor("nexar-token-operator", ["system:masters"])));
    for (const c of controllers) {
      try {
        results[c.name] = await runOne(c, cp, idp, k, sizes, creds);
      } catch (err) {
        const msg = `${c.name} run failed: ${(err as Error).message}`;
        log(msg);
        if (c.name === "eso") esoError = msg;
        await c.stop().catch(() => {});
        if (c.name === "operator") throw err;
      }
    }
  } finally {
    await k?.close().catch(() => {});
    await idp?.stop().catch(() => {});
    await cp?.stop().catch(() => {});
  }

  const rows: [string, keyof PeerResult, string][] = [
    [`A  token requests (${sizes.objects} objects, ${sizes.credentials} credentials)`, "a_token_requests", ""],
    ["A  API writes (objects; + Events)", "a_object_writes", "a_event_writes"],
    ["A  time to all Ready (s)", "a_all_ready_seconds", ""],
    ["R  token requests after a restart", "r_token_requests", ""],
    ["R  API writes after a restart (objects; + Events)", "r_object_writes", "r_event_writes"],
    [
      `B  Secret-seconds holding an expired token (${sizes.shortObjects} Secrets, ${sizes.shortLifetimeSeconds} s tokens, ESO refreshInterval ${sizes.esoRefreshIntervalSeconds} s, ${sizes.windowSeconds} s)`,
      "b_expired_secret_seconds",
      "",
    ],
    ["B  … worst single Secret (s)", "b_expired_max_per_secret_seconds", ""],
    ["B  token requests in the window", "b_token_requests", ""],
  ];
  const cell = (r: PeerResult | undefined, f: keyof PeerResult, extra: string) => {
    if (!r) return "—";
    const v = String(r[f]);
    return extra ? `${v} (+${String(r[extra as keyof PeerResult])})` : v;
  };
  const table = [
    ["", "ESO v0.16.2 (Webhook generator)", "nexar-token-operator"],
    ...rows.map(([label, f, extra]) => [label, cell(results.eso, f, extra), cell(results.operator, f, extra)]),
  ];
  const w = [0, 1, 2].map((i) => Math.max(...table.map((r) => (r[i] as string).length)));
  const line = (r: string[]) => `| ${r.map((x, i) => x.padEnd(w[i] as number)).join(" | ")} |`;
  process.stdout.write(`${line(table[0] as string[])}\n| ${w.map((n) => "-".repeat(n)).join(" | ")} |\n`);
  for (const r of table.slice(1)) process.stdout.write(`${line(r)}\n`);
  if (esoError) process.stdout.write(`\nESO side not measured: ${esoError}\n`);
  const out = o.out ?? (o.quick ? "bench-peers-results.quick.json" : "bench-peers-results.json");
  writeFileSync(out, `${JSON.stringify({ sizes, results, esoError, at: new Date().toISOString() }, null, 2)}\n`);
  log(`results written to ${out}`);
  return esoError ? 1 : 0;
}
