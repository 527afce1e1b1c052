/**
 * Defaulting of a `NexarToken` spec: the same defaults the CRD declares (the API server applies
 * them on write), applied again in TypeScript so the operator never depends on an object having
 * been defaulted (objects stored before a CRD upgrade, objects built in tests). Pure.
 */
import {
  DEFAULT_CLIENT_ID_KEY,
  DEFAULT_CLIENT_SECRET_KEY,
  DEFAULT_REFRESH_TOKEN_KEY,
  DEFAULT_RENEW_BEFORE_FRACTION,
  DEFAULT_SECRET_TYPE,
  DEFAULT_TOKEN_URL,
} from "./constants.ts";
import { parseGoDuration } from "./duration.ts";
import type { NexarTokenSpec, RenewBefore, ResolvedSpec } from "./types.ts";

export { formatGoDuration, parseGoDuration } from "./duration.ts";

/**
 * The target Secret's name of a (possibly invalid or undefaulted) spec: `spec.target.name`, else
 * `metadata.name` (SPEC §2). Never throws; undefined when neither is set.
 */
export function targetNameOf(
  spec: { readonly target?: { readonly name?: string } } | undefined,
  metadata: { readonly name?: string | undefined },
): string | undefined {
  return spec?.target?.name ?? metadata.name;
}

/**
 * Resolves a spec into its fully defaulted form.
 *
 * Defaults (SPEC §2, identical to the CRD's): grant `ClientCredentials`, tokenUrl Nexar's
 * `https://identity.nexar.com/connect/token`, clientAuthentication `ClientSecretPost`, keys
 * `clientId` / `clientSecret` / `refreshToken`, target name = `metadata.name`, target type
 * `Opaque`, creationPolicy `Owner`, adopt `false`, empty labels / annotations / template, renewal
 * when a third of the lifetime remains.
 *
 * @param spec      the stored spec; assumed schema-valid (run `validateNexarToken` first for
 *                  untrusted input).
 * @param metadata  the object's metadata; only `name` is read.
 * @returns a new object; `renewBefore` becomes seconds or a fraction, `fallbackLifetime` seconds.
 * @throws {TypeError} when `metadata.name` is missing.
 * @throws {RangeError} when `renewBefore` or `fallbackLifetime` is not a Go duration, or
 *   `renewBeforePercentage` is outside 1..90.
 */
export function withDefaults(spec: NexarTokenSpec, metadata: { readonly name?: string | undefined }): ResolvedSpec {
  const name = metadata.name;
  if (name === undefined || name === "") throw new TypeError("NexarToken metadata.name is required");
  const ref = spec.credentialsSecretRef;
  const target = spec.target ?? {};
  return {
    grant: spec.grant ?? "ClientCredentials",
    scopes: [...new Set(spec.scopes)],
    tokenUrl: spec.tokenUrl ?? DEFAULT_TOKEN_URL,
    clientAuthentication: spec.clientAuthentication ?? "ClientSecretPost",
    credentialsSecretRef: {
      name: ref.name,
      clientIdKey: ref.clientIdKey ?? DEFAULT_CLIENT_ID_KEY,
      clientSecretKey: ref.clientSecretKey ?? DEFAULT_CLIENT_SECRET_KEY,
      refreshTokenKey: ref.refreshTokenKey ?? DEFAULT_REFRESH_TOKEN_KEY,
    },
    renewBefore: resolveRenewBefore(spec),
    fallbackLifetimeSeconds: spec.fallbackLifetime === undefined ? undefined : parseGoDuration(spec.fallbackLifetime),
    target: {
      name: targetNameOf(spec, metadata) ?? name,
      type: target.type ?? DEFAULT_SECRET_TYPE,
      creationPolicy: target.creationPolicy ?? "Owner",
      adopt: target.adopt ?? false,
      labels: { ...target.labels },
      annotations: { ...target.annotations },
      template: { ...target.template },
    },
  };
}

/**
 * The renewal lead time of a spec: `renewBefore` (a Go duration, in seconds) wins, then
 * `renewBeforePercentage` (as a fraction of the lifetime), then the default third of the lifetime.
 * @throws {RangeError} on an unparsable duration or a percentage outside 1..90.
 */
export function resolveRenewBefore(spec: Pick<NexarTokenSpec, "renewBefore" | "renewBeforePercentage">): RenewBefore {
  if (spec.renewBefore !== undefined) return { kind: "Duration", seconds: parseGoDuration(spec.renewBefore) };
  const pct = spec.renewBeforePercentage;
  if (pct !== undefined) {
    if (!Number.isInteger(pct) || pct < 1 || pct > 90) {
      throw new RangeError(`renewBeforePercentage must be an integer from 1 to 90, got ${pct}`);
    }
    return { kind: "Fraction", fraction: pct / 100 };
  }
  return { kind: "Fraction", fraction: DEFAULT_RENEW_BEFORE_FRACTION };
}
