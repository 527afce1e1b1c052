/**
 * Kubernetes object metadata as it travels in JSON (timestamps are RFC 3339 strings), the part
 * of `meta/v1` the operator reads and writes (Kubernetes API conventions, "Metadata").
 */

/** The subset of `metav1.ObjectMeta` the operator reads and writes. */
export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  finalizers?: string[];
}

/** `metav1.OwnerReference` (Kubernetes API conventions, "Garbage collection"). */
export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Any Kubernetes object: apiVersion/kind plus metadata; the rest is type-specific. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}
