/**
 * Smoke check of `make bench` (hack/bench.ts): a `--quick` run with small sizes must complete and
 * write `bench-results.json` with every figure of issue 5 as a number. It checks the script, not
 * the figures (those depend on the machine; see BENCHMARKS.md).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);
let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

const FIELDS = [
  "p1_all_ready_seconds",
  "p2_token_requests",
  "p3_restart_token_requests",
  "p3_restart_secret_writes",
  "p3_restart_ready_seconds",
  "p4_rss_mib",
  "p5_idle_cpu_percent",
  "p6_writes_per_renewal",
  "p7_create_to_ready_p50_ms",
  "p7_create_to_ready_p99_ms",
];

describe("hack/bench.ts --quick", () => {
  it("runs end to end and writes every figure as a number", async () => {
    dir = await mkdtemp(join(tmpdir(), "nexar-bench-"));
    const out = join(dir, "bench-results.json");
    const { stdout } = await run(process.execPath, [join(ROOT, "hack", "bench.ts"), "--quick", "--out", out], {
      cwd: ROOT,
      env: process.env,
      timeout: 200_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    const doc = JSON.parse(await readFile(out, "utf8")) as Record<string, unknown>;
    for (const f of FIELDS) {
      expect(typeof doc[f], f).toBe("number");
      expect(Number.isFinite(doc[f] as number), f).toBe(true);
      expect(doc[f] as number, f).toBeGreaterThanOrEqual(0);
      expect(stdout, f).toContain(f);
    }
    expect(doc.quick).toBe(true);
    expect(doc.sizes).toMatchObject({ tokens: 20, credentials: 2 });
    expect(doc.machine).toMatchObject({ cpus: expect.any(Number) });
  }, 220_000);
});
