/**
 * What a caller may tell the issuer about one fetch, beyond the request itself. Every field is
 * optional, so a caller that passes none keeps working (it is treated as an ordinary fetch:
 * see src/issuance/sharing.ts). Intended to be merged into the reconciler's `FetchContext`.
 */
import type { RenewBefore } from "../api/types.ts";
import type { IssuanceReason } from "../renewal/policies.ts";

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
   * `namespace/name` of the credentials Secret. For the RefreshToken grant it scopes sharing and
   * the one-in-flight lock to that Secret (SPEC §6); without it both are scoped to the refresh
   * token value.
   */
  credentialsRef?: string;
  /**
   * Opaque version of the credentials that the request fields do not show, e.g. the refresh
   * token's lineage for the RefreshToken grant (a new `login` starts a new lineage): part of the
   * share key, so a new login never gets a token obtained with the previous one.
   */
  credentialsVersion?: string;
  /**
   * Called (synchronously, at most once per call) when the request this fetch depends on waits
   * for the issuance limiter; for status ("waiting for the Nexar issuance limit until …").
   * Exceptions it throws are ignored.
   */
  onWaiting?: (wait: LimiterWait) => void;
}
