import type { KubeConfig as LocalKubeConfig } from "./kubeconfig.ts";

/** What the client needs of a kubeconfig (client-node's KubeConfig fits too). */
type KubeConfig = Pick<LocalKubeConfig, "getCurrentCluster" | "applyToHTTPSOptions">;
import { Agent, request, type Dispatcher } from "undici";
import type { Readable } from "node:stream";
import { createInterface } from "node:readline";

import type { KubeObject } from "../api/meta.ts";
export type { KubeObject, ObjectMeta, OwnerReference } from "../api/meta.ts";

/** A `core/v1` Secret; `data` values are base64 (Kubernetes API reference, Secret v1). */
export interface Secret extends KubeObject {
  type?: string;
  data?: Record<string, string>;
  immutable?: boolean;
}

/** A list response (`metadata.continue` for pagination, `resourceVersion` to start a watch from). */
export interface KubeList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

/** One line of a watch stream (`metav1.WatchEvent`). `object` is a `Status` for ERROR. */
export interface WatchEvent<T> {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: T;
}

/**
 * A non-2xx answer of the API server. `status` is the HTTP status; `reason` is the
 * `Status.reason` (e.g. `NotFound`, `Conflict`, `AlreadyExists`, `Expired`). The message is the
 * API server's `Status.message`, which never holds Secret data.
 */
export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  constructor(status: number, reason: string | undefined, message: string) {
    super(message);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
  }
}

/** True when `err` is a {@link KubeApiError} with the given HTTP status. */
export function isStatus(err: unknown, status: number): boolean {
  return err instanceof KubeApiError && err.status === status;
}

/** Accept header asking for `meta.k8s.io/v1` PartialObjectMetadata (metadata-only) responses. */
export const ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
/** Accept header for metadata-only lists. */
export const ACCEPT_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";

/** Options of one API request. Paths are absolute API paths such as `/api/v1/namespaces/x/secrets/y`. */
export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  /** Content-Type of `body`; default `application/json`. Use `application/merge-patch+json` for merge patches. */
  contentType?: string;
  accept?: string;
  signal?: AbortSignal;
}

/**
 * A thin REST client for the Kubernetes API: credentials, TLS and the server address come
 * from a client-node {@link KubeConfig} (kubeconfig file or in-cluster service account), the
 * transport is one undici {@link Agent} so connections are reused. Nothing here knows about
 * NexarTokens.
 */
export class KubeClient {
  readonly server: string;
  private readonly kc: KubeConfig;
  /** Pool for ordinary requests (bounded, kept alive). */
  private readonly agent: Agent;
  /** Separate pool for long-lived watch streams, so watches can never starve requests such as Lease renewals. */
  private readonly watchAgent: Agent;
  private readonly timeoutMs: number;

  private constructor(kc: KubeConfig, server: string, agent: Agent, watchAgent: Agent, timeoutMs: number) {
    this.kc = kc;
    this.server = server.replace(/\/$/, "");
    this.agent = agent;
    this.watchAgent = watchAgent;
    this.timeoutMs = timeoutMs;
  }

  /**
   * Builds a client for the current context of `kc`.
   * @param timeoutMs deadline of one non-watch request, milliseconds (default 30 000).
   * @throws Error when the kubeconfig has no current cluster.
   */
  static async create(kc: KubeConfig, timeoutMs = 30_000): Promise<KubeClient> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    const opts: { ca?: unknown; cert?: unknown; key?: unknown; rejectUnauthorized?: boolean } = {};
    await kc.applyToHTTPSOptions(opts as never);
    const connect = {
      ca: opts.ca as string | Buffer | undefined,
      cert: opts.cert as string | Buffer | undefined,
      key: opts.key as string | Buffer | undefined,
      rejectUnauthorized: cluster.skipTLSVerify ? false : opts.rejectUnauthorized,
    };
    const agent = new Agent({ connections: 32, keepAliveTimeout: 30_000, connect });
    const watchAgent = new Agent({ keepAliveTimeout: 30_000, connect });
    return new KubeClient(kc, cluster.server, agent, watchAgent, timeoutMs);
  }

  /** Current request headers from the kubeconfig (bearer tokens may rotate, so this is asked per request). */
  private async authHeaders(): Promise<Record<string, string>> {
    const opts: { headers?: Record<string, string | number | string[]>; auth?: string } = {};
    await this.kc.applyToHTTPSOptions(opts as never);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(opts.headers ?? {})) out[k.toLowerCase()] = String(v);
    if (opts.auth) out.authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`;
    return out;
  }

  private url(path: string, query?: RequestOptions["query"]): string {
    const u = new URL(this.server + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  private async send(method: Dispatcher.HttpMethod, path: string, o: RequestOptions, stream: boolean) {
    const headers: Record<string, string> = {
      ...(await this.authHeaders()),
      accept: o.accept ?? "application/json",
      "user-agent": "nexar-token-operator",
    };
    let body: string | undefined;
    if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers["content-type"] = o.contentType ?? "application/json";
    }
    const res = await request(this.url(path, o.query), {
      method,
      headers,
      body,
      dispatcher: stream ? this.watchAgent : this.agent,
      signal: o.signal ?? (stream ? undefined : AbortSignal.timeout(this.timeoutMs)),
      headersTimeout: this.timeoutMs,
      bodyTimeout: stream ? 0 : this.timeoutMs,
    });
    if (res.statusCode >= 300) {
      const text = await res.body.text().catch(() => "");
      throw toApiError(res.statusCode, text, method, path);
    }
    return res;
  }

  /**
   * One request; resolves with the parsed JSON body.
   * @throws KubeApiError on a non-2xx answer; undici errors on network failure or timeout.
   */
  async request<T>(method: Dispatcher.HttpMethod, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, o, false);
    return (await res.body.json()) as T;
  }

  /** GET that resolves `undefined` on 404 instead of throwing. */
  async getOrUndefined<T>(path: string, o: RequestOptions = {}): Promise<T | undefined> {
    try {
      return await this.request<T>("GET", path, o);
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  /**
   * Opens a watch (`?watch=1`) and calls `onEvent` for each event line, in order. Resolves when
   * the server closes the stream (e.g. after `timeoutSeconds`); rejects on a network error, an
   * error status, or when nothing (not even a bookmark) arrives for `idleTimeoutMs`.
   */
  async watch<T>(
    path: string,
    o: RequestOptions & { idleTimeoutMs: number },
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void> {
    const ac = new AbortController();
    const outer = o.signal;
    const onAbort = () => ac.abort(outer?.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => ac.abort(new Error("watch idle timeout")), o.idleTimeoutMs);
    };
    try {
      arm();
      const res = await this.send("GET", path, { ...o, query: { ...o.query, watch: 1 }, signal: ac.signal }, true);
      const body = res.body as Readable;
      // Errors reach the loop below through the iterator; these listeners only keep a late error
      // (e.g. the abort in `finally` after a throwing `onEvent`) from becoming an unhandled 'error'.
      body.on("error", () => {});
      const lines = createInterface({ input: body, crlfDelay: Infinity });
      lines.on("error", () => {});
      for await (const line of lines) {
        arm();
        if (!line) continue;
        onEvent(JSON.parse(line) as WatchEvent<T>);
      }
    } finally {
      clearTimeout(idle);
      outer?.removeEventListener("abort", onAbort);
      ac.abort();
    }
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    await Promise.all([this.agent.close(), this.watchAgent.close()]);
  }
}

function toApiError(status: number, text: string, method: string, path: string): KubeApiError {
  let reason: string | undefined;
  let message = `${method} ${path}: HTTP ${status}`;
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string };
    reason = s.reason;
    if (s.message) message = `${method} ${path}: ${s.message}`;
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, message);
}
