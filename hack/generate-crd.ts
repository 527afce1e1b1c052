/**
 * Writes crds/nexartokens.nexar-operator.io.yaml, and its byte-identical copy in the Helm chart's
 * crds/ directory, from the TypeBox schema in src/api/schema.ts.
 *
 *   node hack/generate-crd.ts           # (re)write both files
 *   node hack/generate-crd.ts --check   # exit 1 if either file is out of date (for CI)
 *
 * src/api/crd.test.ts fails when the committed file differs from the generated output, and the
 * chart test when the chart's copy differs from it.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CRD_FILE, renderCrdYaml } from "../src/api/crd.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const files = [CRD_FILE, join("charts", "nexar-token-operator", "crds", basename(CRD_FILE))];
const wanted = renderCrdYaml();

if (process.argv.includes("--check")) {
  let stale = false;
  for (const f of files) {
    let current = "";
    try {
      current = readFileSync(join(root, f), "utf8");
    } catch {
      // missing file: out of date
    }
    if (current !== wanted) {
      console.error(`${f} is out of date; run: node hack/generate-crd.ts`);
      stale = true;
    } else console.log(`${f} is up to date`);
  }
  if (stale) process.exit(1);
} else {
  for (const f of files) {
    writeFileSync(join(root, f), wanted);
    console.log(`wrote ${f}`);
  }
}
