/**
 * The `coordination.k8s.io/v1` Lease adapter of leader election (client-go
 * `resourcelock.LeaseLock`): read, create and optimistic-concurrency update of one Lease through
 * {@link KubeClient}. The election logic is in `./leaderelection.ts`.
 */
import type { KubeClient, KubeObject } from "./client.ts";
import type { LeaderElectionRecord, LeaseLock } from "./leaderelection.ts";

/** `coordination.k8s.io/v1` LeaseSpec (Kubernetes API reference, Lease v1). Times are MicroTime strings. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** A `coordination.k8s.io/v1` Lease. */
export interface Lease extends KubeObject {
  spec?: LeaseSpec;
}

/** API path of Leases in `namespace`, or of one Lease when `name` is given. */
export function leasePath(namespace: string, name?: string): string {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  return name ? `${base}/${encodeURIComponent(name)}` : base;
}

/** client-go `LeaseSpecToLeaderElectionRecord`: absent fields become `""` / `0` / undefined. */
export function leaseToRecord(spec: LeaseSpec | undefined): LeaderElectionRecord {
  return {
    holderIdentity: spec?.holderIdentity ?? "",
    leaseDurationSeconds: spec?.leaseDurationSeconds ?? 0,
    acquireTime: spec?.acquireTime,
    renewTime: spec?.renewTime,
    leaseTransitions: spec?.leaseTransitions ?? 0,
  };
}

/** client-go `LeaderElectionRecordToLeaseSpec` (an empty holder is written as `""`, as client-go does). */
export function recordToLeaseSpec(r: LeaderElectionRecord): LeaseSpec {
  const spec: LeaseSpec = {
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    leaseTransitions: r.leaseTransitions,
  };
  if (r.acquireTime) spec.acquireTime = r.acquireTime;
  if (r.renewTime) spec.renewTime = r.renewTime;
  return spec;
}

/**
 * {@link LeaseLock} over one Lease. Remembers the last Lease read or written; `update` PUTs it
 * with the new spec and its `metadata.resourceVersion`, so a concurrent writer makes it fail with
 * 409 Conflict (Kubernetes API conventions, "Concurrency control and consistency").
 */
export class KubeLeaseLock implements LeaseLock {
  private readonly kube: KubeClient;
  private readonly namespace: string;
  private readonly name: string;
  private lease: Lease | undefined;

  constructor(kube: KubeClient, namespace: string, name: string) {
    this.kube = kube;
    this.namespace = namespace;
    this.name = name;
  }

  /**
   * Watches this one Lease (`fieldSelector=metadata.name=…`, the `watch` verb on leases) and calls
   * `onReleased` for every event that shows it released. The watch is reopened after it ends or
   * fails (2 s later after a failure) until `signal` aborts.
   */
  async watchReleased(signal: AbortSignal, onReleased: () => void): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.kube.watch<Lease>(
          leasePath(this.namespace),
          {
            query: { fieldSelector: `metadata.name=${this.name}`, allowWatchBookmarks: true, timeoutSeconds: 300 },
            idleTimeoutMs: 330_000,
            signal,
          },
          (ev) => {
            if ((ev.type === "ADDED" || ev.type === "MODIFIED") && !ev.object.spec?.holderIdentity) onReleased();
          },
        );
      } catch {
        if (signal.aborted) return;
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, 2_000);
          function done() {
            clearTimeout(t);
            signal.removeEventListener("abort", done);
            resolve();
          }
          signal.addEventListener("abort", done, { once: true });
        });
      }
    }
  }

  describe(): string {
    return `${this.namespace}/${this.name}`;
  }

  async get(signal: AbortSignal): Promise<LeaderElectionRecord | undefined> {
    const lease = await this.kube.getOrUndefined<Lease>(leasePath(this.namespace, this.name), { signal });
    if (!lease) return undefined;
    this.lease = lease;
    return leaseToRecord(lease.spec);
  }

  async create(record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaderElectionRecord> {
    const body: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: this.name, namespace: this.namespace },
      spec: recordToLeaseSpec(record),
    };
    this.lease = await this.kube.request<Lease>("POST", leasePath(this.namespace), { body, signal });
    return leaseToRecord(this.lease.spec);
  }

  /** @throws Error when nothing was read yet; KubeApiError 409 on a stale resourceVersion. */
  async update(record: LeaderElectionRecord, signal: AbortSignal): Promise<LeaderElectionRecord> {
    if (!this.lease) throw new Error(`lease ${this.describe()} not read yet`);
    const body: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: this.lease.metadata,
      spec: recordToLeaseSpec(record),
    };
    this.lease = await this.kube.request<Lease>("PUT", leasePath(this.namespace, this.name), { body, signal });
    return leaseToRecord(this.lease.spec);
  }
}
