/**
 * Keys of the shared token cache, the issuance limiter and the refresh-token lock (SPEC §3.3).
 *
 * Every key is an HMAC-SHA256 (RFC 2104) under a random key drawn once per process, so no key —
 * in memory, in a heap snapshot or in a debug log — holds a client secret or refresh token in
 * clear text, and a key cannot be brute-forced offline from a leaked snapshot without the
 * process key. Fields are JSON-encoded as an array before hashing, so no two field lists
 * collide by concatenation.
 */
import { createHmac, randomBytes } from "node:crypto";
import type { TokenRequest } from "../oauth/types.ts";

/** What, besides the request, decides whether two fetches may share one token. */
export interface ShareScope {
  /**
   * `namespace/name` of the credentials Secret. Used for the RefreshToken grant only, where a
   * token is never shared across Secrets (each Secret holds its own rotating refresh token).
   */
  credentialsRef?: string;
  /** Fallback lifetime of the fetch, seconds: it shapes the token's computed expiry, so it is part of the key. */
  fallbackLifetimeSeconds?: number;
  /**
   * Opaque version of the credentials beyond the request fields, e.g. the refresh token's lineage
   * (a new `login` starts a new one): tokens of different versions are never shared.
   */
  credentialsVersion?: string;
}

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

  /**
   * Key of the lock that serialises RefreshToken fetches of one credential (one refresh token in
   * flight at a time, SPEC §6): the credentials Secret when named, else the refresh token value.
   */
  credentialLockKey(req: TokenRequest, credentialsRef?: string): string {
    return this.#hash([
      "lock/v1",
      req.tokenUrl,
      req.clientId,
      credentialsRef !== undefined ? ["ref", credentialsRef] : ["rt", req.refreshToken ?? ""],
    ]);
  }

  /** Key of one refresh token value (to recognise a refresh token already consumed by a rotation). */
  refreshTokenKey(req: Pick<TokenRequest, "tokenUrl" | "clientId" | "refreshToken">): string {
    return this.#hash(["rt/v1", req.tokenUrl, req.clientId, req.refreshToken ?? ""]);
  }
}
