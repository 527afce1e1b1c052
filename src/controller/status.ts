/**
 * Status computation for NexarTokens: pure functions that build the desired `status` and decide
 * whether it differs from the stored one, so status is written only on change (SPEC §3.7).
 * Conditions follow the Kubernetes API conventions (`metav1.Condition`): `lastTransitionTime`
 * changes only when `status` flips.
 */

/** `metav1.Condition`. Times are RFC 3339 strings. */
export interface Condition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

/** The operator-written part of a NexarToken's status (SPEC §2). Times are RFC 3339 UTC. */
export interface TokenStatus {
  observedGeneration?: number;
  conditions?: Condition[];
  expiresAt?: string;
  renewalTime?: string;
  lastRefreshTime?: string;
  grantedScopes?: string[];
  failedAttempts?: number;
  lastFailureTime?: string;
  lastFailureReason?: string;
  /** The earliest next attempt while failures are reported (`nextAttemptAtMs`, src/renewal/backoff.ts). */
  nextAttemptTime?: string;
  /** Keyed fingerprint of the inputs of the last failed fetch (`fingerprintOf`). */
  lastFailureFingerprint?: string;
  /** The refresh annotation value the last failed fetch answered. */
  lastFailureRefreshRequest?: string;
  secretName?: string;
  lastRefreshRequest?: string;
}

/**
 * Sets condition `c` in `existing` (returning a new array): keeps `lastTransitionTime` when the
 * condition's status is unchanged, else stamps `nowIso`.
 */
export function setCondition(
  existing: readonly Condition[] | undefined,
  c: Omit<Condition, "lastTransitionTime">,
  nowIso: string,
): Condition[] {
  const list = [...(existing ?? [])];
  const i = list.findIndex((x) => x.type === c.type);
  const prev = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    ...c,
    lastTransitionTime: prev && prev.status === c.status ? prev.lastTransitionTime : nowIso,
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

/** Deep equality of two statuses as JSON values (key order ignored; undefined fields ignored). */
export function statusEqual(a: TokenStatus | undefined, b: TokenStatus | undefined): boolean {
  return jsonEqual(a ?? {}, b ?? {});
}

/**
 * Deep equality of two JSON values: objects compare by their keys whose value is not
 * `undefined`, in any order; arrays element by element. Allocates nothing for primitives and
 * equal-length arrays (status comparison runs on every reconcile).
 */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const aArray = Array.isArray(a);
  if (aArray !== Array.isArray(b)) return false;
  if (aArray) {
    const x = a as unknown[];
    const y = b as unknown[];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!jsonEqual(x[i], y[i])) return false;
    return true;
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let defined = 0;
  for (const k in x) {
    if (!Object.hasOwn(x, k) || x[k] === undefined) continue;
    defined++;
    if (!Object.hasOwn(y, k) || !jsonEqual(x[k], y[k])) return false;
  }
  for (const k in y) if (Object.hasOwn(y, k) && y[k] !== undefined) defined--;
  return defined === 0;
}

/**
 * The JSON merge patch (RFC 7386) that turns `current` into `desired` for the top-level status
 * fields: changed fields are set, fields absent from `desired` are nulled.
 */
export function statusPatch(current: TokenStatus | undefined, desired: TokenStatus): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  const keys = new Set([...Object.keys(current ?? {}), ...Object.keys(desired)]);
  for (const k of keys) {
    const d = (desired as Record<string, unknown>)[k];
    const c = (current as Record<string, unknown> | undefined)?.[k];
    if (!jsonEqual(d ?? null, c ?? null)) patch[k] = d ?? null;
  }
  return patch;
}
