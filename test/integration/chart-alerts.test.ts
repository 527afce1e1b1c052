/**
 * The chart's alerts under `promtool` (built by hack/build-tools.sh): the PrometheusRule rendered
 * by `helm template` passes `promtool check rules`, and `promtool test rules` runs
 * test/alerts/alerts.test.yaml (every alert firing, pending and resolved) against it. A rendering
 * with a longer `for:` must fail those tests, so they can fail.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { renderRules, toolPath } from "../alerts/render-rules.ts";

const exec = promisify(execFile);
const TESTS = fileURLToPath(new URL("../alerts/alerts.test.yaml", import.meta.url));

let helm: string;
let promtool: string;
let dir: string;

beforeAll(async () => {
  helm = toolPath("helm");
  promtool = toolPath("promtool");
  dir = await mkdtemp(join(tmpdir(), "nexar-alerts-"));
}, 300_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Renders the rules with `sets` into a fresh folder beside a copy of the tests; returns that folder. */
async function prepare(name: string, sets: string[] = []): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  await writeFile(join(d, "rules.yaml"), renderRules(helm, sets));
  await copyFile(TESTS, join(d, "alerts.test.yaml"));
  return d;
}

async function promtoolRun(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await exec(promtool, args);
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: (e.stdout ?? "") + (e.stderr ?? "") };
  }
}

describe("alerts (promtool)", () => {
  it("every alert of the chart is covered by a promtool test", async () => {
    const d = await prepare("coverage");
    const rules = parse(renderRules(helm)) as { groups: { rules: { alert?: string }[] }[] };
    const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter(Boolean);
    expect(alerts.sort()).toEqual(
      [
        "NexarTokenExpiringSoon",
        "NexarTokenExpired",
        "NexarTokenRefreshFailing",
        "NexarTokenNotReady",
        "NexarTokenOperatorAbsent",
        "NexarTokenOperatorNoLeader",
      ].sort(),
    );
    const tests = parse(await readFile(join(d, "alerts.test.yaml"), "utf8")) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    for (const a of alerts) {
      const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []).filter((c) => c.alertname === a);
      expect(
        cases.some((c) => c.exp_alerts.length > 0),
        `${a} has a firing case`,
      ).toBe(true);
      expect(
        cases.some((c) => c.exp_alerts.length === 0),
        `${a} has a not-firing case`,
      ).toBe(true);
    }
  });

  it("promtool check rules accepts the rendered PrometheusRule", async () => {
    const d = await prepare("check");
    const r = await promtoolRun(["check", "rules", join(d, "rules.yaml")]);
    expect(r.out).toContain("SUCCESS: 6 rules found");
    expect(r.code).toBe(0);
  });

  it("promtool test rules passes test/alerts/alerts.test.yaml", async () => {
    const d = await prepare("test");
    const r = await promtoolRun(["test", "rules", join(d, "alerts.test.yaml")]);
    expect(r.out).toContain("SUCCESS");
    expect(r.code).toBe(0);
  });

  it("the promtool tests fail when an alert's behaviour changes (refreshFailingFor 30m)", async () => {
    const d = await prepare("mutated", ["prometheusRule.refreshFailingFor=30m"]);
    const r = await promtoolRun(["test", "rules", join(d, "alerts.test.yaml")]);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("NexarTokenRefreshFailing");
  });
});
