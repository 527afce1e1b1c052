/**
 * A real Kubernetes node for the e2e suite (SPEC.md §7 "A real node"): containerd with its CRI plugin, kubelet,
 * kube-scheduler and kube-proxy, joined to a control plane from {@link startControlPlane}, so that pods run.
 *
 * It must run inside a network namespace the test run created for itself (`hack/e2e.sh` starts the suite under
 * `unshare --net`): {@link startNode} refuses to start otherwise. In that namespace it
 *  - puts the node's address ({@link NODE_IP}) on `lo`, so that the API server and test servers listen there and
 *    pods reach them from the pod network;
 *  - runs containerd on its own socket, root and state directories (never the machine's containerd or Docker's),
 *    with `restrict_oom_score_adj = true` (this machine forbids lowering oom_score_adj: without it every pod
 *    sandbox fails with "can't get final child's PID from pipe") and a CNI bridge (`cni0`, {@link POD_CIDR}) from
 *    Debian's containernetworking-plugins;
 *  - runs kubelet with cgroup v1 (`failCgroupV1: false`, `cgroupDriver: cgroupfs`, `cgroupsPerQOS: false`), image
 *    garbage collection off (the images are imported, never pulled: there is no registry), and its root, pod logs
 *    and certificates in the harness directory;
 *  - runs kube-scheduler, and kube-proxy in iptables mode (inside the namespace), so that ClusterIP Services —
 *    the `kubernetes` Service that in-cluster clients use above all — work as on any cluster.
 * Identities: kubelet is `system:node:<name>` in `system:nodes` (the API server must run the Node authorizer and
 * the NodeRestriction admission plugin: {@link NODE_APISERVER_ARGS}), kube-scheduler `system:kube-scheduler` and
 * kube-proxy `system:kube-proxy`, each with a client certificate and the default RBAC bindings of those users.
 *
 * Binaries: kubelet, kube-scheduler and kube-proxy from `hack/build-assets.sh --node` (the same build-once cache as
 * the control plane); containerd, runc, the CNI plugins, iptables and `ip` from Debian packages (`hack/e2e.sh`
 * installs them).
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { stringify as toYaml } from "yaml";
import { CoreV1Api } from "@kubernetes/client-node";
import { resolveAssets, type ControlPlane } from "./controlplane.ts";
import { loadKubeConfig } from "./kube.ts";

const exec = promisify(execFile);

/** The node's IPv4 address inside the run's network namespace (on `lo`); the API server should listen on it. */
export const NODE_IP = "10.89.0.1";
/** The pod network of the CNI bridge. */
export const POD_CIDR = "10.88.0.0/16";
/** The node's name. */
export const NODE_NAME = "e2e-node";
/** kube-apiserver flags a node needs: the Node authorizer and NodeRestriction, as kubeadm sets them. */
export const NODE_APISERVER_ARGS = ["--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction"];
/** The pause (sandbox) image the runtime uses; hack/e2e-images.sh builds it from Kubernetes' own pause.c. */
export const PAUSE_IMAGE = "localhost/nexar-e2e/pause:3.10";
const CNI_BIN_DIR = "/usr/lib/cni";

/** Options of {@link startNode}. */
export interface NodeOptions {
  /** Docker-archive tarballs (`docker save`) imported into the runtime before kubelet starts. */
  images?: string[];
  /** How long to wait for the Node to be Ready, ms (default 120000). */
  readyTimeoutMs?: number;
}

/** A running node. */
export interface KubeNode {
  name: string;
  /** Directory of the node's state (containerd, kubelet, CNI, logs) inside the control plane's directory. */
  dir: string;
  /** containerd's socket. */
  containerdSocket: string;
  /** Runs `ctr` against the node's containerd in the `k8s.io` namespace; resolves with stdout. */
  ctr(args: string[]): Promise<string>;
  /** Time from start to Node Ready, ms. */
  readyMs: number;
  /** Stops kubelet, kube-proxy, kube-scheduler and every container, then containerd; unmounts what they mounted. */
  stop(): Promise<void>;
}

interface Proc {
  name: string;
  child: ChildProcess;
  log: string;
}

function running(p: Proc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function startProc(name: string, bin: string, args: string[], log: string): Proc {
  const fd = openSync(log, "a");
  try {
    return { name, child: spawn(bin, args, { stdio: ["ignore", fd, fd] }), log };
  } finally {
    closeSync(fd);
  }
}

async function stopProc(p: Proc, graceMs = 5_000): Promise<void> {
  if (!running(p)) return;
  const exited = new Promise<void>((r) => p.child.once("exit", () => r()));
  p.child.kill("SIGTERM");
  const t = setTimeout(() => p.child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(t);
}

/**
 * Environment variable naming the network namespace the run started in (`readlink /proc/self/ns/net` before
 * `unshare --net`, as hack/e2e.sh sets it). The node harness refuses to run in that namespace.
 */
export const HOST_NETNS_ENV = "NEXAR_E2E_HOST_NETNS";

/** Throws unless this process runs in a network namespace other than the one {@link HOST_NETNS_ENV} names. */
export function assertPrivateNetns(): void {
  const host = process.env[HOST_NETNS_ENV];
  const mine = readlinkSync("/proc/self/ns/net");
  if (host === undefined || host === "" || mine === host) {
    throw new Error(
      "the node harness changes addresses, routes and iptables rules of its network namespace: run it inside one " +
        `the run creates (make e2e does: ${HOST_NETNS_ENV}=$(readlink /proc/self/ns/net) unshare --net …)`,
    );
  }
}

/**
 * Prepares the current (private) network namespace: `lo` up with {@link NODE_IP}, IPv4 forwarding on (a Service
 * address rewritten to a pod on the same bridge is forwarded back out of it). Idempotent.
 */
export async function prepareNetns(): Promise<void> {
  assertPrivateNetns();
  await exec("ip", ["link", "set", "lo", "up"]);
  const addrs = (await exec("ip", ["-4", "-o", "addr", "show", "dev", "lo"])).stdout;
  if (!addrs.includes(` ${NODE_IP}/`)) await exec("ip", ["addr", "add", `${NODE_IP}/32`, "dev", "lo"]);
  await writeFile("/proc/sys/net/ipv4/ip_forward", "1\n");
}

async function waitFor(what: string, probe: () => Promise<boolean>, deadline: number, watched: Proc[]): Promise<void> {
  for (;;) {
    for (const p of watched) {
      if (!running(p))
        throw new Error(`${p.name} exited while waiting for ${what}; last lines of ${p.log}:\n${tail(p.log)}`);
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      const logs = watched.map((p) => `--- ${p.log}\n${tail(p.log, 15)}`).join("\n");
      throw new Error(`timed out waiting for ${what}\n${logs}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo; octal escapes decoded). */
function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mp = line.split(" ")[4];
    if (mp === undefined) continue;
    const path = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (path === dir || path.startsWith(`${dir}/`)) out.push(path);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Network namespaces (`/run/netns/<name>`) the CRI plugin made for pod sandboxes. */
function podNetnsMounts(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((mp) => /^\/(var\/)?run\/netns\/cni-/.test(mp));
}

/**
 * Starts containerd, kube-scheduler, kube-proxy and kubelet for `cp` and waits until the Node is Ready. `cp` must
 * listen on {@link NODE_IP} (`address` option) with {@link NODE_APISERVER_ARGS}.
 * @throws Error (with log tails) when a component exits or the Node is not Ready in time; what was started is
 *   stopped first.
 */
export async function startNode(cp: ControlPlane, opts: NodeOptions = {}): Promise<KubeNode> {
  assertPrivateNetns();
  const t0 = Date.now();
  const deadline = t0 + (opts.readyTimeoutMs ?? 120_000);
  const assets = resolveAssets();
  for (const b of ["kubelet", "kube-scheduler", "kube-proxy"]) {
    if (!existsSync(join(assets, b)))
      throw new Error(`${join(assets, b)} does not exist (hack/build-assets.sh --node)`);
  }
  const dir = join(cp.dir, "node");
  const ctrdDir = join(dir, "containerd");
  const cniDir = join(dir, "cni");
  const kubeletDir = join(dir, "kubelet");
  for (const d of [ctrdDir, cniDir, kubeletDir, join(dir, "pod-logs"), join(dir, "logs")])
    await mkdir(d, { recursive: true });
  const socket = join(ctrdDir, "containerd.sock");
  const procs: Proc[] = [];
  const netnsBefore = new Set(podNetnsMounts());

  const ctr = async (args: string[]): Promise<string> =>
    (await exec("ctr", ["--address", socket, "--namespace", "k8s.io", ...args], { maxBuffer: 16 * 1024 * 1024 }))
      .stdout;

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      // kubelet first (it would restart what is killed), then every container, then containerd.
      for (const name of ["kubelet", "kube-proxy", "kube-scheduler"]) {
        const p = procs.find((x) => x.name === name);
        if (p) await stopProc(p);
      }
      const ctrd = procs.find((x) => x.name === "containerd");
      if (ctrd && running(ctrd)) {
        const tasks = await ctr(["tasks", "ls", "-q"]).catch(() => "");
        for (const id of tasks.split("\n").filter(Boolean))
          await ctr(["tasks", "kill", "-s", "SIGKILL", id]).catch(() => "");
        await new Promise((r) => setTimeout(r, 500));
        await stopProc(ctrd);
      }
      // Shims outlive containerd by design; they carry its address on their command line.
      await exec("pkill", ["-KILL", "-f", `containerd-shim-runc-v2 .*-address ${socket}`]).catch(() => undefined);
      const podNetns = podNetnsMounts().filter((m) => !netnsBefore.has(m));
      for (const mp of [...podNetns, ...mountsUnder(dir)]) await exec("umount", ["-l", mp]).catch(() => undefined);
      for (const f of podNetns) await rm(f, { force: true });
      await exec("ip", ["link", "delete", "cni0"]).catch(() => undefined);
      // iptables rules of kube-proxy live and die with the run's network namespace.
    })();
    return stopping;
  };

  try {
    // containerd: its own everything; CRI with the local pause image and the bridge network.
    const ctrdConfig = join(ctrdDir, "config.toml");
    await writeFile(
      ctrdConfig,
      [
        "version = 2",
        `root = "${join(ctrdDir, "root")}"`,
        `state = "${join(ctrdDir, "state")}"`,
        "[grpc]",
        `  address = "${socket}"`,
        "[ttrpc]",
        `  address = "${socket}.ttrpc"`,
        "[plugins]",
        '  [plugins."io.containerd.grpc.v1.cri"]',
        `    sandbox_image = "${PAUSE_IMAGE}"`,
        "    restrict_oom_score_adj = true",
        "    enable_selinux = false",
        '    [plugins."io.containerd.grpc.v1.cri".containerd]',
        '      snapshotter = "overlayfs"',
        '      default_runtime_name = "runc"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '        runtime_type = "io.containerd.runc.v2"',
        '    [plugins."io.containerd.grpc.v1.cri".cni]',
        `      bin_dir = "${CNI_BIN_DIR}"`,
        `      conf_dir = "${cniDir}"`,
        '  [plugins."io.containerd.internal.v1.opt"]',
        `    path = "${join(ctrdDir, "opt")}"`,
        "",
      ].join("\n"),
    );
    await writeFile(
      join(cniDir, "10-e2e-bridge.conflist"),
      JSON.stringify({
        cniVersion: "0.4.0",
        name: "e2e",
        plugins: [
          {
            type: "bridge",
            bridge: "cni0",
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: { type: "host-local", ranges: [[{ subnet: POD_CIDR }]], routes: [{ dst: "0.0.0.0/0" }] },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      }),
    );
    const ctrd = startProc("containerd", "containerd", ["--config", ctrdConfig], join(dir, "logs", "containerd.log"));
    procs.push(ctrd);
    await waitFor("containerd", async () => (await ctr(["version"]), true), deadline, [ctrd]);
    for (const tar of opts.images ?? []) await ctr(["images", "import", "--no-unpack", tar]);

    // Identities.
    const [kubeletKc, schedulerKc, proxyKc] = await Promise.all([
      cp.kubeconfigFor(`system:node:${NODE_NAME}`, ["system:nodes"]),
      cp.kubeconfigFor("system:kube-scheduler", []),
      cp.kubeconfigFor("system:kube-proxy", []),
    ]);
    const caPath = join(dir, "ca.crt");
    await writeFile(caPath, cp.caCertPem);

    const scheduler = startProc(
      "kube-scheduler",
      join(assets, "kube-scheduler"),
      [`--kubeconfig=${schedulerKc}`, "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=10259"],
      join(dir, "logs", "kube-scheduler.log"),
    );
    procs.push(scheduler);

    const proxyConfig = join(dir, "kube-proxy.yaml");
    await writeFile(
      proxyConfig,
      toYaml({
        apiVersion: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        clientConnection: { kubeconfig: proxyKc },
        hostnameOverride: NODE_NAME,
        mode: "iptables",
        clusterCIDR: POD_CIDR,
        // The conntrack table size is a machine-wide setting: leave it alone.
        conntrack: { maxPerCore: 0 },
        nodePortAddresses: ["primary"],
        metricsBindAddress: "127.0.0.1:10249",
        healthzBindAddress: "127.0.0.1:10256",
      }),
    );
    const proxy = startProc(
      "kube-proxy",
      join(assets, "kube-proxy"),
      [`--config=${proxyConfig}`],
      join(dir, "logs", "kube-proxy.log"),
    );
    procs.push(proxy);

    const kubeletConfig = join(dir, "kubelet.yaml");
    await writeFile(
      kubeletConfig,
      toYaml({
        apiVersion: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        containerRuntimeEndpoint: `unix://${socket}`,
        // This machine has cgroup v1 only, and no systemd.
        failCgroupV1: false,
        cgroupDriver: "cgroupfs",
        cgroupsPerQOS: false,
        enforceNodeAllocatable: [],
        failSwapOn: false,
        address: NODE_IP,
        port: 10250,
        readOnlyPort: 0,
        healthzBindAddress: "127.0.0.1",
        healthzPort: 10248,
        authentication: { anonymous: { enabled: false }, webhook: { enabled: true }, x509: { clientCAFile: caPath } },
        authorization: { mode: "Webhook" },
        podLogsDir: join(dir, "pod-logs"),
        // Images are imported, not pulled: never garbage-collect them, never evict for disk.
        imageGCHighThresholdPercent: 100,
        imageGCLowThresholdPercent: 99,
        evictionHard: { "memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%" },
        serializeImagePulls: false,
        // The default volume sync period, as users have it (a mounted Secret follows its object within about it).
        syncFrequency: "1m",
      }),
    );
    const kubelet = startProc(
      "kubelet",
      join(assets, "kubelet"),
      [
        `--config=${kubeletConfig}`,
        `--kubeconfig=${kubeletKc}`,
        `--root-dir=${kubeletDir}`,
        `--cert-dir=${join(kubeletDir, "pki")}`,
        `--hostname-override=${NODE_NAME}`,
        `--node-ip=${NODE_IP}`,
        "--v=1",
      ],
      join(dir, "logs", "kubelet.log"),
    );
    procs.push(kubelet);

    const core = loadKubeConfig(cp.kubeconfigPath).makeApiClient(CoreV1Api);
    await waitFor(
      `Node ${NODE_NAME} Ready`,
      async () => {
        const node = await core.readNode({ name: NODE_NAME });
        return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ?? false;
      },
      deadline,
      procs,
    );

    return {
      name: NODE_NAME,
      dir,
      containerdSocket: socket,
      ctr,
      readyMs: Date.now() - t0,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
