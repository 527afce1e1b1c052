import { describe, it, expect } from "vitest";
import {
  DEFAULT_ISSUANCE_LIMITS_FLAG,
  IssuanceLimiter,
  NEXAR_ISSUANCE_LIMITS,
  parseIssuanceLimits,
  type RateWindow,
} from "./limiter.ts";

/** Books `n` issuances as fast as the limiter allows, starting at `startMs`; returns the booked instants. */
function drain(l: IssuanceLimiter, key: string, n: number, startMs = 0): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(l.reserve(key, startMs).atMs);
  return out;
}

/** Largest number of instants in any half-open window (t − w, t] of `times`. */
function maxInWindow(times: number[], windowMs: number): number {
  let best = 0;
  let lo = 0;
  for (let hi = 0; hi < times.length; hi++) {
    while ((times[lo] as number) <= (times[hi] as number) - windowMs) lo++;
    best = Math.max(best, hi - lo + 1);
  }
  return best;
}

describe("parseIssuanceLimits", () => {
  it("parses the default flag into Nexar's published limits", () => {
    expect(parseIssuanceLimits(DEFAULT_ISSUANCE_LIMITS_FLAG)).toEqual(NEXAR_ISSUANCE_LIMITS);
  });

  it("accepts spaces and fractional durations; none or empty disables", () => {
    expect(parseIssuanceLimits(" 5/1.5s , 10/1m ")).toEqual([
      { limit: 5, windowMs: 1_500 },
      { limit: 10, windowMs: 60_000 },
    ]);
    expect(parseIssuanceLimits("none")).toEqual([]);
    expect(parseIssuanceLimits("")).toEqual([]);
  });

  it("rejects malformed items with a message naming the item", () => {
    expect(() => parseIssuanceLimits("2/1s,abc")).toThrow(/"abc"/);
    expect(() => parseIssuanceLimits("0/1s")).toThrow(RangeError);
    expect(() => parseIssuanceLimits("2/0s")).toThrow(RangeError);
    expect(() => parseIssuanceLimits("2/-1s")).toThrow(RangeError);
    expect(() => parseIssuanceLimits("2/1parsec")).toThrow(RangeError);
  });
});

describe("IssuanceLimiter", () => {
  it("lets a burst of 2 through at once, then spaces issuances 1 s apart per pair (2/s)", () => {
    const l = new IssuanceLimiter([{ limit: 2, windowMs: 1_000 }]);
    expect(drain(l, "c", 6)).toEqual([0, 0, 1_000, 1_000, 2_000, 2_000]);
  });

  it("queues instead of refusing: delays grow, nothing throws, order is first come first served", () => {
    const l = new IssuanceLimiter([{ limit: 1, windowMs: 100 }]);
    const r = [l.reserve("c", 0), l.reserve("c", 10), l.reserve("c", 20)];
    expect(r.map((x) => x.atMs)).toEqual([0, 100, 200]);
    expect(r.map((x) => x.delayMs)).toEqual([0, 90, 180]);
  });

  it("frees a slot as the window slides past old issuances", () => {
    const l = new IssuanceLimiter([{ limit: 2, windowMs: 1_000 }]);
    l.reserve("c", 0);
    l.reserve("c", 600);
    expect(l.nextFreeMs("c", 700)).toBe(1_000);
    expect(l.nextFreeMs("c", 1_200)).toBe(1_200);
    expect(l.nextFreeMs("c", 1_700)).toBe(1_700);
  });

  it("keeps clients independent", () => {
    const l = new IssuanceLimiter([{ limit: 1, windowMs: 1_000 }]);
    expect(l.reserve("a", 0).delayMs).toBe(0);
    expect(l.reserve("b", 0).delayMs).toBe(0);
    expect(l.reserve("a", 0).delayMs).toBe(1_000);
  });

  it("never exceeds any of Nexar's four windows over a long burst (exact sliding windows)", () => {
    // Scaled copy of the real limits (÷ 10 in count, same ratios of time) so the test stays fast.
    const windows: RateWindow[] = [
      { limit: 2, windowMs: 1_000 },
      { limit: 20, windowMs: 90_000 },
      { limit: 300, windowMs: 4_320_000 },
      { limit: 4_000, windowMs: 60_480_000 },
    ];
    const l = new IssuanceLimiter(windows);
    const times = drain(l, "c", 5_000);
    for (const w of windows) expect(maxInWindow(times, w.windowMs)).toBeLessThanOrEqual(w.limit);
    // and it is not needlessly slow: each window is filled up to its limit somewhere
    for (const w of windows) expect(maxInWindow(times, w.windowMs)).toBe(w.limit);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it("enforces the real defaults: the 201st issuance in 15 minutes waits for the first to leave the window", () => {
    const l = new IssuanceLimiter(NEXAR_ISSUANCE_LIMITS);
    const times = drain(l, "c", 201);
    expect(times[199]).toBe(99_000); // 2/s: pairs at 0, 1 s, … 99 s
    expect(times[200]).toBe(15 * 60_000); // window of the first (t = 0) has passed
    expect(maxInWindow(times, 15 * 60_000)).toBe(200);
  });

  it("keeps a block (Retry-After) as a separate gate; a shorter later block does not shorten it", () => {
    const l = new IssuanceLimiter([{ limit: 10, windowMs: 1_000 }]);
    expect(l.blockedUntilMs("c")).toBe(-Infinity);
    l.block("c", 5_000);
    l.block("c", 2_000);
    expect(l.blockedUntilMs("c")).toBe(5_000);
    expect(l.blockedUntilMs("other")).toBe(-Infinity);
    // bookings are not delayed by the block itself: the caller waits for it first if it honours it
    expect(l.reserve("c", 1_000).delayMs).toBe(0);
    l.prune(4_000);
    expect(l.blockedUntilMs("c")).toBe(5_000); // a blocked key is kept
  });

  it("with no windows it never delays and keeps no state", () => {
    const l = new IssuanceLimiter([]);
    for (let i = 0; i < 100; i++) expect(l.reserve("c", 5).delayMs).toBe(0);
    expect(l.size()).toBe(0);
  });

  it("counts bookings in a window and prunes idle keys", () => {
    const l = new IssuanceLimiter([{ limit: 5, windowMs: 1_000 }]);
    drain(l, "a", 3, 0);
    expect(l.count("a", 500, 1_000)).toBe(3);
    expect(l.count("a", 1_000, 1_000)).toBe(0);
    l.prune(999);
    expect(l.size()).toBe(1);
    l.prune(1_000);
    expect(l.size()).toBe(0);
  });

  it("bounds memory: only the most recent max-limit bookings are kept", () => {
    const l = new IssuanceLimiter([{ limit: 3, windowMs: 10_000_000 }]);
    for (let i = 0; i < 10_000; i++) l.reserve("c", i * 10_000_000);
    expect(l.count("c", 10_000 * 10_000_000, 1e12)).toBeLessThanOrEqual(3);
  });

  it("rejects invalid windows", () => {
    expect(() => new IssuanceLimiter([{ limit: 0, windowMs: 1 }])).toThrow(RangeError);
    expect(() => new IssuanceLimiter([{ limit: 1.5, windowMs: 1 }])).toThrow(RangeError);
    expect(() => new IssuanceLimiter([{ limit: 1, windowMs: 0 }])).toThrow(RangeError);
    expect(() => new IssuanceLimiter([{ limit: 1, windowMs: Infinity }])).toThrow(RangeError);
  });
});
