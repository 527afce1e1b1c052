/**
 * How long to wait after a failed token fetch (SPEC §3.4), and `Retry-After` parsing (RFC 9110 §10.2.3).
 *
 * Pure: `random` and `nowMs` come from the caller. The caller clamps the delay further if it wants
 * (e.g. to retry before a still-valid token lapses).
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
