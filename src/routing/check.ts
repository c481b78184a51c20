/**
 * The checks of one node alone, before the plan weighs nodes against each other. Pure.
 *
 * Rules: a CIDR must pass the safety checks (inside ALLOWED_CIDRS when set, else a minimum
 * prefix; never a special range; never over this host's own addresses or connected
 * networks); the next hop is the node's first usable address of the CIDR's family (never a
 * special address, never one of this host's).
 *
 * @module
 */
import {
  type Cidr,
  type Family,
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

/** Shared by every node whose addresses are not kept (see {@link checkNode}). */
const NO_ADDRESSES: readonly string[] = Object.freeze([]);

/** Shared by every node without problems: most nodes, whose checks are kept. */
const NO_PROBLEMS: readonly Problem[] = Object.freeze([]);

/**
 * A CIDR a node claims that passed the per-node checks, with its address range for the
 * overlap sweep. With a next hop it is also the route to that CIDR ({@link claimRoute}): one
 * object per CIDR, kept for every node while it is unchanged.
 */
export class Claim {
  constructor(
    readonly family: Family,
    /** Canonical CIDR text. */
    readonly dst: string,
    /** The node's next hop of this family; undefined for our own node or when it has none. */
    readonly via: string | undefined,
    readonly owner: CheckedNode,
    /** The first address of the range. */
    readonly start: bigint,
    readonly prefix: number,
  ) {}

  /**
   * The last address of the range. Made when asked (the conflict sweep, a change's
   * neighbours): one bigint fewer kept per CIDR of 5,000 nodes.
   */
  get end(): bigint {
    return this.start + HOST_MASK[this.family][this.prefix];
  }

  /** Whether the two ranges share an address. */
  overlaps(other: Claim): boolean {
    return this.family === other.family && this.start <= other.end && other.start <= this.end;
  }

  /** The name of the node claiming. */
  get node(): string {
    return this.owner.name;
  }

  /** The route's fields only: the owner refers back to its claims, and JSON has no bigint. */
  toJSON(): { family: Family; dst: string; via: string | undefined; node: string } {
    return { family: this.family, dst: this.dst, via: this.via, node: this.node };
  }
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
  /**
   * The node's addresses, canonical; with `ownAddressesOnly`, only our own node's (the
   * others' that count are its claims' next hops).
   */
  readonly addresses: readonly string[];
  readonly addressField: string;
  readonly problems: readonly Problem[];
}

/**
 * The route to one of the node's claims (the claim itself, which has its fields): undefined
 * for our own node's claims and when the node has no usable address of the claim's family.
 * The plan and the head start both make their routes here, so that the first reconcile
 * finds the early ones in place.
 */
export function claimRoute(claim: Claim): Route | undefined {
  return claim.via === undefined ? undefined : claim as Route;
}

/**
 * Applies the per-node rules to one parsed node.
 *
 * The result is kept for every node while it is unchanged (5,000 of them), so its arrays
 * are allocated at their final size (one grown by push keeps room for 17 elements) and
 * nothing is kept that the plan does not read: with `ownAddressesOnly`, as the daemon keeps
 * them, other nodes' addresses are not kept beyond their claims' next hops.
 */
export function checkNode(
  node: ParsedNode,
  rules: PlanRules,
  local: readonly LocalAddress[],
  opts: { ownAddressesOnly?: boolean } = {},
): CheckedNode {
  const host = hostView(local);
  const problems: Problem[] = node.problems.slice();
  const self = node.name === rules.selfName;
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
  if (node.cidrs.length === 0) {
    problems.push({
      node: node.name,
      kind: "no-cidrs",
      field: node.cidrField,
      value: "",
      reason: "no CIDRs for this network",
    });
  }
  const accepted: { cidr: Cidr; dst: string; range: Span }[] = [];
  for (const cidr of node.cidrs) {
    const dst = formatCidr(cidr);
    const range = span(cidr);
    // Our own CIDRs sit on our own bridge: the local-network check does not apply.
    const why = self ? undefined : refuseSpan(cidr, range, rules, host);
    if (why) {
      problems.push({
        node: node.name,
        kind: "refused",
        field: node.cidrField,
        value: dst,
        reason: why,
      });
    } else {
      accepted.push({ cidr, dst, range });
    }
  }
  for (const p of hopProblems) problems.push(p);
  const claims = new Array<Claim>(accepted.length);
  const checked: CheckedNode = {
    name: node.name,
    creationTimestamp: node.creationTimestamp,
    self,
    cidrField: node.cidrField,
    claims,
    addresses: opts.ownAddressesOnly && !self ? NO_ADDRESSES : addresses,
    addressField: node.addressField,
    problems: problems.length === 0 ? NO_PROBLEMS : problems,
  };
  for (let i = 0; i < accepted.length; i++) {
    const { cidr, dst, range } = accepted[i];
    claims[i] = new Claim(
      cidr.family,
      dst,
      cidr.family === 4 ? hop4 : hop6,
      checked,
      range.start,
      cidr.prefix,
    );
  }
  return checked;
}
