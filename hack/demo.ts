/**
 * `make demo`: the main job end to end on an embedded control plane.
 *
 * Starts etcd + kube-apiserver + kube-controller-manager and a real OAuth server (oidc-provider)
 * on loopback, installs the CRD, creates a credentials Secret and a NexarToken whose tokens live
 * 2 minutes, runs the operator, and shows the target Secret, the status and one renewal with a
 * new token. Token values are never printed (only a SHA-256 prefix and the JWT claims).
 *
 * KEEP_RUNNING=1 keeps everything up afterwards (with kubectl instructions) until Ctrl-C.
 */
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { CoreV1Api, CustomObjectsApi } from "@kubernetes/client-node";
import { decodeJwt } from "jose";
import { startControlPlane } from "../test/harness/controlplane.ts";
import { startIdentityServer } from "../test/harness/identity.ts";
import { applyCrd, createNamespace, loadKubeConfig, waitFor } from "../test/harness/kube.ts";
import { startOperator } from "../test/harness/operator.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NS = "parts";
const LIFETIME_SECONDS = 120;
const t0 = Date.now();
const say = (s: string) => console.log(`[demo +${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${s}`);
const fp = (tok: string) => `sha256:${createHash("sha256").update(tok).digest("hex").slice(0, 12)}`;

say("starting etcd, kube-apiserver, kube-controller-manager on loopback …");
const cp = await startControlPlane({ controllerManager: true });
say(`control plane up in ${(cp.startupMs / 1000).toFixed(1)} s at ${cp.server}`);
const idp = await startIdentityServer({
  accessTokenLifetimeSeconds: LIFETIME_SECONDS,
  clients: [{ clientId: "demo-app", clientSecret: "demo-client-secret-value", authMethod: "client_secret_post" }],
});
say(`identity server (oidc-provider) at ${idp.tokenUrl}; access tokens live ${LIFETIME_SECONDS} s`);

let op: Awaited<ReturnType<typeof startOperator>> | undefined;
const cleanup = async () => {
  await op?.stop();
  await idp.stop();
  await cp.stop();
};
process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));

try {
  await applyCrd(cp.kubeconfigPath, join(ROOT, "crds", "nexartokens.nexar-operator.io.yaml"));
  say("CRD nexartokens.nexar-operator.io installed");
  const kc = loadKubeConfig(cp.kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  await createNamespace(kc, NS);
  await core.createNamespacedSecret({
    namespace: NS,
    body: {
      metadata: { name: "nexar-app" },
      stringData: { clientId: "demo-app", clientSecret: "demo-client-secret-value" },
    },
  });
  const nexarToken = {
    apiVersion: "nexar-operator.io/v1alpha1",
    kind: "NexarToken",
    metadata: { name: "supply", namespace: NS },
    spec: {
      scopes: ["supply.domain"],
      tokenUrl: idp.tokenUrl,
      credentialsSecretRef: { name: "nexar-app" },
      target: { name: "supply-token", template: { Authorization: "Bearer {{access_token}}" } },
    },
  };
  await custom.createNamespacedCustomObject({
    group: "nexar-operator.io",
    version: "v1alpha1",
    namespace: NS,
    plural: "nexartokens",
    body: nexarToken,
  });
  say(`created Secret ${NS}/nexar-app (credentials) and NexarToken ${NS}/supply:`);
  console.log(JSON.stringify(nexarToken.spec, null, 2).replace(/^/gm, "    "));

  op = await startOperator({ kubeconfig: cp.kubeconfigPath, logLevel: "info" });
  say(`operator running (pid ${op.child.pid}); metrics at ${op.httpUrl}/metrics`);

  const readSecret = async () => {
    try {
      return await core.readNamespacedSecret({ namespace: NS, name: "supply-token" });
    } catch {
      return undefined;
    }
  };
  const decode = (b64?: string) => (b64 ? Buffer.from(b64, "base64").toString("utf8") : "");
  const show = async (label: string) => {
    const s = await readSecret();
    const tok = decode(s?.data?.access_token);
    const claims = decodeJwt(tok);
    const nt = (await custom.getNamespacedCustomObject({
      group: "nexar-operator.io",
      version: "v1alpha1",
      namespace: NS,
      plural: "nexartokens",
      name: "supply",
    })) as { status?: Record<string, unknown> & { conditions?: { type: string; status: string; reason: string }[] } };
    const ready = nt.status?.conditions?.find((c) => c.type === "Ready");
    say(label);
    console.log(
      `    Secret ${NS}/supply-token keys: ${Object.keys(s?.data ?? {})
        .sort()
        .join(", ")}`,
    );
    console.log(`      expires_at   = ${decode(s?.data?.expires_at)}`);
    console.log(`      scope        = ${decode(s?.data?.scope)}    token_type = ${decode(s?.data?.token_type)}`);
    console.log(
      `      access_token = <JWT ${fp(tok)}>  iss=${claims.iss} exp=${new Date((claims.exp ?? 0) * 1000).toISOString()}`,
    );
    console.log(`    NexarToken status: Ready=${ready?.status} reason=${ready?.reason}`);
    console.log(
      `      expiresAt=${nt.status?.expiresAt}  renewalTime=${nt.status?.renewalTime}  lastRefreshTime=${nt.status?.lastRefreshTime}`,
    );
    return { tok, renewalTime: String(nt.status?.renewalTime ?? "") };
  };

  await waitFor("the target Secret", readSecret, 30_000);
  const first = await show("token issued:");
  say(`waiting for the renewal scheduled at ${first.renewalTime} (tokens live ${LIFETIME_SECONDS} s) …`);
  await waitFor(
    "a renewed token",
    async () => {
      const s = await readSecret();
      const tok = decode(s?.data?.access_token);
      return tok && tok !== first.tok ? tok : undefined;
    },
    (LIFETIME_SECONDS + 30) * 1000,
    500,
  );
  const second = await show("renewed before expiry, with a new token:");
  say(
    `token requests seen by the identity server: ${idp.tokensIssued()} (${fp(first.tok)} → ${fp(second.tok)}); the old token was still valid when replaced`,
  );

  if (process.env.KEEP_RUNNING === "1") {
    say("KEEP_RUNNING=1: everything stays up. Try:");
    console.log(`    export KUBECONFIG=${cp.kubeconfigPath}`);
    console.log(`    kubectl get nexartokens -n ${NS}        # or: kubectl get nxt -A`);
    console.log(`    kubectl describe secret supply-token -n ${NS}`);
    console.log(`    kubectl explain nexartoken.spec`);
    console.log("    Ctrl-C stops it all.");
    await new Promise(() => {});
  }
  say("demo complete; stopping operator, identity server and control plane");
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
