/**
 * The reconciler's start, until its first reconcile ends it: the nodes of the first list
 * that arrive before the host's addresses are read wait, those that arrive before our own
 * node is seen are checked and kept, and once our node is there the head start sends sure
 * routes into one open batch as their nodes arrive (head_start.ts decides which). The first
 * reconcile plans against the table read here plus those routes, and closes the batch.
 *
 * @module
 */
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log.ts";
import type { KernelIndex } from "./diff.ts";
import { HeadStart } from "./head_start.ts";
import type { KernelView } from "./kernel_view.ts";
import type { NodeChecker } from "./node_checker.ts";
import type { CheckedNode, PlanRules } from "./check.ts";
import type { RouteBatch, RouteOp, RouteTable } from "./types.ts";

/** A head start under way: what decides, the open batch, and what was sent into it. */
export interface HeadStartState {
  readonly decide: HeadStart;
  /** The kernel's table as read before the list. */
  readonly kernel: KernelIndex;
  readonly batch: RouteBatch;
  readonly ops: RouteOp[];
}

/** What the start works with: the reconciler's own parts. */
export interface StartParts {
  readonly table: RouteTable;
  readonly protocol: number;
  readonly log: Logger;
  readonly checker: NodeChecker;
  readonly view: KernelView;
  readonly rules: () => PlanRules;
}

/** How the start ended, for the first reconcile. */
export interface StartEnd {
  /** The head start, if one began. */
  readonly head?: HeadStartState;
  /** Whether the route monitor saw a change that calls for a full read. */
  readonly kernelMoved: boolean;
}

/** The start of one reconciler; see the module's text. */
export class StartPhase {
  readonly #parts: StartParts;
  #waiting?: NodeInfo[];
  #early?: CheckedNode[];
  #head?: HeadStartState;
  #kernelMoved = false;
  #ended = false;
  readonly #over = Promise.withResolvers<undefined>();

  constructor(parts: StartParts) {
    this.#parts = parts;
  }

  /**
   * Reads the kernel's table and the host's addresses, then waits for our own node (`self`;
   * undefined: not there) and starts the head start with it. Returns early when the start
   * ends first.
   */
  async preload(self: Promise<NodeInfo | undefined>): Promise<void> {
    const { table, protocol, checker, view, rules } = this.#parts;
    this.#waiting = [];
    this.#early = [];
    try {
      const [routes, local] = await Promise.all([table.list(), table.localAddresses()]);
      if (this.#ended) return;
      checker.use(rules(), local);
      for (const node of this.#waiting) this.#early.push(checker.check(node));
      this.#waiting = undefined;
      // Not waited for past the first reconcile: our node may be in no list at all.
      const own = await Promise.race([self, this.#over.promise]);
      if (this.#ended || own === undefined) return;
      // The table as read before the list: whatever changes in it meanwhile, the full read
      // that follows the first reconcile (see the daemon's route monitor) catches.
      const kernel = view.read(routes);
      this.#head = {
        decide: new HeadStart(kernel, checker.check(own)),
        kernel,
        batch: table.openBatch(protocol),
        ops: [],
      };
      for (const node of this.#early) this.#send(node);
    } finally {
      this.#waiting = undefined;
      this.#early = undefined;
    }
  }

  /** A node that came before the host's addresses were read: kept for then, when waited for. */
  wait(node: NodeInfo): void {
    this.#waiting?.push(node);
  }

  /** A node checked: kept until our own node is there, else sent when the head start wants it. */
  checked(node: CheckedNode): void {
    if (this.#early) this.#early.push(node);
    else this.#send(node);
  }

  /** The route monitor saw a change that calls for a full read. */
  kernelMoved(): void {
    this.#kernelMoved = true;
  }

  /** Ends the start: no head start from now on. */
  end(): StartEnd {
    this.#ended = true;
    this.#over.resolve(undefined);
    return { head: this.#head, kernelMoved: this.#kernelMoved };
  }

  #send(node: CheckedNode): void {
    const head = this.#head;
    if (!head || head.decide.off) return;
    const routes = head.decide.routes(node);
    if (routes.length === 0) return;
    const ops: RouteOp[] = routes.map((route) => ({ op: "replace", route }));
    try {
      head.batch.write(ops);
    } catch (error) {
      // Only starting the batch can fail here, before anything was sent: the first reconcile
      // then applies everything as it would have without a head start. Never thrown to the
      // informer, which would take the node for a bad object.
      this.#head = undefined;
      this.#parts.log.warn("head start stopped: the batch did not start", { error });
      return;
    }
    for (const op of ops) head.ops.push(op);
  }
}
