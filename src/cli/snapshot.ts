/**
 * What the daemon would see right now: the nodes from the API (one paged list), the plan,
 * and optionally the kernel's table and the diff. Shared by `nodes` and `routes`.
 *
 * @module
 */
import { ConfigError, type DaemonConfig, parseDaemonConfig, readsMetadataOnly } from "../config.ts";
import { findSelf, readMachineId } from "../daemon.ts";
import { type NodeInfo, toNodeInfo } from "../kube/node.ts";
import { parseNode } from "../routing/node_parse.ts";
import { checkNode, type Plan, plan } from "../routing/plan.ts";
import type { LocalAddress } from "../routing/types.ts";

/** Flags common to `nodes` and `routes`. */
export interface ViewFlags {
  json: boolean;
  kubeconfig?: string;
  netns?: string;
}

/** Parses `-o json|table`, `--kubeconfig F`, `--netns NS`. Throws on anything else. */
export function parseViewFlags(args: string[]): ViewFlags {
  const flags: ViewFlags = { json: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i], v = args[i + 1];
    if ((a === "-o" || a === "--output") && (v === "json" || v === "table")) {
      flags.json = v === "json";
      i++;
    } else if (a === "--kubeconfig" && v) {
      flags.kubeconfig = v;
      i++;
    } else if (a === "--netns" && v) {
      flags.netns = v;
      i++;
    } else {
      throw new Error(
        `unexpected argument ${
          JSON.stringify(a)
        } (flags: -o json|table, --kubeconfig FILE, --netns NS)`,
      );
    }
  }
  return flags;
}

/** Reads the environment as the daemon does; prints the one-line error and returns 2 if bad. */
export function configOrExit(): DaemonConfig | number {
  try {
    return parseDaemonConfig(Deno.env.toObject());
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`xcluster-cni: ${e.message}`);
      return 2;
    }
    throw e;
  }
}

/** Lists every node (paged) and keeps the projection the daemon keeps. */
export async function listNodes(cfg: DaemonConfig, kubeconfig?: string): Promise<NodeInfo[]> {
  const { loadKubeAccess } = await import("../kube/kubeconfig.ts");
  const { KubeClient } = await import("../kube/client.ts");
  const client = new KubeClient(await loadKubeAccess({ kubeconfig }));
  try {
    const keep = [cfg.cidrAnnotation, cfg.addressAnnotation];
    const nodes: NodeInfo[] = [];
    let cont: string | undefined;
    do {
      const page = await client.listNodes({
        limit: 500,
        continue: cont,
        metadataOnly: readsMetadataOnly(cfg),
        labelSelector: cfg.nodeSelector || undefined,
      });
      for (const item of page.items) nodes.push(toNodeInfo(item, keep));
      cont = page.continue || undefined;
    } while (cont);
    return nodes;
  } finally {
    client.close();
  }
}

/** The plan for the current nodes, as the daemon would make it on this host. */
export function planFor(cfg: DaemonConfig, nodes: NodeInfo[], local: LocalAddress[]): Plan {
  const source = { cidrAnnotation: cfg.cidrAnnotation, addressAnnotation: cfg.addressAnnotation };
  const selfName = findSelf(nodes, cfg.nodeName, cfg.nodeName ? "" : readMachineId()) ?? "";
  const rules = {
    selfName,
    allowedCidrs: cfg.allowedCidrs,
    minPrefixV4: cfg.minPrefixV4,
    minPrefixV6: cfg.minPrefixV6,
  };
  return plan(nodes.map((n) => checkNode(parseNode(n, source), rules, local)));
}

/** Formats rows as an aligned table with a header. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
