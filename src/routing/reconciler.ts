/**
 * The reconciler: the only writer of routes. Every trigger (watch event, route monitor,
 * periodic resync) collapses into one pending reconcile; never two run at once.
 *
 * Reading the whole kernel table costs more than planning, so a watch-triggered reconcile
 * diffs against the kernel view kept from the last full read plus the operations applied
 * since. Anything that can make that view wrong (the route monitor, a failed operation,
 * the resync) forces a full read.
 *
 * @module
 */
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log.ts";
import { diff, indexKernel, type KernelIndex, routeKey } from "./diff.ts";
import { HeadStart } from "./head_start.ts";
import { type NetworkSource, parseNode } from "./node_parse.ts";
import { type CheckedNode, checkNode, type Plan, plan, PlanMemo, type PlanRules } from "./plan.ts";
import { foreignRouteProblem, type Problem, problemKey } from "./problem.ts";
import type {
  KernelRoute,
  LocalAddress,
  OpFailure,
  RouteBatch,
  RouteOp,
  RouteTable,
} from "./types.ts";

/** What asked for a reconcile. */
export type Trigger = "start" | "watch" | "monitor" | "resync";

/** Every trigger, for metrics. */
export const TRIGGERS: readonly Trigger[] = ["start", "watch", "monitor", "resync"];

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

/** A head start under way: what decides, the open batch, and what was sent into it. */
interface HeadStartState {
  readonly decide: HeadStart;
  readonly batch: RouteBatch;
  readonly ops: RouteOp[];
}

/** Runs reconciles on demand, one at a time, folding triggers that arrive meanwhile. */
export class Reconciler {
  #opts: ReconcilerOptions;
  /** Checked nodes, valid while the rules and local addresses stay the same. */
  #checked = new WeakMap<NodeInfo, CheckedNode>();
  #checkContext = "";
  #planMemo = new PlanMemo();
  #pending: Trigger | undefined;
  #full = true;
  #running: Promise<void> | undefined;
  #kernel: KernelIndex | undefined;
  #local: LocalAddress[] = [];
  /** The rules the checked nodes were made with. */
  #rules: PlanRules | undefined;
  #reported = new Map<string, Problem>();
  /** Destinations we deleted ourselves, whose "Deleted" the route monitor will echo. */
  #ownDeletions = new Map<string, number>();
  #last: ReconcileResult | undefined;
  #wantedSets = new WeakMap<Plan, Set<string>>();
  #stopped = false;
  /** Whether a reconcile has begun or the reconciler stopped: no head start from then on. */
  #over = false;
  /** Resolves (to undefined) when {@link #over} becomes true. */
  #overSignal = Promise.withResolvers<undefined>();
  /** Nodes prepared before the rules could be made (the host's addresses unread). */
  #waiting: NodeInfo[] | undefined;
  /** Nodes checked before the head start could begin (our own node unseen). */
  #early: CheckedNode[] | undefined;
  /** The first list's head start: its batch stays open until the first reconcile ends it. */
  #head: HeadStartState | undefined;

  constructor(opts: ReconcilerOptions) {
    this.#opts = opts;
  }

  /** The last result, if any reconcile finished. */
  get last(): ReconcileResult | undefined {
    return this.#last;
  }

  /**
   * Asks for a reconcile. Returns at once; the reconcile runs as soon as the current one
   * (if any) ends. `monitor` and `resync` also force a full read of the kernel table.
   */
  trigger(reason: Trigger): void {
    if (this.#stopped) return;
    if (reason !== "watch") this.#full = true;
    // Keep the most telling reason for the folded run.
    if (this.#pending === undefined || this.#pending === "watch") this.#pending = reason;
    if (!this.#running) this.#running = this.#loop();
  }

  /**
   * Takes a kernel event from the route monitor. Route events are weighed by destination:
   *
   * - a route of ours added: our own write (ignored);
   * - a route of ours deleted: our own echo when we deleted it, else a full reconcile;
   * - another owner's route added or deleted at a destination we want: a full reconcile, which
   *   reports it in our way, or puts ours back once it has gone (a `replace` by another owner
   *   takes our route without a deletion message);
   * - any other route: ignored.
   *
   * Link and address changes always reconcile: a link going down flushes routes silently.
   */
  kernelEvent(e: { kind: string; dst?: string; protocol?: number }): void {
    const route = e.kind === "route-added" || e.kind === "route-deleted";
    if (route && e.dst !== undefined) {
      const key = routeKey({ family: e.dst.includes(":") ? 6 : 4, dst: e.dst });
      if (e.protocol === this.#opts.protocol || e.protocol === undefined) {
        if (e.kind === "route-added") return;
        const n = this.#ownDeletions.get(key);
        if (n !== undefined) {
          if (n > 1) this.#ownDeletions.set(key, n - 1);
          else this.#ownDeletions.delete(key);
          return;
        }
      } else if (!this.#wanted().has(key)) {
        return;
      }
    }
    this.trigger("monitor");
  }

  /** Destinations of the last plan, made once per plan and only when a foreign route moves. */
  #wanted(): ReadonlySet<string> {
    const last = this.#last?.plan;
    if (last === undefined) return new Set();
    let set = this.#wantedSets.get(last);
    if (!set) {
      set = new Set(last.routes.map(routeKey));
      this.#wantedSets.set(last, set);
    }
    return set;
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
   * kernel's table, and once our node is there starts the head start (see head_start.ts):
   * sure routes go into one open batch as their nodes arrive, and the first reconcile plans
   * against that table plus them and ends the batch with the rest. When our node is not
   * there (undefined) or comes after the list, it is as without.
   */
  async preload(self?: Promise<NodeInfo | undefined>): Promise<void> {
    const { table, protocol } = this.#opts;
    if (self === undefined) {
      this.#local = await table.localAddresses();
      this.#checkRules();
      return;
    }
    this.#waiting = [];
    this.#early = [];
    try {
      const [routes, local] = await Promise.all([table.list(), table.localAddresses()]);
      if (this.#over) return;
      this.#local = local;
      const rules = this.#checkRules();
      for (const node of this.#waiting) this.#early.push(this.#check(node, rules));
      this.#waiting = undefined;
      // Not waited for past the first reconcile: our node may be in no list at all.
      const own = await Promise.race([self, this.#overSignal.promise]);
      if (this.#over || own === undefined) return;
      // The table as read before the list: whatever changes in it meanwhile, the full read
      // that follows the first reconcile (see the daemon's route monitor) catches.
      this.#kernel = indexKernel(routes, protocol);
      const decide = new HeadStart(this.#kernel, this.#check(own, rules));
      this.#head = { decide, batch: table.openBatch(protocol), ops: [] };
      for (const node of this.#early) this.#headStart(node);
    } finally {
      this.#waiting = undefined;
      this.#early = undefined;
    }
  }

  /**
   * Parses and checks a node ahead of the reconcile that will need it, with the rules the
   * memo holds (a reconcile that finds them changed starts the memo afresh); during the
   * head start, also sends its sure routes to the kernel. Before the host's addresses are
   * read, the node is kept for then when a head start may come, else left to the reconcile.
   */
  prepare(node: NodeInfo): void {
    if (!this.#rules) {
      this.#waiting?.push(node);
      return;
    }
    const checked = this.#check(node, this.#rules);
    if (this.#early) this.#early.push(checked);
    else this.#headStart(checked);
  }

  #headStart(node: CheckedNode): void {
    const head = this.#head;
    if (!head || head.decide.off) return;
    const routes = head.decide.routes(node);
    if (routes.length === 0) return;
    const ops: RouteOp[] = routes.map((route) => ({ op: "replace", route }));
    try {
      head.batch.write(ops);
    } catch (error) {
      // Only starting `ip` can fail here, before anything was sent: the first reconcile then
      // applies everything as it would have without a head start. Never thrown to the
      // informer, which would take the node for a bad object.
      this.#head = undefined;
      this.#opts.log.warn("head start stopped: the batch did not start", { error });
      return;
    }
    for (const op of ops) head.ops.push(op);
  }

  /** The rules, with the memo of checked nodes reset when they or our addresses changed. */
  #checkRules(): PlanRules {
    const rules = this.#opts.rules();
    const context = JSON.stringify(
      [rules, this.#local],
      (_k, v) => typeof v === "bigint" ? String(v) : v,
    );
    if (context !== this.#checkContext) {
      this.#checkContext = context;
      this.#checked = new WeakMap();
    }
    this.#rules = rules;
    return rules;
  }

  #check(node: NodeInfo, rules: PlanRules): CheckedNode {
    // The parsed node is not kept: parsing again when the rules change is cheap, and 5,000
    // of them would hold megabytes.
    let c = this.#checked.get(node);
    if (!c) {
      c = checkNode(parseNode(node, this.#opts.source), rules, this.#local);
      this.#checked.set(node, c);
    }
    return c;
  }

  /** Resolves when no reconcile is pending or running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Stops taking triggers; waits for a running reconcile (or head start) to end. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pending = undefined;
    await this.idle();
    // Routes already sent stay, as every route does when the daemon stops.
    await this.#endHeadStart()?.batch.close().catch(() => {});
  }

  async #loop(): Promise<void> {
    try {
      while (this.#pending !== undefined && !this.#stopped) {
        const trigger = this.#pending;
        this.#pending = undefined;
        try {
          const result = await this.#reconcile(trigger);
          this.#last = result;
          await this.#opts.onResult?.(result);
        } catch (e) {
          this.#full = true;
          this.#opts.log.error("reconcile failed", { trigger, error: e });
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #reconcile(trigger: Trigger): Promise<ReconcileResult> {
    const t0 = performance.now();
    const { table, protocol, log } = this.#opts;
    const head = this.#endHeadStart();
    // The head start's view was read just before the list, and nothing else has written
    // since; a read now would also catch its batch half done.
    if (head) this.#full = false;
    const fullRead = this.#full || this.#kernel === undefined;
    if (fullRead) {
      this.#full = false;
      this.#ownDeletions.clear();
      const [routes, local] = await Promise.all([table.list(), table.localAddresses()]);
      this.#kernel = indexKernel(routes, protocol);
      this.#local = local;
    }
    const kernel = this.#kernel!;
    // Planned as if the head start's routes were in; those the kernel refused come out of
    // the view below, like any refused operation.
    for (const op of head?.ops ?? []) kernel.ours.set(routeKey(op.route), [ourRoute(op, protocol)]);
    const t1 = performance.now();

    const rules = this.#checkRules();
    const checked: CheckedNode[] = [];
    for (const node of this.#opts.nodes()) checked.push(this.#check(node, rules));
    const thePlan = plan(checked, this.#planMemo);
    const { ops, conflicts } = diff(thePlan.routes, kernel);
    const t2 = performance.now();
    // Registered before the batch runs: the monitor may print the echo of a deletion before
    // `ip -batch` has exited, and an unrecognised echo costs a full read.
    const deletions = ops.filter((op) => op.op === "delete").map((op) => routeKey(op.route));
    this.#expectEchoes(deletions, 1);
    let failures: OpFailure[] = [];
    try {
      if (head) {
        head.batch.write(ops);
        failures = await head.batch.close();
      } else if (ops.length > 0) {
        failures = await table.apply(ops, protocol);
      }
    } catch (e) {
      this.#expectEchoes(deletions, -1);
      throw e;
    }
    const t3 = performance.now();

    const failed = new Set(failures.map((f) => f.op));
    const debug = log.enabled("debug");
    for (const op of head?.ops ?? []) {
      if (failed.has(op)) kernel.ours.delete(routeKey(op.route));
      else if (debug && op.op === "replace") {
        const { dst, via, node } = op.route;
        log.debug("route added", { dst, via, node, trigger: "head start" });
      }
    }
    for (const op of ops) {
      const key = routeKey(op.route);
      if (failed.has(op)) {
        if (op.op === "delete") this.#expectEchoes([key], -1);
        continue;
      }
      if (debug) {
        const msg = op.op === "delete"
          ? "route deleted"
          : kernel.ours.has(key)
          ? "route replaced"
          : "route added";
        const { dst, via } = op.route;
        log.debug(msg, { dst, via, node: "node" in op.route ? op.route.node : undefined, trigger });
      }
      if (op.op === "delete") {
        const left = kernel.ours.get(key)?.filter((r) => r !== op.route) ?? [];
        if (left.length > 0) kernel.ours.set(key, left);
        else kernel.ours.delete(key);
      } else {
        kernel.ours.set(key, [ourRoute(op, protocol)]);
      }
    }
    // A refused batch line changes nothing, so the view stays true; it is retried next time.

    const problems: Problem[] = [...thePlan.problems];
    for (const c of conflicts) problems.push(foreignRouteProblem(c));
    for (const f of failures) {
      const r = f.op.route;
      problems.push({
        node: "node" in r ? r.node : "",
        kind: "kernel",
        field: "route",
        value: `${r.dst} via ${r.via ?? "-"}`,
        reason: `${f.op.op} refused by the kernel: ${f.error}`,
      });
    }
    this.#report(problems);

    const sent = ops.length + (head?.ops.length ?? 0);
    const result: ReconcileResult = {
      trigger,
      plan: thePlan,
      installed: kernel.ours.size,
      applied: sent - failures.length,
      failures,
      problems,
      durationMs: performance.now() - t0,
      fullRead,
    };
    if (sent > 0 || log.enabled("debug")) {
      log.info("reconciled", {
        trigger,
        nodes: checked.length,
        desired: thePlan.routes.length,
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
    return result;
  }

  /** Ends the head start (or rules it out); returns its state when it had begun. */
  #endHeadStart(): HeadStartState | undefined {
    this.#over = true;
    this.#overSignal.resolve(undefined);
    this.#waiting = undefined;
    this.#early = undefined;
    const head = this.#head;
    this.#head = undefined;
    return head;
  }

  /** Counts (+1) or uncounts (-1) the monitor echoes expected for our own deletions. */
  #expectEchoes(keys: readonly string[], delta: 1 | -1): void {
    for (const key of keys) {
      const n = (this.#ownDeletions.get(key) ?? 0) + delta;
      if (n > 0) this.#ownDeletions.set(key, n);
      else this.#ownDeletions.delete(key);
    }
  }

  /**
   * Logs each problem once when it appears and once when it is gone, with a stable message
   * and the values in fields. A node without CIDRs for this network is normal where a network
   * covers some nodes only: that is said at debug level.
   */
  #report(problems: readonly Problem[]): void {
    const { log } = this.#opts;
    const now = new Map(problems.map((p) => [problemKey(p), p]));
    const fresh: Problem[] = [];
    for (const [key, p] of now) {
      if (this.#reported.has(key)) continue;
      fresh.push(p);
      const fields = {
        node: p.node,
        kind: p.kind,
        field: p.field,
        value: p.value,
        reason: p.reason,
      };
      if (p.kind === "no-cidrs") log.debug("node problem", fields);
      else log.warn("node problem", fields);
    }
    for (const [key, p] of this.#reported) {
      if (now.has(key)) continue;
      const fields = { node: p.node, kind: p.kind, field: p.field, value: p.value };
      if (p.kind === "no-cidrs") log.debug("node problem resolved", fields);
      else log.info("node problem resolved", fields);
    }
    this.#reported = now;
    if (fresh.length > 0) this.#opts.onNewProblems?.(fresh);
  }
}

/** The kernel's route for a replace of ours, as a read would show it. */
function ourRoute(op: RouteOp, protocol: number): KernelRoute {
  const { family, dst, via } = op.route;
  return { family, dst, via, protocol };
}
