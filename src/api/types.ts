/**
 * TypeScript types of the `NexarToken` API, derived from the TypeBox schema in `schema.ts` with
 * `Static<>` so they cannot drift from the CRD. Optional fields are optional here even when the
 * CRD defaults them: objects written before a CRD upgrade (or built in tests) may lack them, so
 * consumers resolve defaults with `withDefaults()` (`defaults.ts`) and use {@link ResolvedSpec}.
 */
import type { Static } from "@sinclair/typebox";
import type { API_VERSION, KIND } from "./constants.ts";
import type { ObjectMeta } from "./meta.ts";
import type {
  CLIENT_AUTHENTICATIONS,
  ConditionSchema,
  CREATION_POLICIES,
  CredentialsSecretRefSchema,
  GRANTS,
  NexarTokenSpecSchema,
  NexarTokenStatusSchema,
  TargetSchema,
} from "./schema.ts";

/** `spec.grant`: `ClientCredentials` | `RefreshToken`. */
export type Grant = (typeof GRANTS)[number];
/** `spec.clientAuthentication`: `ClientSecretPost` | `ClientSecretBasic` (RFC 6749 §2.3.1). */
export type ClientAuthentication = (typeof CLIENT_AUTHENTICATIONS)[number];
/** `spec.target.creationPolicy`: `Owner` | `Orphan` | `Merge` (SPEC §3.6). */
export type CreationPolicy = (typeof CREATION_POLICIES)[number];

/** `spec.credentialsSecretRef` as stored (defaults possibly missing). */
export type CredentialsSecretRef = Static<typeof CredentialsSecretRefSchema>;
/** `spec.target` as stored (defaults possibly missing). */
export type TargetSpec = Static<typeof TargetSchema>;
/** `spec` as stored (defaults possibly missing); see `ResolvedSpec` for the defaulted form. */
export type NexarTokenSpec = Static<typeof NexarTokenSpecSchema>;
/** One `metav1.Condition`; timestamps are RFC 3339 strings. */
export type Condition = Static<typeof ConditionSchema>;
/** `status`, written by the operator only; timestamps are RFC 3339 strings (UTC). */
export type NexarTokenStatus = Static<typeof NexarTokenStatusSchema>;

/**
 * A `NexarToken` object as read from the API server (custom objects arrive as plain JSON, so
 * every timestamp in `status` is a string; `metadata` is `ObjectMeta` from ./meta.ts, JSON-shaped).
 */
export interface NexarToken {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: NexarTokenSpec;
  status?: NexarTokenStatus;
}

/** A LIST response of `NexarToken`s. */
export interface NexarTokenList {
  apiVersion: typeof API_VERSION;
  kind: "NexarTokenList";
  metadata: { resourceVersion?: string; continue?: string };
  items: NexarToken[];
}

/**
 * When to renew, resolved from `renewBefore` / `renewBeforePercentage`:
 * - `Duration`: renew `seconds` before expiry (from `renewBefore`);
 * - `Fraction`: renew when `fraction` (0 < fraction < 1) of the lifetime remains (from
 *   `renewBeforePercentage` / 100, or the default of 1/3).
 * The renewal policy (`src/renewal/`) clamps either to [1 min, lifetime / 2] and adds jitter.
 */
export type RenewBefore =
  { readonly kind: "Duration"; readonly seconds: number } | { readonly kind: "Fraction"; readonly fraction: number };

/** `spec` with every default applied and every derived value resolved (`withDefaults()`). */
export interface ResolvedSpec {
  readonly grant: Grant;
  /** Requested scopes in the spec's order (duplicates removed). */
  readonly scopes: readonly string[];
  readonly tokenUrl: string;
  readonly clientAuthentication: ClientAuthentication;
  readonly credentialsSecretRef: {
    /** Secret name in the NexarToken's namespace. */
    readonly name: string;
    readonly clientIdKey: string;
    readonly clientSecretKey: string;
    readonly refreshTokenKey: string;
  };
  readonly renewBefore: RenewBefore;
  /** Lifetime in seconds to assume when a token response carries neither expires_in nor a JWT exp; undefined = unknown lifetime is an error. */
  readonly fallbackLifetimeSeconds: number | undefined;
  readonly target: {
    /** Resolved target Secret name (`spec.target.name`, else `metadata.name`). */
    readonly name: string;
    readonly type: string;
    readonly creationPolicy: CreationPolicy;
    readonly adopt: boolean;
    readonly labels: Readonly<Record<string, string>>;
    readonly annotations: Readonly<Record<string, string>>;
    /** Extra data key → Mustache template. */
    readonly template: Readonly<Record<string, string>>;
  };
}
