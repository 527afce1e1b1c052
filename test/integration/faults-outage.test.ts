/**
 * Issue 3, fault suite part 4: outages of the token endpoint against short-lived tokens from the
 * real identity server (SPEC §3.4).
 *
 * - an outage shorter than renewBefore never leaves a consumer with an expired token (the Secret
 *   is sampled every 200 ms throughout);
 * - an outage longer than the token's life: `Ready=False, reason=Expired`, one Warning `Expired`
 *   Event, the Secret keeps the last token, recovery once the endpoint is back.
 *
 * The operator runs with the TEST-ONLY backoff scale 0.1 (transient backoff 0.2 s → 30 s), so the
 * ordinary backoff alone could overshoot a 60 s token's remaining life; the operator clamps
 * retries to half the time left.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { decode, startEnv, waitFor, type Env } from "./env.ts";
import { dumpOperatorLogs, eventsFor, gapsMs, issued, ms, requestsOf, sleep } from "./faults-helpers.ts";

const SCALE = 0.1;

let env: Env;
beforeAll(async () => {
  env = await startEnv({ operatorEnv: { NEXAR_OPERATOR_BACKOFF_SCALE: String(SCALE) } });
});
afterEach(() => {
  env?.idp.setFault(undefined);
  env?.idp.setAccessTokenLifetime(3600);
});
afterAll(async () => {
  if (!env) return;
  dumpOperatorLogs(env, "faults-outage");
  await env.scanForSecrets();
  await env.stop();
});

describe("outages", () => {
  it("an outage shorter than renewBefore never leaves a consumer with an expired token", async () => {
    const ns = "outage";
    env.idp.setAccessTokenLifetime(60);
    // renewBefore 30 s on 60 s tokens: renewal 27–30 s after issue.
    await issued(env, ns, ns, { renewBefore: "30s" });
    const first = await env.getToken(ns, "supply");
    const renewAt = ms(first.status?.renewalTime);
    const expiresAt = ms(first.status?.expiresAt);
    const outageStart = renewAt - 3_000;
    const outageMs = 28_000; // < renewBefore (30 s)
    const violations: string[] = [];
    const tokens = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const s = await env.readSecret(ns, "supply");
        const now = Date.now();
        const token = decode(s?.data?.access_token);
        const exp = Date.parse(decode(s?.data?.expires_at) ?? "");
        if (!token) violations.push(`${now}: no token`);
        else {
          tokens.add(token);
          const jwtExp = (decodeJwt(token).exp as number) * 1000;
          if (!(exp > now) || !(jwtExp > now)) violations.push(`${now}: expired token (expires_at ${exp})`);
        }
        await sleep(200);
      }
    })();
    try {
      await sleep(Math.max(0, outageStart - Date.now()));
      env.idp.setFault({ kind: "status", status: 503, body: "maintenance", clientId: ns });
      const faultOn = Date.now();
      await sleep(outageMs);
      env.idp.setFault(undefined);
      const faultOff = Date.now();
      // Sample past the first token's expiry and a bit more.
      await sleep(Math.max(0, expiresAt + 8_000 - Date.now()));
      sampling = false;
      await sampler;
      const during = requestsOf(env, ns).filter((r) => r.atMs >= faultOn && r.atMs <= faultOff);
      expect(during.length, "the renewal was attempted during the outage").toBeGreaterThanOrEqual(3);
      expect(during.every((r) => r.status === 503)).toBe(true);
      const after = requestsOf(env, ns).filter((r) => r.atMs > faultOff && r.status === 200);
      expect(after.length).toBeGreaterThanOrEqual(1);
      expect(after[0]?.atMs).toBeLessThan(expiresAt);
      expect(violations).toEqual([]);
      expect(tokens.size).toBeGreaterThanOrEqual(2);
      console.log(
        `outage of ${outageMs} ms starting ${outageStart - renewAt} ms before renewal: ${during.length} failed attempts, gaps ${gapsMs(during).join(", ")} ms; renewed ${(after[0]?.atMs ?? 0) - faultOff} ms after the outage, ${expiresAt - (after[0]?.atMs ?? 0)} ms before expiry`,
      );
    } finally {
      sampling = false;
      await sampler;
    }
  }, 150_000);

  it("an outage longer than the token's life: Ready=False Expired, one Expired Event, token kept, recovery", async () => {
    const ns = "expiry";
    env.idp.setAccessTokenLifetime(20);
    const token0 = await issued(env, ns, ns);
    const first = await env.getToken(ns, "supply");
    env.idp.setFault({ kind: "reset", clientId: ns });
    const nt = await env.waitReady(ns, "supply", "False", "Expired", 40_000);
    expect(Date.now()).toBeGreaterThanOrEqual(ms(first.status?.expiresAt));
    expect(nt.status?.lastFailureReason).toBe("ConnectionFailed");
    expect(nt.status?.conditions?.find((c) => c.type === "Ready")?.message).toMatch(/expired at .*ConnectionFailed/);
    // The Secret keeps the last token (not deleted, not emptied).
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    await sleep(2_000);
    const expired = await eventsFor(env, ns, "supply", "Expired");
    expect(expired).toHaveLength(1);
    expect(expired[0]?.type).toBe("Warning");
    env.idp.setFault(undefined);
    env.idp.setAccessTokenLifetime(3600);
    // Recovery at the next scheduled attempt (transient cap 30 s × scale… 5 min × 0.1).
    await env.waitReady(ns, "supply", "True", "TokenIssued", 45_000);
    const token1 = await waitFor("a new token", async () => {
      const t = await env.accessToken(ns, "supply");
      return t && t !== token0 ? t : undefined;
    });
    expect(token1).not.toBe(token0);
  }, 120_000);
});
