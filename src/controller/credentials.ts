/**
 * The credentials Secret as the RefreshToken grant sees it: where a rotated refresh token is
 * stored, and how the operator tells a refresh token it rotated itself from one a new `login`
 * (or a person) wrote. Pure helpers plus {@link persistRefreshToken}, the one write.
 *
 * Sources: RFC 6749 §6 (the server MAY issue a new refresh token and invalidate the old one),
 * RFC 9700 §4.14.2 (refresh-token rotation), SPEC §6 (store the new refresh token BEFORE the new
 * access token is published), Kubernetes API conventions "Concurrency Control and Consistency"
 * (`metadata.resourceVersion` preconditions, 409 Conflict).
 */
import { createHash } from "node:crypto";
import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { secretPath } from "../kube/paths.ts";

/**
 * Annotation on the credentials Secret, written by the operator together with every rotated
 * refresh token: a JSON object keyed by the Secret's data key,
 * `{"refreshToken": {"digest": "<hex>", "lineage": "<hex>"}}`.
 * - `digest`: {@link refreshTokenDigest} of the refresh token the operator stored;
 * - `lineage`: digest of the refresh token the chain of rotations started from (the one `login`
 *   or a person wrote).
 * Digests are one-way (SHA-256, truncated to 128 bits); they identify, they never reveal.
 * `login` removes the annotation when it writes a new refresh token.
 */
export const ANNOTATION_REFRESH_ROTATION = "nexar-operator.io/refresh-token-rotation";
/** Annotation `login` sets on the credentials Secret: when it last stored a refresh token (RFC 3339, UTC). */
export const ANNOTATION_LOGIN_AT = "nexar-operator.io/login-at";

/** Attempts of {@link persistRefreshToken} on 409 Conflict before giving up. */
const MAX_ATTEMPTS = 5;

/** Where a refresh token lives: Secret `namespace/name`, data key `key`. */
export interface RefreshTokenRef {
  namespace: string;
  name: string;
  key: string;
}

/**
 * One-way identifier of a refresh token: hex SHA-256 over a domain prefix and the token,
 * truncated to 32 hex characters (128 bits). Safe to store in an annotation or compare in memory.
 */
export function refreshTokenDigest(refreshToken: string): string {
  return createHash("sha256")
    .update("nexar-token-operator/refresh-token\0")
    .update(refreshToken, "utf8")
    .digest("hex")
    .slice(0, 32);
}

/** `data[key]` of a Secret, base64-decoded and trimmed of surrounding whitespace; undefined when absent or empty. */
export function secretValue(secret: Secret | undefined, key: string): string | undefined {
  const raw = secret?.data?.[key];
  if (raw === undefined) return undefined;
  const v = Buffer.from(raw, "base64").toString("utf8").trim();
  return v === "" ? undefined : v;
}

type RotationMap = Record<string, { digest?: unknown; lineage?: unknown } | undefined>;

function rotationMap(secret: Secret | undefined): RotationMap {
  const raw = secret?.metadata.annotations?.[ANNOTATION_REFRESH_ROTATION];
  if (!raw) return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as RotationMap) : {};
  } catch {
    return {};
  }
}

/**
 * The lineage of the refresh token in `secret.data[key]`: the digest of the token its chain of
 * rotations started from. When the rotation annotation says the operator itself wrote the current
 * token, that is the recorded lineage; otherwise the token came from outside (a new `login`, a
 * person, a restore) and starts a lineage of its own: its own digest. So the lineage changes when
 * a new login writes a refresh token, and stays put while the operator rotates it.
 * @returns undefined when the Secret holds no refresh token under `key`.
 */
export function refreshTokenLineage(secret: Secret | undefined, key: string): string | undefined {
  const token = secretValue(secret, key);
  if (token === undefined) return undefined;
  const digest = refreshTokenDigest(token);
  const entry = rotationMap(secret)[key];
  if (entry && entry.digest === digest && typeof entry.lineage === "string" && /^[0-9a-f]{32}$/.test(entry.lineage)) {
    return entry.lineage;
  }
  return digest;
}

/**
 * The rotation annotation value after the operator replaces `used` (the token it presented,
 * read from `secret`) with `rotated`: the entry of `key` gets the new digest and keeps the
 * lineage of `used`; entries of other keys are kept. Pure.
 */
export function rotationAnnotation(secret: Secret | undefined, key: string, used: string, rotated: string): string {
  const map = rotationMap(secret);
  const entry = map[key];
  const usedDigest = refreshTokenDigest(used);
  const lineage =
    entry && entry.digest === usedDigest && typeof entry.lineage === "string" ? entry.lineage : usedDigest;
  return JSON.stringify({ ...map, [key]: { digest: refreshTokenDigest(rotated), lineage } });
}

/**
 * Stores a rotated refresh token (RFC 6749 §6) in the credentials Secret, BEFORE the new access
 * token is published (SPEC §6), so a refresh token is never lost.
 *
 * The write is one JSON merge patch of `data[key]` and the {@link ANNOTATION_REFRESH_ROTATION}
 * annotation, carrying the `resourceVersion` that was read with the refresh token just used
 * (optimistic concurrency). On 409 Conflict the Secret is re-read:
 * - `data[key]` still holds the token that was used: only something else changed; the patch is
 *   retried with the new resourceVersion;
 * - it holds `rotated` already (an earlier attempt went through): `"stored"`;
 * - it holds another value: someone (e.g. a new `login`) replaced it meanwhile; theirs is newer
 *   and is kept: `"superseded"`.
 *
 * @param used the refresh token presented and the Secret (or just its resourceVersion) it was read from;
 *   without `secret` the Secret is read first, to carry the rotation lineage over.
 * @returns `"stored"` or `"superseded"`.
 * @throws KubeApiError on other API errors (e.g. 404 when the Secret was deleted), or after
 *   {@link MAX_ATTEMPTS} conflicts. The message never contains a token.
 */
export async function persistRefreshToken(
  kube: KubeClient,
  target: RefreshTokenRef,
  used: { refreshToken: string; resourceVersion: string | undefined; secret?: Secret },
  rotated: string,
): Promise<"stored" | "superseded"> {
  const path = secretPath(target.namespace, target.name);
  let read: Secret = used.secret ?? (await kube.request<Secret>("GET", path));
  let rv = used.secret || !used.resourceVersion ? read.metadata.resourceVersion : used.resourceVersion;
  if (!used.secret) {
    const value = secretValue(read, target.key);
    if (value === rotated) return "stored";
    if (value !== used.refreshToken) return "superseded";
  }
  for (let attempt = 1; ; attempt++) {
    try {
      await kube.request("PATCH", path, {
        body: {
          metadata: {
            ...(rv ? { resourceVersion: rv } : {}),
            annotations: {
              [ANNOTATION_REFRESH_ROTATION]: rotationAnnotation(read, target.key, used.refreshToken, rotated),
            },
          },
          data: { [target.key]: Buffer.from(rotated, "utf8").toString("base64") },
        },
        contentType: "application/merge-patch+json",
      });
      return "stored";
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.status !== 409 || attempt >= MAX_ATTEMPTS) throw err;
      read = await kube.request<Secret>("GET", path);
      const value = secretValue(read, target.key);
      if (value === rotated) return "stored";
      if (value !== used.refreshToken) return "superseded";
      rv = read.metadata.resourceVersion;
    }
  }
}
