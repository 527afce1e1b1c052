/**
 * A tiny loopback TCP proxy for fault injection between a client (the operator) and a server
 * (the kube-apiserver). Bytes pass through untouched (TLS is end to end: the apiserver's serving
 * certificate names IP 127.0.0.1, which still matches on the proxy's port), so the client talks
 * to the real server; the test can cut every open connection, refuse new ones for a while, and
 * count the bytes that flowed each way.
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/** A running proxy, from {@link startTcpProxy}. */
export interface TcpProxy {
  /** Port the proxy listens on, at 127.0.0.1. */
  port: number;
  /** Connections accepted since start (including those reset while paused). */
  readonly accepted: number;
  /** Connection pairs open now. */
  readonly open: number;
  /** Bytes sent from the server to the client since start. */
  readonly bytesToClient: number;
  /** Bytes sent from the client to the server since start. */
  readonly bytesToServer: number;
  /** Resets (TCP RST) every open connection pair, both sides. Returns how many were cut. */
  cut(): number;
  /** From now on, resets every new connection at once (and cuts the open ones) until {@link resume}. */
  pause(): void;
  /** Accepts and forwards connections again. */
  resume(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

/**
 * Starts a proxy on 127.0.0.1 (a free port) forwarding every connection to `target`.
 * @throws when the port cannot be bound.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let paused = false;
  let accepted = 0;
  let toClient = 0;
  let toServer = 0;

  const server: Server = createServer((client) => {
    accepted += 1;
    if (paused) {
      client.resetAndDestroy();
      return;
    }
    const upstream = connect({ host: target.host, port: target.port });
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = (): void => {
      pairs.delete(pair);
      if (!client.destroyed) client.destroy();
      if (!upstream.destroyed) upstream.destroy();
    };
    client.on("data", (b: Buffer) => {
      toServer += b.length;
    });
    upstream.on("data", (b: Buffer) => {
      toClient += b.length;
    });
    client.pipe(upstream);
    upstream.pipe(client);
    client.on("error", end);
    upstream.on("error", end);
    client.on("close", end);
    upstream.on("close", end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  const cut = (): number => {
    let n = 0;
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      for (const s of pair) if (!s.destroyed) s.resetAndDestroy();
      n += 1;
    }
    return n;
  };

  return {
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return pairs.size;
    },
    get bytesToClient() {
      return toClient;
    },
    get bytesToServer() {
      return toServer;
    },
    cut,
    pause() {
      paused = true;
      cut();
    },
    resume() {
      paused = false;
    },
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
