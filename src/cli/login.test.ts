import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createHttpServer, request as httpRequest, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it, expect } from "vitest";
import { selfSigned } from "../../test/harness/self-signed.ts";
import { CliError, EXIT_USAGE } from "./status.ts";
import {
  DEFAULT_AUTHORIZATION_URL,
  DEFAULT_LOGIN_SCOPES,
  DEFAULT_REDIRECT_URL,
  judgeCallback,
  oauthHttp,
  openBrowser,
  parseScopes,
  planLogin,
  type LoginOptions,
} from "./login.ts";

const base: LoginOptions = {
  clientId: "app",
  clientSecret: "s3cret-value",
  redirectUrl: DEFAULT_REDIRECT_URL,
  scopes: DEFAULT_LOGIN_SCOPES,
  authorizationUrl: DEFAULT_AUTHORIZATION_URL,
  tokenUrl: "https://identity.nexar.com/connect/token",
  allowInsecureTokenUrl: false,
  secret: "nexar-credentials",
  clientIdKey: "clientId",
  clientSecretKey: "clientSecret",
  refreshTokenKey: "refreshToken",
  print: false,
  browser: true,
  timeout: "5m",
};

function usage(fn: () => unknown): CliError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(EXIT_USAGE);
    expect((err as CliError).message).not.toContain("s3cret-value");
    return err as CliError;
  }
  throw new Error("expected a usage error");
}

describe("planLogin", () => {
  it("accepts Nexar's defaults: issuer from the authorization URL, scopes with offline_access", () => {
    const plan = planLogin(base);
    expect(plan.issuer).toBe("https://identity.nexar.com");
    expect(plan.redirect.href).toBe("http://localhost:3000/login");
    expect(plan.scopes).toEqual(["openid", "profile", "email", "design.domain", "user.access", "offline_access"]);
    expect(plan.timeoutMs).toBe(300_000);
  });

  it("requires client id and secret, naming the variable but never the value", () => {
    expect(usage(() => planLogin({ ...base, clientId: undefined })).message).toContain("NEXAR_CLIENT_ID");
    expect(usage(() => planLogin({ ...base, clientSecret: "  " })).message).toContain("NEXAR_CLIENT_SECRET");
  });

  it("only takes a loopback http redirect URL", () => {
    usage(() => planLogin({ ...base, redirectUrl: "https://localhost:3000/login" }));
    usage(() => planLogin({ ...base, redirectUrl: "http://example.com:3000/login" }));
    usage(() => planLogin({ ...base, redirectUrl: "http://localhost:3000/login?x=1" }));
    usage(() => planLogin({ ...base, redirectUrl: "not a url" }));
    expect(planLogin({ ...base, redirectUrl: "http://127.0.0.1:8765/cb" }).redirect.port).toBe("8765");
    expect(planLogin({ ...base, redirectUrl: "http://[::1]:8765/cb" }).redirect.hostname).toBe("[::1]");
  });

  it("wants https endpoints unless --allow-insecure-token-url", () => {
    usage(() => planLogin({ ...base, tokenUrl: "http://127.0.0.1:9/connect/token" }));
    usage(() => planLogin({ ...base, authorizationUrl: "http://127.0.0.1:9/connect/authorize" }));
    const insecure = planLogin({
      ...base,
      allowInsecureTokenUrl: true,
      authorizationUrl: "http://127.0.0.1:9/connect/authorize",
      tokenUrl: "http://127.0.0.1:9/connect/token",
    });
    expect(insecure.issuer).toBe("http://127.0.0.1:9");
  });

  it("checks timeout and Secret keys", () => {
    usage(() => planLogin({ ...base, timeout: "soon" }));
    usage(() => planLogin({ ...base, timeout: "0s" }));
    usage(() => planLogin({ ...base, refreshTokenKey: "bad key" }));
    usage(() => planLogin({ ...base, refreshTokenKey: "clientId" }));
  });
});

describe("parseScopes", () => {
  it("splits on spaces and commas, drops duplicates, rejects RFC 6749 §3.3 violations", () => {
    expect(parseScopes("a b,c  a")).toEqual(["a", "b", "c"]);
    usage(() => parseScopes(" , "));
    usage(() => parseScopes('bad"scope'));
  });
});

describe("judgeCallback", () => {
  const state = "expected-state-0123456789";
  const at = (q: string) => new URL(`http://localhost:3000/login?${q}`);

  it("accepts a code with the expected state", () => {
    expect(judgeCallback(at(`code=abc&state=${state}`), state)).toMatchObject({ ok: true });
  });

  it("reports denied consent, other errors, a state mismatch and a missing code", () => {
    const denied = judgeCallback(at(`error=access_denied&error_description=End-User+aborted&state=${state}`), state);
    expect(denied).toMatchObject({ ok: false });
    expect(!denied.ok && denied.message).toContain("consent was denied (error=access_denied: End-User aborted)");
    const other = judgeCallback(at(`error=invalid_scope&state=${state}`), state);
    expect(!other.ok && other.message).toContain("error=invalid_scope");
    const mismatch = judgeCallback(at("code=abc&state=other"), state);
    expect(!mismatch.ok && mismatch.message).toContain("state mismatch");
    expect(!mismatch.ok && mismatch.status).toBe(400);
    const noState = judgeCallback(at("code=abc"), state);
    expect(!noState.ok && noState.message).toContain("state mismatch");
    const noCode = judgeCallback(at(`state=${state}`), state);
    expect(!noCode.ok && noCode.message).toContain("neither a code nor an error");
  });

  it("never echoes the code or the state", () => {
    const r = judgeCallback(at("code=the-code-value&state=attacker-state"), state);
    expect(!r.ok && r.message).not.toContain("attacker-state");
    expect(!r.ok && r.message).not.toContain("the-code-value");
  });
});

describe("openBrowser", () => {
  it("does not try on a Linux machine without a display", () => {
    expect(openBrowser("https://example.test", {}, "linux")).toBe(false);
  });
});

describe("oauthHttp (login's token requests)", () => {
  const dir = mkdtempSync(join(tmpdir(), "login-http-"));
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    rmSync(dir, { recursive: true, force: true });
  });
  async function listen(s: Server): Promise<number> {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
    return (s.address() as AddressInfo).port;
  }

  it("trusts --ca-file besides Node's roots, and nothing else", async () => {
    const tls = selfSigned(dir, "idp");
    const port = await listen(createHttpsServer({ key: tls.key, cert: tls.cert }, (_req, res) => res.end("ok")));
    const trusted = oauthHttp(tls.certPath, {});
    const res = await trusted.fetch(`https://127.0.0.1:${port}/connect/token`, {
      method: "POST",
      body: "x",
      headers: {},
      redirect: "manual",
    });
    expect(await res.text()).toBe("ok");
    await trusted.close();
    const plain = oauthHttp(undefined, {});
    await expect(
      plain.fetch(`https://127.0.0.1:${port}/`, { method: "GET", body: undefined, headers: {}, redirect: "manual" }),
    ).rejects.toThrow();
    await plain.close();
    expect(() => oauthHttp(join(dir, "absent.pem"))).toThrow("--ca-file");
  });

  it("goes through HTTP_PROXY unless NO_PROXY names the host", async () => {
    const origin = await listen(createHttpServer((_req, res) => res.end("origin")));
    const proxied: string[] = [];
    const proxy = await listen(
      createHttpServer((req, res) => {
        proxied.push(req.url ?? "");
        const up = httpRequest(req.url ?? "", { method: req.method, headers: req.headers }, (r) => r.pipe(res));
        req.pipe(up);
      }),
    );
    const url = `http://127.0.0.1:${origin}/connect/token`;
    const via = oauthHttp(undefined, { HTTP_PROXY: `http://127.0.0.1:${proxy}` });
    expect(await (await via.fetch(url, { method: "POST", body: "x", headers: {}, redirect: "manual" })).text()).toBe(
      "origin",
    );
    await via.close();
    const direct = oauthHttp(undefined, { HTTP_PROXY: `http://127.0.0.1:${proxy}`, NO_PROXY: "127.0.0.1" });
    await (await direct.fetch(url, { method: "POST", body: "x", headers: {}, redirect: "manual" })).text();
    await direct.close();
    expect(proxied).toEqual([url]);
  });
});
