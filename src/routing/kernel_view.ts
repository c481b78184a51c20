/**
 * What the reconciler knows of the kernel between two full reads: the routes as last read,
 * updated with the operations that succeeded since, and the monitor's echoes of our own
 * deletions that are still to come. It also holds the route-event rule: which kernel events
 * call for a full reconcile.
 *
 * @module
 */
import { indexKernel, type KernelIndex, routeKey } from "./diff.ts";
import type { Plan } from "./plan.ts";
import type { KernelRoute, RouteOp } from "./types.ts";

/** What an applied operation did to a destination, as a log line names it. */
export type Change = "route added" | "route replaced" | "route deleted";

/** The reconciler's view of the kernel's routes. */
export class KernelView {
  /** Undefined until the first read. */
  index: KernelIndex | undefined;
  /** Destinations we deleted ourselves, whose deletion the route monitor will echo. */
  readonly #echoes = new Map<string, number>();
  readonly #wanted = new WeakMap<Plan, Set<string>>();

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
      if (op.op === "delete") {
        onChange?.("route deleted", op);
        const left = ours.get(key)?.filter((r) => r !== op.route) ?? [];
        if (left.length > 0) ours.set(key, left);
        else ours.delete(key);
      } else {
        onChange?.(ours.has(key) ? "route replaced" : "route added", op);
        const { family, dst, via } = op.route;
        ours.set(key, [{ family, dst, via, protocol: this.protocol }]);
      }
    }
  }

  /**
   * The route-event rule: whether a kernel event calls for a full reconcile. Route events
   * are weighed by destination:
   *
   * - a route of ours added: our own write;
   * - a route of ours deleted: our own echo when we deleted it (counted off), else yes;
   * - another owner's route added or deleted at a destination of `plan`: yes, as it may stand
   *   in our way (a `replace` by another owner takes our route without a deletion message)
   *   or have left it;
   * - any other route: no.
   *
   * Link and address changes always do: a link going down flushes routes silently.
   */
  needsReconcile(
    e: { kind: string; dst?: string; protocol?: number },
    plan: Plan | undefined,
  ): boolean {
    if ((e.kind !== "route-added" && e.kind !== "route-deleted") || e.dst === undefined) {
      return true;
    }
    const key = routeKey({ family: e.dst.includes(":") ? 6 : 4, dst: e.dst });
    if (e.protocol !== this.protocol && e.protocol !== undefined) {
      return plan !== undefined && this.#wantedOf(plan).has(key);
    }
    if (e.kind === "route-added") return false;
    const n = this.#echoes.get(key);
    if (n === undefined) return true;
    if (n > 1) this.#echoes.set(key, n - 1);
    else this.#echoes.delete(key);
    return false;
  }

  /** The plan's destinations, made once per plan and only when another owner's route moves. */
  #wantedOf(plan: Plan): ReadonlySet<string> {
    let set = this.#wanted.get(plan);
    if (!set) {
      set = new Set(plan.routes.map(routeKey));
      this.#wanted.set(plan, set);
    }
    return set;
  }
}
