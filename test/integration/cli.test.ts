/**
 * Issue 6: the client verbs `token`, `refresh` and `status` as child processes against the real
 * apiserver, the real identity server and the real operator; exit codes 0 / 1 / 2.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJwt } from "jose";
import { cli } from "../harness/cli.ts";
import { startEnv, type Env } from "./env.ts";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  if (!env) return;
  try {
    await env.scanForSecrets();
  } finally {
    await env.stop(); // also when the scan fails: never leave processes behind
  }
});

const SECRET = "cli-secret-4e5f6a7b8c";

function noSecrets(out: { stdout: string; stderr: string }): void {
  expect(out.stdout).not.toContain(SECRET);
  expect(out.stderr).not.toContain(SECRET);
}

describe("token", () => {
  beforeAll(async () => {
    env.client({ clientId: "cli-app", clientSecret: SECRET });
    await env.namespace("cli");
    await env.credentials("cli", "nexar-app", { clientId: "cli-app", clientSecret: SECRET });
  });
  const endpoint = () => ["--token-url", env.idp.tokenUrl, "--allow-insecure-token-url"];

  it("prints one access token fetched with credentials from the environment", async () => {
    const out = await cli(["token", ...endpoint()], { NEXAR_CLIENT_ID: "cli-app", NEXAR_CLIENT_SECRET: SECRET });
    expect(out.code, out.stderr).toBe(0);
    const token = out.stdout.trim();
    expect(out.stdout).toBe(`${token}\n`);
    const claims = await env.idp.verify(token);
    expect(claims.scope).toBe("supply.domain");
    expect(out.stderr).toBe("");
    noSecrets(out);
  });

  it("--json and --decode (claims, no signature), credentials from flags and HTTP Basic", async () => {
    const json = await cli([
      "token",
      ...endpoint(),
      "--client-id",
      "cli-app",
      "--client-secret",
      SECRET,
      "--client-authentication",
      "ClientSecretBasic",
      "--json",
    ]);
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(doc).toMatchObject({ token_type: "Bearer", scope: "supply.domain" });
    expect(doc.expires_in).toBeGreaterThan(3500);
    expect(doc.expires_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await env.idp.verify(doc.access_token as string);
    expect(env.idp.requests.at(-1)?.authMethod).toBe("client_secret_basic");
    noSecrets(json);

    const decoded = await cli(["token", ...endpoint(), "--decode"], {
      NEXAR_CLIENT_ID: "cli-app",
      NEXAR_CLIENT_SECRET: SECRET,
    });
    expect(decoded.code, decoded.stderr).toBe(0);
    const d = JSON.parse(decoded.stdout) as { header: Record<string, unknown>; claims: Record<string, unknown> };
    expect(Object.keys(d).sort()).toEqual(["claims", "header"]);
    expect(d.header).toMatchObject({ alg: "RS256", typ: "at+jwt" });
    expect(d.claims).toMatchObject({ iss: env.idp.issuer, client_id: "cli-app", scope: "supply.domain" });
    expect(typeof d.claims.exp).toBe("number");
    // the token itself and its signature are not shown
    expect(decoded.stdout).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
  });

  it("--from-secret reads the credentials Secret through the kubeconfig", async () => {
    const out = await cli([
      "token",
      ...endpoint(),
      "--kubeconfig",
      env.cp.kubeconfigPath,
      "--from-secret",
      "cli/nexar-app",
      "--scopes",
      "supply.domain",
    ]);
    expect(out.code, out.stderr).toBe(0);
    expect(decodeJwt(out.stdout.trim()).client_id).toBe("cli-app");
    const short = await cli(
      ["token", ...endpoint(), "--kubeconfig", env.cp.kubeconfigPath, "-n", "cli", "--from-secret", "nexar-app"],
      { NEXAR_CLIENT_ID: "ignored", NEXAR_CLIENT_SECRET: "ignored-too" },
    );
    expect(short.code, short.stderr).toBe(0);
    const missing = await cli([
      "token",
      ...endpoint(),
      "--kubeconfig",
      env.cp.kubeconfigPath,
      "--from-secret",
      "cli/absent",
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("Secret cli/absent not found");
  });

  it("exit 1 on a token endpoint error, 2 on usage errors; the secret is never printed", async () => {
    const bad = await cli(["token", ...endpoint()], {
      NEXAR_CLIENT_ID: "cli-app",
      NEXAR_CLIENT_SECRET: `${SECRET}-wrong`,
    });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain("token request failed: InvalidClient");
    expect(bad.stderr).not.toContain(`${SECRET}-wrong`);
    const none = await cli(["token", ...endpoint()]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("client credentials are required");
    const both = await cli(["token", ...endpoint(), "--client-id", "x", "--from-secret", "cli/nexar-app"]);
    expect(both.code).toBe(2);
    const https = await cli(["token", "--token-url", env.idp.tokenUrl], {
      NEXAR_CLIENT_ID: "cli-app",
      NEXAR_CLIENT_SECRET: SECRET,
    });
    expect(https.code).toBe(2);
    expect(https.stderr).toContain("must be https://");
    noSecrets(https);
    const choice = await cli(["token", "--client-authentication", "Nope"]);
    expect(choice.code).toBe(2);
  });
});

describe("status and refresh", () => {
  beforeAll(async () => {
    env.client({ clientId: "verbs-app", clientSecret: `${SECRET}-verbs` });
    for (const ns of ["verbs-a", "verbs-b"]) {
      await env.namespace(ns);
      await env.credentials(ns, "nexar-app", { clientId: "verbs-app", clientSecret: `${SECRET}-verbs` });
      await env.createToken(ns, "supply", {
        scopes: ["supply.domain"],
        tokenUrl: env.idp.tokenUrl,
        credentialsSecretRef: { name: "nexar-app" },
      });
      await env.waitReady(ns, "supply", "True");
    }
  });
  const kube = () => ["--kubeconfig", env.cp.kubeconfigPath];

  it("status prints a table for one namespace, or all with -A", async () => {
    const one = await cli(["status", ...kube(), "-n", "verbs-a"]);
    expect(one.code, one.stderr).toBe(0);
    const lines = one.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAMESPACE\s+NAME\s+READY\s+REASON\s+EXPIRES\s+RENEWAL$/);
    expect(lines).toHaveLength(2);
    const nt = await env.getToken("verbs-a", "supply");
    expect(lines[1]?.split(/\s+/)).toEqual([
      "verbs-a",
      "supply",
      "True",
      "TokenIssued",
      nt.status?.expiresAt,
      nt.status?.renewalTime,
    ]);
    const all = await cli(["status", ...kube(), "-A"]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^verbs-a\s+supply\s+True/m);
    expect(all.stdout).toMatch(/^verbs-b\s+supply\s+True/m);
    const empty = await cli(["status", ...kube(), "-n", "nothing-here"]);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toBe("");
    expect(empty.stderr).toContain('No NexarTokens found in namespace "nothing-here"');
    const both = await cli(["status", ...kube(), "-n", "verbs-a", "-A"]);
    expect(both.code).toBe(2);
  });

  it("refresh sets the annotation and waits until the operator acted on it (new token, Ready)", async () => {
    const before = await env.accessToken("verbs-a", "supply");
    const out = await cli(["refresh", "supply", ...kube(), "-n", "verbs-a", "--timeout", "60s"]);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(
      /^NexarToken verbs-a\/supply refreshed: Secret supply holds a token valid until \S+Z\n$/,
    );
    const nt = await env.getToken("verbs-a", "supply");
    const value = nt.metadata.annotations?.["nexar-operator.io/refresh-requested-at"];
    expect(value).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(nt.status?.lastRefreshRequest).toBe(value);
    const after = await env.accessToken("verbs-a", "supply");
    expect(after).not.toBe(before);
    await env.idp.verify(after as string);
  });

  it("refresh fails with exit 1 for an unknown NexarToken or a credential failure; 2 on usage errors", async () => {
    const missing = await cli(["refresh", "absent", ...kube(), "-n", "verbs-a"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("NexarToken verbs-a/absent not found");

    env.idp.removeClient("verbs-app"); // every fetch now fails with invalid_client
    try {
      const failed = await cli(["refresh", "supply", ...kube(), "-n", "verbs-b", "--timeout", "60s"]);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toContain("refresh of NexarToken verbs-b/supply failed: InvalidClient");
    } finally {
      env.client({ clientId: "verbs-app", clientSecret: `${SECRET}-verbs` });
    }
    const usage = await cli(["refresh", ...kube()]);
    expect(usage.code).toBe(2);
    const badTimeout = await cli(["refresh", "supply", ...kube(), "--timeout", "soon"]);
    expect(badTimeout.code).toBe(2);
  });
});
