import type { KubeObject } from "../api/meta.ts";
import type { NexarToken } from "../api/types.ts";

/**
 * A bounded string intern pool: {@link intern} returns one shared instance per distinct value, so
 * thousands of cached objects carrying the same value (a scope, a token URL, a Secret key name)
 * hold one string instead of one each. JSON.parse makes a new string for every value longer than
 * a few characters; V8 shares only property names.
 *
 * Bounded: after `maxEntries` distinct values, new values are returned as they are (not pooled),
 * so values that never repeat (names, timestamps) cannot grow it without limit — callers intern
 * only fields whose values repeat across objects.
 */
export class Interner {
  private readonly pool = new Map<string, string>();
  private readonly maxEntries: number;

  /** @param maxEntries most distinct values pooled (default 4,096). */
  constructor(maxEntries = 4096) {
    this.maxEntries = maxEntries;
  }

  /** The pooled instance equal to `s` (pooling `s` if there is room); `undefined` stays `undefined`. */
  intern<S extends string | undefined>(s: S): S {
    if (s === undefined) return s;
    const hit = this.pool.get(s);
    if (hit !== undefined) return hit as S;
    if (this.pool.size < this.maxEntries) this.pool.set(s, s);
    return s;
  }

  /** Number of pooled values. */
  get size(): number {
    return this.pool.size;
  }
}

/**
 * Prepares a NexarToken for the informer's cache, in place, and returns it: drops
 * `metadata.managedFields` (server-side-apply bookkeeping the operator never reads; client-go's
 * TransformStripManagedFields) and interns the values that repeat across NexarTokens — apiVersion
 * and kind, grant, client authentication, token URL, scopes, the credentials Secret's name and key
 * names, the target's type and creation policy, and the status's condition types, statuses and
 * reasons and granted scopes. With 10,000 NexarTokens that is ~4 MiB of duplicate strings
 * (BENCHMARKS.md, P4).
 */
export function compactNexarToken(nt: NexarToken, pool: Interner): NexarToken {
  stripManagedFields(nt);
  internFields(nt, ["apiVersion", "kind"], pool);
  internFields(nt.metadata, ["namespace"], pool);
  const spec = nt.spec as Record<string, unknown> | undefined;
  if (spec && typeof spec === "object") {
    internFields(spec, ["grant", "clientAuthentication", "tokenUrl"], pool);
    internArray(spec, "scopes", pool);
    internFields(spec.credentialsSecretRef, ["name", "clientIdKey", "clientSecretKey", "refreshTokenKey"], pool);
    internFields(spec.target, ["type", "creationPolicy"], pool);
  }
  const status = nt.status as Record<string, unknown> | undefined;
  if (status && typeof status === "object") {
    if (Array.isArray(status.conditions)) {
      for (const c of status.conditions) internFields(c, ["type", "status", "reason"], pool);
    }
    internArray(status, "grantedScopes", pool);
    internFields(status, ["lastFailureReason"], pool);
  }
  return nt;
}

/**
 * Drops `metadata.managedFields` from `obj`, in place, and returns it. `metadata` is replaced by a
 * new object rather than losing the property through `delete`: V8 turns an object that loses a
 * property into a dictionary-mode object (a hash table: larger, and slower to read).
 */
export function stripManagedFields<T extends KubeObject>(obj: T): T {
  if ((obj.metadata as { managedFields?: unknown }).managedFields !== undefined) {
    const { managedFields: _dropped, ...meta } = obj.metadata as T["metadata"] & { managedFields?: unknown };
    obj.metadata = meta;
  }
  return obj;
}

/** Interns the string-valued `fields` of `obj` (an object; anything else is left alone). Absent fields stay absent. */
function internFields(obj: unknown, fields: readonly string[], pool: Interner): void {
  if (obj === null || typeof obj !== "object") return;
  const o = obj as Record<string, unknown>;
  for (const f of fields) {
    const v = o[f];
    if (typeof v === "string") o[f] = pool.intern(v);
  }
}

/** Interns the string elements of array `obj[field]`, in place. */
function internArray(obj: Record<string, unknown>, field: string, pool: Interner): void {
  const a = obj[field];
  if (!Array.isArray(a)) return;
  for (let i = 0; i < a.length; i++) if (typeof a[i] === "string") a[i] = pool.intern(a[i] as string);
}
