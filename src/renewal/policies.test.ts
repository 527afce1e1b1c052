import { describe, it, expect } from "vitest";
import {
  evaluateIssuance,
  defaultPolicyChain,
  expired,
  noToken,
  type IssuanceDecision,
  type IssuanceInput,
} from "./policies.ts";

const T0 = Date.UTC(2026, 11, 1, 0, 0, 0);
const H = 3_600_000;
const FP = "fp-SECRETISH-0123456789abcdef";

/** A healthy steady state: valid token, renewal in 4 h, nothing changed. */
const base: IssuanceInput = {
  nowMs: T0 + 12 * H,
  generation: 3,
  observedGeneration: 3,
  currentToken: {
    expiresAtMs: T0 + 24 * H,
    renewAtMs: T0 + 16 * H,
    fingerprint: FP,
  },
  desiredFingerprint: FP,
  refreshRequestedAt: "2026-11-30T10:00:00Z",
  lastRefreshRequest: "2026-11-30T10:00:00Z",
};
const token = base.currentToken!;
const wait = (nextCheckAtMs: number): IssuanceDecision => ({
  issue: false,
  nextCheckAtMs,
});

describe("evaluateIssuance: table", () => {
  const cases: {
    name: string;
    input: Partial<IssuanceInput>;
    want: IssuanceDecision | string;
  }[] = [
    {
      name: "steady state waits for renewAt",
      input: {},
      want: wait(T0 + 16 * H),
    },
    {
      name: "restart with a valid token and no status: no fetch",
      input: {
        observedGeneration: undefined,
        lastRefreshRequest: undefined,
        refreshRequestedAt: undefined,
      },
      want: wait(T0 + 16 * H),
    },
    {
      name: "status-only / metadata-only edit keeps generation: no fetch",
      input: { generation: 3 },
      want: wait(T0 + 16 * H),
    },
    { name: "no token", input: { currentToken: undefined }, want: "NoToken" },
    {
      name: "no token and no status yet",
      input: { currentToken: undefined, observedGeneration: undefined },
      want: "NoToken",
    },
    {
      name: "spec changed (generation bumped) in what the token is fetched with (the fingerprint differs)",
      input: { generation: 4, desiredFingerprint: "fp-other" },
      want: "SpecChanged",
    },
    {
      name: "spec changed in nothing the token depends on (target, renewBefore): no fetch",
      input: { generation: 4 },
      want: wait(T0 + 16 * H),
    },
    {
      name: "credentials / token URL / scopes changed",
      input: { desiredFingerprint: "fp-other" },
      want: "CredentialsChanged",
    },
    {
      name: "new refresh request",
      input: { refreshRequestedAt: "2026-12-01T11:00:00Z" },
      want: "RefreshRequested",
    },
    {
      name: "first refresh request ever",
      input: {
        refreshRequestedAt: "2026-12-01T11:00:00Z",
        lastRefreshRequest: undefined,
      },
      want: "RefreshRequested",
    },
    {
      name: "refresh annotation removed: no fetch",
      input: { refreshRequestedAt: undefined },
      want: wait(T0 + 16 * H),
    },
    {
      name: "empty refresh annotation: no fetch",
      input: { refreshRequestedAt: "", lastRefreshRequest: undefined },
      want: wait(T0 + 16 * H),
    },
    {
      name: "renewal due exactly now",
      input: { nowMs: T0 + 16 * H },
      want: "RenewalDue",
    },
    {
      name: "renewal overdue",
      input: { nowMs: T0 + 20 * H },
      want: "RenewalDue",
    },
    {
      name: "one ms before renewal: wait 1 ms",
      input: { nowMs: T0 + 16 * H - 1 },
      want: wait(T0 + 16 * H),
    },
    {
      name: "expired exactly now",
      input: { nowMs: T0 + 24 * H },
      want: "Expired",
    },
    {
      name: "expired wins over renewal due",
      input: { nowMs: T0 + 30 * H },
      want: "Expired",
    },
    {
      name: "no renewAt: wait until expiry",
      input: {
        currentToken: { expiresAtMs: token.expiresAtMs, fingerprint: FP },
      },
      want: wait(T0 + 24 * H),
    },
    {
      name: "no renewAt: expired at expiry",
      input: {
        nowMs: T0 + 24 * H,
        currentToken: { expiresAtMs: token.expiresAtMs, fingerprint: FP },
      },
      want: "Expired",
    },
    {
      name: "renewAt after expiry: wait only until expiry",
      input: { currentToken: { ...token, renewAtMs: T0 + 48 * H } },
      want: wait(T0 + 24 * H),
    },
    {
      name: "NoToken wins over SpecChanged",
      input: { currentToken: undefined, generation: 9 },
      want: "NoToken",
    },
    {
      name: "SpecChanged wins over CredentialsChanged",
      input: { generation: 4, desiredFingerprint: "x" },
      want: "SpecChanged",
    },
    {
      name: "CredentialsChanged wins over RefreshRequested and Expired",
      input: {
        desiredFingerprint: "x",
        refreshRequestedAt: "now",
        nowMs: T0 + 30 * H,
      },
      want: "CredentialsChanged",
    },
    {
      name: "RefreshRequested wins over Expired",
      input: { refreshRequestedAt: "now", nowMs: T0 + 30 * H },
      want: "RefreshRequested",
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const got = evaluateIssuance({ ...base, ...c.input });
      if (typeof c.want === "string") {
        expect(got).toMatchObject({ issue: true, reason: c.want });
      } else {
        expect(got).toEqual(c.want);
      }
    });
  }
});

describe("evaluateIssuance: messages", () => {
  it("are non-empty, name the time where relevant, and never carry the fingerprint", () => {
    const inputs: Partial<IssuanceInput>[] = [
      { currentToken: undefined },
      { generation: 4, desiredFingerprint: "fp-other-SECRETISH" },
      { desiredFingerprint: "fp-other-SECRETISH" },
      { refreshRequestedAt: "x" },
      { nowMs: T0 + 30 * H },
      { nowMs: T0 + 20 * H },
    ];
    const messages = inputs.map((i) => {
      const d = evaluateIssuance({ ...base, ...i });
      if (!d.issue) throw new Error("expected an issue");
      return d.message;
    });
    for (const m of messages) {
      expect(m.length).toBeGreaterThan(0);
      expect(m).not.toContain("SECRETISH");
    }
    expect(messages[1]).toContain("generation 4, observed 3");
    expect(messages[4]).toContain("2026-12-02T00:00:00.000Z");
    expect(messages[5]).toContain("2026-12-01T16:00:00.000Z");
  });
});

describe("evaluateIssuance: custom chains", () => {
  it("an empty chain never issues while a token is held", () => {
    expect(evaluateIssuance({ ...base, nowMs: T0 + 30 * H }, [])).toEqual(wait(T0 + 16 * H));
  });
  it("a chain without noToken and no token held throws", () => {
    expect(() => evaluateIssuance({ ...base, currentToken: undefined }, [expired])).toThrow(/no token/);
  });
  it("evaluates in order and stops at the first violation", () => {
    const seen: string[] = [];
    const spy = (name: string) => () => {
      seen.push(name);
      return undefined;
    };
    const d = evaluateIssuance({ ...base, currentToken: undefined }, [spy("a"), noToken, spy("b")]);
    expect(d).toMatchObject({ issue: true, reason: "NoToken" });
    expect(seen).toEqual(["a"]);
  });
  it("the default chain is frozen", () => {
    expect(Object.isFrozen(defaultPolicyChain)).toBe(true);
    expect(defaultPolicyChain).toHaveLength(6);
  });
});

describe("evaluateIssuance: properties over 1000 random inputs", () => {
  it("issues iff some trigger holds; otherwise the next check is in the future", () => {
    let seed = 42;
    const rnd = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
    for (let i = 0; i < 1000; i++) {
      const expiresAtMs = T0 + Math.floor(rnd() * 48 * H);
      const renewAtMs = pick([undefined, expiresAtMs - Math.floor(rnd() * 24 * H)]);
      const input: IssuanceInput = {
        nowMs: T0 + Math.floor(rnd() * 48 * H),
        generation: pick([1, 2]),
        observedGeneration: pick([undefined, 1, 2]),
        currentToken: pick([undefined, { expiresAtMs, renewAtMs, fingerprint: pick(["a", "b"]) }]),
        desiredFingerprint: pick(["a", "b"]),
        refreshRequestedAt: pick([undefined, "", "r1", "r2"]),
        lastRefreshRequest: pick([undefined, "r1", "r2"]),
      };
      const t = input.currentToken;
      const shouldIssue =
        t === undefined ||
        t.fingerprint !== input.desiredFingerprint ||
        (!!input.refreshRequestedAt && input.refreshRequestedAt !== input.lastRefreshRequest) ||
        input.nowMs >= t.expiresAtMs ||
        (t.renewAtMs !== undefined && input.nowMs >= t.renewAtMs);
      const d = evaluateIssuance(input);
      expect(d.issue, JSON.stringify(input)).toBe(shouldIssue);
      if (!d.issue) {
        expect(d.nextCheckAtMs).toBeGreaterThan(input.nowMs);
        expect(d.nextCheckAtMs).toBeLessThanOrEqual(t!.expiresAtMs);
      }
    }
  });
});
