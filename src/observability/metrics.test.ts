import { describe, expect, it } from "vitest";
import { WorkQueue } from "../controller/workqueue.ts";
import { PREFIX, PromMetrics, statusClass, type QueueFigures, type TokenSnapshot } from "./metrics.ts";

/** Value of the sample `name{labels}` in exposition text, or undefined. Labels match as a substring set. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? "";
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) return Number(m[3]);
  }
  return undefined;
}

function make(tokens: TokenSnapshot[] = [], figures: QueueFigures = { depth: 0, delayed: 0, processing: 0 }) {
  let now = 1_000_000;
  const m = new PromMetrics(
    () => tokens,
    () => figures,
    "1.2.3",
    { maxConcurrentReconciles: 4, now: () => now },
  );
  return { m, tokens, figures, advance: (ms: number) => (now += ms) };
}

describe("statusClass", () => {
  it("maps statuses to classes and a missing response to error", () => {
    expect(statusClass(200)).toBe("2xx");
    expect(statusClass(429)).toBe("4xx");
    expect(statusClass(503)).toBe("5xx");
    expect(statusClass(undefined)).toBe("error");
    expect(statusClass(42)).toBe("other");
  });
});

describe("PromMetrics", () => {
  it("computes per-NexarToken gauges at scrape time: a deleted NexarToken leaves no series", async () => {
    const { m, tokens } = make([
      { namespace: "a", name: "x", ready: true, expiresAtSeconds: 2000, renewalAtSeconds: 1500, failedAttempts: 0 },
      { namespace: "b", name: "y", ready: false, failedAttempts: 3 },
    ]);
    let text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}expiration_timestamp_seconds`, { namespace: "a", name: "x" })).toBe(2000);
    expect(sample(text, `${PREFIX}renewal_timestamp_seconds`, { namespace: "a", name: "x" })).toBe(1500);
    expect(sample(text, `${PREFIX}ready`, { namespace: "a", name: "x" })).toBe(1);
    expect(sample(text, `${PREFIX}ready`, { namespace: "b", name: "y" })).toBe(0);
    expect(sample(text, `${PREFIX}failed_attempts`, { namespace: "b", name: "y" })).toBe(3);
    // No token held: no expiration series for b/y.
    expect(sample(text, `${PREFIX}expiration_timestamp_seconds`, { namespace: "b", name: "y" })).toBeUndefined();
    tokens.splice(0, 1);
    text = await m.registry.metrics();
    expect(text).not.toContain('name="x"');
    expect(sample(text, `${PREFIX}ready`, { namespace: "b", name: "y" })).toBe(0);
  });

  it("counts refreshes, endpoint responses by status class, and observes request durations", async () => {
    const { m } = make();
    m.refresh("ns", "success", "Initial");
    m.refresh("ns", "failure", "InvalidClient");
    m.refresh("ns", "failure", "InvalidClient");
    m.tokenRequest(200, 0.2);
    m.tokenRequest(401, 0.1);
    m.tokenRequest(undefined, 15);
    const text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}refreshes_total`, { result: "success", reason: "Initial" })).toBe(1);
    expect(sample(text, `${PREFIX}refreshes_total`, { result: "failure", reason: "InvalidClient" })).toBe(2);
    expect(sample(text, `${PREFIX}endpoint_responses_total`, { status_class: "2xx" })).toBe(1);
    expect(sample(text, `${PREFIX}endpoint_responses_total`, { status_class: "4xx" })).toBe(1);
    expect(sample(text, `${PREFIX}endpoint_responses_total`, { status_class: "error" })).toBe(1);
    expect(sample(text, `${PREFIX}endpoint_request_duration_seconds_count`)).toBe(3);
    expect(sample(text, `${PREFIX}endpoint_request_duration_seconds_bucket`, { le: "0.25" })).toBe(2);
  });

  it("exports reconcile results controller-runtime style, with every result initialised to 0", async () => {
    const { m } = make();
    let text = await m.registry.metrics();
    for (const result of ["success", "error", "requeue", "requeue_after"])
      expect(sample(text, `${PREFIX}reconcile_total`, { controller: "nexartoken", result })).toBe(0);
    m.reconcile("success", 0.01);
    m.reconcile("requeue_after", 0.02);
    m.reconcile("error", 0.5);
    m.retry();
    text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}reconcile_total`, { result: "error" })).toBe(1);
    expect(sample(text, `${PREFIX}reconcile_errors_total`, { controller: "nexartoken" })).toBe(1);
    expect(sample(text, `${PREFIX}reconcile_time_seconds_count`, { controller: "nexartoken" })).toBe(3);
    expect(sample(text, `${PREFIX}workqueue_retries_total`, { name: "nexartoken" })).toBe(1);
    expect(sample(text, `${PREFIX}max_concurrent_reconciles`, { controller: "nexartoken" })).toBe(4);
  });

  it("reports leadership as 1/0 and counts transitions", async () => {
    const { m } = make();
    expect(sample(await m.registry.metrics(), `${PREFIX}leader`)).toBe(0);
    m.setLeader(true);
    m.setLeader(true);
    let text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}leader`)).toBe(1);
    expect(sample(text, `${PREFIX}leader_transitions_total`)).toBe(1);
    m.setLeader(false);
    text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}leader`)).toBe(0);
    expect(sample(text, `${PREFIX}leader_transitions_total`)).toBe(2);
  });

  it("has build info, standard process metrics, and no gauge named *_total", async () => {
    const { m } = make();
    const text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}build_info`, { version: "1.2.3" })).toBe(1);
    expect(text).toMatch(/^process_cpu_seconds_total /m);
    expect(text).toMatch(/^process_start_time_seconds /m);
    for (const mt of await m.registry.getMetricsAsJSON()) {
      if (mt.name.endsWith("_total")) expect(`${mt.name}:${mt.type}`).toBe(`${mt.name}:counter`);
    }
  });

  it("exports the issuer's waiting requests, limiter waits, cached tokens and fetches by source", async () => {
    const { m } = make();
    const stats = { cachedTokens: 3, waiting: 2, requests: 10, cacheHits: 990, joined: 5 };
    let hook: ((w: { delayMs: number }) => void) | undefined;
    m.instrumentIssuance({ stats: () => stats, observeLimiterWaits: (h) => (hook = h) });
    hook?.({ delayMs: 1_500 });
    let text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}issuance_waiting`)).toBe(2);
    expect(sample(text, `${PREFIX}issuance_cached_tokens`)).toBe(3);
    expect(sample(text, `${PREFIX}issuance_limiter_wait_seconds_count`)).toBe(1);
    expect(sample(text, `${PREFIX}issuance_limiter_wait_seconds_sum`)).toBe(1.5);
    expect(sample(text, `${PREFIX}issuance_limiter_wait_seconds_bucket`, { le: "1" })).toBe(0);
    expect(sample(text, `${PREFIX}issuance_limiter_wait_seconds_bucket`, { le: "2.5" })).toBe(1);
    expect(sample(text, `${PREFIX}issuance_fetches_total`, { source: "request" })).toBe(10);
    expect(sample(text, `${PREFIX}issuance_fetches_total`, { source: "cache" })).toBe(990);
    expect(sample(text, `${PREFIX}issuance_fetches_total`, { source: "joined" })).toBe(5);
    // read at each scrape, not accumulated across scrapes
    stats.waiting = 0;
    stats.requests = 11;
    text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}issuance_waiting`)).toBe(0);
    expect(sample(text, `${PREFIX}issuance_fetches_total`, { source: "request" })).toBe(11);
  });

  it("instruments a real WorkQueue the way client-go counts: adds, queue and work durations, longest running", async () => {
    const figures = { depth: 0, delayed: 0, processing: 0 };
    const { m, advance } = make([], figures);
    const q = new WorkQueue(Date.now, m.queueMetrics());
    q.add("ns/a");
    q.add("ns/a"); // deduplicated: not counted
    q.add("ns/b");
    advance(2_000);
    const a = await q.get();
    expect(a).toBe("ns/a");
    advance(3_000);
    q.add("ns/a"); // added while processing: counted, re-queued on done
    let text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}workqueue_adds_total`, { name: "nexartoken" })).toBe(3);
    expect(sample(text, `${PREFIX}workqueue_longest_running_processor_seconds`)).toBe(3);
    expect(sample(text, `${PREFIX}workqueue_unfinished_work_seconds`)).toBe(3);
    q.done("ns/a");
    expect(await q.get()).toBe("ns/b");
    expect(await q.get()).toBe("ns/a");
    q.done("ns/b");
    q.done("ns/a");
    text = await m.registry.metrics();
    expect(sample(text, `${PREFIX}workqueue_adds_total`)).toBe(3);
    expect(sample(text, `${PREFIX}workqueue_queue_duration_seconds_count`)).toBe(3);
    expect(sample(text, `${PREFIX}workqueue_work_duration_seconds_count`)).toBe(3);
    // ns/a waited 2 s; the other two 0 s and 5 s respectively… all within the 10 s bucket.
    expect(sample(text, `${PREFIX}workqueue_queue_duration_seconds_bucket`, { le: "10" })).toBe(3);
    expect(sample(text, `${PREFIX}workqueue_queue_duration_seconds_bucket`, { le: "1" })).toBe(1);
    expect(sample(text, `${PREFIX}workqueue_longest_running_processor_seconds`)).toBe(0);
    q.shutDown();
    q.add("ns/c"); // after shutdown: ignored by the queue and not counted
    expect(sample(await m.registry.metrics(), `${PREFIX}workqueue_adds_total`)).toBe(3);
  });

  it("counts a delayed key when the queue's own timer adds it", async () => {
    const { m } = make();
    const q = new WorkQueue(Date.now, m.queueMetrics());
    q.addAfter("ns/later", 5);
    expect(sample(await m.registry.metrics(), `${PREFIX}workqueue_adds_total`)).toBe(0);
    expect(await q.get()).toBe("ns/later");
    expect(sample(await m.registry.metrics(), `${PREFIX}workqueue_adds_total`)).toBe(1);
    q.done("ns/later");
    q.shutDown();
  });
});
