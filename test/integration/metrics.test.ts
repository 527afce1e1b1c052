/**
 * The operator's /metrics on a real run (SPEC §5): a scrape passes `promtool check metrics`
 * (built by hack/build-tools.sh); every `nexar_token_*` family exposed is documented in the
 * docs/operations.md metrics table and every documented one is exposed; per-NexarToken gauges
 * match the status and vanish with the NexarToken; counters, histograms and leader status move.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEnv, waitFor, type Env } from "./env.ts";
import { toolPath } from "../alerts/render-rules.ts";

const DOCS = fileURLToPath(new URL("../../docs/operations.md", import.meta.url));
const VERSION = (
  JSON.parse(readFileSync(fileURLToPath(new URL("../../package.json", import.meta.url)), "utf8")) as {
    version: string;
  }
).version;

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition samples (label values without escaped quotes suffice here). */
function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

/** Metric family names declared by `# TYPE` lines. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string);
  return out;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

function promtoolCheck(promtool: string, body: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = execFile(promtool, ["check", "metrics"], (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? -1) : 0;
      resolve({ code, out: stdout + stderr });
    });
    child.stdin?.end(body);
  });
}

let env: Env;
let promtool: string;
beforeAll(async () => {
  promtool = toolPath("promtool");
  env = await startEnv();
}, 300_000);
afterAll(async () => {
  if (!env) return;
  await env.scanForSecrets();
  await env.stop();
});

describe("metrics on a running operator", () => {
  let ns: string;

  it("a scrape with Ready, failing and deleted NexarTokens passes promtool check metrics", async () => {
    ns = await env.namespace("metrics");
    env.client({ clientId: "metrics-app", clientSecret: "metrics-secret-0123456789" });
    await env.credentials(ns, "good", { clientId: "metrics-app", clientSecret: "metrics-secret-0123456789" });
    await env.credentials(ns, "bad", { clientId: "metrics-app", clientSecret: "wrong-secret-0123456789" });
    for (const [name, creds] of [
      ["supply", "good"],
      ["doomed", "good"],
      ["failing", "bad"],
    ] as const) {
      await env.createToken(ns, name, {
        scopes: ["supply.domain"],
        tokenUrl: env.idp.tokenUrl,
        credentialsSecretRef: { name: creds },
      });
    }
    await env.waitReady(ns, "supply", "True");
    await env.waitReady(ns, "doomed", "True");
    await env.waitReady(ns, "failing", "False", "InvalidClient");
    const body = await waitFor(
      "per-token series of all three NexarTokens",
      async () => {
        const t = await env.op.metrics();
        const s = parseSamples(t);
        const failing = value(s, "nexar_token_failed_attempts", { namespace: ns, name: "failing" });
        return value(s, "nexar_token_ready", { namespace: ns, name: "doomed" }) === 1 && (failing ?? 0) >= 1
          ? t
          : undefined;
      },
      30_000,
    );
    const r = await promtoolCheck(promtool, body);
    expect(r.out.trim()).toBe("");
    expect(r.code).toBe(0);
  });

  it("the check can fail: promtool rejects a gauge named like a counter", async () => {
    const bad = "# HELP nexar_token_bad_total x\n# TYPE nexar_token_bad_total gauge\nnexar_token_bad_total 1\n";
    const r = await promtoolCheck(promtool, bad);
    expect(r.code).not.toBe(0);
  });

  it("exposes exactly the metrics documented in docs/operations.md", async () => {
    const exposed = [...families(await env.op.metrics()).keys()].filter((n) => n.startsWith("nexar_token_")).sort();
    const documented = [...readFileSync(DOCS, "utf8").matchAll(/^\| `(nexar_token_[a-z_]+)`/gm)]
      .map((m) => m[1] as string)
      .sort();
    expect(documented.length).toBeGreaterThan(20);
    expect(exposed).toEqual(documented);
  });

  it("per-NexarToken gauges match the status; counters, histograms, queue and leader figures move", async () => {
    const s = parseSamples(await env.op.metrics());
    const nt = await env.getToken(ns, "supply");
    const id = { namespace: ns, name: "supply" };
    expect(value(s, "nexar_token_expiration_timestamp_seconds", id)).toBe(
      Date.parse(nt.status?.expiresAt as string) / 1000,
    );
    expect(value(s, "nexar_token_renewal_timestamp_seconds", id)).toBe(
      Date.parse(nt.status?.renewalTime as string) / 1000,
    );
    expect(value(s, "nexar_token_ready", id)).toBe(1);
    expect(value(s, "nexar_token_failed_attempts", id)).toBe(0);
    expect(value(s, "nexar_token_ready", { namespace: ns, name: "failing" })).toBe(0);
    const sum = (name: string, labels: Record<string, string> = {}) =>
      s
        .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
        .reduce((a, x) => a + x.value, 0);
    expect(sum("nexar_token_refreshes_total", { result: "success" })).toBeGreaterThanOrEqual(2);
    expect(sum("nexar_token_refreshes_total", { result: "failure", reason: "InvalidClient" })).toBeGreaterThanOrEqual(
      1,
    );
    // "supply" and "doomed" share one token (same credentials and scopes): one 2xx between them
    expect(sum("nexar_token_endpoint_responses_total", { status_class: "2xx" })).toBeGreaterThanOrEqual(1);
    expect(
      sum("nexar_token_issuance_fetches_total", { source: "cache" }) +
        sum("nexar_token_issuance_fetches_total", { source: "joined" }),
    ).toBeGreaterThanOrEqual(1);
    expect(value(s, "nexar_token_issuance_cached_tokens")).toBeGreaterThanOrEqual(1);
    expect(value(s, "nexar_token_issuance_waiting")).toBe(0);
    expect(sum("nexar_token_endpoint_responses_total", { status_class: "4xx" })).toBeGreaterThanOrEqual(1);
    expect(sum("nexar_token_endpoint_request_duration_seconds_count")).toBeGreaterThanOrEqual(2);
    expect(sum("nexar_token_api_writes_total", { resource: "secret", action: "create" })).toBeGreaterThanOrEqual(2);
    expect(sum("nexar_token_reconcile_total", { controller: "nexartoken" })).toBeGreaterThanOrEqual(3);
    expect(sum("nexar_token_reconcile_time_seconds_count")).toBeGreaterThanOrEqual(3);
    expect(sum("nexar_token_workqueue_adds_total", { name: "nexartoken" })).toBeGreaterThanOrEqual(3);
    expect(sum("nexar_token_workqueue_work_duration_seconds_count")).toBeGreaterThanOrEqual(3);
    expect(sum("nexar_token_workqueue_queue_duration_seconds_count")).toBeGreaterThanOrEqual(3);
    expect(value(s, "nexar_token_workqueue_delayed_keys")).toBeGreaterThanOrEqual(1); // renewal timers
    expect(value(s, "nexar_token_max_concurrent_reconciles", { controller: "nexartoken" })).toBe(64); // the default
    expect(value(s, "nexar_token_leader")).toBe(1);
    expect(value(s, "nexar_token_build_info", { version: VERSION })).toBe(1);
    expect(value(s, "process_start_time_seconds")).toBeGreaterThan(0);
  });

  it("a deleted NexarToken leaves no series", async () => {
    await env.custom.deleteNamespacedCustomObject({
      group: "nexar-operator.io",
      version: "v1alpha1",
      plural: "nexartokens",
      namespace: ns,
      name: "doomed",
    });
    await waitFor(
      "no series of the deleted NexarToken",
      async () => ((await env.op.metrics()).includes('name="doomed"') ? undefined : true),
      20_000,
    );
    expect(value(parseSamples(await env.op.metrics()), "nexar_token_ready", { namespace: ns, name: "supply" })).toBe(1);
  });
});
