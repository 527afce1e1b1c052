/**
 * The cluster the e2e suite runs on, one of:
 *  - `node` (default, `make e2e`): the harness's control plane (etcd, kube-apiserver, kube-controller-manager) and a
 *    real node (containerd, kubelet, kube-scheduler, kube-proxy; test/harness/node.ts), all inside the network
 *    namespace `hack/e2e.sh` creates for the run. The images come from `E2E_IMAGES_TAR` (hack/e2e-images.sh);
 *  - `kind` (`make kind-e2e`, for users with Docker and kind): an existing kind cluster, `E2E_KUBECONFIG`, whose
 *    node container is `E2E_KIND_NODE`; the test servers listen on `E2E_HOST_ADDRESS`, the kind network's
 *    gateway, which pods reach. The Makefile loads the images with `kind load`.
 * Either way the suite only sees a kubeconfig, an address pods reach the test process at, and a way to look at the
 * node's containers ({@link NodeAccess}).
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startControlPlane } from "../harness/controlplane.ts";
import { NODE_APISERVER_ARGS, NODE_IP, prepareNetns, startNode } from "../harness/node.ts";

const exec = promisify(execFile);

/** Looks at the node's containers: the runtime's tasks and their processes' /proc files. */
export interface NodeAccess {
  /** Host (node) pid of the running container `containerd://<id>` (a pod's `containerStatuses[].containerID`). */
  containerPid(containerId: string): Promise<number>;
  /** Text of `/proc/<pid>/<file>` as the node sees it (e.g. `status`, `mountinfo`). */
  procFile(pid: number, file: string): Promise<string>;
}

/** A cluster for the e2e suite. */
export interface E2eCluster {
  mode: "node" | "kind";
  /** Admin kubeconfig. */
  kubeconfigPath: string;
  /** IPv4 address on which pods reach servers of the test process (the identity server). */
  hostAddress: string;
  node: NodeAccess;
  /** Phases of the start and their durations, ms (printed by the suite). */
  timings: [string, number][];
  stop(): Promise<void>;
}

/** Parses `ctr tasks ls` output (TASK PID STATUS) for the container id. @throws Error when it is not running. */
function pidFromTasks(out: string, containerId: string): number {
  const id = containerId.replace(/^containerd:\/\//, "");
  for (const line of out.split("\n").slice(1)) {
    const [task, pid, status] = line.trim().split(/\s+/);
    if (task === id && status === "RUNNING") return Number(pid);
  }
  throw new Error(`container ${id} has no running task`);
}

/** Starts (or, for kind, attaches to) the cluster `E2E_CLUSTER` names. @throws Error when a part fails to start. */
export async function startE2eCluster(): Promise<E2eCluster> {
  const mode = process.env.E2E_CLUSTER === "kind" ? "kind" : "node";
  return mode === "kind" ? kindCluster() : harnessCluster();
}

async function harnessCluster(): Promise<E2eCluster> {
  const images = process.env.E2E_IMAGES_TAR;
  if (!images) throw new Error("E2E_IMAGES_TAR is not set (make e2e sets it: hack/e2e-images.sh)");
  const timings: [string, number][] = [];
  let t = Date.now();
  await prepareNetns();
  const cp = await startControlPlane({ address: NODE_IP, apiserverArgs: NODE_APISERVER_ARGS });
  timings.push(["control plane (etcd, kube-apiserver, kube-controller-manager) ready", Date.now() - t]);
  t = Date.now();
  try {
    const node = await startNode(cp, { images: [images] });
    timings.push(["images imported, node (containerd, kubelet, kube-scheduler, kube-proxy) Ready", Date.now() - t]);
    return {
      mode: "node",
      kubeconfigPath: cp.kubeconfigPath,
      hostAddress: NODE_IP,
      node: {
        containerPid: async (id) => pidFromTasks(await node.ctr(["tasks", "ls"]), id),
        procFile: (pid, file) => readFile(`/proc/${pid}/${file}`, "utf8"),
      },
      timings,
      async stop() {
        await node.stop();
        await cp.stop();
      },
    };
  } catch (err) {
    await cp.stop();
    throw err;
  }
}

async function kindCluster(): Promise<E2eCluster> {
  const kubeconfigPath = process.env.E2E_KUBECONFIG;
  const nodeName = process.env.E2E_KIND_NODE;
  const hostAddress = process.env.E2E_HOST_ADDRESS;
  if (!kubeconfigPath || !nodeName || !hostAddress) {
    throw new Error("kind mode needs E2E_KUBECONFIG, E2E_KIND_NODE and E2E_HOST_ADDRESS (make kind-e2e sets them)");
  }
  const inNode = async (...args: string[]) => (await exec("docker", ["exec", nodeName, ...args])).stdout;
  return {
    mode: "kind",
    kubeconfigPath,
    hostAddress,
    node: {
      containerPid: async (id) => pidFromTasks(await inNode("ctr", "-n", "k8s.io", "tasks", "ls"), id),
      procFile: (pid, file) => inNode("cat", `/proc/${pid}/${file}`),
    },
    timings: [],
    async stop() {},
  };
}

/**
 * A throw-away CA and a server certificate for `ip`, made with the openssl CLI: the identity server's TLS, which
 * the operator trusts only through the chart's `caBundle` value. Returns PEM text.
 * @throws Error when openssl fails.
 */
export async function testServerTls(ip: string): Promise<{ caPem: string; certPem: string; keyPem: string }> {
  const dir = await mkdtemp(join(tmpdir(), "nexar-e2e-tls-"));
  try {
    const f = (n: string) => join(dir, n);
    await writeFile(
      f("ext.cnf"),
      `basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:${ip}\n`,
    );
    const run = (args: string[]) => exec("openssl", args);
    await run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
    await run([
      "req",
      "-x509",
      "-new",
      "-key",
      f("ca.key"),
      "-subj",
      "/CN=nexar-e2e-identity-ca",
      "-days",
      "2",
      "-out",
      f("ca.crt"),
    ]);
    await run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("server.key")]);
    await run(["req", "-new", "-key", f("server.key"), "-subj", `/CN=${ip}`, "-out", f("server.csr")]);
    await run([
      "x509",
      "-req",
      "-in",
      f("server.csr"),
      "-CA",
      f("ca.crt"),
      "-CAkey",
      f("ca.key"),
      "-CAcreateserial",
      "-days",
      "2",
      "-extfile",
      f("ext.cnf"),
      "-out",
      f("server.crt"),
    ]);
    const [caPem, certPem, keyPem] = await Promise.all(
      [f("ca.crt"), f("server.crt"), f("server.key")].map((p) => readFile(p, "utf8")),
    );
    return { caPem: caPem as string, certPem: certPem as string, keyPem: keyPem as string };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
