// Ory Hydra v2 on loopback for interop tests: a second, independent OAuth 2.0 server (OpenID Certified, Go, fosite)
// next to the oidc-provider harness in identity.ts. The binary is built once from the Go module proxy and cached by
// hack/build-tools.sh (`HYDRA_BIN` wins). Hydra keeps everything in memory (`dsn: memory`, SQLite).
//
// Layout:
//   - `hydra serve all --dev -c <config>` with its public and admin listeners on 127.0.0.1 ports;
//   - a recording front server (node:http) owns the issuer's port and passes every request through to Hydra's public
//     listener unchanged, buffering only token-endpoint POSTs to record them (grant, client, auth method, status and
//     SHA-256 of the refresh tokens presented and issued) — so tests count token requests and see refresh-token
//     reuse without keeping tokens, as with identity.ts;
//   - a login/consent app (node:http) that accepts every login and consent challenge through Hydra's admin API, as
//     Hydra's docs show for a custom login and consent UI (https://www.ory.sh/docs/hydra/guides/custom-ui-oauth2:
//     GET /admin/oauth2/auth/requests/login?login_challenge=…, PUT …/login/accept, the same for consent), so the
//     authorization code flow runs to completion without a browser.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from "jose";
import { tokenSha256, type TokenRequestRecord } from "./identity.ts";
import { freePort } from "./operator.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** Path of the Hydra binary: `HYDRA_BIN`, else built (once) by hack/build-tools.sh. @throws Error when the build fails. */
export function hydraBinary(): string {
  if (process.env.HYDRA_BIN) return process.env.HYDRA_BIN;
  const out = execFileSync("bash", [join(ROOT, "hack", "build-tools.sh"), "hydra"], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  return out.trim();
}

/** Options of {@link startHydra}. */
export interface HydraOptions {
  /**
   * `strategies.access_token`: `jwt` (RFC 9068-style signed JWT with `exp`) or `opaque` (Hydra's HMAC token
   * `ory_at_…`, no readable expiry: a client learns it from `expires_in` only). Default `jwt`.
   */
  accessTokenStrategy?: "jwt" | "opaque";
  /** `ttl.access_token` in seconds (Hydra's default 1 h). */
  accessTokenLifetimeSeconds?: number;
  /**
   * `oauth2.grant.refresh_token.rotation_grace_period` in seconds; default 0 (strict rotation). Hydra v2.3.0 clamps
   * it to 5 minutes (driver/config/provider.go `RefreshTokenRotationGracePeriod`).
   */
  rotationGracePeriodSeconds?: number;
}

/**
 * A client created through Hydra's admin API (`POST /admin/clients`). `scopes`: the client's allowed scopes (Hydra
 * enforces them for every grant). `authMethod`: its `token_endpoint_auth_method` — Hydra accepts only that one method
 * (unlike oidc-provider and IdentityServer, which accept either). `grantTypes` default: all three.
 */
export interface HydraClientSpec {
  clientId: string;
  clientSecret: string;
  authMethod: "client_secret_post" | "client_secret_basic";
  scopes: readonly string[];
  grantTypes?: readonly ("client_credentials" | "authorization_code" | "refresh_token")[];
  redirectUris?: readonly string[];
  /** `audience`: values the client may request as `audience`; becomes the JWT `aud`. */
  audience?: readonly string[];
}

/** What {@link HydraServer.completeAuthorization} does at the login and consent steps. */
export interface HydraDriveOptions {
  /** Subject the login app accepts (the token `sub`). Default `user-1`. */
  subject?: string;
  /** Reject the consent challenge instead (`error=access_denied` at the redirect URI). */
  deny?: boolean;
}

/** A running Hydra with its recording front and login/consent app. URLs are `http://127.0.0.1:<port>…`. */
export interface HydraServer {
  /** `urls.self.issuer` (the front's origin): `iss` of every JWT. */
  issuer: string;
  /** Token endpoint, `<issuer>/oauth2/token`. */
  tokenUrl: string;
  /** Authorization endpoint, `<issuer>/oauth2/auth`. */
  authorizationUrl: string;
  /** Hydra's admin listener (clients, introspection, login/consent acceptance). */
  adminUrl: string;
  /** The configured access-token strategy. */
  accessTokenStrategy: "jwt" | "opaque";
  /** Every POST to the token endpoint since start/reset, oldest first (same record shape as identity.ts). */
  readonly requests: TokenRequestRecord[];
  /** Clears `requests`. */
  reset(): void;
  /** Creates a client through the admin API. @throws Error with Hydra's answer when it is not 201. */
  createClient(c: HydraClientSpec): Promise<void>;
  /** Deletes a client (admin API); its next token request is `invalid_client`. */
  deleteClient(clientId: string): Promise<void>;
  /** RFC 7662 introspection through the admin API (`POST /admin/oauth2/introspect`). */
  introspect(token: string): Promise<Record<string, unknown>>;
  /** Verifies a JWT access token against Hydra's JWKS (`/.well-known/jwks.json`) and `iss`; resolves to the payload. */
  verify(accessToken: string): Promise<JWTPayload>;
  /**
   * Plays the browser for an authorization request: follows Hydra's redirects to the login and consent app and
   * back (keeping Hydra's CSRF cookies) and resolves to the final redirect to the client's redirect URI (with `code`
   * and `state`, or `error`), which is returned, not followed. @throws Error when the flow ends anywhere else.
   */
  completeAuthorization(authorizationRequestUrl: string, opts?: HydraDriveOptions): Promise<URL>;
  /** Hydra's log lines so far (JSON). */
  readonly logs: string[];
  /** Stops Hydra (SIGTERM, then SIGKILL after 10 s), the front and the app; removes the config directory. */
  stop(): Promise<void>;
}

function listen(server: http.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Client id and auth method of a token request: HTTP Basic user (form-urlencoded, RFC 6749 §2.3.1) or `client_id`. */
function clientOf(authorization: string | undefined, form: URLSearchParams) {
  if (authorization?.toLowerCase().startsWith("basic ")) {
    const userPass = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
    const user = userPass.slice(0, Math.max(0, userPass.indexOf(":")));
    let clientId: string | undefined;
    try {
      clientId = decodeURIComponent(user.replace(/\+/g, " "));
    } catch {
      clientId = user;
    }
    return { clientId, authMethod: "client_secret_basic" as const };
  }
  const clientId = form.get("client_id") ?? undefined;
  return { clientId, authMethod: form.has("client_secret") ? ("client_secret_post" as const) : ("none" as const) };
}

function hydraConfig(o: {
  publicPort: number;
  adminPort: number;
  issuer: string;
  appUrl: string;
  strategy: "jwt" | "opaque";
  accessTokenLifetimeSeconds?: number;
  rotationGracePeriodSeconds: number;
}): string {
  // JSON is YAML: Hydra reads either (-c hydra.yml).
  const cfg = {
    dsn: "memory",
    serve: {
      public: { host: "127.0.0.1", port: o.publicPort },
      admin: { host: "127.0.0.1", port: o.adminPort },
    },
    urls: {
      self: { issuer: o.issuer, public: o.issuer },
      login: `${o.appUrl}/login`,
      consent: `${o.appUrl}/consent`,
      error: `${o.appUrl}/error`,
    },
    secrets: { system: [randomBytes(24).toString("hex")] },
    strategies: { access_token: o.strategy },
    ...(o.accessTokenLifetimeSeconds !== undefined
      ? { ttl: { access_token: `${o.accessTokenLifetimeSeconds}s` } }
      : {}),
    oauth2: {
      // PKCE required for every authorization code flow: proves `login` sends it
      pkce: { enforced: true },
      grant: { refresh_token: { rotation_grace_period: `${o.rotationGracePeriodSeconds}s` } },
    },
    log: { level: "info", format: "json", leak_sensitive_values: false },
    sqa: { opt_out: true },
  };
  return JSON.stringify(cfg, null, 2);
}

/**
 * Starts Hydra (`serve all --dev`: http URLs on loopback), the recording front on the issuer's port and the
 * login/consent app, and waits for Hydra's `/health/ready`.
 * @throws Error when Hydra exits or is not ready within 60 s (its last log lines in the message).
 */
export async function startHydra(opts: HydraOptions = {}): Promise<HydraServer> {
  const bin = hydraBinary();
  const strategy = opts.accessTokenStrategy ?? "jwt";
  const requests: TokenRequestRecord[] = [];
  const logs: string[] = [];
  const hydraPublicPort = await freePort();
  const adminPort = await freePort();
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const admin = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(adminUrl + path, {
      method,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };

  // The recording front: every request passes through to Hydra's public listener.
  const front = http.createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      const isToken = req.method === "POST" && (req.url ?? "").split("?")[0] === "/oauth2/token";
      let record: TokenRequestRecord | undefined;
      if (isToken) {
        const form = new URLSearchParams(body.toString("utf8"));
        const { clientId, authMethod } = clientOf(req.headers.authorization, form);
        const rt = form.get("refresh_token");
        record = {
          atMs: Date.now(),
          grantType: form.get("grant_type") ?? undefined,
          clientId,
          authMethod,
          status: 0,
          faulted: false,
          ...(rt ? { refreshTokenSha256: tokenSha256(rt) } : {}),
        };
        requests.push(record);
      }
      const upstream = http.request(
        {
          host: "127.0.0.1",
          port: hydraPublicPort,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, "content-length": String(body.length) },
        },
        (up) => {
          void (async () => {
            const answer = await readBody(up);
            if (record) {
              record.status = up.statusCode ?? 0;
              try {
                const j = JSON.parse(answer.toString("utf8")) as Record<string, unknown>;
                if (typeof j.access_token === "string") record.accessTokenSha256 = tokenSha256(j.access_token);
                if (typeof j.refresh_token === "string") record.issuedRefreshTokenSha256 = tokenSha256(j.refresh_token);
              } catch {
                // not JSON: nothing more to record
              }
            }
            const headers = { ...up.headers };
            delete headers["transfer-encoding"];
            headers["content-length"] = String(answer.length);
            res.writeHead(up.statusCode ?? 502, headers);
            res.end(answer);
          })().catch(() => res.destroy());
        },
      );
      upstream.on("error", () => {
        if (!res.headersSent) res.writeHead(502).end();
        else res.destroy();
      });
      upstream.end(body);
    })().catch(() => res.destroy());
  });
  const frontPort = await listen(front);
  const issuer = `http://127.0.0.1:${frontPort}`;

  // The login and consent app (Hydra's "custom UI" contract, accepting everything; denial is asked for per flow).
  let driveOpts: HydraDriveOptions = {}; // of the flow being driven (tests drive one at a time)
  const app = http.createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? "/", "http://app");
      const redirect = (to: unknown) => {
        if (typeof to !== "string") throw new Error("Hydra answered without redirect_to");
        res.writeHead(302, { location: to }).end();
      };
      if (url.pathname === "/login") {
        const challenge = url.searchParams.get("login_challenge") ?? "";
        const q = `?login_challenge=${encodeURIComponent(challenge)}`;
        const got = await admin("GET", `/admin/oauth2/auth/requests/login${q}`);
        if (got.status !== 200) throw new Error(`login request: HTTP ${got.status}`);
        const accepted = await admin("PUT", `/admin/oauth2/auth/requests/login/accept${q}`, {
          subject: driveOpts.subject ?? "user-1",
          remember: false,
        });
        return redirect(accepted.json.redirect_to);
      }
      if (url.pathname === "/consent") {
        const challenge = url.searchParams.get("consent_challenge") ?? "";
        const q = `?consent_challenge=${encodeURIComponent(challenge)}`;
        const got = await admin("GET", `/admin/oauth2/auth/requests/consent${q}`);
        if (got.status !== 200) throw new Error(`consent request: HTTP ${got.status}`);
        if (driveOpts.deny) {
          const rejected = await admin("PUT", `/admin/oauth2/auth/requests/consent/reject${q}`, {
            error: "access_denied",
            error_description: "The resource owner denied the request",
          });
          return redirect(rejected.json.redirect_to);
        }
        const accepted = await admin("PUT", `/admin/oauth2/auth/requests/consent/accept${q}`, {
          grant_scope: got.json.requested_scope,
          grant_access_token_audience: got.json.requested_access_token_audience,
          remember: false,
        });
        return redirect(accepted.json.redirect_to);
      }
      res.writeHead(404, { "content-type": "text/plain" }).end(`no such page: ${url.pathname}`);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(err instanceof Error ? err.message : "error");
    });
  });
  const appPort = await listen(app);
  const appUrl = `http://127.0.0.1:${appPort}`;

  const dir = mkdtempSync(join(tmpdir(), "hydra-"));
  const configPath = join(dir, "hydra.yml");
  writeFileSync(
    configPath,
    hydraConfig({
      publicPort: hydraPublicPort,
      adminPort,
      issuer,
      appUrl,
      strategy,
      accessTokenLifetimeSeconds: opts.accessTokenLifetimeSeconds,
      rotationGracePeriodSeconds: opts.rotationGracePeriodSeconds ?? 0,
    }),
  );
  const child: ChildProcess = spawn(bin, ["serve", "all", "--dev", "--sqa-opt-out", "-c", configPath], {
    env: { ...process.env, SQA_OPT_OUT: "true" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  process.once("exit", () => child.kill("SIGKILL"));
  for (const s of [child.stdout, child.stderr]) {
    let rest = "";
    s?.on("data", (b: Buffer) => {
      rest += b.toString("utf8");
      const parts = rest.split("\n");
      rest = parts.pop() ?? "";
      logs.push(...parts);
      if (process.env.HYDRA_LOGS === "1") for (const l of parts) process.stderr.write(`[hydra] ${l}\n`);
    });
  }

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
    await closeServer(front);
    await closeServer(app);
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`hydra exited before it was ready; last lines:\n${logs.slice(-20).join("\n")}`);
    }
    const ready = await fetch(`${adminUrl}/health/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ready) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`hydra not ready in 60 s; last lines:\n${logs.slice(-20).join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
  const hydra: HydraServer = {
    issuer,
    tokenUrl: `${issuer}/oauth2/token`,
    authorizationUrl: `${issuer}/oauth2/auth`,
    adminUrl,
    accessTokenStrategy: strategy,
    requests,
    logs,
    reset() {
      requests.length = 0;
    },
    async createClient(c) {
      const res = await admin("POST", "/admin/clients", {
        client_id: c.clientId,
        client_secret: c.clientSecret,
        token_endpoint_auth_method: c.authMethod,
        grant_types: c.grantTypes ?? ["client_credentials", "authorization_code", "refresh_token"],
        response_types: ["code"],
        scope: c.scopes.join(" "),
        redirect_uris: c.redirectUris ?? [],
        audience: c.audience ?? [],
      });
      if (res.status !== 201)
        throw new Error(`create client ${c.clientId}: HTTP ${res.status} ${JSON.stringify(res.json)}`);
    },
    async deleteClient(clientId) {
      const res = await admin("DELETE", `/admin/clients/${encodeURIComponent(clientId)}`);
      if (res.status !== 204) throw new Error(`delete client ${clientId}: HTTP ${res.status}`);
    },
    async introspect(token) {
      const res = await fetch(`${adminUrl}/admin/oauth2/introspect`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ token }),
      });
      return (await res.json()) as Record<string, unknown>;
    },
    async verify(accessToken) {
      const { payload } = await jwtVerify(accessToken, jwks, { issuer });
      return payload;
    },
    async completeAuthorization(authorizationRequestUrl, o = {}) {
      driveOpts = o;
      const jar = new Map<string, string>();
      let url = new URL(authorizationRequestUrl);
      for (let hop = 0; hop < 20; hop++) {
        const own = url.origin === issuer || url.origin === appUrl;
        if (!own) return url; // the client's redirect URI: hand it back
        const res = await fetch(url, {
          redirect: "manual",
          headers: jar.size ? { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") } : {},
        });
        for (const c of res.headers.getSetCookie()) {
          const [pair] = c.split(";");
          const eq = pair?.indexOf("=") ?? -1;
          if (pair && eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
        }
        const location = res.headers.get("location");
        const text = await res.text();
        if (res.status < 300 || res.status >= 400 || !location) {
          throw new Error(`authorization flow stopped at ${url.pathname}: HTTP ${res.status} ${text.slice(0, 300)}`);
        }
        url = new URL(location, url);
      }
      throw new Error("authorization flow: too many redirects");
    },
    stop,
  };
  return hydra;
}
