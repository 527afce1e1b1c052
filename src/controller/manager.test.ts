import { createServer, get } from "node:http";
import { networkInterfaces } from "node:os";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { listenTarget } from "./manager.ts";

describe("listenTarget (--http-address)", () => {
  it("an empty host means every address (no host: dual-stack); a bracketed IPv6 host is unwrapped", () => {
    expect(listenTarget(":8080")).toEqual({ port: 8080 });
    expect(listenTarget("127.0.0.1:9090")).toEqual({ host: "127.0.0.1", port: 9090 });
    expect(listenTarget("0.0.0.0:8080")).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(listenTarget("[::1]:8080")).toEqual({ host: "::1", port: 8080 });
    expect(listenTarget("localhost:0")).toEqual({ host: "localhost", port: 0 });
  });

  it("rejects an address without a valid port with a clear error", () => {
    for (const bad of ["8080", "host:", ":http", ":70000", ":-1", ":80.5"]) {
      expect(() => listenTarget(bad), bad).toThrow(/expected host:port/);
    }
  });

  it(":<port> serves IPv6 and IPv4 clients alike", async () => {
    const server = createServer((_req, res) => res.end("ok"));
    await new Promise<void>((resolve) => server.listen(listenTarget(":0"), resolve));
    const { port, family } = server.address() as AddressInfo;
    const ipv6Loopback = Object.values(networkInterfaces()).some((l) => l?.some((a) => a.address === "::1"));
    const status = (host: string) =>
      new Promise<number | string>((resolve) =>
        get({ host, port }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on("error", (e) =>
          resolve(e.message),
        ),
      );
    try {
      expect(await status("127.0.0.1")).toBe(200);
      // Where the machine has IPv6, the unspecified host binds it too (dual-stack).
      if (ipv6Loopback) {
        expect(family).toBe("IPv6");
        expect(await status("::1")).toBe(200);
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
