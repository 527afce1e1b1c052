import { describe, expect, it } from "vitest";
import { formatGoDuration, parseGoDuration, resolveRenewBefore, withDefaults } from "./defaults.ts";
import type { NexarTokenSpec } from "./types.ts";

describe("parseGoDuration", () => {
  it.each([
    ["8h", 8 * 3600],
    ["30m", 1800],
    ["1h30m", 5400],
    ["1.5h", 5400],
    [".5h", 1800],
    ["1.h", 3600],
    ["90s", 90],
    ["250ms", 0.25],
    ["1h1m1s1ms", 3661.001],
    ["1us", 1e-6],
    ["1\u00b5s", 1e-6],
    ["1\u03bcs", 1e-6],
    ["1ns", 1e-9],
    ["0", 0],
    ["-0", 0],
    ["+5m", 300],
    ["-1h", -3600],
    ["0s", 0],
    ["2562047h47m16.854775807s", Number(2n ** 63n - 1n) / 1e9], // Go's max Duration
  ])("%s = %d s", (s, seconds) => {
    expect(parseGoDuration(s)).toBeCloseTo(seconds, 9);
  });

  it.each([
    "",
    "h",
    "8",
    "8 h",
    "1h 30m",
    "1d",
    "1hh",
    ".h",
    "-",
    "+",
    "1.2.3h",
    "abc",
    " 8h",
    "8h ",
    "1e3s",
    "2562047h47m16.854775808s",
  ])("rejects %j", (s) => {
    expect(() => parseGoDuration(s)).toThrow(RangeError);
  });

  it("names the input and the problem", () => {
    expect(() => parseGoDuration("5 days")).toThrow(/invalid duration "5 days"/);
    expect(() => parseGoDuration("3d")).toThrow(/unknown unit "d"/);
  });
});

describe("formatGoDuration", () => {
  it.each([
    [0, "0s"],
    [28800, "8h"],
    [5400, "1h30m"],
    [90, "1m30s"],
    [0.25, "0.25s"],
    [-60, "-1m"],
    [-0.0001, "0s"],
  ])("%d s = %s", (seconds, s) => {
    expect(formatGoDuration(seconds)).toBe(s);
  });
  it("round-trips through parseGoDuration", () => {
    for (const s of [1, 59, 61, 3599, 3601, 86400, 90061.5]) expect(parseGoDuration(formatGoDuration(s))).toBe(s);
  });
  it("rejects non-finite numbers", () => {
    expect(() => formatGoDuration(Number.NaN)).toThrow(RangeError);
  });
});

const minimal: NexarTokenSpec = { scopes: ["supply.domain"], credentialsSecretRef: { name: "nexar-app" } };

describe("withDefaults", () => {
  it("fills every default of SPEC §2", () => {
    expect(withDefaults(minimal, { name: "supply" })).toEqual({
      grant: "ClientCredentials",
      scopes: ["supply.domain"],
      tokenUrl: "https://identity.nexar.com/connect/token",
      clientAuthentication: "ClientSecretPost",
      credentialsSecretRef: {
        name: "nexar-app",
        clientIdKey: "clientId",
        clientSecretKey: "clientSecret",
        refreshTokenKey: "refreshToken",
      },
      renewBefore: { kind: "Fraction", fraction: 1 / 3 },
      fallbackLifetimeSeconds: undefined,
      target: {
        name: "supply",
        type: "Opaque",
        creationPolicy: "Owner",
        adopt: false,
        labels: {},
        annotations: {},
        template: {},
      },
    });
  });

  it("keeps every value that is set", () => {
    const spec: NexarTokenSpec = {
      grant: "RefreshToken",
      scopes: ["openid", "design.domain", "openid"],
      tokenUrl: "http://127.0.0.1:8080/connect/token",
      clientAuthentication: "ClientSecretBasic",
      credentialsSecretRef: { name: "c", clientIdKey: "id", clientSecretKey: "secret", refreshTokenKey: "rt" },
      renewBefore: "1h30m",
      fallbackLifetime: "2h",
      target: {
        name: "t",
        type: "kubernetes.io/basic-auth",
        creationPolicy: "Merge",
        adopt: true,
        labels: { a: "b" },
        annotations: { c: "d" },
        template: { password: "{{access_token}}" },
      },
    };
    const r = withDefaults(spec, { name: "ignored" });
    expect(r.grant).toBe("RefreshToken");
    expect(r.scopes).toEqual(["openid", "design.domain"]);
    expect(r.tokenUrl).toBe(spec.tokenUrl);
    expect(r.clientAuthentication).toBe("ClientSecretBasic");
    expect(r.credentialsSecretRef).toEqual({
      name: "c",
      clientIdKey: "id",
      clientSecretKey: "secret",
      refreshTokenKey: "rt",
    });
    expect(r.renewBefore).toEqual({ kind: "Duration", seconds: 5400 });
    expect(r.fallbackLifetimeSeconds).toBe(7200);
    expect(r.target).toEqual(spec.target);
  });

  it("does not share maps with the input", () => {
    const labels = { a: "b" };
    const r = withDefaults({ ...minimal, target: { labels } }, { name: "x" });
    labels.a = "changed";
    expect(r.target.labels).toEqual({ a: "b" });
  });

  it("fills nested target defaults when target is partly set", () => {
    const r = withDefaults({ ...minimal, target: { name: "tok" } }, { name: "x" });
    expect(r.target).toMatchObject({ name: "tok", type: "Opaque", creationPolicy: "Owner", adopt: false });
  });

  it("requires metadata.name", () => {
    expect(() => withDefaults(minimal, {})).toThrow(TypeError);
    expect(() => withDefaults(minimal, { name: "" })).toThrow(TypeError);
  });

  it("throws on an unparsable duration", () => {
    expect(() => withDefaults({ ...minimal, renewBefore: "8 hours" }, { name: "x" })).toThrow(RangeError);
    expect(() => withDefaults({ ...minimal, fallbackLifetime: "1d" }, { name: "x" })).toThrow(RangeError);
  });
});

describe("resolveRenewBefore", () => {
  it("prefers renewBefore, then the percentage, then a third", () => {
    expect(resolveRenewBefore({ renewBefore: "8h" })).toEqual({ kind: "Duration", seconds: 28800 });
    expect(resolveRenewBefore({ renewBeforePercentage: 25 })).toEqual({ kind: "Fraction", fraction: 0.25 });
    expect(resolveRenewBefore({})).toEqual({ kind: "Fraction", fraction: 1 / 3 });
  });
  it.each([0, 91, 12.5])("rejects percentage %d", (p) => {
    expect(() => resolveRenewBefore({ renewBeforePercentage: p })).toThrow(RangeError);
  });
});
