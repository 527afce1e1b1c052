/**
 * The container image `make image` built (`E2E_IMAGE`), as Docker holds it: its configuration, what its
 * ENTRYPOINT does on a read-only root filesystem without a network, and what its filesystem holds — no shell, no
 * package manager, production dependencies only, and nothing of the build's CA bundle.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const IMAGE = process.env.E2E_IMAGE ?? "";
if (IMAGE === "") throw new Error("E2E_IMAGE is not set (make e2e sets it to the image hack/image.sh built)");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  version: string;
  dependencies: Record<string, string>;
};

interface ImageConfig {
  Size: number;
  Config: { User?: string; Entrypoint?: string[]; Cmd?: string[]; Env?: string[]; WorkingDir?: string };
}

/** `docker run --rm --read-only --network none IMAGE …args` as uid 65532; resolves with stdout. */
async function runImage(...args: string[]): Promise<string> {
  const { stdout } = await exec("docker", ["run", "--rm", "--read-only", "--network", "none", IMAGE, ...args]);
  return stdout;
}

/** Every file of the image's filesystem: path → SHA-256 of its content (from `docker export` of a created container). */
async function imageFiles(): Promise<Map<string, string>> {
  const id = (await exec("docker", ["create", IMAGE])).stdout.trim();
  try {
    const files = new Map<string, string>();
    const tar = spawn("docker", ["export", id], { stdio: ["ignore", "pipe", "inherit"] });
    // A minimal ustar reader: 512-byte headers, name at 0 (100 bytes) + prefix at 345 (155), size at 124 (octal).
    const chunks: Buffer[] = [];
    for await (const chunk of tar.stdout as AsyncIterable<Buffer>) chunks.push(chunk);
    const buf = Buffer.concat(chunks);
    for (let off = 0; off + 512 <= buf.length;) {
      const h = buf.subarray(off, off + 512);
      if (h.every((b) => b === 0)) break;
      const str = (a: number, n: number) => h.toString("utf8", a, a + n).replace(/\0.*$/s, "");
      const name = [str(345, 155), str(0, 100)].filter(Boolean).join("/");
      const size = parseInt(str(124, 12).trim() || "0", 8);
      const type = String.fromCharCode(h[156] as number);
      const body = buf.subarray(off + 512, off + 512 + size);
      if (type === "0" || type === "\0")
        files.set(name.replace(/^\.\//, ""), createHash("sha256").update(body).digest("hex"));
      else files.set(name.replace(/^\.\//, ""), type);
      off += 512 + Math.ceil(size / 512) * 512;
    }
    return files;
  } finally {
    await exec("docker", ["rm", id]);
  }
}

describe("the operator image", () => {
  let config: ImageConfig;
  let files: Map<string, string>;
  beforeAll(async () => {
    config = (
      JSON.parse((await exec("docker", ["image", "inspect", IMAGE])).stdout) as ImageConfig[]
    )[0] as ImageConfig;
    files = await imageFiles();
    console.log(`[e2e] image ${IMAGE}: ${(config.Size / 1024 / 1024).toFixed(0)} MiB, ${files.size} files`);
  }, 300_000);

  it("runs as 65532 with the production environment and ENTRYPOINT node dist/cli/main.js", () => {
    expect(config.Config.User).toBe("65532:65532");
    expect(config.Config.Entrypoint).toEqual(["/usr/local/bin/node", "--enable-source-maps", "dist/cli/main.js"]);
    expect(config.Config.Cmd).toEqual(["run"]);
    const env = Object.fromEntries((config.Config.Env ?? []).map((e) => e.split(/=(.*)/s, 2) as [string, string]));
    expect(env).toMatchObject({ NODE_ENV: "production", MALLOC_ARENA_MAX: "2" });
    expect(env.NODE_OPTIONS).toContain("--max-semi-space-size=");
  });

  it("--version and run --help work on a read-only root filesystem without a network", async () => {
    expect((await runImage("--version")).trim()).toBe(pkg.version);
    const help = await runImage("run", "--help");
    for (const flag of ["--kubeconfig", "--namespaces", "--http-address", "--ca-file", "--log-level"]) {
      expect(help).toContain(flag);
    }
  });

  it("holds no shell and no package manager, production dependencies only, no type declarations or source maps of them", () => {
    const paths = [...files.keys()];
    for (const p of ["bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/apt", "usr/bin/dpkg"])
      expect(files.has(p), p).toBe(false);
    expect(paths.some((p) => /(^|\/)node_modules\/(npm|corepack|yarn)\//.test(p) && !p.startsWith("app/"))).toBe(false);
    expect(files.has("usr/local/bin/node")).toBe(true);
    for (const dep of Object.keys(pkg.dependencies)) {
      expect(files.has(`app/node_modules/${dep}/package.json`), dep).toBe(true);
    }
    for (const dev of ["typescript", "vitest", "eslint", "prettier", "oidc-provider"]) {
      expect(files.has(`app/node_modules/${dev}/package.json`), dev).toBe(false);
    }
    expect(paths.filter((p) => p.startsWith("app/node_modules/") && /\.(d\.[cm]?ts|map)$/.test(p))).toEqual([]);
    expect(files.has("app/dist/cli/main.js")).toBe(true);
    expect(paths.some((p) => p.startsWith("app/src/") || p.startsWith("app/test/"))).toBe(false);
  });

  it("holds nothing of the build's CA bundle (it is a build secret, never a layer)", async () => {
    expect([...files.keys()].filter((p) => p.startsWith("run/secrets"))).toEqual([]);
    const ca = process.env.BUILD_CA_FILE ?? process.env.NODE_EXTRA_CA_CERTS ?? "/etc/ssl/certs/ca-certificates.crt";
    const digest = createHash("sha256")
      .update(await readFile(ca).catch(() => Buffer.from("")))
      .digest("hex");
    expect([...files.values()]).not.toContain(digest);
    const history = (await exec("docker", ["history", "--no-trunc", "--format", "{{.CreatedBy}}", IMAGE])).stdout;
    expect(history).not.toMatch(/BEGIN CERTIFICATE/);
  });
});
