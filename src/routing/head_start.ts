/**
 * The head start: routes installed while the first list of Nodes is still coming in, so
 * that the kernel's work (most of the time to converge at thousands of nodes) overlaps the
 * list instead of following it. Pure: it decides, the reconciler writes.
 *
 * Only routes that the full plan will almost surely want, and that touch nothing already in
 * the kernel, go early:
 * - never our own node's, and none overlapping our own CIDRs (our node is read first; the
 *   plan never routes those either, whatever the age of the node claiming them);
 * - only CIDRs of the family's usual size (that of our own node's, else of the first one
 *   seen), so that two claims overlap only when they are equal; a CIDR of another size
 *   waits for the plan, and so does anything it overlaps (more than {@link MAX_ODD} of
 *   those: no more head start, the plan does the rest);
 * - never a destination the kernel already has a route to, ours or not, and never a
 *   destination an earlier node claimed.
 *
 * What only the whole list tells: whether another node listed later, and older, claims the
 * same range (the same CIDR, or one of another size over it). Its claim waits, and the first
 * reconcile then moves or removes the early route; until then (at most the rest of the first
 * list) that route leads to the node listed first.
 *
 * @module
 */
import { type KernelIndex, routeKey } from "./diff.ts";
import { type CheckedNode, type Claim, claimRoute } from "./check.ts";
import type { Route } from "./types.ts";

/** CIDRs of an unusual size tolerated before the head start gives up. */
export const MAX_ODD = 64;

function overlapsAny(c: Claim, claims: readonly Claim[]): boolean {
  for (let i = 0; i < claims.length; i++) if (claims[i].overlaps(c)) return true;
  return false;
}

/** Decides, node by node as the first list arrives, which routes may go in at once. */
export class HeadStart {
  #kernel: KernelIndex;
  #self: readonly Claim[];
  /** The usual prefix length of each family: that of our own first CIDR, else the first seen. */
  #prefix = new Map<number, number>();
  /** Destinations claimed by a node seen so far. */
  #claimed = new Set<string>();
  #odd: Claim[] = [];
  #off = false;

  /**
   * @param kernel the kernel's table as read before the list
   * @param self our own node, checked; undefined when it could not be read (then nothing
   *   goes early: its CIDRs are unknown)
   */
  constructor(kernel: KernelIndex, self: CheckedNode | undefined) {
    this.#kernel = kernel;
    this.#self = self?.claims ?? [];
    for (const c of this.#self) this.#usual(c);
    if (!self) this.#off = true;
  }

  /** Whether the head start has stopped (routes then wait for the plan). */
  get off(): boolean {
    return this.#off;
  }

  /** The routes of `node` that may be installed now; remembers its claims either way. */
  routes(node: CheckedNode): Route[] {
    const out: Route[] = [];
    if (this.#off || node.self) return out;
    for (let i = 0; i < node.claims.length; i++) {
      const c = node.claims[i];
      if (!this.#usual(c)) {
        this.#odd.push(c);
        if (this.#odd.length > MAX_ODD) this.#off = true;
        continue;
      }
      const key = routeKey(c);
      if (this.#claimed.has(key)) continue;
      this.#claimed.add(key);
      const route = claimRoute(c);
      if (route === undefined) continue;
      if (overlapsAny(c, this.#self) || overlapsAny(c, this.#odd)) continue;
      if (this.#kernel.ours.has(key) || this.#kernel.foreign.has(key)) continue;
      out.push(route);
    }
    return this.#off ? [] : out;
  }

  #usual(c: Claim): boolean {
    const usual = this.#prefix.get(c.family);
    if (usual === undefined) {
      this.#prefix.set(c.family, c.prefix);
      return true;
    }
    return usual === c.prefix;
  }
}
