/**
 * What the issuer (src/issuance/issuer.ts) is asked: a {@link Credential} (the token request with
 * its keys, built once per credentials Secret version) and {@link FetchContext} hints about one
 * fetch. Every hint is optional, so a caller that passes none keeps working (it is treated as an
 * ordinary fetch: see src/issuance/sharing.ts).
 */
import type { RenewBefore } from "../api/types.ts";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import type { IssuanceReason } from "../renewal/policies.ts";
import type { RefreshTokenStore } from "./refresh.ts";

/** The issuer's keyed hashes of one request (see `KeyHasher` in keys.ts): no secret in clear text. */
export interface IssuanceKeys {
  /** Key of one shared token (cache, single flight, failure hold). */
  readonly share: string;
  /** Key of one Nexar client (token URL + client id): the per-client issuance limiter. */
  readonly client: string;
  /** Key of one client secret value of that client: notices when a client's secret changes. */
  readonly secret: string;
}

/**
 * One token request and everything that identifies it to the issuer, built once per credentials
 * Secret version and spec fields (the reconciler's credentials value, src/controller/credentials.ts)
 * with {@link TokenSource.keysFor}. Treated as immutable.
 */
export interface Credential {
  readonly request: Readonly<TokenRequest>;
  /** Lifetime to assume when a response has neither `expires_in` nor a JWT `exp`, seconds (part of the share key). */
  readonly fallbackLifetimeSeconds?: number;
  readonly keys: IssuanceKeys;
}

/** A fetch is waiting for the per-client issuance limiter (SPEC §3.3). Instants epoch ms. */
export interface LimiterWait {
  /** How long the request waits before it is sent, ms (> 0). */
  delayMs: number;
  /** When it will be sent, epoch ms. */
  untilMs: number;
}

/** Optional hints of one fetch (see {@link Issuer.fetchToken}). */
export interface IssuanceHints {
  /**
   * Why the caller fetches: the trigger policy's reason (src/renewal/policies.ts). `SpecChanged`,
   * `CredentialsChanged` and `RefreshRequested` force a token requested after the trigger; the
   * others (and `undefined`) accept a shared token that is not due for renewal.
   */
  reason?: IssuanceReason;
  /**
   * For forcing reasons: the earliest acceptable request start, epoch ms, for callers that know
   * when their trigger happened. Default: see `demandOf` in sharing.ts (the call time). Do NOT
   * derive it from the `nexar-operator.io/refresh-requested-at` value: it is free text by
   * convention only, and a past timestamp would turn a refresh request into a cache hit.
   */
  notBeforeMs?: number;
  /** The NexarToken's resolved renew-before; a cached token due by it is not handed out. Default 1/3 of the lifetime. */
  renewBefore?: RenewBefore;
  /**
   * Called (synchronously, at most once per call) when the request this fetch depends on waits
   * for the issuance limiter; for status ("waiting for the Nexar issuance limit until …").
   * Exceptions it throws are ignored.
   */
  onWaiting?: (wait: LimiterWait) => void;
}

/** Per-fetch context handed to a {@link TokenSource}: the hints plus what a RefreshToken grant needs. */
export interface FetchContext extends IssuanceHints {
  /**
   * RefreshToken grant: the credentials Secret's refresh token. The issuer presents the token the
   * store holds at the moment of the request (not `Credential.request.refreshToken`) and stores a
   * rotated one before it returns (SPEC §6). Required for that grant.
   */
  refreshTokens?: RefreshTokenStore;
}

/** Fetches tokens: the issuer (sharing, limits, the refresh-token guard) in front of the OAuth client. */
export interface TokenSource {
  /**
   * The issuer's keys of `request` fetched with `scope` (computed once per credentials value by
   * the caller, never per fetch). Pure apart from the per-process HMAC key.
   */
  keysFor(request: Readonly<TokenRequest>, scope: ShareScope): IssuanceKeys;
  /**
   * A token for `credential`.
   * @throws TokenEndpointError for token-endpoint failures; other errors (API errors of the
   *   refresh-token store, shutdown) are not failures of the credential.
   */
  fetchToken(credential: Credential, ctx: FetchContext): Promise<IssuedToken>;
}

/** What, besides the request, decides whether two fetches may share one token (see `KeyHasher.shareKey`). */
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
