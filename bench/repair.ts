/**
 * Figure 4, repair: 100 of our routes deleted by hand with one `ip -batch`; the time until
 * `ip monitor` has shown every one of them added again. Baselines, in a namespace of the
 * same table size: a raw `ip -batch` adding the same 100 routes back, and the same through
 * a raw rtnetlink batch.
 *
 * @module
 */
import { addressing, type BenchCluster, PROTOCOL } from "./cluster.ts";
import type { RouteOp } from "../src/routing/types.ts";
import { pollUntil } from "../src/devcluster/poll.ts";
import {
  type BenchNetns,
  type Figure,
  median,
  round,
  routeLine,
  type RouteMonitor,
} from "./lib.ts";

/** One of the 100 routes, as both kinds of raw batch need it. */
interface Victim {
  family: 4 | 6;
  dst: string;
  via: string;
  node: string;
}

/** The 100 routes: both families of 50 nodes spread over the cluster. */
function victims(n: number): Victim[] {
  const out: Victim[] = [];
  for (let j = 0; j < 50; j++) {
    const a = addressing(1 + Math.floor((j * n) / 50));
    out.push(
      { family: 4, dst: a.v4, via: a.addr4, node: a.name },
      { family: 6, dst: a.v6, via: a.addr6, node: a.name },
    );
  }
  return out;
}

const delLines = (routes: Victim[]) =>
  routes.map((r) => `route del ${r.dst} via ${r.via} proto ${PROTOCOL}`);

/**
 * Deletes the 100 routes `reps` times under the running daemon and times their return
 * (ms, one per rep).
 */
export async function repairTimes(
  c: BenchCluster,
  monitor: RouteMonitor,
  reps: number,
): Promise<number[]> {
  const routes = victims(c.n);
  const del = delLines(routes);
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const back = routes.map((x) => monitor.waitFor(routeLine(x.dst, { via: x.via }), 10_000));
    const t0 = performance.now();
    await c.ns.batch(del);
    const ts = await Promise.all(back);
    times.push(Math.max(...ts) - t0);
    await pollUntil(
      async () => (await c.ns.countRoutes(PROTOCOL)) === 2 * c.n,
      { timeoutMs: 10_000, intervalMs: 5, message: "routes after repair" },
    );
  }
  return times;
}

/**
 * Runs `reps` deletions of 100 routes and times their return, each followed by the two raw
 * baselines in `baselineNs` (which holds the 2N routes).
 */
export async function repair(
  c: BenchCluster,
  monitor: RouteMonitor,
  baselineNs: BenchNetns,
  reps: number,
): Promise<{ figures: Figure[]; ms: number }> {
  const routes = victims(c.n);
  const del = delLines(routes);
  const add = routes.map((r) => `route add ${r.dst} via ${r.via} proto ${PROTOCOL}`);
  const nlDel: RouteOp[] = routes.map((route) => ({
    op: "delete",
    route: { ...route, protocol: PROTOCOL },
  }));
  const nlAdd: RouteOp[] = routes.map((route) => ({ op: "replace", route }));
  const times: number[] = [];
  const base: number[] = [];
  const nl: number[] = [];
  for (let r = 0; r < reps; r++) {
    times.push(...await repairTimes(c, monitor, 1));
    await baselineNs.batch(del);
    base.push(await baselineNs.batch(add));
    await baselineNs.netlinkApply(nlDel, PROTOCOL);
    nl.push(await baselineNs.netlinkApply(nlAdd, PROTOCOL));
  }
  const ms = median(times);
  return {
    ms,
    figures: [
      {
        figure: 4,
        name: "repair",
        n: c.n,
        what: "100 routes deleted → all back (median of reps)",
        unit: "ms",
        value: ms,
        baseline: median(base),
        baselineWhat: "raw ip -batch adding the 100 back",
        target: { on: "ratio", max: 3 },
        details: {
          runsMs: times.map((x) => round(x)),
          maxMs: round(Math.max(...times)),
          baselineMs: base.map((x) => round(x)),
        },
      },
      {
        figure: 4,
        name: "repair-nl",
        n: c.n,
        what: "the same",
        unit: "ms",
        value: ms,
        baseline: median(nl),
        baselineWhat: "raw netlink batch adding the 100 back",
        details: { baselineMs: nl.map((x) => round(x, 3)) },
      },
    ],
  };
}
