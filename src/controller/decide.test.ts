/**
 * Decide, table-driven: one case per row of docs/behaviour.md (more where a row branches). Each
 * case gives the inputs, the fetch the first decision asks for (with its reason), the outcome of
 * that fetch, and the expected decision: Ready condition and reason, status fields, Events, the
 * Secret write and the requeue time. The last test checks that every row of docs/behaviour.md
 * is covered here, or names the test that covers it where Decide has no part in it.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ANNOTATION_REFRESH_REQUESTED_AT, API_VERSION, KIND } from "../api/constants.ts";
import type { NexarToken } from "../api/types.ts";
import { validateNexarToken } from "../api/validate.ts";
import type { Secret } from "../kube/client.ts";
import { renewalTimeMs, type IssuanceReason } from "../renewal/index.ts";
import { desiredSecret, planSecretWrite, type ResolvedTarget } from "../secrets/desired.ts";
import type { CredentialsRead } from "./credentials.ts";
import {
  decide,
  limiterWaitStatus,
  secretConflict,
  type Decision,
  type FetchOutcome,
  type HeldToken,
  type ReconcileInput,
  type TargetView,
} from "./decide.ts";
import type { Condition, TokenStatus } from "./status.ts";

const S = 1000;
const MIN = 60 * S;
const H = 60 * MIN;
const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const FP = "fp-now";
const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
/** RFC 3339, second precision (an independent copy of what status uses). */
const iso = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");

function nexarToken(
  o: { generation?: number; refresh?: string; spec?: Record<string, unknown>; target?: Record<string, unknown> } = {},
): NexarToken {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      namespace: "parts",
      name: "supply",
      uid: "uid-1",
      generation: o.generation ?? 1,
      resourceVersion: "100",
      ...(o.refresh !== undefined ? { annotations: { [ANNOTATION_REFRESH_REQUESTED_AT]: o.refresh } } : {}),
    },
    spec: {
      scopes: ["supply.domain"],
      credentialsSecretRef: { name: "nexar-app" },
      ...o.spec,
      ...(o.target ? { target: o.target } : {}),
    },
  } as NexarToken;
}

function credentials(o: { fingerprint?: string; grant?: "ClientCredentials" | "RefreshToken" } = {}): CredentialsRead {
  const grant = o.grant ?? "ClientCredentials";
  return {
    found: true,
    ref: "parts/nexar-app",
    resourceVersion: "7",
    credential: {
      request: {
        tokenUrl: "https://identity.nexar.com/connect/token",
        grant,
        clientAuthentication: "ClientSecretPost",
        clientId: "app",
        clientSecret: "s3cret",
        scopes: ["supply.domain"],
      },
      keys: { share: "share", client: "client", secret: "secret" },
    },
    fingerprint: o.fingerprint ?? FP,
    legacyFingerprint: "fp-legacy",
    lineage: undefined,
    refreshToken: grant === "RefreshToken" ? { namespace: "parts", name: "nexar-app", key: "refreshToken" } : undefined,
  };
}

/** A token held in memory: received 12 h ago, valid 12 h more, renewal in 4 h. */
const HELD: HeldToken = {
  accessToken: "at-held",
  tokenType: "Bearer",
  scopes: ["supply.domain"],
  receivedAtMs: T0 - 12 * H,
  expiresAtMs: T0 + 12 * H,
  fingerprint: FP,
  renewAtMs: T0 + 4 * H,
};
const HELD_OLD: HeldToken = { ...HELD, fingerprint: "fp-old" };

function readyCondition(status: Condition["status"], reason: string, sinceMs = T0 - 12 * H): Condition {
  return {
    type: "Ready",
    status,
    reason,
    message: "as written before",
    lastTransitionTime: iso(sinceMs),
    observedGeneration: 1,
  };
}

/** The status after the token `held` was issued. */
function healthy(held: HeldToken = HELD, over: Partial<TokenStatus> = {}): TokenStatus {
  return {
    observedGeneration: 1,
    conditions: [readyCondition("True", "TokenIssued")],
    expiresAt: iso(held.expiresAtMs),
    renewalTime: iso(held.renewAtMs),
    lastRefreshTime: iso(held.receivedAtMs as number),
    grantedScopes: [...held.scopes],
    failedAttempts: 0,
    secretName: "supply",
    ...over,
  };
}

/** `base` after `n` consecutive failures, the last at `atMs`, reported with `ready`. */
function failing(
  n: number,
  reason: string,
  atMs: number,
  ready: [Condition["status"], string],
  base: TokenStatus = healthy(),
): TokenStatus {
  return {
    ...base,
    failedAttempts: n,
    lastFailureTime: iso(atMs),
    lastFailureReason: reason,
    conditions: [readyCondition(ready[0], ready[1], atMs)],
  };
}

/** The status of a NexarToken that never got a token. */
const NEVER: TokenStatus = { observedGeneration: 1, secretName: "supply" };

/** What status records of the fetch that failed: its inputs' fingerprint and the refresh request it answered. */
function failedFor(o: { fingerprint?: string; refreshRequest?: string } = {}): Partial<TokenStatus> {
  return { lastFailureFingerprint: o.fingerprint ?? FP, lastFailureRefreshRequest: o.refreshRequest };
}

function resolvedTarget(target?: Record<string, unknown>): ResolvedTarget {
  const v = validateNexarToken(nexarToken({ target }));
  if (!v.ok) throw new Error(v.errors.join("; "));
  return v.spec.target;
}

/** The target Secret as this operator writes it for `held` (resourceVersion 5). */
function written(held: HeldToken = HELD, target?: Record<string, unknown>): Secret {
  const t = resolvedTarget(target);
  const d = desiredSecret(
    { apiVersion: API_VERSION, kind: KIND, namespace: "parts", name: "supply", uid: "uid-1" },
    t,
    held,
    held.fingerprint,
  );
  const p = planSecretWrite(undefined, d, t.creationPolicy);
  if (p.action !== "create") throw new Error("expected a create");
  return { ...p.secret, metadata: { ...p.secret.metadata, resourceVersion: "5" } };
}

function edited(s: Secret, edit: (s: Secret) => void): Secret {
  const copy = structuredClone(s);
  edit(copy);
  return copy;
}

function input(o: Partial<ReconcileInput> = {}): ReconcileInput {
  const nt = o.nt ?? nexarToken();
  const v = validateNexarToken(nt, { allowInsecureTokenUrl: false });
  return {
    key: "parts/supply",
    nt,
    status: healthy(),
    spec: v.ok ? { ok: true, spec: v.spec } : v,
    credentials: credentials(),
    target: "target" in o ? o.target : unchanged(HELD),
    ownerExists: (k) => k === "parts/supply" || k === "parts/other",
    held: HELD,
    nowMs: T0,
    jitter: 0.5,
    config: { recheckMs: 60_000, backoffScale: 1 },
    ...o,
  };
}

const read = (secret: Secret | undefined): TargetView => ({ state: "read", secret });

/** The target as "unchanged since our last write of `held`": its digest as Decide computes it. */
function unchanged(held: HeldToken, target?: Record<string, unknown>): TargetView {
  const probe = decide(
    input({
      nt: nexarToken({ target }),
      credentials: credentials({ fingerprint: held.fingerprint }),
      target: read(written(held, target)),
      held,
      nowMs: Math.min(held.renewAtMs, held.expiresAtMs) - 1,
    }),
  );
  if (!probe.secret)
    throw new Error(`no digest: ${JSON.stringify({ fetch: probe.fetch, ready: probe.status.conditions })}`);
  return { state: "unchanged", known: { rv: "5", digest: probe.secret.digest, generation: 1 } };
}

/** A fetch that ends 1 s after it started with a token of `lifetimeMs`, received then. */
const ok =
  (lifetimeMs = 24 * H) =>
  (nowMs: number): FetchOutcome => ({
    ok: true,
    token: {
      accessToken: "at-new",
      tokenType: "Bearer",
      scopes: ["supply.domain"],
      receivedAtMs: nowMs + S,
      expiresAtMs: nowMs + S + lifetimeMs,
      lifetimeSource: "expires_in",
    },
    atMs: nowMs + S,
    ms: S,
  });
/** A fetch that fails 1 s after it started. */
const fail =
  (kind: "credential" | "transient" | "rateLimited", reason: string, retryAfterMs?: number) =>
  (nowMs: number): FetchOutcome => ({
    ok: false,
    error: { kind, reason, message: `${reason} detail` },
    retryAfterMs,
    atMs: nowMs + S,
  });
/** Renewal of a 24 h token received at `at` with the default renewBefore (a third) and jitter 0.5: 16 h − 150 s. */
const renewal24h = (at: number) => at + 16 * H - 150 * S;

interface Want {
  /** The first decision asks to fetch for this reason (absent: it does not fetch). */
  fetch?: IssuanceReason;
  /** …and tells the issuer this reason. */
  shareReason?: IssuanceReason;
  ready: [Condition["status"], string];
  message?: string | RegExp;
  status?: Partial<TokenStatus>;
  /** Requeue instant, epoch ms; undefined: only on an event. */
  requeueAtMs: number | undefined;
  /** `Type Reason` of each Event, in order. */
  events?: string[];
  /** The Secret write: a plan's action, "read first" (not read: read, then plan), or absent (none planned). */
  write?: "create" | "update" | "recreate" | "none" | "read first";
  /** The failure record in status: written (for these inputs), cleared, or kept as it was. */
  lastFailure?: "set" | "cleared" | "kept";
  /** Further checks of the final decision. */
  check?: (d: Decision) => void;
}

interface Case {
  /** The rows of docs/behaviour.md (their first cell) or the rule of its prose this case shows. */
  rows: string[];
  name: string;
  /** The input; `failedFor` is merged into its status (what the failed fetch was for). */
  in: Partial<ReconcileInput> & { failedFor?: Partial<TokenStatus> };
  /** The outcome of the fetch the first decision asks for, given the input's clock. */
  outcome?: (nowMs: number) => FetchOutcome;
  want: Want;
}

const DUE = T0 + 4 * H; // HELD's renewal time
/** HELD's renewal time with `renewBefore: 6h` (jitter 0.5). */
const RENEW_6H = renewalTimeMs(HELD, { kind: "Duration", seconds: 6 * 3600 }, 0.5, T0);
const A_DUE = DUE + S; // when a fetch started at DUE ends

const CASES: Case[] = [
  // ── Token endpoint failures ─────────────────────────────────────────────────────────────────
  {
    rows: ["5xx (JSON, text or HTML body), 408", "transient", "`TokenRequestFailed`"],
    name: "renewal due, token still valid: Ready True RenewalFailing, retry after d/2–d (1.5 s), token kept",
    in: { nowMs: DUE },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "RenewalDue",
      shareReason: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      message: `token valid until ${iso(HELD.expiresAtMs)}; renewal failed (TokenEndpointUnavailable), retrying`,
      status: {
        failedAttempts: 1,
        lastFailureReason: "TokenEndpointUnavailable",
        lastFailureTime: iso(A_DUE),
        expiresAt: iso(HELD.expiresAtMs),
      },
      requeueAtMs: A_DUE + 1_500,
      events: ["Warning TokenRequestFailed"],
      lastFailure: "set",
    },
  },
  {
    rows: ["5xx (JSON, text or HTML body), 408"],
    name: "no valid token: Ready False TokenEndpointUnavailable",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "NoToken",
      ready: ["False", "TokenEndpointUnavailable"],
      message: "TokenEndpointUnavailable detail",
      status: { failedAttempts: 1, observedGeneration: 1, secretName: "supply", expiresAt: undefined },
      requeueAtMs: T0 + S + 1_500,
      events: ["Warning TokenRequestFailed"],
      lastFailure: "set",
    },
  },
  {
    rows: ["request timeout (`--request-timeout`, default 15 s: connect, headers, body, total)"],
    name: "no valid token: Ready False Timeout",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: fail("transient", "Timeout"),
    want: {
      fetch: "NoToken",
      ready: ["False", "Timeout"],
      status: { lastFailureReason: "Timeout" },
      requeueAtMs: T0 + S + 1_500,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["connection reset / refused, DNS, TLS"],
    name: "token still valid: Ready True RenewalFailing",
    in: { nowMs: DUE },
    outcome: fail("transient", "ConnectionFailed"),
    want: {
      fetch: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      status: { lastFailureReason: "ConnectionFailed" },
      requeueAtMs: A_DUE + 1_500,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["HTML (or any non-JSON) body under 200, empty body"],
    name: "transient InvalidResponse, no token: Ready False InvalidResponse, short backoff",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: fail("transient", "InvalidResponse"),
    want: {
      fetch: "NoToken",
      ready: ["False", "InvalidResponse"],
      requeueAtMs: T0 + S + 1_500,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["body larger than 1 MiB (e.g. 5 MiB)"],
    name: "token still valid: Ready True RenewalFailing",
    in: { nowMs: DUE },
    outcome: fail("transient", "ResponseTooLarge"),
    want: {
      fetch: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      status: { lastFailureReason: "ResponseTooLarge" },
      requeueAtMs: A_DUE + 1_500,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["429 with or without `Retry-After`", "rate limited"],
    name: "with Retry-After: the server's delay as sent; token still valid: Ready True RenewalFailing",
    in: { nowMs: DUE },
    outcome: fail("rateLimited", "RateLimited", 5 * S),
    want: {
      fetch: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      status: { lastFailureReason: "RateLimited" },
      requeueAtMs: A_DUE + 5 * S,
      events: ["Warning TokenRequestFailed"],
      check: (d) => expect(d.status.nextAttemptTime).toBe(new Date(A_DUE + 5 * S).toISOString()),
    },
  },
  {
    rows: ["429 with or without `Retry-After`", "rate limited"],
    name: "without Retry-After: 30 s · 2^(n−1), jittered (22.5 s); no token: Ready False RateLimited",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: fail("rateLimited", "RateLimited"),
    want: {
      fetch: "NoToken",
      ready: ["False", "RateLimited"],
      requeueAtMs: T0 + S + 22_500,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`invalid_client` (400 or 401)", "credential"],
    name: "token still valid: Ready FALSE InvalidClient, 5 min backoff, the token stays published",
    in: { nowMs: DUE },
    outcome: fail("credential", "InvalidClient"),
    want: {
      fetch: "RenewalDue",
      ready: ["False", "InvalidClient"],
      message: "InvalidClient detail",
      status: { failedAttempts: 1, expiresAt: iso(HELD.expiresAtMs) },
      requeueAtMs: A_DUE + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`invalid_client` (400 or 401)"],
    name: "no token: Ready False InvalidClient",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: fail("credential", "InvalidClient"),
    want: {
      fetch: "NoToken",
      ready: ["False", "InvalidClient"],
      requeueAtMs: T0 + S + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`unauthorized_client`, `unsupported_grant_type`"],
    name: "Ready False UnauthorizedClient, long backoff",
    in: { nowMs: DUE },
    outcome: fail("credential", "UnauthorizedClient"),
    want: {
      fetch: "RenewalDue",
      ready: ["False", "UnauthorizedClient"],
      requeueAtMs: A_DUE + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`invalid_scope` (fault, or a scope the server does not grant)"],
    name: "Ready False InvalidScope, long backoff",
    in: { nowMs: DUE },
    outcome: fail("credential", "InvalidScope"),
    want: {
      fetch: "RenewalDue",
      ready: ["False", "InvalidScope"],
      requeueAtMs: A_DUE + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`invalid_grant` (refresh token revoked or reused)"],
    name: "ClientCredentials grant: Ready False InvalidGrant",
    in: { nowMs: DUE },
    outcome: fail("credential", "InvalidGrant"),
    want: {
      fetch: "RenewalDue",
      ready: ["False", "InvalidGrant"],
      status: { lastFailureReason: "InvalidGrant" },
      requeueAtMs: A_DUE + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`invalid_grant` (refresh token revoked or reused)", "RefreshToken grant"],
    name: "RefreshToken grant: Ready False RefreshTokenInvalid, naming the login command",
    in: {
      nt: nexarToken({ spec: { grant: "RefreshToken", scopes: ["design.domain"] } }),
      credentials: credentials({ grant: "RefreshToken" }),
      held: undefined,
      target: read(undefined),
      status: {},
    },
    outcome: fail("credential", "InvalidGrant"),
    want: {
      fetch: "NoToken",
      ready: ["False", "RefreshTokenInvalid"],
      message: /InvalidGrant detail.*nexar-token-operator login --namespace parts --secret nexar-app/,
      status: { lastFailureReason: "RefreshTokenInvalid" },
      requeueAtMs: T0 + S + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: ["`access_denied`; 401/403 with a JSON or empty body"],
    name: "Ready False AccessDenied, long backoff",
    in: { nowMs: DUE },
    outcome: fail("credential", "AccessDenied"),
    want: {
      fetch: "RenewalDue",
      ready: ["False", "AccessDenied"],
      requeueAtMs: A_DUE + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },
  {
    rows: [
      "other OAuth error code on a 4xx (`invalid_request` …)",
      "200 JSON with `expires_in` ≤ 0, > 7 days, or not a number",
    ],
    name: "credential-class InvalidResponse with a valid token: Ready False, credential backoff",
    in: { nowMs: DUE },
    outcome: fail("credential", "InvalidResponse"),
    want: {
      fetch: "RenewalDue",
      ready: ["False", "InvalidResponse"],
      requeueAtMs: A_DUE + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
      check: (d) => expect(d.status.nextAttemptTime).toBe(new Date(A_DUE + 5 * MIN).toISOString()),
    },
  },
  {
    rows: ["200 JSON without `access_token`, or `token_type` other than Bearer"],
    name: "no token: Ready False InvalidResponse, credential backoff",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: fail("credential", "InvalidResponse"),
    want: {
      fetch: "NoToken",
      ready: ["False", "InvalidResponse"],
      requeueAtMs: T0 + S + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
    },
  },

  // ── Not failures ────────────────────────────────────────────────────────────────────────────
  {
    rows: ["`expires_in` missing", "`TokenIssued`", "`Owner` (default)"],
    name: "a new NexarToken gets a 1 h (fallback lifetime) token: Secret created with an ownerReference, renewal at 40 min − jitter",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: ok(1 * H),
    want: {
      fetch: "NoToken",
      shareReason: "NoToken",
      ready: ["True", "TokenIssued"],
      message: `Secret "supply" holds a token valid until ${iso(T0 + S + H)}; renewal at ${iso(T0 + S + 40 * MIN - 60 * S)}`,
      status: {
        lastRefreshTime: iso(T0 + S),
        expiresAt: iso(T0 + S + H),
        renewalTime: iso(T0 + S + 40 * MIN - 60 * S),
        grantedScopes: ["supply.domain"],
        failedAttempts: 0,
        observedGeneration: 1,
        secretName: "supply",
      },
      requeueAtMs: T0 + S + 40 * MIN - 60 * S,
      events: ["Normal TokenIssued"],
      write: "create",
      lastFailure: "cleared",
      check: (d) => {
        const p = d.secret?.plan(undefined);
        expect(p?.action === "create" && p.secret.metadata.ownerReferences).toEqual([
          { apiVersion: API_VERSION, kind: KIND, name: "supply", uid: "uid-1", controller: true },
        ]);
        expect(d.hold?.accessToken).toBe("at-new");
        expect(d.events[0]?.note).toContain(new Date(T0 + S + H).toISOString());
      },
    },
  },
  {
    rows: ["`expires_in` shorter than `renewBefore` (or `renewBefore` ≥ the lifetime)"],
    name: "a 20 s token with renewBefore 1h renews after ~10 s (lifetime/2 − jitter), never in a loop",
    in: { nt: nexarToken({ spec: { renewBefore: "1h" } }), held: undefined, target: read(undefined), status: {} },
    outcome: ok(20 * S),
    want: {
      fetch: "NoToken",
      ready: ["True", "TokenIssued"],
      requeueAtMs: T0 + S + 9_500,
      events: ["Normal TokenIssued"],
      write: "create",
    },
  },
  {
    rows: ["a `Date` header hours off the local clock"],
    name: "renewal counts from the local receipt time of the token",
    in: { held: undefined, target: read(undefined), status: {} },
    outcome: ok(24 * H),
    want: {
      fetch: "NoToken",
      ready: ["True", "TokenIssued"],
      status: { renewalTime: iso(renewal24h(T0 + S)) },
      requeueAtMs: renewal24h(T0 + S),
      events: ["Normal TokenIssued"],
      write: "create",
    },
  },
  {
    rows: ["an outage shorter than `renewBefore`"],
    name: "the retry comes no later than half-way to the valid token's expiry",
    in: {
      nowMs: T0,
      held: { ...HELD, expiresAtMs: T0 + 30 * S, renewAtMs: T0 },
      target: unchanged({ ...HELD, expiresAtMs: T0 + 30 * S, renewAtMs: T0 }),
      status: failing(4, "TokenEndpointUnavailable", T0 - 20 * S, ["True", "RenewalFailing"]),
      failedFor: failedFor(),
    },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      status: { failedAttempts: 5 },
      // 5th delay 24 s nominal, clamped to half of the 29 s left: 14.5 s
      requeueAtMs: T0 + S + 14_500,
      events: ["Warning TokenRequestFailed"],
    },
  },

  {
    rows: ["an outage shorter than `renewBefore`"],
    name: "the backoff is measured against the valid token's remaining life: retried at once near expiry",
    in: {
      held: { ...HELD, expiresAtMs: T0 + 6 * S, renewAtMs: T0 - MIN },
      target: unchanged({ ...HELD, expiresAtMs: T0 + 6 * S, renewAtMs: T0 - MIN }),
      // the 4th delay (12 s) is clamped to half of the 6 s left: due now
      status: failing(4, "TokenEndpointUnavailable", T0 - 3 * S, ["True", "RenewalFailing"]),
      failedFor: failedFor(),
    },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      status: { failedAttempts: 5 },
      requeueAtMs: T0 + S + 2_500,
      events: ["Warning TokenRequestFailed"],
    },
  },

  // ── Expiry while renewals fail (prose under "Not failures") ─────────────────────────────────
  {
    rows: ["When the token lapses while renewals keep failing", "`Expired`"],
    name: "lapsed during a backoff: Ready False Expired naming the last failure, one Warning Expired, nothing written",
    in: {
      held: { ...HELD, expiresAtMs: T0 - S, renewAtMs: T0 - 10 * MIN },
      target: unchanged({ ...HELD, expiresAtMs: T0 - S, renewAtMs: T0 - 10 * MIN }),
      status: failing(3, "TokenEndpointUnavailable", T0 - 2 * S, ["True", "RenewalFailing"]),
      failedFor: failedFor(),
    },
    want: {
      ready: ["False", "Expired"],
      message: `token expired at ${iso(T0 - S)}; last failure: TokenEndpointUnavailable`,
      status: { failedAttempts: 3 },
      requeueAtMs: T0 + 4 * S, // 3rd delay: 6 s after the failure
      events: ["Warning Expired"],
      lastFailure: "kept",
    },
  },
  {
    rows: ["When the token lapses while renewals keep failing", "`Expired`"],
    name: "already reported Expired: no second Event",
    in: {
      held: { ...HELD, expiresAtMs: T0 - S, renewAtMs: T0 - 10 * MIN },
      target: unchanged({ ...HELD, expiresAtMs: T0 - S, renewAtMs: T0 - 10 * MIN }),
      status: failing(3, "TokenEndpointUnavailable", T0 - 2 * S, ["False", "Expired"]),
      failedFor: failedFor(),
    },
    want: { ready: ["False", "Expired"], requeueAtMs: T0 + 4 * S, events: [] },
  },
  {
    rows: ["When the token lapses while renewals keep failing"],
    name: "the first success after the lapse restores Ready True TokenIssued and clears the failure",
    in: {
      nowMs: T0 + 5 * S,
      held: { ...HELD, expiresAtMs: T0 - S, renewAtMs: T0 - 10 * MIN },
      target: unchanged({ ...HELD, expiresAtMs: T0 - S, renewAtMs: T0 - 10 * MIN }),
      status: failing(3, "TokenEndpointUnavailable", T0 - 2 * S, ["False", "Expired"]),
      failedFor: failedFor(),
    },
    outcome: ok(24 * H),
    want: {
      fetch: "Expired",
      ready: ["True", "TokenIssued"],
      status: { failedAttempts: 0, lastFailureReason: undefined, lastFailureTime: undefined },
      requeueAtMs: renewal24h(T0 + 6 * S),
      events: ["Normal TokenIssued"],
      write: "read first",
      lastFailure: "cleared",
    },
  },

  // ── Retries at once whatever the backoff; nothing else cuts it short (prose) ────────────────
  {
    rows: [
      "`tokenUrl`, `grant`, `clientAuthentication`, `credentialsSecretRef` (name or keys), `scopes`, `fallbackLifetime`",
      "Retries happen at once, whatever the backoff",
    ],
    name: "a spec change of what the token is fetched with, during a backoff, fetches at once (SpecChanged for the issuer); the count restarts",
    in: {
      nt: nexarToken({ generation: 2 }),
      credentials: credentials({ fingerprint: "fp-new-scopes" }),
      target: read(written(HELD)),
      status: failing(3, "InvalidClient", T0 - MIN, ["False", "InvalidClient"]),
      failedFor: failedFor(),
    },
    outcome: fail("credential", "InvalidClient"),
    want: {
      fetch: "SpecChanged",
      shareReason: "SpecChanged",
      ready: ["False", "InvalidClient"],
      status: { failedAttempts: 1, observedGeneration: 2, lastFailureFingerprint: "fp-new-scopes" },
      requeueAtMs: T0 + S + 5 * MIN,
      events: ["Warning TokenRequestFailed"],
      write: "none",
    },
  },
  {
    rows: [
      "`target` (`name`, `type`, `creationPolicy`, `labels`, `annotations`, `template`, `adopt`)",
      "Retries happen at once, whatever the backoff",
    ],
    name: "a spec change of nothing the token depends on, during a backoff, waits for it; the Secret is rewritten",
    in: {
      nowMs: DUE,
      nt: nexarToken({ generation: 2, target: { labels: { team: "parts" } } }),
      target: read(written(HELD)),
      status: failing(3, "InvalidClient", DUE - MIN, ["False", "InvalidClient"]),
      failedFor: failedFor(),
    },
    want: {
      ready: ["False", "InvalidClient"],
      status: { failedAttempts: 3, observedGeneration: 2 },
      requeueAtMs: DUE - MIN + 20 * MIN, // credential #3: 20 min
      events: [],
      write: "update",
      lastFailure: "kept",
    },
  },
  {
    rows: ["Retries happen at once, whatever the backoff", "a credential error (`invalid_client`, …)"],
    name: "a credentials change during a backoff fetches at once (CredentialsChanged for the issuer), with an Event",
    in: {
      held: undefined,
      target: read(undefined),
      status: failing(2, "InvalidClient", T0 - MIN, ["False", "InvalidClient"], NEVER),
      failedFor: failedFor({ fingerprint: "fp-wrong" }),
    },
    outcome: ok(24 * H),
    want: {
      fetch: "NoToken",
      shareReason: "CredentialsChanged",
      ready: ["True", "TokenIssued"],
      status: { failedAttempts: 0, lastFailureReason: undefined },
      requeueAtMs: renewal24h(T0 + S),
      events: ["Normal CredentialsChanged", "Normal TokenIssued"],
      write: "create",
      lastFailure: "cleared",
    },
  },
  {
    rows: ["Retries happen at once, whatever the backoff"],
    name: "a new refresh annotation during a backoff is attempted at once; the failure count goes on",
    in: {
      nt: nexarToken({ refresh: "r2" }),
      status: failing(
        2,
        "TokenEndpointUnavailable",
        T0 - S,
        ["True", "RenewalFailing"],
        healthy(HELD, { lastRefreshRequest: "r1" }),
      ),
      failedFor: failedFor({ refreshRequest: "r1" }),
    },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "RefreshRequested",
      shareReason: "RefreshRequested",
      ready: ["True", "RenewalFailing"],
      status: { failedAttempts: 3, lastRefreshRequest: "r1" },
      requeueAtMs: T0 + S + 6 * S,
      events: ["Warning TokenRequestFailed"],
      lastFailure: "set",
      check: (d) => expect(d.status.lastFailureRefreshRequest).toBe("r2"),
    },
  },
  {
    rows: ["Retries happen at once, whatever the backoff"],
    name: "the refresh annotation already attempted waits for the backoff (retried until a fetch succeeds)",
    in: {
      nt: nexarToken({ refresh: "r2" }),
      status: failing(
        2,
        "TokenEndpointUnavailable",
        T0 - S,
        ["True", "RenewalFailing"],
        healthy(HELD, { lastRefreshRequest: "r1" }),
      ),
      failedFor: failedFor({ refreshRequest: "r2" }),
    },
    want: {
      ready: ["True", "RenewalFailing"],
      status: { failedAttempts: 2 },
      requeueAtMs: T0 + 2 * S, // 2nd delay: 3 s after the failure
      lastFailure: "kept",
    },
  },
  {
    rows: [
      "Metadata-only or status-only edits, spec changes the token does not depend on, other Secrets' events and resyncs do not cut a backoff short",
    ],
    name: "a reconcile during a backoff (renewal due) fetches nothing and keeps the failure condition",
    in: {
      nowMs: DUE,
      status: failing(2, "TokenEndpointUnavailable", DUE - S, ["True", "RenewalFailing"]),
      failedFor: failedFor(),
    },
    want: { ready: ["True", "RenewalFailing"], requeueAtMs: DUE + 2 * S, events: [], lastFailure: "kept" },
  },
  {
    rows: ["After a restart or a leader change the next attempt is `lastFailureTime` + the nominal delay"],
    name: "no memory of the failure: lastFailureTime + the nominal delay of failedAttempts (credential #4: 40 min)",
    in: {
      held: undefined,
      target: read(undefined),
      status: failing(4, "InvalidClient", T0 - MIN, ["False", "InvalidClient"], NEVER),
    },
    want: { ready: ["False", "InvalidClient"], requeueAtMs: T0 + 39 * MIN, events: [] },
  },
  {
    rows: ["After a restart or a leader change the next attempt is `lastFailureTime` + the nominal delay"],
    name: "no memory of the failure: a pending refresh request is taken as attempted",
    in: {
      nt: nexarToken({ refresh: "r2" }),
      held: undefined,
      target: read(undefined),
      status: failing(4, "InvalidClient", T0 - MIN, ["False", "InvalidClient"], { ...NEVER, lastRefreshRequest: "r1" }),
    },
    want: { ready: ["False", "InvalidClient"], requeueAtMs: T0 + 39 * MIN, events: [] },
  },
  {
    rows: ["After a restart or a leader change the next attempt is `lastFailureTime` + the nominal delay"],
    name: "no memory of the failure: a credentials change made meanwhile waits for that attempt; a token for other credentials gets no clamp",
    in: {
      held: undefined,
      target: read(written({ ...HELD_OLD, expiresAtMs: T0 + 10 * S })),
      status: failing(4, "TokenEndpointUnavailable", T0 - S, ["False", "TokenEndpointUnavailable"], NEVER),
    },
    want: {
      ready: ["False", "TokenEndpointUnavailable"],
      // 4th transient delay: 12 s after the failure (unclamped: the token is for other credentials),
      // but the token expires before that
      requeueAtMs: T0 + 10 * S,
      write: "none",
      check: (d) => expect(d.hold?.fingerprint).toBe("fp-old"),
    },
  },
  {
    rows: ["Every failure writes, and the next success clears"],
    name: "nothing due any more (e.g. the credentials were put back): the failure is cleared",
    in: {
      status: failing(1, "InvalidClient", T0 - MIN, ["False", "InvalidClient"]),
      failedFor: failedFor({ fingerprint: "fp-wrong" }),
    },
    want: {
      ready: ["True", "TokenIssued"],
      status: { failedAttempts: 0, lastFailureReason: undefined, lastFailureTime: undefined },
      requeueAtMs: DUE,
      events: [],
      lastFailure: "cleared",
    },
  },
  {
    rows: ["spec change, `refresh-requested-at` annotation"],
    name: "a refresh request is answered with a token requested after it; lastRefreshRequest records it",
    in: { nt: nexarToken({ refresh: "r9" }), status: healthy(HELD, { lastRefreshRequest: "r8" }) },
    outcome: ok(24 * H),
    want: {
      fetch: "RefreshRequested",
      shareReason: "RefreshRequested",
      ready: ["True", "TokenIssued"],
      status: { lastRefreshRequest: "r9", lastRefreshTime: iso(T0 + S) },
      requeueAtMs: renewal24h(T0 + S),
      events: ["Normal TokenIssued"],
      write: "read first",
    },
  },

  // ── Credentials ─────────────────────────────────────────────────────────────────────────────
  {
    rows: ["credentials Secret missing"],
    name: "Ready False CredentialsNotFound naming the Secret and namespace; re-checked every 60 s; no fetch",
    in: { credentials: { found: false }, target: undefined },
    want: {
      ready: ["False", "CredentialsNotFound"],
      message: 'credentials Secret "nexar-app" not found in namespace "parts"',
      status: { observedGeneration: 1 },
      requeueAtMs: T0 + 60_000,
    },
  },
  {
    rows: ["a key missing, empty or only whitespace"],
    name: "Ready False CredentialsInvalid naming the keys; re-checked every 60 s; no fetch",
    in: {
      credentials: { found: true, error: 'credentials Secret "nexar-app" lacks non-empty key(s): clientSecret' },
      target: undefined,
    },
    want: {
      ready: ["False", "CredentialsInvalid"],
      message: 'credentials Secret "nexar-app" lacks non-empty key(s): clientSecret',
      requeueAtMs: T0 + 60_000,
    },
  },
  {
    rows: [
      "credentials' data changed (rotation)",
      "`CredentialsChanged`",
      "client secret changed in a credentials Secret",
    ],
    name: "a token held for the old credentials: fetched at once, with a CredentialsChanged Event naming the resourceVersion",
    in: { held: HELD_OLD, target: unchanged(HELD_OLD), status: healthy(HELD_OLD, { lastRefreshRequest: "r0" }) },
    outcome: ok(24 * H),
    want: {
      fetch: "CredentialsChanged",
      shareReason: "CredentialsChanged",
      ready: ["True", "TokenIssued"],
      status: { lastRefreshRequest: "r0" },
      requeueAtMs: renewal24h(T0 + S),
      events: ["Normal CredentialsChanged", "Normal TokenIssued"],
      write: "read first",
      check: (d) => {
        expect(d.events[0]?.note).toBe(
          'Credentials Secret "nexar-app" changed (resourceVersion 7); fetching a new token',
        );
        expect(d.hold?.fingerprint).toBe(FP);
      },
    },
  },
  {
    rows: ["credentials' data changed (rotation)"],
    name: "…and the fetch fails: Ready False (the held token is for the old credentials), no clamp",
    in: { held: HELD_OLD, target: unchanged(HELD_OLD), status: healthy(HELD_OLD) },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "CredentialsChanged",
      ready: ["False", "TokenEndpointUnavailable"],
      requeueAtMs: T0 + S + 1_500,
      events: ["Normal CredentialsChanged", "Warning TokenRequestFailed"],
    },
  },

  // ── Target Secret ───────────────────────────────────────────────────────────────────────────
  {
    rows: ["deleted"],
    name: "recreated with the held token, no fetch",
    in: { target: read(undefined) },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, events: [], write: "create" },
  },
  {
    rows: ["data edited, keys removed"],
    name: "restored with the held token, no fetch",
    in: {
      target: read(
        edited(written(HELD), (s) => {
          s.data = { access_token: b64("edited") };
        }),
      ),
    },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, write: "update" },
  },
  {
    rows: ["labels/annotations added by others"],
    name: "kept: nothing to write",
    in: {
      target: read(
        edited(written(HELD), (s) => {
          s.metadata.labels = { ...s.metadata.labels, team: "parts" };
          s.metadata.annotations = { ...s.metadata.annotations, "reloader.stakater.com/match": "true" };
        }),
      ),
    },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, write: "none" },
  },
  {
    rows: ["the operator's label/annotations stripped"],
    name: "restored: the ownerReference proves ownership",
    in: {
      target: read(
        edited(written(HELD), (s) => {
          s.metadata.labels = {};
          s.metadata.annotations = {};
        }),
      ),
    },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, write: "update" },
  },
  {
    rows: ["exists, not managed by this NexarToken", "`SecretConflict`"],
    name: "Ready False SecretConflict, a Warning, the Secret untouched, no requeue",
    in: {
      target: read({ metadata: { name: "supply", namespace: "parts", resourceVersion: "3" }, data: { x: b64("y") } }),
    },
    want: {
      ready: ["False", "SecretConflict"],
      message: /not managed by this NexarToken.*adopt: true/,
      requeueAtMs: undefined,
      events: ["Warning SecretConflict"],
    },
  },
  {
    rows: ["exists, not managed by this NexarToken"],
    name: "with adopt: true it is taken over (its contents are not taken as our token)",
    in: {
      nt: nexarToken({ target: { adopt: true } }),
      held: undefined,
      status: {},
      target: read(
        edited(written(HELD), (s) => {
          // a Secret someone else wrote (it even carries a fingerprint annotation of ours)
          s.metadata.labels = {};
          delete s.metadata.annotations?.["nexar-operator.io/owner"];
          s.metadata.ownerReferences = undefined;
        }),
      ),
    },
    outcome: ok(24 * H),
    want: {
      fetch: "NoToken",
      ready: ["True", "TokenIssued"],
      requeueAtMs: renewal24h(T0 + S),
      events: ["Normal TokenIssued"],
      write: "update",
    },
  },
  {
    rows: ["managed by another NexarToken that exists"],
    name: "SecretConflict even with adopt: true",
    in: {
      nt: nexarToken({ target: { adopt: true } }),
      target: read(
        edited(written(HELD), (s) => {
          s.metadata.annotations = { "nexar-operator.io/owner": "parts/other" };
          s.metadata.ownerReferences = undefined;
        }),
      ),
    },
    want: {
      ready: ["False", "SecretConflict"],
      message: /managed by NexarToken parts\/other/,
      requeueAtMs: undefined,
      events: ["Warning SecretConflict"],
    },
  },
  {
    rows: ["managed by another NexarToken that exists"],
    name: "once the other is gone, adopt: true takes it over",
    in: {
      nt: nexarToken({ target: { adopt: true } }),
      ownerExists: (k) => k === "parts/supply",
      target: read(
        edited(written(HELD), (s) => {
          s.metadata.annotations = { "nexar-operator.io/owner": "parts/other" };
          s.metadata.ownerReferences = undefined;
        }),
      ),
    },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, write: "update" },
  },
  {
    rows: ["managed by another NexarToken that exists"],
    name: "once the other is gone, without adopt: still SecretConflict",
    in: {
      ownerExists: (k) => k === "parts/supply",
      target: read(
        edited(written(HELD), (s) => {
          s.metadata.annotations = { "nexar-operator.io/owner": "parts/other" };
          s.metadata.ownerReferences = undefined;
        }),
      ),
    },
    want: { ready: ["False", "SecretConflict"], requeueAtMs: undefined, events: ["Warning SecretConflict"] },
  },
  {
    rows: ["`spec.target.type` changed"],
    name: "no fetch: the Secret is recreated with the new type from the token held",
    in: { nt: nexarToken({ generation: 2, target: { type: "nexar.com/token" } }), target: read(written(HELD)) },
    want: {
      ready: ["True", "TokenIssued"],
      status: {
        observedGeneration: 2,
        expiresAt: iso(HELD.expiresAtMs),
        lastRefreshTime: iso(HELD.receivedAtMs as number),
      },
      // the renewal is rescheduled from the held token on a spec change: 16 h − 150 s after receipt
      requeueAtMs: renewal24h(HELD.receivedAtMs as number),
      events: [],
      write: "recreate",
    },
  },
  {
    rows: ["`spec.renewBefore` changed"],
    name: "no fetch: the renewal is rescheduled from the token held",
    in: { nt: nexarToken({ generation: 2, spec: { renewBefore: "6h" } }), target: read(written(HELD)) },
    want: {
      ready: ["True", "TokenIssued"],
      // 24 h token, renewBefore 6 h → renew 18 h after receipt (jitter 0.5)
      status: { observedGeneration: 2, renewalTime: iso(RENEW_6H) },
      requeueAtMs: RENEW_6H,
      events: [],
      write: "none",
    },
  },
  {
    rows: ["spec change, `refresh-requested-at` annotation"],
    name: "a refresh request already answered by the token held (its Secret or status write failed) fetches nothing more",
    in: {
      nt: nexarToken({ refresh: "r9" }),
      held: { ...HELD, lastRefreshRequest: "r9" },
      target: read(written(HELD)),
      status: healthy(HELD, { lastRefreshRequest: "r8" }),
    },
    want: {
      ready: ["True", "TokenIssued"],
      status: { lastRefreshRequest: "r9" },
      requeueAtMs: DUE,
      events: [],
      write: "none",
    },
  },
  {
    rows: ["unchanged"],
    name: "unchanged since our last write (not read), nothing due: no write, no fetch",
    in: {},
    want: {
      ready: ["True", "TokenIssued"],
      status: { failedAttempts: 0, expiresAt: iso(HELD.expiresAtMs), renewalTime: iso(HELD.renewAtMs) },
      requeueAtMs: DUE,
      events: [],
      lastFailure: "cleared",
    },
  },
  {
    rows: ["unchanged"],
    name: "read and identical: nothing to write",
    in: { target: read(written(HELD)) },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, write: "none" },
  },

  // ── Deleting a NexarToken: what the Secret carries for it ────────────────────────────────────
  {
    rows: ["`Orphan`"],
    name: "the Secret has no ownerReference (left behind on deletion)",
    in: { nt: nexarToken({ target: { creationPolicy: "Orphan" } }), target: read(undefined) },
    want: {
      ready: ["True", "TokenIssued"],
      requeueAtMs: DUE,
      write: "create",
      check: (d) => {
        const p = d.secret?.plan(undefined);
        expect(p?.action === "create" && p.secret.metadata.ownerReferences).toBeUndefined();
      },
    },
  },
  {
    rows: ["`Merge`"],
    name: "others' keys are kept: nothing to write",
    in: {
      nt: nexarToken({ target: { creationPolicy: "Merge" } }),
      target: read(
        edited(written(HELD, { creationPolicy: "Merge" }), (s) => {
          s.data = { ...s.data, other: b64("theirs") };
        }),
      ),
    },
    want: { ready: ["True", "TokenIssued"], requeueAtMs: DUE, write: "none" },
  },

  // ── Tenancy and watches ─────────────────────────────────────────────────────────────────────
  {
    rows: ["operator start with thousands of NexarTokens"],
    name: "restart: the token in the listed Secret is kept, its renewal time from status; no fetch",
    in: { held: undefined, target: read(written(HELD)) },
    want: {
      ready: ["True", "TokenIssued"],
      requeueAtMs: DUE,
      write: "none",
      check: (d) => expect(d.hold).toEqual({ ...HELD, tokenType: "Bearer" }),
    },
  },
  {
    rows: ["operator start with thousands of NexarTokens", "edited or restored while no operator ran"],
    name: "restart, the status is for another token (a restored Secret): not trusted, a new token is fetched",
    in: {
      held: undefined,
      target: read(written(HELD)),
      status: healthy({ ...HELD, expiresAtMs: T0 + 11 * H, renewAtMs: T0 + 2 * H }),
    },
    outcome: ok(24 * H),
    want: { fetch: "NoToken", ready: ["True", "TokenIssued"], requeueAtMs: renewal24h(T0 + S), write: "update" },
  },
  {
    rows: [
      "operator start with thousands of NexarTokens",
      "its `issued-at` annotation missing, or not before `expires_at`",
    ],
    name: "restart, the Secret lacks issued-at: renewed at once (no lifetime is assumed)",
    in: {
      held: undefined,
      status: {},
      target: read(
        edited(written(HELD), (s) => {
          delete s.metadata.annotations?.["nexar-operator.io/issued-at"];
        }),
      ),
    },
    outcome: ok(24 * H),
    want: { fetch: "RenewalDue", ready: ["True", "TokenIssued"], requeueAtMs: renewal24h(T0 + S), write: "update" },
  },
  {
    rows: [
      "operator start with thousands of NexarTokens",
      "its `issued-at` annotation missing, or not before `expires_at`",
    ],
    name: "restart, issued-at at or after expires_at: renewed at once, and a failure is reported in status",
    in: {
      held: undefined,
      status: {},
      target: read(
        edited(written(HELD), (s) => {
          (s.metadata.annotations as Record<string, string>)["nexar-operator.io/issued-at"] = iso(T0 + 13 * H);
        }),
      ),
    },
    outcome: fail("transient", "TokenEndpointUnavailable"),
    want: {
      fetch: "RenewalDue",
      ready: ["True", "RenewalFailing"],
      status: { failedAttempts: 1 },
      requeueAtMs: T0 + S + 1_500,
      events: ["Warning TokenRequestFailed"],
      write: "none",
    },
  },
  {
    rows: ["operator start with thousands of NexarTokens"],
    name: "restart, a Secret without the fingerprint annotation is not taken as our token: fetched",
    in: {
      held: undefined,
      status: {},
      target: read(
        edited(written(HELD), (s) => {
          delete s.metadata.annotations?.["nexar-operator.io/credentials-hash"];
        }),
      ),
    },
    outcome: ok(24 * H),
    want: { fetch: "NoToken", ready: ["True", "TokenIssued"], requeueAtMs: renewal24h(T0 + S), write: "update" },
  },
  {
    rows: ["`http://` token URL without `--allow-insecure-token-url`"],
    name: "Ready False InvalidSpec; nothing requested, no requeue",
    in: {
      nt: nexarToken({ spec: { tokenUrl: "http://127.0.0.1:8080/connect/token" } }),
      credentials: undefined,
      target: undefined,
    },
    want: { ready: ["False", "InvalidSpec"], message: /https/, requeueAtMs: undefined },
  },
];

function condition(d: Decision): Condition | undefined {
  return d.status.conditions?.find((c) => c.type === "Ready");
}

describe("decide: one case per row of docs/behaviour.md", () => {
  for (const c of CASES) {
    it(`${c.rows[0]} — ${c.name}`, () => {
      const { failedFor: failedRecord, ...given } = c.in;
      const inp = input(
        failedRecord ? { ...given, status: { ...(given.status ?? healthy()), ...failedRecord } } : given,
      );
      const first = decide(inp);
      let d = first;
      if (c.want.fetch !== undefined) {
        expect(first.fetch?.reason, "fetch reason").toBe(c.want.fetch);
        if (c.want.shareReason !== undefined)
          expect(first.fetch?.shareReason, "reason told to the issuer").toBe(c.want.shareReason);
        if (!c.outcome || !first.fetch) throw new Error("a case that fetches needs an outcome");
        d = decide({
          ...inp,
          held: first.hold ?? inp.held,
          fetched: { plan: first.fetch, outcome: c.outcome(inp.nowMs) },
        });
        expect(d.fetch, "a second decision never fetches").toBeUndefined();
      } else {
        expect(first.fetch, "no fetch").toBeUndefined();
      }
      const ready = condition(d);
      expect([ready?.status, ready?.reason], "Ready").toEqual(c.want.ready);
      if (c.want.message !== undefined) {
        if (typeof c.want.message === "string") expect(ready?.message).toBe(c.want.message);
        else expect(ready?.message).toMatch(c.want.message);
      }
      expect(ready?.observedGeneration).toBe(inp.nt.metadata.generation);
      const defined = Object.entries(c.want.status ?? {}).filter(([, v]) => v !== undefined);
      expect(d.status).toMatchObject(Object.fromEntries(defined));
      for (const [k, v] of Object.entries(c.want.status ?? {}))
        if (v === undefined) expect(d.status[k as keyof TokenStatus], k).toBeUndefined();
      expect(d.requeueAtMs, "requeue").toBe(c.want.requeueAtMs);
      expect(
        d.events.map((e) => `${e.type} ${e.reason}`),
        "events",
      ).toEqual(c.want.events ?? d.events.map((e) => `${e.type} ${e.reason}`));
      if (c.want.events === undefined)
        expect(d.events.filter((e) => e.reason !== "TokenIssued" && e.reason !== "TokenRequestFailed")).toEqual([]);
      if (c.want.write === undefined) expect(d.secret, "no Secret write").toBeUndefined();
      else if (c.want.write === "read first") {
        expect(d.secret?.readFirst, "read before writing").toBe(true);
        expect(d.secret?.knownRv).toBe("5");
      } else {
        expect(d.secret?.readFirst).toBe(false);
        expect(d.secret?.plan(d.secret.current).action, "Secret write").toBe(c.want.write);
      }
      const record = (st: TokenStatus) => [st.nextAttemptTime, st.lastFailureFingerprint, st.lastFailureRefreshRequest];
      if (c.want.lastFailure === "set") {
        expect(d.status.lastFailureFingerprint).toBe(FP);
        expect(d.status.nextAttemptTime).toBe(new Date(d.requeueAtMs as number).toISOString());
      }
      if (c.want.lastFailure === "cleared") expect(record(d.status)).toEqual([undefined, undefined, undefined]);
      if (c.want.lastFailure === "kept") expect(record(d.status)).toEqual(record(inp.status));
      c.want.check?.(d);
      // Secrets never reach status or Events.
      expect(JSON.stringify([d.status, d.events])).not.toMatch(/s3cret|at-held|at-new/);
    });
  }
});

describe("decide: the rest of the contract", () => {
  it("a failure's delay (class, jitter, Retry-After) and what it was for go to status; the next reconcile reads them there", () => {
    const inp = input({ nowMs: DUE, jitter: 0.25, nt: nexarToken({ refresh: "r3" }) });
    const first = decide(inp);
    const d = decide({ ...inp, fetched: { plan: first.fetch!, outcome: fail("credential", "InvalidClient")(DUE) } });
    // credential #1 with jitter 0.25: 5 min × (1 − 0.05)
    expect(d.requeueAtMs).toBe(A_DUE + 285 * S);
    expect(d.failed).toMatchObject({ reason: "InvalidClient", kind: "credential", attempts: 1, retryInMs: 285 * S });
    expect(d.status).toMatchObject({
      failedAttempts: 1,
      lastFailureReason: "InvalidClient",
      nextAttemptTime: new Date(A_DUE + 285 * S).toISOString(),
      lastFailureFingerprint: FP,
      lastFailureRefreshRequest: "r3",
    });
    // the next reconcile (this process or another) derives the same instant from status alone
    const again = decide(input({ nowMs: A_DUE + 10 * S, status: d.status, nt: nexarToken({ refresh: "r3" }) }));
    expect(again.fetch).toBeUndefined();
    expect(again.requeueAtMs).toBe(A_DUE + 285 * S);
    // a Retry-After on a 503 is honoured: the server's 10 min, not the 1.5 s transient backoff
    const limited = decide({
      ...inp,
      fetched: { plan: first.fetch!, outcome: fail("transient", "TokenEndpointUnavailable", 10 * MIN)(DUE) },
    });
    expect(limited.requeueAtMs).toBe(A_DUE + 10 * MIN);
    expect(limited.status.nextAttemptTime).toBe(new Date(A_DUE + 10 * MIN).toISOString());
  });

  it("a status without nextAttemptTime (an older operator's) gives lastFailureTime + the nominal delay", () => {
    const status = failing(1, "InvalidClient", T0 - MIN, ["False", "InvalidClient"]);
    const d = decide(input({ status, nowMs: T0 + 10 * S, held: HELD_OLD }));
    expect(d.fetch).toBeUndefined();
    expect(d.requeueAtMs).toBe(T0 - MIN + 5 * MIN);
    // recorded: the recorded instant wins over the nominal one
    const recorded = decide(
      input({ status: { ...status, nextAttemptTime: iso(T0 + 20 * MIN) }, nowMs: T0 + 10 * S, held: HELD_OLD }),
    );
    expect(recorded.requeueAtMs).toBe(T0 + 20 * MIN);
  });

  it("a re-read that finds someone else's Secret: SecretConflict on the status as gathered", () => {
    const inp = input();
    const d = secretConflict(
      inp,
      'Secret "supply" is managed by NexarToken parts/other; choose another spec.target.name',
    );
    expect(condition(d)).toMatchObject({ status: "False", reason: "SecretConflict" });
    expect(d.status.expiresAt).toBe(iso(HELD.expiresAtMs));
    expect(d.events).toEqual([
      { type: "Warning", reason: "SecretConflict", note: expect.stringContaining("parts/other") },
    ]);
    expect(d.secret).toBeUndefined();
    expect(d.requeueAtMs).toBeUndefined();
  });

  it("the token logged as issued carries the trigger's reason, expiry, renewal time and duration", () => {
    const inp = input({ held: undefined, target: read(undefined), status: {} });
    const first = decide(inp);
    const d = decide({ ...inp, fetched: { plan: first.fetch!, outcome: ok()(T0) } });
    expect(d.issued).toEqual({
      reason: "NoToken",
      expiresAt: iso(T0 + S + 24 * H),
      renewalTime: iso(renewal24h(T0 + S)),
      ms: S,
    });
    expect(d.failed).toBeUndefined();
  });
});

describe("limiterWaitStatus (shared tokens: a request queued by the issuance limiter)", () => {
  it("Ready IssuanceLimited: True while the held token is valid, False without one; nothing while failures are reported", () => {
    const inp = input({ nowMs: DUE });
    const plan = decide(inp).fetch!;
    const until = DUE + 30 * S;
    const waiting = limiterWaitStatus(inp, plan, HELD, FP, until, DUE);
    expect(waiting?.conditions?.find((c) => c.type === "Ready")).toMatchObject({
      status: "True",
      reason: "IssuanceLimited",
      message: `token request queued by the per-client issuance limit until ${iso(until)}`,
    });
    expect(limiterWaitStatus(inp, plan, HELD_OLD, FP, until, DUE)?.conditions?.[0]?.status).toBe("False");
    expect(limiterWaitStatus(inp, plan, undefined, FP, until, DUE)?.conditions?.[0]?.status).toBe("False");
    expect(limiterWaitStatus(inp, plan, { ...HELD, expiresAtMs: DUE }, FP, until, DUE)?.conditions?.[0]?.status).toBe(
      "False",
    );
    const failingInput = input({
      nowMs: DUE,
      status: failing(1, "TokenEndpointUnavailable", DUE - 10 * S, ["True", "RenewalFailing"]),
    });
    const failingPlan = decide(failingInput).fetch!;
    expect(limiterWaitStatus(failingInput, failingPlan, HELD, FP, until, DUE)).toBeUndefined();
  });
});

/**
 * Rows of docs/behaviour.md where Decide has no part (the OAuth client, the informer, the
 * adapters, the issuer), with the unit test that covers each (the integration file is named in
 * the row itself).
 */
const COVERED_ELSEWHERE: Record<string, string> = {
  "a Content-Type that lies (JSON labelled HTML, HTML labelled JSON)": "src/oauth/response.test.ts",
  "values with surrounding whitespace / a trailing newline": "src/controller/credentials.test.ts (readCredentials)",
  "concurrent writers": "src/kube/secrets.test.ts (the 409 re-read and retry)",
  "a NexarToken refers to Secrets by name": "src/api/crd.test.ts (no namespace field) and tenancy",
  "thousands of unrelated, large Secrets": "src/controller/secret-index.test.ts and watch",
  "watch connection cut (five times in a row)": "src/kube/informer.test.ts and watch",
  "`410 Gone` (resourceVersion compacted)": "src/kube/informer.test.ts",
  "N new NexarTokens, one credential": "src/issuance/issuer.test.ts",
  "a NexarToken created later while the shared token is not yet due": "src/issuance/issuer.test.ts",
  "renewal due": "src/issuance/issuer.test.ts and src/issuance/sharing.test.ts",
};

describe("docs/behaviour.md", () => {
  it("every row is a case of the table above, or covered by the test named in COVERED_ELSEWHERE", () => {
    const doc = readFileSync(new URL("../../docs/behaviour.md", import.meta.url), "utf8").split("\n");
    const rows: string[] = [];
    let header: string | undefined;
    for (let i = 0; i < doc.length; i++) {
      const line = doc[i] as string;
      if (!line.startsWith("|")) continue;
      const first = (line.slice(1).split("|")[0] ?? "").trim();
      if (/^-+$/.test(first)) continue;
      if (!(doc[i - 1] ?? "").startsWith("|")) {
        header = first;
        continue;
      }
      if (header === "scenario") continue; // the figures observed in one run, not behaviour
      rows.push(first);
    }
    expect(rows.length).toBeGreaterThan(50);
    const covered = new Set([...CASES.flatMap((c) => c.rows), ...Object.keys(COVERED_ELSEWHERE)]);
    expect(rows.filter((r) => !covered.has(r))).toEqual([]);
    // and the prose rules the cases name are still in the document
    const text = doc.join("\n").replace(/\*\*/g, "").replace(/\s+/g, " ");
    const gone = [...new Set(CASES.flatMap((c) => c.rows))].filter((r) => !rows.includes(r) && !text.includes(r));
    expect(gone).toEqual([]);
  });
});
