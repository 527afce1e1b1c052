/**
 * `nexar-token-operator refresh <name>`: asks the operator for a new token now — sets the
 * refresh-requested annotation (SPEC §3.2) to the current time — and waits until the operator
 * reports it acted on exactly that request (`status.lastRefreshRequest` equals the value and
 * `Ready=True`).
 */
import type { Command } from "commander";
import { Option } from "commander";
import { ANNOTATION_REFRESH_REQUESTED_AT } from "../api/constants.ts";
import type { NexarToken } from "../api/types.ts";
import { KubeApiError } from "../kube/client.ts";
import { nexarTokenPath } from "../kube/paths.ts";
import { CREDENTIAL_REASONS } from "../renewal/backoff.ts";
import {
  CliError,
  EXIT_OK,
  connectKube,
  durationFlagMs,
  newVerb,
  runAction,
  usageError,
  withKubeOptions,
  type KubeFlags,
} from "./status.ts";

/** Options of `refresh`. */
export interface RefreshOptions extends KubeFlags {
  /** Go duration, e.g. `60s`. */
  timeout: string;
}

/** Verdict on a NexarToken after a refresh request. */
export type RefreshProgress =
  | { state: "done"; expiresAt?: string; secretName?: string }
  | { state: "failed"; reason: string; message: string }
  | { state: "waiting"; reason?: string; message?: string };

/**
 * Judges `nt` against the request `value` (the annotation just set) and the status seen before
 * it was set (`before`). Pure.
 * - done: `status.lastRefreshRequest === value` and Ready=True;
 * - failed: a failure recorded after the request (failedAttempts or lastFailureTime changed)
 *   while Ready=False with a credential-class reason (no quick retry will follow);
 * - otherwise waiting (transient failures are retried by the operator with the request still pending).
 */
export function judgeRefresh(
  nt: NexarToken,
  value: string,
  before: { failedAttempts?: number; lastFailureTime?: string },
): RefreshProgress {
  const s = nt.status ?? {};
  const ready = s.conditions?.find((c) => c.type === "Ready");
  if (s.lastRefreshRequest === value && ready?.status === "True") {
    return { state: "done", expiresAt: s.expiresAt, secretName: s.secretName };
  }
  const newFailure =
    (s.failedAttempts ?? 0) > 0 &&
    (s.failedAttempts !== before.failedAttempts || s.lastFailureTime !== before.lastFailureTime);
  if (newFailure && ready?.status === "False" && CREDENTIAL_REASONS.has(ready.reason ?? "")) {
    return { state: "failed", reason: ready.reason ?? "", message: ready.message ?? "" };
  }
  return { state: "waiting", reason: ready?.reason, message: ready?.message };
}

/**
 * Requests a refresh of NexarToken `name` and waits for it. Polls every `pollMs` milliseconds.
 * Resolves to the exit code; progress goes to stderr, the result line to `out`.
 * @throws CliError: usage (2) for a bad `--timeout`; failure (1) when the NexarToken does not
 *   exist or is deleted, the refresh fails with a credential-class reason, or on timeout.
 */
export async function refresh(
  name: string,
  o: RefreshOptions,
  out: (s: string) => void = (s) => process.stdout.write(s),
  pollMs = 500,
): Promise<number> {
  const timeoutMs = durationFlagMs("--timeout", o.timeout);
  if (!(timeoutMs > 0)) throw usageError("--timeout must be positive");
  const ctx = await connectKube(o);
  const path = nexarTokenPath(ctx.namespace, name);
  const id = `${ctx.namespace}/${name}`;
  const get = async (): Promise<NexarToken> => {
    try {
      return await ctx.kube.request<NexarToken>("GET", path);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) throw new CliError(`NexarToken ${id} not found`);
      throw err;
    }
  };
  try {
    const before = (await get()).status ?? {};
    const value = new Date().toISOString();
    await ctx.kube.request("PATCH", path, {
      body: { metadata: { annotations: { [ANNOTATION_REFRESH_REQUESTED_AT]: value } } },
      contentType: "application/merge-patch+json",
    });
    process.stderr.write(
      `Requested a refresh of NexarToken ${id} (${ANNOTATION_REFRESH_REQUESTED_AT}=${value}); waiting up to ${o.timeout} ...\n`,
    );
    const deadline = Date.now() + timeoutMs;
    let last: RefreshProgress = { state: "waiting" };
    for (;;) {
      last = judgeRefresh(await get(), value, before);
      if (last.state === "done") {
        out(
          `NexarToken ${id} refreshed: Secret ${last.secretName ?? "?"} holds a token valid until ${last.expiresAt ?? "?"}\n`,
        );
        return EXIT_OK;
      }
      if (last.state === "failed")
        throw new CliError(`refresh of NexarToken ${id} failed: ${last.reason}: ${last.message}`);
      if (Date.now() >= deadline) break;
      await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(0, deadline - Date.now()))));
    }
    const state = last.reason ? ` (Ready reason ${last.reason}${last.message ? `: ${last.message}` : ""})` : "";
    throw new CliError(
      `timed out after ${o.timeout} waiting for the operator to refresh NexarToken ${id}${state}; is the operator running?`,
    );
  } finally {
    await ctx.kube.close();
  }
}

/** The `refresh` verb. */
export function refreshCommand(): Command {
  return withKubeOptions(
    newVerb("refresh", "Ask the operator for a new token for a NexarToken now, and wait until it is in the Secret."),
  )
    .argument("<name>", "NexarToken name")
    .addOption(new Option("--timeout <duration>", "how long to wait (Go duration)").default("60s"))
    .addHelpText("after", "\nExit codes: 0 refreshed, 1 failure (not found, refresh failed, timeout), 2 usage error.")
    .action(async (name: string, opts: RefreshOptions) => runAction(() => refresh(name, opts)));
}
