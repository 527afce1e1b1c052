import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { loadKubeConfig } from "./config.ts";

const SECRET_TOKEN = "kubeconfig-bearer-token-0123456789abcdef";
let dir: string;
const savedEnv = { HOME: process.env.HOME, KUBECONFIG: process.env.KUBECONFIG };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kubeconfig-test-"));
});
afterEach(() => {
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, doc: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, typeof doc === "string" ? doc : stringify(doc));
  return path;
}

const TWO_CONTEXTS = {
  "current-context": "a",
  clusters: [
    { name: "ca", cluster: { server: "https://a.example:6443", "certificate-authority": "pki/ca.crt" } },
    {
      name: "cb",
      cluster: { server: "https://b.example:6443", "tls-server-name": "api.b", "proxy-url": "http://p:3128" },
    },
  ],
  users: [
    { name: "ua", user: { token: SECRET_TOKEN } },
    { name: "ub", user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: "kubelogin" } } },
  ],
  contexts: [
    { name: "a", context: { cluster: "ca", user: "ua", namespace: "team-a" } },
    { name: "b", context: { cluster: "cb", user: "ub" } },
  ],
};

describe("loadKubeConfig", () => {
  it("uses the current context; --context picks another; file paths resolve against the kubeconfig's folder", async () => {
    const path = write("two", TWO_CONTEXTS);
    const a = await loadKubeConfig({ kubeconfig: path });
    expect(a.getCurrentContext()).toBe("a");
    expect(a.getCurrentCluster()).toMatchObject({ server: "https://a.example:6443", caFile: join(dir, "pki/ca.crt") });
    expect(a.getContextObject("a")?.namespace).toBe("team-a");
    const b = await loadKubeConfig({ kubeconfig: path, context: "b" });
    expect(b.getCurrentCluster()).toMatchObject({ tlsServerName: "api.b", proxyUrl: "http://p:3128" });
    expect(b.getCurrentUser()?.exec).toMatchObject({ command: "kubelogin" });
  });

  it("reads $KUBECONFIG (a list, merged) when no file is given", async () => {
    const first = write("first", { ...TWO_CONTEXTS, contexts: [], "current-context": "b" });
    const second = write("second", { contexts: TWO_CONTEXTS.contexts, clusters: [], users: [] });
    process.env.KUBECONFIG = `${first}:${second}`;
    const kc = await loadKubeConfig();
    expect(kc.getCurrentContext()).toBe("b");
    expect(kc.getCurrentCluster()?.name).toBe("cb");
  });

  it("names the file, context and key when something is missing", async () => {
    const path = write("two-again", TWO_CONTEXTS);
    await expect(loadKubeConfig({ kubeconfig: path, context: "c" })).rejects.toThrow(
      `kubeconfig ${path}: context "c" not found`,
    );
    const noCluster = write("no-cluster", { ...TWO_CONTEXTS, clusters: [TWO_CONTEXTS.clusters[1]] });
    await expect(loadKubeConfig({ kubeconfig: noCluster })).rejects.toThrow(
      `kubeconfig ${noCluster}: cluster "ca" of context "a" not found`,
    );
    const noUser = write("no-user", { ...TWO_CONTEXTS, users: [] });
    await expect(loadKubeConfig({ kubeconfig: noUser })).rejects.toThrow(
      `kubeconfig ${noUser}: user "ua" of context "a" not found`,
    );
    const noCurrent = write("no-current", { ...TWO_CONTEXTS, "current-context": undefined });
    await expect(loadKubeConfig({ kubeconfig: noCurrent })).rejects.toThrow(
      "no current-context (choose one with --context)",
    );
    const noServer = write("no-server", { ...TWO_CONTEXTS, clusters: [{ name: "ca", cluster: {} }] });
    await expect(loadKubeConfig({ kubeconfig: noServer })).rejects.toThrow("clusters[0].cluster.server is missing");
    await expect(loadKubeConfig({ kubeconfig: join(dir, "absent") })).rejects.toThrow(
      `kubeconfig ${join(dir, "absent")} cannot be read (ENOENT)`,
    );
  });

  it("reports invalid YAML by position, never quoting the file (it may hold a token)", async () => {
    const path = write("bad", `users:\n- name: u\n  user:\n    token: ${SECRET_TOKEN}\n   bad: [\n`);
    const err = (await loadKubeConfig({ kubeconfig: path }).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(new RegExp(`^kubeconfig ${path}: not valid YAML at line \\d+, column \\d+$`));
    expect(err.message).not.toContain(SECRET_TOKEN);
    expect(JSON.stringify(err)).not.toContain(SECRET_TOKEN);
  });

  it("refuses an http:// server without insecure-skip-tls-verify, as client-node does, with a clear message", async () => {
    const path = write("http", {
      ...TWO_CONTEXTS,
      clusters: [{ name: "ca", cluster: { server: "http://127.0.0.1:8001" } }],
    });
    await expect(loadKubeConfig({ kubeconfig: path })).rejects.toThrow("accepts only with insecure-skip-tls-verify");
  });

  it("says so when there is no kubeconfig and no in-cluster service account", async () => {
    delete process.env.KUBECONFIG;
    const home = join(dir, "empty-home");
    mkdirSync(home, { recursive: true });
    process.env.HOME = home;
    await expect(loadKubeConfig()).rejects.toThrow(`no kubeconfig found: $KUBECONFIG is unset, ${home}/.kube/config`);
  });
});
