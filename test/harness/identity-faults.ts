// Fault injection for the test identity server's token endpoint: the fault shapes and the pure logic that turns a
// fault into a synthetic HTTP response or a rewrite of a real token response. No I/O here; identity.ts applies them.

/** Default size of the `bigBody` fault: 5 MiB. */
export const DEFAULT_BIG_BODY_BYTES = 5 * 1024 * 1024;

/**
 * A fault for POSTs to the token endpoint. Exactly one fault is active at a time (`IdentityServer.setFault`).
 *
 * `times`: how many of the following token-endpoint POSTs the fault affects; once used up the fault clears itself
 * and requests reach oidc-provider untouched again. Omitted = every request until `setFault(undefined)`.
 * Every token POST while a fault is set uses one of `times`, whatever the provider would have answered.
 * `clientId`: when set, only token POSTs of that client (form `client_id` or HTTP Basic user) are faulted and
 * counted; other clients' requests pass untouched (so a test's fault cannot hit another test's renewals).
 *
 * Kinds answered by the front server without reaching oidc-provider (no token is minted):
 * - `status`: answer `status` with `body` (string as is; object → JSON; default empty) and `contentType`
 *   (default `application/json` for an object body, else `text/plain`). `retryAfter` sets `Retry-After`: a number
 *   is delay-seconds, a `Date` is formatted as an HTTP-date (RFC 9110 §10.2.3), a string is sent verbatim (to test
 *   malformed values). `headers` adds extra response headers.
 * - `html`: an HTML page (`text/html`) with `status` (default 502, e.g. a proxy error page; use 200 for a
 *   captive-portal/login page); `retryAfter` as above.
 * - `empty`: `status` (default 200) with `Content-Type: application/json` and a zero-length body.
 * - `bigBody`: `status` (default 200), `Content-Type: application/json`, a body of `bytes` bytes (default 5 MiB)
 *   that starts like a token response but is padded: `{"access_token":"xxxx…"}`.
 * - `reset`: the TCP connection is reset (RST) without any response bytes.
 *
 * Kinds that still let oidc-provider answer:
 * - `delay`: wait `ms` milliseconds, then pass the request on (if the client is still connected; a client that
 *   gave up in the meantime gets nothing and no token is minted).
 * - `omitExpiresIn`: a successful token response without `expires_in` (error responses pass unchanged).
 * - `overrideExpiresIn`: a successful token response whose `expires_in` is replaced by `expiresIn` (any JSON
 *   value, to test negative, zero, huge, string or null values).
 * - `skewDate`: the response carries `Date: now + skewSeconds` (negative = in the past) instead of the real time.
 */
export type Fault = (
  | {
      kind: "status";
      status: number;
      body?: string | Record<string, unknown>;
      contentType?: string;
      retryAfter?: number | Date | string;
      headers?: Record<string, string>;
    }
  | { kind: "html"; status?: number; retryAfter?: number | Date | string }
  | { kind: "empty"; status?: number }
  | { kind: "bigBody"; status?: number; bytes?: number }
  | { kind: "reset" }
  | { kind: "delay"; ms: number }
  | { kind: "omitExpiresIn" }
  | { kind: "overrideExpiresIn"; expiresIn: unknown }
  | { kind: "skewDate"; skewSeconds: number }
) & { times?: number; clientId?: string };

/** A complete HTTP response produced by a fault instead of oidc-provider. `body` is raw bytes. */
export interface SyntheticResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Holds the active fault and counts down its `times`. Not thread-safe beyond Node's single event loop.
 */
export class FaultSchedule {
  #fault: Fault | undefined;
  #remaining: number | undefined;

  /**
   * Makes `fault` the active fault (replacing any other), or clears it with `undefined`.
   * @throws RangeError when `times` is not a non-negative integer.
   */
  set(fault: Fault | undefined): void {
    if (fault?.times !== undefined && (!Number.isInteger(fault.times) || fault.times < 0)) {
      throw new RangeError("fault.times must be a non-negative integer");
    }
    this.#fault = fault === undefined || fault.times === 0 ? undefined : fault;
    this.#remaining = fault?.times;
  }

  /** The active fault without consuming it. */
  peek(): Fault | undefined {
    return this.#fault;
  }

  /**
   * Returns the fault for the next request (of client `clientId`, when known) and uses one of its `times`;
   * `undefined` when none is active or the fault is limited to another client.
   */
  take(clientId?: string): Fault | undefined {
    const fault = this.#fault;
    if (fault === undefined) return undefined;
    if (fault.clientId !== undefined && fault.clientId !== clientId) return undefined;
    if (this.#remaining !== undefined) {
      this.#remaining -= 1;
      if (this.#remaining <= 0) {
        this.#fault = undefined;
        this.#remaining = undefined;
      }
    }
    return fault;
  }
}

/**
 * Formats a `Retry-After` value: number → delay-seconds (rounded down, at least 0), Date → IMF-fixdate
 * (RFC 9110 §5.6.7), string → verbatim.
 */
export function formatRetryAfter(value: number | Date | string): string {
  if (typeof value === "number") return String(Math.max(0, Math.floor(value)));
  if (value instanceof Date) return value.toUTCString();
  return value;
}

function htmlPage(status: number): string {
  const title = status === 200 ? "Sign in to continue" : `${status} Bad Gateway`;
  return `<!DOCTYPE html>\n<html><head><title>${title}</title></head><body><h1>${title}</h1><p>injected fault</p></body></html>\n`;
}

/**
 * The response that replaces oidc-provider's answer for the fault kinds `status`, `html`, `empty` and `bigBody`;
 * `undefined` for every other kind (they are handled around the real provider response).
 */
export function syntheticResponse(fault: Fault): SyntheticResponse | undefined {
  switch (fault.kind) {
    case "status": {
      const isObject = typeof fault.body === "object";
      const text = fault.body === undefined ? "" : isObject ? JSON.stringify(fault.body) : String(fault.body);
      const headers: Record<string, string> = {
        "content-type": fault.contentType ?? (isObject ? "application/json" : "text/plain; charset=utf-8"),
        "cache-control": "no-store",
        ...fault.headers,
      };
      if (fault.retryAfter !== undefined) headers["retry-after"] = formatRetryAfter(fault.retryAfter);
      return { status: fault.status, headers, body: Buffer.from(text, "utf8") };
    }
    case "html": {
      const status = fault.status ?? 502;
      const headers: Record<string, string> = {
        "content-type": "text/html; charset=utf-8",
      };
      if (fault.retryAfter !== undefined) headers["retry-after"] = formatRetryAfter(fault.retryAfter);
      return { status, headers, body: Buffer.from(htmlPage(status), "utf8") };
    }
    case "empty":
      return {
        status: fault.status ?? 200,
        headers: { "content-type": "application/json" },
        body: Buffer.alloc(0),
      };
    case "bigBody": {
      const bytes = fault.bytes ?? DEFAULT_BIG_BODY_BYTES;
      const head = Buffer.from('{"access_token":"', "utf8");
      const tail = Buffer.from('"}', "utf8");
      const body = Buffer.alloc(Math.max(bytes, head.length + tail.length), "x".charCodeAt(0));
      head.copy(body, 0);
      tail.copy(body, body.length - tail.length);
      return {
        status: fault.status ?? 200,
        headers: { "content-type": "application/json" },
        body,
      };
    }
    default:
      return undefined;
  }
}

/**
 * Applies `omitExpiresIn` / `overrideExpiresIn` to a successful token response body (mutates and returns it);
 * any other fault leaves the body unchanged.
 */
export function rewriteTokenBody(fault: Fault | undefined, body: Record<string, unknown>): Record<string, unknown> {
  if (fault?.kind === "omitExpiresIn") {
    delete body["expires_in"];
  } else if (fault?.kind === "overrideExpiresIn") {
    body["expires_in"] = fault.expiresIn;
  }
  return body;
}

/** The `Date` header value for a `skewDate` fault at `nowMs` (epoch milliseconds): IMF-fixdate of now + skew. */
export function skewedDate(fault: { skewSeconds: number }, nowMs: number): string {
  return new Date(nowMs + fault.skewSeconds * 1000).toUTCString();
}
