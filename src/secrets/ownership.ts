import type { Secret } from "../kube/client.ts";
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, OWNER_ANNOTATION } from "./desired.ts";

/** Outcome of {@link checkOwnership}. */
export type OwnershipDecision =
  { ok: true; adopting: boolean } | { ok: false; reason: "SecretConflict"; message: string };

/**
 * May the NexarToken `owner` (`namespace/name`) write the existing Secret? (SPEC §3.6)
 *
 * - no Secret yet, or one this NexarToken manages (owner annotation) → yes;
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
): OwnershipDecision {
  if (!existing) return { ok: true, adopting: false };
  const managedBy = existing.metadata.labels?.[MANAGED_BY_LABEL];
  const current = existing.metadata.annotations?.[OWNER_ANNOTATION];
  if (managedBy === MANAGED_BY_VALUE && current === owner) return { ok: true, adopting: false };
  const name = existing.metadata.name ?? "";
  if (managedBy === MANAGED_BY_VALUE && current && ownerExists(current)) {
    return {
      ok: false,
      reason: "SecretConflict",
      message: `Secret "${name}" is managed by NexarToken ${current}; choose another spec.target.name`,
    };
  }
  if (adopt) return { ok: true, adopting: true };
  return {
    ok: false,
    reason: "SecretConflict",
    message: `Secret "${name}" exists and is not managed by this NexarToken; it was left untouched. Set spec.target.adopt: true to take it over, or choose another spec.target.name`,
  };
}
