import { describe, expect, it } from "vitest";
import { basicAuthorization, buildTokenRequest, formUrlEncode, secretsOf } from "./request.ts";
import type { TokenRequest } from "./types.ts";

const base: TokenRequest = {
  tokenUrl: "https://identity.nexar.com/connect/token",
  grant: "ClientCredentials",
  clientAuthentication: "ClientSecretPost",
  clientId: "client-1",
  clientSecret: "s3cr3t",
  scopes: ["supply.domain"],
};

function form(body: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(body));
}

function decodeBasic(header: string | undefined): string {
  expect(header).toMatch(/^Basic [A-Za-z0-9+/]+=*$/);
  return Buffer.from((header ?? "").slice("Basic ".length), "base64").toString("utf8");
}

describe("buildTokenRequest", () => {
  it("client credentials with client_secret_post puts the credentials in the form body", () => {
    const r = buildTokenRequest(base);
    expect(r.url).toBe(base.tokenUrl);
    expect(r.headers).toEqual({
      "Content-Type": "application/x-www-form-urlencoded",
      Accept: "application/json",
    });
    expect(form(r.body)).toEqual({
      grant_type: "client_credentials",
      scope: "supply.domain",
      client_id: "client-1",
      client_secret: "s3cr3t",
    });
  });

  it("joins scopes with spaces (form-encoded as +)", () => {
    const r = buildTokenRequest({
      ...base,
      scopes: ["openid", "profile", "design.domain"],
    });
    expect(r.body).toContain("scope=openid+profile+design.domain");
    expect(form(r.body)["scope"]).toBe("openid profile design.domain");
  });

  it("omits scope when no scopes are requested", () => {
    expect(form(buildTokenRequest({ ...base, scopes: [] }).body)).not.toHaveProperty("scope");
  });

  it("refresh token grant sends grant_type=refresh_token and the refresh token", () => {
    const r = buildTokenRequest({
      ...base,
      grant: "RefreshToken",
      refreshToken: "rt/+= x",
    });
    expect(form(r.body)).toMatchObject({
      grant_type: "refresh_token",
      refresh_token: "rt/+= x",
    });
  });

  it.each([undefined, ""])("refresh token grant without a refresh token (%j) throws without echoing secrets", (rt) => {
    const req: TokenRequest = { ...base, grant: "RefreshToken" };
    if (rt !== undefined) req.refreshToken = rt;
    expect(() => buildTokenRequest(req)).toThrow(/refresh token/);
    try {
      buildTokenRequest(req);
    } catch (e) {
      expect(String(e)).not.toContain("s3cr3t");
    }
  });

  it("client_secret_basic uses an Authorization header and keeps the secret out of the body", () => {
    const r = buildTokenRequest({
      ...base,
      clientAuthentication: "ClientSecretBasic",
    });
    expect(decodeBasic(r.headers["Authorization"])).toBe("client-1:s3cr3t");
    expect(form(r.body)).toEqual({
      grant_type: "client_credentials",
      scope: "supply.domain",
    });
    expect(r.body).not.toContain("s3cr3t");
  });

  it.each([
    // [clientId, clientSecret, decoded user:pass] — RFC 6749 §2.3.1 form-urlencodes both parts.
    ["my:client", "pa:ss", "my%3Aclient:pa%3Ass"],
    ["client", "p@ss wörd+%", "client:p%40ss+w%C3%B6rd%2B%25"],
    ["clïent/ü", "日本", "cl%C3%AFent%2F%C3%BC:%E6%97%A5%E6%9C%AC"],
    ["a!b~c'd(e)*", "-._", "a%21b%7Ec%27d%28e%29*:-._"],
  ])("basic auth encodes id %j and secret %j per RFC 6749 §2.3.1", (id, secret, expected) => {
    const r = buildTokenRequest({
      ...base,
      clientAuthentication: "ClientSecretBasic",
      clientId: id,
      clientSecret: secret,
    });
    const decoded = decodeBasic(r.headers["Authorization"]);
    expect(decoded).toBe(expected);
    // The first ':' separates id from secret, and each side decodes back to the original.
    const i = decoded.indexOf(":");
    const dec = (s: string) => decodeURIComponent(s.replace(/\+/g, " "));
    expect(dec(decoded.slice(0, i))).toBe(id);
    expect(dec(decoded.slice(i + 1))).toBe(secret);
  });
});

describe("formUrlEncode", () => {
  it("matches the WHATWG urlencoded serializer", () => {
    expect(formUrlEncode("a b&c=d")).toBe("a+b%26c%3Dd");
    expect(formUrlEncode("")).toBe("");
  });
});

describe("secretsOf", () => {
  it("lists the secret, refresh token and Basic blob, never the client id alone", () => {
    const s = secretsOf({ ...base, grant: "RefreshToken", refreshToken: "rt" });
    expect(s).toContain("s3cr3t");
    expect(s).toContain("rt");
    expect(s).toContain(basicAuthorization("client-1", "s3cr3t").slice(6));
    expect(s).not.toContain("client-1");
  });
});
