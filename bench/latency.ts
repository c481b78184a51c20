/**
 * Figure 2, change latency: 500 changes one at a time (a node's CIDR annotation, its
 * address annotation, the node deleted, the node added back), each from the API write (a
 * call on the embedded server's store) until the kernel's change reaches `ip monitor`; at
 * rest, and in the start window: the same changes made from a daemon's start for 10 s.
 *
 * @module
 */
import {
  ADDRESS_ANNOTATION,
  addressing,
  type BenchCluster,
  benchNode,
  CIDR_ANNOTATION,
} from "./cluster.ts";
import { type DaemonOptions, DaemonProcess } from "./daemon.ts";
import { flushRoutes } from "./convergence.ts";
import {
  type Figure,
  percentile,
  round,
  routeLine,
  type RouteMonitor,
  sleep,
  summary,
} from "./lib.ts";

/** The kinds of change, in the order they are applied to one node. */
export const KINDS = ["cidr", "address", "delete", "add"] as const;
type Kind = typeof KINDS[number];

const TIMEOUT_MS = 5000;

/** Applies change `kind` to node `k`; returns the kernel lines that prove it landed. */
function change(c: BenchCluster, k: number, kind: Kind): ((line: string) => boolean)[] {
  const a = addressing(k);
  const store = c.api.nodes;
  switch (kind) {
    case "cidr":
      store.patch(a.name, "merge", {
        metadata: { annotations: { [CIDR_ANNOTATION]: `${a.altV4},${a.v6}` } },
      });
      return [routeLine(a.altV4, { via: a.addr4 })];
    case "address":
      store.patch(a.name, "merge", {
        metadata: { annotations: { [ADDRESS_ANNOTATION]: `${a.altAddr4},${a.addr6}` } },
      });
      return [routeLine(a.altV4, { via: a.altAddr4 })];
    case "delete":
      store.delete(a.name);
      return [routeLine(a.altV4, { deleted: true }), routeLine(a.v6, { deleted: true })];
    case "add":
      store.create(benchNode(k));
      return [routeLine(a.v4, { via: a.addr4 }), routeLine(a.v6, { via: a.addr6 })];
  }
}

/**
 * Makes change `kind` to node `k` and waits until the kernel shows it; the ms it took, or
 * undefined after {@link TIMEOUT_MS}.
 */
async function timedChange(
  c: BenchCluster,
  monitor: RouteMonitor,
  k: number,
  kind: Kind,
): Promise<number | undefined> {
  // Wait registration first, then the write: no line can be missed.
  const pending: Promise<number>[] = [];
  const t0 = performance.now();
  for (const match of change(c, k, kind)) pending.push(monitor.waitFor(match, TIMEOUT_MS));
  try {
    return Math.max(...await Promise.all(pending)) - t0;
  } catch {
    return undefined;
  }
}

/** The node the `i`-th change of a sequence applies to (four changes each, in turn). */
const nodeOf = (c: BenchCluster, i: number) => 1 + ((Math.floor(i / KINDS.length) * 7919) % c.n);

/** Runs `count` changes; every node touched ends as it started. */
export async function changeLatency(
  c: BenchCluster,
  daemon: DaemonProcess,
  monitor: RouteMonitor,
  count: number,
): Promise<{ figure: Figure; samples: number[] }> {
  const s0 = await daemon.stats();
  const all: number[] = [];
  const byKind = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
  let timeouts = 0;
  for (let i = 0; i < count; i++) {
    const kind = KINDS[i % KINDS.length];
    let ms = await timedChange(c, monitor, nodeOf(c, i), kind);
    if (ms === undefined) {
      timeouts++;
      ms = TIMEOUT_MS;
    }
    all.push(ms);
    byKind.get(kind)!.push(ms);
    // Let the reconcile that made the change finish before the next write.
    await sleep(20);
  }
  const s1 = await daemon.stats();
  const reconciles: Record<string, number> = {};
  for (const [k, v] of Object.entries(s1.reconciles)) reconciles[k] = v - (s0.reconciles[k] ?? 0);
  const runs = s1.durationCount - s0.durationCount;
  const reconcileMeanMs = round(((s1.durationSumS - s0.durationSumS) / Math.max(1, runs)) * 1000);
  const kinds: Record<string, unknown> = {};
  for (const [k, xs] of byKind) kinds[k] = summary(xs);
  return {
    samples: all,
    figure: {
      figure: 2,
      name: "change-latency",
      n: c.n,
      what: `p99 of ${count} changes, API write → kernel`,
      unit: "ms",
      value: percentile(all, 99),
      target: { on: "value", max: 10 },
      details: { ...summary(all), timeouts, byKind: kinds, reconciles, reconcileMeanMs },
    },
  };
}

/**
 * The start window: our routes flushed, a daemon started (`opts.daemon`), and from its
 * `startDaemon` call for `seconds`, the changes of figure 2 one at a time, each timed from
 * its write to the kernel. The first write comes before the daemon has listed the nodes, so
 * it waits for the whole start; the rest fall on the end of the start (the first batch, the
 * full read after the monitor's subscription, the memory given back) and what follows. The
 * node being changed when the window ends is put back, untimed. `quietP99` (figure 2 at
 * rest) is the baseline. Returns the daemon running.
 */
export async function startWindow(
  c: BenchCluster,
  monitor: RouteMonitor,
  opts: { seconds: number; logFile: string; daemon?: DaemonOptions; quietP99?: number },
): Promise<{ figures: Figure[]; daemon: DaemonProcess }> {
  await flushRoutes(c);
  // The flush's lines must be read before the window's waits are registered.
  await monitor.sync(c.ns);
  const d = opts.daemon ?? {};
  const daemon = DaemonProcess.start(c, opts.logFile, d.env, d.v8Flags);
  const samples: { at: number; ms: number }[] = [];
  let timeouts = 0;
  let readyAt: number | undefined;
  daemon.at("ready").then((t) => readyAt = t, () => {});
  const start = await daemon.at("start");
  // The daemon's clock is the wall clock; the monitor's times are this process's.
  const startPerf = start - performance.timeOrigin;
  const end = startPerf + opts.seconds * 1000;
  let i = 0;
  for (; performance.now() < end || i % KINDS.length !== 0; i++) {
    const counted = performance.now() < end;
    const at = performance.now() - startPerf;
    const ms = await timedChange(c, monitor, nodeOf(c, i), KINDS[i % KINDS.length]);
    if (counted) {
      if (ms === undefined) timeouts++;
      samples.push({ at, ms: ms ?? TIMEOUT_MS });
    }
    await sleep(20);
  }
  const ready = readyAt === undefined ? undefined : readyAt - start;
  const all = samples.map((s) => s.ms);
  const afterReady = samples.filter((s) => ready !== undefined && s.at >= ready).map((s) => s.ms);
  const worst = [...samples].sort((a, b) => b.ms - a.ms).slice(0, 6)
    .map((s) => ({ atMs: round(s.at), ms: round(s.ms) }));
  return {
    daemon,
    figures: [
      {
        figure: 2,
        name: "start-latency",
        n: c.n,
        what: `p99 of changes made in the ${opts.seconds} s from the start, API write → kernel`,
        unit: "ms",
        value: percentile(all, 99),
        baseline: opts.quietP99,
        baselineWhat: "change latency p99 at rest",
        target: { on: "value", max: 20 },
        details: {
          ...summary(all),
          timeouts,
          readyMs: ready === undefined ? undefined : round(ready),
          beforeReady: samples.length - afterReady.length,
          firstMs: round(samples[0]?.ms ?? NaN),
          worst,
        },
      },
      {
        figure: 2,
        name: "start-latency-after-ready",
        n: c.n,
        what: "the same, the writes made once the first reconcile was done",
        unit: "ms",
        value: percentile(afterReady, 99),
        baseline: opts.quietP99,
        baselineWhat: "change latency p99 at rest",
        details: summary(afterReady),
      },
    ],
  };
}
