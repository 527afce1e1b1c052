import { pino, type Logger, type LevelWithSilent } from "pino";

export type { Logger };

/**
 * Paths pino removes from every log record. Secret values must never reach a log line
 * (SPEC §3.9); the code never logs them on purpose, and this list is the second line of
 * defence for objects that might carry one (a Secret's `data`, a token response, headers).
 */
export const REDACT_PATHS: readonly string[] = [
  "data",
  "stringData",
  "*.data",
  "*.stringData",
  "access_token",
  "refresh_token",
  "client_secret",
  "*.access_token",
  "*.refresh_token",
  "*.client_secret",
  "accessToken",
  "refreshToken",
  "clientSecret",
  "*.accessToken",
  "*.refreshToken",
  "*.clientSecret",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
];

/**
 * Creates the process logger: structured JSON lines on stdout (pino), with secret-bearing
 * paths removed. `level` is a pino level name (`trace`…`fatal`, or `silent`).
 */
export function createLogger(level: LevelWithSilent = "info", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { app: "nexar-token-operator" },
    redact: { paths: [...REDACT_PATHS], remove: true },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
