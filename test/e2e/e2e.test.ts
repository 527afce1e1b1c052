/**
 * The operator as users run it (`make e2e`; `make kind-e2e` runs the same file on kind): the image, the packaged
 * chart installed with `helm install <chart>.tgz`, two replicas as pods on a real node, a consumer pod that reads the
 * token from the mounted target Secret, leader hand-over, `helm upgrade`, a scrape of `/metrics`, and
 * `helm uninstall`. The identity server (test/harness/identity.ts) serves HTTPS on an address pods reach, with a
 * certificate of its own CA that the operator trusts only through the chart's `caBundle.pem` value.
 *
 * Values e2e sets on top of the chart's defaults, and why:
 *  - `caBundle.pem`: the identity server's private CA (a private or TLS-inspecting token endpoint is what the value
 *    is for). Nothing else: the image is tagged with the chart's appVersion and is present on the node, so the
 *    default `image.repository`, `image.tag` and `pullPolicy: IfNotPresent` run it without a registry.
 *  - the upgrade step sets `logLevel=debug`, the "changed value" that rolls the pods.
 * Both namespaces enforce Pod Security `restricted`.
 *
 * Each step prints its duration; figures (time to Ready, Secret-to-file delay, hand-over time) are printed at the end.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ApiextensionsV1Api,
  AppsV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type KubeConfig,
  type V1Pod,
} from "@kubernetes/client-node";
import { startIdentityServer, type IdentityServer } from "../harness/identity.ts";
import { apiErrorCode, loadKubeConfig, waitFor } from "../harness/kube.ts";
import { CHART, toolPath } from "../alerts/render-rules.ts";
import type { NexarToken } from "../../src/api/types.ts";
import { startE2eCluster, testServerTls, type E2eCluster } from "./cluster.ts";

const exec = promisify(execFile);
const G = { group: "nexar-operator.io", version: "v1alpha1", plural: "nexartokens" };
const RELEASE = "nexar-token-operator";
const OP_NS = "nexar-system";
const APP_NS = "apps";
const SELECTOR = `app.kubernetes.io/name=nexar-token-operator,app.kubernetes.io/instance=${RELEASE}`;
const LEASE = "nexar-token-operator";
const CONSUMER_IMAGE = "localhost/nexar-e2e/busybox:1";
/** Short-lived tokens, for the renewal the consumer must see; long-lived ones, for "no token request" checks. */
const SHORT_LIFETIME_S = 90;
const LONG_LIFETIME_S = 3600;

let cluster: E2eCluster;
let idp: IdentityServer;
let kc: KubeConfig;
let core: CoreV1Api;
let apps: AppsV1Api;
let custom: CustomObjectsApi;
let coordination: CoordinationV1Api;
let work: string;
let helm: string;
let chartTgz: string;
let valuesFile: string;
const secretValues = new Set<string>();
const figures: [string, string][] = [];
const clients = {
  long: { clientId: "e2e-long", clientSecret: `long-${randomHex()}`, accessTokenLifetimeSeconds: LONG_LIFETIME_S },
  short: { clientId: "e2e-short", clientSecret: `short-${randomHex()}`, accessTokenLifetimeSeconds: SHORT_LIFETIME_S },
};

function randomHex(): string {
  return createHash("sha256").update(`${Math.random()}${Date.now()}`).digest("hex").slice(0, 24);
}

function sha256(s: string): string {
  return createHash("sha256").update(s, "utf8").digest("hex");
}

/** Runs one step and prints how long it took. */
async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    console.log(`[e2e] ${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
}

async function runHelm(args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(helm, [...args, "--kubeconfig", cluster.kubeconfigPath], {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(work, "helm", "cache"),
        HELM_CONFIG_HOME: join(work, "helm", "config"),
        HELM_DATA_HOME: join(work, "helm", "data"),
      },
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`helm ${args[0] ?? ""} failed: ${e.stderr ?? e.message}\n${e.stdout ?? ""}`, { cause: err });
  }
}

/** Successful token requests of one client since the identity server started. */
function tokenRequests(clientId: string): number {
  return idp.requests.filter((r) => r.clientId === clientId && r.status === 200).length;
}

async function operatorPods(): Promise<V1Pod[]> {
  return (await core.listNamespacedPod({ namespace: OP_NS, labelSelector: SELECTOR })).items.filter(
    (p) => p.metadata?.deletionTimestamp === undefined,
  );
}

function ready(p: V1Pod): boolean {
  return p.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
}

/** Waits until exactly `n` operator pods exist, all Ready, none terminating; returns them. */
async function readyOperatorPods(n: number, timeoutMs = 180_000): Promise<V1Pod[]> {
  return waitFor(
    `${n} Ready operator pods`,
    async () => {
      const all = (await core.listNamespacedPod({ namespace: OP_NS, labelSelector: SELECTOR })).items;
      return all.length === n && all.every((p) => !p.metadata?.deletionTimestamp && ready(p)) ? all : undefined;
    },
    timeoutMs,
  );
}

async function leaseHolder(): Promise<string | undefined> {
  try {
    return (
      (await coordination.readNamespacedLease({ name: LEASE, namespace: OP_NS })).spec?.holderIdentity ?? undefined
    );
  } catch (err) {
    if (apiErrorCode(err) === 404) return undefined;
    throw err;
  }
}

/** GET through the API server's pod proxy (as `kubectl get --raw`), e.g. a pod's `/metrics`. */
async function podProxyGet(pod: string, port: number, path: string): Promise<string> {
  const cluster0 = kc.getCurrentCluster();
  if (!cluster0) throw new Error("kubeconfig has no cluster");
  const opts: { headers?: Record<string, string>; ca?: Buffer; cert?: Buffer; key?: Buffer } = {};
  await kc.applyToHTTPSOptions(opts as never);
  const { request } = await import("node:https");
  const url = new URL(`${cluster0.server}/api/v1/namespaces/${OP_NS}/pods/${pod}:${port}/proxy${path}`);
  return await new Promise((resolve, reject) => {
    const req = request(url, { ...opts, method: "GET", timeout: 10_000 }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () =>
        res.statusCode === 200
          ? resolve(body)
          : reject(new Error(`GET ${path}: HTTP ${res.statusCode}: ${body.slice(0, 200)}`)),
      );
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

async function getToken(name: string): Promise<NexarToken> {
  return (await custom.getNamespacedCustomObject({ ...G, namespace: APP_NS, name })) as NexarToken;
}

async function waitTokenReady(name: string, timeoutMs = 120_000): Promise<NexarToken> {
  return waitFor(
    `NexarToken ${name} Ready=True`,
    async () => {
      const nt = await getToken(name);
      return nt.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? nt : undefined;
    },
    timeoutMs,
  );
}

/** `access_token` of a target Secret (remembered for the secret scan), or undefined when the Secret is absent. */
async function accessToken(secret: string): Promise<string | undefined> {
  try {
    const s = await core.readNamespacedSecret({ name: secret, namespace: APP_NS });
    const b64 = s.data?.access_token;
    if (b64 === undefined) return undefined;
    const t = Buffer.from(b64, "base64").toString("utf8");
    secretValues.add(t);
    return t;
  } catch (err) {
    if (apiErrorCode(err) === 404) return undefined;
    throw err;
  }
}

async function secretExists(ns: string, name: string): Promise<boolean> {
  try {
    await core.readNamespacedSecret({ name, namespace: ns });
    return true;
  } catch (err) {
    if (apiErrorCode(err) === 404) return false;
    throw err;
  }
}

async function createNexarToken(
  name: string,
  clientKey: keyof typeof clients,
  target: Record<string, unknown>,
): Promise<void> {
  await custom.createNamespacedCustomObject({
    ...G,
    namespace: APP_NS,
    body: {
      apiVersion: "nexar-operator.io/v1alpha1",
      kind: "NexarToken",
      metadata: { name, namespace: APP_NS },
      spec: {
        scopes: ["supply.domain"],
        tokenUrl: idp.tokenUrl,
        credentialsSecretRef: { name: `${clientKey}-creds` },
        target,
      },
    },
  });
}

/** Lines `<RFC 3339 time> token <sha256>` the consumer printed, parsed. */
async function consumerReadings(): Promise<{ at: number; hash: string }[]> {
  const log = await core.readNamespacedPodLog({ name: "consumer", namespace: APP_NS, timestamps: true });
  const out: { at: number; hash: string }[] = [];
  for (const line of log.split("\n")) {
    const m = /^(\S+) token ([0-9a-f]{64})$/.exec(line.trim());
    if (m) out.push({ at: Date.parse(m[1] as string), hash: m[2] as string });
  }
  return out;
}

const restricted = {
  "pod-security.kubernetes.io/enforce": "restricted",
  "pod-security.kubernetes.io/enforce-version": "latest",
};

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "nexar-e2e-"));
  cluster = await step("cluster up", startE2eCluster);
  for (const [what, ms] of cluster.timings) console.log(`[e2e]   ${what}: ${(ms / 1000).toFixed(1)} s`);
  kc = loadKubeConfig(cluster.kubeconfigPath);
  core = kc.makeApiClient(CoreV1Api);
  apps = kc.makeApiClient(AppsV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  coordination = kc.makeApiClient(CoordinationV1Api);
  const tls = await testServerTls(cluster.hostAddress);
  idp = await startIdentityServer({
    host: cluster.hostAddress,
    tls: { cert: tls.certPem, key: tls.keyPem },
    clients: Object.values(clients).map((c) => ({ ...c, authMethod: "client_secret_post" as const })),
  });
  for (const c of Object.values(clients)) secretValues.add(c.clientSecret);
  helm = toolPath("helm");
  valuesFile = join(work, "values.yaml");
  await writeFile(valuesFile, JSON.stringify({ caBundle: { pem: tls.caPem } }));
  for (const ns of [OP_NS, APP_NS])
    await core.createNamespace({ body: { metadata: { name: ns, labels: restricted } } });
}, 600_000);

afterAll(async () => {
  if (figures.length > 0) {
    console.log("[e2e] figures:");
    for (const [k, v] of figures) console.log(`[e2e]   ${k}: ${v}`);
  }
  await idp?.stop();
  await cluster?.stop();
  if (work) await rm(work, { recursive: true, force: true });
}, 120_000);

describe("the packaged chart on a real node", () => {
  let leader: string;
  let pods: V1Pod[];

  it("helm package + helm install of the .tgz: both replicas start, probes turn Ready, one leads", async () => {
    chartTgz = await step("helm package", async () => {
      await runHelm(["package", CHART, "--destination", work]);
      const tgz = (await readdir(work)).find((f) => f.endsWith(".tgz"));
      if (!tgz) throw new Error("helm package wrote no .tgz");
      return join(work, tgz);
    });
    const t0 = Date.now();
    await step("helm install --wait", () =>
      runHelm(["install", RELEASE, chartTgz, "--namespace", OP_NS, "-f", valuesFile, "--wait", "--timeout", "4m"]),
    );
    pods = await readyOperatorPods(2);
    figures.push(["helm install to 2 Ready replicas", `${((Date.now() - t0) / 1000).toFixed(1)} s`]);
    leader = await step("a leader holds the Lease", () =>
      waitFor(
        "Lease holder",
        async () => {
          const h = await leaseHolder();
          return h && pods.some((p) => p.metadata?.name === h) ? h : undefined;
        },
        60_000,
      ),
    );
    const standby = pods.find((p) => p.metadata?.name !== leader)?.metadata?.name as string;
    const [lm, sm] = await Promise.all([podProxyGet(leader, 8080, "/metrics"), podProxyGet(standby, 8080, "/metrics")]);
    expect(lm).toMatch(/^nexar_token_leader 1$/m);
    expect(sm).toMatch(/^nexar_token_leader 0$/m);
  });

  it("the pods run non-root on a read-only root filesystem, admitted under Pod Security restricted", async () => {
    await step("process identity and root mount of each operator container", async () => {
      for (const p of pods) {
        const id = p.status?.containerStatuses?.find((c) => c.name === "operator")?.containerID;
        expect(id, "containerID").toBeTruthy();
        const pid = await cluster.node.containerPid(id as string);
        const status = await cluster.node.procFile(pid, "status");
        expect(status).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
        expect(status).toMatch(/^Gid:\s+65532\s+65532\s+65532\s+65532$/m);
        expect(status).toMatch(/^CapEff:\s+0+$/m);
        expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
        const root = (await cluster.node.procFile(pid, "mountinfo")).split("\n").find((l) => l.split(" ")[4] === "/");
        expect(root?.split(" ")[5]?.split(",")).toContain("ro");
      }
    });
    // The namespace really enforces restricted: a pod that is not restricted is refused.
    const err = await core
      .createNamespacedPod({
        namespace: OP_NS,
        dryRun: "All",
        body: { metadata: { name: "not-restricted" }, spec: { containers: [{ name: "c", image: CONSUMER_IMAGE }] } },
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(apiErrorCode(err)).toBe(403);
    const body = (err as { body?: unknown }).body;
    const message = (JSON.parse(typeof body === "string" ? body : "{}") as { message?: string }).message;
    expect(message).toMatch(/violates PodSecurity "restricted:latest"/);
  });

  it("a NexarToken gets a token from the identity server", async () => {
    await step("credentials, three NexarTokens Ready", async () => {
      for (const [key, c] of Object.entries(clients)) {
        await core.createNamespacedSecret({
          namespace: APP_NS,
          body: {
            metadata: { name: `${key}-creds` },
            stringData: { clientId: c.clientId, clientSecret: c.clientSecret },
          },
        });
      }
      await createNexarToken("long", "long", {});
      await createNexarToken("kept", "long", { name: "kept-token", creationPolicy: "Orphan" });
      await createNexarToken("short", "short", { name: "short-token" });
      for (const n of ["long", "kept", "short"]) await waitTokenReady(n);
    });
    for (const secret of ["long", "kept-token", "short-token"]) {
      const token = await accessToken(secret);
      expect(token, secret).toBeTruthy();
      expect(
        idp.requests.some((r) => r.accessTokenSha256 === sha256(token as string) && r.status === 200),
        secret,
      ).toBe(true);
    }
  });

  it("a consumer pod reads the token from the mounted Secret, and the renewed token from the same file", async () => {
    const first = (await accessToken("short-token")) as string;
    await step("consumer pod Running, reads the current token", async () => {
      await core.createNamespacedPod({
        namespace: APP_NS,
        body: {
          metadata: { name: "consumer" },
          spec: {
            securityContext: {
              runAsNonRoot: true,
              runAsUser: 65534,
              runAsGroup: 65534,
              seccompProfile: { type: "RuntimeDefault" },
            },
            containers: [
              {
                name: "consumer",
                image: CONSUMER_IMAGE,
                imagePullPolicy: "IfNotPresent",
                // Prints the SHA-256 of the token file whenever it changes (never the token itself).
                command: [
                  "sh",
                  "-c",
                  'last=""; while :; do h=$(sha256sum < /var/run/nexar/access_token); h=${h%% *}; ' +
                    'if [ "$h" != "$last" ]; then echo "token $h"; last=$h; fi; sleep 0.2; done',
                ],
                securityContext: {
                  allowPrivilegeEscalation: false,
                  readOnlyRootFilesystem: true,
                  capabilities: { drop: ["ALL"] },
                },
                volumeMounts: [{ name: "token", mountPath: "/var/run/nexar", readOnly: true }],
              },
            ],
            volumes: [{ name: "token", secret: { secretName: "short-token" } }],
          },
        },
      });
      await waitFor(
        "consumer reads the token",
        async () => {
          const r = await consumerReadings().catch(() => []);
          return r.some((x) => x.hash === sha256(first)) || undefined;
        },
        120_000,
      );
    });
    // Every token the Secret holds from now on, with the time it was first seen there. A renewal may come again
    // before the kubelet's next volume sync, so the file may skip a token: any later token counts.
    const held = new Map<string, number>();
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const t = await accessToken("short-token").catch(() => undefined);
        if (t !== undefined && t !== first && !held.has(sha256(t))) held.set(sha256(t), Date.now());
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    try {
      await step("renewal: the Secret holds a new token", () =>
        waitFor(
          "a renewed token in short-token",
          async () => (held.size > 0 ? true : undefined),
          (SHORT_LIFETIME_S + 60) * 1000,
        ),
      );
      const seen = await step("the consumer's file holds a renewed token", () =>
        waitFor(
          "consumer reads a renewed token",
          async () => {
            const r = await consumerReadings();
            const x = r.find((reading) => held.has(reading.hash));
            return x && { at: x.at, since: held.get(x.hash) as number, renewals: held.size };
          },
          240_000,
        ),
      );
      figures.push([
        "Secret update to file update in the consumer",
        `${((seen.at - seen.since) / 1000).toFixed(1)} s (${seen.renewals} renewal(s) seen in the Secret meanwhile)`,
      ]);
      expect(seen.at).toBeGreaterThanOrEqual(seen.since - 1_000);
    } finally {
      polling = false;
      await poller;
    }
  });

  it("a scrape of the leader's /metrics shows the NexarTokens' series", async () => {
    const m = await step("scrape", () => podProxyGet(leader, 8080, "/metrics"));
    for (const name of ["long", "kept", "short"]) {
      expect(m).toMatch(new RegExp(`^nexar_token_expiration_timestamp_seconds\\{[^}]*name="${name}"[^}]*\\} \\d`, "m"));
      expect(m).toMatch(new RegExp(`^nexar_token_ready\\{[^}]*name="${name}"[^}]*\\} 1$`, "m"));
    }
  });

  it("deleting the leader pod hands over to the standby with 0 token requests", async () => {
    const before = tokenRequests(clients.long.clientId);
    const token = await accessToken("long");
    const old = leader;
    const t0 = Date.now();
    await core.deleteNamespacedPod({ name: old, namespace: OP_NS });
    leader = await step("the standby takes the Lease", () =>
      waitFor(
        "a new Lease holder",
        async () => {
          const h = await leaseHolder();
          return h && h !== old ? h : undefined;
        },
        60_000,
        100,
      ),
    );
    figures.push(["leader pod deleted to standby holding the Lease", `${((Date.now() - t0) / 1000).toFixed(1)} s`]);
    expect(pods.map((p) => p.metadata?.name)).toContain(leader);
    await step("the new leader serves as leader", () =>
      waitFor(
        "nexar_token_leader 1",
        async () =>
          /^nexar_token_leader 1$/m.test(await podProxyGet(leader, 8080, "/metrics").catch(() => "")) || undefined,
        30_000,
      ),
    );
    pods = await step("the Deployment replaces the pod", () => readyOperatorPods(2));
    for (const n of ["long", "kept"]) await waitTokenReady(n);
    expect(tokenRequests(clients.long.clientId)).toBe(before);
    expect(await accessToken("long")).toBe(token);
  });

  it("helm upgrade with a changed value rolls the pods without new token requests", async () => {
    const before = tokenRequests(clients.long.clientId);
    const token = await accessToken("long");
    const oldNames = new Set(pods.map((p) => p.metadata?.name));
    await step("helm upgrade --set logLevel=debug --wait", () =>
      runHelm([
        "upgrade",
        RELEASE,
        chartTgz,
        "--namespace",
        OP_NS,
        "-f",
        valuesFile,
        "--set",
        "logLevel=debug",
        "--wait",
        "--timeout",
        "4m",
      ]),
    );
    pods = await step("two new pods Ready", () =>
      waitFor(
        "rolled pods",
        async () => {
          const p = await readyOperatorPods(2);
          return p.every((x) => !oldNames.has(x.metadata?.name)) ? p : undefined;
        },
        180_000,
      ),
    );
    const deployment = await apps.readNamespacedDeployment({ name: RELEASE, namespace: OP_NS });
    expect(deployment.spec?.template.spec?.containers[0]?.args).toContain("--log-level=debug");
    leader = await step("a new pod leads", () =>
      waitFor(
        "Lease holder among the new pods",
        async () => {
          const h = await leaseHolder();
          return h && pods.some((p) => p.metadata?.name === h) ? h : undefined;
        },
        60_000,
      ),
    );
    for (const n of ["long", "kept"]) await waitTokenReady(n);
    expect(tokenRequests(clients.long.clientId)).toBe(before);
    expect(await accessToken("long")).toBe(token);
  });

  it("no secret value reached the operator's logs, Events or statuses", async () => {
    const haystacks: [string, string][] = [];
    for (const p of await operatorPods()) {
      haystacks.push([
        `logs of ${p.metadata?.name}`,
        await core.readNamespacedPodLog({ name: p.metadata?.name as string, namespace: OP_NS }),
      ]);
    }
    const events = await kc.makeApiClient(EventsV1Api).listEventForAllNamespaces({});
    haystacks.push(["events", JSON.stringify(events.items)]);
    const nts = (await custom.listNamespacedCustomObject({ ...G, namespace: APP_NS })) as { items: NexarToken[] };
    haystacks.push(["NexarTokens", JSON.stringify(nts.items.map((n) => ({ metadata: n.metadata, status: n.status })))]);
    haystacks.push(["metrics", await podProxyGet(leader, 8080, "/metrics")]);
    expect(haystacks[0]?.[1].length).toBeGreaterThan(0);
    for (const value of secretValues) {
      for (const [where, text] of haystacks) {
        if (text.includes(value)) throw new Error(`a secret value (${value.length} chars) appeared in ${where}`);
      }
    }
  });

  it("helm uninstall keeps the CRD, the NexarTokens and every target; Owner targets go only with their NexarToken", async () => {
    await step("helm uninstall --wait", () =>
      runHelm(["uninstall", RELEASE, "--namespace", OP_NS, "--wait", "--timeout", "2m"]),
    );
    await waitFor("operator pods gone", async () => (await operatorPods()).length === 0 || undefined, 120_000);
    await kc.makeApiClient(ApiextensionsV1Api).readCustomResourceDefinition({ name: "nexartokens.nexar-operator.io" });
    for (const n of ["long", "kept", "short"]) expect((await getToken(n)).metadata?.name).toBe(n);
    for (const s of ["long", "kept-token", "short-token"]) expect(await secretExists(APP_NS, s), s).toBe(true);
    await step("delete the Owner and the Orphan NexarToken; the garbage collector takes the Owner target", async () => {
      await custom.deleteNamespacedCustomObject({ ...G, namespace: APP_NS, name: "long" });
      await custom.deleteNamespacedCustomObject({ ...G, namespace: APP_NS, name: "kept" });
      await waitFor("Secret long collected", async () => !(await secretExists(APP_NS, "long")) || undefined, 120_000);
    });
    const kept = await core.readNamespacedSecret({ name: "kept-token", namespace: APP_NS });
    expect(kept.metadata?.ownerReferences ?? []).toEqual([]);
    expect(await secretExists(APP_NS, "short-token")).toBe(true);
  });
});
