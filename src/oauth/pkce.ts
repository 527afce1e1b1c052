/**
 * PKCE (RFC 7636) and the `state` parameter (RFC 6749 §10.12) for the authorization code grant
 * that `nexar-token-operator login` runs. Pure apart from the CSPRNG (`node:crypto` randomBytes).
 *
 * Nexar's design-scope flow uses PKCE with the S256 method (SPEC §1, Nexar's examples); `plain`
 * is never offered.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** A PKCE pair for one authorization request. Both values are secrets until the code is redeemed. */
export interface PkcePair {
  /** `code_verifier`: 43 characters of base64url (32 random bytes), RFC 7636 §4.1. */
  verifier: string;
  /** `code_challenge` = BASE64URL(SHA-256(ASCII(verifier))), RFC 7636 §4.2. */
  challenge: string;
  /** Always `"S256"` (RFC 7636 §4.2; `plain` is not used). */
  method: "S256";
}

/** Characters RFC 7636 §4.1 allows in a code verifier ("unreserved" of RFC 3986). */
const VERIFIER_RE = /^[A-Za-z0-9\-._~]{43,128}$/;

/**
 * The S256 code challenge of `verifier` (RFC 7636 §4.2).
 * @throws RangeError when `verifier` is not 43–128 unreserved characters (RFC 7636 §4.1).
 */
export function codeChallengeS256(verifier: string): string {
  if (!VERIFIER_RE.test(verifier)) {
    throw new RangeError("PKCE code verifier must be 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)");
  }
  return createHash("sha256").update(verifier, "ascii").digest("base64url");
}

/**
 * A fresh PKCE pair: 32 bytes from the CSPRNG, base64url-encoded (the encoding RFC 7636 §4.1
 * recommends), and its S256 challenge. Call once per authorization request.
 */
export function createPkcePair(): PkcePair {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: codeChallengeS256(verifier), method: "S256" };
}

/**
 * A fresh `state` value: 32 random bytes, base64url (256 bits; RFC 6749 §10.10 asks for a
 * probability of guessing below 2^-128).
 */
export function createState(): string {
  return randomBytes(32).toString("base64url");
}

/**
 * Compares the `state` received on the redirect with the one sent, in constant time (RFC 6749
 * §10.12: the client MUST check it to prevent CSRF). `received` undefined or empty is a mismatch.
 */
export function stateMatches(expected: string, received: string | null | undefined): boolean {
  if (!received) return false;
  const a = Buffer.from(expected, "utf8");
  const b = Buffer.from(received, "utf8");
  return a.length === b.length && timingSafeEqual(a, b);
}
