import { describe, it, expect } from "vitest";
import { ItemExponentialFailureRateLimiter } from "./ratelimit.ts";

describe("ItemExponentialFailureRateLimiter", () => {
  it("defaults to client-go's 5 ms base and 1000 s cap", () => {
    const rl = new ItemExponentialFailureRateLimiter();
    expect(rl.baseDelayMs).toBe(5);
    expect(rl.maxDelayMs).toBe(1_000_000);
  });

  it("doubles per failure from 5 ms up to the 1000 s cap", () => {
    const rl = new ItemExponentialFailureRateLimiter();
    const delays = Array.from({ length: 22 }, () => rl.when("ns/a"));
    // 5·2^k for k = 0..17 (655 360 ms), then 5·2^18 = 1 310 720 ms > cap.
    expect(delays.slice(0, 18)).toEqual(Array.from({ length: 18 }, (_, k) => 5 * 2 ** k));
    expect(delays.slice(18)).toEqual([1_000_000, 1_000_000, 1_000_000, 1_000_000]);
    expect(rl.numRequeues("ns/a")).toBe(22);
  });

  it("keeps keys independent and forget() resets one key only", () => {
    const rl = new ItemExponentialFailureRateLimiter();
    expect([rl.when("a"), rl.when("a"), rl.when("b"), rl.when("a")]).toEqual([5, 10, 5, 20]);
    expect(rl.numRequeues("a")).toBe(3);
    expect(rl.numRequeues("b")).toBe(1);
    rl.forget("a");
    expect(rl.numRequeues("a")).toBe(0);
    expect(rl.when("a")).toBe(5);
    expect(rl.when("b")).toBe(10);
    rl.forget("never-seen");
    expect(rl.numRequeues("never-seen")).toBe(0);
  });

  it("accepts custom delays and stays finite after very many failures", () => {
    const rl = new ItemExponentialFailureRateLimiter<number>({
      baseDelayMs: 100,
      maxDelayMs: 1_000,
    });
    expect([rl.when(1), rl.when(1), rl.when(1), rl.when(1), rl.when(1)]).toEqual([100, 200, 400, 800, 1_000]);
    for (let i = 0; i < 5_000; i++) rl.when(2);
    expect(rl.when(2)).toBe(1_000);
  });

  it("rejects negative or NaN delays", () => {
    expect(() => new ItemExponentialFailureRateLimiter({ baseDelayMs: -1 })).toThrow(RangeError);
    expect(() => new ItemExponentialFailureRateLimiter({ maxDelayMs: Number.NaN })).toThrow(RangeError);
  });

  it("does not retain forgotten keys", () => {
    const rl = new ItemExponentialFailureRateLimiter();
    for (let i = 0; i < 1_000; i++) {
      rl.when(`ns/${i}`);
      rl.forget(`ns/${i}`);
    }
    for (let i = 0; i < 1_000; i++) expect(rl.numRequeues(`ns/${i}`)).toBe(0);
  });
});
