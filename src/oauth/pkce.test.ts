import { describe, it, expect } from "vitest";
import { codeChallengeS256, createPkcePair, createState, stateMatches } from "./pkce.ts";

describe("PKCE S256 (RFC 7636)", () => {
  it("matches the RFC 7636 Appendix B example", () => {
    expect(codeChallengeS256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")).toBe(
      "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
  });

  it("creates a fresh 43-character verifier each time, with its challenge", () => {
    const a = createPkcePair();
    const b = createPkcePair();
    expect(a.verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.verifier).not.toBe(b.verifier);
    expect(a.challenge).toBe(codeChallengeS256(a.verifier));
    expect(a.method).toBe("S256");
  });

  it("rejects verifiers outside RFC 7636 §4.1", () => {
    expect(() => codeChallengeS256("short")).toThrow(RangeError);
    expect(() => codeChallengeS256("x".repeat(129))).toThrow(RangeError);
    expect(() => codeChallengeS256(`${"x".repeat(42)}+`)).toThrow(RangeError);
  });
});

describe("state", () => {
  it("is random and compared exactly", () => {
    const s = createState();
    expect(s).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(createState()).not.toBe(s);
    expect(stateMatches(s, s)).toBe(true);
    expect(stateMatches(s, `${s}x`)).toBe(false);
    expect(stateMatches(s, s.slice(1))).toBe(false);
    expect(stateMatches(s, undefined)).toBe(false);
    expect(stateMatches(s, null)).toBe(false);
    expect(stateMatches(s, "")).toBe(false);
  });
});
