#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, Option } from "commander";
import { run, type RunOptions } from "./run.ts";

/** Version from package.json (read at start; the file ships in the image). */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;

const program = new Command()
  .name("nexar-token-operator")
  .description("Keeps Nexar API OAuth 2.0 access tokens fresh inside Kubernetes Secrets.")
  .version(VERSION);

program
  .command("run")
  .description("Run the controller (watches NexarTokens, writes token Secrets).")
  .addOption(
    new Option("--kubeconfig <path>", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)").env(
      "KUBECONFIG",
    ),
  )
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
      .default("4"),
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
    new Option("--ca-file <path>", "extra CA bundle (PEM) trusted for the token endpoint").env(
      "NEXAR_OPERATOR_CA_FILE",
    ),
  )
  .action(async (opts: RunOptions) => {
    process.exitCode = await run(opts, VERSION);
  });

await program.parseAsync(process.argv);
