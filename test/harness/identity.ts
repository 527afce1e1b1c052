// A real OAuth 2.0 / OpenID Connect server on loopback for tests (SPEC.md §7 "Identity"), built on oidc-provider v9
// and configured like Nexar's identity service (SPEC.md §1): token endpoint /connect/token, client_credentials with
// client_secret_post or client_secret_basic, JWT access tokens with `exp`, scopes supply.domain / design.domain /
// user.access, authorization_code + PKCE S256 and rotating refresh tokens for the design scope (SPEC.md §6).
//
// Layout: a plain node:http "front" server owns the socket. POSTs to the token endpoint are buffered, logged and
// may be faulted there (see identity-faults.ts); everything else goes straight to oidc-provider's Koa callback.
// Rewrites of a real successful token response (expires_in removed/overridden) are done in a Koa middleware
// registered with `provider.use`, which sees the response body as an object before Koa serialises it — no byte
// re-parsing needed.

import * as http from "node:http";
import * as https from "node:https";
import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { Provider, errors } from "oidc-provider";
import type { AdapterLike, KoaContextLike } from "oidc-provider";
import { createMemoryAdapter } from "oidc-provider/lib/adapters/memory_adapter.js";
import { createRemoteJWKSet, jwtVerify } from "jose";
import type { JWTPayload } from "jose";
import { FaultSchedule, skewedDate, rewriteTokenBody, syntheticResponse } from "./identity-faults.ts";
import type { Fault } from "./identity-faults.ts";

export type { Fault } from "./identity-faults.ts";

/** Nexar API scopes (SPEC.md §1). */
export const NEXAR_API_SCOPES = ["supply.domain", "design.domain", "user.access"] as const;
/** OpenID Connect scopes Nexar's design flow requests in addition (SPEC.md §1, §6). */
export const OIDC_SCOPES = ["openid", "profile", "email", "offline_access"] as const;
/**
 * Resource indicator (RFC 8707) every access token is issued for; it becomes the JWT `aud`. Nexar's real audience
 * is not documented; this value only has to be stable within the tests.
 */
export const API_RESOURCE = "https://api.nexar.com";
/** Default redirect URI registered for every client: the one in Nexar's examples (SPEC.md §6). */
export const DEFAULT_REDIRECT_URI = "http://localhost:3000/login";

/** Endpoint paths, named like Nexar's (IdentityServer-based) identity service. */
const ROUTES = {
  authorization: "/connect/authorize",
  token: "/connect/token",
  userinfo: "/connect/userinfo",
  jwks: "/.well-known/openid-configuration/jwks",
  revocation: "/connect/revocation",
  introspection: "/connect/introspect",
  end_session: "/connect/endsession",
} as const;

/** Largest token-request body the front server buffers (bytes); oidc-provider's own limit is 56 KiB. */
const MAX_TOKEN_REQUEST_BYTES = 64 * 1024;

/**
 * A client registered with the server. It may use every grant (client_credentials, authorization_code,
 * refresh_token). `authMethod` is its registered `token_endpoint_auth_method`; note that oidc-provider (like Nexar's
 * IdentityServer) accepts the secret by either method, Basic header or form body (lib/shared/client_auth.js), so
 * tests check the method a client used through `TokenRequestRecord.authMethod`. `scopes`: allow-list of scopes it may request (omitted = all). `redirectUris`: for the
 * authorization-code flow; the client is a "native" client, so `http://localhost|127.0.0.1:<any port>/path` matches
 * a registered loopback URI regardless of port (RFC 8252 §7.3). Default `[DEFAULT_REDIRECT_URI]`.
 */
export interface IdentityClient {
  clientId: string;
  clientSecret: string;
  authMethod: "client_secret_post" | "client_secret_basic";
  scopes?: readonly string[];
  redirectUris?: readonly string[];
  /** Lifetime of this client's access tokens, seconds; default the server's (see `setAccessTokenLifetime`). */
  accessTokenLifetimeSeconds?: number;
}

/**
 * One POST to the token endpoint. `atMs`: arrival time, epoch milliseconds. `grantType`/`clientId`: from the form
 * body, or `clientId` from the HTTP Basic header (RFC 6749 §2.3.1); absent when not sent. `authMethod`: how the
 * client sent its secret — Basic header, `client_secret` form field, or "none" (neither). `status`: the HTTP status
 * answered; 0 while the request is in flight and stays 0 when no response was sent (reset fault, or the client left
 * during a delay). `faulted`: a fault was active for this request.
 */
export interface TokenRequestRecord {
  atMs: number;
  grantType?: string;
  clientId?: string;
  authMethod: "client_secret_basic" | "client_secret_post" | "none";
  status: number;
  faulted: boolean;
  /** Hex SHA-256 of the `refresh_token` form field presented (refresh_token grant), to detect reuse without keeping tokens. */
  refreshTokenSha256?: string;
  /** Hex SHA-256 of the `refresh_token` in a successful response (the rotated token), when there was one. */
  issuedRefreshTokenSha256?: string;
  /** Hex SHA-256 of the `access_token` in a successful response. */
  accessTokenSha256?: string;
}

/** Hex SHA-256 of a token, as recorded in `TokenRequestRecord` (tests hash their own tokens the same way). */
export function tokenSha256(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Options for `startIdentityServer`. */
export interface IdentityServerOptions {
  /** TCP port; default 0 (any free port). */
  port?: number;
  /**
   * Address to listen on and to name in the issuer URL; default `127.0.0.1`. Only loopback addresses or an address
   * of a network namespace the test run created itself (the e2e node's address) belong here.
   */
  host?: string;
  /** Serve HTTPS with this certificate and key (PEM) instead of plain HTTP; the issuer URL is then `https://`. */
  tls?: { cert: string; key: string };
  /** Access-token lifetime in seconds (default 86400, Nexar's 24 h; SPEC.md §1). */
  accessTokenLifetimeSeconds?: number;
  /** Clients registered at start. */
  clients?: IdentityClient[];
  /**
   * HTTP status for `invalid_client` token errors. Default 400, which is what Nexar (IdentityServer) answers for
   * every token error (SPEC.md §1); oidc-provider's own choice is 401 (RFC 6749 §5.2 allows both).
   */
  invalidClientStatus?: 400 | 401;
}

/** Options for `completeAuthorization`. */
export interface AuthorizationDriveOptions {
  /** Account (user) id typed into the dev login form; default "user-1". It becomes the token `sub`. */
  accountId?: string;
  /** Abort at the first prompt instead of approving: the client gets `error=access_denied`. */
  deny?: boolean;
}

/** A running test identity server. All URLs are `http://127.0.0.1:<port>…` (or the `host` and `tls` options' scheme and address). */
export interface IdentityServer {
  /** Issuer identifier (`iss` of every token), e.g. `http://127.0.0.1:41234`. */
  issuer: string;
  /** Token endpoint, `<issuer>/connect/token`. */
  tokenUrl: string;
  /** Authorization endpoint, `<issuer>/connect/authorize`. */
  authorizationUrl: string;
  /** JWKS endpoint (public signing keys). */
  jwksUrl: string;
  /** Registers a client, or replaces the one with the same id (e.g. to rotate its secret); effective at once. @throws TypeError on an empty clientId/clientSecret */
  addClient(c: IdentityClient): void;
  /** Removes a client; its next token request fails with `invalid_client`. Unknown ids are ignored. */
  removeClient(clientId: string): void;
  /** Sets the lifetime (seconds, positive integer) of access tokens issued from now on. @throws RangeError */
  setAccessTokenLifetime(seconds: number): void;
  /** Activates a token-endpoint fault (replacing the previous one), or clears it with `undefined`. @throws RangeError */
  setFault(f: Fault | undefined): void;
  /** Number of access tokens oidc-provider minted at the token endpoint (HTTP 200 with `access_token`) since start/reset. */
  tokensIssued(): number;
  /** Every POST to the token endpoint since start/reset, oldest first. */
  readonly requests: TokenRequestRecord[];
  /** Clears `tokensIssued()` and `requests` (not clients, lifetime or the active fault). */
  reset(): void;
  /**
   * Verifies an access token: JWS signature against the server's JWKS endpoint, `iss` = issuer, `typ` = at+jwt
   * (RFC 9068), and `exp`. Resolves to the payload. @throws jose errors (e.g. JWTExpired) on failure.
   */
  verify(accessToken: string): Promise<JWTPayload>;
  /**
   * Drives an authorization request through the dev login and consent pages over plain HTTP (no browser) and
   * resolves to the final redirect to the client's redirect_uri (carrying `code` and `state`, or `error`).
   * The redirect is returned, not followed. @throws Error when the flow does not end in such a redirect.
   */
  completeAuthorization(authorizationRequestUrl: string, opts?: AuthorizationDriveOptions): Promise<URL>;
  /** Closes the server and every open connection; pending delays are cancelled. */
  stop(): Promise<void>;
}

interface TokenRequestState {
  record: TokenRequestRecord;
  fault: Fault | undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

function assertLifetime(seconds: number): void {
  if (!Number.isSafeInteger(seconds) || seconds <= 0) {
    throw new RangeError("access token lifetime must be a positive integer number of seconds");
  }
}

function clientMetadata(c: IdentityClient): Record<string, unknown> {
  if (!c.clientId || !c.clientSecret) throw new TypeError("clientId and clientSecret must be non-empty");
  const metadata: Record<string, unknown> = {
    client_id: c.clientId,
    client_secret: c.clientSecret,
    token_endpoint_auth_method: c.authMethod,
    application_type: "native",
    grant_types: ["client_credentials", "authorization_code", "refresh_token"],
    response_types: ["code"],
    redirect_uris: c.redirectUris ?? [DEFAULT_REDIRECT_URI],
  };
  if (c.scopes !== undefined) metadata["scope"] = c.scopes.join(" ");
  return metadata;
}

/** Client id of a token request: HTTP Basic user (form-urlencoded per RFC 6749 §2.3.1) or the `client_id` field. */
function clientIdOf(authorization: string | undefined, form: URLSearchParams): string | undefined {
  if (authorization?.toLowerCase().startsWith("basic ")) {
    const decoded = Buffer.from(authorization.slice(6).trim(), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const user = colon === -1 ? decoded : decoded.slice(0, colon);
    try {
      return decodeURIComponent(user.replaceAll("+", " "));
    } catch {
      return user;
    }
  }
  return form.get("client_id") ?? undefined;
}

async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > limit) throw new RangeError("request body too large");
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}

/** Tiny cookie jar for driving the interaction pages: name → value, path ignored (all on one origin). */
function storeCookies(jar: Map<string, string>, res: Response): void {
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(";", 1)[0] ?? "";
    const eq = pair.indexOf("=");
    if (eq <= 0) continue;
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (/expires=Thu, 01 Jan 1970/i.test(line) || value === "") jar.delete(name);
    else jar.set(name, value);
  }
}

function cookieHeader(jar: Map<string, string>): string {
  return [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
}

/**
 * Starts the identity server on 127.0.0.1 (plain http; the operator allows http token URLs on loopback with a dev
 * flag). Resolves once it is listening. @throws when the port cannot be bound or a client is invalid.
 */
export async function startIdentityServer(opts: IdentityServerOptions = {}): Promise<IdentityServer> {
  let accessTokenLifetime = opts.accessTokenLifetimeSeconds ?? 86_400;
  assertLifetime(accessTokenLifetime);
  const invalidClientStatus = opts.invalidClientStatus ?? 400;

  const clients = new Map<string, Record<string, unknown>>();
  /** Per-client access-token lifetimes, seconds (IdentityClient.accessTokenLifetimeSeconds). */
  const clientLifetimes = new Map<string, number>();
  const register = (c: IdentityClient): void => {
    const metadata = clientMetadata(c);
    if (c.accessTokenLifetimeSeconds !== undefined) {
      assertLifetime(c.accessTokenLifetimeSeconds);
      clientLifetimes.set(c.clientId, c.accessTokenLifetimeSeconds);
    } else {
      clientLifetimes.delete(c.clientId);
    }
    clients.set(c.clientId, metadata);
  };
  for (const c of opts.clients ?? []) register(c);

  const faults = new FaultSchedule();
  const requests: TokenRequestRecord[] = [];
  let issued = 0;
  const tokenRequests = new WeakMap<http.IncomingMessage, TokenRequestState>();
  const pendingDelays = new Set<AbortController>();

  // Bind first: the issuer URL must carry the real port.
  let providerListener: ((req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>) | undefined;
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    void handle(req, res).catch((err: unknown) => {
      console.error("identity harness: request failed:", err instanceof Error ? err.message : err);
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: "server_error" }));
      } else {
        res.destroy();
      }
    });
  };
  const server = opts.tls
    ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, listener)
    : http.createServer(listener);
  const host = opts.host ?? "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `${opts.tls ? "https" : "http"}://${host.includes(":") ? `[${host}]` : host}:${port}`;

  // Client model: looked up at request time through the adapter, so add/remove/rotate takes effect at once
  // (oidc-provider caches client objects by a hash of their metadata, lib/models/client.js `find`).
  const clientAdapter: AdapterLike = {
    async find(id) {
      const m = clients.get(id);
      return m === undefined ? undefined : structuredClone(m);
    },
    async upsert(id, payload) {
      clients.set(id, payload);
    },
    async destroy(id) {
      clients.delete(id);
    },
    async findByUid() {
      return undefined;
    },
    async findByUserCode() {
      return undefined;
    },
    async consume() {},
    async revokeByGrantId() {},
  };
  const memory = createMemoryAdapter();

  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const signingJwk = {
    ...privateKey.export({ format: "jwk" }),
    kid: `test-${randomBytes(4).toString("hex")}`,
    alg: "RS256",
    use: "sig",
  };

  const apiScopes = new Set<string>(NEXAR_API_SCOPES);
  const lifetime = (_ctx: unknown, _token: unknown, client?: { clientId: string }): number =>
    (client && clientLifetimes.get(client.clientId)) ?? accessTokenLifetime;

  const provider = new Provider(issuer, {
    adapter: (model: string): AdapterLike => (model === "Client" ? clientAdapter : memory(model)),
    jwks: { keys: [signingJwk] },
    cookies: { keys: [randomBytes(32).toString("base64url")] },
    routes: ROUTES,
    clientAuthMethods: ["client_secret_post", "client_secret_basic"],
    responseTypes: ["code"],
    scopes: [...OIDC_SCOPES, ...NEXAR_API_SCOPES],
    claims: {
      openid: ["sub"],
      profile: ["name"],
      email: ["email", "email_verified"],
    },
    findAccount: (_ctx: unknown, sub: string) => ({
      accountId: sub,
      claims: () => ({
        sub,
        name: `Test User ${sub}`,
        email: `${sub}@example.test`,
        email_verified: true,
      }),
    }),
    pkce: { required: () => true }, // Nexar's design flow uses PKCE S256 (SPEC.md §1); v9 only supports S256
    rotateRefreshToken: true, // every refresh consumes the old token; reuse → invalid_grant (SPEC.md §1, §6)
    ttl: {
      AccessToken: lifetime,
      ClientCredentials: lifetime,
      AuthorizationCode: 60,
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // No `resource` parameter → the API resource, so a plain POST gets a JWT like at Nexar.
        defaultResource: (_ctx: unknown, _client: unknown, oneOf?: string | string[]) => oneOf ?? API_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx: KoaContextLike, indicator: string) => {
          if (indicator !== API_RESOURCE) throw new errors.InvalidTarget();
          // oidc-provider silently drops unknown scopes; Nexar answers invalid_scope.
          if (ctx.oidc?.route === "token" && ctx.oidc.params?.["grant_type"] === "client_credentials") {
            for (const s of ctx.oidc.requestParamScopes) {
              if (!apiScopes.has(s)) throw new errors.InvalidScope("requested scope is not allowed", s);
            }
          }
          return {
            scope: [...OIDC_SCOPES, ...NEXAR_API_SCOPES].join(" "),
            audience: API_RESOURCE,
            accessTokenFormat: "jwt",
            jwt: { sign: { alg: "RS256" } },
          };
        },
      },
    },
  });

  provider.on("server_error", (_ctx: unknown, err: unknown) => {
    console.error("identity harness: oidc-provider server_error:", err instanceof Error ? err.message : err);
  });

  // Post-processing of token responses: counters, Nexar-like error status, expires_in faults.
  provider.use(async (ctx, next) => {
    await next();
    const state = tokenRequests.get(ctx.req);
    if (state === undefined) return;
    const body = ctx.body;
    if (ctx.status === 401 && invalidClientStatus === 400 && isRecord(body) && body["error"] === "invalid_client") {
      ctx.status = 400;
      ctx.remove("WWW-Authenticate");
    }
    if (ctx.status === 200 && isRecord(body) && typeof body["access_token"] === "string") {
      issued += 1;
      state.record.accessTokenSha256 = tokenSha256(body["access_token"]);
      if (typeof body["refresh_token"] === "string")
        state.record.issuedRefreshTokenSha256 = tokenSha256(body["refresh_token"]);
      rewriteTokenBody(state.fault, body);
    }
    state.record.status = ctx.status;
  });

  // eslint-disable-next-line prefer-const -- declared above so handlers defined earlier can read it
  providerListener = provider.callback();

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", issuer);
    if (req.method === "POST" && url.pathname === ROUTES.token) {
      await handleToken(req, res);
      return;
    }
    if (req.method === "GET" && url.pathname === ROUTES.authorization) {
      // oidc-provider follows OIDC Core §11 and drops `offline_access` unless `prompt` contains `consent`;
      // Nexar (IdentityServer) issues a refresh token without it, so add it.
      const scopes = (url.searchParams.get("scope") ?? "").split(" ");
      const prompts = (url.searchParams.get("prompt") ?? "").split(" ").filter((p) => p !== "");
      if (scopes.includes("offline_access") && !prompts.includes("consent") && !prompts.includes("none")) {
        url.searchParams.set("prompt", [...prompts, "consent"].join(" "));
        req.url = `${url.pathname}${url.search}`;
      }
    }
    if (providerListener === undefined) {
      res.writeHead(503).end();
      return;
    }
    await providerListener(req, res);
  }

  async function handleToken(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const record: TokenRequestRecord = {
      atMs: Date.now(),
      authMethod: "none",
      status: 0,
      faulted: false,
    };
    requests.push(record);

    let body: Buffer;
    try {
      body = await readBody(req, MAX_TOKEN_REQUEST_BYTES);
    } catch {
      record.status = 413;
      res.writeHead(413, {
        "content-type": "application/json",
        connection: "close",
      });
      res.end(
        JSON.stringify({
          error: "invalid_request",
          error_description: "request body too large",
        }),
      );
      return;
    }
    const isForm = (req.headers["content-type"] ?? "").toLowerCase().startsWith("application/x-www-form-urlencoded");
    const form = new URLSearchParams(isForm ? body.toString("utf8") : "");
    const grantType = form.get("grant_type");
    if (grantType !== null) record.grantType = grantType;
    const presented = form.get("refresh_token");
    if (presented !== null) record.refreshTokenSha256 = tokenSha256(presented);
    const clientId = clientIdOf(req.headers.authorization, form);
    if (clientId !== undefined) record.clientId = clientId;
    if (req.headers.authorization?.toLowerCase().startsWith("basic ")) record.authMethod = "client_secret_basic";
    else if (form.has("client_secret")) record.authMethod = "client_secret_post";

    const fault = faults.take(clientId);
    record.faulted = fault !== undefined;

    if (fault?.kind === "reset") {
      req.socket.resetAndDestroy();
      return;
    }
    const synthetic = fault === undefined ? undefined : syntheticResponse(fault);
    if (synthetic !== undefined) {
      record.status = synthetic.status;
      res.writeHead(synthetic.status, {
        ...synthetic.headers,
        "content-length": String(synthetic.body.length),
      });
      res.end(synthetic.body);
      return;
    }
    if (fault?.kind === "delay") {
      const ac = new AbortController();
      pendingDelays.add(ac);
      const onClose = (): void => ac.abort();
      res.once("close", onClose);
      try {
        await sleep(fault.ms, undefined, { signal: ac.signal });
      } catch {
        return; // client went away or server stopping: no response, status stays 0
      } finally {
        pendingDelays.delete(ac);
        res.off("close", onClose);
      }
    }
    if (fault?.kind === "skewDate") res.setHeader("Date", skewedDate(fault, Date.now()));

    tokenRequests.set(req, { record, fault });
    // oidc-provider reads an already-consumed body from `req.body` (lib/shared/selective_body.js, the path used
    // when mounted behind a body parser); it logs a one-time notice about that.
    (req as http.IncomingMessage & { body?: Buffer }).body = body;
    if (providerListener === undefined) {
      res.writeHead(503).end();
      return;
    }
    await providerListener(req, res);
  }

  const jwks = createRemoteJWKSet(new URL(`${issuer}${ROUTES.jwks}`));

  async function completeAuthorization(
    authorizationRequestUrl: string,
    o: AuthorizationDriveOptions = {},
  ): Promise<URL> {
    const accountId = o.accountId ?? "user-1";
    const jar = new Map<string, string>();
    let next = new URL(authorizationRequestUrl);
    for (let step = 0; step < 12; step += 1) {
      if (next.origin !== issuer) return next; // redirect back to the client
      const interaction = /^\/interaction\/([^/]+)$/.exec(next.pathname);
      let res: Response;
      if (interaction === null) {
        res = await fetch(next, {
          redirect: "manual",
          headers: { cookie: cookieHeader(jar) },
        });
      } else if (o.deny) {
        res = await fetch(new URL(`${next.pathname}/abort`, issuer), {
          redirect: "manual",
          headers: { cookie: cookieHeader(jar) },
        });
      } else {
        const page = await fetch(next, {
          headers: { cookie: cookieHeader(jar) },
        });
        storeCookies(jar, page);
        const html = await page.text();
        const prompt = /name="prompt" value="(login|consent)"/.exec(html)?.[1];
        if (prompt === undefined) throw new Error(`unexpected interaction page (HTTP ${page.status})`);
        const form = new URLSearchParams({ prompt });
        if (prompt === "login") {
          form.set("login", accountId);
          form.set("password", "any");
        }
        res = await fetch(next, {
          method: "POST",
          redirect: "manual",
          headers: {
            cookie: cookieHeader(jar),
            "content-type": "application/x-www-form-urlencoded",
          },
          body: form,
        });
      }
      storeCookies(jar, res);
      const location = res.headers.get("location");
      await res.arrayBuffer();
      if (res.status < 300 || res.status >= 400 || location === null) {
        throw new Error(`authorization flow stopped with HTTP ${res.status} at ${next.pathname}`);
      }
      next = new URL(location, next);
    }
    throw new Error("authorization flow did not finish within 12 redirects");
  }

  return {
    issuer,
    tokenUrl: `${issuer}${ROUTES.token}`,
    authorizationUrl: `${issuer}${ROUTES.authorization}`,
    jwksUrl: `${issuer}${ROUTES.jwks}`,
    addClient(c) {
      register(c);
    },
    removeClient(clientId) {
      clients.delete(clientId);
    },
    setAccessTokenLifetime(seconds) {
      assertLifetime(seconds);
      accessTokenLifetime = seconds;
    },
    setFault(f) {
      faults.set(f);
    },
    tokensIssued: () => issued,
    requests,
    reset() {
      issued = 0;
      requests.length = 0;
    },
    async verify(accessToken) {
      const { payload } = await jwtVerify(accessToken, jwks, {
        issuer,
        typ: "at+jwt",
      });
      return payload;
    },
    completeAuthorization,
    async stop() {
      for (const ac of pendingDelays) ac.abort();
      await new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
