/**
 * `nexar-token-operator status`: a table of NexarTokens (Ready, reason, expiry, renewal), and the
 * pieces every client verb shares: exit codes, errors, kubectl's connection options
 * (`--kubeconfig`, `--context`, `--as`, `--as-group`, `-n`) and the connection to the Kubernetes API.
 */
import { parseGoDuration } from "../api/duration.ts";
import { loadKubeConfig } from "../kube/config.ts";
import { Command, Option, type CommanderError } from "commander";
import { KubeApiError, KubeClient } from "../kube/client.ts";
import { nexarTokenPath } from "../kube/paths.ts";
import type { NexarToken, NexarTokenList } from "../api/types.ts";

/** Exit code: success. */
export const EXIT_OK = 0;
/** Exit code: the operation failed (API error, token endpoint error, timeout, denied consent …). */
export const EXIT_FAILURE = 1;
/** Exit code: bad command line (unknown flag, missing argument, invalid value). */
export const EXIT_USAGE = 2;

/**
 * An error the CLI reports as `error: <message>` on stderr and turns into an exit code. The
 * message must never contain a secret (token, client secret, refresh token).
 */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILURE) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/** A {@link CliError} with {@link EXIT_USAGE}. */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE);
}

/**
 * The value of a duration flag (Go duration syntax, e.g. `90s`, `2m`) in milliseconds.
 * @throws CliError ({@link EXIT_USAGE}) naming `flag` when it does not parse.
 */
export function durationFlagMs(flag: string, raw: string): number {
  try {
    return parseGoDuration(raw) * 1000;
  } catch (err) {
    throw usageError(`${flag}: ${(err as Error).message}`);
  }
}

/**
 * Commander exit handler shared by every command: help and `--version` exit 0, every parse
 * error (unknown option or command, missing argument, invalid choice) exits {@link EXIT_USAGE}.
 */
export function exitOnUsageError(err: CommanderError): never {
  process.exit(err.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
}

/** A new verb with the shared exit-code handling and help-after-error. */
export function newVerb(name: string, description: string): Command {
  return new Command(name)
    .description(description)
    .exitOverride(exitOnUsageError)
    .showHelpAfterError("(add --help for usage)");
}

/** kubectl's connection options as commander parses them ({@link withKubeOptions}). */
export interface KubeFlags {
  /** `--kubeconfig`: one file; unset: `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service account. */
  kubeconfig?: string;
  /** `--context`: a context of the kubeconfig instead of its current-context. */
  context?: string;
  /** `--as`: user to impersonate. */
  as?: string;
  /** `--as-group`: groups to impersonate (repeatable; needs `--as`). */
  asGroup?: string[];
  /** `-n, --namespace`. */
  namespace?: string;
}

/** `--kubeconfig` and `--context`, shared by every verb that reaches Kubernetes (`run` too). */
export function kubeconfigOptions(): Option[] {
  return [
    new Option("--kubeconfig <path>", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)"),
    new Option("--context <name>", "kubeconfig context to use (default: its current-context)"),
  ];
}

/**
 * Adds kubectl's connection options to `cmd`: `--kubeconfig <path>`, `--context <name>`,
 * `--as <user>`, `--as-group <group>` (repeatable) and `-n, --namespace <ns>`.
 */
export function withKubeOptions(
  cmd: Command,
  namespaceHelp = 'namespace (default: the kubeconfig context\'s, else "default")',
): Command {
  for (const o of kubeconfigOptions()) cmd.addOption(o);
  return cmd
    .addOption(new Option("--as <user>", "user to impersonate for the operation"))
    .addOption(
      new Option("--as-group <group>", "group to impersonate (repeatable; needs --as)").argParser(
        (v: string, prev: string[] = []) => [...prev, v],
      ),
    )
    .addOption(new Option("-n, --namespace <ns>", namespaceHelp));
}

/** A connection to the Kubernetes API and the namespace to use. */
export interface KubeContext {
  kube: KubeClient;
  /** `--namespace`, else the current kubeconfig context's namespace, else `"default"`. */
  namespace: string;
  /** API server URL (for messages). */
  server: string;
}

/**
 * Connects as kubectl would with the same flags: the kubeconfig (`--kubeconfig`, else
 * `$KUBECONFIG`, `~/.kube/config` or the in-cluster service account), its `--context`, and
 * impersonation (`--as`, `--as-group`).
 * @throws CliError: usage (2) for `--as-group` without `--as`; failure (1) when the kubeconfig
 *   cannot be loaded or its credentials cannot be had (the message names file, context and user,
 *   never a credential).
 */
export async function connectKube(o: KubeFlags): Promise<KubeContext> {
  if (o.asGroup?.length && !o.as) throw usageError("--as-group needs --as (a user to impersonate)");
  let kc;
  try {
    kc = await loadKubeConfig({ kubeconfig: o.kubeconfig, context: o.context });
  } catch (err) {
    throw new CliError(`cannot load the kubeconfig: ${(err as Error).message}`);
  }
  let kube: KubeClient;
  try {
    kube = await KubeClient.create(kc, { impersonate: { user: o.as, groups: o.asGroup } });
  } catch (err) {
    throw new CliError(`cannot connect to Kubernetes: ${(err as Error).message}`);
  }
  const contextNs = kc.getContextObject(kc.getCurrentContext())?.namespace;
  return { kube, namespace: o.namespace || contextNs || "default", server: kube.server };
}

/**
 * Wraps a verb's action: runs it, closes nothing itself, and maps errors to exit codes —
 * {@link CliError} by its code, Kubernetes API errors and anything else to {@link EXIT_FAILURE},
 * printing `error: <message>` to stderr. Sets `process.exitCode`.
 */
export async function runAction(fn: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await fn()) ?? EXIT_OK;
  } catch (err) {
    process.exitCode = err instanceof CliError ? err.exitCode : EXIT_FAILURE;
    process.stderr.write(`error: ${describeError(err)}\n`);
  }
}

/** A one-line, secret-free description of an error thrown by the adapters. */
export function describeError(err: unknown): string {
  if (err instanceof CliError || err instanceof KubeApiError) return err.message;
  if (err instanceof Error) {
    const code = (err as Error & { code?: unknown }).code;
    const cause = (err as Error & { cause?: { code?: unknown; message?: string } }).cause;
    const detail = typeof cause?.code === "string" ? cause.code : typeof code === "string" ? code : undefined;
    return detail && !err.message.includes(detail) ? `${err.message} (${detail})` : err.message;
  }
  return String(err);
}

/** One row of the `status` table. */
export interface StatusRow {
  namespace: string;
  name: string;
  /** Ready condition status (`True`, `False`, `Unknown`), `-` when there is none yet. */
  ready: string;
  /** Ready condition reason, `-` when none. */
  reason: string;
  /** `status.expiresAt` (RFC 3339), `-` when none. */
  expires: string;
  /** `status.renewalTime` (RFC 3339), `-` when none. */
  renewal: string;
}

/** The table row of a NexarToken. Pure. */
export function statusRow(nt: NexarToken): StatusRow {
  const ready = nt.status?.conditions?.find((c) => c.type === "Ready");
  return {
    namespace: nt.metadata.namespace ?? "",
    name: nt.metadata.name ?? "",
    ready: ready?.status ?? "-",
    reason: ready?.reason || "-",
    expires: nt.status?.expiresAt ?? "-",
    renewal: nt.status?.renewalTime ?? "-",
  };
}

/**
 * Formats rows as a kubectl-style table: header `NAMESPACE NAME READY REASON EXPIRES RENEWAL`,
 * columns left-aligned and separated by at least three spaces, rows sorted by namespace then
 * name, one trailing newline. Pure.
 */
export function formatStatusTable(rows: readonly StatusRow[]): string {
  const header = ["NAMESPACE", "NAME", "READY", "REASON", "EXPIRES", "RENEWAL"];
  const sorted = [...rows].sort((a, b) => a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name));
  const cells = [header, ...sorted.map((r) => [r.namespace, r.name, r.ready, r.reason, r.expires, r.renewal])];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length)));
  return (
    cells
      .map((row) =>
        row
          .map((c, i) => (i === row.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
          .join("")
          .trimEnd(),
      )
      .join("\n") + "\n"
  );
}

/** Options of `status`. */
export interface StatusOptions extends KubeFlags {
  allNamespaces?: boolean;
}

/**
 * Lists NexarTokens of one namespace (or all with `allNamespaces`) and writes the table to
 * `out`. Resolves to the exit code ({@link EXIT_OK} also when some are not Ready; the table says so).
 * @throws CliError / KubeApiError on API failures (e.g. the CRD is not installed: 404).
 */
export async function status(
  o: StatusOptions,
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  if (o.allNamespaces && o.namespace) throw usageError("--namespace and --all-namespaces are mutually exclusive");
  const ctx = await connectKube(o);
  try {
    let list: NexarTokenList;
    try {
      list = await ctx.kube.request<NexarTokenList>("GET", nexarTokenPath(o.allNamespaces ? undefined : ctx.namespace));
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) {
        throw new CliError("the NexarToken API (nexartokens.nexar-operator.io) is not installed in this cluster");
      }
      throw err;
    }
    if (list.items.length === 0) {
      process.stderr.write(
        o.allNamespaces ? "No NexarTokens found.\n" : `No NexarTokens found in namespace "${ctx.namespace}".\n`,
      );
      return EXIT_OK;
    }
    out(formatStatusTable(list.items.map(statusRow)));
    return EXIT_OK;
  } finally {
    await ctx.kube.close();
  }
}

/** The `status` verb. */
export function statusCommand(): Command {
  return withKubeOptions(newVerb("status", "Show NexarTokens: Ready, reason, token expiry and renewal time."))
    .option("-A, --all-namespaces", "list NexarTokens of every namespace")
    .addHelpText(
      "after",
      "\nExit codes: 0 listed (even when some are not Ready), 1 failure (API error), 2 usage error.",
    )
    .action(async (opts: StatusOptions) => runAction(() => status(opts)));
}
