/**
 * Trigger policies: "fetch a new token now?" (SPEC §3.1, §3.2, §3.4).
 *
 * Modelled on cert-manager's `pkg/controller/certificates/trigger/policies`: each policy is a tiny
 * pure function that returns a reason when it is violated, and a chain evaluates them in order,
 * stopping at the first violation. Anything not listed here (restart, leader change, resync,
 * status-only or metadata-only edits) never triggers a fetch while the current token is valid and
 * not due (SPEC §3.2).
 */

/** Everything the policies look at. Instants are epoch milliseconds. */
export interface IssuanceInput {
  /** The caller's clock, epoch ms. */
  nowMs: number;
  /** `metadata.generation` of the NexarToken (bumped by the API server on spec changes only). */
  generation: number;
  /** `status.observedGeneration`; undefined when the status was never written. */
  observedGeneration?: number;
  /** The token the target Secret / cache holds now; undefined when there is none. */
  currentToken?: {
    /** Expiry of that token, epoch ms. */
    expiresAtMs: number;
    /** Its renewal time from `computeRenewal`, epoch ms; when absent the token is used until expiry. */
    renewAtMs?: number;
    /** Fingerprint of what the token was fetched with (see `desiredFingerprint`). */
    fingerprint: string;
  };
  /**
   * Fingerprint of token URL, grant, client authentication, client id + secret, scopes and
   * fallback lifetime as they are now, computed by the caller (a keyed HMAC-SHA256, `fingerprintOf`
   * in src/controller/credentials.ts); policies only compare it.
   */
  desiredFingerprint: string;
  /** Value of the `nexar-operator.io/refresh-requested-at` annotation (RFC 3339 by convention), if any. */
  refreshRequestedAt?: string;
  /** The annotation value that was last handled (kept by the caller, e.g. in status). */
  lastRefreshRequest?: string;
}

/** Why a new token is fetched. */
export type IssuanceReason =
  "NoToken" | "SpecChanged" | "CredentialsChanged" | "RefreshRequested" | "Expired" | "RenewalDue";

/** Outcome of {@link evaluateIssuance}: fetch now with a reason, or check again at `nextCheckAtMs`. */
export type IssuanceDecision =
  | { issue: true; reason: IssuanceReason; message: string }
  | {
      issue: false;
      /** Epoch ms of the renewal time, or of the expiry when that is earlier or no renewal time is known. */
      nextCheckAtMs: number;
    };

/** One policy: returns a reason and a human-readable message (never a secret) when a fetch is needed. */
export type Policy = (input: IssuanceInput) => { reason: IssuanceReason; message: string } | undefined;

/** Fetch when no token is held at all (first reconcile, or cache and Secret both empty). */
export const noToken: Policy = ({ currentToken }) =>
  currentToken === undefined ? { reason: "NoToken", message: "Fetching a token as none is held" } : undefined;

/**
 * Fetch when the spec changed since the status was last written (generation ≠ observedGeneration;
 * Kubernetes API conventions: generation changes on spec writes only) AND the change is one the
 * token depends on (the fingerprint differs: token URL, grant, client authentication, credentials
 * reference, scopes, fallback lifetime). Any other spec change (target, renewBefore) only rewrites
 * the Secret or reschedules the renewal, from the token held. An unknown observedGeneration
 * (status never written, or lost) is not a spec change: {@link credentialsChanged} then decides.
 */
export const specChanged: Policy = ({ generation, observedGeneration, currentToken, desiredFingerprint }) =>
  observedGeneration !== undefined &&
  generation !== observedGeneration &&
  currentToken !== undefined &&
  currentToken.fingerprint !== desiredFingerprint
    ? {
        reason: "SpecChanged",
        message: `Fetching a token as the spec changed (generation ${generation}, observed ${observedGeneration})`,
      }
    : undefined;

/** Fetch when the token was issued for other credentials, token URL, grant or scopes. */
export const credentialsChanged: Policy = ({ currentToken, desiredFingerprint }) =>
  currentToken !== undefined && currentToken.fingerprint !== desiredFingerprint
    ? {
        reason: "CredentialsChanged",
        message: "Fetching a token as the credentials, token URL, grant or scopes changed",
      }
    : undefined;

/** Fetch when the refresh annotation carries a value not handled yet. */
export const refreshRequested: Policy = ({ refreshRequestedAt, lastRefreshRequest }) =>
  refreshRequestedAt !== undefined && refreshRequestedAt !== "" && refreshRequestedAt !== lastRefreshRequest
    ? {
        reason: "RefreshRequested",
        message: "Fetching a token as a refresh was requested",
      }
    : undefined;

/** Fetch when the held token has expired (now ≥ expiry). */
export const expired: Policy = ({ nowMs, currentToken }) =>
  currentToken !== undefined && nowMs >= currentToken.expiresAtMs
    ? {
        reason: "Expired",
        message: `Fetching a token as the current one expired at ${iso(currentToken.expiresAtMs)}`,
      }
    : undefined;

/** Fetch when the held token's renewal time has come (now ≥ renewAt). */
export const renewalDue: Policy = ({ nowMs, currentToken }) =>
  currentToken?.renewAtMs !== undefined && nowMs >= currentToken.renewAtMs
    ? {
        reason: "RenewalDue",
        message: `Renewing the token as renewal was scheduled at ${iso(currentToken.renewAtMs)}`,
      }
    : undefined;

/** The default chain, most specific reason first (cert-manager order: structure, then time). */
export const defaultPolicyChain: readonly Policy[] = Object.freeze([
  noToken,
  specChanged,
  credentialsChanged,
  refreshRequested,
  expired,
  renewalDue,
]);

/**
 * Evaluates `chain` in order and returns the first violation as `{ issue: true }`. When none is
 * violated, returns `{ issue: false, nextCheckAtMs }` with the earlier of the token's renewal time
 * and its expiry (the caller sets a timer / RequeueAfter for it).
 *
 * @throws Error if no policy fires although no token is held (only possible with a custom chain
 *   that lacks {@link noToken}): there is no time to check again at.
 */
export function evaluateIssuance(
  input: IssuanceInput,
  chain: readonly Policy[] = defaultPolicyChain,
): IssuanceDecision {
  for (const policy of chain) {
    const violation = policy(input);
    if (violation !== undefined) return { issue: true, ...violation };
  }
  const token = input.currentToken;
  if (token === undefined) {
    throw new Error("evaluateIssuance: no token is held and the policy chain did not ask for one");
  }
  return {
    issue: false,
    nextCheckAtMs: Math.min(token.renewAtMs ?? Infinity, token.expiresAtMs),
  };
}

/** Epoch ms as RFC 3339 UTC, or a plain number when it is not a valid date. */
function iso(ms: number): string {
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : String(ms);
}
