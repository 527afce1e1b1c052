import { describe, expect, it } from "vitest";
import { KubeApiError, type KubeClient, type Secret } from "../kube/client.ts";
import { SecretsApi } from "../kube/secrets.ts";
import { FINGERPRINT_KEY_BYTES, loadFingerprintKey } from "./fingerprint-key.ts";

/** A KubeClient stand-in: GET answers `stored` (404 when undefined), POST answers `onCreate`. */
function kubeWith(stored: () => Secret | undefined, onCreate: (body: Secret) => Secret | Error) {
  const calls: string[] = [];
  const kube = {
    getOrUndefined: (path: string) => {
      calls.push(`GET ${path}`);
      return Promise.resolve(stored());
    },
    request: (method: string, path: string, o: { body?: unknown } = {}) => {
      calls.push(`${method} ${path}`);
      if (method === "GET") return Promise.resolve(stored());
      const out = onCreate(o.body as Secret);
      return out instanceof Error ? Promise.reject(out) : Promise.resolve(out);
    },
  } as unknown as KubeClient;
  return { secrets: new SecretsApi(kube), calls };
}

const keySecret = (b64: string): Secret => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "k", namespace: "ops", resourceVersion: "1" },
  data: { key: b64 },
});

describe("loadFingerprintKey", () => {
  it("creates the Secret with 32 random bytes when there is none, labelled as the operator's, not as a target", async () => {
    let created: Secret | undefined;
    const { secrets, calls } = kubeWith(
      () => undefined,
      (body) => (created = body),
    );
    const key = await loadFingerprintKey(secrets, "ops", "k");
    expect(key.length).toBe(FINGERPRINT_KEY_BYTES);
    expect(Buffer.from(created?.data?.key ?? "", "base64").equals(key)).toBe(true);
    expect(created?.metadata.labels).not.toHaveProperty("app.kubernetes.io/managed-by");
    expect(calls).toEqual(["GET /api/v1/namespaces/ops/secrets/k", "POST /api/v1/namespaces/ops/secrets"]);
  });

  it("reads the key that exists, and the winner's key when another replica created it first (409)", async () => {
    const existing = keySecret(Buffer.alloc(32, 7).toString("base64"));
    const a = kubeWith(
      () => existing,
      () => new Error("no create expected"),
    );
    expect((await loadFingerprintKey(a.secrets, "ops", "k")).equals(Buffer.alloc(32, 7))).toBe(true);
    let reads = 0;
    const b = kubeWith(
      () => (reads++ === 0 ? undefined : existing),
      () => new KubeApiError(409, "AlreadyExists", "exists"),
    );
    expect((await loadFingerprintKey(b.secrets, "ops", "k")).equals(Buffer.alloc(32, 7))).toBe(true);
  });

  it("refuses a short or missing key, and names the Secret and the permissions when it can be neither read nor created", async () => {
    const short = kubeWith(
      () => keySecret(Buffer.alloc(8).toString("base64")),
      () => new Error("x"),
    );
    await expect(loadFingerprintKey(short.secrets, "ops", "k")).rejects.toThrow(
      /"ops\/k" has no key "key" of at least 32 bytes/,
    );
    const denied = kubeWith(
      () => undefined,
      () => new KubeApiError(403, "Forbidden", "secrets is forbidden"),
    );
    await expect(loadFingerprintKey(denied.secrets, "ops", "k")).rejects.toThrow(
      /cannot read or create the fingerprint key Secret "ops\/k" \(needs get and create on secrets in "ops"\)/,
    );
  });
});
