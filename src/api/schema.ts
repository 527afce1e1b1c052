/**
 * The `NexarToken` API schema (`nexar-operator.io/v1alpha1`, SPEC §2), defined ONCE with TypeBox.
 *
 * Three things are derived from this file and nothing else:
 *  - the TypeScript types (`types.ts`, via `Static<>`);
 *  - the CRD's OpenAPI v3 structural schema (`crd.ts` → `hack/generate-crd.ts` → `crds/`);
 *  - the operator's runtime validation (`validate.ts`, via `Value.Errors` plus the rule twins).
 *
 * Every CEL rule (`x-kubernetes-validations`, evaluated by the API server) is declared with
 * {@link cel} together with a TypeScript twin (`holds`) that `validate.ts` runs, so the API server
 * and the operator enforce the same rules. The twins are stored under the {@link RULE_CHECKS}
 * symbol, which JSON serialisation (and so the CRD generator) drops.
 *
 * A syntax check that is a single regular expression is an OpenAPI `pattern` ({@link patterned}),
 * not a CEL `matches` rule: the API server runs every CEL rule of the object on each create and on
 * each status write, and `make bench` measured the seven `matches` rules this schema used to have
 * at 2–3 s of API-server CPU per 1,000 new NexarTokens (BENCHMARKS.md). The price is the API
 * server's own wording for a mismatch (`... in body should match '<pattern>'`); the field's
 * description explains the syntax, and the operator's validation keeps the explanatory message.
 *
 * Kubernetes rules honoured here (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/):
 * structural schema (a `type` on every node, no `additionalProperties: false`, maps as
 * `additionalProperties`), `description` on every field for `kubectl explain`, and `maxItems` /
 * `maxLength` / `maxProperties` bounds wherever a CEL rule iterates so the rule cost estimate stays
 * inside the API server's budget.
 */
import { Type, type TLiteral, type TSchema, type TUnion } from "@sinclair/typebox";
import {
  CONDITION_REASON_NAMES,
  DEFAULT_CLIENT_ID_KEY,
  DEFAULT_CLIENT_SECRET_KEY,
  DEFAULT_DATA_KEYS,
  DEFAULT_REFRESH_TOKEN_KEY,
  DEFAULT_SECRET_TYPE,
  DEFAULT_TOKEN_URL,
  ANNOTATION_REFRESH_REQUESTED_AT,
  RESERVED_ANNOTATIONS,
  RESERVED_LABELS,
} from "./constants.ts";
import { parseGoDuration } from "./duration.ts";

// ---------------------------------------------------------------------------------------------
// CEL rules with TypeScript twins
// ---------------------------------------------------------------------------------------------

/** Symbol under which a schema node keeps its {@link CelRule}s (invisible to JSON, so not in the CRD). */
export const RULE_CHECKS: unique symbol = Symbol.for("nexar-operator.io/cel-rule-checks");

/**
 * One `x-kubernetes-validations` entry plus its TypeScript twin.
 * `T` is the type of `self` (the value of the schema node the rule is attached to).
 */
export interface CelRule<T> {
  /** CEL expression the API server evaluates with `self` bound to the node's value; true = valid. */
  readonly rule: string;
  /** Error message shown by `kubectl apply` when the rule fails; also used by `validate.ts`. */
  readonly message: string;
  /** Optional JSONPath (relative to the node) the error is reported on, e.g. `.renewBefore`. */
  readonly fieldPath?: string;
  /** TypeScript equivalent of `rule`: returns true when `self` is valid. Only called on schema-valid values. */
  readonly holds: (self: T) => boolean;
}

/** A rule after type erasure, as stored on a schema node under {@link RULE_CHECKS}. */
export type StoredCelRule = CelRule<never>;

/** Symbol under which a string node keeps the message `validate.ts` reports when its `pattern` fails. */
export const PATTERN_MESSAGE: unique symbol = Symbol.for("nexar-operator.io/pattern-message");

/**
 * Schema options for a string that must match `pattern`: spread the result into a TypeBox
 * `Type.String` options object. The API server checks `pattern` with Go's RE2, `validate.ts` with
 * ECMAScript, so patterns stay in the subset both read alike (no look-around, no flags).
 * @returns `{ pattern, [PATTERN_MESSAGE]: message }`.
 */
export function patterned(pattern: string, message: string): { pattern: string; [PATTERN_MESSAGE]: string } {
  return { pattern, [PATTERN_MESSAGE]: message };
}

/** The `x-kubernetes-validations` item shape of apiextensions.k8s.io/v1 `ValidationRule`. */
export interface KubernetesValidationRule {
  readonly rule: string;
  readonly message: string;
  readonly fieldPath?: string;
}

/**
 * Schema options attaching CEL rules to a node: spread the result into a TypeBox options object.
 * @returns `{ "x-kubernetes-validations": [...], [RULE_CHECKS]: rules }`.
 */
export function cel<T>(...rules: CelRule<T>[]): {
  "x-kubernetes-validations": KubernetesValidationRule[];
  [RULE_CHECKS]: readonly StoredCelRule[];
} {
  return {
    "x-kubernetes-validations": rules.map(({ rule, message, fieldPath }) =>
      fieldPath === undefined ? { rule, message } : { rule, message, fieldPath },
    ),
    [RULE_CHECKS]: rules as readonly CelRule<never>[] as readonly StoredCelRule[],
  };
}

/** Quotes `s` as a CEL single-quoted string literal (CEL spec, "String and Bytes Values"). */
export function celString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/** A CEL list literal of string literals: `['a', 'b']`. */
function celList(items: readonly string[]): string {
  return `[${items.map(celString).join(", ")}]`;
}

// Regular expressions shared by the API server (RE2, as OpenAPI `pattern` or in CEL) and TypeScript
// (ECMAScript, no flags). They only use the common subset of both dialects, and are anchored
// because both `pattern` and CEL's `matches` are partial matches.

/** RFC 1123 DNS subdomain, the syntax of a Secret name (Kubernetes `IsDNS1123Subdomain`, max 253). */
export const DNS_SUBDOMAIN_PATTERN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/** RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`: printable ASCII without space, `"` and `\`. */
export const SCOPE_TOKEN_PATTERN = "^[!#-\\[\\]-~]+$";
/**
 * A Secret data key (Kubernetes `IsConfigMapKey`: letters, digits, `-`, `_`, `.`; not `.`, not
 * starting with `..`; the 253-character bound is a separate `maxLength`). Without look-ahead: an
 * optional leading dot must be followed by a character other than a dot.
 */
export const SECRET_KEY_PATTERN = "^\\.?[-_a-zA-Z0-9][-._a-zA-Z0-9]*$";
/** A Go duration restricted to hours, minutes and seconds (`8h`, `30m`, `1h30m`, `1.5h`, `90s`). */
export const DURATION_PATTERN = "^([0-9]+(\\.[0-9]+)?(h|m|s))+$";
/**
 * An absolute http(s) URL without user-info or fragment (RFC 6749 §3.2: "The endpoint URI MUST NOT
 * include a fragment component"; credentials in a URL would leak into logs). Authority and
 * path/query characters are RFC 3986's.
 */
export const TOKEN_URL_PATTERN =
  "^https?://[-._~a-zA-Z0-9%!$&'()*+,;=:\\[\\]]+([/?][-._~a-zA-Z0-9%!$&'()*+,;=:@/?]*)?$";

/** A plain-http URL whose host is a loopback address (development token servers only; SPEC §3.9). */
export const LOOPBACK_HTTP_PATTERN = "^http://(localhost|127\\.[0-9]+\\.[0-9]+\\.[0-9]+|\\[::1\\])(:[0-9]+)?([/?].*)?$";

const matches = (pattern: string): ((s: string) => boolean) => {
  const re = new RegExp(pattern);
  return (s) => re.test(s);
};
const isDurationSyntax = matches(DURATION_PATTERN);
const isLoopbackHttp = matches(LOOPBACK_HTTP_PATTERN);
const secretKeyChars = matches(SECRET_KEY_PATTERN);

/** True when `k` is a valid Secret data key (Kubernetes `IsConfigMapKey`). */
export function isSecretKey(k: string): boolean {
  return k.length <= 253 && secretKeyChars(k);
}
/** CEL twin of {@link isSecretKey} for the variable `v` (map keys have no `pattern` in a structural schema). */
const celSecretKey = (v: string): string => `${v}.size() <= 253 && ${v}.matches(${celString(SECRET_KEY_PATTERN)})`;

/** Seconds of a Go duration, or NaN when it does not parse (so comparisons are false). */
const durationSeconds = (s: string): number => {
  try {
    return parseGoDuration(s);
  } catch {
    return Number.NaN;
  }
};

const dnsSubdomain = (what: string) =>
  patterned(
    DNS_SUBDOMAIN_PATTERN,
    `${what} must be a valid Kubernetes object name (RFC 1123 DNS subdomain: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit)`,
  );

const secretKey = (what: string) =>
  patterned(
    SECRET_KEY_PATTERN,
    `${what} must be a valid Secret data key: letters, digits, '-', '_' and '.', at most 253 characters, not '.' and not starting with '..'`,
  );

// ---------------------------------------------------------------------------------------------
// Small building blocks
// ---------------------------------------------------------------------------------------------

/** A string enum as a union of literals; `crd.ts` renders it as `type: string` + `enum`. */
function StringEnum<const V extends readonly [string, ...string[]]>(
  values: V,
  options: { description: string; default?: V[number] },
): TUnion<TLiteral<V[number]>[]> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  ) as TUnion<TLiteral<V[number]>[]>;
}

/**
 * A field the API server defaults (its schema carries `default`): optional in the CRD and in the
 * stored type, always present on objects the API server returns after the CRD is installed.
 */
function Defaulted<T extends TSchema>(schema: T) {
  if (!("default" in schema)) throw new Error("Defaulted() needs a schema with a default");
  return Type.Optional(schema);
}

/** A `map[string]string` (rendered as `additionalProperties: {type: string}` in the CRD). */
function StringMap(description: string, valueDescription: string, valueMaxLength: number, options: object = {}) {
  return Type.Record(Type.String(), Type.String({ description: valueDescription, maxLength: valueMaxLength }), {
    description,
    ...options,
  });
}

const goDuration = (what: string, minimumSeconds: number, minimumText: string): CelRule<string> => ({
  rule: `self.matches(${celString(DURATION_PATTERN)}) && duration(self) >= duration(${celString(minimumText)})`,
  message: `${what} must be a duration of hours, minutes and seconds such as 8h, 30m or 1h30m, and at least ${minimumText}`,
  holds: (s) => isDurationSyntax(s) && durationSeconds(s) >= minimumSeconds,
});

// ---------------------------------------------------------------------------------------------
// spec
// ---------------------------------------------------------------------------------------------

/** `spec.grant` values: which OAuth 2.0 grant the operator uses at the token endpoint. */
export const GRANTS = ["ClientCredentials", "RefreshToken"] as const;
/** `spec.clientAuthentication` values (RFC 6749 §2.3.1; OpenID Connect Core §9 names). */
export const CLIENT_AUTHENTICATIONS = ["ClientSecretPost", "ClientSecretBasic"] as const;
/** `spec.target.creationPolicy` values (SPEC §3.6). */
export const CREATION_POLICIES = ["Owner", "Orphan", "Merge"] as const;

/** `spec.credentialsSecretRef`: where the client id, client secret (and refresh token) are read from. */
export const CredentialsSecretRefSchema = Type.Object(
  {
    name: Type.String({
      description:
        "Name of the Secret holding the OAuth client credentials. It is always read from the NexarToken's own namespace; there is deliberately no namespace field.",
      minLength: 1,
      maxLength: 253,
      ...dnsSubdomain("credentialsSecretRef.name"),
    }),
    clientIdKey: Defaulted(
      Type.String({
        description: `Key in the Secret's data holding the OAuth client id (the Nexar application's Client ID). Defaults to "${DEFAULT_CLIENT_ID_KEY}".`,
        default: DEFAULT_CLIENT_ID_KEY,
        minLength: 1,
        maxLength: 253,
        ...secretKey("clientIdKey"),
      }),
    ),
    clientSecretKey: Defaulted(
      Type.String({
        description: `Key in the Secret's data holding the OAuth client secret. Defaults to "${DEFAULT_CLIENT_SECRET_KEY}".`,
        default: DEFAULT_CLIENT_SECRET_KEY,
        minLength: 1,
        maxLength: 253,
        ...secretKey("clientSecretKey"),
      }),
    ),
    refreshTokenKey: Defaulted(
      Type.String({
        description: `Key in the Secret's data holding the refresh token; used only with grant RefreshToken. \`nexar-token-operator login\` writes it, and the operator replaces it whenever the identity server rotates the refresh token. Defaults to "${DEFAULT_REFRESH_TOKEN_KEY}".`,
        default: DEFAULT_REFRESH_TOKEN_KEY,
        minLength: 1,
        maxLength: 253,
        ...secretKey("refreshTokenKey"),
      }),
    ),
  },
  {
    description:
      "Reference to the Secret, in the same namespace as this NexarToken, that holds the OAuth client credentials. A change to that Secret's data makes the operator fetch a new token at once.",
  },
);

/** `spec.target`: the Secret the operator writes the token into. */
export const TargetSchema = Type.Object(
  {
    name: Type.Optional(
      Type.String({
        description:
          "Name of the Secret the token is written to, in the NexarToken's namespace. Defaults to the NexarToken's own metadata.name. Must differ from credentialsSecretRef.name.",
        minLength: 1,
        maxLength: 253,
        ...dnsSubdomain("target.name"),
      }),
    ),
    type: Defaulted(
      Type.String({
        description: `Type of the target Secret. Defaults to "${DEFAULT_SECRET_TYPE}". A built-in type with required keys (e.g. kubernetes.io/basic-auth) needs a template producing those keys. Kubernetes does not allow changing the type of an existing Secret.`,
        default: DEFAULT_SECRET_TYPE,
        minLength: 1,
        maxLength: 253,
      }),
    ),
    creationPolicy: Defaulted(
      StringEnum(CREATION_POLICIES, {
        description:
          "How the operator owns the target Secret. Owner (default): the operator creates the Secret with an ownerReference to this NexarToken, so Kubernetes deletes it with the NexarToken. Orphan: like Owner but without the ownerReference, so the Secret stays behind when the NexarToken is deleted. Merge: the operator writes only its own data keys, labels and annotations into the Secret and keeps every other key.",
        default: "Owner",
      }),
    ),
    adopt: Defaulted(
      Type.Boolean({
        description:
          "Take over an existing target Secret the operator did not create. When false (default) an existing unmanaged Secret of that name makes the NexarToken Ready=False with reason SecretConflict and is left untouched.",
        default: false,
      }),
    ),
    labels: Type.Optional(
      StringMap(
        "Labels copied onto the target Secret, e.g. for Reloader or policy engines. The label app.kubernetes.io/managed-by is set by the operator and cannot be overridden. Other clients' labels on the Secret are kept.",
        "Label value (at most 63 characters).",
        63,
        {
          maxProperties: 64,
          ...cel<Readonly<Record<string, string>>>({
            rule: `!(${celList(RESERVED_LABELS)}.exists(k, k in self))`,
            message: `target.labels must not set ${RESERVED_LABELS.join(", ")}: the operator sets it`,
            holds: (m) => !RESERVED_LABELS.some((k) => Object.hasOwn(m, k)),
          }),
        },
      ),
    ),
    annotations: Type.Optional(
      StringMap(
        "Annotations copied onto the target Secret. The operator's own annotations (nexar-operator.io/expires-at, nexar-operator.io/owner) cannot be overridden. Other clients' annotations on the Secret are kept.",
        "Annotation value.",
        65536,
        {
          maxProperties: 64,
          ...cel<Readonly<Record<string, string>>>({
            rule: `!(${celList(RESERVED_ANNOTATIONS)}.exists(k, k in self))`,
            message: `target.annotations must not set ${RESERVED_ANNOTATIONS.join(" or ")}: the operator sets them`,
            holds: (m) => !RESERVED_ANNOTATIONS.some((k) => Object.hasOwn(m, k)),
          }),
        },
      ),
    ),
    template: Type.Optional(
      StringMap(
        `Extra data keys to render into the target Secret, in addition to the default keys ${DEFAULT_DATA_KEYS.join(", ")}. Each map key is a Secret data key; each value is a logic-less Mustache template that can use {{access_token}}, {{token_type}}, {{expires_at}} (RFC 3339, UTC) and {{scope}} (space separated). For example, the key Authorization with the template Bearer {{access_token}} gives a ready-made HTTP header value. At most 32 entries.`,
        "Mustache template for this data key (at most 4096 characters); HTML escaping is off.",
        4096,
        {
          maxProperties: 32,
          ...cel<Readonly<Record<string, string>>>(
            {
              rule: `self.all(k, ${celSecretKey("k")})`,
              message:
                "target.template keys must be valid Secret data keys: letters, digits, '-', '_' and '.', at most 253 characters, not '.' and not starting with '..'",
              holds: (m) => Object.keys(m).every(isSecretKey),
            },
            {
              rule: `self.all(k, !(k in ${celList(DEFAULT_DATA_KEYS)}))`,
              message: `target.template keys must not be one of the default keys ${DEFAULT_DATA_KEYS.join(", ")}, which the operator always writes`,
              holds: (m) => Object.keys(m).every((k) => !(DEFAULT_DATA_KEYS as readonly string[]).includes(k)),
            },
          ),
        },
      ),
    ),
  },
  {
    description:
      "The Secret the operator keeps the token in, in the NexarToken's namespace. It always holds the data keys access_token, token_type, expires_at (RFC 3339, UTC) and scope, the label app.kubernetes.io/managed-by=nexar-token-operator and the annotations nexar-operator.io/expires-at and nexar-operator.io/owner=<namespace>/<name>.",
    default: {},
  },
);

/** `spec`: the desired state of a `NexarToken`. */
export const NexarTokenSpecSchema = Type.Object(
  {
    grant: Defaulted(
      StringEnum(GRANTS, {
        description:
          "OAuth 2.0 grant used to obtain the token. ClientCredentials (default): the client id and secret are exchanged for a token, as for Nexar's supply.domain scope. RefreshToken: a refresh token obtained once with `nexar-token-operator login` (authorization code + PKCE) is exchanged for a token, as for Nexar's design.domain scope; rotated refresh tokens are stored back into the credentials Secret.",
        default: "ClientCredentials",
      }),
    ),
    scopes: Type.Array(
      Type.String({
        description:
          "One OAuth scope (RFC 6749 §3.3 scope-token: printable ASCII without spaces, double quotes or backslashes), e.g. supply.domain.",
        minLength: 1,
        maxLength: 128,
        ...patterned(
          SCOPE_TOKEN_PATTERN,
          "each scope must be a single OAuth scope-token without spaces, double quotes or backslashes (RFC 6749 §3.3); list several scopes as separate items",
        ),
      }),
      {
        description:
          "OAuth scopes to request, one per item (1 to 32 items), e.g. [supply.domain] for Nexar's Supply API, or [openid, profile, email, design.domain, user.access, offline_access] for the Design API with grant RefreshToken. NexarTokens with the same token URL, credentials, grant and scope set share one token.",
        minItems: 1,
        maxItems: 32,
        "x-kubernetes-list-type": "set",
      },
    ),
    tokenUrl: Defaulted(
      Type.String({
        description: `OAuth 2.0 token endpoint. Defaults to Nexar's, ${DEFAULT_TOKEN_URL}. Must be an absolute https:// URL without user-info or fragment (at most 2048 characters). Plain http:// is accepted only for a loopback host, and the operator refuses even that unless it runs with its development flag --allow-insecure-token-url.`,
        default: DEFAULT_TOKEN_URL,
        minLength: 1,
        maxLength: 2048,
        ...patterned(
          TOKEN_URL_PATTERN,
          "tokenUrl must be an absolute https:// (or, for development, http://) URL without user-info (user:password@) or fragment (#...)",
        ),
        // A https:// URL stops at startsWith, so only development (http://) URLs pay for the regex.
        ...cel<string>({
          rule: `!self.startsWith('http://') || self.matches(${celString(LOOPBACK_HTTP_PATTERN)})`,
          message:
            "tokenUrl must use https://; plain http:// is accepted only for a loopback host (localhost, 127.x.x.x, [::1]) in development",
          holds: (s) => !s.startsWith("http://") || isLoopbackHttp(s),
        }),
      }),
    ),
    clientAuthentication: Defaulted(
      StringEnum(CLIENT_AUTHENTICATIONS, {
        description:
          "How the client authenticates at the token endpoint (RFC 6749 §2.3.1). ClientSecretPost (default, as Nexar's examples): client_id and client_secret in the form body. ClientSecretBasic: HTTP Basic authentication, as Nexar's .NET library.",
        default: "ClientSecretPost",
      }),
    ),
    credentialsSecretRef: CredentialsSecretRefSchema,
    renewBefore: Type.Optional(
      Type.String({
        description:
          "How long before the token expires it is renewed, as a duration of hours, minutes and seconds (e.g. 8h, 30m, 1h30m; at least 1s). Mutually exclusive with renewBeforePercentage. When neither is set, the token is renewed when a third of its lifetime remains (8h for Nexar's 24h tokens). The operator clamps the effective value to at least 1 minute and at most half the token's lifetime, and adds a small random jitter.",
        maxLength: 32,
        ...cel(goDuration("renewBefore", 1, "1s")),
      }),
    ),
    renewBeforePercentage: Type.Optional(
      Type.Integer({
        description:
          "How long before the token expires it is renewed, as a percentage (1 to 90) of the token's lifetime; e.g. 33 renews a 24h token about 8h before it expires. Mutually exclusive with renewBefore. Clamped like renewBefore.",
        minimum: 1,
        maximum: 90,
      }),
    ),
    fallbackLifetime: Type.Optional(
      Type.String({
        description:
          "Lifetime to assume for a token whose response has neither expires_in nor a JWT exp claim, as a duration (e.g. 1h; at least 1m). Not needed for Nexar, whose responses carry both. When unset, the operator's --fallback-lifetime setting applies; without either, such a response is refused (Ready=False, reason InvalidResponse).",
        maxLength: 32,
        ...cel(goDuration("fallbackLifetime", 60, "1m")),
      }),
    ),
    target: Defaulted(TargetSchema),
  },
  {
    description:
      "Desired state: which token to obtain from which OAuth 2.0 token endpoint with which credentials, when to renew it, and which Secret to keep it in.",
    ...cel<{ renewBefore?: string; renewBeforePercentage?: number }>({
      rule: "!(has(self.renewBefore) && has(self.renewBeforePercentage))",
      message: "set at most one of renewBefore and renewBeforePercentage",
      holds: (s) => !(s.renewBefore !== undefined && s.renewBeforePercentage !== undefined),
    }),
  },
);

// ---------------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------------

const timestamp = (description: string) =>
  Type.Optional(
    Type.String({
      description: `${description} RFC 3339 date-time, UTC.`,
      format: "date-time",
    }),
  );

/**
 * A standard Kubernetes condition (`metav1.Condition`, k8s.io/apimachinery/pkg/apis/meta/v1), with
 * the same validation controller-gen emits for it.
 */
export const ConditionSchema = Type.Object(
  {
    type: Type.String({
      description: "Type of the condition in CamelCase. A NexarToken carries one condition: Ready.",
      maxLength: 316,
      pattern:
        "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    }),
    status: StringEnum(["True", "False", "Unknown"], {
      description: "Status of the condition: True, False or Unknown.",
    }),
    observedGeneration: Type.Optional(
      Type.Integer({
        description:
          "The .metadata.generation the condition was set for; if older than the NexarToken's current generation, the condition is out of date.",
        format: "int64",
        minimum: 0,
      }),
    ),
    lastTransitionTime: Type.String({
      description: "Last time the condition's status changed, RFC 3339 date-time, UTC.",
      format: "date-time",
    }),
    reason: Type.String({
      description: `Machine-readable CamelCase reason for the condition's last transition. One of: ${CONDITION_REASON_NAMES.join(", ")}.`,
      minLength: 1,
      maxLength: 1024,
      pattern: "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    }),
    message: Type.String({
      description: "Human-readable details of the transition. Never contains a token or a secret.",
      maxLength: 32768,
    }),
  },
  {
    description: "Condition contains details for one aspect of the current state of this API resource.",
  },
);

/** `status`: the observed state, written only by the operator. */
export const NexarTokenStatusSchema = Type.Object(
  {
    observedGeneration: Type.Optional(
      Type.Integer({
        description: "The .metadata.generation of the spec the operator last acted on.",
        format: "int64",
        minimum: 0,
      }),
    ),
    conditions: Type.Optional(
      Type.Array(ConditionSchema, {
        description:
          "Standard conditions. Ready=True means the target Secret holds a valid token; Ready=False carries a specific reason (e.g. InvalidClient, SecretConflict, Expired) and a message saying what to fix.",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
      }),
    ),
    expiresAt: timestamp(
      "When the token currently in the target Secret expires, taken from the token actually received (expires_in counted from receipt, else the JWT exp claim, else spec.fallbackLifetime).",
    ),
    renewalTime: timestamp(
      "When the operator plans to renew the token (expiresAt minus the renewal lead time, with jitter).",
    ),
    lastRefreshTime: timestamp("When the operator last obtained a new token."),
    lastFailureTime: timestamp("When the last failed token request happened."),
    lastFailureReason: Type.Optional(
      Type.String({
        description: `Reason of the last failed token request, e.g. InvalidClient, TokenEndpointUnavailable or RateLimited. One of: ${CONDITION_REASON_NAMES.join(", ")}. Cleared after a success.`,
        maxLength: 1024,
      }),
    ),
    nextAttemptTime: timestamp(
      "While token requests fail: the earliest time of the next attempt, from failedAttempts, the failure's class, the server's Retry-After and jitter. A change of what the token is fetched with, or a new refresh request, goes at once. Cleared after a success.",
    ),
    lastFailureFingerprint: Type.Optional(
      Type.String({
        description:
          "Fingerprint of what the last failed token request was made with (token URL, grant, client authentication, credentials, scopes, fallback lifetime): an HMAC-SHA256 under the operator's own key, so it reveals nothing about the credentials. A change of these since the failure retries at once. Cleared after a success.",
        maxLength: 128,
      }),
    ),
    lastFailureRefreshRequest: Type.Optional(
      Type.String({
        description: `Value of the ${ANNOTATION_REFRESH_REQUESTED_AT} annotation the last failed token request answered; another value retries at once. Cleared after a success.`,
      }),
    ),
    failedAttempts: Type.Optional(
      Type.Integer({
        description:
          "Number of consecutive failed token requests since the last success; drives the retry backoff. 0 after a success.",
        format: "int32",
        minimum: 0,
      }),
    ),
    grantedScopes: Type.Optional(
      Type.Array(Type.String({ description: "One granted scope." }), {
        description:
          "Scopes the identity server granted, from the token response's scope field (RFC 6749 §5.1), or the requested scopes when the response omits it.",
        "x-kubernetes-list-type": "atomic",
      }),
    ),
    secretName: Type.Optional(
      Type.String({
        description: "Name of the target Secret holding the token, in this namespace.",
      }),
    ),
    lastRefreshRequest: Type.Optional(
      Type.String({
        description: `Value of the ${ANNOTATION_REFRESH_REQUESTED_AT} annotation the operator last acted on; setting the annotation to any other value requests an immediate refresh.`,
      }),
    ),
  },
  { description: "Observed state, written by the operator only." },
);

// ---------------------------------------------------------------------------------------------
// the object
// ---------------------------------------------------------------------------------------------

/**
 * The whole `NexarToken` object. `metadata` is rendered as a bare `type: object` in the CRD (the
 * API server owns its schema); the TypeScript type uses `ObjectMeta` from `meta.ts` (`types.ts`).
 * The root CEL rule may read `self.metadata.name`, which Kubernetes allows at the root.
 */
export const NexarTokenSchema = Type.Object(
  {
    apiVersion: Type.Optional(
      Type.String({
        description:
          "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
      }),
    ),
    kind: Type.Optional(
      Type.String({
        description:
          "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
      }),
    ),
    metadata: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(Type.String({ description: "Name of the object." })),
        },
        { description: "Standard object metadata." },
      ),
    ),
    spec: NexarTokenSpecSchema,
    status: Type.Optional(NexarTokenStatusSchema),
  },
  {
    description:
      "NexarToken keeps a Nexar OAuth 2.0 access token fresh in a Secret of its namespace: the operator obtains a token with the referenced client credentials, writes it to the target Secret, and renews it before it expires. Workloads mount the target Secret instead of holding the client secret.",
    ...cel<{
      metadata: { name?: string };
      spec: {
        credentialsSecretRef: { name: string };
        target?: { name?: string };
      };
    }>({
      rule: "self.spec.credentialsSecretRef.name != (has(self.spec.target) && has(self.spec.target.name) ? self.spec.target.name : self.metadata.name)",
      message:
        "the target Secret (spec.target.name, default metadata.name) must differ from the credentials Secret (spec.credentialsSecretRef.name)",
      fieldPath: ".spec.credentialsSecretRef.name",
      holds: (o) => o.spec.credentialsSecretRef.name !== (o.spec.target?.name ?? o.metadata.name),
    }),
  },
);

/** Any TypeBox schema node of this API (re-exported for walkers in `crd.ts` and `validate.ts`). */
export type ApiSchema = TSchema;
