/**
 * Parsing and validating a token endpoint response (pure). RFC 6749 §5.1 (successful response),
 * §5.2 (error response), Appendix A (value syntax); RFC 6750 (Bearer).
 */
import { classifyHttpFailure, parseJsonObject, TokenEndpointError } from "./errors.ts";
import { jwtExpiry } from "./jwt.ts";
import type { IssuedToken } from "./types.ts";

/** Default upper bound on an accepted token lifetime: 7 days, in seconds (Nexar issues 24 h). */
export const DEFAULT_MAX_LIFETIME_SECONDS = 7 * 24 * 3600;

/** Input of `parseTokenResponse`. */
export interface TokenResponseInput {
  /** HTTP status code. */
  status: number;
  /** Response headers (names in any case). */
  headers: Record<string, string | string[] | undefined>;
  /** Decoded response body (already size-capped by the caller). */
  body: string;
  /** Local clock, epoch ms, from which `expires_in` counts (see below). */
  receivedAtMs: number;
  /** The scopes that were requested; the granted scopes when the response omits `scope`. */
  requestedScopes: readonly string[];
  /** Lifetime in seconds to assume when neither `expires_in` nor a JWT `exp` is present. */
  fallbackLifetimeSeconds?: number;
  /** Longest lifetime accepted, seconds. Default `DEFAULT_MAX_LIFETIME_SECONDS` (7 days). */
  maxLifetimeSeconds?: number;
  /** Secret values to redact from error messages (see `secretsOf` in request.ts). Default none. */
  secrets?: readonly string[];
}

/** RFC 6749 Appendix A.12 / A.17: access_token and refresh_token are 1*VSCHAR (%x20-7E). */
const VSCHAR = /^[\x20-\x7E]+$/;

/**
 * A 200 response whose JSON object is unusable. The server deterministically answers this way
 * and every retry costs an issued token against Nexar's issuance limits, so it is
 * `credential`-class (long backoff), unlike a non-JSON 200 (a proxy page), which is transient.
 */
function invalid(message: string): TokenEndpointError {
  return new TokenEndpointError({
    kind: "credential",
    reason: "InvalidResponse",
    message,
    httpStatus: 200,
  });
}

/** A lifetime in seconds must be finite, > 0 and ≤ max. */
function checkLifetime(seconds: number, max: number, source: string): void {
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw invalid(`token lifetime from ${source} is not positive (${formatSeconds(seconds)} s)`);
  }
  if (seconds > max) {
    throw invalid(`token lifetime from ${source} (${formatSeconds(seconds)} s) exceeds the maximum of ${max} s`);
  }
}

function formatSeconds(n: number): string {
  return Number.isFinite(n) ? String(Math.round(n * 1000) / 1000) : String(n);
}

/** `expires_in`: a number or a numeric string (some servers quote it); undefined when absent/null. */
function readExpiresIn(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === "number") return value;
  if (typeof value === "string" && /^\s*-?\d+(\.\d+)?\s*$/.test(value)) return Number(value);
  throw invalid("token response field expires_in is neither a number nor a numeric string");
}

/**
 * Parses and validates a token endpoint response into an `IssuedToken`.
 *
 * Rules:
 * - Status must be 200 (RFC 6749 §5.1), else the failure is classified by `classifyHttpFailure`.
 * - The body must be a JSON object, judged by content: the Content-Type header is ignored because
 *   proxies and servers mislabel. A 200 with a non-JSON body (captive portal, proxy page) →
 *   transient `InvalidResponse`; a 200 carrying an OAuth `error` and no `access_token` is
 *   classified as the error it reports.
 * - `access_token`: non-empty string of VSCHAR. `refresh_token`, when present (non-null), likewise.
 * - `token_type`: defaults to `Bearer` when absent (lenient: some servers omit it); `Bearer` is
 *   accepted case-insensitively (RFC 6749 §5.1 says the value is case insensitive) and normalised
 *   to `"Bearer"`; any other type (DPoP, MAC, …) is rejected, as the token could not be used as
 *   `Authorization: Bearer`.
 * - `scope`: a space-separated string (or, leniently, an array of strings) → granted scopes; absent
 *   → the requested scopes (RFC 6749 §5.1: omitted when identical to the request).
 * - Lifetime, first match wins: `expires_in` (seconds; number or numeric string), counted from
 *   `receivedAtMs` — NOT from the server's `Date` header: that header has one-second resolution
 *   and the server's clock may be skewed from ours, while every timer that acts on the expiry runs
 *   on our clock, so a local start point makes renewal immune to clock skew; else the JWT `exp`
 *   claim (epoch seconds, compared with our clock); else `fallbackLifetimeSeconds`; else error.
 *   A lifetime ≤ 0, non-finite, or above `maxLifetimeSeconds` is an error.
 *
 * @throws TokenEndpointError for anything that is not a valid success. Its message never contains
 *   the body or any token. Validation failures of a 200 JSON object are `credential`/`InvalidResponse`.
 */
export function parseTokenResponse(input: TokenResponseInput): IssuedToken {
  const secrets = input.secrets ?? [];
  const maxLifetime = input.maxLifetimeSeconds ?? DEFAULT_MAX_LIFETIME_SECONDS;
  if (input.status !== 200) {
    throw classifyHttpFailure({
      status: input.status,
      headers: input.headers,
      body: input.body,
      secrets,
    });
  }
  const json = parseJsonObject(input.body);
  if (json === undefined) {
    throw classifyHttpFailure({
      status: 200,
      headers: input.headers,
      body: input.body,
      secrets,
    });
  }

  const accessToken = json["access_token"];
  if (accessToken === undefined && json["error"] !== undefined) {
    // A 200 that is really an error response: classify it by its OAuth error code.
    throw classifyHttpFailure({
      status: 200,
      headers: input.headers,
      body: input.body,
      secrets,
    });
  }
  if (typeof accessToken !== "string" || accessToken === "") {
    throw invalid("token response has no access_token (missing, empty or not a string)");
  }
  if (!VSCHAR.test(accessToken)) {
    throw invalid("token response access_token contains characters outside RFC 6749 VSCHAR");
  }

  const rawType = json["token_type"];
  if (
    rawType !== undefined &&
    rawType !== null &&
    (typeof rawType !== "string" || rawType.toLowerCase() !== "bearer")
  ) {
    const shown = typeof rawType === "string" && /^[A-Za-z0-9_-]{1,32}$/.test(rawType) ? ` "${rawType}"` : "";
    throw invalid(`token response token_type${shown} is not Bearer`);
  }

  const rawScope = json["scope"];
  let scopes: string[];
  if (rawScope === undefined || rawScope === null) {
    scopes = [...input.requestedScopes];
  } else if (typeof rawScope === "string") {
    scopes = rawScope.split(" ").filter((s) => s !== "");
  } else if (Array.isArray(rawScope) && rawScope.every((s): s is string => typeof s === "string")) {
    scopes = rawScope.filter((s) => s !== "");
  } else {
    throw invalid("token response field scope is neither a string nor a list of strings");
  }

  const rawRefresh = json["refresh_token"];
  let refreshToken: string | undefined;
  if (rawRefresh !== undefined && rawRefresh !== null) {
    if (typeof rawRefresh !== "string" || !VSCHAR.test(rawRefresh)) {
      throw invalid("token response refresh_token is empty, not a string, or has characters outside VSCHAR");
    }
    refreshToken = rawRefresh;
  }

  const receivedAtMs = input.receivedAtMs;
  let expiresAtMs: number;
  let lifetimeSource: IssuedToken["lifetimeSource"];
  const expiresIn = readExpiresIn(json["expires_in"]);
  if (expiresIn !== undefined) {
    checkLifetime(expiresIn, maxLifetime, "expires_in");
    expiresAtMs = receivedAtMs + Math.round(expiresIn * 1000);
    lifetimeSource = "expires_in";
  } else {
    const exp = jwtExpiry(accessToken);
    if (exp !== undefined) {
      checkLifetime((exp * 1000 - receivedAtMs) / 1000, maxLifetime, "the JWT exp claim");
      expiresAtMs = Math.round(exp * 1000);
      lifetimeSource = "jwt_exp";
    } else if (input.fallbackLifetimeSeconds !== undefined) {
      checkLifetime(input.fallbackLifetimeSeconds, maxLifetime, "the configured fallback");
      expiresAtMs = receivedAtMs + Math.round(input.fallbackLifetimeSeconds * 1000);
      lifetimeSource = "fallback";
    } else {
      throw invalid(
        "token response has no expires_in, the token has no JWT exp, and no fallback lifetime is configured",
      );
    }
  }

  const token: IssuedToken = {
    accessToken,
    tokenType: "Bearer",
    scopes,
    receivedAtMs,
    expiresAtMs,
    lifetimeSource,
  };
  if (refreshToken !== undefined) token.refreshToken = refreshToken;
  return token;
}
