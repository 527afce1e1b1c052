/**
 * KubeClient against real loopback servers: HTTP/2 multiplexing, a new connection after GOAWAY,
 * HTTP/1.1 when the server does not offer HTTP/2, the PING health check on a dead peer and on a
 * quiet watch, deadlines, watch-stream framing, and credentials from client-node's KubeConfig
 * (one exec-plugin run for concurrent requests, renewal ahead of the expiry and after a 401, new
 * connections for a new client certificate, impersonation headers).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import http2 from "node:http2";
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import type { TLSSocket } from "node:tls";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { stringify } from "yaml";
import {
  CREDENTIAL_RENEW_MARGIN_MS,
  credentialRenewTime,
  isNamespaceTerminating,
  KubeApiError,
  KubeClient,
  type KubeClientOptions,
  type WatchEvent,
} from "./client.ts";
import { loadKubeConfig } from "./config.ts";
import { selfSigned as selfSignedIn } from "../../test/harness/self-signed.ts";

let dir: string;
let key: Buffer;
let cert: Buffer;
const cleanups: (() => unknown)[] = [];

const selfSigned = (name: string, cn: string) => selfSignedIn(dir, name, cn);

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kube-client-test-"));
  ({ cert, key } = selfSigned("server", "127.0.0.1"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Writes a kubeconfig for `server` trusting the test certificate; `user` defaults to a bearer token. */
function kubeconfigFile(server: string, user: Record<string, unknown> = { token: "test-token" }): string {
  const path = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  writeFileSync(
    path,
    stringify({
      "current-context": "t",
      clusters: [{ name: "t", cluster: { server, "certificate-authority-data": cert.toString("base64") } }],
      users: [{ name: "t", user }],
      contexts: [{ name: "t", context: { cluster: "t", user: "t" } }],
    }),
  );
  return path;
}

async function listen(server: {
  listen: (port: number, host: string, cb: () => void) => unknown;
  address: () => unknown;
  close: () => unknown;
}): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => server.close());
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function client(server: string, o: KubeClientOptions = {}, user?: Record<string, unknown>): Promise<KubeClient> {
  const c = await KubeClient.create(await loadKubeConfig({ kubeconfig: kubeconfigFile(server, user) }), {
    timeoutMs: 5_000,
    env: {},
    ...o,
  });
  cleanups.push(() => c.close(0));
  return c;
}

/** An HTTP/2 server answering `GET /things/<name>` with JSON, 404 for `missing`; counts sessions. */
async function h2Server(onSession?: (s: http2.ServerHttp2Session, n: number) => void) {
  const stats = { sessions: 0, requests: 0, headers: [] as http2.IncomingHttpHeaders[] };
  const server = http2.createSecureServer({ key, cert });
  server.on("session", (s) => {
    stats.sessions++;
    onSession?.(s, stats.sessions);
  });
  server.on("stream", (stream, headers) => {
    stats.requests++;
    stats.headers.push(headers);
    const name = String(headers[":path"]).split("/").pop() ?? "";
    if (name === "missing") {
      stream.respond({ ":status": 404, "content-type": "application/json" });
      stream.end(JSON.stringify({ kind: "Status", reason: "NotFound", message: `things "${name}" not found` }));
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/json" });
    stream.end(JSON.stringify({ metadata: { name } }));
  });
  return { url: await listen(server), stats };
}

/**
 * A TCP relay to `target` whose open connections can go dead: after `freeze()` they forward
 * nothing either way and close nothing — a peer that vanished without a FIN or RST (a dropped NAT
 * entry, a hung host). Connections accepted later work.
 */
async function relay(target: string) {
  const { hostname, port } = new URL(target);
  const pairs: [Socket, Socket][] = [];
  const frozen = new Set<Socket>();
  const server = createServer((c) => {
    const u = connect({ host: hostname, port: Number(port) });
    pairs.push([c, u]);
    c.on("data", (b) => frozen.has(c) || u.write(b));
    u.on("data", (b) => frozen.has(c) || c.write(b));
    c.on("error", () => {});
    u.on("error", () => {});
  });
  const url = await listen(server);
  cleanups.push(() => pairs.flat().forEach((s) => s.destroy()));
  return { url, freeze: () => pairs.forEach(([c]) => frozen.add(c)), connections: () => pairs.length };
}

describe("KubeClient over HTTP/2", () => {
  it("multiplexes concurrent requests over one connection, sends the bearer token and reports API errors", async () => {
    const { url, stats } = await h2Server();
    const c = await client(url);
    const names = Array.from({ length: 40 }, (_, i) => `n${i}`);
    const got = await Promise.all(names.map((n) => c.request<{ metadata: { name: string } }>("GET", `/things/${n}`)));
    expect(got.map((o) => o.metadata.name)).toEqual(names);
    expect(stats.sessions).toBe(1);
    expect(new Set(stats.headers.map((h) => h.authorization))).toEqual(new Set(["Bearer test-token"]));
    const err = await c.request("GET", "/things/missing").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect(err).toMatchObject({ status: 404, reason: "NotFound" });
  });

  it("reads Status.details.causes: the NamespaceTerminating 403 is told by its cause, not by its text", async () => {
    const message =
      'secrets "supply" is forbidden: unable to create new content in namespace x because it is being terminated';
    const bodies: Record<string, unknown> = {
      // As kube-apiserver's NamespaceLifecycle admission answers (StatusCause.Type is JSON "reason").
      terminating: {
        kind: "Status",
        apiVersion: "v1",
        status: "Failure",
        message,
        reason: "Forbidden",
        details: {
          name: "supply",
          kind: "secrets",
          causes: [
            { reason: "NamespaceTerminating", message: "namespace x is being terminated", field: "metadata.namespace" },
          ],
        },
        code: 403,
      },
      // The same text from anything else (a webhook, a proxy) is an ordinary 403.
      lookalike: { kind: "Status", status: "Failure", message, reason: "Forbidden", code: 403 },
      malformed: { kind: "Status", reason: "Forbidden", message, details: { causes: [42, { reason: 7 }] }, code: 403 },
    };
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream, headers) => {
      stream.respond({ ":status": 403, "content-type": "application/json" });
      stream.end(JSON.stringify(bodies[String(headers[":path"]).split("/").pop() ?? ""]));
    });
    const c = await client(await listen(server));
    const fail = (name: string) => c.request("POST", `/things/${name}`, { body: {} }).catch((e: unknown) => e);
    const terminating = await fail("terminating");
    expect(terminating).toMatchObject({
      status: 403,
      reason: "Forbidden",
      causes: [{ reason: "NamespaceTerminating" }],
    });
    expect(isNamespaceTerminating(terminating)).toBe(true);
    expect(isNamespaceTerminating(await fail("lookalike"))).toBe(false);
    const malformed = await fail("malformed");
    expect(malformed).toMatchObject({ status: 403, causes: [] });
    expect(isNamespaceTerminating(malformed)).toBe(false);
    expect(isNamespaceTerminating(new Error(message))).toBe(false);
  });

  it("opens a new connection after the server closes one (GOAWAY)", async () => {
    const { url, stats } = await h2Server((s, n) => {
      // The first connection is closed by the server after its first stream.
      if (n === 1) s.once("stream", (st) => st.once("close", () => s.close()));
    });
    const c = await client(url);
    await c.request("GET", "/things/a");
    await new Promise((r) => setTimeout(r, 50));
    await expect(c.request("GET", "/things/b")).resolves.toEqual({ metadata: { name: "b" } });
    expect(stats.sessions).toBe(2);
  });

  it("uses HTTP/1.1 when the server does not offer HTTP/2", async () => {
    const versions: string[] = [];
    const server = createHttpsServer({ key, cert }, (req, res) => {
      versions.push(req.httpVersion);
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ metadata: { name: req.url?.split("/").pop() } }));
    });
    const c = await client(await listen(server));
    await expect(c.request("GET", "/things/x")).resolves.toEqual({ metadata: { name: "x" } });
    await expect(c.request("GET", "/things/y")).resolves.toEqual({ metadata: { name: "y" } });
    expect(versions).toEqual(["1.1", "1.1"]);
  });

  it("keeps a quiet watch open while its PINGs are answered", async () => {
    let pings = 0;
    const server = http2.createSecureServer({ key, cert });
    server.on("session", (s) => s.on("ping", () => pings++));
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.write(""); // and then nothing: a quiet watch
    });
    const c = await client(await listen(server), { pingIntervalMs: 100 });
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const watching = c.watch("/things", { idleTimeoutMs: 60_000, signal: stop.signal }, () => {});
    watching.catch(() => {});
    const outcome = await Promise.race([
      watching.then(
        () => "ended",
        () => "failed",
      ),
      new Promise((r) => setTimeout(r, 1_000, "open")),
    ]);
    expect(outcome).toBe("open");
    expect(pings).toBeGreaterThanOrEqual(3);
  });

  it("fails a watch on a dead peer once a PING goes unanswered, and reconnects", async () => {
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream, headers) => {
      stream.on("error", () => {});
      stream.respond({ ":status": 200, "content-type": "application/json" });
      if (!String(headers[":path"]).includes("watch=1")) return void stream.end("{}");
      stream.write('{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"1"}}}\n');
    });
    const dead = await relay(await listen(server));
    const c = await client(dead.url, { pingIntervalMs: 200 });
    let events = 0;
    const watching = c.watch("/things", { idleTimeoutMs: 60_000 }, () => events++);
    watching.catch(() => {});
    await expect.poll(() => events).toBe(1);
    dead.freeze();
    // Without the health check this would wait for the idle timeout (a minute).
    const started = performance.now();
    await expect(watching).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(10_000);
    await expect(c.request("GET", "/things/after")).resolves.toEqual({});
    expect(dead.connections()).toBe(2);
  });

  it("a request past its deadline fails (headers, then the body), and watches are left alone", async () => {
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream, headers) => {
      stream.on("error", () => {}); // the client's cancel
      const path = String(headers[":path"]);
      if (path.endsWith("/no-headers")) return; // never answers
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.write(path.includes("watch=1") ? "" : '{"metadata":'); // then nothing
    });
    const c = await client(await listen(server), { timeoutMs: 300 });
    const stop = new AbortController();
    cleanups.push(() => stop.abort());
    const watching = c.watch("/things", { idleTimeoutMs: 5_000, signal: stop.signal }, () => {});
    watching.catch(() => {});
    await expect(c.request("GET", "/things/no-headers")).rejects.toMatchObject({ code: "UND_ERR_HEADERS_TIMEOUT" });
    await expect(c.request("GET", "/things/slow")).rejects.toMatchObject({ code: "UND_ERR_BODY_TIMEOUT" });
    const outcome = await Promise.race([
      watching.then(
        () => "ended",
        () => "failed",
      ),
      new Promise((r) => setTimeout(r, 500, "open")),
    ]);
    expect(outcome).toBe("open");
  });

  it("ends a watch that receives nothing, not even a bookmark, for its idle timeout", async () => {
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream) => {
      stream.on("error", () => {});
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.write("");
    });
    const c = await client(await listen(server));
    await expect(c.watch("/things", { idleTimeoutMs: 300 }, () => {})).rejects.toMatchObject({
      code: "UND_ERR_BODY_TIMEOUT",
    });
  });

  it("keeps the server URL's path and encodes the query", async () => {
    const { url, stats } = await h2Server();
    const c = await client(`${url}/k8s/clusters/c-1/`);
    await c.request("GET", "/api/v1/secrets", {
      query: { labelSelector: "a=b,c in (d)", limit: 500, continue: undefined },
    });
    await c.request("GET", "/api/v1/namespaces/x/secrets/y");
    expect(stats.headers.map((h) => h[":path"])).toEqual([
      "/k8s/clusters/c-1/api/v1/secrets?labelSelector=a%3Db%2Cc+in+%28d%29&limit=500",
      "/k8s/clusters/c-1/api/v1/namespaces/x/secrets/y",
    ]);
  });

  it("delivers watch events split anywhere across chunks, multi-byte characters included", async () => {
    const events = [
      { type: "ADDED", object: { metadata: { name: "a" }, note: "température ✓" } },
      { type: "MODIFIED", object: { metadata: { name: "b" }, note: "日本語" } },
      { type: "BOOKMARK", object: { metadata: { resourceVersion: "7" } } },
    ];
    const bytes = Buffer.from(events.map((e) => JSON.stringify(e)).join("\n") + "\n", "utf8");
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200, "content-type": "application/json" });
      // 3-byte pieces: lines and UTF-8 sequences are cut in the middle.
      let i = 0;
      const next = () => {
        if (i >= bytes.length) return void stream.end();
        stream.write(bytes.subarray(i, i + 3), next);
        i += 3;
      };
      next();
    });
    const c = await client(await listen(server));
    const seen: WatchEvent<unknown>[] = [];
    await c.watch("/things", { idleTimeoutMs: 5_000 }, (ev) => seen.push(ev));
    expect(seen).toEqual(events);
  });
});

describe("KubeClient credentials (client-node KubeConfig)", () => {
  it("runs an exec plugin once for requests that start together, and again once its credential expired", async () => {
    const { url, stats } = await h2Server();
    const count = join(dir, "exec-count");
    const plugin = join(dir, "plugin.mjs");
    writeFileSync(count, "");
    // An ExecCredential that is already expired: client-node runs the plugin for every lookup.
    writeFileSync(
      plugin,
      `import { appendFileSync } from "node:fs";
appendFileSync(${JSON.stringify(count)}, "x");
process.stdout.write(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential",
  status: { token: "exec-token", expirationTimestamp: new Date(Date.now() - 1000).toISOString() } }));
`,
    );
    const c = await client(
      url,
      {},
      { exec: { apiVersion: "client.authentication.k8s.io/v1", command: process.execPath, args: [plugin] } },
    );
    const runs = () => readFileSync(count, "utf8").length;
    expect(runs()).toBe(1); // create() reads the credentials once
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.request("GET", `/things/p${i}`)));
    expect(runs()).toBe(2);
    await c.request("GET", "/things/later");
    expect(runs()).toBe(3);
    expect(new Set(stats.headers.map((h) => h.authorization))).toEqual(new Set(["Bearer exec-token"]));
  });

  /** An exec plugin printing the token in `tokenFile`, valid `lifetimeS` seconds; counts its runs. */
  function execPlugin(name: string, lifetimeS: number) {
    const count = join(dir, `${name}-count`);
    const tokenFile = join(dir, `${name}-token`);
    const plugin = join(dir, `${name}.mjs`);
    writeFileSync(count, "");
    writeFileSync(tokenFile, "old");
    writeFileSync(
      plugin,
      `import { appendFileSync, readFileSync } from "node:fs";
appendFileSync(${JSON.stringify(count)}, "x");
process.stdout.write(JSON.stringify({ apiVersion: "client.authentication.k8s.io/v1", kind: "ExecCredential",
  status: { token: readFileSync(${JSON.stringify(tokenFile)}, "utf8"),
    expirationTimestamp: new Date(Date.now() + ${lifetimeS * 1000}).toISOString() } }));
`,
    );
    return {
      user: { exec: { apiVersion: "client.authentication.k8s.io/v1", command: process.execPath, args: [plugin] } },
      runs: () => readFileSync(count, "utf8").length,
      setToken: (t: string) => writeFileSync(tokenFile, t),
    };
  }

  it("renews an exec credential CREDENTIAL_RENEW_MARGIN_MS ahead of its expirationTimestamp, not earlier", async () => {
    const { url, stats } = await h2Server();
    const p = execPlugin("ahead", 3600);
    const obtained = Date.now();
    const c = await client(url, {}, p.user);
    expect(p.runs()).toBe(1);
    const expires = obtained + 3600_000; // at most this, at least a few ms less
    try {
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(expires - CREDENTIAL_RENEW_MARGIN_MS - 2_000);
      p.setToken("new");
      await c.request("GET", "/things/still-cached");
      expect(p.runs()).toBe(1);
      vi.setSystemTime(expires - CREDENTIAL_RENEW_MARGIN_MS + 2_000); // inside the margin, before the expiry
      await c.request("GET", "/things/renewed");
      expect(p.runs()).toBe(2);
      await c.request("GET", "/things/cached-again");
      expect(p.runs()).toBe(2);
    } finally {
      vi.useRealTimers();
    }
    expect(stats.headers.map((h) => h.authorization)).toEqual(["Bearer old", "Bearer new", "Bearer new"]);
  });

  it("renews a short-lived exec credential half-way through its lifetime", () => {
    expect(credentialRenewTime(0, 4_000)).toBe(2_000);
    expect(credentialRenewTime(0, 3600_000)).toBe(3600_000 - CREDENTIAL_RENEW_MARGIN_MS);
    expect(credentialRenewTime(5_000, 4_000)).toBe(4_000);
    expect(credentialRenewTime(0, undefined)).toBeUndefined();
  });

  it("on a 401 runs the exec plugin again and retries once; a second 401 is thrown", async () => {
    const valid = new Set(["Bearer new"]);
    const seen: string[] = [];
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream, headers) => {
      const auth = String(headers.authorization);
      seen.push(auth);
      const ok = valid.has(auth);
      stream.respond({ ":status": ok ? 200 : 401, "content-type": "application/json" });
      stream.end(JSON.stringify(ok ? {} : { kind: "Status", reason: "Unauthorized", message: "Unauthorized" }));
    });
    const p = execPlugin("revoked", 3600);
    const c = await client(await listen(server), {}, p.user);
    p.setToken("new");
    // Requests that start together and all get a 401 share one plugin run.
    await Promise.all(Array.from({ length: 5 }, (_, i) => c.request("GET", `/things/r${i}`)));
    expect(p.runs()).toBe(2);
    expect(seen.filter((a) => a === "Bearer old")).toHaveLength(5);
    expect(seen.filter((a) => a === "Bearer new")).toHaveLength(5);
    valid.clear();
    p.setToken("revoked-too");
    const err = (await c.request("GET", "/things/x").catch((e: unknown) => e)) as KubeApiError;
    expect(err).toBeInstanceOf(KubeApiError);
    expect(err.status).toBe(401);
    expect(p.runs()).toBe(3);
    expect(seen.slice(-2)).toEqual(["Bearer new", "Bearer revoked-too"]);
  });

  it("an exec plugin that fails names the kubeconfig user, never its output", async () => {
    const plugin = join(dir, "bad-plugin.mjs");
    writeFileSync(plugin, `process.stdout.write("not json, secret-output-value");`);
    const kc = await loadKubeConfig({
      kubeconfig: kubeconfigFile("https://127.0.0.1:1", { exec: { command: process.execPath, args: [plugin] } }),
    });
    const err = (await KubeClient.create(kc).catch((e: unknown) => e)) as Error;
    expect(err.message).toBe(
      'credentials of kubeconfig user "t": the exec plugin printed no valid ExecCredential JSON',
    );
    const missing = await loadKubeConfig({
      kubeconfig: kubeconfigFile("https://127.0.0.1:1", { exec: { command: "/nonexistent/kube-plugin" } }),
    });
    await expect(KubeClient.create(missing)).rejects.toThrow('"/nonexistent/kube-plugin" not found');
  });

  it("makes new connections with a rotated client certificate file", async () => {
    const first = selfSigned("client-a", "alice");
    const certPath = join(dir, "client.pem");
    const keyPath = join(dir, "client-key.pem");
    writeFileSync(certPath, first.cert);
    writeFileSync(keyPath, first.key);
    const seen: string[] = [];
    const server = http2.createSecureServer({ key, cert, requestCert: true, rejectUnauthorized: false });
    server.on("stream", (stream) => {
      const peer = (stream.session?.socket as TLSSocket).getPeerCertificate();
      seen.push(String(peer.subject?.CN ?? "none"));
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end("{}");
    });
    const c = await client(await listen(server), {}, { "client-certificate": certPath, "client-key": keyPath });
    await c.request("GET", "/a");
    const second = selfSigned("client-b", "bob");
    writeFileSync(certPath, second.cert);
    writeFileSync(keyPath, second.key);
    await c.request("GET", "/b");
    expect(seen).toEqual(["alice", "bob"]);
  });

  it("sends impersonation headers, one field per group; a flag's user replaces the kubeconfig's `as`", async () => {
    const raw: string[][] = [];
    const server = createHttpsServer({ key, cert }, (req, res) => {
      raw.push(req.rawHeaders);
      res.setHeader("content-type", "application/json");
      res.end("{}");
    });
    const url = await listen(server);
    const field = (i: number, name: string) =>
      (raw[i] ?? []).filter((_, j, a) => j % 2 === 1 && a[j - 1]?.toLowerCase() === name);
    const c = await client(url, { impersonate: { user: "jane", groups: ["dev", "ops"] } }, { token: "t", as: "kim" });
    await c.request("GET", "/things/a");
    expect(field(0, "impersonate-user")).toEqual(["jane"]);
    expect(field(0, "impersonate-group")).toEqual(["dev", "ops"]);
    const plain = await client(url, {}, { token: "t", as: "kim" });
    await plain.request("GET", "/things/b");
    expect(field(1, "impersonate-user")).toEqual(["kim"]);
    expect(field(1, "impersonate-group")).toEqual([]);
  });
});
