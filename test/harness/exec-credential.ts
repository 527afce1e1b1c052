/**
 * A kubeconfig `exec` credential plugin for tests, as `aws eks get-token` or `kubelogin` are:
 * prints an `ExecCredential` (client.authentication.k8s.io/v1) whose token is read from a file
 * (e.g. a TokenRequest token) and whose `expirationTimestamp` lies `lifetimeSeconds` ahead, and
 * appends one line to a count file per run, so a test can see when a client ran it again.
 *
 *   node exec-credential.ts <token-file> <count-file> <lifetime-seconds>
 *
 * {@link execUser} builds the kubeconfig user entry that runs it.
 */
import { appendFileSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** This script's path. */
export const EXEC_CREDENTIAL_PLUGIN = fileURLToPath(import.meta.url);

/** A kubeconfig `user` entry running this plugin with the current Node binary. */
export function execUser(tokenFile: string, countFile: string, lifetimeSeconds: number): Record<string, unknown> {
  return {
    exec: {
      apiVersion: "client.authentication.k8s.io/v1",
      command: process.execPath,
      args: [EXEC_CREDENTIAL_PLUGIN, tokenFile, countFile, String(lifetimeSeconds)],
      interactiveMode: "Never",
    },
  };
}

/** How often the plugin has run, from its count file (0 when it has not). */
export function execRuns(countFile: string): number {
  try {
    return readFileSync(countFile, "utf8").split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
}

if (process.argv[1] === EXEC_CREDENTIAL_PLUGIN) {
  const [tokenFile, countFile, lifetime] = process.argv.slice(2) as [string, string, string];
  appendFileSync(countFile, `${new Date().toISOString()}\n`);
  const expires = new Date(Date.now() + Number(lifetime) * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
  process.stdout.write(
    JSON.stringify({
      apiVersion: "client.authentication.k8s.io/v1",
      kind: "ExecCredential",
      status: { token: readFileSync(tokenFile, "utf8").trim(), expirationTimestamp: expires },
    }),
  );
}
