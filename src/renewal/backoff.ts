/**
 * How long to wait after a failed token fetch (SPEC §3.4), and `Retry-After` parsing (RFC 9110 §10.2.3).
 *
 * The backoff is a function of what the NexarToken's status records: `failedAttempts`,
 * `lastFailureTime`, `lastFailureReason`, and `nextAttemptTime`, the delay chosen when the failure
 * happened from its class, the server's `Retry-After` and the jitter draw. Nothing is kept in
 * memory, so it survives restarts and leader changes (cert-manager derives its issuance backoff
 * from status the same way).
 *
 * Pure: `random`/`jitter` and `nowMs` come from the caller.
 */
import { unit } from "./schedule.ts";

/**
 * Failure classes (SPEC §3.4):
 * - `credential`: `invalid_client`, `unauthorized_client`, `invalid_scope`, `invalid_grant`, 401/403;
 * - `transient`: 5xx, timeouts, resets, non-JSON bodies;
 * - `rateLimited`: HTTP 429.
 */
export type FailureKind = "credential" | "transient" | "rateLimited";

/** Input of {@link retryDelayMs}. */
export interface RetryDelayInput {
  kind: FailureKind;
  /** Consecutive failures so far, 1 = first failure; values below 1 (or NaN) count as 1. */
  failedAttempts: number;
  /** Server-requested delay in ms (from {@link parseRetryAfter}); used for `rateLimited` only. */
  retryAfterMs?: number;
  /** Uniform source in [0, 1), e.g. `Math.random`. */
  random: () => number;
}

/** Backoff constants, in milliseconds. */
export const BACKOFF = Object.freeze({
  credentialBaseMs: 5 * 60_000,
  credentialCapMs: 60 * 60_000,
  /** ± fraction applied to credential delays. */
  credentialJitter: 0.1,
  transientBaseMs: 2_000,
  transientCapMs: 5 * 60_000,
  rateLimitedBaseMs: 30_000,
  retryAfterMinMs: 1_000,
  retryAfterMaxMs: 15 * 60_000,
});

/**
 * Delay in ms before the next attempt after `failedAttempts` consecutive failures (n):
 * - `credential`: `d = min(5 min · 2^(n−1), 1 h)`, result in `[0.9·d, min(1.1·d, 1 h)]`
 *   (5, 10, 20, 40, 60, 60… min: a permanent `invalid_client` costs at most ~1 request per hour);
 * - `transient`: equal jitter, `d = min(2 s · 2^(n−1), 5 min)`, result in `[d/2, d]` (never near 0);
 * - `rateLimited`: `retryAfterMs` clamped to [1 s, 15 min] when given (not jittered: the server
 *   asked for it), else as `transient` but from 30 s.
 *
 * Never throws; the result is a finite, non-negative number of milliseconds.
 */
export function retryDelayMs(input: RetryDelayInput): number {
  const n = input.failedAttempts >= 1 ? Math.floor(input.failedAttempts) : 1;
  const r = unit(input.random());
  switch (input.kind) {
    case "credential": {
      const d = exponential(BACKOFF.credentialBaseMs, n, BACKOFF.credentialCapMs);
      const factor = 1 + BACKOFF.credentialJitter * (2 * r - 1);
      return Math.min(d * factor, BACKOFF.credentialCapMs);
    }
    case "transient":
      return equalJitter(exponential(BACKOFF.transientBaseMs, n, BACKOFF.transientCapMs), r);
    case "rateLimited": {
      const retryAfterMs = input.retryAfterMs;
      if (retryAfterMs !== undefined && !Number.isNaN(retryAfterMs)) {
        return Math.min(Math.max(retryAfterMs, BACKOFF.retryAfterMinMs), BACKOFF.retryAfterMaxMs);
      }
      return equalJitter(exponential(BACKOFF.rateLimitedBaseMs, n, BACKOFF.transientCapMs), r);
    }
  }
}

/** `min(base · 2^(n−1), cap)`; overflow to Infinity is capped. */
function exponential(baseMs: number, n: number, capMs: number): number {
  return Math.min(baseMs * 2 ** (n - 1), capMs);
}

/** Half fixed, half random: a value in [d/2, d]. */
function equalJitter(d: number, r: number): number {
  return d / 2 + (d / 2) * r;
}

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const MON = "(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)";
const TIME = "(\\d{2}):(\\d{2}):(\\d{2})";
/** RFC 9110 §5.6.7 IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`. */
const IMF_FIXDATE = new RegExp(`^(?:mon|tue|wed|thu|fri|sat|sun), (\\d{2}) ${MON} (\\d{4}) ${TIME} GMT$`, "i");
/** Obsolete RFC 850 form: `Sunday, 06-Nov-94 08:49:37 GMT`. */
const RFC850_DATE = new RegExp(
  `^(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday), (\\d{2})-${MON}-(\\d{2}) ${TIME} GMT$`,
  "i",
);
/** Obsolete asctime form: `Sun Nov  6 08:49:37 1994` (day space-padded; always UTC per RFC 9110). */
const ASCTIME_DATE = new RegExp(`^(?:mon|tue|wed|thu|fri|sat|sun) ${MON} ( \\d|\\d{2}) ${TIME} (\\d{4})$`, "i");

/**
 * Parses an HTTP `Retry-After` header value (RFC 9110 §10.2.3) into a delay in ms from `nowMs`.
 *
 * Accepts `delay-seconds` (digits; a leading `-` is tolerated and gives 0) or an HTTP-date in any
 * of the three forms of RFC 9110 §5.6.7 (IMF-fixdate, RFC 850, asctime), always read as UTC; a
 * two-digit RFC 850 year that would lie more than 50 years after `nowMs` is taken as the most
 * recent past year with those digits (RFC 9110 §5.6.7). The day of the week is not checked.
 *
 * @returns the delay in ms (0 for a past date or a negative number), or undefined for an absent,
 *   empty or unparseable value, or an impossible date such as 31 Feb. Never throws.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) {
    const ms = Number(text) * 1000;
    return Number.isFinite(ms) ? ms : undefined;
  }
  if (/^-\d+$/.test(text)) return 0;
  const dateMs = parseHttpDate(text, nowMs);
  return dateMs === undefined ? undefined : Math.max(0, dateMs - nowMs);
}

/** HTTP-date (three forms) → epoch ms, or undefined. */
function parseHttpDate(text: string, nowMs: number): number | undefined {
  let m = IMF_FIXDATE.exec(text);
  if (m) return utc(Number(m[3]), m[2], m[1], m[4], m[5], m[6]);
  m = ASCTIME_DATE.exec(text);
  if (m) return utc(Number(m[6]), m[1], m[2], m[3], m[4], m[5]);
  m = RFC850_DATE.exec(text);
  if (m) {
    const nowYear = new Date(nowMs).getUTCFullYear();
    const twoDigits = Number(m[3]);
    let year = nowYear - (nowYear % 100) + twoDigits;
    if (year > nowYear + 50) year -= 100;
    return utc(year, m[2], m[1], m[4], m[5], m[6]);
  }
  return undefined;
}

/** Builds a UTC instant from regex captures; undefined when a field is out of range. */
function utc(
  year: number,
  month: string | undefined,
  day: string | undefined,
  hour: string | undefined,
  minute: string | undefined,
  second: string | undefined,
): number | undefined {
  const mon = MONTHS.indexOf((month ?? "").toLowerCase());
  const [d, h, mi, s] = [day, hour, minute, second].map(Number) as [number, number, number, number];
  // Seconds up to 60 allow a leap second (it rolls into the next minute).
  if (mon < 0 || d < 1 || h > 23 || mi > 59 || s > 60) return undefined;
  // Reject days past the month's end (Date.UTC would roll 31 Feb into March).
  if (new Date(Date.UTC(year, mon, d)).getUTCDate() !== d) return undefined;
  return Date.UTC(year, mon, d, h, mi, s);
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

/**
 * Condition reasons of the `credential` class (SPEC §3.4); `RateLimited` is `rateLimited`; any
 * other reason is taken as `transient`. `RefreshTokenInvalid` is the controller's name for an
 * `invalid_grant` of the RefreshToken grant.
 */
export const CREDENTIAL_REASONS: ReadonlySet<string> = new Set([
  "InvalidClient",
  "UnauthorizedClient",
  "InvalidScope",
  "InvalidGrant",
  "RefreshTokenInvalid",
  "AccessDenied",
]);

/**
 * The failure class of a `status.lastFailureReason`, for when the failure itself is not known
 * (after a restart). `InvalidResponse` is ambiguous (a non-JSON body is transient, an unusable
 * 200 answer is credential) and is taken as transient. Never throws.
 */
export function failureKindOfReason(reason: string): FailureKind {
  if (CREDENTIAL_REASONS.has(reason)) return "credential";
  return reason === "RateLimited" ? "rateLimited" : "transient";
}

/** Input of {@link failureDelayMs}. Instants are epoch ms. */
export interface FailureDelayInput {
  kind: FailureKind;
  /** Consecutive failures so far, 1 = first. */
  failedAttempts: number;
  /** The server's `Retry-After`, ms ({@link parseRetryAfter}), whatever the status that carried it. */
  retryAfterMs?: number;
  /** Jitter draw in [0, 1) (0.5 = the nominal delay). */
  jitter: number;
  /**
   * Expiry of a still-valid token held for the same inputs: a transient (or rate-limited without
   * `Retry-After`) failure is then retried no later than half-way to it (but not sooner than the
   * scaled 2 s base), so an outage shorter than the renew-before window never lets it lapse.
   */
  validUntilMs?: number;
  nowMs: number;
  /** Factor on every base and cap (the test-only {@link BACKOFF_SCALE_ENV}; 1 in production). */
  scale: number;
}

/**
 * Delay in ms before the next attempt after `failedAttempts` consecutive failures of class
 * `kind` (SPEC §3.4), scaled by `scale`:
 * - credential and transient: {@link retryDelayMs} × scale; a credential failure keeps its long
 *   backoff even while a valid token is held (a permanent `invalid_client` must not turn into a
 *   storm as expiry nears);
 * - otherwise, while a valid token is held ({@link FailureDelayInput.validUntilMs}), at most half
 *   the time to its expiry, at least 2 s × scale;
 * - a `Retry-After` from the server, on any status (RFC 9110 §10.2.3 gives it to 503 and 3xx as
 *   well as 429): the delay is at least the server's (itself at least 1 s), capped at 15 min ×
 *   scale; for a rate-limited answer it is the server's delay as sent.
 * Never throws; the result is a non-negative whole number of ms.
 */
export function failureDelayMs(i: FailureDelayInput): number {
  const s = i.scale;
  const random = () => i.jitter;
  let delay: number;
  const asked =
    i.retryAfterMs === undefined || Number.isNaN(i.retryAfterMs)
      ? undefined
      : Math.min(Math.max(i.retryAfterMs, BACKOFF.retryAfterMinMs), BACKOFF.retryAfterMaxMs * s);
  if (i.kind === "rateLimited" && asked !== undefined) {
    delay = asked;
  } else {
    delay = retryDelayMs({ kind: i.kind, failedAttempts: i.failedAttempts, random }) * s;
    if (i.kind !== "credential" && i.validUntilMs !== undefined && i.validUntilMs > i.nowMs) {
      delay = Math.min(delay, Math.max((i.validUntilMs - i.nowMs) / 2, BACKOFF.transientBaseMs * s));
    }
    if (asked !== undefined) delay = Math.max(delay, asked);
  }
  return Math.max(0, Math.round(delay));
}

/** The failure fields of a NexarToken status (RFC 3339 times). */
export interface FailureStatus {
  failedAttempts?: number;
  lastFailureTime?: string;
  lastFailureReason?: string;
  /** {@link nextAttemptTime} of the delay chosen when the failure happened. */
  nextAttemptTime?: string;
}

/**
 * `status.nextAttemptTime` for an attempt due at `atMs` (epoch ms): RFC 3339 UTC with
 * milliseconds, rounded up (a scaled test backoff is shorter than a second). Never throws for a
 * finite `atMs`.
 */
export function nextAttemptTime(atMs: number): string {
  return new Date(Math.ceil(atMs)).toISOString();
}

/**
 * When the next attempt may start after the failures `status` records, epoch ms: its
 * `nextAttemptTime`, which holds the class, `Retry-After` and jitter of the failure as decided
 * then. A status without it (written by an older operator) gives `lastFailureTime` +
 * {@link failureDelayMs} for `failedAttempts`, the class of `lastFailureReason`, no `Retry-After`,
 * the nominal (mid-jitter) delay and `o.validUntilMs` (a valid token held for the same inputs).
 * @returns undefined when status records no failure (or an unreadable time).
 */
export function nextAttemptAtMs(
  status: FailureStatus,
  o: { validUntilMs?: number; nowMs: number; scale: number },
): number | undefined {
  const { failedAttempts, lastFailureTime, lastFailureReason } = status;
  if (!failedAttempts || !lastFailureTime || !lastFailureReason) return undefined;
  const recorded = status.nextAttemptTime === undefined ? NaN : Date.parse(status.nextAttemptTime);
  if (Number.isFinite(recorded)) return recorded;
  const failedAtMs = Date.parse(lastFailureTime);
  if (!Number.isFinite(failedAtMs)) return undefined;
  return (
    failedAtMs +
    failureDelayMs({
      kind: failureKindOfReason(lastFailureReason),
      failedAttempts,
      jitter: 0.5,
      validUntilMs: o.validUntilMs,
      nowMs: o.nowMs,
      scale: o.scale,
    })
  );
}

/** Input of {@link backoffGate}. Instants are epoch ms. */
export interface BackoffGateInput {
  /** {@link nextAttemptAtMs} of the failures recorded (undefined: none). */
  nextAttemptAtMs: number | undefined;
  nowMs: number;
  /** What changed since the failed fetch: the spec (generation) or the credentials (fingerprint). */
  changedSinceFailure: "SpecChanged" | "CredentialsChanged" | undefined;
  /** A refresh annotation value not attempted yet. */
  newRefreshRequest: boolean;
}

/**
 * May a fetch the trigger policies ask for go out now, or does the failure backoff hold it
 * (SPEC §3.4)? A change of the spec or the credentials since the failed fetch, and a new value of
 * the refresh annotation, go at once whatever the backoff; anything else (a resync, a
 * metadata-only edit, another Secret's event) waits for {@link nextAttemptAtMs}.
 */
export function backoffGate(i: BackoffGateInput): { hold: false } | { hold: true; untilMs: number } {
  if (i.nextAttemptAtMs === undefined || i.changedSinceFailure !== undefined || i.newRefreshRequest) {
    return { hold: false };
  }
  return i.nowMs < i.nextAttemptAtMs ? { hold: true, untilMs: i.nextAttemptAtMs } : { hold: false };
}
