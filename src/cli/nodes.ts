/**
 * `nodes`: every node's CIDRs, next hops and problems, as the daemon sees them; with
 * allocation on, also the pools and who holds the network's Lease.
 *
 * @module
 */
import { cidrContains, parseCidr } from "../net/ip.ts";
import { allocationView } from "./allocation.ts";
import { kernelProblems, parseView, planFor, readSnapshot, table } from "./snapshot.ts";

/** `nodes [-o json] [--kubeconfig FILE] [--netns NS]` */
export async function nodesCommand(args: string[]): Promise<number> {
  const { flags, cfg } = parseView(args);
  const { nodes, local, kernel } = await readSnapshot(flags, cfg);
  const p = planFor(cfg, nodes, local);
  const inKernel = kernelProblems(p, kernel, local, cfg.protocol);
  const alloc = cfg.clusterCidrs.length > 0
    ? await allocationView(cfg, nodes, flags.kubeconfig)
    : undefined;
  if (flags.json) {
    const nodesOut = p.nodes.map((n) => ({
      ...n,
      problems: [...n.problems, ...inKernel.filter((x) => x.node === n.name)],
    }));
    console.log(JSON.stringify({ nodes: nodesOut, allocation: alloc }, null, 2));
    return 0;
  }
  // What the allocator has still to write, or cannot: shown on the node it concerns.
  const pending = new Map<string, string[]>();
  for (const u of alloc?.decision.updates ?? []) {
    pending.set(u.node, [`allocation pending: ${u.added.join(",")}`]);
  }
  for (const x of alloc?.decision.problems ?? []) {
    pending.set(x.node, [...pending.get(x.node) ?? [], `${x.kind}: IPv${x.family}: ${x.reason}`]);
  }
  const rows = p.nodes.map((n) => [
    n.self ? `${n.name} (self)` : n.name,
    n.cidrs.join(",") || "-",
    n.self ? "-" : [...new Set(n.routes.map((r) => r.via))].join(",") || "-",
    [
      ...[...n.problems, ...inKernel.filter((x) => x.node === n.name)].map((x) =>
        `${x.kind}: ${x.value ? x.value + ": " : ""}${x.reason}`
      ),
      ...pending.get(n.name) ?? [],
    ].join("; ") || "-",
  ]);
  console.log(table(["NODE", "CIDRS", "NEXT HOPS", "PROBLEMS"], rows));
  if (alloc) {
    const holder = alloc.holder === undefined
      ? "(lease not readable)"
      : alloc.holder === ""
      ? "(nobody)"
      : `${alloc.holder}${alloc.renewTime ? `, renewed ${alloc.renewTime}` : ""}`;
    console.log(`\nallocation lease ${alloc.lease}: ${holder}`);
    console.log(table(
      ["POOL", "FAMILY", "SIZE", "USED", "FREE"],
      alloc.decision.pools.map((s) => {
        // The decision counts what it would hand out as used: show what is used now.
        const given = alloc.decision.allocated.filter((c) => poolHas(s.pool, c)).length;
        return [
          s.pool,
          `IPv${s.family}`,
          String(s.size),
          String(s.used - given),
          String(s.free + given),
        ];
      }),
    ));
  }
  return 0;
}

/** Whether a CIDR text belongs to a pool given as BASE/PREFIX/NODEPREFIX. */
function poolHas(pool: string, cidr: string): boolean {
  const base = pool.slice(0, pool.lastIndexOf("/"));
  const outer = parseCidr(base), inner = parseCidr(cidr);
  return outer.ok && inner.ok && cidrContains(outer.cidr, inner.cidr);
}
