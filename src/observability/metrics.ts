/**
 * Which Prometheus metrics the operator exposes (prom-client), and nothing about how they are
 * served. Names follow the Prometheus naming conventions
 * (https://prometheus.io/docs/practices/naming/): the `nexar_token_` prefix, base units in the
 * name (`_seconds`, `_timestamp_seconds`), `_total` on counters only. Reconcile and work-queue
 * metrics mirror controller-runtime's `controller_runtime_reconcile_*` and client-go's
 * `workqueue_*` families (sigs.k8s.io/controller-runtime/pkg/internal/controller/metrics,
 * k8s.io/client-go/util/workqueue/metrics.go) under the operator's prefix. Process and Node.js
 * runtime metrics keep prom-client's standard `process_*` / `nodejs_*` names so that stock
 * dashboards and alerts work. docs/operations.md lists every metric.
 *
 * No label ever carries a secret: labels are namespace/name of a NexarToken, fixed enums,
 * failure reasons from the operator's own vocabulary, and HTTP status classes.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Per-NexarToken figures read at scrape time (no series survive a deleted NexarToken). Times epoch seconds. */
export interface TokenSnapshot {
  namespace: string;
  name: string;
  /** The NexarToken's `Ready` condition is `True`. */
  ready: boolean;
  /** `status.expiresAt` as Unix seconds, when a token is held. */
  expiresAtSeconds?: number;
  /** `status.renewalTime` as Unix seconds, when a renewal is scheduled. */
  renewalAtSeconds?: number;
  /** `status.failedAttempts` (consecutive failed token requests; 0 after a success). */
  failedAttempts: number;
}

/** Result label of a reconcile, as controller-runtime's `controller_runtime_reconcile_total` uses it. */
export type ReconcileResult = "success" | "error" | "requeue" | "requeue_after";

/** What the reconciler reports; implemented by {@link PromMetrics}. */
export interface Metrics {
  /** A fetch finished: `result` success|failure, `reason` the trigger (success) or failure reason. */
  refresh(namespace: string, result: "success" | "failure", reason: string): void;
  /** One token-endpoint response (or transport failure: status undefined), duration in seconds. */
  tokenRequest(status: number | undefined, durationSeconds: number): void;
  /** One write of a target Secret. */
  secretWrite(action: "create" | "update" | "recreate"): void;
  /** One NexarToken status patch. */
  statusWrite(): void;
  /** One reconcile finished with `result`, after `durationSeconds` seconds. */
  reconcile(result: ReconcileResult, durationSeconds: number): void;
}

/**
 * What a work queue reports, as client-go's `queueMetrics` (k8s.io/client-go/util/workqueue/metrics.go):
 * each hook is called synchronously by the queue (src/controller/workqueue.ts `WorkQueue`).
 */
export interface QueueMetrics {
  /** `key` entered the queue: not for an add of a key already waiting, nor the re-queue of a key added while processed (that add was reported). */
  add(key: string): void;
  /** `key` was handed to a worker. */
  get(key: string): void;
  /** A worker finished `key`. */
  done(key: string): void;
}

/** Figures of the work queue read at scrape time. */
export interface QueueFigures {
  /** Keys waiting now (not delayed, not processing). */
  depth: number;
  /** Keys scheduled for later (renewal timers, backoffs). */
  delayed: number;
  /** Keys being reconciled now. */
  processing: number;
}

/** Optional settings of {@link PromMetrics}. */
export interface PromMetricsOptions {
  /** `controller` / `name` label of reconcile and work-queue metrics. Default `nexartoken`. */
  controller?: string;
  /** Configured reconcile concurrency, exported as `nexar_token_max_concurrent_reconciles`. */
  maxConcurrentReconciles?: number;
  /** Clock in epoch milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

/**
 * What {@link PromMetrics.instrumentIssuance} reads from the shared-token issuer
 * (src/issuance/issuer.ts `Issuer`), structurally, so metrics need not import the issuer.
 */
export interface IssuanceSource {
  /** Current figures; counts since process start. */
  stats(): {
    cachedTokens: number;
    waiting: number;
    requests: number;
    cacheHits: number;
    joined: number;
  };
  /** Installs the hook called each time a token request starts waiting for the issuance limiter; `delayMs` in ms. */
  observeLimiterWaits(hook: (wait: { delayMs: number }) => void): void;
}

/** Buckets of the issuance-limiter wait (seconds): from one 2-per-second slot up to a 12-hour window. */
const LIMITER_WAIT_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 43200];

/** Metric name prefix (SPEC §5). */
export const PREFIX = "nexar_token_";

/** controller-runtime's reconcile_time_seconds buckets (seconds). */
const RECONCILE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 1.75, 2,
  2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];
/** client-go's workqueue duration buckets: 10 ns × 10^k, k = 0..11 (seconds). */
const QUEUE_BUCKETS = Array.from({ length: 12 }, (_, k) => Number((1e-8 * 10 ** k).toPrecision(1)));
/** Token endpoint latency buckets (seconds): a token request is one HTTPS round trip, up to the request timeout. */
const REQUEST_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30];

/**
 * Maps an HTTP status to its class label: `2xx`…`5xx`, `error` when no response arrived
 * (connection failure, timeout). Statuses outside 100–599 are `other`.
 */
export function statusClass(status: number | undefined): string {
  if (status === undefined) return "error";
  if (!Number.isInteger(status) || status < 100 || status > 599) return "other";
  return `${Math.floor(status / 100)}xx`;
}

/**
 * Prometheus metrics (prom-client) in their own {@link Registry}. Object gauges are computed at
 * scrape time from `snapshot()` (the informer cache), work-queue gauges from `queue()` and from
 * the hooks of {@link PromMetrics.queueMetrics}.
 */
export class PromMetrics implements Metrics {
  /** The registry `/metrics` serves (`registry.metrics()`, `registry.contentType`). */
  readonly registry = new Registry();
  private readonly refreshes: Counter<"result" | "reason">;
  private readonly responses: Counter<"status_class">;
  private readonly duration: Histogram;
  private readonly writes: Counter<"resource" | "action">;
  private readonly reconciles: Counter<"controller" | "result">;
  private readonly reconcileErrors: Counter<"controller">;
  private readonly reconcileTime: Histogram<"controller">;
  private readonly queueAdds: Counter<"name">;
  private readonly queueRetries: Counter<"name">;
  private readonly queueLatency: Histogram<"name">;
  private readonly workDuration: Histogram<"name">;
  private readonly leader: Gauge;
  private readonly leaderTransitions: Counter;
  private readonly controller: string;
  private readonly now: () => number;
  private isLeader = false;
  /** Key → epoch ms it was added and not yet handed to a worker (queue duration; one entry per waiting key). */
  private readonly waitingSince = new Map<string, number>();
  /** Key → epoch ms a worker took it (work duration, unfinished work; one entry per key being reconciled). */
  private readonly processingSince = new Map<string, number>();

  /**
   * @param snapshot the NexarTokens in the cache, read on every scrape.
   * @param queue work-queue sizes, read on every scrape.
   * @param version operator version for `nexar_token_build_info`.
   */
  constructor(
    snapshot: () => Iterable<TokenSnapshot>,
    queue: () => QueueFigures,
    version: string,
    options: PromMetricsOptions = {},
  ) {
    const r = this.registry;
    const controller = options.controller ?? "nexartoken";
    this.controller = controller;
    this.now = options.now ?? Date.now;
    const now = this.now;
    // Event-loop lag sampled every 100 ms, not prom-client's default 10 ms: the 10 ms timer alone
    // costs ~0.75 % CPU on an idle process (measured), more than everything else the operator does idle.
    collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: 100 });
    // prom-client names two gauges `*_total`, which Prometheus reserves for counters
    // (promtool check metrics rejects them); nodejs_active_handles/requests carry the same figures.
    r.removeSingleMetric("nodejs_active_handles_total");
    r.removeSingleMetric("nodejs_active_requests_total");
    r.removeSingleMetric("nodejs_active_resources_total");

    new Gauge({
      name: `${PREFIX}build_info`,
      help: "Build information of the running operator; always 1.",
      labelNames: ["version", "nodejs"],
      registers: [r],
    })
      .labels(version, process.versions.node)
      .set(1);
    this.leader = new Gauge({
      name: `${PREFIX}leader`,
      help: "1 while this replica holds the leader Lease (or leader election is off), else 0.",
      registers: [r],
    });
    this.leader.set(0);
    this.leaderTransitions = new Counter({
      name: `${PREFIX}leader_transitions_total`,
      help: "Times this replica became or stopped being the leader.",
      registers: [r],
    });

    // Token endpoint.
    this.refreshes = new Counter({
      name: `${PREFIX}refreshes_total`,
      help: "Token fetches by result (success|failure) and reason (the trigger on success, the failure reason on failure).",
      labelNames: ["result", "reason"],
      registers: [r],
    });
    this.responses = new Counter({
      name: `${PREFIX}endpoint_responses_total`,
      help: "Token endpoint responses by HTTP status class (1xx-5xx, or error when no response arrived).",
      labelNames: ["status_class"],
      registers: [r],
    });
    this.duration = new Histogram({
      name: `${PREFIX}endpoint_request_duration_seconds`,
      help: "Duration of token endpoint requests in seconds, including failed ones.",
      buckets: REQUEST_BUCKETS,
      registers: [r],
    });
    this.writes = new Counter({
      name: `${PREFIX}api_writes_total`,
      help: "Writes to the Kubernetes API by resource (secret|status) and action (create|update|recreate|patch).",
      labelNames: ["resource", "action"],
      registers: [r],
    });

    // Per NexarToken, from the cache at scrape time.
    const perToken = (name: string, help: string, pick: (t: TokenSnapshot) => number | undefined) =>
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        labelNames: ["namespace", "name"],
        registers: [r],
        collect() {
          this.reset();
          for (const t of snapshot()) {
            const v = pick(t);
            if (v !== undefined && Number.isFinite(v)) this.labels(t.namespace, t.name).set(v);
          }
        },
      });
    perToken(
      "expiration_timestamp_seconds",
      "Expiry of the token held for a NexarToken (status.expiresAt), Unix time in seconds.",
      (t) => t.expiresAtSeconds,
    );
    perToken(
      "renewal_timestamp_seconds",
      "Scheduled renewal of the token held for a NexarToken (status.renewalTime), Unix time in seconds.",
      (t) => t.renewalAtSeconds,
    );
    perToken("ready", "1 when the NexarToken's Ready condition is True, else 0.", (t) => (t.ready ? 1 : 0));
    perToken(
      "failed_attempts",
      "Consecutive failed token requests for a NexarToken (status.failedAttempts; 0 after a success).",
      (t) => t.failedAttempts,
    );

    // Reconciles (controller-runtime style).
    this.reconciles = new Counter({
      name: `${PREFIX}reconcile_total`,
      help: "Reconciles per controller by result (success|error|requeue|requeue_after).",
      labelNames: ["controller", "result"],
      registers: [r],
    });
    this.reconcileErrors = new Counter({
      name: `${PREFIX}reconcile_errors_total`,
      help: "Reconciles per controller that ended in an error.",
      labelNames: ["controller"],
      registers: [r],
    });
    this.reconcileTime = new Histogram({
      name: `${PREFIX}reconcile_time_seconds`,
      help: "Duration of reconciles per controller, in seconds.",
      labelNames: ["controller"],
      buckets: RECONCILE_BUCKETS,
      registers: [r],
    });
    // Initialise so that rate() works from the first scrape (controller-runtime does the same).
    for (const res of ["success", "error", "requeue", "requeue_after"] as const)
      this.reconciles.labels(controller, res).inc(0);
    this.reconcileErrors.labels(controller).inc(0);
    const maxConcurrent = options.maxConcurrentReconciles;
    if (maxConcurrent !== undefined) {
      new Gauge({
        name: `${PREFIX}max_concurrent_reconciles`,
        help: "Configured number of parallel reconciles per controller.",
        labelNames: ["controller"],
        registers: [r],
      })
        .labels(controller)
        .set(maxConcurrent);
    }
    new Gauge({
      name: `${PREFIX}active_workers`,
      help: "Workers reconciling a key right now, per controller.",
      labelNames: ["controller"],
      registers: [r],
      collect() {
        this.labels(controller).set(queue().processing);
      },
    });

    // Work queue (client-go workqueue style; `name` is the controller).
    const qGauge = (name: string, help: string, value: () => number) =>
      new Gauge({
        name: `${PREFIX}workqueue_${name}`,
        help,
        labelNames: ["name"],
        registers: [r],
        collect() {
          this.labels(controller).set(value());
        },
      });
    qGauge("depth", "Keys waiting in the work queue (not delayed, not being processed).", () => queue().depth);
    qGauge(
      "delayed_keys",
      "Keys scheduled to enter the work queue later (renewal timers and backoffs).",
      () => queue().delayed,
    );
    qGauge("unfinished_work_seconds", "Seconds of work in progress not yet observed by work_duration.", () => {
      const t = now();
      let sum = 0;
      for (const since of this.processingSince.values()) sum += Math.max(0, t - since);
      return sum / 1000;
    });
    qGauge("longest_running_processor_seconds", "Seconds the longest-running reconcile has been running.", () => {
      const t = now();
      let max = 0;
      for (const since of this.processingSince.values()) max = Math.max(max, t - since);
      return max / 1000;
    });
    this.queueAdds = new Counter({
      name: `${PREFIX}workqueue_adds_total`,
      help: "Keys added to the work queue (a key already waiting is not counted again).",
      labelNames: ["name"],
      registers: [r],
    });
    this.queueRetries = new Counter({
      name: `${PREFIX}workqueue_retries_total`,
      help: "Keys re-queued with rate-limited backoff after a failed reconcile.",
      labelNames: ["name"],
      registers: [r],
    });
    this.queueLatency = new Histogram({
      name: `${PREFIX}workqueue_queue_duration_seconds`,
      help: "Seconds a key waits in the work queue before a worker takes it.",
      labelNames: ["name"],
      buckets: QUEUE_BUCKETS,
      registers: [r],
    });
    this.workDuration = new Histogram({
      name: `${PREFIX}workqueue_work_duration_seconds`,
      help: "Seconds a worker spends processing a key.",
      labelNames: ["name"],
      buckets: QUEUE_BUCKETS,
      registers: [r],
    });
    this.queueAdds.labels(controller).inc(0);
    this.queueRetries.labels(controller).inc(0);
  }

  refresh(_namespace: string, result: "success" | "failure", reason: string): void {
    this.refreshes.labels(result, reason).inc();
  }

  tokenRequest(status: number | undefined, durationSeconds: number): void {
    this.responses.labels(statusClass(status)).inc();
    this.duration.observe(durationSeconds);
  }

  secretWrite(action: "create" | "update" | "recreate"): void {
    this.writes.labels("secret", action).inc();
  }

  statusWrite(): void {
    this.writes.labels("status", "patch").inc();
  }

  reconcile(result: ReconcileResult, durationSeconds: number): void {
    this.reconciles.labels(this.controller, result).inc();
    if (result === "error") this.reconcileErrors.labels(this.controller).inc();
    this.reconcileTime.labels(this.controller).observe(durationSeconds);
  }

  /** A key was re-queued with rate-limited backoff after a failed reconcile (client-go `AddRateLimited`). */
  retry(): void {
    this.queueRetries.labels(this.controller).inc();
  }

  /**
   * Sets `nexar_token_leader`: call with `true` when this replica acquires the Lease (or at
   * start when leader election is off) and with `false` when it loses or releases it.
   */
  setLeader(leading: boolean): void {
    if (leading !== this.isLeader) this.leaderTransitions.inc();
    this.isLeader = leading;
    this.leader.set(leading ? 1 : 0);
  }

  /**
   * Registers the shared-token issuer's metrics (SPEC §3.3, per-client issuance limits of SPEC §1):
   * - `nexar_token_issuance_waiting`: token requests queued by the issuance limiter now (gauge);
   * - `nexar_token_issuance_limiter_wait_seconds`: how long each queued request was told to wait (histogram);
   * - `nexar_token_issuance_cached_tokens`: distinct shared tokens held in memory (gauge);
   * - `nexar_token_issuance_fetches_total{source}`: fetches by how they were answered: `request`
   *   (sent to the token endpoint), `cache` (a shared token still valid), `joined` (a request in
   *   flight for another NexarToken). Read from the issuer's counters at scrape time.
   * Call once.
   */
  instrumentIssuance(issuer: IssuanceSource): void {
    const r = this.registry;
    new Gauge({
      name: `${PREFIX}issuance_waiting`,
      help: "Token requests queued by the per-client issuance limiter right now.",
      registers: [r],
      collect() {
        this.set(issuer.stats().waiting);
      },
    });
    new Gauge({
      name: `${PREFIX}issuance_cached_tokens`,
      help: "Distinct shared tokens (one per token URL, client, grant and scope set) held in memory.",
      registers: [r],
      collect() {
        this.set(issuer.stats().cachedTokens);
      },
    });
    const waits = new Histogram({
      name: `${PREFIX}issuance_limiter_wait_seconds`,
      help: "Seconds a token request was queued by the per-client issuance limiter before it was sent.",
      buckets: LIMITER_WAIT_BUCKETS,
      registers: [r],
    });
    issuer.observeLimiterWaits((w) => waits.observe(Math.max(0, w.delayMs) / 1000));
    // Monotonic counts kept by the issuer, exposed as a counter (prom-client counters cannot be set:
    // reset and add the current value at each scrape).
    new Counter({
      name: `${PREFIX}issuance_fetches_total`,
      help: "Token fetches by source: request (sent to the token endpoint), cache (shared token reused), joined (request in flight for another NexarToken).",
      labelNames: ["source"],
      registers: [r],
      collect() {
        const s = issuer.stats();
        this.reset();
        this.labels("request").inc(s.requests);
        this.labels("cache").inc(s.cacheHits);
        this.labels("joined").inc(s.joined);
      },
    });
  }

  /**
   * The hooks that feed the work-queue adds, queue-duration, work-duration, unfinished-work and
   * longest-running metrics, counted as client-go counts them: a key's wait runs from its
   * reported add to the `get` that hands it out, its work from that `get` to `done`. Pass them to
   * the queue (`new WorkQueue(now, metrics.queueMetrics())`).
   */
  queueMetrics(): QueueMetrics {
    const name = this.controller;
    return {
      add: (key) => {
        if (!this.waitingSince.has(key)) this.waitingSince.set(key, this.now());
        this.queueAdds.labels(name).inc();
      },
      get: (key) => {
        const t = this.now();
        const since = this.waitingSince.get(key);
        this.waitingSince.delete(key);
        if (since !== undefined) this.queueLatency.labels(name).observe(Math.max(0, t - since) / 1000);
        this.processingSince.set(key, t);
      },
      done: (key) => {
        const since = this.processingSince.get(key);
        this.processingSince.delete(key);
        if (since !== undefined) this.workDuration.labels(name).observe(Math.max(0, this.now() - since) / 1000);
      },
    };
  }
}
