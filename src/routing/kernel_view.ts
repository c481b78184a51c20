/**
 * What the reconciler knows of the kernel between two full reads: the routes as last read,
 * updated with the operations that succeeded since, and the monitor's echoes of our own
 * deletions that are still to come. It also holds the route-event rule: which kernel events
 * call for a full reconcile.
 *
 * @module
 */
import { indexKernel, inPlace, type KernelIndex, type OurRoute, routeKey } from "./diff.ts";
import type { Plan } from "./plan.ts";
import type { KernelRoute, Route, RouteOp } from "./types.ts";

/** What an applied operation did to a destination, as a log line names it. */
export type Change = "route added" | "route replaced" | "route deleted";

/** The reconciler's view of the kernel's routes. */
export class KernelView {
  /** Undefined until the first read. */
  index: KernelIndex | undefined;
  /** Destinations we deleted ourselves, whose deletion the route monitor will echo. */
  readonly #echoes = new Map<string, number>();

  constructor(readonly protocol: number) {}

  /** Starts over from a full read. */
  read(routes: readonly KernelRoute[]): KernelIndex {
    this.#echoes.clear();
    return this.index = indexKernel(routes, this.protocol);
  }

  /** Counts (+1) or uncounts (-1) the monitor echoes expected for deletions of ours. */
  expectEchoes(ops: readonly RouteOp[], delta: 1 | -1): void {
    for (const op of ops) {
      if (op.op !== "delete") continue;
      const key = routeKey(op.route);
      const n = (this.#echoes.get(key) ?? 0) + delta;
      if (n > 0) this.#echoes.set(key, n);
      else this.#echoes.delete(key);
    }
  }

  /**
   * Puts the operations that were not refused into the index (a refused one changed nothing,
   * and is tried again next time); `onChange` hears what each did. A refused deletion's echo
   * will not come.
   */
  applied(
    ops: readonly RouteOp[],
    refused: ReadonlySet<RouteOp>,
    onChange?: (change: Change, op: RouteOp) => void,
  ): void {
    const ours = this.index!.ours;
    for (const op of ops) {
      const key = routeKey(op.route);
      if (refused.has(op)) {
        this.expectEchoes([op], -1);
        continue;
      }
      const at = ours.get(key);
      if (op.op === "delete") {
        onChange?.("route deleted", op);
        // A deletion names the route as the index holds it, or a copy of a planned one.
        const gone = (r: OurRoute) =>
          r === op.route || !("protocol" in r) && r.via === op.route.via;
        if (Array.isArray(at)) {
          const left = at.filter((r) => !gone(r));
          if (left.length === 0) ours.delete(key);
          else ours.set(key, left.length === 1 ? left[0] : left);
        } else if (at !== undefined && gone(at)) {
          ours.delete(key);
        }
      } else {
        onChange?.(at !== undefined ? "route replaced" : "route added", op);
        ours.set(key, op.route);
      }
    }
  }

  /**
   * After a full read: lets each desired route found in place stand for the kernel's copy,
   * so that the copies read (10,000 routes at 5,000 nodes, and their texts) are not kept.
   */
  adopt(desired: readonly Route[]): void {
    const before = this.index!;
    // A new map: one edited in place would keep the read keys' texts and double in size.
    const ours = new Map<string, OurRoute | OurRoute[]>();
    for (const route of desired) {
      const key = routeKey(route);
      const at = before.ours.get(key);
      if (at === undefined) continue;
      ours.set(key, !Array.isArray(at) && inPlace(at, route) ? route : at);
    }
    if (ours.size < before.ours.size) {
      for (const [key, at] of before.ours) if (!ours.has(key)) ours.set(key, at);
    }
    this.index = { ...before, ours };
  }

  /**
   * The route-event rule: what a kernel event calls for. Route events are weighed by
   * destination:
   *
   * - a route of ours added: nothing (our own write);
   * - a route of ours deleted: nothing when we deleted it (its echo, counted off); else it
   *   is taken out of this view and `"lost"` says so, for a reconcile that puts back what
   *   is planned there, with no full read; when this view held several routes there, or
   *   none, `"full"`;
   * - another owner's route added or deleted at a destination of `plan` (any, before the
   *   first plan): `"full"`, as it may stand in our way (a `replace` by another owner takes
   *   our route without a deletion message) or have left it;
   * - any other route: nothing.
   *
   * Link and address changes always call for a full reconcile: a link going down flushes
   * routes silently.
   */
  weigh(
    e: { kind: string; dst?: string; protocol?: number },
    plan: Plan | undefined,
  ): "none" | "lost" | "full" {
    if ((e.kind !== "route-added" && e.kind !== "route-deleted") || e.dst === undefined) {
      return "full";
    }
    const key = routeKey({ family: e.dst.includes(":") ? 6 : 4, dst: e.dst });
    if (e.protocol !== this.protocol && e.protocol !== undefined) {
      // Before the first plan every destination may turn out to be one.
      return plan === undefined || plan.wants(key) ? "full" : "none";
    }
    if (e.kind === "route-added") return "none";
    const n = this.#echoes.get(key);
    if (n !== undefined) {
      if (n > 1) this.#echoes.set(key, n - 1);
      else this.#echoes.delete(key);
      return "none";
    }
    const ours = this.index?.ours;
    const at = ours?.get(key);
    if (plan === undefined || at === undefined || Array.isArray(at)) return "full";
    ours!.delete(key);
    return "lost";
  }
}
