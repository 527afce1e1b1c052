import { describe, it, expect } from "vitest";
import { CliError } from "./status.ts";
import { credentialSource, decodeToken, tokenJson } from "./token.ts";

// header {"alg":"RS256","typ":"at+jwt"}, payload {"sub":"app","exp":2000000000}, signature "sig"
const JWT =
  `${Buffer.from('{"alg":"RS256","typ":"at+jwt"}').toString("base64url")}.` +
  `${Buffer.from('{"sub":"app","exp":2000000000}').toString("base64url")}.c2ln`;

describe("credentialSource", () => {
  it("takes flags/env values, or a Secret reference", () => {
    expect(credentialSource({ clientId: " id ", clientSecret: "s" })).toEqual({
      kind: "values",
      clientId: "id",
      clientSecret: "s",
    });
    expect(credentialSource({ fromSecret: "ns/name" })).toEqual({ kind: "secret", namespace: "ns", name: "name" });
    expect(credentialSource({ fromSecret: "name" })).toEqual({ kind: "secret", namespace: undefined, name: "name" });
    // environment values are ignored with --from-secret, flags conflict with it
    expect(
      credentialSource({ fromSecret: "name", clientId: "env" }, { clientId: "env", clientSecret: "env" }).kind,
    ).toBe("secret");
    expect(() => credentialSource({ fromSecret: "name", clientId: "x" }, { clientId: "cli" })).toThrow(CliError);
  });

  it("rejects nothing, half, or a malformed Secret reference as usage errors", () => {
    for (const o of [{}, { clientId: "x" }, { fromSecret: "a/b/c" }, { fromSecret: "Bad_Name" }]) {
      try {
        credentialSource(o);
        throw new Error("no error");
      } catch (err) {
        expect((err as CliError).exitCode).toBe(2);
      }
    }
  });
});

describe("token output", () => {
  it("--json uses RFC 6749 names plus expires_at", () => {
    const doc = tokenJson(
      {
        accessToken: "at",
        tokenType: "Bearer",
        scopes: ["supply.domain"],
        receivedAtMs: 0,
        expiresAtMs: Date.UTC(2026, 0, 1, 1),
        lifetimeSource: "expires_in",
      },
      Date.UTC(2026, 0, 1),
    );
    expect(doc).toEqual({
      access_token: "at",
      token_type: "Bearer",
      expires_in: 3600,
      expires_at: "2026-01-01T01:00:00Z",
      scope: "supply.domain",
    });
  });

  it("--decode shows header and claims, not the signature", () => {
    const d = decodeToken(JWT);
    expect(d).toEqual({ header: { alg: "RS256", typ: "at+jwt" }, claims: { sub: "app", exp: 2000000000 } });
    expect(JSON.stringify(d)).not.toContain("c2ln");
    expect(() => decodeToken("opaque-token")).toThrow("not a JWT");
  });
});
