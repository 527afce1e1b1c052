/**
 * The generated NexarToken CRD against a real kube-apiserver (SPEC §2, §7): it installs, the API
 * server applies its defaults, rejects invalid objects with clear messages, accepts the example,
 * serves the status subresource and the printer columns, and publishes the field descriptions
 * `kubectl explain` shows. Every spec case is also run through the operator's own validation
 * (`validateNexarToken`), so the CEL rules and their TypeScript twins cannot drift apart.
 */
import { readFileSync } from "node:fs";
import { request } from "node:https";
import { fileURLToPath } from "node:url";
import { ApiextensionsV1Api, CoreV1Api, CustomObjectsApi, loadYaml } from "@kubernetes/client-node";
import type { KubeConfig, V1CustomResourceDefinition, V1Secret } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { GROUP, PLURAL, VERSION } from "../../src/api/constants.ts";
import { buildCrd, CRD_FILE } from "../../src/api/crd.ts";
import { withDefaults } from "../../src/api/defaults.ts";
import type { NexarToken } from "../../src/api/types.ts";
import { validateNexarToken } from "../../src/api/validate.ts";
import { startControlPlane } from "../harness/controlplane.ts";
import type { ControlPlane } from "../harness/controlplane.ts";
import { apiErrorCode, createNamespace, loadKubeConfig, waitFor } from "../harness/kube.ts";

const repo = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));
const NS = "crd-test";

let cp: ControlPlane;
let kc: KubeConfig;
let custom: CustomObjectsApi;
let core: CoreV1Api;

/**
 * Create the CRD from the committed file and wait for Established. `loadYaml` deserialises into
 * client-node's model first: handing client-node the raw YAML object loses every field whose
 * model name differs from its JSON name (`default`, `enum`, `x-kubernetes-*` become `_default`,
 * `_enum`, `x_kubernetes_*`), i.e. all defaults, enums and CEL rules.
 */
async function installCrd(): Promise<void> {
  const api = kc.makeApiClient(ApiextensionsV1Api);
  const body = loadYaml<V1CustomResourceDefinition>(readFileSync(repo(CRD_FILE), "utf8"));
  const name = body.metadata?.name ?? "";
  await api.createCustomResourceDefinition({ body });
  await waitFor(`CRD ${name} Established`, async () => {
    const crd = await api.readCustomResourceDefinition({ name });
    return crd.status?.conditions?.some((c) => c.type === "Established" && c.status === "True") === true
      ? true
      : undefined;
  });
}

beforeAll(async () => {
  cp = await startControlPlane({ controllerManager: false });
  kc = loadKubeConfig(cp.kubeconfigPath);
  await installCrd();
  custom = kc.makeApiClient(CustomObjectsApi);
  core = kc.makeApiClient(CoreV1Api);
  await createNamespace(kc, NS);
});

afterAll(async () => {
  await cp?.stop();
});

type Obj = Record<string, unknown>;

function nexarToken(name: string, spec: Obj): Obj {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: "NexarToken", metadata: { name, namespace: NS }, spec };
}

const minimalSpec = (extra: Obj = {}): Obj => ({
  scopes: ["supply.domain"],
  credentialsSecretRef: { name: "nexar-app" },
  ...extra,
});

/** The `message` of a Kubernetes Status error body, or the error's own message. */
function statusMessage(err: unknown): string {
  const body = (err as { body?: unknown }).body;
  if (typeof body === "string") {
    try {
      return String((JSON.parse(body) as { message?: unknown }).message);
    } catch {
      return body;
    }
  }
  return err instanceof Error ? err.message : String(err);
}

type Verdict = { accepted: true; obj: NexarToken } | { accepted: false; code: number | undefined; message: string };

/** Create (dry-run unless `persist`) and report what the API server said. */
async function create(body: Obj, persist = false): Promise<Verdict> {
  try {
    const obj = (await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: PLURAL,
      body,
      ...(persist ? {} : { dryRun: "All" }),
    })) as NexarToken;
    return { accepted: true, obj };
  } catch (err) {
    return { accepted: false, code: apiErrorCode(err), message: statusMessage(err) };
  }
}

async function read(name: string): Promise<NexarToken> {
  return (await custom.getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace: NS,
    plural: PLURAL,
    name,
  })) as NexarToken;
}

/** GET with an explicit Accept header (for Table and OpenAPI responses, which client-node has no method for). */
async function getRaw(path: string, accept: string): Promise<unknown> {
  const server = kc.getCurrentCluster()?.server;
  if (server === undefined) throw new Error("kubeconfig has no cluster");
  const url = new URL(path, server);
  const opts = { hostname: url.hostname, port: url.port, path: url.pathname + url.search, headers: { Accept: accept } };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = request(opts, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if ((res.statusCode ?? 0) >= 300) reject(new Error(`GET ${path}: HTTP ${res.statusCode}: ${text}`));
        else resolve(JSON.parse(text));
      });
    });
    req.on("error", reject);
    req.end();
  });
}

describe("NexarToken CRD on a real API server", () => {
  it("is stored exactly as generated (nothing lost on the way in)", async () => {
    const stored = (await getRaw(
      `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${PLURAL}.${GROUP}`,
      "application/json",
    )) as {
      spec: { versions: { schema: unknown; additionalPrinterColumns: unknown }[] };
    };
    const wanted = buildCrd() as { spec: { versions: { schema: unknown }[] } };
    expect(stored.spec.versions[0]?.schema).toEqual(wanted.spec.versions[0]?.schema);
  });

  it("applies the CRD defaults, and they match withDefaults()", async () => {
    const v = await create(nexarToken("defaults", minimalSpec()), true);
    expect(v.accepted, v.accepted ? "" : v.message).toBe(true);
    const stored = await read("defaults");
    expect(stored.spec).toEqual({
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
    expect(withDefaults(stored.spec, stored.metadata)).toEqual(
      withDefaults(minimalSpec() as never, { name: "defaults" }),
    );
    expect(validateNexarToken(stored)).toMatchObject({ ok: true, spec: { target: { name: "defaults" } } });
  });

  it("prunes unknown fields such as a credentials namespace (same namespace by construction)", async () => {
    const v = await create(
      nexarToken("pruned", minimalSpec({ credentialsSecretRef: { name: "a", namespace: "kube-system" } })),
    );
    expect(v.accepted).toBe(true);
    if (v.accepted) expect(v.obj.spec.credentialsSecretRef).not.toHaveProperty("namespace");
  });

  it("accepts examples/nexartoken-supply.yaml (credentials Secret + NexarToken)", async () => {
    const docs = parseAllDocuments(readFileSync(repo("examples/nexartoken-supply.yaml"), "utf8"))
      .map((d) => d.toJS() as Obj | null)
      .filter((d): d is Obj => d !== null);
    expect(docs.map((d) => d["kind"])).toEqual(["Secret", "NexarToken"]);
    const [secret, token] = docs as [Obj, Obj];
    await core.createNamespacedSecret({ namespace: NS, body: secret as V1Secret });
    const v = await create({ ...token, metadata: { ...(token["metadata"] as Obj), namespace: NS } }, true);
    expect(v.accepted, v.accepted ? "" : v.message).toBe(true);
    const stored = await read("supply");
    expect(stored.spec.target?.template).toMatchObject({ Authorization: "Bearer {{access_token}}" });
    const r = validateNexarToken(stored);
    expect(r.ok, r.ok ? "" : r.errors.join("\n")).toBe(true);
  });

  // [case, spec, server message (must match), operator error (must match)]
  it.each<[string, Obj, RegExp, RegExp]>([
    [
      "both renewBefore and renewBeforePercentage",
      minimalSpec({ renewBefore: "8h", renewBeforePercentage: 33 }),
      /spec: Invalid value: .*set at most one of renewBefore and renewBeforePercentage/,
      /^spec: set at most one of renewBefore and renewBeforePercentage/,
    ],
    [
      "a scope with a space",
      minimalSpec({ scopes: ["supply domain"] }),
      /spec\.scopes\[0\]: Invalid value: "supply domain": spec\.scopes\[0\] in body should match '\^\[!#-/,
      /^spec\.scopes\[0\]: each scope must be a single OAuth scope-token/,
    ],
    [
      "0 scopes",
      minimalSpec({ scopes: [] }),
      /spec\.scopes: Invalid value: 0: spec\.scopes in body should have at least 1 items/,
      /^spec\.scopes: must have at least 1 item/,
    ],
    [
      "33 scopes",
      minimalSpec({ scopes: Array.from({ length: 33 }, (_, i) => `scope${i}`) }),
      /spec\.scopes: Too many: 33: must have at most 32 items/,
      /^spec\.scopes: must have at most 32 items/,
    ],
    [
      "no scopes",
      { credentialsSecretRef: { name: "nexar-app" } },
      /spec\.scopes: Required value/,
      /^spec\.scopes: is required/,
    ],
    [
      "a bad grant",
      minimalSpec({ grant: "Password" }),
      /spec\.grant: Unsupported value: "Password": supported values: "ClientCredentials", "RefreshToken"/,
      /^spec\.grant: must be one of "ClientCredentials", "RefreshToken"/,
    ],
    [
      "template key access_token",
      minimalSpec({ target: { template: { access_token: "{{access_token}}" } } }),
      /spec\.target\.template: Invalid value: .*keys must not be one of the default keys access_token, token_type, expires_at, scope/,
      /^spec\.target\.template: .*must not be one of the default keys/,
    ],
    [
      "tokenUrl ftp://",
      minimalSpec({ tokenUrl: "ftp://identity.nexar.com/connect/token" }),
      /spec\.tokenUrl: Invalid value: "ftp:\/\/identity\.nexar\.com\/connect\/token": spec\.tokenUrl in body should match '\^https\?:/,
      /^spec\.tokenUrl: tokenUrl must be an absolute https:\/\//,
    ],
    [
      "a tokenUrl with credentials in it",
      minimalSpec({ tokenUrl: "https://user:pass@identity.nexar.com/connect/token" }),
      /spec\.tokenUrl: Invalid value: "https:\/\/user:pass@identity\.nexar\.com\/connect\/token": spec\.tokenUrl in body should match/,
      /^spec\.tokenUrl: .*without user-info/,
    ],
    [
      "a target Secret equal to the credentials Secret",
      minimalSpec({ target: { name: "nexar-app" } }),
      /spec\.credentialsSecretRef\.name: Invalid value: .*must differ from the credentials Secret/,
      /^spec\.credentialsSecretRef\.name: .*must differ from the credentials Secret/,
    ],
    [
      "renewBefore in days",
      minimalSpec({ renewBefore: "1d" }),
      /spec\.renewBefore: Invalid value: "1d": renewBefore must be a duration of hours, minutes and seconds/,
      /^spec\.renewBefore: renewBefore must be a duration/,
    ],
    [
      "renewBeforePercentage 95",
      minimalSpec({ renewBeforePercentage: 95 }),
      /spec\.renewBeforePercentage: Invalid value: 95: spec\.renewBeforePercentage in body should be less than or equal to 90/,
      /^spec\.renewBeforePercentage: /,
    ],
    [
      "fallbackLifetime under a minute",
      minimalSpec({ fallbackLifetime: "30s" }),
      /spec\.fallbackLifetime: Invalid value: "30s": .*at least 1m/,
      /^spec\.fallbackLifetime: .*at least 1m/,
    ],
    [
      "an upper-case credentials Secret name",
      minimalSpec({ credentialsSecretRef: { name: "Nexar-App" } }),
      /spec\.credentialsSecretRef\.name: Invalid value: "Nexar-App": spec\.credentialsSecretRef\.name in body should match '\^\[a-z0-9\]/,
      /^spec\.credentialsSecretRef\.name: .*valid Kubernetes object name/,
    ],
    [
      "a credentials key with a space",
      minimalSpec({ credentialsSecretRef: { name: "nexar-app", clientSecretKey: "client secret" } }),
      /spec\.credentialsSecretRef\.clientSecretKey: Invalid value: "client secret": spec\.credentialsSecretRef\.clientSecretKey in body should match/,
      /^spec\.credentialsSecretRef\.clientSecretKey: clientSecretKey must be a valid Secret data key/,
    ],
    [
      "a template key with a slash",
      minimalSpec({ target: { template: { "a/b": "x" } } }),
      /spec\.target\.template: Invalid value: .*keys must be valid Secret data keys/,
      /^spec\.target\.template: .*keys must be valid Secret data keys/,
    ],
    [
      "a bad creationPolicy",
      minimalSpec({ target: { creationPolicy: "Replace" } }),
      /spec\.target\.creationPolicy: Unsupported value: "Replace": supported values: "Owner", "Orphan", "Merge"/,
      /^spec\.target\.creationPolicy: must be one of "Owner", "Orphan", "Merge"/,
    ],
    [
      "the operator's own label",
      minimalSpec({ target: { labels: { "app.kubernetes.io/managed-by": "me" } } }),
      /spec\.target\.labels: Invalid value: .*must not set app\.kubernetes\.io\/managed-by/,
      /^spec\.target\.labels: .*must not set app\.kubernetes\.io\/managed-by/,
    ],
    [
      "the operator's own annotation",
      minimalSpec({ target: { annotations: { "nexar-operator.io/expires-at": "never" } } }),
      /spec\.target\.annotations: Invalid value: .*must not set nexar-operator\.io\/expires-at/,
      /^spec\.target\.annotations: .*must not set/,
    ],
  ])("rejects %s with a clear message, as the operator does", async (_, spec, serverMessage, operatorMessage) => {
    const v = await create(nexarToken("invalid", spec));
    expect(v.accepted, "the API server accepted an invalid object").toBe(false);
    if (v.accepted) return;
    expect(v.code).toBe(422);
    expect(v.message).toMatch(serverMessage);

    const r = validateNexarToken(nexarToken("invalid", spec));
    expect(r.ok, "validateNexarToken accepted an object the API server rejects").toBe(false);
    if (!r.ok)
      expect(
        r.errors.some((e) => operatorMessage.test(e)),
        r.errors.join("\n"),
      ).toBe(true);
  });

  // More malformed objects (issue: at least 30 rejected with a clear message). Each must be
  // refused by the API server (schema or CEL) and by the operator's own validation.
  const long = (n: number) => "a".repeat(n);
  it.each<[string, Obj, RegExp]>([
    [
      "a plain-http, non-loopback tokenUrl",
      minimalSpec({ tokenUrl: "http://identity.nexar.com/connect/token" }),
      /spec\.tokenUrl: .*must use https:\/\//,
    ],
    [
      "a tokenUrl with a fragment",
      minimalSpec({ tokenUrl: "https://identity.nexar.com/connect/token#x" }),
      /spec\.tokenUrl: Invalid value: "https:\/\/identity\.nexar\.com\/connect\/token#x": .*should match/,
    ],
    ["an empty tokenUrl", minimalSpec({ tokenUrl: "" }), /spec\.tokenUrl: Invalid value: "": .*at least 1 chars/],
    [
      "a relative tokenUrl",
      minimalSpec({ tokenUrl: "/connect/token" }),
      /spec\.tokenUrl: Invalid value: "\/connect\/token": .*should match/,
    ],
    [
      "a negative percentage",
      minimalSpec({ renewBeforePercentage: -5 }),
      /spec\.renewBeforePercentage: .*greater than or equal to 1/,
    ],
    [
      "a zero percentage",
      minimalSpec({ renewBeforePercentage: 0 }),
      /spec\.renewBeforePercentage: .*greater than or equal to 1/,
    ],
    [
      "a fractional percentage",
      minimalSpec({ renewBeforePercentage: 33.5 }),
      /spec\.renewBeforePercentage: Invalid value: "number"/,
    ],
    [
      "an unknown clientAuthentication",
      minimalSpec({ clientAuthentication: "PrivateKeyJwt" }),
      /spec\.clientAuthentication: Unsupported value: "PrivateKeyJwt"/,
    ],
    ["a negative renewBefore", minimalSpec({ renewBefore: "-1h" }), /spec\.renewBefore: .*must be a duration/],
    ["a zero renewBefore", minimalSpec({ renewBefore: "0s" }), /spec\.renewBefore: .*at least 1s/],
    ["a renewBefore without unit", minimalSpec({ renewBefore: "3600" }), /spec\.renewBefore: .*must be a duration/],
    ["no credentialsSecretRef", { scopes: ["supply.domain"] }, /spec\.credentialsSecretRef: Required value/],
    [
      "an empty credentials Secret name",
      minimalSpec({ credentialsSecretRef: { name: "" } }),
      /spec\.credentialsSecretRef\.name: Invalid value: ""/,
    ],
    [
      "an over-long credentials Secret name",
      minimalSpec({ credentialsSecretRef: { name: long(254) } }),
      /spec\.credentialsSecretRef\.name: Too long: may not be (longer than|more than) 253/,
    ],
    [
      "an over-long target name",
      minimalSpec({ target: { name: long(254) } }),
      /spec\.target\.name: Too long: may not be (longer than|more than) 253/,
    ],
    [
      "an over-long scope",
      minimalSpec({ scopes: [long(129)] }),
      /spec\.scopes\[0\]: Too long: may not be (longer than|more than) 128/,
    ],
    ["an empty scope", minimalSpec({ scopes: [""] }), /spec\.scopes\[0\]: Invalid value: "": .*at least 1 chars/],
    [
      "a duplicated scope",
      minimalSpec({ scopes: ["supply.domain", "supply.domain"] }),
      /spec\.scopes\[1\]: Duplicate value: "supply\.domain"/,
    ],
    [
      "scopes as a string",
      minimalSpec({ scopes: "supply.domain" }),
      /spec\.scopes: Invalid value: "string": spec\.scopes in body must be of type array/,
    ],
    [
      "adopt as a string",
      minimalSpec({ target: { adopt: "yes" } }),
      /spec\.target\.adopt: Invalid value: "string": spec\.target\.adopt in body must be of type boolean/,
    ],
    [
      "a template over 4096 characters",
      minimalSpec({ target: { template: { big: long(4097) } } }),
      /spec\.target\.template\.big: Too long: may not be (longer than|more than) 4096/,
    ],
    [
      "a credentials key '.'",
      minimalSpec({ credentialsSecretRef: { name: "nexar-app", clientIdKey: "." } }),
      /spec\.credentialsSecretRef\.clientIdKey: Invalid value: "\.": .*should match/,
    ],
    [
      "a credentials key starting with '..'",
      minimalSpec({ credentialsSecretRef: { name: "nexar-app", refreshTokenKey: "..token" } }),
      /spec\.credentialsSecretRef\.refreshTokenKey: Invalid value: "\.\.token": .*should match/,
    ],
    [
      "an unknown grant case",
      minimalSpec({ grant: "clientcredentials" }),
      /spec\.grant: Unsupported value: "clientcredentials"/,
    ],
  ])("also rejects %s", async (_, spec, serverMessage) => {
    const v = await create(nexarToken("invalid", spec));
    expect(v.accepted, "the API server accepted an invalid object").toBe(false);
    if (v.accepted) return;
    expect(v.code).toBe(422);
    expect(v.message).toMatch(serverMessage);
    const r = validateNexarToken(nexarToken("invalid", spec), { allowInsecureTokenUrl: true });
    expect(r.ok, "validateNexarToken accepted an object the API server rejects").toBe(false);
  });

  it.each<[string, Obj]>([
    ["every scope-token character", minimalSpec({ scopes: ["!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "A9"] })],
    ["32 scopes", minimalSpec({ scopes: Array.from({ length: 32 }, (_, i) => `s${i}`) })],
    [
      "grant RefreshToken with design scopes",
      minimalSpec({ grant: "RefreshToken", scopes: ["openid", "design.domain", "offline_access"] }),
    ],
    ["ClientSecretBasic", minimalSpec({ clientAuthentication: "ClientSecretBasic" })],
    ["an IPv6 token URL with port and query", minimalSpec({ tokenUrl: "https://[::1]:8443/connect/token?tenant=a" })],
    ["renewBefore 1h30m", minimalSpec({ renewBefore: "1h30m" })],
    ["renewBefore 1.5h", minimalSpec({ renewBefore: "1.5h" })],
    ["renewBeforePercentage 90", minimalSpec({ renewBeforePercentage: 90 })],
    ["fallbackLifetime 1m", minimalSpec({ fallbackLifetime: "1m" })],
    [
      "custom credential keys",
      minimalSpec({
        credentialsSecretRef: { name: "a.b-c", clientIdKey: ".id", clientSecretKey: "_s", refreshTokenKey: "a..b" },
      }),
    ],
    [
      "a full target",
      minimalSpec({
        target: {
          name: "supply-token",
          type: "Opaque",
          creationPolicy: "Merge",
          adopt: true,
          labels: { "reloader.stakater.com/match": "true" },
          annotations: { "example.com/x": "y" },
          template: { ".env": "T={{access_token}}", Authorization: "Bearer {{access_token}}" },
        },
      }),
    ],
  ])("accepts %s, as the operator does", async (_, spec) => {
    const v = await create(nexarToken("valid", spec));
    expect(v.accepted, v.accepted ? "" : v.message).toBe(true);
    const r = validateNexarToken(v.accepted ? v.obj : nexarToken("valid", spec));
    expect(r.ok, r.ok ? "" : r.errors.join("\n")).toBe(true);
  });

  it("serves status as a subresource, validates it, and prints the columns", async () => {
    await create(nexarToken("with-status", minimalSpec()), true);
    const obj = await read("with-status");
    const expiresAt = new Date(Date.now() + 24 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
    const renewalTime = new Date(Date.now() + 16 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
    const status = {
      observedGeneration: 1,
      conditions: [
        {
          type: "Ready",
          status: "True",
          reason: "TokenIssued",
          message: "token issued",
          lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
          observedGeneration: 1,
        },
      ],
      expiresAt,
      renewalTime,
      grantedScopes: ["supply.domain"],
      failedAttempts: 0,
      secretName: "with-status",
    };
    const params = { group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, name: "with-status" };
    await custom.replaceNamespacedCustomObjectStatus({ ...params, body: { ...obj, status } });
    const updated = await read("with-status");
    expect(updated.status).toEqual(status);
    expect(updated.metadata.generation).toBe(1); // a status write is not a spec change

    // status is ignored on the main resource
    await custom.replaceNamespacedCustomObject({
      ...params,
      body: { ...updated, status: { ...status, failedAttempts: 7 } },
    });
    expect((await read("with-status")).status?.failedAttempts).toBe(0);

    // status is validated
    const bad = await custom
      .replaceNamespacedCustomObjectStatus({
        ...params,
        body: {
          ...(await read("with-status")),
          status: { ...status, conditions: [{ ...status.conditions[0], status: "Yes" }] },
        },
      })
      .then(
        () => "accepted",
        (err: unknown) => statusMessage(err),
      );
    expect(bad).toMatch(/status\.conditions\[0\]\.status: Unsupported value: "Yes"/);

    const table = (await getRaw(
      `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${PLURAL}/with-status`,
      "application/json;as=Table;v=v1;g=meta.k8s.io",
    )) as { columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] };
    const names = table.columnDefinitions.map((c) => c.name);
    expect(names).toEqual(["Name", "Ready", "Reason", "Expires", "Renewal", "Secret", "Age"]);
    const row = table.rows[0]?.cells ?? [];
    const cell = (n: string): unknown => row[names.indexOf(n)];
    expect([cell("Ready"), cell("Reason"), cell("Expires"), cell("Renewal"), cell("Secret")]).toEqual([
      "True",
      "TokenIssued",
      expiresAt,
      renewalTime,
      "with-status",
    ]);
  });

  it("publishes every field description for kubectl explain", async () => {
    const doc = (await getRaw(`/openapi/v3/apis/${GROUP}/${VERSION}`, "application/json")) as {
      components: {
        schemas: Record<
          string,
          {
            properties?: Record<
              string,
              { description?: string; properties?: Record<string, { description?: string }> }
            >;
          }
        >;
      };
    };
    const schema = Object.entries(doc.components.schemas).find(([k]) => k.endsWith(".NexarToken"))?.[1];
    const spec = schema?.properties?.["spec"];
    expect(spec?.description).toMatch(/Desired state/);
    expect(spec?.properties?.["renewBefore"]?.description).toMatch(/Mutually exclusive with renewBeforePercentage/);
    expect(spec?.properties?.["fallbackLifetime"]?.description).toMatch(/neither expires_in nor a JWT exp/);
  });
});
