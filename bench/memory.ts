/**
 * Figure 5, memory and idle: the daemon's resident memory after converging, and the CPU it
 * uses at rest, beside an idle empty Deno program measured over the same window.
 *
 * @module
 */
import type { BenchCluster } from "./cluster.ts";
import type { DaemonProcess } from "./daemon.ts";
import { deferCleanup, type Figure, procSample, round, sleep } from "./lib.ts";

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
    const d0 = await daemon.proc();
    const b0 = await procSample(idle.pid);
    const mem = (await daemon.stats()).memory;
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
        heapUsedMiB: mib(mem.heapUsed),
        heapTotalMiB: mib(mem.heapTotal),
        externalMiB: mib(mem.external),
      },
    }];
    if (restSeconds > 0) {
      const s0 = await daemon.stats();
      await sleep(restSeconds * 1000);
      const d1 = await daemon.proc();
      const b1 = await procSample(idle.pid);
      const s1 = await daemon.stats();
      const cpu = d1.cpuSelf - d0.cpuSelf + d1.cpuChildren - d0.cpuChildren;
      const base = b1.cpuSelf - b0.cpuSelf;
      const reconciles: Record<string, number> = {};
      for (const [k, v] of Object.entries(s1.reconciles)) {
        reconciles[k] = v - (s0.reconciles[k] ?? 0);
      }
      figures.push({
        figure: 5,
        name: "idle-cpu",
        n: c.n,
        what: `daemon CPU seconds in ${restSeconds} s at rest`,
        unit: "s",
        value: cpu,
        baseline: base,
        baselineWhat: "idle empty Deno program, same window",
        target: { on: "value", max: 0.1 },
        details: {
          ownS: round(d1.cpuSelf - d0.cpuSelf),
          ipS: round(d1.cpuChildren - d0.cpuChildren),
          reconcilesInWindow: reconciles,
          rssAfterMiB: round(d1.rssMiB),
          clockTickS: 0.01,
        },
      });
    }
    return figures;
  } finally {
    await idle.stop();
  }
}
