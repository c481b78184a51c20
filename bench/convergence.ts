/**
 * Figure 1, convergence from start: the daemon's `startDaemon` call until all 2N routes are
 * in the kernel, beside two raw batches of the same 2N routes, each in a fresh namespace: a
 * raw `ip -batch` of `route add` lines (the kernel's floor through iproute2, one request
 * and acknowledgement after another) and a raw rtnetlink batch (the project's netlink table
 * from this process: every message in one send, one acknowledgement each). The paged list
 * of the Nodes (what the informer must read before it can plan) is timed apart with the
 * project's KubeClient and added to the raw batch for the judged ratio.
 *
 * Each rep times them one after the other (raw batches, list, starts), so that a machine
 * whose speed drifts during the run weighs on all of them alike; the figure takes the median
 * of each. With the adapters compared (figure 9), each rep also starts a daemon with
 * `ROUTE_ADAPTER=iproute2`, stopped before the default one starts. The raw batches'
 * namespaces are kept until the end: deleting a namespace of 2N routes leaves the kernel
 * work to free them, which would land on the next start.
 *
 * @module
 */
import { KubeClient } from "../src/kube/client.ts";
import { loadKubeconfig } from "../src/kube/kubeconfig.ts";
import { readsMetadataOnly } from "../src/config.ts";
import {
  ADDRESS_ANNOTATION,
  addressing,
  baselineLines,
  baselineOps,
  type BenchCluster,
  CIDR_ANNOTATION,
  hostNamespace,
  PROTOCOL,
  SELF,
} from "./cluster.ts";
import { type DaemonOptions, DaemonProcess } from "./daemon.ts";
import { type BenchNetns, type Figure, median, round, wallMs } from "./lib.ts";
import { pollUntil } from "../src/devcluster/poll.ts";

/** Times a raw `ip -batch` of the 2N routes in a fresh namespace, which is returned. */
export async function baselineBatch(n: number): Promise<{ ms: number; ns: BenchNetns }> {
  const ns = await hostNamespace();
  try {
    const ms = await ns.batch(baselineLines(n));
    await expectRoutes(ns, 2 * n);
    return { ms, ns };
  } catch (e) {
    await ns.delete();
    throw e;
  }
}

/**
 * Times a raw rtnetlink batch of the 2N routes in a fresh namespace, which is returned. A
 * route added and deleted first loads the C library and compiles the encoder in this
 * process, which a program that only wrote routes would have done once for all.
 */
export async function netlinkBaselineBatch(n: number): Promise<{ ms: number; ns: BenchNetns }> {
  const ns = await hostNamespace();
  try {
    const warm = addressing(1);
    const probe = { family: 4, dst: "198.51.100.0/24", via: warm.addr4, node: "probe" } as const;
    await ns.netlinkApply([{ op: "replace", route: probe }], PROTOCOL);
    await ns.netlinkApply([{ op: "delete", route: { ...probe, protocol: PROTOCOL } }], PROTOCOL);
    const ms = await ns.netlinkApply(baselineOps(n), PROTOCOL);
    await expectRoutes(ns, 2 * n);
    return { ms, ns };
  } catch (e) {
    await ns.delete();
    throw e;
  }
}

async function expectRoutes(ns: BenchNetns, want: number): Promise<void> {
  const count = await ns.countRoutes(PROTOCOL);
  if (count !== want) throw new Error(`baseline: ${count} routes, expected ${want}`);
}

/**
 * A timer of paged lists (500 per page) of every Node with the project's client, in the
 * form the daemon asks for with the bench's configuration (metadata only: both annotations
 * and NODE_NAME are set). One client for all; its first list (the TLS connection) is not
 * counted.
 */
export async function listTimer(
  c: BenchCluster,
): Promise<{ time(): Promise<number>; close(): void }> {
  const metadataOnly = readsMetadataOnly({
    nodeName: SELF,
    cidrAnnotation: CIDR_ANNOTATION,
    addressAnnotation: ADDRESS_ANNOTATION,
  });
  const client = new KubeClient(await loadKubeconfig(c.kubeconfig));
  const time = async () => {
    const t0 = performance.now();
    let cont: string | undefined;
    let items = 0;
    do {
      const page = await client.listNodes({ limit: 500, continue: cont, metadataOnly });
      items += page.items.length;
      cont = page.continue;
    } while (cont);
    if (items !== c.n + 1) throw new Error(`list: ${items} nodes, expected ${c.n + 1}`);
    return performance.now() - t0;
  };
  try {
    await time();
  } catch (e) {
    client.close();
    throw e;
  }
  return { time, close: () => client.close() };
}

/** One start: until 2N routes are seen with `ip route show`, then the daemon keeps running. */
export interface ConvergeRun {
  daemon: DaemonProcess;
  /** startDaemon call → all 2N routes in the kernel (the daemon's ready, checked). */
  totalMs: number;
  /** startDaemon call → the daemon's `ready` (its first reconcile done). */
  readyMs: number;
  /** Process spawned → modules loaded and startDaemon called. */
  bootMs: number;
  /** CPU seconds of the process from its spawn to its ready, `ip` runs included. */
  cpuS: number;
  /** Peak resident size until its ready (VmHWM), MiB. */
  peakMiB: number;
}

/** Deletes every route of ours in the cluster's namespace (the daemon's start from none). */
export async function flushRoutes(c: BenchCluster): Promise<void> {
  for (const fam of ["-4", "-6"]) {
    await c.ns.ip(fam, "route", "flush", "proto", String(PROTOCOL));
  }
}

/** Flushes our routes, starts a daemon and waits for the 2N routes. */
export async function convergeOnce(
  c: BenchCluster,
  logFile: string,
  opts: DaemonOptions = {},
): Promise<ConvergeRun> {
  await flushRoutes(c);
  const want = 2 * c.n;
  const daemon = DaemonProcess.start(c, logFile, opts.env, opts.v8Flags);
  const start = await daemon.at("start");
  // The daemon says ready once its `ip -batch` has exited, so the routes are in the kernel
  // by then; that is checked below. Polling `ip route show` meanwhile would dump a table of
  // up to 2N routes every few ms on a machine of two cores, slowing the batch it times
  // (the baseline batch runs without it).
  const ready = await daemon.at("ready");
  const proc = await daemon.proc();
  let last = 0;
  let seen = ready;
  if ((last = await c.ns.countRoutes(PROTOCOL)) !== want) {
    await pollUntil(
      async () => (last = await c.ns.countRoutes(PROTOCOL)) === want,
      { timeoutMs: 120_000, intervalMs: 5, message: () => `${last} of ${want} routes` },
    );
    seen = wallMs();
  }
  return {
    daemon,
    totalMs: seen - start,
    readyMs: ready - start,
    bootMs: start - daemon.spawnedAt,
    cpuS: proc.cpuSelf + proc.cpuChildren,
    peakMiB: proc.hwmMiB,
  };
}

/** What {@link convergence} measured, for the figures of others. */
export interface ConvergenceResult {
  /** Figure 1. */
  figures: Figure[];
  /** Figure 9's start rows, when the adapters were compared. */
  adapterFigures: Figure[];
  /** The last daemon (the default adapter), running. */
  daemon: DaemonProcess;
  /** The raw batches' namespaces, the last `ip -batch` one last. */
  baselineNs: BenchNetns[];
}

/**
 * Runs the convergence reps, each the two raw batches, a list and a start (two with
 * `adapters`: one with `ROUTE_ADAPTER=iproute2`, then the default); the last daemon is
 * returned running, with the raw batches' namespaces (for the caller to delete, the last
 * one after the repair figure has used its routes).
 */
export async function convergence(
  c: BenchCluster,
  opts: { reps: number; logFile: string; daemon?: DaemonOptions; adapters?: boolean },
): Promise<ConvergenceResult> {
  const d = opts.daemon ?? {};
  const runs: ConvergeRun[] = [];
  const iproute: ConvergeRun[] = [];
  const baseline: number[] = [], netlink: number[] = [], list: number[] = [];
  const baselineNs: BenchNetns[] = [];
  const lists = await listTimer(c);
  try {
    for (let r = 0; r < opts.reps; r++) {
      const nb = await netlinkBaselineBatch(c.n);
      baselineNs.push(nb.ns);
      netlink.push(nb.ms);
      const b = await baselineBatch(c.n);
      baselineNs.push(b.ns);
      baseline.push(b.ms);
      list.push(await lists.time());
      if (opts.adapters) {
        const other = await convergeOnce(c, opts.logFile, {
          ...d,
          env: { ...d.env, ROUTE_ADAPTER: "iproute2" },
        });
        iproute.push(other);
        await other.daemon.stop();
      }
      const run = await convergeOnce(c, opts.logFile, d);
      runs.push(run);
      if (r < opts.reps - 1) await run.daemon.stop();
    }
  } catch (e) {
    for (const ns of baselineNs) await ns.delete();
    throw e;
  } finally {
    lists.close();
  }
  const total = median(runs.map((r) => r.totalMs));
  const listMs = median(list);
  const base = median(baseline);
  const nl = median(netlink);
  const perRun = (xs: ConvergeRun[]) =>
    xs.map((r) => ({
      totalMs: round(r.totalMs),
      readyMs: round(r.readyMs),
      bootMs: round(r.bootMs),
      cpuS: round(r.cpuS),
      peakMiB: round(r.peakMiB),
    }));
  const details = {
    runs: perRun(runs),
    listMs: list.map((x) => round(x)),
    baselineMs: baseline.map((x) => round(x)),
    netlinkBaselineMs: netlink.map((x) => round(x)),
    routes: 2 * c.n,
  };
  const figures: Figure[] = [
    {
      figure: 1,
      name: "convergence-total",
      n: c.n,
      what: "start → 2N routes in the kernel (list included)",
      unit: "ms",
      value: total,
      baseline: base + listMs,
      baselineWhat: "raw ip -batch of the 2N routes + the paged list",
      target: { on: "ratio", max: 1.25 },
      details,
    },
    {
      figure: 1,
      name: "convergence-total-nl",
      n: c.n,
      what: "the same",
      unit: "ms",
      value: total,
      baseline: nl + listMs,
      baselineWhat: "raw netlink batch of the 2N routes + the paged list",
      details: {},
    },
    {
      figure: 1,
      name: "convergence",
      n: c.n,
      what: "start → 2N routes, minus the paged list",
      unit: "ms",
      value: total - listMs,
      baseline: base,
      baselineWhat: "raw ip -batch of the 2N routes",
      details: { listMs: round(listMs) },
    },
    {
      figure: 1,
      name: "list",
      n: c.n,
      what: "paged list (500) of all nodes as the daemon reads them (metadata only), KubeClient",
      unit: "ms",
      value: listMs,
      details: {},
    },
    {
      figure: 1,
      name: "raw-netlink",
      n: c.n,
      what: "raw netlink batch of the 2N routes (one send, an ack each), fresh namespace",
      unit: "ms",
      value: nl,
      baseline: base,
      baselineWhat: "raw ip -batch of the 2N routes",
      details: {},
    },
  ];
  const adapterFigures: Figure[] = opts.adapters
    ? [
      {
        figure: 9,
        name: "adapter-convergence",
        n: c.n,
        what: "netlink: start → 2N routes (list included)",
        unit: "ms",
        value: total,
        baseline: median(iproute.map((r) => r.totalMs)),
        baselineWhat: "the same with ROUTE_ADAPTER=iproute2, by turns",
        details: { iproute2Runs: perRun(iproute) },
      },
      {
        figure: 9,
        name: "adapter-start-cpu",
        n: c.n,
        what: "netlink: CPU seconds from spawn to ready (the ip runs included)",
        unit: "s",
        value: median(runs.map((r) => r.cpuS)),
        baseline: median(iproute.map((r) => r.cpuS)),
        baselineWhat: "the same with ROUTE_ADAPTER=iproute2",
        details: {},
      },
      {
        figure: 9,
        name: "adapter-start-peak",
        n: c.n,
        what: "netlink: peak RSS from spawn to ready (VmHWM)",
        unit: "MiB",
        value: median(runs.map((r) => r.peakMiB)),
        baseline: median(iproute.map((r) => r.peakMiB)),
        baselineWhat: "the same with ROUTE_ADAPTER=iproute2",
        details: {},
      },
    ]
    : [];
  return { daemon: runs[runs.length - 1].daemon, baselineNs, figures, adapterFigures };
}
