/**
 * Kubernetes Events on Nodes whose CIDRs or addresses are refused, so that `kubectl
 * describe node` shows what this instance will not route. Needs only `events: create`.
 *
 * Every instance of a network sees a node's annotation alike, so each would report the same
 * problem: an Event's name is made from the problem and the network, so that the first
 * instance's post makes it and the others' get 409 AlreadyExists, and one object stands for
 * them all. A foreign route is a fact of the host that has it: its Event is on that host's
 * Node, naming the node whose route it blocks.
 *
 * @module
 */
import type { Problem, ProblemKind } from "./routing/problem.ts";
import { describeProblem, problemKey } from "./routing/problem.ts";
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
  const host = opts.host ?? "";
  const on = p.kind === "foreign-route" && host !== "" ? host : p.node;
  const said = `${opts.protocol}\u0000${on === p.node ? "" : host}\u0000${problemKey(p)}`;
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name: `${on}.xcluster-cni-${fnv1a(said)}`, namespace: EVENT_NAMESPACE },
    // kubectl describe finds a node's events by involvedObject.uid, which for Nodes the
    // kubelet sets to the node's name.
    involvedObject: { apiVersion: "v1", kind: "Node", name: on, uid: on },
    reason,
    message: (`xcluster-cni (protocol ${opts.protocol}${on === p.node ? "" : `, on ${on}`}): ` +
      describeProblem(p)).slice(0, 1024),
    type: "Warning",
    source: { component: "xcluster-cni", host },
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
    reportingComponent: "xcluster-cni",
    reportingInstance: host,
  };
}

const UTF8 = new TextEncoder();

/** FNV-1a, 32 bits, as 8 hex digits: a short name part that the same text always gives. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (const byte of UTF8.encode(text)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
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
    client.createEvent(EVENT_NAMESPACE, event).catch((error) => {
      // Another instance of the network posted it first.
      if ((error as { status?: number }).status === 409) return;
      opts.log.warn("posting a Node Event failed", { node: p.node, error });
    });
  }
}
