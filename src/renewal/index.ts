/**
 * `src/renewal/`: WHEN a token is fetched — renewal time, trigger policies, failure backoff,
 * `Retry-After`, work-queue rate limiting. Pure functions only: no I/O, no timers, no clock reads.
 */
export {
  computeRenewal,
  renewalTimeMs,
  renewBeforeFields,
  renewBeforeNote,
  MIN_RENEW_BEFORE_SECONDS,
  MAX_JITTER_SECONDS,
  JITTER_FRACTION,
} from "./schedule.ts";
export type { RenewalInput, RenewalSchedule } from "./schedule.ts";

export {
  evaluateIssuance,
  defaultPolicyChain,
  noToken,
  specChanged,
  credentialsChanged,
  refreshRequested,
  expired,
  renewalDue,
} from "./policies.ts";
export type { IssuanceInput, IssuanceReason, IssuanceDecision, Policy } from "./policies.ts";

export {
  retryDelayMs,
  parseRetryAfter,
  BACKOFF,
  BACKOFF_SCALE_ENV,
  backoffScaleFromEnv,
  failureDelayMs,
  failureKindOfReason,
  nextAttemptAtMs,
  nextAttemptTime,
  backoffGate,
} from "./backoff.ts";
export type { FailureKind, RetryDelayInput, FailureDelayInput, FailureStatus, BackoffGateInput } from "./backoff.ts";

export { ItemExponentialFailureRateLimiter } from "./ratelimit.ts";
export type { ItemExponentialFailureRateLimiterOptions } from "./ratelimit.ts";
