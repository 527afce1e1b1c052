import type { QueueMetrics } from "../observability/metrics.ts";

/**
 * A work queue with the semantics of client-go's `workqueue` as used by controller-runtime:
 *
 * - keys (`namespace/name`) are deduplicated: adding a key that is already waiting is a no-op;
 * - a key being processed is never handed to a second worker; if it is added meanwhile it is
 *   queued again when {@link WorkQueue.done} is called (so no event is lost);
 * - {@link WorkQueue.addAfter} schedules a key for later, keeping only the earliest time per key,
 *   with ONE timer for the whole queue (a binary heap), not one per key;
 * - nothing is ever dropped: shutdown is the only way out.
 *
 * Pure data structure plus one timer; the clock is injectable for tests. Metrics are reported
 * through explicit hooks ({@link QueueMetrics}, as client-go's queue reports to its
 * `MetricsProvider`).
 */
export class WorkQueue {
  private readonly queue: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private readonly delayed = new DelayHeap();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private shuttingDown = false;
  private readonly now: () => number;
  private readonly metrics: QueueMetrics | undefined;

  /**
   * @param now clock in epoch milliseconds (default `Date.now`).
   * @param metrics hooks told of every add, hand-out and finish (default none).
   */
  constructor(now: () => number = Date.now, metrics?: QueueMetrics) {
    this.now = now;
    this.metrics = metrics;
  }

  /** Queue `key` now (deduplicated). */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics?.add(key);
    this.enqueue(key);
  }

  /** Marks `key` dirty and hands it to a waiting worker or queues it (unless it is being processed). */
  private enqueue(key: string): void {
    this.dirty.add(key);
    if (this.processing.has(key)) return;
    const w = this.waiters.shift();
    if (w) {
      this.dirty.delete(key);
      this.processing.add(key);
      this.metrics?.get(key);
      w(key);
      return;
    }
    this.queue.push(key);
  }

  /** Queue `key` after `delayMs` milliseconds; an earlier pending time for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) return this.add(key);
    this.delayed.push(key, this.now() + delayMs);
    this.arm();
  }

  /** Epoch ms at which `key` is scheduled, if it is. */
  scheduledAt(key: string): number | undefined {
    return this.delayed.timeOf(key);
  }

  /** Waits for the next key; resolves `undefined` once the queue is shut down. */
  get(): Promise<string | undefined> {
    if (this.head < this.queue.length) {
      const key = this.queue[this.head++] as string;
      if (this.head > 1024 && this.head * 2 > this.queue.length) {
        this.queue.splice(0, this.head);
        this.head = 0;
      }
      this.dirty.delete(key);
      this.processing.add(key);
      this.metrics?.get(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` finished; re-queues it if it was added while being processed. */
  done(key: string): void {
    if (!this.processing.delete(key)) return;
    this.metrics?.done(key);
    if (this.dirty.has(key)) {
      this.dirty.delete(key);
      if (!this.shuttingDown) this.enqueue(key);
    }
  }

  /** Keys waiting now (not delayed, not processing). */
  len(): number {
    return this.queue.length - this.head;
  }

  /** Keys scheduled for later. */
  delayedLen(): number {
    return this.delayed.size();
  }

  /** True while `key` is handed to a worker (between {@link get} and {@link done}). */
  isProcessing(key: string): boolean {
    return this.processing.has(key);
  }

  /** Keys being processed. */
  processingLen(): number {
    return this.processing.size;
  }

  /** Stops handing out keys; pending `get` calls resolve `undefined`. */
  shutDown(): void {
    this.shuttingDown = true;
    clearTimeout(this.timer);
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private arm(): void {
    const next = this.delayed.peekTime();
    if (next === undefined || next >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(() => this.fire(), Math.max(0, next - this.now()));
    this.timer.unref?.();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = this.now();
    for (;;) {
      const t = this.delayed.peekTime();
      if (t === undefined || t > now) break;
      const key = this.delayed.pop() as string;
      this.add(key);
    }
    this.arm();
  }
}

/** A min-heap of (time, key) with at most one entry per key (the earliest). */
class DelayHeap {
  private readonly heap: { at: number; key: string }[] = [];
  private readonly index = new Map<string, number>();

  size(): number {
    return this.heap.length;
  }

  timeOf(key: string): number | undefined {
    const i = this.index.get(key);
    return i === undefined ? undefined : this.heap[i]?.at;
  }

  peekTime(): number | undefined {
    return this.heap[0]?.at;
  }

  push(key: string, at: number): void {
    const i = this.index.get(key);
    if (i !== undefined) {
      const e = this.heap[i] as { at: number; key: string };
      if (at >= e.at) return;
      e.at = at;
      this.up(i);
      return;
    }
    this.heap.push({ at, key });
    this.index.set(key, this.heap.length - 1);
    this.up(this.heap.length - 1);
  }

  pop(): string | undefined {
    const top = this.heap[0];
    if (!top) return undefined;
    const last = this.heap.pop() as { at: number; key: string };
    this.index.delete(top.key);
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.index.set(last.key, 0);
      this.down(0);
    }
    return top.key;
  }

  private swap(a: number, b: number): void {
    const ea = this.heap[a] as { at: number; key: string };
    const eb = this.heap[b] as { at: number; key: string };
    this.heap[a] = eb;
    this.heap[b] = ea;
    this.index.set(eb.key, a);
    this.index.set(ea.key, b);
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if ((this.heap[p] as { at: number }).at <= (this.heap[i] as { at: number }).at) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && (this.heap[l] as { at: number }).at < (this.heap[m] as { at: number }).at) m = l;
      if (r < n && (this.heap[r] as { at: number }).at < (this.heap[m] as { at: number }).at) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}
