import { describe, expect, it } from "vitest";
import { BACKOFF_SCALE_ENV, backoffScaleFromEnv } from "./reconciler.ts";

describe("backoffScaleFromEnv (test-only setting)", () => {
  it("is 1 (production figures) unless a number in (0, 1] is set", () => {
    expect(backoffScaleFromEnv({})).toBe(1);
    expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: "" })).toBe(1);
    expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: "0.01" })).toBe(0.01);
    expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: "1" })).toBe(1);
    for (const bad of ["0", "-1", "2", "abc", "Infinity", "NaN"]) {
      expect(backoffScaleFromEnv({ [BACKOFF_SCALE_ENV]: bad })).toBe(1);
    }
  });
});
