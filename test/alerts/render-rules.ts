/**
 * Renders the chart's PrometheusRule with `helm template` and returns its `spec` — plain
 * Prometheus rule groups (`groups: [...]`) — as YAML, the input of `promtool check rules` and of
 * `promtool test rules` (test/alerts/alerts.test.yaml names it rules.yaml).
 *
 * CLI: `node test/alerts/render-rules.ts [--set k=v ...] > rules.yaml`; helm is `$HELM_BIN`, else
 * the one hack/build-tools.sh builds and caches.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseAllDocuments, stringify } from "yaml";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Path of the chart in the repository. */
export const CHART = join(ROOT, "charts", "nexar-token-operator");
/** Release name and namespace the alert tests assume (job label `nexar-token-operator-metrics`). */
export const RELEASE = { name: "nexar-token-operator", namespace: "nexar-system" };

/** Path of a tool built by hack/build-tools.sh (`HELM_BIN` / `PROMTOOL_BIN` win). Throws when the build fails. */
export function toolPath(name: "helm" | "promtool"): string {
  const fromEnv = process.env[name === "helm" ? "HELM_BIN" : "PROMTOOL_BIN"];
  if (fromEnv) return fromEnv;
  const out = execFileSync("bash", [join(ROOT, "hack", "build-tools.sh"), name], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return out.trim().split("\n").pop() ?? "";
}

/**
 * `helm template` of the chart with `prometheusRule.enabled=true` plus `sets` (each `key=value`),
 * and returns the PrometheusRule's spec as YAML. Throws when helm fails or renders no PrometheusRule.
 */
export function renderRules(helm: string, sets: readonly string[] = []): string {
  const args = [
    "template",
    RELEASE.name,
    CHART,
    "--namespace",
    RELEASE.namespace,
    "--set",
    "prometheusRule.enabled=true",
  ];
  for (const s of sets) args.push("--set", s);
  args.push("--show-only", "templates/prometheusrule.yaml");
  const manifest = execFileSync(helm, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  for (const doc of parseAllDocuments(manifest)) {
    const obj = doc.toJS() as { kind?: string; spec?: unknown } | null;
    if (obj?.kind === "PrometheusRule") return stringify(obj.spec, { lineWidth: 0 });
  }
  throw new Error("helm template rendered no PrometheusRule");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const sets: string[] = [];
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--set" && argv[i + 1] !== undefined) sets.push(argv[++i] as string);
  }
  process.stdout.write(renderRules(toolPath("helm"), sets));
}
