/**
 * Per-client token-issuance limiter (SPEC §1 "issuance limits", §3.3): Nexar issues at most
 * 2 tokens per second, 200 per 15 minutes, 3,000 per 12 hours and 40,000 per week to one client.
 *
 * Pure bookkeeping, no timers and no clock reads: the caller passes `nowMs` and sleeps for the
 * delay it is given. The algorithm is an exact sliding-window log over several windows at once,
 * used as a *reservation* scheduler (like `golang.org/x/time/rate`'s `Reserve`): each call books
 * the earliest instant at which one more issuance keeps every window within its limit, and
 * records it. Bookings are monotone per key, so callers are served first come, first served — the
 * limiter queues, it never refuses.
 */
import { parseGoDuration } from "../api/duration.ts";

/** One limit: at most `limit` issuances in any sliding window of `windowMs` milliseconds. */
export interface RateWindow {
  /** Positive integer. */
  readonly limit: number;
  /** Positive, milliseconds. */
  readonly windowMs: number;
}

/** Nexar's published issuance limits (SPEC §1): 2/s, 200/15 min, 3,000/12 h, 40,000/week. */
export const NEXAR_ISSUANCE_LIMITS: readonly RateWindow[] = Object.freeze([
  { limit: 2, windowMs: 1_000 },
  { limit: 200, windowMs: 15 * 60_000 },
  { limit: 3_000, windowMs: 12 * 3_600_000 },
  { limit: 40_000, windowMs: 7 * 24 * 3_600_000 },
]);

/** The flag/env syntax of {@link NEXAR_ISSUANCE_LIMITS}. */
export const DEFAULT_ISSUANCE_LIMITS_FLAG = "2/1s,200/15m,3000/12h,40000/168h";

/**
 * Parses a limit list such as `"2/1s,200/15m,3000/12h,40000/168h"`: comma-separated
 * `<count>/<Go duration>` items (durations as `spec.renewBefore`, see `parseGoDuration`).
 * `"none"` (or an empty string) means no limit at all (an empty list).
 * @throws RangeError naming the bad item when a count is not a positive integer or a duration is
 *   not a positive Go duration.
 */
export function parseIssuanceLimits(spec: string): RateWindow[] {
  const trimmed = spec.trim();
  if (trimmed === "" || trimmed.toLowerCase() === "none") return [];
  return trimmed.split(",").map((raw) => {
    const item = raw.trim();
    const m = /^(\d+)\/(.+)$/.exec(item);
    if (!m) throw new RangeError(`issuance limit "${item}": expected <count>/<duration>, e.g. 200/15m`);
    const limit = Number(m[1]);
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new RangeError(`issuance limit "${item}": count must be a positive integer`);
    }
    const windowMs = parseGoDuration((m[2] as string).trim()) * 1000;
    if (!(windowMs > 0)) throw new RangeError(`issuance limit "${item}": duration must be positive`);
    return { limit, windowMs };
  });
}

/** Result of {@link IssuanceLimiter.reserve}. */
export interface Reservation {
  /** Booked instant of the issuance, epoch ms (≥ `nowMs`). */
  atMs: number;
  /** `atMs − nowMs`: how long the caller must wait before sending, ms (0 = at once). */
  delayMs: number;
}

interface KeyState {
  /** Booked issuance instants, ascending, covering at least the longest window before the last one. */
  log: number[];
  /** Head index into `log` (entries before it are pruned lazily). */
  head: number;
  /** No issuance before this instant (a server `Retry-After`), epoch ms. */
  blockedUntilMs: number;
}

/**
 * Sliding-window-log limiter keyed by client (use token URL + client id). Memory per key is
 * bounded by the largest `limit` (40,000 numbers ≈ 320 KB only for a client that actually issued
 * 40,000 tokens in a week); idle keys are dropped by {@link prune}.
 */
export class IssuanceLimiter {
  readonly windows: readonly RateWindow[];
  readonly #maxWindowMs: number;
  readonly #maxLimit: number;
  readonly #keys = new Map<string, KeyState>();

  /** @throws RangeError when a window has a non-positive or non-integer limit or a non-positive duration. */
  constructor(windows: readonly RateWindow[] = NEXAR_ISSUANCE_LIMITS) {
    for (const w of windows) {
      if (!Number.isSafeInteger(w.limit) || w.limit < 1 || !(w.windowMs > 0) || !Number.isFinite(w.windowMs)) {
        throw new RangeError(`invalid issuance window ${w.limit}/${w.windowMs}ms`);
      }
    }
    this.windows = Object.freeze([...windows]);
    this.#maxWindowMs = Math.max(0, ...windows.map((w) => w.windowMs));
    this.#maxLimit = Math.max(0, ...windows.map((w) => w.limit));
  }

  /**
   * The earliest instant ≥ `nowMs` at which one more issuance for `key` would keep every window
   * within its limit, given the bookings so far and any block; epoch ms. Does not book.
   */
  nextFreeMs(key: string, nowMs: number): number {
    const s = this.#keys.get(key);
    if (!s) return nowMs;
    let at = nowMs;
    const n = s.log.length - s.head;
    if (n > 0) at = Math.max(at, s.log[s.log.length - 1] as number); // FIFO: never before the last booking
    for (const w of this.windows) {
      // With t ≥ every booking, the window (t − w, t] holds every booking > t − w. It stays under
      // the limit iff the limit-th most recent booking is ≤ t − w.
      if (n >= w.limit) at = Math.max(at, (s.log[s.log.length - w.limit] as number) + w.windowMs);
    }
    return at;
  }

  /** Books one issuance for `key` at {@link nextFreeMs} and returns when and how long to wait. */
  reserve(key: string, nowMs: number): Reservation {
    const atMs = this.nextFreeMs(key, nowMs);
    if (this.windows.length > 0) {
      let s = this.#keys.get(key);
      if (!s) {
        s = { log: [], head: 0, blockedUntilMs: -Infinity };
        this.#keys.set(key, s);
      }
      s.log.push(atMs);
      this.#compact(s, nowMs);
    }
    return { atMs, delayMs: atMs - nowMs };
  }

  /**
   * Records that issuance for `key` should not happen before `untilMs` (e.g. after an HTTP 429
   * with `Retry-After`, RFC 9110 §10.2.3). The block is a separate gate, not part of the
   * bookings: callers that honour it wait for {@link blockedUntilMs} first and then
   * {@link reserve}, so a caller allowed to ignore it (an explicit user request) is not queued
   * behind the blocked ones. An earlier block never shortens a later one.
   */
  block(key: string, untilMs: number): void {
    let s = this.#keys.get(key);
    if (!s) {
      s = { log: [], head: 0, blockedUntilMs: -Infinity };
      this.#keys.set(key, s);
    }
    s.blockedUntilMs = Math.max(s.blockedUntilMs, untilMs);
  }

  /** End of the block of `key` (see {@link block}), epoch ms; `-Infinity` when none was set. */
  blockedUntilMs(key: string): number {
    return this.#keys.get(key)?.blockedUntilMs ?? -Infinity;
  }

  /** Bookings of `key` inside `(nowMs − windowMs, ∞)`, i.e. counted against a window ending now or later. */
  count(key: string, nowMs: number, windowMs: number): number {
    const s = this.#keys.get(key);
    if (!s) return 0;
    let c = 0;
    for (let i = s.log.length - 1; i >= s.head && (s.log[i] as number) > nowMs - windowMs; i--) c++;
    return c;
  }

  /** Number of keys with state. */
  size(): number {
    return this.#keys.size;
  }

  /** Drops keys whose bookings are all older than the longest window and that are not blocked. */
  prune(nowMs: number): void {
    for (const [key, s] of this.#keys) {
      this.#compact(s, nowMs);
      if (s.log.length - s.head === 0 && s.blockedUntilMs <= nowMs) this.#keys.delete(key);
    }
  }

  /**
   * Drops bookings that can no longer matter: older than the longest window, and beyond the
   * `maxLimit` most recent ones (only those are ever consulted by {@link nextFreeMs}).
   */
  #compact(s: KeyState, nowMs: number): void {
    const keepFrom = Math.max(s.head, s.log.length - this.#maxLimit);
    let h = keepFrom;
    while (h < s.log.length && (s.log[h] as number) <= nowMs - this.#maxWindowMs) h++;
    s.head = h;
    if (s.head > 1024 && s.head * 2 > s.log.length) {
      s.log.splice(0, s.head);
      s.head = 0;
    } else if (s.head === s.log.length) {
      s.log.length = 0;
      s.head = 0;
    }
  }
}
