/**
 * `deno task bench`: the benchmark figures on this machine, each beside a baseline taken
 * in the same run. Prints a table and writes bench/results.json. Needs root (network
 * namespaces); sets up and removes everything it uses, also on failure and Ctrl-C.
 *
 * Usage: `deno task bench [--quick] [--only NAME[,NAME]] [N...]` where NAME is one of
 * convergence, latency, start-window, churn, repair, memory, adapters, cni, apiserver,
 * allocation, and each N is a cluster size to run instead of the default 1000 and 5000
 * (1000 with --quick); apiserver and allocation run at the largest.
 *
 * @module
 */
import { startCluster } from "./cluster.ts";
import { changeLatency, startWindow } from "./latency.ts";
import { churn } from "./churn.ts";
import { repair, repairTimes } from "./repair.ts";
import { convergence, convergeOnce } from "./convergence.ts";
import type { DaemonOptions } from "./daemon.ts";
import { heapPerNode, memoryAndIdle } from "./memory.ts";
import { cniFigures } from "./cni.ts";
import { apiServerFigures } from "./apiserver.ts";
import { allocationFigures } from "./allocation.ts";
import {
  type BenchNetns,
  cleanupAll,
  cleanUpOnSignals,
  type Figure,
  judge,
  type JudgedFigure,
  median,
  round,
  RouteMonitor,
  runProgram,
} from "./lib.ts";
import { run } from "../src/devcluster/netns.ts";
import { formatTable } from "./table.ts";

/** Figure groups that `--only` accepts. */
export const NAMES = [
  "convergence",
  "latency",
  "start-window",
  "churn",
  "repair",
  "memory",
  "adapters",
  "cni",
  "apiserver",
  "allocation",
] as const;
type Name = typeof NAMES[number];

/** Parsed command line. */
export interface Options {
  quick: boolean;
  only: Set<Name>;
  out: string;
  /** Cluster sizes given on the command line; empty for the defaults. */
  sizes: number[];
  help: boolean;
  /** V8 flags for the daemon process (`--daemon-v8-flags=...`); none by default. */
  daemonV8Flags?: string;
  /**
   * Environment of the daemon process over the bench's and `DAEMON_RUNTIME_ENV`
   * (`--daemon-env=KEY=VALUE`, repeated); empty by default.
   */
  daemonEnv: Record<string, string>;
}

/** The usage text of `--help`. */
export const USAGE = "usage: deno task bench [--quick] [--only NAME[,NAME]] [--out FILE] [N...]\n" +
  `  NAME: ${NAMES.join(", ")}\n` +
  "  --daemon-v8-flags=FLAGS: run the daemon with deno run --v8-flags=FLAGS\n" +
  "  --daemon-env=KEY=VALUE: set KEY in the daemon's environment (e.g. DENO_V8_FLAGS)\n" +
  "  N: cluster sizes (default 1000 5000; 1000 with --quick)";

/** Parses the arguments; throws with a usage line on anything unknown. */
export function parseArgs(args: string[]): Options {
  const o: Options = {
    quick: false,
    only: new Set(NAMES),
    out: new URL("./results.json", import.meta.url).pathname,
    sizes: [],
    help: false,
    daemonEnv: {},
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--quick") o.quick = true;
    else if (a === "--only" || a.startsWith("--only=")) {
      const v = a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[++i] ?? "";
      const names = v.split(",").filter((x) => x !== "");
      for (const n of names) {
        if (!(NAMES as readonly string[]).includes(n)) {
          throw new Error(`--only: unknown figure ${JSON.stringify(n)} (${NAMES.join(", ")})`);
        }
      }
      o.only = new Set(names as Name[]);
    } else if (a === "--out") o.out = args[++i] ?? o.out;
    else if (a === "--help" || a === "-h") o.help = true;
    else if (a.startsWith("--daemon-v8-flags=")) o.daemonV8Flags = a.slice(a.indexOf("=") + 1);
    else if (a.startsWith("--daemon-env=")) {
      const kv = a.slice(a.indexOf("=") + 1);
      const eq = kv.indexOf("=");
      if (eq <= 0) throw new Error(`--daemon-env: expected KEY=VALUE, got ${JSON.stringify(kv)}`);
      o.daemonEnv[kv.slice(0, eq)] = kv.slice(eq + 1);
    } else if (/^[1-9][0-9]*$/.test(a)) o.sizes.push(Number(a));
    else throw new Error(`unknown argument ${JSON.stringify(a)}; ${USAGE}`);
  }
  return o;
}

/** The machine the figures come from. */
async function machine(): Promise<Record<string, unknown>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? "unknown";
  const ipVersion = (await run("ip", ["-V"]).catch(() => "")).trim();
  return {
    cores: navigator.hardwareConcurrency,
    cpu: model,
    memGiB: Math.round((Deno.systemMemoryInfo().total / 2 ** 30) * 10) / 10,
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    iproute2: ipVersion,
  };
}

// The 1-minute load average in every line: this bench keeps about one core busy, so a load
// well above 1 means other programs ran beside it and the figures of that stretch are suspect.
const log = (msg: string) =>
  console.error(
    `[bench ${new Date().toISOString().slice(11, 19)} load ${Deno.loadavg()[0].toFixed(2)}] ${msg}`,
  );

/**
 * Figures 1-5 and 9 for one cluster size: one daemon process kept from its convergence to
 * the end of the churn, then a fresh start for the start window, then one with
 * `ROUTE_ADAPTER=iproute2` for figure 9's repair and change latency.
 */
async function routerFigures(n: number, o: Options, largest: boolean): Promise<Figure[]> {
  const want = (x: Name) => o.only.has(x);
  const adapters = want("adapters");
  const d: DaemonOptions = { v8Flags: o.daemonV8Flags, env: o.daemonEnv };
  const repairReps = o.quick ? 3 : 5;
  const changes = 500;
  const figures: Figure[] = [];
  log(`N=${n}: API server with ${n + 1} realistic nodes`);
  const c = await startCluster(n);
  const logFile = `${c.dir}/daemon.log`;
  let baselineNs: BenchNetns[] = [];
  try {
    log(`N=${n}: convergence (raw batches, list and start${adapters ? "s" : ""}, by turns)`);
    const conv = await convergence(c, {
      reps: want("convergence") || adapters ? 5 : 1,
      logFile,
      daemon: d,
      adapters,
    });
    baselineNs = conv.baselineNs;
    if (want("convergence")) figures.push(...conv.figures);
    const daemon = conv.daemon;
    if (want("memory")) {
      const rest = largest ? (o.quick ? 30 : 60) : 0;
      log(`N=${n}: memory${rest ? `, ${rest} s at rest` : ""}`);
      figures.push(...await memoryAndIdle(c, daemon, rest));
    } else await daemon.startEnded();
    const monitor = await RouteMonitor.start(c.ns);
    let repairMs: number | undefined;
    if (want("repair") || adapters) {
      log(`N=${n}: repair`);
      const r = await repair(c, monitor, baselineNs[baselineNs.length - 1], repairReps);
      if (want("repair")) figures.push(...r.figures);
      repairMs = r.ms;
    }
    let quietP99: number | undefined;
    if (want("latency") || want("start-window") || adapters) {
      log(`N=${n}: change latency`);
      const r = await changeLatency(c, daemon, monitor, changes);
      if (want("latency")) figures.push(r.figure);
      quietP99 = r.figure.value;
    }
    if (want("churn")) {
      const seconds = o.quick ? 10 : 30;
      log(`N=${n}: churn for ${seconds} s`);
      figures.push(...await churn(c, daemon, monitor, seconds, quietP99));
    }
    await daemon.stop();
    if (want("start-window")) {
      log(`N=${n}: change latency in the 10 s from a start`);
      const w = await startWindow(c, monitor, { seconds: 10, logFile, daemon: d, quietP99 });
      figures.push(...w.figures);
      await w.daemon.stop();
    }
    if (adapters) {
      log(`N=${n}: repair and change latency with ROUTE_ADAPTER=iproute2`);
      const other = await convergeOnce(c, logFile, {
        ...d,
        env: { ...d.env, ROUTE_ADAPTER: "iproute2" },
      });
      await other.daemon.startEnded();
      await monitor.sync(c.ns);
      const times = await repairTimes(c, monitor, repairReps);
      const lat = await changeLatency(c, other.daemon, monitor, changes);
      await other.daemon.stop();
      figures.push(...conv.adapterFigures, {
        figure: 9,
        name: "adapter-repair",
        n,
        what: "netlink: 100 routes deleted → all back (median of reps)",
        unit: "ms",
        value: repairMs!,
        baseline: median(times),
        baselineWhat: "the same with ROUTE_ADAPTER=iproute2",
        details: { iproute2RunsMs: times.map((x) => round(x)) },
      }, {
        figure: 9,
        name: "adapter-latency",
        n,
        what: `netlink: change latency p99 at rest (${changes} changes)`,
        unit: "ms",
        value: quietP99!,
        baseline: lat.figure.value,
        baselineWhat: "the same with ROUTE_ADAPTER=iproute2",
        details: { iproute2: lat.figure.details },
      });
    }
    await monitor.stop();
  } catch (e) {
    const text = await Deno.readTextFile(logFile).catch(() => "");
    if (text) console.error(`daemon log (last lines):\n${text.split("\n").slice(-20).join("\n")}`);
    throw e;
  } finally {
    await c.close();
    for (const ns of baselineNs) await ns.delete();
  }
  return figures;
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  if (Deno.uid() !== 0) {
    console.error("bench: needs root (network namespaces)");
    return 2;
  }
  cleanUpOnSignals();

  const started = new Date();
  const m = await machine();
  console.log(
    `machine: ${m.cores} cores (${m.cpu}), ${m.memGiB} GiB, kernel ${m.kernel}, ` +
      `deno ${m.deno}, ${m.iproute2}`,
  );
  console.log(`date: ${started.toISOString()}${o.quick ? " (--quick)" : ""}`);
  if (o.daemonV8Flags) console.log(`daemon V8 flags: ${o.daemonV8Flags}`);
  for (const [k, v] of Object.entries(o.daemonEnv)) console.log(`daemon env: ${k}=${v}`);
  const sizes = o.sizes.length > 0 ? o.sizes : o.quick ? [1000] : [1000, 5000];
  const figures: Figure[] = [];
  const t0 = performance.now();
  // The load average every 10 s, kept with the figures (see `log`).
  const loads: { s: number; load1: number }[] = [];
  const sampleLoad = () =>
    loads.push({ s: Math.round((performance.now() - t0) / 1000), load1: Deno.loadavg()[0] });
  sampleLoad();
  const loadTimer = setInterval(sampleLoad, 10_000);
  try {
    const router = [
      "convergence",
      "latency",
      "start-window",
      "churn",
      "repair",
      "memory",
      "adapters",
    ] as const;
    if (router.some((x) => o.only.has(x))) {
      for (const n of sizes) {
        figures.push(...await routerFigures(n, o, n === sizes[sizes.length - 1]));
      }
      const perNode = heapPerNode(figures);
      if (perNode) figures.push(perNode);
    }
    if (o.only.has("cni")) {
      log("kube-node through bridge");
      figures.push(...await cniFigures(o.quick ? 20 : 200));
    }
    if (o.only.has("apiserver")) {
      const n = sizes[sizes.length - 1];
      log(`API server with ${n} nodes`);
      figures.push(...await apiServerFigures(n, o.quick ? 10 : 20));
    }
    if (o.only.has("allocation")) {
      const n = sizes[sizes.length - 1];
      log(`allocation with ${n} nodes (each leader killed: its 15 s lease waited out)`);
      figures.push(...await allocationFigures(n, { kills: o.quick ? 1 : 2 }));
    }
  } finally {
    clearInterval(loadTimer);
    await cleanupAll();
  }
  sampleLoad();
  const judged: JudgedFigure[] = figures.map(judge);
  console.log("");
  console.log(formatTable(judged));
  const seconds = Math.round((performance.now() - t0) / 1000);
  console.log(`\n${judged.length} figures in ${seconds} s; written to ${o.out}`);
  await Deno.writeTextFile(
    o.out,
    JSON.stringify(
      {
        date: started.toISOString(),
        quick: o.quick,
        daemonV8Flags: o.daemonV8Flags,
        daemonEnv: o.daemonEnv,
        seconds,
        machine: m,
        load: { max1: Math.max(...loads.map((l) => l.load1)), samples: loads },
        figures: judged,
      },
      null,
      2,
    ) + "\n",
  );
  return 0;
}

if (import.meta.main) await runProgram(main);
