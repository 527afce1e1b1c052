/**
 * Outbound HTTP through undici with the proxy variables every HTTP client of this project honours:
 * `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy` and `NO_PROXY`/`no_proxy` (lower case
 * wins, as curl and undici do). The token endpoint, `login`'s OAuth requests and the Kubernetes
 * API server all get their dispatcher from {@link proxyAwareDispatcher}.
 */
import { BlockList, isIP } from "node:net";
import type { ConnectionOptions } from "node:tls";
import { Agent, EnvHttpProxyAgent, ProxyAgent, type Dispatcher } from "undici";

/** An environment to read proxy variables from (default `process.env`). */
export type ProxyEnvironment = Readonly<Record<string, string | undefined>>;

/** The proxy variables of an environment; an unset or blank variable is undefined. */
export interface ProxySettings {
  httpsProxy?: string;
  httpProxy?: string;
  noProxy?: string;
}

function envValue(env: ProxyEnvironment, name: string): string | undefined {
  const v = env[name.toLowerCase()] ?? env[name.toUpperCase()];
  return v === undefined || v.trim() === "" ? undefined : v;
}

/** Reads `https_proxy`, `http_proxy` and `no_proxy` (either case, lower case first). */
export function proxySettings(env: ProxyEnvironment = process.env): ProxySettings {
  return {
    httpsProxy: envValue(env, "https_proxy"),
    httpProxy: envValue(env, "http_proxy"),
    noProxy: envValue(env, "no_proxy"),
  };
}

/**
 * Whether `host` (an IP literal, IPv6 with or without brackets) lies in an IP range of `noProxy`
 * written in CIDR notation (`10.0.0.0/8`, `fd00::/8`). undici's NO_PROXY matching knows host
 * names and single addresses only; client-go also honours CIDR entries
 * (k8s.io/apimachinery/pkg/util/net `NewProxierWithNoProxyCIDR`), which is how in-cluster
 * configurations usually exempt the Service network. A host name or a malformed entry never matches.
 */
export function noProxyCidrMatches(host: string, noProxy: string | undefined): boolean {
  const ip = host.replace(/^\[(.+)\]$/, "$1");
  const family = isIP(ip);
  if (!noProxy || family === 0) return false;
  const ranges = new BlockList();
  for (const entry of noProxy.split(/[,\s]+/)) {
    const m = /^([0-9a-fA-F:.]+)\/(\d{1,3})$/.exec(entry);
    if (!m) continue;
    const net = m[1] as string;
    const bits = Number(m[2]);
    const f = isIP(net);
    if (f === 0 || bits > (f === 4 ? 32 : 128)) continue;
    ranges.addSubnet(net, bits, f === 4 ? "ipv4" : "ipv6");
  }
  return ranges.check(ip, family === 4 ? "ipv4" : "ipv6");
}

/** Options of {@link proxyAwareDispatcher}. */
export interface ProxyAwareOptions {
  /** undici Agent options (timeouts, connections, `allowH2`, `h2Options` …) without `connect`. */
  agent: Omit<Agent.Options, "connect">;
  /** TLS towards the origin: CA, client certificate and key, `servername`, `rejectUnauthorized`. */
  tls: ConnectionOptions & { timeout?: number };
  /**
   * An explicit proxy (kubeconfig `proxy-url`: `http://`, `https://` or `socks5://`); it wins
   * over the environment, as in client-go.
   */
  proxyUrl?: string;
  /** Environment with the proxy variables (default `process.env`). */
  env?: ProxyEnvironment;
  /**
   * The one origin this dispatcher serves, when known (the API server): if its host is an IP in a
   * CIDR entry of `NO_PROXY` ({@link noProxyCidrMatches}), no proxy is used.
   */
  origin?: URL;
}

/**
 * An undici dispatcher for outbound requests: a `ProxyAgent` for an explicit `proxyUrl`, else an
 * `EnvHttpProxyAgent` when a proxy variable is set (`NO_PROXY` hosts are reached directly), else
 * a plain `Agent`. TLS towards the origin is the same on every path (`requestTls` through a
 * CONNECT tunnel); TLS to an `https://` proxy trusts the same CAs (corporate proxies often use an
 * internal CA). Redirects are never followed (undici's default).
 */
export function proxyAwareDispatcher(o: ProxyAwareOptions): Dispatcher {
  const { agent, tls } = o;
  if (o.proxyUrl) {
    return new ProxyAgent({ ...agent, uri: o.proxyUrl, requestTls: tls, proxyTls: { ca: tls.ca } });
  }
  const p = proxySettings(o.env ?? process.env);
  const direct =
    (p.httpsProxy === undefined && p.httpProxy === undefined) ||
    (o.origin !== undefined && noProxyCidrMatches(o.origin.hostname, p.noProxy));
  if (direct) return new Agent({ ...agent, connect: tls });
  return new EnvHttpProxyAgent({
    ...agent,
    connect: tls,
    // Pass the values explicitly so `env` (not only process.env) decides; "" means "no proxy".
    httpProxy: p.httpProxy ?? "",
    httpsProxy: p.httpsProxy ?? p.httpProxy ?? "",
    noProxy: p.noProxy ?? "",
    requestTls: tls,
    proxyTls: { ca: tls.ca },
  });
}
