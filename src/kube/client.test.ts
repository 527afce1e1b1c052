/**
 * KubeClient's transport against real loopback servers: HTTP/2 multiplexing, reconnecting after
 * the server closes the connection, HTTP/1.1 when the server does not offer HTTP/2, the PING
 * health check on a silent peer, and watch-stream framing.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { stringify } from "yaml";
import { KubeApiError, KubeClient, type WatchEvent } from "./client.ts";
import { Http2Connection, type Http2Timing } from "./h2.ts";
import { KubeConfig } from "./kubeconfig.ts";

let dir: string;
let key: Buffer;
let cert: Buffer;
const cleanups: (() => unknown)[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "kube-client-test-"));
  // openssl is needed by the integration harness too (its PKI).
  execFileSync(
    "openssl",
    [
      ...["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"],
      ...["-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"), "-days", "1"],
      ...["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
    ],
    { stdio: "ignore" },
  );
  key = readFileSync(join(dir, "key.pem"));
  cert = readFileSync(join(dir, "cert.pem"));
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A kubeconfig for `server` trusting the test certificate, loaded. */
function kubeconfig(server: string): KubeConfig {
  const path = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  writeFileSync(
    path,
    stringify({
      "current-context": "t",
      clusters: [{ name: "t", cluster: { server, "certificate-authority-data": cert.toString("base64") } }],
      users: [{ name: "t", user: { token: "test-token" } }],
      contexts: [{ name: "t", context: { cluster: "t", user: "t" } }],
    }),
  );
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
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

async function client(server: string): Promise<KubeClient> {
  const c = await KubeClient.create(kubeconfig(server), 5_000);
  cleanups.push(() => c.close());
  return c;
}

/** An HTTP/2 server answering `GET /things/<name>` with JSON, 404 for `missing`; counts sessions. */
async function h2Server(onSession?: (s: http2.ServerHttp2Session, n: number) => void) {
  const stats = { sessions: 0, requests: 0, authorization: new Set<string>() };
  const server = http2.createSecureServer({ key, cert });
  server.on("session", (s) => {
    stats.sessions++;
    onSession?.(s, stats.sessions);
  });
  server.on("stream", (stream, headers) => {
    stats.requests++;
    stats.authorization.add(String(headers.authorization));
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

/** An Http2Connection to a peer that agrees on ALPN h2 and then is silent: no SETTINGS, no response, no PING answer. */
async function silentConnection(timing: Http2Timing): Promise<Http2Connection> {
  const server = tls.createServer({ key, cert, ALPNProtocols: ["h2"] }, (socket) => {
    socket.on("data", () => {});
    cleanups.push(() => socket.destroy());
  });
  const conn = new Http2Connection(await listen(server), { ca: cert }, timing);
  cleanups.push(() => conn.close(0));
  return conn;
}

describe("KubeClient over HTTP/2", () => {
  it("multiplexes concurrent requests over one connection and reports API errors", async () => {
    const { url, stats } = await h2Server();
    const c = await client(url);
    const names = Array.from({ length: 40 }, (_, i) => `n${i}`);
    const got = await Promise.all(names.map((n) => c.request<{ metadata: { name: string } }>("GET", `/things/${n}`)));
    expect(got.map((o) => o.metadata.name)).toEqual(names);
    expect(c.http2).toBe(true);
    expect(stats.sessions).toBe(1);
    expect(stats.authorization).toEqual(new Set(["Bearer test-token"]));
    const err = await c.request("GET", "/things/missing").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KubeApiError);
    expect(err).toMatchObject({ status: 404, reason: "NotFound" });
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
    const server = createHttpsServer({ key, cert }, (req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ metadata: { name: req.url?.split("/").pop() } }));
    });
    const c = await client(await listen(server));
    await expect(c.request("GET", "/things/x")).resolves.toEqual({ metadata: { name: "x" } });
    expect(c.http2).toBe(false);
    await expect(c.request("GET", "/things/y")).resolves.toEqual({ metadata: { name: "y" } });
  });

  it("fails a request on a silent connection once a PING goes unanswered", async () => {
    const conn = await silentConnection({ readIdleMs: 200, pingTimeoutMs: 200 });
    // Without the health check this would wait forever (no request deadline here).
    await expect(conn.request("GET", "/things/a", {}, undefined, undefined)).rejects.toThrow();
  });

  it("a request timing out checks its connection at once: an unanswered PING fails the other streams", async () => {
    // The quiet-period check alone would take a minute.
    const conn = await silentConnection({ readIdleMs: 60_000, pingTimeoutMs: 200 });
    const waiting = conn.request("GET", "/things/a", {}, undefined, undefined);
    waiting.catch(() => {});
    await expect(conn.request("GET", "/things/b", {}, undefined, AbortSignal.timeout(100))).rejects.toThrow();
    await expect(waiting).rejects.toThrow();
  });

  it("a request past its deadline fails with a TimeoutError and checks its connection", async () => {
    const conn = await silentConnection({ readIdleMs: 60_000, pingTimeoutMs: 200 });
    const waiting = conn.request("GET", "/things/a", {}, undefined, undefined);
    waiting.catch(() => {});
    const started = Date.now();
    const err = await conn.request("GET", "/things/b", {}, undefined, undefined, 100).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "TimeoutError" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(100);
    await expect(waiting).rejects.toThrow(); // the check's PING went unanswered
  });

  it("deadlines run on the monotonic clock: a wall-clock step does not fire them", async () => {
    const conn = await silentConnection({ readIdleMs: 60_000, pingTimeoutMs: 60_000 });
    const pending = conn.request("GET", "/things/a", {}, undefined, undefined, 2_000);
    pending.catch(() => {});
    const realNow = Date.now.bind(Date);
    const step = vi.spyOn(Date, "now").mockImplementation(() => realNow() + 3_600_000); // NTP step, VM resume
    try {
      const outcome = await Promise.race([
        pending.then(
          () => "answered",
          (e: Error) => e.name,
        ),
        new Promise((r) => setTimeout(r, 600, "pending")),
      ]);
      expect(outcome).toBe("pending");
    } finally {
      step.mockRestore();
    }
  });

  it("KubeClient's deadline covers the body too, and leaves watches alone", async () => {
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream, headers) => {
      stream.on("error", () => {}); // the client's cancel
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.write(String(headers[":path"]).includes("watch=1") ? "" : '{"metadata":'); // then nothing
    });
    const c = await KubeClient.create(kubeconfig(await listen(server)), 300);
    const stop = new AbortController();
    cleanups.push(() => c.close());
    cleanups.push(() => stop.abort());
    const watching = c.watch("/things", { idleTimeoutMs: 5_000, signal: stop.signal }, () => {});
    watching.catch(() => {});
    await expect(c.request("GET", "/things/slow")).rejects.toMatchObject({ name: "TimeoutError" });
    const outcome = await Promise.race([
      watching.then(
        () => "ended",
        () => "failed",
      ),
      new Promise((r) => setTimeout(r, 500, "open")),
    ]);
    expect(outcome).toBe("open");
  });

  it("keeps the server URL's path and encodes the query", async () => {
    const paths: string[] = [];
    const server = http2.createSecureServer({ key, cert });
    server.on("stream", (stream, headers) => {
      paths.push(String(headers[":path"]));
      stream.respond({ ":status": 200, "content-type": "application/json" });
      stream.end("{}");
    });
    const c = await client(`${await listen(server)}/k8s/clusters/c-1/`);
    await c.request("GET", "/api/v1/secrets", {
      query: { labelSelector: "a=b,c in (d)", limit: 500, continue: undefined },
    });
    await c.request("GET", "/api/v1/namespaces/x/secrets/y");
    expect(paths).toEqual([
      "/k8s/clusters/c-1/api/v1/secrets?labelSelector=a%3Db%2Cc+in+%28d%29&limit=500",
      "/k8s/clusters/c-1/api/v1/namespaces/x/secrets/y",
    ]);
  });

  it("keeps PINGing a quiet connection with an open stream, once per quiet period", async () => {
    let pings = 0;
    const server = http2.createSecureServer({ key, cert });
    server.on("session", (s) => s.on("ping", () => pings++));
    server.on("stream", (stream) => {
      stream.respond({ ":status": 200 });
      stream.write("{}"); // and then nothing: a quiet watch
    });
    const url = await listen(server);
    const conn = new Http2Connection(url, { ca: cert }, { readIdleMs: 100, pingTimeoutMs: 1_000 });
    cleanups.push(() => conn.close(0));
    const res = await conn.request("GET", "/watch", {}, undefined, undefined);
    res.stream.on("data", () => {});
    await new Promise((r) => setTimeout(r, 800));
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(res.stream.destroyed).toBe(false); // answered PINGs keep the connection
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
