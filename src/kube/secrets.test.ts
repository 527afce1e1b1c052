import { describe, expect, it } from "vitest";
import type { SecretWritePlan } from "../secrets/desired.ts";
import { KubeApiError, type KubeClient, type Secret } from "./client.ts";
import { SECRET_WRITE_ATTEMPTS, SecretsApi } from "./secrets.ts";
import { StatusApi } from "./status.ts";

interface Call {
  method: string;
  path: string;
  body?: unknown;
}

/** A KubeClient stand-in that records calls and answers from `answer` (throwing what it returns as an Error). */
function recorder(answer: (c: Call, n: number) => unknown) {
  const calls: Call[] = [];
  const respond = (c: Call) => {
    calls.push(c);
    const out = answer(c, calls.length);
    if (out instanceof Error) return Promise.reject(out);
    return Promise.resolve(out);
  };
  const kube = {
    request: (method: string, path: string, o: { body?: unknown } = {}) => respond({ method, path, body: o.body }),
    getOrUndefined: (path: string) =>
      respond({ method: "GET", path }).catch((e: unknown) => {
        if (e instanceof KubeApiError && e.status === 404) return undefined;
        throw e;
      }),
  } as unknown as KubeClient;
  return { kube, calls };
}

const conflict = () => new KubeApiError(409, "Conflict", "the object has been modified");
const secret = (rv: string, data: Record<string, string> = {}): Secret => ({
  apiVersion: "v1",
  kind: "Secret",
  metadata: { name: "supply", namespace: "parts", resourceVersion: rv },
  data,
});
const update = (s: Secret | undefined): SecretWritePlan => ({
  action: "update",
  secret: { ...(s as Secret), data: { access_token: "dG9rZW4=" } },
});

describe("SecretsApi.write (optimistic concurrency, SPEC §3.7)", () => {
  it("writes with the resourceVersion read; a 409 is re-read, re-planned and retried", async () => {
    const writes: string[] = [];
    const { kube, calls } = recorder((c, n) => {
      if (c.method === "GET") return secret("8");
      if (c.method === "PUT" && n === 1) return conflict();
      return secret("9");
    });
    const api = new SecretsApi(kube, (a) => writes.push(a));
    const r = await api.write("parts", "supply", secret("7"), update, () => true);
    expect(r).toEqual({ action: "update", resourceVersion: "9" });
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      "PUT /api/v1/namespaces/parts/secrets/supply",
      "GET /api/v1/namespaces/parts/secrets/supply",
      "PUT /api/v1/namespaces/parts/secrets/supply",
    ]);
    expect((calls[0]?.body as Secret).metadata.resourceVersion).toBe("7");
    expect((calls[2]?.body as Secret).metadata.resourceVersion).toBe("8");
    expect(writes).toEqual(["update"]);
  });

  it(`gives up after ${SECRET_WRITE_ATTEMPTS} attempts (the work queue's rate limiter takes over)`, async () => {
    const { kube, calls } = recorder((c) => (c.method === "GET" ? secret("8") : conflict()));
    const api = new SecretsApi(kube);
    await expect(api.write("parts", "supply", secret("7"), update, () => true)).rejects.toMatchObject({ status: 409 });
    expect(calls.filter((c) => c.method === "PUT")).toHaveLength(SECRET_WRITE_ATTEMPTS);
  });

  it("does not retry when the re-read Secret no longer passes the ownership check", async () => {
    const { kube, calls } = recorder((c) => (c.method === "GET" ? secret("8") : conflict()));
    const api = new SecretsApi(kube);
    await expect(api.write("parts", "supply", secret("7"), update, (s) => s === undefined)).rejects.toMatchObject({
      status: 409,
    });
    expect(calls.map((c) => c.method)).toEqual(["PUT", "GET"]);
  });

  it("creates with POST, recreates with a preconditioned DELETE and a POST, and does nothing for none", async () => {
    const writes: string[] = [];
    const { kube, calls } = recorder(() => secret("3"));
    const api = new SecretsApi(kube, (a) => writes.push(a));
    expect(
      await api.write(
        "parts",
        "supply",
        undefined,
        () => ({ action: "none" }),
        () => true,
      ),
    ).toEqual({
      action: "none",
      resourceVersion: undefined,
    });
    await api.write(
      "parts",
      "supply",
      undefined,
      () => ({ action: "create", secret: secret("") }),
      () => true,
    );
    const old = { ...secret("2"), metadata: { ...secret("2").metadata, uid: "u-1" } };
    await api.write(
      "parts",
      "supply",
      old,
      () => ({ action: "recreate", secret: old }),
      () => true,
    );
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      "POST /api/v1/namespaces/parts/secrets",
      "DELETE /api/v1/namespaces/parts/secrets/supply",
      "POST /api/v1/namespaces/parts/secrets",
    ]);
    expect(calls[1]?.body).toMatchObject({ preconditions: { uid: "u-1", resourceVersion: "2" } });
    expect((calls[2]?.body as Secret).metadata).toEqual({ name: "supply", namespace: "parts" });
    expect(writes).toEqual(["create", "recreate"]);
  });

  it("throws other API errors at once", async () => {
    const { kube, calls } = recorder(() => new KubeApiError(403, "Forbidden", "forbidden"));
    await expect(new SecretsApi(kube).write("parts", "supply", secret("7"), update, () => true)).rejects.toMatchObject({
      status: 403,
    });
    expect(calls).toHaveLength(1);
  });
});

describe("SecretsApi.list", () => {
  it("pages with limit and continue, and stops early when asked", async () => {
    const { kube, calls } = recorder((_c, n) => ({
      metadata: { continue: n < 3 ? `page-${n + 1}` : undefined },
      items: [secret(String(n))],
    }));
    const seen: string[] = [];
    await new SecretsApi(kube).list(
      undefined,
      "a=b",
      (items) => seen.push(...items.map((s) => s.metadata.resourceVersion ?? "")),
      {
        limit: 2,
      },
    );
    expect(seen).toEqual(["1", "2", "3"]);
    expect(calls[0]?.path).toBe("/api/v1/secrets");
    let stop = false;
    await new SecretsApi(recorder(() => ({ metadata: { continue: "more" }, items: [] })).kube).list(
      "parts",
      "a=b",
      () => (stop = true),
      { stop: () => stop },
    );
  });
});

describe("SecretsApi.patchGuarded", () => {
  it("patches with the read resourceVersion; on 409 re-reads and asks again; a final answer ends it without a write", async () => {
    const { kube, calls } = recorder((c, n) => {
      if (c.method === "GET") return secret("8", { k: "b3RoZXI=" });
      return n === 1 ? conflict() : {};
    });
    const api = new SecretsApi(kube);
    const seen: string[] = [];
    const out = await api.patchGuarded(
      "parts",
      "supply",
      secret("7"),
      (read) => {
        seen.push(read.metadata.resourceVersion ?? "");
        return read.data?.k ? { done: "superseded" as const } : { patch: { data: { k: "bmV3" } } };
      },
      5,
    );
    expect(out).toBe("superseded");
    expect(seen).toEqual(["7", "8"]);
    expect(calls[0]?.body).toEqual({ data: { k: "bmV3" }, metadata: { resourceVersion: "7" } });
  });
});

describe("StatusApi.patch", () => {
  it("merge-patches the status subresource and answers undefined for a NexarToken that is gone", async () => {
    const { kube, calls } = recorder((_c, n) =>
      n === 1 ? { metadata: { resourceVersion: "5" } } : new KubeApiError(404, "NotFound", "gone"),
    );
    const api = new StatusApi(kube);
    expect(await api.patch("parts", "supply", { failedAttempts: 1 })).toEqual({ metadata: { resourceVersion: "5" } });
    expect(calls[0]).toEqual({
      method: "PATCH",
      path: "/apis/nexar-operator.io/v1alpha1/namespaces/parts/nexartokens/supply/status",
      body: { status: { failedAttempts: 1 } },
    });
    expect(await api.patch("parts", "supply", {})).toBeUndefined();
    const failing = new StatusApi(recorder(() => new KubeApiError(500, "InternalError", "etcd")).kube);
    await expect(failing.patch("parts", "supply", {})).rejects.toMatchObject({ status: 500 });
  });
});
