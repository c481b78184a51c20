/**
 * The allocator of one network: while this instance leads (holds the network's Lease), every
 * node without a CIDR of a family gets one from the pools, written into its CIDR annotation.
 *
 * What to write is the pure decision of allocate.ts over the informer's nodes. Two things
 * keep it from handing out a CIDR twice while the watch lags behind its own writes:
 *
 * - a value written is assumed for its node until the store shows it (or the node goes), so
 *   the next decision counts it as held;
 * - a node is written only when it still has the value the decision started from, with its
 *   resourceVersion as precondition (see {@link AnnotationWrite}): a change by anyone else
 *   meanwhile wins, and the node is decided again from what is there now.
 *
 * A newly elected allocator starts from a fresh list (the daemon relists before calling
 * {@link Allocator.lead}), so writes of the previous leader are never missed; with
 * NODE_SELECTOR it is also told what the nodes off the network hold.
 *
 * Decisions fold like reconciles: one runs at a time, changes that arrive meanwhile make one
 * more. Writes stop the moment leadership is lost.
 *
 * @module
 */
import type { AnnotateOutcome } from "../kube/annotate.ts";
import type { StoreChange } from "../kube/informer.ts";
import type { NodeInfo } from "../kube/node.ts";
import type { Logger } from "../log.ts";
import {
  allocate,
  AllocMemo,
  type AllocNode,
  type AllocProblem,
  type NodeUpdate,
  type PoolStats,
} from "./allocate.ts";
import { updateRecentlyFreed } from "./freed.ts";
import type { Pool } from "./pools.ts";

/**
 * Writes a node's new annotation value when the node still has `update.previous`, with a
 * resourceVersion precondition. Throws (an ApiError: 403, 409 after retries, an outage) when
 * it cannot.
 */
export type AnnotationWrite = (
  update: NodeUpdate,
  signal: AbortSignal,
) => Promise<AnnotateOutcome>;

/** Options of an {@link Allocator}. */
export interface AllocatorOptions {
  /** The informer's nodes (already narrowed by NODE_SELECTOR). */
  nodes: () => Iterable<NodeInfo>;
  /** The network's CIDR annotation. */
  annotation: string;
  pools: readonly Pool[];
  /** How long a freed CIDR is the last choice (the lease duration). */
  quarantineMs: number;
  write: AnnotationWrite;
  /**
   * With NODE_SELECTOR, a node leaving the view may only have stopped matching: this looks it
   * up, giving its annotation while it exists (its CIDRs stay taken), "gone" once deleted.
   */
  lookup?: (name: string) => Promise<string | undefined | "gone">;
  log: Logger;
  /** Called with the problems that appeared in a decision (for Node Events). */
  onNewProblems?: (problems: AllocProblem[]) => void;
  /** Wall clock in ms (tests). */
  now?: () => number;
}

/** Counters and the last decision's state, for metrics and `nodes`. */
export interface AllocatorStats {
  leader: boolean;
  /** CIDRs written. */
  allocations: number;
  /** Writes that failed, by cause: "forbidden" (403), "conflict", "error". */
  failures: Record<string, number>;
  pools: readonly PoolStats[];
  problems: readonly AllocProblem[];
}

/** From the first change to the decision that takes it in, with those that came meanwhile. */
const DECIDE_DELAY_MS = 10;
/** Writes in flight at once: 100 joining nodes are written in a few round trips. */
const CONCURRENT_WRITES = 16;
/** Nodes off the network are looked up again, when the pools are full, at most this often. */
const OUTSIDE_RECHECK_MS = 30_000;
/** Retry of failed writes: doubles up to the maximum. */
const RETRY_MS = { initial: 1000, max: 30_000 };

/** Allocates the nodes' CIDRs of one network while leading. */
export class Allocator {
  readonly #opts: AllocatorOptions;
  readonly #now: () => number;
  /** Values written that the store may not show yet, by node. */
  readonly #assumed = new Map<string, string>();
  readonly #memo = new AllocMemo();
  /** Nodes that left the selection but exist: what they hold stays taken. */
  readonly #outside = new Map<string, AllocNode>();
  #outsideCheckedAt = -Infinity;
  #recentlyFreed: ReadonlyMap<string, number> = new Map();
  #signal: AbortSignal | undefined;
  /** Set by {@link Allocator.finish}: no write starts any more. */
  #finishing = false;
  #pending = false;
  #running: Promise<void> | undefined;
  #retry: { timer?: ReturnType<typeof setTimeout>; ms: number } = { ms: RETRY_MS.initial };
  #reported = new Map<string, AllocProblem>();
  readonly #stats: AllocatorStats = {
    leader: false,
    allocations: 0,
    failures: {},
    pools: [],
    problems: [],
  };
  /** Last time a failure of each cause was logged, to keep the log readable. */
  readonly #loggedAt = new Map<string, number>();

  constructor(opts: AllocatorOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
  }

  /** A copy of the counters and the last decision's pools and problems. */
  stats(): AllocatorStats {
    return { ...this.#stats, failures: { ...this.#stats.failures } };
  }

  /** Whether this instance decides now. */
  get leading(): boolean {
    return this.#signal !== undefined && !this.#signal.aborted && !this.#finishing;
  }

  /**
   * Starts deciding, until `signal` aborts (leadership lost) or {@link finish} is called.
   * The nodes must be a fresh list by now. `offNetwork` is every node's annotation value,
   * selected or not (from a list without NODE_SELECTOR): nodes the store does not hold are
   * off the network, and what they hold stays taken.
   */
  lead(signal: AbortSignal, offNetwork: ReadonlyMap<string, string> = new Map()): void {
    const inStore = new Set<string>();
    for (const n of this.#opts.nodes()) inStore.add(n.name);
    for (const [name, annotation] of offNetwork) {
      if (inStore.has(name)) continue;
      this.#outside.set(name, { name, creationTimestamp: "", annotation, holdOnly: true });
    }
    this.#signal = signal;
    this.#stats.leader = true;
    this.#retry.ms = RETRY_MS.initial;
    signal.addEventListener("abort", () => {
      this.#stats.leader = false;
      clearTimeout(this.#retry.timer);
    }, { once: true });
    this.#opts.log.info("allocating node CIDRs", {
      annotation: this.#opts.annotation,
      pools: this.#opts.pools.map((p) => p.text).join(","),
    });
    this.changed();
  }

  /**
   * Takes changes of the nodes: keeps track of freed CIDRs (also while not leading, so that
   * a new leader knows what was freed recently) and, leading, decides again when a change
   * can matter: a node added or deleted, or its annotation changed. Without `changes`
   * (leadership taken, a retry), decides again in any case.
   */
  changed(changes?: readonly StoreChange<NodeInfo>[]): void {
    const { annotation, quarantineMs } = this.#opts;
    let relevant = changes === undefined;
    const lost: AllocNode[] = [];
    for (const c of changes ?? []) {
      const before = c.old?.annotations[annotation];
      const after = c.value?.annotations[annotation];
      if (c.type === "updated" && before === after) continue;
      if (c.type === "updated" && after !== undefined && this.#assumed.get(c.name) === after) {
        // The echo of our own write: the next decision would change nothing.
        this.#assumed.delete(c.name);
        continue;
      }
      relevant = true;
      // A node added (again) or deleted: a value written to what was there before is void.
      if (c.type !== "updated") this.#assumed.delete(c.name);
      if (c.type === "added") this.#outside.delete(c.name);
      if (c.old === undefined || before === undefined) continue;
      const node = { name: c.name, creationTimestamp: "", annotation: before };
      if (c.type === "deleted" && this.#opts.lookup) {
        // Held until known to be deleted rather than only unselected.
        this.#outside.set(c.name, { ...node, holdOnly: true });
        void this.#lookUp(c.name);
      } else {
        lost.push(node);
      }
    }
    if (lost.length > 0) {
      // A deleted node's CIDRs are free once no node holds them.
      this.#recentlyFreed = updateRecentlyFreed(
        this.#recentlyFreed,
        lost,
        this.#view(),
        this.#now(),
        quarantineMs,
      );
    }
    if (!relevant || !this.leading) return;
    this.#pending = true;
    // A short wait folds a burst (nodes joining together arrive as separate events) into
    // one decision over the whole cluster.
    this.#running ??= new Promise((r) => setTimeout(r, DECIDE_DELAY_MS)).then(() => this.#loop());
  }

  /** Finds out whether a node that left the view was deleted; frees what it held if so. */
  async #lookUp(name: string): Promise<void> {
    const held = this.#outside.get(name);
    if (held === undefined || !this.#opts.lookup) return;
    let found: string | undefined | "gone";
    try {
      found = await this.#opts.lookup(name);
    } catch (error) {
      this.#opts.log.debug("looking up a node off the network failed", { node: name, error });
      return;
    }
    if (this.#outside.get(name) !== held) return;
    if (found === "gone") {
      this.#outside.delete(name);
      this.#recentlyFreed = updateRecentlyFreed(
        this.#recentlyFreed,
        [held],
        this.#view(),
        this.#now(),
        this.#opts.quarantineMs,
      );
    } else {
      this.#outside.set(name, { ...held, annotation: found });
    }
    this.changed();
  }

  /** Resolves when no decision is pending or running. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /**
   * Starts no more writes and resolves once those in flight have ended, not aborted: the
   * Lease must not be given back while a write may still land, or the next leader could
   * decide without it (client-go asks the same of ReleaseOnCancel). Leadership lost
   * meanwhile still aborts them.
   */
  async finish(): Promise<void> {
    this.#finishing = true;
    clearTimeout(this.#retry.timer);
    await this.idle();
  }

  /** The nodes as the decision reads them: the store, with the values written since. */
  #view(): AllocNode[] {
    const { annotation } = this.#opts;
    const out: AllocNode[] = [];
    let kept = 0;
    for (const n of this.#opts.nodes()) {
      const stored = n.annotations[annotation];
      let assumed = this.#assumed.get(n.name);
      if (assumed !== undefined && assumed === stored) {
        this.#assumed.delete(n.name);
        assumed = undefined;
      }
      if (assumed !== undefined) kept++;
      out.push({
        name: n.name,
        creationTimestamp: n.creationTimestamp,
        annotation: assumed ?? stored,
      });
    }
    if (kept < this.#assumed.size) {
      // Written to a node the store no longer holds: the value went with the node, and must
      // not shadow a node of the same name that registers again.
      const names = new Set(out.map((n) => n.name));
      for (const name of this.#assumed.keys()) if (!names.has(name)) this.#assumed.delete(name);
    }
    for (const node of this.#outside.values()) out.push(node);
    return out;
  }

  async #loop(): Promise<void> {
    try {
      while (this.#pending && this.leading) {
        this.#pending = false;
        await this.#decide(this.#signal!);
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #decide(signal: AbortSignal): Promise<void> {
    const decision = allocate({
      nodes: this.#view(),
      pools: this.#opts.pools,
      recentlyFreed: this.#recentlyFreed,
      now: this.#now(),
      quarantineMs: this.#opts.quarantineMs,
      memo: this.#memo,
    });
    this.#stats.pools = decision.pools;
    this.#stats.problems = decision.problems;
    this.#report(decision.problems);
    const full = decision.problems.some((p) => p.kind === "pools-full");
    if (
      full && this.#outside.size > 0 && this.#now() - this.#outsideCheckedAt >= OUTSIDE_RECHECK_MS
    ) {
      // Some may have been deleted since they left the network.
      this.#outsideCheckedAt = this.#now();
      for (const name of this.#outside.keys()) void this.#lookUp(name);
    }
    let failed = false;
    const queue = [...decision.updates];
    const worker = async () => {
      for (let u = queue.shift(); u !== undefined && this.leading; u = queue.shift()) {
        if (!await this.#write(u, signal)) failed = true;
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENT_WRITES, queue.length) }, worker));
    if (failed && this.leading) this.#retryLater();
    else if (!failed) this.#retry.ms = RETRY_MS.initial;
  }

  /** Writes one update; false when it is to be tried again later: it failed, or the node changed. */
  async #write(u: NodeUpdate, signal: AbortSignal): Promise<boolean> {
    const { log } = this.#opts;
    try {
      const outcome = await this.#opts.write(u, signal);
      if (outcome === "written") {
        // Counted as held at once: the watch event of this write may come after the next
        // decision.
        this.#assumed.set(u.node, u.value);
        this.#stats.allocations += u.added.length;
        log.info("node CIDRs allocated", {
          node: u.node,
          cidrs: u.added.join(","),
          value: u.value,
        });
      } else if (outcome === "changed") {
        // Someone else wrote first. Deciding again now would decide the same from a store
        // that has not caught up: their value comes with the watch, which decides again;
        // the retry is the fallback should it not come.
        log.info("node changed before its CIDRs were written; deciding again", { node: u.node });
        return false;
      }
      return true;
    } catch (error) {
      if (signal.aborted) return true;
      const status = (error as { status?: number }).status;
      const cause = status === 403 ? "forbidden" : status === 409 ? "conflict" : "error";
      this.#stats.failures[cause] = (this.#stats.failures[cause] ?? 0) + 1;
      const last = this.#loggedAt.get(cause) ?? -Infinity;
      if (this.#now() - last >= RETRY_MS.max) {
        this.#loggedAt.set(cause, this.#now());
        log.error(
          cause === "forbidden"
            ? "not allowed to write node CIDRs (RBAC patch on nodes, or an admission policy); routing goes on"
            : "writing node CIDRs failed; retrying",
          { node: u.node, cidrs: u.added.join(","), error },
        );
      }
      return false;
    }
  }

  #retryLater(): void {
    clearTimeout(this.#retry.timer);
    const ms = this.#retry.ms;
    this.#retry.ms = Math.min(ms * 2, RETRY_MS.max);
    this.#retry.timer = setTimeout(() => this.changed(), ms);
  }

  /** Logs each problem once when it appears and once when it is gone. */
  #report(problems: readonly AllocProblem[]): void {
    const now = new Map(problems.map((p) => [`${p.node} ${p.family} ${p.kind}`, p]));
    const fresh: AllocProblem[] = [];
    for (const [key, p] of now) {
      if (this.#reported.has(key)) continue;
      fresh.push(p);
      this.#opts.log.warn("node left without a CIDR", {
        node: p.node,
        family: `IPv${p.family}`,
        kind: p.kind,
        reason: p.reason,
      });
    }
    for (const [key, p] of this.#reported) {
      if (!now.has(key)) {
        this.#opts.log.info("resolved: node has a CIDR again", {
          node: p.node,
          family: `IPv${p.family}`,
        });
      }
    }
    this.#reported = now;
    if (fresh.length > 0) this.#opts.onNewProblems?.(fresh);
  }
}
