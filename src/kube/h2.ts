import http2 from "node:http2";
import type {
  ClientHttp2Session,
  ClientHttp2Stream,
  IncomingHttpHeaders,
  SecureClientSessionOptions,
} from "node:http2";

/** TLS settings of a connection to the API server, from the kubeconfig (PEM strings or buffers). */
export interface TlsSettings {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
  rejectUnauthorized?: boolean;
}

/** Timing of an {@link Http2Connection}, milliseconds. */
export interface Http2Timing {
  /**
   * With no traffic for this long (Node's session timeout, which writes also reset; client-go's
   * `ReadIdleTimeout` counts reads only, hence the extra check when a request times out), the
   * connection is checked: closed when no stream is open, otherwise sent a PING (30 s in
   * k8s.io/client-go/transport).
   */
  readIdleMs: number;
  /** A PING not answered within this long destroys the connection and its streams (client-go's `PingTimeout`, 15 s). */
  pingTimeoutMs: number;
}

const DEFAULT_TIMING: Http2Timing = { readIdleMs: 30_000, pingTimeoutMs: 15_000 };

/**
 * Stream ids are 31-bit and odd for a client (RFC 9113 §5.1.1); a connection past this id is
 * replaced for new streams before it runs out.
 */
const MAX_STREAM_ID = 2 ** 30;

/**
 * Flow-control windows the client grants (RFC 9113 §6.9): 4 MiB per stream and 16 MiB per
 * connection, where Node's defaults are 64 KiB. A burst of watch events then flows into the
 * socket while the event loop is busy instead of stalling the API server, which closes a watch it
 * cannot deliver to in time. client-go (Go's HTTP/2 transport) grants 4 MiB per stream too.
 */
const STREAM_WINDOW_BYTES = 4 << 20;
const CONNECTION_WINDOW_BYTES = 16 << 20;

/** How often request deadlines are checked, milliseconds: a deadline fires up to this late. */
export const DEADLINE_SWEEP_MS = 250;

/** A response whose body has not been read yet. `stream` is the HTTP/2 stream (a Readable of the body). */
export interface Http2Response {
  status: number;
  headers: IncomingHttpHeaders;
  stream: ClientHttp2Stream;
}

/**
 * The server does not speak HTTP/2 over TLS: it refused the `h2`-only ALPN offer
 * (`no_application_protocol` alert, RFC 7301 §3.2) or picked no protocol, so the connection failed
 * before the HTTP/2 preface was exchanged. The caller should use HTTP/1.1.
 */
export class Http2UnsupportedError extends Error {
  constructor(origin: string, cause: unknown) {
    super(`${origin} does not offer HTTP/2 (ALPN h2)`, { cause });
    this.name = "Http2UnsupportedError";
  }
}

/** Error codes of a TLS connection on which `h2` was not agreed (see {@link Http2UnsupportedError}). */
const NO_H2_CODES = new Set(["ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL", "ERR_HTTP2_ERROR"]);

/**
 * One HTTP/2 connection (RFC 9113) to an origin, opened on first use and reopened after it
 * closes, fails, receives GOAWAY or nears the end of its stream ids; every request is a stream on
 * it, so N concurrent requests cost one TLS session and one TCP socket (as client-go, which
 * multiplexes all requests of a client over one HTTP/2 connection per host).
 *
 * Dead-peer detection as client-go's HTTP/2 health check: after {@link Http2Timing.readIdleMs}
 * without traffic, an idle connection is closed and a busy one is PINGed; a request that times
 * out PINGs its connection at once. No answer within {@link Http2Timing.pingTimeoutMs} destroys
 * the connection, failing its streams so callers retry on a new one.
 */
export class Http2Connection {
  private readonly origin: string;
  private readonly tls: TlsSettings;
  private readonly timing: Http2Timing;
  private session: ClientHttp2Session | undefined;
  /** Open streams per session, to tell an idle connection from a quiet busy one. */
  private readonly open = new WeakMap<ClientHttp2Session, number>();
  /** Sessions with a PING outstanding. */
  private readonly pinging = new WeakSet<ClientHttp2Session>();
  /** Sessions on which the HTTP/2 connection was established ('connect'). */
  private readonly established = new WeakSet<ClientHttp2Session>();
  private closed = false;
  /** Open streams with a deadline: when each must be done (`performance.now()` ms, monotonic), see {@link sweepDeadlines}. */
  private readonly deadlines = new Map<ClientHttp2Stream, { atMs: number; session: ClientHttp2Session }>();
  private sweeper: NodeJS.Timeout | undefined;

  /** @param origin `https://host:port` (a path is ignored). */
  constructor(origin: string, tls: TlsSettings, timing: Http2Timing = DEFAULT_TIMING) {
    this.origin = new URL(origin).origin;
    this.tls = tls;
    this.timing = timing;
  }

  private current(): ClientHttp2Session {
    const s = this.session;
    if (s && !s.closed && !s.destroyed && (s.state.nextStreamID ?? 0) < MAX_STREAM_ID) return s;
    if (s && !s.closed && !s.destroyed) s.close(); // in-flight streams finish; new ones go to the next session
    const opts: SecureClientSessionOptions = {
      ca: this.tls.ca,
      cert: this.tls.cert,
      key: this.tls.key,
      rejectUnauthorized: this.tls.rejectUnauthorized ?? true,
      settings: { initialWindowSize: STREAM_WINDOW_BYTES },
    };
    const session = http2.connect(this.origin, opts);
    this.open.set(session, 0);
    const forget = () => {
      if (this.session === session) this.session = undefined;
    };
    // A session error also fails its streams (each request rejects on its own); here it only
    // retires the session, so the next request connects again.
    session.once("connect", () => {
      this.established.add(session);
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
    });
    session.on("error", forget);
    session.on("close", forget);
    session.on("goaway", forget);
    session.setTimeout(this.timing.readIdleMs, () => this.check(session));
    this.session = session;
    return session;
  }

  /**
   * Health check (see the class doc): close when idle, else PING and destroy without an answer.
   * Runs after a quiet period and when a request on the session times out — writes alone do not
   * prove a peer alive (a dead TCP peer accepts writes into the socket buffer for minutes).
   */
  private check(session: ClientHttp2Session, idle = true): void {
    if (session.closed || session.destroyed || this.pinging.has(session)) return;
    if (idle && (this.open.get(session) ?? 0) === 0) {
      session.close();
      return;
    }
    this.pinging.add(session);
    const timer = setTimeout(
      () => session.destroy(new Error(`no answer to an HTTP/2 PING in ${this.timing.pingTimeoutMs} ms`)),
      this.timing.pingTimeoutMs,
    );
    timer.unref();
    const sent = session.ping((err) => {
      clearTimeout(timer);
      this.pinging.delete(session);
      if (err) {
        if (!session.destroyed) session.destroy(err);
        return;
      }
      // The idle timer fires once per quiet period and a PING answer does not re-arm it: re-arm,
      // so a connection that dies after a quiet stretch is still noticed.
      if (!session.closed && !session.destroyed) session.setTimeout(this.timing.readIdleMs, () => this.check(session));
    });
    if (!sent) {
      clearTimeout(timer);
      this.pinging.delete(session);
    }
  }

  /**
   * Sends one request and resolves when the response headers arrive; the body is then read from
   * `stream`. `path` is the request target (path and query). Headers are lower-case.
   * @param signal aborts the request (and the body's stream) when it fires.
   * @param deadlineMs total deadline of the request including its body, milliseconds: past it the
   *   stream is destroyed with a `TimeoutError` (a `DOMException`, as `AbortSignal.timeout`'s) and
   *   the connection is checked. One sweep timer per connection serves every deadline (checked
   *   every {@link DEADLINE_SWEEP_MS}), so a request costs no timer or AbortSignal of its own.
   * @throws the stream's or session's error (network failure, TLS failure, `signal` aborted:
   *   `AbortError`, deadline passed: `TimeoutError`), or an Error when the stream closes before a
   *   response.
   */
  request(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal | undefined,
    deadlineMs?: number,
  ): Promise<Http2Response> {
    if (this.closed) return Promise.reject(new Error("connection closed"));
    const session = this.current();
    const stream = session.request(
      { ":method": method, ":path": path, ...headers },
      { endStream: body === undefined, ...(signal ? { signal } : {}) },
    );
    this.open.set(session, (this.open.get(session) ?? 0) + 1);
    // A request that times out may be waiting on a dead connection: check it now.
    const onAbort = signal
      ? () => {
          if ((signal.reason as Error | undefined)?.name === "TimeoutError") this.check(session, false);
        }
      : undefined;
    if (onAbort) signal?.addEventListener("abort", onAbort, { once: true });
    if (deadlineMs !== undefined) this.addDeadline(stream, session, performance.now() + deadlineMs);
    stream.once("close", () => {
      this.open.set(session, (this.open.get(session) ?? 1) - 1);
      if (onAbort) signal?.removeEventListener("abort", onAbort);
      if (deadlineMs !== undefined) this.deadlines.delete(stream);
    });
    return new Promise<Http2Response>((resolve, reject) => {
      let settled = false;
      stream.once("response", (h) => {
        settled = true;
        resolve({ status: Number(h[":status"]), headers: h, stream });
      });
      stream.once("error", (err: Error & { code?: string; cause?: { code?: string } }) => {
        if (settled) return; // after the response, errors belong to the body's reader
        settled = true;
        // A stream pending on a failed session is canceled with the session's error as `cause`.
        const noH2 = NO_H2_CODES.has(err.code ?? "") || NO_H2_CODES.has(err.cause?.code ?? "");
        reject(noH2 && !this.established.has(session) ? new Http2UnsupportedError(this.origin, err) : err);
      });
      stream.once("close", () => {
        if (settled) return;
        settled = true;
        reject(new Error(`HTTP/2 stream closed before a response (code ${stream.rstCode})`));
      });
      if (body !== undefined) stream.end(body);
    });
  }

  private addDeadline(stream: ClientHttp2Stream, session: ClientHttp2Session, atMs: number): void {
    this.deadlines.set(stream, { atMs, session });
    if (this.sweeper) return;
    this.sweeper = setInterval(() => this.sweepDeadlines(), DEADLINE_SWEEP_MS);
    this.sweeper.unref();
  }

  /** Destroys the streams past their deadline (checking their connections); stops when none is left. */
  private sweepDeadlines(): void {
    const now = performance.now(); // monotonic: a wall-clock step neither fires nor stalls deadlines
    for (const [stream, d] of this.deadlines) {
      if (now < d.atMs) continue;
      this.deadlines.delete(stream);
      stream.destroy(new DOMException("The operation was aborted due to timeout", "TimeoutError"));
      this.check(d.session, false);
    }
    if (this.deadlines.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /**
   * Closes the connection once its open streams end, destroying it after `graceMs` (default
   * 5,000 ms) if they have not; later requests fail.
   */
  async close(graceMs = 5_000): Promise<void> {
    this.closed = true;
    const s = this.session;
    this.session = undefined;
    if (!s || s.closed || s.destroyed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => (s.destroy(), resolve()), graceMs);
      s.close(() => (clearTimeout(t), resolve()));
    });
  }
}
