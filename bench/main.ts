/**
 * `deno task bench`: the benchmark figures on this machine, each beside a baseline taken
 * in the same run. Prints a table and writes bench/results.json. Needs root (network
 * namespaces); sets up and removes everything it uses, also on failure and Ctrl-C.
 *
 * Usage: `deno task bench [--quick] [--only NAME[,NAME]] [N...]` where NAME is one of
 * convergence, latency, churn, repair, memory, cni, apiserver, allocation, and each N is a
 * cluster size to run instead of the default 1000 and 5000 (1000 with --quick); apiserver
 * and allocation run at the largest.
 *
 * @module
 */
import { startCluster } from "./cluster.ts";
import { convergence } from "./convergence.ts";
import { changeLatency } from "./latency.ts";
import { churn } from "./churn.ts";
import { repair } from "./repair.ts";
import { heapPerNode, memoryAndIdle } from "./memory.ts";
import { cniFigures } from "./cni.ts";
import { apiServerFigures } from "./apiserver.ts";
import { allocationFigures } from "./allocation.ts";
import {
  type BenchNetns,
  cleanupAll,
  type Figure,
  judge,
  type JudgedFigure,
  RouteMonitor,
  run,
} from "./lib.ts";
import { formatTable } from "./table.ts";

/** Figure groups that `--only` accepts. */
export const NAMES = [
  "convergence",
  "latency",
  "churn",
  "repair",
  "memory",
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
}

/** The usage text of `--help`. */
export const USAGE = "usage: deno task bench [--quick] [--only NAME[,NAME]] [--out FILE] [N...]\n" +
  `  NAME: ${NAMES.join(", ")}\n` +
  "  --daemon-v8-flags=FLAGS: run the daemon with deno run --v8-flags=FLAGS\n" +
  "  N: cluster sizes (default 1000 5000; 1000 with --quick)";

/** Parses the arguments; throws with a usage line on anything unknown. */
export function parseArgs(args: string[]): Options {
  const o: Options = {
    quick: false,
    only: new Set(NAMES),
    out: new URL("./results.json", import.meta.url).pathname,
    sizes: [],
    help: false,
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
    else if (/^[1-9][0-9]*$/.test(a)) o.sizes.push(Number(a));
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

const log = (msg: string) =>
  console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

/** Figures 1-5 for one cluster size, with one daemon process kept across them. */
async function routerFigures(n: number, o: Options, largest: boolean): Promise<Figure[]> {
  const want = (x: Name) => o.only.has(x);
  const figures: Figure[] = [];
  log(`N=${n}: API server with ${n + 1} realistic nodes`);
  const c = await startCluster(n);
  const logFile = `${c.dir}/daemon.log`;
  let baselineNs: BenchNetns[] = [];
  try {
    log(`N=${n}: convergence (raw batch, list and start, by turns)`);
    const conv = await convergence(c, {
      reps: want("convergence") ? 5 : 1,
      logFile,
      v8Flags: o.daemonV8Flags,
    });
    baselineNs = conv.baselineNs;
    if (want("convergence")) figures.push(...conv.figures);
    const daemon = conv.daemon;
    if (want("memory")) {
      const rest = largest ? (o.quick ? 30 : 60) : 0;
      log(`N=${n}: memory${rest ? `, ${rest} s at rest` : ""}`);
      figures.push(...await memoryAndIdle(c, daemon, rest));
    }
    const monitor = await RouteMonitor.start(c.ns);
    if (want("repair")) {
      log(`N=${n}: repair`);
      figures.push(await repair(c, monitor, baselineNs[baselineNs.length - 1], o.quick ? 3 : 5));
    }
    let quietP99: number | undefined;
    if (want("latency")) {
      log(`N=${n}: change latency`);
      const r = await changeLatency(c, daemon, monitor, 500);
      figures.push(r.figure);
      quietP99 = r.figure.value;
    }
    if (want("churn")) {
      const seconds = o.quick ? 10 : 30;
      log(`N=${n}: churn for ${seconds} s`);
      figures.push(...await churn(c, daemon, monitor, seconds, quietP99));
    }
    await monitor.stop();
    await daemon.stop();
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
  const onSignal = () => {
    console.error("\ninterrupted: cleaning up");
    cleanupAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const started = new Date();
  const m = await machine();
  console.log(
    `machine: ${m.cores} cores (${m.cpu}), ${m.memGiB} GiB, kernel ${m.kernel}, ` +
      `deno ${m.deno}, ${m.iproute2}`,
  );
  console.log(`date: ${started.toISOString()}${o.quick ? " (--quick)" : ""}`);
  if (o.daemonV8Flags) console.log(`daemon V8 flags: ${o.daemonV8Flags}`);
  const sizes = o.sizes.length > 0 ? o.sizes : o.quick ? [1000] : [1000, 5000];
  const figures: Figure[] = [];
  const t0 = performance.now();
  try {
    const router = ["convergence", "latency", "churn", "repair", "memory"] as const;
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
    await cleanupAll();
  }
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
        seconds,
        machine: m,
        figures: judged,
      },
      null,
      2,
    ) + "\n",
  );
  return 0;
}

if (import.meta.main) Deno.exit(await main());
