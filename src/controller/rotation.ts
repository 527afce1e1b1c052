/**
 * Refresh-token rotation for `grant: RefreshToken` (SPEC §6): one refresh at a time per
 * credentials Secret, always with the refresh token the Secret holds now, the rotated token
 * stored before the new access token is handed back, and a rotated token that could not be
 * stored kept in memory and stored before anything else is fetched.
 *
 * Why: with rotation (RFC 6749 §6, RFC 9700 §4.14.2) each refresh token works once. Presenting a
 * consumed one fails with `invalid_grant`, and servers with reuse detection (oidc-provider,
 * Okta, Auth0 …) then revoke the whole grant, so the user must consent again.
 */
import type { Logger } from "pino";
import type { KubeClient, Secret } from "../kube/client.ts";
import { secretPath } from "../kube/paths.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { persistRefreshToken, refreshTokenDigest, secretValue, type RefreshTokenRef } from "./credentials.ts";

/** Condition reason for a refresh token the token endpoint (or the operator) will not accept. */
export const REASON_REFRESH_TOKEN_INVALID = "RefreshTokenInvalid";

/** Digests of consumed refresh tokens remembered per process (oldest forgotten first). */
const MAX_CONSUMED = 4096;

/**
 * One fetch with the refresh token `request.refreshToken`. It MUST call `persist(rotated)` and
 * await it before returning when the response carries a new refresh token, and fail if it throws
 * (the reconciler's `TokenSource` with `FetchContext.persistRefreshToken`).
 */
export type RotatingFetch = (
  request: TokenRequest,
  persist: (rotated: string) => Promise<void>,
) => Promise<IssuedToken>;

/** A rotated refresh token the server issued but that is not yet in the Secret. */
interface Pending {
  /** Digest of the token that was presented (now consumed at the server). */
  consumedDigest: string;
  /** The new refresh token (secret; memory only). */
  rotated: string;
}

/**
 * The condition message for {@link REASON_REFRESH_TOKEN_INVALID}: what happened and the command
 * that fixes it. `detail` must already be safe (a `TokenEndpointError` message). Never holds a token.
 */
export function refreshTokenInvalidMessage(namespace: string, secretName: string, detail?: string): string {
  return (
    `the refresh token in Secret "${secretName}" was rejected${detail ? ` (${detail})` : ""}: it was revoked, expired ` +
    `or already used. Run \`nexar-token-operator login --namespace ${namespace} --secret ${secretName}\` to store a new one`
  );
}

/**
 * Serialises and guards refresh-token use per credentials Secret, in one operator process
 * (across processes, leader election keeps one active). Holds no token longer than needed: the
 * only secret kept is a rotated token whose write failed, until it is written.
 */
export class RefreshTokenRotation {
  readonly #kube: KubeClient;
  readonly #log: Logger | undefined;
  /** `namespace/name` of a credentials Secret → tail of its queue of fetches. */
  readonly #tails = new Map<string, Promise<void>>();
  /** `namespace/name/key` → rotated token not yet stored. */
  readonly #pending = new Map<string, Pending>();
  /** Digests of refresh tokens this process saw rotated or rejected with invalid_grant (insertion order = age). */
  readonly #consumed = new Set<string>();

  constructor(kube: KubeClient, logger?: Logger) {
    this.#kube = kube;
    this.#log = logger;
  }

  /** Number of rotated refresh tokens held in memory because their write failed (for tests and metrics). */
  pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Runs one RefreshToken-grant fetch for the refresh token in `ref`, exclusively for that
   * credentials Secret. Inside the exclusive section it:
   * 1. reads the Secret again (another NexarToken sharing it, or a new `login`, may have changed
   *    the token since the caller read it);
   * 2. if a rotated token from an earlier fetch is still unwritten and the Secret still holds the
   *    consumed one, writes it first (and throws if that fails: no fetch with a consumed token);
   * 3. refuses a token this process already saw consumed or rejected with `invalid_grant` (e.g.
   *    another NexarToken sharing the Secret just got `invalid_grant` for it, or a GitOps tool
   *    restored an old Secret) with a `credential`-class `TokenEndpointError` `InvalidGrant`,
   *    without a request;
   * 4. calls `fetch` with `request.refreshToken` replaced by the Secret's current token and a
   *    `persist` that stores a rotated token with {@link persistRefreshToken} (resourceVersion
   *    precondition; `"superseded"` when a new login wrote a newer token meanwhile).
   *
   * @throws whatever `fetch` throws (`TokenEndpointError` for endpoint failures); `KubeApiError`
   *   or network errors when the Secret cannot be read or the rotated token cannot be written
   *   (the token is then kept for the next call); `Error` when the Secret or its key is gone.
   *   Messages never contain a token.
   */
  async fetch(ref: RefreshTokenRef, request: TokenRequest, fetch: RotatingFetch): Promise<IssuedToken> {
    return this.#exclusive(`${ref.namespace}/${ref.name}`, async () => {
      const path = secretPath(ref.namespace, ref.name);
      const pendingKey = `${ref.namespace}/${ref.name}/${ref.key}`;
      let secret = await this.#read(path, ref);
      let current = secretValue(secret, ref.key);

      const pending = this.#pending.get(pendingKey);
      if (pending) {
        if (current !== undefined && refreshTokenDigest(current) === pending.consumedDigest) {
          const result = await persistRefreshToken(
            this.#kube,
            ref,
            { refreshToken: current, resourceVersion: secret.metadata.resourceVersion, secret },
            pending.rotated,
          );
          this.#log?.info(
            { secret: `${ref.namespace}/${ref.name}`, result },
            "stored a rotated refresh token kept from an earlier failed write",
          );
          secret = await this.#read(path, ref);
          current = secretValue(secret, ref.key);
        }
        this.#pending.delete(pendingKey); // written now, written before, or superseded by a new login
      }
      if (current === undefined) {
        throw new Error(`credentials Secret "${ref.name}" lacks a non-empty key "${ref.key}"`);
      }
      const usedDigest = refreshTokenDigest(current);
      if (this.#consumed.has(usedDigest)) {
        throw new TokenEndpointError({
          kind: "credential",
          reason: "InvalidGrant",
          message: "the Secret holds a refresh token this operator already used or saw rejected; it was not sent again",
        });
      }
      const used = current;
      const usedSecret = secret;
      const presented = fetch({ ...request, refreshToken: used }, async (rotated) => {
        this.#markConsumed(usedDigest);
        this.#pending.set(pendingKey, { consumedDigest: usedDigest, rotated });
        const result = await persistRefreshToken(
          this.#kube,
          ref,
          { refreshToken: used, resourceVersion: usedSecret.metadata.resourceVersion, secret: usedSecret },
          rotated,
        );
        this.#pending.delete(pendingKey);
        this.#log?.info({ secret: `${ref.namespace}/${ref.name}`, result }, "rotated refresh token stored");
      });
      try {
        return await presented;
      } catch (err) {
        // invalid_grant: this token is dead for good (revoked, expired or consumed); other
        // NexarTokens sharing the Secret must not present it again (reuse detection would
        // revoke the grant), so remember it until a new token is written.
        if (err instanceof TokenEndpointError && err.reason === "InvalidGrant") this.#markConsumed(usedDigest);
        throw err;
      }
    });
  }

  async #read(path: string, ref: RefreshTokenRef): Promise<Secret> {
    const secret = await this.#kube.getOrUndefined<Secret>(path);
    if (!secret) throw new Error(`credentials Secret "${ref.name}" not found in namespace "${ref.namespace}"`);
    return secret;
  }

  #markConsumed(digest: string): void {
    this.#consumed.add(digest);
    if (this.#consumed.size > MAX_CONSUMED) {
      const oldest = this.#consumed.values().next().value;
      if (oldest !== undefined) this.#consumed.delete(oldest);
    }
  }

  /** Runs `fn` after every earlier call for `key` has settled (a FIFO mutex per key). */
  async #exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.#tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    }
  }
}
