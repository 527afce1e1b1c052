/**
 * Names and well-known strings of the `NexarToken` API (SPEC §2 and §4).
 *
 * Everything a controller, the CLI, the Helm chart generator or a test needs to agree on lives here,
 * so a string like `nexar-operator.io/owner` is spelled exactly once. Pure data, no I/O.
 */

/** API group of the `NexarToken` custom resource. */
export const GROUP = "nexar-operator.io";
/** The only (served and storage) version of the API. */
export const VERSION = "v1alpha1";
/** `apiVersion` field value of a `NexarToken` object: `nexar-operator.io/v1alpha1`. */
export const API_VERSION = `${GROUP}/${VERSION}` as const;
/** `kind` of the custom resource. */
export const KIND = "NexarToken";
/** `kind` of a list of the custom resource, as returned by a LIST call. */
export const LIST_KIND = "NexarTokenList";
/** Plural resource name, used in REST paths (`/apis/nexar-operator.io/v1alpha1/namespaces/{ns}/nexartokens`). */
export const PLURAL = "nexartokens";
/** Singular resource name (`kubectl get nexartoken`). */
export const SINGULAR = "nexartoken";
/** Short names (`kubectl get nxt`). */
export const SHORT_NAMES: readonly string[] = ["nxt"];
/** Categories (`kubectl get nexar` lists every resource of the category). */
export const CATEGORIES: readonly string[] = ["nexar"];
/** `metadata.name` of the CustomResourceDefinition: `<plural>.<group>`, as Kubernetes requires. */
export const CRD_NAME = `${PLURAL}.${GROUP}` as const;

/** Nexar's token endpoint (Nexar identity docs); the default of `spec.tokenUrl`. */
export const DEFAULT_TOKEN_URL = "https://identity.nexar.com/connect/token";

// ---------------------------------------------------------------------------------------------
// Labels and annotations (SPEC §4 and §3.2)
// ---------------------------------------------------------------------------------------------

/**
 * Label set on every target Secret the operator manages (Kubernetes recommended label,
 * https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
 */
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
/** Value of {@link LABEL_MANAGED_BY} on managed Secrets. */
export const MANAGED_BY = "nexar-token-operator";
/**
 * Label on the operator's own objects that are not target Secrets (its fingerprint key Secret),
 * with the value {@link MANAGED_BY}: they carry no {@link LABEL_MANAGED_BY}, so no list of managed
 * Secrets ever returns them.
 */
export const LABEL_PART_OF = "app.kubernetes.io/part-of";
/** Annotation on the target Secret: expiry of the token it holds, RFC 3339 in UTC. */
export const ANNOTATION_EXPIRES_AT = "nexar-operator.io/expires-at";
/** Annotation on the target Secret: `<namespace>/<name>` of the `NexarToken` that owns it (ownership, SPEC §3.6). */
export const ANNOTATION_OWNER = "nexar-operator.io/owner";
/**
 * Annotation on a `NexarToken` asking for an immediate refresh (SPEC §3.2). Any new value (by
 * convention an RFC 3339 timestamp, as `kubectl annotate ... nexar-operator.io/refresh-requested-at=$(date -u +%FT%TZ)`)
 * triggers one fetch; the value last acted on is recorded in `status.lastRefreshRequest`.
 */
export const ANNOTATION_REFRESH_REQUESTED_AT = "nexar-operator.io/refresh-requested-at";

/** Label keys a user may not set through `spec.target.labels` because the operator owns them. */
export const RESERVED_LABELS: readonly string[] = [LABEL_MANAGED_BY];
/** Annotation keys a user may not set through `spec.target.annotations` because the operator owns them. */
export const RESERVED_ANNOTATIONS: readonly string[] = [ANNOTATION_EXPIRES_AT, ANNOTATION_OWNER];

// ---------------------------------------------------------------------------------------------
// Target Secret data keys (SPEC §4; names are OAuth's own, RFC 6749 §5.1)
// ---------------------------------------------------------------------------------------------

/** Data key holding the access token itself. */
export const DATA_KEY_ACCESS_TOKEN = "access_token";
/** Data key holding the token type (`Bearer` for Nexar). */
export const DATA_KEY_TOKEN_TYPE = "token_type";
/** Data key holding the token's expiry, RFC 3339 in UTC (e.g. `2026-12-01T10:00:00Z`). */
export const DATA_KEY_EXPIRES_AT = "expires_at";
/** Data key holding the granted scopes, space separated (RFC 6749 §3.3). */
export const DATA_KEY_SCOPE = "scope";
/** Every data key the operator always writes; `spec.target.template` keys may not collide with them. */
export const DEFAULT_DATA_KEYS = [
  DATA_KEY_ACCESS_TOKEN,
  DATA_KEY_TOKEN_TYPE,
  DATA_KEY_EXPIRES_AT,
  DATA_KEY_SCOPE,
] as const;
/** One of {@link DEFAULT_DATA_KEYS}. */
export type DefaultDataKey = (typeof DEFAULT_DATA_KEYS)[number];

/** Default key of the client id in the credentials Secret. */
export const DEFAULT_CLIENT_ID_KEY = "clientId";
/** Default key of the client secret in the credentials Secret. */
export const DEFAULT_CLIENT_SECRET_KEY = "clientSecret";
/** Default key of the refresh token in the credentials Secret (`grant: RefreshToken` only, SPEC §6). */
export const DEFAULT_REFRESH_TOKEN_KEY = "refreshToken";
/** Default `type` of the target Secret. */
export const DEFAULT_SECRET_TYPE = "Opaque";

/**
 * Renewal lead time when neither `renewBefore` nor `renewBeforePercentage` is set: a third of the
 * token's lifetime (SPEC §2), i.e. renew 8 h before expiry for Nexar's 24 h tokens.
 */
export const DEFAULT_RENEW_BEFORE_FRACTION = 1 / 3;

// ---------------------------------------------------------------------------------------------
// Conditions (Kubernetes API conventions: metav1.Condition, "Ready" as the summary condition)
// ---------------------------------------------------------------------------------------------

/** The one condition type a `NexarToken` carries: is a valid token in the target Secret? */
export const CONDITION_READY = "Ready";
/** Condition status values (metav1.ConditionStatus). */
export type ConditionStatus = "True" | "False" | "Unknown";

/**
 * Every `reason` the operator writes on the Ready condition, in `status.lastFailureReason`, and in
 * Events, with its meaning. CamelCase per Kubernetes API conventions. The OAuth error reasons
 * mirror RFC 6749 §5.2 error codes.
 */
export const CONDITION_REASONS = {
  // Ready=True
  TokenIssued: "A new access token was fetched and written to the target Secret.",
  TokenValid:
    "The target Secret holds a token that is still valid and not yet due for renewal (e.g. after an operator restart); nothing was fetched.",
  RenewalFailing:
    "Renewal attempts fail, but the last good token is still valid and stays in the Secret; status.lastFailureReason names the cause.",
  // Ready=False, configuration
  CredentialsNotFound:
    "The credentials Secret, or one of the keys it must contain, does not exist in the NexarToken's namespace.",
  CredentialsInvalid: "The credentials Secret exists but a value in it is empty or malformed.",
  SecretConflict:
    "The target Secret exists and is not managed by this NexarToken (another NexarToken or a user owns it); set spec.target.adopt to take it over.",
  InvalidSpec: "The spec is invalid in a way the CRD schema cannot express; the message says what to fix.",
  Expired: "The last token has expired and no new one could be fetched.",
  // Ready=False or lastFailureReason, token endpoint answers (RFC 6749 §5.2)
  InvalidClient: "The token endpoint rejected the client id or secret (invalid_client, or HTTP 401).",
  UnauthorizedClient: "The client may not use this grant type (unauthorized_client, or HTTP 403).",
  InvalidScope: "A requested scope is unknown or not allowed for this client (invalid_scope).",
  InvalidGrant: "The identity server rejected the grant (invalid_grant) of a client-credentials request.",
  RefreshTokenInvalid:
    "RefreshToken grant: the stored refresh token is invalid, expired, revoked or already used (invalid_grant); run `nexar-token-operator login` again.",
  AccessDenied: "The identity server denied the request (access_denied).",
  // transient
  TokenEndpointUnavailable: "The token endpoint answered with HTTP 5xx or an unexpected status.",
  RateLimited: "The token endpoint answered HTTP 429 (Too Many Requests).",
  IssuanceLimited:
    "The token request is queued by the operator's per-client issuance limiter (--issuance-limits); Ready stays True while the current token is valid.",
  InvalidResponse: "The token endpoint answered 2xx with a body that is not a valid token response.",
  Timeout: "The token request timed out.",
  ConnectionFailed: "The token endpoint could not be reached (DNS, TCP, TLS or connection reset).",
} as const satisfies Record<string, string>;

/** Any reason the operator writes; see {@link CONDITION_REASONS} for meanings. */
export type ConditionReason = keyof typeof CONDITION_REASONS;
/** Reasons that come with `Ready=True`. */
export type ReadyReason = Extract<ConditionReason, "TokenIssued" | "TokenValid" | "RenewalFailing">;
/** Reasons for a failed refresh attempt (written to `status.lastFailureReason`). */
export type FailureReason = Exclude<ConditionReason, "TokenIssued" | "TokenValid" | "RenewalFailing">;
/** All reasons, in documentation order. */
export const CONDITION_REASON_NAMES = Object.keys(CONDITION_REASONS) as ConditionReason[];
