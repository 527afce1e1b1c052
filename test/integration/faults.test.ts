/**
 * Issue 3, fault suite part 1: transient token-endpoint failures and 429 against the real
 * control plane and the real identity server with fault injection (SPEC §3.4).
 *
 * For every fault: the Ready condition and reason, the backoff actually observed (gaps between
 * the requests the identity server received), the valid token surviving in the Secret, and
 * recovery once the fault clears.
 *
 * The operator runs with the TEST-ONLY backoff scale 0.1 (NEXAR_OPERATOR_BACKOFF_SCALE): the
 * transient backoff 2 s → 5 min becomes 0.2 s → 30 s, the 429 cap 15 min becomes 90 s. The token
 * request timeout is 2 s (`--request-timeout 2s`).
 */
import { describe, expect, it } from "vitest";
import type { Fault } from "../harness/identity.ts";
import { waitFor, type Env } from "./env.ts";
import {
  faultSuite,
  eventsFor,
  failureLogs,
  gapsMs,
  issued,
  ready,
  requestRefresh,
  requestsOf,
  sleep,
  waitForRequests,
} from "./faults-helpers.ts";

const SCALE = 0.1;
const TIMEOUT_MS = 2_000;
/** Nominal transient delay after the n-th consecutive failure (equal jitter: actual in [d/2, d]), ms. */
const transientMs = (n: number): number => Math.min(2_000 * 2 ** (n - 1), 300_000) * SCALE;
/** Slack for a loaded 2-core machine (reconcile, status write, scheduling), ms. */
const SLACK_MS = 2_500;

let env: Env;
/** Observed figures, printed at the end for the issue note. */
const observed = faultSuite(
  "faults",
  {
    scale: SCALE,
    operatorArgs: ["--request-timeout", `${TIMEOUT_MS / 1000}s`],
    heading: `observed backoff (scale ${SCALE})`,
  },
  (e) => (env = e),
);

interface TransientCase {
  name: string;
  fault: Fault;
  reason: string;
  /** Time the client spends on one failed attempt before it can schedule the next (timeouts), ms. */
  attemptMs: number;
}

const CASES: TransientCase[] = [
  {
    name: "503 with an OAuth JSON body",
    fault: { kind: "status", status: 503, body: { error: "temporarily_unavailable" } },
    reason: "TokenEndpointUnavailable",
    attemptMs: 0,
  },
  {
    name: "500 with a text body",
    fault: { kind: "status", status: 500, body: "internal error" },
    reason: "TokenEndpointUnavailable",
    attemptMs: 0,
  },
  { name: "HTML under 502", fault: { kind: "html", status: 502 }, reason: "TokenEndpointUnavailable", attemptMs: 0 },
  { name: "HTML under 200", fault: { kind: "html", status: 200 }, reason: "InvalidResponse", attemptMs: 0 },
  { name: "an empty body", fault: { kind: "empty" }, reason: "InvalidResponse", attemptMs: 0 },
  { name: "a 5 MiB body", fault: { kind: "bigBody" }, reason: "ResponseTooLarge", attemptMs: 0 },
  { name: "a connection reset", fault: { kind: "reset" }, reason: "ConnectionFailed", attemptMs: 0 },
  {
    name: "a delay longer than the client timeout",
    fault: { kind: "delay", ms: TIMEOUT_MS + 3_000 },
    reason: "Timeout",
    attemptMs: TIMEOUT_MS,
  },
];

describe("transient faults (valid token held)", () => {
  it.each(CASES.map((c, i) => [c.name, c, i] as const))(
    "%s: Ready=True RenewalFailing, exponential backoff, token kept, recovery",
    async (_name, c, i) => {
      const ns = `transient-${i}`;
      const clientId = `transient-${i}`;
      const token0 = await issued(env, ns, clientId);
      const before = requestsOf(env, clientId).length;
      env.idp.setFault({ ...c.fault, clientId });
      await requestRefresh(env, ns, "supply");
      const failing = 5;
      const reqs = (await waitForRequests(env, clientId, before + failing, 60_000)).slice(before, before + failing);
      expect(reqs.every((r) => r.faulted)).toBe(true);

      // The Ready condition and reason while the token is still valid.
      const nt = await waitFor(
        `status of ${ns} after ${failing} failures`,
        async () => {
          const t = await env.getToken(ns, "supply");
          return (t.status?.failedAttempts ?? 0) >= failing - 1 ? t : undefined;
        },
        15_000,
      );
      expect(ready(nt)).toMatchObject({ status: "True", reason: "RenewalFailing" });
      expect(ready(nt)?.message).toContain(c.reason);
      expect(nt.status?.lastFailureReason).toBe(c.reason);
      expect(Date.parse(nt.status?.lastFailureTime ?? "")).toBeGreaterThan(Date.now() - 60_000);

      // The valid token survived.
      expect(await env.accessToken(ns, "supply")).toBe(token0);

      // Backoff actually observed: gap n ≥ attempt time + d_n/2 and ≤ attempt time + d_n + slack.
      const gaps = gapsMs(reqs);
      for (const [k, gap] of gaps.entries()) {
        const d = transientMs(k + 1);
        expect(gap, `gap after failure ${k + 1}`).toBeGreaterThanOrEqual(c.attemptMs + d / 2 - 20);
        expect(gap, `gap after failure ${k + 1}`).toBeLessThanOrEqual(c.attemptMs + d + SLACK_MS);
      }
      // It grows: the last gap (d_4 = 1.6 s nominal) is longer than the first (d_1 = 0.2 s).
      expect((gaps[3] ?? 0) - c.attemptMs).toBeGreaterThan((gaps[0] ?? 0) - c.attemptMs);
      observed.push(`${c.name}: ${c.reason}; gaps ${gaps.map((g) => `${g} ms`).join(", ")}`);

      // The operator logged the class and delay of each failure.
      const logs = failureLogs(env, ns, "supply");
      expect(logs.length).toBeGreaterThanOrEqual(failing - 1);
      expect(logs.every((l) => l.kind === "transient" && l.reason === c.reason)).toBe(true);

      // One Warning Event per distinct note, not one per attempt (5). A reset may surface as
      // ECONNRESET or as a closed socket, a delay past the client timeout as the total deadline or
      // the headers timeout (whichever fires first on a loaded machine): a few notes at most.
      const warnings = await eventsFor(env, ns, "supply", "TokenRequestFailed");
      expect(warnings.length).toBeGreaterThanOrEqual(1);
      expect(warnings.length).toBeLessThanOrEqual(3);
      expect(warnings.every((w) => w.type === "Warning")).toBe(true);

      // Recovery once the fault clears: at the next scheduled attempt, without any nudge.
      env.idp.setFault(undefined);
      const token1 = await waitFor(
        "a new token after the fault cleared",
        async () => {
          const t = await env.accessToken(ns, "supply");
          return t && t !== token0 ? t : undefined;
        },
        2 * (c.attemptMs + transientMs(failing + 1)) + 10_000,
      );
      expect(token1).not.toBe(token0);
      const healed = await env.waitReady(ns, "supply", "True", "TokenIssued", 15_000);
      expect(healed.status?.failedAttempts ?? 0).toBe(0);
      expect(healed.status?.lastFailureReason).toBeUndefined();
    },
  );
});

describe("transient fault with no token yet", () => {
  it("reports Ready=False with the reason, writes no Secret, and recovers", async () => {
    const ns = await env.namespace("first-fetch");
    env.client({ clientId: "first-fetch", clientSecret: "first-fetch-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "first-fetch", clientSecret: "first-fetch-secret-0123456789" });
    env.idp.setFault({ kind: "status", status: 502, body: "bad gateway", clientId: "first-fetch" });
    try {
      await env.createToken(ns, "supply", {
        scopes: ["supply.domain"],
        tokenUrl: env.idp.tokenUrl,
        credentialsSecretRef: { name: "nexar-app" },
      });
      const nt = await env.waitReady(ns, "supply", "False", "TokenEndpointUnavailable", 20_000);
      expect(nt.status?.failedAttempts).toBeGreaterThanOrEqual(1);
      expect(await env.readSecret(ns, "supply")).toBeUndefined();
      await waitForRequests(env, "first-fetch", 3, 20_000);
    } finally {
      env.idp.setFault(undefined);
    }
    await env.waitReady(ns, "supply", "True", "TokenIssued", 20_000);
    expect(await env.accessToken(ns, "supply")).toBeTruthy();
  });
});

describe("429 Too Many Requests", () => {
  it("honours Retry-After in seconds (longer than its own backoff)", async () => {
    const ns = "ratelimit-seconds";
    const token0 = await issued(env, ns, "rl-seconds");
    const before = requestsOf(env, "rl-seconds").length;
    env.idp.setFault({
      kind: "status",
      status: 429,
      body: "slow down",
      retryAfter: 5,
      times: 2,
      clientId: "rl-seconds",
    });
    await requestRefresh(env, ns, "supply");
    const reqs = (await waitForRequests(env, "rl-seconds", before + 3, 30_000)).slice(before);
    expect(reqs.map((r) => r.status)).toEqual([429, 429, 200]);
    const gaps = gapsMs(reqs.slice(0, 3));
    // Without Retry-After a 429 would back off 3 s × 0.1-scaled… from 30 s: 1.5–3 s. The server asked for 5 s.
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(5_000 - 20);
      expect(g).toBeLessThanOrEqual(5_000 + SLACK_MS);
    }
    observed.push(`429 Retry-After: 5 → gaps ${gaps.join(", ")} ms`);
    const nt = await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(await env.accessToken(ns, "supply")).not.toBe(token0);
    expect(nt.status?.failedAttempts ?? 0).toBe(0);
  });

  it("honours Retry-After as an HTTP-date", async () => {
    const ns = "ratelimit-date";
    await issued(env, ns, "rl-date");
    const before = requestsOf(env, "rl-date").length;
    // Whole seconds: an HTTP-date has one-second resolution.
    const at = new Date(Math.ceil((Date.now() + 6_000) / 1000) * 1000);
    env.idp.setFault({ kind: "status", status: 429, retryAfter: at, times: 1, clientId: "rl-date" });
    await requestRefresh(env, ns, "supply");
    const reqs = (await waitForRequests(env, "rl-date", before + 2, 30_000)).slice(before);
    expect(reqs.map((r) => r.status)).toEqual([429, 200]);
    const second = reqs[1]?.atMs ?? 0;
    expect(second).toBeGreaterThanOrEqual(at.getTime() - 20);
    expect(second).toBeLessThanOrEqual(at.getTime() + SLACK_MS);
    observed.push(`429 Retry-After: <HTTP-date> → retried ${second - at.getTime()} ms after the date`);
    await env.waitReady(ns, "supply", "True", "TokenIssued");
  });

  it("caps an absurd Retry-After (15 min × scale) and a refresh request still retries at once", async () => {
    const ns = "ratelimit-cap";
    const token0 = await issued(env, ns, "rl-cap");
    const before = requestsOf(env, "rl-cap").length;
    env.idp.setFault({ kind: "status", status: 429, retryAfter: 86_400, times: 1, clientId: "rl-cap" });
    await requestRefresh(env, ns, "supply");
    await waitForRequests(env, "rl-cap", before + 1, 15_000);
    const log = await env.op.waitForLog(
      (r) => r.nexartoken === `${ns}/supply` && r.reason === "RateLimited" && typeof r.retryInMs === "number",
      15_000,
    );
    expect(log.retryAfterMs).toBe(86_400_000);
    expect(log.retryInMs).toBe(15 * 60_000 * SCALE);
    const nt = await env.waitReady(ns, "supply", "True", "RenewalFailing");
    expect(nt.status?.lastFailureReason).toBe("RateLimited");
    await sleep(3_000);
    expect(requestsOf(env, "rl-cap").length).toBe(before + 1); // waiting, not hammering
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    await requestRefresh(env, ns, "supply");
    await env.waitReady(ns, "supply", "True", "TokenIssued", 10_000);
    expect(await env.accessToken(ns, "supply")).not.toBe(token0);
  });
});
