/**
 * Where the operator and the CLI get Kubernetes credentials: @kubernetes/client-node's
 * `KubeConfig` (its `dist/config.js`), loaded from kubectl's sources with kubectl's `--context`
 * override, and checked so that a bad kubeconfig fails with a message naming the file, context
 * and key — never a value.
 *
 * What client-node supports, and so this project (docs/cli.md "Kubernetes access"): kubeconfig
 * files (`--kubeconfig`, else `$KUBECONFIG` — a list merged by client-node, which refuses a name
 * defined twice — else `~/.kube/config`), else the in-cluster service account (projected token
 * re-read every 60 s); `token`, client certificate and key (files re-read per request, or `-data`),
 * `username`/`password`, `exec` plugins (the credential cached until its `expirationTimestamp`),
 * the `auth-provider`s `oidc`, `azure`, `gcp` and `tokenFile`, `as` (impersonation),
 * `certificate-authority(-data)`, `tls-server-name`, `proxy-url` and `insecure-skip-tls-verify`.
 *
 * Memory: client-node's config module imports all of its generated API models, about 50 MiB of
 * RSS (18 MiB of it V8 heap) and 0.35 s of start-up (BENCHMARKS.md, P4). The operator pays that:
 * every way it can reach the API server, in-cluster included, goes through `KubeConfig`. The module
 * is imported on first use, so a verb that never talks to Kubernetes (`token` without
 * `--from-secret`, `login --print`, `--help`, `--version`) does not.
 */
import type { KubeConfig } from "@kubernetes/client-node/dist/config.js";

export type { KubeConfig };

/** kubectl's connection flags that choose the kubeconfig and its context. */
export interface KubeConfigSource {
  /**
   * One kubeconfig file (`--kubeconfig`). Unset: `$KUBECONFIG` (a list separated by the platform's
   * path delimiter), else `~/.kube/config`, else the in-cluster service account.
   */
  kubeconfig?: string;
  /** A context of the kubeconfig to use instead of its `current-context` (`--context`). */
  context?: string;
}

/** client-node's last resort when it finds nothing (`loadFromClusterAndUser` to `http://localhost:8080`). */
const PLACEHOLDER_CONTEXT = "loaded-context";

/**
 * Loads the kubeconfig `src` names (see {@link KubeConfigSource}), selects `src.context` when
 * given, and checks that the context, its cluster and its user exist.
 * @param env environment consulted for `$KUBECONFIG` (default `process.env`; client-node reads
 *   `process.env` itself, so a different object only changes the messages).
 * @throws Error naming the kubeconfig file (or "the in-cluster service account"), the context and
 *   the missing key: unreadable file, invalid YAML (line and column only: the parser's own
 *   message quotes the line, which may hold a token), unknown context, cluster or user, no
 *   kubeconfig at all outside a cluster, an `http://` server without `insecure-skip-tls-verify`.
 */
export async function loadKubeConfig(src: KubeConfigSource = {}, env = process.env): Promise<KubeConfig> {
  const { KubeConfig, findHomeDir } = await import("@kubernetes/client-node/dist/config.js");
  const kc = new KubeConfig();
  let where: string;
  if (src.kubeconfig) where = src.kubeconfig;
  else if (env.KUBECONFIG) where = env.KUBECONFIG;
  else where = `${findHomeDir() ?? "~"}/.kube/config`;
  try {
    if (src.kubeconfig) kc.loadFromFile(src.kubeconfig);
    else kc.loadFromDefault();
  } catch (err) {
    throw loadError(where, err);
  }
  if (kc.getCurrentContext() === PLACEHOLDER_CONTEXT && kc.getCluster("cluster")?.server === "http://localhost:8080") {
    throw new Error(
      `no kubeconfig found: $KUBECONFIG is unset, ${where} does not exist, and this process has no in-cluster service account`,
    );
  }
  if (kc.getCurrentCluster()?.name === "inCluster" && !src.kubeconfig && !env.KUBECONFIG) {
    where = "the in-cluster service account";
  }
  if (src.context) {
    if (!kc.getContextObject(src.context)) throw new Error(`kubeconfig ${where}: context "${src.context}" not found`);
    kc.setCurrentContext(src.context);
  }
  const name = kc.getCurrentContext();
  if (!name) throw new Error(`kubeconfig ${where}: no current-context (choose one with --context)`);
  const ctx = kc.getContextObject(name);
  if (!ctx) throw new Error(`kubeconfig ${where}: current-context "${name}" not found`);
  const cluster = kc.getCluster(ctx.cluster);
  if (!cluster) throw new Error(`kubeconfig ${where}: cluster "${ctx.cluster}" of context "${name}" not found`);
  if (ctx.user && !kc.getUser(ctx.user)) {
    throw new Error(`kubeconfig ${where}: user "${ctx.user}" of context "${name}" not found`);
  }
  if (cluster.server.startsWith("http:") && !cluster.skipTLSVerify && !cluster.proxyUrl) {
    throw new Error(
      `kubeconfig ${where}: cluster "${cluster.name}" has an http:// server, which client-node accepts only with insecure-skip-tls-verify: true`,
    );
  }
  return kc;
}

/** A load failure as a message with the file and the position or key, but no kubeconfig content. */
function loadError(where: string, err: unknown): Error {
  const e = err as Error & { code?: string; path?: string; mark?: { line?: number; column?: number } };
  if (e.name === "YAMLException") {
    const at = e.mark?.line !== undefined ? ` at line ${e.mark.line + 1}, column ${(e.mark.column ?? 0) + 1}` : "";
    return new Error(`kubeconfig ${where}: not valid YAML${at}`);
  }
  if (typeof e.code === "string" && e.code.startsWith("E")) {
    return new Error(`kubeconfig ${e.path ?? where} cannot be read (${e.code})`);
  }
  // client-node's own checks name the key (`clusters[0].cluster.server is missing`, `Duplicate
  // cluster: <name>`); a TypeError means the document is not a kubeconfig (e.g. empty).
  const detail = e instanceof TypeError ? "not a kubeconfig document" : (e.message ?? String(err));
  return new Error(`kubeconfig ${where}: ${detail}`);
}

/**
 * A `KubeConfig` over the same clusters, users, contexts and current context as `kc` (the same
 * objects, via client-node's public `loadFromOptions`), with new authenticators, so empty credential
 * caches: its next `applyToHTTPSOptions` runs an `exec` plugin again and re-reads a token file,
 * whatever `kc` had cached. client-node has no call that drops its cache (`ExecAuth.tokenCache` is
 * private); this is the supported way to the same effect. Authenticators added with
 * `addAuthenticator` are not carried over (this project adds none).
 */
export async function withEmptyCredentialCaches(kc: KubeConfig): Promise<KubeConfig> {
  const { KubeConfig } = await import("@kubernetes/client-node/dist/config.js");
  const fresh = new KubeConfig();
  fresh.loadFromOptions({
    clusters: kc.getClusters(),
    users: kc.getUsers(),
    contexts: kc.getContexts(),
    currentContext: kc.getCurrentContext(),
  });
  return fresh;
}

/** The part of client-node's private `ExecAuth` state read by {@link cachedExecCredentialExpiry}. */
interface ExecAuthCache {
  tokenCache?: Record<string, { status?: { expirationTimestamp?: string } } | null | undefined>;
}

/**
 * When the `exec` credential that `kc` holds for its current user expires (epoch milliseconds), or
 * `undefined` when it holds none, or one without `expirationTimestamp` (client.authentication.k8s.io
 * ExecCredential `status.expirationTimestamp`, RFC 3339).
 *
 * client-node keeps the ExecCredential in a private field of a private authenticator
 * (`KubeConfig.authenticators` → `ExecAuth.tokenCache[user.name]`, both declared `private` in its
 * typings) and offers no accessor; running the plugin ourselves is what this project avoids. So
 * this reads those two fields, read-only. Should a client-node release rename them, this returns
 * `undefined`: the credential is then renewed when client-node's own expiry check or a 401 says so,
 * not ahead (src/kube/client.test.ts "renews an exec credential … ahead of its expirationTimestamp"
 * fails first).
 */
export function cachedExecCredentialExpiry(kc: KubeConfig): number | undefined {
  const user = kc.getCurrentUser();
  if (!user) return undefined;
  const authenticators = (kc as unknown as { authenticators?: unknown }).authenticators;
  if (!Array.isArray(authenticators)) return undefined;
  for (const a of authenticators as ExecAuthCache[]) {
    const stamp = a?.tokenCache?.[user.name]?.status?.expirationTimestamp;
    if (typeof stamp !== "string") continue;
    const at = Date.parse(stamp);
    if (Number.isFinite(at)) return at;
  }
  return undefined;
}
