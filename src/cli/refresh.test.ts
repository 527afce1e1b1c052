import { describe, it, expect } from "vitest";
import type { NexarToken } from "../api/types.ts";
import { judgeRefresh } from "./refresh.ts";

const V = "2026-11-30T03:00:00.000Z";

function nt(status: NexarToken["status"]): NexarToken {
  return { metadata: { namespace: "ns", name: "n" }, status } as NexarToken;
}
const ready = (s: "True" | "False", reason: string) => [
  { type: "Ready", status: s, reason, message: `m-${reason}`, lastTransitionTime: "2026-11-30T03:00:00Z" },
];

describe("judgeRefresh", () => {
  it("is done when the operator acted on exactly this value and Ready=True", () => {
    const r = judgeRefresh(
      nt({ lastRefreshRequest: V, conditions: ready("True", "TokenIssued"), expiresAt: "E", secretName: "s" }),
      V,
      {},
    );
    expect(r).toEqual({ state: "done", expiresAt: "E", secretName: "s" });
    expect(
      judgeRefresh(nt({ lastRefreshRequest: "older", conditions: ready("True", "TokenIssued") }), V, {}).state,
    ).toBe("waiting");
  });

  it("fails on a new credential-class failure, waits on transient ones and on old failures", () => {
    const failed = judgeRefresh(
      nt({ failedAttempts: 1, lastFailureTime: "t1", conditions: ready("False", "RefreshTokenInvalid") }),
      V,
      { failedAttempts: 0 },
    );
    expect(failed).toEqual({ state: "failed", reason: "RefreshTokenInvalid", message: "m-RefreshTokenInvalid" });
    const transient = judgeRefresh(
      nt({ failedAttempts: 2, lastFailureTime: "t2", conditions: ready("False", "TokenEndpointUnavailable") }),
      V,
      { failedAttempts: 1, lastFailureTime: "t1" },
    );
    expect(transient.state).toBe("waiting");
    const old = judgeRefresh(
      nt({ failedAttempts: 1, lastFailureTime: "t1", conditions: ready("False", "InvalidClient") }),
      V,
      { failedAttempts: 1, lastFailureTime: "t1" },
    );
    expect(old.state).toBe("waiting");
  });
});
