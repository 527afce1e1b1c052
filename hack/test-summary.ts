/**
 * Prints vitest's JSON report as one plain closing line, `tests: N passed, N failed, N skipped`,
 * so any CI that reads closing lines can count the tests. Usage: node hack/test-summary.ts FILE
 */
import { readFileSync } from "node:fs";

const file = process.argv[2] ?? ".vitest-results.json";
try {
  const r = JSON.parse(readFileSync(file, "utf8")) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
  };
  console.log(
    `tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`,
  );
} catch (err) {
  console.log(`tests: 0 passed, 1 failed (no readable vitest report in ${file}: ${(err as Error).message})`);
}
