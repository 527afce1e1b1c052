/**
 * TokenClient against throwaway node:http servers on 127.0.0.1 (real sockets, real undici).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { TokenClient } from "./client.ts";
import type { TokenClientOptions, TokenResponseInfo } from "./client.ts";
import { TokenEndpointError } from "./errors.ts";
import type { TokenRequest } from "./types.ts";

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function listen(server: Server, handler: Handler): Promise<string> {
  server.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handler(req, Buffer.concat(chunks).toString("utf8"), res));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const { port } = server.address() as AddressInfo;
  return `127.0.0.1:${port}`;
}

async function serve(handler: Handler): Promise<string> {
  return `http://${await listen(createHttpServer(), handler)}/connect/token`;
}

function client(opts: TokenClientOptions = {}): TokenClient {
  const c = new TokenClient({
    connectTimeoutMs: 1000,
    headersTimeoutMs: 1000,
    bodyTimeoutMs: 1000,
    totalTimeoutMs: 3000,
    userAgent: "nexar-token-operator/test",
    env: {},
    ...opts,
  });
  cleanups.push(() => c.close());
  return c;
}

const SECRET = "cl13nt-s3cret";
function tokenRequest(url: string, over: Partial<TokenRequest> = {}): TokenRequest {
  return {
    tokenUrl: url,
    grant: "ClientCredentials",
    clientAuthentication: "ClientSecretPost",
    clientId: "client-1",
    clientSecret: SECRET,
    scopes: ["supply.domain"],
    ...over,
  };
}

const TOKEN_BODY = JSON.stringify({
  access_token: "at-1",
  expires_in: 86400,
  token_type: "Bearer",
  scope: "supply.domain",
});
const ok: Handler = (_req, _body, res) => {
  res.writeHead(200, { "content-type": "application/json" }).end(TOKEN_BODY);
};

async function failure(p: Promise<unknown>): Promise<TokenEndpointError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(TokenEndpointError);
    const err = e as TokenEndpointError;
    expect(err.message).not.toContain(SECRET);
    return err;
  }
  throw new Error("expected fetchToken to fail");
}

describe("TokenClient", () => {
  it("POSTs a form with client_secret_post and parses the token", async () => {
    let seen: {
      method?: string;
      headers?: IncomingMessage["headers"];
      body?: string;
    } = {};
    const url = await serve((req, body, res) => {
      seen = { method: req.method, headers: req.headers, body };
      ok(req, body, res);
    });
    const infos: TokenResponseInfo[] = [];
    const c = client({
      onResponse: (i) => infos.push(i),
      now: () => 1_000_000,
    });
    const t = await c.fetchToken(tokenRequest(url));
    expect(t).toEqual({
      accessToken: "at-1",
      tokenType: "Bearer",
      scopes: ["supply.domain"],
      receivedAtMs: 1_000_000,
      expiresAtMs: 1_000_000 + 86_400_000,
      lifetimeSource: "expires_in",
    });
    expect(seen.method).toBe("POST");
    expect(seen.headers?.["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(seen.headers?.["accept"]).toBe("application/json");
    expect(seen.headers?.["user-agent"]).toBe("nexar-token-operator/test");
    expect(Object.fromEntries(new URLSearchParams(seen.body))).toEqual({
      grant_type: "client_credentials",
      scope: "supply.domain",
      client_id: "client-1",
      client_secret: SECRET,
    });
    expect(infos).toHaveLength(1);
    expect(infos[0]).toMatchObject({ status: 200, outcome: "success" });
    expect(infos[0]?.durationSeconds).toBeGreaterThanOrEqual(0);
  });

  it("sends HTTP Basic credentials for client_secret_basic", async () => {
    let auth: string | undefined;
    let body = "";
    const url = await serve((req, b, res) => {
      auth = req.headers.authorization;
      body = b;
      ok(req, b, res);
    });
    await client().fetchToken(
      tokenRequest(url, {
        clientAuthentication: "ClientSecretBasic",
        clientId: "a:b",
      }),
    );
    expect(Buffer.from((auth ?? "").replace(/^Basic /, ""), "base64").toString()).toBe(`a%3Ab:${SECRET}`);
    expect(body).not.toContain(SECRET);
  });

  it("reuses the connection across requests", async () => {
    const ports: number[] = [];
    const url = await serve((req, b, res) => {
      ports.push(req.socket.remotePort ?? -1);
      ok(req, b, res);
    });
    const c = client();
    await c.fetchToken(tokenRequest(url));
    // undici marks the socket idle a tick after the body ends; a back-to-back request could open a
    // second connection. Token requests are never back-to-back in practice; let the socket settle.
    await sleep(50);
    await c.fetchToken(tokenRequest(url));
    expect(ports).toHaveLength(2);
    expect(ports[1]).toBe(ports[0]);
  });

  it("uses the fallback lifetime for an opaque token without expires_in", async () => {
    const url = await serve((_req, _b, res) => res.writeHead(200).end(JSON.stringify({ access_token: "opaque" })));
    const t = await client({ now: () => 5000 }).fetchToken(tokenRequest(url), {
      fallbackLifetimeSeconds: 60,
    });
    expect(t.expiresAtMs).toBe(65_000);
    expect(t.lifetimeSource).toBe("fallback");
  });

  it.each<[string, number, Record<string, string>, string, string, string]>([
    [
      "invalid_client echoing the secret",
      400,
      { "content-type": "application/json" },
      JSON.stringify({
        error: "invalid_client",
        error_description: `bad secret ${SECRET}`,
      }),
      "credential",
      "InvalidClient",
    ],
    ["401 empty", 401, {}, "", "credential", "AccessDenied"],
    ["429", 429, { "retry-after": "42" }, "", "rateLimited", "RateLimited"],
    ["503 HTML", 503, { "content-type": "text/html" }, "<html>down</html>", "transient", "TokenEndpointUnavailable"],
    [
      "200 HTML",
      200,
      { "content-type": "application/json" },
      "<html>proxy login</html>",
      "transient",
      "InvalidResponse",
    ],
    [
      "302 redirect (not followed)",
      302,
      { location: "http://127.0.0.1:1/elsewhere" },
      "",
      "transient",
      "InvalidResponse",
    ],
  ])("classifies %s", async (_name, status, headers, body, kind, reason) => {
    const url = await serve((_req, _b, res) => res.writeHead(status, headers).end(body));
    const infos: TokenResponseInfo[] = [];
    const err = await failure(client({ onResponse: (i) => infos.push(i) }).fetchToken(tokenRequest(url)));
    expect(err.kind).toBe(kind);
    expect(err.reason).toBe(reason);
    expect(err.httpStatus).toBe(status);
    expect(infos).toEqual([expect.objectContaining({ status, outcome: reason })]);
    if (status === 429) expect(err.retryAfterHeader).toBe("42");
    if (reason === "InvalidClient") expect(err.message).toContain("[REDACTED]");
  });

  it("times out when headers do not arrive", async () => {
    const url = await serve(() => {
      /* never answer */
    });
    const infos: TokenResponseInfo[] = [];
    const err = await failure(
      client({
        headersTimeoutMs: 150,
        onResponse: (i) => infos.push(i),
      }).fetchToken(tokenRequest(url)),
    );
    expect(err.kind).toBe("transient");
    expect(err.reason).toBe("Timeout");
    expect(infos).toEqual([expect.objectContaining({ outcome: "Timeout" })]);
    expect(infos[0]).not.toHaveProperty("status");
  });

  it("enforces the total deadline on a body that trickles in", async () => {
    const url = await serve((_req, _b, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"access_token":"x",');
      const timer = setInterval(() => res.write(" "), 30);
      res.on("close", () => clearInterval(timer));
    });
    const err = await failure(client({ bodyTimeoutMs: 1000, totalTimeoutMs: 250 }).fetchToken(tokenRequest(url)));
    expect(err.reason).toBe("Timeout");
    expect(err.kind).toBe("transient");
  });

  it("reports a connection reset", async () => {
    const url = await serve((req) => req.socket.destroy());
    const err = await failure(client().fetchToken(tokenRequest(url)));
    expect(err.kind).toBe("transient");
    expect(err.reason).toBe("ConnectionFailed");
  });

  it("reports a refused connection", async () => {
    const probe = createHttpServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((r) => probe.close(() => r()));
    const err = await failure(client().fetchToken(tokenRequest(`http://127.0.0.1:${port}/token`)));
    expect(err.reason).toBe("ConnectionFailed");
    expect(err.message).toContain("ECONNREFUSED");
  });

  it("aborts a streamed body beyond maxBodyBytes, and the client keeps working", async () => {
    let calls = 0;
    const url = await serve((req, b, res) => {
      calls++;
      if (calls > 1) return ok(req, b, res);
      res.writeHead(200, { "content-type": "application/json" }); // chunked, no content-length
      const chunk = "x".repeat(16 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < 2 * 1024 * 1024 && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end();
      };
      pump();
    });
    const c = client({ maxBodyBytes: 64 * 1024 });
    const err = await failure(c.fetchToken(tokenRequest(url)));
    expect(err.kind).toBe("transient");
    expect(err.reason).toBe("ResponseTooLarge");
    expect(err.httpStatus).toBe(200);
    await expect(c.fetchToken(tokenRequest(url))).resolves.toMatchObject({
      accessToken: "at-1",
    });
  });

  it("rejects a declared Content-Length beyond maxBodyBytes without reading it", async () => {
    const url = await serve((_req, _b, res) => {
      res.writeHead(400, { "content-length": String(10_000) });
      res.write("{");
      // Never finishes the body: the client must not wait for it.
    });
    const err = await failure(client({ maxBodyBytes: 1000, bodyTimeoutMs: 5000 }).fetchToken(tokenRequest(url)));
    expect(err.reason).toBe("ResponseTooLarge");
  });

  it("fails a RefreshToken grant without a refresh token before any network I/O", async () => {
    let hit = false;
    const url = await serve((req, b, res) => {
      hit = true;
      ok(req, b, res);
    });
    const err = await failure(client().fetchToken(tokenRequest(url, { grant: "RefreshToken" })));
    expect(err.kind).toBe("credential");
    expect(err.reason).toBe("InvalidGrant");
    expect(hit).toBe(false);
  });

  it("returns a rotated refresh token", async () => {
    let form: Record<string, string> = {};
    const url = await serve((_req, b, res) => {
      form = Object.fromEntries(new URLSearchParams(b));
      res.writeHead(200).end(
        JSON.stringify({
          access_token: "at",
          expires_in: 60,
          refresh_token: "rt-2",
        }),
      );
    });
    const t = await client().fetchToken(tokenRequest(url, { grant: "RefreshToken", refreshToken: "rt-1" }));
    expect(form).toMatchObject({
      grant_type: "refresh_token",
      refresh_token: "rt-1",
    });
    expect(t.refreshToken).toBe("rt-2");
  });

  it("goes through HTTP_PROXY, and bypasses it for NO_PROXY hosts", async () => {
    const proxied: string[] = [];
    const proxyHost = await listen(createHttpServer(), (req, b, res) => {
      proxied.push(req.url ?? ""); // absolute-form request target, as sent to a forward proxy
      ok(req, b, res);
    });
    const direct = await serve(ok);
    const viaProxy = client({ env: { HTTP_PROXY: `http://${proxyHost}` } });
    await viaProxy.fetchToken(tokenRequest("http://identity.example.invalid/connect/token"));
    expect(proxied).toEqual(["http://identity.example.invalid/connect/token"]);

    const bypass = client({
      env: { http_proxy: `http://${proxyHost}`, no_proxy: "127.0.0.1" },
    });
    await bypass.fetchToken(tokenRequest(direct));
    expect(proxied).toHaveLength(1);
  });
});

function opensslAvailable(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!opensslAvailable())("TokenClient with an extra CA bundle", () => {
  it("trusts a server certificate only when caFile is given", async () => {
    const dir = mkdtempSync(join(tmpdir(), "oauth-ca-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    const host = await listen(createHttpsServer({ key: readFileSync(key), cert: readFileSync(cert) }), ok);
    const url = `https://${host}/connect/token`;

    const untrusted = await failure(client().fetchToken(tokenRequest(url)));
    expect(untrusted.reason).toBe("ConnectionFailed");
    expect(untrusted.kind).toBe("transient");

    await expect(client({ caFile: cert }).fetchToken(tokenRequest(url))).resolves.toMatchObject({
      accessToken: "at-1",
    });
  });
});
