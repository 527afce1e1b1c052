/**
 * Per-item exponential failure rate limiter for the work queue, after client-go's
 * `workqueue.ItemExponentialFailureRateLimiter` (the per-item half of controller-runtime's default
 * controller rate limiter). Pure bookkeeping: it returns delays and never sets a timer.
 */

/** Options of {@link ItemExponentialFailureRateLimiter}, in milliseconds. */
export interface ItemExponentialFailureRateLimiterOptions {
  /** Delay of the first requeue; default 5 ms (client-go's default). */
  baseDelayMs?: number;
  /** Upper bound of any delay; default 1000 s (client-go's default). */
  maxDelayMs?: number;
}

/**
 * Per-key exponential backoff: the k-th consecutive `when(key)` (k = 0, 1, …) returns
 * `min(baseDelayMs · 2^k, maxDelayMs)` ms; `forget(key)` resets the key after a success.
 * Keys are compared with `Map` semantics (use "namespace/name" strings).
 */
export class ItemExponentialFailureRateLimiter<K = string> {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly #failures = new Map<K, number>();

  /** @throws RangeError if a delay is negative or not a number. */
  constructor(options: ItemExponentialFailureRateLimiterOptions = {}) {
    this.baseDelayMs = options.baseDelayMs ?? 5;
    this.maxDelayMs = options.maxDelayMs ?? 1_000_000;
    if (!(this.baseDelayMs >= 0) || !(this.maxDelayMs >= 0)) {
      throw new RangeError("baseDelayMs and maxDelayMs must be non-negative");
    }
  }

  /** Records one more failure of `key` and returns how long to wait before requeueing it, in ms. */
  when(key: K): number {
    const exp = this.#failures.get(key) ?? 0;
    this.#failures.set(key, exp + 1);
    return Math.min(this.baseDelayMs * 2 ** exp, this.maxDelayMs);
  }

  /** Clears the failure count of `key` (call after a successful reconcile or when the object is gone). */
  forget(key: K): void {
    this.#failures.delete(key);
  }

  /** How many times `key` was requeued through {@link when} since it was last forgotten. */
  numRequeues(key: K): number {
    return this.#failures.get(key) ?? 0;
  }
}
