/**
 * Building the token request (pure). RFC 6749 §4.4.2 (client credentials), §6 (refresh token),
 * §2.3.1 (client password authentication), Appendix B (form encoding).
 */
import type { TokenRequest } from "./types.ts";

/** The HTTP request to send: always `POST`, body `application/x-www-form-urlencoded`. */
export interface BuiltTokenRequest {
  /** The token endpoint URL, exactly as given in the `TokenRequest`. */
  url: string;
  /** Header name → value. Contains the client secret (Basic) — never log it. */
  headers: Record<string, string>;
  /** Form-encoded body. May contain the client secret and refresh token — never log it. */
  body: string;
}

/**
 * `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B, i.e. the WHATWG
 * URL Standard's urlencoded serializer: UTF-8, space → `+`, everything but `*-._` and
 * alphanumerics percent-encoded).
 */
export function formUrlEncode(value: string): string {
  // URLSearchParams implements exactly the WHATWG serializer; strip the leading "v=".
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/**
 * The `Authorization` header value for `client_secret_basic`: RFC 6749 §2.3.1 says the client id
 * and secret are each form-urlencoded (Appendix B) before being joined with `:` and base64-encoded
 * (RFC 7617). This matters for ids/secrets containing `:`, `%`, `+` or non-ASCII characters.
 * The result contains the secret.
 */
export function basicAuthorization(clientId: string, clientSecret: string): string {
  const userPass = `${formUrlEncode(clientId)}:${formUrlEncode(clientSecret)}`;
  return `Basic ${Buffer.from(userPass, "utf8").toString("base64")}`;
}

/**
 * Builds the token endpoint request for `req`.
 *
 * Body: `grant_type=client_credentials` (RFC 6749 §4.4.2) or `grant_type=refresh_token` plus
 * `refresh_token` (§6); `scope` space-joined when scopes are given (§3.3); for `ClientSecretPost`
 * also `client_id` and `client_secret` (§2.3.1). For `ClientSecretBasic` the credentials go in an
 * HTTP Basic `Authorization` header instead. Headers always carry
 * `Content-Type: application/x-www-form-urlencoded` and `Accept: application/json`.
 *
 * @throws Error when `grant` is `RefreshToken` and `refreshToken` is missing or empty (the message
 *   names the problem, never a secret value).
 */
export function buildTokenRequest(req: TokenRequest): BuiltTokenRequest {
  const form = new URLSearchParams();
  if (req.grant === "RefreshToken") {
    if (req.refreshToken === undefined || req.refreshToken === "") {
      throw new Error("RefreshToken grant requires a refresh token, but none was provided");
    }
    form.set("grant_type", "refresh_token");
    form.set("refresh_token", req.refreshToken);
  } else {
    form.set("grant_type", "client_credentials");
  }
  if (req.scopes.length > 0) form.set("scope", req.scopes.join(" "));

  const headers: Record<string, string> = {
    "Content-Type": "application/x-www-form-urlencoded",
    Accept: "application/json",
  };
  if (req.clientAuthentication === "ClientSecretBasic") {
    headers["Authorization"] = basicAuthorization(req.clientId, req.clientSecret);
  } else {
    form.set("client_id", req.clientId);
    form.set("client_secret", req.clientSecret);
  }
  return { url: req.tokenUrl, headers, body: form.toString() };
}

/**
 * Every string that must never appear in a message about `req`, for `redact()`: the client
 * secret, the refresh token, and the Basic credential blob (base64 of the encoded `id:secret`).
 * `redact()` itself adds the URL-encoded and base64 forms of each entry.
 */
export function secretsOf(req: TokenRequest): string[] {
  const out = [req.clientSecret];
  if (req.refreshToken) out.push(req.refreshToken);
  out.push(basicAuthorization(req.clientId, req.clientSecret).slice("Basic ".length));
  out.push(`${req.clientId}:${req.clientSecret}`);
  return out.filter((s) => s.length > 0);
}
