/**
 * Interop with a second, independent OAuth 2.0 server: Ory Hydra v2.3.0 (Go, fosite; built from the
 * Go module proxy by hack/build-tools.sh), on loopback with an in-memory store, against the real
 * control plane and the real operator process. Every test names the Hydra behaviour it covers
 * where Hydra differs from oidc-provider (identity.ts) or from Nexar's IdentityServer:
 *
 * - `token_type: "bearer"` in lower case, and `expires_in: 3599` for a 1 h TTL (fosite rounds the
 *   expiry and counts down from the request);
 * - `invalid_client` answered with HTTP 401 (Nexar: 400), and only the registered
 *   `token_endpoint_auth_method` accepted (oidc-provider and IdentityServer accept either);
 * - `invalid_scope` for a scope outside the client's allow-list, with Hydra's own description;
 * - the opaque strategy's `ory_at_…` tokens: not JWTs, the expiry is in `expires_in` only;
 * - Basic credentials decoded as RFC 6749 §2.3.1 says (form-urlencoded id and secret);
 * - the `scope` of a refresh request ignored: the answer carries every scope of the original grant
 *   (fosite handler/oauth2/flow_refresh.go, `SetRequestedScopes(originalRequest…)`);
 * - strict refresh-token rotation: reuse of a rotated token is `invalid_grant` "The refresh token
 *   was already used." and revokes the whole chain, the operator's current token included;
 * - the login and consent steps of the authorization code flow run in a separate app through the
 *   admin API, with PKCE enforced (`oauth2.pkce.enforced`).
 *
 * The grace period of refresh-token rotation (`oauth2.grant.refresh_token.rotation_grace_period`)
 * is shown at the end, on the wire: see docs/interop.md for what Hydra's source says.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KubeConfig } from "@kubernetes/client-node";
import * as oidc from "openid-client";
import { startHydra, type HydraClientSpec, type HydraServer } from "../harness/hydra.ts";
import { tokenSha256 } from "../harness/identity.ts";
import { runCli } from "../harness/cli.ts";
import { freePort } from "../harness/operator.ts";
import { KubeClient } from "../../src/kube/client.ts";
import { nexarTokenPath } from "../../src/kube/paths.ts";
import { decode, startEnv, waitFor, type Env } from "./env.ts";

let env: Env;
let jwt: HydraServer; // strategies.access_token: jwt, strict rotation
let opaque: HydraServer; // strategies.access_token: opaque, 10-minute TTL
let kube: KubeClient;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  [env, jwt, opaque] = await Promise.all([
    startEnv(),
    startHydra({ accessTokenStrategy: "jwt" }),
    startHydra({ accessTokenStrategy: "opaque", accessTokenLifetimeSeconds: 600 }),
  ]);
  const kc = new KubeConfig();
  kc.loadFromFile(env.cp.kubeconfigPath);
  kube = await KubeClient.create(kc);
});
afterAll(async () => {
  try {
    await kube?.close();
    if (env) await env.scanForSecrets();
  } finally {
    await Promise.all([env?.stop(), jwt?.stop(), opaque?.stop()]);
  }
});

/** Creates a Hydra client and remembers its secret for the secret scan. */
async function client(h: HydraServer, c: HydraClientSpec): Promise<HydraClientSpec> {
  env.secrets.add(c.clientSecret);
  await h.createClient(c);
  return c;
}

function ccToken(h: HydraServer, credentials: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    grant: "ClientCredentials",
    scopes: ["supply.domain"],
    tokenUrl: h.tokenUrl,
    credentialsSecretRef: { name: credentials },
    ...extra,
  };
}

const requestsOf = (h: HydraServer, clientId: string, grant?: string) =>
  h.requests.filter((r) => r.clientId === clientId && (grant === undefined || r.grantType === grant));

/** JSON merge patch (RFC 7386) of a NexarToken. */
async function mergePatch(ns: string, name: string, body: Record<string, unknown>): Promise<void> {
  await kube.request("PATCH", nexarTokenPath(ns, name), { body, contentType: "application/merge-patch+json" });
}

const readyCondition = (nt: Awaited<ReturnType<Env["getToken"]>>) =>
  nt.status?.conditions?.find((c) => c.type === "Ready");

describe("client_credentials against Hydra", () => {
  it("client_secret_post, JWT strategy: lower-case `bearer` and `expires_in: 3599` give a Bearer token whose expiry errs early", async () => {
    const ns = await env.namespace("hydra-post");
    const c = await client(jwt, {
      clientId: "supply-post",
      clientSecret: "supply-post-secret-4b1e9c",
      authMethod: "client_secret_post",
      scopes: ["supply.domain"],
      grantTypes: ["client_credentials"],
    });
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret });
    await env.createToken(
      ns,
      "supply",
      ccToken(jwt, "creds", { target: { template: { Authorization: "Bearer {{access_token}}" } } }),
    );
    const nt = await env.waitReady(ns, "supply", "True", "TokenIssued");
    const secret = await env.readSecret(ns, "supply");
    const at = decode(secret?.data?.access_token) as string;
    // Hydra's token_type is "bearer"; RFC 6749 §5.1 makes it case-insensitive: the Secret says "Bearer"
    expect(decode(secret?.data?.token_type)).toBe("Bearer");
    expect(decode(secret?.data?.Authorization)).toBe(`Bearer ${at}`);
    const claims = await jwt.verify(at);
    expect(claims.client_id).toBe(c.clientId);
    expect(claims.scp).toEqual(["supply.domain"]);
    expect(nt.status?.grantedScopes).toEqual(["supply.domain"]);
    // expires_in 3599 (one second under the JWT's exp - iat): expiresAt comes from expires_in and is
    // never later than the real expiry
    const expiresAtMs = Date.parse(nt.status?.expiresAt as string);
    expect(expiresAtMs).toBeLessThanOrEqual((claims.exp as number) * 1000);
    expect((claims.exp as number) * 1000 - expiresAtMs).toBeLessThan(5_000);
    const reqs = requestsOf(jwt, c.clientId);
    expect(reqs).toHaveLength(1);
    expect(reqs[0]).toMatchObject({ authMethod: "client_secret_post", status: 200 });
  });

  it("client_secret_basic with `:`, `+`, `%`, space and non-ASCII in id and secret: form-urlencoded before base64 (RFC 6749 §2.3.1), as Hydra decodes it", async () => {
    const ns = await env.namespace("hydra-basic");
    const c = await client(jwt, {
      clientId: "supply:basic+app",
      clientSecret: "s3cr:t+with%2F a space/é-0d9f",
      authMethod: "client_secret_basic",
      scopes: ["supply.domain"],
      grantTypes: ["client_credentials"],
    });
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret });
    await env.createToken(ns, "supply", ccToken(jwt, "creds", { clientAuthentication: "ClientSecretBasic" }));
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    const claims = await jwt.verify((await env.accessToken(ns, "supply")) as string);
    expect(claims.client_id).toBe(c.clientId);
    expect(requestsOf(jwt, c.clientId)).toEqual([
      expect.objectContaining({ authMethod: "client_secret_basic", status: 200 }),
    ]);
  });

  it("opaque strategy: an `ory_at_…` token that is no JWT; the expiry comes from `expires_in` only and matches Hydra's introspection", async () => {
    const ns = await env.namespace("hydra-opaque");
    const c = await client(opaque, {
      clientId: "supply-opaque",
      clientSecret: "supply-opaque-secret-71ac0e",
      authMethod: "client_secret_post",
      scopes: ["supply.domain"],
      grantTypes: ["client_credentials"],
    });
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret });
    const before = Date.now();
    await env.createToken(ns, "supply", ccToken(opaque, "creds"));
    const nt = await env.waitReady(ns, "supply", "True", "TokenIssued");
    const at = (await env.accessToken(ns, "supply")) as string;
    expect(at).toMatch(/^ory_at_/);
    expect(at.split(".")).toHaveLength(2); // not a JWS: nothing to read an `exp` from
    const introspection = await opaque.introspect(at);
    expect(introspection.active).toBe(true);
    const expiresAtMs = Date.parse(nt.status?.expiresAt as string);
    // ttl.access_token 600 s: expires_in 599 counted from the send time, never after Hydra's own exp
    expect(expiresAtMs).toBeGreaterThanOrEqual(before + 598_000);
    expect(expiresAtMs).toBeLessThanOrEqual((introspection.exp as number) * 1000);
    expect((introspection.exp as number) * 1000 - expiresAtMs).toBeLessThan(5_000);
    // renewal planned inside the lifetime (default: a third of it before expiry)
    const renewalMs = Date.parse(nt.status?.renewalTime as string);
    expect(renewalMs).toBeLessThan(expiresAtMs);
    expect(renewalMs).toBeGreaterThan(before);
  });
});

describe("Hydra's error answers", () => {
  it("`invalid_client` with HTTP 401 (Nexar answers 400): a wrong secret and an unknown client are InvalidClient, classified by the code, with no retry storm", async () => {
    const ns = await env.namespace("hydra-invalid-client");
    const c = await client(jwt, {
      clientId: "supply-wrong",
      clientSecret: "supply-wrong-secret-right-9a",
      authMethod: "client_secret_post",
      scopes: ["supply.domain"],
      grantTypes: ["client_credentials"],
    });
    const wrong = "supply-wrong-secret-WRONG-9a";
    env.secrets.add(wrong);
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: wrong });
    await env.credentials(ns, "nobody", { clientId: "no-such-client", clientSecret: "no-such-client-secret-5e" });
    await env.createToken(ns, "wrong", ccToken(jwt, "creds"));
    await env.createToken(ns, "unknown", ccToken(jwt, "nobody"));
    for (const name of ["wrong", "unknown"]) {
      const nt = await env.waitReady(ns, name, "False", "InvalidClient");
      const cond = readyCondition(nt);
      expect(cond?.message).toContain("HTTP 401, error=invalid_client");
      expect(cond?.message).toContain("Client authentication failed");
      expect(nt.status?.failedAttempts).toBe(1);
    }
    expect(requestsOf(jwt, c.clientId).map((r) => r.status)).toEqual([401]);
    await sleep(3_000); // credential-class backoff is minutes: nothing more is sent meanwhile
    expect(requestsOf(jwt, c.clientId)).toHaveLength(1);
    expect(requestsOf(jwt, "no-such-client")).toHaveLength(1);
  });

  it("Hydra accepts only the registered token_endpoint_auth_method: the post/basic mismatch is InvalidClient and the message keeps Hydra's explanation", async () => {
    const ns = await env.namespace("hydra-auth-method");
    const c = await client(jwt, {
      clientId: "supply-basic-only",
      clientSecret: "supply-basic-only-secret-3d",
      authMethod: "client_secret_basic",
      scopes: ["supply.domain"],
      grantTypes: ["client_credentials"],
    });
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret });
    await env.createToken(ns, "supply", ccToken(jwt, "creds")); // ClientSecretPost, the default
    const nt = await env.waitReady(ns, "supply", "False", "InvalidClient");
    expect(readyCondition(nt)?.message).toContain(
      "supports client authentication method 'client_secret_basic', but method 'client_secret_post' was requested",
    );
    // the fix the message points to works at once (a spec change retries immediately)
    await mergePatch(ns, "supply", { spec: { clientAuthentication: "ClientSecretBasic" } });
    await env.waitReady(ns, "supply", "True", "TokenIssued");
    expect(requestsOf(jwt, c.clientId).map((r) => `${r.authMethod} ${r.status}`)).toEqual([
      "client_secret_post 401",
      "client_secret_basic 200",
    ]);
  });

  it("`invalid_scope` (HTTP 400) for a scope outside the client's allow-list is InvalidScope with Hydra's wording", async () => {
    const ns = await env.namespace("hydra-invalid-scope");
    const c = await client(jwt, {
      clientId: "supply-only",
      clientSecret: "supply-only-secret-8c2f",
      authMethod: "client_secret_post",
      scopes: ["supply.domain"],
      grantTypes: ["client_credentials"],
    });
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret });
    await env.createToken(ns, "design", ccToken(jwt, "creds", { scopes: ["design.domain"] }));
    const nt = await env.waitReady(ns, "design", "False", "InvalidScope");
    const msg = readyCondition(nt)?.message ?? "";
    expect(msg).toContain("HTTP 400, error=invalid_scope");
    expect(msg).toContain("The OAuth 2.0 Client is not allowed to request scope 'design.domain'");
    expect(await env.readSecret(ns, "design")).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// The authorization code flow: by the test (to seed refresh tokens) and by `login`.

const LOGIN_SCOPES = ["openid", "offline_access", "design.domain", "user.access"];

/** A client for the code flow with redirect URI `redirect` (client_secret_post, as `login` sends it). */
async function designClient(h: HydraServer, clientId: string, redirect: string): Promise<HydraClientSpec> {
  return client(h, {
    clientId,
    clientSecret: `${clientId}-secret-${tokenSha256(clientId).slice(0, 8)}`,
    authMethod: "client_secret_post",
    scopes: [...LOGIN_SCOPES, "profile", "email"],
    grantTypes: ["authorization_code", "refresh_token"],
    redirectUris: [redirect],
  });
}

/**
 * A user's consent through Hydra's login and consent app, then the code exchange (PKCE S256,
 * client_secret_post). Resolves to the first refresh token; it is added to the secret scan.
 */
async function consent(h: HydraServer, c: HydraClientSpec, redirect: string): Promise<string> {
  const verifier = oidc.randomPKCECodeVerifier();
  const challenge = await oidc.calculatePKCECodeChallenge(verifier);
  const state = oidc.randomState();
  const url = new URL(h.authorizationUrl);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: c.clientId,
    redirect_uri: redirect,
    scope: LOGIN_SCOPES.join(" "),
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
  }).toString();
  const back = await h.completeAuthorization(url.href);
  expect(back.searchParams.get("state")).toBe(state);
  const code = back.searchParams.get("code");
  expect(code, back.href).toBeTruthy();
  const res = await postToken(h, {
    grant_type: "authorization_code",
    code: code as string,
    redirect_uri: redirect,
    code_verifier: verifier,
    client_id: c.clientId,
    client_secret: c.clientSecret,
  });
  expect(res.status).toBe(200);
  const rt = res.body.refresh_token as string;
  env.secrets.add(rt);
  return rt;
}

async function postToken(
  h: HydraServer,
  form: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(h.tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
  });
  const body = (await res.json()) as Record<string, unknown>;
  if (typeof body.refresh_token === "string") env.secrets.add(body.refresh_token);
  if (typeof body.access_token === "string") env.secrets.add(body.access_token);
  return { status: res.status, body };
}

const refresh = (h: HydraServer, c: HydraClientSpec, rt: string) =>
  postToken(h, {
    grant_type: "refresh_token",
    refresh_token: rt,
    client_id: c.clientId,
    client_secret: c.clientSecret,
  });

async function requestRefresh(ns: string, name: string, value: string): Promise<void> {
  await mergePatch(ns, name, { metadata: { annotations: { "nexar-operator.io/refresh-requested-at": value } } });
}

async function waitRefreshed(ns: string, name: string, value: string): Promise<void> {
  await waitFor(`${ns}/${name} lastRefreshRequest=${value}`, async () => {
    const nt = await env.getToken(ns, name);
    return nt.status?.lastRefreshRequest === value && readyCondition(nt)?.status === "True" ? true : undefined;
  });
}

describe("grant: RefreshToken with Hydra's strict rotation", () => {
  it("every refresh presents the token rotated last; Hydra ignores the refresh request's `scope` and grants the original set", async () => {
    const ns = await env.namespace("hydra-rt");
    const redirect = "http://127.0.0.1:3000/callback";
    const c = await designClient(jwt, "design-rotation", redirect);
    const rt0 = await consent(jwt, c, redirect);
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: rt0 });
    await env.createToken(ns, "design", {
      grant: "RefreshToken",
      scopes: ["design.domain"], // narrower than the grant: Hydra answers with all of it
      tokenUrl: jwt.tokenUrl,
      credentialsSecretRef: { name: "creds" },
    });
    const first = await env.waitReady(ns, "design", "True", "TokenIssued");
    expect([...(first.status?.grantedScopes ?? [])].sort()).toEqual([...LOGIN_SCOPES].sort());
    for (let i = 1; i <= 3; i++) {
      const value = `2026-03-01T00:00:0${i}Z`;
      await requestRefresh(ns, "design", value);
      await waitRefreshed(ns, "design", value);
    }
    const reqs = requestsOf(jwt, c.clientId, "refresh_token");
    expect(reqs).toHaveLength(4);
    expect(reqs.every((r) => r.status === 200)).toBe(true);
    expect(reqs[0]?.refreshTokenSha256).toBe(tokenSha256(rt0));
    for (let i = 1; i < reqs.length; i++)
      expect(reqs[i]?.refreshTokenSha256).toBe(reqs[i - 1]?.issuedRefreshTokenSha256);
    const stored = decode((await env.readSecret(ns, "creds"))?.data?.refreshToken) as string;
    env.secrets.add(stored);
    expect(tokenSha256(stored)).toBe(reqs.at(-1)?.issuedRefreshTokenSha256);
    const claims = await jwt.verify((await env.accessToken(ns, "design")) as string);
    expect(claims.sub).toBe("user-1");
  });

  it("reuse of a rotated token is `invalid_grant` and revokes the chain: the operator says RefreshTokenInvalid with the login hint, once, with no retry loop", async () => {
    const ns = await env.namespace("hydra-rt-reuse");
    const redirect = "http://127.0.0.1:3000/callback";
    const c = await designClient(jwt, "design-reuse", redirect);
    const rt0 = await consent(jwt, c, redirect);
    await env.credentials(ns, "creds", { clientId: c.clientId, clientSecret: c.clientSecret, refreshToken: rt0 });
    await env.createToken(ns, "design", {
      grant: "RefreshToken",
      scopes: ["design.domain", "user.access"],
      tokenUrl: jwt.tokenUrl,
      credentialsSecretRef: { name: "creds" },
    });
    await env.waitReady(ns, "design", "True", "TokenIssued");
    const published = await env.accessToken(ns, "design");
    // someone presents rt0 again (a crash lost the rotated token, a copy leaked …): strict rotation
    const reuse = await refresh(jwt, c, rt0);
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe("invalid_grant");
    expect(String(reuse.body.error_description)).toContain("The refresh token was already used.");
    // … and Hydra revoked the chain: the operator's current token is dead too
    await requestRefresh(ns, "design", "2026-03-02T00:00:00Z");
    const failed = await env.waitReady(ns, "design", "False", "RefreshTokenInvalid");
    expect(readyCondition(failed)?.message).toContain(`nexar-token-operator login --namespace ${ns} --secret creds`);
    expect(failed.status?.failedAttempts).toBe(1);
    expect(await env.accessToken(ns, "design")).toBe(published); // the last good token stays
    const count = requestsOf(jwt, c.clientId, "refresh_token").length;
    await sleep(3_000);
    expect(requestsOf(jwt, c.clientId, "refresh_token")).toHaveLength(count);
  });
});

describe("login against Hydra", () => {
  /** `login` with the client's credentials in the environment; resolves the authorization URL it prints and its exit. */
  function runLogin(args: string[], creds: HydraClientSpec) {
    const run = runCli(["login", ...args], {
      NEXAR_CLIENT_ID: creds.clientId,
      NEXAR_CLIENT_SECRET: creds.clientSecret,
    });
    const authorizationUrl = async () =>
      (await run.waitForStderr(/^\s+(http:\/\/127\.0\.0\.1:\d+\/oauth2\/auth\?\S+)$/m))[1] as string;
    return { done: run.done, authorizationUrl };
  }

  it("authorization code + PKCE S256 through Hydra's login and consent app (PKCE enforced), the Secret stored, and the operator runs on it", async () => {
    const ns = await env.namespace("hydra-login");
    const port = await freePort();
    const redirect = `http://127.0.0.1:${port}/login`;
    const c = await designClient(jwt, "design-login", redirect);
    const args = [
      "--no-browser",
      "--authorization-url",
      jwt.authorizationUrl,
      "--token-url",
      jwt.tokenUrl,
      "--allow-insecure-token-url",
      "--redirect-url",
      redirect,
      "--kubeconfig",
      env.cp.kubeconfigPath,
      "--namespace",
      ns,
      "--timeout",
      "60s",
    ];
    const run = runLogin([...args, "--secret", "nexar-design"], c);
    const url = new URL(await run.authorizationUrl());
    expect(url.searchParams.get("code_challenge_method")).toBe("S256");
    const back = await jwt.completeAuthorization(url.href);
    expect(back.origin).toBe(`http://127.0.0.1:${port}`);
    expect(back.searchParams.get("code")).toBeTruthy();
    expect((await fetch(back)).status).toBe(200); // the browser delivers the redirect
    const out = await run.done;
    expect(out.code, out.stderr).toBe(0);
    expect(out.stderr).toContain(`Secret ${ns}/nexar-design created`);
    const exchange = requestsOf(jwt, c.clientId, "authorization_code");
    expect(exchange).toEqual([expect.objectContaining({ authMethod: "client_secret_post", status: 200 })]);
    const secret = await env.readSecret(ns, "nexar-design");
    const rt = decode(secret?.data?.refreshToken) as string;
    env.secrets.add(rt);
    expect(tokenSha256(rt)).toBe(exchange[0]?.issuedRefreshTokenSha256);
    for (const text of [out.stdout, out.stderr]) {
      expect(text).not.toContain(c.clientSecret);
      expect(text).not.toContain(rt);
    }

    // the store step: the operator refreshes with what `login` wrote
    await env.createToken(ns, "design", {
      grant: "RefreshToken",
      scopes: ["design.domain", "user.access"],
      tokenUrl: jwt.tokenUrl,
      credentialsSecretRef: { name: "nexar-design" },
    });
    await env.waitReady(ns, "design", "True", "TokenIssued");
    expect(requestsOf(jwt, c.clientId, "refresh_token")[0]?.refreshTokenSha256).toBe(tokenSha256(rt));

    // a consent the user rejects comes back as error=access_denied; nothing is stored
    const denied = runLogin([...args, "--secret", "denied"], c);
    const deniedBack = await jwt.completeAuthorization(await denied.authorizationUrl(), { deny: true });
    expect(deniedBack.searchParams.get("error")).toBe("access_denied");
    await fetch(deniedBack);
    const deniedOut = await denied.done;
    expect(deniedOut.code).toBe(1);
    expect(deniedOut.stderr).toContain("consent was denied (error=access_denied");
    expect(await env.readSecret(ns, "denied")).toBeUndefined();
  });
});

describe("Hydra's refresh-token rotation grace period (oauth2.grant.refresh_token.rotation_grace_period)", () => {
  let grace: HydraServer;
  const GRACE_S = 8;
  beforeAll(async () => {
    grace = await startHydra({ accessTokenStrategy: "jwt", rotationGracePeriodSeconds: GRACE_S });
  });
  afterAll(async () => {
    await grace?.stop();
  });

  it("a used token stays usable, any number of times, until the period counted from its first use ends; each reuse mints a new pair; after it, reuse revokes the chain", async () => {
    const redirect = "http://127.0.0.1:3000/callback";
    const c = await designClient(grace, "design-grace", redirect);
    const rt0 = await consent(grace, c, redirect);

    const first = await refresh(grace, c, rt0);
    const firstUseMs = Date.now();
    expect(first.status).toBe(200);
    const rt1 = first.body.refresh_token as string;
    // inside the window the same old token works again — and again: no count limit
    const again = await refresh(grace, c, rt0);
    const third = await refresh(grace, c, rt0);
    expect(again.status).toBe(200);
    expect(third.status).toBe(200);
    const rt1b = again.body.refresh_token as string;
    const rt1c = third.body.refresh_token as string;
    // each reuse is a new rotation: a new refresh token and a new access token, not a replay
    expect(new Set([rt1, rt1b, rt1c]).size).toBe(3);
    expect(new Set([first, again, third].map((r) => r.body.access_token)).size).toBe(3);
    // the siblings all stay valid: using one does not deactivate the others
    const fromB = await refresh(grace, c, rt1b);
    expect(fromB.status).toBe(200);

    // the window is counted from the first use and not extended by reuse: a reuse late in the
    // window works, one after its end fails although the previous reuse was recent
    await sleep(Math.max(0, firstUseMs + (GRACE_S - 2) * 1000 - Date.now()));
    expect((await refresh(grace, c, rt0)).status).toBe(200);
    await sleep(Math.max(0, firstUseMs + (GRACE_S + 1) * 1000 - Date.now()));
    const late = await refresh(grace, c, rt0);
    expect(late.status).toBe(400);
    expect(late.body.error).toBe("invalid_grant");
    expect(String(late.body.error_description)).toContain("The refresh token was already used.");
    // that late reuse revoked every refresh token of the grant, the unused sibling rt1c included
    const sibling = await refresh(grace, c, rt1c);
    expect(sibling.status).toBe(400);
    expect(sibling.body.error).toBe("invalid_grant");
  });

  it("without a grace period (strict rotation) the first reuse already fails", async () => {
    const redirect = "http://127.0.0.1:3000/callback";
    const c = await designClient(jwt, "design-strict", redirect);
    const rt0 = await consent(jwt, c, redirect);
    expect((await refresh(jwt, c, rt0)).status).toBe(200);
    const reuse = await refresh(jwt, c, rt0);
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe("invalid_grant");
  });
});
