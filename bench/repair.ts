/**
 * Figure 4, repair: 100 of our routes deleted by hand with one `ip -batch`; the time until
 * `ip monitor` has shown every one of them added again. Baseline: a raw `ip -batch` that
 * adds the same 100 routes back in the baseline namespace (same table size).
 *
 * @module
 */
import { addressing, type BenchCluster, PROTOCOL } from "./cluster.ts";
import {
  type BenchNetns,
  type Figure,
  median,
  pollUntil,
  round,
  routeLine,
  type RouteMonitor,
} from "./lib.ts";

/** The 100 routes: both families of 50 nodes spread over the cluster. */
function victims(n: number): { dst: string; via: string }[] {
  const out: { dst: string; via: string }[] = [];
  for (let j = 0; j < 50; j++) {
    const a = addressing(1 + Math.floor((j * n) / 50));
    out.push({ dst: a.v4, via: a.addr4 }, { dst: a.v6, via: a.addr6 });
  }
  return out;
}

/** Runs `reps` deletions of 100 routes and times their return. */
export async function repair(
  c: BenchCluster,
  monitor: RouteMonitor,
  baselineNs: BenchNetns,
  reps: number,
): Promise<Figure> {
  const routes = victims(c.n);
  const del = routes.map((r) => `route del ${r.dst} via ${r.via} proto ${PROTOCOL}`);
  const add = routes.map((r) => `route add ${r.dst} via ${r.via} proto ${PROTOCOL}`);
  const times: number[] = [];
  const base: number[] = [];
  for (let r = 0; r < reps; r++) {
    const back = routes.map((x) => monitor.waitFor(routeLine(x.dst, { via: x.via }), 10_000));
    const t0 = performance.now();
    await c.ns.batch(del);
    const ts = await Promise.all(back);
    times.push(Math.max(...ts) - t0);
    await pollUntil(
      async () => (await c.ns.countRoutes(PROTOCOL)) === 2 * c.n,
      10_000,
      () => "routes after repair",
    );

    await baselineNs.batch(del);
    base.push(await baselineNs.batch(add));
  }
  return {
    figure: 4,
    name: "repair",
    n: c.n,
    what: "100 routes deleted → all back (median of reps)",
    unit: "ms",
    value: median(times),
    baseline: median(base),
    baselineWhat: "raw ip -batch adding the 100 back",
    target: { on: "value", max: 1000 },
    details: { runsMs: times.map((x) => round(x)), maxMs: round(Math.max(...times)) },
  };
}
