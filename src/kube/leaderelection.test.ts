import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pino } from "pino";
import {
  LeaderElector,
  decide,
  formatMicroTime,
  jitter,
  leaseValid,
  nextAttemptDelayMs,
  observe,
  parseMicroTime,
  releaseRecord,
  renewRecord,
  validateTiming,
  type LeaderElectionRecord,
  type LeaseLock,
} from "./leaderelection.ts";

const rec = (over: Partial<LeaderElectionRecord> = {}): LeaderElectionRecord => ({
  holderIdentity: "a",
  leaseDurationSeconds: 15,
  acquireTime: "2026-11-30T02:00:00.000000Z",
  renewTime: "2026-11-30T02:00:00.000000Z",
  leaseTransitions: 0,
  ...over,
});

describe("MicroTime", () => {
  it("formats RFC 3339 with exactly six fractional digits in UTC", () => {
    expect(formatMicroTime(Date.UTC(2026, 10, 30, 2, 0, 0, 123) + 0.456)).toBe("2026-11-30T02:00:00.123456Z");
    expect(formatMicroTime(Date.UTC(2026, 10, 30, 2, 0, 0))).toBe("2026-11-30T02:00:00.000000Z");
    expect(formatMicroTime(Date.UTC(2026, 10, 30, 2, 0, 0, 999) + 0.9999)).toBe("2026-11-30T02:00:01.000000Z");
    expect(() => formatMicroTime(Number.NaN)).toThrow(RangeError);
  });
  it("parses microseconds, fewer digits, nanoseconds and offsets", () => {
    const base = Date.UTC(2026, 10, 30, 2, 0, 0);
    expect(parseMicroTime("2026-11-30T02:00:00.123456Z")).toBeCloseTo(base + 123.456, 6);
    expect(parseMicroTime("2026-11-30T02:00:00Z")).toBe(base);
    expect(parseMicroTime("2026-11-30T02:00:00.5Z")).toBe(base + 500);
    expect(parseMicroTime("2026-11-30T02:00:00.123456789Z")).toBeCloseTo(base + 123.457, 6);
    expect(parseMicroTime("2026-11-30T03:00:00.000001+01:00")).toBeCloseTo(base + 0.001, 6);
    expect(() => parseMicroTime("2026-11-30 02:00:00")).toThrow(RangeError);
    expect(() => parseMicroTime("yesterday")).toThrow(RangeError);
  });
  it("round-trips", () => {
    const s = "2026-11-30T02:00:00.654321Z";
    expect(formatMicroTime(parseMicroTime(s))).toBe(s);
  });
});

describe("observe (local observe time moves only when the record changes)", () => {
  it("keeps the first observe time while the record is unchanged", () => {
    const o1 = observe(undefined, rec(), 1000);
    const o2 = observe(o1, rec(), 9000);
    expect(o2.observedAtMs).toBe(1000);
  });
  it.each([
    ["renewTime", { renewTime: "2026-11-30T02:00:02.000000Z" }],
    ["holderIdentity", { holderIdentity: "b" }],
    ["leaseTransitions", { leaseTransitions: 1 }],
    ["leaseDurationSeconds", { leaseDurationSeconds: 1 }],
    ["acquireTime", { acquireTime: "2026-11-30T02:00:01.000000Z" }],
  ])("restarts the clock when %s changes", (_f, over) => {
    const o1 = observe(undefined, rec(), 1000);
    expect(observe(o1, rec(over), 9000).observedAtMs).toBe(9000);
  });
  it("judges expiry by the local clock, not by renewTime", () => {
    // renewTime far in the past by the holder's clock, but just seen: still valid for 15 s locally.
    const o = observe(undefined, rec({ renewTime: "2001-01-01T00:00:00.000000Z" }), 50_000);
    expect(leaseValid(o, 64_999)).toBe(true);
    expect(leaseValid(o, 65_000)).toBe(false);
  });
});

describe("decide", () => {
  const base = { identity: "me", nowMs: 100_000, wallMs: Date.UTC(2026, 10, 30, 2, 0, 5), leaseDurationSeconds: 15 };
  it("creates a missing Lease holding it, transitions 0, MicroTime times", () => {
    const d = decide({ ...base, current: undefined, observed: undefined });
    expect(d).toEqual({
      action: "create",
      record: {
        holderIdentity: "me",
        leaseDurationSeconds: 15,
        acquireTime: "2026-11-30T02:00:05.000000Z",
        renewTime: "2026-11-30T02:00:05.000000Z",
        leaseTransitions: 0,
      },
    });
  });
  it("waits while another holder's lease is valid by the local observe time", () => {
    const cur = rec({ holderIdentity: "other", leaseTransitions: 3 });
    const d = decide({ ...base, current: cur, observed: observe(undefined, cur, 90_000) });
    expect(d).toEqual({ action: "wait", holder: "other", expiresAtMs: 105_000 });
  });
  it("takes over an expired lease: new acquireTime, transitions + 1", () => {
    const cur = rec({ holderIdentity: "other", leaseTransitions: 3 });
    const d = decide({ ...base, current: cur, observed: observe(undefined, cur, 85_000) });
    expect(d).toMatchObject({
      action: "update",
      acquiring: true,
      record: { holderIdentity: "me", leaseTransitions: 4, acquireTime: "2026-11-30T02:00:05.000000Z" },
    });
  });
  it("acquires a released Lease (empty holder) at once", () => {
    const cur = releaseRecord(rec({ holderIdentity: "other", leaseTransitions: 2 }), base.wallMs);
    const d = decide({ ...base, current: cur, observed: observe(undefined, cur, base.nowMs) });
    expect(d).toMatchObject({
      action: "update",
      acquiring: true,
      record: { holderIdentity: "me", leaseTransitions: 3 },
    });
  });
  it("renews its own lease keeping acquireTime and transitions, even if locally 'expired'", () => {
    const cur = rec({ holderIdentity: "me", leaseTransitions: 7 });
    const d = decide({ ...base, current: cur, observed: observe(undefined, cur, 0) });
    expect(d).toEqual({
      action: "update",
      acquiring: false,
      record: {
        holderIdentity: "me",
        leaseDurationSeconds: 15,
        acquireTime: cur.acquireTime,
        renewTime: "2026-11-30T02:00:05.000000Z",
        leaseTransitions: 7,
      },
    });
  });
});

describe("records and timing", () => {
  it("renewRecord changes only renewTime (and duration)", () => {
    const r = rec({ holderIdentity: "me", leaseTransitions: 2 });
    expect(renewRecord(r, Date.UTC(2026, 10, 30, 2, 0, 9), 15)).toEqual({
      ...r,
      renewTime: "2026-11-30T02:00:09.000000Z",
    });
  });
  it("releaseRecord clears the holder, sets leaseDurationSeconds 1, keeps transitions", () => {
    expect(releaseRecord(rec({ leaseTransitions: 5 }), Date.UTC(2026, 10, 30, 2, 0, 9))).toEqual({
      holderIdentity: "",
      leaseDurationSeconds: 1,
      acquireTime: "2026-11-30T02:00:09.000000Z",
      renewTime: "2026-11-30T02:00:09.000000Z",
      leaseTransitions: 5,
    });
  });
  it("jitter spans [period, period × (1 + factor))", () => {
    expect(jitter(2000, 1.2, () => 0)).toBe(2000);
    expect(jitter(2000, 1.2, () => 0.999999)).toBeCloseTo(4400, 0);
    expect(jitter(2000, 0, () => 0.5)).toBe(2000);
  });
  it("a waiting candidate wakes at the observed expiry if that comes before the jittered retry", () => {
    const t = { retryPeriodMs: 2000, jitterFactor: 1.2 };
    expect(nextAttemptDelayMs({ action: "wait", holder: "x", expiresAtMs: 1500 }, 1000, t, () => 0.5)).toBe(
      500 + 10 + 100,
    );
    expect(nextAttemptDelayMs({ action: "wait", holder: "x", expiresAtMs: 60_000 }, 1000, t, () => 0.5)).toBe(3200);
    expect(nextAttemptDelayMs(undefined, 1000, t, () => 0)).toBe(2000);
  });
  it("validates like client-go NewLeaderElector", () => {
    expect(() =>
      validateTiming({ leaseDurationMs: 15e3, renewDeadlineMs: 10e3, retryPeriodMs: 2e3, jitterFactor: 1.2 }),
    ).not.toThrow();
    expect(() =>
      validateTiming({ leaseDurationMs: 10e3, renewDeadlineMs: 10e3, retryPeriodMs: 2e3, jitterFactor: 1.2 }),
    ).toThrow(RangeError);
    expect(() =>
      validateTiming({ leaseDurationMs: 15e3, renewDeadlineMs: 2.4e3, retryPeriodMs: 2e3, jitterFactor: 1.2 }),
    ).toThrow(RangeError);
    expect(() =>
      validateTiming({ leaseDurationMs: 15e3, renewDeadlineMs: 10e3, retryPeriodMs: 0, jitterFactor: 1.2 }),
    ).toThrow(RangeError);
  });
});

/** An in-memory Lease with resourceVersion checks, shared by several locks; `down` simulates a partition. */
class FakeStore {
  rv = 0;
  record: LeaderElectionRecord | undefined;
  writes: { by: string; record: LeaderElectionRecord }[] = [];
  watchers = new Set<(r: LeaderElectionRecord) => void>();
}
class FakeLock implements LeaseLock {
  seenRv = -1;
  down = false;
  private readonly store: FakeStore;
  private readonly who: string;
  constructor(store: FakeStore, who: string) {
    this.store = store;
    this.who = who;
  }
  describe() {
    return "ns/lease";
  }
  private check(signal: AbortSignal): Promise<void> {
    if (!this.down) return Promise.resolve();
    // A black hole: the request hangs until its signal aborts.
    return new Promise((_, reject) =>
      signal.addEventListener("abort", () => reject(new Error("aborted")), { once: true }),
    );
  }
  async get(signal: AbortSignal) {
    await this.check(signal);
    this.seenRv = this.store.rv;
    return this.store.record && { ...this.store.record };
  }
  async create(r: LeaderElectionRecord, signal: AbortSignal) {
    await this.check(signal);
    if (this.store.record) throw new Error("409 AlreadyExists");
    return this.write(r);
  }
  async update(r: LeaderElectionRecord, signal: AbortSignal) {
    await this.check(signal);
    if (this.seenRv !== this.store.rv) throw new Error("409 Conflict");
    return this.write(r);
  }
  private write(r: LeaderElectionRecord) {
    this.store.record = { ...r };
    this.store.rv++;
    this.seenRv = this.store.rv;
    this.store.writes.push({ by: this.who, record: { ...r } });
    for (const w of this.store.watchers) w(this.store.record);
    return { ...r };
  }
}
/** A lock that also watches the Lease (as KubeLeaseLock does), told of every write to the store. */
class WatchingFakeLock extends FakeLock {
  watches = 0;
  readonly storeRef: FakeStore;
  constructor(store: FakeStore, who: string) {
    super(store, who);
    this.storeRef = store;
  }
  async watchReleased(signal: AbortSignal, onReleased: () => void): Promise<void> {
    this.watches++;
    const w = (r: LeaderElectionRecord) => {
      if (r.holderIdentity === "") onReleased();
    };
    this.storeRef.watchers.add(w);
    await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    this.storeRef.watchers.delete(w);
  }
}

describe("LeaderElector (fake clock)", () => {
  const logger = pino({ level: "silent" });
  beforeEach(() => {
    vi.useFakeTimers({ now: Date.UTC(2026, 10, 30, 2, 0, 0) });
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  function candidate(store: FakeStore, id: string, watching = false) {
    const lock = watching ? new WatchingFakeLock(store, id) : new FakeLock(store, id);
    const events: { at: number; what: string }[] = [];
    const e = new LeaderElector({
      lock,
      identity: id,
      logger,
      now: () => Date.now(),
      random: () => 0.5,
      onStartedLeading: () => events.push({ at: Date.now(), what: "started" }),
      onStoppedLeading: (reason) => events.push({ at: Date.now(), what: `stopped: ${reason}` }),
    });
    return { e, lock, events };
  }

  it("acquires an absent Lease at once, renews every RetryPeriod, keeps transitions", async () => {
    const store = new FakeStore();
    const a = candidate(store, "a");
    const t0 = Date.now();
    a.e.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(a.events).toEqual([{ at: t0, what: "started" }]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(store.writes.length).toBeGreaterThanOrEqual(5);
    expect(store.record).toMatchObject({ holderIdentity: "a", leaseTransitions: 0 });
    expect(store.record?.renewTime).toBe(formatMicroTime(Date.now()));
    expect(await a.e.release()).toBe(true);
  });

  it("a standby takes over only after the lease stopped changing for LeaseDuration (local time), transitions + 1", async () => {
    const store = new FakeStore();
    const a = candidate(store, "a");
    const b = candidate(store, "b");
    a.e.start();
    await vi.advanceTimersByTimeAsync(0);
    b.e.start();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(b.events).toEqual([]);
    expect(b.e.leader()).toBe("a");
    // "kill" a: it stops renewing (partition), so a must also give up by itself.
    a.lock.down = true;
    const cut = Date.now();
    await vi.advanceTimersByTimeAsync(25_000);
    const lostAt = a.events.find((x) => x.what.startsWith("stopped"))?.at;
    const tookOverAt = b.events.find((x) => x.what === "started")?.at;
    expect(lostAt).toBeDefined();
    expect(tookOverAt).toBeDefined();
    // a gives up within RetryPeriod + RenewDeadline of its last renewal, before b may take over.
    expect((lostAt as number) - cut).toBeLessThanOrEqual(12_000);
    expect(lostAt as number).toBeLessThan(tookOverAt as number);
    // b waits a full LeaseDuration after it last saw a change, and wakes right at expiry.
    expect((tookOverAt as number) - cut).toBeGreaterThanOrEqual(15_000 - 2_000);
    expect((tookOverAt as number) - cut).toBeLessThanOrEqual(15_000 + 4_400 + 500);
    expect(store.record).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    expect(a.e.isLeader()).toBe(false);
    await b.e.release();
    await a.e.release();
  });

  it("a leader whose lease is taken (a write it did not make) stops at once", async () => {
    const store = new FakeStore();
    const a = candidate(store, "a");
    a.e.start();
    await vi.advanceTimersByTimeAsync(0);
    // Someone else writes the Lease (e.g. an administrator, or a replica with a skewed rate).
    store.record = { ...(store.record as LeaderElectionRecord), holderIdentity: "intruder" };
    store.rv++;
    await vi.advanceTimersByTimeAsync(2_100);
    expect(a.events.map((e) => e.what)).toEqual(["started", 'stopped: lease taken over by "intruder"']);
    expect(await a.e.release()).toBe(false);
    expect(store.record.holderIdentity).toBe("intruder");
  });

  it("release writes an empty holder with leaseDurationSeconds 1, and a standby acquires within one retry", async () => {
    const store = new FakeStore();
    const a = candidate(store, "a");
    const b = candidate(store, "b");
    a.e.start();
    await vi.advanceTimersByTimeAsync(0);
    b.e.start();
    await vi.advanceTimersByTimeAsync(5_000);
    const releasedAt = Date.now();
    expect(await a.e.release()).toBe(true);
    expect(store.record).toMatchObject({ holderIdentity: "", leaseDurationSeconds: 1, leaseTransitions: 0 });
    expect(a.events.map((e) => e.what)).toEqual(["started"]); // a release is not a loss
    await vi.advanceTimersByTimeAsync(4_500);
    const took = b.events.find((e) => e.what === "started");
    expect(took).toBeDefined();
    expect((took?.at as number) - releasedAt).toBeLessThanOrEqual(4_400);
    expect(store.record).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    await b.e.release();
  });

  it("a standby that watches the Lease acquires as soon as it sees the release, and stops watching once leading", async () => {
    const store = new FakeStore();
    const a = candidate(store, "a");
    const b = candidate(store, "b", true);
    a.e.start();
    await vi.advanceTimersByTimeAsync(0);
    b.e.start();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(store.watchers.size).toBe(1);
    const releasedAt = Date.now();
    expect(await a.e.release()).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    // At once: no RetryPeriod (2 s … 4.4 s) passes.
    expect(b.events).toEqual([{ at: releasedAt, what: "started" }]);
    expect(store.record).toMatchObject({ holderIdentity: "b", leaseTransitions: 1 });
    expect(store.watchers.size).toBe(0);
    expect((b.lock as WatchingFakeLock).watches).toBe(1);
    await b.e.release();
  });

  it("two candidates racing for an absent Lease: exactly one wins", async () => {
    const store = new FakeStore();
    const a = candidate(store, "a");
    const b = candidate(store, "b");
    a.e.start();
    b.e.start();
    await vi.advanceTimersByTimeAsync(20_000);
    const leaders = [a, b].filter((c) => c.e.isLeader());
    expect(leaders).toHaveLength(1);
    expect([a, b].flatMap((c) => c.events.filter((e) => e.what.startsWith("stopped")))).toEqual([]);
    await a.e.release();
    await b.e.release();
  });
});
