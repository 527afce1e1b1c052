import { hostname } from "node:os";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadKubeConfig } from "../kube/config.ts";
import type { LevelWithSilent } from "pino";
import { KubeClient } from "../kube/client.ts";
import { createLogger } from "../observability/logger.ts";
import { TokenClient } from "../oauth/index.ts";
import { parseGoDuration } from "../api/duration.ts";
import { Manager } from "../controller/manager.ts";
import { Issuer } from "../issuance/issuer.ts";
import type { PromMetrics } from "../observability/metrics.ts";
import { LeaderElector } from "../kube/leaderelection.ts";
import { SecretsApi } from "../kube/secrets.ts";
import { loadFingerprintKey } from "../controller/fingerprint-key.ts";
import { backoffScaleFromEnv } from "../renewal/index.ts";
import { KubeLeaseLock } from "../kube/lease.ts";

/** Options of `nexar-token-operator run` (flags, each with an environment variable). */
export interface RunOptions {
  /** `--kubeconfig`: one file; unset: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account. */
  kubeconfig?: string;
  /** `--context`: a context of the kubeconfig instead of its current-context. */
  context?: string;
  namespaces: string;
  logLevel: string;
  httpAddress: string;
  allowInsecureTokenUrl: boolean;
  concurrency: string;
  fallbackLifetime?: string;
  requestTimeout: string;
  caFile?: string;
  /** Leader election on a Lease (default true); off runs the workers at once. */
  leaderElect: boolean;
  /** Namespace of the Lease; empty = {@link defaultLeaderElectionNamespace}. */
  leaderElectionNamespace?: string;
  /** Name of the Lease (default `nexar-token-operator`). */
  leaderElectionId: string;
  /**
   * Name of the Secret holding the fingerprint key, in the operator's namespace (the
   * leader-election namespace); created on first start (src/controller/fingerprint-key.ts).
   */
  fingerprintKeySecret: string;
}

/** The in-cluster service-account namespace file (Kubernetes "Accessing the API from a Pod"). */
export const SERVICE_ACCOUNT_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/**
 * Namespace of the leader-election Lease when no flag gives one: `$POD_NAMESPACE` (downward
 * API), else the in-cluster service account's namespace file, else `default`.
 */
export function defaultLeaderElectionNamespace(
  env: NodeJS.ProcessEnv = process.env,
  readNamespaceFile: () => string = () => readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, "utf8"),
): string {
  if (env.POD_NAMESPACE?.trim()) return env.POD_NAMESPACE.trim();
  try {
    const ns = readNamespaceFile().trim();
    if (ns) return ns;
  } catch {
    // not in a cluster
  }
  return "default";
}

/**
 * This process's leader-election identity: `$POD_NAME`, else `<hostname>_<random UUID>` (as
 * controller-runtime does), so two processes on one host never share an identity.
 */
export function leaderIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return env.POD_NAME?.trim() || `${hostname()}_${randomUUID()}`;
}

/**
 * Runs the controller until SIGTERM/SIGINT, then shuts down gracefully: stop intake, finish
 * in-flight reconciles, release the leader Lease, exit 0. Returns the process exit code (1 at
 * once when the kubeconfig cannot be loaded or its credentials cannot be had).
 *
 * With leader election every replica runs the informers (warm caches, `/readyz` ready as
 * standby) and only the leader runs workers. A replica that loses the Lease, or cannot renew it
 * within the renew deadline, exits with code 1 AT ONCE: no reconcile in flight can write after
 * that, and the Deployment restarts the process as a standby.
 */
export async function run(o: RunOptions, version: string): Promise<number> {
  const logger = createLogger(o.logLevel as LevelWithSilent);
  let kube: KubeClient;
  try {
    kube = await KubeClient.create(await loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context }));
  } catch (err) {
    // The message names the kubeconfig file, context or user, never a credential.
    logger.fatal({ err: (err as Error).message }, "cannot connect to Kubernetes");
    return 1;
  }
  let metrics: PromMetrics | undefined;
  const timeoutMs = parseGoDuration(o.requestTimeout) * 1000;
  const tokens = new TokenClient({
    totalTimeoutMs: timeoutMs,
    headersTimeoutMs: timeoutMs,
    bodyTimeoutMs: timeoutMs,
    userAgent: `nexar-token-operator/${version}`,
    caFile: o.caFile,
    onResponse: (info) => metrics?.tokenRequest(info.status, info.durationSeconds),
  });
  const namespaces = o.namespaces
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const operatorNamespace = o.leaderElectionNamespace?.trim() || defaultLeaderElectionNamespace();
  let fingerprintKey: Buffer;
  try {
    fingerprintKey = await loadFingerprintKey(new SecretsApi(kube), operatorNamespace, o.fingerprintKeySecret);
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, "cannot load the fingerprint key");
    return 1;
  }
  // TEST-ONLY: the failure backoff scale (1 in production), read here once and passed down.
  const backoffScale = backoffScaleFromEnv(process.env);
  const issuer = Issuer.fromFlags(tokens, o, logger, { backoffScale });
  const manager = new Manager({
    kube,
    tokens: issuer,
    logger,
    namespaces,
    concurrency: Math.max(1, Number(o.concurrency) || 64),
    httpAddress: o.httpAddress,
    version,
    instance: process.env.POD_NAME ?? hostname(),
    reconciler: {
      allowInsecureTokenUrl: o.allowInsecureTokenUrl,
      fallbackLifetimeSeconds: o.fallbackLifetime ? parseGoDuration(o.fallbackLifetime) : undefined,
      recheckMs: 60_000,
      fingerprintKey,
      backoffScale,
    },
    onMetrics: (m) => (metrics = m),
  });
  manager.metrics.instrumentIssuance(issuer);
  if (o.allowInsecureTokenUrl)
    logger.warn("http:// token URLs are allowed (development flag); never use this in production");
  logger.info({ version, namespaces: namespaces.length ? namespaces : "all", server: kube.server }, "starting");

  const done = new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      logger.info({ signal: sig }, "shutting down");
      resolve();
    };
    process.once("SIGTERM", () => onSignal("SIGTERM"));
    process.once("SIGINT", () => onSignal("SIGINT"));
  });
  let elector: LeaderElector | undefined;
  const synced = manager.startInformers();
  if (o.leaderElect) {
    elector = new LeaderElector({
      lock: new KubeLeaseLock(kube, operatorNamespace, o.leaderElectionId),
      identity: leaderIdentity(),
      logger,
      onStartedLeading: () => void synced.then(() => manager.startWorkers()),
      onStoppedLeading: (reason) => {
        // Stop writing at once: exiting is the only stop that also cuts reconciles in flight.
        logger.fatal({ reason }, "leadership lost; exiting");
        process.exit(1);
      },
    });
    elector.start();
    void synced.then(() => {
      if (!elector?.isLeader()) logger.info("caches synced; standby until this replica leads");
    });
  } else {
    logger.info("leader election disabled");
    void synced.then(() => manager.startWorkers());
  }
  await Promise.race([synced, done]);
  await done;
  issuer.close(); // requests queued by the issuance limiter fail now instead of holding up the shutdown
  await manager.drain(); // stop intake; in-flight reconciles finish their writes
  if (elector) {
    await elector.release(); // only now may a standby take over (client-go ReleaseOnCancel)
    manager.metrics.setLeader(false);
  }
  await manager.stop();
  await tokens.close();
  await kube.close();
  logger.info("stopped");
  // Safety net: nothing left should keep the process alive, but never hang past shutdown.
  setTimeout(() => process.exit(), 2_000).unref();
  return 0;
}
