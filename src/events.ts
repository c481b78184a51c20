/**
 * Kubernetes Events on Nodes whose CIDRs or addresses are refused, so that `kubectl
 * describe node` shows what this instance will not route. Needs only `events: create`.
 *
 * @module
 */
import type { Problem, ProblemKind } from "./routing/problem.ts";
import { describeProblem } from "./routing/problem.ts";
import type { Logger } from "./log.ts";

/** Event reasons by problem kind; kinds without one post no Event. */
const REASONS: Partial<Record<ProblemKind, string>> = {
  malformed: "MalformedNetworkAnnotation",
  refused: "NetworkCIDRRefused",
  conflict: "NetworkCIDRConflict",
  "foreign-route": "ForeignRouteConflict",
  "no-free-cidr": "NetworkCIDRNotAvailable",
};

/** Node Events are recorded in this namespace, as the kubelet does. */
export const EVENT_NAMESPACE = "default";
/** At most this many Node Events are posted at once. */
export const MAX_EVENTS_AT_ONCE = 20;

/** Builds the core/v1 Event for a problem, or undefined when the kind posts none. */
export function nodeEvent(
  p: Problem,
  opts: { protocol: number; now?: Date; host?: string },
): Record<string, unknown> | undefined {
  const reason = REASONS[p.kind];
  if (!reason) return undefined;
  const now = (opts.now ?? new Date()).toISOString();
  const suffix = `${Date.now().toString(16)}${Math.floor(Math.random() * 0xffff).toString(16)}`;
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: `${p.node}.${suffix}`, namespace: EVENT_NAMESPACE },
    // kubectl describe finds a node's events by involvedObject.uid, which for Nodes the
    // kubelet sets to the node's name.
    involvedObject: { apiVersion: "v1", kind: "Node", name: p.node, uid: p.node },
    reason,
    message: `xcluster-cni (protocol ${opts.protocol}): ${describeProblem(p)}`.slice(0, 1024),
    type: "Warning",
    source: { component: "xcluster-cni", host: opts.host ?? "" },
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
    reportingComponent: "xcluster-cni",
    reportingInstance: opts.host ?? "",
  };
}

/**
 * Posts the Events of new problems without waiting for them, at most
 * {@link MAX_EVENTS_AT_ONCE}: a flood of bad nodes must not turn into a flood of API writes.
 * A failed post is logged, never thrown.
 */
export function postNodeEvents(
  client: { createEvent(namespace: string, event: unknown): Promise<void> },
  problems: readonly Problem[],
  opts: { protocol: number; host: string; log: Logger },
): void {
  let posted = 0;
  for (const p of problems) {
    if (posted === MAX_EVENTS_AT_ONCE) break;
    const event = nodeEvent(p, opts);
    if (!event) continue;
    posted++;
    client.createEvent(EVENT_NAMESPACE, event).catch((error) =>
      opts.log.warn("posting a Node Event failed", { node: p.node, error })
    );
  }
}
