import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** Per-NexarToken figures read at scrape time (no series survive a deleted NexarToken). Times epoch seconds. */
export interface TokenSnapshot {
  namespace: string;
  name: string;
  ready: boolean;
  expiresAtSeconds?: number;
  renewalAtSeconds?: number;
  failedAttempts: number;
}

/** What the controller reports; implemented by {@link PromMetrics}. */
export interface Metrics {
  /** A fetch finished: `result` success|failure, `reason` the trigger (success) or failure reason. */
  refresh(namespace: string, result: "success" | "failure", reason: string): void;
  /** One token-endpoint response (or transport failure: status undefined), duration in seconds. */
  tokenRequest(status: number | undefined, durationSeconds: number): void;
  secretWrite(action: "create" | "update" | "recreate"): void;
  statusWrite(): void;
  /** One reconcile: result success|error|requeue, duration in seconds. */
  reconcile(result: "success" | "error", durationSeconds: number): void;
}

/** Metric name prefix (SPEC §5). */
export const PREFIX = "nexar_token_";

/**
 * Prometheus metrics (prom-client) with the `nexar_token_` prefix. Object gauges are computed
 * at scrape time from `snapshot()` (the informer cache), controller-runtime style work-queue
 * gauges from `queue()`.
 */
export class PromMetrics implements Metrics {
  readonly registry = new Registry();
  private readonly refreshes: Counter<"result" | "reason">;
  private readonly responses: Counter<"status_class">;
  private readonly duration: Histogram;
  private readonly writes: Counter<"resource" | "action">;
  private readonly reconciles: Counter<"result">;
  private readonly reconcileTime: Histogram;

  constructor(
    snapshot: () => Iterable<TokenSnapshot>,
    queue: () => { depth: number; delayed: number; processing: number },
    version: string,
  ) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: PREFIX });
    new Gauge({
      name: `${PREFIX}build_info`,
      help: "Build information; always 1.",
      labelNames: ["version", "nodejs"],
      registers: [r],
    })
      .labels(version, process.versions.node)
      .set(1);
    this.refreshes = new Counter({
      name: `${PREFIX}refresh_total`,
      help: "Token fetches by result (success|failure) and reason (trigger on success, failure reason on failure).",
      labelNames: ["result", "reason"],
      registers: [r],
    });
    this.responses = new Counter({
      name: `${PREFIX}endpoint_responses_total`,
      help: "Token endpoint responses by HTTP status class (2xx, 4xx, 5xx, or error for no response).",
      labelNames: ["status_class"],
      registers: [r],
    });
    this.duration = new Histogram({
      name: `${PREFIX}request_duration_seconds`,
      help: "Token endpoint request duration, seconds.",
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [r],
    });
    this.writes = new Counter({
      name: `${PREFIX}api_writes_total`,
      help: "Writes to the Kubernetes API by resource (secret|status) and action.",
      labelNames: ["resource", "action"],
      registers: [r],
    });
    this.reconciles = new Counter({
      name: `${PREFIX}reconcile_total`,
      help: "Reconciles by result (success|error).",
      labelNames: ["result"],
      registers: [r],
    });
    this.reconcileTime = new Histogram({
      name: `${PREFIX}reconcile_duration_seconds`,
      help: "Reconcile duration, seconds.",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [r],
    });
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
            if (v !== undefined) this.labels(t.namespace, t.name).set(v);
          }
        },
      });
    perToken(
      "expiration_timestamp_seconds",
      "Expiry of the token held for a NexarToken, Unix seconds.",
      (t) => t.expiresAtSeconds,
    );
    perToken(
      "renewal_timestamp_seconds",
      "Scheduled renewal of the token held for a NexarToken, Unix seconds.",
      (t) => t.renewalAtSeconds,
    );
    perToken("ready", "1 when the NexarToken's Ready condition is True, else 0.", (t) => (t.ready ? 1 : 0));
    perToken("failed_attempts", "Consecutive failed token requests for a NexarToken.", (t) => t.failedAttempts);
    const q = (name: string, help: string, pick: (x: ReturnType<typeof queue>) => number) =>
      new Gauge({
        name: `${PREFIX}workqueue_${name}`,
        help,
        registers: [r],
        collect() {
          this.set(pick(queue()));
        },
      });
    q("depth", "Keys waiting in the work queue.", (x) => x.depth);
    q("delayed", "Keys scheduled for later (renewal timers and backoffs).", (x) => x.delayed);
    q("processing", "Keys being reconciled now.", (x) => x.processing);
  }

  refresh(_namespace: string, result: "success" | "failure", reason: string): void {
    this.refreshes.labels(result, reason).inc();
  }

  tokenRequest(status: number | undefined, durationSeconds: number): void {
    this.responses.labels(status === undefined ? "error" : `${Math.floor(status / 100)}xx`).inc();
    this.duration.observe(durationSeconds);
  }

  secretWrite(action: "create" | "update" | "recreate"): void {
    this.writes.labels("secret", action).inc();
  }

  statusWrite(): void {
    this.writes.labels("status", "patch").inc();
  }

  reconcile(result: "success" | "error", durationSeconds: number): void {
    this.reconciles.labels(result).inc();
    this.reconcileTime.observe(durationSeconds);
  }
}
