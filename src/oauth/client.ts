/**
 * The one place that talks HTTP to the token endpoint. Everything else in src/oauth is pure.
 *
 * Transport: undici (SPEC.md §5 "Outbound HTTP through undici, with timeouts, connection reuse,
 * HTTPS_PROXY/NO_PROXY, and an optional extra CA bundle").
 */
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { performance } from "node:perf_hooks";
import { request } from "undici";
import type { Dispatcher } from "undici";
import { proxyAwareDispatcher } from "../http/proxy.ts";
import { classifyNetworkError, headerValue, TokenEndpointError } from "./errors.ts";
import type { TokenErrorReason } from "./errors.ts";
import { buildTokenRequest, secretsOf } from "./request.ts";
import { parseTokenResponse } from "./response.ts";
import type { IssuedToken, TokenRequest } from "./types.ts";

/** What `onResponse` is told after every fetch attempt (for metrics; contains nothing secret). */
export interface TokenResponseInfo {
  /** HTTP status, when a response arrived. */
  status?: number;
  /** Wall time of the attempt in seconds (monotonic clock), request start to outcome. */
  durationSeconds: number;
  /** `"success"` or the failure reason. */
  outcome: "success" | TokenErrorReason;
}

/** Options of `TokenClient`. All durations in milliseconds. */
export interface TokenClientOptions {
  /** TCP/TLS connect timeout. Default 5000. */
  connectTimeoutMs?: number;
  /** Time from sending the request to receiving the response headers. Default 10000. */
  headersTimeoutMs?: number;
  /** Longest idle gap while receiving the body. Default 10000. */
  bodyTimeoutMs?: number;
  /** Deadline for the whole attempt (connect + send + headers + body). Default 15000. */
  totalTimeoutMs?: number;
  /** Largest accepted response body in bytes; reading stops (and the connection is dropped) beyond it. Default 1 MiB. */
  maxBodyBytes?: number;
  /** `User-Agent` header value, e.g. `nexar-token-operator/0.1.0`. */
  userAgent?: string;
  /** Path of a PEM bundle of extra CA certificates, trusted in addition to Node's bundled roots (`tls.rootCertificates`). Read once, at construction. */
  caFile?: string;
  /** Called once per `fetchToken` with the outcome (exceptions it throws are ignored). */
  onResponse?: (info: TokenResponseInfo) => void;
  /**
   * Environment consulted for `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy` and
   * `NO_PROXY`/`no_proxy` (lower case wins, as curl and undici do). Default `process.env`.
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** Local wall clock, epoch ms. Default `Date.now` (tests may inject). */
  now?: () => number;
}

/** Per-call options of `fetchToken`. */
export interface FetchTokenOptions {
  /** Lifetime in seconds to assume when the response has neither `expires_in` nor a JWT `exp`. */
  fallbackLifetimeSeconds?: number;
  /** Longest lifetime accepted, seconds (default 7 days, see `parseTokenResponse`). */
  maxLifetimeSeconds?: number;
}

const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/**
 * TLS trust for the token endpoint (and `login`'s OAuth requests): Node's bundled roots
 * (`tls.rootCertificates`) plus the PEM bundle at `caFile`, which is appended to, not
 * substituted for, the roots (setting `ca` replaces the default set). `{}` without a file.
 * @throws Error (the file system's, naming the path) when `caFile` cannot be read.
 */
export function tokenEndpointTls(caFile: string | undefined): { ca?: string[] } {
  return caFile === undefined ? {} : { ca: [...rootCertificates, readFileSync(caFile, "utf8")] };
}

/**
 * Fetches OAuth 2.0 tokens over HTTP(S) with one shared undici dispatcher (keep-alive connection
 * reuse, HTTP/2 when the server offers it). When a proxy variable is set, requests go through
 * `HTTPS_PROXY`/`HTTP_PROXY` except to hosts matched by `NO_PROXY` (`proxyAwareDispatcher`).
 * Redirects are never followed (a redirect would re-post the credentials elsewhere); a 3xx is an
 * `InvalidResponse`.
 *
 * @throws Error from the constructor when `caFile` cannot be read.
 */
export class TokenClient {
  readonly #dispatcher: Dispatcher;
  readonly #headersTimeoutMs: number;
  readonly #bodyTimeoutMs: number;
  readonly #totalTimeoutMs: number;
  readonly #maxBodyBytes: number;
  readonly #userAgent: string | undefined;
  readonly #onResponse: ((info: TokenResponseInfo) => void) | undefined;
  readonly #now: () => number;

  constructor(options: TokenClientOptions = {}) {
    const connectTimeout = options.connectTimeoutMs ?? 5000;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 10_000;
    this.#bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
    this.#totalTimeoutMs = options.totalTimeoutMs ?? 15_000;
    this.#maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#userAgent = options.userAgent;
    this.#onResponse = options.onResponse;
    this.#now = options.now ?? Date.now;

    this.#dispatcher = proxyAwareDispatcher({
      agent: {
        connectTimeout,
        headersTimeout: this.#headersTimeoutMs,
        bodyTimeout: this.#bodyTimeoutMs,
        allowH2: true,
      },
      tls: { ...tokenEndpointTls(options.caFile), timeout: connectTimeout },
      env: options.env,
    });
  }

  /**
   * Requests a token: builds the request (`buildTokenRequest`), POSTs it, reads the body as a
   * stream up to `maxBodyBytes`, and validates it (`parseTokenResponse`). `expires_in` is counted
   * from the moment the request was sent — the token cannot have been issued earlier, so the
   * computed expiry errs early, never late, by at most one round trip.
   *
   * `onResponse` is called once per request actually sent (not for a request that could not be built).
   *
   * @returns the issued token (times in epoch ms on the local clock).
   * @throws TokenEndpointError — and nothing else — for every failure: request building
   *   (missing refresh token → `credential`/`InvalidGrant`), network (`Timeout`,
   *   `ConnectionFailed`), oversize bodies (`ResponseTooLarge`, transient), HTTP failures and
   *   invalid responses (see `classifyHttpFailure` / `parseTokenResponse`).
   */
  async fetchToken(req: TokenRequest, opts: FetchTokenOptions = {}): Promise<IssuedToken> {
    let built;
    try {
      built = buildTokenRequest(req);
    } catch {
      // Not reported to onResponse: no request was sent.
      throw new TokenEndpointError({
        kind: "credential",
        reason: "InvalidGrant",
        message: "RefreshToken grant requires a refresh token, but none is available",
      });
    }
    const secrets = secretsOf(req);
    const headers = this.#userAgent === undefined ? built.headers : { ...built.headers, "User-Agent": this.#userAgent };
    const started = performance.now();
    const sentAtMs = this.#now();
    let status: number | undefined;
    try {
      const res = await request(built.url, {
        method: "POST",
        headers,
        body: built.body,
        dispatcher: this.#dispatcher,
        signal: AbortSignal.timeout(this.#totalTimeoutMs),
        headersTimeout: this.#headersTimeoutMs,
        bodyTimeout: this.#bodyTimeoutMs,
      });
      status = res.statusCode;
      const body = await this.#readBody(res, status);
      const token = parseTokenResponse({
        status,
        headers: res.headers,
        body,
        receivedAtMs: sentAtMs,
        requestedScopes: req.scopes,
        secrets,
        ...(opts.fallbackLifetimeSeconds !== undefined
          ? { fallbackLifetimeSeconds: opts.fallbackLifetimeSeconds }
          : {}),
        ...(opts.maxLifetimeSeconds !== undefined ? { maxLifetimeSeconds: opts.maxLifetimeSeconds } : {}),
      });
      this.#report(status, started, "success");
      return token;
    } catch (e) {
      const err = e instanceof TokenEndpointError ? e : classifyNetworkError(e);
      this.#report(status, started, err.reason);
      throw err;
    }
  }

  /** Reads the body as UTF-8, destroying the stream (and its connection) past `maxBodyBytes`. */
  async #readBody(res: Dispatcher.ResponseData, status: number): Promise<string> {
    const tooLarge = (): TokenEndpointError =>
      new TokenEndpointError({
        kind: "transient",
        reason: "ResponseTooLarge",
        message: `token endpoint response body exceeds ${this.#maxBodyBytes} bytes (HTTP ${status})`,
        httpStatus: status,
      });
    const declared = Number(headerValue(res.headers, "content-length"));
    if (Number.isFinite(declared) && declared > this.#maxBodyBytes) {
      res.body.destroy();
      throw tooLarge();
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > this.#maxBodyBytes) {
        res.body.destroy();
        throw tooLarge();
      }
      chunks.push(buf);
    }
    return new TextDecoder("utf-8").decode(Buffer.concat(chunks, size));
  }

  #report(status: number | undefined, started: number, outcome: TokenResponseInfo["outcome"]): void {
    if (this.#onResponse === undefined) return;
    const info: TokenResponseInfo = {
      durationSeconds: (performance.now() - started) / 1000,
      outcome,
    };
    if (status !== undefined) info.status = status;
    try {
      this.#onResponse(info);
    } catch {
      // A metrics callback must never turn a token into a failure.
    }
  }

  /** Closes idle connections and waits for in-flight requests to finish. */
  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}
