/**
 * The benchmark's cluster: a host namespace with one LAN (172.16.0.1/16, fd00:50::1/64),
 * the embedded API server with N realistic (~15 KB) remote nodes plus our own, and the
 * network carried by annotations (as a Multus network is). Node k (1..N) owns one IPv4 and
 * one IPv6 CIDR, so the daemon wants exactly 2N routes.
 *
 * @module
 */
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import type { NodeJson } from "../src/devcluster/apiserver/store.ts";
import type { RouteOp } from "../src/routing/types.ts";
import { BenchNetns, deferCleanup } from "./lib.ts";

/** Annotation holding a node's CIDRs for the benchmark network. */
export const CIDR_ANNOTATION = "bench.xcluster.example/cidrs";
/** Annotation holding a node's addresses (next hops) on the benchmark network. */
export const ADDRESS_ANNOTATION = "bench.xcluster.example/addresses";
/** Route protocol of the daemon under test. */
export const PROTOCOL = 202;
/** Name of our own node. */
export const SELF = "node-0";

/** The addressing of node k (1..N) and the alternatives used for changes. */
export interface NodeAddressing {
  name: string;
  v4: string;
  v6: string;
  addr4: string;
  addr6: string;
  /** Another IPv4 CIDR of the same node (a changed annotation). */
  altV4: string;
  /** Another IPv4 address on the LAN (a changed address). */
  altAddr4: string;
}

/** Addressing of node `k`; k = 0 is our own node. */
export function addressing(k: number): NodeAddressing {
  const h = k + 1;
  const hi = h >> 8, lo = h & 255;
  return {
    name: `node-${k}`,
    v4: `10.${hi}.${lo}.0/24`,
    v6: `fd00:244:0:${h.toString(16)}::/64`,
    addr4: `172.16.${hi}.${lo}`,
    addr6: `fd00:50::${h.toString(16)}`,
    altV4: `10.${100 + hi}.${lo}.0/24`,
    altAddr4: `172.16.${100 + hi}.${lo}`,
  };
}

/** The Node object of node `k` with its CIDRs and addresses in the annotations. */
export function benchNode(
  k: number,
  over: { cidrs?: string; addresses?: string } = {},
): NodeJson {
  const a = addressing(k);
  return makeNode({
    name: a.name,
    podCIDRs: [`10.244.${k >> 8}.${k & 255}/32`],
    internalIPs: [a.addr4, a.addr6],
    annotations: {
      [CIDR_ANNOTATION]: over.cidrs ?? `${a.v4},${a.v6}`,
      [ADDRESS_ANNOTATION]: over.addresses ?? `${a.addr4},${a.addr6}`,
    },
    realistic: true,
  });
}

/** The raw `ip -batch` lines that install node k's two routes (the baseline). */
export function baselineLines(n: number): string[] {
  const lines: string[] = [];
  for (let k = 1; k <= n; k++) {
    const a = addressing(k);
    lines.push(`route add ${a.v4} via ${a.addr4} proto ${PROTOCOL}`);
    lines.push(`route add ${a.v6} via ${a.addr6} proto ${PROTOCOL}`);
  }
  return lines;
}

/** The same routes as {@link baselineLines}, as operations of the project's route tables. */
export function baselineOps(n: number): RouteOp[] {
  const ops: RouteOp[] = [];
  for (let k = 1; k <= n; k++) {
    const a = addressing(k);
    ops.push({ op: "replace", route: { family: 4, dst: a.v4, via: a.addr4, node: a.name } });
    ops.push({ op: "replace", route: { family: 6, dst: a.v6, via: a.addr6, node: a.name } });
  }
  return ops;
}

/**
 * The namespace of node `k` (our own node by default) with the LAN that every node's
 * addresses are on, holding node k's addresses.
 */
export async function hostNamespace(k = 0): Promise<BenchNetns> {
  const a = addressing(k);
  const ns = await BenchNetns.create();
  await ns.lan("lan0", [`${a.addr4}/16`, `${a.addr6}/64`]);
  return ns;
}

/** The API server with our node and `n` remote nodes, and a temp folder for the run. */
export interface BenchCluster {
  n: number;
  ns: BenchNetns;
  api: ApiServer;
  dir: string;
  kubeconfig: string;
  close(): Promise<void>;
}

/** Sets up the host namespace and the API server with `n` remote nodes. */
export async function startCluster(n: number): Promise<BenchCluster> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-bench-" });
  const removeDir = deferCleanup(`folder ${dir}`, () => Deno.remove(dir, { recursive: true }));
  const ns = await hostNamespace();
  const kubeconfig = `${dir}/kubeconfig`;
  // Bookmarks once a minute, as a real API server sends them.
  const api = await startApiServer({ kubeconfigPath: kubeconfig, bookmarkIntervalMs: 60_000 });
  const closeApi = deferCleanup("API server", () => api.close());
  for (let k = 0; k <= n; k++) api.nodes.create(benchNode(k));
  return {
    n,
    ns,
    api,
    dir,
    kubeconfig,
    async close() {
      await closeApi();
      await ns.delete();
      await removeDir();
    },
  };
}
