/**
 * `nexar-token-operator login`: a user's one-time consent for Nexar's design scope (SPEC §1, §6).
 *
 * Runs the OAuth 2.0 authorization code grant (RFC 6749 §4.1) with PKCE S256 (RFC 7636, a fresh
 * verifier per run) and a `state` check (RFC 6749 §10.12) for a native app with a loopback
 * redirect listener (RFC 8252 §7.3, default `http://localhost:3000/login` as in Nexar's examples),
 * authenticating with the client secret in the form body as Nexar's examples do. The refresh
 * token it gets (scope `offline_access`) goes into the credentials Secret a `NexarToken` with
 * `grant: RefreshToken` references, or to stdout with `--print`.
 *
 * The protocol messages are openid-client's (a certified, well-kept OAuth/OIDC client); this file
 * is the command line, the redirect listener and the Secret write.
 */
import { spawn } from "node:child_process";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { Option } from "commander";
import type { Command } from "commander";
import * as oidc from "openid-client";
import { DEFAULT_TOKEN_URL } from "../api/constants.ts";
import { fetch as undiciFetch, type Dispatcher } from "undici";
import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { secretPath } from "../kube/paths.ts";
import { proxyAwareDispatcher, type ProxyEnvironment } from "../http/proxy.ts";
import { tokenEndpointTls } from "../oauth/client.ts";
import { ANNOTATION_LOGIN_AT, ANNOTATION_REFRESH_ROTATION } from "../controller/credentials.ts";
import {
  CliError,
  EXIT_OK,
  connectKube,
  describeError,
  durationFlagMs,
  newVerb,
  runAction,
  usageError,
  withKubeOptions,
  type KubeFlags,
} from "./status.ts";

/** Nexar's authorization endpoint (SPEC §1). */
export const DEFAULT_AUTHORIZATION_URL = "https://identity.nexar.com/connect/authorize";
/** Redirect URL of Nexar's examples; it must be registered for the app in the Nexar portal (SPEC §6). */
export const DEFAULT_REDIRECT_URL = "http://localhost:3000/login";
/** Scopes of Nexar's design flow plus `offline_access` for a refresh token (SPEC §1). */
export const DEFAULT_LOGIN_SCOPES = "openid profile email design.domain user.access offline_access";
/** Default name of the credentials Secret `login` writes. */
export const DEFAULT_CREDENTIALS_SECRET = "nexar-credentials";

/** Options of `login` as commander parses them (flags and environment). */
export interface LoginOptions extends KubeFlags {
  clientId?: string;
  clientSecret?: string;
  redirectUrl: string;
  scopes: string;
  authorizationUrl: string;
  tokenUrl: string;
  allowInsecureTokenUrl: boolean;
  /** Extra CA bundle (PEM) trusted for the token endpoint, besides Node's roots. */
  caFile?: string;
  secret: string;
  clientIdKey: string;
  clientSecretKey: string;
  refreshTokenKey: string;
  print: boolean;
  /** false with `--no-browser`. */
  browser: boolean;
  /** Go duration, e.g. `5m`. */
  timeout: string;
}

/** Validated, parsed login settings. */
export interface LoginPlan {
  clientId: string;
  clientSecret: string;
  redirect: URL;
  authorization: URL;
  token: URL;
  /** Issuer expected in the ID token: the origin of the authorization URL (Nexar: `https://identity.nexar.com`). */
  issuer: string;
  scopes: string[];
  timeoutMs: number;
}

/** RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
/** Secret data keys (Kubernetes: `[-._a-zA-Z0-9]+`, at most 253 characters). */
const DATA_KEY = /^[-._a-zA-Z0-9]{1,253}$/;
const LOOPBACK_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * Scopes from a space- or comma-separated list, without duplicates, in order.
 * @throws CliError (usage) on an empty list or a character RFC 6749 §3.3 forbids.
 */
export function parseScopes(list: string): string[] {
  const scopes = [...new Set(list.split(/[\s,]+/).filter(Boolean))];
  if (scopes.length === 0) throw usageError("--scopes is empty");
  for (const s of scopes)
    if (!SCOPE_TOKEN.test(s)) throw usageError(`invalid scope ${JSON.stringify(s)} (RFC 6749 §3.3)`);
  return scopes;
}

function parseUrl(flag: string, value: string): URL {
  try {
    return new URL(value);
  } catch {
    throw usageError(`${flag} is not an absolute URL: ${JSON.stringify(value)}`);
  }
}

/**
 * Checks and parses `login` options. Pure.
 * - client id and secret are required (flags or `NEXAR_CLIENT_ID` / `NEXAR_CLIENT_SECRET`);
 * - the redirect URL must be `http://` on a loopback host (`localhost`, `127.0.0.1`, `[::1]`) with
 *   a path — the only kind a local listener can receive (RFC 8252 §7.3);
 * - authorization and token URLs must be `https://`, or `http://` with `--allow-insecure-token-url`;
 * - `--timeout` is a positive Go duration; data keys are valid Secret keys.
 * @throws CliError with exit code 2 naming the flag (never a secret value).
 */
export function planLogin(o: LoginOptions): LoginPlan {
  const clientId = o.clientId?.trim();
  const clientSecret = o.clientSecret?.trim();
  if (!clientId) throw usageError("a client id is required: --client-id or NEXAR_CLIENT_ID");
  if (!clientSecret) throw usageError("a client secret is required: --client-secret or NEXAR_CLIENT_SECRET");
  const redirect = parseUrl("--redirect-url", o.redirectUrl);
  if (redirect.protocol !== "http:" || !LOOPBACK_HOSTS.has(redirect.hostname)) {
    throw usageError(
      "--redirect-url must be http:// on localhost, 127.0.0.1 or [::1] (a local listener receives the redirect)",
    );
  }
  if (redirect.search || redirect.hash) throw usageError("--redirect-url must not have a query or fragment");
  const authorization = parseUrl("--authorization-url", o.authorizationUrl);
  const token = parseUrl("--token-url", o.tokenUrl);
  for (const [flag, u] of [
    ["--authorization-url", authorization],
    ["--token-url", token],
  ] as const) {
    if (u.protocol === "https:") continue;
    if (u.protocol === "http:" && o.allowInsecureTokenUrl) continue;
    throw usageError(`${flag} must be https:// (--allow-insecure-token-url allows http:// for local testing)`);
  }
  const timeoutMs = durationFlagMs("--timeout", o.timeout);
  if (!(timeoutMs > 0)) throw usageError("--timeout must be positive");
  for (const [flag, key] of [
    ["--client-id-key", o.clientIdKey],
    ["--client-secret-key", o.clientSecretKey],
    ["--refresh-token-key", o.refreshTokenKey],
  ] as const) {
    if (!DATA_KEY.test(key)) throw usageError(`${flag} is not a valid Secret data key`);
  }
  if (new Set([o.clientIdKey, o.clientSecretKey, o.refreshTokenKey]).size !== 3) {
    throw usageError("--client-id-key, --client-secret-key and --refresh-token-key must differ");
  }
  return {
    clientId,
    clientSecret,
    redirect,
    authorization,
    token,
    issuer: authorization.origin,
    scopes: parseScopes(o.scopes),
    timeoutMs,
  };
}

/** What arrived on the redirect listener. */
export type CallbackOutcome =
  | { ok: true; url: URL }
  | { ok: false; message: string; /** HTTP status to answer the browser with. */ status: number };

/**
 * Judges an authorization response (RFC 6749 §4.1.2) received at the redirect URL. Pure.
 * `error=access_denied` → denied consent; another `error` → that error; a missing or different
 * `state` → mismatch (possible CSRF, RFC 6749 §10.12); no `code` → malformed. Messages carry the
 * OAuth error code and description only (never the code or state value).
 */
export function judgeCallback(url: URL, expectedState: string): CallbackOutcome {
  const p = url.searchParams;
  const error = p.get("error");
  if (error !== null) {
    const description = (p.get("error_description") ?? "").replace(/[^\x20-\x7E]/g, "").slice(0, 200);
    if (error === "access_denied") {
      return {
        ok: false,
        status: 200,
        message: `consent was denied (error=access_denied${description ? `: ${description}` : ""}); nothing was stored`,
      };
    }
    const safe = /^[\x20-\x21\x23-\x5B\x5D-\x7E]{1,64}$/.test(error) ? error : "invalid";
    return {
      ok: false,
      status: 200,
      message: `the authorization server returned error=${safe}${description ? ` (${description})` : ""}`,
    };
  }
  // openid-client checks the state again when it redeems the code (`expectedState`); judging it
  // here too lets the browser page and the terminal say what went wrong.
  if (p.get("state") !== expectedState) {
    return {
      ok: false,
      status: 400,
      message:
        "state mismatch: the redirect does not belong to this login (a stale browser tab or a forged request); run login again",
    };
  }
  if (!p.get("code")) return { ok: false, status: 400, message: "the redirect carried neither a code nor an error" };
  return { ok: true, url };
}

/** Hosts to listen on for a redirect host: both loopback families for `localhost`. */
function listenHosts(redirect: URL): string[] {
  if (redirect.hostname === "localhost") return ["127.0.0.1", "::1"];
  if (redirect.hostname === "[::1]") return ["::1"];
  return ["127.0.0.1"];
}

function page(title: string, body: string): string {
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title></head><body><h1>${esc(title)}</h1><p>${esc(body)}</p></body></html>`;
}

/** The redirect listener: resolves with the first authorization response for the redirect path. */
interface RedirectListener {
  /** Resolves with the callback URL (code, state) or rejects with a CliError (denied, mismatch). */
  result: Promise<URL>;
  close(): Promise<void>;
}

/**
 * Listens on the redirect URL's port on loopback (both families for `localhost`; IPv6 best effort).
 * @throws CliError when the port is in use or cannot be bound.
 */
async function listenForRedirect(plan: LoginPlan, state: string): Promise<RedirectListener> {
  const port = Number(plan.redirect.port || 80);
  const servers: Server[] = [];
  let settle: { resolve: (u: URL) => void; reject: (e: Error) => void } | undefined;
  const result = new Promise<URL>((resolve, reject) => (settle = { resolve, reject }));
  let done = false;
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? "/", plan.redirect);
    if (req.method !== "GET" || url.pathname !== plan.redirect.pathname) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    if (done) {
      res.writeHead(409, { "content-type": "text/html" }).end(page("Already handled", "This login has finished."));
      return;
    }
    done = true;
    const callback = new URL(plan.redirect.href);
    callback.search = url.search;
    const outcome = judgeCallback(callback, state);
    if (outcome.ok) {
      res
        .writeHead(200, { "content-type": "text/html", connection: "close" })
        .end(page("Nexar login received", "You can close this window and return to the terminal."));
      settle?.resolve(outcome.url);
    } else {
      res
        .writeHead(outcome.status, { "content-type": "text/html", connection: "close" })
        .end(page("Nexar login failed", outcome.message));
      settle?.reject(new CliError(outcome.message));
    }
  };
  const hosts = listenHosts(plan.redirect);
  for (const [i, host] of hosts.entries()) {
    const server = createServer(handler);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      servers.push(server);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const optional = i > 0 && (code === "EADDRNOTAVAIL" || code === "EAFNOSUPPORT");
      if (optional) continue;
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
      if (code === "EADDRINUSE") {
        throw new CliError(
          `port ${port} on ${host} is already in use, so the redirect to ${plan.redirect.href} cannot be received; ` +
            "stop what listens there, or register another redirect URL for the app and pass it with --redirect-url",
        );
      }
      throw new CliError(`cannot listen on ${host}:${port} for the redirect: ${describeError(err)}`);
    }
  }
  return {
    result,
    async close() {
      for (const s of servers) s.closeAllConnections();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/**
 * Opens `url` in the desktop browser when one is plausibly there (macOS, Windows, or a Linux
 * session with `DISPLAY`/`WAYLAND_DISPLAY`); never fails — the URL is printed anyway.
 * @returns whether an opener was started.
 */
export function openBrowser(url: string, env: NodeJS.ProcessEnv = process.env, platform = process.platform): boolean {
  let cmd: string;
  let args: string[];
  if (platform === "darwin") [cmd, args] = ["open", [url]];
  else if (platform === "win32") [cmd, args] = ["rundll32", ["url.dll,FileProtocolHandler", url]];
  else if (env.DISPLAY || env.WAYLAND_DISPLAY) [cmd, args] = ["xdg-open", [url]];
  else return false;
  try {
    const child = spawn(cmd, args, { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    child.unref();
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates the credentials Secret with the three keys, or updates only those keys of an existing
 * one (JSON merge patch), setting {@link ANNOTATION_LOGIN_AT} and removing the operator's
 * rotation annotation (the new refresh token starts a new lineage; the operator picks it up at once).
 * @returns `"created"` or `"updated"`.
 * @throws KubeApiError on API errors (messages hold no Secret data).
 */
export async function storeCredentials(
  kube: KubeClient,
  namespace: string,
  name: string,
  values: Record<string, string>,
  now: Date = new Date(),
): Promise<"created" | "updated"> {
  const data = Object.fromEntries(
    Object.entries(values).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")]),
  );
  const loginAt = now.toISOString().replace(/\.\d{3}Z$/, "Z");
  const existing = await kube.getOrUndefined<Secret>(secretPath(namespace, name));
  if (!existing) {
    try {
      await kube.request("POST", secretPath(namespace), {
        body: {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name, namespace, annotations: { [ANNOTATION_LOGIN_AT]: loginAt } },
          type: "Opaque",
          data,
        },
      });
      return "created";
    } catch (err) {
      if (!(err instanceof KubeApiError) || err.status !== 409) throw err;
    }
  }
  await kube.request("PATCH", secretPath(namespace, name), {
    body: {
      metadata: { annotations: { [ANNOTATION_LOGIN_AT]: loginAt, [ANNOTATION_REFRESH_ROTATION]: null } },
      data,
    },
    contentType: "application/merge-patch+json",
  });
  return "updated";
}

/** Where `login` writes progress and results (stderr for people, stdout only for `--print`). */
export interface LoginIO {
  out: (s: string) => void;
  err: (s: string) => void;
}

/** The HTTP client of `login`'s OAuth requests. */
export interface OAuthHttp {
  /** undici's fetch through the dispatcher, as openid-client's `customFetch`. */
  fetch: oidc.CustomFetch;
  close(): Promise<void>;
}

/**
 * The HTTP client of `login`'s requests to the token endpoint: undici through the same kind of
 * dispatcher the operator's `TokenClient` uses — Node's roots plus `caFile` (`--ca-file`), and
 * `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` from `env` (`src/http/proxy.ts`).
 * @throws CliError when `caFile` cannot be read.
 */
export function oauthHttp(caFile: string | undefined, env?: ProxyEnvironment): OAuthHttp {
  let dispatcher: Dispatcher;
  try {
    dispatcher = proxyAwareDispatcher({ agent: { allowH2: true }, tls: tokenEndpointTls(caFile), env });
  } catch (err) {
    throw new CliError(`--ca-file ${caFile ?? ""} cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  return {
    fetch: (url, options) =>
      undiciFetch(url, { ...options, dispatcher } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>,
    close: () => dispatcher.close(),
  };
}

/**
 * Runs the whole login. Resolves to the exit code.
 * @throws CliError: usage (2) for bad options; failure (1) for a port in use, denied consent, a
 *   state mismatch, a timeout, a token endpoint error, no refresh token, or a Secret write error.
 */
export async function login(
  o: LoginOptions,
  io: LoginIO = { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) },
): Promise<number> {
  const plan = planLogin(o);
  const http = oauthHttp(o.caFile);
  const k = o.print
    ? undefined
    : await connectKube(o).catch(async (err: unknown) => {
        await http.close();
        throw err;
      });
  try {
    if (k) {
      // Fail before the user consents when the Secret cannot be read (RBAC, wrong cluster).
      await k.kube.getOrUndefined<Secret>(secretPath(k.namespace, o.secret)).catch((err: unknown) => {
        throw new CliError(`cannot read Secret ${k.namespace}/${o.secret}: ${describeError(err)}`);
      });
    }
    const config = new oidc.Configuration(
      {
        issuer: plan.issuer,
        authorization_endpoint: plan.authorization.href,
        token_endpoint: plan.token.href,
      },
      plan.clientId,
      { client_secret: plan.clientSecret },
      oidc.ClientSecretPost(plan.clientSecret),
    );
    if (o.allowInsecureTokenUrl) oidc.allowInsecureRequests(config);
    config.timeout = 30;
    config[oidc.customFetch] = http.fetch;

    const codeVerifier = oidc.randomPKCECodeVerifier();
    const codeChallenge = await oidc.calculatePKCECodeChallenge(codeVerifier);
    const state = oidc.randomState();
    const listener = await listenForRedirect(plan, state);
    let timer: NodeJS.Timeout | undefined;
    let callback: URL;
    try {
      const authUrl = oidc.buildAuthorizationUrl(config, {
        redirect_uri: plan.redirect.href,
        scope: plan.scopes.join(" "),
        code_challenge: codeChallenge,
        code_challenge_method: "S256",
        state,
      });
      io.err(`Open this URL in a browser, sign in to Nexar and approve access:\n\n  ${authUrl.href}\n\n`);
      if (o.browser && openBrowser(authUrl.href)) io.err("(A browser window was opened.)\n");
      io.err(`Waiting for the redirect to ${plan.redirect.href} (timeout ${o.timeout}) ...\n`);
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new CliError(
                `timed out after ${o.timeout} waiting for the redirect to ${plan.redirect.href}; ` +
                  "open the URL above and finish signing in, or raise --timeout",
              ),
            ),
          plan.timeoutMs,
        );
      });
      callback = await Promise.race([listener.result, timeout]);
    } finally {
      clearTimeout(timer);
      await listener.close();
    }

    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: codeVerifier,
        expectedState: state,
      });
    } catch (err) {
      throw new CliError(`exchanging the authorization code failed: ${oauthErrorMessage(err)}`);
    }
    const refreshToken = tokens.refresh_token;
    if (!refreshToken) {
      throw new CliError(
        "the token response carried no refresh token: include offline_access in --scopes and check that the app may use refresh tokens",
      );
    }
    if (o.print) {
      io.out(`${refreshToken}\n`);
      io.err("Login succeeded; the refresh token was printed to stdout and not stored anywhere.\n");
      return EXIT_OK;
    }
    const ctx = k as NonNullable<typeof k>;
    const action = await storeCredentials(ctx.kube, ctx.namespace, o.secret, {
      [o.clientIdKey]: plan.clientId,
      [o.clientSecretKey]: plan.clientSecret,
      [o.refreshTokenKey]: refreshToken,
    }).catch((err: unknown) => {
      throw new CliError(
        `storing the credentials in Secret ${ctx.namespace}/${o.secret} failed: ${describeError(err)}`,
      );
    });
    io.err(
      `Login succeeded; Secret ${ctx.namespace}/${o.secret} ${action} with keys ` +
        `${o.clientIdKey}, ${o.clientSecretKey}, ${o.refreshTokenKey}.\n` +
        `Reference it from a NexarToken with grant: RefreshToken (credentialsSecretRef.name: ${o.secret}).\n`,
    );
    return EXIT_OK;
  } finally {
    await k?.kube.close();
    await http.close();
  }
}

/** A secret-free message for an openid-client error (OAuth `error` code and description only). */
export function oauthErrorMessage(err: unknown): string {
  if (err instanceof oidc.ResponseBodyError || err instanceof oidc.AuthorizationResponseError) {
    const d = (err.error_description ?? "").replace(/[^\x20-\x7E]/g, "").slice(0, 200);
    return `error=${err.error}${d ? ` (${d})` : ""}`;
  }
  return describeError(err);
}

/** The `login` verb. */
export function loginCommand(): Command {
  return withKubeOptions(
    newVerb(
      "login",
      "Sign in to Nexar once (authorization code + PKCE) and store the refresh token for grant: RefreshToken.",
    ),
    'namespace of the credentials Secret (default: the kubeconfig context\'s, else "default")',
  )
    .addOption(new Option("--client-id <id>", "Nexar app client id").env("NEXAR_CLIENT_ID"))
    .addOption(
      new Option("--client-secret <secret>", "Nexar app client secret (prefer the environment variable)").env(
        "NEXAR_CLIENT_SECRET",
      ),
    )
    .addOption(
      new Option("--secret <name>", "credentials Secret to create or update").default(DEFAULT_CREDENTIALS_SECRET),
    )
    .addOption(
      new Option("--redirect-url <url>", "redirect URL registered for the app; a local listener receives it").default(
        DEFAULT_REDIRECT_URL,
      ),
    )
    .addOption(new Option("--scopes <list>", "space- or comma-separated scopes").default(DEFAULT_LOGIN_SCOPES))
    .addOption(new Option("--authorization-url <url>", "authorization endpoint").default(DEFAULT_AUTHORIZATION_URL))
    .addOption(new Option("--token-url <url>", "token endpoint").default(DEFAULT_TOKEN_URL))
    .addOption(
      new Option(
        "--allow-insecure-token-url",
        "DEVELOPMENT ONLY: accept http:// endpoints (a loopback test server)",
      ).default(false),
    )
    .addOption(
      new Option("--ca-file <path>", "extra CA bundle (PEM) trusted for the token endpoint").env(
        "NEXAR_OPERATOR_CA_FILE",
      ),
    )
    .addOption(new Option("--print", "print the refresh token to stdout instead of writing a Secret").default(false))
    .addOption(new Option("--no-browser", "do not try to open a browser; just print the URL"))
    .addOption(new Option("--timeout <duration>", "how long to wait for the redirect (Go duration)").default("5m"))
    .addOption(new Option("--client-id-key <key>", "Secret key for the client id").default("clientId"))
    .addOption(new Option("--client-secret-key <key>", "Secret key for the client secret").default("clientSecret"))
    .addOption(new Option("--refresh-token-key <key>", "Secret key for the refresh token").default("refreshToken"))
    .addHelpText(
      "after",
      "\nThe redirect URL must be registered for the app in the Nexar portal. The client secret is never printed." +
        "\nExit codes: 0 stored (or printed), 1 failure (denied consent, state mismatch, port in use, timeout," +
        "\ntoken or API error), 2 usage error.",
    )
    .action(async (opts: LoginOptions) => runAction(() => login(opts)));
}
