/**
 * `nodes`: every node's CIDRs, next hops and problems, as the daemon sees them.
 *
 * @module
 */
import { createIprouteTable } from "../routing/iproute.ts";
import { configOrExit, listNodes, parseViewFlags, planFor, table } from "./snapshot.ts";

/** `nodes [-o json] [--kubeconfig FILE] [--netns NS]` */
export async function nodesCommand(args: string[]): Promise<number> {
  const cfg = configOrExit();
  if (typeof cfg === "number") return cfg;
  const flags = parseViewFlags(args);
  const [nodes, local] = await Promise.all([
    listNodes(cfg, flags.kubeconfig),
    createIprouteTable({ netns: flags.netns }).localAddresses(),
  ]);
  const p = planFor(cfg, nodes, local);
  if (flags.json) {
    console.log(JSON.stringify({ nodes: p.nodes }, null, 2));
    return 0;
  }
  const rows = p.nodes.map((n) => [
    n.self ? `${n.name} (self)` : n.name,
    n.cidrs.join(",") || "-",
    n.self ? "-" : [...new Set(n.routes.map((r) => r.via))].join(",") || "-",
    n.problems.map((x) => `${x.kind}: ${x.value ? x.value + ": " : ""}${x.reason}`).join("; ") ||
    "-",
  ]);
  console.log(table(["NODE", "CIDRS", "NEXT HOPS", "PROBLEMS"], rows));
  return 0;
}
