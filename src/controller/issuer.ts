import type { Logger } from "pino";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import { parseRetryAfter, retryDelayMs } from "../renewal/backoff.ts";
import { KeyHasher } from "../issuance/keys.ts";
import {
  DEFAULT_ISSUANCE_LIMITS_FLAG,
  IssuanceLimiter,
  NEXAR_ISSUANCE_LIMITS,
  parseIssuanceLimits,
  type RateWindow,
} from "../issuance/limiter.ts";
import { canJoin, canReuse, demandOf, SecretEpochs, type Demand } from "../issuance/sharing.ts";
import type { IssuanceHints, LimiterWait } from "../issuance/types.ts";
import { backoffScaleFromEnv, type FetchContext, type TokenSource } from "./reconciler.ts";

export type { IssuanceHints, LimiterWait } from "../issuance/types.ts";

/** The undici OAuth client, as the issuer sees it. */
export interface TokenFetcher {
  fetchToken(req: TokenRequest, opts: { fallbackLifetimeSeconds?: number }): Promise<IssuedToken>;
}

/** Options of {@link Issuer}. */
export interface IssuerOptions {
  /** Per-client issuance limits; default Nexar's (SPEC §1). An empty list disables the limiter. */
  limits?: readonly RateWindow[];
  /** Clock, epoch ms (default `Date.now`). */
  now?: () => number;
  /** Sleeps `ms` milliseconds; must reject (or resolve) promptly when `signal` aborts. Default a timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Keyed hashing of requests; default a new {@link KeyHasher} with a random per-process key. */
  keys?: KeyHasher;
  logger?: Pick<Logger, "info" | "debug">;
  /** Metrics hook: called each time a token request starts waiting for the limiter. Exceptions are ignored. */
  onLimiterWait?: (wait: LimiterWait) => void;
  /**
   * After a request failed with a credential error (`invalid_client`, `invalid_scope`, … — kind
   * `credential`), further *ordinary* fetches of the same key get the same error without a request
   * for this many ms, so a bad credential shared by many NexarTokens costs one request per hold,
   * not one per NexarToken. Forcing fetches (spec/credentials change, refresh request) are never
   * held. Transient failures are not held (each NexarToken's backoff paces them). Default
   * {@link CREDENTIAL_FAILURE_HOLD_MS}. Keep it below the shortest credential-error backoff (5 min),
   * so a NexarToken's own retry is never answered from the hold.
   */
  credentialFailureHoldMs?: number;
}

/** Default `IssuerOptions.credentialFailureHoldMs`: 30 s. */
export const CREDENTIAL_FAILURE_HOLD_MS = 30_000;

/** Figures of an {@link Issuer}, for metrics (computed on demand, cheap). */
export interface IssuerStats {
  /** Distinct share keys with state. */
  keys: number;
  /** Keys holding a cached token. */
  cachedTokens: number;
  /** Token requests started (sent or waiting) and not finished. */
  inFlight: number;
  /** Token requests waiting for the issuance limiter now. */
  waiting: number;
  /** Requests sent to the token endpoint since start. */
  requests: number;
  /** Fetches answered from the cache without a request, since start. */
  cacheHits: number;
  /** Fetches that joined a request started for another caller, since start. */
  joined: number;
}

/** Thrown by {@link Issuer.fetchToken} after {@link Issuer.close}; not a token-endpoint failure. */
export class IssuerClosedError extends Error {
  constructor() {
    super("token issuer closed (operator shutting down)");
    this.name = "IssuerClosedError";
  }
}

/**
 * Thrown when a RefreshToken fetch would reuse a refresh token that a fetch of the same
 * credential just consumed (rotated, RFC 6749 §6): the caller read the credentials Secret before
 * the new refresh token was stored, and must read it again. Not a token-endpoint failure: the
 * reconciler's generic error path requeues it quickly.
 */
export class RefreshTokenConsumedError extends Error {
  constructor() {
    super("the refresh token was just rotated by another fetch of the same credential; re-read the credentials Secret");
    this.name = "RefreshTokenConsumedError";
  }
}

interface Flight {
  /** When the request started (issuer clock), epoch ms; +Infinity while it is queued behind another. */
  startedAtMs: number;
  /** Started for a forcing caller (an explicit change or request): a 429 block does not delay it. */
  forced: boolean;
  promise: Promise<IssuedToken>;
  waiting: LimiterWait | undefined;
  listeners: ((w: LimiterWait) => void)[];
}

interface Slot {
  cached: { token: IssuedToken; requestedAtMs: number } | undefined;
  current: Flight | undefined;
  /** The request queued to start when `current` settles (for forcing callers `current` cannot serve). */
  next: Flight | undefined;
  failure: { error: unknown; requestedAtMs: number; untilMs: number } | undefined;
  consecutiveFailures: number;
}

const SWEEP_INTERVAL_MS = 30_000;
const MAX_CONSUMED = 1024;

/**
 * The reconciler's {@link TokenSource}: shared tokens, single flight, per-client issuance
 * limiter, refresh-token rotation (SPEC §3.3, §6).
 *
 * - **Shared tokens.** Fetches with the same share key (token URL, grant, client
 *   authentication, client id, client secret, scope set — order-insensitive — and fallback
 *   lifetime; see `KeyHasher.shareKey`) share one cached token and one request in flight. Keys
 *   are HMAC-SHA256 under a per-process random key: no client secret in clear text. When a
 *   cached token may be handed out without a request is decided by `src/issuance/sharing.ts`
 *   (not due from the asking NexarToken's point of view; forcing reasons need a request that
 *   started after the trigger). A different client secret is a different key, so credentials
 *   changes invalidate by construction.
 * - **Limiter.** Every request books a slot with the per-client {@link IssuanceLimiter} (token
 *   URL + client id) and waits for it: it queues, never fails. Waiting is reported to
 *   `IssuanceHints.onWaiting` of every caller depending on the request, and to `onLimiterWait`.
 *   An HTTP 429 blocks the client for its `Retry-After`.
 * - **RefreshToken grant.** Never shared across credentials Secrets; one request in flight per
 *   credential (a lock); a rotated refresh token is persisted through the starting caller's
 *   `persistRefreshToken` BEFORE the access token is handed to anyone, and a persistence failure
 *   fails the fetch (SPEC §6).
 * - **Failures** are shared by the callers of the request; a credential error is held briefly
 *   per key (see `credentialFailureHoldMs`) so a bad credential costs one request per hold, not
 *   one per NexarToken.
 * - **Callers that give no `reason`** (the reconciler before it passes {@link IssuanceHints})
 *   keep the pre-sharing contract: each gets a token requested after its call; only callers
 *   arriving while such a request is queued share it. Sharing of cached tokens needs the reason.
 */
export class Issuer implements TokenSource {
  private readonly client: TokenFetcher;
  private readonly keys: KeyHasher;
  private readonly limiter: IssuanceLimiter;
  private readonly epochs = new SecretEpochs();
  private readonly slots = new Map<string, Slot>();
  private readonly locks = new Map<string, Promise<void>>();
  private readonly consumed = new Set<string>();
  private readonly now: () => number;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly logger: Pick<Logger, "info" | "debug"> | undefined;
  private onLimiterWait: ((w: LimiterWait) => void) | undefined;
  private readonly credentialFailureHoldMs: number;
  private readonly abort = new AbortController();
  private lastSweepMs = -Infinity;
  private counters = { requests: 0, cacheHits: 0, joined: 0, waiting: 0 };

  constructor(client: TokenFetcher, options: IssuerOptions = {}) {
    this.client = client;
    this.keys = options.keys ?? new KeyHasher();
    this.limiter = new IssuanceLimiter(options.limits ?? NEXAR_ISSUANCE_LIMITS);
    this.now = options.now ?? Date.now;
    this.sleep = options.sleep ?? abortableSleep;
    this.logger = options.logger;
    this.onLimiterWait = options.onLimiterWait;
    this.credentialFailureHoldMs = options.credentialFailureHoldMs ?? CREDENTIAL_FAILURE_HOLD_MS;
  }

  /**
   * Builds the issuer of `nexar-token-operator run` from its parsed flags: `issuanceLimits`
   * (flag `--issuance-limits`, syntax of `parseIssuanceLimits`, default Nexar's limits).
   * @throws RangeError when the flag value does not parse.
   */
  static fromFlags(client: TokenFetcher, flags: object, logger?: Pick<Logger, "info" | "debug">): Issuer {
    const raw = (flags as { issuanceLimits?: unknown }).issuanceLimits;
    const limits = parseIssuanceLimits(typeof raw === "string" ? raw : DEFAULT_ISSUANCE_LIMITS_FLAG);
    logger?.info(
      { issuanceLimits: limits.map((w) => `${w.limit}/${w.windowMs / 1000}s`) },
      limits.length ? "per-client issuance limiter on" : "per-client issuance limiter OFF",
    );
    // The hold is a backoff: scaled with the others by the test-only backoff scale, so it stays
    // below the (scaled) credential-error backoff of a NexarToken's own retries.
    const credentialFailureHoldMs = CREDENTIAL_FAILURE_HOLD_MS * backoffScaleFromEnv(process.env);
    return new Issuer(client, { limits, logger, credentialFailureHoldMs });
  }

  /**
   * A token for `req`: a shared cached one, the result of a request in flight, or a new request
   * (after the limiter allows it). See the class comment and src/issuance/sharing.ts.
   * @throws TokenEndpointError from the token client (shared by every caller of that request, or
   *   held for a short time after it); `persistRefreshToken`'s error; {@link RefreshTokenConsumedError};
   *   {@link IssuerClosedError} after {@link close}.
   */
  async fetchToken(req: TokenRequest, ctx: FetchContext & IssuanceHints): Promise<IssuedToken> {
    if (this.abort.signal.aborted) throw new IssuerClosedError();
    const now = this.now();
    this.sweep(now);
    const key = this.keys.shareKey(req, {
      credentialsRef: ctx.credentialsRef,
      fallbackLifetimeSeconds: ctx.fallbackLifetimeSeconds,
      credentialsVersion: ctx.credentialsVersion,
    });
    const secretSinceMs = this.epochs.observe(this.keys.clientKey(req), this.keys.secretKey(req), now);
    const demand = demandOf({
      reason: ctx.reason,
      notBeforeMs: ctx.notBeforeMs,
      renewBefore: ctx.renewBefore,
      secretSinceMs,
      nowMs: now,
    });
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { cached: undefined, current: undefined, next: undefined, failure: undefined, consecutiveFailures: 0 };
      this.slots.set(key, slot);
    }
    const c = slot.cached;
    if (c && reusable(c, demand, now)) {
      this.counters.cacheHits++;
      return copyToken(c.token);
    }
    if (slot.current && canJoin(slot.current.startedAtMs, demand)) {
      this.counters.joined++;
      return this.join(slot.current, ctx);
    }
    if (slot.next) {
      // queued behind the current request: it starts later than this call, so it satisfies any demand
      this.counters.joined++;
      return this.join(slot.next, ctx);
    }
    if (!slot.current) {
      const f = slot.failure;
      if (f && now < f.untilMs && canJoin(f.requestedAtMs, demand)) throw f.error;
    }
    return this.join(this.start(slot, req, ctx, slot.current, demand.forced), ctx);
  }

  /**
   * Offers a token the caller already holds (e.g. read back from its target Secret after a
   * restart) to the cache, so NexarTokens that join later share it instead of requesting one.
   * Kept only when the key has no cached token expiring later. `requestedAtMs` is taken as the
   * token's `receivedAtMs`.
   */
  offer(
    req: TokenRequest,
    token: IssuedToken,
    hints: Pick<IssuanceHints, "credentialsRef" | "credentialsVersion"> & FetchContext = {},
  ): void {
    if (token.expiresAtMs <= this.now()) return;
    const key = this.keys.shareKey(req, {
      credentialsRef: hints.credentialsRef,
      fallbackLifetimeSeconds: hints.fallbackLifetimeSeconds,
      credentialsVersion: hints.credentialsVersion,
    });
    let slot = this.slots.get(key);
    if (!slot) {
      slot = { cached: undefined, current: undefined, next: undefined, failure: undefined, consecutiveFailures: 0 };
      this.slots.set(key, slot);
    }
    if (!slot.cached || slot.cached.token.expiresAtMs < token.expiresAtMs) {
      slot.cached = { token: copyToken(token), requestedAtMs: token.receivedAtMs };
    }
  }

  /**
   * Sets the metrics hook called each time a token request starts waiting for the limiter
   * (replaces `IssuerOptions.onLimiterWait`), for wiring once the metrics registry exists.
   */
  observeLimiterWaits(hook: ((wait: LimiterWait) => void) | undefined): void {
    this.onLimiterWait = hook;
  }

  /** Current figures (for a metrics collector). */
  stats(): IssuerStats {
    let cachedTokens = 0;
    let inFlight = 0;
    for (const s of this.slots.values()) {
      if (s.cached) cachedTokens++;
      if (s.current) inFlight++;
      if (s.next) inFlight++;
    }
    return {
      keys: this.slots.size,
      cachedTokens,
      inFlight,
      waiting: this.counters.waiting,
      requests: this.counters.requests,
      cacheHits: this.counters.cacheHits,
      joined: this.counters.joined,
    };
  }

  /**
   * Fails every request still waiting for the limiter with {@link IssuerClosedError} and
   * refuses new fetches, so a graceful shutdown is not held up by a limiter wait. Requests
   * already sent finish normally.
   */
  close(): void {
    this.abort.abort();
  }

  /** Starts a request for `slot` now, or (when `after` is given) as soon as `after` settles. */
  private start(
    slot: Slot,
    req: TokenRequest,
    ctx: FetchContext & IssuanceHints,
    after: Flight | undefined,
    forced: boolean,
  ): Flight {
    const flight: Flight = {
      startedAtMs: Infinity,
      forced,
      promise: undefined as unknown as Promise<IssuedToken>,
      waiting: undefined,
      listeners: [],
    };
    const begin = () => {
      slot.current = flight;
      if (slot.next === flight) slot.next = undefined;
      flight.startedAtMs = this.now();
      return this.run(slot, flight, req, ctx);
    };
    const body = after ? after.promise.then(noop, noop).then(begin) : begin();
    flight.promise = body.finally(() => {
      if (slot.current === flight) slot.current = undefined;
      flight.listeners = [];
    });
    if (after) slot.next = flight;
    else slot.current = flight;
    return flight;
  }

  private async run(
    slot: Slot,
    flight: Flight,
    req: TokenRequest,
    ctx: FetchContext & IssuanceHints,
  ): Promise<IssuedToken> {
    const clientKey = this.keys.clientKey(req);
    const refresh = req.grant === "RefreshToken";
    const release = refresh ? await this.lock(this.keys.credentialLockKey(req, ctx.credentialsRef)) : undefined;
    try {
      if (this.abort.signal.aborted) throw new IssuerClosedError();
      const rtKey = refresh ? this.keys.refreshTokenKey(req) : undefined;
      if (rtKey !== undefined && this.consumed.has(rtKey)) throw new RefreshTokenConsumedError();
      // A 429's Retry-After holds the whole client, except explicit changes/requests (forced).
      const blockedUntil = flight.forced ? -Infinity : this.limiter.blockedUntilMs(clientKey);
      const t = this.now();
      if (blockedUntil > t) await this.wait(flight, { delayMs: blockedUntil - t, untilMs: blockedUntil });
      if (this.abort.signal.aborted) throw new IssuerClosedError();
      const r = this.limiter.reserve(clientKey, this.now());
      if (r.delayMs > 0) await this.wait(flight, { delayMs: r.delayMs, untilMs: r.atMs });
      if (this.abort.signal.aborted) throw new IssuerClosedError();
      this.counters.requests++;
      const token = await this.client.fetchToken(req, { fallbackLifetimeSeconds: ctx.fallbackLifetimeSeconds });
      if (token.refreshToken && token.refreshToken !== req.refreshToken) {
        if (rtKey !== undefined) this.markConsumed(rtKey);
        // SPEC §6: store the new refresh token BEFORE anyone sees the access token.
        if (ctx.persistRefreshToken) await ctx.persistRefreshToken(token.refreshToken);
      }
      slot.cached = { token, requestedAtMs: flight.startedAtMs };
      slot.failure = undefined;
      slot.consecutiveFailures = 0;
      return token;
    } catch (err) {
      if (!(err instanceof IssuerClosedError) && !(err instanceof RefreshTokenConsumedError)) {
        this.recordFailure(slot, flight, clientKey, err);
      }
      throw err;
    } finally {
      release?.();
    }
  }

  private recordFailure(slot: Slot, flight: Flight, clientKey: string, err: unknown): void {
    slot.consecutiveFailures++;
    const now = this.now();
    let holdMs = 0;
    if (err instanceof TokenEndpointError) {
      if (err.kind === "credential") holdMs = this.credentialFailureHoldMs;
      if (err.kind === "rateLimited") {
        // RFC 6585 §4 / RFC 9110 §10.2.3: the whole client waits, not only this key.
        const delay = retryDelayMs({
          kind: "rateLimited",
          failedAttempts: slot.consecutiveFailures,
          retryAfterMs: parseRetryAfter(err.retryAfterHeader, now),
          random: () => 0,
        });
        this.limiter.block(clientKey, now + delay);
      }
    }
    slot.failure = { error: err, requestedAtMs: flight.startedAtMs, untilMs: now + holdMs };
  }

  private async wait(flight: Flight, w: LimiterWait): Promise<void> {
    flight.waiting = w;
    this.counters.waiting++;
    this.logger?.info(
      { waitMs: Math.round(w.delayMs), until: new Date(w.untilMs).toISOString() },
      "token request waits for the issuance limit",
    );
    safeCall(this.onLimiterWait, w);
    for (const l of flight.listeners) safeCall(l, w);
    try {
      await this.sleep(w.delayMs, this.abort.signal);
    } finally {
      this.counters.waiting--;
      flight.waiting = undefined;
    }
  }

  private join(flight: Flight, ctx: IssuanceHints): Promise<IssuedToken> {
    const onWaiting = ctx.onWaiting;
    if (onWaiting) {
      if (flight.waiting) safeCall(onWaiting, flight.waiting);
      else flight.listeners.push(onWaiting);
    }
    return flight.promise.then(copyToken);
  }

  /** Serialises work per `key`: resolves with a release function once every earlier holder released. */
  private async lock(key: string): Promise<() => void> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const tail = prev.then(() => mine);
    this.locks.set(key, tail);
    await prev;
    return () => {
      release();
      if (this.locks.get(key) === tail) this.locks.delete(key);
    };
  }

  private markConsumed(rtKey: string): void {
    this.consumed.add(rtKey);
    if (this.consumed.size > MAX_CONSUMED) {
      const oldest = this.consumed.values().next().value;
      if (oldest !== undefined) this.consumed.delete(oldest);
    }
  }

  /** Drops idle keys (no request in flight, no valid cached token, no failure held); at most every 30 s. */
  private sweep(now: number): void {
    if (now - this.lastSweepMs < SWEEP_INTERVAL_MS) return;
    this.lastSweepMs = now;
    for (const [key, s] of this.slots) {
      if (s.cached && s.cached.token.expiresAtMs <= now) s.cached = undefined;
      if (s.failure && s.failure.untilMs <= now) s.failure = undefined;
      if (!s.cached && !s.current && !s.next && !s.failure) this.slots.delete(key);
    }
    this.limiter.prune(now);
  }
}

function reusable(c: { token: IssuedToken; requestedAtMs: number }, demand: Demand, now: number): boolean {
  return canReuse(
    { receivedAtMs: c.token.receivedAtMs, expiresAtMs: c.token.expiresAtMs, requestedAtMs: c.requestedAtMs },
    demand,
    now,
  );
}

function copyToken(t: IssuedToken): IssuedToken {
  return { ...t, scopes: [...t.scopes] };
}

function noop(): void {}

function safeCall<T>(fn: ((arg: T) => void) | undefined, arg: T): void {
  try {
    fn?.(arg);
  } catch {
    // a hook's failure must not fail the fetch
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
