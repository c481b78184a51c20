/**
 * The plan: from every node's checked claims (check.ts) to the routes this node must have.
 *
 * Rule: among nodes claiming overlapping CIDRs, our own node keeps its CIDRs whatever its
 * age, and between other nodes the first claimant (oldest creationTimestamp, then name)
 * keeps it. A claim that loses blocks nothing; claims of one node may overlap each other.
 *
 * The {@link Planner} keeps every claim sorted by address. While no two claims overlap (a
 * healthy cluster), a change of a few nodes is planned from their claims and their
 * neighbours' alone; otherwise the overlaps are resolved afresh over all claims. Either way
 * it tells which destinations' routes changed, with the route before and after.
 *
 * @module
 */
import { parseCidr } from "../net/ip.ts";
import { type CheckedNode, type Claim, claimRoute } from "./check.ts";
import { routeKey } from "./diff.ts";
import type { Problem } from "./problem.ts";
import type { Route } from "./types.ts";

function claimOrder(a: Claim, b: Claim): number {
  const na = a.owner, nb = b.owner;
  // Our own CIDRs are on our own bridge: a route sending part of them to another node would
  // cut our pods off, so our node's claims come before every other, whatever their age.
  if (na.self !== nb.self) return na.self ? -1 : 1;
  // The node that claimed first keeps the range; a missing timestamp counts as newest.
  const ta = na.creationTimestamp || "\uffff", tb = nb.creationTimestamp || "\uffff";
  if (ta !== tb) return ta < tb ? -1 : 1;
  return na.name < nb.name ? -1 : na.name > nb.name ? 1 : 0;
}

/** Address order, then the claim order: a total order, so that edited and fresh agree. */
function startOrder(a: Claim, b: Claim): number {
  if (a.start !== b.start) return a.start < b.start ? -1 : 1;
  // From one start, the longer prefix ends first.
  if (a.prefix !== b.prefix) return a.prefix > b.prefix ? -1 : 1;
  return claimOrder(a, b);
}

/** The first position in `list` (sorted by {@link startOrder}) not before `c`. */
function sortedIndex(list: readonly Claim[], c: Claim): number {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (startOrder(list[mid], c) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The first position in `list` whose claim starts at `start` or later. */
function startIndex(list: readonly Claim[], start: bigint): number {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid].start < start) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Resolves overlapping claims between nodes: the losing claims, each with the winner (the
 * first kept claim it overlaps, in {@link claimOrder}: our own node's, else the oldest);
 * and whether any two claims overlap at all, of one node or of two.
 *
 * @param families the claims of each family, sorted by {@link startOrder}
 */
function resolveConflicts(
  families: readonly (readonly Claim[])[],
): { losers: Map<Claim, Claim>; overlaps: boolean } {
  const losers = new Map<Claim, Claim>();
  let overlaps = false;
  for (const sorted of families) {
    // Sweep into groups of transitively overlapping ranges, each a run of the sorted list
    // (most runs hold one claim; nothing is allocated for those).
    const settle = (from: number, to: number) => {
      if (to - from < 2) return;
      overlaps = true;
      const group = sorted.slice(from, to);
      if (group.every((c) => c.owner === group[0].owner)) return;
      const kept: Claim[] = [];
      for (const c of group.sort(claimOrder)) {
        const winner = kept.find((k) => k.owner !== c.owner && k.overlaps(c));
        if (winner) losers.set(c, winner);
        else kept.push(c);
      }
    };
    let from = 0;
    let groupEnd = -1n;
    for (let i = 0; i < sorted.length; i++) {
      const c = sorted[i];
      if (c.start > groupEnd) {
        settle(from, i);
        from = i;
        groupEnd = c.end;
      } else {
        const end = c.end;
        if (end > groupEnd) groupEnd = end;
      }
    }
    settle(from, sorted.length);
  }
  return { losers, overlaps };
}

/** The conflict problems of each node in a conflict: two per losing claim. */
function conflictProblems(losers: ReadonlyMap<Claim, Claim>): Map<CheckedNode, Problem[]> {
  const out = new Map<CheckedNode, Problem[]>();
  const add = (node: CheckedNode, p: Problem) => {
    const list = out.get(node);
    if (list) list.push(p);
    else out.set(node, [p]);
  };
  for (const [loser, winner] of losers) {
    const ours = winner.owner.self;
    add(loser.owner, {
      node: loser.node,
      kind: "conflict",
      field: loser.owner.cidrField,
      value: loser.dst,
      reason: ours
        ? `overlaps ${winner.dst} of node ${winner.node}, this router's own node, ` +
          "whose CIDRs no other node may take"
        : `overlaps ${winner.dst} of node ${winner.node}, which claimed it first`,
    });
    add(winner.owner, {
      node: winner.node,
      kind: "conflict",
      field: winner.owner.cidrField,
      value: winner.dst,
      reason: `also claimed by node ${loser.node} (${loser.dst}); kept here` +
        (ours ? " as this router's own" : ""),
    });
  }
  return out;
}

/** A node's own problems: its checks', and each CIDR it has no usable next hop for. */
function ownProblems(node: CheckedNode): readonly Problem[] {
  if (node.self || node.claims.every((c) => c.via !== undefined)) return node.problems;
  const out = [...node.problems];
  for (const c of node.claims) {
    if (c.via !== undefined) continue;
    out.push({
      node: node.name,
      kind: "no-address",
      field: node.addressField,
      value: c.dst,
      reason: `no usable IPv${c.family} address for this CIDR`,
    });
  }
  return out;
}

/** What the plan says, as of one reconcile. */
export interface Plan {
  /** Every route to plan, in address order, as the planner has them when this is read. */
  readonly routes: readonly Route[];
  readonly routeCount: number;
  readonly problems: readonly Problem[];
  /** How many nodes were planned, our own included. */
  readonly nodeCount: number;
  /** Our own node, checked; undefined if not seen. */
  readonly self: CheckedNode | undefined;
  /** Our own node's CIDRs (for the node state file); undefined if not seen. */
  readonly selfCidrs: readonly string[] | undefined;
  /** Whether a route to this destination ({@link routeKey}) is planned. */
  wants(key: string): boolean;
}

/** The route planned to one destination before a change, and after it (undefined: none). */
export interface RouteChange {
  readonly was: Route | undefined;
  readonly now: Route | undefined;
}

/** The destinations ({@link routeKey}) whose planned route a change of nodes touched. */
export type PlanChanges = Map<string, RouteChange>;

/** The destinations whose route differs between two plans' routes (by identity). */
export function planChanges(before: readonly Route[], after: readonly Route[]): PlanChanges {
  const was = new Map<string, Route>();
  for (const r of before) was.set(routeKey(r), r);
  const changes: PlanChanges = new Map();
  for (const now of after) {
    const key = routeKey(now);
    const old = was.get(key);
    was.delete(key);
    if (old !== now) changes.set(key, { was: old, now });
  }
  for (const [key, old] of was) changes.set(key, { was: old, now: undefined });
  return changes;
}

/** The plan kept from one reconcile to the next, changed node by node. */
export class Planner {
  /** Every claim by family (IPv4, IPv6), sorted by {@link startOrder}. */
  #sorted: Claim[][] = [[], []];
  #losers = new Map<Claim, Claim>();
  #conflicts = new Map<CheckedNode, Problem[]>();
  /** Whether any two claims overlap; while none do, a change is planned locally. */
  #overlaps = false;
  /** The nodes that have problems of their own, with them (most nodes have none). */
  #troubled = new Map<CheckedNode, readonly Problem[]>();
  #self: CheckedNode | undefined;
  #nodeCount = 0;
  /** Claims that would be routes, losers included; and the losers among them. */
  #routable = 0;
  #lost = 0;

  /** Plans these nodes, forgetting any before. */
  reset(nodes: readonly CheckedNode[]): void {
    this.#sorted = [[], []];
    this.#troubled.clear();
    this.#self = undefined;
    this.#nodeCount = this.#routable = 0;
    for (const n of nodes) {
      for (const c of n.claims) this.#sorted[c.family === 4 ? 0 : 1].push(c);
      this.#enter(n);
    }
    for (const list of this.#sorted) list.sort(startOrder);
    this.#settle();
  }

  /**
   * Takes the nodes that changed: each as planned before (`removed`) and as it is now
   * (`added`); a node that came has no before, one that went no now. Returns the routes
   * touched.
   */
  update(removed: readonly CheckedNode[], added: readonly CheckedNode[]): PlanChanges {
    // With overlapping claims, which of them were routes depends on the conflicts of before.
    const before = this.#overlaps ? this.routes() : undefined;
    for (const n of removed) {
      for (const c of n.claims) {
        const list = this.#sorted[c.family === 4 ? 0 : 1];
        let at = sortedIndex(list, c);
        if (list[at] !== c) at = list.indexOf(c);
        if (at >= 0) list.splice(at, 1);
      }
      this.#leave(n);
    }
    for (const n of added) {
      for (const c of n.claims) {
        const list = this.#sorted[c.family === 4 ? 0 : 1];
        list.splice(sortedIndex(list, c), 0, c);
      }
      this.#enter(n);
    }
    // With no overlap before, the sorted claims were disjoint, each claim with a next hop a
    // route; they stay so when no new claim overlaps a neighbour, and then no conflict can
    // have come or gone: only the changed nodes' destinations are touched.
    if (before || !added.every((n) => n.claims.every((c) => this.#alone(c)))) {
      const was = before ?? this.#disjointBefore(removed, added);
      this.#settle();
      return planChanges(was, this.routes());
    }
    const changes: PlanChanges = new Map();
    for (const n of removed) {
      for (const c of n.claims) changes.set(routeKey(c), { was: claimRoute(c), now: undefined });
    }
    for (const n of added) {
      for (const c of n.claims) {
        const key = routeKey(c);
        const now = claimRoute(c);
        const was = changes.get(key)?.was;
        if (now || !changes.has(key)) changes.set(key, { was, now });
      }
    }
    return changes;
  }

  /**
   * The routes of before an update that found no overlap before it: every claim with a next
   * hop, the removed ones back and the added ones not yet.
   */
  #disjointBefore(removed: readonly CheckedNode[], added: readonly CheckedNode[]): Route[] {
    const fresh = new Set<Claim>();
    for (const n of added) for (const c of n.claims) fresh.add(c);
    const out: Route[] = [];
    for (const list of this.#sorted) {
      for (const c of list) {
        const route = claimRoute(c);
        if (route && !fresh.has(c)) out.push(route);
      }
    }
    for (const n of removed) {
      for (const c of n.claims) {
        const route = claimRoute(c);
        if (route) out.push(route);
      }
    }
    return out;
  }

  /** Whether any two claims overlap (then a change is planned over every claim). */
  get overlapping(): boolean {
    return this.#overlaps;
  }

  /** The plan as it stands. */
  plan(): Plan {
    const all = () => this.routes();
    const self = this.#self;
    return {
      // Made afresh each time it is read, and not kept: 10,000 routes at 5,000 nodes.
      get routes() {
        return all();
      },
      routeCount: this.#routable - this.#lost,
      problems: this.problems(),
      nodeCount: this.#nodeCount,
      self,
      selfCidrs: self?.claims.map((c) => c.dst),
      wants: (key) => this.wants(key),
    };
  }

  /** Every route, in address order. */
  routes(): Route[] {
    const out: Route[] = [];
    for (const list of this.#sorted) {
      for (let i = 0; i < list.length; i++) {
        const route = claimRoute(list[i]);
        if (route && !this.#losers.has(list[i])) out.push(route);
      }
    }
    return out;
  }

  /** Every problem: each node's own, then the conflicts. */
  problems(): Problem[] {
    const out: Problem[] = [];
    for (const list of this.#troubled.values()) for (const p of list) out.push(p);
    for (const list of this.#conflicts.values()) for (const p of list) out.push(p);
    return out;
  }

  /** The route planned to this destination ({@link routeKey}), if any. */
  routeAt(key: string): Route | undefined {
    const r = parseCidr(key.includes(" ") ? key.slice(key.indexOf(" ") + 1) : key);
    if (!r.ok) return undefined;
    const list = this.#sorted[r.cidr.family === 4 ? 0 : 1];
    for (let i = startIndex(list, r.cidr.value); i < list.length; i++) {
      const c = list[i];
      if (c.start !== r.cidr.value) break;
      if (routeKey(c) !== key || this.#losers.has(c)) continue;
      const route = claimRoute(c);
      if (route) return route;
    }
    return undefined;
  }

  /** Whether a route to this destination ({@link routeKey}) is planned. */
  wants(key: string): boolean {
    return this.routeAt(key) !== undefined;
  }

  /** The losing claims with their winners, and the conflict problems by node. */
  get conflicts(): {
    losers: ReadonlyMap<Claim, Claim>;
    byNode: ReadonlyMap<CheckedNode, Problem[]>;
  } {
    return { losers: this.#losers, byNode: this.#conflicts };
  }

  /** Whether the claim overlaps neither of its neighbours in the sorted list. */
  #alone(c: Claim): boolean {
    const list = this.#sorted[c.family === 4 ? 0 : 1];
    const at = sortedIndex(list, c);
    return (at === 0 || list[at - 1].end < c.start) &&
      (at + 1 >= list.length || list[at + 1].start > c.end);
  }

  #enter(n: CheckedNode): void {
    this.#nodeCount++;
    if (n.self) this.#self = n;
    for (const c of n.claims) if (claimRoute(c)) this.#routable++;
    const own = ownProblems(n);
    if (own.length > 0) this.#troubled.set(n, own);
  }

  #leave(n: CheckedNode): void {
    this.#nodeCount--;
    if (this.#self === n) this.#self = undefined;
    for (const c of n.claims) if (claimRoute(c)) this.#routable--;
    this.#troubled.delete(n);
  }

  #settle(): void {
    const { losers, overlaps } = resolveConflicts(this.#sorted);
    this.#losers = losers;
    this.#overlaps = overlaps;
    this.#conflicts = conflictProblems(losers);
    this.#lost = 0;
    for (const c of losers.keys()) if (claimRoute(c)) this.#lost++;
  }
}

/** What the plan says about one node, for `nodes`. */
export interface NodePlan {
  readonly name: string;
  readonly self: boolean;
  /** CIDRs that passed every check (canonical text). */
  readonly cidrs: readonly string[];
  readonly addresses: readonly string[];
  readonly routes: readonly Route[];
  readonly problems: readonly Problem[];
}

/** A plan of a list of nodes, with each node's part. */
export interface NodesPlan extends Plan {
  readonly nodes: readonly NodePlan[];
}

/** Plans the routes to every other node, from nothing (see {@link Planner} to keep one). */
export function plan(nodes: readonly CheckedNode[]): NodesPlan {
  const planner = new Planner();
  planner.reset(nodes);
  const { losers, byNode } = planner.conflicts;
  const p = planner.plan();
  return {
    routes: p.routes,
    routeCount: p.routeCount,
    problems: p.problems,
    nodeCount: p.nodeCount,
    self: p.self,
    selfCidrs: p.selfCidrs,
    wants: p.wants,
    nodes: nodes.map((n) => describeNode(n, losers, byNode.get(n))),
  };
}

function describeNode(
  node: CheckedNode,
  losers: ReadonlyMap<Claim, Claim>,
  conflicts: readonly Problem[] = [],
): NodePlan {
  const claims = node.claims.filter((c) => !losers.has(c));
  const routes: Route[] = [];
  // Plain copies: a claim refers to its node, which refers to its claims.
  for (const c of claims) {
    const route = claimRoute(c);
    if (route) {
      routes.push({ family: route.family, dst: route.dst, via: route.via, node: route.node });
    }
  }
  return {
    name: node.name,
    self: node.self,
    cidrs: claims.map((c) => c.dst),
    addresses: node.addresses,
    routes,
    problems: [...ownProblems(node), ...conflicts],
  };
}
