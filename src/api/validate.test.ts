import { describe, expect, it } from "vitest";
import { statusErrors, validateNexarToken } from "./validate.ts";

/** A valid, defaulted-as-little-as-possible NexarToken; each test breaks one thing. */
function token(spec: Record<string, unknown> = {}, name = "supply"): Record<string, unknown> {
  return {
    apiVersion: "nexar-operator.io/v1alpha1",
    kind: "NexarToken",
    metadata: { name, namespace: "parts", generation: 1 },
    spec: { scopes: ["supply.domain"], credentialsSecretRef: { name: "nexar-app" }, ...spec },
  };
}

function errorsOf(obj: unknown, options = {}): readonly string[] {
  const r = validateNexarToken(obj, options);
  return r.ok ? [] : r.errors;
}

describe("validateNexarToken", () => {
  it("accepts a minimal object and resolves its defaults", () => {
    const r = validateNexarToken(token());
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.token.metadata.name).toBe("supply");
    expect(r.spec.target.name).toBe("supply");
    expect(r.spec.tokenUrl).toBe("https://identity.nexar.com/connect/token");
  });

  it("accepts a fully specified object", () => {
    const r = validateNexarToken(
      token({
        grant: "RefreshToken",
        scopes: ["openid", "profile", "email", "design.domain", "user.access", "offline_access"],
        tokenUrl: "https://identity.nexar.com/connect/token?x=1",
        clientAuthentication: "ClientSecretBasic",
        credentialsSecretRef: { name: "nexar-app", clientIdKey: ".id", clientSecretKey: "s", refreshTokenKey: "r..t" },
        renewBeforePercentage: 33,
        fallbackLifetime: "1h",
        target: {
          name: "design-token",
          type: "Opaque",
          creationPolicy: "Orphan",
          adopt: true,
          labels: { "reloader.stakater.com/match": "true" },
          annotations: { "example.com/note": "anything at all" },
          template: { Authorization: "Bearer {{access_token}}", "nexar.env": "NEXAR_TOKEN={{access_token}}" },
        },
      }),
    );
    expect(r).toMatchObject({ ok: true, spec: { renewBefore: { kind: "Fraction", fraction: 0.33 } } });
  });

  it("ignores status, even a malformed one", () => {
    expect(errorsOf({ ...token(), status: { conditions: "nope" } })).toEqual([]);
  });

  it.each<[string, unknown, RegExp]>([
    ["not an object", "x", /must be a JSON object/],
    ["wrong apiVersion", { ...token(), apiVersion: "v1" }, /^apiVersion: must be nexar-operator.io\/v1alpha1$/],
    ["wrong kind", { ...token(), kind: "Secret" }, /^kind: must be NexarToken$/],
    ["no name", { ...token(), metadata: {} }, /^metadata.name: is required$/],
    ["no spec", { ...token(), spec: undefined }, /^spec: is required$/],
    ["no scopes", token({ scopes: undefined }), /^spec.scopes: is required$/],
    ["0 scopes", token({ scopes: [] }), /^spec.scopes: must have at least 1 item/],
    [
      "33 scopes",
      token({ scopes: Array.from({ length: 33 }, (_, i) => `s${i}`) }),
      /^spec.scopes: must have at most 32 items$/,
    ],
    [
      "scope with a space",
      token({ scopes: ["supply.domain", "a b"] }),
      /^spec.scopes\[1\]: each scope must be a single OAuth scope-token/,
    ],
    ["scope with a quote", token({ scopes: ['a"b'] }), /^spec.scopes\[0\]: each scope must be/],
    ["empty scope", token({ scopes: [""] }), /^spec.scopes\[0\]: must be at least 1 character/],
    ["duplicate scope", token({ scopes: ["a", "a"] }), /^spec.scopes: duplicate scope "a"$/],
    [
      "bad grant",
      token({ grant: "Password" }),
      /^spec.grant: must be one of "ClientCredentials", "RefreshToken", got "Password"$/,
    ],
    ["bad client auth", token({ clientAuthentication: "PrivateKeyJwt" }), /^spec.clientAuthentication: must be one of/],
    [
      "ftp token URL",
      token({ tokenUrl: "ftp://identity.nexar.com/token" }),
      /^spec.tokenUrl: tokenUrl must be an absolute https:\/\//,
    ],
    ["token URL with fragment", token({ tokenUrl: "https://a.example/t#x" }), /^spec.tokenUrl: .*fragment/],
    ["token URL with user-info", token({ tokenUrl: "https://u:p@a.example/t" }), /^spec.tokenUrl: .*user-info/],
    ["relative token URL", token({ tokenUrl: "/connect/token" }), /^spec.tokenUrl:/],
    [
      "http token URL",
      token({ tokenUrl: "http://127.0.0.1:9000/token" }),
      /^spec.tokenUrl: must use https:\/\/.*development flag/,
    ],
    ["no credentials ref", token({ credentialsSecretRef: undefined }), /^spec.credentialsSecretRef: is required$/],
    ["no credentials name", token({ credentialsSecretRef: {} }), /^spec.credentialsSecretRef.name: is required$/],
    [
      "bad credentials name",
      token({ credentialsSecretRef: { name: "Nexar_App" } }),
      /^spec.credentialsSecretRef.name: credentialsSecretRef.name must be a valid Kubernetes object name/,
    ],
    ["credentials namespace field", token({ credentialsSecretRef: { name: "a", namespace: "other" } }), /^$/],
    [
      "bad key",
      token({ credentialsSecretRef: { name: "a", clientIdKey: "client id" } }),
      /^spec.credentialsSecretRef.clientIdKey: clientIdKey must be a valid Secret data key/,
    ],
    [
      "dot-dot key",
      token({ credentialsSecretRef: { name: "a", clientSecretKey: "..x" } }),
      /clientSecretKey must be a valid Secret data key/,
    ],
    [
      "dot key",
      token({ credentialsSecretRef: { name: "a", clientIdKey: "." } }),
      /^spec.credentialsSecretRef.clientIdKey: clientIdKey must be a valid Secret data key/,
    ],
    [
      "both renewals",
      token({ renewBefore: "8h", renewBeforePercentage: 33 }),
      /^spec: set at most one of renewBefore and renewBeforePercentage$/,
    ],
    [
      "renewBefore in days",
      token({ renewBefore: "1d" }),
      /^spec.renewBefore: renewBefore must be a duration of hours, minutes and seconds/,
    ],
    ["renewBefore zero", token({ renewBefore: "0s" }), /^spec.renewBefore: .*at least 1s$/],
    ["renewBefore in ms", token({ renewBefore: "500ms" }), /^spec.renewBefore:/],
    [
      "percentage 0",
      token({ renewBeforePercentage: 0 }),
      /^spec.renewBeforePercentage: expected integer to be greater or equal to 1$/,
    ],
    ["percentage 91", token({ renewBeforePercentage: 91 }), /^spec.renewBeforePercentage:/],
    ["percentage fraction", token({ renewBeforePercentage: 33.3 }), /^spec.renewBeforePercentage: expected integer$/],
    ["fallback too short", token({ fallbackLifetime: "30s" }), /^spec.fallbackLifetime: .*at least 1m$/],
    [
      "bad target name",
      token({ target: { name: "-x" } }),
      /^spec.target.name: target.name must be a valid Kubernetes object name/,
    ],
    [
      "bad creationPolicy",
      token({ target: { creationPolicy: "Replace" } }),
      /^spec.target.creationPolicy: must be one of "Owner", "Orphan", "Merge"/,
    ],
    ["adopt as string", token({ target: { adopt: "yes" } }), /^spec.target.adopt: expected boolean$/],
    [
      "template key access_token",
      token({ target: { template: { access_token: "x" } } }),
      /^spec.target.template: target.template keys must not be one of the default keys access_token, token_type, expires_at, scope/,
    ],
    [
      "template key with slash",
      token({ target: { template: { "a/b": "x" } } }),
      /^spec.target.template: target.template keys must be valid Secret data keys/,
    ],
    [
      "33 template keys",
      token({ target: { template: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, "x"])) } }),
      /^spec.target.template:/,
    ],
    [
      "long template",
      token({ target: { template: { k: "x".repeat(4097) } } }),
      /^spec.target.template.k: must be at most 4096 characters long$/,
    ],
    [
      "reserved label",
      token({ target: { labels: { "app.kubernetes.io/managed-by": "me" } } }),
      /^spec.target.labels: target.labels must not set app.kubernetes.io\/managed-by/,
    ],
    [
      "reserved annotation",
      token({ target: { annotations: { "nexar-operator.io/owner": "x/y" } } }),
      /^spec.target.annotations: target.annotations must not set/,
    ],
    ["bad label key", token({ target: { labels: { "a b": "c" } } }), /^spec.target.labels: invalid label key "a b"/],
    ["bad label value", token({ target: { labels: { a: "b c" } } }), /^spec.target.labels\["a"\]: invalid label value/],
    [
      "bad annotation key",
      token({ target: { annotations: { "-a": "c" } } }),
      /^spec.target.annotations: invalid annotation key "-a"/,
    ],
    [
      "target = credentials",
      token({ target: { name: "nexar-app" } }),
      /^spec.credentialsSecretRef.name: the target Secret .* must differ from the credentials Secret/,
    ],
    ["default target = credentials", token({}, "nexar-app"), /must differ from the credentials Secret/],
    [
      "TLS Secret without keys",
      token({ target: { type: "kubernetes.io/tls" } }),
      /^spec.target.template: a Secret of type kubernetes.io\/tls needs the data key\(s\) tls.crt and tls.key/,
    ],
    [
      "service-account token Secret",
      token({ target: { type: "kubernetes.io/service-account-token" } }),
      /^spec.target.type: the operator cannot manage/,
    ],
  ])("rejects %s", (_, obj, message) => {
    const errors = errorsOf(obj);
    if (message.source === "^$") {
      expect(errors).toEqual([]); // unknown fields are pruned by the API server, not errors
      return;
    }
    expect(errors.length, "expected at least one error").toBeGreaterThan(0);
    expect(
      errors.some((e) => message.test(e)),
      errors.join("\n"),
    ).toBe(true);
  });

  it("accepts http token URLs with the development flag", () => {
    expect(errorsOf(token({ tokenUrl: "http://127.0.0.1:9000/token" }), { allowInsecureTokenUrl: true })).toEqual([]);
  });

  it("accepts built-in Secret types when the template provides their keys", () => {
    expect(
      errorsOf(token({ target: { type: "kubernetes.io/basic-auth", template: { password: "{{access_token}}" } } })),
    ).toEqual([]);
    expect(errorsOf(token({ target: { type: "kubernetes.io/tls", creationPolicy: "Merge" } }))).toEqual([]);
  });

  it("reports every error, one line each, naming the field", () => {
    const errors = errorsOf(token({ grant: "X", scopes: [], tokenUrl: 5 }));
    expect(errors).toEqual([
      expect.stringMatching(/^spec.grant: /),
      expect.stringMatching(/^spec.scopes: /),
      expect.stringMatching(/^spec.tokenUrl: /),
    ]);
  });

  it("never throws, whatever the input", () => {
    for (const v of [null, undefined, 1, [], { spec: null }, { spec: [] }, { metadata: null, spec: { scopes: [1] } }]) {
      expect(validateNexarToken(v).ok).toBe(false);
    }
  });
});

describe("statusErrors", () => {
  it("accepts a status the operator would write", () => {
    expect(
      statusErrors({
        observedGeneration: 3,
        conditions: [
          {
            type: "Ready",
            status: "True",
            reason: "TokenIssued",
            message: "token valid until 2026-12-01T10:00:00Z",
            lastTransitionTime: "2026-11-30T10:00:00Z",
            observedGeneration: 3,
          },
        ],
        expiresAt: "2026-12-01T10:00:00Z",
        renewalTime: "2026-12-01T02:00:00.5+01:00",
        grantedScopes: ["supply.domain"],
        failedAttempts: 0,
        secretName: "supply-token",
      }),
    ).toEqual([]);
  });
  it("rejects malformed timestamps and condition statuses", () => {
    expect(
      statusErrors({
        expiresAt: "tomorrow",
        conditions: [
          { type: "Ready", status: "Yes", reason: "X", message: "", lastTransitionTime: "2026-11-30T10:00:00Z" },
        ],
      }),
    ).toEqual([
      expect.stringMatching(/^status.conditions\[0\].status: must be one of "True", "False", "Unknown"/),
      expect.stringMatching(/^status.expiresAt: must be a date-time/),
    ]);
  });
});
