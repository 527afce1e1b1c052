/**
 * Issue 6: `nexar-token-operator login` end to end — the CLI runs as a child process against the
 * real identity server (authorization code + PKCE S256, oidc-provider) and the real apiserver;
 * the test plays the browser with `idp.completeAuthorization` and delivers the redirect.
 */
import { createServer, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CoreV1Api, type KubeConfig } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane } from "../harness/controlplane.ts";
import { startIdentityServer, type IdentityServer } from "../harness/identity.ts";
import { apiErrorCode, createNamespace, loadKubeConfig } from "../harness/kube.ts";
import { freePort } from "../harness/operator.ts";
import { runCli } from "../harness/cli.ts";

const CLIENT_ID = "design-app";
const CLIENT_SECRET = "design-app-secret-3c1f0e9a7b";
const DEFAULT_SCOPES = "openid profile email design.domain user.access offline_access";

let cp: ControlPlane;
let idp: IdentityServer;
let kc: KubeConfig;
let core: CoreV1Api;
let port: number;
let redirectUrl: string;
const refreshTokens: string[] = [];

beforeAll(async () => {
  cp = await startControlPlane({ controllerManager: false });
  port = await freePort();
  redirectUrl = `http://127.0.0.1:${port}/login`;
  idp = await startIdentityServer({
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        authMethod: "client_secret_post",
        redirectUris: [redirectUrl],
      },
    ],
  });
  kc = loadKubeConfig(cp.kubeconfigPath);
  core = kc.makeApiClient(CoreV1Api);
  await createNamespace(kc, "design");
});

afterAll(async () => {
  await idp?.stop();
  await cp?.stop();
});

/** Runs `login`; `authorizationUrl()` resolves once it printed the authorization URL. */
function cli(args: string[], env: Record<string, string> = {}) {
  const run = runCli(args, env);
  return {
    done: run.done,
    authorizationUrl: async () =>
      (await run.waitForStderr(/^\s+(http:\/\/127\.0\.0\.1:\d+\/connect\/authorize\?\S+)$/m))[1] as string,
  };
}

function loginArgs(extra: string[] = []): string[] {
  return [
    "login",
    "--no-browser",
    "--authorization-url",
    idp.authorizationUrl,
    "--token-url",
    idp.tokenUrl,
    "--allow-insecure-token-url",
    "--redirect-url",
    redirectUrl,
    "--kubeconfig",
    cp.kubeconfigPath,
    "--namespace",
    "design",
    "--timeout",
    "60s",
    ...extra,
  ];
}

const CREDS_ENV = { NEXAR_CLIENT_ID: CLIENT_ID, NEXAR_CLIENT_SECRET: CLIENT_SECRET };

async function readSecret(ns: string, name: string) {
  try {
    return await core.readNamespacedSecret({ namespace: ns, name });
  } catch (err) {
    if (apiErrorCode(err) === 404) return undefined;
    throw err;
  }
}

const decode = (v: string | undefined) => (v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8"));

/** Uses a refresh token at the token endpoint (client_secret_post); resolves to the parsed response. */
async function useRefreshToken(refreshToken: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(idp.tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "refresh_token",
      refresh_token: refreshToken,
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

function expectNoSecretIn(out: { stdout: string; stderr: string }): void {
  for (const text of [out.stdout, out.stderr]) {
    expect(text).not.toContain(CLIENT_SECRET);
    for (const rt of refreshTokens) expect(text).not.toContain(rt);
  }
}

const challenges: string[] = [];

describe("login", () => {
  it("runs authorization code + PKCE S256, writes clientId/clientSecret/refreshToken into a new Secret, and the refresh token works", async () => {
    const run = cli(loginArgs(["--secret", "nexar-design"]), CREDS_ENV);
    const url = new URL(await run.authorizationUrl());
    expect(url.origin + url.pathname).toBe(idp.authorizationUrl);
    const p = url.searchParams;
    expect(p.get("response_type")).toBe("code");
    expect(p.get("client_id")).toBe(CLIENT_ID);
    expect(p.get("redirect_uri")).toBe(redirectUrl);
    expect(p.get("scope")).toBe(DEFAULT_SCOPES);
    expect(p.get("code_challenge_method")).toBe("S256");
    expect(p.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(p.get("state")?.length).toBeGreaterThanOrEqual(32);
    expect(url.href).not.toContain(CLIENT_SECRET);
    challenges.push(p.get("code_challenge") as string);

    const redirect = await idp.completeAuthorization(url.href);
    expect(redirect.origin).toBe(`http://127.0.0.1:${port}`);
    expect(redirect.searchParams.get("code")).toBeTruthy();
    const page = await fetch(redirect); // what the browser does with the redirect
    expect(page.status).toBe(200);
    const out = await run.done;
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toBe("");
    expect(out.stderr).toContain("Secret design/nexar-design created");

    const secret = await readSecret("design", "nexar-design");
    expect(secret?.type).toBe("Opaque");
    expect(decode(secret?.data?.clientId)).toBe(CLIENT_ID);
    expect(decode(secret?.data?.clientSecret)).toBe(CLIENT_SECRET);
    const refreshToken = decode(secret?.data?.refreshToken) as string;
    expect(refreshToken.length).toBeGreaterThan(20);
    refreshTokens.push(refreshToken);
    expect(secret?.metadata?.annotations?.["nexar-operator.io/login-at"]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expectNoSecretIn(out);

    // the code exchange sent the secret in the form body, as Nexar's examples do
    const exchange = idp.requests.find((r) => r.grantType === "authorization_code");
    expect(exchange?.authMethod).toBe("client_secret_post");
    expect(exchange?.status).toBe(200);

    const used = await useRefreshToken(refreshToken);
    expect(used.status).toBe(200);
    const claims = await idp.verify(used.body.access_token as string);
    expect(String(claims.scope).split(" ")).toEqual(expect.arrayContaining(["design.domain", "user.access"]));
    expect(claims.sub).toBe("user-1");
  });

  it("updates only its three keys of an existing Secret, with a fresh PKCE verifier, and clears the rotation annotation", async () => {
    await core.createNamespacedSecret({
      namespace: "design",
      body: {
        metadata: {
          name: "existing",
          labels: { team: "pcb" },
          annotations: { "nexar-operator.io/refresh-token-rotation": '{"refreshToken":{"digest":"x","lineage":"y"}}' },
        },
        stringData: { refreshToken: "old-refresh-token-value", other: "kept" },
      },
    });
    const run = cli(loginArgs(["--secret", "existing"]), CREDS_ENV);
    const url = await run.authorizationUrl();
    const challenge = new URL(url).searchParams.get("code_challenge") as string;
    expect(challenges).not.toContain(challenge);
    await fetch(await idp.completeAuthorization(url));
    const out = await run.done;
    expect(out.code, out.stderr).toBe(0);
    expect(out.stderr).toContain("Secret design/existing updated");
    const secret = await readSecret("design", "existing");
    expect(decode(secret?.data?.other)).toBe("kept");
    expect(secret?.metadata?.labels).toEqual({ team: "pcb" });
    expect(decode(secret?.data?.clientId)).toBe(CLIENT_ID);
    const rt = decode(secret?.data?.refreshToken) as string;
    expect(rt).not.toBe("old-refresh-token-value");
    refreshTokens.push(rt);
    expect(secret?.metadata?.annotations?.["nexar-operator.io/refresh-token-rotation"]).toBeUndefined();
    expect((await useRefreshToken(rt)).status).toBe(200);
    expectNoSecretIn(out);
  });

  it("--print writes the refresh token to stdout only and creates no Secret", async () => {
    const run = cli(loginArgs(["--print", "--secret", "never-created"]), CREDS_ENV);
    await fetch(await idp.completeAuthorization(await run.authorizationUrl()));
    const out = await run.done;
    expect(out.code, out.stderr).toBe(0);
    const rt = out.stdout.trim();
    expect(out.stdout).toBe(`${rt}\n`);
    expect(out.stderr).not.toContain(rt);
    expect(out.stderr).not.toContain(CLIENT_SECRET);
    expect(await readSecret("design", "never-created")).toBeUndefined();
    expect((await useRefreshToken(rt)).status).toBe(200);
  });

  it("reports denied consent (error=access_denied) and stores nothing", async () => {
    const run = cli(loginArgs(["--secret", "denied"]), CREDS_ENV);
    const redirect = await idp.completeAuthorization(await run.authorizationUrl(), { deny: true });
    expect(redirect.searchParams.get("error")).toBe("access_denied");
    await fetch(redirect);
    const out = await run.done;
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("consent was denied (error=access_denied");
    expect(await readSecret("design", "denied")).toBeUndefined();
  });

  it("rejects a redirect with a different state and stores nothing", async () => {
    const run = cli(loginArgs(["--secret", "forged"]), CREDS_ENV);
    const redirect = await idp.completeAuthorization(await run.authorizationUrl());
    redirect.searchParams.set("state", "attacker-state-0123456789abcdef0123456789");
    const page = await fetch(redirect);
    expect(page.status).toBe(400);
    const out = await run.done;
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("state mismatch");
    expect(await readSecret("design", "forged")).toBeUndefined();
  });

  it("fails clearly when the redirect port is in use", async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(port, "127.0.0.1", () => r()));
    try {
      const out = await cli(loginArgs(["--secret", "busy"]), CREDS_ENV).done;
      expect(out.code).toBe(1);
      expect(out.stderr).toContain(`port ${port} on 127.0.0.1 is already in use`);
      expect(out.stderr).not.toContain("/connect/authorize?");
    } finally {
      await new Promise((r) => busy.close(r));
    }
  });

  it("times out cleanly when no redirect arrives", async () => {
    const out = await cli([...loginArgs(["--secret", "slow"]), "--timeout", "1s"], CREDS_ENV).done;
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("timed out after 1s waiting for the redirect");
    // the listener is closed: the port is free again
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
    });
    await new Promise((r) => s.close(r));
  });

  it("fails before the browser step when the kubeconfig may not read the Secret", async () => {
    const nobody = await cp.kubeconfigFor("nobody", []);
    const out = await cli(
      loginArgs(["--secret", "rbac"]).map((a) => (a === cp.kubeconfigPath ? nobody : a)),
      CREDS_ENV,
    ).done;
    expect(out.code).toBe(1);
    expect(out.stderr).toContain("cannot read Secret design/rbac");
    expect(out.stderr).not.toContain("/connect/authorize?");
  });

  it("exits 2 on usage errors: no client secret, an http token URL without the flag", async () => {
    const noSecret = await cli(loginArgs(), { NEXAR_CLIENT_ID: CLIENT_ID }).done;
    expect(noSecret.code).toBe(2);
    expect(noSecret.stderr).toContain("a client secret is required");
    const insecure = await cli(
      loginArgs().filter((a) => a !== "--allow-insecure-token-url"),
      CREDS_ENV,
    ).done;
    expect(insecure.code).toBe(2);
    expect(insecure.stderr).toContain("must be https://");
    expect(insecure.stderr).not.toContain(CLIENT_SECRET);
  });
});
