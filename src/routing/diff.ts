/**
 * The diff: from desired routes and the kernel's table to the operations that make them
 * agree. Pure. Only routes carrying our protocol are ever changed; a route of another owner
 * to a destination we want is a conflict to report, never something to overwrite (a
 * `route replace` would take it over).
 *
 * @module
 */
import type { KernelRoute, Route, RouteOp } from "./types.ts";

/** A desired route that another owner's route blocks. */
export interface ForeignConflict {
  readonly route: Route;
  readonly foreign: KernelRoute;
}

/** Operations to apply and the conflicts that stopped some routes. */
export interface Diff {
  readonly ops: RouteOp[];
  readonly conflicts: ForeignConflict[];
}

/**
 * Key of a destination in a {@link KernelIndex}: the canonical destination itself, whose
 * text tells the family (only IPv6 has colons). A string the route already holds costs
 * nothing to build and hashes once; the family is spelled out only when it disagrees.
 */
export function routeKey(r: { readonly family: number; readonly dst: string }): string {
  return (r.family === 6) === r.dst.includes(":") ? r.dst : `${r.family} ${r.dst}`;
}

/** The kernel's main table split into our routes and everyone else's, by destination. */
export interface KernelIndex {
  readonly ours: Map<string, KernelRoute[]>;
  readonly foreign: Map<string, KernelRoute>;
}

/** Indexes a read of the kernel's table for {@link diff}. */
export function indexKernel(kernel: readonly KernelRoute[], protocol: number): KernelIndex {
  const ours = new Map<string, KernelRoute[]>();
  const foreign = new Map<string, KernelRoute>();
  for (const r of kernel) {
    const k = routeKey(r);
    if (r.protocol === protocol) {
      const list = ours.get(k);
      if (list) list.push(r);
      else ours.set(k, [r]);
    } else if (!foreign.has(k)) {
      foreign.set(k, r);
    }
  }
  return { ours, foreign };
}

/** Whether our kernel route is exactly `route`: one next hop, the same, a plain unicast. */
function inPlace(mine: KernelRoute, route: Route): boolean {
  return mine.via === route.via && mine.type === undefined && mine.multipath === undefined;
}

/**
 * Compares desired routes with the kernel's main table. `desired` holds at most one route
 * per destination, as `plan` (plan.ts) makes it.
 *
 * @example
 * ```ts
 * const want = [{ family: 4, dst: "10.0.1.0/24", via: "192.168.1.2", node: "b" }] as const;
 * diff(want, indexKernel([], 202)).ops; // [{ op: "replace", route: want[0] }]
 * ```
 */
export function diff(desired: readonly Route[], kernel: KernelIndex): Diff {
  const { ours, foreign } = kernel;
  const ops: RouteOp[] = [];
  const conflicts: ForeignConflict[] = [];
  // Destinations of ours that a desired route names: when that is all of ours, none is
  // stale, and the set of wanted keys (10,000 at 5,000 nodes) need not be built.
  let named = 0;
  for (const route of desired) {
    const k = routeKey(route);
    const mine = ours.get(k);
    if (mine) named++;
    const other = foreign.get(k);
    if (other) conflicts.push({ route, foreign: other });
    if (mine?.length === 1 && inPlace(mine[0], route)) continue;
    if (other && !mine) continue;
    if (mine && mine.length > 1) {
      // Duplicates of ours (another metric): keep one clean route.
      for (const extra of mine) ops.push({ op: "delete", route: extra });
    }
    ops.push({ op: "replace", route });
  }
  if (named < ours.size) {
    const wanted = new Set(desired.map(routeKey));
    for (const [k, list] of ours) {
      if (!wanted.has(k)) { for (const r of list) ops.push({ op: "delete", route: r }); }
    }
  }
  return { ops, conflicts };
}
