/**
 * A real Kubernetes control plane for integration tests — the envtest approach (SPEC.md §7).
 *
 * `startControlPlane()` runs `etcd`, `kube-apiserver` and (by default) `kube-controller-manager`
 * as child processes on free 127.0.0.1 ports, with:
 *  - a throw-away PKI made by the `openssl` CLI (keys come from Node's `crypto`): a CA that
 *    signs the apiserver's serving certificate and every client certificate. Client identities
 *    follow the Kubernetes x509 convention: subject CN = user name, each O = one group
 *    (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#x509-client-certificates);
 *  - `--authorization-mode=RBAC`; the admin identity is in group `system:masters`;
 *  - a service-account signing key and issuer, so the TokenRequest API works;
 *  - kube-controller-manager with every default controller (garbage collector, namespace,
 *    service account, root-CA publisher, …), `--leader-elect=false`.
 *
 * Every process logs to a file in `dir` (or `opts.logDir`). Children are killed by `stop()`,
 * by a process 'exit' hook and — should the test process die without running JS (SIGKILL,
 * an unhandled SIGTERM) — by a small detached `sh` watchdog that polls the test process.
 *
 * Nothing listens on a non-loopback address: etcd client + peer URLs, the apiserver's
 * `--bind-address` and kube-controller-manager's `--bind-address` are all 127.0.0.1.
 *
 * Environment: KUBEBUILDER_ASSETS (binaries dir, else hack/build-assets.sh builds them),
 * KEEP_HARNESS_DIR=1 (keep the temp dir — certs, etcd data, logs — after stop or a failed start),
 * HARNESS_TRACE=1 (print start phase timings to stderr).
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { generateKeyPair } from "node:crypto";
import { appendFileSync, closeSync, existsSync, openSync, readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import type { Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { stringify as toYaml } from "yaml";

const execFileAsync = promisify(execFile);
const generateKeyPairAsync = promisify(generateKeyPair);

/** Options for {@link startControlPlane}. */
export interface ControlPlaneOptions {
  /** Also run kube-controller-manager (garbage collector, namespace controller, …). Default true. */
  controllerManager?: boolean;
  /**
   * kube-controller-manager's `--controllers` list, default `["*"]` (all on by default). E.g.
   * `["*", "-namespace-controller"]` keeps a deleted namespace in phase Terminating with its
   * content, as a namespace whose content deletion is slow or stuck.
   */
  controllers?: string[];
  /**
   * Directory for the process logs (`etcd.log`, `kube-apiserver.log`,
   * `kube-controller-manager.log`, opened in append mode). Default: the harness `dir`, which
   * `stop()` removes. Logs in a caller-given logDir are kept.
   */
  logDir?: string;
  /** How long to wait for every component to become ready, in milliseconds. Default 180000. */
  startTimeoutMs?: number;
  /**
   * Extra kube-apiserver flags appended to the harness's own (e.g. `--watch-cache-sizes=secrets#0`). An
   * `--authorization-mode=` among them replaces the harness's `RBAC`.
   */
  apiserverArgs?: string[];
  /**
   * Enable the apiserver's audit log (JSON lines at `ControlPlane.auditLogPath`, written
   * synchronously: `--audit-log-mode=blocking`). `true` uses {@link DEFAULT_AUDIT_POLICY} (every
   * request on Secrets at level Metadata, nothing else); a string is a full audit Policy YAML.
   */
  audit?: boolean | string;
  /**
   * DNS names of a second serving certificate (signed by the cluster CA) that names only them;
   * the apiserver presents it to clients that send one of these names as TLS SNI
   * (`--tls-sni-cert-key`), e.g. a kubeconfig with `tls-server-name`. Others get the default one.
   */
  sniServingNames?: string[];
  /**
   * IPv4 address the API server listens on and advertises (the `kubernetes` Service's endpoint), and the host of
   * `server`. Default `127.0.0.1`. Anything else must be an address of a network namespace the test run created
   * itself (the e2e node's address, test/harness/node.ts); the serving certificate names it too.
   */
  address?: string;
}

/**
 * Audit policy used by `audit: true`: every Secret request (get, list, watch, create, update,
 * patch, delete) at level Metadata — who, verb, namespace, name, response code; never the data —
 * logged once, at ResponseComplete (watches also at ResponseStarted). Nothing else is logged.
 */
export const DEFAULT_AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets"]
  - level: None
`;

/** One child process of the control plane, for tests that check nothing survives `stop()`. */
export interface ControlPlaneProcess {
  /** `etcd`, `kube-apiserver` or `kube-controller-manager`. */
  name: string;
  /** Operating-system process id. */
  pid: number;
  /** Path of the log file receiving its stdout and stderr. */
  logPath: string;
}

/** A running control plane, as returned by {@link startControlPlane}. */
export interface ControlPlane {
  /** The apiserver URL, `https://127.0.0.1:<port>`. */
  server: string;
  /** etcd's client URL, `http://127.0.0.1:<port>` (its v3 JSON gateway answers `/v3/kv/…`, e.g. compaction). */
  etcdUrl: string;
  /** Path of the apiserver audit log (JSON lines) when `audit` was set, else undefined. */
  auditLogPath?: string;
  /** Admin kubeconfig (user `nexar-harness-admin`, group `system:masters`), written in `dir`. */
  kubeconfigPath: string;
  /** Temporary directory holding certificates, etcd data, kubeconfigs and (by default) logs. */
  dir: string;
  /** PEM of the cluster CA (signs the apiserver serving certificate and client certificates). */
  caCertPem: string;
  /** The child processes (etcd, kube-apiserver, and kube-controller-manager when enabled). */
  processes: readonly ControlPlaneProcess[];
  /** Wall-clock time `startControlPlane()` took, in milliseconds. */
  startupMs: number;
  /**
   * Write a kubeconfig for an arbitrary identity, for RBAC tests: a client certificate signed by
   * the cluster CA with CN=`user` and one O per entry of `groups` (the apiserver adds
   * `system:authenticated`). Returns the file's path (mode 0600, inside `dir`).
   * Throws when `user` is empty or openssl fails.
   */
  kubeconfigFor(user: string, groups: string[]): Promise<string>;
  /**
   * Write a kubeconfig that authenticates with the given bearer token (e.g. a ServiceAccount
   * token from the TokenRequest API). `name` names the file and the kubeconfig user/context;
   * it must match /^[A-Za-z0-9._-]+$/. Returns the file's path (mode 0600, inside `dir`).
   */
  kubeconfigWithToken(token: string, name: string): Promise<string>;
  /**
   * Write a kubeconfig named `name` (/^[A-Za-z0-9._-]+$/) for this cluster with extra cluster
   * fields (e.g. `proxy-url`, `tls-server-name`) and a user entry (default: the admin's client
   * certificate). Returns the file's path (mode 0600, inside `dir`).
   */
  kubeconfig(name: string, o?: { cluster?: Record<string, unknown>; user?: Record<string, unknown> }): Promise<string>;
  /**
   * Stop every process (SIGTERM, then SIGKILL after 5 s), then remove `dir` unless the
   * environment has KEEP_HARNESS_DIR=1. Idempotent: later calls return the same promise.
   */
  stop(): Promise<void>;
}

const HARNESS_DIR = fileURLToPath(new URL(".", import.meta.url));
const BUILD_ASSETS_SCRIPT = join(HARNESS_DIR, "..", "..", "hack", "build-assets.sh");
const SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24";
const SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local";
const ADMIN_USER = "nexar-harness-admin";
const STOP_GRACE_MS = 5_000;
const LOG_TAIL_LINES = 40;

/**
 * The directory holding the `etcd`, `kube-apiserver` and `kube-controller-manager` binaries:
 * `$KUBEBUILDER_ASSETS` if set, else the output of `hack/build-assets.sh --print`, which builds
 * the binaries from the Go module proxy once (several minutes) and caches them under the user's
 * cache directory (SPEC.md §7). Synchronous. Throws if the script fails or a binary is missing
 * (kube-controller-manager is only checked by {@link startControlPlane} when it is wanted).
 */
export function resolveAssets(): string {
  const fromEnv = process.env["KUBEBUILDER_ASSETS"];
  let dir: string;
  if (fromEnv !== undefined && fromEnv !== "") {
    dir = fromEnv;
  } else {
    const out = execFileSync("bash", [BUILD_ASSETS_SCRIPT, "--print"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    dir = out.trim().split("\n").pop() ?? "";
  }
  for (const b of ["etcd", "kube-apiserver"]) {
    if (!existsSync(join(dir, b))) throw new Error(`control-plane assets: ${join(dir, b)} does not exist`);
  }
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Process bookkeeping shared by every control plane of this test process.

interface Managed {
  name: string;
  child: ChildProcess;
  logPath: string;
  exited: Promise<void>;
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Synchronous last-resort cleanup for process 'exit': SIGKILL what is left, remove dirs. */
const liveCleanups = new Set<() => void>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const cleanup of liveCleanups) cleanup();
  });
}

function tailOf(path: string, lines = LOG_TAIL_LINES): string {
  try {
    const all = readFileSync(path, "utf8").split("\n");
    return all.slice(-lines - 1).join("\n");
  } catch (err) {
    return `(could not read ${path}: ${String(err)})`;
  }
}

function startProcess(name: string, binary: string, args: string[], logPath: string): Managed {
  const fd = openSync(logPath, "a");
  let child: ChildProcess;
  try {
    child = spawn(binary, args, { stdio: ["ignore", fd, fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<void>((resolve) => {
    if (!isRunning(child)) resolve();
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  return { name, child, logPath, exited };
}

async function stopProcess(m: Managed): Promise<void> {
  if (!isRunning(m.child) || m.child.pid === undefined) return;
  m.child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), STOP_GRACE_MS);
  });
  const late = await Promise.race([m.exited.then(() => false), timedOut]);
  clearTimeout(timer);
  if (late && isRunning(m.child)) {
    m.child.kill("SIGKILL");
    await m.exited;
  }
}

/**
 * A detached `sh` that, once this Node process is gone, SIGKILLs the pids listed in
 * `<dir>/.pids` (appended to by {@link startProcess}'s caller) and removes `dir` — covering
 * deaths that skip JS 'exit' hooks (SIGKILL, an unhandled SIGTERM). Killed by a normal stop().
 */
function startWatchdog(dir: string, keepDir: boolean): ChildProcess {
  const script = [
    "parent=$1; dir=$2; keep=$3",
    'while kill -0 "$parent" 2>/dev/null; do sleep 1; done',
    '[ -f "$dir/.pids" ] && kill -9 $(cat "$dir/.pids") 2>/dev/null',
    '[ "$keep" = 1 ] || rm -rf "$dir"',
  ].join("\n");
  const child = spawn("sh", ["-c", script, "nexar-harness-watchdog", String(process.pid), dir, keepDir ? "1" : "0"], {
    detached: true,
    stdio: "ignore",
  });
  child.unref();
  return child;
}

// ---------------------------------------------------------------------------------------------
// Ports, HTTP probes, waiting.

/** Reserve `n` distinct free loopback ports by binding port 0 (all held open until all are known). */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(0, "127.0.0.1", () => resolve());
      });
      const addr = srv.address();
      if (addr === null || typeof addr === "string") throw new Error("could not reserve a loopback port");
      ports.push(addr.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

interface TlsClient {
  ca?: string;
  cert?: string;
  key?: string;
  /** false only for kube-controller-manager's self-signed serving certificate on loopback. */
  rejectUnauthorized: boolean;
}

function httpsGet(url: string, tls: TlsClient, timeoutMs = 3_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: "GET", agent: false, timeout: timeoutMs, ...tls }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

class StartError extends Error {
  readonly addressInUse: boolean;
  constructor(message: string, addressInUse: boolean) {
    super(message);
    this.name = "ControlPlaneStartError";
    this.addressInUse = addressInUse;
  }
}

/**
 * Poll `probe` every 100 ms until it returns true. Fails fast when a watched process exits,
 * with the tail of that process's log; fails after `deadline` (epoch ms) with the tail of
 * `culprit`'s log and the last probe error.
 */
async function waitUntil(
  what: string,
  probe: () => Promise<boolean>,
  watched: Managed[],
  culprit: Managed,
  deadline: number,
): Promise<void> {
  for (;;) {
    for (const m of watched) {
      if (!isRunning(m.child)) {
        const tail = tailOf(m.logPath);
        throw new StartError(
          `${m.name} exited (code ${String(m.child.exitCode)}, signal ${String(m.child.signalCode)}) ` +
            `while waiting for ${what}; last lines of ${m.logPath}:\n${tail}`,
          /address already in use/i.test(tail),
        );
      }
    }
    const lastError = await probe().then(
      (ready) => (ready ? undefined : ""),
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
    if (lastError === undefined) return;
    if (Date.now() > deadline) {
      throw new StartError(
        `timed out waiting for ${what}${lastError === "" ? "" : ` (last error: ${lastError})`}; ` +
          `last lines of ${culprit.logPath}:\n${tailOf(culprit.logPath)}`,
        false,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---------------------------------------------------------------------------------------------
// PKI (openssl CLI for X.509; keys from node:crypto).

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
authorityKeyIdentifier = keyid
subjectAltName = $ENV::NEXAR_HARNESS_SAN
`;

/** The API server's serving certificate names (plus `extra`, e.g. a non-loopback listen address). */
function apiserverSans(extraIps: string[]): string {
  return [
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
    "IP:10.0.0.1",
    ...extraIps.map((ip) => `IP:${ip}`),
  ].join(", ");
}

/** Escape one RDN value for `openssl -subj` (backslash escapes the next character). */
function subjValue(v: string): string {
  return v.replace(/[\\/+=]/g, (c) => `\\${c}`);
}

/** A new ECDSA P-256 key pair: private key as PKCS#8 PEM, public key as SPKI PEM. */
async function newEcKeyPair(): Promise<{ privateKey: string; publicKey: string }> {
  return await generateKeyPairAsync("ec", {
    namedCurve: "prime256v1",
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
}

async function newEcKeyPem(): Promise<string> {
  return (await newEcKeyPair()).privateKey;
}

/**
 * The CA's key: RSA-2048, as kubeadm's CA. The API server verifies the client certificate's
 * signature on every request (x509 authenticator, no cache), and an RSA signature verifies several
 * times faster than an ECDSA P-256 one — measurable when a benchmark sends thousands of requests.
 */
async function newCaKeyPem(): Promise<string> {
  const { privateKey } = await generateKeyPairAsync("rsa", {
    modulusLength: 2048,
    publicKeyEncoding: { type: "spki", format: "pem" },
    privateKeyEncoding: { type: "pkcs8", format: "pem" },
  });
  return privateKey;
}

interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  config: string;
  counter: number;
}

interface Issued {
  certPath: string;
  keyPath: string;
  certPem: string;
  keyPem: string;
}

async function openssl(args: string[], san = apiserverSans([])): Promise<void> {
  try {
    // server_ext reads its subjectAltName from the environment (every other section ignores it).
    await execFileAsync("openssl", args, { encoding: "utf8", env: { ...process.env, NEXAR_HARNESS_SAN: san } });
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new Error(`openssl ${args[0] ?? ""} failed: ${e.stderr ?? e.message ?? String(err)}`, { cause: err });
  }
}

async function createPki(dir: string): Promise<Pki> {
  await mkdir(dir, { recursive: true });
  const config = join(dir, "openssl.cnf");
  await writeFile(config, OPENSSL_CONFIG);
  const caKey = join(dir, "ca.key");
  const caCert = join(dir, "ca.crt");
  await writeFile(caKey, await newCaKeyPem(), { mode: 0o600 });
  await openssl([
    "req",
    "-x509",
    "-new",
    "-config",
    config,
    "-extensions",
    "ca_ext",
    "-key",
    caKey,
    "-subj",
    "/CN=nexar-harness-ca",
    "-days",
    "3650",
    "-out",
    caCert,
  ]);
  return { dir, caCert, caKey, config, counter: 0 };
}

/**
 * Issue a certificate signed by the CA. `subject` is an openssl `-subj` string; `san` the subjectAltName of a
 * server certificate (openssl syntax, default: the API server's names on loopback).
 */
async function issue(
  pki: Pki,
  base: string,
  subject: string,
  ext: "client_ext" | "server_ext",
  san?: string,
): Promise<Issued> {
  pki.counter += 1;
  const stem = join(pki.dir, `${base}-${pki.counter}`);
  const keyPath = `${stem}.key`;
  const certPath = `${stem}.crt`;
  const keyPem = await newEcKeyPem();
  await writeFile(keyPath, keyPem, { mode: 0o600 });
  await openssl(
    [
      "req",
      "-x509",
      "-new",
      "-utf8",
      "-config",
      pki.config,
      "-extensions",
      ext,
      "-key",
      keyPath,
      "-subj",
      subject,
      "-CA",
      pki.caCert,
      "-CAkey",
      pki.caKey,
      "-days",
      "365",
      "-out",
      certPath,
    ],
    san,
  );
  return { certPath, keyPath, certPem: readFileSync(certPath, "utf8"), keyPem };
}

function clientSubject(user: string, groups: string[]): string {
  return `/CN=${subjValue(user)}` + groups.map((g) => `/O=${subjValue(g)}`).join("");
}

// ---------------------------------------------------------------------------------------------
// Kubeconfigs.

function b64(s: string): string {
  return Buffer.from(s, "utf8").toString("base64");
}

/**
 * Kubeconfig YAML (clientcmd v1 format) for one cluster/user/context: cluster `harness` (with the
 * `cluster` extras), user and context named `name`.
 */
function kubeconfigYaml(
  server: string,
  caPem: string,
  name: string,
  user: Record<string, unknown>,
  cluster: Record<string, unknown> = {},
): string {
  return toYaml({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "harness", cluster: { server, "certificate-authority-data": b64(caPem), ...cluster } }],
    users: [{ name, user }],
    contexts: [{ name, context: { cluster: "harness", user: name } }],
    "current-context": name,
    preferences: {},
  });
}

// ---------------------------------------------------------------------------------------------
// Start.

/**
 * Start etcd, kube-apiserver and (unless `opts.controllerManager === false`)
 * kube-controller-manager on free 127.0.0.1 ports, and wait until the apiserver's `/readyz`
 * answers `ok`, namespace `default` exists and kube-controller-manager's `/healthz` answers
 * `ok`. Retries up to 3 times when a reserved port was taken meanwhile.
 *
 * Throws an Error including the tail of the failing process's log when a process exits or
 * readiness is not reached within `opts.startTimeoutMs` (default 180000 ms); everything
 * started is stopped and the temp dir removed (unless KEEP_HARNESS_DIR=1) before throwing.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const assets = resolveAssets();
  const withKcm = opts.controllerManager ?? true;
  if (withKcm && !existsSync(join(assets, "kube-controller-manager"))) {
    throw new Error(`control-plane assets: ${join(assets, "kube-controller-manager")} does not exist`);
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(assets, withKcm, opts);
    } catch (err) {
      if (err instanceof StartError && err.addressInUse && attempt < 3) continue;
      throw err;
    }
  }
}

async function startOnce(assets: string, withKcm: boolean, opts: ControlPlaneOptions): Promise<ControlPlane> {
  const t0 = Date.now();
  const trace = (what: string): void => {
    if (process.env["HARNESS_TRACE"] === "1") console.error(`[harness] ${what} +${Date.now() - t0} ms`);
  };
  const deadline = t0 + (opts.startTimeoutMs ?? 180_000);
  const keepDir = process.env["KEEP_HARNESS_DIR"] === "1";
  const dir = await mkdtemp(join(tmpdir(), "nexar-cp-"));
  const logDir = opts.logDir ?? dir;
  await mkdir(logDir, { recursive: true });

  const procs: Managed[] = [];
  const watchdog = startWatchdog(dir, keepDir);
  let stopping: Promise<void> | undefined;

  const syncCleanup = (): void => {
    for (const m of procs) if (isRunning(m.child)) m.child.kill("SIGKILL");
    if (watchdog.exitCode === null) watchdog.kill("SIGKILL");
    if (!keepDir) rmSync(dir, { recursive: true, force: true });
  };
  installExitHook();
  liveCleanups.add(syncCleanup);
  const track = (m: Managed): Managed => {
    procs.push(m);
    if (m.child.pid !== undefined) appendFileSync(join(dir, ".pids"), `${m.child.pid}\n`);
    return m;
  };

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // kcm and apiserver first, etcd last: the apiserver shuts down faster while etcd answers.
      const [etcd, ...rest] = procs;
      await Promise.all(rest.map(stopProcess));
      if (etcd !== undefined) await stopProcess(etcd);
      if (watchdog.exitCode === null) watchdog.kill("SIGKILL");
      if (!keepDir) await rm(dir, { recursive: true, force: true });
      liveCleanups.delete(syncCleanup);
    })();
    return stopping;
  };

  try {
    const [etcdPort, peerPort, apiPort, kcmPort] = (await freePorts(4)) as [number, number, number, number];
    const address = opts.address ?? "127.0.0.1";
    const server = `https://${address}:${apiPort}`;

    // etcd needs no TLS: start it first so it boots while the PKI is made.
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    const etcd = track(
      startProcess(
        "etcd",
        join(assets, "etcd"),
        [
          "--name=harness",
          `--data-dir=${join(dir, "etcd")}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=harness=${peerUrl}`,
          "--initial-cluster-state=new",
          "--unsafe-no-fsync=true",
          "--log-level=warn",
        ],
        join(logDir, "etcd.log"),
      ),
    );

    const pkiDir = join(dir, "pki");
    const pki = await createPki(pkiDir);
    const [serving, admin, kcmClient, kubeletClient, saKeyPair, sni] = await Promise.all([
      issue(
        pki,
        "apiserver-serving",
        "/CN=kube-apiserver",
        "server_ext",
        apiserverSans(address === "127.0.0.1" ? [] : [address]),
      ),
      issue(pki, "admin", clientSubject(ADMIN_USER, ["system:masters"]), "client_ext"),
      // kcm runs every controller with its own credentials (--use-service-account-credentials
      // is off, which keeps start fast), so it needs cluster-admin rights: system:masters.
      issue(pki, "kcm", clientSubject("system:kube-controller-manager", ["system:masters"]), "client_ext"),
      // The API server's identity towards kubelets (logs, exec, port-forward), as kubeadm's apiserver-kubelet-client.
      issue(
        pki,
        "apiserver-kubelet-client",
        clientSubject("kube-apiserver-kubelet-client", ["system:masters"]),
        "client_ext",
      ),
      // ES256 service-account signing key (RSA and ECDSA keys are both accepted by
      // --service-account-signing-key-file); EC keys are generated in well under a millisecond.
      newEcKeyPair(),
      opts.sniServingNames?.length
        ? issue(
            pki,
            "apiserver-sni",
            "/CN=kube-apiserver-sni",
            "server_ext",
            opts.sniServingNames.map((n) => `DNS:${n}`).join(", "),
          )
        : undefined,
    ]);
    const saPub = join(pkiDir, "sa.pub");
    const saKey = join(pkiDir, "sa.key");
    await writeFile(saPub, saKeyPair.publicKey);
    await writeFile(saKey, saKeyPair.privateKey, { mode: 0o600 });
    const caCertPem = readFileSync(pki.caCert, "utf8");

    const kubeconfigPath = join(dir, "admin.kubeconfig");
    await writeFile(
      kubeconfigPath,
      kubeconfigYaml(server, caCertPem, "admin", {
        "client-certificate-data": b64(admin.certPem),
        "client-key-data": b64(admin.keyPem),
      }),
      { mode: 0o600 },
    );
    const adminTls: TlsClient = { ca: caCertPem, cert: admin.certPem, key: admin.keyPem, rejectUnauthorized: true };
    trace("pki");

    // No need to wait for etcd's /health: the apiserver retries its storage connection, and
    // an etcd that dies is caught below because every wait watches the etcd process too.
    const auditArgs: string[] = [];
    let auditLogPath: string | undefined;
    if (opts.audit) {
      const policyPath = join(dir, "audit-policy.yaml");
      await writeFile(policyPath, typeof opts.audit === "string" ? opts.audit : DEFAULT_AUDIT_POLICY);
      auditLogPath = join(logDir, "audit.log");
      auditArgs.push(
        `--audit-policy-file=${policyPath}`,
        `--audit-log-path=${auditLogPath}`,
        "--audit-log-format=json",
        "--audit-log-mode=blocking",
        "--audit-log-maxbackup=1",
        "--audit-log-maxsize=500",
      );
    }
    const apiserver = track(
      startProcess(
        "kube-apiserver",
        join(assets, "kube-apiserver"),
        [
          `--etcd-servers=${etcdUrl}`,
          `--bind-address=${address}`,
          `--advertise-address=${address}`,
          `--secure-port=${apiPort}`,
          `--cert-dir=${join(dir, "apiserver-certs")}`,
          `--tls-cert-file=${serving.certPath}`,
          `--tls-private-key-file=${serving.keyPath}`,
          ...(sni ? [`--tls-sni-cert-key=${sni.certPath},${sni.keyPath}`] : []),
          `--client-ca-file=${pki.caCert}`,
          // Unless the caller chooses its own (e.g. Node,RBAC for a node): repeating the flag would be an error.
          ...((opts.apiserverArgs ?? []).some((a) => a.startsWith("--authorization-mode="))
            ? []
            : ["--authorization-mode=RBAC"]),
          `--service-cluster-ip-range=${SERVICE_CLUSTER_IP_RANGE}`,
          `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
          `--service-account-key-file=${saPub}`,
          `--service-account-signing-key-file=${saKey}`,
          "--allow-privileged=true",
          `--kubelet-client-certificate=${kubeletClient.certPath}`,
          `--kubelet-client-key=${kubeletClient.keyPath}`,
          "--kubelet-preferred-address-types=InternalIP",
          "--profiling=false",
          "--enable-priority-and-fairness=false",
          "--event-ttl=10m",
          ...auditArgs,
          ...(opts.apiserverArgs ?? []),
        ],
        join(logDir, "kube-apiserver.log"),
      ),
    );

    const apiProbe = (path: string) => async () => {
      const r = await httpsGet(`${server}${path}`, adminTls);
      return r.status === 200;
    };
    await waitUntil("kube-apiserver /readyz", apiProbe("/readyz"), [etcd, apiserver], apiserver, deadline);
    trace("readyz");
    await waitUntil(
      "namespace default",
      apiProbe("/api/v1/namespaces/default"),
      [etcd, apiserver],
      apiserver,
      deadline,
    );

    if (withKcm) {
      const kcmKubeconfig = join(dir, "kube-controller-manager.kubeconfig");
      await writeFile(
        kcmKubeconfig,
        kubeconfigYaml(server, caCertPem, "kube-controller-manager", {
          "client-certificate-data": b64(kcmClient.certPem),
          "client-key-data": b64(kcmClient.keyPem),
        }),
        { mode: 0o600 },
      );
      const kcm = track(
        startProcess(
          "kube-controller-manager",
          join(assets, "kube-controller-manager"),
          [
            `--kubeconfig=${kcmKubeconfig}`,
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            `--secure-port=${kcmPort}`,
            `--cert-dir=${join(dir, "kcm-certs")}`,
            `--controllers=${(opts.controllers ?? ["*"]).join(",")}`,
            `--service-account-private-key-file=${saKey}`,
            `--root-ca-file=${pki.caCert}`,
            `--cluster-signing-cert-file=${pki.caCert}`,
            `--cluster-signing-key-file=${pki.caKey}`,
            "--use-service-account-credentials=false",
            "--profiling=false",
          ],
          join(logDir, "kube-controller-manager.log"),
        ),
      );
      await waitUntil(
        "kube-controller-manager /healthz",
        async () => {
          const r = await httpsGet(`https://127.0.0.1:${kcmPort}/healthz`, { rejectUnauthorized: false });
          return r.status === 200;
        },
        [etcd, apiserver, kcm],
        kcm,
        deadline,
      );
      trace("kcm");
    }

    const kubeconfigsDir = join(dir, "kubeconfigs");
    await mkdir(kubeconfigsDir, { recursive: true });
    let kubeconfigCounter = 0;

    const kubeconfigFor = async (user: string, groups: string[]): Promise<string> => {
      if (user === "") throw new Error("kubeconfigFor: user must not be empty");
      const cert = await issue(pki, "user", clientSubject(user, groups), "client_ext");
      kubeconfigCounter += 1;
      const path = join(kubeconfigsDir, `user-${kubeconfigCounter}.kubeconfig`);
      await writeFile(
        path,
        kubeconfigYaml(server, caCertPem, `user-${kubeconfigCounter}`, {
          "client-certificate-data": b64(cert.certPem),
          "client-key-data": b64(cert.keyPem),
        }),
        { mode: 0o600 },
      );
      return path;
    };

    const kubeconfigWithToken = async (token: string, name: string): Promise<string> => {
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`kubeconfigWithToken: invalid name ${JSON.stringify(name)}`);
      if (token === "") throw new Error("kubeconfigWithToken: token must not be empty");
      const path = join(kubeconfigsDir, `token-${name}.kubeconfig`);
      await writeFile(path, kubeconfigYaml(server, caCertPem, name, { token }), { mode: 0o600 });
      return path;
    };

    const adminUser = { "client-certificate-data": b64(admin.certPem), "client-key-data": b64(admin.keyPem) };
    const kubeconfig = async (
      name: string,
      o: { cluster?: Record<string, unknown>; user?: Record<string, unknown> } = {},
    ): Promise<string> => {
      if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new Error(`kubeconfig: invalid name ${JSON.stringify(name)}`);
      const path = join(kubeconfigsDir, `${name}.kubeconfig`);
      await writeFile(path, kubeconfigYaml(server, caCertPem, name, o.user ?? adminUser, o.cluster), { mode: 0o600 });
      return path;
    };

    return {
      server,
      etcdUrl,
      ...(auditLogPath !== undefined ? { auditLogPath } : {}),
      kubeconfigPath,
      dir,
      caCertPem,
      processes: procs.map((m) => ({ name: m.name, pid: m.child.pid ?? -1, logPath: m.logPath })),
      startupMs: Date.now() - t0,
      kubeconfigFor,
      kubeconfigWithToken,
      kubeconfig,
      stop,
    };
  } catch (err) {
    await stop();
    if (err instanceof StartError && !keepDir && opts.logDir === undefined) {
      err.message += "\n(set KEEP_HARNESS_DIR=1 or pass logDir to keep the full logs)";
    }
    throw err;
  }
}
