/**
 * Issue 3, fault suite part 2: validation of the token response against the real identity server
 * with fault injection (SPEC §3.1, §3.4): a missing `expires_in` (JWT `exp`, then the configured
 * fallback), `expires_in` shorter than renewBefore (clamped, no renewal loop), negative / zero /
 * absurd / non-numeric lifetimes, a skewed `Date` header, a Content-Type that lies.
 *
 * The operator runs with the TEST-ONLY backoff scale 0.1 (credential backoff 5 min → 30 s).
 */
import { describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { waitFor, type Env } from "./env.ts";
import {
  faultSuite,
  failureLogs,
  gapsMs,
  issued,
  ms,
  ready,
  requestRefresh,
  requestsOf,
  sleep,
  waitForRequests,
} from "./faults-helpers.ts";

const SCALE = 0.1;

let env: Env;
const observed = faultSuite(
  "faults-lifetime",
  { scale: SCALE, heading: `observed (scale ${SCALE})` },
  (e) => (env = e),
);

describe("lifetime of the token response", () => {
  it("without expires_in, the expiry comes from the JWT exp", async () => {
    env.idp.setFault({ kind: "omitExpiresIn", times: 1, clientId: "no-expires-in" });
    const token = await issued(env, "no-expires-in", "no-expires-in");
    const nt = await env.getToken("no-expires-in", "supply");
    const exp = decodeJwt(token).exp as number;
    expect(Math.abs(ms(nt.status?.expiresAt) / 1000 - exp)).toBeLessThanOrEqual(1);
    expect(requestsOf(env, "no-expires-in")).toHaveLength(1);
  });

  it("expires_in shorter than renewBefore: renewBefore falls back to a third of the lifetime, said in Ready, no renewal loop", async () => {
    // 20 s tokens with renewBefore 1h: the window does not fit, so a third of the lifetime (as
    // cert-manager), raised to the 1 min floor and capped at lifetime/2 (SPEC §3.1): renew ~10 s
    // before expiry (minus ≤ 1 s jitter), not at once.
    env.idp.setFault({ kind: "overrideExpiresIn", expiresIn: 20, clientId: "short-lifetime" });
    try {
      await issued(env, "short-lifetime", "short-lifetime", { renewBefore: "1h" });
      const nt = await env.getToken("short-lifetime", "supply");
      const lead = ms(nt.status?.expiresAt) - ms(nt.status?.renewalTime);
      expect(lead).toBeGreaterThanOrEqual(10_000);
      expect(lead).toBeLessThanOrEqual(12_000);
      expect(ready(nt)?.message).toMatch(
        /renewBefore 3600s is not shorter than the token lifetime 20s; renewing a third/,
      );
      await sleep(24_000);
      const reqs = requestsOf(env, "short-lifetime");
      // t = 0, ~9.5 s, ~19 s: two or three requests in 24 s, never a loop.
      expect(reqs.length).toBeGreaterThanOrEqual(2);
      expect(reqs.length).toBeLessThanOrEqual(4);
      for (const g of gapsMs(reqs)) expect(g).toBeGreaterThanOrEqual(8_000);
      observed.push(`expires_in 20 with renewBefore 1h: renewal gaps ${gapsMs(reqs).join(", ")} ms`);
    } finally {
      env.idp.setFault(undefined);
    }
  }, 60_000);

  it("renewBefore ≥ a 5 min lifetime falls back to a third (cert-manager), not half, and Ready says so", async () => {
    env.idp.setFault({ kind: "overrideExpiresIn", expiresIn: 300, clientId: "third-lifetime" });
    try {
      await issued(env, "third-lifetime", "third-lifetime", { renewBefore: "1h" });
      const nt = await env.getToken("third-lifetime", "supply");
      const lead = ms(nt.status?.expiresAt) - ms(nt.status?.renewalTime);
      // A third of 300 s is 100 s (+ ≤ 10 s jitter, second precision); half would be 150 s.
      expect(lead).toBeGreaterThanOrEqual(99_000);
      expect(lead).toBeLessThanOrEqual(112_000);
      expect(ready(nt)?.message).toMatch(
        /renewBefore 3600s is not shorter than the token lifetime 300s; renewing a third/,
      );
    } finally {
      env.idp.setFault(undefined);
    }
  }, 60_000);

  it.each([
    ["a zero", 0],
    ["a negative", -60],
    ["an absurd (31 years)", 1_000_000_000],
    ["a non-numeric", "soon"],
  ])("%s expires_in is an error: Ready=False InvalidResponse, credential backoff, token kept", async (_n, value) => {
    const ns = `bad-lifetime-${String(value).replace(/[^a-z0-9]/gi, "") || "x"}`.toLowerCase();
    const clientId = ns;
    const token0 = await issued(env, ns, clientId);
    const before = requestsOf(env, clientId).length;
    env.idp.setFault({ kind: "overrideExpiresIn", expiresIn: value, times: 1, clientId });
    await requestRefresh(env, ns, "supply");
    const nt = await env.waitReady(ns, "supply", "False", "InvalidResponse", 15_000);
    expect(ready(nt)?.message).toMatch(/expires_in/);
    expect(nt.status?.lastFailureReason).toBe("InvalidResponse");
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    const log = failureLogs(env, ns, "supply")[0];
    expect(log?.kind).toBe("credential");
    // Credential backoff: 5 min ± 10 % × 0.1.
    expect(log?.retryInMs).toBeGreaterThanOrEqual(0.9 * 300_000 * SCALE);
    expect(log?.retryInMs).toBeLessThanOrEqual(1.1 * 300_000 * SCALE);
    await sleep(2_000);
    expect(requestsOf(env, clientId).length).toBe(before + 1);
    // A new refresh request retries at once; the fault was used up.
    await requestRefresh(env, ns, "supply");
    await env.waitReady(ns, "supply", "True", "TokenIssued", 15_000);
    expect(await env.accessToken(ns, "supply")).not.toBe(token0);
  });

  it.each([
    ["ahead of", 7200],
    ["behind", -7200],
  ])("a Date header 2 h %s the local clock does not move the expiry or cause a loop", async (name, skew) => {
    const ns = `skew-${name.split(" ")[0] ?? ""}`;
    env.idp.setFault({ kind: "skewDate", skewSeconds: skew, times: 1, clientId: ns });
    const sent = Date.now();
    await issued(env, ns, ns);
    const nt = await env.getToken(ns, "supply");
    // 3600 s tokens, counted from the local send time.
    expect(Math.abs(ms(nt.status?.expiresAt) - (sent + 3_600_000))).toBeLessThanOrEqual(5_000);
    expect(ms(nt.status?.renewalTime)).toBeGreaterThan(Date.now() + 30 * 60_000);
    await sleep(2_000);
    expect(requestsOf(env, ns)).toHaveLength(1);
  });
});

describe("a response whose Content-Type lies", () => {
  it("accepts a JSON token labelled text/html", async () => {
    const ns = await env.namespace("ct-html-label");
    const opaque = "opaque-token-from-a-mislabelled-response-0123456789";
    env.secrets.add(opaque);
    env.client({ clientId: "ct-html-label", clientSecret: "ct-html-label-secret-0123456789" });
    await env.credentials(ns, "nexar-app", {
      clientId: "ct-html-label",
      clientSecret: "ct-html-label-secret-0123456789",
    });
    env.idp.setFault({
      kind: "status",
      status: 200,
      contentType: "text/html; charset=utf-8",
      body: JSON.stringify({ access_token: opaque, token_type: "bearer", expires_in: 600, scope: "supply.domain" }),
      times: 1,
      clientId: "ct-html-label",
    });
    const sent = Date.now();
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const nt = await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(await env.accessToken(ns, "supply")).toBe(opaque);
    expect(Math.abs(ms(nt.status?.expiresAt) - (sent + 600_000))).toBeLessThanOrEqual(5_000);
  });

  it("rejects an HTML page labelled application/json as a transient InvalidResponse", async () => {
    const ns = "ct-json-label";
    const token0 = await issued(env, ns, ns);
    env.idp.setFault({
      kind: "status",
      status: 200,
      contentType: "application/json",
      body: "<!DOCTYPE html><html><body>Sign in</body></html>",
      times: 1,
      clientId: ns,
    });
    await requestRefresh(env, ns, "supply");
    const log = await env.op.waitForLog(
      (r) => r.nexartoken === `${ns}/supply` && r.reason === "InvalidResponse",
      15_000,
    );
    expect(log.kind).toBe("transient");
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    await env.waitReady(ns, "supply", "True", "TokenIssued", 15_000);
    await waitFor(
      "a new token",
      async () => ((await env.accessToken(ns, "supply")) !== token0 ? true : undefined),
      15_000,
    );
  });
});

describe("fallback lifetime", () => {
  it("uses spec.fallbackLifetime for an opaque token without expires_in, and fails clearly without one", async () => {
    const ns = await env.namespace("fallback");
    const opaque = "opaque-token-without-any-expiry-0123456789";
    env.secrets.add(opaque);
    env.client({ clientId: "fallback", clientSecret: "fallback-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "fallback", clientSecret: "fallback-secret-0123456789" });
    const body = JSON.stringify({ access_token: opaque, token_type: "Bearer" });
    env.idp.setFault({
      kind: "status",
      status: 200,
      contentType: "application/json",
      body,
      times: 2,
      clientId: "fallback",
    });
    const sent = Date.now();
    await env.createToken(ns, "with-fallback", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
      fallbackLifetime: "2m",
    });
    const nt = await env.waitReady(ns, "with-fallback", "True", "TokenIssued");
    expect(await env.accessToken(ns, "with-fallback")).toBe(opaque);
    expect(Math.abs(ms(nt.status?.expiresAt) - (sent + 120_000))).toBeLessThanOrEqual(5_000);

    await env.createToken(ns, "without-fallback", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const bad = await env.waitReady(ns, "without-fallback", "False", "InvalidResponse");
    expect(ready(bad)?.message).toMatch(/no expires_in.*no fallback lifetime/);
    expect(await env.readSecret(ns, "without-fallback")).toBeUndefined();
    await waitForRequests(env, "fallback", 2, 5_000);
  });
});
