/**
 * Issue 3, fault suite part 3: credential errors (SPEC §3.4) and secret hygiene (SPEC §3.9)
 * against the real control plane and the real identity server.
 *
 * - a permanent `invalid_client` backs off 5 min → 10 → 20 → 40 → 60 min (cap): a handful of
 *   requests per hour, never a storm; the backoff survives an operator restart (status
 *   `failedAttempts` / `lastFailureTime` / `lastFailureReason`); a spec change or a credentials
 *   change retries at once, whatever the backoff;
 * - every credential class gets `Ready=False` with its specific reason and keeps the token;
 * - error bodies that echo the posted client secret never leak it;
 * - credentials with stray whitespace are trimmed.
 *
 * The operator runs with the TEST-ONLY backoff scale 0.01 (NEXAR_OPERATOR_BACKOFF_SCALE), so the
 * credential backoff is 3 s → 6 → 12 → 24 → 36 s (cap): one scaled hour is 36 s.
 */
import { describe, expect, it } from "vitest";
import { waitFor, type Env } from "./env.ts";
import {
  faultSuite,
  eventsFor,
  gapsMs,
  issued,
  patchToken,
  ready,
  requestRefresh,
  requestsOf,
  waitForRequests,
} from "./faults-helpers.ts";

const SCALE = 0.01;
/** Nominal credential backoff after the n-th consecutive failure (actual: ±10 %, at most the cap), ms. */
const credentialMs = (n: number): number => Math.min(300_000 * 2 ** (n - 1), 3_600_000) * SCALE;
const CAP_MS = 3_600_000 * SCALE;
const SLACK_MS = 2_500;

let env: Env;
const observed = faultSuite(
  "faults-credential",
  { scale: SCALE, heading: `observed (scale ${SCALE})` },
  (e) => (env = e),
);

/** Failure log records of `ns/name` from every operator process so far (restarts included). */
function allFailureLogs(ns: string, name: string): Record<string, unknown>[] {
  return env.operators
    .flatMap((o) => o.logs())
    .filter(
      (r) => r.nexartoken === `${ns}/${name}` && typeof r.msg === "string" && r.msg.startsWith("token request failed"),
    );
}

describe("a permanent invalid_client", () => {
  it("backs off 5→10→20→40→60 min (scaled), survives a restart, and retries at once on a spec or credentials change", async () => {
    const ns = await env.namespace("storm");
    const good = "storm-secret-right-0123456789";
    env.client({ clientId: "storm-app", clientSecret: good });
    await env.credentials(ns, "nexar-app", { clientId: "storm-app", clientSecret: "storm-secret-WRONG-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const nt = await env.waitReady(ns, "supply", "False", "InvalidClient", 20_000);
    expect(ready(nt)?.message).toMatch(/client authentication failed/);
    expect(await env.readSecret(ns, "supply")).toBeUndefined();

    // Four failures: t ≈ 0, 3, 9, 21 s (production: 0, 5, 15, 35 min).
    const four = await waitForRequests(env, "storm-app", 4, 45_000);
    expect(four.every((r) => r.status === 400)).toBe(true);
    await waitFor(
      "failedAttempts 4 in status",
      async () => ((await env.getToken(ns, "supply")).status?.failedAttempts === 4 ? true : undefined),
      10_000,
    );

    // Restart the operator: the next attempt must still wait for the 4th delay (24 s ± 10 %),
    // read from status.nextAttemptTime — not fetch at once as a fresh process would.
    // One Warning Event for the identical failures so far (de-duplicated; a new process may add one).
    expect(await eventsFor(env, ns, "supply", "TokenRequestFailed")).toHaveLength(1);
    await env.restartOperator();
    const restartedAt = Date.now();
    const five = (await waitForRequests(env, "storm-app", 5, 45_000)).slice(0, 5);
    const fourth = five[3]?.atMs ?? 0;
    const fifth = five[4]?.atMs ?? 0;
    expect(restartedAt - fourth, "the new operator was up well before the backoff ended").toBeLessThan(
      credentialMs(4) * 0.9 - 5_000,
    );
    // The delay chosen at the failure, jitter included (status.nextAttemptTime), survives the restart.
    expect(fifth - fourth).toBeGreaterThanOrEqual(0.9 * credentialMs(4) - 50);
    expect(fifth - fourth).toBeLessThanOrEqual(1.1 * credentialMs(4) + SLACK_MS);
    await waitFor(
      "failedAttempts 5 after the restart",
      async () => ((await env.getToken(ns, "supply")).status?.failedAttempts === 5 ? true : undefined),
      10_000,
    );

    // Observed gaps: 3, 6, 12 s ±10 % before the restart, then the 4th delay across it.
    const gaps = gapsMs(five);
    for (const [k, gap] of gaps.slice(0, 3).entries()) {
      expect(gap, `gap after failure ${k + 1}`).toBeGreaterThanOrEqual(0.9 * credentialMs(k + 1) - 50);
      expect(gap, `gap after failure ${k + 1}`).toBeLessThanOrEqual(1.1 * credentialMs(k + 1) + SLACK_MS);
    }
    observed.push(`invalid_client: gaps ${gaps.join(", ")} ms (restart before the 4th gap)`);

    // A handful per (scaled) hour: at most 4 requests in the first 36 s, and the 5th delay is the cap.
    expect(five.filter((r) => r.atMs < (five[0]?.atMs ?? 0) + CAP_MS).length).toBeLessThanOrEqual(4);
    const delays = allFailureLogs(ns, "supply").map((l) => l.retryInMs as number);
    observed.push(`invalid_client: scheduled delays ${delays.join(", ")} ms`);
    expect(delays.length).toBeGreaterThanOrEqual(5);
    const last = delays[4] ?? 0;
    expect(last).toBeGreaterThanOrEqual(0.9 * CAP_MS);
    expect(last).toBeLessThanOrEqual(CAP_MS);
    expect(allFailureLogs(ns, "supply").every((l) => l.kind === "credential" && l.reason === "InvalidClient")).toBe(
      true,
    );

    // Five identical failures over two processes: at most one Warning Event per process.
    expect((await eventsFor(env, ns, "supply", "TokenRequestFailed")).length).toBeLessThanOrEqual(2);

    // A spec change of what the token is fetched with (the scopes) retries at once although the
    // next attempt is ~36 s away (a change of anything else waits: src/controller/decide.test.ts).
    const beforeSpec = requestsOf(env, "storm-app").length;
    const specChanged = Date.now();
    await patchToken(env, ns, "supply", { spec: { scopes: ["supply.domain", "design.domain"] } });
    const afterSpec = await waitForRequests(env, "storm-app", beforeSpec + 1, 10_000);
    expect((afterSpec[beforeSpec]?.atMs ?? 0) - specChanged).toBeLessThan(5_000);
    await waitFor(
      "the count restarted after the spec change",
      async () => ((await env.getToken(ns, "supply")).status?.failedAttempts === 1 ? true : undefined),
      10_000,
    );

    // A credentials change retries at once, and succeeds.
    const beforeCreds = requestsOf(env, "storm-app").length;
    const credsChanged = Date.now();
    await env.credentials(ns, "nexar-app", { clientId: "storm-app", clientSecret: good });
    const afterCreds = await waitForRequests(env, "storm-app", beforeCreds + 1, 10_000);
    expect((afterCreds[beforeCreds]?.atMs ?? 0) - credsChanged).toBeLessThan(5_000);
    const healed = await env.waitReady(ns, "supply", "True", "TokenIssued", 15_000);
    expect(healed.status?.failedAttempts ?? 0).toBe(0);
    expect(await env.accessToken(ns, "supply")).toBeTruthy();
    await waitFor("a CredentialsChanged Event", async () => {
      const ev = await eventsFor(env, ns, "supply", "CredentialsChanged");
      return ev.length > 0 ? ev : undefined;
    });
    const changed = await eventsFor(env, ns, "supply", "CredentialsChanged");
    expect(changed[0]?.type).toBe("Normal");
    expect(changed[0]?.note).toContain('"nexar-app"');
    await waitFor("a TokenIssued Event", async () => {
      const ev = await eventsFor(env, ns, "supply", "TokenIssued");
      return ev.length > 0 ? ev : undefined;
    });
  }, 150_000);
});

describe("credential error classes (valid token held)", () => {
  it.each([
    ["invalid_scope", { kind: "status", status: 400, body: { error: "invalid_scope" } }, "InvalidScope"],
    [
      "unauthorized_client",
      { kind: "status", status: 400, body: { error: "unauthorized_client" } },
      "UnauthorizedClient",
    ],
    ["invalid_grant", { kind: "status", status: 400, body: { error: "invalid_grant" } }, "InvalidGrant"],
    ["invalid_client under 401", { kind: "status", status: 401, body: { error: "invalid_client" } }, "InvalidClient"],
    ["401 with an empty body", { kind: "status", status: 401 }, "AccessDenied"],
    ["403 with a JSON body", { kind: "status", status: 403, body: {} }, "AccessDenied"],
  ] as const)("%s → Ready=False with its reason, long backoff, token kept, recovery", async (name, fault, reason) => {
    const ns = `cred-${name.replace(/[^a-z0-9]+/g, "-")}`.replace(/-+$/, "");
    const clientId = ns;
    const token0 = await issued(env, ns, clientId);
    const before = requestsOf(env, clientId).length;
    env.idp.setFault({ ...fault, times: 1, clientId });
    await requestRefresh(env, ns, "supply");
    const nt = await env.waitReady(ns, "supply", "False", reason, 15_000);
    expect(nt.status?.lastFailureReason).toBe(reason);
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    const log = await env.op.waitForLog((r) => r.nexartoken === `${ns}/supply` && r.reason === reason, 10_000);
    expect(log.kind).toBe("credential");
    expect(log.retryInMs).toBeGreaterThanOrEqual(0.9 * credentialMs(1));
    expect(log.retryInMs).toBeLessThanOrEqual(1.1 * credentialMs(1));
    // Recovery at the scheduled attempt (the fault was used up), not before it.
    const reqs = (await waitForRequests(env, clientId, before + 2, 15_000)).slice(before);
    expect((reqs[1]?.atMs ?? 0) - (reqs[0]?.atMs ?? 0)).toBeGreaterThanOrEqual(0.9 * credentialMs(1) - 50);
    await env.waitReady(ns, "supply", "True", "TokenIssued", 15_000);
    expect(await env.accessToken(ns, "supply")).not.toBe(token0);
  });

  it("a scope the server does not grant → Ready=False InvalidScope from the real server, no Secret", async () => {
    const ns = await env.namespace("bad-scope");
    env.client({ clientId: "bad-scope", clientSecret: "bad-scope-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "bad-scope", clientSecret: "bad-scope-secret-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["no.such.scope"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const nt = await env.waitReady(ns, "supply", "False", "InvalidScope", 15_000);
    expect(ready(nt)?.message).toMatch(/scope/);
    expect(await env.readSecret(ns, "supply")).toBeUndefined();
  });
});

describe("secret hygiene", () => {
  it("never repeats a client secret that an error body echoes (raw, URL-encoded or base64)", async () => {
    const ns = await env.namespace("echo");
    const secret = "echo/secret+value=with&chars-0123456789";
    const b64 = Buffer.from(secret).toString("base64");
    const formEncoded = new URLSearchParams({ s: secret }).toString().slice(2);
    env.secrets.add(b64);
    env.secrets.add(formEncoded);
    env.client({ clientId: "echo-app", clientSecret: secret });
    await env.credentials(ns, "nexar-app", { clientId: "echo-app", clientSecret: secret });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    const echoes = [
      {
        status: 400,
        body: {
          error: "invalid_client",
          error_description: `client_secret ${secret} is wrong (${b64}; ${formEncoded})`,
        },
        reason: "InvalidClient",
      },
      {
        status: 502,
        body: `upstream rejected client_secret=${formEncoded}&client_id=echo-app`,
        reason: "TokenEndpointUnavailable",
      },
      { status: 200, body: `<html><body>${secret}</body></html>`, contentType: "text/html", reason: "InvalidResponse" },
      { status: 401, body: { error: secret, error_description: secret }, reason: "AccessDenied" },
      {
        status: 400,
        body: { error: "invalid_request", error_description: `bad client_secret: ${b64}` },
        reason: "InvalidResponse",
      },
    ];
    for (const e of echoes) {
      // The fault stays until its failure is seen in status, then clears; the pending refresh
      // request is retried (with backoff) and succeeds before the next echo.
      env.idp.setFault({
        kind: "status",
        status: e.status,
        body: e.body,
        contentType: e.contentType,
        clientId: "echo-app",
      });
      await requestRefresh(env, ns, "supply");
      const nt = await waitFor(
        `status after the ${e.status} echo`,
        async () => {
          const t = await env.getToken(ns, "supply");
          return t.status?.lastFailureReason === e.reason ? t : undefined;
        },
        15_000,
        50,
      );
      env.idp.setFault(undefined);
      const text = JSON.stringify(nt.status);
      for (const form of [secret, b64, formEncoded]) expect(text).not.toContain(form);
      if (e.status === 400 && e.reason === "InvalidClient") expect(ready(nt)?.message).toContain("[REDACTED]");
      await waitFor(
        "recovery before the next echo",
        async () => ((await env.getToken(ns, "supply")).status?.lastFailureReason === undefined ? true : undefined),
        15_000,
      );
    }
    const notes = (await eventsFor(env, ns, "supply")).map((ev) => ev.note ?? "").join("\n");
    expect(notes).toContain("[REDACTED]");
    for (const form of [secret, b64, formEncoded]) {
      expect(notes).not.toContain(form);
      expect(env.op.lines.join("\n")).not.toContain(form);
      expect(await env.op.metrics()).not.toContain(form);
    }
  });

  it("trims credentials of surrounding whitespace (a trailing newline is the common mistake)", async () => {
    const ns = await env.namespace("whitespace");
    env.client({ clientId: "ws-app", clientSecret: "ws-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "  ws-app \n", clientSecret: "ws-secret-0123456789\n" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(requestsOf(env, "ws-app")).toHaveLength(1);

    await env.credentials(ns, "blank-creds", { clientId: "ws-app", clientSecret: " \n" });
    await env.createToken(ns, "blank", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "blank-creds" },
    });
    const nt = await env.waitReady(ns, "blank", "False", "CredentialsInvalid");
    expect(ready(nt)?.message).toBe('credentials Secret "blank-creds" lacks non-empty key(s): clientSecret');
    expect(requestsOf(env, "ws-app")).toHaveLength(1);
  });
});
