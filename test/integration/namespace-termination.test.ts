/**
 * Issue 18 item 5: a NexarToken in a namespace that is being terminated, against the real control
 * plane and the real identity server.
 *
 * While a namespace terminates, the API server's NamespaceLifecycle admission refuses every create
 * in it with a 403 whose Status carries the cause `NamespaceTerminating`; the namespace
 * controller deletes the content meanwhile, in no set order, so a target Secret can go before its
 * NexarToken. The operator must recognise that 403 and stop reconciling the NexarToken quietly:
 * no warning per attempt, no retry at the work queue's 5 ms → 1000 s per-key backoff.
 *
 * kube-controller-manager runs here without its namespace controller, so a deleted namespace stays
 * Terminating with its content (as one whose content deletion is slow or stuck) and the test
 * deletes the target Secret itself, as the namespace controller would.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readAudit } from "../harness/audit.ts";
import { startEnv, waitFor, type Env } from "./env.ts";
import { dumpOperatorLogs, issued, patchToken, sleep } from "./faults-helpers.ts";

let env: Env;
beforeAll(async () => {
  env = await startEnv({ controlPlane: { audit: true, controllers: ["*", "-namespace-controller"] } });
});
afterAll(async () => {
  if (!env) return;
  dumpOperatorLogs(env, "namespace-termination");
  await env.scanForSecrets();
  await env.stop();
});

/** Audited create requests (POST) for Secret `ns/name`, with their response codes. */
function secretCreates(ns: string, name: string): (number | undefined)[] {
  return readAudit(env.cp.auditLogPath as string)
    .filter(
      (e) =>
        e.stage === "ResponseComplete" &&
        e.verb === "create" &&
        e.objectRef?.resource === "secrets" &&
        e.objectRef.namespace === ns &&
        e.objectRef.name === name,
    )
    .map((e) => e.responseStatus?.code);
}

/** pino levels: 40 = warn, 50 = error. */
const warnings = (ns: string) =>
  env.op.logs().filter((r) => r.nexartoken === `${ns}/supply` && typeof r.level === "number" && r.level >= 40);

describe("a namespace being terminated", () => {
  it("a target Secret deleted while its namespace terminates: one create attempt, refused with NamespaceTerminating; no warnings, no retries", async () => {
    const ns = "terminating";
    await issued(env, ns, ns);
    expect(secretCreates(ns, "supply")).toEqual([201]);

    await env.core.deleteNamespace({ name: ns });
    await waitFor("the namespace in phase Terminating", async () => {
      const n = await env.core.readNamespace({ name: ns });
      return n.status?.phase === "Terminating" ? n : undefined;
    });
    await env.core.deleteNamespacedSecret({ namespace: ns, name: "supply" });

    // The operator sees the deletion and tries to restore the Secret once: the API server refuses it.
    await waitFor("the refused create", async () => (secretCreates(ns, "supply").length >= 2 ? true : undefined));
    expect(secretCreates(ns, "supply")[1]).toBe(403);
    // The per-key backoff would have retried at 5, 10, 20 … 2560 ms by now (10 attempts in 5 s).
    await sleep(5_000);
    expect(secretCreates(ns, "supply")).toEqual([201, 403]);
    expect(warnings(ns)).toEqual([]);
    const said = env.op
      .logs()
      .filter((r) => r.nexartoken === `${ns}/supply` && /namespace is being terminated/.test(String(r.msg)));
    expect(said).toHaveLength(1);

    // A later event about the NexarToken reconciles it again, as quietly.
    await patchToken(env, ns, "supply", { metadata: { annotations: { poke: "1" } } });
    await waitFor("the second refused create", async () =>
      secretCreates(ns, "supply").length >= 3 ? true : undefined,
    );
    await sleep(2_000);
    expect(secretCreates(ns, "supply")).toEqual([201, 403, 403]);
    expect(warnings(ns)).toEqual([]);
  });

  it("NexarTokens in other namespaces carry on", async () => {
    const token = await issued(env, "alive", "alive");
    expect(token).toBeTruthy();
  });
});
