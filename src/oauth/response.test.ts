import { describe, expect, it } from "vitest";
import { TokenEndpointError } from "./errors.ts";
import type { TokenErrorKind, TokenErrorReason } from "./errors.ts";
import { DEFAULT_MAX_LIFETIME_SECONDS, parseTokenResponse } from "./response.ts";
import type { TokenResponseInput } from "./response.ts";

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
const fakeJwt = (payload: unknown) => `${b64({ alg: "RS256", typ: "JWT" })}.${b64(payload)}.c2ln`;

const NOW = 1_780_000_000_000; // epoch ms
const NOW_S = NOW / 1000;
const OPAQUE = "2YotnFZFEjr1zCsicMWpAA";

function input(body: unknown, over: Partial<TokenResponseInput> = {}): TokenResponseInput {
  return {
    status: 200,
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    receivedAtMs: NOW,
    requestedScopes: ["supply.domain"],
    ...over,
  };
}

function failure(fn: () => unknown): TokenEndpointError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(TokenEndpointError);
    return e as TokenEndpointError;
  }
  throw new Error("expected a TokenEndpointError");
}

describe("parseTokenResponse: success", () => {
  it("parses Nexar's documented response", () => {
    const jwt = fakeJwt({ exp: NOW_S + 86400 - 5 });
    const t = parseTokenResponse(
      input({
        access_token: jwt,
        expires_in: 86400,
        token_type: "Bearer",
        scope: "supply.domain",
      }),
    );
    expect(t).toEqual({
      accessToken: jwt,
      tokenType: "Bearer",
      scopes: ["supply.domain"],
      receivedAtMs: NOW,
      expiresAtMs: NOW + 86_400_000,
      lifetimeSource: "expires_in",
    });
  });

  it.each<[string, unknown, number]>([
    ["number", 3600, 3_600_000],
    ["numeric string", "3600", 3_600_000],
    ["padded numeric string", " 3600 ", 3_600_000],
    ["fractional", 1.5, 1500],
  ])("expires_in as %s", (_n, expiresIn, ms) => {
    const t = parseTokenResponse(input({ access_token: OPAQUE, expires_in: expiresIn }));
    expect(t.expiresAtMs).toBe(NOW + ms);
    expect(t.lifetimeSource).toBe("expires_in");
  });

  it("counts expires_in from receivedAtMs, ignoring the server's Date header", () => {
    const t = parseTokenResponse(
      input({ access_token: OPAQUE, expires_in: 60 }, { headers: { date: "Thu, 01 Jan 2015 00:00:00 GMT" } }),
    );
    expect(t.expiresAtMs).toBe(NOW + 60_000);
  });

  it("prefers expires_in over the JWT exp", () => {
    const t = parseTokenResponse(input({ access_token: fakeJwt({ exp: NOW_S + 100 }), expires_in: 50 }));
    expect(t.expiresAtMs).toBe(NOW + 50_000);
  });

  it("uses the JWT exp when expires_in is missing (or null)", () => {
    for (const expires_in of [undefined, null]) {
      const t = parseTokenResponse(input({ access_token: fakeJwt({ exp: NOW_S + 7200 }), expires_in }));
      expect(t.expiresAtMs).toBe(NOW + 7_200_000);
      expect(t.lifetimeSource).toBe("jwt_exp");
    }
  });

  it("uses the fallback when there is neither expires_in nor a JWT exp", () => {
    const t = parseTokenResponse(input({ access_token: OPAQUE }, { fallbackLifetimeSeconds: 900 }));
    expect(t.expiresAtMs).toBe(NOW + 900_000);
    expect(t.lifetimeSource).toBe("fallback");
    const jwtNoExp = parseTokenResponse(
      input({ access_token: fakeJwt({ sub: "x" }) }, { fallbackLifetimeSeconds: 60 }),
    );
    expect(jwtNoExp.lifetimeSource).toBe("fallback");
  });

  it.each<[string, unknown, string[]]>([
    ["missing scope → requested", undefined, ["supply.domain"]],
    ["null scope → requested", null, ["supply.domain"]],
    ["space-separated", "openid  profile design.domain", ["openid", "profile", "design.domain"]],
    ["narrower grant", "openid", ["openid"]],
    ["empty string → none granted", "", []],
    ["array (lenient)", ["a", "b"], ["a", "b"]],
  ])("scope: %s", (_n, scope, expected) => {
    const t = parseTokenResponse(input({ access_token: OPAQUE, expires_in: 60, scope }));
    expect(t.scopes).toEqual(expected);
  });

  it("returns a copy of the requested scopes, not the same array", () => {
    const requested = ["a"];
    const t = parseTokenResponse(input({ access_token: OPAQUE, expires_in: 60 }, { requestedScopes: requested }));
    expect(t.scopes).toEqual(["a"]);
    expect(t.scopes).not.toBe(requested);
  });

  it.each([undefined, null, "Bearer", "bearer", "BEARER"])("token_type %j is accepted as Bearer", (token_type) => {
    expect(parseTokenResponse(input({ access_token: OPAQUE, expires_in: 60, token_type })).tokenType).toBe("Bearer");
  });

  it("returns a rotated refresh token", () => {
    const t = parseTokenResponse(input({ access_token: OPAQUE, expires_in: 60, refresh_token: "new-rt" }));
    expect(t.refreshToken).toBe("new-rt");
    expect(parseTokenResponse(input({ access_token: OPAQUE, expires_in: 60 }))).not.toHaveProperty("refreshToken");
  });

  it("parses by content even when Content-Type says otherwise", () => {
    const t = parseTokenResponse(
      input({ access_token: OPAQUE, expires_in: 60 }, { headers: { "content-type": "text/html; charset=utf-8" } }),
    );
    expect(t.accessToken).toBe(OPAQUE);
  });

  it("accepts exactly the maximum lifetime and honours a custom maximum", () => {
    const max = parseTokenResponse(input({ access_token: OPAQUE, expires_in: DEFAULT_MAX_LIFETIME_SECONDS }));
    expect(max.expiresAtMs).toBe(NOW + DEFAULT_MAX_LIFETIME_SECONDS * 1000);
    const e = failure(() =>
      parseTokenResponse(input({ access_token: OPAQUE, expires_in: 3601 }, { maxLifetimeSeconds: 3600 })),
    );
    expect(e.reason).toBe("InvalidResponse");
  });
});

const HTML = "<html><body>Please log in to the proxy</body></html>";

describe("parseTokenResponse: failures", () => {
  it.each<[string, Partial<TokenResponseInput> & { body: string }, TokenErrorKind, TokenErrorReason]>([
    [
      "400 invalid_client",
      { status: 400, body: JSON.stringify({ error: "invalid_client" }) },
      "credential",
      "InvalidClient",
    ],
    ["401 empty", { status: 401, body: "" }, "credential", "AccessDenied"],
    ["403 JSON", { status: 403, body: "{}" }, "credential", "AccessDenied"],
    ["429", { status: 429, body: "", headers: { "retry-after": "7" } }, "rateLimited", "RateLimited"],
    ["500", { status: 500, body: "" }, "transient", "TokenEndpointUnavailable"],
    ["503 HTML", { status: 503, body: HTML }, "transient", "TokenEndpointUnavailable"],
    [
      "201 with a token (only 200 is success)",
      {
        status: 201,
        body: JSON.stringify({ access_token: OPAQUE, expires_in: 60 }),
      },
      "transient",
      "InvalidResponse",
    ],
    ["200 HTML (captive portal)", { body: HTML }, "transient", "InvalidResponse"],
    [
      "200 HTML labelled JSON",
      { body: HTML, headers: { "content-type": "application/json" } },
      "transient",
      "InvalidResponse",
    ],
    ["200 empty", { body: "" }, "transient", "InvalidResponse"],
    ["200 JSON array", { body: "[]" }, "transient", "InvalidResponse"],
    ["200 JSON null", { body: "null" }, "transient", "InvalidResponse"],
    ["200 JSON number", { body: "42" }, "transient", "InvalidResponse"],
    ["200 truncated JSON", { body: '{"access_token":"abc' }, "transient", "InvalidResponse"],
    ["200 carrying an OAuth error", { body: JSON.stringify({ error: "invalid_grant" }) }, "credential", "InvalidGrant"],
    ["no access_token", { body: JSON.stringify({ expires_in: 60 }) }, "credential", "InvalidResponse"],
    [
      "empty access_token",
      { body: JSON.stringify({ access_token: "", expires_in: 60 }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "numeric access_token",
      { body: JSON.stringify({ access_token: 123, expires_in: 60 }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "access_token with newline",
      { body: JSON.stringify({ access_token: "abc\ndef", expires_in: 60 }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "token_type mac",
      {
        body: JSON.stringify({
          access_token: OPAQUE,
          expires_in: 60,
          token_type: "mac",
        }),
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "token_type DPoP",
      {
        body: JSON.stringify({
          access_token: OPAQUE,
          expires_in: 60,
          token_type: "DPoP",
        }),
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "token_type number",
      {
        body: JSON.stringify({
          access_token: OPAQUE,
          expires_in: 60,
          token_type: 1,
        }),
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "expires_in 0",
      { body: JSON.stringify({ access_token: OPAQUE, expires_in: 0 }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "expires_in negative",
      { body: JSON.stringify({ access_token: OPAQUE, expires_in: -60 }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "expires_in negative string",
      { body: JSON.stringify({ access_token: OPAQUE, expires_in: "-60" }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "expires_in absurd (10 years)",
      {
        body: JSON.stringify({ access_token: OPAQUE, expires_in: 315_360_000 }),
      },
      "credential",
      "InvalidResponse",
    ],
    ["expires_in 1e308", { body: '{"access_token":"abc","expires_in":1e308}' }, "credential", "InvalidResponse"],
    [
      "expires_in overflow to Infinity",
      { body: '{"access_token":"abc","expires_in":1e999}' },
      "credential",
      "InvalidResponse",
    ],
    [
      "expires_in non-numeric string",
      { body: JSON.stringify({ access_token: OPAQUE, expires_in: "soon" }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "expires_in boolean",
      { body: JSON.stringify({ access_token: OPAQUE, expires_in: true }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "JWT exp already past",
      { body: JSON.stringify({ access_token: fakeJwt({ exp: NOW_S - 10 }) }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "JWT exp equals now",
      { body: JSON.stringify({ access_token: fakeJwt({ exp: NOW_S }) }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "JWT exp absurd",
      {
        body: JSON.stringify({
          access_token: fakeJwt({ exp: NOW_S + 10 * 365 * 86400 }),
        }),
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "neither lifetime nor fallback",
      { body: JSON.stringify({ access_token: OPAQUE }) },
      "credential",
      "InvalidResponse",
    ],
    [
      "fallback zero",
      {
        body: JSON.stringify({ access_token: OPAQUE }),
        fallbackLifetimeSeconds: 0,
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "fallback NaN",
      {
        body: JSON.stringify({ access_token: OPAQUE }),
        fallbackLifetimeSeconds: Number.NaN,
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "scope number",
      {
        body: JSON.stringify({
          access_token: OPAQUE,
          expires_in: 60,
          scope: 5,
        }),
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "refresh_token empty",
      {
        body: JSON.stringify({
          access_token: OPAQUE,
          expires_in: 60,
          refresh_token: "",
        }),
      },
      "credential",
      "InvalidResponse",
    ],
    [
      "refresh_token object",
      {
        body: JSON.stringify({
          access_token: OPAQUE,
          expires_in: 60,
          refresh_token: {},
        }),
      },
      "credential",
      "InvalidResponse",
    ],
  ])("%s", (_name, over, kind, reason) => {
    const { body, ...rest } = over;
    const e = failure(() => parseTokenResponse(input(body, rest)));
    expect(e.kind).toBe(kind);
    expect(e.reason).toBe(reason);
    if (body.length > 0) expect(e.message).not.toContain(body);
    expect(e.message).not.toContain(OPAQUE);
    expect(e.message).not.toContain("eyJ"); // no JWT fragment
  });

  it("keeps Retry-After on a 429", () => {
    const e = failure(() => parseTokenResponse(input("", { status: 429, headers: { "Retry-After": "30" } })));
    expect(e.retryAfterHeader).toBe("30");
  });

  it("redacts secrets echoed in an error description", () => {
    const body = JSON.stringify({
      error: "invalid_client",
      error_description: "secret hunter2 is wrong",
    });
    const e = failure(() => parseTokenResponse(input(body, { status: 400, secrets: ["hunter2"] })));
    expect(e.message).toContain("secret [REDACTED] is wrong");
    expect(e.message).not.toContain("hunter2");
  });

  it("never puts a token into the message when validation of a successful body fails", () => {
    const secretToken = "tok-very-secret-value";
    const body = JSON.stringify({
      access_token: secretToken,
      expires_in: -1,
      refresh_token: "rt-very-secret",
    });
    const e = failure(() => parseTokenResponse(input(body)));
    expect(e.message).not.toContain(secretToken);
    expect(e.message).not.toContain("rt-very-secret");
  });
});
