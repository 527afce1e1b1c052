/**
 * Decide: the pure middle of a reconcile (gather → decide → apply). Given everything the
 * reconciler gathered about one NexarToken — its spec, the status as this process knows it, the
 * credentials value, the target Secret, the token held, the outcome of a fetch when one was made,
 * the clock and a jitter draw — it returns what to do and why: whether to fetch a token (with the
 * trigger's reason), the Secret write plan, the next status with its Ready condition, the Events
 * and the requeue time. No I/O, no clock, no randomness of its own.
 *
 * Each "act now?" rule is a small function returning a reason: the trigger policies and the
 * backoff live in src/renewal/ (WHEN), what the Secret holds in src/secrets/ (WHAT); this file
 * composes them, in the order of the rows of docs/behaviour.md.
 */
import { hash } from "node:crypto";
import { API_VERSION, ANNOTATION_REFRESH_REQUESTED_AT, KIND } from "../api/constants.ts";
import type { NexarToken, ResolvedSpec } from "../api/types.ts";
import type { Secret } from "../kube/client.ts";
import type { IssuedToken } from "../oauth/types.ts";
import type { TokenErrorKind } from "../oauth/errors.ts";
import {
  backoffGate,
  evaluateIssuance,
  failureDelayMs,
  nextAttemptAtMs,
  nextAttemptTime,
  renewalTimeMs,
  renewBeforeNote,
  type FailureKind,
  type IssuanceReason,
} from "../renewal/index.ts";
import {
  desiredSecret,
  planSecretWrite,
  rfc3339,
  storedToken,
  storedTokenMismatch,
  type DesiredSecret,
  type SecretWritePlan,
  type TokenValues,
} from "../secrets/desired.ts";
import { checkOwnership, type OwnershipDecision } from "../secrets/ownership.ts";
import type { CredentialsRead } from "./credentials.ts";
import { setCondition, type Condition, type TokenStatus } from "./status.ts";

/** Condition reason for a refresh token the token endpoint (or the operator) will not accept (SPEC §6). */
export const REASON_REFRESH_TOKEN_INVALID = "RefreshTokenInvalid";

/**
 * The condition message for {@link REASON_REFRESH_TOKEN_INVALID}: what happened and the command
 * that fixes it. `detail` must already be safe (a `TokenEndpointError` message). Never holds a token.
 */
export function refreshTokenInvalidMessage(namespace: string, secretName: string, detail?: string): string {
  return (
    `the refresh token in Secret "${secretName}" was rejected${detail ? ` (${detail})` : ""}: it was revoked, expired ` +
    `or already used. Run \`nexar-token-operator login --namespace ${namespace} --secret ${secretName}\` to store a new one`
  );
}

/** A token held for a NexarToken, with what it was fetched for and when to renew it. Times epoch ms. */
export interface HeldToken extends TokenValues {
  /** Fingerprint of the inputs it was fetched with (`fingerprintOf`). */
  fingerprint: string;
  renewAtMs: number;
  /**
   * The refresh annotation value handled once this token was fetched (`status.lastRefreshRequest`
   * after it): a forced refresh whose Secret or status write failed is answered by this token on
   * the retry, not by another request. Absent for a token read back from the Secret.
   */
  lastRefreshRequest?: string;
}

/** The failure fields of a status after a success (or once a failure no longer applies). */
const NO_FAILURE = {
  failedAttempts: 0,
  lastFailureReason: undefined,
  lastFailureTime: undefined,
  nextAttemptTime: undefined,
  lastFailureFingerprint: undefined,
  lastFailureRefreshRequest: undefined,
} as const satisfies Partial<TokenStatus>;

/** The target Secret as `namespace/name` + the resourceVersion and desired-Secret digest this process last wrote or read. */
export interface VerifiedTarget {
  rv: string;
  digest: string;
  generation: number;
}

/**
 * The target Secret as gathered: `unchanged` when the Secret watch still reports the
 * resourceVersion this process last wrote or read, for the same generation, and a token is held
 * (it was not read); else `read`: as read (GET or the start-up LIST), undefined when absent.
 */
export type TargetView = { state: "unchanged"; known: VerifiedTarget } | { state: "read"; secret: Secret | undefined };

/** The outcome of the fetch a first {@link decide} asked for. `atMs` is when it ended (epoch ms). */
export type FetchOutcome =
  | { ok: true; token: IssuedToken; atMs: number; ms: number }
  | {
      ok: false;
      /** A `TokenEndpointError`'s fields (src/oauth/errors.ts); the message is redacted. */
      error: { kind: TokenErrorKind; reason: string; message: string; retryAfterHeader?: string };
      /** The server's `Retry-After`, ms from `atMs` (`parseRetryAfter`). */
      retryAfterMs: number | undefined;
      atMs: number;
    };

/** Everything {@link decide} looks at: what gather assembled (read-only) plus a fetch outcome. */
export interface ReconcileInput {
  /** `namespace/name`. */
  key: string;
  nt: NexarToken;
  /** The status as this process knows it (the informer's copy, or the newer one it wrote). */
  status: TokenStatus;
  /** The spec resolved and checked (`validateNexarToken`). */
  spec: { ok: true; spec: ResolvedSpec } | { ok: false; errors: readonly string[] };
  /** Present when the spec is valid. */
  credentials?: CredentialsRead;
  /** Present when the credentials are usable. */
  target?: TargetView;
  /** Whether NexarToken `namespace/name` exists (the ownership rules: a live owner keeps its Secret). */
  ownerExists: (key: string) => boolean;
  /** The token held in memory, if any. */
  held: HeldToken | undefined;
  nowMs: number;
  /** A uniform draw in [0, 1) for this reconcile's jitter (renewal time, failure backoff). */
  jitter: number;
  config: {
    /** Re-check interval for conditions no event announces (a missing credentials Secret), ms. */
    recheckMs: number;
    /** The test-only backoff scale (1 in production). */
    backoffScale: number;
  };
  /** The outcome of the fetch the previous {@link decide} of this reconcile asked for. */
  fetched?: { plan: FetchPlan; outcome: FetchOutcome };
}

/** Why a token is fetched now, and what to tell the issuer. */
export interface FetchPlan {
  /** The trigger policy's reason (src/renewal/policies.ts). */
  reason: IssuanceReason;
  message: string;
  /**
   * The reason given to the issuer's sharing rules: a change since the last failure forces a new
   * request (a credential error held for other NexarTokens must not answer a retry a change asked for).
   */
  shareReason: IssuanceReason;
  /** The fetch answers a new value of the refresh annotation (it becomes `lastRefreshRequest`). */
  refreshRequested: boolean;
  /** The credentials' data changed since the token held (or the last failure) was fetched: worth an Event. */
  credentialsChanged: boolean;
  /** Consecutive failures before this fetch that it continues (0 after a change). */
  previousAttempts: number;
  /** The status to report a wait for the issuance limiter against ({@link limiterWaitStatus}). */
  next: TokenStatus;
}

/** An Event to record about the NexarToken. Notes never carry a secret. */
export interface EventPlan {
  type: "Normal" | "Warning";
  reason: string;
  note: string;
}

/** Bring the target Secret to `desired`. */
export interface SecretPlan {
  desired: DesiredSecret;
  /** Digest of `desired` (compared in memory only, never stored). */
  digest: string;
  /**
   * The Secret as read; when `readFirst` the Secret was not read (it was unchanged since this
   * process last wrote it) and must be read before writing.
   */
  current: Secret | undefined;
  readFirst: boolean;
  /** resourceVersion this process last wrote or read (`readFirst` only): a re-read at another one re-checks ownership. */
  knownRv: string | undefined;
  /** The write that brings `current` to `desired` (pure, `planSecretWrite`). */
  plan(current: Secret | undefined): SecretWritePlan;
  /** Whether this NexarToken may write `current` (pure, `checkOwnership`). */
  owns(current: Secret | undefined): OwnershipDecision;
}

/** What to do, and why. */
export interface Decision {
  /** Fetch a token first, then {@link decide} again with the outcome (only when none was fetched yet). */
  fetch?: FetchPlan;
  /** The token to hold after this reconcile (undefined: leave memory as it is). */
  hold?: HeldToken;
  /** The target Secret write (undefined: nothing to write). */
  secret?: SecretPlan;
  /** The next status (written only if it differs). */
  status: TokenStatus;
  events: EventPlan[];
  /** Reconcile again at this instant, epoch ms (undefined: only on an event). */
  requeueAtMs?: number;
  /** Log and metric fields of this reconcile's fetch. */
  issued?: { reason: IssuanceReason; expiresAt: string; renewalTime: string; ms: number };
  failed?: {
    reason: string;
    kind: FailureKind;
    attempts: number;
    retryInMs: number;
    nextAttemptAt: string;
    retryAfterMs: number | undefined;
    message: string;
  };
}

/**
 * Decides one reconcile of one NexarToken (see the file comment). Called once with the gathered
 * input; if it returns {@link Decision.fetch}, the caller fetches and calls it again with
 * `fetched` (a second call never asks to fetch). Pure; never throws for any input that gather
 * can produce (a template that does not render throws `Error`, as `desiredSecret` does).
 */
export function decide(input: ReconcileInput): Decision {
  const { nt, status } = input;
  const generation = nt.metadata.generation ?? 0;
  // 1. The spec: what the CRD schema cannot express (https unless the dev flag is set, …).
  if (!input.spec.ok) return failedStatus(input, "InvalidSpec", input.spec.errors.join("; "));
  const spec = input.spec.spec;
  // 2. The credentials, from the NexarToken's own namespace only (SPEC §3.8).
  const creds = input.credentials;
  if (!creds || !creds.found) {
    const ns = nt.metadata.namespace ?? "";
    return {
      ...failedStatus(
        input,
        "CredentialsNotFound",
        `credentials Secret "${spec.credentialsSecretRef.name}" not found in namespace "${ns}"`,
      ),
      requeueAtMs: input.nowMs + input.config.recheckMs,
    };
  }
  if ("error" in creds) {
    return {
      ...failedStatus(input, "CredentialsInvalid", creds.error),
      requeueAtMs: input.nowMs + input.config.recheckMs,
    };
  }
  // 3. The target Secret and ownership (SPEC §3.6): someone else's Secret is never touched.
  const target = input.target ?? { state: "read", secret: undefined };
  const existing = target.state === "read" ? target.secret : undefined;
  const owns = (s: Secret | undefined) =>
    checkOwnership(s, input.key, spec.target.adopt, input.ownerExists, nt.metadata.uid);
  const own = owns(existing);
  if (!own.ok) return secretConflict(input, own.message);

  // 4. The held token: memory first, else what the Secret holds (restart, leader change).
  //    A spec change since status was written may move the renewal time (renewBefore): rescheduled
  //    from the token held, no fetch (only a change of what the token is fetched with fetches).
  const respec = status.observedGeneration !== undefined && status.observedGeneration !== generation;
  let held = input.held;
  let hold: HeldToken | undefined;
  if (!held) {
    const stored = existing && !own.adopting ? storedToken(existing) : undefined;
    // A Secret edited or restored while no operator ran is not trusted as it stands: fetch.
    const fromSecret = stored && !storedTokenMismatch(stored, status.expiresAt) ? stored : undefined;
    if (fromSecret?.fingerprint) {
      const renewAtMs =
        !respec && status.expiresAt && Date.parse(status.expiresAt) === fromSecret.expiresAtMs && status.renewalTime
          ? Date.parse(status.renewalTime)
          : renewalTimeMs(fromSecret, spec.renewBefore, input.jitter, input.nowMs);
      // A Secret written before fingerprints were keyed: the same inputs, migrated by the rewrite.
      const fingerprint =
        fromSecret.fingerprint === creds.legacyFingerprint ? creds.fingerprint : fromSecret.fingerprint;
      held = hold = { ...fromSecret, fingerprint, renewAtMs };
    }
  } else if (respec) {
    held = hold = { ...held, renewAtMs: renewalTimeMs(held, spec.renewBefore, input.jitter, input.nowMs) };
  }

  // The refresh request the held token answered counts as handled, written to status or not.
  const lastRefreshRequest = held?.lastRefreshRequest ?? status.lastRefreshRequest;

  // 5. Fetch? The trigger policies, then the failure backoff (src/renewal/).
  let next: TokenStatus = { ...status, observedGeneration: generation, secretName: spec.target.name };
  let requeueAtMs: number | undefined;
  const events: EventPlan[] = [];
  let issued: Decision["issued"];
  let failed: Decision["failed"];
  let nowMs = input.nowMs;
  if (!input.fetched) {
    const trigger = fetchTrigger(input, held, creds.fingerprint, next, { respec, lastRefreshRequest });
    if (trigger.kind === "fetch") return { fetch: trigger.plan, hold, status: next, events: [] };
    if (trigger.kind === "none") {
      // Nothing to fetch: an earlier failure no longer applies (e.g. credentials were put back).
      next = { ...next, ...NO_FAILURE, lastRefreshRequest };
    } else requeueAtMs = trigger.untilMs; // backing off
  } else {
    const { plan, outcome } = input.fetched;
    nowMs = outcome.atMs;
    if (plan.credentialsChanged) {
      events.push({
        type: "Normal",
        reason: "CredentialsChanged",
        note: `Credentials Secret "${spec.credentialsSecretRef.name}" changed (resourceVersion ${creds.resourceVersion ?? "?"}); fetching a new token`,
      });
    }
    if (outcome.ok) {
      const t = outcome.token;
      held = hold = {
        accessToken: t.accessToken,
        tokenType: t.tokenType,
        scopes: t.scopes,
        expiresAtMs: t.expiresAtMs,
        receivedAtMs: t.receivedAtMs,
        fingerprint: creds.fingerprint,
        renewAtMs: renewalTimeMs(t, spec.renewBefore, input.jitter, nowMs),
        lastRefreshRequest: plan.refreshRequested
          ? nt.metadata.annotations?.[ANNOTATION_REFRESH_REQUESTED_AT]
          : lastRefreshRequest,
      };
      events.push({
        type: "Normal",
        reason: "TokenIssued",
        // Millisecond precision: two issuances within one second are two facts, not a repeat to de-duplicate.
        note: `Issued a token for scopes "${held.scopes.join(" ")}", expiring ${new Date(held.expiresAtMs).toISOString()}`,
      });
      next = {
        ...next,
        lastRefreshTime: rfc3339(nowMs),
        ...NO_FAILURE,
        lastRefreshRequest: held.lastRefreshRequest,
      };
      issued = {
        reason: plan.reason,
        expiresAt: rfc3339(held.expiresAtMs),
        renewalTime: rfc3339(held.renewAtMs),
        ms: outcome.ms,
      };
    } else {
      const f = failure(input, spec, plan, outcome, held, creds.fingerprint, next);
      next = f.next;
      requeueAtMs = f.requeueAtMs;
      failed = f.failed;
      events.push({ type: "Warning", reason: "TokenRequestFailed", note: `${f.failed.reason}: ${f.failed.message}` });
    }
  }

  // 6. Publish the held token (drift repair uses it: no fetch) and say so in status.
  let secret: SecretPlan | undefined;
  if (held && held.expiresAtMs > nowMs) {
    const desired = desiredSecret(
      {
        apiVersion: API_VERSION,
        kind: KIND,
        namespace: nt.metadata.namespace ?? "",
        name: nt.metadata.name ?? "",
        uid: nt.metadata.uid ?? "",
      },
      spec.target,
      held,
      held.fingerprint,
    );
    const digest = secretDigest(desired);
    const known = target.state === "unchanged" ? target.known : undefined;
    if (!(known && known.digest === digest)) {
      const policy = spec.target.creationPolicy;
      secret = {
        desired,
        digest,
        current: existing,
        readFirst: known !== undefined,
        knownRv: known?.rv,
        plan: (current) => planSecretWrite(current, desired, policy),
        owns,
      };
    }
    next.expiresAt = rfc3339(held.expiresAtMs);
    next.renewalTime = rfc3339(held.renewAtMs);
    next.grantedScopes = [...held.scopes];
    // While failures are reported (backing off, or just failed), the failure condition stays.
    if (!((next.failedAttempts ?? 0) > 0)) {
      const note = renewBeforeNote(held, spec.renewBefore);
      next.conditions = ready(
        next,
        "True",
        "TokenIssued",
        `Secret "${spec.target.name}" holds a token valid until ${rfc3339(held.expiresAtMs)}; renewal at ${rfc3339(held.renewAtMs)}` +
          (note ? ` (${note})` : ""),
        generation,
        nowMs,
      );
      requeueAtMs = Math.min(requeueAtMs ?? Infinity, held.renewAtMs);
    }
    requeueAtMs = Math.min(requeueAtMs ?? Infinity, held.expiresAtMs);
  } else if (held) {
    // Expired and not renewed (SPEC §3.4): say so; the Secret keeps what it has.
    const wasExpired = status.conditions?.some((c) => c.type === "Ready" && c.reason === "Expired");
    if (!wasExpired) {
      events.push({
        type: "Warning",
        reason: "Expired",
        note: `The token in Secret "${spec.target.name}" expired at ${rfc3339(held.expiresAtMs)}`,
      });
    }
    next.conditions = ready(
      next,
      "False",
      "Expired",
      `token expired at ${rfc3339(held.expiresAtMs)}${next.lastFailureReason ? `; last failure: ${next.lastFailureReason}` : ""}`,
      generation,
      nowMs,
    );
  }
  // The Ready condition kept through a backoff has seen this generation too.
  if (next.conditions?.some((c) => c.type === "Ready" && c.observedGeneration !== generation)) {
    next.conditions = next.conditions.map((c) => (c.type === "Ready" ? { ...c, observedGeneration: generation } : c));
  }
  return {
    hold,
    secret,
    status: next,
    events,
    requeueAtMs: requeueAtMs !== undefined && Number.isFinite(requeueAtMs) ? requeueAtMs : undefined,
    issued,
    failed,
  };
}

/**
 * The target Secret belongs to someone else (SPEC §3.6), found by {@link decide} or by a re-read
 * before a write: a Warning Event and `Ready=False, reason=SecretConflict` on the status as
 * gathered; nothing is written to the Secret, no requeue. Pure.
 */
export function secretConflict(input: ReconcileInput, message: string): Decision {
  return {
    ...failedStatus(input, "SecretConflict", message),
    events: [{ type: "Warning", reason: "SecretConflict", note: message }],
  };
}

/**
 * The status to report while the fetch of `plan` waits for the per-client issuance limiter
 * until `untilMs` (SPEC §3.3): `Ready` reason `IssuanceLimited`, `True` while the held token is
 * still valid. Undefined while a failure streak is reported (it says more). Pure.
 */
export function limiterWaitStatus(
  input: ReconcileInput,
  plan: FetchPlan,
  held: HeldToken | undefined,
  fingerprint: string,
  untilMs: number,
  nowMs: number,
): TokenStatus | undefined {
  if ((plan.next.failedAttempts ?? 0) > 0) return undefined;
  const valid = held !== undefined && held.expiresAtMs > nowMs && held.fingerprint === fingerprint;
  return {
    ...plan.next,
    conditions: ready(
      plan.next,
      valid ? "True" : "False",
      "IssuanceLimited",
      `token request queued by the per-client issuance limit until ${rfc3339(untilMs)}`,
      input.nt.metadata.generation ?? 0,
      nowMs,
    ),
  };
}

type Trigger = { kind: "fetch"; plan: FetchPlan } | { kind: "none" } | { kind: "backoff"; untilMs: number };

/** Whether to fetch now: the trigger policies, then the failure backoff. */
function fetchTrigger(
  input: ReconcileInput,
  held: HeldToken | undefined,
  fingerprint: string,
  next: TokenStatus,
  since: {
    /** The spec changed since status was written (generation ≠ observedGeneration). */
    respec: boolean;
    /** The refresh annotation value handled (by the held token, or as status records). */
    lastRefreshRequest: string | undefined;
  },
): Trigger {
  const { nt, status } = input;
  const generation = nt.metadata.generation ?? 0;
  const refreshRequestedAt = nt.metadata.annotations?.[ANNOTATION_REFRESH_REQUESTED_AT];
  const { lastRefreshRequest } = since;
  const issuance = evaluateIssuance({
    nowMs: input.nowMs,
    generation,
    observedGeneration: status.observedGeneration,
    currentToken: held,
    desiredFingerprint: fingerprint,
    refreshRequestedAt,
    lastRefreshRequest,
  });
  if (!issuance.issue) return { kind: "none" };
  const validUntilMs = held && held.fingerprint === fingerprint ? held.expiresAtMs : undefined;
  const nextAt = nextAttemptAtMs(status, { validUntilMs, nowMs: input.nowMs, scale: input.config.backoffScale });
  // What the failed fetch was for, from status; a status written before these fields existed is
  // taken as the current inputs (a change made meanwhile waits for the backoff).
  const failedFor =
    nextAt === undefined
      ? undefined
      : status.lastFailureFingerprint !== undefined
        ? { fingerprint: status.lastFailureFingerprint, refreshRequest: status.lastFailureRefreshRequest }
        : { fingerprint, refreshRequest: refreshRequestedAt };
  const changed: "SpecChanged" | "CredentialsChanged" | undefined =
    !failedFor || failedFor.fingerprint === fingerprint
      ? undefined
      : since.respec
        ? "SpecChanged"
        : "CredentialsChanged";
  const requested = refreshRequestedAt !== undefined && refreshRequestedAt !== lastRefreshRequest;
  const newRequest = requested && failedFor?.refreshRequest !== refreshRequestedAt;
  const gate = backoffGate({
    nextAttemptAtMs: nextAt,
    nowMs: input.nowMs,
    changedSinceFailure: changed,
    newRefreshRequest: newRequest,
  });
  if (gate.hold) return { kind: "backoff", untilMs: gate.untilMs };
  return {
    kind: "fetch",
    plan: {
      reason: issuance.reason,
      message: issuance.message,
      shareReason: changed ?? issuance.reason,
      refreshRequested: requested,
      // A change of the credentials' data (not of the spec) is worth an Event: it explains a new token.
      credentialsChanged: issuance.reason === "CredentialsChanged" || changed === "CredentialsChanged",
      previousAttempts: failedFor && !changed ? (status.failedAttempts ?? 0) : 0,
      next,
    },
  };
}

/** The status, memory and requeue after a failed fetch (SPEC §3.4): the token in the Secret is kept. */
function failure(
  input: ReconcileInput,
  spec: ResolvedSpec,
  plan: FetchPlan,
  outcome: Extract<FetchOutcome, { ok: false }>,
  held: HeldToken | undefined,
  fingerprint: string,
  base: TokenStatus,
): { next: TokenStatus; requeueAtMs: number; failed: NonNullable<Decision["failed"]> } {
  const { nt } = input;
  const generation = nt.metadata.generation ?? 0;
  const err = outcome.error;
  // A refresh token the server will not take needs a new login (SPEC §6).
  const invalidRefresh = spec.grant === "RefreshToken" && err.reason === "InvalidGrant";
  const reason = invalidRefresh ? REASON_REFRESH_TOKEN_INVALID : err.reason;
  const message = invalidRefresh
    ? refreshTokenInvalidMessage(nt.metadata.namespace ?? "", spec.credentialsSecretRef.name, err.message)
    : err.message;
  const attempts = plan.previousAttempts + 1;
  const failedAtMs = outcome.atMs;
  const valid = held !== undefined && held.fingerprint === fingerprint && held.expiresAtMs > failedAtMs;
  const delay = failureDelayMs({
    kind: err.kind,
    failedAttempts: attempts,
    retryAfterMs: outcome.retryAfterMs,
    jitter: input.jitter,
    validUntilMs: valid ? held.expiresAtMs : undefined,
    nowMs: failedAtMs,
    scale: input.config.backoffScale,
  });
  let next: TokenStatus = {
    ...base,
    failedAttempts: attempts,
    lastFailureTime: rfc3339(failedAtMs),
    lastFailureReason: reason,
    nextAttemptTime: nextAttemptTime(failedAtMs + delay),
    lastFailureFingerprint: fingerprint,
    lastFailureRefreshRequest: nt.metadata.annotations?.[ANNOTATION_REFRESH_REQUESTED_AT],
  };
  next =
    err.kind === "credential" || !valid
      ? { ...next, conditions: ready(next, "False", reason, message, generation, failedAtMs) }
      : {
          ...next,
          conditions: ready(
            next,
            "True",
            "RenewalFailing",
            `token valid until ${rfc3339(held.expiresAtMs)}; renewal failed (${reason}), retrying`,
            generation,
            failedAtMs,
          ),
        };
  return {
    next,
    requeueAtMs: failedAtMs + delay,
    failed: {
      reason,
      kind: err.kind,
      attempts,
      retryInMs: delay,
      nextAttemptAt: new Date(failedAtMs + delay).toISOString(),
      retryAfterMs: outcome.retryAfterMs,
      message,
    },
  };
}

/** `Ready=False` with `reason` on the status as gathered (the spec, credentials or target cannot be used). */
function failedStatus(input: ReconcileInput, reason: string, message: string): Decision {
  const generation = input.nt.metadata.generation ?? 0;
  const status = input.status;
  return {
    status: {
      ...status,
      observedGeneration: generation,
      conditions: ready(status, "False", reason, message, generation, input.nowMs),
    },
    events: [],
  };
}

/** The conditions of `status` with `Ready` set (its transition time kept while its status is unchanged). */
function ready(
  status: TokenStatus,
  value: Condition["status"],
  reason: string,
  message: string,
  generation: number,
  nowMs: number,
): Condition[] {
  return setCondition(
    status.conditions,
    { type: "Ready", status: value, reason, message, observedGeneration: generation },
    rfc3339(nowMs),
  );
}

/** SHA-256 of the desired Secret (never stored or logged; only compared in memory). */
function secretDigest(d: DesiredSecret): string {
  return hash("sha256", JSON.stringify(d), "base64url");
}
