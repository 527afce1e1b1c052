/**
 * The control-plane harness itself: a real etcd + kube-apiserver + kube-controller-manager
 * (SPEC.md §7) with RBAC, x509 client identities, the TokenRequest API and the garbage collector.
 */
import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthenticationV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { startControlPlane } from "../harness/controlplane.ts";
import type { ControlPlane } from "../harness/controlplane.ts";
import { apiErrorCode, applyCrd, createNamespace, loadKubeConfig, waitFor } from "../harness/kube.ts";

const WIDGET_CRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.harness.example.com
spec:
  group: harness.example.com
  names: { kind: Widget, listKind: WidgetList, plural: widgets, singular: widget }
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: { type: integer, minimum: 1 }
`;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function whoAmI(kubeconfigPath: string): Promise<{ username?: string; groups?: string[] }> {
  const auth = loadKubeConfig(kubeconfigPath).makeApiClient(AuthenticationV1Api);
  const review = await auth.createSelfSubjectReview({ body: {} });
  return review.status?.userInfo ?? {};
}

describe("control plane harness", () => {
  let cp: ControlPlane;
  let core: CoreV1Api;
  const ns = "harness-test";

  beforeAll(async () => {
    cp = await startControlPlane();
    console.info(`control plane started in ${cp.startupMs} ms at ${cp.server}`);
    core = loadKubeConfig(cp.kubeconfigPath).makeApiClient(CoreV1Api);
  });

  afterAll(async () => {
    await cp?.stop();
  });

  it("listens on loopback and serves a namespace and a ConfigMap", async () => {
    expect(cp.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const created = await createNamespace(cp.kubeconfigPath, ns);
    expect(created.metadata?.name).toBe(ns);
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "hello" }, data: { a: "1" } } });
    const read = await core.readNamespacedConfigMap({ namespace: ns, name: "hello" });
    expect(read.data).toEqual({ a: "1" });
  });

  it("authenticates the admin as system:masters", async () => {
    const me = await whoAmI(cp.kubeconfigPath);
    expect(me.groups).toContain("system:masters");
  });

  it("enforces RBAC for identities from kubeconfigFor()", async () => {
    const alicePath = await cp.kubeconfigFor("alice", []);
    expect(await whoAmI(alicePath)).toMatchObject({ username: "alice", groups: ["system:authenticated"] });
    const alice = loadKubeConfig(alicePath).makeApiClient(CoreV1Api);
    const err: unknown = await alice.listNamespacedSecret({ namespace: ns }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(apiErrorCode(err)).toBe(403);

    // A group binding grants access: the groups from kubeconfigFor() are honoured.
    const rbac = loadKubeConfig(cp.kubeconfigPath).makeApiClient(RbacAuthorizationV1Api);
    await rbac.createNamespacedRole({
      namespace: ns,
      body: {
        metadata: { name: "secret-reader" },
        rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["list"] }],
      },
    });
    await rbac.createNamespacedRoleBinding({
      namespace: ns,
      body: {
        metadata: { name: "secret-readers" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "secret-reader" },
        subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "secret-readers" }],
      },
    });
    const bobPath = await cp.kubeconfigFor("bob", ["secret-readers", "team/with:odd=chars"]);
    expect((await whoAmI(bobPath)).groups).toEqual(
      expect.arrayContaining(["secret-readers", "team/with:odd=chars", "system:authenticated"]),
    );
    const bob = loadKubeConfig(bobPath).makeApiClient(CoreV1Api);
    const list = await bob.listNamespacedSecret({ namespace: ns });
    expect(Array.isArray(list.items)).toBe(true);
  });

  it("issues ServiceAccount tokens through the TokenRequest API", async () => {
    await core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: "robot" } } });
    const tr = await core.createNamespacedServiceAccountToken({
      name: "robot",
      namespace: ns,
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const token = tr.status?.token ?? "";
    expect(token.split(".")).toHaveLength(3);
    const path = await cp.kubeconfigWithToken(token, "robot");
    expect((await whoAmI(path)).username).toBe(`system:serviceaccount:${ns}:robot`);
    const robot = loadKubeConfig(path).makeApiClient(CoreV1Api);
    const err: unknown = await robot.listNamespacedSecret({ namespace: ns }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(apiErrorCode(err)).toBe(403);
  });

  it("applies a CRD (create, then update) and serves its custom resources", async () => {
    const crdPath = join(cp.dir, "widgets.yaml");
    await writeFile(crdPath, WIDGET_CRD);
    const [first] = await applyCrd(cp.kubeconfigPath, crdPath);
    expect(first?.metadata?.name).toBe("widgets.harness.example.com");
    await writeFile(crdPath, WIDGET_CRD.replace("minimum: 1", "minimum: 2"));
    const [second] = await applyCrd(cp.kubeconfigPath, crdPath);
    expect(second?.metadata?.generation).toBeGreaterThan(first?.metadata?.generation ?? 0);

    const custom = loadKubeConfig(cp.kubeconfigPath).makeApiClient(CustomObjectsApi);
    const widget = { apiVersion: "harness.example.com/v1", kind: "Widget", metadata: { name: "w" }, spec: { size: 1 } };
    // The apiserver swaps in an updated schema asynchronously (1.35 sets no observedGeneration
    // on CRD conditions), so poll with a dry run until size 1 is refused by `minimum: 2`.
    await waitFor("the updated CRD schema to be enforced", async () => {
      try {
        await custom.createNamespacedCustomObject({
          group: "harness.example.com",
          version: "v1",
          namespace: ns,
          plural: "widgets",
          body: widget,
          dryRun: "All",
        });
        return undefined;
      } catch (err) {
        if (apiErrorCode(err) === 422) return true;
        throw err;
      }
    });
    widget.spec.size = 2;
    await custom.createNamespacedCustomObject({
      group: "harness.example.com",
      version: "v1",
      namespace: ns,
      plural: "widgets",
      body: widget,
    });
  });

  it("runs the garbage collector: a dependent is deleted after its owner", async () => {
    const owner = await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: "owner" } } });
    const uid = owner.metadata?.uid;
    expect(uid).toBeDefined();
    await core.createNamespacedConfigMap({
      namespace: ns,
      body: {
        metadata: {
          name: "dependent",
          ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "owner", uid: uid ?? "" }],
        },
      },
    });
    // A ConfigMap without an owner stays: the GC only removes dependents of deleted owners.
    await core.deleteNamespacedConfigMap({ namespace: ns, name: "owner" });
    await waitFor(
      "dependent ConfigMap to be garbage-collected",
      async () => {
        try {
          await core.readNamespacedConfigMap({ namespace: ns, name: "dependent" });
          return undefined;
        } catch (err) {
          if (apiErrorCode(err) === 404) return true;
          throw err;
        }
      },
      90_000,
    );
    const survivor = await core.readNamespacedConfigMap({ namespace: ns, name: "hello" });
    expect(survivor.metadata?.name).toBe("hello");
  });

  it("stop() kills every process, removes the dir and is idempotent", async () => {
    const pids = cp.processes.map((p) => p.pid);
    expect(cp.processes.map((p) => p.name)).toEqual(["etcd", "kube-apiserver", "kube-controller-manager"]);
    expect(pids.every(isAlive)).toBe(true);
    await Promise.all([cp.stop(), cp.stop()]);
    await cp.stop();
    expect(pids.filter(isAlive)).toEqual([]);
    if (process.env["KEEP_HARNESS_DIR"] !== "1") expect(existsSync(cp.dir)).toBe(false);
  });
});
