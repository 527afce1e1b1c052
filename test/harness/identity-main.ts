// Manual runner for the test identity server:
//   node test/harness/identity-main.ts --client-id my-app --client-secret-env MY_SECRET [--auth-method client_secret_basic]
//        [--port 8443] [--lifetime 86400] [--scopes supply.domain,design.domain]
// Flags fall back to env: IDENTITY_CLIENT_ID, IDENTITY_CLIENT_SECRET, IDENTITY_AUTH_METHOD, IDENTITY_PORT,
// IDENTITY_LIFETIME_SECONDS, IDENTITY_SCOPES. The secret is read from the environment only (never a flag, so it does
// not show in `ps`) and never printed. Prints the URLs as JSON on stdout; runs until SIGINT/SIGTERM.
import { parseArgs } from "node:util";
import { startIdentityServer } from "./identity.ts";
import type { IdentityClient } from "./identity.ts";

const { values } = parseArgs({
  options: {
    "client-id": { type: "string" },
    "client-secret-env": { type: "string", default: "IDENTITY_CLIENT_SECRET" },
    "auth-method": { type: "string" },
    port: { type: "string" },
    lifetime: { type: "string" },
    scopes: { type: "string" },
  },
});

function fail(message: string): never {
  console.error(`identity-main: ${message}`);
  process.exit(2);
}

const clientId = values["client-id"] ?? process.env["IDENTITY_CLIENT_ID"];
const secretEnv = values["client-secret-env"] ?? "IDENTITY_CLIENT_SECRET";
const clientSecret = process.env[secretEnv];
const authMethod = values["auth-method"] ?? process.env["IDENTITY_AUTH_METHOD"] ?? "client_secret_post";
const portText = values.port ?? process.env["IDENTITY_PORT"] ?? "0";
const lifetimeText = values.lifetime ?? process.env["IDENTITY_LIFETIME_SECONDS"] ?? "86400";
const scopesText = values.scopes ?? process.env["IDENTITY_SCOPES"];

if (!clientId) fail("a client id is required (--client-id or IDENTITY_CLIENT_ID)");
if (!clientSecret) fail(`a client secret is required in the environment variable ${secretEnv}`);
if (authMethod !== "client_secret_post" && authMethod !== "client_secret_basic") {
  fail("--auth-method must be client_secret_post or client_secret_basic");
}
const port = Number(portText);
const lifetime = Number(lifetimeText);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail("port must be an integer 0..65535");
if (!Number.isSafeInteger(lifetime) || lifetime <= 0) fail("lifetime must be a positive integer (seconds)");

const client: IdentityClient = { clientId, clientSecret, authMethod };
if (scopesText) client.scopes = scopesText.split(/[,\s]+/).filter((s) => s !== "");

const server = await startIdentityServer({
  port,
  accessTokenLifetimeSeconds: lifetime,
  clients: [client],
});
console.log(
  JSON.stringify({
    issuer: server.issuer,
    tokenUrl: server.tokenUrl,
    authorizationUrl: server.authorizationUrl,
    jwksUrl: server.jwksUrl,
    clientId,
  }),
);

let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  void server.stop().then(() => process.exit(0));
};
process.on("SIGINT", shutdown);
process.on("SIGTERM", shutdown);
