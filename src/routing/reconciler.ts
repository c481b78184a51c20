/**
 * The reconciler: the only writer of routes. Every trigger (watch event, route monitor,
 * periodic resync) collapses into one pending reconcile; never two run at once (folded.ts),
 * and what it must cover (nodes changed, routes lost, a full read) waits in pending.ts.
 *
 * Reading the whole kernel table costs more than planning, so a watch-triggered reconcile
 * plans the nodes that changed and diffs the destinations whose route changed against the
 * kernel view: where the kernel differs from the plan, as the last full read and the
 * operations since left it (kernel_view.ts). Anything that can make that view wrong (a route
 * monitor event that calls for it, a failed reconcile, the resync) forces a full read. Nodes
 * are checked once each (node_checker.ts), problems said once each (problem_log.ts), and the
 * first list may get a head start (start.ts, head_start.ts).
 *
 * @module
 */
import { Backoff } from "../kube/backoff.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log.ts";
import { type Diff, diff, diffSome, type KernelIndex, routeKey } from "./diff.ts";
import { Folded } from "./folded.ts";
import { type Change, eventKey, kernelSaid, KernelView } from "./kernel_view.ts";
import { NodeChecker } from "./node_checker.ts";
import type { NetworkSource } from "./node_parse.ts";
import { Pending, type PlanWork } from "./pending.ts";
import type { CheckedNode, PlanRules } from "./check.ts";
import { type HeadStartState, type StartEnd, StartPhase } from "./start.ts";
import { type Plan, type PlanChanges, planChanges, Planner } from "./plan.ts";
import type { Problem } from "./problem.ts";
import { ProblemLog } from "./problem_log.ts";
import type { LocalAddress, OpFailure, Route, RouteOp, RouteTable } from "./types.ts";

/** What asked for a reconcile ("retry": the one after a failed reconcile). */
export type Trigger = "start" | "watch" | "monitor" | "resync" | "retry";

/** Every trigger, for metrics. */
export const TRIGGERS: readonly Trigger[] = ["start", "watch", "monitor", "resync", "retry"];

/** The outcome of one reconcile. */
export interface ReconcileResult {
  readonly trigger: Trigger;
  readonly plan: Plan;
  /** Routes of ours in the kernel after the reconcile. */
  readonly installed: number;
  readonly applied: number;
  readonly failures: readonly OpFailure[];
  /** Every problem: the plan's, foreign routes in the way, kernel refusals. */
  readonly problems: readonly Problem[];
  readonly durationMs: number;
  /** Whether the kernel table was read in full for this reconcile. */
  readonly fullRead: boolean;
}

/** What the reconciler works with. */
export interface ReconcilerOptions {
  table: RouteTable;
  /** Current nodes (the informer's store). */
  nodes: () => Iterable<NodeInfo>;
  /** One current node by name (from the same store). */
  node: (name: string) => NodeInfo | undefined;
  source: NetworkSource;
  /** Safety rules; `selfName` may change once our node is found. */
  rules: () => PlanRules;
  protocol: number;
  log: Logger;
  /** Called with the problems that appeared in a reconcile (for Node Events). */
  onNewProblems?: (problems: Problem[]) => void;
  /** Called after every reconcile (state file, metrics); errors are logged. */
  onResult?: (result: ReconcileResult) => void | Promise<void>;
}

const NOTHING_REFUSED: ReadonlySet<RouteOp> = new Set();

/** Runs reconciles on demand, one at a time, folding triggers that arrive meanwhile. */
export class Reconciler {
  readonly #opts: ReconcilerOptions;
  readonly #checker: NodeChecker;
  readonly #planner = new Planner();
  readonly #pending = new Pending();
  readonly #view: KernelView;
  readonly #problems: ProblemLog;
  /** Undefined once the start is over (a reconcile has begun, or the reconciler stopped). */
  #start: StartPhase | undefined;
  /** The reconciles asked for, folded. */
  readonly #runs = new Folded<Trigger>(
    (trigger) => this.#run(trigger),
    // The most telling reason names the folded run.
    (pending, next) => pending === "watch" ? next : pending,
  );
  #last: ReconcileResult | undefined;
  /** After a failure, the next reconcile comes after a backoff (0.8 s doubling to 30 s). */
  readonly #retry: { backoff: Backoff; timer?: ReturnType<typeof setTimeout> } = {
    backoff: new Backoff(),
  };
  readonly #succeeded = Promise.withResolvers<boolean>();

  constructor(opts: ReconcilerOptions) {
    this.#opts = opts;
    this.#checker = new NodeChecker(opts.source);
    this.#view = new KernelView(opts.protocol);
    this.#problems = new ProblemLog(opts.log);
    this.#start = new StartPhase({ ...opts, checker: this.#checker, view: this.#view });
  }

  /**
   * Resolves true once a reconcile has succeeded (routes applied and `onResult` done), false
   * when the reconciler stops before one has: a failed reconcile is retried until one does.
   */
  get succeeded(): Promise<boolean> {
    return this.#succeeded.promise;
  }

  /** The last result, if any reconcile finished. */
  get last(): ReconcileResult | undefined {
    return this.#last;
  }

  /** For how many milliseconds no reconcile has run or been pending (0 while one is). */
  get quietMs(): number {
    return this.#runs.quietMs;
  }

  /**
   * Asks for a reconcile. Returns at once; the reconcile runs as soon as the current one
   * (if any) ends. `monitor` and `resync` also force a full read of the kernel table.
   */
  trigger(reason: Trigger): void {
    // A watch trigger that names no node: any node may have changed.
    if (reason === "watch") this.#pending.everyNode();
    this.#request(reason);
  }

  #request(reason: Trigger, full = reason !== "watch"): void {
    if (full) this.#pending.readKernel();
    this.#runs.request(reason);
  }

  /**
   * Takes the informer's changes and asks for a reconcile: only the nodes named are planned
   * again (see {@link Planner}).
   */
  nodesChanged(changes: readonly { name: string; old?: NodeInfo }[]): void {
    this.#pending.nodesChanged(changes);
    this.#request("watch");
  }

  /** Takes a kernel event from the route monitor: a full reconcile when the rule says so. */
  kernelEvent(e: { kind: string; dst?: string; protocol?: number }): void {
    const weight = this.#view.weigh(e, this.#last?.plan);
    if (weight === "none") return;
    // Before the first reconcile: it reads the kernel anyway, unless a head start read it
    // already (see #reconcile).
    if (this.#start) this.#start.kernelMoved();
    else if (weight === "full") this.trigger("monitor");
    else {
      // A route of ours gone: put back what is planned there, with no full read.
      this.#pending.lose(eventKey(e.dst!));
      this.#request("monitor", false);
    }
  }

  /**
   * Gets ready for the first list, so that {@link prepare} can check nodes while it is still
   * streaming in.
   *
   * Without `self`, reads the host's addresses; the first reconcile reads them again with
   * the routes, so that its view is fresh (when they are the same, the nodes checked
   * meanwhile are used as they are).
   *
   * With `self` (resolving to our own node, however it is found first), also reads the
   * kernel's table, and once our node is there starts the head start (see start.ts):
   * sure routes go into one open batch as their nodes arrive, and the first reconcile plans
   * against that table plus them and ends the batch with the rest. When our node is not
   * there (undefined) or comes after the list, it is as without.
   */
  async preload(self?: Promise<NodeInfo | undefined>): Promise<void> {
    if (self === undefined) {
      this.#checker.use(this.#opts.rules(), await this.#opts.table.localAddresses());
      return;
    }
    await this.#start?.preload(self);
  }

  /**
   * Parses and checks a node ahead of the reconcile that will need it, with the rules the
   * memo holds (a reconcile that finds them changed starts the memo afresh); during the
   * head start, also sends its sure routes to the kernel. Before the host's addresses are
   * read, the node is kept for then when a head start may come, else left to the reconcile.
   */
  prepare(node: NodeInfo): void {
    if (!this.#checker.ready) {
      this.#start?.wait(node);
      return;
    }
    // Checked also once the start is over: the reconcile finds the node's check memoized.
    const checked = this.#checker.check(node);
    this.#start?.checked(checked);
  }

  /** Resolves when no reconcile is pending or running. */
  idle(): Promise<void> {
    return this.#runs.idle();
  }

  /** Stops taking triggers; waits for a running reconcile (or head start) to end. */
  async stop(): Promise<void> {
    await this.#runs.stop();
    // After the run under way: its failure may have set one (a request once stopped is moot).
    clearTimeout(this.#retry.timer);
    this.#succeeded.resolve(false);
    // Routes already sent stay, as every route does when the daemon stops.
    await this.#endStart()?.head?.batch.close().catch(() => {});
  }

  async #run(trigger: Trigger): Promise<void> {
    try {
      const result = await this.#reconcile(trigger);
      this.#last = result;
      await this.#opts.onResult?.(result);
      clearTimeout(this.#retry.timer);
      this.#succeeded.resolve(true);
    } catch (e) {
      // Read the kernel and plan every node afresh: either may be what failed. Tried again
      // without waiting for a trigger: none may come before the resync, minutes later.
      this.#pending.readKernel();
      this.#pending.everyNode();
      const inMs = Math.round(this.#retry.backoff.next());
      this.#opts.log.error("reconcile failed; retrying", { trigger, error: e, inMs });
      clearTimeout(this.#retry.timer);
      this.#retry.timer = setTimeout(() => this.#request("retry"), inMs);
    }
  }

  async #reconcile(trigger: Trigger): Promise<ReconcileResult> {
    const t0 = performance.now();
    const { log } = this.#opts;
    const start = this.#endStart();
    const head = start?.head;
    const { kernel, local } = await this.#readKernel(head);
    if (this.#checker.use(this.#opts.rules(), local)) this.#pending.everyNode();
    const readAfter = head !== undefined && start?.kernelMoved === true;
    const t1 = performance.now();

    // Nothing waits from here to the batch: the plan is of the store as it is now, and the
    // changes that come meanwhile are the next plan's.
    const { index, desired, changes, diffed } = this.#planAndDiff(kernel, this.#pending.takePlan());
    const thePlan = this.#planner.plan();
    const { ops, conflicts } = diffed;
    const t2 = performance.now();
    const failures = await this.#send(ops, head);
    const t3 = performance.now();

    const refused = new Set(failures.map((f) => f.op));
    for (const op of head?.ops ?? []) if (refused.has(op)) index.ours.delete(routeKey(op.route));
    const debug = log.enabled("debug");
    const logChange = (change: Change, op: RouteOp, by: string) => {
      const { dst, via } = op.route;
      log.debug(change, { dst, via, node: "node" in op.route ? op.route.node : undefined, by });
    };
    if (debug) {
      for (const op of head?.ops ?? []) {
        if (!refused.has(op)) logChange("route added", op, "head start");
      }
    }
    this.#view.applied(
      index,
      ops,
      refused,
      debug ? (c, op) => logChange(c, op, trigger) : undefined,
    );
    // What the kernel said is kept with the view, where it differs from the plan.
    const said = kernelSaid(conflicts, failures);
    if (desired) this.#view.keepAll(index, desired, said);
    else if (changes) this.#view.keep(index, changes, said);
    // Gone again while the batch ran: the view must not count them in.
    for (const key of this.#pending.lostSince) this.#view.lose(key, this.#planner.wants(key));

    const problems: Problem[] = [...thePlan.problems, ...this.#view.problems()];
    const fresh = this.#problems.update(problems);
    if (fresh.length > 0) this.#opts.onNewProblems?.(fresh);

    const sent = ops.length + (head?.ops.length ?? 0);
    const result: ReconcileResult = {
      trigger,
      plan: thePlan,
      installed: this.#view.installed(thePlan.routeCount),
      applied: sent - failures.length,
      failures,
      problems,
      durationMs: performance.now() - t0,
      fullRead: kernel !== undefined && !head,
    };
    if (sent > 0 || debug) {
      log.info("reconciled", {
        trigger,
        nodes: thePlan.nodeCount,
        desired: thePlan.routeCount,
        applied: result.applied,
        ...(head ? { early: head.ops.length } : {}),
        failed: failures.length,
        ms: Math.round(result.durationMs * 10) / 10,
        // Where the time went: reading the kernel, planning and diffing, the batch.
        readMs: Math.round(t1 - t0),
        planMs: Math.round(t2 - t1),
        applyMs: Math.round(t3 - t2),
      });
    }
    // A deletion left routes the view cannot name (kernel_view.ts): read them before any
    // other change is diffed there.
    if (readAfter || !this.#view.known) this.#request("monitor");
    return result;
  }

  /**
   * The kernel in full, when this reconcile has it: read now (with the host's addresses),
   * or the head start's read of just before the list (a read now would catch its batch half
   * done; when the kernel changed meanwhile, a full read follows this reconcile). Else
   * nothing: the view stands for the kernel.
   */
  async #readKernel(
    head: HeadStartState | undefined,
  ): Promise<{ kernel?: KernelIndex; local?: LocalAddress[] }> {
    const read = this.#pending.takeRead();
    if (head) {
      // Planned as if the head start's routes were in; those the kernel refused come out
      // after the batch, like any refused operation.
      this.#view.applied(head.kernel, head.ops, NOTHING_REFUSED);
      return { kernel: head.kernel };
    }
    if (!read && this.#view.known) return {};
    const [routes, local] = await Promise.all([
      this.#opts.table.list(),
      this.#opts.table.localAddresses(),
    ]);
    return { kernel: this.#view.read(routes), local };
  }

  /** Sends the diff's operations: the rest of the head start's batch, else one batch. */
  async #send(ops: RouteOp[], head: HeadStartState | undefined): Promise<OpFailure[]> {
    // Registered before the batch runs: the monitor may report the echo of a deletion before
    // the batch has ended, and an unrecognised echo costs a full read.
    this.#view.expectEchoes(ops, 1);
    try {
      if (head) {
        head.batch.write(ops);
        return await head.batch.close();
      }
      return ops.length > 0 ? await this.#opts.table.apply(ops, this.#opts.protocol) : [];
    } catch (e) {
      this.#view.expectEchoes(ops, -1);
      throw e;
    }
  }

  /**
   * Plans, and diffs against the kernel: all of it when it was read (`kernel`), else the
   * destinations whose route changed, against the view.
   */
  #planAndDiff(kernel: KernelIndex | undefined, { changed, lost }: PlanWork): {
    index: KernelIndex;
    desired?: Route[];
    changes?: PlanChanges;
    diffed: Diff;
  } {
    if (kernel) {
      if (!(changed && this.#replan(changed))) this.#planAll();
      // The read may predate the loss of a route of ours.
      for (const key of lost) kernel.ours.delete(key);
      const desired = this.#planner.routes();
      return { index: kernel, desired, diffed: diff(desired, kernel) };
    }
    const changes = this.#replanTelling(changed);
    // What is planned where a route of ours went goes back.
    for (const key of lost) {
      if (changes.has(key)) continue;
      // The plan there is as before; the view says the route is gone.
      const now = this.#planner.routeAt(key);
      changes.set(key, { was: now, now });
    }
    const index = this.#view.around(changes);
    return { index, changes, diffed: diffSome(changes, index) };
  }

  /**
   * Plans the nodes changed since the last plan; undefined when it cannot, and every node
   * must be planned afresh. A node checked with the rules of now is found by identity: an
   * update that changed nothing the router reads keeps its object, and its plan.
   */
  #replan(changed: ReadonlyMap<string, NodeInfo | undefined>): PlanChanges | undefined {
    const removed: CheckedNode[] = [], added: CheckedNode[] = [];
    for (const [name, before] of changed) {
      const was = before && this.#checker.peek(before);
      if (before && !was) {
        // Not checked with these rules: what the plan had is unknown. Never expected.
        this.#opts.log.debug("planning every node afresh", { node: name });
        return undefined;
      }
      const now = this.#opts.node(name);
      const is = now && this.#checker.check(now);
      if (was === is) continue;
      if (was) removed.push(was);
      if (is) added.push(is);
    }
    return this.#planner.update(removed, added);
  }

  /**
   * Plans as {@link #replan} does, or every node afresh; either way returns the destinations
   * whose route changed, for a diff against the view.
   */
  #replanTelling(changed: ReadonlyMap<string, NodeInfo | undefined> | undefined): PlanChanges {
    const changes = changed && this.#replan(changed);
    if (changes) return changes;
    const before = this.#planner.routes();
    this.#planAll();
    return planChanges(before, this.#planner.routes());
  }

  /** Plans every node of the store afresh. */
  #planAll(): void {
    const checked: CheckedNode[] = [];
    for (const node of this.#opts.nodes()) checked.push(this.#checker.check(node));
    this.#planner.reset(checked);
  }

  /** Ends the start (no head start from now on); says how it ended, if it was not over. */
  #endStart(): StartEnd | undefined {
    const start = this.#start;
    this.#start = undefined;
    return start?.end();
  }
}
