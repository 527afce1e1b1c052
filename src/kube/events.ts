import type { Logger } from "pino";
import type { KubeClient, KubeObject } from "./client.ts";
import { eventsPath } from "./paths.ts";

/** Records Kubernetes Events about an object. */
export interface EventRecorder {
  normal(obj: KubeObject, reason: string, note: string): void;
  warn(obj: KubeObject, reason: string, note: string): void;
}

/** How long an identical Event (same object, type, reason, note) is suppressed, ms. */
export const EVENT_DEDUPE_MS = 10 * 60_000;

/** Most (object, type, reason) signatures remembered for de-duplication; the oldest is forgotten first. */
export const EVENT_DEDUPE_ENTRIES = 50_000;

/**
 * Event POSTs in flight at most: one, as client-go's broadcaster, which sends Events from one
 * goroutine, one at a time, behind a buffered channel. Events are a report, not the work: under
 * a burst (1,000 new NexarTokens) they trail the Secret and status writes instead of competing
 * with them for the API server.
 */
export const EVENT_MAX_IN_FLIGHT = 1;

/**
 * Events waiting to be sent at most; a new Event beyond that is dropped (and logged at debug).
 * client-go's `maxQueuedEvents` is the same 1,000 (k8s.io/client-go/tools/record/event.go).
 */
export const EVENT_MAX_QUEUED = 1_000;

/**
 * Writes `events.k8s.io/v1` Events, fire-and-forget (an Event failure never fails a reconcile),
 * through a bounded queue: at most {@link EVENT_MAX_IN_FLIGHT} POSTs at once and
 * {@link EVENT_MAX_QUEUED} waiting, in the order recorded.
 * An Event identical to the last one recorded for the same object, type and reason (same note)
 * within {@link EVENT_DEDUPE_MS} is dropped, so neither a reconcile loop nor a failure that
 * alternates with other Events (fail, conflict, fail, …) can flood the API server; a changed
 * note (e.g. a new expiry) is recorded. Notes must never carry secret values; callers pass only
 * reasons and redacted messages.
 */
export class KubeEventRecorder implements EventRecorder {
  /**
   * Last Event per object, type and reason: its note and when (ms) it was recorded. Saves the
   * Event POSTs of repeats (a failure retried with backoff, a conflict re-checked): at most
   * {@link EVENT_DEDUPE_ENTRIES} entries, least recently recorded dropped first.
   */
  private readonly last = new Map<string, { note: string; at: number }>();
  private readonly kube: KubeClient;
  private readonly logger: Logger;
  private readonly instance: string;
  private seq = 0;
  private readonly queue: { ns: string; reason: string; body: Record<string, unknown> }[] = [];
  private inFlight = 0;
  private dropped = 0;
  private idleWaiters: (() => void)[] = [];

  /** @param instance reporting instance (pod name), shown as `reportingInstance`. */
  constructor(kube: KubeClient, logger: Logger, instance: string) {
    this.kube = kube;
    this.logger = logger;
    this.instance = instance;
  }

  normal(obj: KubeObject, reason: string, note: string): void {
    this.emit(obj, "Normal", reason, note);
  }

  warn(obj: KubeObject, reason: string, note: string): void {
    this.emit(obj, "Warning", reason, note);
  }

  private emit(obj: KubeObject, type: "Normal" | "Warning", reason: string, note: string): void {
    const ns = obj.metadata.namespace ?? "default";
    const key = `${obj.metadata.uid}/${type}/${reason}`;
    const now = Date.now();
    const prev = this.last.get(key);
    if (prev && prev.note === note && now - prev.at < EVENT_DEDUPE_MS) return;
    this.last.delete(key); // re-insert: Map order is then least recently recorded first
    this.last.set(key, { note, at: now });
    if (this.last.size > EVENT_DEDUPE_ENTRIES) this.last.delete(this.last.keys().next().value as string);
    const body = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { name: eventName(obj.metadata.name ?? "object", now, this.seq++), namespace: ns },
      eventTime: new Date(now).toISOString().replace("Z", "000Z"),
      reportingController: "nexar-operator.io/nexar-token-operator",
      reportingInstance: this.instance,
      action: reason === "TokenIssued" ? "Issue" : "Reconcile",
      type,
      reason,
      note: note.slice(0, 1024),
      regarding: {
        apiVersion: obj.apiVersion,
        kind: obj.kind,
        namespace: ns,
        name: obj.metadata.name,
        uid: obj.metadata.uid,
        resourceVersion: obj.metadata.resourceVersion,
      },
    };
    if (this.queue.length >= EVENT_MAX_QUEUED) {
      this.dropped++;
      this.logger.debug({ reason, dropped: this.dropped }, "event queue full; event dropped");
      return;
    }
    this.queue.push({ ns, reason, body });
    this.pump();
  }

  /** Events recorded and not yet sent (queued or in flight). */
  pending(): number {
    return this.queue.length + this.inFlight;
  }

  /** Resolves once every Event recorded so far has been sent (or failed). */
  idle(): Promise<void> {
    if (this.pending() === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    while (this.inFlight < EVENT_MAX_IN_FLIGHT && this.queue.length > 0) {
      const { ns, reason, body } = this.queue.shift() as (typeof this.queue)[number];
      this.inFlight++;
      this.kube
        .request("POST", eventsPath(ns), { body })
        .catch((err: unknown) => {
          this.logger.debug({ err: (err as Error).message, reason }, "event not recorded");
        })
        .finally(() => {
          this.inFlight--;
          this.pump();
          if (this.pending() === 0) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }
}

/**
 * Name of a new Event: `<object name>.<hex timestamp>`, as client-go's recorder does
 * (`fmt.Sprintf("%v.%x", ref.Name, t.UnixNano())`; a `generateName` ending in "." is rejected by
 * the API server). `seq` separates Events of one millisecond. The object name is cut so the
 * whole stays a valid DNS subdomain (≤ 253 characters).
 */
export function eventName(objectName: string, nowMs: number, seq: number): string {
  const nanos = BigInt(Math.floor(nowMs)) * 1_000_000n + BigInt(seq % 1_000_000);
  const suffix = `.${nanos.toString(16)}`;
  return `${objectName.slice(0, 253 - suffix.length).replace(/[.-]+$/, "")}${suffix}`;
}
