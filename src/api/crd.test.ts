import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Type } from "@sinclair/typebox";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { CRD_NAME, DEFAULT_DATA_KEYS } from "./constants.ts";
import { buildCrd, CRD_FILE, type Json, type JsonObject, renderCrdYaml, toStructuralSchema } from "./crd.ts";
import { withDefaults } from "./defaults.ts";
import { NexarTokenSchema, PATTERN_MESSAGE, RULE_CHECKS } from "./schema.ts";
import type { NexarTokenSpec } from "./types.ts";
import { validateNexarToken } from "./validate.ts";

const crdPath = fileURLToPath(new URL(`../../${CRD_FILE}`, import.meta.url));

const crd = buildCrd() as {
  spec: {
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      subresources: JsonObject;
      additionalPrinterColumns: JsonObject[];
      schema: { openAPIV3Schema: JsonObject };
    }[];
  } & JsonObject;
};
const version = crd.spec.versions[0]!;
const root = version.schema.openAPIV3Schema;

/** Every schema node with its field path, depth first. */
function* nodes(node: JsonObject, path: string): Generator<[string, JsonObject]> {
  yield [path, node];
  const props = node["properties"] as Record<string, JsonObject> | undefined;
  for (const [k, v] of Object.entries(props ?? {})) yield* nodes(v, path === "" ? k : `${path}.${k}`);
  if (node["items"] !== undefined) yield* nodes(node["items"] as JsonObject, `${path}[]`);
  const ap = node["additionalProperties"];
  if (typeof ap === "object" && ap !== null) yield* nodes(ap as JsonObject, `${path}{}`);
}
const allNodes = [...nodes(root, "")];
const specNodes = allNodes.filter(([p]) => p === "spec" || p.startsWith("spec."));

describe("committed CRD file", () => {
  it(`${CRD_FILE} equals the generated output (run: node hack/generate-crd.ts)`, () => {
    expect(readFileSync(crdPath, "utf8")).toBe(renderCrdYaml());
  });

  it("parses back to the CRD object", () => {
    expect(parse(renderCrdYaml())).toEqual(buildCrd());
  });
});

describe("CRD metadata", () => {
  it("has the names, scope and version of SPEC §2", () => {
    expect(crd).toMatchObject({
      apiVersion: "apiextensions.k8s.io/v1",
      kind: "CustomResourceDefinition",
      metadata: { name: CRD_NAME },
      spec: {
        group: "nexar-operator.io",
        scope: "Namespaced",
        names: {
          kind: "NexarToken",
          listKind: "NexarTokenList",
          plural: "nexartokens",
          singular: "nexartoken",
          shortNames: ["nxt"],
          categories: ["nexar"],
        },
      },
    });
    expect(crd.spec.versions).toHaveLength(1);
    expect(version).toMatchObject({ name: "v1alpha1", served: true, storage: true, subresources: { status: {} } });
  });

  it("has the printer columns Ready, Reason, Expires, Renewal, Age", () => {
    const cols = version.additionalPrinterColumns;
    const byName = Object.fromEntries(cols.map((c) => [c["name"], c]));
    expect(cols.filter((c) => c["priority"] === undefined).map((c) => c["name"])).toEqual([
      "Ready",
      "Reason",
      "Expires",
      "Renewal",
      "Age",
    ]);
    expect(byName["Ready"]).toMatchObject({ jsonPath: '.status.conditions[?(@.type=="Ready")].status' });
    expect(byName["Reason"]).toMatchObject({ jsonPath: '.status.conditions[?(@.type=="Ready")].reason' });
    expect(byName["Expires"]).toMatchObject({ jsonPath: ".status.expiresAt" });
    expect(byName["Renewal"]).toMatchObject({ jsonPath: ".status.renewalTime" });
    expect(byName["Age"]).toMatchObject({ jsonPath: ".metadata.creationTimestamp", type: "date" });
    // every column's path exists in the schema
    for (const c of cols) {
      // .status.conditions[?(@.type=="Ready")].status → status.conditions[].status
      const path = String(c["jsonPath"])
        .replace(/\[\?.*?\]/, "[]")
        .replace(/^\./, "");
      if (path.startsWith("metadata.")) continue;
      expect(
        allNodes.some(([p]) => p === path),
        `${String(c["name"])} → ${path}`,
      ).toBe(true);
    }
  });
});

/** Every object node of a TypeBox schema (symbol keys kept), with its JSON-pointer-like path. */
function* typeboxNodes(schema: unknown, path: string): Generator<[string, Record<string | symbol, unknown>]> {
  if (typeof schema !== "object" || schema === null) return;
  const s = schema as Record<string | symbol, unknown>;
  yield [path, s];
  for (const [k, v] of Object.entries(s)) if (typeof v === "object") yield* typeboxNodes(v, `${path}/${k}`);
}

describe("structural schema", () => {
  const ALLOWED = new Set([
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
  ]);

  it("uses only OpenAPI v3 keys Kubernetes accepts in a structural schema", () => {
    for (const [path, node] of allNodes) {
      for (const k of Object.keys(node)) expect(ALLOWED.has(k), `${path || "<root>"}: key ${k}`).toBe(true);
      expect(node["additionalProperties"], path).not.toBe(false);
    }
  });

  it("gives every node a type", () => {
    for (const [path, node] of allNodes) {
      expect(["object", "array", "string", "integer", "number", "boolean"], path).toContain(node["type"]);
    }
  });

  it("gives every field a description for kubectl explain (metadata excepted: the API server owns it)", () => {
    for (const [path, node] of allNodes) {
      if (path === "metadata") {
        expect(node).toEqual({ type: "object" });
        continue;
      }
      expect(typeof node["description"] === "string" && node["description"].length >= 10, path || "<root>").toBe(true);
    }
  });

  it("only requires declared properties; list-map keys are required", () => {
    for (const [path, node] of allNodes) {
      const props = Object.keys((node["properties"] as JsonObject | undefined) ?? {});
      for (const r of (node["required"] as string[] | undefined) ?? []) expect(props, path).toContain(r);
      if (node["x-kubernetes-list-type"] === "map") {
        const items = node["items"] as JsonObject;
        for (const k of node["x-kubernetes-list-map-keys"] as string[]) {
          expect(items["required"] as string[], path).toContain(k);
        }
      }
    }
  });

  it("does not require a field that has a default", () => {
    for (const [path, node] of allNodes) {
      const props = (node["properties"] as Record<string, JsonObject> | undefined) ?? {};
      for (const r of (node["required"] as string[] | undefined) ?? []) {
        expect(props[r]?.["default"], `${path}.${r}`).toBeUndefined();
      }
    }
  });

  it("bounds every spec array, map and string, so CEL cost estimates stay small", () => {
    for (const [path, node] of specNodes) {
      if (node["type"] === "array") expect(node["maxItems"], path).toBeTypeOf("number");
      if (node["type"] === "string" && node["enum"] === undefined) expect(node["maxLength"], path).toBeTypeOf("number");
      if (node["type"] === "object" && node["additionalProperties"] !== undefined) {
        expect(node["maxProperties"], path).toBeTypeOf("number");
      }
    }
  });

  it("gives every CEL rule a message, and every rule a TypeScript twin", () => {
    let count = 0;
    for (const [path, s] of typeboxNodes(NexarTokenSchema, "")) {
      const cel = (s["x-kubernetes-validations"] as { rule: string; message: string }[] | undefined) ?? [];
      const twins = (s[RULE_CHECKS] as unknown[] | undefined) ?? [];
      expect(twins.length, path).toBe(cel.length);
      for (const r of cel) {
        count++;
        expect(r.message.length, `${path}: ${r.rule}`).toBeGreaterThan(10);
      }
    }
    expect(count).toBeGreaterThanOrEqual(8);
  });

  it("checks single regular expressions with pattern, each with the message the operator reports, not CEL", () => {
    // A CEL `matches` rule runs on every create and status write of the object (BENCHMARKS.md).
    let patterns = 0;
    for (const [path, s] of typeboxNodes(NexarTokenSchema, "")) {
      for (const r of (s["x-kubernetes-validations"] as { rule: string }[] | undefined) ?? []) {
        expect(r.rule, path).not.toMatch(/^self\.matches\([^)]*\)$/);
      }
      if (typeof s["pattern"] === "string" && path.startsWith("/properties/spec")) {
        patterns++;
        expect(typeof s[PATTERN_MESSAGE], `${path}: message for ${s["pattern"]}`).toBe("string");
      }
    }
    expect(patterns).toBe(7);
  });

  it("has the template-key collision rule for exactly the default data keys", () => {
    const template = allNodes.find(([p]) => p === "spec.target.template")![1];
    const rules = (template["x-kubernetes-validations"] as { rule: string }[]).map((r) => r.rule).join("\n");
    for (const k of DEFAULT_DATA_KEYS) expect(rules).toContain(`'${k}'`);
  });
});

/** Kubernetes structural defaulting: fill `default`s of missing properties, then recurse. */
function applyDefaults(schema: JsonObject, value: Json | undefined): Json | undefined {
  if (value === undefined || value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const props = (schema["properties"] as Record<string, JsonObject> | undefined) ?? {};
  const out: JsonObject = { ...value };
  for (const [k, sub] of Object.entries(props)) {
    if (out[k] === undefined && sub["default"] !== undefined) out[k] = structuredClone(sub["default"]);
    if (out[k] !== undefined) out[k] = applyDefaults(sub, out[k]) as Json;
  }
  return out;
}

describe("defaults", () => {
  const specSchema = (root["properties"] as Record<string, JsonObject>)["spec"]!;
  const minimal = { scopes: ["supply.domain"], credentialsSecretRef: { name: "nexar-app" } };

  it("the CRD's defaults and withDefaults() agree", () => {
    const defaulted = applyDefaults(specSchema, minimal) as unknown as NexarTokenSpec;
    expect(defaulted).toEqual({
      grant: "ClientCredentials",
      scopes: ["supply.domain"],
      tokenUrl: "https://identity.nexar.com/connect/token",
      clientAuthentication: "ClientSecretPost",
      credentialsSecretRef: {
        name: "nexar-app",
        clientIdKey: "clientId",
        clientSecretKey: "clientSecret",
        refreshTokenKey: "refreshToken",
      },
      target: { type: "Opaque", creationPolicy: "Owner", adopt: false },
    });
    expect(withDefaults(defaulted, { name: "supply" })).toEqual(withDefaults(minimal, { name: "supply" }));
  });

  it("the defaulted object passes the operator's validation", () => {
    const obj = {
      apiVersion: "nexar-operator.io/v1alpha1",
      kind: "NexarToken",
      metadata: { name: "supply" },
      spec: applyDefaults(specSchema, minimal),
    };
    expect(validateNexarToken(obj)).toMatchObject({ ok: true });
  });
});

describe("toStructuralSchema", () => {
  it("renders string-literal unions as enums and records as additionalProperties", () => {
    const s = Type.Object(
      {
        e: Type.Union([Type.Literal("A"), Type.Literal("B")], { description: "e" }),
        m: Type.Record(Type.String(), Type.String({ description: "v" }), { description: "m" }),
      },
      { description: "o", $id: "X" },
    );
    expect(toStructuralSchema(s)).toEqual({
      description: "o",
      type: "object",
      required: ["e", "m"],
      properties: {
        e: { description: "e", type: "string", enum: ["A", "B"] },
        m: { description: "m", type: "object", additionalProperties: { description: "v", type: "string" } },
      },
    });
  });

  it.each([
    ["a union of non-literals", Type.Union([Type.String(), Type.Number()])],
    ["a record with a key pattern", Type.Record(Type.String({ pattern: "^a$" }), Type.String())],
    ["additionalProperties: false", Type.Object({}, { additionalProperties: false })],
    ["a node without a type", Type.Unknown()],
  ])("rejects %s", (_, schema) => {
    expect(() => toStructuralSchema(schema)).toThrow();
  });
});
