/**
 * Issue 14: the installable CLI. `npm pack` on a copy of this checkout (tracked and untracked,
 * not ignored, files — the checkout's own dist/ is left alone) must run the `prepack` build and
 * produce a tarball with package.json, the README and the compiled dist/ only; `npm install -g`
 * of that tarball into an empty prefix must give a `nexar-token-operator` that runs `--version`,
 * `login --help` and `status` against the real control plane. Needs the npm registry (or a warm
 * npm cache) for the runtime dependencies.
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CustomObjectsApi } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/controlplane.ts";
import { applyCrd, createNamespace, loadKubeConfig } from "../harness/kube.ts";
import { cli } from "../harness/cli.ts";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string }).version;
/** PATH with this Node 24 first: the installed bin starts with `#!/usr/bin/env node`. */
const PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;

let dir: string;
let tarball: string;
let entries: string[];
let cp_: ControlPlane | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "nexar-pack-"));
  const copy = join(dir, "checkout");
  const files = execFileSync("git", ["ls-files", "-co", "--exclude-standard", "-z"], { cwd: ROOT, encoding: "utf8" })
    .split("\0")
    .filter(Boolean);
  for (const f of files) {
    mkdirSync(dirname(join(copy, f)), { recursive: true });
    await cp(join(ROOT, f), join(copy, f)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err; // a file deleted but not yet committed
    });
  }
  symlinkSync(join(ROOT, "node_modules"), join(copy, "node_modules"), "dir");
  const out = await run("npm", ["pack", "--json", "--pack-destination", dir], {
    cwd: copy,
    env: { ...process.env, PATH },
    maxBuffer: 16 * 1024 * 1024,
  });
  const doc = JSON.parse(out.stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, doc[0]?.filename as string);
  entries = (await run("tar", ["-tzf", tarball])).stdout.split("\n").filter(Boolean);
}, 300_000);

afterAll(async () => {
  await cp_?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("npm pack", () => {
  it("ships package.json, the README and the compiled dist/ only", () => {
    expect(tarball).toMatch(new RegExp(`nexar-token-operator-${VERSION.replace(/\./g, "\\.")}\\.tgz$`));
    expect(entries).toContain("package/package.json");
    expect(entries).toContain("package/dist/cli/main.js");
    expect(entries).toContain("package/dist/kube/client.js");
    for (const e of entries) expect(e).toMatch(/^package\/(package\.json|README\.md|dist\/.+\.js(\.map)?)$/);
    expect(entries.filter((e) => /\.test\.js|\/(test|hack|src)\//.test(e))).toEqual([]);
    const pkg = JSON.parse(execFileSync("tar", ["-xzOf", tarball, "package/package.json"], { encoding: "utf8" })) as {
      private?: boolean;
      bin: Record<string, string>;
      dependencies: Record<string, string>;
    };
    expect(pkg.private).toBeUndefined();
    expect(pkg.bin["nexar-token-operator"]).toBe("dist/cli/main.js");
    expect(Object.keys(pkg.dependencies)).toEqual(expect.arrayContaining(["@kubernetes/client-node", "undici"]));
  });
});

describe("npm install -g of the tarball", () => {
  let bin: string;
  beforeAll(async () => {
    const prefix = join(dir, "prefix");
    mkdirSync(prefix);
    await run("npm", ["install", "-g", tarball, "--prefix", prefix, "--no-audit", "--no-fund"], {
      env: { ...process.env, PATH },
      maxBuffer: 16 * 1024 * 1024,
    });
    bin = join(prefix, "bin", "nexar-token-operator");
    cp_ = await startControlPlane({ controllerManager: false });
    await applyCrd(cp_.kubeconfigPath, join(ROOT, "crds", "nexartokens.nexar-operator.io.yaml"));
    await createNamespace(cp_.kubeconfigPath, "installed");
    await loadKubeConfig(cp_.kubeconfigPath)
      .makeApiClient(CustomObjectsApi)
      .createNamespacedCustomObject({
        group: "nexar-operator.io",
        version: "v1alpha1",
        namespace: "installed",
        plural: "nexartokens",
        body: {
          apiVersion: "nexar-operator.io/v1alpha1",
          kind: "NexarToken",
          metadata: { name: "supply" },
          spec: { scopes: ["supply.domain"], credentialsSecretRef: { name: "nexar-app" } },
        },
      });
  }, 300_000);

  it("gives a nexar-token-operator that runs --version, login --help and status", async () => {
    const installed = (args: string[]) => cli(args, { PATH }, [bin]);
    const version = await installed(["--version"]);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(VERSION);
    const help = await installed(["login", "--help"]);
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain("--ca-file");
    expect(help.stdout).toContain("--context");
    const status = await installed(["status", "-n", "installed", "--kubeconfig", cp_?.kubeconfigPath as string]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^NAMESPACE\s+NAME\s+READY/);
    expect(status.stdout).toMatch(/^installed\s+supply\s+-/m);
  });
});
