/**
 * `nexar-token-operator token`: fetches one access token with the client credentials grant
 * (RFC 6749 §4.4; Nexar's supply scope) and prints it — for a quick test of credentials, or a
 * script. Uses the operator's own OAuth client (src/oauth), so errors read the same.
 */
import { Option, type Command } from "commander";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { DEFAULT_TOKEN_URL } from "../api/constants.ts";
import type { Secret } from "../kube/client.ts";
import { secretPath } from "../kube/paths.ts";
import { TokenClient, TokenEndpointError, type IssuedToken } from "../oauth/index.ts";
import type { ClientAuthentication } from "../oauth/types.ts";
import { secretValue } from "../controller/credentials.ts";
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

/** Options of `token` as commander parses them. */
export interface TokenOptions extends KubeFlags {
  clientId?: string;
  clientSecret?: string;
  fromSecret?: string;
  clientIdKey: string;
  clientSecretKey: string;
  scopes: string;
  tokenUrl: string;
  clientAuthentication: ClientAuthentication;
  allowInsecureTokenUrl: boolean;
  timeout: string;
  json: boolean;
  decode: boolean;
  /** Extra CA bundle (PEM) trusted for the token endpoint, besides Node's roots. */
  caFile?: string;
}

/** Where the client id and secret come from. */
export type CredentialSource =
  | { kind: "values"; clientId: string; clientSecret: string }
  | { kind: "secret"; namespace: string | undefined; name: string };

/**
 * Resolves the credential source. `--from-secret [namespace/]name` wins over the environment;
 * combining it with `--client-id`/`--client-secret` given as flags is a usage error. Pure.
 * @param sources commander's value source per option (`"cli"`, `"env"`, `"default"`, undefined).
 * @throws CliError (usage) when nothing (or a half) is given.
 */
export function credentialSource(
  o: Pick<TokenOptions, "clientId" | "clientSecret" | "fromSecret">,
  sources: { clientId?: string; clientSecret?: string } = {},
): CredentialSource {
  if (o.fromSecret !== undefined) {
    if (sources.clientId === "cli" || sources.clientSecret === "cli") {
      throw usageError("--from-secret cannot be combined with --client-id or --client-secret");
    }
    const parts = o.fromSecret.split("/");
    if (parts.length > 2 || parts.some((p) => !/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(p))) {
      throw usageError("--from-secret must be NAME or NAMESPACE/NAME");
    }
    return parts.length === 2
      ? { kind: "secret", namespace: parts[0], name: parts[1] as string }
      : { kind: "secret", namespace: undefined, name: parts[0] as string };
  }
  const clientId = o.clientId?.trim();
  const clientSecret = o.clientSecret?.trim();
  if (!clientId || !clientSecret) {
    throw usageError(
      "client credentials are required: --client-id and --client-secret (or NEXAR_CLIENT_ID and NEXAR_CLIENT_SECRET), or --from-secret",
    );
  }
  return { kind: "values", clientId, clientSecret };
}

/** The `--json` document: RFC 6749 §5.1 field names, plus `expires_at` (RFC 3339, UTC). Holds the token. */
export function tokenJson(t: IssuedToken, nowMs: number): Record<string, unknown> {
  return {
    access_token: t.accessToken,
    token_type: t.tokenType,
    expires_in: Math.max(0, Math.round((t.expiresAtMs - nowMs) / 1000)),
    expires_at: new Date(t.expiresAtMs).toISOString().replace(/\.\d{3}Z$/, "Z"),
    scope: t.scopes.join(" "),
  };
}

/**
 * The `--decode` document: the JWT's protected header and claims (RFC 7519), decoded without a
 * signature check, and never the signature. Pure.
 * @throws CliError when the access token is not a JWT.
 */
export function decodeToken(accessToken: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  try {
    return {
      header: decodeProtectedHeader(accessToken) as Record<string, unknown>,
      claims: decodeJwt(accessToken) as Record<string, unknown>,
    };
  } catch {
    throw new CliError("the access token is not a JWT, so --decode cannot show claims");
  }
}

/**
 * Fetches one token and writes it to `out`: the bare token, or `--json`, or `--decode` (both:
 * the JSON with `header` and `claims` added). Resolves to the exit code.
 * @throws CliError: usage (2) for bad options; failure (1) for a token endpoint or API error.
 */
export async function token(
  o: TokenOptions,
  sources: { clientId?: string; clientSecret?: string } = {},
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  const source = credentialSource(o, sources);
  let url: URL;
  try {
    url = new URL(o.tokenUrl);
  } catch {
    throw usageError("--token-url is not an absolute URL");
  }
  if (url.protocol !== "https:" && !(url.protocol === "http:" && o.allowInsecureTokenUrl)) {
    throw usageError("--token-url must be https:// (--allow-insecure-token-url allows http:// for local testing)");
  }
  const scopes = [...new Set(o.scopes.split(/[\s,]+/).filter(Boolean))];
  if (scopes.length === 0) throw usageError("--scopes is empty");
  const timeoutMs = durationFlagMs("--timeout", o.timeout);

  let clientId: string;
  let clientSecret: string;
  if (source.kind === "values") {
    ({ clientId, clientSecret } = source);
  } else {
    const ctx = await connectKube({ ...o, namespace: source.namespace ?? o.namespace });
    try {
      const secret = await ctx.kube.getOrUndefined<Secret>(secretPath(ctx.namespace, source.name));
      if (!secret) throw new CliError(`Secret ${ctx.namespace}/${source.name} not found`);
      const id = secretValue(secret, o.clientIdKey);
      const sec = secretValue(secret, o.clientSecretKey);
      const missing = [id ? undefined : o.clientIdKey, sec ? undefined : o.clientSecretKey].filter(Boolean);
      if (missing.length > 0) {
        throw new CliError(`Secret ${ctx.namespace}/${source.name} lacks non-empty key(s): ${missing.join(", ")}`);
      }
      clientId = id as string;
      clientSecret = sec as string;
    } finally {
      await ctx.kube.close();
    }
  }

  const client = new TokenClient({
    totalTimeoutMs: timeoutMs,
    headersTimeoutMs: timeoutMs,
    bodyTimeoutMs: timeoutMs,
    userAgent: "nexar-token-operator-cli",
    caFile: o.caFile,
  });
  let issued: IssuedToken;
  try {
    issued = await client.fetchToken({
      tokenUrl: url.href,
      grant: "ClientCredentials",
      clientAuthentication: o.clientAuthentication,
      clientId,
      clientSecret,
      scopes,
    });
  } catch (err) {
    if (err instanceof TokenEndpointError) throw new CliError(`token request failed: ${err.reason}: ${err.message}`);
    throw err;
  } finally {
    await client.close();
  }
  if (!o.json && !o.decode) {
    out(`${issued.accessToken}\n`);
    return EXIT_OK;
  }
  const doc: Record<string, unknown> = o.json ? tokenJson(issued, Date.now()) : {};
  if (o.decode) Object.assign(doc, decodeToken(issued.accessToken));
  out(`${JSON.stringify(doc, null, 2)}\n`);
  return EXIT_OK;
}

/** The `token` verb. */
export function tokenCommand(): Command {
  const cmd = withKubeOptions(
    newVerb("token", "Fetch one access token with the client credentials grant and print it."),
    'namespace for --from-secret NAME (default: the kubeconfig context\'s, else "default")',
  )
    .addOption(new Option("--client-id <id>", "client id").env("NEXAR_CLIENT_ID"))
    .addOption(
      new Option("--client-secret <secret>", "client secret (prefer the environment variable)").env(
        "NEXAR_CLIENT_SECRET",
      ),
    )
    .addOption(new Option("--from-secret <[namespace/]name>", "read the client id and secret from this Secret"))
    .addOption(new Option("--client-id-key <key>", "--from-secret key of the client id").default("clientId"))
    .addOption(
      new Option("--client-secret-key <key>", "--from-secret key of the client secret").default("clientSecret"),
    )
    .addOption(new Option("--scopes <list>", "space- or comma-separated scopes").default("supply.domain"))
    .addOption(new Option("--token-url <url>", "token endpoint").default(DEFAULT_TOKEN_URL))
    .addOption(
      new Option("--client-authentication <method>", "how the secret is sent")
        .choices(["ClientSecretPost", "ClientSecretBasic"])
        .default("ClientSecretPost"),
    )
    .addOption(new Option("--allow-insecure-token-url", "DEVELOPMENT ONLY: accept an http:// token URL").default(false))
    .addOption(
      new Option("--ca-file <path>", "extra CA bundle (PEM) trusted for the token endpoint").env(
        "NEXAR_OPERATOR_CA_FILE",
      ),
    )
    .addOption(new Option("--timeout <duration>", "request timeout (Go duration)").default("15s"))
    .addOption(
      new Option("--json", "print a JSON document (access_token, token_type, expires_in, expires_at, scope)").default(
        false,
      ),
    )
    .addOption(new Option("--decode", "print the JWT header and claims (the signature is not shown)").default(false))
    .addHelpText(
      "after",
      "\nThe token goes to stdout; the client secret is never printed.\nExit codes: 0 printed, 1 failure (token endpoint or API error), 2 usage error.",
    );
  return cmd.action(async (opts: TokenOptions) =>
    runAction(() =>
      token(opts, {
        clientId: cmd.getOptionValueSource("clientId"),
        clientSecret: cmd.getOptionValueSource("clientSecret"),
      }),
    ),
  );
}
