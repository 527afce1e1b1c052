import Mustache from "mustache";
import type { OwnerReference, Secret } from "../kube/client.ts";
import { jwtExpiry } from "../oauth/jwt.ts";
import {
  ANNOTATION_EXPIRES_AT,
  ANNOTATION_OWNER,
  DEFAULT_DATA_KEYS,
  LABEL_MANAGED_BY,
  MANAGED_BY,
} from "../api/constants.ts";

/** Label on every target Secret (SPEC §4; Kubernetes recommended labels). */
export const MANAGED_BY_LABEL = LABEL_MANAGED_BY;
/** Value of {@link MANAGED_BY_LABEL}. */
export const MANAGED_BY_VALUE = MANAGED_BY;
/** Annotation: `<namespace>/<name>` of the NexarToken that manages the Secret (SPEC §4). */
export const OWNER_ANNOTATION = ANNOTATION_OWNER;
/** Annotation: token expiry, RFC 3339 UTC (SPEC §4). */
export const EXPIRES_AT_ANNOTATION = ANNOTATION_EXPIRES_AT;
/**
 * Annotation: fingerprint (hex SHA-256) of everything the token was issued for — token URL,
 * grant, client authentication, client id and secret, scopes. A restart compares it with the
 * current inputs to decide whether the stored token may be kept (SPEC §3.2). It is a one-way
 * hash of a high-entropy client secret, stored only on the Secret that already holds the token.
 */
export const FINGERPRINT_ANNOTATION = "nexar-operator.io/credentials-hash";
/** Annotation: when the operator received the token (epoch-free RFC 3339), used to recompute renewal. */
export const ISSUED_AT_ANNOTATION = "nexar-operator.io/issued-at";

/** The default data keys, OAuth's own names (RFC 6749 §5.1; SPEC §4). */
export const DATA_KEYS = DEFAULT_DATA_KEYS;

/** Creation policy of the target Secret (SPEC §2, like External Secrets Operator's `creationPolicy`). */
export type CreationPolicy = "Owner" | "Orphan" | "Merge";

/** The target part of a NexarToken spec, all defaults applied. */
export interface ResolvedTarget {
  name: string;
  type: string;
  creationPolicy: CreationPolicy;
  adopt: boolean;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Extra data keys: key → mustache template over {@link TemplateValues}. */
  template: Record<string, string>;
}

/** Identity of the owning NexarToken. */
export interface OwnerIdentity {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid: string;
}

/** The token values a Secret is rendered from. Times are epoch milliseconds. */
export interface TokenValues {
  accessToken: string;
  tokenType: string;
  scopes: readonly string[];
  expiresAtMs: number;
  /** When the operator received it; undefined for a token read back from a Secret without `issued-at`. */
  receivedAtMs: number | undefined;
}

/** Variables available to templates: the four default keys, by their data-key names. */
export interface TemplateValues {
  access_token: string;
  token_type: string;
  expires_at: string;
  scope: string;
}

/** The operator-owned part of a target Secret: data (plain strings, not base64), labels, annotations. */
export interface DesiredSecret {
  name: string;
  namespace: string;
  type: string;
  stringData: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** The ownerReference to set: present for `creationPolicy: Owner` only. */
  ownerReference: OwnerReference | undefined;
  /**
   * The NexarToken the Secret is written for, whatever the policy: references to it (or to an
   * earlier NexarToken of the same kind and name) are the operator's, so {@link planSecretWrite}
   * replaces them with {@link ownerReference}, or removes them under `Orphan` and `Merge`.
   */
  writtenFor: Pick<OwnerReference, "kind" | "name" | "uid">;
}

/** RFC 3339, UTC, second precision (`2026-12-01T10:00:00Z`); fractions of a second are dropped. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

/**
 * Renders one template with mustache, HTML escaping off (values are tokens, not HTML).
 * @throws Error (message names the key, never a value) when the template does not parse.
 */
export function renderTemplate(key: string, template: string, values: TemplateValues): string {
  try {
    return Mustache.render(template, values, {}, { escape: (s: string) => s });
  } catch (err) {
    throw new Error(`template for key "${key}" is invalid: ${(err as Error).message.split("\n")[0] ?? ""}`, {
      cause: err,
    });
  }
}

/**
 * Computes the desired target Secret for a token (SPEC §4): default keys, rendered template keys,
 * the managed-by label, owner/expiry/fingerprint annotations, user labels and annotations, and an
 * ownerReference for `creationPolicy: Owner` (Kubernetes garbage collection).
 * Pure. @throws Error when a template does not render.
 */
export function desiredSecret(
  owner: OwnerIdentity,
  target: ResolvedTarget,
  token: TokenValues,
  fingerprint: string,
): DesiredSecret {
  const values: TemplateValues = {
    access_token: token.accessToken,
    token_type: token.tokenType,
    expires_at: rfc3339(token.expiresAtMs),
    scope: token.scopes.join(" "),
  };
  const stringData: Record<string, string> = { ...values };
  for (const [key, tpl] of Object.entries(target.template)) {
    if ((DATA_KEYS as readonly string[]).includes(key)) continue;
    stringData[key] = renderTemplate(key, tpl, values);
  }
  return {
    name: target.name,
    namespace: owner.namespace,
    type: target.type,
    stringData,
    labels: { ...target.labels, [MANAGED_BY_LABEL]: MANAGED_BY_VALUE },
    annotations: {
      ...target.annotations,
      [OWNER_ANNOTATION]: `${owner.namespace}/${owner.name}`,
      [EXPIRES_AT_ANNOTATION]: values.expires_at,
      ...(token.receivedAtMs !== undefined ? { [ISSUED_AT_ANNOTATION]: rfc3339(token.receivedAtMs) } : {}),
      [FINGERPRINT_ANNOTATION]: fingerprint,
    },
    ownerReference:
      target.creationPolicy === "Owner"
        ? { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true }
        : undefined,
    writtenFor: { kind: owner.kind, name: owner.name, uid: owner.uid },
  };
}

/** The result of {@link planSecretWrite}. `recreate` is needed when the immutable `type` changes. */
export type SecretWritePlan =
  | { action: "none" }
  | { action: "create"; secret: Secret }
  | { action: "update"; secret: Secret }
  | { action: "recreate"; secret: Secret };

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");

/**
 * Decides the write that brings `existing` to `desired` (SPEC §3.5–3.7), or none when nothing
 * differs, so an unchanged Secret is never written. Labels, annotations and ownerReferences set by
 * others are kept; the operator's own ownerReference is set under `Owner` and removed under
 * `Orphan` and `Merge` (a policy switch takes effect on the existing Secret). `Merge` keeps data
 * keys the operator does not own, `Owner`/`Orphan` own the whole `data`.
 * The update carries `existing`'s resourceVersion (optimistic concurrency). Pure.
 */
export function planSecretWrite(
  existing: Secret | undefined,
  desired: DesiredSecret,
  policy: CreationPolicy,
): SecretWritePlan {
  const data: Record<string, string> = {};
  if (existing && policy === "Merge") Object.assign(data, existing.data ?? {});
  for (const [k, v] of Object.entries(desired.stringData)) data[k] = b64(v);

  if (!existing) {
    return {
      action: "create",
      secret: {
        apiVersion: "v1",
        kind: "Secret",
        metadata: {
          name: desired.name,
          namespace: desired.namespace,
          labels: desired.labels,
          annotations: desired.annotations,
          ...(desired.ownerReference ? { ownerReferences: [desired.ownerReference] } : {}),
        },
        type: desired.type,
        data,
      },
    };
  }

  const labels = { ...(existing.metadata.labels ?? {}), ...desired.labels };
  const annotations = { ...(existing.metadata.annotations ?? {}), ...desired.annotations };
  const others = (existing.metadata.ownerReferences ?? []).filter((r) => !isOurs(r, desired));
  const ownerReferences = desired.ownerReference ? [...others, desired.ownerReference] : others;

  const secret: Secret = {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      ...existing.metadata,
      labels,
      annotations,
      ownerReferences: ownerReferences.length > 0 ? ownerReferences : undefined,
    },
    type: desired.type,
    data,
  };
  if ((existing.type ?? "Opaque") !== desired.type) return { action: "recreate", secret };
  const same =
    sameRecord(existing.data ?? {}, data) &&
    sameRecord(existing.metadata.labels ?? {}, labels) &&
    sameRecord(existing.metadata.annotations ?? {}, annotations) &&
    sameOwners(existing.metadata.ownerReferences ?? [], ownerReferences);
  return same ? { action: "none" } : { action: "update", secret };
}

/**
 * An ownerReference to this NexarToken, or to one of the same kind and name (a stale uid after
 * re-creation), is the operator's: replaced under `Owner`, dropped under `Orphan` and `Merge` (so a
 * switch away from `Owner` stops garbage collection from deleting the Secret with the NexarToken).
 */
function isOurs(r: OwnerReference, d: DesiredSecret): boolean {
  const w = d.writtenFor;
  return r.uid === w.uid || (r.kind === w.kind && r.name === w.name);
}

function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => a[k] === b[k]);
}

function sameOwners(a: readonly OwnerReference[], b: readonly OwnerReference[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((r, i) => {
    const o = b[i];
    return !!o && r.uid === o.uid && r.name === o.name && r.kind === o.kind && !!r.controller === !!o.controller;
  });
}

/**
 * Reads the token the operator stored in a target Secret, if it is complete. Times are epoch
 * milliseconds; `receivedAtMs` is undefined when the `issued-at` annotation is missing or not a
 * time (nothing is assumed about the token's lifetime). Returns undefined for a Secret without a
 * parseable token.
 */
export function storedToken(secret: Secret | undefined): (TokenValues & { fingerprint?: string }) | undefined {
  if (!secret?.data) return undefined;
  const get = (k: string) => {
    const v = secret.data?.[k];
    return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
  };
  const accessToken = get("access_token");
  const expiresAt = get("expires_at");
  if (!accessToken || !expiresAt) return undefined;
  const expiresAtMs = Date.parse(expiresAt);
  if (!Number.isFinite(expiresAtMs)) return undefined;
  const issued = secret.metadata.annotations?.[ISSUED_AT_ANNOTATION];
  const receivedAtMs = issued ? Date.parse(issued) : NaN;
  return {
    accessToken,
    tokenType: get("token_type") ?? "Bearer",
    scopes: (get("scope") ?? "").split(" ").filter(Boolean),
    expiresAtMs,
    receivedAtMs: Number.isFinite(receivedAtMs) ? receivedAtMs : undefined,
    fingerprint: secret.metadata.annotations?.[FINGERPRINT_ANNOTATION],
  };
}

/**
 * How far a JWT's `exp` may lie from the `expires_at` the operator wrote beside it, ms. An expiry
 * counted from `expires_in` starts at the local send time, `exp` at the token server's issue time,
 * so the two differ by the request's latency plus the clock skew between that server and the
 * cluster; 5 min is the skew JWT validators commonly allow (e.g. .NET's `ClockSkew` default).
 */
export const JWT_EXP_TOLERANCE_MS = 5 * 60_000;

/**
 * Why a token read back from a target Secret ({@link storedToken}) cannot be trusted as it stands,
 * or undefined when nothing contradicts it. A Secret can be hand-edited or restored from a backup
 * while no operator runs, its annotations left intact; these cross-checks catch what they can:
 *
 * - its `expires_at` is not `statusExpiresAt` (the NexarToken's `status.expiresAt`, written with
 *   every token the operator publishes; when absent or not a time, this check is skipped);
 * - the token is a JWT whose `exp` (RFC 7519 §4.1.4) is more than {@link JWT_EXP_TOLERANCE_MS}
 *   from its `expires_at`.
 *
 * An opaque (non-JWT) token edited with `expires_at` left as it was passes: nothing in the Secret
 * or status can tell it from the operator's. The message names the check and times, never the
 * token. Pure.
 */
export function storedTokenMismatch(stored: TokenValues, statusExpiresAt: string | undefined): string | undefined {
  const fromStatus = statusExpiresAt === undefined ? NaN : Date.parse(statusExpiresAt);
  if (Number.isFinite(fromStatus) && fromStatus !== stored.expiresAtMs) {
    return `the Secret's expires_at (${rfc3339(stored.expiresAtMs)}) is not status.expiresAt (${rfc3339(fromStatus)})`;
  }
  const exp = jwtExpiry(stored.accessToken);
  if (exp !== undefined && Math.abs(exp * 1000 - stored.expiresAtMs) > JWT_EXP_TOLERANCE_MS) {
    return `the token's JWT exp (${rfc3339(exp * 1000)}) disagrees with the Secret's expires_at (${rfc3339(stored.expiresAtMs)})`;
  }
  return undefined;
}
