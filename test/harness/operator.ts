import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
/** Entry point of the operator CLI (run from source: Node 24 strips the types). */
export const CLI = process.env.NEXAR_OPERATOR_CLI ?? join(ROOT, "src", "cli", "main.ts");

/** A running operator process started by {@link startOperator}. */
export interface OperatorProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>` of /metrics, /healthz, /readyz. */
  httpUrl: string;
  /** Every stdout/stderr line so far (JSON log lines), for assertions and secret scans. */
  readonly lines: string[];
  /** Parsed JSON log records so far (non-JSON lines skipped). */
  logs(): Record<string, unknown>[];
  /** Resolves with the first log record matching `pred`, waiting up to `timeoutMs`. */
  waitForLog(pred: (r: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** GET /metrics text. */
  metrics(): Promise<string>;
  /** SIGTERM and wait for exit; resolves with the exit code (or signal name). */
  stop(): Promise<number | string>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  /** Sends `sig` without waiting (e.g. SIGTERM, to observe the shutdown while it happens). */
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code (or signal name) when the process exits. */
  readonly exited: Promise<number | string>;
}

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `nexar-token-operator run` as a child process against `kubeconfig`, with the
 * development flag that allows the loopback `http://` identity server, and waits until its
 * caches have synced (the "caches synced" log line).
 */
export async function startOperator(opts: {
  kubeconfig: string;
  namespaces?: string[];
  extraArgs?: string[];
  env?: Record<string, string>;
  logLevel?: string;
  /**
   * What to wait for before resolving: `workers` (default; the "caches synced; starting workers"
   * line of a leader or of a run without leader election), `synced` (caches synced, leader or
   * standby), or `none` (just spawned).
   */
  waitFor?: "workers" | "synced" | "none";
  /** Pass the development flag `--allow-insecure-token-url` (the loopback identity server is http). Default true. */
  allowInsecureTokenUrl?: boolean;
}): Promise<OperatorProcess> {
  const port = await freePort();
  const args = [
    CLI,
    "run",
    "--kubeconfig",
    opts.kubeconfig,
    ...(opts.allowInsecureTokenUrl === false ? [] : ["--allow-insecure-token-url"]),
    "--http-address",
    `127.0.0.1:${port}`,
    "--log-level",
    opts.logLevel ?? "debug",
    "--namespaces",
    (opts.namespaces ?? []).join(","),
    ...(opts.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  const waiters: { pred: (r: Record<string, unknown>) => boolean; resolve: (r: Record<string, unknown>) => void }[] =
    [];
  const parse = (l: string): Record<string, unknown> | undefined => {
    try {
      return JSON.parse(l) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  const onData = (buf: Buffer, acc: { rest: string }) => {
    acc.rest += buf.toString("utf8");
    const parts = acc.rest.split("\n");
    acc.rest = parts.pop() ?? "";
    for (const l of parts) {
      lines.push(l);
      if (process.env.OPERATOR_LOGS === "1") process.stderr.write(`[operator] ${l}\n`);
      if (waiters.length === 0) continue; // parsed only when someone waits (a bench logs thousands of lines)
      const r = parse(l);
      if (!r) continue;
      for (const w of [...waiters]) {
        if (w.pred(r)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(r);
        }
      }
    }
  };
  const out = { rest: "" };
  const err = { rest: "" };
  child.stdout?.on("data", (b: Buffer) => onData(b, out));
  child.stderr?.on("data", (b: Buffer) => onData(b, err));
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)),
  );
  process.once("exit", () => child.kill("SIGKILL"));

  const op: OperatorProcess = {
    child,
    httpUrl: `http://127.0.0.1:${port}`,
    lines,
    logs: () => lines.map(parse).filter((r): r is Record<string, unknown> => r !== undefined),
    waitForLog(pred, timeoutMs = 30_000) {
      const hit = op.logs().find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`operator log not seen in ${timeoutMs} ms; last lines:\n${lines.slice(-20).join("\n")}`));
        }, timeoutMs);
        void exited.then(() => {
          clearTimeout(t);
          reject(new Error(`operator exited; last lines:\n${lines.slice(-30).join("\n")}`));
        });
        const orig = w.resolve;
        w.resolve = (r) => {
          clearTimeout(t);
          orig(r);
        };
      });
    },
    async metrics() {
      const res = await fetch(`${op.httpUrl}/metrics`);
      return res.text();
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    signal(sig) {
      if (child.exitCode === null && child.signalCode === null) child.kill(sig);
    },
    exited,
  };
  const waitFor = opts.waitFor ?? "workers";
  try {
    if (waitFor === "workers") await op.waitForLog((r) => r.msg === "caches synced; starting workers", 60_000);
    if (waitFor === "synced")
      await op.waitForLog((r) => typeof r.msg === "string" && r.msg.startsWith("caches synced"), 60_000);
  } catch (err) {
    await op.kill(); // never leave an operator behind when its start fails
    throw err;
  }
  return op;
}
