import { describe, it, expect } from "vitest";
import { jsonEqual, setCondition, statusEqual, statusPatch } from "./status.ts";

describe("setCondition", () => {
  const t0 = "2026-01-01T00:00:00Z";
  const t1 = "2026-01-02T00:00:00Z";
  it("stamps lastTransitionTime on a new condition", () => {
    const c = setCondition(undefined, { type: "Ready", status: "True", reason: "TokenIssued", message: "m" }, t0);
    expect(c).toEqual([{ type: "Ready", status: "True", reason: "TokenIssued", message: "m", lastTransitionTime: t0 }]);
  });
  it("keeps lastTransitionTime when status does not flip, even if reason changes", () => {
    const a = setCondition(undefined, { type: "Ready", status: "True", reason: "TokenIssued", message: "m" }, t0);
    const b = setCondition(a, { type: "Ready", status: "True", reason: "TokenValid", message: "n" }, t1);
    expect(b[0]?.lastTransitionTime).toBe(t0);
    expect(b[0]?.reason).toBe("TokenValid");
  });
  it("restamps on a flip", () => {
    const a = setCondition(undefined, { type: "Ready", status: "True", reason: "TokenIssued", message: "m" }, t0);
    const b = setCondition(a, { type: "Ready", status: "False", reason: "Expired", message: "n" }, t1);
    expect(b[0]?.lastTransitionTime).toBe(t1);
  });
});

describe("statusEqual / statusPatch", () => {
  it("ignores key order and undefined", () => {
    expect(
      statusEqual(
        { expiresAt: "x", secretName: "s" },
        { secretName: "s", expiresAt: "x", lastFailureReason: undefined },
      ),
    ).toBe(true);
    expect(statusEqual({ failedAttempts: 1 }, { failedAttempts: 2 })).toBe(false);
  });
  it("nulls removed fields and sets changed ones only", () => {
    expect(
      statusPatch(
        { failedAttempts: 2, lastFailureReason: "Timeout", secretName: "s" },
        { failedAttempts: 0, secretName: "s" },
      ),
    ).toEqual({
      failedAttempts: 0,
      lastFailureReason: null,
    });
  });
});

describe("jsonEqual", () => {
  it("compares nested objects by defined keys in any order, arrays in order", () => {
    const cond = { type: "Ready", status: "True", reason: "TokenIssued", observedGeneration: 1 };
    expect(
      jsonEqual(
        { conditions: [cond], grantedScopes: ["a", "b"] },
        { grantedScopes: ["a", "b"], conditions: [{ ...cond }] },
      ),
    ).toBe(true);
    expect(jsonEqual({ conditions: [cond] }, { conditions: [{ ...cond, status: "False" }] })).toBe(false);
    expect(jsonEqual({ grantedScopes: ["a", "b"] }, { grantedScopes: ["b", "a"] })).toBe(false);
    expect(jsonEqual({ grantedScopes: ["a"] }, { grantedScopes: ["a", "a"] })).toBe(false);
    expect(jsonEqual({ a: { b: undefined } }, { a: {} })).toBe(true);
  });
  it("tells apart a missing key from a defined one, types, null and arrays from objects", () => {
    expect(jsonEqual({ a: 1 }, { a: 1, b: 2 })).toBe(false);
    expect(jsonEqual({ a: 1, b: 2 }, { a: 1 })).toBe(false);
    expect(jsonEqual({ a: 1, b: undefined }, { a: 1, c: undefined })).toBe(true);
    expect(jsonEqual({ a: 1 }, { a: "1" })).toBe(false);
    expect(jsonEqual({ a: null }, { a: {} })).toBe(false);
    expect(jsonEqual([], {})).toBe(false);
    expect(jsonEqual({ 0: "x" }, ["x"])).toBe(false);
    expect(jsonEqual(null, null)).toBe(true);
    expect(jsonEqual(0, -0)).toBe(true);
  });
});
