/**
 * Issue 14: Kubernetes access through client-node's KubeConfig and one undici transport, on the
 * real control plane — an `exec` credential plugin for `run`, `status`, `refresh`,
 * `token --from-secret` and `login` (run again once its credential expired, without a restart;
 * again a little before its `expirationTimestamp`; and again, once, after a 401 for a revoked
 * token, which the request then recovers from),
 * `proxy-url`, `HTTPS_PROXY` and `NO_PROXY` through a real loopback CONNECT proxy,
 * `tls-server-name` against a serving certificate that names only that host, a rotated in-cluster
 * ServiceAccount token file, `--context`, and impersonation (`--as`, `--as-group`).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { parse, stringify } from "yaml";
import { CREDENTIAL_RENEW_MARGIN_MS, KubeApiError, KubeClient } from "../../src/kube/client.ts";
import { loadKubeConfig } from "../../src/kube/config.ts";
import { cli, runCli } from "../harness/cli.ts";
import { startConnectProxy, type ConnectProxy } from "../harness/connect-proxy.ts";
import { execRuns, execUser } from "../harness/exec-credential.ts";
import { freePort } from "../harness/operator.ts";
import { startEnv, waitFor, type Env } from "./env.ts";

const NS = "kube-access";
const SNI_NAME = "api.nexar-harness.test";
const APP = { clientId: "kube-access-app", clientSecret: "kube-access-secret-5d6e7f8a9b" };
let env: Env;
let proxy: ConnectProxy;
let work: string;
let apiPort: string;

/** A TokenRequest token (1 h) of ServiceAccount `name` in {@link NS}, created if absent, optionally cluster-admin. */
async function serviceAccountToken(name: string, clusterAdmin: boolean): Promise<string> {
  const core = env.kc.makeApiClient(CoreV1Api);
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name } } }).catch(() => undefined);
  if (clusterAdmin) {
    await env.kc
      .makeApiClient(RbacAuthorizationV1Api)
      .createClusterRoleBinding({
        body: {
          metadata: { name: `${name}-admin` },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
          subjects: [{ kind: "ServiceAccount", name, namespace: NS }],
        },
      })
      .catch(() => undefined);
  }
  const tr = await core.createNamespacedServiceAccountToken({
    namespace: NS,
    name,
    body: { spec: { expirationSeconds: 3600 } },
  });
  const token = tr.status?.token as string;
  env.secrets.add(token);
  return token;
}

beforeAll(async () => {
  env = await startEnv({ controlPlane: { sniServingNames: [SNI_NAME] } });
  proxy = await startConnectProxy();
  work = join(env.cp.dir, "kube-access");
  mkdirSync(work, { recursive: true });
  apiPort = new URL(env.cp.server).port;
  await env.namespace(NS);
  env.client(APP);
  await env.credentials(NS, "nexar-app", APP);
});
afterAll(async () => {
  if (!env) return;
  try {
    await env.scanForSecrets();
  } finally {
    await proxy?.close();
    await env.stop();
  }
});

const spec = () => ({
  scopes: ["supply.domain"],
  tokenUrl: env.idp.tokenUrl,
  credentialsSecretRef: { name: "nexar-app" },
});

describe("an exec credential plugin (a TokenRequest token with a short expirationTimestamp)", () => {
  let kubeconfig: string;
  let count: string;
  beforeAll(async () => {
    const tokenFile = join(work, "exec-token");
    writeFileSync(tokenFile, await serviceAccountToken("exec-user", true), { mode: 0o600 });
    count = join(work, "exec-count");
    kubeconfig = await env.cp.kubeconfig("exec", { user: execUser(tokenFile, count, 4) });
  });

  it("run: the operator reconciles through it and runs it again once the credential expired, without a restart", async () => {
    const op = await env.restartOperator({ kubeconfig });
    const pid = op.child.pid;
    expect(execRuns(count)).toBeGreaterThanOrEqual(1);
    await env.createToken(NS, "before-expiry", spec());
    await env.waitReady(NS, "before-expiry", "True");
    const first = execRuns(count);
    // The credential is valid for 4 s; lease renewals and watches need it again after that.
    await waitFor("the plugin to run again", async () => (execRuns(count) > first ? true : undefined), 60_000);
    await env.createToken(NS, "after-expiry", spec());
    await env.waitReady(NS, "after-expiry", "True");
    expect(op.child.pid).toBe(pid);
    expect(op.child.exitCode).toBeNull();
  });

  it("status, refresh and token --from-secret each get their credentials from it", async () => {
    const kube = ["--kubeconfig", kubeconfig, "-n", NS];
    for (const args of [
      ["status"],
      ["refresh", "before-expiry", "--timeout", "60s"],
      ["token", "--from-secret", "nexar-app", "--token-url", env.idp.tokenUrl, "--allow-insecure-token-url"],
    ]) {
      const before = execRuns(count);
      const out = await cli([...args, ...kube]);
      expect(out.code, `${args[0]}: ${out.stderr}`).toBe(0);
      expect(execRuns(count), args[0]).toBeGreaterThan(before);
      if (args[0] === "status") expect(out.stdout).toMatch(/^kube-access\s+after-expiry\s+True/m);
    }
  });

  it("login stores the credentials Secret through it", async () => {
    const port = await freePort();
    const redirectUrl = `http://127.0.0.1:${port}/login`;
    const design = { clientId: "kube-access-design", clientSecret: "kube-access-design-secret-1a2b3c" };
    env.client({ ...design, redirectUris: [redirectUrl] });
    const before = execRuns(count);
    const run = runCli(
      [
        "login",
        "--no-browser",
        ...["--authorization-url", env.idp.authorizationUrl, "--token-url", env.idp.tokenUrl],
        "--allow-insecure-token-url",
        ...["--redirect-url", redirectUrl, "--kubeconfig", kubeconfig, "-n", NS, "--secret", "design-login"],
      ],
      { NEXAR_CLIENT_ID: design.clientId, NEXAR_CLIENT_SECRET: design.clientSecret },
    );
    const url = (await run.waitForStderr(/^\s+(http:\/\/127\.0\.0\.1:\d+\/connect\/authorize\?\S+)$/m))[1] as string;
    const redirect = await env.idp.completeAuthorization(url);
    await fetch(redirect);
    const out = await run.done;
    expect(out.code, out.stderr).toBe(0);
    expect(out.stderr).toContain(`Secret ${NS}/design-login created`);
    const secret = await env.readSecret(NS, "design-login");
    expect(Buffer.from(secret?.data?.clientId ?? "", "base64").toString()).toBe(design.clientId);
    env.secrets.add(Buffer.from(secret?.data?.refreshToken ?? "", "base64").toString());
    expect(execRuns(count)).toBeGreaterThan(before);
  });
});

/** The user `kube` authenticates as (a SelfSubjectReview, which every authenticated user may create). */
const whoami = async (kube: KubeClient) =>
  (
    await kube.request<{ status: { userInfo: { username: string } } }>(
      "POST",
      "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      { body: { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" } },
    )
  ).status.userInfo.username;

/**
 * Deletes ServiceAccount `name` of {@link NS}, which revokes its tokens, and waits until the API
 * server refuses `token` (it caches a successful authentication for 10 s).
 */
async function revoke(name: string, token: string): Promise<void> {
  await env.kc.makeApiClient(CoreV1Api).deleteNamespacedServiceAccount({ namespace: NS, name });
  const probe = await KubeClient.create(
    await loadKubeConfig({ kubeconfig: await env.cp.kubeconfigWithToken(token, `probe-${name}`) }),
  );
  try {
    await waitFor(`the token of ${name} to be refused`, async () =>
      (await whoami(probe).then(
        () => false,
        (e: unknown) => e instanceof KubeApiError && e.status === 401,
      ))
        ? true
        : undefined,
    );
  } finally {
    await probe.close();
  }
}

describe("exec credential renewal (KubeClient in this process, as the operator and the CLI use it)", () => {
  /** The plugin's runs, as the times it recorded (epoch ms). */
  const runTimes = (countFile: string) =>
    readFileSync(countFile, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => Date.parse(l));

  it("runs the plugin again a little before the credential's expirationTimestamp, not after it", async () => {
    const tokenFile = join(work, "ahead-token");
    writeFileSync(tokenFile, await serviceAccountToken("ahead-one", false), { mode: 0o600 });
    const count = join(work, "ahead-count");
    const lifetimeS = 3600;
    const kubeconfig = await env.cp.kubeconfig("exec-ahead", { user: execUser(tokenFile, count, lifetimeS) });
    const kube = await KubeClient.create(await loadKubeConfig({ kubeconfig }));
    try {
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:ahead-one`);
      const [first] = runTimes(count) as [number];
      // The plugin prints expirationTimestamp = its run time + lifetime, cut to whole seconds.
      const expires = Math.floor((first + lifetimeS * 1000) / 1000) * 1000;
      writeFileSync(tokenFile, await serviceAccountToken("ahead-two", false));
      // The test moves the JavaScript clock instead of waiting an hour; the API server's is real.
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(expires - CREDENTIAL_RENEW_MARGIN_MS - 5_000);
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:ahead-one`);
      expect(execRuns(count)).toBe(1);
      vi.setSystemTime(expires - CREDENTIAL_RENEW_MARGIN_MS / 2);
      expect(Date.now()).toBeLessThan(expires);
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:ahead-two`);
      expect(execRuns(count)).toBe(2);
    } finally {
      vi.useRealTimers();
      await kube.close();
    }
  });

  it("a 401 for a revoked token runs the plugin again once and the request succeeds; a second 401 is the error", async () => {
    const tokenFile = join(work, "revoke-token");
    const revoked = await serviceAccountToken("revoke-one", false);
    writeFileSync(tokenFile, revoked, { mode: 0o600 });
    const count = join(work, "revoke-count");
    const kubeconfig = await env.cp.kubeconfig("exec-revoke", { user: execUser(tokenFile, count, 3600) });
    const kube = await KubeClient.create(await loadKubeConfig({ kubeconfig }));
    try {
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:revoke-one`);
      const second = await serviceAccountToken("revoke-two", false);
      writeFileSync(tokenFile, second);
      // The credential is cached (valid for an hour): the plugin is not asked again.
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:revoke-one`);
      expect(execRuns(count)).toBe(1);
      await revoke("revoke-one", revoked);
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:revoke-two`);
      expect(execRuns(count)).toBe(2);
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:revoke-two`);
      expect(execRuns(count)).toBe(2);
      // The plugin now prints a revoked token too: one more run, one retry, then the 401.
      writeFileSync(tokenFile, revoked);
      await revoke("revoke-two", second);
      const err = (await whoami(kube).catch((e: unknown) => e)) as KubeApiError;
      expect(err).toBeInstanceOf(KubeApiError);
      expect(err.status).toBe(401);
      expect(execRuns(count)).toBe(3);
    } finally {
      await kube.close();
    }
  });
});

describe("proxies (a loopback CONNECT proxy that counts its tunnels)", () => {
  const apiTunnels = () => proxy.tunnels.filter((t) => t === `127.0.0.1:${apiPort}`).length;
  const status = (kubeconfig: string, extraEnv: Record<string, string> = {}) =>
    cli(["status", "-A", "--kubeconfig", kubeconfig], extraEnv);

  it("a cluster's proxy-url carries API traffic, even for a NO_PROXY host", async () => {
    const kubeconfig = await env.cp.kubeconfig("via-proxy-url", { cluster: { "proxy-url": proxy.url } });
    const before = apiTunnels();
    const out = await status(kubeconfig, { NO_PROXY: "127.0.0.1" });
    expect(out.code, out.stderr).toBe(0);
    expect(apiTunnels()).toBeGreaterThan(before);
  });

  it("HTTPS_PROXY carries API traffic; NO_PROXY (a host or a CIDR) bypasses it", async () => {
    let before = apiTunnels();
    const via = await status(env.cp.kubeconfigPath, { HTTPS_PROXY: proxy.url });
    expect(via.code, via.stderr).toBe(0);
    expect(apiTunnels()).toBeGreaterThan(before);
    before = apiTunnels();
    for (const noProxy of ["127.0.0.1", "127.0.0.0/8"]) {
      const direct = await status(env.cp.kubeconfigPath, { HTTPS_PROXY: proxy.url, NO_PROXY: noProxy });
      expect(direct.code, direct.stderr).toBe(0);
    }
    expect(apiTunnels()).toBe(before);
  });

  it("the operator reaches the API server through HTTPS_PROXY", async () => {
    const before = apiTunnels();
    await env.restartOperator({ kubeconfig: env.cp.kubeconfigPath, env: { HTTPS_PROXY: proxy.url } });
    await env.createToken(NS, "via-proxy", spec());
    await env.waitReady(NS, "via-proxy", "True");
    expect(apiTunnels()).toBeGreaterThan(before);
    await env.restartOperator({ kubeconfig: env.cp.kubeconfigPath, env: {} });
  });
});

describe("tls-server-name", () => {
  it("verifies the server certificate against that name, and sends it as SNI", async () => {
    // The apiserver presents a certificate naming only SNI_NAME to clients that ask for it.
    const named = await env.cp.kubeconfig("sni", { cluster: { "tls-server-name": SNI_NAME } });
    const ok = await cli(["status", "-A", "--kubeconfig", named]);
    expect(ok.code, ok.stderr).toBe(0);
    // A name no certificate carries: the default certificate comes back and must not be accepted.
    const other = await env.cp.kubeconfig("sni-other", { cluster: { "tls-server-name": "other.nexar-harness.test" } });
    const bad = await cli(["status", "-A", "--kubeconfig", other]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/ERR_TLS_CERT_ALTNAME_INVALID|altnames|certificate/i);
  });
});

describe("the in-cluster service account", () => {
  it("picks up a rotated token file without a restart (client-node re-reads it after 60 s, KubeClient after a 401)", async () => {
    const one = await serviceAccountToken("rotation-one", false);
    const two = await serviceAccountToken("rotation-two", false);
    const root = join(work, "pod");
    const sa = join(root, "var/run/secrets/kubernetes.io/serviceaccount");
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, "ca.crt"), env.cp.caCertPem);
    writeFileSync(join(sa, "namespace"), NS);
    writeFileSync(join(sa, "token"), one);
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    process.env.KUBERNETES_SERVICE_HOST = "127.0.0.1";
    process.env.KUBERNETES_SERVICE_PORT = apiPort;
    const kc = new KubeConfig();
    try {
      kc.loadFromCluster(root);
    } finally {
      for (const [k, v] of [
        ["KUBERNETES_SERVICE_HOST", saved.host],
        ["KUBERNETES_SERVICE_PORT", saved.port],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    const kube = await KubeClient.create(kc);
    try {
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:rotation-one`);
      // The kubelet swaps the projected file atomically.
      writeFileSync(join(sa, "token.new"), two);
      renameSync(join(sa, "token.new"), join(sa, "token"));
      expect(readFileSync(join(sa, "token"), "utf8")).toBe(two);
      // client-node re-reads the file once 60 s passed since it last did (client-go: every minute);
      // the test moves the JavaScript clock instead of waiting.
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(Date.now() + 61_000);
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:rotation-two`);
      // Back on the real clock, client-node would not re-read the file for another minute or
      // more; a 401 makes KubeClient read it again at once.
      vi.useRealTimers();
      const three = await serviceAccountToken("rotation-three", false);
      writeFileSync(join(sa, "token.new"), three);
      renameSync(join(sa, "token.new"), join(sa, "token"));
      await revoke("rotation-two", two);
      expect(await whoami(kube)).toBe(`system:serviceaccount:${NS}:rotation-three`);
    } finally {
      vi.useRealTimers();
      await kube.close();
    }
  });
});

describe("--context and impersonation", () => {
  it("--context picks a context other than the current one", async () => {
    const doc = parse(readFileSync(env.cp.kubeconfigPath, "utf8")) as {
      clusters: { name: string; cluster: Record<string, unknown> }[];
      contexts: { name: string; context: Record<string, unknown> }[];
      "current-context": string;
    };
    const admin = doc["current-context"];
    doc.clusters.push({ name: "nowhere", cluster: { server: "https://127.0.0.1:1" } });
    doc.contexts.push({ name: "nowhere", context: { cluster: "nowhere", user: admin } });
    doc["current-context"] = "nowhere";
    const path = join(work, "two-contexts.kubeconfig");
    writeFileSync(path, stringify(doc), { mode: 0o600 });
    const current = await cli(["status", "-A", "--kubeconfig", path]);
    expect(current.code).toBe(1);
    const picked = await cli(["status", "-A", "--kubeconfig", path, "--context", admin]);
    expect(picked.code, picked.stderr).toBe(0);
    const unknown = await cli(["status", "-A", "--kubeconfig", path, "--context", "absent"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain(`kubeconfig ${path}: context "absent" not found`);
  });

  it("--as and --as-group impersonate a user and groups", async () => {
    const kube = ["status", "-n", NS, "--kubeconfig", env.cp.kubeconfigPath];
    const nobody = `system:serviceaccount:${NS}:nobody`;
    const denied = await cli([...kube, "--as", nobody]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(`User "${nobody}" cannot list resource "nexartokens"`);
    const admin = await cli([...kube, "--as", "jane", "--as-group", "dev", "--as-group", "system:masters"]);
    expect(admin.code, admin.stderr).toBe(0);
    const usage = await cli([...kube, "--as-group", "system:masters"]);
    expect(usage.code).toBe(2);
  });
});
