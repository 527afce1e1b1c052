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

/**
 * Writes `events.k8s.io/v1` Events, fire-and-forget (an Event failure never fails a reconcile).
 * Identical Events for one object are de-duplicated for {@link EVENT_DEDUPE_MS} so a reconcile
 * loop cannot flood the API server. Notes must never carry secret values; callers pass only
 * reasons and redacted messages.
 */
export class KubeEventRecorder implements EventRecorder {
  private readonly last = new Map<string, { sig: string; at: number }>();
  private readonly kube: KubeClient;
  private readonly logger: Logger;
  private readonly instance: string;

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
    const key = `${obj.metadata.uid}`;
    const sig = `${type}\0${reason}\0${note}`;
    const now = Date.now();
    const prev = this.last.get(key);
    if (prev && prev.sig === sig && now - prev.at < EVENT_DEDUPE_MS) return;
    this.last.set(key, { sig, at: now });
    if (this.last.size > 50_000) this.last.delete(this.last.keys().next().value as string);
    const body = {
      apiVersion: "events.k8s.io/v1",
      kind: "Event",
      metadata: { generateName: `${obj.metadata.name}.`, namespace: ns },
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
    this.kube.request("POST", eventsPath(ns), { body }).catch((err: unknown) => {
      this.logger.debug({ err: (err as Error).message, reason }, "event not recorded");
    });
  }
}
