/**
 * Shapes shared by the token-fetching code. Pure types, no I/O.
 *
 * Sources: RFC 6749 (OAuth 2.0) §4.4 (client credentials), §6 (refresh), §5.1 (successful
 * response), §2.3.1 (client password authentication); Nexar identity docs (SPEC.md §1).
 */

/**
 * The OAuth 2.0 grant used to obtain an access token.
 * - `ClientCredentials`: `grant_type=client_credentials` (RFC 6749 §4.4), Nexar's supply scope.
 * - `RefreshToken`: `grant_type=refresh_token` (RFC 6749 §6), Nexar's design scope.
 */
export type Grant = "ClientCredentials" | "RefreshToken";

/**
 * How the client authenticates to the token endpoint (RFC 6749 §2.3.1; names from RFC 7591 §2
 * `token_endpoint_auth_method`).
 * - `ClientSecretPost`: `client_id` and `client_secret` in the form body (Nexar's examples).
 * - `ClientSecretBasic`: HTTP Basic `Authorization` header (Nexar's .NET library).
 */
export type ClientAuthentication = "ClientSecretPost" | "ClientSecretBasic";

/** What to ask the token endpoint for. `clientSecret` and `refreshToken` are secrets. */
export interface TokenRequest {
  /** Absolute URL of the token endpoint, e.g. `https://identity.nexar.com/connect/token`. */
  tokenUrl: string;
  grant: Grant;
  clientAuthentication: ClientAuthentication;
  clientId: string;
  /** Secret: never logged. */
  clientSecret: string;
  /** Required for `grant: "RefreshToken"`. Secret: never logged. */
  refreshToken?: string;
  /** Requested scopes, each without spaces; sent space-joined as `scope` (RFC 6749 §3.3). */
  scopes: readonly string[];
}

/** A token as received. Times are epoch milliseconds (local clock). */
export interface IssuedToken {
  /** The access token (a secret; for Nexar a JWT). */
  accessToken: string;
  /** Always normalised to `"Bearer"` (the only type accepted, RFC 6750). */
  tokenType: string;
  /** Granted scopes: response `scope` split on spaces, else the requested scopes (RFC 6749 §5.1). */
  scopes: string[];
  /** Local clock, epoch ms, from which `expires_in` was counted (see `client.ts`: the send time). */
  receivedAtMs: number;
  /** Local clock, epoch ms, when the token stops being valid. */
  expiresAtMs: number;
  /** Where the lifetime came from: the `expires_in` field, the JWT `exp` claim, or the configured fallback. */
  lifetimeSource: "expires_in" | "jwt_exp" | "fallback";
  /** Rotated refresh token, when the response carried one (RFC 6749 §6). Secret. */
  refreshToken?: string;
}
