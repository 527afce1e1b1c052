import { GROUP, VERSION, PLURAL } from "../api/constants.ts";

/** API path of Secrets in `namespace` (collection), or of one Secret when `name` is given. */
export function secretPath(namespace: string | undefined, name?: string): string {
  const base = namespace ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets` : "/api/v1/secrets";
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/** API path of NexarTokens in `namespace` (or all namespaces when undefined), or of one. */
export function nexarTokenPath(namespace: string | undefined, name?: string): string {
  const base = namespace
    ? `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}`
    : `/apis/${GROUP}/${VERSION}/${PLURAL}`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/** API path of a NexarToken's status subresource. */
export function nexarTokenStatusPath(namespace: string, name: string): string {
  return `${nexarTokenPath(namespace, name)}/status`;
}

/** API path of Events (`events.k8s.io/v1`) in `namespace`. */
export function eventsPath(namespace: string): string {
  return `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/events`;
}
