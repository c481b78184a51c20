/**
 * What the next reconcile must cover: the nodes changed since the last plan, the
 * destinations where a route of ours went that we did not delete, and whether the kernel
 * must be read in full. A reconcile takes the read when it begins and the rest when it plans
 * (nothing waits from there to its batch); what comes after each take is the next one's.
 *
 * Rule: when in doubt, more. Every node is planned afresh at the start and whenever a
 * trigger names no node; after a failure the kernel is read in full too.
 *
 * @module
 */
import type { NodeInfo } from "../kube/node.ts";

/** What a reconcile plans. */
export interface PlanWork {
  /**
   * The nodes changed, each as the last plan had it (undefined: it had none); undefined:
   * every node, afresh.
   */
  readonly changed: ReadonlyMap<string, NodeInfo | undefined> | undefined;
  /** Destinations (route keys) where a route of ours went: what is planned there goes back. */
  readonly lost: ReadonlySet<string>;
}

/** The work asked for since the last reconcile took its share. */
export class Pending {
  #changed: Map<string, NodeInfo | undefined> | undefined;
  #lost = new Set<string>();
  #read = true;

  /** Nodes the informer changed; the first change of a node since the plan tells what it had. */
  nodesChanged(changes: readonly { name: string; old?: NodeInfo }[]): void {
    const changed = this.#changed;
    if (!changed) return;
    for (const c of changes) if (!changed.has(c.name)) changed.set(c.name, c.old);
  }

  /** Any node may have changed (or the rules did): plan every node afresh. */
  everyNode(): void {
    this.#changed = undefined;
  }

  /** A route of ours went from destination `key`. */
  lose(key: string): void {
    this.#lost.add(key);
  }

  /** The kernel may differ from what we know of it: read it in full. */
  readKernel(): void {
    this.#read = true;
  }

  /** Whether the reconcile that begins now must read the kernel in full. */
  takeRead(): boolean {
    const read = this.#read;
    this.#read = false;
    return read;
  }

  /** What the reconcile planning now must plan. */
  takePlan(): PlanWork {
    const work = { changed: this.#changed, lost: this.#lost };
    this.#changed = new Map();
    this.#lost = new Set();
    return work;
  }

  /** Destinations lost since the last {@link takePlan}: gone again while its batch ran. */
  get lostSince(): ReadonlySet<string> {
    return this.#lost;
  }
}
