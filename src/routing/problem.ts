/**
 * Problems found with nodes: what `nodes` shows, what is logged once per change, and what
 * the metrics count by kind.
 *
 * @module
 */

import type { OpFailure } from "./types.ts";

/** Why something of a node is not routed. */
export type ProblemKind =
  /** The value cannot be parsed. */
  | "malformed"
  /** Parsed, but refused by a safety rule (ALLOWED_CIDRS, prefix, special or local range). */
  | "refused"
  /** Overlaps a CIDR of our own node, or one that an older node claimed first. */
  | "conflict"
  /** The node has no CIDRs for this network. */
  | "no-cidrs"
  /** The node has no usable address of the CIDR's family. */
  | "no-address"
  /** A route of another owner already has the destination. */
  | "foreign-route"
  /** The kernel refused the route (e.g. next hop not on-link). */
  | "kernel"
  /** The allocation pools have no CIDR left for the node. */
  | "no-free-cidr";

/** Every problem kind, for metrics that report zero counts too. */
export const PROBLEM_KINDS: readonly ProblemKind[] = [
  "malformed",
  "refused",
  "conflict",
  "no-cidrs",
  "no-address",
  "foreign-route",
  "kernel",
  "no-free-cidr",
];

/** One reported problem: node, field, value and reason. */
export interface Problem {
  readonly node: string;
  readonly kind: ProblemKind;
  readonly field: string;
  readonly value: string;
  readonly reason: string;
}

/** Stable identity of a problem, for reporting each one once per change. */
export function problemKey(p: Problem): string {
  return `${p.node}\u0000${p.kind}\u0000${p.field}\u0000${p.value}\u0000${p.reason}`;
}

/** One line of text for a problem. */
export function describeProblem(p: Problem): string {
  return `node ${p.node}: ${p.field}=${JSON.stringify(p.value)}: ${p.reason}`;
}

/** The problem of a route that another owner's route stands in the way of. */
export function foreignRouteProblem(
  c: { route: { node: string; dst: string }; foreign: { protocol: number; via?: string } },
): Problem {
  return {
    node: c.route.node,
    kind: "foreign-route",
    field: "route",
    value: c.route.dst,
    reason: `a route of protocol ${c.foreign.protocol}` +
      `${c.foreign.via ? ` via ${c.foreign.via}` : ""} already has this destination; left alone`,
  };
}

/** The problem of an operation the kernel refused. */
export function refusalProblem(f: OpFailure): Problem {
  const r = f.op.route;
  return {
    node: "node" in r ? r.node : "",
    kind: "kernel",
    field: "route",
    value: `${r.dst} via ${r.via ?? "-"}`,
    reason: `${f.op.op} refused by the kernel: ${f.error}`,
  };
}
