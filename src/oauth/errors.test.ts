import { describe, expect, it } from "vitest";
import { errors as undiciErrors } from "undici";
import { classifyHttpFailure, classifyNetworkError, redact, TokenEndpointError } from "./errors.ts";
import type { TokenErrorKind, TokenErrorReason } from "./errors.ts";
import { secretsOf } from "./request.ts";

const SECRET = "Sup3r/Secret+Value=";
const REFRESH = "rt-0123456789abcdef";
const secrets = secretsOf({
  tokenUrl: "https://example.test/token",
  grant: "RefreshToken",
  clientAuthentication: "ClientSecretBasic",
  clientId: "client:1",
  clientSecret: SECRET,
  refreshToken: REFRESH,
  scopes: [],
});

const json = (v: unknown) => JSON.stringify(v);
const oauth = (error: string, error_description?: string) => json({ error, error_description });
const HTML = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>";

describe("classifyHttpFailure", () => {
  it.each<[string, number, string, TokenErrorKind, TokenErrorReason, string | undefined]>([
    // name, status, body, kind, reason, oauthError
    ["400 invalid_client", 400, oauth("invalid_client"), "credential", "InvalidClient", "invalid_client"],
    ["401 invalid_client", 401, oauth("invalid_client"), "credential", "InvalidClient", "invalid_client"],
    [
      "400 unauthorized_client",
      400,
      oauth("unauthorized_client"),
      "credential",
      "UnauthorizedClient",
      "unauthorized_client",
    ],
    [
      "400 unsupported_grant_type",
      400,
      oauth("unsupported_grant_type"),
      "credential",
      "UnauthorizedClient",
      "unsupported_grant_type",
    ],
    ["400 invalid_scope", 400, oauth("invalid_scope"), "credential", "InvalidScope", "invalid_scope"],
    ["400 invalid_grant", 400, oauth("invalid_grant"), "credential", "InvalidGrant", "invalid_grant"],
    ["403 access_denied", 403, oauth("access_denied"), "credential", "AccessDenied", "access_denied"],
    [
      "400 invalid_request (our bug → long backoff)",
      400,
      oauth("invalid_request"),
      "credential",
      "InvalidResponse",
      "invalid_request",
    ],
    ["400 unknown code", 400, oauth("something_new"), "credential", "InvalidResponse", "something_new"],
    ["400 server_error", 400, oauth("server_error"), "transient", "TokenEndpointUnavailable", "server_error"],
    [
      "400 temporarily_unavailable",
      400,
      oauth("temporarily_unavailable"),
      "transient",
      "TokenEndpointUnavailable",
      "temporarily_unavailable",
    ],
    ["400 slow_down", 400, oauth("slow_down"), "rateLimited", "RateLimited", "slow_down"],
    ["401 empty body", 401, "", "credential", "AccessDenied", undefined],
    ["403 empty body", 403, "", "credential", "AccessDenied", undefined],
    ["401 JSON without error", 401, json({ message: "nope" }), "credential", "AccessDenied", undefined],
    ["403 JSON with non-string error", 403, json({ error: 42 }), "credential", "AccessDenied", undefined],
    ["401 HTML (proxy page)", 401, HTML, "transient", "InvalidResponse", undefined],
    ["403 HTML (WAF page)", 403, HTML, "transient", "InvalidResponse", undefined],
    ["429 empty", 429, "", "rateLimited", "RateLimited", undefined],
    ["429 HTML", 429, HTML, "rateLimited", "RateLimited", undefined],
    ["429 with OAuth error", 429, oauth("invalid_client"), "rateLimited", "RateLimited", "invalid_client"],
    ["500 JSON", 500, oauth("server_error"), "transient", "TokenEndpointUnavailable", "server_error"],
    ["502 HTML", 502, HTML, "transient", "TokenEndpointUnavailable", undefined],
    ["503 empty", 503, "", "transient", "TokenEndpointUnavailable", undefined],
    [
      "504 invalid_grant still transient",
      504,
      oauth("invalid_grant"),
      "transient",
      "TokenEndpointUnavailable",
      "invalid_grant",
    ],
    ["408", 408, "", "transient", "TokenEndpointUnavailable", undefined],
    ["400 HTML", 400, HTML, "transient", "InvalidResponse", undefined],
    ["400 empty", 400, "", "transient", "InvalidResponse", undefined],
    ["400 JSON array", 400, json([{ error: "invalid_client" }]), "transient", "InvalidResponse", undefined],
    ["400 JSON string", 400, json("invalid_client"), "transient", "InvalidResponse", undefined],
    ["400 JSON null", 400, "null", "transient", "InvalidResponse", undefined],
    ["400 JSON without error", 400, json({ foo: 1 }), "transient", "InvalidResponse", undefined],
    ["400 truncated JSON", 400, '{"error":"invalid_cli', "transient", "InvalidResponse", undefined],
    ["404 HTML", 404, HTML, "transient", "InvalidResponse", undefined],
    ["302 redirect", 302, "", "transient", "InvalidResponse", undefined],
    ["200 with OAuth error", 200, oauth("invalid_scope"), "credential", "InvalidScope", "invalid_scope"],
    ["400 error code with a quote is not a code", 400, oauth('bad"code'), "transient", "InvalidResponse", undefined],
    ["400 error code too long is not a code", 400, oauth("x".repeat(65)), "transient", "InvalidResponse", undefined],
    [
      "400 error code with non-ASCII is not a code",
      400,
      oauth("invalid_clïent"),
      "transient",
      "InvalidResponse",
      undefined,
    ],
    [
      "400 BOM + whitespace JSON",
      400,
      `\uFEFF \n${oauth("invalid_client")}\n`,
      "credential",
      "InvalidClient",
      "invalid_client",
    ],
  ])("%s", (_name, status, body, kind, reason, oauthError) => {
    const err = classifyHttpFailure({
      status,
      headers: { "content-type": "application/json" },
      body,
      secrets,
    });
    expect(err).toBeInstanceOf(TokenEndpointError);
    expect(err.kind).toBe(kind);
    expect(err.reason).toBe(reason);
    expect(err.httpStatus).toBe(status);
    expect(err.oauthError).toBe(oauthError);
    expect(err.message).toContain(`HTTP ${status}`);
    expect(err.message.length).toBeLessThan(400);
    if (body.length > 0) expect(err.message).not.toContain(body);
  });

  it("keeps the raw Retry-After header (any case, first of an array)", () => {
    const a = classifyHttpFailure({
      status: 429,
      headers: { "Retry-After": "120" },
      body: "",
      secrets,
    });
    expect(a.retryAfterHeader).toBe("120");
    const b = classifyHttpFailure({
      status: 429,
      headers: { "retry-after": ["Wed, 21 Oct 2026 07:28:00 GMT", "5"] },
      body: "",
      secrets,
    });
    expect(b.retryAfterHeader).toBe("Wed, 21 Oct 2026 07:28:00 GMT");
    const c = classifyHttpFailure({
      status: 503,
      headers: { "retry-after": " 30 " },
      body: "",
      secrets,
    });
    expect(c.retryAfterHeader).toBe("30");
    const d = classifyHttpFailure({
      status: 429,
      headers: {},
      body: "",
      secrets,
    });
    expect(d.retryAfterHeader).toBeUndefined();
    const e = classifyHttpFailure({
      status: 429,
      headers: { "retry-after": "1\u0000" },
      body: "",
      secrets,
    });
    expect(e.retryAfterHeader).toBeUndefined();
  });

  it("includes the error description, redacting an echoed secret in every encoding", () => {
    const b64 = Buffer.from(SECRET).toString("base64");
    const desc = `client secret '${SECRET}' (${encodeURIComponent(SECRET)}, ${b64}) and refresh ${REFRESH} rejected`;
    const err = classifyHttpFailure({
      status: 400,
      headers: {},
      body: oauth("invalid_client", desc),
      secrets,
    });
    expect(err.message).toContain("error=invalid_client");
    expect(err.message).toContain("[REDACTED]");
    for (const leak of [SECRET, encodeURIComponent(SECRET), b64, b64.replace(/=+$/, ""), REFRESH, "Sup3r"]) {
      expect(err.message).not.toContain(leak);
    }
  });

  it("redacts an echoed Basic Authorization blob", () => {
    const blob = secrets.find((s) => s.endsWith("=") || /^[A-Za-z0-9+/]{20,}$/.test(s)) ?? "";
    const err = classifyHttpFailure({
      status: 401,
      headers: {},
      body: oauth("invalid_client", `bad header Basic ${blob}`),
      secrets,
    });
    expect(blob.length).toBeGreaterThan(10);
    expect(err.message).not.toContain(blob);
    expect(err.message).toContain("Basic [REDACTED]");
  });

  it("drops descriptions with non-printable characters and caps long ones", () => {
    const ctrl = classifyHttpFailure({
      status: 400,
      headers: {},
      body: oauth("invalid_grant", "line1\nline2"),
      secrets,
    });
    expect(ctrl.message).not.toContain("line1");
    expect(ctrl.reason).toBe("InvalidGrant");
    const nonAscii = classifyHttpFailure({
      status: 400,
      headers: {},
      body: oauth("invalid_grant", "clé ✓"),
      secrets,
    });
    expect(nonAscii.message).not.toContain("cl");
    const long = classifyHttpFailure({
      status: 400,
      headers: {},
      body: oauth("invalid_grant", "x".repeat(5000)),
      secrets,
    });
    expect(long.message).toContain("x".repeat(350));
    expect(long.message).not.toContain("x".repeat(401));
  });

  it("never echoes a huge body", () => {
    const huge = "A".repeat(2_000_000);
    const err = classifyHttpFailure({
      status: 400,
      headers: {},
      body: huge,
      secrets,
    });
    expect(err.reason).toBe("InvalidResponse");
    expect(err.message).not.toContain("AAAA");
  });

  it("drops an error code that contains a secret", () => {
    const err = classifyHttpFailure({
      status: 400,
      headers: {},
      body: oauth(REFRESH),
      secrets,
    });
    expect(err.oauthError).toBeUndefined();
    expect(err.message).not.toContain(REFRESH);
  });
});

describe("redact", () => {
  it("replaces raw, URL-encoded, form-encoded and base64 forms", () => {
    const s = "a b/c+d";
    const text = [
      s,
      encodeURIComponent(s),
      "a+b%2Fc%2Bd",
      Buffer.from(s).toString("base64"),
      Buffer.from(s).toString("base64url"),
    ].join(" | ");
    const out = redact(text, [s]);
    expect(out).toBe(Array(5).fill("[REDACTED]").join(" | "));
  });

  it("ignores empty secrets and leaves other text alone", () => {
    expect(redact("hello", ["", "zzz"])).toBe("hello");
  });

  it("caps to 400 characters after redacting", () => {
    const secret = "S".repeat(30);
    const out = redact(`${"x".repeat(380)}${secret}${"y".repeat(50)}`, [secret]);
    expect(out.length).toBeLessThanOrEqual(400);
    expect(out).not.toContain("SSSS");
    expect(out).toContain("[REDACTED]");
  });
});

const withCode = (code: string, message = "boom") => Object.assign(new Error(message), { code });

describe("classifyNetworkError", () => {
  it.each<[string, unknown, TokenErrorReason]>([
    ["undici HeadersTimeoutError", new undiciErrors.HeadersTimeoutError(), "Timeout"],
    ["undici BodyTimeoutError", new undiciErrors.BodyTimeoutError(), "Timeout"],
    ["undici ConnectTimeoutError", new undiciErrors.ConnectTimeoutError(), "Timeout"],
    ["undici RequestAbortedError", new undiciErrors.RequestAbortedError(), "Timeout"],
    [
      "AbortSignal.timeout reason",
      new DOMException("The operation was aborted due to timeout", "TimeoutError"),
      "Timeout",
    ],
    ["AbortError", new DOMException("This operation was aborted", "AbortError"), "Timeout"],
    ["ETIMEDOUT", withCode("ETIMEDOUT"), "Timeout"],
    ["ECONNRESET", withCode("ECONNRESET"), "ConnectionFailed"],
    ["ECONNREFUSED", withCode("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:1"), "ConnectionFailed"],
    ["ENOTFOUND", withCode("ENOTFOUND", "getaddrinfo ENOTFOUND secret-host"), "ConnectionFailed"],
    ["EAI_AGAIN", withCode("EAI_AGAIN"), "ConnectionFailed"],
    ["undici SocketError", new undiciErrors.SocketError("other side closed"), "ConnectionFailed"],
    ["TLS cert error", withCode("UNABLE_TO_VERIFY_LEAF_SIGNATURE"), "ConnectionFailed"],
    ["TLS self-signed", withCode("DEPTH_ZERO_SELF_SIGNED_CERT"), "ConnectionFailed"],
    ["headers overflow", new undiciErrors.HeadersOverflowError(), "ResponseTooLarge"],
    ["max size", new undiciErrors.ResponseExceededMaxSizeError(), "ResponseTooLarge"],
    ["cause chain", new TypeError("fetch failed", { cause: withCode("ECONNRESET") }), "ConnectionFailed"],
    ["cause chain timeout", new Error("x", { cause: new undiciErrors.HeadersTimeoutError() }), "Timeout"],
    ["unknown error", new Error("something odd"), "ConnectionFailed"],
    ["non-error value", "weird", "ConnectionFailed"],
    ["null", null, "ConnectionFailed"],
  ])("%s → transient %s", (_name, err, reason) => {
    const out = classifyNetworkError(err);
    expect(out).toBeInstanceOf(TokenEndpointError);
    expect(out.kind).toBe("transient");
    expect(out.reason).toBe(reason);
    expect(out.httpStatus).toBeUndefined();
    expect(out.message).not.toMatch(/secret-host|127\.0\.0\.1|boom/);
  });

  it("passes a TokenEndpointError through, also from a cause", () => {
    const inner = new TokenEndpointError({
      kind: "transient",
      reason: "ResponseTooLarge",
      message: "big",
    });
    expect(classifyNetworkError(inner)).toBe(inner);
    expect(classifyNetworkError(new Error("wrap", { cause: inner }))).toBe(inner);
  });

  it("names the code in the message", () => {
    expect(classifyNetworkError(withCode("ECONNRESET")).message).toContain("ECONNRESET");
  });
});
