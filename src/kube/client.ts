import type { ConnectionOptions } from "node:tls";
import type { Dispatcher } from "undici";
import { proxyAwareDispatcher, type ProxyEnvironment } from "../http/proxy.ts";
import { cachedExecCredentialExpiry, withEmptyCredentialCaches, type KubeConfig } from "./config.ts";

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
 * One entry of a `Status`'s `details.causes` (`metav1.StatusCause`). Its `reason` is the cause's
 * type, a machine-readable CamelCase word (Go field `Type`, JSON name `reason`).
 */
export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}

/**
 * A non-2xx answer of the API server. `status` is the HTTP status; `reason` is the
 * `Status.reason` (e.g. `NotFound`, `Conflict`, `AlreadyExists`, `Expired`); `causes` are its
 * `details.causes` (empty when it has none). The message is the API server's `Status.message`,
 * which never holds Secret data.
 */
export class KubeApiError extends Error {
  readonly status: number;
  readonly reason: string | undefined;
  readonly causes: readonly StatusCause[];
  constructor(status: number, reason: string | undefined, message: string, causes: readonly StatusCause[] = []) {
    super(message);
    this.name = "KubeApiError";
    this.status = status;
    this.reason = reason;
    this.causes = causes;
  }
}

/** True when `err` is a {@link KubeApiError} with the given HTTP status. */
export function isStatus(err: unknown, status: number): boolean {
  return err instanceof KubeApiError && err.status === status;
}

/**
 * Cause type of the API server's refusal to create anything in a namespace that is being
 * terminated (`v1.NamespaceTerminatingCause` in k8s.io/api/core/v1, set by the NamespaceLifecycle
 * admission plugin on its 403 Forbidden).
 */
export const NAMESPACE_TERMINATING_CAUSE = "NamespaceTerminating";

/**
 * True when `err` is the API server's 403 for a create in a namespace being terminated: a
 * {@link KubeApiError} with the cause {@link NAMESPACE_TERMINATING_CAUSE}, as client-go's
 * `apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause)`. The structured cause decides,
 * never the message text. Such a create cannot succeed again: the namespace's deletion is final.
 */
export function isNamespaceTerminating(err: unknown): boolean {
  return (
    err instanceof KubeApiError &&
    err.status === 403 &&
    err.causes.some((c) => c.reason === NAMESPACE_TERMINATING_CAUSE)
  );
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

/** What {@link KubeClient} needs of a kubeconfig: client-node's `KubeConfig`, loaded (`./config.ts`). */
export type KubeCredentialSource = KubeConfig;

/**
 * How long before its `expirationTimestamp` an exec credential is renewed, milliseconds, at most
 * half its lifetime: client-go's leeway for a cached token (`transport/token_source.go`,
 * `cachingTokenSource`, 10 s), so a request never leaves with a credential about to lapse.
 */
export const CREDENTIAL_RENEW_MARGIN_MS = 10_000;

/**
 * When to renew a credential obtained at `obtainedAt` that expires at `expiresAt` (epoch ms):
 * {@link CREDENTIAL_RENEW_MARGIN_MS} ahead of the expiry, or half-way through a shorter lifetime;
 * `expiresAt` itself when it is not after `obtainedAt`. `undefined` when it does not expire.
 */
export function credentialRenewTime(obtainedAt: number, expiresAt: number | undefined): number | undefined {
  if (expiresAt === undefined) return undefined;
  const lifetime = expiresAt - obtainedAt;
  return lifetime > 0 ? expiresAt - Math.min(CREDENTIAL_RENEW_MARGIN_MS, lifetime / 2) : expiresAt;
}

/** Options of {@link KubeClient.create}. */
export interface KubeClientOptions {
  /**
   * Deadline of a non-watch request, milliseconds (default 30 000): for the response headers,
   * then again for each gap between body chunks (undici's `headersTimeout`/`bodyTimeout`).
   */
  timeoutMs?: number;
  /**
   * kubectl's `--as` / `--as-group`: sent as `Impersonate-User` / `Impersonate-Group` (Kubernetes
   * "User impersonation"). The API server takes each `Impersonate-Group` field as one group, and
   * undici joins repeated fields into one over HTTP/2, so with two or more groups this client
   * speaks HTTP/1.1, where each goes out as a field of its own.
   */
  impersonate?: { user?: string; groups?: string[] };
  /** Environment with `HTTPS_PROXY`/`NO_PROXY` (default `process.env`); a cluster's `proxy-url` wins over it. */
  env?: ProxyEnvironment;
  /**
   * Interval of the HTTP/2 PING health check, milliseconds (default 15 000): a PING still
   * unanswered when the next one is due resets the connection and fails its streams, so a dead
   * peer is noticed within two intervals even on a quiet watch (client-go: 30 s read-idle + 15 s
   * PING timeout).
   */
  pingIntervalMs?: number;
}

/** The credentials of one request: headers, and the TLS material the connections were made with. */
interface Credentials {
  headers: Readonly<Record<string, string | string[]>>;
  tls: ConnectionOptions;
  /** The credential generation they belong to ({@link KubeClient} counts renewals). */
  generation?: number;
}

/** The two dispatchers of one set of TLS material. */
interface Transport {
  tls: ConnectionOptions;
  requests: Dispatcher;
  watches: Dispatcher;
}

const TLS_KEYS = ["ca", "cert", "key", "servername", "rejectUnauthorized"] as const;

/** Same TLS material (PEM buffers or strings compared by content)? */
function sameTls(a: ConnectionOptions, b: ConnectionOptions): boolean {
  for (const k of TLS_KEYS) {
    const x = a[k];
    const y = b[k];
    if (x === y) continue;
    if (x === undefined || y === undefined) return false;
    if (Buffer.isBuffer(x) && Buffer.isBuffer(y) ? !x.equals(y) : String(x) !== String(y)) return false;
  }
  return true;
}

/**
 * A thin REST client for the Kubernetes API. Credentials, TLS, the server address and its proxy
 * come from a client-node `KubeConfig` (kubeconfig file, exec plugin, in-cluster service account
 * …), asked again before each request — client-node caches an exec credential until its
 * `expirationTimestamp` and a token file for 60 s, and re-reads certificate files; requests in
 * flight at the same time share one such lookup. Nothing here knows about NexarTokens.
 *
 * Renewal, as client-go does it (and as the Kubernetes "client-go credential plugins" contract
 * says: cached until the expiry, or until the server answers 401): an exec credential is renewed
 * {@link CREDENTIAL_RENEW_MARGIN_MS} before its `expirationTimestamp`; and a 401 drops the cached
 * credentials (unless a renewal already replaced the ones the request carried), asks client-node
 * again and sends the request once more — one retry, whose 401 is thrown. Both drop the cache by
 * moving to a `KubeConfig` with empty caches ({@link withEmptyCredentialCaches}), so the plugin
 * runs again (and a token file is re-read) on client-node's own code path.
 *
 * Transport: undici, HTTP/2 when the server offers it (ALPN `h2`; kube-apiserver does), else
 * HTTP/1.1 with up to 32 kept-alive connections. Watches have their own dispatcher, so a burst of
 * watch events can never hold up a request such as a Lease renewal. A cluster's `proxy-url`, else
 * `HTTPS_PROXY`/`NO_PROXY`, routes the connections (`src/http/proxy.ts`). When the TLS material
 * changes (a rotated client certificate, an exec plugin's new one) new connections are made with
 * it and the old ones close once their requests end.
 */
export class KubeClient {
  /** The API server URL, without a trailing slash. */
  readonly server: string;
  private kc: KubeCredentialSource;
  private readonly origin: string;
  /** Path of the server URL (e.g. `/k8s/clusters/c-1` behind a proxy), without a trailing slash; often empty. */
  private readonly prefix: string;
  private readonly proxyUrl: string | undefined;
  private readonly timeoutMs: number;
  private readonly pingIntervalMs: number;
  private readonly env: ProxyEnvironment | undefined;
  private readonly impersonation: Record<string, string | string[]>;
  private transport: Transport;
  /** Dispatchers replaced after a TLS change, closing once their requests end. */
  private readonly retired = new Set<Dispatcher>();
  /** The credential lookup in progress, shared by the requests that start meanwhile. */
  private pending: Promise<Credentials> | undefined;
  /** Bumped when the cached credentials are dropped; a lookup's result carries the value it began with. */
  private generation = 0;
  /** The cached credentials were dropped: the next lookup starts from a `KubeConfig` with empty caches. */
  private stale = false;
  /** The exec credential in use: its `expirationTimestamp` (epoch ms), when it is renewed, and its generation. */
  private exec: { expiresAt: number; renewAt: number | undefined; generation: number } | undefined;

  private constructor(
    kc: KubeCredentialSource,
    server: string,
    proxyUrl: string | undefined,
    first: Credentials,
    o: KubeClientOptions,
  ) {
    this.kc = kc;
    this.noteExecCredential(Date.now(), 0);
    this.server = server.replace(/\/$/, "");
    const url = new URL(this.server);
    this.origin = url.origin;
    this.prefix = url.pathname.replace(/\/$/, "");
    this.proxyUrl = proxyUrl;
    this.timeoutMs = o.timeoutMs ?? 30_000;
    this.pingIntervalMs = o.pingIntervalMs ?? 15_000;
    this.env = o.env;
    this.impersonation = {};
    if (o.impersonate?.user) this.impersonation["impersonate-user"] = o.impersonate.user;
    if (o.impersonate?.groups?.length) this.impersonation["impersonate-group"] = o.impersonate.groups;
    this.transport = this.connect(first.tls);
  }

  /**
   * Builds a client for the current context of `kc` and reads its credentials once (so an exec
   * plugin that cannot run fails here).
   * @throws Error when the kubeconfig has no current cluster, or its credentials cannot be had
   *   (the message names the kubeconfig user, never a credential).
   */
  static async create(kc: KubeCredentialSource, o: KubeClientOptions = {}): Promise<KubeClient> {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error("kubeconfig has no current cluster");
    const first = await readCredentials(kc, o.impersonate?.user !== undefined);
    return new KubeClient(kc, cluster.server, cluster.proxyUrl, first, o);
  }

  private connect(tls: ConnectionOptions): Transport {
    const make = (connections: number | null) =>
      proxyAwareDispatcher({
        agent: {
          allowH2: (this.impersonation["impersonate-group"]?.length ?? 0) < 2,
          connections,
          keepAliveTimeout: 30_000,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
          h2Options: { pingInterval: this.pingIntervalMs },
        },
        tls,
        proxyUrl: this.proxyUrl,
        env: this.env,
        origin: new URL(this.origin),
      });
    return { tls, requests: make(32), watches: make(null) };
  }

  /**
   * The credentials for the next request (one lookup for all requests that start while it runs),
   * of the current generation: a lookup overtaken by {@link invalidate} is followed by another.
   */
  private async credentials(): Promise<Credentials> {
    for (;;) {
      this.pending ??= this.lookup().finally(() => {
        this.pending = undefined;
      });
      const cred = await this.pending;
      if (cred.generation === this.generation) return cred;
    }
  }

  private async lookup(): Promise<Credentials> {
    const now = Date.now();
    if (this.exec?.renewAt !== undefined && now >= this.exec.renewAt) this.invalidate(this.generation);
    if (this.stale) {
      this.stale = false;
      this.kc = await withEmptyCredentialCaches(this.kc);
    }
    const generation = this.generation;
    const cred = await readCredentials(this.kc, this.impersonation["impersonate-user"] !== undefined);
    this.noteExecCredential(now, generation);
    return { ...cred, generation };
  }

  /**
   * Records the expiry of the exec credential client-node now holds (read at `now`, in
   * `generation`). A plugin that hands out the credential it was just asked to renew (its own
   * cache, as `kubelogin` has) is not asked again ahead of time: client-node's expiry check and a
   * 401 still renew it.
   */
  private noteExecCredential(now: number, generation: number): void {
    const expiresAt = cachedExecCredentialExpiry(this.kc);
    const prev = this.exec;
    if (expiresAt === undefined) this.exec = undefined;
    else if (prev?.expiresAt !== expiresAt) {
      this.exec = { expiresAt, renewAt: credentialRenewTime(now, expiresAt), generation };
    } else if (prev.generation !== generation) this.exec = { expiresAt, renewAt: undefined, generation };
  }

  /**
   * Drops the cached credentials if they are still those of `generation` (a 401 for credentials a
   * renewal already replaced drops nothing: client-go's `maybeRefreshCreds`).
   */
  private invalidate(generation: number): void {
    if (generation !== this.generation) return;
    this.generation++;
    this.stale = true;
  }

  /** The dispatchers for `tls`: the current ones, or new ones when the TLS material changed. */
  private transportFor(tls: ConnectionOptions): Transport {
    const t = this.transport;
    if (sameTls(t.tls, tls)) return t;
    this.retired.add(t.requests).add(t.watches);
    for (const d of [t.requests, t.watches]) void d.close().finally(() => this.retired.delete(d));
    this.transport = this.connect(tls);
    return this.transport;
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

  /**
   * Sends a request; resolves with the response after a 2xx (body unread), or throws. A 401 drops
   * the cached credentials and sends the request once more with new ones.
   * @param bodyTimeoutMs longest gap between body chunks (a watch: its idle timeout).
   */
  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    o: RequestOptions,
    watch: boolean,
    bodyTimeoutMs: number,
  ): Promise<Dispatcher.ResponseData> {
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    for (let attempt = 1; ; attempt++) {
      const cred = await this.credentials();
      const res = await this.sendOnce(method, path, o, body, cred, watch, bodyTimeoutMs);
      if (res.statusCode < 300) return res;
      const text = await res.body.text().catch(() => "");
      if (res.statusCode === 401 && attempt === 1) {
        this.invalidate(cred.generation ?? this.generation);
        continue;
      }
      throw toApiError(res.statusCode, text, method, path);
    }
  }

  private async sendOnce(
    method: Dispatcher.HttpMethod,
    path: string,
    o: RequestOptions,
    body: string | undefined,
    cred: Credentials,
    watch: boolean,
    bodyTimeoutMs: number,
  ): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string | string[]> = {
      ...cred.headers,
      ...this.impersonation,
      accept: o.accept ?? "application/json",
      "user-agent": "nexar-token-operator",
    };
    if (body !== undefined) headers["content-type"] = o.contentType ?? "application/json";
    const t = this.transportFor(cred.tls);
    return (watch ? t.watches : t.requests).request({
      origin: this.origin,
      path: this.target(path, o.query),
      method,
      headers,
      body,
      signal: o.signal,
      headersTimeout: this.timeoutMs,
      bodyTimeout: bodyTimeoutMs,
    });
  }

  /**
   * One request; resolves with the parsed JSON body.
   * @throws KubeApiError on a non-2xx answer; a network, TLS, timeout (undici's
   *   `HeadersTimeoutError`/`BodyTimeoutError`) or credential error otherwise.
   */
  async request<T>(method: Dispatcher.HttpMethod, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.send(method, path, o, false, this.timeoutMs);
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
   * error status, a dead connection (the PING health check), or when nothing (not even a
   * bookmark) arrives for `idleTimeoutMs` (undici's `BodyTimeoutError`).
   */
  async watch<T>(
    path: string,
    o: RequestOptions & { idleTimeoutMs: number },
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void> {
    const res = await this.send("GET", path, { ...o, query: { ...o.query, watch: 1 } }, true, o.idleTimeoutMs);
    const body = res.body;
    // Errors reach the loop below through the iterator; this listener only keeps a late error
    // (e.g. after a throwing `onEvent`) from becoming an unhandled 'error'.
    body.on("error", () => {});
    try {
      // One JSON object per line (the API server's watch stream framing for JSON). Lines are cut
      // at the byte 0x0A, which UTF-8 never uses inside a multi-byte character, and each line is
      // decoded on its own: no string is built for a whole chunk.
      const pending: Buffer[] = []; // the start of an unfinished line, from earlier chunks
      const emit = (line: string) => {
        if (line.trim()) onEvent(JSON.parse(line) as WatchEvent<T>);
      };
      for await (const chunk of body as AsyncIterable<Buffer>) {
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
      if (!body.destroyed) body.destroy();
    }
  }

  /** Closes the connections: open requests get up to `graceMs` (default 5,000 ms) to end, then are cut. */
  async close(graceMs = 5_000): Promise<void> {
    const all = [this.transport.requests, this.transport.watches, ...this.retired];
    await Promise.all(
      all.map(async (d) => {
        let timer: NodeJS.Timeout | undefined;
        const grace = new Promise<"late">((r) => (timer = setTimeout(r, graceMs, "late")));
        const outcome = await Promise.race([d.close().then(() => "closed" as const), grace]);
        clearTimeout(timer);
        if (outcome === "late") await d.destroy();
      }),
    );
  }
}

/** client-node's `applyToHTTPSOptions` output, the parts read here. */
interface HttpsOptions {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  servername?: string;
  rejectUnauthorized?: boolean;
  headers?: Record<string, string | number | string[]>;
  auth?: string;
}

/**
 * The current credentials of `kc`: bearer token, basic auth or client certificate, exec plugins
 * and auth-providers, `as`; TLS from the cluster (CA, `tls-server-name`,
 * `insecure-skip-tls-verify`) and the user.
 * @param dropImpersonation leave out the kubeconfig user's `as` (a flag replaces it).
 * @throws Error naming the kubeconfig user and what failed (an exec plugin's exit or output),
 *   never a credential.
 */
async function readCredentials(kc: KubeCredentialSource, dropImpersonation: boolean): Promise<Credentials> {
  const opts: HttpsOptions = {};
  try {
    await kc.applyToHTTPSOptions(opts as never);
  } catch (err) {
    throw credentialError(kc.getCurrentUser()?.name, err);
  }
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = String(v);
  if (opts.auth && !headers.authorization) {
    headers.authorization = `Basic ${Buffer.from(opts.auth).toString("base64")}`;
  }
  if (dropImpersonation) delete headers["impersonate-user"];
  const tls: ConnectionOptions = {};
  for (const k of TLS_KEYS) if (opts[k] !== undefined) (tls as Record<string, unknown>)[k] = opts[k];
  return { headers, tls };
}

/**
 * A credential failure as a message that names the kubeconfig user. An exec plugin's output is
 * never quoted (a JSON parse error would quote it, and it holds the token); its stderr's first
 * line is, as kubectl shows it.
 */
function credentialError(user: string | undefined, err: unknown): Error {
  const e = err as Error & { code?: string; path?: string };
  let detail: string;
  if (e instanceof SyntaxError) detail = "the exec plugin printed no valid ExecCredential JSON";
  else if (e.code === "ENOENT" && e.path) detail = `exec plugin command "${e.path}" not found`;
  else if (typeof e.code === "string") detail = e.code;
  else detail = (e.message ?? String(err)).trim().split("\n")[0]?.slice(0, 300) || "exec plugin failed";
  return new Error(`credentials of kubeconfig user "${user ?? ""}": ${detail}`);
}

function isStatusCause(c: unknown): c is StatusCause {
  if (typeof c !== "object" || c === null) return false;
  const { reason, message, field } = c as Record<string, unknown>;
  return [reason, message, field].every((v) => v === undefined || typeof v === "string");
}

function toApiError(status: number, text: string, method: string, path: string): KubeApiError {
  let reason: string | undefined;
  let message = `${method} ${path}: HTTP ${status}`;
  let causes: StatusCause[] = [];
  try {
    const s = JSON.parse(text) as { reason?: string; message?: string; details?: { causes?: unknown } };
    reason = s.reason;
    if (s.message) message = `${method} ${path}: ${s.message}`;
    if (Array.isArray(s.details?.causes)) causes = s.details.causes.filter(isStatusCause);
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, message, causes);
}
