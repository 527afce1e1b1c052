/**
 * A small kubeconfig / in-cluster loader: the subset of @kubernetes/client-node's `KubeConfig`
 * the operator uses. Importing client-node at run time costs ~49 MiB RSS, because its index
 * pulls in every generated API model (BENCHMARKS.md, P4); tests and tools may still use it.
 *
 * Supported, with client-go's semantics (k8s.io/client-go/tools/clientcmd):
 * - kubeconfig files: an explicit path, or `$KUBECONFIG` (a list separated by the platform's path
 *   delimiter, merged: the first file that defines a name or `current-context` wins), or
 *   `~/.kube/config`; `certificate-authority(-data)`, `client-certificate(-data)`,
 *   `client-key(-data)` (`-data` wins; file paths relative to the kubeconfig that names them),
 *   `token`, `tokenFile`, `username`/`password`, `insecure-skip-tls-verify`;
 * - the in-cluster service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the projected token file
 *   re-read every minute as client-go does).
 * Not supported (an error says so): `exec` and `auth-provider` plugins. Ignored: `proxy-url`,
 * `tls-server-name`. Error messages name files, contexts and keys, never values.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { parse, YAMLError } from "yaml";

const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

interface ClusterEntry {
  server: string;
  "certificate-authority"?: string;
  "certificate-authority-data"?: string;
  "insecure-skip-tls-verify"?: boolean;
}
interface UserEntry {
  "client-certificate"?: string;
  "client-certificate-data"?: string;
  "client-key"?: string;
  "client-key-data"?: string;
  token?: string;
  tokenFile?: string;
  username?: string;
  password?: string;
  exec?: unknown;
  "auth-provider"?: unknown;
}
interface ContextEntry {
  cluster: string;
  user: string;
  namespace?: string;
}

/** The cluster of the current context. */
export interface Cluster {
  /** Its name in the kubeconfig (`in-cluster` for the service account). */
  name: string;
  /** API server URL, `https://host:port`. */
  server: string;
  /** `insecure-skip-tls-verify`. */
  skipTLSVerify: boolean;
}

/** HTTPS options as client-node's `applyToHTTPSOptions` fills them (PEM buffers). */
export interface HttpsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  /** `Authorization: Bearer …` when a token is configured. */
  headers?: Record<string, string>;
  /** Basic auth as `user:password`. */
  auth?: string;
}

interface KubeconfigDoc {
  "current-context"?: string;
  clusters?: { name: string; cluster: ClusterEntry }[];
  users?: { name: string; user: UserEntry }[];
  contexts?: { name: string; context: ContextEntry }[];
}

/** Reads and parses one kubeconfig file. @throws Error naming the file and position only (YAML errors quote lines). */
function readKubeconfig(path: string): KubeconfigDoc {
  const text = readFileSync(path, "utf8");
  try {
    return (parse(text, { prettyErrors: false }) ?? {}) as KubeconfigDoc;
  } catch (err) {
    const pos =
      err instanceof YAMLError && err.linePos ? ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}` : "";
    // No `cause`: the YAML error's message quotes the offending line, which may hold a token or key.
    // eslint-disable-next-line preserve-caught-error
    throw new Error(`kubeconfig ${path}: not valid YAML${pos}`);
  }
}

/** Drop-in for the parts of client-node's `KubeConfig` that `KubeClient` and the CLI use. */
export class KubeConfig {
  private cluster: Cluster | null = null;
  private ca: Buffer | undefined;
  private cert: Buffer | undefined;
  private key: Buffer | undefined;
  private user: UserEntry = {};
  private context: { name: string; namespace?: string } | undefined;
  private tokenCache: { value: string; readAtMs: number } | undefined;

  /**
   * Loads one kubeconfig file, or several separated by the path delimiter (`:` on Linux) as
   * `$KUBECONFIG` lists them, merged the client-go way: the first file to define a cluster, user,
   * context or `current-context` wins; missing files in a list are skipped. Relative file
   * references resolve against the directory of the file that names them.
   * @throws Error when no listed file exists, a file is not YAML, or the current context, its
   *   cluster or its user is missing, or the user needs an exec/auth-provider plugin.
   */
  loadFromFile(pathList: string): void {
    const paths = pathList.split(delimiter).filter(Boolean);
    const existing = paths.length > 1 ? paths.filter((p) => readable(p)) : paths;
    if (existing.length === 0) throw new Error(`kubeconfig: none of ${paths.join(", ")} exists`);
    const clusters = new Map<string, { entry: ClusterEntry; dir: string }>();
    const users = new Map<string, { entry: UserEntry; dir: string }>();
    const contexts = new Map<string, ContextEntry>();
    let current: string | undefined;
    for (const path of existing) {
      const doc = readKubeconfig(path);
      const dir = dirname(path);
      current ||= doc["current-context"] || undefined;
      for (const c of doc.clusters ?? []) if (!clusters.has(c.name)) clusters.set(c.name, { entry: c.cluster, dir });
      for (const u of doc.users ?? []) if (!users.has(u.name)) users.set(u.name, { entry: u.user ?? {}, dir });
      for (const c of doc.contexts ?? []) if (!contexts.has(c.name)) contexts.set(c.name, c.context);
    }
    const where = existing.join(delimiter);
    const ctx = current === undefined ? undefined : contexts.get(current);
    if (!ctx) throw new Error(`kubeconfig ${where}: current context "${current ?? ""}" not found`);
    const cl = clusters.get(ctx.cluster);
    if (!cl) throw new Error(`kubeconfig ${where}: cluster "${ctx.cluster}" of context "${current}" not found`);
    const u = ctx.user ? users.get(ctx.user) : { entry: {}, dir: "" };
    if (!u) throw new Error(`kubeconfig ${where}: user "${ctx.user}" of context "${current}" not found`);
    const user = u.entry;
    if (user.exec !== undefined || user["auth-provider"] !== undefined) {
      throw new Error(`kubeconfig ${where}: exec and auth-provider credential plugins are not supported`);
    }
    const absIn = (dir: string) => (p: string) => (isAbsolute(p) ? p : join(dir, p));
    this.cluster = {
      name: ctx.cluster,
      server: cl.entry.server,
      skipTLSVerify: cl.entry["insecure-skip-tls-verify"] === true,
    };
    this.ca = data(cl.entry["certificate-authority-data"], cl.entry["certificate-authority"], absIn(cl.dir));
    this.cert = data(user["client-certificate-data"], user["client-certificate"], absIn(u.dir));
    this.key = data(user["client-key-data"], user["client-key"], absIn(u.dir));
    this.user = { ...user, tokenFile: user.tokenFile ? absIn(u.dir)(user.tokenFile) : undefined };
    this.tokenCache = undefined;
    this.context = { name: current as string, namespace: ctx.namespace };
  }

  /** `$KUBECONFIG` (merged, see {@link loadFromFile}), else `~/.kube/config`, else the in-cluster service account. */
  loadFromDefault(): void {
    const env = process.env.KUBECONFIG?.split(delimiter).filter(Boolean) ?? [];
    if (env.some(readable)) return this.loadFromFile(env.join(delimiter));
    const home = join(homedir(), ".kube", "config");
    if (readable(home)) return this.loadFromFile(home);
    this.loadFromCluster();
  }

  /** The in-cluster service account (Kubernetes docs: "Accessing the API from a Pod"). */
  loadFromCluster(): void {
    const host = process.env.KUBERNETES_SERVICE_HOST;
    const port = process.env.KUBERNETES_SERVICE_PORT;
    if (!host || !port) throw new Error("no kubeconfig found and not running in a cluster");
    const h = host.includes(":") ? `[${host}]` : host;
    this.cluster = { name: "in-cluster", server: `https://${h}:${port}`, skipTLSVerify: false };
    this.ca = readFileSync(join(SA_DIR, "ca.crt"));
    this.user = { tokenFile: join(SA_DIR, "token") };
    let ns: string | undefined;
    try {
      ns = readFileSync(join(SA_DIR, "namespace"), "utf8").trim();
    } catch {
      ns = undefined;
    }
    this.context = { name: "in-cluster", namespace: ns };
  }

  /** The cluster of the current context; null before a load. */
  getCurrentCluster(): Cluster | null {
    return this.cluster;
  }

  /** Name of the current context (`in-cluster` for the service account); "" before a load. */
  getCurrentContext(): string {
    return this.context?.name ?? "";
  }

  /** The namespace of context `name` when it is the current one (client-node's shape); else null. */
  getContextObject(name: string): { namespace?: string } | null {
    return this.context && this.context.name === name ? { namespace: this.context.namespace } : null;
  }

  /** Fills TLS material and auth headers; the token file is re-read at most once a minute. */
  async applyToHTTPSOptions(opts: HttpsOptions): Promise<void> {
    if (this.ca) opts.ca = this.ca;
    if (this.cert) opts.cert = this.cert;
    if (this.key) opts.key = this.key;
    if (this.cluster?.skipTLSVerify) opts.rejectUnauthorized = false;
    const token = this.user.token ?? this.fileToken();
    if (token) opts.headers = { ...opts.headers, Authorization: `Bearer ${token}` };
    else if (this.user.username !== undefined) opts.auth = `${this.user.username}:${this.user.password ?? ""}`;
  }

  private fileToken(): string | undefined {
    const f = this.user.tokenFile;
    if (!f) return undefined;
    const now = Date.now();
    if (!this.tokenCache || now - this.tokenCache.readAtMs > 60_000) {
      try {
        this.tokenCache = { value: readFileSync(f, "utf8").trim(), readAtMs: now };
      } catch (err) {
        // A projected token being rotated can be briefly unreadable: keep the last one read.
        if (!this.tokenCache)
          throw new Error(`token file ${f} cannot be read: ${(err as NodeJS.ErrnoException).code ?? "error"}`, {
            cause: err,
          });
      }
    }
    return this.tokenCache.value;
  }
}

function readable(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch {
    return false;
  }
}

function data(b64: string | undefined, file: string | undefined, abs: (p: string) => string): Buffer | undefined {
  if (b64) return Buffer.from(b64, "base64");
  if (file) return readFileSync(abs(file));
  return undefined;
}
