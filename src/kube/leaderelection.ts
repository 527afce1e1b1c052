/**
 * Leader election with client-go semantics (k8s.io/client-go `tools/leaderelection/leaderelection.go`):
 *
 * - A candidate judges a lease expired by its OWN monotonic clock: the lease is valid until the
 *   local time at which the candidate last saw the record change, plus `leaseDurationSeconds`.
 *   The holder's `renewTime` is never compared with the local clock, so clock skew between
 *   replicas does not matter (only the skew *rate* does).
 * - Every write is an optimistic-concurrency update (the lock sends the `resourceVersion` it last
 *   read); a lost race is a 409 Conflict and simply a failed attempt.
 * - The leader renews every RetryPeriod; a renewal round that does not succeed within
 *   RenewDeadline means leadership is lost. Candidates retry every RetryPeriod with jitter
 *   (client-go `wait.JitterUntil`, JitterFactor 1.2: 2 s … 4.4 s).
 * - On graceful shutdown the leader releases the Lease (client-go `ReleaseOnCancel`): empty
 *   `holderIdentity`, `leaseDurationSeconds: 1`, so a standby takes over at its next attempt.
 *   Beyond client-go: a standby whose lock can watch the Lease ({@link LeaseLock.watchReleased})
 *   makes that attempt as soon as it sees the release, instead of up to 4.4 s later. So when a
 *   leader pod is deleted, the warm standby takes over, not the cold replacement pod the
 *   ReplicaSet starts at the same moment.
 *
 * The decisions are pure functions below (unit-tested); {@link LeaderElector} runs them against a
 * {@link LeaseLock} (the Lease I/O adapter is `src/kube/lease.ts`).
 */
import type { Logger } from "pino";

/** client-go core-component defaults (`LeaseDuration` 15 s, `RenewDeadline` 10 s, `RetryPeriod` 2 s), milliseconds. */
export const DEFAULT_LEASE_DURATION_MS = 15_000;
/** See {@link DEFAULT_LEASE_DURATION_MS}. */
export const DEFAULT_RENEW_DEADLINE_MS = 10_000;
/** See {@link DEFAULT_LEASE_DURATION_MS}. */
export const DEFAULT_RETRY_PERIOD_MS = 2_000;
/** client-go `leaderelection.JitterFactor`: a candidate waits RetryPeriod × (1 + U[0,1) × 1.2) between attempts. */
export const JITTER_FACTOR = 1.2;

/**
 * The election state held in the Lease spec (client-go `resourcelock.LeaderElectionRecord`).
 * `holderIdentity` is `""` when nobody holds the lease (released). Times are Kubernetes
 * `MicroTime` strings (RFC 3339 with 6 fractional digits, UTC), kept verbatim as read.
 */
export interface LeaderElectionRecord {
  holderIdentity: string;
  /** Seconds a candidate waits, after it last saw the record change, before taking over. */
  leaseDurationSeconds: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions: number;
}

/** A record together with the LOCAL monotonic time (ms, e.g. `performance.now()`) at which it was first seen in this form. */
export interface Observation {
  record: LeaderElectionRecord;
  observedAtMs: number;
}

/** Timing of an election, milliseconds. */
export interface ElectionTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  jitterFactor: number;
}

/**
 * Checks the timing the way client-go `NewLeaderElector` does.
 * @throws RangeError unless leaseDuration > renewDeadline > jitterFactor × retryPeriod > 0.
 */
export function validateTiming(t: ElectionTiming): void {
  if (!(t.retryPeriodMs > 0)) throw new RangeError("retryPeriod must be greater than zero");
  if (!(t.leaseDurationMs > t.renewDeadlineMs))
    throw new RangeError("leaseDuration must be greater than renewDeadline");
  if (!(t.renewDeadlineMs > t.jitterFactor * t.retryPeriodMs))
    throw new RangeError("renewDeadline must be greater than retryPeriod*JitterFactor");
}

/**
 * Formats epoch milliseconds (fractions allowed, kept to the microsecond) as a Kubernetes
 * `MicroTime`: RFC 3339 in UTC with exactly six fractional digits, e.g.
 * `2026-11-30T02:00:00.123456Z` (apimachinery `metav1.RFC3339Micro`).
 * @throws RangeError for a non-finite or out-of-range time.
 */
export function formatMicroTime(epochMs: number): string {
  if (!Number.isFinite(epochMs)) throw new RangeError("time is not finite");
  const micros = Math.round(epochMs * 1000);
  const wholeMs = Math.floor(micros / 1000);
  const subMs = micros - wholeMs * 1000; // 0..999 µs
  const iso = new Date(wholeMs).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, 23)}${String(subMs).padStart(3, "0")}Z`;
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/i;

/**
 * Parses an RFC 3339 time (any number of fractional digits up to nanoseconds, `Z` or an offset)
 * to epoch milliseconds, keeping microseconds as a fraction (e.g. `…00.123456Z` → `….123456` ms
 * part `123.456`). Only for display and metrics: elections never compare it with the local clock.
 * @throws RangeError when the string is not RFC 3339.
 */
export function parseMicroTime(s: string): number {
  const m = RFC3339.exec(s);
  if (!m) throw new RangeError(`not an RFC 3339 time: ${JSON.stringify(s)}`);
  const base = Date.parse(`${m[1]}${m[3]?.toUpperCase() === "Z" ? "Z" : m[3]}`);
  if (Number.isNaN(base)) throw new RangeError(`not an RFC 3339 time: ${JSON.stringify(s)}`);
  const frac = m[2] ? Number(`0.${m[2]}`) : 0;
  return base + Math.round(frac * 1e6) / 1000;
}

/** True when two records are the same in every field (client-go compares the raw record). */
export function recordsEqual(a: LeaderElectionRecord, b: LeaderElectionRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    (a.acquireTime ?? "") === (b.acquireTime ?? "") &&
    (a.renewTime ?? "") === (b.renewTime ?? "") &&
    a.leaseTransitions === b.leaseTransitions
  );
}

/**
 * Folds a freshly read record into the observation: the local observe time moves only when the
 * record CHANGED (holder, renewTime, transitions, …) — a holder that stopped renewing keeps its
 * old observe time and so expires by the local clock.
 */
export function observe(prev: Observation | undefined, current: LeaderElectionRecord, nowMs: number): Observation {
  if (prev && recordsEqual(prev.record, current)) return prev;
  return { record: current, observedAtMs: nowMs };
}

/** Local monotonic time (ms) at which an observed lease expires: observe time + leaseDurationSeconds. */
export function expiresAtMs(obs: Observation): number {
  return obs.observedAtMs + obs.record.leaseDurationSeconds * 1000;
}

/** client-go `isLeaseValid`: the observed lease has not expired by the local clock at `nowMs`. */
export function leaseValid(obs: Observation, nowMs: number): boolean {
  return expiresAtMs(obs) > nowMs;
}

/** What a candidate or leader does after reading the Lease. */
export type Decision =
  /** The Lease does not exist: create it holding `record`. */
  | { action: "create"; record: LeaderElectionRecord }
  /** Write `record` (acquire when `acquiring`, else renew), preconditioned on the version read. */
  | { action: "update"; record: LeaderElectionRecord; acquiring: boolean }
  /** Another replica holds an unexpired lease; it expires (local clock, ms) at `expiresAtMs`. */
  | { action: "wait"; holder: string; expiresAtMs: number };

/** Inputs of {@link decide}. */
export interface DecideInput {
  identity: string;
  /** The record just read; `undefined` when the Lease does not exist (404). */
  current: LeaderElectionRecord | undefined;
  /** The observation after folding `current` in with {@link observe} (ignored when `current` is undefined). */
  observed: Observation | undefined;
  /** Local monotonic time, ms. */
  nowMs: number;
  /** Wall-clock time, epoch ms, written into `acquireTime`/`renewTime`. */
  wallMs: number;
  /** Lease duration this replica writes, seconds. */
  leaseDurationSeconds: number;
}

/**
 * client-go `tryAcquireOrRenew` steps 2–4 as a pure decision: create a missing Lease; wait while
 * another holder's lease is valid by the local observe time; otherwise write a record naming us —
 * keeping `acquireTime` and `leaseTransitions` when we already hold it (renew), or with a fresh
 * `acquireTime` and `leaseTransitions + 1` on takeover (an empty holder counts as a takeover).
 */
export function decide(i: DecideInput): Decision {
  const now = formatMicroTime(i.wallMs);
  const mine: LeaderElectionRecord = {
    holderIdentity: i.identity,
    leaseDurationSeconds: i.leaseDurationSeconds,
    acquireTime: now,
    renewTime: now,
    leaseTransitions: 0,
  };
  if (!i.current) return { action: "create", record: mine };
  const obs = i.observed ?? { record: i.current, observedAtMs: i.nowMs };
  const holder = i.current.holderIdentity;
  if (holder === i.identity) {
    return {
      action: "update",
      acquiring: false,
      record: { ...mine, acquireTime: i.current.acquireTime ?? now, leaseTransitions: i.current.leaseTransitions },
    };
  }
  if (holder !== "" && leaseValid(obs, i.nowMs)) return { action: "wait", holder, expiresAtMs: expiresAtMs(obs) };
  return { action: "update", acquiring: true, record: { ...mine, leaseTransitions: i.current.leaseTransitions + 1 } };
}

/** The record a leader writes to renew without reading first (client-go's optimistic fast path). */
export function renewRecord(
  held: LeaderElectionRecord,
  wallMs: number,
  leaseDurationSeconds: number,
): LeaderElectionRecord {
  return { ...held, leaseDurationSeconds, renewTime: formatMicroTime(wallMs) };
}

/**
 * The record a leader writes on graceful shutdown (client-go `release` with `ReleaseOnCancel`):
 * no holder, `leaseDurationSeconds: 1`, times now, transitions kept.
 */
export function releaseRecord(held: LeaderElectionRecord, wallMs: number): LeaderElectionRecord {
  const now = formatMicroTime(wallMs);
  return {
    holderIdentity: "",
    leaseDurationSeconds: 1,
    acquireTime: now,
    renewTime: now,
    leaseTransitions: held.leaseTransitions,
  };
}

/** client-go `wait.Jitter`: `periodMs + U[0,1) × factor × periodMs` (factor ≤ 0 means none). */
export function jitter(periodMs: number, factor: number, random: () => number): number {
  return factor > 0 ? periodMs + random() * factor * periodMs : periodMs;
}

/**
 * How long a candidate sleeps before its next attempt, ms: the jittered RetryPeriod, but never
 * past the moment the lease it is waiting on expires by the local clock (plus 10–210 ms, so
 * candidates do not collide exactly). The expiry rule itself is client-go's; waking at expiry
 * only removes up to RetryPeriod × 2.2 of idle time from a failover.
 */
export function nextAttemptDelayMs(
  waitingFor: Decision | undefined,
  nowMs: number,
  t: Pick<ElectionTiming, "retryPeriodMs" | "jitterFactor">,
  random: () => number,
): number {
  const retry = jitter(t.retryPeriodMs, t.jitterFactor, random);
  if (waitingFor?.action !== "wait") return retry;
  const atExpiry = Math.max(0, waitingFor.expiresAtMs - nowMs) + 10 + random() * 0.1 * t.retryPeriodMs;
  return Math.min(retry, atExpiry);
}

/**
 * The Lease I/O, stateful like client-go's `LeaseLock`: it remembers the `resourceVersion` of
 * the last Lease it read or wrote and sends it with every update (optimistic concurrency).
 * Records returned are the SERVER's answer (so observations compare server-normalised values).
 */
export interface LeaseLock {
  /** Reads the Lease; `undefined` when it does not exist. @throws on API or network errors. */
  get(signal: AbortSignal): Promise<LeaderElectionRecord | undefined>;
  /** Creates the Lease. @throws on API errors (409 AlreadyExists when another replica won). */
  create(record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaderElectionRecord>;
  /** Replaces the spec, preconditioned on the last seen resourceVersion. @throws 409 Conflict on a lost race. */
  update(record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaderElectionRecord>;
  /** `namespace/name` for logs. */
  describe(): string;
  /**
   * Optional: watches the Lease until `signal` aborts and calls `onReleased` whenever it is seen
   * released (empty `holderIdentity`), so a candidate attempts at once. Resolves on abort; every
   * other error is handled (retried) inside.
   */
  watchReleased?(signal: AbortSignal, onReleased: () => void): Promise<void>;
}

/** Settings and callbacks of a {@link LeaderElector}. Durations in milliseconds. */
export interface LeaderElectorOptions extends Partial<ElectionTiming> {
  lock: LeaseLock;
  /** This replica's identity (unique per process: pod name or hostname + random suffix). */
  identity: string;
  logger: Logger;
  /** Called once when this replica becomes leader. */
  onStartedLeading: () => void;
  /**
   * Called once, synchronously, when leadership is LOST (taken by another replica, or not
   * renewed within RenewDeadline). The caller must stop writing at once (exiting the process is
   * the simplest way). Not called on a graceful {@link LeaderElector.release}.
   */
  onStoppedLeading: (reason: string) => void;
  /** Called whenever the observed holder changes (`""` = none). */
  onNewLeader?: (identity: string) => void;
  /** Local monotonic clock, ms (default `performance.now`). */
  now?: () => number;
  /** Wall clock, epoch ms (default `Date.now`), for the Lease's MicroTime fields. */
  wall?: () => number;
  random?: () => number;
}

/**
 * Runs the election loop (client-go `LeaderElector.Run` with `ReleaseOnCancel`): acquire, then
 * renew until lost or released. Standby replicas keep polling, so they take over when the
 * leader's lease expires (judged by their local clock) or is released.
 */
export class LeaderElector {
  private readonly o: LeaderElectorOptions;
  private readonly t: ElectionTiming;
  private readonly now: () => number;
  private readonly wall: () => number;
  private readonly random: () => number;
  private readonly abort = new AbortController();
  private observed: Observation | undefined;
  private lastDecision: Decision | undefined;
  private reportedLeader: string | undefined;
  private leading = false;
  private lost = false;
  private loop: Promise<void> | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  /** Ends the candidate's current wait early (set while it waits; see LeaseLock.watchReleased). */
  private wake: (() => void) | undefined;

  /** @throws RangeError on inconsistent timing (see {@link validateTiming}). */
  constructor(o: LeaderElectorOptions) {
    this.o = o;
    this.t = {
      leaseDurationMs: o.leaseDurationMs ?? DEFAULT_LEASE_DURATION_MS,
      renewDeadlineMs: o.renewDeadlineMs ?? DEFAULT_RENEW_DEADLINE_MS,
      retryPeriodMs: o.retryPeriodMs ?? DEFAULT_RETRY_PERIOD_MS,
      jitterFactor: o.jitterFactor ?? JITTER_FACTOR,
    };
    validateTiming(this.t);
    this.now = o.now ?? (() => performance.now());
    this.wall = o.wall ?? Date.now;
    this.random = o.random ?? Math.random;
  }

  /** True while this replica holds the lease. */
  isLeader(): boolean {
    return this.leading;
  }

  /** Holder identity last observed (`""` = nobody, `undefined` = not read yet). */
  leader(): string | undefined {
    return this.observed?.record.holderIdentity;
  }

  /** Starts the loop in the background. */
  start(): void {
    this.loop ??= this.run().catch((err: unknown) => {
      // Never expected (every I/O error is caught per attempt); losing the loop means losing the lease.
      this.loseLeadership(`election loop failed: ${(err as Error).message}`);
    });
  }

  /**
   * Stops the loop; if this replica leads, writes the release record so a standby takes over at
   * once. Call it only after all writes guarded by the lease have finished (client-go's
   * `ReleaseOnCancel` contract). Resolves `true` when a release was written.
   */
  async release(): Promise<boolean> {
    this.abort.abort();
    await this.loop;
    this.clearDeadline();
    if (!this.leading || this.lost) return false;
    return withTimeout(this.t.renewDeadlineMs, undefined, async (signal) => {
      try {
        // Refresh the resourceVersion first (client-go does the same) and release only what we hold.
        const current = await this.o.lock.get(signal);
        if (!current || current.holderIdentity !== this.o.identity) {
          this.leading = false;
          return false;
        }
        const written = await this.o.lock.update(releaseRecord(current, this.wall()), signal);
        this.observed = observe(this.observed, written, this.now());
        this.leading = false;
        this.o.logger.info({ lease: this.o.lock.describe(), identity: this.o.identity }, "released leader lease");
        return true;
      } catch (err) {
        this.leading = false;
        this.o.logger.warn(
          { lease: this.o.lock.describe(), err: describeError(err) },
          "failed to release leader lease",
        );
        return false;
      }
    });
  }

  private async run(): Promise<void> {
    const log = this.o.logger.child({ lease: this.o.lock.describe(), identity: this.o.identity });
    log.info("attempting to acquire leader lease");
    // While a candidate: a release seen on the Lease's watch ends the wait for the next attempt.
    const watching = new AbortController();
    const stopWatching = () => watching.abort();
    this.abort.signal.addEventListener("abort", stopWatching, { once: true });
    const watch = this.o.lock.watchReleased?.(watching.signal, () => this.wake?.());
    try {
      // Acquire (client-go `acquire`: JitterUntil RetryPeriod, JitterFactor, sliding).
      for (;;) {
        if (this.abort.signal.aborted) return;
        const ok = await withTimeout(this.t.renewDeadlineMs, this.abort.signal, (s) => this.tryAcquireOrRenew(s, log));
        this.maybeReportTransition();
        if (ok) break;
        const woken = new AbortController();
        this.wake = () => woken.abort();
        const onAbort = () => woken.abort();
        this.abort.signal.addEventListener("abort", onAbort, { once: true });
        await sleep(nextAttemptDelayMs(this.lastDecision, this.now(), this.t, this.random), woken.signal);
        this.abort.signal.removeEventListener("abort", onAbort);
        this.wake = undefined;
      }
    } finally {
      this.abort.signal.removeEventListener("abort", stopWatching);
      watching.abort();
      await watch;
    }
    this.leading = true;
    log.info({ leaseTransitions: this.observed?.record.leaseTransitions }, "became leader");
    this.o.onStartedLeading();
    // Renew (client-go `renew`): every RetryPeriod a round; a round retries every RetryPeriod
    // until it succeeds or RenewDeadline passes since the round began.
    for (;;) {
      await sleep(this.t.retryPeriodMs, this.abort.signal);
      if (this.abort.signal.aborted || this.lost) return;
      const roundStart = this.now();
      // A timer, not only the request signal: leadership ends at the deadline even if an
      // attempt hangs somewhere no signal reaches.
      this.deadlineTimer = setTimeout(
        () => this.loseLeadership(`failed to renew the lease within the renew deadline (${this.t.renewDeadlineMs} ms)`),
        this.t.renewDeadlineMs,
      );
      for (;;) {
        const remaining = roundStart + this.t.renewDeadlineMs - this.now();
        if (remaining <= 0 || this.lost) return; // the timer reports the loss
        const ok = await withTimeout(remaining, this.abort.signal, (s) => this.tryAcquireOrRenew(s, log));
        this.maybeReportTransition();
        if (this.lost) return;
        if (ok) {
          this.clearDeadline();
          break;
        }
        const holder = this.observed?.record.holderIdentity;
        if (holder !== undefined && holder !== this.o.identity) {
          this.loseLeadership(`lease taken over by ${JSON.stringify(holder)}`);
          return;
        }
        if (this.abort.signal.aborted) return; // shutting down: release() takes it from here
        await sleep(
          Math.min(this.t.retryPeriodMs, roundStart + this.t.renewDeadlineMs - this.now()),
          this.abort.signal,
        );
        if (this.abort.signal.aborted) return;
      }
    }
  }

  /** client-go `tryAcquireOrRenew`: true when this replica holds the lease after the call. */
  private async tryAcquireOrRenew(signal: AbortSignal, log: Logger): Promise<boolean> {
    const lock = this.o.lock;
    const leaseSeconds = Math.round(this.t.leaseDurationMs / 1000);
    this.lastDecision = undefined;
    // 1. fast path: the leader updates assuming the record it last saw is current.
    if (this.leading && this.observed && this.observed.record.holderIdentity === this.o.identity) {
      try {
        const written = await lock.update(renewRecord(this.observed.record, this.wall(), leaseSeconds), signal);
        this.observed = observe(this.observed, written, this.now());
        return true;
      } catch (err) {
        log.warn({ err: describeError(err) }, "failed to renew lease optimistically; reading it");
        if (signal.aborted) return false;
      }
    }
    try {
      // 2. read (or create) the record.
      const current = await lock.get(signal);
      const nowMs = this.now();
      if (current) this.observed = observe(this.observed, current, nowMs);
      const d = decide({
        identity: this.o.identity,
        current,
        observed: this.observed,
        nowMs,
        wallMs: this.wall(),
        leaseDurationSeconds: leaseSeconds,
      });
      this.lastDecision = d;
      if (d.action === "wait") {
        log.debug(
          { holder: d.holder, expiresInMs: Math.round(d.expiresAtMs - nowMs) },
          "lease held by another replica",
        );
        return false;
      }
      // 3. write; a lost race throws (409) and this attempt fails.
      const written = d.action === "create" ? await lock.create(d.record, signal) : await lock.update(d.record, signal);
      this.observed = observe(this.observed, written, this.now());
      if (d.action === "update" && d.acquiring && current?.holderIdentity)
        log.info({ previous: current.holderIdentity }, "took over an expired lease");
      return true;
    } catch (err) {
      const level = this.leading ? "warn" : "debug";
      log[level]({ err: describeError(err) }, "lease attempt failed");
      return false;
    }
  }

  private maybeReportTransition(): void {
    const holder = this.observed?.record.holderIdentity;
    if (holder === undefined || holder === this.reportedLeader) return;
    this.reportedLeader = holder;
    this.o.logger.info({ lease: this.o.lock.describe(), leader: holder || null }, "new leader observed");
    this.o.onNewLeader?.(holder);
  }

  private loseLeadership(reason: string): void {
    if (this.lost || !this.leading) return;
    this.lost = true;
    this.leading = false;
    this.clearDeadline();
    this.abort.abort();
    this.o.logger.error({ lease: this.o.lock.describe(), identity: this.o.identity, reason }, "leader lease lost");
    this.o.onStoppedLeading(reason);
  }

  private clearDeadline(): void {
    clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
  }
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs `fn` with a signal that aborts after `ms` (a plain timer, so fake clocks drive it too) or
 * when `parent` aborts; the timer and listener are removed when `fn` settles.
 */
async function withTimeout<T>(
  ms: number,
  parent: AbortSignal | undefined,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(new Error(`timed out after ${Math.round(ms)} ms`)), Math.max(0, ms));
  const onParent = () => ac.abort(parent?.reason);
  if (parent?.aborted) onParent();
  else parent?.addEventListener("abort", onParent, { once: true });
  try {
    return await fn(ac.signal);
  } finally {
    clearTimeout(t);
    parent?.removeEventListener("abort", onParent);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, Math.max(0, ms));
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
