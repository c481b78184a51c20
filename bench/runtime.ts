/**
 * Where the daemon's resident memory goes after converging, and what V8's runtime settings
 * change in it at rest and under churn. Not part of `deno task bench`: run it alone, as root
 * (network namespaces), at a low load:
 *
 * `deno run -A bench/runtime.ts [--rounds R] [--churn SECONDS] [--setting NAME=FLAGS]... [N]`
 *
 * First the breakdown, with the image's settings (`DAEMON_RUNTIME_ENV`): the resident size
 * by kind of mapping (/proc/PID/smaps: the Deno binary's code and data, other files,
 * anonymous memory), V8's heap by space (node:v8, loaded in the daemon once the rest is
 * sampled, as it adds to the heap), and malloc's share by difference. Then each setting
 * (a whole `DENO_V8_FLAGS`; `--expose-gc` stays in every one, as the daemon compacts its
 * heap with it), in turns for R rounds (the order reversed every other round, so that a
 * drift of the machine weighs on all alike): a start from no routes, the resident size once
 * the start is over, then figure 3's churn (100 updates/s) with its CPU, lag and resident
 * size (peak, VmHWM reset before it). Prints two tables; `--out FILE` writes them as JSON.
 *
 * @module
 */
import { startCluster } from "./cluster.ts";
import { convergeOnce } from "./convergence.ts";
import { churn } from "./churn.ts";
import type { DaemonStats, HeapSpace } from "./daemon.ts";
import {
  cleanupAll,
  cleanUpOnSignals,
  type Figure,
  memoryMap,
  type ProcSample,
  round,
  RouteMonitor,
  runProgram,
  sleep,
} from "./lib.ts";
import { DAEMON_RUNTIME_ENV } from "../src/config.ts";

const IMAGE_FLAGS = DAEMON_RUNTIME_ENV.DENO_V8_FLAGS;

/** The settings tried by default: young-generation sizes and collector modes. */
export const SETTINGS: Readonly<Record<string, string>> = {
  "image": IMAGE_FLAGS,
  "young: V8's default": "--expose-gc",
  "young: semi-space 2 MiB": "--max-semi-space-size=2,--expose-gc",
  "young: minor mark-sweep": "--minor-ms,--max-semi-space-size=1,--expose-gc",
  "gc: single-threaded": "--max-semi-space-size=1,--single-threaded-gc,--expose-gc",
  "gc: memory saver": "--max-semi-space-size=1,--memory-saver-mode,--expose-gc",
  "gc: optimize for size": "--max-semi-space-size=1,--optimize-for-size,--expose-gc",
  // Not the young generation nor the collector, but most of the resident size is the
  // binary's code, and the optimizing compilers are a good part of the code a run touches.
  "jit: no TurboFan": "--max-semi-space-size=1,--max-opt=2,--expose-gc",
  "jit: Sparkplug only": "--max-semi-space-size=1,--max-opt=1,--expose-gc",
};

/** Parsed command line. */
export interface RuntimeOptions {
  n: number;
  rounds: number;
  churnSeconds: number;
  settings: Record<string, string>;
  out?: string;
  help: boolean;
}

/** The usage text of `--help`. */
export const RUNTIME_USAGE = "usage: deno run -A bench/runtime.ts [--rounds R] [--churn SECONDS] " +
  "[--setting NAME=FLAGS]... [--out FILE] [N]";

/** Parses the arguments; throws on anything unknown. */
export function parseRuntimeArgs(args: string[]): RuntimeOptions {
  const o: RuntimeOptions = { n: 5000, rounds: 2, churnSeconds: 30, settings: {}, help: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => a.includes("=") ? a.slice(a.indexOf("=") + 1) : args[++i] ?? "";
    if (a === "--help" || a === "-h") o.help = true;
    else if (a === "--rounds" || a.startsWith("--rounds=")) o.rounds = Number(value());
    else if (a === "--churn" || a.startsWith("--churn=")) o.churnSeconds = Number(value());
    else if (a === "--out" || a.startsWith("--out=")) o.out = value();
    else if (a === "--setting" || a.startsWith("--setting=")) {
      const v = value();
      const eq = v.indexOf("=");
      if (eq <= 0) throw new Error(`--setting: expected NAME=FLAGS, got ${JSON.stringify(v)}`);
      o.settings[v.slice(0, eq)] = v.slice(eq + 1);
    } else if (/^[1-9][0-9]*$/.test(a)) o.n = Number(a);
    else throw new Error(`unknown argument ${JSON.stringify(a)}; ${RUNTIME_USAGE}`);
  }
  if (!(o.rounds >= 1) || !(o.churnSeconds >= 1)) throw new Error("--rounds, --churn: ≥ 1");
  if (Object.keys(o.settings).length === 0) o.settings = { ...SETTINGS };
  return o;
}

const log = (msg: string) =>
  console.error(`[runtime ${new Date().toISOString().slice(11, 19)}] ${msg}`);
const mib = (bytes: number) => round(bytes / (1 << 20));

/** One line of the breakdown table. */
interface Part {
  part: string;
  mib: number;
  note?: string;
}

/** The resident memory of a daemon at rest after converging, by where it goes. */
function breakdown(
  proc: ProcSample,
  map: Awaited<ReturnType<typeof memoryMap>>,
  s: DaemonStats,
): Part[] {
  const v8 = s.v8!;
  const physical = v8.heap.total_physical_size;
  const spaces: Part[] = v8.spaces
    .filter((x: HeapSpace) => x.physical_space_size > 0)
    .map((x) => ({
      part: `  V8 ${x.space_name}`,
      mib: mib(x.physical_space_size),
      note: `${mib(x.space_used_size)} MiB live or not yet collected`,
    }));
  return [
    { part: "RSS", mib: round(proc.rssMiB) },
    { part: "Deno binary, code (r-x)", mib: map.binaryCodeMiB, note: "shared, clean" },
    { part: "Deno binary, data", mib: map.binaryDataMiB, note: "read-only data, snapshot" },
    { part: "other mapped files", mib: map.libsMiB, note: "libc, libm, ..." },
    { part: "anonymous", mib: map.anonMiB },
    {
      part: " V8 heap (committed, resident)",
      mib: mib(physical),
      note: `node:v8 loaded: heap ${mib(v8.before.heapTotal)} → ${mib(s.memory.heapTotal)} MiB`,
    },
    ...spaces,
    {
      part: " the rest: malloc, stacks",
      mib: round(map.anonMiB - mib(physical)),
      note: `brk heap ${map.brkHeapMiB} MiB; V8's own malloc ${
        mib(v8.heap.malloced_memory)
      } MiB; ArrayBuffers ${mib(s.memory.external)} MiB`,
    },
  ];
}

/** What one setting gave in one round. */
interface Sample {
  convergenceMs: number;
  startCpuS: number;
  startPeakMiB: number;
  restRssMiB: number;
  restAnonMiB: number;
  heapTotalMiB: number;
  churnCores: number;
  churnLagP99Ms: number;
  churnRssEndMiB: number;
  churnPeakMiB: number;
}

const num = (f: Figure | undefined) => f?.value ?? NaN;
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function trySetting(
  c: Awaited<ReturnType<typeof startCluster>>,
  flags: string,
  churnSeconds: number,
): Promise<Sample> {
  const logFile = `${c.dir}/daemon.log`;
  const run = await convergeOnce(c, logFile, { env: { DENO_V8_FLAGS: flags } });
  const daemon = run.daemon;
  try {
    await daemon.startEnded();
    // As figure 5 samples it: once the start has given its memory back.
    const rest = await daemon.proc();
    const stats = await daemon.stats();
    const monitor = await RouteMonitor.start(c.ns);
    try {
      const figs = await churn(c, daemon, monitor, churnSeconds, undefined);
      const rss = figs.find((f) => f.name === "churn-rss");
      return {
        convergenceMs: run.totalMs,
        startCpuS: run.cpuS,
        startPeakMiB: rest.hwmMiB,
        restRssMiB: rest.rssMiB,
        restAnonMiB: rest.rssAnonMiB,
        heapTotalMiB: mib(stats.memory.heapTotal),
        churnCores: num(figs.find((f) => f.name === "churn-cpu")),
        churnLagP99Ms: num(figs.find((f) => f.name === "churn-lag")),
        churnRssEndMiB: num(rss),
        churnPeakMiB: Number(rss?.details.peakMiB ?? NaN),
      };
    } finally {
      await monitor.stop();
    }
  } finally {
    await daemon.stop();
  }
}

function pad(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((x, i) => x.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}

async function main(): Promise<number> {
  let o: RuntimeOptions;
  try {
    o = parseRuntimeArgs(Deno.args);
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  if (o.help) {
    console.log(RUNTIME_USAGE);
    return 0;
  }
  if (Deno.uid() !== 0) {
    console.error("runtime: needs root (network namespaces)");
    return 2;
  }
  cleanUpOnSignals();
  const started = new Date().toISOString();
  let parts: Part[] = [];
  const results = new Map<string, Sample[]>(Object.keys(o.settings).map((k) => [k, []]));
  try {
    log(`API server with ${o.n + 1} realistic nodes`);
    const c = await startCluster(o.n);
    try {
      log("breakdown with the image's settings");
      const run = await convergeOnce(c, `${c.dir}/daemon.log`);
      try {
        await run.daemon.startEnded();
        await sleep(2000);
        const proc = await run.daemon.proc();
        const map = await memoryMap(run.daemon.pid);
        parts = breakdown(proc, map, await run.daemon.heapSpaces());
      } finally {
        await run.daemon.stop();
      }
      const names = Object.keys(o.settings);
      for (let r = 0; r < o.rounds; r++) {
        const order = r % 2 === 0 ? names : [...names].reverse();
        for (const name of order) {
          log(`round ${r + 1}: ${name} (${o.settings[name]})`);
          results.get(name)!.push(await trySetting(c, o.settings[name], o.churnSeconds));
        }
      }
    } finally {
      await c.close();
    }
  } finally {
    await cleanupAll();
  }
  console.log(`\nresident memory at ${o.n} nodes after converging, image settings (MiB)\n`);
  console.log(pad([
    ["part", "MiB", "note"],
    ...parts.map((p) => [p.part, p.mib.toFixed(1), p.note ?? ""]),
  ]));
  const keys: [keyof Sample, string, number][] = [
    ["convergenceMs", "conv ms", 0],
    ["startCpuS", "start CPU s", 2],
    ["startPeakMiB", "start peak", 1],
    ["restRssMiB", "RSS rest", 1],
    ["restAnonMiB", "anon rest", 1],
    ["heapTotalMiB", "heap total", 1],
    ["churnCores", "churn cores", 3],
    ["churnLagP99Ms", "lag p99 ms", 1],
    ["churnRssEndMiB", "churn RSS end", 1],
    ["churnPeakMiB", "churn peak", 1],
  ];
  console.log(
    `\nsettings at ${o.n} nodes, mean of ${o.rounds} round(s); churn ${o.churnSeconds} s\n`,
  );
  const means: Record<string, Record<string, number>> = {};
  const rows = [["setting", ...keys.map((k) => k[1]), "DENO_V8_FLAGS"]];
  for (const [name, samples] of results) {
    const m: Record<string, number> = {};
    for (const [k, , digits] of keys) m[k] = round(mean(samples.map((s) => s[k])), digits);
    means[name] = m;
    rows.push([name, ...keys.map(([k, , d]) => m[k].toFixed(d)), o.settings[name]]);
  }
  console.log(pad(rows));
  if (o.out) {
    await Deno.writeTextFile(
      o.out,
      JSON.stringify(
        {
          date: started,
          n: o.n,
          rounds: o.rounds,
          churnSeconds: o.churnSeconds,
          breakdown: parts,
          settings: o.settings,
          means,
          samples: Object.fromEntries(results),
        },
        null,
        2,
      ) + "\n",
    );
  }
  return 0;
}

if (import.meta.main) await runProgram(main);
