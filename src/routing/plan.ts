/**
 * The plan: from every node's claims to the routes this node must have. Pure.
 *
 * Rules, in order: a CIDR must pass the safety checks (inside ALLOWED_CIDRS when set, else
 * a minimum prefix; never a special range; never over this host's own addresses or
 * connected networks); among nodes claiming overlapping CIDRs our own node keeps its CIDRs
 * whatever its age, and between other nodes the first claimant (oldest creationTimestamp,
 * then name) keeps it; the next hop is the node's first usable address of the CIDR's family.
 *
 * @module
 */
import {
  type Cidr,
  cidrsOverlap,
  familyBits,
  formatCidr,
  formatIp,
  type Ip,
  makeCidr,
  parseCidr,
} from "../net/ip.ts";
import type { ParsedNode } from "./node_parse.ts";
import type { Problem } from "./problem.ts";
import type { LocalAddress, Route } from "./types.ts";

/** The safety rules of one instance. */
export interface PlanRules {
  /** Our own node: its CIDRs are ours, never routed. */
  selfName: string;
  /** When non-empty, a CIDR is routed only inside one of these. */
  allowedCidrs: readonly Cidr[];
  minPrefixV4: number;
  minPrefixV6: number;
}

/** What the plan says about one node. */
export interface NodePlan {
  readonly name: string;
  readonly self: boolean;
  /** CIDRs that passed every check (canonical text). */
  readonly cidrs: readonly string[];
  readonly addresses: readonly string[];
  readonly routes: readonly Route[];
  readonly problems: readonly Problem[];
}

/** The whole plan. */
export interface Plan {
  readonly routes: readonly Route[];
  readonly nodes: readonly NodePlan[];
  readonly problems: readonly Problem[];
  /** Our own node's accepted CIDRs (for the node state file); undefined if not seen. */
  readonly selfCidrs: readonly string[] | undefined;
}

const SPECIAL: readonly [string, string][] = [
  ["0.0.0.0/8", "this-network range"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved range"],
  ["::/128", "unspecified address"],
  ["::1/128", "loopback"],
  ["fe80::/10", "link-local"],
  ["ff00::/8", "multicast"],
];
/** A range of addresses as two bigints: overlap tests then cost two comparisons. */
interface Span {
  readonly family: number;
  readonly start: bigint;
  readonly end: bigint;
}

/** Host-part masks by family and prefix, so that a range costs one addition. */
const HOST_MASK: Record<number, bigint[]> = {
  4: Array.from({ length: 33 }, (_, p) => (1n << BigInt(32 - p)) - 1n),
  6: Array.from({ length: 129 }, (_, p) => (1n << BigInt(128 - p)) - 1n),
};

function span(cidr: Cidr): Span {
  return {
    family: cidr.family,
    start: cidr.value,
    end: cidr.value + HOST_MASK[cidr.family][cidr.prefix],
  };
}

function spansOverlap(a: Span, b: Span): boolean {
  return a.family === b.family && a.start <= b.end && b.start <= a.end;
}

const SPECIAL_CIDRS = SPECIAL.map(([text, what]) => {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(`bad built-in range ${text}`);
  return { cidr: r.cidr, span: span(r.cidr), what };
});

const allowedSpanCache = new WeakMap<readonly Cidr[], Span[]>();

/** ALLOWED_CIDRS as ranges, kept per array (the configuration's array lives as long). */
function allowedSpans(allowed: readonly Cidr[]): Span[] {
  let spans = allowedSpanCache.get(allowed);
  if (!spans) {
    spans = allowed.map(span);
    allowedSpanCache.set(allowed, spans);
  }
  return spans;
}

/** What the checks need of this host's addresses, worked out once per read of them. */
interface HostView {
  readonly networks: readonly { readonly net: Cidr; readonly span: Span; readonly dev: string }[];
  /** Canonical addresses of this host, by family. */
  readonly addresses: ReadonlySet<string>;
}

const hostViews = new WeakMap<readonly LocalAddress[], HostView>();

/** The host view of `local`, kept per array: the reconciler passes one array per read. */
function hostView(local: readonly LocalAddress[]): HostView {
  let view = hostViews.get(local);
  if (!view) {
    const networks = [];
    for (const a of local) {
      const net = localNetwork(a);
      if (net) networks.push({ net, span: span(net), dev: a.dev });
    }
    view = { networks, addresses: new Set(local.map((a) => `${a.family} ${a.address}`)) };
    hostViews.set(local, view);
  }
  return view;
}

/** Why a CIDR of another node may not be routed here, or undefined when it may. */
export function refuseCidr(
  cidr: Cidr,
  rules: PlanRules,
  local: readonly LocalAddress[],
): string | undefined {
  return refuseSpan(cidr, span(cidr), rules, hostView(local));
}

function refuseSpan(
  cidr: Cidr,
  range: Span,
  rules: PlanRules,
  host: HostView,
): string | undefined {
  if (cidr.prefix === 0) return "a default route is never a pod network";
  if (rules.allowedCidrs.length > 0) {
    const inside = allowedSpans(rules.allowedCidrs).some((a) =>
      a.family === range.family && a.start <= range.start && range.end <= a.end
    );
    if (!inside) return "outside ALLOWED_CIDRS";
  } else {
    const min = cidr.family === 4 ? rules.minPrefixV4 : rules.minPrefixV6;
    if (cidr.prefix < min) return `prefix /${cidr.prefix} is shorter than the minimum /${min}`;
  }
  // Indexed loops: these run for every CIDR of every node on the first list, mostly before
  // V8 optimizes them, and an array iterator there allocates a result object per step.
  for (let i = 0; i < SPECIAL_CIDRS.length; i++) {
    const s = SPECIAL_CIDRS[i];
    if (spansOverlap(s.span, range)) return `overlaps the ${s.what} ${formatCidr(s.cidr)}`;
  }
  for (let i = 0; i < host.networks.length; i++) {
    const n = host.networks[i];
    if (spansOverlap(n.span, range)) {
      return `overlaps this host's network ${formatCidr(n.net)} (${n.dev})`;
    }
  }
  return undefined;
}

function localNetwork(a: LocalAddress): Cidr | undefined {
  const r = parseCidr(a.address);
  if (!r.ok) return undefined;
  return makeCidr(r.cidr.family, r.cidr.value, Math.min(a.prefix, familyBits(r.cidr.family)));
}

/** Why an address may not be a next hop here, or undefined when it may. */
export function refuseNextHop(ip: Ip, local: readonly LocalAddress[]): string | undefined {
  return refuseHop(ip, formatIp(ip), hostView(local));
}

function refuseHop(ip: Ip, text: string, host: HostView): string | undefined {
  for (let i = 0; i < SPECIAL_CIDRS.length; i++) {
    const s = SPECIAL_CIDRS[i];
    if (s.span.family === ip.family && s.span.start <= ip.value && ip.value <= s.span.end) {
      return s.what.endsWith("address") ? s.what : `${s.what} address`;
    }
  }
  if (host.addresses.has(`${ip.family} ${text}`)) return "an address of this host";
  return undefined;
}

/** A CIDR a node claims, with its address range for the overlap sweep. */
export interface Claim {
  readonly node: CheckedNode;
  readonly cidr: Cidr;
  readonly text: string;
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * One node after the checks that concern it alone (safety rules, next hops). Depends only
 * on the node, the rules and this host's addresses, so callers may memoize it.
 */
export interface CheckedNode {
  readonly name: string;
  readonly creationTimestamp: string;
  readonly self: boolean;
  readonly cidrField: string;
  readonly claims: readonly Claim[];
  readonly addresses: readonly string[];
  /** Next hop for IPv4 CIDRs, if the node has a usable IPv4 address. */
  readonly hop4: string | undefined;
  /** Next hop for IPv6 CIDRs. */
  readonly hop6: string | undefined;
  readonly addressField: string;
  readonly problems: readonly Problem[];
}

/**
 * The route to one of the node's claims: via its next hop of the claim's family; undefined
 * when it has no usable address of that family. The plan and the head start both make
 * their routes here, so that the first reconcile finds the early ones in place.
 */
export function claimRoute(node: CheckedNode, claim: Claim): Route | undefined {
  const family = claim.cidr.family;
  const via = family === 4 ? node.hop4 : node.hop6;
  return via === undefined ? undefined : { family, dst: claim.text, via, node: node.name };
}

/**
 * Applies the per-node rules to one parsed node.
 *
 * The result is kept for every node while it is unchanged (5,000 of them), so its arrays
 * are allocated at their final size: one grown by push keeps room for 17 elements.
 */
export function checkNode(
  node: ParsedNode,
  rules: PlanRules,
  local: readonly LocalAddress[],
): CheckedNode {
  const host = hostView(local);
  const problems: Problem[] = [...node.problems];
  const self = node.name === rules.selfName;
  const claims = new Array<Claim>(node.cidrs.length);
  let claimCount = 0;
  // Each address is formatted once: canonical text from a bigint is the costly part.
  const addresses = node.addresses.map(formatIp);
  let hop4: string | undefined, hop6: string | undefined;
  // Reported after the CIDRs' problems.
  const hopProblems: Problem[] = [];
  if (!self) {
    // Every address is checked, also after the first usable one: a refused one is reported
    // wherever it stands in the list.
    node.addresses.forEach((ip, i) => {
      const why = refuseHop(ip, addresses[i], host);
      if (why) {
        hopProblems.push({
          node: node.name,
          kind: "refused",
          field: node.addressField,
          value: addresses[i],
          reason: `not a usable next hop: ${why}`,
        });
      } else if (ip.family === 4) {
        hop4 ??= addresses[i];
      } else {
        hop6 ??= addresses[i];
      }
    });
  }
  const checked: CheckedNode = {
    name: node.name,
    creationTimestamp: node.creationTimestamp,
    self,
    cidrField: node.cidrField,
    claims,
    addresses,
    hop4,
    hop6,
    addressField: node.addressField,
    problems,
  };
  if (node.cidrs.length === 0) {
    problems.push({
      node: node.name,
      kind: "no-cidrs",
      field: node.cidrField,
      value: "",
      reason: "no CIDRs for this network",
    });
  }
  for (const cidr of node.cidrs) {
    const text = formatCidr(cidr);
    const range = span(cidr);
    // Our own CIDRs sit on our own bridge: the local-network check does not apply.
    const why = self ? undefined : refuseSpan(cidr, range, rules, host);
    if (why) {
      problems.push({
        node: node.name,
        kind: "refused",
        field: node.cidrField,
        value: text,
        reason: why,
      });
      continue;
    }
    claims[claimCount++] = { node: checked, cidr, text, start: range.start, end: range.end };
  }
  claims.length = claimCount;
  for (const p of hopProblems) problems.push(p);
  return checked;
}

function claimOrder(a: Claim, b: Claim): number {
  // Our own CIDRs are on our own bridge: a route sending part of them to another node would
  // cut our pods off, so our node's claims come before every other, whatever their age.
  if (a.node.self !== b.node.self) return a.node.self ? -1 : 1;
  // The node that claimed first keeps the range; a missing timestamp counts as newest.
  const ta = a.node.creationTimestamp || "\uffff", tb = b.node.creationTimestamp || "\uffff";
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.node.name < b.node.name ? -1 : a.node.name > b.node.name ? 1 : 0;
}

/** Address order, then the claim order: a total order, so that memoized and fresh agree. */
function startOrder(a: Claim, b: Claim): number {
  if (a.start !== b.start) return a.start < b.start ? -1 : 1;
  if (a.end !== b.end) return a.end < b.end ? -1 : 1;
  return claimOrder(a, b);
}

/**
 * Resolves overlapping claims between nodes: returns the losing claims, each with the
 * winner (the first kept claim it overlaps, in {@link claimOrder}: our own node's, else the
 * oldest). A losing claim blocks nothing. Claims of one node may overlap each other freely.
 *
 * @param families the claims of each family, sorted by {@link startOrder}
 */
function resolveConflicts(families: readonly (readonly Claim[])[]): Map<Claim, Claim> {
  const losers = new Map<Claim, Claim>();
  for (const sorted of families) {
    // Sweep into groups of transitively overlapping ranges, each a run of the sorted list
    // (most runs hold one claim; nothing is allocated for those).
    const settle = (from: number, to: number) => {
      if (to - from < 2) return;
      const group = sorted.slice(from, to);
      if (group.every((c) => c.node === group[0].node)) return;
      const kept: Claim[] = [];
      for (const c of group.sort(claimOrder)) {
        const winner = kept.find((k) => k.node !== c.node && cidrsOverlap(k.cidr, c.cidr));
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
      } else if (c.end > groupEnd) {
        groupEnd = c.end;
      }
    }
    settle(from, sorted.length);
  }
  return losers;
}

/**
 * What {@link plan} keeps between calls so that a change of a few nodes costs little: the
 * claims sorted by address (updated for the nodes that came and went), and the plan of
 * every node that is in no conflict (which then depends on that node alone).
 */
export class PlanMemo {
  /** The nodes of the last call, in its order. */
  nodes: readonly CheckedNode[] = [];
  /** Their claims by family (IPv4, IPv6), sorted by {@link startOrder}. */
  sorted: Claim[][] = [[], []];
  nodePlans = new WeakMap<CheckedNode, NodePlan>();
}

/**
 * The nodes that came and went since the memo's call. The informer keeps its nodes in one
 * order and an update in its place, so with as many nodes as before a walk side by side
 * finds the changes without building sets of 5,000 nodes.
 */
function changedNodes(
  nodes: readonly CheckedNode[],
  before: readonly CheckedNode[],
): { added: CheckedNode[]; removed: CheckedNode[] } {
  const added: CheckedNode[] = [], removed: CheckedNode[] = [];
  if (nodes.length === before.length) {
    for (let i = 0; i < nodes.length; i++) {
      if (nodes[i] !== before[i]) {
        added.push(nodes[i]);
        removed.push(before[i]);
      }
    }
    return { added, removed };
  }
  const now = new Set(nodes), then = new Set(before);
  for (const n of nodes) if (!then.has(n)) added.push(n);
  for (const n of before) if (!now.has(n)) removed.push(n);
  return { added, removed };
}

/** Where `c` stands, or should stand, in a list sorted by {@link startOrder}. */
function sortedIndex(list: readonly Claim[], c: Claim): number {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (startOrder(list[mid], c) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function sortedClaims(nodes: readonly CheckedNode[], memo: PlanMemo | undefined): Claim[][] {
  if (memo) {
    const { added, removed } = changedNodes(nodes, memo.nodes);
    memo.nodes = nodes.slice(); // a copy: the caller may reuse its array
    // A few changes: edit the sorted lists in place; many (the first call, a relist): sort
    // afresh.
    if (added.length + removed.length <= Math.max(16, nodes.length >> 4)) {
      const family = (c: Claim) => memo.sorted[c.cidr.family === 4 ? 0 : 1];
      for (const n of removed) {
        for (const c of n.claims) {
          const list = family(c);
          let at = sortedIndex(list, c);
          if (list[at] !== c) at = list.indexOf(c);
          if (at >= 0) list.splice(at, 1);
        }
      }
      for (const n of added) {
        for (const c of n.claims) {
          const list = family(c);
          list.splice(sortedIndex(list, c), 0, c);
        }
      }
      return memo.sorted;
    }
  }
  const sorted: Claim[][] = [[], []];
  for (const n of nodes) for (const c of n.claims) sorted[c.cidr.family === 4 ? 0 : 1].push(c);
  for (const list of sorted) list.sort(startOrder);
  if (memo) memo.sorted = sorted;
  return sorted;
}

/**
 * Plans the routes to every other node.
 *
 * @param nodes every node after {@link checkNode}
 * @param memo kept by the caller between calls to plan only what changed; the result is
 *   the same with or without it
 */
export function plan(nodes: readonly CheckedNode[], memo?: PlanMemo): Plan {
  const losers = resolveConflicts(sortedClaims(nodes, memo));
  const extra = new Map<CheckedNode, Problem[]>();
  const add = (node: CheckedNode, p: Problem) => {
    const list = extra.get(node);
    if (list) list.push(p);
    else extra.set(node, [p]);
  };
  for (const [loser, winner] of losers) {
    const ours = winner.node.self;
    add(loser.node, {
      node: loser.node.name,
      kind: "conflict",
      field: loser.node.cidrField,
      value: loser.text,
      reason: ours
        ? `overlaps ${winner.text} of node ${winner.node.name}, this router's own node, ` +
          "whose CIDRs no other node may take"
        : `overlaps ${winner.text} of node ${winner.node.name}, which claimed it first`,
    });
    add(winner.node, {
      node: winner.node.name,
      kind: "conflict",
      field: winner.node.cidrField,
      value: winner.text,
      reason: `also claimed by node ${loser.node.name} (${loser.text}); kept here` +
        (ours ? " as this router's own" : ""),
    });
  }

  // Sized up front: grown push by push, the two arrays of 5,000 and 10,000 would be copied
  // a dozen times on every reconcile.
  const nodePlans = new Array<NodePlan>(nodes.length);
  const problems: Problem[] = [];
  let selfCidrs: readonly string[] | undefined;
  let routeCount = 0;
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i];
    // A node in a conflict depends on others too: planned afresh, never memoized.
    const conflicted = extra.has(node);
    let np = conflicted ? undefined : memo?.nodePlans.get(node);
    if (!np) {
      np = planNode(node, losers, extra.get(node));
      if (memo && !conflicted) memo.nodePlans.set(node, np);
    }
    nodePlans[i] = np;
    if (np.self) selfCidrs = np.cidrs;
    routeCount += np.routes.length;
    for (const p of np.problems) problems.push(p);
  }
  const routes = new Array<Route>(routeCount);
  let at = 0;
  for (const np of nodePlans) for (const r of np.routes) routes[at++] = r;
  return { routes, nodes: nodePlans, problems, selfCidrs };
}

function planNode(
  node: CheckedNode,
  losers: ReadonlyMap<Claim, Claim>,
  extra: readonly Problem[] = [],
): NodePlan {
  // Most nodes have no problem: their empty list is shared, not copied.
  const problems = extra.length === 0 ? node.problems : [...node.problems, ...extra];
  const cidrs = extra.length === 0 ? node.claims : node.claims.filter((c) => !losers.has(c));
  // Sized up front, as in checkNode: every node's plan is kept in the memo.
  const nodeRoutes = new Array<Route>(node.self ? 0 : cidrs.length);
  let routeCount = 0;
  const missing: Problem[] = [];
  if (!node.self) {
    for (const c of cidrs) {
      const route = claimRoute(node, c);
      if (route === undefined) {
        missing.push({
          node: node.name,
          kind: "no-address",
          field: node.addressField,
          value: c.text,
          reason: `no usable IPv${c.cidr.family} address for this CIDR`,
        });
        continue;
      }
      nodeRoutes[routeCount++] = route;
    }
    nodeRoutes.length = routeCount;
  }
  return {
    name: node.name,
    self: node.self,
    cidrs: cidrs.map((c) => c.text),
    addresses: node.addresses,
    routes: nodeRoutes,
    problems: missing.length === 0 ? problems : [...problems, ...missing],
  };
}
