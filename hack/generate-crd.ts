/**
 * Writes crds/nexartokens.nexar-operator.io.yaml from the TypeBox schema in src/api/schema.ts.
 *
 *   node hack/generate-crd.ts           # (re)write the file
 *   node hack/generate-crd.ts --check   # exit 1 if the file is out of date (for CI)
 *
 * src/api/crd.test.ts fails when the committed file differs from the generated output.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CRD_FILE, renderCrdYaml } from "../src/api/crd.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const file = join(root, CRD_FILE);
const wanted = renderCrdYaml();

if (process.argv.includes("--check")) {
  let current = "";
  try {
    current = readFileSync(file, "utf8");
  } catch {
    // missing file: out of date
  }
  if (current !== wanted) {
    console.error(`${CRD_FILE} is out of date; run: node hack/generate-crd.ts`);
    process.exit(1);
  }
  console.log(`${CRD_FILE} is up to date`);
} else {
  writeFileSync(file, wanted);
  console.log(`wrote ${CRD_FILE}`);
}
