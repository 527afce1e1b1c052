import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { noProxyCidrMatches, proxyAwareDispatcher, proxySettings } from "./proxy.ts";

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

async function listen(s: Server): Promise<string> {
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return `127.0.0.1:${(s.address() as AddressInfo).port}`;
}

describe("proxySettings", () => {
  it("reads either case, lower case first, and treats blank as unset", () => {
    expect(proxySettings({ HTTPS_PROXY: "http://A", https_proxy: "http://a", NO_PROXY: " " })).toEqual({
      httpsProxy: "http://a",
      httpProxy: undefined,
      noProxy: undefined,
    });
  });
});

describe("noProxyCidrMatches", () => {
  it("matches IP literals inside CIDR entries of NO_PROXY, and nothing else", () => {
    const noProxy = ".svc, .cluster.local,10.0.0.0/8 fd00::/8,bad/99,1.2.3.4/40";
    expect(noProxyCidrMatches("10.96.0.1", noProxy)).toBe(true);
    expect(noProxyCidrMatches("[fd00::1]", noProxy)).toBe(true);
    expect(noProxyCidrMatches("11.0.0.1", noProxy)).toBe(false);
    expect(noProxyCidrMatches("kubernetes.default.svc", noProxy)).toBe(false);
    expect(noProxyCidrMatches("1.2.3.4", noProxy)).toBe(false);
    expect(noProxyCidrMatches("10.0.0.1", undefined)).toBe(false);
  });
});

describe("proxyAwareDispatcher", () => {
  it("goes through HTTP_PROXY, except to NO_PROXY hosts and CIDRs; an explicit proxy wins", async () => {
    const origin = await listen(createServer((_req, res) => res.end("origin")));
    const proxied: string[] = [];
    // A forward proxy: absolute-form request targets (RFC 9112 §3.2.2), relayed to the origin.
    const proxy = await listen(
      createServer((req, res) => {
        proxied.push(req.url ?? "");
        const up = httpRequest(req.url ?? "", { method: req.method, headers: req.headers }, (r) => r.pipe(res));
        req.pipe(up);
      }),
    );
    const get = async (d: ReturnType<typeof proxyAwareDispatcher>) => {
      const res = await d.request({ origin: `http://${origin}`, path: "/x", method: "GET" });
      const text = await res.body.text();
      await d.close();
      return text;
    };
    const agent = {};
    const tls = {};
    expect(await get(proxyAwareDispatcher({ agent, tls, env: { HTTP_PROXY: `http://${proxy}` } }))).toBe("origin");
    expect(proxied).toEqual([`http://${origin}/x`]);
    await get(proxyAwareDispatcher({ agent, tls, env: { HTTP_PROXY: `http://${proxy}`, NO_PROXY: "127.0.0.1" } }));
    await get(
      proxyAwareDispatcher({
        agent,
        tls,
        env: { HTTP_PROXY: `http://${proxy}`, NO_PROXY: "127.0.0.0/8" },
        origin: new URL(`http://${origin}`),
      }),
    );
    expect(proxied).toHaveLength(1);
    await get(proxyAwareDispatcher({ agent, tls, env: { NO_PROXY: "127.0.0.1" }, proxyUrl: `http://${proxy}` }));
    expect(proxied).toHaveLength(2);
  });
});
