/**
 * Small Kubernetes helpers for integration tests, on @kubernetes/client-node 2.x (object-param
 * API methods; failures throw `ApiException` carrying the HTTP status in `.code`).
 */
import { readFile } from "node:fs/promises";
import { ApiException, ApiextensionsV1Api, CoreV1Api, KubeConfig, loadYaml } from "@kubernetes/client-node";
import type { V1CustomResourceDefinition, V1Namespace } from "@kubernetes/client-node";
import { parseAllDocuments } from "yaml";

/** Load a kubeconfig file (e.g. `ControlPlane.kubeconfigPath`) into a client-node `KubeConfig`. */
export function loadKubeConfig(kubeconfigPath: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  return kc;
}

/** The HTTP status of a client-node `ApiException`, or undefined for any other error. */
export function apiErrorCode(err: unknown): number | undefined {
  return err instanceof ApiException ? (err as ApiException<unknown>).code : undefined;
}

/**
 * Poll `probe` every `intervalMs` (default 200 ms) until it returns a value other than
 * undefined, and return that value. Throws `Error("timed out waiting for <what>")` after
 * `timeoutMs` milliseconds (default 60000); errors thrown by `probe` propagate.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Create or update (replace, keeping resourceVersion) every CustomResourceDefinition in the
 * YAML file `crdPath` (multi-document files allowed; other kinds are rejected), then wait until
 * each has the condition `Established=True` (apiextensions.k8s.io/v1 CRD status conventions).
 * Returns the CRDs as last read. Throws on API errors, a non-CRD document, or after
 * `timeoutMs` (default 30000 ms) without Established.
 * Note: on an update, the apiserver starts enforcing the new schema asynchronously shortly after
 * this returns (Kubernetes 1.35 fills no `observedGeneration` in CRD conditions to wait on);
 * tests asserting on a changed schema should poll.
 */
export async function applyCrd(
  kubeconfigPath: string,
  crdPath: string,
  timeoutMs = 30_000,
): Promise<V1CustomResourceDefinition[]> {
  const api = loadKubeConfig(kubeconfigPath).makeApiClient(ApiextensionsV1Api);
  const docs = parseAllDocuments(await readFile(crdPath, "utf8"));
  const result: V1CustomResourceDefinition[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${crdPath}: ${doc.errors.map((e) => e.message).join("; ")}`);
    // Deserialize into client-node's model first: handing it the raw YAML object would make its
    // serializer drop every `default`, `enum` and `x-kubernetes-*` field of the schema.
    const raw = doc.toJS() as unknown;
    const body = raw === null ? null : loadYaml<V1CustomResourceDefinition>(JSON.stringify(raw));
    if (body === null) continue;
    if (body.kind !== "CustomResourceDefinition" || body.metadata?.name === undefined) {
      throw new Error(`${crdPath}: expected a named CustomResourceDefinition, got kind ${String(body.kind)}`);
    }
    const name = body.metadata.name;
    try {
      await api.createCustomResourceDefinition({ body });
    } catch (err) {
      if (apiErrorCode(err) !== 409) throw err;
      const existing = await api.readCustomResourceDefinition({ name });
      body.metadata.resourceVersion = existing.metadata?.resourceVersion;
      await api.replaceCustomResourceDefinition({ name, body });
    }
    result.push(
      await waitFor(
        `CRD ${name} Established`,
        async () => {
          const crd = await api.readCustomResourceDefinition({ name });
          const established = crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True");
          return established === true ? crd : undefined;
        },
        timeoutMs,
        100,
      ),
    );
  }
  return result;
}

/**
 * Create namespace `name` (ignoring 409 AlreadyExists) and return it as read back.
 * `kc` is a `KubeConfig` or a kubeconfig file path. Throws client-node `ApiException` otherwise.
 */
export async function createNamespace(kc: KubeConfig | string, name: string): Promise<V1Namespace> {
  const core = (typeof kc === "string" ? loadKubeConfig(kc) : kc).makeApiClient(CoreV1Api);
  try {
    return await core.createNamespace({ body: { metadata: { name } } });
  } catch (err) {
    if (apiErrorCode(err) !== 409) throw err;
    return await core.readNamespace({ name });
  }
}

/**
 * API path (collection) of each kind the Helm chart renders, by `apiVersion/kind`; a kind missing
 * here fails the chart test and the bench on purpose ({@link collectionPath}).
 */
export const CHART_PATHS: Record<string, (ns: string) => string> = {
  "v1/ServiceAccount": (ns) => `/api/v1/namespaces/${ns}/serviceaccounts`,
  "v1/Service": (ns) => `/api/v1/namespaces/${ns}/services`,
  "v1/ConfigMap": (ns) => `/api/v1/namespaces/${ns}/configmaps`,
  "apps/v1/Deployment": (ns) => `/apis/apps/v1/namespaces/${ns}/deployments`,
  "policy/v1/PodDisruptionBudget": (ns) => `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`,
  "rbac.authorization.k8s.io/v1/ClusterRole": () => `/apis/rbac.authorization.k8s.io/v1/clusterroles`,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": () => `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings`,
  "rbac.authorization.k8s.io/v1/Role": (ns) => `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`,
  "rbac.authorization.k8s.io/v1/RoleBinding": (ns) =>
    `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`,
  "networking.k8s.io/v1/NetworkPolicy": (ns) => `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies`,
  "monitoring.coreos.com/v1/ServiceMonitor": (ns) => `/apis/monitoring.coreos.com/v1/namespaces/${ns}/servicemonitors`,
  "monitoring.coreos.com/v1/PrometheusRule": (ns) => `/apis/monitoring.coreos.com/v1/namespaces/${ns}/prometheusrules`,
};

/**
 * The collection path to POST object `o` to: its namespace, else `defaultNamespace`.
 * @throws Error naming the kind when {@link CHART_PATHS} does not know it.
 */
export function collectionPath(
  o: { apiVersion: string; kind: string; metadata: { namespace?: string } },
  defaultNamespace: string,
): string {
  const p = CHART_PATHS[`${o.apiVersion}/${o.kind}`];
  if (!p) throw new Error(`no API path known for ${o.apiVersion}/${o.kind}; add it to CHART_PATHS`);
  return p(o.metadata.namespace ?? defaultNamespace);
}
