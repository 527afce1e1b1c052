/**
 * Keys of the shared token cache and the issuance limiter (SPEC §3.3).
 *
 * Every key is an HMAC-SHA256 (RFC 2104) under a random key drawn once per process, so no key —
 * in memory, in a heap snapshot or in a debug log — holds a client secret or refresh token in
 * clear text, and a key cannot be brute-forced offline from a leaked snapshot without the
 * process key. Fields are JSON-encoded as an array before hashing, so no two field lists
 * collide by concatenation.
 */
import { createHmac, randomBytes } from "node:crypto";
import type { TokenRequest } from "../oauth/types.ts";
import type { IssuanceKeys, ShareScope } from "./types.ts";

export type { ShareScope } from "./types.ts";

/** Computes keyed hashes of token requests. One instance per process (the issuer's). */
export class KeyHasher {
  readonly #key: Buffer;

  /** @param key HMAC key; default 32 random bytes (`crypto.randomBytes`). Tests may pass a fixed key. */
  constructor(key: Buffer = randomBytes(32)) {
    this.#key = key;
  }

  #hash(fields: readonly unknown[]): string {
    return createHmac("sha256", this.#key).update(JSON.stringify(fields)).digest("base64url");
  }

  /**
   * Key of one shared token: token URL, grant, client authentication method, client id, client
   * secret and the scope *set* (deduplicated and sorted, so order does not matter), plus the
   * fallback lifetime and the caller's `credentialsVersion`. For the RefreshToken grant also the credentials Secret (`credentialsRef`),
   * or — when the caller does not name it — the refresh token itself, so that two Secrets never
   * share a token (SPEC §6). 43 base64url characters.
   */
  shareKey(req: TokenRequest, scope: ShareScope = {}): string {
    const scopes = [...new Set(req.scopes)].sort();
    const fields: unknown[] = [
      "share/v1",
      req.tokenUrl,
      req.grant,
      req.clientAuthentication,
      req.clientId,
      req.clientSecret,
      scopes,
      scope.fallbackLifetimeSeconds ?? null,
      scope.credentialsVersion ?? null,
    ];
    if (req.grant === "RefreshToken") {
      fields.push(scope.credentialsRef !== undefined ? ["ref", scope.credentialsRef] : ["rt", req.refreshToken ?? ""]);
    }
    return this.#hash(fields);
  }

  /**
   * Key of one Nexar client for the issuance limiter: token URL and client id (Nexar's limits
   * are per client, SPEC §1).
   */
  clientKey(req: Pick<TokenRequest, "tokenUrl" | "clientId">): string {
    return this.#hash(["client/v1", req.tokenUrl, req.clientId]);
  }

  /** Key of one client secret value of a client, to notice when a client's secret changes. */
  secretKey(req: Pick<TokenRequest, "tokenUrl" | "clientId" | "clientSecret">): string {
    return this.#hash(["secret/v1", req.tokenUrl, req.clientId, req.clientSecret]);
  }

  /** All keys of `req` fetched with `scope`: what a `Credential` carries. */
  keysOf(req: TokenRequest, scope: ShareScope = {}): IssuanceKeys {
    return { share: this.shareKey(req, scope), client: this.clientKey(req), secret: this.secretKey(req) };
  }
}
