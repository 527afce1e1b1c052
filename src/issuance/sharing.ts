/**
 * When may a fetch take a shared token instead of asking the token endpoint (SPEC §3.2, §3.3)?
 * Pure decisions; the `Issuer` (src/issuance/issuer.ts) does the I/O.
 *
 * The rules:
 * - An *ordinary* fetch (reason `NoToken`, `RenewalDue` or `Expired`) takes the
 *   cached token of its key when that token is not due for renewal *from the asking NexarToken's
 *   point of view*: `now` is before the earliest renewal instant its `renewBefore` could give the
 *   token (the jitter at its maximum). The reconciler then computes a renewal time for it that is
 *   necessarily later than now, so a shared token never causes a renewal loop. Otherwise it joins
 *   the request in flight for the key, or starts one.
 * - A *forcing* fetch (reason `SpecChanged`, `CredentialsChanged` or `RefreshRequested`, or NO
 *   reason: a caller that does not say why gets the pre-sharing behaviour, a fresh token) needs a
 *   token requested at or after a point in time, `notBeforeMs`: the caller's, else for
 *   `CredentialsChanged` the instant this process first saw the client's current secret, else the
 *   call time. It takes a cached token or joins a request only when that request *started* at or
 *   after `notBeforeMs`; else it waits for the next request of the key, which all forcing callers
 *   queued meanwhile share. So N NexarTokens reacting to one change cost one request, not N.
 */
import type { RenewBefore } from "../api/types.ts";
import type { IssuanceReason } from "../renewal/policies.ts";
import { computeRenewal, renewBeforeFields } from "../renewal/schedule.ts";

/** Reasons after which a cached token must not be handed out unless it was requested after the trigger. */
export const FORCING_REASONS: ReadonlySet<IssuanceReason> = new Set<IssuanceReason>([
  "SpecChanged",
  "CredentialsChanged",
  "RefreshRequested",
]);

/** What one caller needs from the shared cache. Instants are epoch ms. */
export interface Demand {
  /** Only a token requested at or after {@link notBeforeMs} will do. */
  forced: boolean;
  /** For forced demands: earliest acceptable request start, epoch ms. */
  notBeforeMs: number;
  /** The caller's renew-before (`spec.renewBefore` resolved); default a third of the lifetime. */
  renewBefore?: RenewBefore;
}

/** Input of {@link demandOf}. */
export interface DemandInput {
  reason?: IssuanceReason;
  /** Caller-given lower bound for forcing reasons, epoch ms (e.g. the refresh annotation's time). */
  notBeforeMs?: number;
  renewBefore?: RenewBefore;
  /** Since when this process has seen the client's current secret, epoch ms (see {@link SecretEpochs}). */
  secretSinceMs?: number;
  /** The call time, epoch ms. */
  nowMs: number;
}

/**
 * The demand of one fetch. Forcing reasons — and an unknown reason (`undefined`, a caller that
 * predates sharing: it gets a token requested after its call, as before) — get `notBeforeMs` =
 * the caller's value, else (for `CredentialsChanged`) the secret's epoch, else `nowMs`; the
 * result is never later than `nowMs` (a bound in the future would make the caller wait for a
 * request that starts later).
 */
export function demandOf(i: DemandInput): Demand {
  const forced = i.reason === undefined || FORCING_REASONS.has(i.reason);
  let notBeforeMs = -Infinity;
  if (forced) {
    notBeforeMs =
      i.notBeforeMs ?? (i.reason === "CredentialsChanged" && i.secretSinceMs !== undefined ? i.secretSinceMs : i.nowMs);
    notBeforeMs = Math.min(notBeforeMs, i.nowMs);
  }
  return { forced, notBeforeMs, renewBefore: i.renewBefore };
}

/** A token as the cache holds it. Instants are epoch ms. */
export interface CachedToken {
  receivedAtMs: number;
  expiresAtMs: number;
  /** When the request that produced it started (issuer clock). */
  requestedAtMs: number;
}

/**
 * The earliest renewal instant a NexarToken with `renewBefore` could compute for `token`:
 * {@link computeRenewal} with the jitter at its maximum. Epoch ms.
 * @throws RangeError as computeRenewal (e.g. a token whose expiry is not after its receipt).
 */
export function earliestRenewalMs(
  token: Pick<CachedToken, "receivedAtMs" | "expiresAtMs">,
  renewBefore?: RenewBefore,
): number {
  return computeRenewal({
    receivedAtMs: token.receivedAtMs,
    expiresAtMs: token.expiresAtMs,
    ...renewBeforeFields(renewBefore),
    random: () => 1,
  }).renewAtMs;
}

/** True when `cached` may be handed to a caller with `demand` at `nowMs` without a request. */
export function canReuse(cached: CachedToken, demand: Demand, nowMs: number): boolean {
  if (cached.expiresAtMs <= cached.receivedAtMs || nowMs >= cached.expiresAtMs) return false;
  if (demand.forced && cached.requestedAtMs < demand.notBeforeMs) return false;
  return nowMs < earliestRenewalMs(cached, demand.renewBefore);
}

/** True when a caller with `demand` may take the result of a request that started at `startedAtMs`. */
export function canJoin(startedAtMs: number, demand: Demand): boolean {
  return !demand.forced || startedAtMs >= demand.notBeforeMs;
}

/**
 * Remembers, per client (token URL + client id), which secret is in use and since when this
 * process has seen it (epoch ms). A client whose secret goes A → B → A starts a new epoch for A,
 * so a token cached for A before the change is not handed to a `CredentialsChanged` fetch.
 * Keys are opaque strings (keyed hashes, see keys.ts). Bounded: at most `maxClients` entries,
 * oldest dropped first.
 */
export class SecretEpochs {
  readonly #byClient = new Map<string, { secretKey: string; sinceMs: number }>();
  readonly #maxClients: number;

  constructor(maxClients = 10_000) {
    this.#maxClients = maxClients;
  }

  /** Records that `clientKey` is used with `secretKey` at `nowMs`; returns the epoch start, epoch ms. */
  observe(clientKey: string, secretKey: string, nowMs: number): number {
    const cur = this.#byClient.get(clientKey);
    if (cur && cur.secretKey === secretKey) return cur.sinceMs;
    this.#byClient.delete(clientKey);
    this.#byClient.set(clientKey, { secretKey, sinceMs: nowMs });
    if (this.#byClient.size > this.#maxClients) {
      const oldest = this.#byClient.keys().next().value;
      if (oldest !== undefined) this.#byClient.delete(oldest);
    }
    return nowMs;
  }
}
