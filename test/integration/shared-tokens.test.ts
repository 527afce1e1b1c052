/**
 * Issue 5: shared tokens and the per-client issuance limiter (SPEC §3.3), against the real
 * control plane and identity server with the operator as its own process.
 *
 * Requires the reconciler to tell the issuer why it fetches (`FetchContext.reason`, see
 * src/issuance/types.ts): without a reason the issuer keeps the pre-sharing contract (a fresh
 * token per fetch) and the sharing assertions here fail.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { startEnv, waitFor, type Env } from "./env.ts";

let env: Env;
beforeAll(async () => {
  env = await startEnv();
});
afterAll(async () => {
  if (!env) return;
  await env.scanForSecrets();
  await env.stop();
});

const okRequests = (clientId: string) =>
  env.idp.requests.filter((r) => r.clientId === clientId && r.grantType === "client_credentials");

async function tokensOf(ns: string, names: readonly string[]): Promise<string[]> {
  return Promise.all(names.map(async (n) => (await env.accessToken(ns, n)) ?? ""));
}

async function allReady(ns: string, names: readonly string[], timeoutMs = 60_000): Promise<void> {
  await Promise.all(names.map((n) => env.waitReady(ns, n, "True", "TokenIssued", timeoutMs)));
}

const SECRET_1 = "shared-secret-one-0123456789";
const SECRET_2 = "shared-secret-two-9876543210";
const names = Array.from({ length: 12 }, (_, i) => `nt-${i}`);

describe("shared tokens", () => {
  it("NexarTokens with one credential and scope set share one token and one request, whatever the scope order", async () => {
    const ns = await env.namespace("shared-a");
    env.client({ clientId: "shared-app", clientSecret: SECRET_1 });
    await env.credentials(ns, "nexar-app", { clientId: "shared-app", clientSecret: SECRET_1 });
    await Promise.all(
      names.map((n, i) =>
        env.createToken(ns, n, {
          scopes: i % 2 ? ["supply.domain", "design.domain"] : ["design.domain", "supply.domain"],
          tokenUrl: env.idp.tokenUrl,
          credentialsSecretRef: { name: "nexar-app" },
          ...(i % 3 === 0 ? { renewBefore: "1h" } : {}),
        }),
      ),
    );
    await allReady(ns, names);
    const tokens = await tokensOf(ns, names);
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).not.toBe("");
    expect(okRequests("shared-app")).toHaveLength(1);
  });

  it("a NexarToken created later, also in another namespace, gets the cached token without a request", async () => {
    const before = (await tokensOf("shared-a", ["nt-0"]))[0];
    await env.createToken("shared-a", "late", {
      scopes: ["supply.domain", "design.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
    });
    const ns = await env.namespace("shared-b");
    await env.credentials(ns, "creds", { clientId: "shared-app", clientSecret: `${SECRET_1}\n` });
    await env.createToken(ns, "elsewhere", {
      scopes: ["design.domain", "supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "creds" },
    });
    await allReady("shared-a", ["late"]);
    await allReady(ns, ["elsewhere"]);
    expect(await env.accessToken("shared-a", "late")).toBe(before);
    expect(await env.accessToken(ns, "elsewhere")).toBe(before);
    expect(okRequests("shared-app")).toHaveLength(1);
  });

  it("another scope set is another token", async () => {
    await env.createToken("shared-b", "supply-only", {
      scopes: ["supply.domain"],
      tokenUrl: env.idp.tokenUrl,
      credentialsSecretRef: { name: "creds" },
    });
    await allReady("shared-b", ["supply-only"]);
    expect(await env.accessToken("shared-b", "supply-only")).not.toBe(await env.accessToken("shared-b", "elsewhere"));
    expect(okRequests("shared-app")).toHaveLength(2);
  });

  it("a client secret change invalidates: the NexarTokens of that Secret move to ONE new token", async () => {
    const old = (await tokensOf("shared-a", ["nt-0"]))[0];
    const before = okRequests("shared-app").length;
    env.client({ clientId: "shared-app", clientSecret: SECRET_2 });
    await env.credentials("shared-a", "nexar-app", { clientId: "shared-app", clientSecret: SECRET_2 });
    const all = [...names, "late"];
    const tokens = await waitFor(
      "every NexarToken of shared-a on a new token",
      async () => {
        const t = await tokensOf("shared-a", all);
        return t.every((x) => x !== old) ? t : undefined;
      },
      60_000,
    );
    expect(new Set(tokens).size).toBe(1);
    await allReady("shared-a", all);
    expect(okRequests("shared-app").length).toBe(before + 1);
    // shared-b still uses the old secret, and keeps its token (tokens cannot be revoked, SPEC §1)
    expect(await env.accessToken("shared-b", "elsewhere")).toBe(old);
  });

  it("a refresh request gets that NexarToken a token requested after it; the others keep theirs", async () => {
    const [t0, t1] = await tokensOf("shared-a", ["nt-0", "nt-1"]);
    const before = okRequests("shared-app").length;
    await env.custom.patchNamespacedCustomObject(
      {
        group: "nexar-operator.io",
        version: "v1alpha1",
        plural: "nexartokens",
        namespace: "shared-a",
        name: "nt-0",
        body: { metadata: { annotations: { "nexar-operator.io/refresh-requested-at": new Date().toISOString() } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    await waitFor("a new token for nt-0", async () =>
      (await env.accessToken("shared-a", "nt-0")) !== t0 ? true : undefined,
    );
    expect(okRequests("shared-app").length).toBe(before + 1);
    expect(await env.accessToken("shared-a", "nt-1")).toBe(t1);
  });
});

describe("per-client issuance limiter", () => {
  it("queues a client's requests inside the configured limit instead of failing, and says so", async () => {
    await env.restartOperator({ extraArgs: ["--issuance-limits", "1/3s"] });
    const ns = await env.namespace("limited");
    env.client({ clientId: "limited-app", clientSecret: "limited-secret-0123456789" });
    await env.credentials(ns, "nexar-app", { clientId: "limited-app", clientSecret: "limited-secret-0123456789" });
    const scopeSets = [["supply.domain"], ["design.domain"], ["supply.domain", "design.domain"]];
    await Promise.all(
      scopeSets.map((scopes, i) =>
        env.createToken(ns, `l-${i}`, {
          scopes,
          tokenUrl: env.idp.tokenUrl,
          credentialsSecretRef: { name: "nexar-app" },
        }),
      ),
    );
    await allReady(
      ns,
      scopeSets.map((_, i) => `l-${i}`),
      60_000,
    );
    const at = okRequests("limited-app")
      .map((r) => r.atMs)
      .sort((a, b) => a - b);
    expect(at).toHaveLength(3);
    // 1 per 3 s: consecutive requests at least ~3 s apart (a loaded machine only widens the gaps)
    for (let i = 1; i < at.length; i++) expect((at[i] as number) - (at[i - 1] as number)).toBeGreaterThanOrEqual(2_900);
    await env.op.waitForLog((r) => r.msg === "token request waits for the issuance limit", 5_000);
    // the restart itself asked for no token: every earlier NexarToken still held a valid one
    expect(okRequests("shared-app").length).toBe(4);
  });
});
