import { describe, expect, it } from "vitest";
import { jwtExpiry } from "./jwt.ts";

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
/** An unsigned-looking JWS compact token; the signature is never checked. */
function fakeJwt(payload: unknown): string {
  return `${b64({ alg: "RS256", typ: "JWT" })}.${b64(payload)}.c2lnbmF0dXJl`;
}

describe("jwtExpiry", () => {
  it.each<[string, string, number | undefined]>([
    ["numeric exp", fakeJwt({ exp: 1_800_000_000, sub: "x" }), 1_800_000_000],
    ["fractional exp", fakeJwt({ exp: 1_800_000_000.5 }), 1_800_000_000.5],
    ["no exp", fakeJwt({ sub: "x" }), undefined],
    ["string exp", fakeJwt({ exp: "1800000000" }), undefined],
    ["negative exp", fakeJwt({ exp: -5 }), undefined],
    ["payload not JSON", `${b64({ alg: "none" })}.${Buffer.from("nope").toString("base64url")}.x`, undefined],
    ["payload an array", fakeJwt([1, 2]), undefined],
    ["opaque token", "2YotnFZFEjr1zCsicMWpAA", undefined],
    ["two parts", "a.b", undefined],
    ["JWE (five parts)", "a.b.c.d.e", undefined],
    ["empty", "", undefined],
  ])("%s", (_name, token, expected) => {
    expect(jwtExpiry(token)).toBe(expected);
  });
});
