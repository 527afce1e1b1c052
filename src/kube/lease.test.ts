import { describe, expect, it } from "vitest";
import { leasePath, leaseToRecord, recordToLeaseSpec } from "./lease.ts";

describe("Lease ⇄ LeaderElectionRecord (client-go LeaseLock conversions)", () => {
  it("fills absent fields like client-go: empty holder, zero duration and transitions", () => {
    expect(leaseToRecord(undefined)).toEqual({
      holderIdentity: "",
      leaseDurationSeconds: 0,
      acquireTime: undefined,
      renewTime: undefined,
      leaseTransitions: 0,
    });
  });
  it("round-trips a full spec, MicroTime strings verbatim", () => {
    const spec = {
      holderIdentity: "pod-a",
      leaseDurationSeconds: 15,
      acquireTime: "2026-11-30T02:00:00.123456Z",
      renewTime: "2026-11-30T02:00:10.654321Z",
      leaseTransitions: 3,
    };
    expect(recordToLeaseSpec(leaseToRecord(spec))).toEqual(spec);
  });
  it("writes an empty holder explicitly (release) and omits absent times", () => {
    expect(recordToLeaseSpec({ holderIdentity: "", leaseDurationSeconds: 1, leaseTransitions: 2 })).toEqual({
      holderIdentity: "",
      leaseDurationSeconds: 1,
      leaseTransitions: 2,
    });
  });
  it("builds coordination.k8s.io/v1 paths", () => {
    expect(leasePath("kube system")).toBe("/apis/coordination.k8s.io/v1/namespaces/kube%20system/leases");
    expect(leasePath("ops", "nexar-token-operator")).toBe(
      "/apis/coordination.k8s.io/v1/namespaces/ops/leases/nexar-token-operator",
    );
  });
});
