import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { stringify } from "yaml";
import { KubeConfig, type HttpsOptions } from "./kubeconfig.ts";

const SECRET_TOKEN = "kubeconfig-bearer-token-0123456789abcdef";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kubeconfig-test-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(name: string, doc: unknown): string {
  const path = join(dir, name);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, typeof doc === "string" ? doc : stringify(doc));
  return path;
}

const cluster = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  cluster: { server: `https://${name}.example:6443`, ...extra },
});

async function https(kc: KubeConfig): Promise<HttpsOptions> {
  const o: HttpsOptions = {};
  await kc.applyToHTTPSOptions(o);
  return o;
}

describe("KubeConfig.loadFromFile", () => {
  it("takes the current context's cluster and user; file references resolve against the kubeconfig's folder", async () => {
    write("sub/ca.pem", "CA-PEM");
    write("sub/token", `${SECRET_TOKEN}\n`);
    const path = write("sub/config", {
      "current-context": "dev",
      clusters: [cluster("prod"), cluster("dev", { "certificate-authority": "ca.pem" })],
      users: [{ name: "me", user: { tokenFile: "token" } }],
      contexts: [
        { name: "prod", context: { cluster: "prod", user: "me" } },
        { name: "dev", context: { cluster: "dev", user: "me", namespace: "team-a" } },
      ],
    });
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    expect(kc.getCurrentCluster()).toEqual({ name: "dev", server: "https://dev.example:6443", skipTLSVerify: false });
    expect(kc.getCurrentContext()).toBe("dev");
    expect(kc.getContextObject("dev")).toEqual({ namespace: "team-a" });
    const o = await https(kc);
    expect(o.ca?.toString()).toBe("CA-PEM");
    expect(o.headers?.Authorization).toBe(`Bearer ${SECRET_TOKEN}`); // trimmed
  });

  it("prefers -data over file paths, and sets client certificates and insecure-skip-tls-verify", async () => {
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    const path = write("config", {
      "current-context": "c",
      clusters: [cluster("k", { "certificate-authority-data": b64("CA"), "certificate-authority": "missing.pem" })],
      users: [{ name: "u", user: { "client-certificate-data": b64("CERT"), "client-key-data": b64("KEY") } }],
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
    });
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    const o = await https(kc);
    expect([o.ca?.toString(), o.cert?.toString(), o.key?.toString()]).toEqual(["CA", "CERT", "KEY"]);
    expect(o.headers).toBeUndefined();

    const insecure = write("insecure", {
      "current-context": "c",
      clusters: [cluster("k", { "insecure-skip-tls-verify": true })],
      users: [{ name: "u", user: { username: "admin", password: "pw" } }],
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
    });
    kc.loadFromFile(insecure);
    const i = await https(kc);
    expect(i.rejectUnauthorized).toBe(false);
    expect(i.auth).toBe("admin:pw");
  });

  it("merges a list the client-go way: the first file to define a name or current-context wins", async () => {
    const a = write("a", {
      clusters: [cluster("shared", { "certificate-authority-data": Buffer.from("FROM-A").toString("base64") })],
      users: [{ name: "u", user: { token: SECRET_TOKEN } }],
    });
    const b = write("b", {
      "current-context": "c",
      clusters: [cluster("shared", { "certificate-authority-data": Buffer.from("FROM-B").toString("base64") })],
      users: [{ name: "u", user: { token: "other" } }],
      contexts: [{ name: "c", context: { cluster: "shared", user: "u" } }],
    });
    const kc = new KubeConfig();
    kc.loadFromFile([join(dir, "does-not-exist"), a, b].join(delimiter));
    const o = await https(kc);
    expect(o.ca?.toString()).toBe("FROM-A");
    expect(o.headers?.Authorization).toBe(`Bearer ${SECRET_TOKEN}`);
    expect(kc.getCurrentContext()).toBe("c");
  });

  it("fails clearly on a missing context, cluster or user, and on credential plugins", () => {
    const base = { clusters: [cluster("k")], users: [{ name: "u", user: {} }] };
    const cases: [unknown, RegExp][] = [
      [{ ...base, "current-context": "nope", contexts: [] }, /current context "nope" not found/],
      [
        { ...base, "current-context": "c", contexts: [{ name: "c", context: { cluster: "x", user: "u" } }] },
        /cluster "x" of context "c" not found/,
      ],
      [
        { ...base, "current-context": "c", contexts: [{ name: "c", context: { cluster: "k", user: "ghost" } }] },
        /user "ghost" of context "c" not found/,
      ],
      [
        {
          clusters: [cluster("k")],
          users: [{ name: "u", user: { exec: { command: "aws" } } }],
          "current-context": "c",
          contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
        },
        /exec and auth-provider credential plugins are not supported/,
      ],
    ];
    for (const [doc, message] of cases) {
      const kc = new KubeConfig();
      expect(() => kc.loadFromFile(write("case", doc))).toThrow(message);
    }
  });

  it("a YAML error names the file and position, never the line (which may hold a token)", () => {
    const path = write("broken", `users:\n- name: u\n  user:\n    token: ${SECRET_TOKEN}\n  : [unclosed\n`);
    let message = "";
    try {
      new KubeConfig().loadFromFile(path);
    } catch (err) {
      message = (err as Error).message;
      expect((err as Error).cause).toBeUndefined();
    }
    expect(message).toMatch(/not valid YAML/);
    expect(message).toContain(path);
    expect(message).not.toContain(SECRET_TOKEN);
  });

  it("keeps the last token read when a token file is briefly unreadable", async () => {
    const token = write("token", SECRET_TOKEN);
    const path = write("config", {
      "current-context": "c",
      clusters: [cluster("k")],
      users: [{ name: "u", user: { tokenFile: token } }],
      contexts: [{ name: "c", context: { cluster: "k", user: "u" } }],
    });
    const kc = new KubeConfig();
    kc.loadFromFile(path);
    expect((await https(kc)).headers?.Authorization).toBe(`Bearer ${SECRET_TOKEN}`);
    rmSync(token);
    const realNow = Date.now;
    Date.now = () => realNow() + 120_000; // past the one-minute re-read interval
    try {
      expect((await https(kc)).headers?.Authorization).toBe(`Bearer ${SECRET_TOKEN}`);
    } finally {
      Date.now = realNow;
    }
  });
});
