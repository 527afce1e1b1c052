/**
 * Issue 6: `grant: RefreshToken` with refresh-token rotation, end to end — the real operator
 * process, the real apiserver, and oidc-provider rotating refresh tokens (each use consumes the
 * old one; reuse is `invalid_grant` and revokes the grant). The identity server records a
 * SHA-256 of every refresh token presented and issued, so reuse is visible without keeping tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeConfig } from "@kubernetes/client-node";
import { DEFAULT_REDIRECT_URI, tokenSha256 } from "../harness/identity.ts";
import { KubeClient, type Secret, type WatchEvent } from "../../src/kube/client.ts";
import { nexarTokenPath } from "../../src/kube/paths.ts";
import { consent, decode, startEnv, waitFor, type Env } from "./env.ts";

let env: Env;
let kube: KubeClient;
beforeAll(async () => {
  env = await startEnv();
  const kc = new KubeConfig();
  kc.loadFromFile(env.cp.kubeconfigPath);
  kube = await KubeClient.create(kc);
});
afterAll(async () => {
  if (!env) return;
  try {
    await kube?.close();
    await env.scanForSecrets();
  } finally {
    await env.stop(); // also when the scan fails: never leave processes behind
  }
});

const SCOPES = ["design.domain", "user.access"];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Uses a refresh token once (client_secret_post). */
async function useRefreshToken(clientId: string, clientSecret: string, rt: string): Promise<number> {
  const res = await fetch(env.idp.tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "refresh_token",
      refresh_token: rt,
      client_id: clientId,
      client_secret: clientSecret,
    }),
  });
  await res.arrayBuffer();
  return res.status;
}

/** One Secret as a watch saw it: etcd revision (resourceVersion) and SHA-256 of the values that matter. */
interface SecretEvent {
  type: string;
  name: string;
  rv: number;
  refreshTokenSha?: string;
  accessTokenSha?: string;
}

/**
 * Watches the Secrets of `ns` (full objects, from now) and records every event in order. Every
 * refresh token seen is added to the secret scan. resourceVersions of one resource type come
 * from one etcd revision counter, so they order writes across Secrets.
 */
async function watchSecrets(ns: string) {
  const events: SecretEvent[] = [];
  const list = await kube.request<{ metadata: { resourceVersion: string } }>("GET", `/api/v1/namespaces/${ns}/secrets`);
  const ac = new AbortController();
  const done = kube
    .watch<Secret>(
      `/api/v1/namespaces/${ns}/secrets`,
      { idleTimeoutMs: 600_000, signal: ac.signal, query: { resourceVersion: list.metadata.resourceVersion } },
      (ev: WatchEvent<Secret>) => {
        if (ev.type === "BOOKMARK" || ev.type === "ERROR") return;
        const rt = decode(ev.object.data?.refreshToken)?.trim();
        const at = decode(ev.object.data?.access_token);
        if (rt) env.secrets.add(rt);
        events.push({
          type: ev.type,
          name: ev.object.metadata.name ?? "",
          rv: Number(ev.object.metadata.resourceVersion),
          refreshTokenSha: rt ? tokenSha256(rt) : undefined,
          accessTokenSha: at ? tokenSha256(at) : undefined,
        });
      },
    )
    .catch(() => undefined);
  return {
    events,
    async stop() {
      ac.abort();
      await done;
    },
  };
}

function refreshRequests(clientId: string) {
  return env.idp.requests.filter((r) => r.grantType === "refresh_token" && r.clientId === clientId);
}

async function requestRefresh(ns: string, name: string, value: string): Promise<void> {
  await kube.request("PATCH", nexarTokenPath(ns, name), {
    body: { metadata: { annotations: { "nexar-operator.io/refresh-requested-at": value } } },
    contentType: "application/merge-patch+json",
  });
}

async function waitRefreshed(ns: string, name: string, value: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `${ns}/${name} lastRefreshRequest=${value}`,
    async () => {
      const nt = await env.getToken(ns, name);
      const ready = nt.status?.conditions?.find((c) => c.type === "Ready");
      return nt.status?.lastRefreshRequest === value && ready?.status === "True" ? true : undefined;
    },
    timeoutMs,
    100,
  );
}

function designToken(credentials: string, target: string): Record<string, unknown> {
  return {
    grant: "RefreshToken",
    scopes: SCOPES,
    tokenUrl: env.idp.tokenUrl,
    credentialsSecretRef: { name: credentials },
    target: { name: target },
  };
}

describe("grant: RefreshToken with rotation", () => {
  it("stores each rotated refresh token before the new access token is published, and never presents one twice", async () => {
    const ns = await env.namespace("rt-rotation");
    const c = env.client({
      clientId: "rotation-app",
      clientSecret: "rotation-secret-5f2c9d1e",
      redirectUris: [DEFAULT_REDIRECT_URI],
    });
    const rt0 = await consent(env, c.clientId, c.clientSecret);
    const watch = await watchSecrets(ns);
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: rt0 });
    // two NexarTokens share one credentials Secret: their refreshes must be serialised
    await env.createToken(ns, "a", designToken("creds", "design-a"));
    await env.createToken(ns, "b", designToken("creds", "design-b"));
    await env.waitReady(ns, "a", "True");
    await env.waitReady(ns, "b", "True");
    const rounds = 5;
    for (let i = 1; i <= rounds; i++) {
      const value = `2026-01-01T00:00:0${i}Z`;
      await Promise.all([requestRefresh(ns, "a", value), requestRefresh(ns, "b", value)]);
      await Promise.all([waitRefreshed(ns, "a", value), waitRefreshed(ns, "b", value)]);
    }
    await sleep(2_000); // let any (unwanted) follow-up fetch show up
    await watch.stop();

    const reqs = refreshRequests(c.clientId);
    // one shared fetch for the two new NexarTokens (same credentials and scopes), then exactly one
    // fetch per NexarToken and refresh request: the operator's own writes of the rotated token into
    // the credentials Secret trigger no extra fetch
    expect(reqs).toHaveLength(1 + 2 * rounds);
    expect(reqs.every((r) => r.status === 200)).toBe(true);
    const presented = reqs.map((r) => r.refreshTokenSha256);
    expect(new Set(presented).size).toBe(presented.length); // no refresh token presented twice
    expect(presented[0]).toBe(tokenSha256(rt0));

    // ordering: the credentials Secret got each rotated token (revision rvC) before the target
    // Secret got the access token issued with it (revision rvT)
    for (const r of reqs) {
      expect(r.issuedRefreshTokenSha256).toBeDefined();
      const cred = watch.events.find((e) => e.name === "creds" && e.refreshTokenSha === r.issuedRefreshTokenSha256);
      const target = watch.events.find(
        (e) => (e.name === "design-a" || e.name === "design-b") && e.accessTokenSha === r.accessTokenSha256,
      );
      expect(cred, "rotated refresh token stored").toBeDefined();
      expect(target, "access token published").toBeDefined();
      expect(cred!.rv).toBeLessThan(target!.rv);
    }
    // each presented token (but the first) is the one stored by the previous rotation
    const issued = reqs.map((r) => r.issuedRefreshTokenSha256);
    for (let i = 1; i < presented.length; i++) expect(presented[i]).toBe(issued[i - 1]);

    // the refresh token stored last works (checked after the NexarTokens are gone, so it is not consumed under them)
    await kube.request("DELETE", nexarTokenPath(ns, "a"));
    await kube.request("DELETE", nexarTokenPath(ns, "b"));
    await sleep(1_000);
    const stored = decode((await env.readSecret(ns, "creds"))?.data?.refreshToken) as string;
    expect(tokenSha256(stored)).toBe(issued.at(-1));
    expect(await useRefreshToken(c.clientId, c.clientSecret, stored)).toBe(200);
  });

  it("a revoked refresh token gives Ready=False RefreshTokenInvalid with a login hint and no retry storm; a new login is picked up at once", async () => {
    const ns = await env.namespace("rt-revoked");
    const c = env.client({
      clientId: "revoked-app",
      clientSecret: "revoked-secret-7a0b3c2d",
      redirectUris: [DEFAULT_REDIRECT_URI],
    });
    await env.credentials(ns, "creds", {
      clientId: c.clientId,
      clientSecret: c.clientSecret,
      refreshToken: await consent(env, c.clientId, c.clientSecret),
    });
    await env.createToken(ns, "design", designToken("creds", "design-token"));
    await env.waitReady(ns, "design", "True");
    const before = await env.accessToken(ns, "design-token");

    // the user revokes the app's access (RFC 7009 revocation of the current refresh token)
    const stored = decode((await env.readSecret(ns, "creds"))?.data?.refreshToken) as string;
    const revoke = await fetch(env.idp.issuer + "/connect/revocation", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        token: stored,
        token_type_hint: "refresh_token",
        client_id: c.clientId,
        client_secret: c.clientSecret,
      }),
    });
    expect(revoke.status).toBe(200);
    await requestRefresh(ns, "design", "2026-02-01T00:00:00Z");
    const failed = await env.waitReady(ns, "design", "False", "RefreshTokenInvalid");
    const cond = failed.status?.conditions?.find((x) => x.type === "Ready");
    expect(cond?.message).toContain(`nexar-token-operator login --namespace ${ns} --secret creds`);
    expect(failed.status?.lastFailureReason).toBe("RefreshTokenInvalid");
    expect(failed.status?.failedAttempts).toBe(1);
    // the last good token stays in the Secret
    expect(await env.accessToken(ns, "design-token")).toBe(before);

    // no retry storm: nothing more is sent for a while (the credential backoff is minutes)
    const count = refreshRequests(c.clientId).length;
    await sleep(8_000);
    expect(refreshRequests(c.clientId).length).toBe(count);
    expect((await env.getToken(ns, "design")).status?.failedAttempts).toBe(1);

    // a new login writes a new refresh token: picked up at once, not after the backoff
    const fresh = await consent(env, c.clientId, c.clientSecret);
    const t0 = Date.now();
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: fresh });
    await env.waitReady(ns, "design", "True", "TokenIssued", 20_000);
    expect(Date.now() - t0).toBeLessThan(20_000);
    const after = await env.accessToken(ns, "design-token");
    expect(after).not.toBe(before);
    await env.idp.verify(after as string);
    expect(refreshRequests(c.clientId).at(-1)?.refreshTokenSha256).toBe(tokenSha256(fresh));
  });

  it("a new login replaces a working refresh token: fetched at once; the operator's own rotation fetches nothing", async () => {
    const ns = await env.namespace("rt-relogin");
    const c = env.client({
      clientId: "relogin-app",
      clientSecret: "relogin-secret-1d4e6f8a",
      redirectUris: [DEFAULT_REDIRECT_URI],
    });
    await env.credentials(ns, "creds", {
      clientId: c.clientId,
      clientSecret: c.clientSecret,
      refreshToken: await consent(env, c.clientId, c.clientSecret),
    });
    await env.createToken(ns, "design", designToken("creds", "design-token"));
    await env.waitReady(ns, "design", "True");
    expect(refreshRequests(c.clientId)).toHaveLength(1);
    await sleep(3_000); // the rotated token's write is a Secret event: it must not cause a fetch
    expect(refreshRequests(c.clientId)).toHaveLength(1);

    const fresh = await consent(env, c.clientId, c.clientSecret);
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: fresh });
    await waitFor(
      "a fetch with the new login's refresh token",
      async () =>
        refreshRequests(c.clientId).some((r) => r.refreshTokenSha256 === tokenSha256(fresh) && r.status === 200)
          ? true
          : undefined,
      20_000,
    );
    await sleep(2_000);
    expect(refreshRequests(c.clientId)).toHaveLength(2);
    const log = env.op.logs().find((r) => r.nexartoken === `${ns}/design` && r.reason === "CredentialsChanged");
    expect(log).toBeDefined();
  });

  it("a rotated token whose write fails is kept and stored before the next fetch; the consumed one is never presented again", async () => {
    const ns = await env.namespace("rt-persist-fail");
    const c = env.client({
      clientId: "persist-app",
      clientSecret: "persist-secret-9e8d7c6b",
      redirectUris: [DEFAULT_REDIRECT_URI],
    });
    const rt0 = await consent(env, c.clientId, c.clientSecret);
    // an immutable credentials Secret: the operator can read it, but no write of a rotated token succeeds
    await env.core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: "creds" },
        immutable: true,
        stringData: { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: rt0 },
      },
    });
    await env.createToken(ns, "design", designToken("creds", "design-token"));
    await waitFor("the first refresh at the token endpoint", async () =>
      refreshRequests(c.clientId).some((r) => r.status === 200) ? true : undefined,
    );
    await env.op.waitForLog((r) => r.nexartoken === `${ns}/design` && r.msg === "reconcile failed; requeued");
    await sleep(3_000); // the operator keeps failing to store; it must not fetch again meanwhile
    const reqs = refreshRequests(c.clientId);
    expect(reqs).toHaveLength(1);
    expect(reqs[0]?.refreshTokenSha256).toBe(tokenSha256(rt0));
    expect(await env.readSecret(ns, "design-token")).toBeUndefined(); // nothing published without the stored token

    // the Secret is made writable again (immutable Secrets can only be recreated), still holding the consumed token
    await env.core.deleteNamespacedSecret({ namespace: ns, name: "creds" });
    await env.core.createNamespacedSecret({
      namespace: ns,
      body: {
        metadata: { name: "creds" },
        stringData: { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: rt0 },
      },
    });
    await env.waitReady(ns, "design", "True", "TokenIssued", 60_000);
    const all = refreshRequests(c.clientId);
    const presented = all.map((r) => r.refreshTokenSha256);
    expect(new Set(presented).size).toBe(presented.length); // rt0 never presented again
    expect(all.every((r) => r.status === 200)).toBe(true);
    // the Secret holds the token rotated last, and it works
    const stored = decode((await env.readSecret(ns, "creds"))?.data?.refreshToken) as string;
    expect(tokenSha256(stored)).toBe(all.at(-1)?.issuedRefreshTokenSha256);
    await kube.request("DELETE", nexarTokenPath(ns, "design"));
    await sleep(1_000);
    expect(await useRefreshToken(c.clientId, c.clientSecret, stored)).toBe(200);
  });
});
