import type { Logger } from "pino";
import type { IssuedToken, TokenRequest } from "../oauth/types.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import { parseRetryAfter, retryDelayMs } from "../renewal/backoff.ts";
import { KeyHasher } from "./keys.ts";
import {
  DEFAULT_ISSUANCE_LIMITS_FLAG,
  IssuanceLimiter,
  NEXAR_ISSUANCE_LIMITS,
  parseIssuanceLimits,
  type RateWindow,
} from "./limiter.ts";
import { RefreshTokenGuard } from "./refresh.ts";
import { canJoin, canReuse, demandOf, SecretEpochs, type Demand } from "./sharing.ts";
import type { Credential, FetchContext, IssuanceKeys, LimiterWait, ShareScope, TokenSource } from "./types.ts";

export type { Credential, FetchContext, IssuanceHints, LimiterWait, TokenSource } from "./types.ts";

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
  /** The refresh-token guard (RefreshToken grant); default a new one. Tests pass one to look into it. */
  refreshTokens?: RefreshTokenGuard;
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

/**
 * The reconciler's {@link TokenSource}: shared tokens, single flight, per-client issuance
 * limiter, refresh-token rotation (SPEC §3.3, §6).
 *
 * - **Shared tokens.** Fetches with the same share key (token URL, grant, client
 *   authentication, client id, client secret, scope set — order-insensitive — and fallback
 *   lifetime; see `KeyHasher.shareKey`; computed once per credentials value through
 *   {@link Issuer.keysFor}) share one cached token and one request in flight. Keys
 *   are HMAC-SHA256 under a per-process random key: no client secret in clear text. When a
 *   cached token may be handed out without a request is decided by `src/issuance/sharing.ts`
 *   (not due from the asking NexarToken's point of view; forcing reasons need a request that
 *   started after the trigger). A different client secret is a different key, so credentials
 *   changes invalidate by construction.
 * - **Limiter.** Every request books a slot with the per-client {@link IssuanceLimiter} (token
 *   URL + client id) and waits for it: it queues, never fails. Waiting is reported to
 *   `IssuanceHints.onWaiting` of every caller depending on the request, and to `onLimiterWait`.
 *   An HTTP 429, or any answer with a `Retry-After`, blocks the client for that long.
 * - **RefreshToken grant.** Never shared across credentials Secrets; every request goes through
 *   the process's one {@link RefreshTokenGuard} (one request at a time per credentials Secret,
 *   with the refresh token the Secret holds then); a rotated refresh token is stored through the
 *   starting caller's `refreshTokens` store BEFORE the access token is handed to anyone, and a
 *   storage failure fails the fetch (SPEC §6).
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
  /**
   * Per share key: the cached token, the request in flight (and one queued behind it), a held
   * credential failure. Saves token requests (SPEC §3.3: N NexarTokens of one credential cost one
   * request); idle keys are swept every 30 s.
   */
  private readonly slots = new Map<string, Slot>();
  private readonly refreshTokens: RefreshTokenGuard;
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
    this.refreshTokens = options.refreshTokens ?? new RefreshTokenGuard();
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
   * `options.backoffScale` is the test-only backoff scale, read once by the CLI
   * (`backoffScaleFromEnv` in src/cli/run.ts); default 1.
   * @throws RangeError when the flag value does not parse.
   */
  static fromFlags(
    client: TokenFetcher,
    flags: object,
    logger?: Pick<Logger, "info" | "debug">,
    options: { backoffScale?: number } = {},
  ): Issuer {
    const raw = (flags as { issuanceLimits?: unknown }).issuanceLimits;
    const limits = parseIssuanceLimits(typeof raw === "string" ? raw : DEFAULT_ISSUANCE_LIMITS_FLAG);
    logger?.info(
      { issuanceLimits: limits.map((w) => `${w.limit}/${w.windowMs / 1000}s`) },
      limits.length ? "per-client issuance limiter on" : "per-client issuance limiter OFF",
    );
    // The hold is a backoff: scaled with the others by the test-only backoff scale, so it stays
    // below the (scaled) credential-error backoff of a NexarToken's own retries.
    const scale = options.backoffScale ?? 1;
    const credentialFailureHoldMs = CREDENTIAL_FAILURE_HOLD_MS * scale;
    return new Issuer(client, { limits, logger, credentialFailureHoldMs });
  }

  /** The keys of `request` fetched with `scope` (HMAC under this process's key): what a {@link Credential} carries. */
  keysFor(request: Readonly<TokenRequest>, scope: ShareScope): IssuanceKeys {
    return this.keys.keysOf(request, scope);
  }

  /**
   * A token for `credential`: a shared cached one, the result of a request in flight, or a new
   * request (after the limiter allows it). See the class comment and src/issuance/sharing.ts.
   * @throws TokenEndpointError from the token client (shared by every caller of that request, or
   *   held for a short time after it) or from the refresh-token guard; the refresh-token store's
   *   errors; Error when a RefreshToken grant comes without `ctx.refreshTokens`;
   *   {@link IssuerClosedError} after {@link close}.
   */
  async fetchToken(credential: Credential, ctx: FetchContext): Promise<IssuedToken> {
    if (this.abort.signal.aborted) throw new IssuerClosedError();
    if (credential.request.grant !== "RefreshToken") return this.share(credential, ctx);
    const store = ctx.refreshTokens;
    if (!store) throw new Error("a RefreshToken grant needs the credentials Secret's refresh-token store");
    // One fetch at a time per credentials Secret (SPEC §6): a fetch that follows another of the
    // same Secret sees its outcome (its cached token, or its rotated refresh token stored).
    return this.refreshTokens.exclusive(store.secret, () => this.share(credential, ctx));
  }

  /** The shared-token part of {@link fetchToken}: a cached token, a request in flight, or a new request. */
  private async share(credential: Credential, ctx: FetchContext): Promise<IssuedToken> {
    if (this.abort.signal.aborted) throw new IssuerClosedError();
    const now = this.now();
    this.sweep(now);
    const key = credential.keys.share;
    const secretSinceMs = this.epochs.observe(credential.keys.client, credential.keys.secret, now);
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
    return this.join(this.start(slot, credential, ctx, slot.current, demand.forced), ctx);
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
    credential: Credential,
    ctx: FetchContext,
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
      return this.run(slot, flight, credential, ctx);
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

  private async run(slot: Slot, flight: Flight, credential: Credential, ctx: FetchContext): Promise<IssuedToken> {
    const clientKey = credential.keys.client;
    try {
      let token: IssuedToken;
      const store = ctx.refreshTokens;
      if (credential.request.grant === "RefreshToken" && store) {
        // Under the guard's lock (fetchToken): present the token the Secret holds now, store a
        // rotated one before the token is cached or handed to anyone (SPEC §6).
        token = await this.refreshTokens.refresh(store, (refreshToken) =>
          this.send(flight, { ...credential, request: { ...credential.request, refreshToken } }),
        );
      } else {
        token = await this.send(flight, credential);
      }
      slot.cached = { token, requestedAtMs: flight.startedAtMs };
      slot.failure = undefined;
      slot.consecutiveFailures = 0;
      return token;
    } catch (err) {
      if (!(err instanceof IssuerClosedError)) this.recordFailure(slot, flight, clientKey, err);
      throw err;
    }
  }

  /** Waits for the client's Retry-After block and the limiter, then sends the request. */
  private async send(flight: Flight, credential: Credential): Promise<IssuedToken> {
    const clientKey = credential.keys.client;
    if (this.abort.signal.aborted) throw new IssuerClosedError();
    // A Retry-After holds the whole client, except explicit changes/requests (forced).
    const blockedUntil = flight.forced ? -Infinity : this.limiter.blockedUntilMs(clientKey);
    const t = this.now();
    if (blockedUntil > t) await this.wait(flight, { delayMs: blockedUntil - t, untilMs: blockedUntil });
    if (this.abort.signal.aborted) throw new IssuerClosedError();
    const r = this.limiter.reserve(clientKey, this.now());
    if (r.delayMs > 0) await this.wait(flight, { delayMs: r.delayMs, untilMs: r.atMs });
    if (this.abort.signal.aborted) throw new IssuerClosedError();
    this.counters.requests++;
    return this.client.fetchToken(credential.request, { fallbackLifetimeSeconds: credential.fallbackLifetimeSeconds });
  }

  private recordFailure(slot: Slot, flight: Flight, clientKey: string, err: unknown): void {
    slot.consecutiveFailures++;
    const now = this.now();
    let holdMs = 0;
    if (err instanceof TokenEndpointError) {
      if (err.kind === "credential") holdMs = this.credentialFailureHoldMs;
      // RFC 6585 §4 / RFC 9110 §10.2.3: a 429, or any answer with a Retry-After (a 503 may carry
      // one), holds the whole client, not only this key.
      const retryAfterMs = parseRetryAfter(err.retryAfterHeader, now);
      if (err.kind === "rateLimited" || retryAfterMs !== undefined) {
        const delay = retryDelayMs({
          kind: "rateLimited",
          failedAttempts: slot.consecutiveFailures,
          retryAfterMs,
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

  private join(flight: Flight, ctx: FetchContext): Promise<IssuedToken> {
    const onWaiting = ctx.onWaiting;
    if (onWaiting) {
      if (flight.waiting) safeCall(onWaiting, flight.waiting);
      else flight.listeners.push(onWaiting);
    }
    return flight.promise.then(copyToken);
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
