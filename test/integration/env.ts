/**
 * Shared set-up of the operator integration suites: one real control plane, one real identity
 * server and one operator process per test file, plus helpers to read NexarTokens and Secrets
 * and a scan proving no secret value reached logs, Events, status or metrics (SPEC §3.9).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CoreV1Api, CustomObjectsApi, EventsV1Api, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { startControlPlane, type ControlPlane, type ControlPlaneOptions } from "../harness/controlplane.ts";
import {
  DEFAULT_REDIRECT_URI,
  startIdentityServer,
  type IdentityServer,
  type IdentityClient,
} from "../harness/identity.ts";
import { calculatePKCECodeChallenge, randomPKCECodeVerifier, randomState } from "openid-client";
import { apiErrorCode, applyCrd, createNamespace, loadKubeConfig, waitFor } from "../harness/kube.ts";
import { startOperator, type OperatorProcess } from "../harness/operator.ts";
import type { NexarToken } from "../../src/api/types.ts";

export { waitFor };
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CRD_PATH = join(ROOT, "crds", "nexartokens.nexar-operator.io.yaml");
const G = { group: "nexar-operator.io", version: "v1alpha1", plural: "nexartokens" };

/** Everything a suite needs; `secrets` collects every secret value used, for {@link Env.scanForSecrets}. */
export interface Env {
  cp: ControlPlane;
  idp: IdentityServer;
  op: OperatorProcess;
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  secrets: Set<string>;
  /** Every operator process started so far (the current one is `op`); all are scanned for secrets. */
  operators: OperatorProcess[];
  /**
   * Stops the current operator (SIGTERM) and starts a new one; `op` then points at it. Options
   * default to those the env was started with.
   */
  restartOperator(o?: {
    env?: Record<string, string>;
    extraArgs?: string[];
    kubeconfig?: string;
    allowInsecureTokenUrl?: boolean;
  }): Promise<OperatorProcess>;
  /** Registers a client at the identity server and remembers its secret for the scan. */
  client(c: Omit<IdentityClient, "authMethod"> & { authMethod?: IdentityClient["authMethod"] }): IdentityClient;
  namespace(name: string): Promise<string>;
  credentials(ns: string, name: string, data: Record<string, string>): Promise<void>;
  createToken(
    ns: string,
    name: string,
    spec: Record<string, unknown>,
    meta?: Record<string, unknown>,
  ): Promise<NexarToken>;
  getToken(ns: string, name: string): Promise<NexarToken>;
  readSecret(ns: string, name: string): Promise<V1Secret | undefined>;
  /** Waits until the NexarToken's Ready condition has `status` (and `reason`, when given). */
  waitReady(
    ns: string,
    name: string,
    status: "True" | "False",
    reason?: string,
    timeoutMs?: number,
  ): Promise<NexarToken>;
  /** Decoded `access_token` of a Secret, or undefined. */
  accessToken(ns: string, name: string): Promise<string | undefined>;
  /** Throws if any remembered secret value or issued token appears in logs, Events, NexarToken statuses or /metrics. */
  scanForSecrets(): Promise<void>;
  stop(): Promise<void>;
}

export function decode(b64: string | undefined): string | undefined {
  return b64 === undefined ? undefined : Buffer.from(b64, "base64").toString("utf8");
}

/** Options of {@link startEnv}. */
export interface EnvOptions {
  lifetimeSeconds?: number;
  operatorArgs?: string[];
  /** Extra environment of the operator process (e.g. the test-only NEXAR_OPERATOR_BACKOFF_SCALE). */
  operatorEnv?: Record<string, string>;
  /** Control-plane options (audit log, extra apiserver flags); kube-controller-manager is always on. */
  controlPlane?: Omit<ControlPlaneOptions, "controllerManager">;
  /** Kubeconfig the operator uses (e.g. another identity, or a proxy in front of the apiserver); default admin. */
  operatorKubeconfig?: (cp: ControlPlane) => Promise<string>;
}

/** Starts control plane (with kube-controller-manager), identity server, CRD and operator. */
export async function startEnv(opts: EnvOptions = {}): Promise<Env> {
  const cp = await startControlPlane({ ...opts.controlPlane, controllerManager: true });
  const idp = await startIdentityServer({ accessTokenLifetimeSeconds: opts.lifetimeSeconds ?? 3600 });
  await applyCrd(cp.kubeconfigPath, CRD_PATH);
  const opKubeconfig = opts.operatorKubeconfig ? await opts.operatorKubeconfig(cp) : cp.kubeconfigPath;
  const op = await startOperator({ kubeconfig: opKubeconfig, extraArgs: opts.operatorArgs, env: opts.operatorEnv });
  const kc = loadKubeConfig(cp.kubeconfigPath);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const secrets = new Set<string>();
  const issued = new Set<string>();
  const env: Env = {
    cp,
    idp,
    op,
    kc,
    core,
    custom,
    secrets,
    operators: [op],
    async restartOperator(o = {}) {
      await env.op.stop();
      env.op = await startOperator({
        kubeconfig: o.kubeconfig ?? opKubeconfig,
        extraArgs: o.extraArgs ?? opts.operatorArgs,
        env: o.env ?? opts.operatorEnv,
        allowInsecureTokenUrl: o.allowInsecureTokenUrl,
      });
      env.operators.push(env.op);
      return env.op;
    },
    client(c) {
      const full: IdentityClient = { authMethod: "client_secret_post", ...c };
      secrets.add(full.clientSecret);
      idp.addClient(full);
      return full;
    },
    async namespace(name) {
      await createNamespace(kc, name);
      return name;
    },
    async credentials(ns, name, data) {
      for (const [k, v] of Object.entries(data)) if (/secret|refresh/i.test(k)) secrets.add(v.trim());
      const body = { metadata: { name, namespace: ns }, stringData: data };
      try {
        await core.createNamespacedSecret({ namespace: ns, body });
      } catch (err) {
        if (apiErrorCode(err) !== 409) throw err;
        await core.replaceNamespacedSecret({ namespace: ns, name, body });
      }
    },
    async createToken(ns, name, spec, meta = {}) {
      return (await custom.createNamespacedCustomObject({
        ...G,
        namespace: ns,
        body: {
          apiVersion: "nexar-operator.io/v1alpha1",
          kind: "NexarToken",
          metadata: { name, namespace: ns, ...meta },
          spec,
        },
      })) as NexarToken;
    },
    async getToken(ns, name) {
      return (await custom.getNamespacedCustomObject({ ...G, namespace: ns, name })) as NexarToken;
    },
    async readSecret(ns, name) {
      try {
        const s = await core.readNamespacedSecret({ namespace: ns, name });
        const t = decode(s.data?.access_token);
        if (t) issued.add(t);
        return s;
      } catch (err) {
        if (apiErrorCode(err) === 404) return undefined;
        throw err;
      }
    },
    async waitReady(ns, name, status, reason, timeoutMs = 30_000) {
      return waitFor(
        `NexarToken ${ns}/${name} Ready=${status}${reason ? ` reason=${reason}` : ""}`,
        async () => {
          const nt = await env.getToken(ns, name);
          const c = nt.status?.conditions?.find((x) => x.type === "Ready");
          return c && c.status === status && (!reason || c.reason === reason) ? nt : undefined;
        },
        timeoutMs,
      );
    },
    async accessToken(ns, name) {
      return decode((await env.readSecret(ns, name))?.data?.access_token);
    },
    async scanForSecrets() {
      const haystacks: [string, string][] = env.operators.map((o, i) => [
        `operator logs #${i + 1}`,
        o.lines.join("\n"),
      ]);
      haystacks.push(["metrics", await env.op.metrics()]);
      const events = await kc.makeApiClient(EventsV1Api).listEventForAllNamespaces({});
      haystacks.push(["events", JSON.stringify(events.items)]);
      const nts = (await custom.listClusterCustomObject({ ...G })) as { items: NexarToken[] };
      haystacks.push(["statuses", JSON.stringify(nts.items.map((n) => n.status ?? {}))]);
      for (const value of [...secrets, ...issued]) {
        if (value.length < 8) continue;
        for (const [where, text] of haystacks) {
          if (text.includes(value)) throw new Error(`a secret value (${value.length} chars) appeared in ${where}`);
        }
      }
    },
    async stop() {
      await env.op.stop();
      await idp.stop();
      await cp.stop();
    },
  };
  return env;
}

/** Scopes `login` requests by default (SPEC §6). */
const LOGIN_SCOPE = "openid profile email design.domain user.access offline_access";

/**
 * A user's consent, as `login` gets it: authorization code + PKCE S256 through the identity
 * server's interaction pages (no browser), then the code exchange with the client secret. The
 * refresh token is added to `env.secrets` so the suite's scans look for it.
 * @param scope space-separated scopes, default `login`'s.
 * @returns the refresh token.
 * @throws Error when the redirect's `state` does not match or the exchange is not HTTP 200 with a refresh token.
 */
export async function consent(env: Env, clientId: string, clientSecret: string, scope = LOGIN_SCOPE): Promise<string> {
  const verifier = randomPKCECodeVerifier();
  const state = randomState();
  const url = new URL(env.idp.authorizationUrl);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: DEFAULT_REDIRECT_URI,
    scope,
    code_challenge: await calculatePKCECodeChallenge(verifier),
    code_challenge_method: "S256",
    state,
  }).toString();
  const redirect = await env.idp.completeAuthorization(url.href);
  if (redirect.searchParams.get("state") !== state) throw new Error("consent: the redirect's state does not match");
  const res = await fetch(env.idp.tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: redirect.searchParams.get("code") as string,
      redirect_uri: DEFAULT_REDIRECT_URI,
      code_verifier: verifier,
      client_id: clientId,
      client_secret: clientSecret,
    }),
  });
  const body = (await res.json()) as { refresh_token?: string };
  if (res.status !== 200 || !body.refresh_token) throw new Error(`consent: code exchange failed: HTTP ${res.status}`);
  env.secrets.add(body.refresh_token);
  return body.refresh_token;
}
