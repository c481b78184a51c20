/**
 * Figure 2, change latency: 500 changes one at a time (a node's CIDR annotation, its
 * address annotation, the node deleted, the node added back), each from the API write (a
 * call on the embedded server's store) until `ip monitor` shows the kernel changed.
 *
 * @module
 */
import {
  ADDRESS_ANNOTATION,
  addressing,
  type BenchCluster,
  benchNode,
  CIDR_ANNOTATION,
} from "./cluster.ts";
import type { DaemonProcess } from "./daemon.ts";
import {
  type Figure,
  percentile,
  round,
  routeLine,
  type RouteMonitor,
  sleep,
  summary,
} from "./lib.ts";

/** The kinds of change, in the order they are applied to one node. */
export const KINDS = ["cidr", "address", "delete", "add"] as const;
type Kind = typeof KINDS[number];

const TIMEOUT_MS = 5000;

/** Applies change `kind` to node `k`; returns the kernel lines that prove it landed. */
function change(c: BenchCluster, k: number, kind: Kind): ((line: string) => boolean)[] {
  const a = addressing(k);
  const store = c.api.nodes;
  switch (kind) {
    case "cidr":
      store.patch(a.name, "merge", {
        metadata: { annotations: { [CIDR_ANNOTATION]: `${a.altV4},${a.v6}` } },
      });
      return [routeLine(a.altV4, { via: a.addr4 })];
    case "address":
      store.patch(a.name, "merge", {
        metadata: { annotations: { [ADDRESS_ANNOTATION]: `${a.altAddr4},${a.addr6}` } },
      });
      return [routeLine(a.altV4, { via: a.altAddr4 })];
    case "delete":
      store.delete(a.name);
      return [routeLine(a.altV4, { deleted: true }), routeLine(a.v6, { deleted: true })];
    case "add":
      store.create(benchNode(k));
      return [routeLine(a.v4, { via: a.addr4 }), routeLine(a.v6, { via: a.addr6 })];
  }
}

/** Runs `count` changes; every node touched ends as it started. */
export async function changeLatency(
  c: BenchCluster,
  daemon: DaemonProcess,
  monitor: RouteMonitor,
  count: number,
): Promise<{ figure: Figure; samples: number[] }> {
  const s0 = await daemon.stats();
  const all: number[] = [];
  const byKind = new Map<Kind, number[]>(KINDS.map((k) => [k, []]));
  let timeouts = 0;
  for (let i = 0; i < count; i++) {
    const kind = KINDS[i % KINDS.length];
    const k = 1 + ((Math.floor(i / KINDS.length) * 7919) % c.n);
    // Wait registration first, then the write: no line can be missed.
    const pending: Promise<number>[] = [];
    const t0 = performance.now();
    for (const match of change(c, k, kind)) pending.push(monitor.waitFor(match, TIMEOUT_MS));
    let ms: number;
    try {
      ms = Math.max(...await Promise.all(pending)) - t0;
    } catch {
      timeouts++;
      ms = TIMEOUT_MS;
    }
    all.push(ms);
    byKind.get(kind)!.push(ms);
    // Let the reconcile that made the change finish before the next write.
    await sleep(20);
  }
  const s1 = await daemon.stats();
  const reconciles: Record<string, number> = {};
  for (const [k, v] of Object.entries(s1.reconciles)) reconciles[k] = v - (s0.reconciles[k] ?? 0);
  const runs = s1.durationCount - s0.durationCount;
  const reconcileMeanMs = round(((s1.durationSumS - s0.durationSumS) / Math.max(1, runs)) * 1000);
  const kinds: Record<string, unknown> = {};
  for (const [k, xs] of byKind) kinds[k] = summary(xs);
  return {
    samples: all,
    figure: {
      figure: 2,
      name: "change-latency",
      n: c.n,
      what: `p99 of ${count} changes, API write → kernel`,
      unit: "ms",
      value: percentile(all, 99),
      target: { on: "value", max: 50 },
      details: { ...summary(all), timeouts, byKind: kinds, reconciles, reconcileMeanMs },
    },
  };
}
