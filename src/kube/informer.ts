import type { Logger } from "pino";
import { KubeApiError, type KubeClient, type KubeList, type KubeObject, type WatchEvent } from "./client.ts";

/** Event handlers of an {@link Informer}. `old` is undefined for metadata-only informers without a store. */
export interface InformerHandlers<T extends KubeObject> {
  onAdd?(obj: T): void;
  onUpdate?(obj: T, old: T | undefined): void;
  onDelete?(obj: T): void;
}

/** Configuration of one list-watch. */
export interface InformerOptions<T extends KubeObject> {
  client: KubeClient;
  /** Collection path for a namespace (`undefined` = all namespaces), e.g. `/api/v1/namespaces/ns/secrets`. */
  path: (namespace: string | undefined) => string;
  /** Namespaces to watch; empty or undefined = cluster-wide. */
  namespaces?: readonly string[];
  /**
   * Keep objects in memory (`get`, `list`). Off for metadata-only watches that only trigger work:
   * then only each object's key and resourceVersion are kept (tens of bytes per object), so a
   * relist can still tell which objects vanished while the watch was down (→ `onDelete`) and skip
   * those that did not change.
   */
  store: boolean;
  /** Accept headers for list and watch, for metadata-only (PartialObjectMetadata) informers. */
  accept?: { list: string; watch: string };
  labelSelector?: string;
  /**
   * Applied to every listed or watched object before it is stored or handed to a handler, e.g. to
   * drop `metadata.managedFields` (client-go's TransformStripManagedFields): ~55 % of a stored
   * NexarToken's memory.
   */
  transform?: (obj: T) => T;
  /** Page size of the initial list (`limit`), default 500. */
  pageSize?: number;
  handlers: InformerHandlers<T>;
  logger: Logger;
  /** Called on each watch (re)start failure, for metrics. */
  onWatchError?: (err: unknown) => void;
  /** Server-side watch timeout, seconds (default 300–600, randomised like client-go's reflector). */
  watchTimeoutSeconds?: number;
}

/** `namespace/name`, the work-queue key of an object (controller-runtime's `NamespacedName`). */
export function keyOf(obj: KubeObject): string {
  return objectKey(obj.metadata.namespace ?? "", obj.metadata.name ?? "");
}

/** `namespace/name` of the object `name` in `namespace` ({@link keyOf} without the object). */
export function objectKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

const MIN_BACKOFF_MS = 800;
const MAX_BACKOFF_MS = 30_000;

/**
 * A supervised list-watch ("reflector" + store in client-go terms), one per watched namespace:
 * it lists (paginated), then watches from the list's resourceVersion with bookmarks; a watch that
 * ends is resumed from the last resourceVersion seen; `410 Gone` (or an ERROR event with code
 * 410) relists, emitting `onDelete` for objects that vanished meanwhile (a relist replaces the
 * events the watch missed); any other failure restarts after an exponential backoff with jitter
 * (0.8 s → 30 s).
 * A watchdog aborts a stream that stays silent past its timeout. It never gives up until
 * {@link Informer.stop}.
 */
export class Informer<T extends KubeObject> {
  private readonly o: InformerOptions<T>;
  private readonly items = new Map<string, T>();
  /** Store-less mode: key → resourceVersion of every object seen (no object bodies). */
  private readonly versions = new Map<string, string>();
  private readonly synced = new Set<string>();
  private readonly abort = new AbortController();
  private readonly loops: Promise<void>[] = [];
  private readonly scopes: (string | undefined)[];

  constructor(o: InformerOptions<T>) {
    this.o = o;
    this.scopes = o.namespaces && o.namespaces.length > 0 ? [...o.namespaces] : [undefined];
  }

  /** Starts one list-watch loop per namespace. */
  start(): void {
    for (const ns of this.scopes) this.loops.push(this.run(ns));
  }

  /** Stops all loops and waits for them. */
  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled(this.loops);
  }

  /** True once every namespace has completed its first list. */
  hasSynced(): boolean {
    return this.synced.size === this.scopes.length;
  }

  /** Resolves when {@link hasSynced}; rejects if `signal` aborts first. */
  async waitForSync(signal?: AbortSignal): Promise<void> {
    while (!this.hasSynced()) {
      if (signal?.aborted) throw new Error("aborted before informer sync");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The stored object with key `namespace/name` (store mode only). */
  get(key: string): T | undefined {
    return this.items.get(key);
  }

  /** All stored objects (store mode only). */
  list(): T[] {
    return [...this.items.values()];
  }

  /**
   * resourceVersion of the object with key `namespace/name` as last seen by this informer (store
   * and store-less mode), or undefined when it is not known to exist.
   */
  versionOf(key: string): string | undefined {
    return this.o.store ? this.items.get(key)?.metadata.resourceVersion : this.versions.get(key);
  }

  /** Number of stored objects. */
  size(): number {
    return this.items.size;
  }

  private async run(ns: string | undefined): Promise<void> {
    const log = this.o.logger.child({ informer: this.o.path(ns) });
    let rv: string | undefined;
    let failures = 0;
    while (!this.abort.signal.aborted) {
      try {
        if (rv === undefined) {
          rv = await this.relist(ns);
          this.synced.add(ns ?? "");
        }
        rv = await this.watchOnce(ns, rv);
        failures = 0;
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (err instanceof GoneError || (err instanceof KubeApiError && err.status === 410)) {
          log.info("resourceVersion too old (410 Gone); relisting");
          rv = undefined;
          continue;
        }
        failures++;
        this.o.onWatchError?.(err);
        const delay = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** (failures - 1));
        const jittered = delay / 2 + Math.random() * (delay / 2);
        log.warn({ err: describe(err), retryInMs: Math.round(jittered) }, "list/watch failed; retrying");
        await sleep(jittered, this.abort.signal);
      }
    }
  }

  /** Full paginated list; replaces the store (emitting deletes for vanished objects). Returns the list resourceVersion. */
  private async relist(ns: string | undefined): Promise<string> {
    const seen = new Set<string>();
    let cont: string | undefined;
    let rv = "";
    do {
      const page = await this.o.client.request<KubeList<T>>("GET", this.o.path(ns), {
        query: { limit: this.o.pageSize ?? 500, continue: cont, labelSelector: this.o.labelSelector },
        accept: this.o.accept?.list,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(60_000)]),
      });
      for (const item of page.items ?? []) {
        const key = keyOf(item);
        seen.add(key);
        this.upsert(item);
      }
      cont = page.metadata.continue || undefined;
      rv = page.metadata.resourceVersion ?? rv;
    } while (cont);
    if (this.o.store) {
      for (const [key, old] of this.items) {
        if (!seen.has(key) && (ns === undefined || old.metadata.namespace === ns)) {
          this.items.delete(key);
          this.o.handlers.onDelete?.(old);
        }
      }
    } else {
      for (const key of [...this.versions.keys()]) {
        const [namespace = "", name = ""] = splitKey(key);
        if (!seen.has(key) && (ns === undefined || namespace === ns)) {
          this.versions.delete(key);
          this.o.handlers.onDelete?.({ metadata: { namespace, name } } as T);
        }
      }
    }
    return rv;
  }

  private upsert(raw: T): void {
    const obj = this.o.transform ? this.o.transform(raw) : raw;
    const key = keyOf(obj);
    if (!this.o.store) {
      const rv = obj.metadata.resourceVersion ?? "";
      const before = this.versions.get(key);
      this.versions.set(key, rv);
      if (before === undefined) this.o.handlers.onAdd?.(obj);
      else if (before !== rv) this.o.handlers.onUpdate?.(obj, undefined);
      return;
    }
    const old = this.items.get(key);
    this.items.set(key, obj);
    if (!old) this.o.handlers.onAdd?.(obj);
    else if (old.metadata.resourceVersion !== obj.metadata.resourceVersion) this.o.handlers.onUpdate?.(obj, old);
  }

  /**
   * One watch from `rv`; resolves with the last resourceVersion seen when the server ends the
   * stream. The event callback never throws (an exception escaping it would leave the aborted
   * response stream with no error listener): an ERROR event is recorded, the stream is stopped
   * through its own AbortSignal, and the error (`GoneError` for code 410) is thrown from here; a
   * handler that throws is logged and the watch goes on.
   */
  private async watchOnce(ns: string | undefined, rv: string): Promise<string> {
    const timeout = this.o.watchTimeoutSeconds ?? Math.floor(300 + Math.random() * 300);
    let last = rv;
    const stop = new AbortController();
    let failure: Error | undefined;
    try {
      await this.o.client.watch<T>(
        this.o.path(ns),
        {
          query: {
            resourceVersion: rv,
            allowWatchBookmarks: true,
            timeoutSeconds: timeout,
            labelSelector: this.o.labelSelector,
          },
          accept: this.o.accept?.watch,
          signal: AbortSignal.any([this.abort.signal, stop.signal]),
          idleTimeoutMs: (timeout + 60) * 1000,
        },
        (ev: WatchEvent<T>) => {
          if (failure) return;
          if (ev.type === "ERROR") {
            const status = ev.object as unknown as { code?: number; message?: string };
            failure =
              status.code === 410
                ? new GoneError()
                : new Error(`watch error event: ${status.code ?? "?"} ${status.message ?? ""}`);
            stop.abort(failure);
            return;
          }
          last = ev.object.metadata.resourceVersion ?? last;
          if (ev.type === "BOOKMARK") return;
          try {
            if (ev.type === "DELETED") {
              const key = keyOf(ev.object);
              if (this.o.store) this.items.delete(key);
              else this.versions.delete(key);
              this.o.handlers.onDelete?.(ev.object);
              return;
            }
            this.upsert(ev.object);
          } catch (err) {
            this.o.logger.error({ err: describe(err), key: keyOf(ev.object) }, "informer event handler failed");
          }
        },
      );
    } catch (err) {
      if (failure) throw failure;
      throw err;
    }
    if (failure) throw failure;
    return last;
  }
}

/** `namespace/name` → [namespace, name] (names never contain "/"). */
function splitKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return [key.slice(0, i), key.slice(i + 1)];
}

class GoneError extends Error {
  constructor() {
    super("410 Gone");
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/**
 * Resolves after `ms` milliseconds, or at once when `signal` aborts (never rejects). The abort
 * listener is removed when the timer fires, so a long-lived signal (the informer's, used for
 * every watch backoff) does not collect one listener per sleep.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
