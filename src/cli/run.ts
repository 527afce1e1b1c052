import { hostname } from "node:os";
import { KubeConfig } from "@kubernetes/client-node";
import type { LevelWithSilent } from "pino";
import { KubeClient } from "../kube/client.ts";
import { createLogger } from "../observability/logger.ts";
import { TokenClient } from "../oauth/index.ts";
import { parseGoDuration } from "../api/duration.ts";
import { Manager } from "../controller/manager.ts";
import { Issuer } from "../controller/issuer.ts";
import type { PromMetrics } from "../observability/metrics.ts";

/** Options of `nexar-token-operator run` (flags, each with an environment variable). */
export interface RunOptions {
  kubeconfig?: string;
  namespaces: string;
  logLevel: string;
  httpAddress: string;
  allowInsecureTokenUrl: boolean;
  concurrency: string;
  fallbackLifetime?: string;
  requestTimeout: string;
  caFile?: string;
}

/**
 * Runs the controller until SIGTERM/SIGINT, then shuts down gracefully: stop intake, finish
 * in-flight reconciles, exit 0. Returns the process exit code.
 */
export async function run(o: RunOptions, version: string): Promise<number> {
  const logger = createLogger(o.logLevel as LevelWithSilent);
  const kc = new KubeConfig();
  if (o.kubeconfig) kc.loadFromFile(o.kubeconfig);
  else kc.loadFromDefault();
  const kube = await KubeClient.create(kc);
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
  const manager = new Manager({
    kube,
    tokens: new Issuer(tokens),
    logger,
    namespaces,
    concurrency: Math.max(1, Number(o.concurrency) || 4),
    httpAddress: o.httpAddress,
    version,
    instance: process.env.POD_NAME ?? hostname(),
    reconciler: {
      allowInsecureTokenUrl: o.allowInsecureTokenUrl,
      fallbackLifetimeSeconds: o.fallbackLifetime ? parseGoDuration(o.fallbackLifetime) : undefined,
      recheckMs: 60_000,
    },
    onMetrics: (m) => (metrics = m),
  });
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
  await Promise.race([manager.start(), done]);
  await done;
  await manager.stop();
  await tokens.close();
  await kube.close();
  logger.info("stopped");
  return 0;
}
