/**
 * The writers beside the router, for networks nobody annotates by hand: the allocator, which
 * writes node CIDRs into CIDR_ANNOTATION while this instance holds the network's Lease, and
 * the address publisher, which writes our own node's address into ADDRESS_ANNOTATION. Both
 * write into the Nodes the router reads, so what they write comes back as watch events.
 *
 * @module
 */
import { Allocator, type AllocatorStats } from "./alloc/allocator.ts";
import type { AllocProblem } from "./alloc/allocate.ts";
import { type DaemonConfig, leaseName } from "./config.ts";
import { annotatedNodes, annotateNode, nodeAnnotation } from "./kube/annotate.ts";
import { Backoff, sleep } from "./kube/backoff.ts";
import type { KubeClient } from "./kube/client.ts";
import type { NodeInformer } from "./kube/informer.ts";
import { LEADER_ELECTION_DEFAULTS, LeaderElector } from "./kube/leader.ts";
import type { NodeInfo } from "./kube/node.ts";
import type { Logger } from "./log.ts";
import { type AddressSelector, addressSelector } from "./publish/addresses.ts";
import type { AddressSource } from "./publish/sources.ts";
import {
  type AddressPublisher,
  type PublisherCounters,
  startAddressPublisher,
} from "./publish/publisher.ts";
import type { Problem } from "./routing/problem.ts";

/** What the writers report to the metrics. */
export interface WriterStats {
  allocation?: AllocatorStats & { holder: string | undefined };
  publication?: PublisherCounters & { problem: string | undefined };
}

/** The running writers. */
export interface Writers {
  stats(): WriterStats;
  stop(): Promise<void>;
}

/** Timings of the Lease (tests shorten them). */
export type LeaseTiming = {
  [K in keyof typeof LEADER_ELECTION_DEFAULTS]?: number;
};

/** What the writers work with. */
export interface WriterContext {
  cfg: DaemonConfig;
  client: KubeClient;
  informer: NodeInformer<NodeInfo>;
  log: Logger;
  /** The host's addresses, for the publisher (the kernel adapter's). */
  addresses: (selector: AddressSelector) => AddressSource;
  lease?: LeaseTiming;
  /** Posts Node Events for problems (NODE_EVENTS). */
  postEvents?: (problems: Problem[]) => void;
}

/** The problem reported on a node the pools have no CIDR for. */
export function allocationProblem(p: AllocProblem, annotation: string): Problem {
  return { node: p.node, kind: "no-free-cidr", field: annotation, value: "", reason: p.reason };
}

/** Starts what the configuration asks for: allocation, publication, both or neither. */
export function startWriters(ctx: WriterContext): Writers {
  const stops: (() => Promise<void>)[] = [];
  const stats: (() => WriterStats)[] = [];
  if (ctx.cfg.clusterCidrs.length > 0) startAllocation(ctx, stops, stats);
  if (ctx.cfg.addressInterface !== "" || ctx.cfg.addressSubnets.length > 0) {
    startPublication(ctx, stops, stats);
  }
  return {
    stats: () => Object.assign({}, ...stats.map((s) => s())),
    stop: async () => {
      await Promise.allSettled(stops.map((s) => s()));
    },
  };
}

function startAllocation(
  ctx: WriterContext,
  stops: (() => Promise<void>)[],
  stats: (() => WriterStats)[],
): void {
  const { cfg, client, informer, log } = ctx;
  const lease = { ...LEADER_ELECTION_DEFAULTS, ...ctx.lease };
  const allocator = new Allocator({
    nodes: () => informer.store.values(),
    annotation: cfg.cidrAnnotation,
    pools: cfg.clusterCidrs,
    // A CIDR freed less than a lease period ago may still be in use by a node that has not
    // caught up yet: it is the last choice.
    quarantineMs: lease.leaseDurationMs,
    write: (u, signal) => annotateNode(client, u.node, cfg.cidrAnnotation, u, signal),
    lookup: cfg.nodeSelector === ""
      ? undefined
      : (name) => nodeAnnotation(client, name, cfg.cidrAnnotation),
    log,
    onNewProblems: ctx.postEvents &&
      ((ps) => ctx.postEvents!(ps.map((p) => allocationProblem(p, cfg.cidrAnnotation)))),
  });
  informer.onChange((changes) => allocator.changed(changes));
  const elector = new LeaderElector(client, {
    namespace: cfg.podNamespace,
    name: leaseName(cfg.cidrAnnotation),
    identity: cfg.nodeName,
    ...lease,
    log,
    onStartedLeading: async (signal) => {
      // The watch may lag behind the writes of the leader before: decide on a fresh list.
      await informer.synced;
      await informer.relist();
      const offNetwork = cfg.nodeSelector === ""
        ? undefined
        : await allAnnotated(client, cfg.cidrAnnotation, log, signal);
      if (!signal.aborted) allocator.lead(signal, offNetwork);
    },
    onNewLeader: (holder) => log.info("allocation lease held", { holder }),
  });
  const running = elector.run();
  stops.push(async () => {
    await allocator.finish();
    await elector.stop();
    await running;
  });
  stats.push(() => ({ allocation: { ...allocator.stats(), holder: elector.leader } }));
}

/**
 * Every node's CIDR annotation, selected or not: the informer sees only the nodes
 * NODE_SELECTOR selects, but nodes off the network keep what they hold. Tried until it
 * succeeds or leadership ends.
 */
async function allAnnotated(
  client: KubeClient,
  annotation: string,
  log: Logger,
  signal: AbortSignal,
): Promise<Map<string, string>> {
  const backoff = new Backoff();
  for (;;) {
    try {
      return await annotatedNodes(client, annotation, signal);
    } catch (error) {
      if (signal.aborted) return new Map();
      const inMs = Math.round(backoff.next());
      log.warn("listing the nodes off the network failed; retrying", { error, inMs });
      await sleep(inMs, signal);
    }
  }
}

function startPublication(
  ctx: WriterContext,
  stops: (() => Promise<void>)[],
  stats: (() => WriterStats)[],
): void {
  const { cfg, client, informer, log } = ctx;
  const selector = addressSelector(cfg.addressInterface, cfg.addressSubnets)!;
  const own = () => informer.store.get(cfg.nodeName);
  let problem: string | undefined;
  const publisher: AddressPublisher = startAddressPublisher({
    source: ctx.addresses(selector),
    selector,
    current: () => {
      const node = own();
      return node === undefined ? undefined : node.annotations[cfg.addressAnnotation] ?? "";
    },
    publish: async (value) => {
      // Our own node's address is ours alone to write: a hand edit is put back.
      const outcome = await annotateNode(client, cfg.nodeName, cfg.addressAnnotation, {
        value,
        overwrite: true,
      });
      if (outcome === "gone") throw new Error(`node ${cfg.nodeName} not found`);
      log.info("node address published", { node: cfg.nodeName, value });
    },
    log,
    onProblem: (p) => problem = p,
  });
  informer.onChange((changes) => {
    if (changes.some((c) => c.name === cfg.nodeName)) publisher.recheck();
  });
  stops.push(() => publisher.close());
  stats.push(() => ({ publication: { ...publisher.counters, problem } }));
}
