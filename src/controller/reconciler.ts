import { createHash } from "node:crypto";
import type { Logger } from "pino";
import type { NexarToken, ResolvedSpec } from "../api/types.ts";
import { validateNexarToken } from "../api/validate.ts";
import { API_VERSION, KIND, ANNOTATION_REFRESH_REQUESTED_AT } from "../api/constants.ts";
import { isStatus, type KubeClient, type Secret } from "../kube/client.ts";
import { secretPath, nexarTokenStatusPath } from "../kube/paths.ts";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import { computeRenewal, evaluateIssuance, parseRetryAfter, retryDelayMs, type FailureKind } from "../renewal/index.ts";
import { desiredSecret, planSecretWrite, rfc3339, storedToken, type TokenValues } from "../secrets/desired.ts";
import { checkOwnership } from "../secrets/ownership.ts";
import { setCondition, statusEqual, statusPatch, type TokenStatus } from "./status.ts";
import type { EventRecorder } from "../kube/events.ts";
import { persistRefreshToken } from "./credentials.ts";
import type { Metrics } from "../observability/metrics.ts";

/** What a reconcile asks of the work queue (controller-runtime's `reconcile.Result`). */
export interface Result {
  /** Reconcile this key again after this many milliseconds (a timer, not an error). */
  requeueAfterMs?: number;
}

/** Per-fetch context handed to a {@link TokenSource}. */
export interface FetchContext {
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
}

/** Dependencies of the reconciler: adapters and clock, all injectable. */
export interface ReconcilerDeps {
  kube: KubeClient;
  /** NexarToken from the informer cache by `namespace/name`. */
  getNexarToken(key: string): NexarToken | undefined;
  tokens: TokenSource;
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
}

/** Condition reasons of a failed fetch, per error class (SPEC §3.4). */
const KIND_OF_REASON: Record<string, FailureKind> = {
  InvalidClient: "credential",
  UnauthorizedClient: "credential",
  InvalidScope: "credential",
  InvalidGrant: "credential",
  AccessDenied: "credential",
  RateLimited: "rateLimited",
};

/**
 * Fingerprint of what a token is issued for: token URL, grant, client authentication, client id
 * and secret, and the scope set (order-insensitive). Hex SHA-256 with a domain prefix; it is never
 * reversed, only compared (SPEC §3.2: a change of any of these fetches a new token).
 */
export function fingerprintOf(req: TokenRequest): string {
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
 * A failure never removes a valid token from the Secret (SPEC §3.4).
 * @throws on API errors (e.g. 409 Conflict), which the caller turns into rate-limited requeues.
 */
export class Reconciler {
  private readonly d: ReconcilerDeps;
  private readonly held = new Map<string, HeldToken>();
  private readonly failures = new Map<string, FailureMemo>();
  private readonly now: () => number;
  private readonly random: () => number;

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
  }

  /** Forgets in-memory state of a deleted NexarToken. */
  forget(key: string): void {
    this.held.delete(key);
    this.failures.delete(key);
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
    const status: TokenStatus = nt.status ?? {};

    // 1. what the CRD schema cannot express (https unless the dev flag is set, Secret-type keys, …).
    const valid = validateNexarToken(nt, { allowInsecureTokenUrl: this.d.config.allowInsecureTokenUrl });
    if (!valid.ok) {
      await this.writeStatus(nt, this.failed(status, generation, "InvalidSpec", valid.errors.join("; ")));
      return {};
    }
    const spec: ResolvedSpec = valid.spec;

    // 2. credentials, from the NexarToken's own namespace only (SPEC §3.8).
    const creds = await this.d.kube.getOrUndefined<Secret>(secretPath(ns, spec.credentialsSecretRef.name));
    if (!creds) {
      await this.writeStatus(
        nt,
        this.failed(
          status,
          generation,
          "CredentialsNotFound",
          `credentials Secret "${spec.credentialsSecretRef.name}" not found in namespace "${ns}"`,
        ),
      );
      return { requeueAfterMs: this.d.config.recheckMs };
    }
    const read = readCredentials(creds, spec);
    if ("error" in read) {
      await this.writeStatus(nt, this.failed(status, generation, "CredentialsInvalid", read.error));
      return { requeueAfterMs: this.d.config.recheckMs };
    }
    const request: TokenRequest = {
      tokenUrl: spec.tokenUrl,
      grant: spec.grant,
      clientAuthentication: spec.clientAuthentication,
      clientId: read.clientId,
      clientSecret: read.clientSecret,
      refreshToken: read.refreshToken,
      scopes: spec.scopes,
    };
    const fingerprint = fingerprintOf(request);

    // 3. target Secret and ownership (SPEC §3.6).
    const targetPath = secretPath(ns, spec.target.name);
    const existing = await this.d.kube.getOrUndefined<Secret>(targetPath);
    const own = checkOwnership(existing, key, spec.target.adopt, (k) => this.d.getNexarToken(k) !== undefined);
    if (!own.ok) {
      this.d.events.warn(nt, "SecretConflict", own.message);
      await this.writeStatus(nt, this.failed(status, generation, "SecretConflict", own.message));
      return {};
    }

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
    if (!decision.issue) {
      // Nothing to fetch: an earlier failure no longer applies (e.g. credentials were put back).
      this.failures.delete(key);
      next = { ...next, failedAttempts: 0, lastFailureReason: undefined, lastFailureTime: undefined };
    } else {
      const memo = this.failures.get(key) ?? this.memoFromStatus(status, fingerprint, generation);
      const changed = memo && (memo.fingerprint !== fingerprint || memo.generation !== generation);
      const requested = refreshRequestedAt !== undefined && refreshRequestedAt !== status.lastRefreshRequest;
      if (memo && !changed && !requested && nowMs < memo.nextAttemptAtMs) {
        requeueAtMs = memo.nextAttemptAtMs; // backing off
      } else {
        log.info({ reason: decision.reason }, decision.message);
        const started = this.now();
        try {
          const token = await this.d.tokens.fetchToken(request, {
            fallbackLifetimeSeconds: spec.fallbackLifetimeSeconds ?? this.d.config.fallbackLifetimeSeconds,
            persistRefreshToken:
              spec.grant === "RefreshToken"
                ? async (rotated) => {
                    const result = await persistRefreshToken(
                      this.d.kube,
                      {
                        namespace: ns,
                        name: spec.credentialsSecretRef.name,
                        key: spec.credentialsSecretRef.refreshTokenKey,
                      },
                      { refreshToken: read.refreshToken ?? "", resourceVersion: creds.metadata.resourceVersion },
                      rotated,
                    );
                    log.info({ result }, "rotated refresh token stored in the credentials Secret");
                  }
                : undefined,
          });
          this.failures.delete(key);
          held = { ...toValues(token), fingerprint, renewAtMs: this.renewal(toValues(token), spec) };
          this.held.set(key, held);
          this.d.metrics.refresh(ns, "success", decision.reason);
          this.d.events.normal(
            nt,
            "TokenIssued",
            `Issued a token for scopes "${held.scopes.join(" ")}", expiring ${rfc3339(held.expiresAtMs)}`,
          );
          next = {
            ...next,
            lastRefreshTime: rfc3339(this.now()),
            failedAttempts: 0,
            lastFailureReason: undefined,
            lastFailureTime: undefined,
            lastRefreshRequest: requested ? refreshRequestedAt : status.lastRefreshRequest,
          };
          log.info(
            { expiresAt: rfc3339(held.expiresAtMs), renewalTime: rfc3339(held.renewAtMs), ms: this.now() - started },
            "token issued",
          );
        } catch (err) {
          if (!(err instanceof TokenEndpointError)) throw err;
          const attempts = (status.failedAttempts ?? 0) + 1;
          const kind = err.kind;
          const retryAfterMs = parseRetryAfter(err.retryAfterHeader, nowMs);
          const delay = retryDelayMs({ kind, failedAttempts: attempts, retryAfterMs, random: this.random });
          this.failures.set(key, { fingerprint, generation, nextAttemptAtMs: nowMs + delay });
          requeueAtMs = nowMs + delay;
          this.d.metrics.refresh(ns, "failure", err.reason);
          log.warn({ reason: err.reason, kind, attempts, retryInMs: delay }, `token request failed: ${err.message}`);
          this.d.events.warn(nt, "TokenRequestFailed", `${err.reason}: ${err.message}`);
          next = {
            ...next,
            failedAttempts: attempts,
            lastFailureTime: rfc3339(nowMs),
            lastFailureReason: err.reason,
          };
          const valid = held && held.expiresAtMs > nowMs && held.fingerprint === fingerprint;
          if (kind === "credential" || !valid) {
            next.conditions = setCondition(
              next.conditions,
              {
                type: "Ready",
                status: "False",
                reason: err.reason,
                message: err.message,
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
                message: `token valid until ${rfc3339(held!.expiresAtMs)}; renewal failed (${err.reason}), retrying`,
                observedGeneration: generation,
              },
              rfc3339(nowMs),
            );
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
      const plan = planSecretWrite(existing, desired, spec.target.creationPolicy);
      await this.applySecretPlan(plan, targetPath);
      if (plan.action !== "none") log.info({ secret: spec.target.name, action: plan.action }, "target Secret written");
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
    await this.writeStatus(nt, next);
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

  /** After a restart the in-memory backoff is gone; rebuild it from status (SPEC §3.4: backoff survives restarts). */
  private memoFromStatus(status: TokenStatus, fingerprint: string, generation: number): FailureMemo | undefined {
    if (!status.failedAttempts || !status.lastFailureTime || !status.lastFailureReason) return undefined;
    const kind = KIND_OF_REASON[status.lastFailureReason] ?? "transient";
    const delay = retryDelayMs({ kind, failedAttempts: status.failedAttempts, random: () => 0.5 });
    return { fingerprint, generation, nextAttemptAtMs: Date.parse(status.lastFailureTime) + delay };
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

  private async applySecretPlan(plan: ReturnType<typeof planSecretWrite>, path: string): Promise<void> {
    const collection = path.slice(0, path.lastIndexOf("/"));
    switch (plan.action) {
      case "none":
        return;
      case "create":
        await this.d.kube.request("POST", collection, { body: plan.secret });
        this.d.metrics.secretWrite("create");
        return;
      case "update":
        await this.d.kube.request("PUT", path, { body: plan.secret });
        this.d.metrics.secretWrite("update");
        return;
      case "recreate": {
        // `type` is immutable: delete (preconditioned on uid + resourceVersion) and create again.
        const { uid, resourceVersion } = plan.secret.metadata;
        await this.d.kube.request("DELETE", path, {
          body: { kind: "DeleteOptions", apiVersion: "v1", preconditions: { uid, resourceVersion } },
        });
        const { name, namespace, labels, annotations, ownerReferences } = plan.secret.metadata;
        await this.d.kube.request("POST", collection, {
          body: { ...plan.secret, metadata: { name, namespace, labels, annotations, ownerReferences } },
        });
        this.d.metrics.secretWrite("recreate");
        return;
      }
    }
  }

  /** Writes status with a merge patch on the status subresource, only when it changed. */
  private async writeStatus(nt: NexarToken, next: TokenStatus): Promise<void> {
    const clean = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined)) as TokenStatus;
    if (statusEqual(nt.status, clean)) return;
    const patch = statusPatch(nt.status, clean);
    try {
      await this.d.kube.request(
        "PATCH",
        nexarTokenStatusPath(nt.metadata.namespace as string, nt.metadata.name as string),
        { body: { status: patch }, contentType: "application/merge-patch+json" },
      );
      this.d.metrics.statusWrite();
    } catch (err) {
      if (isStatus(err, 404)) return; // deleted meanwhile
      throw err;
    }
  }
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
