import { createHash, hash } from "node:crypto";
import type { Logger } from "pino";
import type { NexarToken, ResolvedSpec } from "../api/types.ts";
import { validateNexarToken } from "../api/validate.ts";
import { API_VERSION, KIND, ANNOTATION_REFRESH_REQUESTED_AT } from "../api/constants.ts";
import { isStatus, type KubeClient, type Secret } from "../kube/client.ts";
import { secretPath, nexarTokenStatusPath } from "../kube/paths.ts";
import { keyOf, objectKey } from "../kube/informer.ts";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import {
  BACKOFF,
  computeRenewal,
  evaluateIssuance,
  parseRetryAfter,
  retryDelayMs,
  type FailureKind,
} from "../renewal/index.ts";
import { desiredSecret, planSecretWrite, rfc3339, storedToken, type TokenValues } from "../secrets/desired.ts";
import { checkOwnership } from "../secrets/ownership.ts";
import { setCondition, statusEqual, statusPatch, type Condition, type TokenStatus } from "./status.ts";
import type { EventRecorder } from "../kube/events.ts";
import { refreshTokenLineage } from "./credentials.ts";
import { REASON_REFRESH_TOKEN_INVALID, RefreshTokenRotation, refreshTokenInvalidMessage } from "./rotation.ts";
import type { Metrics } from "../observability/metrics.ts";
import type { IssuanceHints } from "../issuance/types.ts";

/** What a reconcile asks of the work queue (controller-runtime's `reconcile.Result`). */
export interface Result {
  /** Reconcile this key again after this many milliseconds (a timer, not an error). */
  requeueAfterMs?: number;
}

/** Per-fetch context handed to a {@link TokenSource}. */
export interface FetchContext extends IssuanceHints {
  /** Lifetime to assume when the response has neither `expires_in` nor a JWT `exp`, seconds. */
  fallbackLifetimeSeconds?: number;
  /**
   * Persists a rotated refresh token (RefreshToken grant). A source MUST await it before it
   * returns the new access token, and fail the fetch if it throws (SPEC §6).
   */
  persistRefreshToken?: (rotated: string) => Promise<void>;
}

/** Fetches tokens: the OAuth client behind the issuer (sharing, limits, rotation). */
export interface TokenSource {
  fetchToken(req: TokenRequest, ctx: FetchContext): Promise<IssuedToken>;
}

/** Static settings of the reconciler. */
export interface ReconcilerConfig {
  /** Allow `http://` token URLs (development on loopback only; SPEC §3.9). */
  allowInsecureTokenUrl: boolean;
  /** Lifetime assumed when a response has neither `expires_in` nor a JWT `exp`, seconds. */
  fallbackLifetimeSeconds?: number;
  /** Re-check interval for conditions that no event announces (e.g. a missing credentials Secret), ms. */
  recheckMs: number;
  /**
   * Factor applied to every failure backoff (bases and caps of {@link BACKOFF}; a server's own
   * `Retry-After` is honoured as sent, only its cap is scaled). Default: {@link backoffScaleFromEnv}
   * of `process.env`, which is 1 (the production figures) unless the TEST-ONLY variable
   * {@link BACKOFF_SCALE_ENV} is set.
   */
  backoffScale?: number;
}

/**
 * TEST-ONLY environment variable: a number in (0, 1] that scales every failure backoff, so the
 * integration suite can observe minutes of backoff in seconds (e.g. `0.01`: credential 5 min → 3 s,
 * cap 1 h → 36 s; transient 2 s → 20 ms, cap 5 min → 3 s). Never set it in production.
 */
export const BACKOFF_SCALE_ENV = "NEXAR_OPERATOR_BACKOFF_SCALE";

/**
 * The backoff scale from `env[BACKOFF_SCALE_ENV]`: a finite number in (0, 1], else 1 (unset,
 * empty or invalid values mean the production figures). Never throws.
 */
export function backoffScaleFromEnv(env: Readonly<Record<string, string | undefined>>): number {
  const raw = env[BACKOFF_SCALE_ENV];
  if (raw === undefined || raw.trim() === "") return 1;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 && n <= 1 ? n : 1;
}

/** Credentials Secrets kept in memory at most (least recently used dropped first). */
const CREDENTIALS_CACHE_ENTRIES = 1024;
/** Spec variants remembered per credentials Secret object (see {@link DerivedCredentialsCache}). */
const DERIVED_PER_SECRET = 64;

/** A token request built from one credentials Secret version, or why none can be. */
export type DerivedCredentials =
  { request: Readonly<TokenRequest>; lineage: string | undefined; fingerprint: string } | { error: string };

/**
 * The token request, refresh-token lineage and {@link fingerprintOf} that a credentials Secret
 * gives for a spec — or the {@link readCredentials} error naming the missing keys — computed once
 * per Secret object and spec fields, so a burst of NexarTokens sharing a Secret decodes it,
 * builds the request and hashes it once. Keyed on the Secret object (a `WeakMap`: the reconciler's
 * credentials cache replaces the object when the Secret changes, and the entry goes with it).
 * Requests are frozen, so the issuer's keyed hashes of them can be remembered per object too
 * (`KeyHasher`). Pure apart from the memo; never throws.
 */
export class DerivedCredentialsCache {
  readonly #bySecret = new WeakMap<Secret, Map<string, DerivedCredentials>>();

  get(
    creds: Secret,
    spec: Pick<ResolvedSpec, "tokenUrl" | "grant" | "clientAuthentication" | "credentialsSecretRef" | "scopes">,
  ): DerivedCredentials {
    const ref = spec.credentialsSecretRef;
    const fields = JSON.stringify([
      spec.tokenUrl,
      spec.grant,
      spec.clientAuthentication,
      ref.clientIdKey,
      ref.clientSecretKey,
      ref.refreshTokenKey,
      spec.scopes,
    ]);
    let perSpec = this.#bySecret.get(creds);
    if (!perSpec) {
      perSpec = new Map();
      this.#bySecret.set(creds, perSpec);
    }
    const known = perSpec.get(fields);
    if (known) return known;
    const read = readCredentials(creds, spec);
    let out: DerivedCredentials;
    if ("error" in read) out = read;
    else {
      const request: TokenRequest = Object.freeze({
        tokenUrl: spec.tokenUrl,
        grant: spec.grant,
        clientAuthentication: spec.clientAuthentication,
        clientId: read.clientId,
        clientSecret: read.clientSecret,
        refreshToken: read.refreshToken,
        scopes: Object.freeze([...spec.scopes]) as string[],
      });
      const lineage = spec.grant === "RefreshToken" ? refreshTokenLineage(creds, ref.refreshTokenKey) : undefined;
      out = { request, lineage, fingerprint: fingerprintOf(request, lineage) };
    }
    if (perSpec.size < DERIVED_PER_SECRET) perSpec.set(fields, out);
    return out;
  }
}

/** Attempts of one Secret write when the API server answers 409 Conflict (SPEC §3.7). */
export const SECRET_WRITE_ATTEMPTS = 3;

/** Dependencies of the reconciler: adapters and clock, all injectable. */
export interface ReconcilerDeps {
  kube: KubeClient;
  /** NexarToken from the informer cache by `namespace/name`. */
  getNexarToken(key: string): NexarToken | undefined;
  tokens: TokenSource;
  /**
   * resourceVersion of Secret `namespace/name` as the metadata-only Secret watch last saw it;
   * undefined when the watch has not seen it. Lets the reconciler skip reading Secrets it already
   * knows at that version (credentials shared by many NexarTokens, its own target Secrets).
   */
  secretVersion?: (key: string) => string | undefined;
  events: EventRecorder;
  metrics: Metrics;
  logger: Logger;
  config: ReconcilerConfig;
  now?: () => number;
  random?: () => number;
}

/** A token held for a NexarToken, with what it was fetched for and when to renew it. Times epoch ms. */
interface HeldToken extends TokenValues {
  fingerprint: string;
  renewAtMs: number;
}

/** Memory of the last failure, to tell "retry at once because something changed" from "back off". */
interface FailureMemo {
  fingerprint: string;
  generation: number;
  nextAttemptAtMs: number;
  /** Consecutive failed fetches (kept here too, as the informer's copy of status may lag). */
  attempts: number;
  /**
   * The refresh annotation value already attempted: a refresh request bypasses the backoff once;
   * it stays pending (retried, with backoff) until a fetch succeeds.
   */
  refreshAttempted?: string;
  /**
   * The status written for the failure (in-memory memos only): re-applied while backing off, so a
   * reconcile that runs before the informer has seen that write does not undo it.
   */
  written?: Pick<TokenStatus, "failedAttempts" | "lastFailureTime" | "lastFailureReason"> & { ready: Condition };
}

/** Condition reasons of a failed fetch, per error class (SPEC §3.4). */
const KIND_OF_REASON: Record<string, FailureKind> = {
  InvalidClient: "credential",
  UnauthorizedClient: "credential",
  InvalidScope: "credential",
  InvalidGrant: "credential",
  [REASON_REFRESH_TOKEN_INVALID]: "credential",
  AccessDenied: "credential",
  RateLimited: "rateLimited",
};

/**
 * Fingerprint of what a token is issued for: token URL, grant, client authentication, client id
 * and secret, and the scope set (order-insensitive); for the RefreshToken grant also the refresh
 * token's `lineage` (`refreshTokenLineage`: it changes when a new `login` writes a refresh token,
 * not when the operator rotates it). Hex SHA-256 with a domain prefix; it is never reversed, only
 * compared (SPEC §3.2: a change of any of these fetches a new token).
 */
export function fingerprintOf(req: TokenRequest, lineage?: string): string {
  const h = createHash("sha256");
  h.update("nexar-token-operator/v1\0");
  for (const part of [
    req.tokenUrl,
    req.grant,
    req.clientAuthentication,
    req.clientId,
    req.clientSecret,
    [...new Set(req.scopes)].sort().join(" "),
  ]) {
    h.update(part);
    h.update("\0");
  }
  if (lineage !== undefined) h.update(`lineage\0${lineage}\0`);
  return h.digest("hex");
}

/**
 * The reconcile loop body for one NexarToken (level-based: it reads the world, compares it with
 * the spec and acts; it is safe to call any number of times). One call:
 *
 * 1. resolves the spec (defaults; checks the CRD cannot express) — invalid → `Ready=False, InvalidSpec`;
 * 2. reads the credentials Secret (same namespace) — missing → `CredentialsNotFound`;
 * 3. reads the target Secret and checks ownership — foreign → `SecretConflict`, nothing written;
 * 4. asks the trigger policies whether to fetch, honouring the failure backoff;
 * 5. fetches (or keeps the held token), writes the Secret only if it differs, writes status only
 *    if it differs, and asks to be requeued at the renewal time.
 *
 * A failure never removes a valid token from the Secret (SPEC §3.4). A 409 Conflict on a Secret
 * write is re-read and retried ({@link SECRET_WRITE_ATTEMPTS} attempts in all, no delay loop).
 * @throws on other API errors (and on a 409 that persists), which the caller turns into
 *   rate-limited requeues: nothing is dropped from the queue.
 */
export class Reconciler {
  private readonly d: ReconcilerDeps;
  private readonly held = new Map<string, HeldToken>();
  private readonly failures = new Map<string, FailureMemo>();
  /** The status this process last wrote per key, with the resourceVersion the API server answered. */
  private readonly written = new Map<string, { uid: string; resourceVersion: string; status: TokenStatus }>();
  /** Credentials Secrets by `namespace/name`, as read at their resourceVersion (bounded, LRU). */
  private readonly credentials = new Map<string, Secret>();
  /** Token requests derived from credentials Secrets, once per Secret object and spec. */
  private readonly derived = new DerivedCredentialsCache();
  /** Credentials Secret GETs in flight, by `namespace/name` (see {@link readCredentialsSecret}). */
  private readonly credentialReads = new Map<string, Promise<Secret | undefined>>();
  /**
   * Per NexarToken: its target Secret's resourceVersion after our last write or read, the digest
   * of the desired Secret it was checked against, and the generation — while the watch reports the
   * same resourceVersion and the desired Secret has the same digest, no GET and no write is needed.
   */
  private readonly verified = new Map<string, { rv: string; digest: string; generation: number }>();
  /** Target Secrets listed at start-up (see {@link prime}), by `namespace/name`, consumed on first use. */
  private readonly primed = new Map<string, Secret>();
  private readonly now: () => number;
  private readonly random: () => number;
  /** Refresh-token rotation, serialised per credentials Secret (SPEC §6). */
  private readonly rotation: RefreshTokenRotation;
  private readonly backoffScale: number;

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    this.rotation = new RefreshTokenRotation(deps.kube, deps.logger);
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    const scale = deps.config.backoffScale ?? backoffScaleFromEnv(process.env);
    this.backoffScale = Number.isFinite(scale) && scale > 0 ? scale : 1;
    if (this.backoffScale !== 1) {
      deps.logger.warn(
        { backoffScale: this.backoffScale },
        `failure backoff scaled by ${BACKOFF_SCALE_ENV} (test-only setting)`,
      );
    }
  }

  /**
   * True when `resourceVersion` is the one this process last wrote or read for the target Secret
   * of NexarToken `key` (a `namespace/name` key): a watch event carrying it reports nothing new,
   * e.g. the echo of our own create, so it needs no reconcile. Pure lookup.
   */
  knowsTargetVersion(key: string, resourceVersion: string): boolean {
    return this.verified.get(key)?.rv === resourceVersion;
  }

  /** Forgets in-memory state of a deleted NexarToken. */
  forget(key: string): void {
    this.held.delete(key);
    this.failures.delete(key);
    this.written.delete(key);
    this.verified.delete(key);
  }

  /**
   * Offers a target Secret listed at start-up (one paginated LIST of managed Secrets instead of
   * one GET per NexarToken); used by the first reconcile of its owner if the watch still reports
   * the same resourceVersion, then dropped.
   */
  prime(secret: Secret): void {
    const { namespace, name } = secret.metadata;
    if (namespace && name) this.primed.set(objectKey(namespace, name), secret);
  }

  /** Drops primed Secrets nobody used (call once the first pass of reconciles is done). */
  clearPrimed(): void {
    this.primed.clear();
  }

  /** The credentials Secret: from memory when the watch reports the version read last, else one GET. */
  private async readCredentialsSecret(ns: string, name: string): Promise<Secret | undefined> {
    const key = objectKey(ns, name);
    const seen = this.d.secretVersion?.(key);
    const cached = this.credentials.get(key);
    if (cached && seen !== undefined && cached.metadata.resourceVersion === seen) {
      this.credentials.delete(key); // LRU order
      this.credentials.set(key, cached);
      return cached;
    }
    // One GET per Secret at a time: concurrent reconciles of NexarTokens sharing a credentials
    // Secret (a restart, a burst of new NexarTokens) wait for the same read.
    const inFlight = this.credentialReads.get(key);
    if (inFlight) return await inFlight;
    const read = this.d.kube.getOrUndefined<Secret>(secretPath(ns, name)).then((fresh) => {
      if (fresh) {
        this.credentials.set(key, fresh);
        if (this.credentials.size > CREDENTIALS_CACHE_ENTRIES)
          this.credentials.delete(this.credentials.keys().next().value as string);
      } else this.credentials.delete(key);
      return fresh;
    });
    this.credentialReads.set(key, read);
    try {
      return await read;
    } finally {
      this.credentialReads.delete(key);
    }
  }

  /**
   * The NexarToken's status as this process knows it: the informer's copy, unless the status this
   * process wrote last is newer (its resourceVersion is higher). Right after a write the informer
   * may not have delivered it yet, and a reconcile woken meanwhile (e.g. by the operator's own
   * Secret write) must not act on the old `observedGeneration` or `lastRefreshRequest` — that
   * would fetch a second token. resourceVersions are compared as integers (etcd revisions); when
   * either is not an integer the informer's copy is used.
   */
  private currentStatus(key: string, nt: NexarToken): TokenStatus {
    const w = this.written.get(key);
    if (w) {
      if (writtenIsNewer(w, nt.metadata)) return w.status;
      this.written.delete(key); // the informer has caught up (see observed)
    }
    return nt.status ?? {};
  }

  /**
   * The informer delivered `nt` (add or update): the status this process wrote for it is dropped
   * once the informer's copy has caught up with it (or belongs to another uid), since from then on
   * {@link currentStatus} reads the informer's copy — keeping both would hold every NexarToken's
   * status twice (~0.8 KB each).
   */
  observed(key: string, nt: NexarToken): void {
    const w = this.written.get(key);
    if (w && !writtenIsNewer(w, nt.metadata)) this.written.delete(key);
  }

  /** Reconciles `namespace/name`. */
  async reconcile(key: string): Promise<Result> {
    const nt = this.d.getNexarToken(key);
    if (!nt || nt.metadata.deletionTimestamp) {
      this.forget(key);
      return {};
    }
    const ns = nt.metadata.namespace as string;
    const name = nt.metadata.name as string;
    const log = this.d.logger.child({ nexartoken: key });
    const generation = nt.metadata.generation ?? 0;
    const status: TokenStatus = this.currentStatus(key, nt);

    // 1. what the CRD schema cannot express (https unless the dev flag is set, Secret-type keys, …).
    const valid = validateNexarToken(nt, { allowInsecureTokenUrl: this.d.config.allowInsecureTokenUrl });
    if (!valid.ok) {
      await this.writeStatus(nt, status, this.failed(status, generation, "InvalidSpec", valid.errors.join("; ")));
      return {};
    }
    const spec: ResolvedSpec = valid.spec;

    // 2. credentials, from the NexarToken's own namespace only (SPEC §3.8).
    const creds = await this.readCredentialsSecret(ns, spec.credentialsSecretRef.name);
    if (!creds) {
      await this.writeStatus(
        nt,
        status,
        this.failed(
          status,
          generation,
          "CredentialsNotFound",
          `credentials Secret "${spec.credentialsSecretRef.name}" not found in namespace "${ns}"`,
        ),
      );
      return { requeueAfterMs: this.d.config.recheckMs };
    }
    const read = this.derived.get(creds, spec);
    if ("error" in read) {
      await this.writeStatus(nt, status, this.failed(status, generation, "CredentialsInvalid", read.error));
      return { requeueAfterMs: this.d.config.recheckMs };
    }
    const { request, lineage, fingerprint } = read;

    // 3. target Secret and ownership (SPEC §3.6).
    const targetPath = secretPath(ns, spec.target.name);
    const targetKey = objectKey(ns, spec.target.name);
    const seenRv = this.d.secretVersion?.(targetKey);
    const known = this.verified.get(key);
    // Unchanged since we last wrote or read it (same resourceVersion, same spec): no GET.
    const unchanged =
      known !== undefined &&
      seenRv !== undefined &&
      known.rv === seenRv &&
      known.generation === generation &&
      this.held.has(key);
    const primed = this.primed.get(targetKey);
    if (primed) this.primed.delete(targetKey);
    const existing = unchanged
      ? undefined
      : primed && seenRv !== undefined && primed.metadata.resourceVersion === seenRv
        ? primed
        : this.d.secretVersion && seenRv === undefined
          ? undefined // the watch has never seen it: create (a 409 is re-read by writeSecret)
          : await this.d.kube.getOrUndefined<Secret>(targetPath);
    const uid = nt.metadata.uid as string;
    const ownerExists = (k: string) => this.d.getNexarToken(k) !== undefined;
    const own = checkOwnership(existing, key, spec.target.adopt, ownerExists, uid);
    if (!own.ok) return this.secretConflict(nt, status, status, generation, own.message);

    // 4. the held token: memory first, else what the Secret holds (restart, leader change).
    const nowMs = this.now();
    let held = this.held.get(key);
    if (!held) {
      const fromSecret = existing && !own.adopting ? storedToken(existing) : undefined;
      if (fromSecret?.fingerprint) {
        const renewAtMs =
          status.expiresAt && Date.parse(status.expiresAt) === fromSecret.expiresAtMs && status.renewalTime
            ? Date.parse(status.renewalTime)
            : this.renewal(fromSecret, spec);
        held = { ...fromSecret, fingerprint: fromSecret.fingerprint, renewAtMs };
        this.held.set(key, held);
      }
    }
    const refreshRequestedAt = nt.metadata.annotations?.[ANNOTATION_REFRESH_REQUESTED_AT];
    const decision = evaluateIssuance({
      nowMs,
      generation,
      observedGeneration: status.observedGeneration,
      currentToken: held,
      desiredFingerprint: fingerprint,
      refreshRequestedAt,
      lastRefreshRequest: status.lastRefreshRequest,
    });

    let next: TokenStatus = { ...status, observedGeneration: generation, secretName: spec.target.name };
    let requeueAtMs: number | undefined;
    /**
     * Status writes reporting a limiter wait (chained), and the status the last one wrote: the
     * final write of this reconcile waits for them and is computed against that status, so a late
     * "IssuanceLimited" can never overwrite the outcome.
     */
    let limiterReport: { written: Promise<TokenStatus> } | undefined;
    /** Fields of the "token issued" line when this reconcile fetched a token (logged once, with the Secret write). */
    let issued: Record<string, unknown> | undefined;
    const logIssued = (extra: Record<string, unknown> = {}): void => {
      if (issued) log.info({ ...issued, ...extra }, "token issued");
      issued = undefined;
    };
    const statusBase = async (): Promise<TokenStatus> => (limiterReport ? limiterReport.written : status);
    if (!decision.issue) {
      // Nothing to fetch: an earlier failure no longer applies (e.g. credentials were put back).
      this.failures.delete(key);
      next = { ...next, failedAttempts: 0, lastFailureReason: undefined, lastFailureTime: undefined };
    } else {
      const memo = this.failures.get(key) ?? this.memoFromStatus(nt, status, fingerprint, generation, held, nowMs);
      const changed = memo && (memo.fingerprint !== fingerprint || memo.generation !== generation);
      const requested = refreshRequestedAt !== undefined && refreshRequestedAt !== status.lastRefreshRequest;
      const newRequest = requested && memo?.refreshAttempted !== refreshRequestedAt;
      if (memo && !changed && !newRequest && nowMs < memo.nextAttemptAtMs) {
        requeueAtMs = memo.nextAttemptAtMs; // backing off
        if (memo.written) {
          const { ready, ...fields } = memo.written;
          next = { ...next, ...fields, conditions: setCondition(next.conditions, ready, ready.lastTransitionTime) };
        }
      } else {
        log.debug({ reason: decision.reason }, decision.message);
        // A change of the credentials' data (not of the spec) is worth an Event: it explains a new token.
        const credentialsChanged =
          decision.reason === "CredentialsChanged" ||
          (memo !== undefined && memo.fingerprint !== fingerprint && memo.generation === generation);
        if (credentialsChanged) {
          this.d.events.normal(
            nt,
            "CredentialsChanged",
            `Credentials Secret "${spec.credentialsSecretRef.name}" changed (resourceVersion ${creds.metadata.resourceVersion ?? "?"}); fetching a new token`,
          );
        }
        const started = this.now();
        try {
          const ctx: FetchContext = {
            fallbackLifetimeSeconds: spec.fallbackLifetimeSeconds ?? this.d.config.fallbackLifetimeSeconds,
            // Sharing (src/issuance/sharing.ts): why we fetch, and what "due" means for this NexarToken.
            // A change since the last failure forces a new request: a credential error held by the
            // issuer for other NexarTokens of the key must not answer a retry the change asked for.
            reason: changed ? (memo.generation !== generation ? "SpecChanged" : "CredentialsChanged") : decision.reason,
            renewBefore: spec.renewBefore,
            credentialsRef: objectKey(ns, spec.credentialsSecretRef.name),
            credentialsVersion: lineage, // a new login never gets a token of the previous one
            // Waiting for the per-client issuance limiter (SPEC §3.3): say so in status while it
            // lasts — unless a failure streak is being reported, which says more.
            onWaiting: (w) => {
              log.info({ until: rfc3339(w.untilMs) }, "token request queued by the issuance limiter");
              if ((next.failedAttempts ?? 0) > 0) return;
              const valid = held !== undefined && held.expiresAtMs > this.now() && held.fingerprint === fingerprint;
              const waiting: TokenStatus = {
                ...next,
                conditions: setCondition(
                  next.conditions,
                  {
                    type: "Ready",
                    status: valid ? "True" : "False",
                    reason: "IssuanceLimited",
                    message: `token request queued by the per-client issuance limit until ${rfc3339(w.untilMs)}`,
                    observedGeneration: generation,
                  },
                  rfc3339(this.now()),
                ),
              };
              const previous = limiterReport?.written ?? Promise.resolve(status);
              limiterReport = {
                written: previous.then((base) =>
                  this.writeStatus(nt, base, waiting).then(
                    () => waiting,
                    (err: unknown) => {
                      log.debug({ err: (err as Error).message }, "could not report the limiter wait");
                      return base;
                    },
                  ),
                ),
              };
            },
          };
          // RefreshToken grant: serialised per credentials Secret, with the refresh token the Secret
          // holds now; a rotated one is stored before the access token is returned (SPEC §6).
          const token =
            spec.grant === "RefreshToken"
              ? await this.rotation.fetch(
                  {
                    namespace: ns,
                    name: spec.credentialsSecretRef.name,
                    key: spec.credentialsSecretRef.refreshTokenKey,
                  },
                  request,
                  (req, persistRefreshToken) => this.d.tokens.fetchToken(req, { ...ctx, persistRefreshToken }),
                )
              : await this.d.tokens.fetchToken(request, ctx);
          this.failures.delete(key);
          held = { ...toValues(token), fingerprint, renewAtMs: this.renewal(toValues(token), spec) };
          this.held.set(key, held);
          this.d.metrics.refresh(ns, "success", decision.reason);
          this.d.events.normal(
            nt,
            "TokenIssued",
            // Millisecond precision: two issuances within one second are two facts, not a repeat to de-duplicate.
            `Issued a token for scopes "${held.scopes.join(" ")}", expiring ${new Date(held.expiresAtMs).toISOString()}`,
          );
          next = {
            ...next,
            lastRefreshTime: rfc3339(this.now()),
            failedAttempts: 0,
            lastFailureReason: undefined,
            lastFailureTime: undefined,
            lastRefreshRequest: requested ? refreshRequestedAt : status.lastRefreshRequest,
          };
          // Logged with the Secret write below, as one line per issuance.
          issued = {
            reason: decision.reason,
            expiresAt: rfc3339(held.expiresAtMs),
            renewalTime: rfc3339(held.renewAtMs),
            ms: this.now() - started,
          };
        } catch (err) {
          if (!(err instanceof TokenEndpointError)) throw err;
          // A refresh token the server will not take needs a new login (SPEC §6).
          const invalidRefresh = spec.grant === "RefreshToken" && err.reason === "InvalidGrant";
          const reason: string = invalidRefresh ? REASON_REFRESH_TOKEN_INVALID : err.reason;
          const message = invalidRefresh
            ? refreshTokenInvalidMessage(ns, spec.credentialsSecretRef.name, err.message)
            : err.message;
          // Same fingerprint and generation: the failures are consecutive; otherwise count from 1.
          const previous = memo && !changed ? Math.max(memo.attempts, status.failedAttempts ?? 0) : 0;
          const attempts = previous + 1;
          const kind = err.kind;
          const failedAtMs = this.now();
          const retryAfterMs = parseRetryAfter(err.retryAfterHeader, failedAtMs);
          const delay = this.retryDelay(kind, attempts, retryAfterMs, held, fingerprint, failedAtMs, this.random);
          this.failures.set(key, {
            fingerprint,
            generation,
            nextAttemptAtMs: failedAtMs + delay,
            attempts,
            refreshAttempted: refreshRequestedAt,
          });
          requeueAtMs = failedAtMs + delay;
          const memoNow = this.failures.get(key) as FailureMemo;
          this.d.metrics.refresh(ns, "failure", reason);
          log.warn(
            {
              reason,
              kind,
              attempts,
              retryInMs: delay,
              nextAttemptAt: new Date(failedAtMs + delay).toISOString(),
              ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
            },
            `token request failed: ${message}`,
          );
          this.d.events.warn(nt, "TokenRequestFailed", `${reason}: ${message}`);
          next = {
            ...next,
            failedAttempts: attempts,
            lastFailureTime: rfc3339(failedAtMs),
            lastFailureReason: reason,
          };
          const valid = held && held.expiresAtMs > nowMs && held.fingerprint === fingerprint;
          if (kind === "credential" || !valid) {
            next.conditions = setCondition(
              next.conditions,
              {
                type: "Ready",
                status: "False",
                reason,
                message,
                observedGeneration: generation,
              },
              rfc3339(nowMs),
            );
          } else {
            next.conditions = setCondition(
              next.conditions,
              {
                type: "Ready",
                status: "True",
                reason: "RenewalFailing",
                message: `token valid until ${rfc3339(held!.expiresAtMs)}; renewal failed (${reason}), retrying`,
                observedGeneration: generation,
              },
              rfc3339(nowMs),
            );
          }
          const readyNow = next.conditions?.find((c) => c.type === "Ready");
          if (readyNow) {
            memoNow.written = {
              failedAttempts: next.failedAttempts,
              lastFailureTime: next.lastFailureTime,
              lastFailureReason: next.lastFailureReason,
              ready: readyNow,
            };
          }
        }
      }
    }

    // 5. publish the held token (drift repair uses it: no fetch) and status.
    const nowAfter = this.now();
    if (held && held.expiresAtMs > nowAfter) {
      const desired = desiredSecret(
        { apiVersion: API_VERSION, kind: KIND, namespace: ns, name, uid: nt.metadata.uid as string },
        spec.target,
        held,
        held.fingerprint,
      );
      const digest = secretDigest(desired);
      if (!(unchanged && known?.digest === digest)) {
        let current = existing;
        if (unchanged) {
          current = await this.d.kube.getOrUndefined<Secret>(targetPath);
          // The watch may lag: a Secret replaced since our last write (deleted and re-created by
          // someone else) must pass the ownership rules again before we write (SPEC §3.6).
          if (current && current.metadata.resourceVersion !== known?.rv) {
            const again = checkOwnership(current, key, spec.target.adopt, ownerExists, uid);
            if (!again.ok) {
              this.verified.delete(key);
              logIssued();
              return this.secretConflict(nt, await statusBase(), status, generation, again.message);
            }
          }
        }
        const { action, rv } = await this.writeSecret(
          targetPath,
          current,
          desired,
          spec.target,
          key,
          uid,
          ownerExists,
          log,
        ).catch((err: unknown) => {
          logIssued();
          throw err;
        });
        if (issued) logIssued({ secret: spec.target.name, action });
        else if (action !== "none") log.info({ secret: spec.target.name, action }, "target Secret written");
        if (rv !== undefined) this.verified.set(key, { rv, digest, generation });
        else this.verified.delete(key);
      }
      next.expiresAt = rfc3339(held.expiresAtMs);
      next.renewalTime = rfc3339(held.renewAtMs);
      next.grantedScopes = [...held.scopes];
      const failing = next.failedAttempts && next.failedAttempts > 0 && requeueAtMs !== undefined;
      if (!failing) {
        next.conditions = setCondition(
          next.conditions,
          {
            type: "Ready",
            status: "True",
            reason: "TokenIssued",
            message: `Secret "${spec.target.name}" holds a token valid until ${rfc3339(held.expiresAtMs)}; renewal at ${rfc3339(held.renewAtMs)}`,
            observedGeneration: generation,
          },
          rfc3339(nowAfter),
        );
        requeueAtMs = Math.min(requeueAtMs ?? Infinity, held.renewAtMs);
      }
      requeueAtMs = Math.min(requeueAtMs ?? Infinity, held.expiresAtMs);
    } else if (held) {
      // Expired and not renewed (SPEC §3.4): say so; the Secret keeps what it has.
      const wasExpired = status.conditions?.some((c) => c.type === "Ready" && c.reason === "Expired");
      if (!wasExpired)
        this.d.events.warn(
          nt,
          "Expired",
          `The token in Secret "${spec.target.name}" expired at ${rfc3339(held.expiresAtMs)}`,
        );
      next.conditions = setCondition(
        next.conditions,
        {
          type: "Ready",
          status: "False",
          reason: "Expired",
          message: `token expired at ${rfc3339(held.expiresAtMs)}${next.lastFailureReason ? `; last failure: ${next.lastFailureReason}` : ""}`,
          observedGeneration: generation,
        },
        rfc3339(nowAfter),
      );
    }
    logIssued(); // issued without a Secret write (none was needed, or the token had already expired)
    await this.writeStatus(nt, await statusBase(), next);
    return requeueAtMs === undefined || !Number.isFinite(requeueAtMs)
      ? {}
      : { requeueAfterMs: Math.max(0, requeueAtMs - this.now()) };
  }

  private renewal(t: TokenValues, spec: ResolvedSpec): number {
    return computeRenewal({
      receivedAtMs: t.receivedAtMs,
      expiresAtMs: t.expiresAtMs,
      ...(spec.renewBefore.kind === "Duration"
        ? { renewBeforeSeconds: spec.renewBefore.seconds }
        : { renewBeforePercentage: spec.renewBefore.fraction * 100 }),
      random: this.random,
    }).renewAtMs;
  }

  /**
   * Delay in ms before the next attempt after `attempts` consecutive failures of class `kind`
   * (SPEC §3.4), with the {@link ReconcilerConfig.backoffScale} applied:
   * - credential and transient: {@link retryDelayMs} × scale;
   * - rate limited with a `Retry-After`: the server's delay (at least 1 s), capped at 15 min × scale;
   * - while a still-valid token is held, a transient (or rate-limited without `Retry-After`)
   *   failure is retried no later than half-way to that token's expiry (but not sooner than the
   *   2 s × scale base), so an outage shorter than the renew-before window never lets the token
   *   in the Secret lapse; credential failures keep their long backoff (a permanent
   *   `invalid_client` must not turn into a storm as expiry nears).
   */
  private retryDelay(
    kind: FailureKind,
    attempts: number,
    retryAfterMs: number | undefined,
    held: HeldToken | undefined,
    fingerprint: string,
    nowMs: number,
    random: () => number,
  ): number {
    const s = this.backoffScale;
    let delay: number;
    if (kind === "rateLimited" && retryAfterMs !== undefined) {
      delay = Math.min(
        retryDelayMs({ kind, failedAttempts: attempts, retryAfterMs, random }),
        BACKOFF.retryAfterMaxMs * s,
      );
    } else {
      delay = retryDelayMs({ kind, failedAttempts: attempts, random }) * s;
      const valid = held !== undefined && held.fingerprint === fingerprint && held.expiresAtMs > nowMs;
      if (kind !== "credential" && valid) {
        delay = Math.min(delay, Math.max((held.expiresAtMs - nowMs) / 2, BACKOFF.transientBaseMs * s));
      }
    }
    return Math.max(0, Math.round(delay));
  }

  /**
   * After a restart the in-memory backoff is gone; rebuild it from status (SPEC §3.4: backoff
   * survives restarts): next attempt = `lastFailureTime` + the nominal (mid-jitter) delay for
   * `failedAttempts`. The fingerprint is the current one: a credentials change made while no
   * operator ran is not detected as a change, and waits out the backoff.
   */
  private memoFromStatus(
    nt: NexarToken,
    status: TokenStatus,
    fingerprint: string,
    generation: number,
    held: HeldToken | undefined,
    nowMs: number,
  ): FailureMemo | undefined {
    if (!status.failedAttempts || !status.lastFailureTime || !status.lastFailureReason) return undefined;
    const failedAtMs = Date.parse(status.lastFailureTime);
    if (!Number.isFinite(failedAtMs)) return undefined;
    const kind = KIND_OF_REASON[status.lastFailureReason] ?? "transient";
    const delay = this.retryDelay(kind, status.failedAttempts, undefined, held, fingerprint, nowMs, () => 0.5);
    return {
      fingerprint,
      generation,
      nextAttemptAtMs: failedAtMs + delay,
      attempts: status.failedAttempts,
      // Unknown whether the current refresh request was attempted before the restart: assume so.
      refreshAttempted: nt.metadata.annotations?.[ANNOTATION_REFRESH_REQUESTED_AT],
    };
  }

  /**
   * The target Secret belongs to someone else (SPEC §3.6): a Warning Event and `Ready=False,
   * reason=SecretConflict`, written against `base` (the status as last written); no requeue.
   */
  private async secretConflict(
    nt: NexarToken,
    base: TokenStatus,
    status: TokenStatus,
    generation: number,
    message: string,
  ): Promise<Result> {
    this.d.events.warn(nt, "SecretConflict", message);
    await this.writeStatus(nt, base, this.failed(status, generation, "SecretConflict", message));
    return {};
  }

  private failed(status: TokenStatus, generation: number, reason: string, message: string): TokenStatus {
    return {
      ...status,
      observedGeneration: generation,
      conditions: setCondition(
        status.conditions,
        { type: "Ready", status: "False", reason, message, observedGeneration: generation },
        rfc3339(this.now()),
      ),
    };
  }

  /**
   * Brings the target Secret to `desired` with optimistic concurrency (SPEC §3.7): the write
   * carries the resourceVersion that was read. On 409 Conflict (someone wrote in between) the
   * Secret is read again, ownership re-checked, the write re-planned and retried, up to
   * {@link SECRET_WRITE_ATTEMPTS} attempts; no sleep, no loop beyond that (the work queue's
   * rate limiter takes over). Returns the action finally taken.
   * @throws KubeApiError on other errors, on a persisting 409, or when a re-read shows the Secret
   *   now belongs to someone else (the requeued reconcile then reports `SecretConflict`).
   */
  private async writeSecret(
    path: string,
    existing: Secret | undefined,
    desired: ReturnType<typeof desiredSecret>,
    target: ResolvedSpec["target"],
    key: string,
    uid: string,
    ownerExists: (k: string) => boolean,
    log: Logger,
  ): Promise<{ action: ReturnType<typeof planSecretWrite>["action"]; rv: string | undefined }> {
    let current = existing;
    for (let attempt = 1; ; attempt++) {
      const plan = planSecretWrite(current, desired, target.creationPolicy);
      try {
        const written = await this.applySecretPlan(plan, path);
        return { action: plan.action, rv: (written ?? current)?.metadata.resourceVersion };
      } catch (err) {
        if (!isStatus(err, 409) || attempt >= SECRET_WRITE_ATTEMPTS) throw err;
        log.debug({ secret: target.name, action: plan.action, attempt }, "Secret write conflicted; re-reading");
        current = await this.d.kube.getOrUndefined<Secret>(path);
        if (!checkOwnership(current, key, target.adopt, ownerExists, uid).ok) throw err;
      }
    }
  }

  /** Applies a plan; resolves with the Secret as the API server returned it (undefined for "none"). */
  private async applySecretPlan(plan: ReturnType<typeof planSecretWrite>, path: string): Promise<Secret | undefined> {
    const collection = path.slice(0, path.lastIndexOf("/"));
    switch (plan.action) {
      case "none":
        return undefined;
      case "create": {
        const out = await this.d.kube.request<Secret>("POST", collection, { body: plan.secret });
        this.d.metrics.secretWrite("create");
        return out;
      }
      case "update": {
        const out = await this.d.kube.request<Secret>("PUT", path, { body: plan.secret });
        this.d.metrics.secretWrite("update");
        return out;
      }
      case "recreate": {
        // `type` is immutable: delete (preconditioned on uid + resourceVersion) and create again.
        const { uid, resourceVersion } = plan.secret.metadata;
        await this.d.kube.request("DELETE", path, {
          body: { kind: "DeleteOptions", apiVersion: "v1", preconditions: { uid, resourceVersion } },
        });
        const { name, namespace, labels, annotations, ownerReferences } = plan.secret.metadata;
        const out = await this.d.kube.request<Secret>("POST", collection, {
          body: { ...plan.secret, metadata: { name, namespace, labels, annotations, ownerReferences } },
        });
        this.d.metrics.secretWrite("recreate");
        return out;
      }
    }
  }

  /**
   * Writes status with a merge patch on the status subresource, only when it differs from `base`
   * (the status as this process knows it, see {@link currentStatus}), and remembers the result.
   */
  private async writeStatus(nt: NexarToken, base: TokenStatus, next: TokenStatus): Promise<void> {
    const clean = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined)) as TokenStatus;
    if (statusEqual(base, clean)) return;
    const patch = statusPatch(base, clean);
    const ns = nt.metadata.namespace as string;
    const name = nt.metadata.name as string;
    try {
      const res = await this.d.kube.request<NexarToken>("PATCH", nexarTokenStatusPath(ns, name), {
        body: { status: patch },
        contentType: "application/merge-patch+json",
      });
      const rv = res?.metadata?.resourceVersion;
      if (rv !== undefined && res.metadata.uid === nt.metadata.uid) {
        const key = keyOf(nt);
        const w = { uid: res.metadata.uid as string, resourceVersion: rv, status: res.status ?? {} };
        // Kept only while the informer lags behind the write (its echo often arrives first; a
        // NexarToken gone from the informer has been deleted).
        const cached = this.d.getNexarToken(key);
        if (cached && writtenIsNewer(w, cached.metadata)) this.written.set(key, w);
        else this.written.delete(key);
      }
      this.d.metrics.statusWrite();
    } catch (err) {
      if (isStatus(err, 404)) return; // deleted meanwhile
      throw err;
    }
  }
}

/**
 * Whether the status this process wrote (`w`: uid and resourceVersion of the write's response) is
 * newer than the informer's copy of the object (`meta`): same uid and a higher resourceVersion.
 * resourceVersions are compared as integers (etcd revisions); when either is not one, false (the
 * informer's copy wins). Kubernetes API conventions call resourceVersions opaque: this relies on
 * kube-apiserver's etcd3 storage, as client-go's watch cache does.
 */
export function writtenIsNewer(
  w: { uid: string; resourceVersion: string },
  meta: { uid?: string; resourceVersion?: string },
): boolean {
  if (w.uid !== meta.uid) return false;
  const a = asRevision(meta.resourceVersion);
  const b = asRevision(w.resourceVersion);
  return a !== undefined && b !== undefined && b > a;
}

/** A resourceVersion as an integer (etcd revision), or undefined when it is not one. */
function asRevision(rv: string | undefined): bigint | undefined {
  return rv !== undefined && /^\d{1,20}$/.test(rv) ? BigInt(rv) : undefined;
}

/** SHA-256 of the desired Secret (never stored or logged; only compared in memory). */
function secretDigest(d: ReturnType<typeof desiredSecret>): string {
  // one-shot crypto.hash: no Hash object per call (Node ≥ 21.7)
  return hash("sha256", JSON.stringify(d), "base64url");
}

function toValues(t: IssuedToken): TokenValues {
  return {
    accessToken: t.accessToken,
    tokenType: t.tokenType,
    scopes: t.scopes,
    expiresAtMs: t.expiresAtMs,
    receivedAtMs: t.receivedAtMs,
  };
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
  const get = (k: string) => {
    const v = secret.data?.[k];
    return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8").trim();
  };
  const missing: string[] = [];
  const clientId = get(ref.clientIdKey);
  const clientSecret = get(ref.clientSecretKey);
  if (!clientId) missing.push(ref.clientIdKey);
  if (!clientSecret) missing.push(ref.clientSecretKey);
  let refreshToken: string | undefined;
  if (spec.grant === "RefreshToken") {
    refreshToken = get(ref.refreshTokenKey);
    if (!refreshToken) missing.push(ref.refreshTokenKey);
  }
  if (missing.length > 0) {
    return { error: `credentials Secret "${ref.name}" lacks non-empty key(s): ${missing.join(", ")}` };
  }
  return { clientId: clientId as string, clientSecret: clientSecret as string, refreshToken };
}
