import type { KubeConfig as LocalKubeConfig } from "./kubeconfig.ts";

/** What the client needs of a kubeconfig (client-node's KubeConfig fits too). */
type KubeConfig = Pick<LocalKubeConfig, "getCurrentCluster" | "applyToHTTPSOptions">;
import { Agent, request, type Dispatcher } from "undici";
import type { Readable } from "node:stream";
import { Http2Connection, Http2UnsupportedError, type TlsSettings } from "./h2.ts";

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

/** A response whose body has not been read: HTTP status and the body as a byte stream. */
interface RawResponse {
  status: number;
  body: Readable;
}

/**
 * A thin REST client for the Kubernetes API: credentials, TLS and the server address come
 * from a {@link KubeConfig} (kubeconfig file or in-cluster service account). Nothing here knows
 * about NexarTokens.
 *
 * Transport: for an `https://` server, one HTTP/2 connection for requests and one for watch
 * streams (so a burst of watch events can never hold up a request such as a Lease renewal), on
 * node:http2 directly — as client-go, which multiplexes a client's requests over one HTTP/2
 * connection. A server that does not offer HTTP/2 (ALPN `h2`), or an `http://` server (such as
 * `kubectl proxy`), is spoken to over HTTP/1.1 with undici, up to 32 kept-alive connections.
 */
export class KubeClient {
  readonly server: string;
  private readonly kc: KubeConfig;
  private readonly connect: TlsSettings;
  private readonly timeoutMs: number;
  /** Path of the server URL (e.g. `/k8s/clusters/c-1` behind a proxy), without a trailing slash; often empty. */
  private readonly prefix: string;
  /** HTTP/2 connections (requests, watches); undefined once HTTP/1.1 is in use. */
  private h2: { requests: Http2Connection; watches: Http2Connection } | undefined;
  /** HTTP/1.1 pools (requests, watches), made when first needed. */
  private h1: { requests: Agent; watches: Agent } | undefined;

  private constructor(kc: KubeConfig, server: string, connect: TlsSettings, timeoutMs: number) {
    this.kc = kc;
    this.server = server.replace(/\/$/, "");
    this.connect = connect;
    this.timeoutMs = timeoutMs;
    const origin = new URL(this.server);
    this.prefix = origin.pathname.replace(/\/$/, "");
    if (origin.protocol === "https:") {
      this.h2 = {
        requests: new Http2Connection(this.server, connect),
        watches: new Http2Connection(this.server, connect),
      };
    }
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
    const connect: TlsSettings = {
      ca: opts.ca as string | Buffer | undefined,
      cert: opts.cert as string | Buffer | undefined,
      key: opts.key as string | Buffer | undefined,
      rejectUnauthorized: cluster.skipTLSVerify ? false : opts.rejectUnauthorized,
    };
    return new KubeClient(kc, cluster.server, connect, timeoutMs);
  }

  /** Whether requests go over HTTP/2 (false: HTTP/1.1). */
  get http2(): boolean {
    return this.h2 !== undefined;
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

  /**
   * The request target: the server URL's path, `path` (already encoded, as from `paths.ts`) and
   * the query (`?k=v&…`, URL-encoded; undefined values left out).
   */
  private target(path: string, query?: RequestOptions["query"]): string {
    if (!query) return this.prefix + path;
    const params = new URLSearchParams();
    for (const k in query) {
      const v = query[k];
      if (v !== undefined) params.set(k, String(v));
    }
    const q = params.toString();
    return this.prefix + (q ? `${path}${path.includes("?") ? "&" : "?"}${q}` : path);
  }

  private pools(): { requests: Agent; watches: Agent } {
    this.h1 ??= {
      requests: new Agent({ connections: 32, keepAliveTimeout: 30_000, connect: this.connect, allowH2: false }),
      watches: new Agent({ keepAliveTimeout: 30_000, connect: this.connect, allowH2: false }),
    };
    return this.h1;
  }

  /** Sends a request and resolves with the status and the unread body (after a 2xx) or throws. */
  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    o: RequestOptions,
    stream: boolean,
  ): Promise<RawResponse> {
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
    const target = this.target(path, o.query);
    // Without the caller's signal a non-watch request has a deadline: the connection's own
    // deadline sweep over HTTP/2 (no timer per request), an AbortSignal over HTTP/1.1.
    const deadlineMs = o.signal || stream ? undefined : this.timeoutMs;
    let res: RawResponse | undefined;
    const h2 = this.h2;
    if (h2) {
      try {
        const r = await (stream ? h2.watches : h2.requests).request(
          method,
          target,
          headers,
          body,
          o.signal,
          deadlineMs,
        );
        res = { status: r.status, body: r.stream };
      } catch (err) {
        if (!(err instanceof Http2UnsupportedError)) throw err;
        // The server speaks HTTP/1.1 only: use it from now on.
        if (this.h2 === h2) {
          this.h2 = undefined;
          void h2.requests.close(0);
          void h2.watches.close(0);
        }
      }
    }
    if (!res) {
      const pools = this.pools();
      const r = await request(new URL(target, this.server), {
        method,
        headers,
        body,
        dispatcher: stream ? pools.watches : pools.requests,
        signal: o.signal ?? (deadlineMs !== undefined ? AbortSignal.timeout(deadlineMs) : undefined),
        headersTimeout: this.timeoutMs,
        bodyTimeout: stream ? 0 : this.timeoutMs,
      });
      res = { status: r.statusCode, body: r.body };
    }
    if (res.status >= 300) {
      const text = await readText(res.body).catch(() => "");
      throw toApiError(res.status, text, method, path);
    }
    return res;
  }

  /**
   * One request; resolves with the parsed JSON body.
   * @throws KubeApiError on a non-2xx answer; a network, TLS or timeout error otherwise.
   */
  async request<T>(method: Dispatcher.HttpMethod, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, o, false);
    return JSON.parse(await readText(res.body)) as T;
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
      const body = res.body;
      // Errors reach the loop below through the iterator; this listener only keeps a late error
      // (e.g. the abort in `finally` after a throwing `onEvent`) from becoming an unhandled 'error'.
      body.on("error", () => {});
      // One JSON object per line (the API server's watch stream framing for JSON). Lines are cut
      // at the byte 0x0A, which UTF-8 never uses inside a multi-byte character, and each line is
      // decoded on its own: no string is built for a whole chunk.
      const pending: Buffer[] = []; // the start of an unfinished line, from earlier chunks
      const emit = (line: string) => {
        if (line.trim()) onEvent(JSON.parse(line) as WatchEvent<T>);
      };
      for await (const chunk of body as AsyncIterable<Buffer>) {
        arm();
        let start = 0;
        let nl = chunk.indexOf(0x0a);
        if (nl !== -1 && pending.length > 0) {
          pending.push(chunk.subarray(0, nl));
          emit(Buffer.concat(pending).toString("utf8"));
          pending.length = 0;
          start = nl + 1;
          nl = chunk.indexOf(0x0a, start);
        }
        for (; nl !== -1; nl = chunk.indexOf(0x0a, start)) {
          if (nl > start) emit(chunk.toString("utf8", start, nl));
          start = nl + 1;
        }
        if (start < chunk.length) pending.push(chunk.subarray(start));
      }
      if (pending.length > 0) emit(Buffer.concat(pending).toString("utf8"));
    } finally {
      clearTimeout(idle);
      outer?.removeEventListener("abort", onAbort);
      ac.abort();
    }
  }

  /** Closes the connections (open streams get a few seconds to end). */
  async close(): Promise<void> {
    await Promise.all([
      this.h2?.requests.close(),
      this.h2?.watches.close(),
      this.h1?.requests.close(),
      this.h1?.watches.close(),
    ]);
  }
}

/** Reads a body to the end as UTF-8. Chunks are joined once at the end. */
function readText(body: Readable): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    body.on("data", (c: Buffer) => chunks.push(c));
    body.once("end", () => {
      ended = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer).toString("utf8") : Buffer.concat(chunks).toString("utf8"));
    });
    body.once("error", reject);
    body.once("close", () => {
      if (!ended) reject(new Error("response body closed before its end"));
    });
  });
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
