/**
 * Issue 3: drift repair (SPEC §3.5, §3.7) and the production backoff figures (SPEC §3.4), against
 * the real control plane (with the apiserver audit log on) and the real identity server.
 *
 * - a deleted or hand-edited target Secret is restored within seconds from the held token, with
 *   no new token request; labels and annotations added by others survive;
 * - writes carry the resourceVersion; a 409 Conflict is re-read and retried, with no hot loop
 *   (shown from the audit log);
 * - with the production constants (no backoff scale) an `invalid_client` schedules the next
 *   attempt 5 min later (± 10 %), a transient failure 1–2 s later, and a credentials change still
 *   retries at once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { readAudit, type AuditEvent } from "../harness/audit.ts";
import { decode, startEnv, waitFor, type Env } from "./env.ts";
import {
  dumpOperatorLogs,
  eventsFor,
  failureLogs,
  issued,
  requestRefresh,
  requestsOf,
  sleep,
  waitForRequests,
} from "./faults-helpers.ts";

let env: Env;
beforeAll(async () => {
  env = await startEnv({ controlPlane: { audit: true } });
});
afterEach(() => env?.idp.setFault(undefined));
afterAll(async () => {
  if (!env) return;
  dumpOperatorLogs(env, "drift");
  await env.scanForSecrets();
  await env.stop();
});

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const MERGE = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);

async function patchSecret(ns: string, name: string, body: unknown): Promise<void> {
  await env.core.patchNamespacedSecret({ namespace: ns, name, body }, MERGE);
}

/** Audit events of the operator (its user agent) on Secret `ns/name`. */
function operatorAudit(ns: string, name: string): AuditEvent[] {
  return readAudit(env.cp.auditLogPath as string).filter(
    (e) =>
      e.stage === "ResponseComplete" &&
      (e as AuditEvent & { userAgent?: string }).userAgent === "nexar-token-operator" &&
      e.objectRef?.namespace === ns &&
      e.objectRef.name === name,
  );
}

describe("drift repair", () => {
  it("restores a deleted target Secret within seconds with the held token, no new fetch", async () => {
    const ns = "drift-delete";
    const token0 = await issued(env, ns, ns, { target: { labels: { team: "parts" } } });
    const before = await env.readSecret(ns, "supply");
    await env.core.deleteNamespacedSecret({ namespace: ns, name: "supply" });
    const deleted = Date.now();
    const after = await waitFor("the Secret restored", () => env.readSecret(ns, "supply"), 15_000, 100);
    expect(Date.now() - deleted).toBeLessThan(10_000);
    expect(after.metadata?.uid).not.toBe(before?.metadata?.uid);
    expect(decode(after.data?.access_token)).toBe(token0);
    expect(after.data).toEqual(before?.data);
    expect(after.metadata?.labels).toEqual(before?.metadata?.labels);
    expect(after.metadata?.annotations).toEqual(before?.metadata?.annotations);
    expect(after.metadata?.ownerReferences?.[0]).toMatchObject({ kind: "NexarToken", name: "supply" });
    expect(requestsOf(env, ns)).toHaveLength(1);
  });

  it("the watch echo of the operator's own Secret write wakes no reconcile; another client's change does", async () => {
    const ns = "drift-echo";
    await issued(env, ns, ns);
    const reconciles = () =>
      env.op.logs().filter((r) => r.msg === "reconciled" && r["nexartoken"] === `${ns}/supply`).length;
    // Watch events arrive within milliseconds; two seconds let any stray reconcile show.
    await sleep(2_000);
    const settled = reconciles();
    // Someone deletes the Secret: one reconcile re-creates it, and the ADDED event of that
    // create (a resourceVersion the operator wrote itself) does not wake another.
    await env.core.deleteNamespacedSecret({ namespace: ns, name: "supply" });
    await waitFor("the Secret restored", () => env.readSecret(ns, "supply"), 15_000, 100);
    await sleep(2_000);
    expect(reconciles()).toBe(settled + 1);
    // A label added by someone else is a resourceVersion the operator has not seen: it reconciles
    // (and writes nothing, as it keeps other clients' labels).
    await patchSecret(ns, "supply", { metadata: { labels: { "added-by": "someone" } } });
    await waitFor("a reconcile after the label", async () => (reconciles() > settled + 1 ? true : undefined), 15_000);
    await sleep(2_000);
    expect(reconciles()).toBe(settled + 2);
    expect(requestsOf(env, ns)).toHaveLength(1);
  });

  it("restores hand-edited data with the held token, keeps others' labels and annotations, no new fetch", async () => {
    const ns = "drift-edit";
    const token0 = await issued(env, ns, ns);
    const before = await env.readSecret(ns, "supply");
    await patchSecret(ns, "supply", {
      metadata: { labels: { "added-by": "someone" }, annotations: { "reloader.stakater.com/match": "true" } },
      data: { access_token: b64("tampered"), expires_at: null, extra: b64("not the operator's") },
    });
    const after = await waitFor(
      "the data restored",
      async () => {
        const s = await env.readSecret(ns, "supply");
        return decode(s?.data?.access_token) === token0 && s?.data?.expires_at ? s : undefined;
      },
      15_000,
      100,
    );
    // Owner policy: the operator owns the whole data (Merge keeps foreign keys, see ownership.test.ts).
    expect(after.data).toEqual(before?.data);
    expect(after.metadata?.labels).toMatchObject({
      "added-by": "someone",
      "app.kubernetes.io/managed-by": "nexar-token-operator",
    });
    expect(after.metadata?.annotations).toMatchObject({
      "reloader.stakater.com/match": "true",
      "nexar-operator.io/owner": `${ns}/supply`,
    });
    expect(requestsOf(env, ns)).toHaveLength(1);

    // A renewal (forced) keeps them too.
    await requestRefresh(env, ns, "supply");
    const renewed = await waitFor(
      "a new token",
      async () => {
        const s = await env.readSecret(ns, "supply");
        return s && decode(s.data?.access_token) !== token0 ? s : undefined;
      },
      15_000,
    );
    expect(renewed.metadata?.labels?.["added-by"]).toBe("someone");
    expect(renewed.metadata?.annotations?.["reloader.stakater.com/match"]).toBe("true");
  });

  it("restores a stripped managed-by label and owner annotation (its ownerReference proves ownership)", async () => {
    const ns = "drift-strip";
    const token0 = await issued(env, ns, ns);
    await patchSecret(ns, "supply", {
      metadata: {
        labels: { "app.kubernetes.io/managed-by": null },
        annotations: { "nexar-operator.io/owner": null, "nexar-operator.io/expires-at": null },
      },
    });
    const after = await waitFor(
      "the operator's metadata restored",
      async () => {
        const s = await env.readSecret(ns, "supply");
        return s?.metadata?.labels?.["app.kubernetes.io/managed-by"] &&
          s.metadata.annotations?.["nexar-operator.io/owner"] &&
          s.metadata.annotations["nexar-operator.io/expires-at"]
          ? s
          : undefined;
      },
      15_000,
      100,
    );
    expect(decode(after.data?.access_token)).toBe(token0);
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(requestsOf(env, ns)).toHaveLength(1);
  });

  it("re-reads and retries on 409 Conflict, and settles: no hot loop", async () => {
    const ns = "drift-conflict";
    const token0 = await issued(env, ns, ns);
    let conflicts: AuditEvent[] = [];
    let rounds = 0;
    // Hammer the Secret with edits while the operator repairs it, until at least one of its
    // writes was refused with 409 (the race is real, so it may take a round or two).
    while (conflicts.length === 0 && rounds < 4) {
      rounds += 1;
      for (let i = 0; i < 40; i++) {
        await patchSecret(ns, "supply", { data: { access_token: b64(`tampered-${rounds}-${i}`) } });
      }
      await waitFor(
        "the Secret restored after the storm",
        async () => ((await env.accessToken(ns, "supply")) === token0 ? true : undefined),
        20_000,
        100,
      );
      await sleep(500);
      conflicts = operatorAudit(ns, "supply").filter((e) => e.verb === "update" && e.responseStatus?.code === 409);
    }
    const events = operatorAudit(ns, "supply");
    const updates = events.filter((e) => e.verb === "update");
    expect(conflicts.length, "no 409 happened in 4 storms of 40 edits").toBeGreaterThan(0);
    // Each refused write is followed by a re-read of the Secret before the next write.
    for (const c of conflicts) {
      const i = events.indexOf(c);
      const nextOp = events.slice(i + 1).find((e) => e.verb === "get" || e.verb === "update");
      expect(nextOp?.verb).toBe("get");
    }
    // Bounded: at most SECRET_WRITE_ATTEMPTS (3) writes per edit, plus the first create.
    expect(updates.length).toBeLessThanOrEqual(3 * 40 * rounds + 1);
    // Settled: no further operator writes while nothing changes.
    const settled = operatorAudit(ns, "supply").length;
    await sleep(3_000);
    expect(operatorAudit(ns, "supply").length).toBe(settled);
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    expect(requestsOf(env, ns)).toHaveLength(1);
    console.log(
      `409 storm: ${rounds} round(s) of 40 edits → ${updates.length} operator updates, ${conflicts.length} answered 409, each re-read`,
    );
  });
});

describe("production backoff figures (no scale)", () => {
  it("invalid_client: next attempt in 5 min ± 10 %, nothing sooner; a credentials fix retries at once", async () => {
    const ns = await env.namespace("prod-backoff");
    env.client({ clientId: "prod-app", clientSecret: "prod-secret-right-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "prod-app", clientSecret: "prod-secret-WRONG-0123456789" });
    await env.createToken(ns, "supply", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const nt = await env.waitReady(ns, "supply", "False", "InvalidClient");
    expect(nt.status?.failedAttempts).toBe(1);
    expect(nt.status?.lastFailureReason).toBe("InvalidClient");
    const log = failureLogs(env, ns, "supply")[0];
    expect(log?.retryInMs).toBeGreaterThanOrEqual(270_000);
    expect(log?.retryInMs).toBeLessThanOrEqual(330_000);
    // Unrelated events (a metadata edit, a Secret event) do not cut the backoff short.
    await env.core.patchNamespacedSecret(
      { namespace: ns, name: "nexar-app", body: { metadata: { labels: { touched: "yes" } } } },
      MERGE,
    );
    await sleep(3_000);
    expect(requestsOf(env, "prod-app")).toHaveLength(1);
    const fixed = Date.now();
    await env.credentials(ns, "nexar-app", { clientId: "prod-app", clientSecret: "prod-secret-right-0123456789" });
    const reqs = await waitForRequests(env, "prod-app", 2, 10_000);
    expect((reqs[1]?.atMs ?? 0) - fixed).toBeLessThan(5_000);
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    await waitFor("a CredentialsChanged Event", async () => {
      const ev = await eventsFor(env, ns, "supply", "CredentialsChanged");
      return ev.length > 0 ? ev : undefined;
    });
  });

  it("transient: next attempt in 1–2 s, then 2–4 s; the token is kept", async () => {
    const ns = "prod-transient";
    const token0 = await issued(env, ns, ns);
    env.idp.setFault({ kind: "status", status: 503, clientId: ns });
    await requestRefresh(env, ns, "supply");
    const logs = await waitFor(
      "two failures logged",
      async () => {
        const l = failureLogs(env, ns, "supply");
        return l.length >= 2 ? l : undefined;
      },
      15_000,
    );
    env.idp.setFault(undefined);
    expect(logs[0]?.retryInMs).toBeGreaterThanOrEqual(1_000);
    expect(logs[0]?.retryInMs).toBeLessThanOrEqual(2_000);
    expect(logs[1]?.retryInMs).toBeGreaterThanOrEqual(2_000);
    expect(logs[1]?.retryInMs).toBeLessThanOrEqual(4_000);
    expect(await env.accessToken(ns, "supply")).toBe(token0);
    await env.waitReady(ns, "supply", "True", "TokenIssued", 20_000);
  });
});
