/**
 * `demo`: a whole cluster on this machine. Nodes are network namespaces on two LANs, each
 * running two routers as the DaemonSets would: the main network on podCIDRs, and a secondary
 * network that nobody annotates (its routers allocate the node CIDRs from a pool and publish
 * each node's address on it). Pods are namespaces attached through CNI; every pod pair is
 * pinged.
 *
 * `--check` runs the check and exits 0 only if every pair answers; without it the cluster
 * stays up for experiments with kubectl until Ctrl-C. Nothing is left behind.
 *
 * @module
 */
import { DAEMON_RUNTIME_ENV } from "../config.ts";
import { NodeStore } from "./apiserver/mod.ts";
import { spawnMainInNetns } from "./netns_main.ts";
import { makeNode } from "./nodes.ts";
import { addPod, type DemoPod, mainConfig, net3Config, ping } from "./demo/pods.ts";
import {
  API_ADDRESS,
  checkInterrupted,
  type DemoNode,
  demoNode,
  Interrupted,
  interruption,
  LAN_NS,
  makeLan,
  makeNodeNs,
  PREFIX,
  removeNamespaces,
  sh,
} from "./demo/topology.ts";
import { pollUntilDone } from "./demo/wait.ts";
import { stateFilePath } from "../state.ts";

const MARKER = "XCLUSTER_CNI_DEMO";
const TMP_PREFIX = "xcluster-demo-";
const PLUGINS = ["bridge", "host-local", "loopback"];
const SYSTEM_CNI = "/usr/lib/cni";
const NET3 = {
  cidr: "cidr.example.com/net3",
  adr: "adr.example.com/net3",
  protocol: 200,
  pools: "10.55.0.0/16/24,fd00:55::/96/112",
  /** The node's interface on the secondary LAN, whose addresses its router publishes. */
  interface: "eth1",
};
const MAIN_PROTOCOL = 202;

interface Running {
  node: DemoNode;
  dir: string;
  procs: Deno.ChildProcess[];
  binDir: string;
  mainConf: Record<string, unknown>;
  net3Conf: Record<string, unknown>;
}

/** Kills processes of an earlier demo run (found by the marker in their environment). */
async function killLeftovers(): Promise<void> {
  for await (const e of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const env = await Deno.readTextFile(`/proc/${e.name}/environ`);
      if (env.split("\0").some((kv) => kv.startsWith(`${MARKER}=`))) {
        Deno.kill(Number(e.name), "SIGKILL");
      }
    } catch { /* gone or not ours */ }
  }
  for await (const e of Deno.readDir("/tmp")) {
    if (e.isDirectory && e.name.startsWith(TMP_PREFIX)) {
      await Deno.remove(`/tmp/${e.name}`, { recursive: true }).catch(() => {});
    }
  }
  await removeNamespaces();
}

/** Waits for processes told to stop; those still there after 3 s are killed. */
async function stopped(procs: Deno.ChildProcess[]): Promise<void> {
  for (const p of procs) {
    try {
      p.kill("SIGTERM");
    } catch { /* already gone */ }
  }
  const timer = setTimeout(() => {
    for (const p of procs) {
      try {
        p.kill("SIGKILL");
      } catch { /* already gone */ }
    }
  }, 3000);
  await Promise.all(procs.map((p) => p.status));
  clearTimeout(timer);
}

function startRouter(
  r: { node: DemoNode; dir: string },
  kubeconfig: string,
  plugins: string,
  extra: Record<string, string>,
  log: string,
): Deno.ChildProcess {
  checkInterrupted();
  return spawnMainInNetns(r.node.ns, ["daemon"], {
    env: {
      ...DAEMON_RUNTIME_ENV,
      [MARKER]: "1",
      NODE_NAME: r.node.name,
      KUBECONFIG: kubeconfig,
      CNI_BIN_DIR: `${r.dir}/bin`,
      CNI_CONF_DIR: `${r.dir}/net.d`,
      PLUGINS_DIR: plugins,
      STATE_DIR: `${r.dir}/state`,
      LOG_FILE: `${r.dir}/${log}`,
      ...extra,
    },
  });
}

/** The net3 CIDRs a node's router wrote into its state file for kube-node. */
async function net3Cidrs(dir: string): Promise<string> {
  const state = JSON.parse(await Deno.readTextFile(stateFilePath(`${dir}/state`, NET3.cidr)));
  return Array.isArray(state.cidrs) ? state.cidrs.join(",") : "?";
}

async function routesOf(ns: string): Promise<string[]> {
  const out: string[] = [];
  for (const fam of ["-4", "-6"]) {
    for (const proto of [MAIN_PROTOCOL, NET3.protocol]) {
      const text = await sh("ip", "-n", ns, fam, "route", "show", "proto", String(proto));
      for (const line of text.split("\n")) {
        const m = /^(\S+) via (\S+)/.exec(line.trim());
        if (m) out.push(`${m[1].padEnd(20)} via ${m[2].padEnd(14)} proto ${proto}`);
      }
    }
  }
  return out;
}

function matrix(
  title: string,
  pods: DemoPod[],
  ok: Map<string, boolean>,
  pick: (p: DemoPod) => string,
): string {
  const short = (p: DemoPod) => p.name.slice(PREFIX.length);
  const width = Math.max(...pods.map((p) => short(p).length)) + 1;
  const lines = [`${title}`, "".padEnd(width) + pods.map((p) => short(p).padEnd(width)).join("")];
  for (const a of pods) {
    lines.push(
      short(a).padEnd(width) + pods.map((b) => {
        if (a === b) return "-".padEnd(width);
        return (ok.get(`${a.name}>${pick(b)}`) ? "ok" : "FAIL").padEnd(width);
      }).join(""),
    );
  }
  return lines.join("\n");
}

/** Up to this many nodes every pod pair is checked; beyond, a sample (see {@link pairsToCheck}). */
const ALL_PAIRS_UP_TO = 4;
/** The check gives up on what is left after this long. */
const CHECK_DEADLINE_MS = 60_000;

/**
 * The pairs to ping: every pair on a small cluster; on a larger one, each pod to one pod on
 * the next node, the one after, and the node half the cluster away, which covers every node
 * as a source and as a target and crosses the cluster, in a number of pings that grows with
 * the pods, not their square.
 */
export function pairsToCheck(
  pods: readonly DemoPod[],
  nodes: readonly string[],
): [DemoPod, DemoPod][] {
  if (nodes.length <= ALL_PAIRS_UP_TO) {
    return pods.flatMap((a) =>
      pods.filter((b) => b !== a).map((b) => [a, b] as [DemoPod, DemoPod])
    );
  }
  const byNode = new Map(nodes.map((n) => [n, pods.filter((p) => p.node === n)]));
  const out: [DemoPod, DemoPod][] = [];
  for (const a of pods) {
    const i = nodes.indexOf(a.node);
    const offsets = new Set([1, 2, Math.floor(nodes.length / 2)]);
    for (const k of offsets) {
      const there = byNode.get(nodes[(i + k) % nodes.length]) ?? [];
      if (there.length > 0) out.push([a, there[pods.indexOf(a) % there.length]]);
    }
  }
  return out;
}

/** Pings the pairs on both networks and both families; returns the report and the failures. */
async function checkAll(
  pods: DemoPod[],
  nodes: string[],
): Promise<{ report: string; failed: string[] }> {
  const picks: [string, (p: DemoPod) => string][] = [
    ["main network, IPv4", (p) => p.addrs.main.find((a) => !a.includes(":"))!],
    ["main network, IPv6", (p) => p.addrs.main.find((a) => a.includes(":"))!],
    ["secondary network (net3), IPv4", (p) => p.addrs.net3.find((a) => !a.includes(":"))!],
    ["secondary network (net3), IPv6", (p) => p.addrs.net3.find((a) => a.includes(":"))!],
  ];
  const pairs = pairsToCheck(pods, nodes);
  const jobs: [string, string][] = [];
  for (const [, pick] of picks) for (const [a, b] of pairs) jobs.push([a.name, pick(b)]);
  const ok = new Map<string, boolean>();
  const queue = [...jobs];
  const deadline = Date.now() + CHECK_DEADLINE_MS;
  const progress = setInterval(
    () => console.error(`  checked ${ok.size} of ${jobs.length} pairs`),
    jobs.length > 200 ? 2000 : 60_000,
  );
  try {
    await Promise.all(Array.from({ length: 16 }, async () => {
      for (let job = queue.shift(); job && Date.now() < deadline; job = queue.shift()) {
        ok.set(`${job[0]}>${job[1]}`, await ping(job[0], job[1]));
      }
    }));
  } finally {
    clearInterval(progress);
  }
  const failed = [...ok].filter(([, v]) => !v).map(([k]) => k.replace(">", " -> "));
  for (const [from, to] of queue) failed.push(`${from} -> ${to} (not checked within the deadline)`);
  const report = nodes.length <= ALL_PAIRS_UP_TO
    ? picks.map(([t, pick]) => matrix(t, pods, ok, pick)).join("\n\n")
    : picks.map(([t, pick]) => {
      const answered = pairs.filter(([a, b]) => ok.get(`${a.name}>${pick(b)}`)).length;
      return `${t}: ${answered} of ${pairs.length} sampled pairs answer`;
    }).join("\n");
  return { report, failed };
}

function parseArgs(args: string[]): { check: boolean; nodes: number } | string {
  const out = { check: false, nodes: 3 };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--check") out.check = true;
    else if (args[i] === "--nodes" && /^[0-9]+$/.test(args[i + 1] ?? "")) {
      out.nodes = Number(args[++i]);
    } else return `unexpected argument ${JSON.stringify(args[i])}`;
  }
  if (out.nodes < 2 || out.nodes > 50) return "--nodes must be 2-50";
  return out;
}

/** The `demo` subcommand. */
export async function demoCommand(args: string[]): Promise<number> {
  const opts = parseArgs(args);
  if (typeof opts === "string") {
    console.error(`xcluster-cni demo: ${opts}\nusage: xcluster-cni demo [--check] [--nodes N]`);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("xcluster-cni demo: needs root (it creates network namespaces)");
    return 1;
  }
  await killLeftovers();
  const top = await Deno.makeTempDir({ prefix: TMP_PREFIX });
  const running: Running[] = [];
  let api: Deno.ChildProcess | undefined;
  const stop = Promise.withResolvers<void>();
  const onSignal = () => {
    interruption.abort();
    stop.resolve();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  const t0 = performance.now();
  try {
    const plugins = `${top}/plugins`;
    await Deno.mkdir(plugins);
    for (const p of PLUGINS) await Deno.copyFile(`${SYSTEM_CNI}/${p}`, `${plugins}/${p}`);
    await Deno.chmod(`${plugins}/bridge`, 0o755);

    await makeLan();
    // The API server runs in the LAN namespace, seeded with the nodes through its state
    // file, so that every node reaches it and no traffic leaves the demo's namespaces.
    const store = new NodeStore();
    for (let i = 1; i <= opts.nodes; i++) {
      const node = demoNode(i);
      await makeNodeNs(node);
      // No annotation of net3: its routers write them.
      store.create(makeNode({
        name: node.name,
        podCIDRs: node.podCIDRs,
        internalIPs: [node.mainV4, node.mainV6],
      }));
      running.push({
        node,
        dir: `${top}/${node.name}`,
        procs: [],
        binDir: `${top}/${node.name}/bin`,
        mainConf: {},
        net3Conf: {},
      });
    }
    const say = (what: string) =>
      console.error(`  ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
    say(`${opts.nodes} node namespaces made`);
    await Deno.writeTextFile(
      `${top}/apiserver.json`,
      JSON.stringify({ resourceVersion: store.resourceVersion(), nodes: store.list() }),
    );
    checkInterrupted();
    api = spawnMainInNetns(LAN_NS, [
      "apiserver",
      "--listen",
      `${API_ADDRESS}:6443`,
      "--kubeconfig",
      `${top}/kubeconfig`,
      "--state",
      `${top}/apiserver.json`,
    ], { env: { [MARKER]: "1" } });
    await pollUntilDone(
      async () => {
        await Deno.stat(`${top}/kubeconfig`);
      },
      30_000,
      "the API server",
    );
    for (const r of running) {
      await Deno.mkdir(r.dir, { recursive: true });
      r.procs.push(
        startRouter(
          r,
          `${top}/kubeconfig`,
          plugins,
          { PROTOCOL: String(MAIN_PROTOCOL) },
          "main.log",
        ),
      );
      r.procs.push(startRouter(r, `${top}/kubeconfig`, plugins, {
        PROTOCOL: String(NET3.protocol),
        CIDR_ANNOTATION: NET3.cidr,
        ADDRESS_ANNOTATION: NET3.adr,
        INSTALL_K8S_NET: "no",
        CLUSTER_CIDRS: NET3.pools,
        ADDRESS_INTERFACE: NET3.interface,
        POD_NAMESPACE: "kube-system",
      }, "net3.log"));
    }
    for (const r of running) {
      await pollUntilDone(
        async () => {
          for (
            const f of [
              stateFilePath("state", ""),
              stateFilePath("state", NET3.cidr),
              "net.d/10-xcluster-cni.conflist",
              "bin/kube-node",
            ]
          ) {
            await Deno.stat(`${r.dir}/${f}`);
          }
        },
        60_000,
        `routers of ${r.node.name} ready (logs in ${r.dir})`,
      );
      r.mainConf = await mainConfig(`${r.dir}/net.d`, `${r.dir}/ipam-main`, `${r.dir}/state`);
      r.net3Conf = net3Config(`${r.dir}/ipam-net3`, `${r.dir}/state`);
    }
    say(`routers ready on ${running.length} nodes`);
    const pods = (await Promise.all(running.map((r) =>
      Promise.all([1, 2].map((i) =>
        addPod({ ...r.node, binDir: r.binDir, mainConf: r.mainConf, net3Conf: r.net3Conf }, i)
      ))
    ))).flat();
    say(`${pods.length} pods attached to both networks`);
    const want = opts.nodes - 1;
    for (const r of running) {
      await pollUntilDone(
        async () => {
          if ((await routesOf(r.node.ns)).length < want * 4) {
            throw new Error("routes missing");
          }
        },
        10_000,
        `routes on ${r.node.name}`,
      );
    }

    console.log(`\nxcluster-cni demo: ${opts.nodes} nodes, ${pods.length} pods\n`);
    for (const r of running) {
      const net3 = await net3Cidrs(r.dir);
      console.log(
        `${r.node.name}  podCIDRs ${r.node.podCIDRs.join(",")}  net3 ${net3} (allocated)`,
      );
      for (const line of await routesOf(r.node.ns)) {
        console.log(`    ${line}`);
      }
    }
    console.log("\npods:");
    for (const p of pods) {
      console.log(`  ${p.name}  eth0 ${p.addrs.main.join(",")}  net1 ${p.addrs.net3.join(",")}`);
    }
    const { report, failed } = await checkAll(
      pods,
      running.map((r) =>
        r.node.name
      ),
    );
    console.log(`\n${report}\n`);
    const seconds = ((performance.now() - t0) / 1000).toFixed(1);
    if (failed.length > 0) {
      console.log(`FAILED: ${failed.length} pairs did not answer:\n  ${failed.join("\n  ")}`);
    } else console.log(`every pair checked answers on both networks, IPv4 and IPv6 (${seconds} s)`);
    if (opts.check) {
      return failed.length === 0 ? 0 : 1;
    }

    const k = `ip netns exec ${LAN_NS} kubectl --kubeconfig ${top}/kubeconfig`;
    const joining = `${PREFIX}node${opts.nodes + 1}`;
    console.log(`\nThe cluster stays up until Ctrl-C. Try:
  ${k} get nodes -o custom-columns=NAME:.metadata.name,NET3:.metadata.annotations.cidr\\.example\\.com/net3
  ${k} get lease -n kube-system
  # a node joins net3 (its address written by hand, as it has no router here): it gets CIDRs
  # from the pool, and the other nodes route to them
  ${k} create -f - <<<'{"apiVersion":"v1","kind":"Node","metadata":{"name":"${joining}","annotations":{"${NET3.adr}":"192.168.60.${
      opts.nodes + 1
    },fd00:60::${opts.nodes + 1}"}}}'
  ${k} delete node ${joining}
  ip -n ${PREFIX}node1 route show table all proto ${NET3.protocol}
Route changes are printed as they happen.\n`);
    const last = new Map<string, string>();
    for (const r of running) {
      last.set(r.node.ns, (await routesOf(r.node.ns)).join("\n"));
    }
    while (true) {
      const tick = new Promise<boolean>((res) =>
        setTimeout(() => res(true), 1000)
      );
      if (!(await Promise.race([tick, stop.promise.then(() => false)]))) break;
      for (const r of running) {
        const now = (await routesOf(r.node.ns)).join("\n");
        if (now !== last.get(r.node.ns)) {
          last.set(r.node.ns, now);
          console.log(
            `${new Date().toISOString()} routes on ${r.node.name}:\n    ${
              now.split("\n").join("\n    ")
            }`,
          );
        }
      }
    }
    return 0;
  } catch (e) {
    if (e instanceof Interrupted || interruption.signal.aborted) {
      console.error("xcluster-cni demo: interrupted; cleaning up");
      return 130;
    }
    console.error(`xcluster-cni demo: ${(e as Error).message}`);
    return 1;
  } finally {
    // The listeners stay until the end: without them a second Ctrl-C (or `timeout`'s
    // SIGTERM to the whole group) would kill the clean-up halfway, leaving namespaces.
    for (const r of running) {
      for (const p of r.procs) {
        try {
          p.kill("SIGTERM");
        } catch { /* already gone */ }
      }
    }
    await stopped(running.flatMap((r) => r.procs));
    if (api) await stopped([api]);
    await removeNamespaces();
    await Deno.remove(top, { recursive: true }).catch(() => {});
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}
