/**
 * Which CIDRs were freed between two views of the nodes, and the map of recently freed
 * CIDRs that `allocate` (src/alloc/allocate.ts) keeps as its last choice. Pure: the time is passed in.
 *
 * A CIDR is freed when the node holding it is deleted, or its annotation loses it, and no
 * node holds it afterwards. "Holding" is what the allocator counts as taken: any item of
 * the annotation that parses as a CIDR, compared in canonical form.
 *
 * @module
 */
import { formatCidr, parseCidr, splitList } from "../net/ip.ts";
import type { AllocNode } from "./allocate.ts";

/** What is read of a node here. */
export type HoldingNode = Pick<AllocNode, "name" | "annotation">;

/** Canonical text of every item of the annotation that parses as a CIDR. */
function held(annotation: string | undefined): string[] {
  if (annotation === undefined) return [];
  const out: string[] = [];
  for (const item of splitList(annotation)) {
    const r = parseCidr(item);
    if (r.ok) out.push(formatCidr(r.cidr));
  }
  return out;
}

/**
 * The canonical CIDRs that some node of `before` held and no node of `after` holds, in the
 * order of `before`. Nodes whose annotation is the same string in both cost a map lookup.
 *
 * @example
 * ```ts
 * freedCidrs(
 *   [{ name: "a", annotation: "10.0.1.0/24" }, { name: "b", annotation: "10.0.2.0/24" }],
 *   [{ name: "b", annotation: "10.0.2.0/24" }],
 * ); // ["10.0.1.0/24"]
 * ```
 */
export function freedCidrs(
  before: readonly HoldingNode[],
  after: readonly HoldingNode[],
): string[] {
  const afterByName = new Map<string, string | undefined>();
  for (const n of after) afterByName.set(n.name, n.annotation);
  const candidates = new Set<string>();
  for (const n of before) {
    if (afterByName.has(n.name) && afterByName.get(n.name) === n.annotation) continue;
    for (const c of held(n.annotation)) candidates.add(c);
  }
  // Only now, and only when something may be freed, is every node of `after` read.
  if (candidates.size === 0) return [];
  const stillHeld = new Set<string>();
  for (const n of after) for (const c of held(n.annotation)) stillHeld.add(c);
  return [...candidates].filter((c) => !stillHeld.has(c));
}

/**
 * The recently freed map after a change from `before` to `after` at `now`: the entries of
 * `recentlyFreed` younger than `quarantineMs`, and every CIDR freed by the change at `now`
 * (a CIDR freed again gets the new time). A new map; the old one is not changed.
 *
 * @example
 * ```ts
 * let recentlyFreed: ReadonlyMap<string, number> = new Map();
 * recentlyFreed = updateRecentlyFreed(recentlyFreed, lastNodes, nodes, Date.now(), 60_000);
 * const decision = allocate({ nodes, pools, recentlyFreed, now: Date.now(), quarantineMs: 60_000 });
 * ```
 */
export function updateRecentlyFreed(
  recentlyFreed: ReadonlyMap<string, number>,
  before: readonly HoldingNode[],
  after: readonly HoldingNode[],
  now: number,
  quarantineMs: number,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const [cidr, freedAt] of recentlyFreed) {
    if (now - freedAt < quarantineMs) out.set(cidr, freedAt);
  }
  for (const cidr of freedCidrs(before, after)) out.set(cidr, now);
  return out;
}
