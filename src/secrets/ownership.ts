import type { Secret } from "../kube/client.ts";
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_ANNOTATION } from "./desired.ts";

/** Outcome of {@link checkOwnership}. */
export type OwnershipDecision =
  { ok: true; adopting: boolean } | { ok: false; reason: "SecretConflict"; message: string };

/**
 * May the NexarToken `owner` (`namespace/name`, uid `ownerUid`) write the existing Secret? (SPEC §3.6)
 *
 * - no Secret yet, or one this NexarToken manages → yes. "Manages" means the owner annotation
 *   names it, or (when `ownerUid` is given) the Secret carries an ownerReference to its uid, so a
 *   hand-edit that strips the operator's label or annotation is repaired, not called a conflict;
 * - managed by ANOTHER NexarToken that still exists → conflict, whatever `adopt` says, so two
 *   NexarTokens naming one target never ping-pong: the first keeps it;
 * - unmanaged, or left behind by a NexarToken that no longer exists → only with `adopt: true`.
 *
 * Pure; `ownerExists` answers from the informer cache.
 */
export function checkOwnership(
  existing: Secret | undefined,
  owner: string,
  adopt: boolean,
  ownerExists: (key: string) => boolean,
  ownerUid?: string,
): OwnershipDecision {
  if (!existing) return { ok: true, adopting: false };
  const managedBy = existing.metadata.labels?.[MANAGED_BY_LABEL];
  const current = existing.metadata.annotations?.[OWNER_ANNOTATION];
  if (current === owner && (managedBy === MANAGED_BY_VALUE || managedBy === undefined)) {
    return { ok: true, adopting: false };
  }
  const name = existing.metadata.name ?? "";
  if (current && current !== owner && ownerExists(current)) {
    return {
      ok: false,
      reason: "SecretConflict",
      message: `Secret "${name}" is managed by NexarToken ${current}; choose another spec.target.name`,
    };
  }
  const referencesUs =
    ownerUid !== undefined && (existing.metadata.ownerReferences ?? []).some((r) => r.uid === ownerUid);
  if (referencesUs) return { ok: true, adopting: false };
  if (adopt) return { ok: true, adopting: true };
  return {
    ok: false,
    reason: "SecretConflict",
    message: `Secret "${name}" exists and is not managed by this NexarToken; it was left untouched. Set spec.target.adopt: true to take it over, or choose another spec.target.name`,
  };
}
