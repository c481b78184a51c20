/**
 * What `nodes` tells of a network's allocation: the pools (size, used, free) as the allocator
 * would count them now, the nodes it would serve or could not, and who holds the Lease.
 *
 * @module
 */
import { allocate, type Decision } from "../alloc/allocate.ts";
import { type DaemonConfig, leaseName } from "../config.ts";
import type { NodeInfo } from "../kube/node.ts";

/** The allocation as seen from outside the daemon. */
export interface AllocationView {
  readonly lease: string;
  /** The Lease's holder; "" when free, undefined when it could not be read. */
  readonly holder: string | undefined;
  readonly renewTime?: string;
  readonly decision: Decision;
}

/** The decision the allocator would make on `nodes` now (nothing freed recently counted). */
export function allocationOf(cfg: DaemonConfig, nodes: readonly NodeInfo[]): Decision {
  return allocate({
    nodes: nodes.map((n) => ({
      name: n.name,
      creationTimestamp: n.creationTimestamp,
      annotation: n.annotations[cfg.cidrAnnotation],
    })),
    pools: cfg.clusterCidrs,
    recentlyFreed: new Map(),
    now: 0,
    quarantineMs: 0,
  });
}

/** Reads the network's Lease and puts it beside the decision. */
export async function allocationView(
  cfg: DaemonConfig,
  nodes: readonly NodeInfo[],
  kubeconfig?: string,
): Promise<AllocationView> {
  const { loadKubeAccess } = await import("../kube/kubeconfig.ts");
  const { KubeClient, ApiError } = await import("../kube/client.ts");
  const client = new KubeClient(await loadKubeAccess({ kubeconfig }));
  const lease = `${cfg.podNamespace}/${leaseName(cfg.cidrAnnotation)}`;
  let holder: string | undefined;
  let renewTime: string | undefined;
  try {
    const l = await client.getLease(cfg.podNamespace, leaseName(cfg.cidrAnnotation));
    holder = l.spec?.holderIdentity ?? "";
    renewTime = l.spec?.renewTime ?? undefined;
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) holder = "";
    else holder = undefined;
  } finally {
    client.close();
  }
  return { lease, holder, renewTime, decision: allocationOf(cfg, nodes) };
}
