/**
 * The diff: from desired routes and the kernel's table to the operations that make them
 * agree. Pure. Only routes carrying our protocol are ever changed; a route of another owner
 * to a destination we want is a conflict to report, never something to overwrite (a
 * `route replace` would take it over).
 *
 * Rule: a replace goes only where every route at the destination is known to be ours. A
 * replace takes the first route at (destination, metric) whoever owns it: in IPv4 a route
 * another owner put before ours (`ip route prepend`), in IPv6 every sibling of a multipath
 * route, another owner's appended hop included. So where a route of ours is not as planned:
 *
 * - a route of another owner at the destination: ours is deleted, each by an exact match
 *   (our protocol, its next hop, the metric read), which the kernel never applies to a route
 *   of another protocol; the conflict is reported, and from then on it is a destination
 *   another owner holds (nothing of ours is added there until that route goes). A route of
 *   ours already as planned is left where it is, the conflict reported: nothing to send.
 * - an IPv6 route of ours read as multipath ({@link mayHoldOthers}): the dump merges
 *   siblings into one route under the first sibling's protocol, and a hop carries no
 *   protocol, so the other hops may be anyone's. Only the first hop is surely ours: it is
 *   deleted alone (an IPv6 delete naming a next hop removes that sibling alone), nothing is
 *   replaced, and the kernel must be read again before that destination is diffed (see
 *   kernel_view.ts): what is left there shows then under its own protocol.
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

/**
 * A route of ours as the index keeps it: as read from the kernel, or the planned route that
 * was applied or found in place, which then stands for it (and costs nothing more).
 */
export type OurRoute = KernelRoute | Route;

/** The kernel's main table split into our routes and everyone else's, by destination. */
export interface KernelIndex {
  readonly protocol: number;
  /** One route per destination, or a list of them (duplicates at other metrics; rare). */
  readonly ours: Map<string, OurRoute | OurRoute[]>;
  readonly foreign: Map<string, KernelRoute>;
}

/** Indexes a read of the kernel's table for {@link diff}. */
export function indexKernel(kernel: readonly KernelRoute[], protocol: number): KernelIndex {
  const ours = new Map<string, OurRoute | OurRoute[]>();
  const foreign = new Map<string, KernelRoute>();
  for (const r of kernel) {
    const k = routeKey(r);
    if (r.protocol === protocol) {
      const at = ours.get(k);
      if (at === undefined) ours.set(k, r);
      else if (Array.isArray(at)) at.push(r);
      else ours.set(k, [at, r]);
    } else if (!foreign.has(k)) {
      foreign.set(k, r);
    }
  }
  return { protocol, ours, foreign };
}

/** A route of ours as a deletion names it: with our protocol, as every deletion must. */
export function asKernelRoute(r: OurRoute, protocol: number): KernelRoute {
  return "protocol" in r ? r : { family: r.family, dst: r.dst, via: r.via, protocol };
}

/**
 * Whether a route of ours, as read, may hold next hops of other owners: an IPv6 multipath
 * route, whose siblings each have their own protocol, of which the dump shows the first.
 * (An IPv4 multipath route is one route, of one protocol.) Deleting it by its first hop
 * leaves the other siblings, of owners unknown until the kernel is read again.
 */
export function mayHoldOthers(r: OurRoute): boolean {
  return r.family === 6 && "protocol" in r && r.multipath === true;
}

/** The metric a route gets from our writes, which name none: the kernel's default. */
const WRITTEN_METRIC = { 4: 0, 6: 1024 } as const;

/**
 * Whether a route of ours, as read, stands at another metric than our writes give: a
 * replace would then add a route beside it, not take its place (written by something
 * else under our protocol, e.g. by hand).
 */
function offMetric(r: OurRoute): boolean {
  return "protocol" in r && (r.metric ?? WRITTEN_METRIC[r.family]) !== WRITTEN_METRIC[r.family];
}

/**
 * Whether our kernel route is exactly `route`: one next hop, the same, a plain unicast, at
 * the metric our writes give.
 */
export function inPlace(mine: OurRoute, route: Route): boolean {
  if (mine === route) return true;
  if (mine.via !== route.via) return false;
  return !("protocol" in mine) ||
    (mine.type === undefined && mine.multipath === undefined && !offMetric(mine));
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
  const out: Diff = { ops: [], conflicts: [] };
  // Destinations of ours that a desired route names: when that is all of ours, none is
  // stale, and the set of wanted keys (10,000 at 5,000 nodes) need not be built.
  let named = 0;
  for (const route of desired) {
    if (diffAt(routeKey(route), route, kernel, out)) named++;
  }
  if (named < kernel.ours.size) {
    const wanted = new Set(desired.map(routeKey));
    for (const key of kernel.ours.keys()) if (!wanted.has(key)) diffAt(key, undefined, kernel, out);
  }
  return out;
}

/**
 * Compares the destinations a change touched with the kernel's table: for each, the route
 * wanted there now, or undefined where none is.
 */
export function diffSome(
  changes: ReadonlyMap<string, { readonly now: Route | undefined }>,
  kernel: KernelIndex,
): Diff {
  const out: Diff = { ops: [], conflicts: [] };
  for (const [key, { now }] of changes) diffAt(key, now, kernel, out);
  return out;
}

/**
 * Adds what one destination needs to `out`; returns whether a route of ours is there. With
 * no route wanted, every route of ours there goes.
 */
function diffAt(
  key: string,
  route: Route | undefined,
  kernel: KernelIndex,
  out: Diff,
): boolean {
  const mine = kernel.ours.get(key);
  const { protocol } = kernel;
  if (route === undefined) {
    if (mine === undefined) return false;
    for (const r of Array.isArray(mine) ? mine : [mine]) {
      out.ops.push({ op: "delete", route: asKernelRoute(r, protocol) });
    }
    return true;
  }
  const other = kernel.foreign.get(key);
  if (other) out.conflicts.push({ route, foreign: other });
  if (mine === undefined) {
    if (!other) out.ops.push({ op: "replace", route });
    return false;
  }
  if (!Array.isArray(mine) && inPlace(mine, route)) return true;
  const all = Array.isArray(mine) ? mine : [mine];
  // Not as planned: a replace would take the first route there, which may not be ours.
  const shared = other !== undefined || all.some(mayHoldOthers);
  // Duplicates of ours, and ours at another metric, go too: one clean route is kept.
  if (shared || all.length > 1 || offMetric(all[0])) {
    for (const r of all) out.ops.push({ op: "delete", route: asKernelRoute(r, protocol) });
  }
  if (!shared) out.ops.push({ op: "replace", route });
  return true;
}
