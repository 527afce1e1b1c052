/**
 * Failure semantics and trust (issue 18, items 1, 6, 13, 14) against the real control plane and
 * the real identity server:
 * - a `Retry-After` on a 503 is honoured like a 429's (RFC 9110 §10.2.3);
 * - the target Secret's fingerprint annotation is an HMAC under the key in the operator's own
 *   Secret, kept across restarts; a Secret written with the old unkeyed fingerprint is migrated
 *   without a token request;
 * - a forced refresh whose Secret write keeps failing is answered by the token fetched for it,
 *   not by a new request on every retry;
 * - only a spec change the token depends on fetches; target and renewBefore changes do not.
 *
 * The operator runs with the TEST-ONLY backoff scale 0.1.
 */
import { describe, expect, it } from "vitest";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { waitFor, decode, type Env } from "./env.ts";
import {
  faultSuite,
  issued,
  patchToken,
  requestRefresh,
  requestsOf,
  sleep,
  waitForRequests,
} from "./faults-helpers.ts";
import { fingerprintOf, legacyFingerprintOf } from "../../src/controller/credentials.ts";
import { DEFAULT_FINGERPRINT_KEY_SECRET, FINGERPRINT_KEY_DATA_KEY } from "../../src/controller/fingerprint-key.ts";
import { FINGERPRINT_ANNOTATION } from "../../src/secrets/desired.ts";
import type { TokenRequest } from "../../src/oauth/types.ts";

const SCALE = 0.1;
/** Slack for a loaded 2-core machine (reconcile, status write, scheduling), ms. */
const SLACK_MS = 2_500;

let env: Env;
const observed = faultSuite("semantics", { scale: SCALE, heading: `observed (scale ${SCALE})` }, (e) => (env = e));

/** The token request a NexarToken made by {@link issued} sends for client `clientId`. */
function requestOf(clientId: string): TokenRequest {
  return {
    tokenUrl: env.idp.tokenUrl,
    grant: "ClientCredentials",
    clientAuthentication: "ClientSecretPost",
    clientId,
    clientSecret: `${clientId}-secret-0123456789abcdef`,
    scopes: ["supply.domain"],
  };
}

async function annotation(ns: string, name: string): Promise<string | undefined> {
  return (await env.readSecret(ns, name))?.metadata?.annotations?.[FINGERPRINT_ANNOTATION];
}

/** The operator's fingerprint key (the harness runs it outside a cluster: its namespace is `default`). */
async function fingerprintKey(): Promise<{ key: Buffer; resourceVersion: string | undefined }> {
  const s = await env.core.readNamespacedSecret({ namespace: "default", name: DEFAULT_FINGERPRINT_KEY_SECRET });
  return {
    key: Buffer.from(s.data?.[FINGERPRINT_KEY_DATA_KEY] ?? "", "base64"),
    resourceVersion: s.metadata?.resourceVersion,
  };
}

describe("Retry-After on a 503 (item 1)", () => {
  it("is honoured as on a 429: the retry waits the server's 5 s, not the 0.2–0.4 s transient backoff", async () => {
    const ns = "retry-after-503";
    const token0 = await issued(env, ns, "ra-503");
    const before = requestsOf(env, "ra-503").length;
    env.idp.setFault({
      kind: "status",
      status: 503,
      body: { error: "temporarily_unavailable" },
      retryAfter: 5,
      times: 2,
      clientId: "ra-503",
    });
    await requestRefresh(env, ns, "supply");
    const reqs = (await waitForRequests(env, "ra-503", before + 3, 40_000)).slice(before);
    expect(reqs.map((r) => r.status)).toEqual([503, 503, 200]);
    const gaps = [reqs[1]!.atMs - reqs[0]!.atMs, reqs[2]!.atMs - reqs[1]!.atMs];
    for (const g of gaps) {
      expect(g).toBeGreaterThanOrEqual(5_000 - 20);
      expect(g).toBeLessThanOrEqual(5_000 + SLACK_MS);
    }
    observed.push(`503 Retry-After: 5 → gaps ${gaps.join(", ")} ms`);
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(await env.accessToken(ns, "supply")).not.toBe(token0);
  });

  it("status.nextAttemptTime records the server's delay while it waits", async () => {
    const ns = "retry-after-status";
    await issued(env, ns, "ra-status");
    env.idp.setFault({ kind: "status", status: 503, retryAfter: 60, times: 1, clientId: "ra-status" });
    await requestRefresh(env, ns, "supply");
    const nt = await env.waitReady(ns, "supply", "True", "RenewalFailing");
    const failedAt = Date.parse(nt.status?.lastFailureTime as string);
    const next = Date.parse(nt.status?.nextAttemptTime as string);
    // 60 s, capped at 15 min × 0.1 = 90 s: the server's 60 s (lastFailureTime has second precision)
    expect(next - failedAt).toBeGreaterThanOrEqual(60_000);
    expect(next - failedAt).toBeLessThan(61_000);
    expect(nt.status?.lastFailureFingerprint).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("the fingerprint annotation (item 6)", () => {
  it("is an HMAC-SHA256 under the key in the operator's Secret, not the unkeyed SHA-256 of the client secret", async () => {
    const ns = "fingerprint-keyed";
    await issued(env, ns, "fp-keyed");
    const { key } = await fingerprintKey();
    expect(key.length).toBe(32);
    const fp = await annotation(ns, "supply");
    const req = requestOf("fp-keyed");
    expect(fp).toBe(fingerprintOf(key, req));
    // the unkeyed SHA-256 that anyone with metadata read could test guesses against (its formula
    // is pinned in src/controller/credentials.test.ts)
    expect(fp).not.toBe(legacyFingerprintOf(req));
  });

  it("keeps its key across restarts, and migrates a Secret with the old unkeyed fingerprint without a token request", async () => {
    const ns = "fingerprint-migrate";
    const token0 = await issued(env, ns, "fp-migrate");
    const keyBefore = await fingerprintKey();
    const keyed = await annotation(ns, "supply");
    const before = requestsOf(env, "fp-migrate").length;
    // What an operator from before keyed fingerprints left behind, edited while no operator runs.
    await env.op.stop();
    const legacy = legacyFingerprintOf(requestOf("fp-migrate"));
    await env.core.patchNamespacedSecret(
      { namespace: ns, name: "supply", body: { metadata: { annotations: { [FINGERPRINT_ANNOTATION]: legacy } } } },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await env.restartOperator();
    await waitFor(
      "the annotation rewritten to the keyed fingerprint",
      async () => ((await annotation(ns, "supply")) === keyed ? true : undefined),
      30_000,
    );
    expect(requestsOf(env, "fp-migrate").length).toBe(before);
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    const keyAfter = await fingerprintKey();
    expect(keyAfter.resourceVersion).toBe(keyBefore.resourceVersion);
    expect(keyAfter.key.equals(keyBefore.key)).toBe(true);
  });
});

describe("a forced refresh whose Secret write keeps failing (item 13)", () => {
  it("is answered by the token fetched for it: one token request, whatever the number of retries", async () => {
    const ns = "refresh-write-fails";
    await issued(env, ns, "rw-fails");
    // No Secret can be created in the namespace: the target's re-creation fails on every attempt.
    await env.core.createNamespacedResourceQuota({
      namespace: ns,
      body: { metadata: { name: "no-secrets" }, spec: { hard: { "count/secrets": "0" } } },
    });
    await env.core.deleteNamespacedSecret({ namespace: ns, name: "supply" });
    await sleep(1_000);
    const before = requestsOf(env, "rw-fails").length;
    await requestRefresh(env, ns, "supply");
    await waitForRequests(env, "rw-fails", before + 1, 15_000);
    // Retries of the write (the work queue's per-key backoff, 5 ms doubling) meanwhile.
    await sleep(5_000);
    const failures = env.op
      .logs()
      .filter((r) => r.nexartoken === `${ns}/supply` && String(r.msg).startsWith("reconcile failed"));
    observed.push(
      `refresh with failing Secret writes: ${failures.length} failed reconciles, ${requestsOf(env, "rw-fails").length - before} token request(s)`,
    );
    expect(requestsOf(env, "rw-fails").length).toBe(before + 1);
    await env.core.deleteNamespacedResourceQuota({ namespace: ns, name: "no-secrets" });
    const nt = await waitFor(
      "the Secret written and the refresh recorded",
      async () => {
        const t = await env.getToken(ns, "supply");
        const annotated = t.metadata.annotations?.["nexar-operator.io/refresh-requested-at"];
        return (await env.accessToken(ns, "supply")) && t.status?.lastRefreshRequest === annotated ? t : undefined;
      },
      60_000,
    );
    expect(nt.status?.lastRefreshRequest).toBeDefined();
    expect(requestsOf(env, "rw-fails").length).toBe(before + 1);
  });
});

describe("only a change the token depends on fetches (item 14)", () => {
  it("target labels, annotations, creationPolicy and renewBefore rewrite or reschedule from the held token; scopes fetch", async () => {
    const ns = "spec-changes";
    const token0 = await issued(env, ns, "spec-changes");
    const before = requestsOf(env, "spec-changes").length;
    const renewal0 = (await env.getToken(ns, "supply")).status?.renewalTime;
    await patchToken(env, ns, "supply", {
      spec: {
        target: { labels: { team: "parts" }, annotations: { "example.com/note": "x" }, creationPolicy: "Merge" },
      },
    });
    await waitFor(
      "the Secret relabelled",
      async () => ((await env.readSecret(ns, "supply"))?.metadata?.labels?.team === "parts" ? true : undefined),
      20_000,
    );
    await patchToken(env, ns, "supply", { spec: { renewBefore: "25m" } });
    const rescheduled = await waitFor(
      "the renewal rescheduled",
      async () => {
        const t = await env.getToken(ns, "supply");
        return t.status?.observedGeneration === t.metadata.generation && t.status?.renewalTime !== renewal0
          ? t
          : undefined;
      },
      20_000,
    );
    // a 1 h token with renewBefore 25 m (the default is a third: 20 min, plus jitter of at most 2 min)
    const lifetimeLeft =
      Date.parse(rescheduled.status?.expiresAt as string) - Date.parse(rescheduled.status?.renewalTime as string);
    expect(lifetimeLeft).toBeGreaterThan(24 * 60_000);
    expect(requestsOf(env, "spec-changes").length).toBe(before);
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    expect(decode((await env.readSecret(ns, "supply"))?.data?.access_token)).toBe(token0);
    // the scopes are what the token is for: a change fetches, once
    await patchToken(env, ns, "supply", { spec: { scopes: ["supply.domain", "design.domain"] } });
    await waitForRequests(env, "spec-changes", before + 1, 20_000);
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    await sleep(1_000);
    expect(requestsOf(env, "spec-changes").length).toBe(before + 1);
    expect(await env.accessToken(ns, "supply")).not.toBe(token0);
  });
});
