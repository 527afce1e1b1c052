/**
 * Reading the `exp` claim of a JWT access token (pure).
 */
import { decodeJwt } from "jose";

/**
 * The `exp` claim (RFC 7519 §4.1.4: NumericDate, epoch **seconds**) of a JWS-compact JWT, or
 * undefined when `token` is not a JWT, its payload is not JSON, or `exp` is absent, not a finite
 * positive number. Decoded with jose's `decodeJwt` WITHOUT a signature check: the client has no
 * business verifying a token it merely carries (the resource server does), and only needs the
 * claim to schedule renewal. Never throws.
 */
export function jwtExpiry(token: string): number | undefined {
  try {
    const { exp } = decodeJwt(token);
    if (typeof exp !== "number" || !Number.isFinite(exp) || exp <= 0) return undefined;
    return exp;
  } catch {
    return undefined;
  }
}
