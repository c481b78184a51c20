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
import { type CheckedNode, checkNode, type PlanRules } from "./check.ts";
import type { LocalAddress } from "./types.ts";

/** Whether the two objects have the same members, each the same value (by identity). */
function sameMembers(a: object, b: object): boolean {
  const x = a as Record<string, unknown>, y = b as Record<string, unknown>;
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => x[k] === y[k]);
}

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

  /**
   * Takes the rules and the host's addresses; forgets every check when either changed, and
   * then returns true.
   */
  use(rules: PlanRules, local: readonly LocalAddress[] = this.#local): boolean {
    // Every reconcile comes here: the usual case (the same read of the host, the same rules)
    // is told without serializing them.
    if (this.#rules && local === this.#local && sameMembers(rules, this.#rules)) {
      this.#rules = rules;
      return false;
    }
    const context = JSON.stringify(
      [rules, local],
      (_k, v) => typeof v === "bigint" ? String(v) : v,
    );
    this.#rules = rules;
    this.#local = local;
    if (context === this.#context) return false;
    this.#context = context;
    this.#checked = new WeakMap();
    return true;
  }

  /** The node as checked before with the rules of now; undefined when it was not. */
  peek(node: NodeInfo): CheckedNode | undefined {
    return this.#checked.get(node);
  }

  /** The node checked with the rules given last (see {@link use}, which must come first). */
  check(node: NodeInfo): CheckedNode {
    let c = this.#checked.get(node);
    if (!c) {
      c = checkNode(parseNode(node, this.source), this.#rules!, this.#local, {
        ownAddressesOnly: true,
      });
      this.#checked.set(node, c);
    }
    return c;
  }
}
