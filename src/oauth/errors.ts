/**
 * Token endpoint failures: the error class, classification of HTTP and network failures, and
 * redaction of secrets from anything that ends up in a message. Pure (no I/O).
 *
 * Classification follows SPEC.md §3 item 4 and RFC 6749 §5.2 (error response codes). Messages
 * follow SPEC.md §3 item 9: no token, client secret or refresh token ever appears in them.
 */
import { formUrlEncode } from "./request.ts";

/**
 * Backoff class of a failure (SPEC.md §3 item 4):
 * - `credential`: will not fix itself by retrying soon (bad credentials, bad configuration, a
 *   server that deterministically answers something unusable) → long backoff, `Ready=False` with
 *   the specific reason; retried at once when the spec or the credentials Secret changes.
 * - `transient`: network trouble, 5xx, timeouts, non-JSON bodies from proxies/CDNs → exponential
 *   backoff with jitter, seconds to minutes.
 * - `rateLimited`: HTTP 429 (or OAuth `slow_down`) → honour `retryAfterHeader` when present.
 */
export type TokenErrorKind = "credential" | "transient" | "rateLimited";

/**
 * Why a token fetch failed. Used verbatim as `status.lastFailureReason`, the Ready condition
 * reason and a metric label value, so the set is closed and every value is CamelCase.
 */
export type TokenErrorReason =
  | "InvalidClient"
  | "UnauthorizedClient"
  | "InvalidScope"
  | "InvalidGrant"
  | "AccessDenied"
  | "TokenEndpointUnavailable"
  | "RateLimited"
  | "InvalidResponse"
  | "Timeout"
  | "ConnectionFailed"
  | "ResponseTooLarge";

/** Constructor input of `TokenEndpointError`. `message` must already be safe (see `redact`). */
export interface TokenEndpointErrorInit {
  kind: TokenErrorKind;
  reason: TokenErrorReason;
  message: string;
  httpStatus?: number;
  retryAfterHeader?: string;
  oauthError?: string;
}

/**
 * The only error `TokenClient.fetchToken` and `parseTokenResponse` throw. Its message is safe to
 * log, put in an Event or a status condition: it never contains a secret, a token or a response
 * body, only (redacted, length-capped) OAuth `error`/`error_description` values.
 */
export class TokenEndpointError extends Error {
  /** Backoff class. */
  readonly kind: TokenErrorKind;
  /** Specific reason (status/metric vocabulary). */
  readonly reason: TokenErrorReason;
  /** HTTP status of the response, when there was one. */
  readonly httpStatus?: number;
  /** Raw `Retry-After` header value (RFC 9110 §10.2.3: seconds or HTTP-date), sanitised; the scheduler parses it. */
  readonly retryAfterHeader?: string;
  /** RFC 6749 §5.2 `error` code, only when it is in the RFC charset and at most 64 characters. */
  readonly oauthError?: string;

  constructor(init: TokenEndpointErrorInit) {
    super(init.message);
    this.name = "TokenEndpointError";
    this.kind = init.kind;
    this.reason = init.reason;
    if (init.httpStatus !== undefined) this.httpStatus = init.httpStatus;
    if (init.retryAfterHeader !== undefined) this.retryAfterHeader = init.retryAfterHeader;
    if (init.oauthError !== undefined) this.oauthError = init.oauthError;
  }
}

/**
 * Maximum length of a redacted text (characters). 400, so that a server's whole explanation fits:
 * Ory Hydra's `invalid_client` description for a client that used another authentication method
 * than the registered one is about 330 characters, and the part that says which method to use
 * starts after character 124. With the summary around it the message stays well under the 1 KiB
 * of an Event's `note` (events.k8s.io/v1).
 */
export const MAX_SAFE_TEXT_LENGTH = 400;
const REDACTED = "[REDACTED]";

/**
 * Replaces every occurrence of each secret in `text` with `[REDACTED]`, including the secret's
 * URL-encoded (`encodeURIComponent` and form-urlencoded) and base64/base64url forms (with and
 * without padding), then caps the result at `MAX_SAFE_TEXT_LENGTH` (400) characters (redaction happens before the cut, so
 * a cut can never leave a partial secret behind that redaction would have caught). Empty secrets
 * are ignored. For HTTP Basic, pass the base64 `id:secret` blob as a secret too (`secretsOf` in
 * `request.ts` does). Pure.
 */
export function redact(text: string, secrets: readonly string[]): string {
  const forms = new Set<string>();
  for (const s of secrets) {
    if (s.length === 0) continue;
    const b64 = Buffer.from(s, "utf8").toString("base64");
    const b64url = Buffer.from(s, "utf8").toString("base64url");
    for (const f of [s, encodeURIComponent(s), formUrlEncode(s), b64, b64.replace(/=+$/, ""), b64url]) {
      if (f.length > 0) forms.add(f);
    }
  }
  // Longest first, so a form containing another is replaced whole.
  let out = text;
  for (const f of [...forms].sort((a, b) => b.length - a.length)) {
    out = out.split(f).join(REDACTED);
  }
  if (out.length > MAX_SAFE_TEXT_LENGTH) out = `${out.slice(0, MAX_SAFE_TEXT_LENGTH - 1)}…`;
  return out;
}

/** RFC 6749 §5.2: `error` = 1*( %x20-21 / %x23-5B / %x5D-7E ). */
const OAUTH_ERROR_CODE = /^[\x20-\x21\x23-\x5B\x5D-\x7E]+$/;
const MAX_OAUTH_ERROR_LENGTH = 64;
/** Printable ASCII only; a description with anything else (control chars, non-ASCII) is dropped. */
const PRINTABLE = /^[\x20-\x7E]*$/;

/** A safe OAuth `error` code from an untrusted value, or undefined. */
function safeOAuthError(value: unknown, secrets: readonly string[]): string | undefined {
  if (typeof value !== "string") return undefined;
  if (value.length > MAX_OAUTH_ERROR_LENGTH || !OAUTH_ERROR_CODE.test(value)) return undefined;
  // Paranoia: a "code" that contains a secret is not a code.
  if (redact(value, secrets) !== value) return undefined;
  return value;
}

/** A safe `error_description` from an untrusted value, or undefined. */
function safeDescription(value: unknown, secrets: readonly string[]): string | undefined {
  if (typeof value !== "string") return undefined;
  if (!PRINTABLE.test(value)) return undefined;
  const trimmed = value.trim();
  if (trimmed === "") return undefined;
  return redact(trimmed, secrets);
}

/** A safe `Retry-After` value (printable ASCII, ≤ 64 chars, trimmed), or undefined. */
function safeRetryAfter(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (v === "" || v.length > 64 || !PRINTABLE.test(v)) return undefined;
  return v;
}

/**
 * Case-insensitive header lookup over Node/undici-style headers; arrays yield their first value.
 */
export function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== lower || v === undefined) continue;
    return Array.isArray(v) ? v[0] : v;
  }
  return undefined;
}

/**
 * Parses a body as a JSON object by content (the Content-Type header may lie: proxies label HTML
 * as JSON and servers label JSON as text). Tolerates a UTF-8 BOM and surrounding whitespace.
 * Returns undefined for anything that is not a JSON object (arrays, null, scalars, invalid JSON).
 */
export function parseJsonObject(body: string): Record<string, unknown> | undefined {
  const text = body.replace(/^\uFEFF/, "").trim();
  if (!text.startsWith("{")) return undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return undefined;
    return parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

interface CodeMapping {
  kind: TokenErrorKind;
  reason: TokenErrorReason;
  summary: string;
}

/**
 * RFC 6749 §5.2 error codes (plus `slow_down` from RFC 8628 §3.5 and the §4.1.2.1 codes some
 * servers also return from the token endpoint) → classification.
 */
const OAUTH_CODES: Readonly<Record<string, CodeMapping>> = {
  invalid_client: {
    kind: "credential",
    reason: "InvalidClient",
    summary: "client authentication failed",
  },
  unauthorized_client: {
    kind: "credential",
    reason: "UnauthorizedClient",
    summary: "client is not authorized to use this grant type",
  },
  // The server does not support the grant at all: as permanent as unauthorized_client.
  unsupported_grant_type: {
    kind: "credential",
    reason: "UnauthorizedClient",
    summary: "token endpoint does not support this grant type",
  },
  invalid_scope: {
    kind: "credential",
    reason: "InvalidScope",
    summary: "requested scope is invalid or not allowed",
  },
  invalid_grant: {
    kind: "credential",
    reason: "InvalidGrant",
    summary: "grant is invalid, expired or revoked (refresh token no longer usable?)",
  },
  access_denied: {
    kind: "credential",
    reason: "AccessDenied",
    summary: "token endpoint denied access",
  },
  server_error: {
    kind: "transient",
    reason: "TokenEndpointUnavailable",
    summary: "token endpoint reported a server error",
  },
  temporarily_unavailable: {
    kind: "transient",
    reason: "TokenEndpointUnavailable",
    summary: "token endpoint is temporarily unavailable",
  },
  slow_down: {
    kind: "rateLimited",
    reason: "RateLimited",
    summary: "token endpoint asked the client to slow down",
  },
};

/**
 * Any other OAuth error code on a 4xx response (e.g. `invalid_request`): the server understood the
 * exchange and rejected what we sent. Retrying the same request soon cannot help (it is a bug or
 * a configuration problem on our side, e.g. an over-long scope), so it gets the credential-class
 * long backoff. The reason set has no "InvalidRequest"; `InvalidResponse` is used and the message
 * carries the actual OAuth code.
 */
const UNKNOWN_CODE: CodeMapping = {
  kind: "credential",
  reason: "InvalidResponse",
  summary: "token endpoint rejected the request",
};

/** Input of `classifyHttpFailure`. `body` is the decoded response body (already size-capped). */
export interface HttpFailure {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Secret values to redact from anything echoed in the message (see `secretsOf`). */
  secrets: readonly string[];
}

function describe(summary: string, status: number, code: string | undefined, desc: string | undefined): string {
  const meta = code === undefined ? `HTTP ${status}` : `HTTP ${status}, error=${code}`;
  return desc === undefined ? `${summary} (${meta})` : `${summary} (${meta}): ${desc}`;
}

/**
 * Classifies a token endpoint response that is not a usable success. Rules, in order:
 * 1. 429 → `rateLimited`/`RateLimited` (SPEC.md §1: Nexar's 429 body is unknown, so the body is
 *    not consulted for the class).
 * 2. 5xx and 408 → `transient`/`TokenEndpointUnavailable`, whatever the body (HTML from a
 *    gateway included).
 * 3. A JSON object body with an RFC 6749 §5.2 `error` code (under any other status, including a
 *    200 that is really an error response) → that code's class:
 *    `invalid_client`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
 *    `invalid_grant`, `access_denied` → `credential` with the specific reason; `server_error`,
 *    `temporarily_unavailable` → transient; `slow_down` → rateLimited. Any other well-formed code
 *    (e.g. `invalid_request`) → `credential`/`InvalidResponse` (see `UNKNOWN_CODE`).
 * 4. 401/403 with a JSON object or empty body and no usable code → `credential`/`AccessDenied`.
 * 5. Anything else — a non-JSON body (HTML from a proxy/CDN, also under 401/403), JSON that is not
 *    an object, a JSON object without an `error` code, unexpected statuses (3xx: redirects are not
 *    followed, as they would re-post credentials; 404; non-200 2xx) → `transient`/`InvalidResponse`.
 *
 * `retryAfterHeader` is kept for every status (503 may carry it too, RFC 9110 §10.2.3). The
 * message includes only the status, the OAuth code and a redacted, printable-only, ≤ 400-character
 * `error_description`; never the body.
 */
export function classifyHttpFailure(input: HttpFailure): TokenEndpointError {
  const { status, headers, body, secrets } = input;
  const retryAfterHeader = safeRetryAfter(headerValue(headers, "retry-after"));
  const json = parseJsonObject(body);
  const code = json === undefined ? undefined : safeOAuthError(json["error"], secrets);
  const desc =
    json === undefined || code === undefined ? undefined : safeDescription(json["error_description"], secrets);
  const make = (m: CodeMapping): TokenEndpointError =>
    new TokenEndpointError({
      kind: m.kind,
      reason: m.reason,
      message: describe(m.summary, status, code, desc),
      httpStatus: status,
      ...(retryAfterHeader !== undefined ? { retryAfterHeader } : {}),
      ...(code !== undefined ? { oauthError: code } : {}),
    });

  if (status === 429) {
    return make({
      kind: "rateLimited",
      reason: "RateLimited",
      summary: "token endpoint rate limit hit",
    });
  }
  if (status >= 500 || status === 408) {
    return make({
      kind: "transient",
      reason: "TokenEndpointUnavailable",
      summary: "token endpoint unavailable",
    });
  }
  if (code !== undefined) {
    return make(OAUTH_CODES[code] ?? UNKNOWN_CODE);
  }
  const emptyBody = body.trim() === "";
  if ((status === 401 || status === 403) && (json !== undefined || emptyBody)) {
    return make({
      kind: "credential",
      reason: "AccessDenied",
      summary: "token endpoint denied access",
    });
  }
  let summary: string;
  if (emptyBody) summary = "token endpoint returned an empty body";
  else if (json === undefined) summary = "token endpoint returned a non-JSON body (proxy or CDN page?)";
  else summary = "token endpoint returned an unexpected response";
  return make({ kind: "transient", reason: "InvalidResponse", summary });
}

/** Collects `code` (string) and `name` of an error and its `cause` chain (depth ≤ 5). */
function errorMarks(err: unknown): {
  codes: string[];
  names: string[];
  found?: TokenEndpointError;
} {
  const codes: string[] = [];
  const names: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; depth < 6 && cur !== null && typeof cur === "object"; depth++) {
    if (cur instanceof TokenEndpointError) return { codes, names, found: cur };
    const rec = cur as { code?: unknown; name?: unknown; cause?: unknown };
    if (typeof rec.code === "string") codes.push(rec.code);
    if (typeof rec.name === "string") names.push(rec.name);
    cur = rec.cause;
  }
  return { codes, names };
}

const TIMEOUT_CODES: Readonly<Record<string, string>> = {
  UND_ERR_CONNECT_TIMEOUT: "timed out connecting to the token endpoint",
  UND_ERR_HEADERS_TIMEOUT: "timed out waiting for the token endpoint's response headers",
  UND_ERR_BODY_TIMEOUT: "timed out reading the token endpoint's response body",
  ETIMEDOUT: "connection to the token endpoint timed out",
  UND_ERR_ABORTED: "token request aborted (deadline exceeded)",
  ABORT_ERR: "token request aborted (deadline exceeded)",
};
const TIMEOUT_NAMES: Readonly<Record<string, string>> = {
  TimeoutError: "token request exceeded its total deadline",
  AbortError: "token request aborted (deadline exceeded)",
  ConnectTimeoutError: TIMEOUT_CODES["UND_ERR_CONNECT_TIMEOUT"] ?? "",
  HeadersTimeoutError: TIMEOUT_CODES["UND_ERR_HEADERS_TIMEOUT"] ?? "",
  BodyTimeoutError: TIMEOUT_CODES["UND_ERR_BODY_TIMEOUT"] ?? "",
};
const TOO_LARGE_CODES: Readonly<Record<string, string>> = {
  UND_ERR_HEADERS_OVERFLOW: "token endpoint's response headers are too large",
  UND_ERR_RES_EXCEEDED_MAX_SIZE: "token endpoint's response body is too large",
};
const CONNECTION_CODES: Readonly<Record<string, string>> = {
  ECONNRESET: "connection to the token endpoint was reset",
  ECONNREFUSED: "connection to the token endpoint was refused",
  ENOTFOUND: "token endpoint host name could not be resolved (DNS)",
  EAI_AGAIN: "token endpoint host name lookup failed temporarily (DNS)",
  EHOSTUNREACH: "token endpoint host is unreachable",
  ENETUNREACH: "network to the token endpoint is unreachable",
  EPIPE: "connection to the token endpoint was closed while sending",
  UND_ERR_SOCKET: "connection to the token endpoint was closed unexpectedly",
  UND_ERR_CLOSED: "HTTP client was closed",
  UND_ERR_DESTROYED: "HTTP client was destroyed",
  UND_ERR_PRX_CONN: "connection through the HTTP proxy failed",
  UND_ERR_PRX_TLS: "TLS connection to the HTTP proxy failed",
};
const SAFE_CODE = /^[A-Za-z0-9_]{1,48}$/;

/**
 * Classifies an error thrown while sending the request or reading the response (undici, Node net,
 * DNS, TLS, AbortSignal) as a `transient` `TokenEndpointError`. A `TokenEndpointError` anywhere in
 * the `cause` chain is returned as is. Rules (by `code`, then `name`, over the cause chain):
 * - Timeout: undici `ConnectTimeoutError`/`HeadersTimeoutError`/`BodyTimeoutError`
 *   (`UND_ERR_*_TIMEOUT`), `ETIMEDOUT`, aborts (`AbortError`, `TimeoutError` from
 *   `AbortSignal.timeout`, `UND_ERR_ABORTED`).
 * - ResponseTooLarge: `UND_ERR_HEADERS_OVERFLOW`, `UND_ERR_RES_EXCEEDED_MAX_SIZE`.
 * - ConnectionFailed: resets, refusals, DNS (`ENOTFOUND`, `EAI_AGAIN`), closed sockets
 *   (`UND_ERR_SOCKET`), TLS failures, proxy failures, and anything unrecognised.
 * The message is built from fixed text plus the error code; the original message (which may quote
 * hosts or internal details) is not copied.
 */
export function classifyNetworkError(err: unknown): TokenEndpointError {
  const { codes, names, found } = errorMarks(err);
  if (found) return found;
  const code = codes.find((c) => SAFE_CODE.test(c));
  const suffix = code === undefined ? "" : ` (${code})`;
  const transient = (reason: TokenErrorReason, text: string): TokenEndpointError =>
    new TokenEndpointError({
      kind: "transient",
      reason,
      message: `${text}${suffix}`,
    });

  for (const c of codes) {
    const t = TIMEOUT_CODES[c];
    if (t !== undefined) return transient("Timeout", t);
    const big = TOO_LARGE_CODES[c];
    if (big !== undefined) return transient("ResponseTooLarge", big);
  }
  for (const n of names) {
    const t = TIMEOUT_NAMES[n];
    if (t !== undefined) return transient("Timeout", t);
  }
  for (const c of codes) {
    const conn = CONNECTION_CODES[c];
    if (conn !== undefined) return transient("ConnectionFailed", conn);
    if (/^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/.test(c)) {
      return transient("ConnectionFailed", "TLS handshake with the token endpoint failed");
    }
  }
  const name = names.find((n) => SAFE_CODE.test(n));
  const what = name === undefined ? "" : ` [${name}]`;
  return transient("ConnectionFailed", `token request failed${what}`);
}
