/**
 * Figure 1, convergence from start: the daemon's `startDaemon` call until all 2N routes are
 * in the kernel, beside a raw `ip -batch` of the same 2N `route add` lines in a fresh
 * namespace. The paged list of the Nodes (what the informer must read before it can plan)
 * is timed apart with the project's KubeClient and subtracted for the judged ratio.
 *
 * Each rep times the three one after the other (raw batch, list, start), so that a machine
 * whose speed drifts during the run weighs on all of them alike; the figure takes the median
 * of each. The raw batches' namespaces are kept until the end: deleting a namespace of 2N
 * routes leaves the kernel work to free them, which would land on the next start.
 *
 * @module
 */
import { KubeClient } from "../src/kube/client.ts";
import { loadKubeconfig } from "../src/kube/kubeconfig.ts";
import { readsMetadataOnly } from "../src/config.ts";
import {
  ADDRESS_ANNOTATION,
  baselineLines,
  type BenchCluster,
  CIDR_ANNOTATION,
  hostNamespace,
  PROTOCOL,
  SELF,
} from "./cluster.ts";
import { DaemonProcess } from "./daemon.ts";
import { type BenchNetns, type Figure, median, pollUntil, round, wallMs } from "./lib.ts";

/** Times a raw `ip -batch` of the 2N routes in a fresh namespace, which is returned. */
export async function baselineBatch(n: number): Promise<{ ms: number; ns: BenchNetns }> {
  const ns = await hostNamespace();
  const ms = await ns.batch(baselineLines(n));
  const count = await ns.countRoutes(PROTOCOL);
  if (count !== 2 * n) throw new Error(`baseline: ${count} routes, expected ${2 * n}`);
  return { ms, ns };
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
}

/** Flushes our routes, starts a daemon and waits for the 2N routes. */
export async function convergeOnce(
  c: BenchCluster,
  logFile: string,
  v8Flags?: string,
): Promise<ConvergeRun> {
  for (const fam of ["-4", "-6"]) {
    await c.ns.ip(fam, "route", "flush", "proto", String(PROTOCOL));
  }
  const want = 2 * c.n;
  const daemon = DaemonProcess.start(c, logFile, {}, v8Flags);
  const start = await daemon.at("start");
  // The daemon says ready once its `ip -batch` has exited, so the routes are in the kernel
  // by then; that is checked below. Polling `ip route show` meanwhile would dump a table of
  // up to 2N routes every few ms on a machine of two cores, slowing the batch it times
  // (the baseline batch runs without it).
  const ready = await daemon.at("ready");
  let last = 0;
  let seen = ready;
  if ((last = await c.ns.countRoutes(PROTOCOL)) !== want) {
    await pollUntil(
      async () => (last = await c.ns.countRoutes(PROTOCOL)) === want,
      120_000,
      () => `${last} of ${want} routes`,
    );
    seen = wallMs();
  }
  return {
    daemon,
    totalMs: seen - start,
    readyMs: ready - start,
    bootMs: start - daemon.spawnedAt,
  };
}

/**
 * Runs the convergence reps, each a raw batch, a list and a start; the last daemon is
 * returned running, with the raw batches' namespaces (for the caller to delete, the last
 * one after the repair figure has used its routes).
 */
export async function convergence(
  c: BenchCluster,
  opts: { reps: number; logFile: string; v8Flags?: string },
): Promise<{ figures: Figure[]; daemon: DaemonProcess; baselineNs: BenchNetns[] }> {
  const runs: ConvergeRun[] = [];
  const baseline: number[] = [], list: number[] = [];
  const baselineNs: BenchNetns[] = [];
  const lists = await listTimer(c);
  try {
    for (let r = 0; r < opts.reps; r++) {
      const b = await baselineBatch(c.n);
      baselineNs.push(b.ns);
      baseline.push(b.ms);
      list.push(await lists.time());
      const run = await convergeOnce(c, opts.logFile, opts.v8Flags);
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
  const details = {
    runs: runs.map((r) => ({
      totalMs: round(r.totalMs),
      readyMs: round(r.readyMs),
      bootMs: round(r.bootMs),
    })),
    listMs: list.map((x) => round(x)),
    baselineMs: baseline.map((x) => round(x)),
    routes: 2 * c.n,
  };
  return {
    daemon: runs[runs.length - 1].daemon,
    baselineNs,
    figures: [
      {
        figure: 1,
        name: "convergence-total",
        n: c.n,
        what: "start → 2N routes in the kernel (list included)",
        unit: "ms",
        value: total,
        baseline: base,
        baselineWhat: "raw ip -batch of the 2N routes",
        details,
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
        target: { on: "ratio", max: 1.25 },
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
    ],
  };
}
