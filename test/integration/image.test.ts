/**
 * The container image without a Docker engine: checks the Dockerfile's shape (multi-stage, Node 24
 * slim base, production dependencies only, non-root uid 65532, ENTRYPOINT dist/cli/main.js), then
 * repeats what its `build`, `deps` and `runtime` stages do in a clean temporary folder — compile
 * dist/, copy package.json and the lockfile, run the `deps` stage's own `RUN npm install …` line
 * (production dependencies only), add dist/ — and runs the image's ENTRYPOINT with the Node 24
 * binary: `--version` and `run --help`. Needs the npm registry (or a warm npm cache).
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { cp, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

interface Stage {
  from: string;
  name: string | undefined;
  instructions: { op: string; args: string }[];
}

/** Parses a Dockerfile into stages (line continuations joined, comments dropped, ARG defaults substituted in FROM). */
function parseDockerfile(text: string): Stage[] {
  const lines = text
    .replace(/\\\r?\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const l of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(l);
    if (!m) continue;
    const op = (m[1] as string).toUpperCase();
    const rest = m[2] as string;
    if (op === "ARG" && stages.length === 0) {
      const [k, v] = rest.split("=", 2);
      if (k && v !== undefined) args.set(k.trim(), v.trim());
      continue;
    }
    if (op === "FROM") {
      const fm = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      const from = (fm?.[1] ?? rest).replace(/\$\{(\w+)\}/g, (_, k: string) => args.get(k) ?? "");
      stages.push({ from, name: fm?.[2], instructions: [] });
      continue;
    }
    stages.at(-1)?.instructions.push({ op, args: rest });
  }
  return stages;
}

const dockerfile = parseDockerfile(await readFile(join(ROOT, "Dockerfile"), "utf8"));
const stage = (name: string): Stage => {
  const s = dockerfile.find((x) => x.name === name);
  if (!s) throw new Error(`Dockerfile has no stage ${name}`);
  return s;
};
const runtime = dockerfile.at(-1) as Stage;
/** The runtime stage's `ENV key=value …` pairs (double-quoted values unquoted). */
const runtimeEnv: Record<string, string> = Object.fromEntries(
  runtime.instructions
    .filter((i) => i.op === "ENV")
    .flatMap((i) => [...i.args.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)])
    .map((m) => [m[1] as string, (m[2] as string).replace(/^"(.*)"$/, "$1")]),
);
const entrypoint = JSON.parse(runtime.instructions.find((i) => i.op === "ENTRYPOINT")?.args ?? "[]") as string[];

describe("Dockerfile", () => {
  it("is multi-stage on a Node 24 slim base, ending in a non-root runtime stage that runs dist/cli/main.js", () => {
    expect(dockerfile.length).toBeGreaterThanOrEqual(2);
    for (const s of dockerfile) expect(s.from).toMatch(/^node:24-[a-z]+-slim$|^gcr\.io\/distroless\/nodejs24/);
    expect(runtime.name).toBe("runtime");
    expect(runtime.instructions.find((i) => i.op === "USER")?.args).toBe("65532:65532");
    expect(entrypoint[0]).toBe("node");
    expect(entrypoint.at(-1)).toBe("dist/cli/main.js");
    // Only build output, production node_modules and package.json reach the runtime stage.
    const copies = runtime.instructions.filter((i) => i.op === "COPY").map((i) => i.args);
    expect(copies).toEqual([
      "--from=deps /app/node_modules ./node_modules",
      "--from=build /src/dist ./dist",
      "package.json ./",
    ]);
    // The runtime stage installs nothing (it only removes npm).
    for (const i of runtime.instructions.filter((x) => x.op === "RUN")) expect(i.args).not.toMatch(/npm (ci|install)/);
  });

  it("installs production dependencies only in the deps stage, and .dockerignore keeps the context small", async () => {
    const install = stage("deps").instructions.filter((i) => i.op === "RUN");
    expect(install).toHaveLength(1);
    expect(install[0]?.args).toMatch(/^npm install .*--omit=dev/);
    const ignore = await readFile(join(ROOT, ".dockerignore"), "utf8");
    expect(ignore).toMatch(/^\*$/m);
    expect(ignore).toMatch(/^!src\/$/m);
  });
});

describe("runtime stage reproduced in a clean folder", () => {
  let dir: string;
  let app: string;
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    version: string;
    dependencies: Record<string, string>;
    devDependencies: Record<string, string>;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "nexar-image-"));
    app = join(dir, "app");
    // build stage: tsc -p tsconfig.build.json (into the temp folder, not the checkout's dist/).
    await run(
      process.execPath,
      [
        join(ROOT, "node_modules", "typescript", "bin", "tsc"),
        "-p",
        "tsconfig.build.json",
        "--outDir",
        join(dir, "dist"),
      ],
      { cwd: ROOT },
    );
    // deps stage: package.json + lockfile, then the Dockerfile's own RUN line.
    await cp(join(ROOT, "package.json"), join(app, "package.json"));
    await cp(join(ROOT, "package-lock.json"), join(app, "package-lock.json"));
    const installLine = stage("deps").instructions.find((i) => i.op === "RUN")?.args as string;
    await run("sh", ["-c", installLine], {
      cwd: app,
      env: {
        ...process.env,
        PATH: `${join(process.execPath, "..")}:${process.env.PATH ?? ""}`,
        NODE_ENV: "production",
      },
      maxBuffer: 16 * 1024 * 1024,
    });
    // runtime stage: dist/ beside node_modules and package.json; the lockfile is not copied.
    await cp(join(dir, "dist"), join(app, "dist"), { recursive: true });
    await rm(join(app, "package-lock.json"));
  }, 300_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const entry = async (...args: string[]) =>
    run(process.execPath, [...entrypoint.slice(1), ...args], {
      cwd: app,
      env: { PATH: "/usr/bin:/bin", ...runtimeEnv },
    });

  it("has every production dependency and no development dependency", async () => {
    const installed = new Set(await readdir(join(app, "node_modules")));
    for (const dep of Object.keys(pkg.dependencies)) {
      const top = dep.startsWith("@") ? dep.split("/")[0] : dep;
      expect(installed.has(top as string), dep).toBe(true);
    }
    for (const dev of ["typescript", "vitest", "eslint", "prettier", "oidc-provider"]) {
      expect(installed.has(dev), dev).toBe(false);
    }
  });

  it("the runtime ENV is production, with the footprint settings BENCHMARKS.md measured", () => {
    expect(runtimeEnv).toMatchObject({ NODE_ENV: "production", MALLOC_ARENA_MAX: "2" });
    expect(runtimeEnv.NODE_OPTIONS).toContain("--max-semi-space-size=");
  });

  it("ENTRYPOINT --version prints the package version (Node 24)", async () => {
    expect(process.versions.node.split(".")[0]).toBe("24");
    const { stdout } = await entry("--version");
    expect(stdout.trim()).toBe(pkg.version);
  });

  it("ENTRYPOINT run --help lists the operator's flags and writes nothing to the app folder", async () => {
    const before = await snapshot(app);
    const { stdout } = await entry("run", "--help");
    for (const flag of ["--kubeconfig", "--namespaces", "--http-address", "--ca-file", "--log-level"]) {
      expect(stdout).toContain(flag);
    }
    expect(await snapshot(app)).toEqual(before);
  });
});

/** Paths and mtimes of every file under `dir` (a read-only root filesystem would reject any write). */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    out.push(`${p}:${(await stat(p)).mtimeMs}`);
  }
  return out.sort();
}
