/**
 * Runs the `nexar-token-operator` CLI as a child process for integration tests, with a clean
 * environment: nothing inherited that the CLI reads (`NEXAR_*`, `KUBECONFIG`, proxy variables).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { CLI } from "./operator.ts";

/** The outcome of a CLI run. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A CLI process from {@link runCli}. */
export interface CliRun {
  child: ChildProcess;
  /** Resolves when the process has exited and its output is complete. */
  done: Promise<CliResult>;
  /** Resolves with the first match of `re` in stderr so far; rejects after `timeoutMs` (default 30 s) or at exit without one. */
  waitForStderr(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
}

const INHERITED_OUT = /^(NEXAR_|KUBECONFIG$|(https?|no)_proxy$)/i;

/**
 * Starts the CLI with `args` and the environment `env` added to the clean one.
 * @param command the executable and its leading arguments; default this checkout's CLI with the current Node.
 */
export function runCli(
  args: string[],
  env: Record<string, string> = {},
  command: string[] = [process.execPath, CLI],
): CliRun {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !INHERITED_OUT.test(k)));
  const [file, ...lead] = command as [string, ...string[]];
  const child = spawn(file, [...lead, ...args], { env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (b: Buffer) => (stdout += b.toString("utf8")));
  child.stderr?.on("data", (b: Buffer) => (stderr += b.toString("utf8")));
  const done = new Promise<CliResult>((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
  return {
    child,
    done,
    async waitForStderr(re, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = re.exec(stderr);
        if (m) return m;
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`no match for ${String(re)} on stderr; stderr:\n${stderr}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

/** Runs the CLI to the end (see {@link runCli}). */
export function cli(args: string[], env: Record<string, string> = {}, command?: string[]): Promise<CliResult> {
  return runCli(args, env, command).done;
}
