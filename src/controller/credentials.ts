/**
 * The credentials Secret: what a NexarToken's spec gets from it (one {@link CredentialsValue} per
 * Secret version and spec fields: decoded values, token request, fingerprint, issuance keys, built
 * once), and — for the RefreshToken grant — where a rotated refresh token is stored and how the
 * operator tells a refresh token it rotated itself from one a new `login` (or a person) wrote.
 *
 * Sources: RFC 6749 §6 (the server MAY issue a new refresh token and invalidate the old one),
 * RFC 9700 §4.14.2 (refresh-token rotation), SPEC §3.2 (a change of the credentials fetches a new
 * token), SPEC §6 (store the new refresh token BEFORE the new access token is published),
 * Kubernetes API conventions "Concurrency Control and Consistency" (`metadata.resourceVersion`
 * preconditions, 409 Conflict).
 */
import { createHash, createHmac } from "node:crypto";
import type { Logger } from "pino";
import type { ResolvedSpec } from "../api/types.ts";
import type { Secret } from "../kube/client.ts";
import { objectKey } from "../kube/informer.ts";
import type { SecretsApi } from "../kube/secrets.ts";
import type { TokenRequest } from "../oauth/types.ts";
import { refreshTokenDigest, type RefreshTokenStore, type StoredRefreshToken } from "../issuance/refresh.ts";
import type { Credential, ShareScope, TokenSource } from "../issuance/types.ts";

export { refreshTokenDigest } from "../issuance/refresh.ts";

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
const PERSIST_ATTEMPTS = 5;
/** Credentials Secrets kept in memory at most (least recently used dropped first). */
const CREDENTIALS_CACHE_ENTRIES = 1024;
/** Spec variants (token URL, grant, keys, scopes, fallback lifetime) remembered per credentials Secret version. */
const VALUES_PER_SECRET = 64;

/** Where a refresh token lives: Secret `namespace/name`, data key `key`. */
export interface RefreshTokenRef {
  namespace: string;
  name: string;
  key: string;
}

/** `data[key]` of a Secret, base64-decoded and trimmed of surrounding whitespace; undefined when absent or empty. */
export function secretValue(secret: Secret | undefined, key: string): string | undefined {
  const raw = secret?.data?.[key];
  if (raw === undefined) return undefined;
  const v = Buffer.from(raw, "base64").toString("utf8").trim();
  return v === "" ? undefined : v;
}

/** What a fingerprint covers beyond the token request. */
export interface FingerprintScope {
  /** RefreshToken grant: {@link refreshTokenLineage} of the Secret's refresh token. */
  lineage?: string;
  /** The lifetime assumed for an answer without one, seconds (it sets the token's expiry). */
  fallbackLifetimeSeconds?: number;
}

/**
 * Fingerprint of what a token is issued for: token URL, grant, client authentication, client id
 * and secret, the scope set (order-insensitive), the fallback lifetime, and for the RefreshToken
 * grant the refresh token's lineage (it changes when a new `login` writes a refresh token, not
 * when the operator rotates it). These are exactly the inputs that change the token: a change of
 * any of them fetches a new one (SPEC §3.2); every other spec field only rewrites the Secret.
 *
 * Hex HMAC-SHA256 (RFC 2104) under the operator's fingerprint key (fingerprint-key.ts): it is
 * stored in an annotation on the target Secret, which anyone with Secret-metadata read can see,
 * and without the key it cannot be used to test guesses of the client secret. Only compared,
 * never reversed.
 */
export function fingerprintOf(key: Uint8Array, req: TokenRequest, scope: FingerprintScope = {}): string {
  const h = createHmac("sha256", key);
  h.update("nexar-token-operator/v2\0");
  for (const part of fingerprintParts(req)) {
    h.update(part);
    h.update("\0");
  }
  if (scope.fallbackLifetimeSeconds !== undefined) h.update(`fallbackLifetime\0${scope.fallbackLifetimeSeconds}\0`);
  if (scope.lineage !== undefined) h.update(`lineage\0${scope.lineage}\0`);
  return h.digest("hex");
}

/**
 * The unkeyed SHA-256 fingerprint that target Secrets written before the keyed
 * {@link fingerprintOf} carry. Used only to recognise such a Secret as holding a token for the
 * current inputs, so that it is migrated by rewriting the annotation, without a token request.
 */
export function legacyFingerprintOf(req: TokenRequest, lineage?: string): string {
  const h = createHash("sha256");
  h.update("nexar-token-operator/v1\0");
  for (const part of fingerprintParts(req)) {
    h.update(part);
    h.update("\0");
  }
  if (lineage !== undefined) h.update(`lineage\0${lineage}\0`);
  return h.digest("hex");
}

function fingerprintParts(req: TokenRequest): string[] {
  return [
    req.tokenUrl,
    req.grant,
    req.clientAuthentication,
    req.clientId,
    req.clientSecret,
    [...new Set(req.scopes)].sort().join(" "),
  ];
}

/**
 * Reads client id, secret and (RefreshToken grant) refresh token from the credentials Secret.
 * Values are trimmed of surrounding whitespace (a trailing newline from `echo` or a file is the
 * common mistake; OAuth client ids and secrets never carry one). Errors name keys, never values.
 */
export function readCredentials(
  secret: Secret,
  spec: Pick<ResolvedSpec, "grant" | "credentialsSecretRef">,
): { clientId: string; clientSecret: string; refreshToken?: string } | { error: string } {
  const ref = spec.credentialsSecretRef;
  const missing: string[] = [];
  const clientId = secretValue(secret, ref.clientIdKey);
  const clientSecret = secretValue(secret, ref.clientSecretKey);
  if (!clientId) missing.push(ref.clientIdKey);
  if (!clientSecret) missing.push(ref.clientSecretKey);
  let refreshToken: string | undefined;
  if (spec.grant === "RefreshToken") {
    refreshToken = secretValue(secret, ref.refreshTokenKey);
    if (!refreshToken) missing.push(ref.refreshTokenKey);
  }
  if (missing.length > 0) {
    return { error: `credentials Secret "${ref.name}" lacks non-empty key(s): ${missing.join(", ")}` };
  }
  return { clientId: clientId as string, clientSecret: clientSecret as string, refreshToken };
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
 * annotation, carrying the `resourceVersion` of `used.secret`, the Secret the used token was read
 * from (optimistic concurrency). On 409 Conflict the Secret is re-read:
 * - `data[key]` still holds the token that was used: only something else changed; the patch is
 *   retried with the new resourceVersion;
 * - it holds `rotated` already (an earlier attempt went through): `"stored"`;
 * - it holds another value: someone (e.g. a new `login`) replaced it meanwhile; theirs is newer
 *   and is kept: `"superseded"`.
 *
 * @returns `"stored"` or `"superseded"`.
 * @throws KubeApiError on other API errors (e.g. 404 when the Secret was deleted), or after
 *   {@link PERSIST_ATTEMPTS} conflicts. The message never contains a token.
 */
export async function persistRefreshToken(
  secrets: SecretsApi,
  target: RefreshTokenRef,
  used: { refreshToken: string; secret: Secret },
  rotated: string,
): Promise<"stored" | "superseded"> {
  const out = await secrets.patchGuarded<"stored" | "superseded">(
    target.namespace,
    target.name,
    used.secret,
    (read) => {
      const value = secretValue(read, target.key);
      if (value === rotated) return { done: "stored" };
      if (value !== used.refreshToken) return { done: "superseded" };
      return {
        patch: {
          metadata: {
            annotations: {
              [ANNOTATION_REFRESH_ROTATION]: rotationAnnotation(read, target.key, used.refreshToken, rotated),
            },
          },
          data: { [target.key]: Buffer.from(rotated, "utf8").toString("base64") },
        },
      };
    },
    PERSIST_ATTEMPTS,
  );
  return out === "patched" ? "stored" : out;
}

/** A refresh token as read from the credentials Secret, with the Secret it was read from. */
export interface SecretRefreshToken extends StoredRefreshToken {
  secret: Secret;
}

/**
 * The credentials Secret key `ref` as the issuer's refresh-token guard sees it: a fresh GET per
 * read, {@link persistRefreshToken} per write (logged, without the token).
 */
export function refreshTokenStore(
  secrets: SecretsApi,
  ref: RefreshTokenRef,
  logger?: Pick<Logger, "info">,
): RefreshTokenStore<SecretRefreshToken> {
  const secret = objectKey(ref.namespace, ref.name);
  return {
    secret,
    key: ref.key,
    async read() {
      const s = await secrets.get(ref.namespace, ref.name);
      if (!s) throw new Error(`credentials Secret "${ref.name}" not found in namespace "${ref.namespace}"`);
      return { value: secretValue(s, ref.key), secret: s };
    },
    async persist(used, rotated) {
      const result = await persistRefreshToken(
        secrets,
        ref,
        { refreshToken: used.value as string, secret: used.secret },
        rotated,
      );
      logger?.info({ secret, result }, "rotated refresh token stored");
      return result;
    },
  };
}

/**
 * What one version of a credentials Secret gives one NexarToken spec, built once per Secret
 * version and spec fields (see {@link CredentialsCache}); immutable.
 */
export interface CredentialsValue {
  /** `namespace/name` of the credentials Secret (`credentialsSecretRef`, resolved from the defaulted spec). */
  readonly ref: string;
  /** resourceVersion of the Secret it was built from (named in the `CredentialsChanged` Event). */
  readonly resourceVersion: string | undefined;
  /** The token request with the issuer's keys. */
  readonly credential: Credential;
  /** {@link fingerprintOf} the request, fallback lifetime and lineage: what a held token must match. */
  readonly fingerprint: string;
  /** {@link legacyFingerprintOf} the same inputs: a target Secret written before keyed fingerprints matches it. */
  readonly legacyFingerprint: string;
  /** RefreshToken grant: {@link refreshTokenLineage} of the Secret's refresh token (part of the share key). */
  readonly lineage: string | undefined;
  /** RefreshToken grant: where the refresh token lives. */
  readonly refreshToken: RefreshTokenRef | undefined;
}

/** What a credentials Secret gives a spec: its value, the keys it lacks, or nothing (no such Secret). */
export type CredentialsRead = { found: false } | { found: true; error: string } | (CredentialsValue & { found: true });

/** The spec fields a {@link CredentialsValue} depends on. */
export type CredentialsSpec = Pick<
  ResolvedSpec,
  "tokenUrl" | "grant" | "clientAuthentication" | "credentialsSecretRef" | "scopes" | "fallbackLifetimeSeconds"
>;

/**
 * Credentials Secrets by `namespace/name`, as read at their resourceVersion, each with the
 * {@link CredentialsValue}s built from it per spec variant. Bounded (LRU,
 * {@link CREDENTIALS_CACHE_ENTRIES} Secrets, {@link VALUES_PER_SECRET} spec variants each).
 */
export class CredentialsCache {
  readonly #secrets: SecretsApi;
  readonly #tokens: Pick<TokenSource, "keysFor">;
  readonly #versionOf: ((key: string) => string | undefined) | undefined;
  readonly #fallbackLifetimeSeconds: number | undefined;
  readonly #fingerprintKey: Uint8Array;
  /**
   * Saves one GET per NexarToken sharing a credentials Secret (and per reconcile): a Secret the
   * metadata-only watch still reports at the resourceVersion read is not read again. Also saves
   * decoding, building and hashing the request once per NexarToken (the values per spec variant).
   */
  readonly #bySecret = new Map<string, { secret: Secret; values: Map<string, CredentialsRead> }>();
  /**
   * Saves concurrent duplicate GETs: reconciles of NexarTokens sharing a credentials Secret (a
   * restart, a burst of new NexarTokens) wait for the same read.
   */
  readonly #reads = new Map<string, Promise<Secret | undefined>>();

  /**
   * @param secrets the Secret adapter.
   * @param tokens the issuer: it keys requests with its per-process HMAC key.
   * @param o.fingerprintKey the operator's fingerprint key (fingerprint-key.ts).
   * @param o.versionOf resourceVersion of Secret `namespace/name` as the Secret watch last saw it.
   * @param o.fallbackLifetimeSeconds the operator's `--fallback-lifetime`, for specs without one.
   */
  constructor(
    secrets: SecretsApi,
    tokens: Pick<TokenSource, "keysFor">,
    o: {
      fingerprintKey: Uint8Array;
      versionOf?: (key: string) => string | undefined;
      fallbackLifetimeSeconds?: number;
    },
  ) {
    this.#secrets = secrets;
    this.#tokens = tokens;
    this.#versionOf = o.versionOf;
    this.#fallbackLifetimeSeconds = o.fallbackLifetimeSeconds;
    this.#fingerprintKey = o.fingerprintKey;
  }

  /**
   * What the credentials Secret `spec.credentialsSecretRef.name` in `namespace` gives `spec`:
   * from memory when the watch reports the version read last, else after one GET.
   * @throws KubeApiError when the Secret cannot be read (other than 404).
   */
  async get(namespace: string, spec: CredentialsSpec): Promise<CredentialsRead> {
    const ref = objectKey(namespace, spec.credentialsSecretRef.name);
    const secret = await this.#read(ref, namespace, spec.credentialsSecretRef.name);
    if (!secret) return { found: false };
    const entry = this.#bySecret.get(ref);
    const values = entry?.secret === secret ? entry.values : new Map<string, CredentialsRead>();
    if (entry?.secret !== secret) this.#bySecret.set(ref, { secret, values });
    const fallbackLifetimeSeconds = spec.fallbackLifetimeSeconds ?? this.#fallbackLifetimeSeconds;
    const r = spec.credentialsSecretRef;
    const variant = JSON.stringify([
      spec.tokenUrl,
      spec.grant,
      spec.clientAuthentication,
      r.clientIdKey,
      r.clientSecretKey,
      r.refreshTokenKey,
      spec.scopes,
      fallbackLifetimeSeconds ?? null,
    ]);
    let value = values.get(variant);
    if (!value) {
      value = this.#build(ref, namespace, secret, spec, fallbackLifetimeSeconds);
      if (values.size < VALUES_PER_SECRET) values.set(variant, value);
    }
    return value;
  }

  #build(
    ref: string,
    namespace: string,
    secret: Secret,
    spec: CredentialsSpec,
    fallbackLifetimeSeconds: number | undefined,
  ): CredentialsRead {
    const read = readCredentials(secret, spec);
    if ("error" in read) return { found: true, error: read.error };
    const request: TokenRequest = Object.freeze({
      tokenUrl: spec.tokenUrl,
      grant: spec.grant,
      clientAuthentication: spec.clientAuthentication,
      clientId: read.clientId,
      clientSecret: read.clientSecret,
      refreshToken: read.refreshToken,
      scopes: Object.freeze([...spec.scopes]) as string[],
    });
    const rt = spec.grant === "RefreshToken";
    const key = spec.credentialsSecretRef.refreshTokenKey;
    const lineage = rt ? refreshTokenLineage(secret, key) : undefined;
    const scope: ShareScope = {
      fallbackLifetimeSeconds,
      ...(rt ? { credentialsRef: ref, credentialsVersion: lineage } : {}),
    };
    return Object.freeze({
      found: true as const,
      ref,
      resourceVersion: secret.metadata.resourceVersion,
      credential: Object.freeze({ request, fallbackLifetimeSeconds, keys: this.#tokens.keysFor(request, scope) }),
      fingerprint: fingerprintOf(this.#fingerprintKey, request, { lineage, fallbackLifetimeSeconds }),
      legacyFingerprint: legacyFingerprintOf(request, lineage),
      lineage,
      refreshToken: rt ? { namespace, name: spec.credentialsSecretRef.name, key } : undefined,
    });
  }

  async #read(ref: string, namespace: string, name: string): Promise<Secret | undefined> {
    const seen = this.#versionOf?.(ref);
    const cached = this.#bySecret.get(ref);
    if (cached && seen !== undefined && cached.secret.metadata.resourceVersion === seen) {
      this.#bySecret.delete(ref); // LRU order
      this.#bySecret.set(ref, cached);
      return cached.secret;
    }
    const inFlight = this.#reads.get(ref);
    if (inFlight) return await inFlight;
    const read = this.#secrets.get(namespace, name).then((fresh) => {
      if (fresh) {
        if (cached?.secret.metadata.resourceVersion !== fresh.metadata.resourceVersion || !cached) {
          this.#bySecret.delete(ref);
          this.#bySecret.set(ref, { secret: fresh, values: new Map() });
        }
        if (this.#bySecret.size > CREDENTIALS_CACHE_ENTRIES)
          this.#bySecret.delete(this.#bySecret.keys().next().value as string);
      } else this.#bySecret.delete(ref);
      return fresh ? (this.#bySecret.get(ref)?.secret ?? fresh) : undefined;
    });
    this.#reads.set(ref, read);
    try {
      return await read;
    } finally {
      this.#reads.delete(ref);
    }
  }
}
