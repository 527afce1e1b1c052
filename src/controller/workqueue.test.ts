import { describe, it, expect, vi, afterEach } from "vitest";
import { WorkQueue } from "./workqueue.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("WorkQueue", () => {
  it("collapses duplicate adds", async () => {
    const q = new WorkQueue();
    q.add("a/x");
    q.add("a/x");
    q.add("a/y");
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe("a/x");
    expect(await q.get()).toBe("a/y");
  });

  it("never hands one key to two workers; an add during processing re-queues on done", async () => {
    const q = new WorkQueue();
    q.add("k");
    expect(q.isProcessing("k")).toBe(false);
    const k = await q.get();
    expect(k).toBe("k");
    expect(q.isProcessing("k")).toBe(true);
    q.add("k");
    expect(q.len()).toBe(0);
    q.done("k");
    expect(q.isProcessing("k")).toBe(false);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe("k");
  });

  it("wakes a waiting worker on add", async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.add("k");
    expect(await p).toBe("k");
  });

  it("addAfter keeps the earliest time per key and uses the clock", async () => {
    vi.useFakeTimers();
    const q = new WorkQueue(() => Date.now());
    q.addAfter("k", 10_000);
    q.addAfter("k", 2_000);
    q.addAfter("k", 5_000);
    expect(q.delayedLen()).toBe(1);
    vi.advanceTimersByTime(1_999);
    expect(q.len()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(q.len()).toBe(1);
    expect(q.delayedLen()).toBe(0);
  });

  it("fires many delayed keys in time order with one timer", async () => {
    vi.useFakeTimers();
    const q = new WorkQueue(() => Date.now());
    const delays = Array.from({ length: 200 }, (_, i) => ((i * 7919) % 200) * 10 + 10);
    delays.forEach((d, i) => q.addAfter(`k${i}`, d));
    const got: string[] = [];
    for (let t = 0; t < 2_100; t += 10) {
      vi.advanceTimersByTime(10);
      while (q.len() > 0) got.push((await q.get()) as string);
    }
    expect(got).toHaveLength(200);
    const times = got.map((k) => delays[Number(k.slice(1))] as number);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
  });

  it("shutdown releases waiting workers", async () => {
    const q = new WorkQueue();
    const p = q.get();
    q.shutDown();
    expect(await p).toBeUndefined();
  });
});
