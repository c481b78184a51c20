/**
 * Figure 1, convergence from start: the daemon's `startDaemon` call until all 2N routes are
 * in the kernel, beside a raw `ip -batch` of the same 2N `route add` lines in a fresh
 * namespace. The paged list of the Nodes (what the informer must read before it can plan)
 * is timed apart with the project's KubeClient and subtracted for the judged ratio.
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

/** Times a raw `ip -batch` of the 2N routes, each rep in a fresh namespace. */
export async function baselineBatch(
  n: number,
  reps: number,
): Promise<{ times: number[]; ns: BenchNetns }> {
  const lines = baselineLines(n);
  const times: number[] = [];
  let keep: BenchNetns | undefined;
  for (let r = 0; r < reps; r++) {
    const ns = await hostNamespace();
    times.push(await ns.batch(lines));
    const count = await ns.countRoutes(PROTOCOL);
    if (count !== 2 * n) throw new Error(`baseline: ${count} routes, expected ${2 * n}`);
    if (r < reps - 1) await ns.delete();
    else keep = ns;
  }
  return { times, ns: keep! };
}

/**
 * Times a paged list (500 per page) of every Node with the project's client, in the form
 * the daemon asks for with the bench's configuration (metadata only: both annotations and
 * NODE_NAME are set).
 */
export async function listTimes(c: BenchCluster, reps: number): Promise<number[]> {
  const metadataOnly = readsMetadataOnly({
    nodeName: SELF,
    cidrAnnotation: CIDR_ANNOTATION,
    addressAnnotation: ADDRESS_ANNOTATION,
  });
  const client = new KubeClient(await loadKubeconfig(c.kubeconfig));
  const times: number[] = [];
  try {
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      let cont: string | undefined;
      let items = 0;
      do {
        const page = await client.listNodes({ limit: 500, continue: cont, metadataOnly });
        items += page.items.length;
        cont = page.continue;
      } while (cont);
      times.push(performance.now() - t0);
      if (items !== c.n + 1) throw new Error(`list: ${items} nodes, expected ${c.n + 1}`);
    }
  } finally {
    client.close();
  }
  return times;
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

/** Runs the convergence reps; the last daemon is returned running. */
export async function convergence(
  c: BenchCluster,
  opts: { reps: number; logFile: string; baseline: number[]; list: number[]; v8Flags?: string },
): Promise<{ figures: Figure[]; daemon: DaemonProcess }> {
  const runs: ConvergeRun[] = [];
  for (let r = 0; r < opts.reps; r++) {
    const run = await convergeOnce(c, opts.logFile, opts.v8Flags);
    runs.push(run);
    if (r < opts.reps - 1) await run.daemon.stop();
  }
  const total = median(runs.map((r) => r.totalMs));
  const list = median(opts.list);
  const base = median(opts.baseline);
  const details = {
    runs: runs.map((r) => ({
      totalMs: round(r.totalMs),
      readyMs: round(r.readyMs),
      bootMs: round(r.bootMs),
    })),
    listMs: opts.list.map((x) => round(x)),
    baselineMs: opts.baseline.map((x) => round(x)),
    routes: 2 * c.n,
  };
  return {
    daemon: runs[runs.length - 1].daemon,
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
        value: total - list,
        baseline: base,
        baselineWhat: "raw ip -batch of the 2N routes",
        target: { on: "ratio", max: 1.25 },
        details: { listMs: round(list) },
      },
      {
        figure: 1,
        name: "list",
        n: c.n,
        what: "paged list (500) of all nodes as the daemon reads them (metadata only), KubeClient",
        unit: "ms",
        value: list,
        details: {},
      },
    ],
  };
}
