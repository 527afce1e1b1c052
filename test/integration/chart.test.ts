/**
 * The Helm chart against a real kube-apiserver (SPEC §5, issue 4 item 7):
 * - `helm lint --strict` for several value sets, and the chart's crds/ byte-identical to crds/;
 * - `helm template` for several value sets, every object created with server-side dry-run
 *   (`?dryRun=All&fieldValidation=Strict`: admission, schema and unknown fields checked by the API
 *   server). The Prometheus Operator CRDs are installed as minimal stubs so that ServiceMonitor and
 *   PrometheusRule go through the same path;
 * - a real `helm install` (cluster-wide mode) and, pods needing a kubelet, the operator process
 *   run with a TokenRequest token of the chart's ServiceAccount and the Deployment's own args: a
 *   NexarToken becomes Ready with exactly the chart's RBAC; SubjectAccessReviews show that RBAC
 *   grants nothing more; the pod template passes Pod Security "restricted" enforcement;
 * - the same for namespaced mode (a second release watching one namespace);
 * - `helm uninstall` keeps the CRD and the NexarTokens.
 */
import { execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { AuthorizationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from "@kubernetes/client-node";
import { KubeClient } from "../../src/kube/client.ts";
import { startControlPlane, type ControlPlane } from "../harness/controlplane.ts";
import { startIdentityServer, type IdentityServer } from "../harness/identity.ts";
import { apiErrorCode, collectionPath, createNamespace, loadKubeConfig, waitFor } from "../harness/kube.ts";
import { startOperator, type OperatorProcess } from "../harness/operator.ts";
import { CHART, toolPath } from "../alerts/render-rules.ts";
import type { NexarToken } from "../../src/api/types.ts";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const G = { group: "nexar-operator.io", version: "v1alpha1", plural: "nexartokens" };

interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}

/** Minimal stand-ins for the Prometheus Operator CRDs (any spec accepted), so dry-runs reach the API server. */
function stubCrd(plural: string, kind: string) {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: {
      group: "monitoring.coreos.com",
      scope: "Namespaced",
      names: { plural, kind, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: "v1",
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: "object",
              properties: { spec: { type: "object", "x-kubernetes-preserve-unknown-fields": true } },
            },
          },
        },
      ],
    },
  };
}

const RELEASE_NS = "nexar-system";
const VALUE_SETS: Record<string, string[]> = {
  defaults: [],
  namespaced: ["watchNamespaces={team-a,team-b}"],
  everything: [
    "serviceMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "prometheusRule.runbookBaseUrl=https://runbooks.example/nexar",
    "prometheusRule.additionalAlertLabels.team=platform",
    "grafanaDashboard.enabled=true",
    "networkPolicy.enabled=true",
    "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    "caBundle.pem=-----BEGIN CERTIFICATE-----",
    "proxy.httpsProxy=http://proxy.internal:3128",
    "proxy.noProxy=.svc",
    "extraArgs={--log-level=debug}",
    "extraEnv[0].name=EXTRA",
    "extraEnv[0].value=enabled",
    "tolerations[0].key=dedicated",
    "tolerations[0].operator=Exists",
    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/os",
    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In",
    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values={linux}",
    "fallbackLifetime=1h",
    "podAnnotations.a=b",
  ],
  "single replica, no leader election, existing ServiceAccount, no RBAC, CA from a Secret": [
    "replicaCount=1",
    "leaderElection.enabled=false",
    "serviceAccount.create=false",
    "serviceAccount.name=default",
    "rbac.create=false",
    "caBundle.secret.name=corp-ca",
    "metrics.service.enabled=false",
  ],
};

let cp: ControlPlane;
let idp: IdentityServer;
let kc: KubeConfig;
let kube: KubeClient;
let helm: string;
let helmHome: string;
const operators: OperatorProcess[] = [];
const secretValues = new Set<string>();

async function runHelm(args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(helm, [...args, "--kubeconfig", cp.kubeconfigPath], {
      env: {
        ...process.env,
        HELM_CACHE_HOME: join(helmHome, "cache"),
        HELM_CONFIG_HOME: join(helmHome, "config"),
        HELM_DATA_HOME: join(helmHome, "data"),
      },
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`helm ${args.slice(0, 2).join(" ")} failed: ${e.stderr ?? e.message}\n${e.stdout ?? ""}`, {
      cause: err,
    });
  }
}

function setArgs(sets: string[]): string[] {
  return sets.flatMap((s) => ["--set", s]);
}

async function template(release: string, sets: string[]): Promise<Obj[]> {
  const out = await runHelm(["template", release, CHART, "--namespace", RELEASE_NS, ...setArgs(sets)]);
  return parseAllDocuments(out)
    .map((d) => d.toJS() as Obj | null)
    .filter((o): o is Obj => o !== null);
}

function pathOf(o: Obj): string {
  return collectionPath(o, RELEASE_NS);
}

/** A TokenRequest token for ServiceAccount `ns/name`, and a kubeconfig that uses it. */
async function serviceAccountKubeconfig(ns: string, name: string, file: string): Promise<string> {
  const core = kc.makeApiClient(CoreV1Api);
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: ns,
    name,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const token = tr.status?.token;
  if (!token) throw new Error("TokenRequest returned no token");
  secretValues.add(token);
  return cp.kubeconfigWithToken(token, file);
}

/** The installed Deployment's container args, without `run` and `--http-address` (the harness picks a port). */
async function deploymentArgs(ns: string, name: string): Promise<string[]> {
  const d = await kube.request<{ spec: { template: { spec: { containers: { args: string[] }[] } } } }>(
    "GET",
    `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
  );
  const args = d.spec.template.spec.containers[0]?.args ?? [];
  expect(args[0]).toBe("run");
  return args.slice(1).filter((a) => !a.startsWith("--http-address"));
}

async function can(user: string, verb: string, resource: string, namespace?: string, group = "", sub?: string) {
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const r = await authz.createSubjectAccessReview({
    body: {
      spec: {
        user,
        groups: ["system:serviceaccounts", `system:serviceaccounts:${RELEASE_NS}`, "system:authenticated"],
        resourceAttributes: { verb, resource, group, namespace, subresource: sub },
      },
    },
  });
  return r.status?.allowed === true;
}

async function mainJob(op: OperatorProcess, ns: string, name: string): Promise<NexarToken> {
  const clientSecret = `chart-secret-${ns}-0123456789`;
  secretValues.add(clientSecret);
  idp.addClient({ clientId: `chart-${ns}`, clientSecret, authMethod: "client_secret_post" });
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await core.createNamespacedSecret({
    namespace: ns,
    body: { metadata: { name: "nexar-app", namespace: ns }, stringData: { clientId: `chart-${ns}`, clientSecret } },
  });
  await custom.createNamespacedCustomObject({
    ...G,
    namespace: ns,
    body: {
      apiVersion: "nexar-operator.io/v1alpha1",
      kind: "NexarToken",
      metadata: { name, namespace: ns },
      spec: { scopes: ["supply.domain"], tokenUrl: idp.tokenUrl, credentialsSecretRef: { name: "nexar-app" } },
    },
  });
  const nt = await waitFor(
    `NexarToken ${ns}/${name} Ready=True`,
    async () => {
      const x = (await custom.getNamespacedCustomObject({ ...G, namespace: ns, name })) as NexarToken;
      return x.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? x : undefined;
    },
    60_000,
  );
  const s = await core.readNamespacedSecret({ namespace: ns, name });
  const token = Buffer.from(s.data?.access_token ?? "", "base64").toString("utf8");
  expect(token.split(".")).toHaveLength(3);
  secretValues.add(token);
  await idp.verify(token);
  // The Event about it was written by the ServiceAccount too (events.k8s.io create).
  await waitFor(
    `an Event about ${ns}/${name}`,
    async () => {
      const ev = await kube.request<{ items: { regarding?: { name?: string } }[] }>(
        "GET",
        `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
      );
      return ev.items.some((e) => e.regarding?.name === name) ? true : undefined;
    },
    20_000,
  ).catch((err: unknown) => {
    const why = op.lines.filter((l) => l.includes("event not recorded")).slice(0, 3);
    throw new Error(`${(err as Error).message}; operator: ${why.join("\n")}`, { cause: err });
  });
  // No request of the operator was refused.
  expect(op.lines.filter((l) => /forbidden/i.test(l))).toEqual([]);
  return nt;
}

beforeAll(async () => {
  helm = toolPath("helm");
  helmHome = await mkdtemp(join(tmpdir(), "nexar-helm-"));
  cp = await startControlPlane({ controllerManager: false });
  idp = await startIdentityServer({ accessTokenLifetimeSeconds: 3600 });
  kc = loadKubeConfig(cp.kubeconfigPath);
  kube = await KubeClient.create(kc);
  for (const ns of [RELEASE_NS, "team-a", "team-b", "parts", "nexar-ns"]) await createNamespace(kc, ns);
  for (const [plural, kind] of [
    ["servicemonitors", "ServiceMonitor"],
    ["prometheusrules", "PrometheusRule"],
  ] as const) {
    await kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
      body: stubCrd(plural, kind),
    });
  }
}, 300_000);

afterAll(async () => {
  for (const op of operators) await op.stop();
  // No secret value (client secret, issued token, ServiceAccount token) in any operator log.
  for (const op of operators) {
    const text = op.lines.join("\n");
    for (const v of secretValues)
      if (v.length >= 8) expect(text.includes(v), "a secret value in operator logs").toBe(false);
  }
  await kube?.close();
  await idp?.stop();
  await cp?.stop();
  if (helmHome) await rm(helmHome, { recursive: true, force: true });
});

describe("chart static checks", () => {
  it("ships the CRDs in crds/ with the same bytes as the repository's crds/", () => {
    const top = readdirSync(join(ROOT, "crds")).sort();
    expect(readdirSync(join(CHART, "crds")).sort()).toEqual(top);
    for (const f of top) {
      expect(readFileSync(join(CHART, "crds", f)).equals(readFileSync(join(ROOT, "crds", f))), f).toBe(true);
    }
  });

  it.each(Object.entries(VALUE_SETS))("helm lint --strict passes (%s)", async (_name, sets) => {
    const out = await runHelm(["lint", "--strict", CHART, "--namespace", RELEASE_NS, ...setArgs(sets)]);
    expect(out).toContain("0 chart(s) failed");
  });

  it("values.schema.json rejects a bad value", async () => {
    await expect(runHelm(["lint", "--strict", CHART, "--set", "concurrency=0"])).rejects.toThrow(/concurrency/);
    await expect(runHelm(["template", "x", CHART, "--set", "logLevel=loud"])).rejects.toThrow(/logLevel/);
  });

  it("the README documents every value", async () => {
    const readme = readFileSync(join(CHART, "README.md"), "utf8");
    const values = parseAllDocuments(readFileSync(join(CHART, "values.yaml"), "utf8"))[0]?.toJS() as Record<
      string,
      unknown
    >;
    const leaves: string[] = [];
    const walk = (prefix: string, v: unknown) => {
      const opaque = ["podSecurityContext", "securityContext", "resources", "grafanaDashboard.labels"];
      if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0 && !opaque.includes(prefix)) {
        for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
      } else leaves.push(prefix);
    };
    walk("", values);
    for (const key of leaves) expect(readme, key).toContain(`| \`${key}\``);
  });

  it("renders a hardened Deployment: 2 replicas, run args, POD_NAME/POD_NAMESPACE, probes, port 8080", async () => {
    const objs = await template("nexar-token-operator", []);
    const d = objs.find((o) => o.kind === "Deployment") as unknown as {
      spec: {
        replicas: number;
        template: { spec: Record<string, unknown> & { containers: Record<string, unknown>[] } };
      };
    };
    expect(d.spec.replicas).toBe(2);
    const pod = d.spec.template.spec;
    const c = pod.containers[0] as {
      args: string[];
      env: { name: string }[];
      ports: { containerPort: number }[];
      livenessProbe: { httpGet: { path: string } };
      readinessProbe: { httpGet: { path: string } };
      securityContext: Record<string, unknown>;
    };
    expect(c.args[0]).toBe("run");
    expect(c.env.map((e) => e.name)).toEqual(expect.arrayContaining(["POD_NAME", "POD_NAMESPACE"]));
    expect(c.ports[0]?.containerPort).toBe(8080);
    expect(c.livenessProbe.httpGet.path).toBe("/healthz");
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
    expect(c.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    });
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } });
    expect(objs.map((o) => o.kind).sort()).toEqual(
      [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role", // the leader-election Lease
        "Role", // the fingerprint key Secret
        "RoleBinding",
        "RoleBinding",
        "Service",
        "ServiceAccount",
      ].sort(),
    );
    expect(c.args).toContain("--fingerprint-key-secret=nexar-token-operator-fingerprint-key");
    const keyRole = objs.find((o) => o.kind === "Role" && o.metadata.name.endsWith("-fingerprint-key")) as
      { rules: { resources: string[]; resourceNames?: string[]; verbs: string[] }[] } | undefined;
    expect(keyRole?.rules).toEqual([
      {
        apiGroups: [""],
        resources: ["secrets"],
        resourceNames: ["nexar-token-operator-fingerprint-key"],
        verbs: ["get"],
      },
      { apiGroups: [""], resources: ["secrets"], verbs: ["create"] },
    ]);
  });
});

describe("chart on the API server", () => {
  it.each(Object.entries(VALUE_SETS))(
    "helm template (%s): every object passes server-side dry-run with strict field validation",
    async (_name, sets) => {
      const objs = await template("dry-run", sets);
      expect(objs.length).toBeGreaterThan(0);
      for (const o of objs) {
        try {
          await kube.request("POST", pathOf(o), {
            body: o,
            query: { dryRun: "All", fieldValidation: "Strict", fieldManager: "chart-test" },
          });
        } catch (err) {
          throw new Error(`${o.kind} ${o.metadata.name}: ${(err as Error).message}`, { cause: err });
        }
      }
    },
  );

  it("cluster-wide mode: helm install, then the operator with the chart's ServiceAccount makes a NexarToken Ready", async () => {
    const out = await runHelm(["install", "nexar-token-operator", CHART, "--namespace", RELEASE_NS]);
    expect(out).toContain("STATUS: deployed");
    // helm installed the CRD from crds/.
    await waitFor(
      "CRD established",
      async () => {
        const crd = await kube.getOrUndefined<{ status?: { conditions?: { type: string; status: string }[] } }>(
          "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nexartokens.nexar-operator.io",
        );
        return crd?.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") ? true : undefined;
      },
      30_000,
    );
    const kubeconfig = await serviceAccountKubeconfig(RELEASE_NS, "nexar-token-operator", "chart-cluster-sa");
    const args = await deploymentArgs(RELEASE_NS, "nexar-token-operator");
    const op = await startOperator({
      kubeconfig,
      extraArgs: [...args, "--log-level=debug"],
      env: { POD_NAME: "nexar-token-operator-abc12-xyz89", POD_NAMESPACE: RELEASE_NS },
    });
    operators.push(op);
    await mainJob(op, "parts", "supply");
    // Leader election used the Lease in the release namespace (when the operator elects a leader).
    const lease = await kube.getOrUndefined<{ spec?: { holderIdentity?: string } }>(
      `/apis/coordination.k8s.io/v1/namespaces/${RELEASE_NS}/leases/nexar-token-operator`,
    );
    if (lease) expect(lease.spec?.holderIdentity).toBe("nexar-token-operator-abc12-xyz89");
    await op.stop();
  });

  it("cluster-wide mode RBAC grants nothing beyond what the operator needs", async () => {
    const sa = `system:serviceaccount:${RELEASE_NS}:nexar-token-operator`;
    const N = "nexar-operator.io";
    // Needed.
    expect(await can(sa, "watch", "nexartokens", undefined, N)).toBe(true);
    expect(await can(sa, "patch", "nexartokens", "parts", N, "status")).toBe(true);
    expect(await can(sa, "create", "secrets", "parts")).toBe(true);
    expect(await can(sa, "create", "events", "parts", "events.k8s.io")).toBe(true);
    expect(await can(sa, "update", "leases", RELEASE_NS, "coordination.k8s.io")).toBe(true);
    expect(await can(sa, "watch", "leases", RELEASE_NS, "coordination.k8s.io")).toBe(true);
    // Not needed, so not granted.
    expect(await can(sa, "update", "nexartokens", "parts", N)).toBe(false);
    expect(await can(sa, "delete", "nexartokens", "parts", N)).toBe(false);
    expect(await can(sa, "create", "nexartokens", "parts", N)).toBe(false);
    expect(await can(sa, "get", "configmaps", "parts")).toBe(false);
    expect(await can(sa, "list", "pods", "parts")).toBe(false);
    expect(await can(sa, "create", "events", "parts")).toBe(false); // core/v1 Events: not used
    expect(await can(sa, "update", "leases", "parts", "coordination.k8s.io")).toBe(false);
    expect(await can(sa, "delete", "leases", RELEASE_NS, "coordination.k8s.io")).toBe(false);
    expect(await can(sa, "list", "leases", RELEASE_NS, "coordination.k8s.io")).toBe(false);
    expect(await can(sa, "update", "customresourcedefinitions", undefined, "apiextensions.k8s.io")).toBe(false);
  });

  it("the installed pod template passes Pod Security 'restricted' enforcement", async () => {
    await kube.request("PATCH", `/api/v1/namespaces/${RELEASE_NS}`, {
      body: { metadata: { labels: { "pod-security.kubernetes.io/enforce": "restricted" } } },
      contentType: "application/merge-patch+json",
    });
    const d = await kube.request<{ spec: { template: { metadata: unknown; spec: unknown } } }>(
      "GET",
      `/apis/apps/v1/namespaces/${RELEASE_NS}/deployments/nexar-token-operator`,
    );
    const pod = {
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: "pss-check", namespace: RELEASE_NS },
      spec: d.spec.template.spec,
    };
    await kube.request("POST", `/api/v1/namespaces/${RELEASE_NS}/pods`, {
      body: pod,
      query: { dryRun: "All", fieldValidation: "Strict" },
    });
    // The check can fail: a pod running as root is rejected in the same namespace.
    const bad = structuredClone(pod) as { spec: { containers: { securityContext: Record<string, unknown> }[] } };
    for (const c of bad.spec.containers)
      c.securityContext = { ...c.securityContext, runAsNonRoot: false, runAsUser: 0 };
    await expect(
      kube.request("POST", `/api/v1/namespaces/${RELEASE_NS}/pods`, { body: bad, query: { dryRun: "All" } }),
    ).rejects.toThrow(/violates PodSecurity "restricted/);
  });

  it("namespaced mode: a second release watching team-a works with Roles only and ignores team-b", async () => {
    const out = await runHelm([
      "install",
      "nto-ns",
      CHART,
      "--namespace",
      "nexar-ns",
      "--set",
      "watchNamespaces={team-a}",
    ]);
    expect(out).toContain("STATUS: deployed");
    const name = "nto-ns-nexar-token-operator";
    const kubeconfig = await serviceAccountKubeconfig("nexar-ns", name, "chart-ns-sa");
    const args = await deploymentArgs("nexar-ns", name);
    expect(args).toContain("--namespaces=team-a");
    const op = await startOperator({
      kubeconfig,
      extraArgs: [...args, "--log-level=debug"],
      env: { POD_NAME: `${name}-abc12-xyz89`, POD_NAMESPACE: "nexar-ns" },
    });
    operators.push(op);
    await mainJob(op, "team-a", "supply");
    // A NexarToken in an unwatched namespace is never touched.
    const custom = kc.makeApiClient(CustomObjectsApi);
    await custom.createNamespacedCustomObject({
      ...G,
      namespace: "team-b",
      body: {
        apiVersion: "nexar-operator.io/v1alpha1",
        kind: "NexarToken",
        metadata: { name: "ignored", namespace: "team-b" },
        spec: { scopes: ["supply.domain"], tokenUrl: idp.tokenUrl, credentialsSecretRef: { name: "none" } },
      },
    });
    // Let the operator settle: a new NexarToken in team-a is reconciled; team-b's still has no status.
    await custom.createNamespacedCustomObject({
      ...G,
      namespace: "team-a",
      body: {
        apiVersion: "nexar-operator.io/v1alpha1",
        kind: "NexarToken",
        metadata: { name: "later", namespace: "team-a" },
        spec: { scopes: ["supply.domain"], tokenUrl: idp.tokenUrl, credentialsSecretRef: { name: "nexar-app" } },
      },
    });
    await waitFor(
      "team-a/later Ready",
      async () => {
        const x = (await custom.getNamespacedCustomObject({ ...G, namespace: "team-a", name: "later" })) as NexarToken;
        return x.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ? true : undefined;
      },
      60_000,
    );
    const ignored = (await custom.getNamespacedCustomObject({
      ...G,
      namespace: "team-b",
      name: "ignored",
    })) as NexarToken;
    expect(ignored.status).toBeUndefined();
    const sa = `system:serviceaccount:nexar-ns:${name}`;
    expect(await can(sa, "get", "secrets", "team-a")).toBe(true);
    expect(await can(sa, "get", "secrets", "team-b")).toBe(false);
    expect(await can(sa, "list", "secrets")).toBe(false); // no cluster-wide access
    expect(await can(sa, "list", "nexartokens", undefined, "nexar-operator.io")).toBe(false);
    expect(op.lines.filter((l) => /forbidden/i.test(l))).toEqual([]);
    await op.stop();
  });

  it("helm uninstall keeps the CRD and the NexarTokens", async () => {
    await runHelm(["uninstall", "nto-ns", "--namespace", "nexar-ns"]);
    await runHelm(["uninstall", "nexar-token-operator", "--namespace", RELEASE_NS]);
    expect(
      await kube.getOrUndefined(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/nexartokens.nexar-operator.io",
      ),
    ).toBeDefined();
    const custom = kc.makeApiClient(CustomObjectsApi);
    const nt = (await custom.getNamespacedCustomObject({ ...G, namespace: "parts", name: "supply" })) as NexarToken;
    expect(nt.metadata.name).toBe("supply");
    expect(
      await kube.getOrUndefined(`/apis/apps/v1/namespaces/${RELEASE_NS}/deployments/nexar-token-operator`),
    ).toBeUndefined();
    expect(
      await kube.getOrUndefined(`/apis/rbac.authorization.k8s.io/v1/clusterroles/nexar-token-operator`),
    ).toBeUndefined();
    try {
      await kc
        .makeApiClient(CoreV1Api)
        .readNamespacedServiceAccount({ namespace: RELEASE_NS, name: "nexar-token-operator" });
      throw new Error("ServiceAccount still exists");
    } catch (err) {
      expect(apiErrorCode(err)).toBe(404);
    }
  });
});
