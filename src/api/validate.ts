/**
 * Runtime validation of a `NexarToken` read from the API server. Pure.
 *
 * The API server already enforces the CRD's OpenAPI schema and CEL rules, but the operator does
 * not trust that alone (the CRD may be older than the operator, or installed without validation),
 * and some rules cannot be expressed in the CRD. So, in order:
 *  1. object shape: apiVersion, kind, metadata.name;
 *  2. the spec against the TypeBox schema (`Value.Errors`), which the CRD is generated from (a
 *     failed `pattern` is reported with the message `schema.ts` gives it, see `patterned`);
 *  3. the TypeScript twins of every CEL rule in `schema.ts`;
 *  4. operator-only rules: https unless the development flag is on, a parsable token URL, no
 *     duplicate scopes, Kubernetes label / annotation syntax, keys required by built-in Secret types.
 * Any error makes the operator report `Ready=False, reason=InvalidSpec` with the messages.
 * Messages name the field (`spec.scopes[1]: ...`) and never include a secret value (the spec
 * holds none: credentials are only referenced).
 */
import { FormatRegistry, type TSchema } from "@sinclair/typebox";
import { Value, ValueErrorType, type ValueError } from "@sinclair/typebox/value";
import { TypeCompiler, type TypeCheck } from "@sinclair/typebox/compiler";
import { API_VERSION, DEFAULT_DATA_KEYS, KIND } from "./constants.ts";
import { withDefaults } from "./defaults.ts";
import {
  NexarTokenSchema,
  NexarTokenSpecSchema,
  NexarTokenStatusSchema,
  PATTERN_MESSAGE,
  RULE_CHECKS,
  type StoredCelRule,
} from "./schema.ts";
import type { NexarToken, ResolvedSpec } from "./types.ts";

/** Compiled checkers per schema (TypeBox's TypeCompiler), built on first use. */
const compiled = new WeakMap<TSchema, TypeCheck<TSchema>>();

/** Options of {@link validateNexarToken}. */
export interface ValidateOptions {
  /**
   * Accept `http://` token URLs (the operator's development flag, SPEC §3.9). Default false: only
   * `https://` is accepted.
   */
  readonly allowInsecureTokenUrl?: boolean;
}

/** Outcome of {@link validateNexarToken}: the typed object and its resolved spec, or the errors. */
export type ValidationResult =
  | {
      readonly ok: true;
      readonly token: NexarToken;
      readonly spec: ResolvedSpec;
    }
  | { readonly ok: false; readonly errors: readonly string[] };

/**
 * Validates an object that should be a `NexarToken` (as returned by the API server, `unknown` on
 * purpose) and resolves its defaults.
 *
 * @param obj      the object; `status` is ignored (the operator owns it).
 * @param options  see {@link ValidateOptions}.
 * @returns `{ok: true, token, spec}` or `{ok: false, errors}` where each error is one
 *   human-readable line `"<field path>: <problem>"`, e.g.
 *   `"spec: set at most one of renewBefore and renewBeforePercentage"`. Never throws.
 */
export function validateNexarToken(obj: unknown, options: ValidateOptions = {}): ValidationResult {
  const errors: string[] = [];
  if (!isRecord(obj))
    return {
      ok: false,
      errors: ["<object>: a NexarToken must be a JSON object"],
    };
  if (obj["apiVersion"] !== API_VERSION) errors.push(`apiVersion: must be ${API_VERSION}`);
  if (obj["kind"] !== KIND) errors.push(`kind: must be ${KIND}`);
  const metadata = obj["metadata"];
  const name = isRecord(metadata) ? metadata["name"] : undefined;
  if (typeof name !== "string" || name === "") errors.push("metadata.name: is required");
  if (obj["spec"] === undefined) errors.push("spec: is required");
  else errors.push(...schemaErrors(NexarTokenSpecSchema, obj["spec"], "spec"));
  if (errors.length > 0) return { ok: false, errors };

  // The shape is right from here on; the CEL twins may rely on it.
  errors.push(...ruleErrors(NexarTokenSchema, obj, "", false));
  errors.push(...ruleErrors(NexarTokenSpecSchema, obj["spec"], "spec", true));
  const token = obj as unknown as NexarToken;
  if (errors.length > 0) return { ok: false, errors };

  let spec: ResolvedSpec;
  try {
    spec = withDefaults(token.spec, token.metadata);
  } catch (e) {
    return { ok: false, errors: [`spec: ${(e as Error).message}`] };
  }
  errors.push(...operatorErrors(token.spec.scopes, spec, options));
  return errors.length > 0 ? { ok: false, errors } : { ok: true, token, spec };
}

/**
 * Checks a status object against the status schema, e.g. in tests of code that writes status.
 * @returns human-readable errors (`"status.conditions[0].status: must be one of ..."`), empty when valid.
 */
export function statusErrors(status: unknown): string[] {
  return schemaErrors(NexarTokenStatusSchema, status, "status");
}

// ---------------------------------------------------------------------------------------------

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** RFC 3339 `date-time` (RFC 3339 §5.6), the format Kubernetes uses for timestamps. */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
if (!FormatRegistry.Has("date-time")) {
  FormatRegistry.Set("date-time", (v) => RFC3339.test(v) && !Number.isNaN(Date.parse(v)));
}

/** JSON pointer (`/spec/scopes/0`) → field path (`spec.scopes[0]`), below `prefix`. */
function fieldPath(prefix: string, pointer: string): string {
  let out = prefix;
  for (const raw of pointer.split("/").slice(1)) {
    const seg = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (/^\d+$/.test(seg)) out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === "" ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === "" ? "<object>" : out;
}

/** Rephrases TypeBox's messages the way Kubernetes phrases its own. */
function describe(e: ValueError): string {
  if (e.value === undefined) return "is required";
  switch (e.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return "is required";
    case ValueErrorType.Union: {
      const options = (e.schema["anyOf"] as unknown[] | undefined) ?? [];
      const values = options.map((o) => (isRecord(o) ? JSON.stringify(o["const"]) : "?"));
      return `must be one of ${values.join(", ")}, got ${JSON.stringify(e.value)}`;
    }
    case ValueErrorType.ArrayMinItems:
      return `must have at least ${String(e.schema["minItems"])} item(s)`;
    case ValueErrorType.ArrayMaxItems:
      return `must have at most ${String(e.schema["maxItems"])} items`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${String(e.schema["maxLength"])} characters long`;
    case ValueErrorType.StringMinLength:
      return `must be at least ${String(e.schema["minLength"])} character(s) long`;
    case ValueErrorType.StringPattern: {
      const message = (e.schema as { [PATTERN_MESSAGE]?: string })[PATTERN_MESSAGE];
      return message ?? `must match ${String(e.schema["pattern"])}, got ${JSON.stringify(e.value)}`;
    }
    case ValueErrorType.StringFormat:
      return `must be a ${String(e.schema["format"])} (RFC 3339), got ${JSON.stringify(e.value)}`;
    default:
      return e.message.charAt(0).toLowerCase() + e.message.slice(1);
  }
}

/**
 * `Value.Errors` as `"<path>: <message>"` lines, one per path: "is required" when the field is
 * missing, else the first (most specific) error TypeBox reports there.
 */
function schemaErrors(schema: TSchema, value: unknown, prefix: string): string[] {
  const check = compiled.get(schema) ?? TypeCompiler.Compile(schema);
  compiled.set(schema, check);
  if (check.Check(value)) return []; // the common case, ~30× cheaper than walking Value.Errors
  const byPath = new Map<string, ValueError>();
  for (const e of Value.Errors(schema, value)) {
    const path = fieldPath(prefix, e.path);
    const prev = byPath.get(path);
    if (prev === undefined || (e.type === ValueErrorType.ObjectRequiredProperty && prev.type !== e.type)) {
      byPath.set(path, e);
    }
  }
  return [...byPath].map(([path, e]) => `${path}: ${describe(e)}`);
}

/**
 * Runs the CEL twins stored on `schema` and, when `deep`, on every sub-schema present in `value`
 * (properties, array items, map values), as the API server evaluates `x-kubernetes-validations`.
 */
function ruleErrors(schema: TSchema, value: unknown, path: string, deep: boolean): string[] {
  const out: string[] = [];
  const rules = (schema as { [RULE_CHECKS]?: readonly StoredCelRule[] })[RULE_CHECKS] ?? [];
  for (const r of rules) {
    if (r.holds(value as never)) continue;
    // fieldPath is relative to the node, e.g. ".spec.credentialsSecretRef.name" at the root.
    const at = `${path}${r.fieldPath ?? ""}`.replace(/^\./, "");
    out.push(`${at === "" ? "<object>" : at}: ${r.message}`);
  }
  if (!deep) return out;
  const props = schema["properties"] as Record<string, TSchema> | undefined;
  const items = schema["items"] as TSchema | undefined;
  const mapValues = schema["patternProperties"] as Record<string, TSchema> | undefined;
  if (props !== undefined && isRecord(value)) {
    for (const [k, sub] of Object.entries(props)) {
      if (value[k] !== undefined) out.push(...ruleErrors(sub, value[k], `${path}.${k}`, true));
    }
  }
  if (items !== undefined && Array.isArray(value)) {
    value.forEach((v, i) => out.push(...ruleErrors(items, v, `${path}[${i}]`, true)));
  }
  if (mapValues !== undefined && isRecord(value)) {
    const sub = Object.values(mapValues)[0];
    if (sub !== undefined) {
      for (const [k, v] of Object.entries(value))
        out.push(...ruleErrors(sub, v, `${path}[${JSON.stringify(k)}]`, true));
    }
  }
  return out;
}

// Kubernetes name syntax (k8s.io/apimachinery/pkg/util/validation).
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Kubernetes `IsQualifiedName`: `[prefix/]name`, prefix a DNS subdomain (≤253), name ≤63. */
function isQualifiedName(key: string): boolean {
  const parts = key.split("/");
  if (parts.length > 2) return false;
  const name = parts.at(-1) ?? "";
  const prefix = parts.length === 2 ? (parts[0] ?? "") : undefined;
  if (prefix !== undefined && (prefix.length === 0 || prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) return false;
  return name.length <= 63 && QUALIFIED_NAME.test(name);
}

/** Kubernetes' limit on the total size of an object's annotations (keys + values), in bytes. */
const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

/**
 * Data keys Kubernetes requires for built-in Secret types (k8s.io/kubernetes pkg/apis/core/validation
 * `ValidateSecret`): every key of one inner list must be present, for at least one list.
 * `null`: the operator cannot produce a Secret of that type.
 */
const SECRET_TYPE_KEYS: Readonly<Record<string, readonly (readonly string[])[] | null>> = {
  "kubernetes.io/service-account-token": null,
  "bootstrap.kubernetes.io/token": null,
  "kubernetes.io/dockercfg": [[".dockercfg"]],
  "kubernetes.io/dockerconfigjson": [[".dockerconfigjson"]],
  "kubernetes.io/basic-auth": [["username"], ["password"]],
  "kubernetes.io/ssh-auth": [["ssh-privatekey"]],
  "kubernetes.io/tls": [["tls.crt", "tls.key"]],
};

/** Rules the CRD cannot express (or that depend on how the operator runs). */
function operatorErrors(storedScopes: readonly string[], spec: ResolvedSpec, options: ValidateOptions): string[] {
  const out: string[] = [];
  if (!URL.canParse(spec.tokenUrl)) {
    out.push("spec.tokenUrl: is not a valid URL");
  } else {
    const url = new URL(spec.tokenUrl);
    if (url.protocol === "http:" && options.allowInsecureTokenUrl !== true) {
      out.push(
        "spec.tokenUrl: must use https:// (plain http:// is accepted only when the operator runs with the development flag --allow-insecure-token-url)",
      );
    }
  }
  // The API server rejects duplicates (x-kubernetes-list-type: set); withDefaults drops them.
  const seen = new Set<string>();
  for (const s of storedScopes) {
    if (seen.has(s)) out.push(`spec.scopes: duplicate scope ${JSON.stringify(s)}`);
    seen.add(s);
  }
  for (const [k, v] of Object.entries(spec.target.labels)) {
    if (!isQualifiedName(k))
      out.push(`spec.target.labels: invalid label key ${JSON.stringify(k)} (see Kubernetes label syntax)`);
    if (!LABEL_VALUE.test(v) || v.length > 63) {
      out.push(
        `spec.target.labels[${JSON.stringify(k)}]: invalid label value: at most 63 characters, letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
      );
    }
  }
  let annotationBytes = 0;
  for (const [k, v] of Object.entries(spec.target.annotations)) {
    if (!isQualifiedName(k.toLowerCase())) {
      out.push(
        `spec.target.annotations: invalid annotation key ${JSON.stringify(k)} (see Kubernetes annotation syntax)`,
      );
    }
    annotationBytes += Buffer.byteLength(k) + Buffer.byteLength(v);
  }
  if (annotationBytes > TOTAL_ANNOTATION_SIZE_LIMIT) {
    out.push(`spec.target.annotations: total size ${annotationBytes} bytes exceeds Kubernetes' limit of 262144 bytes`);
  }
  const required = SECRET_TYPE_KEYS[spec.target.type];
  if (required === null) {
    out.push(`spec.target.type: the operator cannot manage a Secret of type ${spec.target.type}`);
  } else if (required !== undefined && spec.target.creationPolicy !== "Merge") {
    const keys = new Set<string>([...DEFAULT_DATA_KEYS, ...Object.keys(spec.target.template)]);
    if (!required.some((set) => set.every((k) => keys.has(k)))) {
      const need = required.map((set) => set.join(" and ")).join(" or ");
      out.push(
        `spec.target.template: a Secret of type ${spec.target.type} needs the data key(s) ${need}; add them to spec.target.template`,
      );
    }
  }
  return out;
}
