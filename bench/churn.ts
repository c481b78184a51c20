/**
 * Figure 3, churn: 100 node updates per second (90 kubelet heartbeats that change no route,
 * 10 address changes that each move one route) for a while. Reports the reconciles run,
 * the daemon's CPU, the lag of the route changes beside the quiet change latency, and its
 * resident size: at the end, sampled every second, and its peak (VmHWM, reset before).
 *
 * @module
 */
import { ADDRESS_ANNOTATION, addressing, type BenchCluster } from "./cluster.ts";
import type { DaemonProcess } from "./daemon.ts";
import {
  type Figure,
  percentile,
  procSample,
  resetPeak,
  round,
  routeLine,
  type RouteMonitor,
  sleep,
  summary,
} from "./lib.ts";

const RATE = 100;
const ROUTE_EVERY = 10;

/** Runs the churn for `seconds`; `quietP99` is the change latency p99 at rest. */
export async function churn(
  c: BenchCluster,
  daemon: DaemonProcess,
  monitor: RouteMonitor,
  seconds: number,
  quietP99: number | undefined,
): Promise<Figure[]> {
  const moved = new Map<number, boolean>();
  const lags: Promise<number>[] = [];
  let timeouts = 0;
  const s0 = await daemon.stats();
  await resetPeak(daemon.pid);
  const p0 = await daemon.proc();
  const self0 = await procSample("self");
  const rss: number[] = [];
  let sampling: Promise<void> = Promise.resolve();
  const sampler = setInterval(() => {
    sampling = sampling.then(async () => {
      rss.push((await daemon.proc()).rssMiB);
    }).catch(() => {});
  }, 1000);
  const t0 = performance.now();
  const total = seconds * RATE;
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (i % ROUTE_EVERY === 0) {
      const k = 1 + ((Math.floor(i / ROUTE_EVERY) * 7919 + 3) % c.n);
      const a = addressing(k);
      const away = !moved.get(k);
      moved.set(k, away);
      const via = away ? a.altAddr4 : a.addr4;
      const seen = monitor.waitFor(routeLine(a.v4, { via }), 5000);
      const w = performance.now();
      c.api.nodes.patch(a.name, "merge", {
        metadata: { annotations: { [ADDRESS_ANNOTATION]: `${via},${a.addr6}` } },
      });
      lags.push(seen.then((t) => t - w, () => {
        timeouts++;
        return 5000;
      }));
    } else {
      const k = 1 + ((i * 31) % c.n);
      c.api.nodes.patch(addressing(k).name, "strategic", {
        status: {
          conditions: [{ type: "Ready", lastHeartbeatTime: new Date().toISOString() }],
        },
      });
    }
  }
  const elapsed = (performance.now() - t0) / 1000;
  clearInterval(sampler);
  await sampling;
  const samples = await Promise.all(lags);
  const s1 = await daemon.stats();
  const p1 = await daemon.proc();
  const self1 = await procSample("self");
  // Put every moved node back, so later figures start from the same cluster.
  for (const [k, away] of moved) {
    if (!away) continue;
    const a = addressing(k);
    c.api.nodes.patch(a.name, "merge", {
      metadata: { annotations: { [ADDRESS_ANNOTATION]: `${a.addr4},${a.addr6}` } },
    });
  }
  const reconciles: Record<string, number> = {};
  for (const [k, v] of Object.entries(s1.reconciles)) reconciles[k] = v - (s0.reconciles[k] ?? 0);
  const runs = s1.durationCount - s0.durationCount;
  const cpu = p1.cpuSelf - p0.cpuSelf + p1.cpuChildren - p0.cpuChildren;
  const details = {
    seconds: round(elapsed),
    updates: total,
    routeChanges: samples.length,
    reconciles,
    reconcileMeanMs: round(((s1.durationSumS - s0.durationSumS) / Math.max(1, runs)) * 1000),
    daemonCpuS: round(cpu),
    daemonCpuOwnS: round(p1.cpuSelf - p0.cpuSelf),
    // The kernel's share: route changes (each walks the IPv4 next-hop records) and the socket.
    daemonCpuSystemS: round(p1.cpuSystem - p0.cpuSystem),
    daemonCpuIpS: round(p1.cpuChildren - p0.cpuChildren),
    daemonMinorFaults: p1.minorFaults - p0.minorFaults,
    daemonRssMiB: round(p1.rssMiB),
    daemonRssBeforeMiB: round(p0.rssMiB),
    apiServerProcessCpuS: round(self1.cpuSelf - self0.cpuSelf),
    lag: summary(samples),
    timeouts,
  };
  return [
    {
      figure: 3,
      name: "churn-cpu",
      n: c.n,
      what: `daemon CPU, ${RATE} updates/s (cores)`,
      unit: "cores",
      value: cpu / elapsed,
      target: { on: "value", max: 0.05 },
      details,
    },
    {
      figure: 3,
      name: "churn-lag",
      n: c.n,
      what: "p99 lag of route changes under churn",
      unit: "ms",
      value: percentile(samples, 99),
      baseline: quietP99,
      baselineWhat: "change latency p99 at rest (figure 2)",
      target: { on: "value", max: 20 },
      details: { reconcilesPerS: round(runs / elapsed, 1) },
    },
    {
      figure: 3,
      name: "churn-rss",
      n: c.n,
      what: "daemon RSS at the end of the churn",
      unit: "MiB",
      value: p1.rssMiB,
      baseline: p0.rssMiB,
      baselineWhat: "its RSS before the churn",
      details: {
        peakMiB: round(p1.hwmMiB),
        sampledMaxMiB: round(Math.max(...rss)),
        sampledMeanMiB: round(rss.reduce((a, b) => a + b, 0) / Math.max(1, rss.length)),
        anonMiB: round(p1.rssAnonMiB),
        fileMiB: round(p1.rssFileMiB),
      },
    },
  ];
}
