import type { Logger } from "pino";
import type { NexarToken, ResolvedSpec } from "../api/types.ts";
import { validateNexarToken } from "../api/validate.ts";
import type { Secret } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import { keyOf, objectKey } from "../kube/informer.ts";
import type { SecretsApi, SecretWriteResult } from "../kube/secrets.ts";
import type { StatusApi } from "../kube/status.ts";
import { TokenEndpointError } from "../oauth/errors.ts";
import type { FetchContext, TokenSource } from "../issuance/types.ts";
import type { Metrics } from "../observability/metrics.ts";
import { parseRetryAfter } from "../renewal/index.ts";
import { rfc3339 } from "../secrets/desired.ts";
import { CredentialsCache, refreshTokenStore, type CredentialsValue } from "./credentials.ts";
import {
  decide,
  limiterWaitStatus,
  secretConflict,
  type Decision,
  type FetchOutcome,
  type FetchPlan,
  type HeldToken,
  type ReconcileInput,
  type SecretPlan,
  type TargetView,
  type VerifiedTarget,
} from "./decide.ts";
import { statusEqual, statusPatch, type TokenStatus } from "./status.ts";

/** What a reconcile asks of the work queue (controller-runtime's `reconcile.Result`). */
export interface Result {
  /** Reconcile this key again after this many milliseconds (a timer, not an error). */
  requeueAfterMs?: number;
}

/** Static settings of the reconciler. */
export interface ReconcilerConfig {
  /** Allow `http://` token URLs (development on loopback only; SPEC §3.9). */
  allowInsecureTokenUrl: boolean;
  /** Lifetime assumed when a response has neither `expires_in` nor a JWT `exp`, seconds. */
  fallbackLifetimeSeconds?: number;
  /** Re-check interval for conditions that no event announces (e.g. a missing credentials Secret), ms. */
  recheckMs: number;
  /** The HMAC key of target Secret fingerprints (`loadFingerprintKey`, src/controller/fingerprint-key.ts). */
  fingerprintKey: Uint8Array;
  /**
   * Factor applied to every failure backoff (bases and caps; a server's own `Retry-After` is
   * honoured as sent, only its cap is scaled). TEST-ONLY (`backoffScaleFromEnv` in
   * src/renewal/backoff.ts); default 1, the production figures.
   */
  backoffScale?: number;
}

/** Dependencies of the reconciler: adapters and clock, all injectable. */
export interface ReconcilerDeps {
  /** NexarToken from the informer cache by `namespace/name`. */
  getNexarToken(key: string): NexarToken | undefined;
  /** Target and credentials Secrets (reads, writes with the 409 re-read). */
  secrets: SecretsApi;
  /** The status subresource. */
  statuses: StatusApi;
  tokens: TokenSource;
  /**
   * resourceVersion of Secret `namespace/name` as the metadata-only Secret watch last saw it;
   * undefined when the watch has not seen it. Lets the reconciler skip reading Secrets it already
   * knows at that version (credentials shared by many NexarTokens, its own target Secrets).
   */
  secretVersion?: (key: string) => string | undefined;
  events: EventRecorder;
  metrics: Metrics;
  logger: Logger;
  config: ReconcilerConfig;
  now?: () => number;
  random?: () => number;
}

/**
 * The reconcile loop body for one NexarToken, controller-runtime's Reconciler contract:
 * level-based (it reads the world, compares it with the spec and acts; safe to call any number of
 * times), keyed by `namespace/name`, errors become rate-limited requeues. One call:
 *
 * 1. **gathers** (read-only): the NexarToken and its status from the informer, the spec resolved,
 *    the credentials value, the target Secret (skipped while the watch shows it unchanged), the
 *    token held in memory;
 * 2. **decides** (`decide` in decide.ts, pure): fetch or not and why, the Secret write plan, the
 *    next status, the Events, the requeue time — and, after a fetch, once more with its outcome;
 * 3. **applies**: fetches through the issuer, writes the Secret (only if it differs; a 409 is
 *    re-read and retried in the adapter), records Events, writes status (only if it differs).
 *
 * A failure never removes a valid token from the Secret (SPEC §3.4).
 * @throws on API errors (and on a 409 that persists), which the caller turns into rate-limited
 *   requeues: nothing is dropped from the queue.
 */
export class Reconciler {
  private readonly d: ReconcilerDeps;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly backoffScale: number;
  private readonly credentials: CredentialsCache;
  /**
   * The token held per NexarToken (with its fingerprint and renewal time). Saves a token request
   * when the target Secret is deleted or edited (drift repair restores it without a fetch), and
   * the GET of the target Secret on every reconcile (with {@link verified}).
   */
  private readonly held = new Map<string, HeldToken>();
  /**
   * The status this process last wrote per NexarToken, with the resourceVersion the API server
   * answered, while the informer has not delivered it yet. Saves a second token request (a
   * reconcile woken meanwhile would act on the old `observedGeneration` or `lastRefreshRequest`)
   * and a status write undoing the last one; dropped as soon as the informer catches up.
   */
  private readonly written = new Map<string, { uid: string; resourceVersion: string; status: TokenStatus }>();
  /**
   * Per NexarToken: its target Secret's resourceVersion after this process's last write or read,
   * the digest of the desired Secret it was checked against, and the generation. Saves the GET
   * (and the write) of the target Secret while the watch reports that resourceVersion, and the
   * reconcile of our own write's watch echo ({@link knowsTargetVersion}).
   */
  private readonly verified = new Map<string, VerifiedTarget>();
  /**
   * Target Secrets listed at start-up ({@link prime}) by `namespace/name`, consumed on first use.
   * Saves one GET per NexarToken after a restart (one paginated LIST instead).
   */
  private readonly primed = new Map<string, Secret>();

  constructor(deps: ReconcilerDeps) {
    this.d = deps;
    this.now = deps.now ?? Date.now;
    this.random = deps.random ?? Math.random;
    const scale = deps.config.backoffScale ?? 1;
    this.backoffScale = Number.isFinite(scale) && scale > 0 ? scale : 1;
    this.credentials = new CredentialsCache(deps.secrets, deps.tokens, {
      fingerprintKey: deps.config.fingerprintKey,
      versionOf: deps.secretVersion,
      fallbackLifetimeSeconds: deps.config.fallbackLifetimeSeconds,
    });
  }

  /** Reconciles `namespace/name`: gather → decide → apply. */
  async reconcile(key: string): Promise<Result> {
    const input = await this.gather(key);
    if (!input) return {};
    let decision = decide(input);
    let reported: Promise<TokenStatus> | undefined;
    const plan = decision.fetch;
    if (plan) {
      const held = decision.hold ?? input.held;
      this.remember(key, decision);
      const fetched = await this.fetch(input, plan, held);
      reported = fetched.reported;
      decision = decide({ ...input, held, fetched: { plan, outcome: fetched.outcome } });
    }
    return this.apply(input, decision, reported);
  }

  /**
   * True when `resourceVersion` is the one this process last wrote or read for the target Secret
   * of NexarToken `key` (a `namespace/name` key): a watch event carrying it reports nothing new,
   * e.g. the echo of our own create, so it needs no reconcile. Pure lookup.
   */
  knowsTargetVersion(key: string, resourceVersion: string): boolean {
    return this.verified.get(key)?.rv === resourceVersion;
  }

  /** Forgets in-memory state of a deleted NexarToken. */
  forget(key: string): void {
    this.held.delete(key);
    this.written.delete(key);
    this.verified.delete(key);
  }

  /**
   * Offers a target Secret listed at start-up (one paginated LIST of managed Secrets instead of
   * one GET per NexarToken); used by the first reconcile of its owner if the watch still reports
   * the same resourceVersion, then dropped.
   */
  prime(secret: Secret): void {
    const { namespace, name } = secret.metadata;
    if (namespace && name) this.primed.set(objectKey(namespace, name), secret);
  }

  /** Drops primed Secrets nobody used (call once the first pass of reconciles is done). */
  clearPrimed(): void {
    this.primed.clear();
  }

  /**
   * The informer delivered `nt` (add or update): the status this process wrote for it is dropped
   * once the informer's copy has caught up with it (or belongs to another uid), since from then on
   * {@link currentStatus} reads the informer's copy — keeping both would hold every NexarToken's
   * status twice (~0.8 KB each).
   */
  observed(key: string, nt: NexarToken): void {
    const w = this.written.get(key);
    if (w && !writtenIsNewer(w, nt.metadata)) this.written.delete(key);
  }

  /** Gather: everything {@link decide} looks at, read from the caches and adapters; undefined when the NexarToken is gone. */
  private async gather(key: string): Promise<ReconcileInput | undefined> {
    const nt = this.d.getNexarToken(key);
    if (!nt || nt.metadata.deletionTimestamp) {
      this.forget(key);
      return undefined;
    }
    const base = {
      key,
      nt,
      status: this.currentStatus(key, nt),
      ownerExists: (k: string) => this.d.getNexarToken(k) !== undefined,
      held: this.held.get(key),
      config: { recheckMs: this.d.config.recheckMs, backoffScale: this.backoffScale },
    };
    const valid = validateNexarToken(nt, { allowInsecureTokenUrl: this.d.config.allowInsecureTokenUrl });
    if (!valid.ok) return { ...base, spec: valid, nowMs: this.now(), jitter: this.random() };
    const credentials = await this.credentials.get(nt.metadata.namespace ?? "", valid.spec);
    const usable = credentials.found && !("error" in credentials);
    const target = usable ? await this.readTarget(key, nt, valid.spec) : undefined;
    return { ...base, spec: valid, credentials, target, nowMs: this.now(), jitter: this.random() };
  }

  /** The target Secret: not read while the watch reports the version this process knows, else primed or one GET. */
  private async readTarget(key: string, nt: NexarToken, spec: ResolvedSpec): Promise<TargetView> {
    const ns = nt.metadata.namespace ?? "";
    const targetKey = objectKey(ns, spec.target.name);
    const seenRv = this.d.secretVersion?.(targetKey);
    const primed = this.primed.get(targetKey);
    if (primed) this.primed.delete(targetKey);
    const known = this.verified.get(key);
    if (
      known !== undefined &&
      seenRv !== undefined &&
      known.rv === seenRv &&
      known.generation === (nt.metadata.generation ?? 0) &&
      this.held.has(key)
    ) {
      return { state: "unchanged", known };
    }
    if (primed && seenRv !== undefined && primed.metadata.resourceVersion === seenRv) {
      return { state: "read", secret: primed };
    }
    // The watch has never seen it: create (a 409 is re-read by the write).
    if (this.d.secretVersion && seenRv === undefined) return { state: "read", secret: undefined };
    return { state: "read", secret: await this.d.secrets.get(ns, spec.target.name) };
  }

  /**
   * The NexarToken's status as this process knows it: the informer's copy, unless the status this
   * process wrote last is newer (its resourceVersion is higher).
   */
  private currentStatus(key: string, nt: NexarToken): TokenStatus {
    const w = this.written.get(key);
    if (w) {
      if (writtenIsNewer(w, nt.metadata)) return w.status;
      this.written.delete(key); // the informer has caught up (see observed)
    }
    return nt.status ?? {};
  }

  /**
   * Apply, part 1: the fetch `plan` asks for, through the issuer (shared tokens, the issuance
   * limiter, the refresh-token guard). A wait for the limiter is reported in status while it
   * lasts; `reported` resolves with the last status so written.
   * @throws what the issuer throws other than a `TokenEndpointError` (API errors, shutdown).
   */
  private async fetch(
    input: ReconcileInput,
    plan: FetchPlan,
    held: HeldToken | undefined,
  ): Promise<{ outcome: FetchOutcome; reported: Promise<TokenStatus> | undefined }> {
    const { nt } = input;
    const creds = input.credentials as CredentialsValue;
    const spec = (input.spec as { spec: ResolvedSpec }).spec;
    const log = this.d.logger.child({ nexartoken: input.key });
    log.debug({ reason: plan.reason }, plan.message);
    let reported: Promise<TokenStatus> | undefined;
    const ctx: FetchContext = {
      reason: plan.shareReason,
      renewBefore: spec.renewBefore,
      onWaiting: (w) => {
        log.info({ until: rfc3339(w.untilMs) }, "token request queued by the issuance limiter");
        const waiting = limiterWaitStatus(input, plan, held, creds.fingerprint, w.untilMs, this.now());
        if (!waiting) return;
        const previous = reported ?? Promise.resolve(input.status);
        reported = previous.then((base) =>
          this.writeStatus(nt, base, waiting).then(
            () => waiting,
            (err: unknown) => {
              log.debug({ err: (err as Error).message }, "could not report the limiter wait");
              return base;
            },
          ),
        );
      },
      refreshTokens: creds.refreshToken ? refreshTokenStore(this.d.secrets, creds.refreshToken, log) : undefined,
    };
    const started = this.now();
    try {
      const token = await this.d.tokens.fetchToken(creds.credential, ctx);
      const atMs = this.now();
      return { outcome: { ok: true, token, atMs, ms: atMs - started }, reported };
    } catch (err) {
      if (!(err instanceof TokenEndpointError)) throw err;
      const atMs = this.now();
      const { kind, reason, message, retryAfterHeader } = err;
      return {
        outcome: {
          ok: false,
          error: { kind, reason, message, retryAfterHeader },
          retryAfterMs: parseRetryAfter(retryAfterHeader, atMs),
          atMs,
        },
        reported,
      };
    }
  }

  /**
   * Apply, part 2: the decision's memory, Events and metrics, the Secret write, then status
   * (against `reported`, the last status a limiter report wrote, so a late report never
   * overwrites the outcome).
   */
  private async apply(input: ReconcileInput, d: Decision, reported?: Promise<TokenStatus>): Promise<Result> {
    const { key, nt } = input;
    const ns = nt.metadata.namespace ?? "";
    const log = this.d.logger.child({ nexartoken: key });
    this.remember(key, d);
    for (const e of d.events) {
      if (e.type === "Normal") this.d.events.normal(nt, e.reason, e.note);
      else this.d.events.warn(nt, e.reason, e.note);
    }
    if (d.issued) this.d.metrics.refresh(ns, "success", d.issued.reason);
    if (d.failed) {
      const { reason, kind, attempts, retryInMs, nextAttemptAt, retryAfterMs, message } = d.failed;
      this.d.metrics.refresh(ns, "failure", reason);
      log.warn(
        { reason, kind, attempts, retryInMs, nextAttemptAt, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) },
        `token request failed: ${message}`,
      );
    }
    // The "token issued" line is logged once, with the Secret write when there is one.
    let issued: Record<string, unknown> | undefined = d.issued && { ...d.issued };
    const logIssued = (extra: Record<string, unknown> = {}): void => {
      if (issued) log.info({ ...issued, ...extra }, "token issued");
      issued = undefined;
    };
    if (d.secret) {
      const spec = (input.spec as { spec: ResolvedSpec }).spec;
      let written: SecretWriteResult | { conflict: string };
      try {
        written = await this.publish(nt, spec.target.name, d.secret);
      } catch (err) {
        logIssued();
        throw err;
      }
      if ("conflict" in written) {
        this.verified.delete(key);
        logIssued();
        const c = secretConflict(input, written.conflict);
        for (const e of c.events) this.d.events.warn(nt, e.reason, e.note);
        await this.writeStatus(nt, await (reported ?? input.status), c.status);
        return {};
      }
      if (issued) logIssued({ secret: spec.target.name, action: written.action });
      else if (written.action !== "none")
        log.info({ secret: spec.target.name, action: written.action }, "target Secret written");
      if (written.resourceVersion !== undefined) {
        this.verified.set(key, {
          rv: written.resourceVersion,
          digest: d.secret.digest,
          generation: nt.metadata.generation ?? 0,
        });
      } else this.verified.delete(key);
    }
    logIssued(); // issued without a Secret write (none was needed, or the token had already expired)
    await this.writeStatus(nt, await (reported ?? input.status), d.status);
    return d.requeueAtMs === undefined ? {} : { requeueAfterMs: Math.max(0, d.requeueAtMs - this.now()) };
  }

  /** The memory a decision leaves: the token held. */
  private remember(key: string, d: Decision): void {
    if (d.hold) this.held.set(key, d.hold);
  }

  /**
   * Brings the target Secret to the plan. When it was not read (unchanged since our last write)
   * it is read first; the watch may lag, so a Secret replaced meanwhile (deleted and re-created by
   * someone else) must pass the ownership rules again before we write (SPEC §3.6).
   */
  private async publish(
    nt: NexarToken,
    name: string,
    plan: SecretPlan,
  ): Promise<SecretWriteResult | { conflict: string }> {
    const ns = nt.metadata.namespace ?? "";
    let current = plan.current;
    if (plan.readFirst) {
      current = await this.d.secrets.get(ns, name);
      if (current && current.metadata.resourceVersion !== plan.knownRv) {
        const again = plan.owns(current);
        if (!again.ok) return { conflict: again.message };
      }
    }
    return this.d.secrets.write(ns, name, current, plan.plan, (c) => plan.owns(c).ok);
  }

  /**
   * Writes status with a merge patch on the status subresource, only when it differs from `base`
   * (the status as this process knows it, see {@link currentStatus}), and remembers the result.
   */
  private async writeStatus(nt: NexarToken, base: TokenStatus, next: TokenStatus): Promise<void> {
    const clean = Object.fromEntries(Object.entries(next).filter(([, v]) => v !== undefined)) as TokenStatus;
    if (statusEqual(base, clean)) return;
    const res = await this.d.statuses.patch(
      nt.metadata.namespace ?? "",
      nt.metadata.name ?? "",
      statusPatch(base, clean),
    );
    if (!res) return; // deleted meanwhile
    const rv = res.metadata?.resourceVersion;
    if (rv !== undefined && res.metadata.uid === nt.metadata.uid) {
      const key = keyOf(nt);
      const w = { uid: res.metadata.uid as string, resourceVersion: rv, status: res.status ?? {} };
      // Kept only while the informer lags behind the write (its echo often arrives first; a
      // NexarToken gone from the informer has been deleted).
      const cached = this.d.getNexarToken(key);
      if (cached && writtenIsNewer(w, cached.metadata)) this.written.set(key, w);
      else this.written.delete(key);
    }
    this.d.metrics.statusWrite();
  }
}

/**
 * Whether the status this process wrote (`w`: uid and resourceVersion of the write's response) is
 * newer than the informer's copy of the object (`meta`): same uid and a higher resourceVersion.
 * resourceVersions are compared as integers (etcd revisions); when either is not one, false (the
 * informer's copy wins). Kubernetes API conventions call resourceVersions opaque: this relies on
 * kube-apiserver's etcd3 storage, as client-go's watch cache does.
 */
export function writtenIsNewer(
  w: { uid: string; resourceVersion: string },
  meta: { uid?: string; resourceVersion?: string },
): boolean {
  if (w.uid !== meta.uid) return false;
  const a = asRevision(meta.resourceVersion);
  const b = asRevision(w.resourceVersion);
  return a !== undefined && b !== undefined && b > a;
}

/** A resourceVersion as an integer (etcd revision), or undefined when it is not one. */
function asRevision(rv: string | undefined): bigint | undefined {
  return rv !== undefined && /^\d{1,20}$/.test(rv) ? BigInt(rv) : undefined;
}
