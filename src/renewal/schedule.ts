/**
 * When to renew a token that was just received (SPEC §3.1).
 *
 * Pure: the caller passes the receive time, the expiry and a `random` source, so the result is
 * deterministic under test. All instants are epoch milliseconds.
 */
import type { RenewBefore } from "../api/types.ts";

/** Smallest renew-before window, in seconds (SPEC §3.1: "at least 1 minute"). */
export const MIN_RENEW_BEFORE_SECONDS = 60;

/** Largest jitter subtracted from the renewal time, in seconds (5 min). */
export const MAX_JITTER_SECONDS = 300;

/** Fraction of the effective renew-before window that the jitter may reach (10 %). */
export const JITTER_FRACTION = 0.1;

/** Input of {@link computeRenewal}. */
export interface RenewalInput {
  /** Local time the token response was received, epoch ms. */
  receivedAtMs: number;
  /** Token expiry, epoch ms (from `expires_in` counted from `receivedAtMs`, else JWT `exp`). */
  expiresAtMs: number;
  /** `spec.renewBefore` in seconds. Takes precedence over `renewBeforePercentage` if both are set. */
  renewBeforeSeconds?: number;
  /** `spec.renewBeforePercentage`, a percentage of the lifetime in (0, 100]. */
  renewBeforePercentage?: number;
  /** Uniform source in [0, 1), e.g. `Math.random`; values outside are clamped into [0, 1]. */
  random: () => number;
}

/** Result of {@link computeRenewal}. */
export interface RenewalSchedule {
  /** When to fetch the next token, epoch ms, rounded down to a whole millisecond. */
  renewAtMs: number;
  /** The renew-before window actually applied (after clamping, before jitter), in seconds. */
  effectiveRenewBeforeSeconds: number;
  /** True when the requested (or default) window was changed by the [60 s, lifetime/2] clamp. */
  clamped: boolean;
}

/**
 * Computes the renewal time of a token (SPEC §3.1), in the manner of cert-manager's
 * `RenewBeforeExpiryDuration` plus jitter.
 *
 * With `lifetime = expiresAtMs − receivedAtMs`:
 * - requested window = `renewBeforeSeconds`, else `renewBeforePercentage`% of the lifetime, else lifetime/3;
 * - effective window `rb` = requested clamped to [60 s, lifetime/2]; the upper bound wins when they
 *   conflict (a 60 s token renews after 30 s), so a window ≥ the lifetime never renews at once;
 * - `renewAtMs = floor(expiresAtMs − rb − random() · min(10 % · rb, 5 min))`.
 *
 * Guarantees (exact):
 * - `renewAtMs ≤ expiresAtMs − rb`, and `rb ≥ min(60 s, lifetime/2)`, so renewal is strictly before expiry;
 * - `renewAtMs > receivedAtMs + lifetime/2 − min(10 % · rb, 5 min) − 1 ms ≥ receivedAtMs + 0.45 · lifetime − 1 ms`,
 *   because `rb ≤ lifetime/2`; so for any lifetime ≥ 3 ms renewal is strictly after receipt.
 *
 * @throws RangeError if a time is not finite, if `expiresAtMs ≤ receivedAtMs` (a token that is
 *   already expired on receipt has no renewal time: the caller treats it as a failed fetch), or if
 *   `renewBeforeSeconds` / `renewBeforePercentage` is given but not a finite number.
 */
export function computeRenewal(input: RenewalInput): RenewalSchedule {
  const { receivedAtMs, expiresAtMs, renewBeforeSeconds, renewBeforePercentage, random } = input;
  if (!Number.isFinite(receivedAtMs) || !Number.isFinite(expiresAtMs)) {
    throw new RangeError("receivedAtMs and expiresAtMs must be finite epoch milliseconds");
  }
  const lifetimeMs = expiresAtMs - receivedAtMs;
  if (lifetimeMs <= 0) {
    throw new RangeError(
      `token lifetime must be positive (receivedAt ${receivedAtMs} ms, expiresAt ${expiresAtMs} ms)`,
    );
  }
  if (renewBeforeSeconds !== undefined && !Number.isFinite(renewBeforeSeconds)) {
    throw new RangeError("renewBeforeSeconds must be a finite number of seconds");
  }
  if (renewBeforePercentage !== undefined && !Number.isFinite(renewBeforePercentage)) {
    throw new RangeError("renewBeforePercentage must be a finite percentage");
  }

  // Work in milliseconds so the bounds hold exactly; report seconds.
  const requestedMs =
    renewBeforeSeconds !== undefined
      ? renewBeforeSeconds * 1000
      : renewBeforePercentage !== undefined
        ? (lifetimeMs * renewBeforePercentage) / 100
        : lifetimeMs / 3;
  // Lower bound first, then the upper bound, so the upper bound wins when lifetime/2 < 60 s.
  const renewBeforeMs = Math.min(Math.max(requestedMs, MIN_RENEW_BEFORE_SECONDS * 1000), lifetimeMs / 2);
  const maxJitterMs = Math.min(JITTER_FRACTION * renewBeforeMs, MAX_JITTER_SECONDS * 1000);

  return {
    renewAtMs: Math.floor(expiresAtMs - renewBeforeMs - unit(random()) * maxJitterMs),
    effectiveRenewBeforeSeconds: renewBeforeMs / 1000,
    clamped: renewBeforeMs !== requestedMs,
  };
}

/** `spec.renewBefore` (resolved) as the fields of {@link RenewalInput}; undefined means the default (a third). */
export function renewBeforeFields(
  renewBefore: RenewBefore | undefined,
): Pick<RenewalInput, "renewBeforeSeconds" | "renewBeforePercentage"> {
  if (renewBefore === undefined) return {};
  return renewBefore.kind === "Duration"
    ? { renewBeforeSeconds: renewBefore.seconds }
    : { renewBeforePercentage: renewBefore.fraction * 100 };
}

/**
 * The renewal time of a token held under `renewBefore` (SPEC §3.1), epoch ms: {@link computeRenewal}
 * with the jitter draw `jitter` (in [0, 1)). A token whose receipt time is unknown (a target Secret
 * without a readable `issued-at` annotation) or not before its expiry (an impossible lifetime) has
 * no lifetime to take a share of: it is renewed at once (`nowMs`) rather than assumed to have
 * lived some fixed time. Never throws.
 */
export function renewalTimeMs(
  token: { receivedAtMs?: number; expiresAtMs: number },
  renewBefore: RenewBefore | undefined,
  jitter: number,
  nowMs: number,
): number {
  const { receivedAtMs, expiresAtMs } = token;
  if (receivedAtMs === undefined || !(receivedAtMs < expiresAtMs)) return nowMs; // NaN compares false too
  return computeRenewal({ receivedAtMs, expiresAtMs, ...renewBeforeFields(renewBefore), random: () => jitter })
    .renewAtMs;
}

/** Clamps a random draw into [0, 1]; NaN counts as 0. */
export function unit(value: number): number {
  return value > 0 ? Math.min(value, 1) : 0;
}
