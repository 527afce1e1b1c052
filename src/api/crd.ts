/**
 * Builds the `NexarToken` CustomResourceDefinition from the TypeBox schema (`schema.ts`). Pure:
 * `hack/generate-crd.ts` writes the result to `crds/nexartokens.nexar-operator.io.yaml`, and
 * `crd.test.ts` fails when the committed file differs from {@link renderCrdYaml}.
 *
 * TypeBox emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema
 * (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).
 * {@link toStructuralSchema} translates: symbol keys (TypeBox internals, CEL twins) are dropped,
 * a union of string literals becomes `type: string` + `enum`, a `Record<string, V>` becomes
 * `additionalProperties: V`, and the keys are put in a stable, readable order.
 */
import { stringify } from "yaml";
import { CATEGORIES, CRD_NAME, GROUP, KIND, LIST_KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION } from "./constants.ts";
import { NexarTokenSchema } from "./schema.ts";

/** A JSON value (what a CRD is made of). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };
/** A JSON object. */
export type JsonObject = { [key: string]: Json };

/** Path of the CRD file relative to the repository root. */
export const CRD_FILE = `crds/${CRD_NAME}.yaml`;

/** Output key order for schema nodes (unlisted keys follow, alphabetically). */
const KEY_ORDER = [
  "description",
  "type",
  "format",
  "enum",
  "default",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "pattern",
  "minItems",
  "maxItems",
  "minProperties",
  "maxProperties",
  "required",
  "properties",
  "items",
  "additionalProperties",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-validations",
];

/** JSON-Schema keys that have no place in a CRD schema and are dropped. */
const DROPPED_KEYS = new Set(["$id", "$schema", "$comment", "examples"]);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Deep copy of JSON data, dropping symbol keys and functions. */
function plain(v: unknown): Json {
  if (Array.isArray(v)) return v.map(plain);
  if (isObject(v)) {
    const out: JsonObject = {};
    for (const k of Object.keys(v)) {
      const x = v[k];
      if (typeof x !== "function" && x !== undefined) out[k] = plain(x);
    }
    return out;
  }
  if (typeof v === "string" || typeof v === "number" || typeof v === "boolean" || v === null) return v;
  throw new TypeError(`not JSON: ${typeof v}`);
}

function ordered(node: JsonObject): JsonObject {
  const keys = Object.keys(node).sort((a, b) => {
    const ia = KEY_ORDER.indexOf(a);
    const ib = KEY_ORDER.indexOf(b);
    if (ia !== -1 || ib !== -1) return (ia === -1 ? Infinity : ia) - (ib === -1 ? Infinity : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  });
  const out: JsonObject = {};
  for (const k of keys) out[k] = node[k] as Json;
  return out;
}

/**
 * Translates one TypeBox schema node (and its children) into a structural OpenAPI v3 schema node.
 *
 * @param schema  a TypeBox schema (or any JSON Schema using the same subset).
 * @param path    location for error messages, e.g. `spec.target`.
 * @throws {Error} on a construct Kubernetes cannot express structurally (a non-literal union, a
 *   record with a key pattern, a node without `type`).
 */
export function toStructuralSchema(schema: unknown, path = "<root>"): JsonObject {
  const src = plain(schema);
  if (!isObject(src)) throw new Error(`${path}: schema is not an object`);
  const node: JsonObject = {};
  for (const [k, v] of Object.entries(src)) if (!DROPPED_KEYS.has(k)) node[k] = v;

  if ("anyOf" in node) {
    const options = node["anyOf"];
    const literals = Array.isArray(options) ? options.map((o) => (isObject(o) ? o["const"] : undefined)) : [];
    if (literals.length === 0 || !literals.every((l): l is string => typeof l === "string")) {
      throw new Error(`${path}: only unions of string literals are supported (rendered as enum)`);
    }
    delete node["anyOf"];
    node["type"] = "string";
    node["enum"] = literals;
  }
  if ("const" in node) {
    node["enum"] = [node["const"] as Json];
    delete node["const"];
  }
  if ("patternProperties" in node) {
    const pp = node["patternProperties"];
    const entries = isObject(pp) ? Object.entries(pp) : [];
    const [entry] = entries;
    if (entries.length !== 1 || entry === undefined || entry[0] !== "^(.*)$") {
      throw new Error(`${path}: only Record<string, V> maps are supported; express key rules in CEL`);
    }
    delete node["patternProperties"];
    node["additionalProperties"] = entry[1];
  }
  if (node["additionalProperties"] === false) {
    throw new Error(`${path}: additionalProperties: false is not allowed in a structural schema`);
  }
  if (typeof node["type"] !== "string") throw new Error(`${path}: every schema node needs a type`);

  const props = node["properties"];
  if (isObject(props)) {
    if (Object.keys(props).length === 0) {
      delete node["properties"];
    } else {
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(props))
        out[k] = toStructuralSchema(v, path === "<root>" ? k : `${path}.${k}`);
      node["properties"] = out;
    }
  }
  if (Array.isArray(node["required"]) && node["required"].length === 0) delete node["required"];
  if (node["items"] !== undefined) node["items"] = toStructuralSchema(node["items"], `${path}[]`);
  if (isObject(node["additionalProperties"])) {
    node["additionalProperties"] = toStructuralSchema(node["additionalProperties"], `${path}{}`);
  }
  return ordered(node);
}

/**
 * The `openAPIV3Schema` of the CRD. `metadata` is a bare `type: object`: the API server owns its
 * schema and rejects anything else there (even a description) except name/generateName rules.
 */
export function buildOpenApiSchema(): JsonObject {
  const root = toStructuralSchema(NexarTokenSchema);
  (root["properties"] as JsonObject)["metadata"] = { type: "object" };
  return root;
}

/**
 * `additionalPrinterColumns` (SPEC §2: Ready, Reason, Expires, Renewal, Age; plus Secret for
 * `-o wide`). Expires and Renewal are `string` columns showing the RFC 3339 timestamp: a `date`
 * column renders `time.Since(t)`, which is `<invalid>` for the future times these are.
 */
export const PRINTER_COLUMNS: readonly JsonObject[] = [
  {
    name: "Ready",
    type: "string",
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description: "Whether the target Secret holds a valid token.",
  },
  {
    name: "Reason",
    type: "string",
    jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
    description: "Reason of the Ready condition.",
  },
  {
    name: "Expires",
    type: "string",
    format: "date-time",
    jsonPath: ".status.expiresAt",
    description: "When the current token expires (RFC 3339, UTC).",
  },
  {
    name: "Renewal",
    type: "string",
    format: "date-time",
    jsonPath: ".status.renewalTime",
    description: "When the operator plans to renew the token (RFC 3339, UTC).",
  },
  {
    name: "Secret",
    type: "string",
    jsonPath: ".status.secretName",
    description: "The target Secret.",
    priority: 1,
  },
  { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
];

/** The whole CustomResourceDefinition (apiextensions.k8s.io/v1) as plain JSON. */
export function buildCrd(): JsonObject {
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: CRD_NAME },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: LIST_KIND,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: [...SHORT_NAMES],
        categories: [...CATEGORIES],
      },
      scope: "Namespaced",
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: PRINTER_COLUMNS.map((c) => ({ ...c })),
          schema: { openAPIV3Schema: buildOpenApiSchema() },
        },
      ],
    },
  };
}

/** Header comment of the generated file. */
const HEADER =
  " Generated by hack/generate-crd.ts from src/api/schema.ts. DO NOT EDIT.\n Change src/api/schema.ts and run `make generate` (node hack/generate-crd.ts).";

/** The CRD file's exact content (YAML, with a do-not-edit header, ending in a newline). */
export function renderCrdYaml(): string {
  const body = stringify(buildCrd(), { lineWidth: 0, singleQuote: false });
  return `#${HEADER.replace(/\n/g, "\n#")}\n${body}`;
}
