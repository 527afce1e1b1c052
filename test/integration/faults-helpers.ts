/**
 * Helpers shared by the failure-semantics suites (faults*, drift, ownership, tenancy, watch):
 * set up a namespace with a client and a NexarToken, read the identity server's request log for
 * one client, observed backoff gaps, Events of one NexarToken, operator log records.
 */
import { afterAll, afterEach, beforeAll } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EventsV1Api, PatchStrategy, setHeaderOptions, type EventsV1Event } from "@kubernetes/client-node";
import type { TokenRequestRecord } from "../harness/identity.ts";
import type { Condition } from "../../src/controller/status.ts";
import type { NexarToken } from "../../src/api/types.ts";
import { startEnv, waitFor, type Env } from "./env.ts";

export const G = { group: "nexar-operator.io", version: "v1alpha1", plural: "nexartokens" } as const;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Token-endpoint requests of one client id, oldest first. */
export function requestsOf(env: Env, clientId: string): TokenRequestRecord[] {
  return env.idp.requests.filter((r) => r.clientId === clientId);
}

/** Gaps in ms between consecutive request arrivals. */
export function gapsMs(records: readonly TokenRequestRecord[]): number[] {
  const out: number[] = [];
  for (let i = 1; i < records.length; i++)
    out.push((records[i] as TokenRequestRecord).atMs - (records[i - 1] as TokenRequestRecord).atMs);
  return out;
}

/** Waits until client `clientId` has made at least `n` token requests; returns them. */
export async function waitForRequests(
  env: Env,
  clientId: string,
  n: number,
  timeoutMs: number,
): Promise<TokenRequestRecord[]> {
  return waitFor(
    `${n} token requests of ${clientId}`,
    async () => {
      const r = requestsOf(env, clientId);
      // A request is complete once answered (status), faulted (a reset has no status), or followed by a
      // later one (a timed-out request is answered only after the client gave up).
      const complete = (i: number) => r[i] !== undefined && (r[i].status !== 0 || r[i].faulted || i < r.length - 1);
      return r.length >= n && complete(n - 1) ? r : undefined;
    },
    timeoutMs,
    50,
  );
}

/** The Ready condition of a NexarToken. */
export function ready(nt: NexarToken): Condition | undefined {
  return nt.status?.conditions?.find((c) => c.type === "Ready") as Condition | undefined;
}

/** JSON merge patch of a NexarToken (metadata or spec). */
export async function patchToken(env: Env, ns: string, name: string, body: unknown): Promise<void> {
  await env.custom.patchNamespacedCustomObject(
    { ...G, namespace: ns, name, body },
    setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
  );
}

let refreshCounter = 0;
/** Sets the refresh annotation to a new value (forces a fetch, bypassing any backoff). */
export async function requestRefresh(env: Env, ns: string, name: string): Promise<void> {
  refreshCounter += 1;
  await patchToken(env, ns, name, {
    metadata: {
      annotations: { "nexar-operator.io/refresh-requested-at": `${new Date().toISOString()}#${refreshCounter}` },
    },
  });
}

/** Deletes a NexarToken. */
export async function deleteToken(env: Env, ns: string, name: string): Promise<void> {
  await env.custom.deleteNamespacedCustomObject({ ...G, namespace: ns, name });
}

/** events.k8s.io Events regarding NexarToken `ns/name` (optionally one reason). */
export async function eventsFor(env: Env, ns: string, name: string, reason?: string): Promise<EventsV1Event[]> {
  const list = await env.kc.makeApiClient(EventsV1Api).listNamespacedEvent({ namespace: ns });
  return list.items.filter(
    (e) =>
      e.regarding?.kind === "NexarToken" && e.regarding.name === name && (reason === undefined || e.reason === reason),
  );
}

/** Operator log records about NexarToken `ns/name` with message starting `prefix`. */
export function logsOf(env: Env, ns: string, name: string, prefix: string): Record<string, unknown>[] {
  return env.op
    .logs()
    .filter((r) => r.nexartoken === `${ns}/${name}` && typeof r.msg === "string" && r.msg.startsWith(prefix));
}

/** Log records of failed token requests of `ns/name` (fields reason, kind, attempts, retryInMs, nextAttemptAt). */
export function failureLogs(env: Env, ns: string, name: string): Record<string, unknown>[] {
  return logsOf(env, ns, name, "token request failed");
}

/**
 * Creates namespace `ns`, a client `clientId` at the identity server and the credentials Secret
 * `nexar-app`, then NexarToken `name` (target Secret `name`), and waits for Ready=True.
 * Returns the access token in the target Secret.
 */
export async function issued(
  env: Env,
  ns: string,
  clientId: string,
  spec: Record<string, unknown> = {},
  name = "supply",
): Promise<string> {
  await env.namespace(ns);
  const secret = `${clientId}-secret-0123456789abcdef`;
  env.client({ clientId, clientSecret: secret });
  await env.credentials(ns, "nexar-app", { clientId, clientSecret: secret });
  await env.createToken(ns, name, {
    scopes: ["supply.domain"],
    tokenUrl: env.idp.tokenUrl,
    credentialsSecretRef: { name: "nexar-app" },
    ...spec,
  });
  await env.waitReady(ns, name, "True", "TokenIssued", 30_000);
  const token = await waitFor(
    "token in the target Secret",
    () => env.accessToken(ns, (spec.target as { name?: string } | undefined)?.name ?? name),
    15_000,
  );
  return token;
}

/** Epoch ms of an RFC 3339 string (NaN when absent). */
export function ms(rfc3339: string | undefined): number {
  return rfc3339 === undefined ? NaN : Date.parse(rfc3339);
}

/** With NEXAR_TEST_DUMP_DIR set, writes every operator's log lines there (for debugging a failed run). */
export function dumpOperatorLogs(env: Env, file: string): void {
  const dir = process.env.NEXAR_TEST_DUMP_DIR;
  if (!dir) return;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${file}.operator.log`), env.operators.map((o) => o.lines.join("\n")).join("\n----\n"));
}

/**
 * Registers the hooks of a fault suite: one env whose operator runs with the test-only backoff
 * scale `scale` (and `operatorArgs`), no fault left behind after a test, and at the end the
 * operator logs dumped (see {@link dumpOperatorLogs}), the secret scan, the teardown, and the
 * figures pushed onto the returned array printed under `heading` (e.g. "observed (scale 0.1)").
 * @param onStart receives the env once started (assign it to the file's `env`).
 * @returns the array of observed figures to print at the end.
 */
export function faultSuite(
  name: string,
  o: { scale: number; operatorArgs?: string[]; heading: string },
  onStart: (env: Env) => void,
): string[] {
  let env: Env | undefined;
  const observed: string[] = [];
  beforeAll(async () => {
    env = await startEnv({
      operatorEnv: { NEXAR_OPERATOR_BACKOFF_SCALE: String(o.scale) },
      ...(o.operatorArgs ? { operatorArgs: o.operatorArgs } : {}),
    });
    onStart(env);
  });
  afterEach(() => env?.idp.setFault(undefined));
  afterAll(async () => {
    if (!env) return;
    dumpOperatorLogs(env, name);
    await env.scanForSecrets();
    await env.stop();
  });
  afterAll(() => {
    if (observed.length > 0) console.log(`${o.heading}:\n${observed.join("\n")}`);
  });
  return observed;
}
