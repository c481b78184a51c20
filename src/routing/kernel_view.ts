/**
 * What the reconciler knows of the kernel between two full reads, kept as where the kernel
 * differs from the plan: most destinations (10,000 at 5,000 nodes) hold exactly the planned
 * route, and those cost nothing here. It also holds the monitor's echoes of our own deletions
 * still to come, and the route-event rule: which kernel events call for a full reconcile.
 *
 * Rule: at a destination this view does not name, the kernel holds exactly the route the
 * plan had there after the last reconcile (or nothing, when it had none). The view is
 * therefore kept together with the plan: a reconcile takes the destinations whose plan
 * changed ({@link around}) and hands them back once applied ({@link keep}).
 *
 * A deletion of one hop of an IPv6 multipath route of ours (diff.ts: {@link mayHoldOthers})
 * leaves siblings whose owners no read has shown: the view then stops standing for the
 * kernel ({@link known} is false) until the next full read, which the reconciler asks for
 * at once, and nothing is diffed against it meanwhile.
 *
 * @module
 */
import {
  type ForeignConflict,
  indexKernel,
  inPlace,
  type KernelIndex,
  mayHoldOthers,
  type OurRoute,
  routeKey,
} from "./diff.ts";
import type { Plan, PlanChanges } from "./plan.ts";
import { foreignRouteProblem, type Problem, refusalProblem } from "./problem.ts";
import type { KernelRoute, OpFailure, Route, RouteOp } from "./types.ts";

/** What an applied operation did to a destination, as a log line names it. */
export type Change = "route added" | "route replaced" | "route deleted";

/**
 * Where the kernel differs from the plan: what is ours there, whether a route is planned,
 * and what the kernel said there (a foreign route in the way, a refusal).
 */
interface Deviation {
  readonly at: OurRoute | OurRoute[] | undefined;
  readonly planned: boolean;
  readonly problems?: readonly Problem[];
}

/** What the kernel said at each destination in one reconcile. */
export type KernelProblems = ReadonlyMap<string, readonly Problem[]>;

/** The key ({@link routeKey}) of the destination a route event names. */
export function eventKey(dst: string): string {
  return routeKey({ family: dst.includes(":") ? 6 : 4, dst });
}

function count(at: OurRoute | OurRoute[] | undefined): number {
  return at === undefined ? 0 : Array.isArray(at) ? at.length : 1;
}

/** What the kernel said in one diff and batch, by destination: conflicts, then refusals. */
export function kernelSaid(
  conflicts: readonly ForeignConflict[],
  failures: readonly OpFailure[],
): KernelProblems {
  const said = new Map<string, Problem[]>();
  const sayAt = (route: { family: number; dst: string }, p: Problem) => {
    const key = routeKey(route);
    const list = said.get(key);
    if (list) list.push(p);
    else said.set(key, [p]);
  };
  for (const c of conflicts) sayAt(c.route, foreignRouteProblem(c));
  for (const f of failures) sayAt(f.op.route, refusalProblem(f));
  return said;
}

/** The reconciler's view of the kernel's routes. */
export class KernelView {
  /** Destinations where the kernel differs from the plan. */
  #odd = new Map<string, Deviation>();
  /** Other owners' routes as last read; undefined until the first read. */
  #foreign: Map<string, KernelRoute> | undefined;
  /** Destinations we deleted ourselves, whose deletion the route monitor will echo. */
  readonly #echoes = new Map<string, number>();

  constructor(readonly protocol: number) {}

  /**
   * Whether the view stands for the kernel: false until the first full read, and again
   * after a deletion left routes of owners unknown (see the module doc); then the next
   * reconcile must read the kernel in full.
   */
  get known(): boolean {
    return this.#foreign !== undefined;
  }

  /** Takes a full read; returns it indexed for a full diff, then {@link keepAll}. */
  read(routes: readonly KernelRoute[]): KernelIndex {
    this.#echoes.clear();
    const index = indexKernel(routes, this.protocol);
    this.#foreign = index.foreign;
    return index;
  }

  /**
   * The kernel's routes of ours at the destinations a change of plan touched, as a diff
   * reads them: there, either what this view says, or the route planned before the change.
   */
  around(changes: PlanChanges): KernelIndex {
    const ours = new Map<string, OurRoute | OurRoute[]>();
    for (const [key, { was }] of changes) {
      const d = this.#odd.get(key);
      const at = d ? d.at : was;
      if (at !== undefined) ours.set(key, at);
    }
    return { protocol: this.protocol, ours, foreign: this.#foreign ?? new Map() };
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
   * Puts the operations that were not refused into `index` (a refused one changed nothing,
   * and is tried again next time); `onChange` hears what each did. A refused deletion's echo
   * will not come.
   */
  applied(
    index: KernelIndex,
    ops: readonly RouteOp[],
    refused: ReadonlySet<RouteOp>,
    onChange?: (change: Change, op: RouteOp) => void,
  ): void {
    const ours = index.ours;
    for (const op of ops) {
      const key = routeKey(op.route);
      if (refused.has(op)) {
        this.expectEchoes([op], -1);
        continue;
      }
      const at = ours.get(key);
      if (op.op === "delete") {
        onChange?.("route deleted", op);
        // The other hops of that route stay, under protocols only a read will show.
        if (mayHoldOthers(op.route)) this.#foreign = undefined;
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
   * After a full diff and its batch: `index` (the read, with the operations applied) against
   * every planned route, and what the kernel said (`said`). Only the differences are kept:
   * the 10,000 routes read at 5,000 nodes, and their texts, are not.
   */
  keepAll(index: KernelIndex, desired: readonly Route[], said: KernelProblems): void {
    const odd = new Map<string, Deviation>();
    let found = 0;
    for (const route of desired) {
      const key = routeKey(route);
      const at = index.ours.get(key);
      if (at !== undefined) found++;
      const problems = said.get(key);
      if (problems || at === undefined || Array.isArray(at) || !inPlace(at, route)) {
        odd.set(key, { at, planned: true, problems });
      }
    }
    if (found < index.ours.size) {
      const wanted = new Set(desired.map(routeKey));
      for (const [key, at] of index.ours) {
        if (!wanted.has(key)) odd.set(key, { at, planned: false, problems: said.get(key) });
      }
    }
    this.#odd = odd;
  }

  /**
   * After a diff of the destinations a change touched (`index` from {@link around}, with the
   * operations applied): keeps what still differs from the plan there, and what the kernel
   * said there (`said`); what it said elsewhere stands.
   */
  keep(index: KernelIndex, changes: PlanChanges, said: KernelProblems): void {
    for (const [key, { now }] of changes) {
      const at = index.ours.get(key);
      const problems = said.get(key);
      const exact = now === undefined
        ? at === undefined
        : at !== undefined && !Array.isArray(at) && inPlace(at, now);
      if (exact && !problems) this.#odd.delete(key);
      else this.#odd.set(key, { at, planned: now !== undefined, problems });
    }
  }

  /** What the kernel said where it differs from the plan, as of the diffs that found it. */
  problems(): Problem[] {
    const out: Problem[] = [];
    for (const d of this.#odd.values()) if (d.problems) { for (const p of d.problems) out.push(p); }
    return out;
  }

  /**
   * Takes the route of ours at `key` out, as a deletion by someone else did; `planned` says
   * whether the plan has one there (when this view does not know).
   */
  lose(key: string, planned: boolean): void {
    this.#odd.set(key, { at: undefined, planned: this.#odd.get(key)?.planned ?? planned });
  }

  /** How many routes of ours the kernel holds, given how many the plan has. */
  installed(planned: number): number {
    let n = planned;
    for (const d of this.#odd.values()) n += count(d.at) - (d.planned ? 1 : 0);
    return n;
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
    const key = eventKey(e.dst);
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
    if (plan === undefined) return "full";
    // Where this view says nothing, the planned route is there, if one is planned.
    const d = this.#odd.get(key);
    if (d ? d.at === undefined || Array.isArray(d.at) : !plan.wants(key)) return "full";
    this.lose(key, true);
    return "lost";
  }
}
