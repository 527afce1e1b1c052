/**
 * A small kubeconfig / in-cluster loader: the subset of @kubernetes/client-node's `KubeConfig`
 * the operator uses (PROTOTYPE for issue 5: importing client-node costs ~55–80 MiB RSS because
 * its index pulls in every generated API model).
 *
 * Supported: kubeconfig files (`$KUBECONFIG` — first file of the list —, `~/.kube/config`, or
 * an explicit path) with `certificate-authority(-data)`, `client-certificate(-data)`,
 * `client-key(-data)`, `token`, `tokenFile`, `username`/`password`, `insecure-skip-tls-verify`;
 * and the in-cluster service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the projected token file
 * re-read every minute as client-go does). Not supported: `exec` and `auth-provider` plugins.
 */
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, isAbsolute, join } from "node:path";
import { parse } from "yaml";

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
  name: string;
  server: string;
  skipTLSVerify: boolean;
}

/** HTTPS options as client-node's `applyToHTTPSOptions` fills them. */
export interface HttpsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized?: boolean;
  headers?: Record<string, string>;
  auth?: string;
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

  /** Loads `path`; relative file references are resolved against its directory. @throws on a bad file. */
  loadFromFile(path: string): void {
    const doc = parse(readFileSync(path, "utf8")) as {
      "current-context"?: string;
      clusters?: { name: string; cluster: ClusterEntry }[];
      users?: { name: string; user: UserEntry }[];
      contexts?: { name: string; context: ContextEntry }[];
    };
    const base = dirname(path);
    const abs = (p: string) => (isAbsolute(p) ? p : join(base, p));
    const ctxName = doc["current-context"];
    const ctx = doc.contexts?.find((c) => c.name === ctxName)?.context;
    if (!ctx) throw new Error(`kubeconfig ${path}: current context "${ctxName ?? ""}" not found`);
    const cl = doc.clusters?.find((c) => c.name === ctx.cluster)?.cluster;
    if (!cl) throw new Error(`kubeconfig ${path}: cluster "${ctx.cluster}" not found`);
    const user = doc.users?.find((u) => u.name === ctx.user)?.user ?? {};
    if (user.exec !== undefined || user["auth-provider"] !== undefined) {
      throw new Error(`kubeconfig ${path}: exec and auth-provider credential plugins are not supported`);
    }
    this.cluster = { name: ctx.cluster, server: cl.server, skipTLSVerify: cl["insecure-skip-tls-verify"] === true };
    this.ca = data(cl["certificate-authority-data"], cl["certificate-authority"], abs);
    this.cert = data(user["client-certificate-data"], user["client-certificate"], abs);
    this.key = data(user["client-key-data"], user["client-key"], abs);
    this.user = { ...user, tokenFile: user.tokenFile ? abs(user.tokenFile) : undefined };
    this.context = { name: ctxName as string, namespace: ctx.namespace };
  }

  /** `$KUBECONFIG` (first entry), else `~/.kube/config`, else the in-cluster service account. */
  loadFromDefault(): void {
    const env = process.env.KUBECONFIG?.split(":").find(Boolean);
    const candidates = [env, join(homedir(), ".kube", "config")].filter((x): x is string => !!x);
    for (const p of candidates) {
      try {
        readFileSync(p);
      } catch {
        continue;
      }
      return this.loadFromFile(p);
    }
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

  getCurrentCluster(): Cluster | null {
    return this.cluster;
  }

  getCurrentContext(): string {
    return this.context?.name ?? "";
  }

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
      this.tokenCache = { value: readFileSync(f, "utf8").trim(), readAtMs: now };
    }
    return this.tokenCache.value;
  }
}

function data(b64: string | undefined, file: string | undefined, abs: (p: string) => string): Buffer | undefined {
  if (b64) return Buffer.from(b64, "base64");
  if (file) return readFileSync(abs(file));
  return undefined;
}
