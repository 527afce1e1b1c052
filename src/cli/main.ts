#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, InvalidArgumentError, Option } from "commander";
import { run, type RunOptions } from "./run.ts";
import { DEFAULT_FINGERPRINT_KEY_SECRET } from "../controller/fingerprint-key.ts";
import { loginCommand } from "./login.ts";
import { refreshCommand } from "./refresh.ts";
import { exitOnUsageError, kubeconfigOptions, statusCommand } from "./status.ts";
import { tokenCommand } from "./token.ts";

/** Version from package.json (read at start; the file ships in the image). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

/** Parses a boolean flag value (`true`/`false`, `1`/`0`, `yes`/`no`). @throws InvalidArgumentError otherwise. */
function parseBool(v: string | boolean): boolean {
  if (typeof v === "boolean") return v;
  const s = v.trim().toLowerCase();
  if (["true", "1", "yes", ""].includes(s)) return true;
  if (["false", "0", "no"].includes(s)) return false;
  throw new InvalidArgumentError(`expected true or false, got ${JSON.stringify(v)}`);
}

const program = new Command()
  .name("nexar-token-operator")
  .description("Keeps Nexar API OAuth 2.0 access tokens fresh inside Kubernetes Secrets.")
  .version(VERSION);
// Exit codes of every verb: 0 ok, 1 failure, 2 usage error (docs/cli.md); inherited by `run`.
program.exitOverride(exitOnUsageError);

const runCommand = program
  .command("run")
  .description("Run the controller (watches NexarTokens, writes token Secrets).");
for (const o of kubeconfigOptions()) runCommand.addOption(o);
runCommand
  .addOption(
    new Option("--namespaces <list>", "comma-separated namespaces to watch; empty = all")
      .env("NEXAR_OPERATOR_NAMESPACES")
      .default(""),
  )
  .addOption(
    new Option("--log-level <level>", "log level")
      .choices(["trace", "debug", "info", "warn", "error", "fatal", "silent"])
      .env("NEXAR_OPERATOR_LOG_LEVEL")
      .default("info"),
  )
  .addOption(
    new Option("--http-address <host:port>", "address of /metrics, /healthz and /readyz; empty = off")
      .env("NEXAR_OPERATOR_HTTP_ADDRESS")
      .default(":8080"),
  )
  .addOption(
    new Option(
      "--allow-insecure-token-url",
      "DEVELOPMENT ONLY: accept http:// token URLs (e.g. a loopback test server)",
    )
      .env("NEXAR_OPERATOR_ALLOW_INSECURE_TOKEN_URL")
      .default(false),
  )
  .addOption(
    new Option("--concurrency <n>", "NexarTokens reconciled in parallel")
      .env("NEXAR_OPERATOR_CONCURRENCY")
      .default("64"),
  )
  .addOption(
    new Option(
      "--fallback-lifetime <duration>",
      "token lifetime assumed when a response has neither expires_in nor a JWT exp (e.g. 1h)",
    ).env("NEXAR_OPERATOR_FALLBACK_LIFETIME"),
  )
  .addOption(
    new Option("--request-timeout <duration>", "token endpoint request timeout")
      .env("NEXAR_OPERATOR_REQUEST_TIMEOUT")
      .default("15s"),
  )
  .addOption(
    new Option(
      "--issuance-limits <list>",
      "per-client token issuance limits, <count>/<duration> items (Nexar's published limits by default); none = off",
    )
      .env("NEXAR_OPERATOR_ISSUANCE_LIMITS")
      .default("2/1s,200/15m,3000/12h,40000/168h"),
  )
  .addOption(
    new Option("--ca-file <path>", "extra CA bundle (PEM) trusted for the token endpoint").env(
      "NEXAR_OPERATOR_CA_FILE",
    ),
  )
  .addOption(
    new Option(
      "--leader-elect [bool]",
      "leader election on a coordination.k8s.io Lease; false runs a single active replica",
    )
      .env("NEXAR_OPERATOR_LEADER_ELECT")
      .default(true)
      .argParser(parseBool),
  )
  .addOption(new Option("--no-leader-elect", "same as --leader-elect=false"))
  .addOption(
    new Option(
      "--leader-election-namespace <ns>",
      "namespace of the leader-election Lease (default: $POD_NAMESPACE, else the service account's namespace, else default)",
    ).env("NEXAR_OPERATOR_LEADER_ELECTION_NAMESPACE"),
  )
  .addOption(
    new Option("--leader-election-id <name>", "name of the leader-election Lease")
      .env("NEXAR_OPERATOR_LEADER_ELECTION_ID")
      .default("nexar-token-operator"),
  )
  .addOption(
    new Option(
      "--fingerprint-key-secret <name>",
      "Secret in the operator's namespace (the leader-election namespace) holding the HMAC key of target Secret fingerprints; created on first start",
    )
      .env("NEXAR_OPERATOR_FINGERPRINT_KEY_SECRET")
      .default(DEFAULT_FINGERPRINT_KEY_SECRET),
  )
  .action(async (opts: RunOptions) => {
    process.exitCode = await run(opts, VERSION);
  });

program.addCommand(loginCommand());
program.addCommand(tokenCommand());
program.addCommand(refreshCommand());
program.addCommand(statusCommand());

await program.parseAsync(process.argv);
