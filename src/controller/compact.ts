import type { KubeObject } from "../api/meta.ts";

/**
 * Drops `metadata.managedFields` from `obj`, in place, and returns it: server-side-apply
 * bookkeeping the operator never reads (client-go's `TransformStripManagedFields`), about half of
 * a cached NexarToken's memory. Used as the NexarToken informer's transform and for the target
 * Secrets listed at start-up.
 */
export function stripManagedFields<T extends KubeObject>(obj: T): T {
  if ((obj.metadata as { managedFields?: unknown }).managedFields !== undefined) {
    const { managedFields: _dropped, ...meta } = obj.metadata as T["metadata"] & { managedFields?: unknown };
    obj.metadata = meta;
  }
  return obj;
}
