/**
 * Nodes parsed and checked once: memoized per NodeInfo object (the informer keeps an object's
 * identity when an update changes nothing it keeps) while the rules and the host's addresses
 * stay the same. The parsed node itself is not kept: parsing again when the rules change is
 * cheap, and 5,000 of them would hold megabytes.
 *
 * @module
 */
import type { NodeInfo } from "../kube/node.ts";
import { type NetworkSource, parseNode } from "./node_parse.ts";
import { type CheckedNode, checkNode, type PlanRules } from "./plan.ts";
import type { LocalAddress } from "./types.ts";

/** Checks nodes against the rules of the moment, remembering each check. */
export class NodeChecker {
  #checked = new WeakMap<NodeInfo, CheckedNode>();
  #context = "";
  #rules: PlanRules | undefined;
  #local: readonly LocalAddress[] = [];

  constructor(readonly source: NetworkSource) {}

  /** Whether rules were given: until then nothing can be checked. */
  get ready(): boolean {
    return this.#rules !== undefined;
  }

  /** The host's addresses the checks use. */
  get local(): readonly LocalAddress[] {
    return this.#local;
  }

  /** Takes the rules and the host's addresses; forgets every check when either changed. */
  use(rules: PlanRules, local: readonly LocalAddress[] = this.#local): void {
    const context = JSON.stringify(
      [rules, local],
      (_k, v) => typeof v === "bigint" ? String(v) : v,
    );
    if (context !== this.#context) {
      this.#context = context;
      this.#checked = new WeakMap();
    }
    this.#rules = rules;
    this.#local = local;
  }

  /** The node checked with the rules given last (see {@link use}, which must come first). */
  check(node: NodeInfo): CheckedNode {
    let c = this.#checked.get(node);
    if (!c) {
      c = checkNode(parseNode(node, this.source), this.#rules!, this.#local);
      this.#checked.set(node, c);
    }
    return c;
  }
}
