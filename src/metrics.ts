/**
 * The daemon's metrics in Prometheus text format. Plain counters and gauges kept from each
 * reconcile's result and the informer's counters; no client library.
 *
 * @module
 */
import type { InformerStats } from "./kube/informer.ts";
import type { WriterStats } from "./zero_touch.ts";
import { PROBLEM_KINDS, type ProblemKind } from "./routing/problem.ts";
import { type ReconcileResult, type Trigger, TRIGGERS } from "./routing/reconciler.ts";

const BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Metrics of one daemon instance. */
export class Metrics {
  /** Set after the first reconcile following the first full list. */
  ready = false;
  #desired = 0;
  #installed = 0;
  #failed = 0;
  #nodes = 0;
  #problems = new Map<ProblemKind, number>();
  #reconciles = new Map<Trigger, number>(TRIGGERS.map((t) => [t, 0]));
  #buckets = BUCKETS.map(() => 0);
  #durationSum = 0;
  #durationCount = 0;
  /** The informer's counters, read at each scrape: they move while no reconcile runs. */
  informer: () => InformerStats | undefined = () => undefined;
  /** The allocator's and the address publisher's state, read at each scrape. */
  writers: () => WriterStats = () => ({});

  constructor(readonly protocol: number, readonly version: string) {}

  /** Takes in one reconcile's result. */
  record(r: ReconcileResult): void {
    this.#desired = r.plan.routeCount;
    this.#installed = r.installed;
    this.#failed = r.failures.length;
    this.#nodes = r.plan.nodeCount;
    const kinds = new Map<ProblemKind, Set<string>>();
    for (const p of r.problems) {
      const set = kinds.get(p.kind) ?? new Set();
      set.add(p.node);
      kinds.set(p.kind, set);
    }
    // A node without CIDRs is normal where a network covers some nodes only: no gauge.
    this.#problems = new Map(
      PROBLEM_KINDS.filter((k) => k !== "no-cidrs").map((k) => [k, kinds.get(k)?.size ?? 0]),
    );
    this.#reconciles.set(r.trigger, (this.#reconciles.get(r.trigger) ?? 0) + 1);
    const s = r.durationMs / 1000;
    BUCKETS.forEach((b, i) => {
      if (s <= b) this.#buckets[i]++;
    });
    this.#durationSum += s;
    this.#durationCount++;
  }

  /** The Prometheus text exposition. */
  render(): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP xcluster_cni_${name} ${help}`, `# TYPE xcluster_cni_${name} ${type}`);
      for (const l of lines) out.push(`xcluster_cni_${name}${l}`);
    };
    const { allocation, publication } = this.writers();
    const problems = new Map(this.#problems);
    if (allocation) {
      const short = new Set(allocation.problems.map((p) => p.node));
      problems.set("no-free-cidr", allocation.leader ? short.size : 0);
    }
    const inf = this.informer() ??
      { lists: 0, relists: 0, watchRestarts: 0, apiErrors: {}, shortWatches: 0, stalledWatches: 0 };
    metric("build_info", "gauge", "Version and route protocol of this instance.", [
      `{version="${this.version}",protocol="${this.protocol}"} 1`,
    ]);
    metric("routes_desired", "gauge", "Routes the plan wants.", [` ${this.#desired}`]);
    metric("routes_installed", "gauge", "Routes of our protocol in the kernel.", [
      ` ${this.#installed}`,
    ]);
    metric("routes_failed", "gauge", "Route operations the kernel refused in the last reconcile.", [
      ` ${this.#failed}`,
    ]);
    metric("nodes", "gauge", "Nodes seen.", [` ${this.#nodes}`]);
    metric(
      "nodes_with_problems",
      "gauge",
      "Nodes with at least one refused or unusable entry, by reason.",
      [...problems].map(([k, v]) => `{reason="${k}"} ${v}`),
    );
    metric(
      "reconciles_total",
      "counter",
      "Reconciles run, by what triggered them.",
      [...this.#reconciles].map(([k, v]) => `{trigger="${k}"} ${v}`),
    );
    // Each bucket already counts every duration at or below its bound.
    const hist = BUCKETS.map((b, i) => `_bucket{le="${b}"} ${this.#buckets[i]}`);
    hist.push(`_bucket{le="+Inf"} ${this.#durationCount}`);
    hist.push(`_sum ${this.#durationSum}`, `_count ${this.#durationCount}`);
    metric("reconcile_duration_seconds", "histogram", "Time of one reconcile.", hist);
    metric("lists_total", "counter", "Full lists of the Nodes (the first and every relist).", [
      ` ${inf.lists}`,
    ]);
    metric("relists_total", "counter", "Relists after a 410 Expired.", [` ${inf.relists}`]);
    metric("watch_restarts_total", "counter", "Node watches started again after one ended.", [
      ` ${inf.watchRestarts}`,
    ]);
    metric(
      "short_watches_total",
      "counter",
      "Node watches that ended within a second without an event (backed off as failures).",
      [` ${inf.shortWatches}`],
    );
    metric(
      "stalled_watches_total",
      "counter",
      "Node watches still open past their timeout and a grace, ended here as silent connections.",
      [` ${inf.stalledWatches}`],
    );
    metric(
      "api_errors_total",
      "counter",
      "Failed Kubernetes API requests, by HTTP status (0: no response).",
      Object.entries(inf.apiErrors).map(([code, n]) => `{code="${code}"} ${n}`),
    );
    metric("last_sync_timestamp_seconds", "gauge", "Time of the last complete list.", [
      ` ${inf.lastSyncTime ? inf.lastSyncTime.getTime() / 1000 : 0}`,
    ]);
    if (allocation) renderAllocation(metric, allocation);
    if (publication) {
      metric("address_publications_total", "counter", "Own node's address annotation written.", [
        ` ${publication.publications}`,
      ]);
      metric("address_publication_failures_total", "counter", "Writes of it that failed.", [
        ` ${publication.failures}`,
      ]);
      metric(
        "address_problem",
        "gauge",
        "1 while the address to publish cannot be found (the annotation is left as it was).",
        [` ${publication.problem === undefined ? 0 : 1}`],
      );
    }
    return out.join("\n") + "\n";
  }
}

type Emit = (name: string, type: string, help: string, lines: string[]) => void;

function renderAllocation(metric: Emit, a: NonNullable<WriterStats["allocation"]>): void {
  metric("allocation_leader", "gauge", "1 while this instance holds the allocation Lease.", [
    ` ${a.leader ? 1 : 0}`,
  ]);
  const pool = (p: { pool: string; family: number }) =>
    `{pool="${p.pool}",family="ipv${p.family}"}`;
  metric(
    "pool_size",
    "gauge",
    "Node CIDRs a pool holds (as last seen by the leader).",
    a.pools.map((p) => `${pool(p)} ${p.size}`),
  );
  metric(
    "pool_used",
    "gauge",
    "Node CIDRs of a pool that nodes hold.",
    a.pools.map((p) => `${pool(p)} ${p.used}`),
  );
  metric("allocations_total", "counter", "Node CIDRs written by this instance.", [
    ` ${a.allocations}`,
  ]);
  metric(
    "allocation_failures_total",
    "counter",
    "Writes of node CIDRs that failed, by cause (forbidden: RBAC; conflict; error).",
    ["forbidden", "conflict", "error"].map((c) => `{cause="${c}"} ${a.failures[c] ?? 0}`),
  );
}
