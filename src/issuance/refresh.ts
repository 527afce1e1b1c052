/**
 * The one refresh-token guard of the process (`grant: RefreshToken`, SPEC §6): one refresh at a
 * time per credentials Secret, always with the refresh token the Secret holds now, the rotated
 * token stored before the new access token is handed to anyone, a rotated token that could not
 * be stored kept in memory and stored before anything else is fetched, and a refresh token seen
 * consumed or rejected never presented again.
 *
 * Why: with rotation (RFC 6749 §6, RFC 9700 §4.14.2) each refresh token works once. Presenting a
 * consumed one fails with `invalid_grant`, and servers with reuse detection (oidc-provider,
 * Okta, Auth0 …) then revoke the whole grant, so the user must consent again.
 *
 * Pure bookkeeping plus the caller's {@link RefreshTokenStore} (the credentials Secret, read and
 * written by the controller's adapter): nothing here talks to Kubernetes or the token endpoint.
 */
import { createHash } from "node:crypto";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { IssuedToken } from "../oauth/types.ts";

/** A refresh token as a {@link RefreshTokenStore} read it. Stores may carry more (e.g. the Secret read). */
export interface StoredRefreshToken {
  /** The refresh token (trimmed), or undefined when the store holds none. Secret: memory only. */
  value: string | undefined;
}

/** Where one credential's refresh token lives: a data key of a credentials Secret. */
export interface RefreshTokenStore<S extends StoredRefreshToken = StoredRefreshToken> {
  /** `namespace/name` of the credentials Secret: refreshes of one Secret are serialised. */
  readonly secret: string;
  /** The data key holding the refresh token in that Secret. */
  readonly key: string;
  /**
   * Reads the refresh token stored now (a fresh read, never a cached copy).
   * @throws when the Secret cannot be read or is gone (the message names the Secret, never a token).
   */
  read(): Promise<S>;
  /**
   * Stores `rotated` in place of `used` (what {@link read} returned), with optimistic concurrency
   * on what was read: `"superseded"` when someone (a new `login`) wrote another token meanwhile,
   * which is kept.
   * @throws on API errors; the guard then keeps `rotated` in memory and stores it first next time.
   */
  persist(used: S, rotated: string): Promise<"stored" | "superseded">;
}

/** Digests of consumed refresh tokens remembered per process (oldest forgotten first). */
const MAX_CONSUMED = 4096;

/**
 * One-way identifier of a refresh token: hex SHA-256 over a domain prefix and the token,
 * truncated to 32 hex characters (128 bits). Safe to store in an annotation (the rotation
 * annotation of the credentials Secret) or to compare in memory.
 */
export function refreshTokenDigest(refreshToken: string): string {
  return createHash("sha256")
    .update("nexar-token-operator/refresh-token\0")
    .update(refreshToken, "utf8")
    .digest("hex")
    .slice(0, 32);
}

/** A rotated refresh token the server issued but that is not yet in the store. */
interface Pending {
  /** Digest of the token that was presented (now consumed at the server). */
  consumedDigest: string;
  /** The new refresh token (secret; memory only). */
  rotated: string;
}

/**
 * Serialises and guards refresh-token use per credentials Secret, in one operator process
 * (across processes, leader election keeps one active). Holds one lock per credentials Secret,
 * one set of consumed-token digests, and — only while a write failed — the rotated token.
 */
export class RefreshTokenGuard {
  /** Credentials Secret `namespace/name` → tail of its queue of refreshes (the one lock). */
  readonly #tails = new Map<string, Promise<void>>();
  /** `namespace/name/key` → rotated token not yet stored. */
  readonly #pending = new Map<string, Pending>();
  /** Digests of refresh tokens this process saw rotated or rejected with invalid_grant (insertion order = age). */
  readonly #consumed = new Set<string>();

  /** Rotated refresh tokens held in memory because their write failed (for tests and metrics). */
  pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Runs `fn` exclusively for credentials Secret `secret` (`namespace/name`): after every earlier
   * call for it has settled (a FIFO mutex per Secret, the guard's one lock). The issuer holds it
   * around a whole RefreshToken fetch, so a fetch that follows another of the same Secret sees its
   * outcome (its cached token, or its rotated refresh token in the Secret).
   */
  async exclusive<T>(secret: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(secret) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = previous.then(() => mine);
    this.#tails.set(secret, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (this.#tails.get(secret) === tail) this.#tails.delete(secret);
    }
  }

  /** {@link refresh} inside {@link exclusive} for the store's Secret. */
  run<S extends StoredRefreshToken>(
    store: RefreshTokenStore<S>,
    send: (refreshToken: string) => Promise<IssuedToken>,
  ): Promise<IssuedToken> {
    return this.exclusive(store.secret, () => this.refresh(store, send));
  }

  /**
   * One refresh with the token in `store`; call it inside {@link exclusive} for `store.secret`.
   * It:
   * 1. reads the store (another NexarToken sharing the Secret, or a new `login`, may have changed
   *    the token since the caller read the Secret);
   * 2. if a rotated token from an earlier refresh is still unwritten and the store still holds the
   *    consumed one, writes it first (and throws if that fails: no refresh with a consumed token);
   * 3. refuses a token this process already saw consumed or rejected with `invalid_grant` with a
   *    `credential`-class `TokenEndpointError` `InvalidGrant`, without a request (e.g. a GitOps
   *    tool restored an old Secret);
   * 4. calls `send` with the stored token; when the answer carries a new refresh token, marks the
   *    presented one consumed and stores the new one BEFORE returning (SPEC §6).
   *
   * @throws whatever `send` throws (`TokenEndpointError` for endpoint failures; an
   *   `invalid_grant` marks the presented token consumed); the store's errors (a rotated token that
   *   could not be written is kept for the next call); `Error` when the store holds no token.
   *   Messages never contain a token.
   */
  async refresh<S extends StoredRefreshToken>(
    store: RefreshTokenStore<S>,
    send: (refreshToken: string) => Promise<IssuedToken>,
  ): Promise<IssuedToken> {
    const pendingKey = `${store.secret}/${store.key}`;
    let stored = await store.read();
    const pending = this.#pending.get(pendingKey);
    if (pending) {
      if (stored.value !== undefined && refreshTokenDigest(stored.value) === pending.consumedDigest) {
        await store.persist(stored, pending.rotated);
        stored = await store.read();
      }
      this.#pending.delete(pendingKey); // written now, written before, or superseded by a new login
    }
    const used = stored.value;
    if (used === undefined) {
      throw new Error(`credentials Secret "${store.secret}" lacks a non-empty key "${store.key}"`);
    }
    const usedDigest = refreshTokenDigest(used);
    if (this.#consumed.has(usedDigest)) {
      throw new TokenEndpointError({
        kind: "credential",
        reason: "InvalidGrant",
        message: "the Secret holds a refresh token this operator already used or saw rejected; it was not sent again",
      });
    }
    let token: IssuedToken;
    try {
      token = await send(used);
    } catch (err) {
      // invalid_grant: this token is dead for good (revoked, expired or consumed); other
      // NexarTokens sharing the Secret must not present it again (reuse detection would
      // revoke the grant), so remember it until a new token is written.
      if (err instanceof TokenEndpointError && err.reason === "InvalidGrant") this.#markConsumed(usedDigest);
      throw err;
    }
    const rotated = token.refreshToken;
    if (rotated !== undefined && rotated !== used) {
      this.#markConsumed(usedDigest);
      this.#pending.set(pendingKey, { consumedDigest: usedDigest, rotated });
      await store.persist(stored, rotated);
      this.#pending.delete(pendingKey);
    }
    return token;
  }

  #markConsumed(digest: string): void {
    this.#consumed.add(digest);
    if (this.#consumed.size > MAX_CONSUMED) {
      const oldest = this.#consumed.values().next().value;
      if (oldest !== undefined) this.#consumed.delete(oldest);
    }
  }
}
