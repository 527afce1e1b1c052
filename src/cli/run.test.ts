import { describe, expect, it } from "vitest";
import { hostname } from "node:os";
import { defaultLeaderElectionNamespace, leaderIdentity } from "./run.ts";

describe("leader-election defaults", () => {
  const noFile = () => {
    throw new Error("ENOENT");
  };
  it("namespace: $POD_NAMESPACE, else the service-account file, else default", () => {
    expect(defaultLeaderElectionNamespace({ POD_NAMESPACE: "ops" }, () => "other")).toBe("ops");
    expect(defaultLeaderElectionNamespace({}, () => "from-sa\n")).toBe("from-sa");
    expect(defaultLeaderElectionNamespace({ POD_NAMESPACE: " " }, () => "")).toBe("default");
    expect(defaultLeaderElectionNamespace({}, noFile)).toBe("default");
  });
  it("identity: $POD_NAME, else hostname plus a random suffix unique per process", () => {
    expect(leaderIdentity({ POD_NAME: "op-7f9c" })).toBe("op-7f9c");
    const a = leaderIdentity({});
    const b = leaderIdentity({});
    expect(a.startsWith(`${hostname()}_`)).toBe(true);
    expect(a).not.toBe(b);
  });
});
