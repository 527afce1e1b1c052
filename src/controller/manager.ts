import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import type { NexarToken } from "../api/types.ts";
import {
  ACCEPT_METADATA,
  ACCEPT_METADATA_LIST,
  isNamespaceTerminating,
  type KubeClient,
  type KubeObject,
} from "../kube/client.ts";
import { LABEL_MANAGED_BY, MANAGED_BY } from "../api/constants.ts";
import { targetNameOf } from "../api/defaults.ts";
import { Informer, keyOf, objectKey } from "../kube/informer.ts";
import { nexarTokenPath, secretPath } from "../kube/paths.ts";
import { KubeEventRecorder } from "../kube/events.ts";
import { SecretsApi } from "../kube/secrets.ts";
import { StatusApi } from "../kube/status.ts";
import type { TokenSource } from "../issuance/types.ts";
import { BACKOFF_SCALE_ENV, ItemExponentialFailureRateLimiter } from "../renewal/index.ts";
import { PromMetrics, type TokenSnapshot } from "../observability/metrics.ts";
import { Reconciler, type ReconcilerConfig } from "./reconciler.ts";
import { WorkQueue } from "./workqueue.ts";
import { SecretIndex } from "./secret-index.ts";
import { stripManagedFields } from "./compact.ts";

/** Settings of one operator process. */
export interface ManagerOptions {
  kube: KubeClient;
  tokens: TokenSource;
  logger: Logger;
  /** Namespaces to watch; empty = all. */
  namespaces: readonly string[];
  /** Parallel reconciles (distinct keys); required (the CLI's `--concurrency` defaults to 64). */
  concurrency: number;
  /** `host:port` of the metrics/health HTTP server; empty string = none. */
  httpAddress: string;
  /**
   * The reconciler's settings. `backoffScale` (TEST-ONLY, default 1) is read once by the CLI
   * (`backoffScaleFromEnv` in src/cli/run.ts).
   */
  reconciler: ReconcilerConfig;
  version: string;
  instance: string;
  /** Set once metrics exist, so the token client can report responses. */
  onMetrics?: (m: PromMetrics) => void;
}

/**
 * One controller process (controller-runtime's Manager + one Controller): a NexarToken informer
 * with a store, a metadata-only Secret watch that stores nothing and only maps Secret events to
 * the NexarTokens that reference them, a work queue, N workers running the {@link Reconciler},
 * and the `/metrics`, `/healthz`, `/readyz` endpoints.
 */
export class Manager {
  readonly queue: WorkQueue;
  readonly metrics: PromMetrics;
  private readonly o: ManagerOptions;
  private readonly tokens: Informer<NexarToken>;
  private readonly secrets: Informer<KubeObject>;
  /**
   * Which NexarTokens reference which Secret. Saves reconciles: a Secret event wakes only the
   * NexarTokens that reference it, so the Secret watch can stay metadata-only with no store.
   */
  private readonly index = new SecretIndex();
  /**
   * Per NexarToken being reconciled: the latest resourceVersion of a Secret event held back (see
   * secretChanged). Saves the idle reconcile of the echo of our own write (echo suppression).
   */
  private readonly echoes = new Map<string, string>();
  private readonly limiter = new ItemExponentialFailureRateLimiter();
  private readonly reconciler: Reconciler;
  private readonly secretsApi: SecretsApi;
  private server: Server | undefined;
  private readonly events: KubeEventRecorder;
  private workers: Promise<void>[] = [];
  private stopping = false;
  private stopped = false;
  private leading = false;
  private cachesSynced = false;

  constructor(o: ManagerOptions) {
    this.o = o;
    const log = o.logger;
    this.events = new KubeEventRecorder(o.kube, log, o.instance);
    this.metrics = new PromMetrics(
      () => this.snapshot(),
      () => ({ depth: this.queue.len(), delayed: this.queue.delayedLen(), processing: this.queue.processingLen() }),
      o.version,
      { maxConcurrentReconciles: o.concurrency },
    );
    this.queue = new WorkQueue(Date.now, this.metrics.queueMetrics());
    o.onMetrics?.(this.metrics);
    this.tokens = new Informer<NexarToken>({
      client: o.kube,
      path: (ns) => nexarTokenPath(ns),
      namespaces: o.namespaces,
      store: true,
      transform: stripManagedFields,
      logger: log,
      handlers: {
        onAdd: (nt) => {
          const key = keyOf(nt);
          this.index.set(key, refsOf(nt));
          this.reconciler.observed(key, nt);
          this.queue.add(key);
        },
        onUpdate: (nt, old) => {
          const key = keyOf(nt);
          this.index.set(key, refsOf(nt));
          this.reconciler.observed(key, nt); // the echo of a status write: drop the written copy
          // Status-only changes (our own writes) need no reconcile (controller-runtime's
          // GenerationChangedPredicate, widened to annotations and labels for refresh requests).
          if (old && !specOrMetaChanged(nt, old)) return;
          this.queue.add(key);
        },
        onDelete: (nt) => {
          this.index.delete(keyOf(nt));
          this.reconciler.forget(keyOf(nt));
          this.queue.add(keyOf(nt));
        },
      },
    });
    this.secrets = new Informer<KubeObject>({
      client: o.kube,
      path: (ns) => secretPath(ns),
      namespaces: o.namespaces,
      store: false,
      accept: { list: ACCEPT_METADATA_LIST, watch: ACCEPT_METADATA },
      logger: log,
      handlers: {
        onUpdate: (s) => this.secretChanged(s, true),
        onAdd: (s) => this.secretChanged(s, true),
        onDelete: (s) => this.secretChanged(s, false),
      },
    });
    this.secretsApi = new SecretsApi(o.kube, (action) => this.metrics.secretWrite(action));
    const backoffScale = o.reconciler.backoffScale ?? 1;
    if (backoffScale !== 1) {
      log.warn({ backoffScale }, `failure backoff scaled by ${BACKOFF_SCALE_ENV} (test-only setting)`);
    }
    this.reconciler = new Reconciler({
      getNexarToken: (k) => this.tokens.get(k),
      secrets: this.secretsApi,
      statuses: new StatusApi(o.kube),
      tokens: o.tokens,
      secretVersion: (k) => this.secrets.versionOf(k),
      events: this.events,
      metrics: this.metrics,
      logger: log,
      config: { ...o.reconciler, backoffScale },
    });
  }

  /**
   * Enqueues the NexarTokens referencing Secret `s`, except — for an add or update (`present`) —
   * those whose reconciler knows this resourceVersion as the one it wrote to their target: the
   * echo of the operator's own write, which would otherwise cost one idle reconcile per write.
   * The echo often arrives before the write's response, so while the NexarToken is being
   * reconciled the decision waits for the reconcile's end ({@link settleEcho}).
   */
  private secretChanged(s: KubeObject, present: boolean): void {
    const rv = s.metadata.resourceVersion;
    for (const key of this.index.referencing(keyOf(s))) {
      if (present && rv !== undefined) {
        if (this.reconciler.knowsTargetVersion(key, rv)) continue;
        if (this.queue.isProcessing(key)) {
          this.echoes.set(key, rv);
          continue;
        }
      }
      this.queue.add(key);
    }
  }

  /** After a reconcile of `key`: a Secret event held back meanwhile that was not our own write is queued. */
  private settleEcho(key: string): void {
    const rv = this.echoes.get(key);
    if (rv === undefined) return;
    this.echoes.delete(key);
    if (!this.reconciler.knowsTargetVersion(key, rv)) this.queue.add(key);
  }

  private snapshot(): TokenSnapshot[] {
    return this.tokens.list().map((nt) => {
      const s = nt.status;
      const ready = s?.conditions?.find((c) => c.type === "Ready")?.status === "True";
      const sec = (t?: string) => (t ? Date.parse(t) / 1000 : undefined);
      return {
        namespace: nt.metadata.namespace ?? "",
        name: nt.metadata.name ?? "",
        ready,
        expiresAtSeconds: sec(s?.expiresAt),
        renewalAtSeconds: sec(s?.renewalTime),
        failedAttempts: s?.failedAttempts ?? 0,
      };
    });
  }

  /** True once both informers have listed. */
  synced(): boolean {
    return this.tokens.hasSynced() && this.secrets.hasSynced();
  }

  /**
   * Starts the HTTP endpoints, the informers and, once they have synced, the workers (leader
   * election off). With leader election, call {@link startInformers} at once and
   * {@link startWorkers} when this replica becomes leader.
   */
  async start(): Promise<void> {
    await this.startInformers();
    this.startWorkers();
  }

  /**
   * Starts the HTTP endpoints and the informers and resolves once both caches have synced. A
   * standby replica stops here: warm caches, `/readyz` ready, no workers, no writes. Keys queued
   * meanwhile (every NexarToken, from the initial list) wait for {@link startWorkers}.
   */
  async startInformers(): Promise<void> {
    if (this.o.httpAddress && !this.server) await this.listen(this.o.httpAddress);
    this.tokens.start();
    this.secrets.start();
    await this.tokens.waitForSync();
    await this.secrets.waitForSync();
    this.cachesSynced = true;
  }

  /**
   * Starts the workers (on the leader, or at once with leader election off). Idempotent; a no-op
   * after {@link drain} began. Call it only after {@link startInformers} resolved.
   */
  startWorkers(): void {
    if (this.leading || this.stopping) return;
    this.leading = true;
    this.metrics.setLeader(true);
    void this.primeTargets().finally(() => {
      if (this.stopping) return;
      this.o.logger.info({ nexartokens: this.tokens.size() }, "caches synced; starting workers");
      for (let i = 0; i < this.o.concurrency; i++) this.workers.push(this.worker());
    });
  }

  /**
   * Before the first pass of reconciles: one paginated LIST of the Secrets this operator manages
   * (label selector) instead of one GET per NexarToken; each Secret some NexarToken references is
   * handed to the reconciler, the others dropped at once. Best effort: on error the reconciles
   * read their Secrets one by one.
   */
  private async primeTargets(): Promise<void> {
    const started = performance.now();
    let primed = 0;
    try {
      for (const ns of this.o.namespaces.length > 0 ? this.o.namespaces : [undefined]) {
        await this.secretsApi.list(
          ns,
          `${LABEL_MANAGED_BY}=${MANAGED_BY}`,
          (items) => {
            for (const s of items) {
              if (this.index.referencing(keyOf(s)).length === 0) continue;
              this.reconciler.prime(stripManagedFields(s));
              primed++;
            }
          },
          { stop: () => this.stopping },
        );
      }
    } catch (err) {
      this.o.logger.warn({ err: (err as Error).message }, "could not list managed Secrets; reading them one by one");
    }
    this.o.logger.info({ secrets: primed, ms: Math.round(performance.now() - started) }, "target Secrets listed");
    setTimeout(() => this.reconciler.clearPrimed(), 300_000).unref();
  }

  /** True once the workers run (this replica leads, or leader election is off). */
  isLeading(): boolean {
    return this.leading;
  }

  /**
   * Stops intake and waits for in-flight reconciles (and their writes) to finish. The informers
   * and HTTP endpoints keep running (`/readyz` turns 503). Idempotent.
   */
  async drain(): Promise<void> {
    this.stopping = true;
    this.queue.shutDown();
    await Promise.allSettled(this.workers);
    // Events the last reconciles recorded: give them a moment to go out, never hold up the exit.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.events.idle(), new Promise<void>((r) => (timer = setTimeout(r, EVENTS_DRAIN_MS)))]);
    clearTimeout(timer);
  }

  /** Stops intake, lets in-flight reconciles finish, stops informers and the HTTP server. Idempotent. */
  async stop(): Promise<void> {
    await this.drain();
    if (this.stopped) return;
    this.stopped = true;
    await this.tokens.stop();
    await this.secrets.stop();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private async worker(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const started = performance.now();
      try {
        const res = await this.reconciler.reconcile(key);
        this.o.logger.debug({ nexartoken: key, ms: Math.round(performance.now() - started) }, "reconciled");
        this.limiter.forget(key);
        const result = res.requeueAfterMs !== undefined ? "requeue_after" : "success";
        this.metrics.reconcile(result, (performance.now() - started) / 1000);
        if (res.requeueAfterMs !== undefined && !this.stopping) this.queue.addAfter(key, res.requeueAfterMs);
      } catch (err) {
        if (isNamespaceTerminating(err)) {
          // Nothing can be created in that namespace again and its deletion will delete this
          // NexarToken too: no retry, no warning (client-go controllers Forget such keys). A later
          // event about it reconciles it again, as quietly.
          this.limiter.forget(key);
          this.metrics.reconcile("success", (performance.now() - started) / 1000);
          this.o.logger.info(
            { nexartoken: key },
            "namespace is being terminated; not reconciling this NexarToken again until it changes",
          );
          continue;
        }
        this.metrics.reconcile("error", (performance.now() - started) / 1000);
        const delay = this.limiter.when(key);
        this.o.logger.warn(
          { nexartoken: key, err: (err as Error).message, retryInMs: delay },
          "reconcile failed; requeued",
        );
        if (!this.stopping) {
          this.metrics.retry();
          this.queue.addAfter(key, delay);
        }
      } finally {
        this.settleEcho(key);
        this.queue.done(key);
      }
    }
  }

  private listen(address: string): Promise<void> {
    const target = listenTarget(address);
    this.server = createServer((req, res) => {
      const url = req.url ?? "/";
      if (url === "/metrics") {
        this.metrics.registry
          .metrics()
          .then((body) => {
            res.writeHead(200, { "content-type": this.metrics.registry.contentType });
            res.end(body);
          })
          .catch(() => {
            res.writeHead(500);
            res.end();
          });
        return;
      }
      if (url === "/healthz") {
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("ok\n");
        return;
      }
      if (url === "/readyz") {
        // Ready once the caches synced, whether leading or standby (SPEC §5); not while shutting down.
        const ok = this.cachesSynced && !this.stopping;
        const body = this.stopping
          ? "shutting down\n"
          : !this.cachesSynced
            ? "caches not synced\n"
            : `ok (${this.leading ? "leader" : "standby"})\n`;
        res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" });
        res.end(body);
        return;
      }
      res.writeHead(404);
      res.end();
    });
    return new Promise((resolve, reject) => {
      this.server?.once("error", reject);
      this.server?.listen(target, () => resolve());
    });
  }
}

/**
 * Where the HTTP server listens for `address` (`host:port`, flag `--http-address`): an empty host
 * (`:8080`) means every address, IPv6 and IPv4 alike (Node's `listen` without a host binds `::`
 * dual-stack, or `0.0.0.0` where IPv6 is unavailable); an IPv6 host may be bracketed
 * (`[::1]:8080`).
 * @throws RangeError when there is no `:port` or the port is not an integer in 0–65535.
 */
export function listenTarget(address: string): { host?: string; port: number } {
  const i = address.lastIndexOf(":");
  const portText = address.slice(i + 1);
  const port = Number(portText);
  if (i < 0 || !/^\d{1,5}$/.test(portText) || port > 65_535) {
    throw new RangeError(`HTTP address "${address}": expected host:port, e.g. :8080 or 127.0.0.1:8080`);
  }
  let host = address.slice(0, i);
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1);
  return host === "" ? { port } : { host, port };
}

/**
 * `namespace/name` of the Secrets NexarToken `nt` references (credentials, target), read from the
 * stored spec without validating it: a Secret event must wake an invalid NexarToken too.
 */
function refsOf(nt: NexarToken): string[] {
  const ns = nt.metadata.namespace ?? "";
  const creds = nt.spec?.credentialsSecretRef?.name;
  return [creds, targetNameOf(nt.spec, nt.metadata)].filter((x): x is string => !!x).map((n) => objectKey(ns, n));
}

function specOrMetaChanged(a: NexarToken, b: NexarToken): boolean {
  return (
    a.metadata.generation !== b.metadata.generation ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp ||
    JSON.stringify(a.metadata.annotations ?? {}) !== JSON.stringify(b.metadata.annotations ?? {}) ||
    JSON.stringify(a.metadata.labels ?? {}) !== JSON.stringify(b.metadata.labels ?? {})
  );
}

/** Longest a shutdown waits for queued Events to be sent, ms. */
const EVENTS_DRAIN_MS = 2_000;
