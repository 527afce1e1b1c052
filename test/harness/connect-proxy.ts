/**
 * A small real HTTP proxy on loopback, as `HTTPS_PROXY`, `HTTP_PROXY` or a kubeconfig's
 * `proxy-url` point to: `CONNECT host:port` opens a TCP tunnel (RFC 9110 §9.3.6; TLS stays end to
 * end), and an absolute-form request (`GET http://host/path`, RFC 9112 §3.2.2) is forwarded. It
 * counts what it forwarded, so a test can tell whether a client went through it.
 */
import { createServer, request as httpRequest, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";

/** A running proxy from {@link startConnectProxy}. */
export interface ConnectProxy {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** CONNECT tunnels opened so far, each as its `host:port`, oldest first. */
  readonly tunnels: readonly string[];
  /** Absolute-form requests forwarded so far, each as its URL. */
  readonly forwarded: readonly string[];
  /** Stops listening and cuts every tunnel. */
  close(): Promise<void>;
}

/** Starts the proxy on a free 127.0.0.1 port. Only loopback targets are forwarded (anything else: 403). */
export async function startConnectProxy(): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const forwarded: string[] = [];
  const sockets = new Set<Socket>();
  const loopback = (host: string) => host === "127.0.0.1" || host === "localhost" || host === "[::1]";
  const server: Server = createServer((req, res) => {
    let target: URL;
    try {
      target = new URL(req.url ?? "");
    } catch {
      res.writeHead(400).end();
      return;
    }
    if (target.protocol !== "http:" || !loopback(target.hostname)) {
      res.writeHead(403).end();
      return;
    }
    forwarded.push(target.href);
    const up = httpRequest(target, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  server.on("connect", (req, client: Socket, head: Buffer) => {
    sockets.add(client);
    client.on("close", () => sockets.delete(client));
    client.on("error", () => {});
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(req.url ?? "");
    if (!m || !loopback(m[1] as string)) {
      client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
      return;
    }
    tunnels.push(req.url as string);
    const upstream = connect({ host: (m[1] as string).replace(/^\[|\]$/g, ""), port: Number(m[2]) }, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on("close", () => (sockets.delete(upstream), client.destroy()));
    upstream.on("error", () => client.destroy());
    client.on("close", () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tunnels,
    forwarded,
    async close() {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
