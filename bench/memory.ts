/**
 * Figure 5, memory and idle: the daemon's resident memory after converging (once its start
 * is over) and its peak during the start, and the CPU it uses at rest, beside an idle empty
 * Deno program measured over the same window; then the heap it keeps (after a full
 * collection), and from two cluster sizes the heap per node.
 *
 * @module
 */
import { type BenchCluster, benchNode } from "./cluster.ts";
import type { DaemonProcess } from "./daemon.ts";
import { metadataBytes } from "../src/devcluster/apiserver/views.ts";
import { deferCleanup, type Figure, memoryMap, procSample, round, sleep } from "./lib.ts";

const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** Starts an idle Deno program (a timer and nothing else) as the baseline process. */
async function idleProgram(): Promise<{ pid: number; stop(): Promise<void> }> {
  const file = await Deno.makeTempFile({ prefix: "xcluster-bench-idle-", suffix: ".ts" });
  await Deno.writeTextFile(file, "setInterval(() => {}, 1 << 30);\n");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", "--no-lock", "--config", CONFIG, file],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const stop = deferCleanup(`idle program ${child.pid}`, async () => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await child.status;
    await Deno.remove(file).catch(() => {});
  });
  // Let it finish starting before it is sampled.
  await sleep(1000);
  return { pid: child.pid, stop };
}

/** RSS after converging, and (when `restSeconds` > 0) CPU over a rest period. */
export async function memoryAndIdle(
  c: BenchCluster,
  daemon: DaemonProcess,
  restSeconds: number,
): Promise<Figure[]> {
  const idle = await idleProgram();
  try {
    // The start ends with a full read of the kernel a second after the first batch (the
    // route monitor's), then the daemon compacts its heap: sampled after both.
    await daemon.startEnded();
    const d0 = await daemon.proc();
    const b0 = await procSample(idle.pid);
    const s0 = await daemon.stats();
    const map = await memoryMap(daemon.pid);
    const mem = s0.memory;
    const mib = (bytes: number) => round(bytes / (1 << 20));
    const figures: Figure[] = [{
      figure: 5,
      name: "rss",
      n: c.n,
      what: "daemon RSS after converging",
      unit: "MiB",
      value: d0.rssMiB,
      baseline: b0.rssMiB,
      baselineWhat: "idle empty Deno program",
      target: { on: "value", max: 64 },
      details: {
        peakMiB: round(d0.hwmMiB),
        anonMiB: round(d0.rssAnonMiB),
        fileMiB: round(d0.rssFileMiB),
        baselineAnonMiB: round(b0.rssAnonMiB),
        baselineFileMiB: round(b0.rssFileMiB),
        heapUsedMiB: mib(mem.heapUsed),
        heapTotalMiB: mib(mem.heapTotal),
        externalMiB: mib(mem.external),
        map,
      },
    }, {
      // The resident size above is mostly pages mapped from the runtime's binary, shared and
      // clean; this is the part that is the process's alone.
      figure: 5,
      name: "rss-anon",
      n: c.n,
      what: "of it anonymous: heaps and stacks, not mapped from files",
      unit: "MiB",
      value: d0.rssAnonMiB,
      baseline: b0.rssAnonMiB,
      baselineWhat: "idle empty Deno program",
      details: { fileMiB: round(d0.rssFileMiB), baselineFileMiB: round(b0.rssFileMiB) },
    }, {
      figure: 5,
      name: "rss-peak",
      n: c.n,
      what: "daemon peak RSS during the start (VmHWM)",
      unit: "MiB",
      value: d0.hwmMiB,
      baseline: d0.rssMiB,
      baselineWhat: "its RSS after converging",
      target: { on: "ratio", max: 1.25 },
      details: { baselinePeakMiB: round(b0.hwmMiB) },
    }];
    // Two windows: the first holds V8's one-time collection of what the first list left
    // behind (its memory reducer runs once the allocation rate drops); the second is the
    // daemon at rest for good, which the target is about.
    let from = { daemon: d0, baseline: b0, stats: s0 };
    for (const name of restSeconds > 0 ? ["idle-cpu-first", "idle-cpu"] : []) {
      await sleep(restSeconds * 1000);
      const to = {
        daemon: await daemon.proc(),
        baseline: await procSample(idle.pid),
        stats: await daemon.stats(),
      };
      const own = to.daemon.cpuSelf - from.daemon.cpuSelf;
      const ip = to.daemon.cpuChildren - from.daemon.cpuChildren;
      const reconciles: Record<string, number> = {};
      for (const [k, v] of Object.entries(to.stats.reconciles)) {
        reconciles[k] = v - (from.stats.reconciles[k] ?? 0);
      }
      const first = name === "idle-cpu-first";
      figures.push({
        figure: 5,
        name,
        n: c.n,
        what: first
          ? `daemon CPU seconds in the first ${restSeconds} s after converging`
          : `daemon CPU seconds in ${restSeconds} s at rest (the ${restSeconds} s after that)`,
        unit: "s",
        value: own + ip,
        baseline: to.baseline.cpuSelf - from.baseline.cpuSelf,
        baselineWhat: "idle empty Deno program, same window",
        target: first ? undefined : { on: "value", max: 0.1 },
        details: {
          ownS: round(own),
          ipS: round(ip),
          reconcilesInWindow: reconciles,
          rssAfterMiB: round(to.daemon.rssMiB),
          heapUsedAfterMiB: mib(to.stats.memory.heapUsed),
          clockTickS: 0.01,
        },
      });
      from = to;
    }
    // Last: a full collection leaves only what the daemon keeps, the figure its code
    // controls (the resident size above is mostly the runtime's and varies run to run).
    const kept = await daemon.statsAfterGc();
    figures.push({
      figure: 5,
      name: "heap",
      n: c.n,
      what: "daemon heap used after a full collection",
      unit: "MiB",
      value: kept.memory.heapUsed / (1 << 20),
      details: { heapTotalMiB: mib(kept.memory.heapTotal), externalMiB: mib(kept.memory.external) },
    });
    return figures;
  } finally {
    await idle.stop();
  }
}

/**
 * The heap each node costs, from the `heap` figures of two cluster sizes of one run: what
 * the daemon keeps per node (projection, check, plan, routes, kernel view) beside the bytes
 * of that node's metadata as the list brings it. Undefined with fewer than two sizes.
 */
export function heapPerNode(figures: readonly Figure[]): Figure | undefined {
  const heap = figures.filter((f) => f.name === "heap" && f.n !== undefined)
    .sort((a, b) => a.n! - b.n!);
  if (heap.length < 2) return undefined;
  const lo = heap[0], hi = heap[heap.length - 1];
  // What the embedded API server sends for each node of a metadata-only list.
  const sample = Array.from(
    { length: 100 },
    (_, i) => metadataBytes(benchNode(1 + i * 37).metadata),
  );
  const wire = sample.reduce((sum, bytes) => sum + bytes.length, 0) / sample.length;
  return {
    figure: 5,
    name: "heap-per-node",
    what: `daemon heap per node, from the heap at ${lo.n} and ${hi.n} nodes`,
    unit: "B",
    value: ((hi.value - lo.value) * (1 << 20)) / (hi.n! - lo.n!),
    baseline: wire,
    baselineWhat: "the node's metadata as listed (PartialObjectMetadata bytes)",
    target: { on: "value", max: 1024 },
    details: { heapMiB: Object.fromEntries(heap.map((f) => [f.n, round(f.value)])) },
  };
}
