/**
 * Figure 6, kube-node ADD and DEL: the real `bridge` plugin (run in a "node" namespace) with
 * kube-node as its IPAM, one pod namespace per pod, as a runtime calls them. Baseline: the
 * same bridge calls with an IPAM that starts an empty Deno program and then runs
 * `host-local` on the same ranges: what kube-node adds by being a Deno program that runs
 * host-local, with the empty program started where kube-node starts. (Under `ip netns
 * exec`, with the bench's 600 namespaces mounted, a Deno program took about 4 ms longer to
 * start than outside it, so an empty program timed apart understated the baseline.) bridge
 * with host-local alone is timed too, for the record.
 *
 * The sides take turns pod by pod, so that drift in the machine's speed during the run
 * weighs on all alike (run one after the other, the ratio swung from 1.2x to 1.6x).
 * bridge's ADD times have two modes about 50 ms apart: about a third of its ADDs take
 * the longer path, whatever the IPAM, with IPv6 DAD on or off. The share of slow ADDs on
 * each side moves the p50s, so the sides need many pods: with 60 the ratio moved by 0.14
 * between runs of the same build, with 200 by 0.02.
 *
 * kube-node is the development wrapper (`deno run main.ts kube-node`, as `install` writes
 * it), not a compiled binary; the baseline's empty program is started by the same wrapper
 * text with the file swapped, so the two starts use the same Deno flags and compare.
 *
 * @module
 */
import { devWrapper } from "../src/install.ts";
import { writeNodeState } from "../src/state.ts";
import { BenchNetns, deferCleanup, type Figure, percentile, round, summary } from "./lib.ts";

const SYSTEM_CNI = "/usr/lib/cni";
const MAIN_TS = new URL("../main.ts", import.meta.url).pathname;
const ANNOTATION = "bench.xcluster.example/cidrs";
const CIDRS = ["10.123.0.0/16", "fd00:123::/64"];
/** File name of the baseline IPAM in the bench's CNI bin folder. */
const BASELINE_IPAM = "empty-deno-then-host-local";

interface Call {
  command: "ADD" | "DEL";
  containerId: string;
  netnsPath: string;
  conf: Record<string, unknown>;
}

/** Calls the bridge plugin inside the node namespace; returns the time in ms. */
async function callBridge(bin: string, nodeNs: string, c: Call): Promise<number> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    CNI_COMMAND: c.command,
    CNI_CONTAINERID: c.containerId,
    CNI_NETNS: c.netnsPath,
    CNI_IFNAME: "eth0",
    CNI_PATH: bin,
  };
  for (const k of ["HOME", "DENO_DIR"]) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  const t0 = performance.now();
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", nodeNs, `${bin}/bridge`],
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(c.conf)));
  await w.close();
  const out = await child.output();
  const ms = performance.now() - t0;
  if (out.code !== 0) {
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    throw new Error(
      `bridge ${c.command} ${c.containerId}: exit ${out.code}: ${text.slice(0, 400)}`,
    );
  }
  return ms;
}

/** The IPAMs compared: each gets its own bridge network and its own pods. */
interface Side {
  conf: Record<string, unknown>;
  pods: BenchNetns[];
  tag: string;
}

/**
 * ADDs, then DELs, of every pod, the sides taking turns pod by pod, so that a machine that
 * gets slower or faster during the run weighs on every side alike. One warm-up pod per side
 * first, not counted.
 */
async function podRounds(
  bin: string,
  nodeNs: BenchNetns,
  sides: Side[],
): Promise<{ add: number[][]; del: number[][] }> {
  const path = (ns: BenchNetns) => `/var/run/netns/${ns.name}`;
  const call = (side: Side, command: "ADD" | "DEL", i: number | "warm") =>
    callBridge(bin, nodeNs.name, {
      command,
      containerId: `${side.tag}-${i}`,
      netnsPath: path(side.pods[i === "warm" ? 0 : i]),
      conf: side.conf,
    });
  for (const side of sides) {
    await call(side, "ADD", "warm");
    await call(side, "DEL", "warm");
  }
  const add: number[][] = sides.map(() => []);
  const del: number[][] = sides.map(() => []);
  const pods = sides[0].pods.length;
  for (const [command, times] of [["ADD", add], ["DEL", del]] as const) {
    for (let i = 0; i < pods; i++) {
      for (const [k, side] of sides.entries()) times[k].push(await call(side, command, i));
    }
  }
  return { add, del };
}

/**
 * kube-node's wrapper running `file` instead of main.ts: the same Deno, flags, config and
 * DENO_DIR, so that whatever the wrapper does is in the baseline too.
 */
export function emptyWrapper(file: string): string {
  const text = devWrapper(MAIN_TS);
  if (text.split(MAIN_TS).length !== 2) {
    throw new Error(`the kube-node wrapper does not name ${MAIN_TS} exactly once:\n${text}`);
  }
  return text.replace(MAIN_TS, file);
}

/**
 * The baseline IPAM: kube-node's wrapper starting an empty program (not exec'd: it returns
 * here), then host-local exec'd with the config on stdin.
 */
export function emptyThenHostLocal(file: string, hostLocal: string): string {
  const lines = emptyWrapper(file).trimEnd().split("\n");
  const last = lines.length - 1;
  if (!lines[last].startsWith("exec ")) {
    throw new Error(`the kube-node wrapper does not end with exec:\n${lines.join("\n")}`);
  }
  lines[last] = `${lines[last].slice("exec ".length)} </dev/null || exit 1`;
  lines.push(`exec '${hostLocal}'`);
  return lines.join("\n") + "\n";
}

/**
 * Runs `pods` pods through bridge with each IPAM: kube-node, the baseline (an empty Deno
 * program, then host-local) and host-local alone.
 */
export async function cniFigures(pods: number): Promise<Figure[]> {
  for (const p of ["bridge", "host-local", "loopback"]) await Deno.stat(`${SYSTEM_CNI}/${p}`);
  const dir = await Deno.makeTempDir({ prefix: "xcluster-bench-cni-" });
  const removeDir = deferCleanup(`folder ${dir}`, () => Deno.remove(dir, { recursive: true }));
  const namespaces: BenchNetns[] = [];
  try {
    const bin = `${dir}/bin`;
    await Deno.mkdir(bin);
    for (const p of ["bridge", "host-local", "loopback"]) {
      await Deno.symlink(`${SYSTEM_CNI}/${p}`, `${bin}/${p}`);
    }
    await Deno.writeTextFile(`${bin}/kube-node`, devWrapper(MAIN_TS), { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/empty.ts`, "");
    await Deno.writeTextFile(
      `${bin}/${BASELINE_IPAM}`,
      emptyThenHostLocal(`${dir}/empty.ts`, `${bin}/host-local`),
      { mode: 0o755 },
    );
    const stateDir = `${dir}/state`;
    await writeNodeState(stateDir, {
      version: 1,
      node: "node-0",
      annotation: ANNOTATION,
      cidrs: CIDRS,
      updated: new Date().toISOString(),
    });
    const nodeNs = await BenchNetns.create();
    const podNs: BenchNetns[] = [];
    for (let i = 0; i < 3 * pods; i++) podNs.push(await BenchNetns.create());
    namespaces.push(nodeNs, ...podNs);

    const bridgeConf = (name: string, bridge: string, ipam: Record<string, unknown>) => ({
      cniVersion: "1.0.0",
      name,
      type: "bridge",
      bridge,
      isGateway: true,
      ipam: { dataDir: `${dir}/ipam`, ...ipam },
    });
    const kubeNode = bridgeConf("bench-kn", "cni-kn", {
      type: "kube-node",
      annotation: ANNOTATION,
      stateDir,
    });
    const ranges = CIDRS.map((subnet) => [{ subnet }]);
    const baseline = bridgeConf("bench-base", "cni-base", { type: BASELINE_IPAM, ranges });
    const hostLocal = bridgeConf("bench-hl", "cni-hl", { type: "host-local", ranges });

    const r = await podRounds(bin, nodeNs, [
      { conf: kubeNode, pods: podNs.slice(0, pods), tag: "kn" },
      { conf: baseline, pods: podNs.slice(pods, 2 * pods), tag: "base" },
      { conf: hostLocal, pods: podNs.slice(2 * pods), tag: "hl" },
    ]);
    const figure = (cmd: "ADD" | "DEL", [mine, theirs, alone]: number[][]): Figure => ({
      figure: 6,
      name: `cni-${cmd.toLowerCase()}`,
      what: `bridge + kube-node ${cmd}, p50 of ${pods} pods`,
      unit: "ms",
      value: percentile(mine, 50),
      baseline: percentile(theirs, 50),
      baselineWhat: `bridge + (empty deno run, then host-local) ${cmd} p50`,
      target: { on: "ratio", max: 1.3 },
      details: {
        kubeNode: summary(mine),
        emptyDenoThenHostLocal: summary(theirs),
        hostLocalAlone: summary(alone),
        p99Ratio: round(percentile(mine, 99) / percentile(theirs, 99)),
      },
    });
    return [figure("ADD", r.add), figure("DEL", r.del)];
  } finally {
    for (const ns of namespaces) await ns.delete();
    await removeDir();
  }
}
