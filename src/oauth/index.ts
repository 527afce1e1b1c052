/**
 * Public API of src/oauth: how a token is fetched. `client.ts` is the only file doing I/O.
 */
export type { ClientAuthentication, Grant, IssuedToken, TokenRequest } from "./types.ts";
export { basicAuthorization, buildTokenRequest, formUrlEncode, secretsOf } from "./request.ts";
export type { BuiltTokenRequest } from "./request.ts";
export { DEFAULT_MAX_LIFETIME_SECONDS, parseTokenResponse } from "./response.ts";
export type { TokenResponseInput } from "./response.ts";
export {
  classifyHttpFailure,
  classifyNetworkError,
  MAX_SAFE_TEXT_LENGTH,
  redact,
  TokenEndpointError,
} from "./errors.ts";
export type { HttpFailure, TokenEndpointErrorInit, TokenErrorKind, TokenErrorReason } from "./errors.ts";
export { jwtExpiry } from "./jwt.ts";
export { TokenClient } from "./client.ts";
export type { FetchTokenOptions, TokenClientOptions, TokenResponseInfo } from "./client.ts";
