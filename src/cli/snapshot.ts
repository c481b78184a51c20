/**
 * What the daemon would see right now: the nodes from the API (one paged list), the plan,
 * and optionally the kernel's table and the diff. Shared by `nodes` and `routes`.
 *
 * @module
 */
import { ConfigError, type DaemonConfig, parseDaemonConfig, readsMetadataOnly } from "../config.ts";
import { parseFlags, UsageError } from "./usage.ts";
import { findSelf, readMachineId } from "../own_node.ts";
import { type NodeInfo, toNodeInfo } from "../kube/node.ts";
import { parseNode } from "../routing/node_parse.ts";
import { checkNode } from "../routing/check.ts";
import { type NodesPlan, plan } from "../routing/plan.ts";
import { diff, indexKernel } from "../routing/diff.ts";
import { foreignRouteProblem, type Problem } from "../routing/problem.ts";
import { cidrContainsIp, formatCidr, makeCidr, parseCidr, parseIp } from "../net/ip.ts";
import type { KernelRoute, LocalAddress } from "../routing/types.ts";
import { silentLogger } from "../log.ts";

/** Flags common to `nodes` and `routes`. */
export interface ViewFlags {
  json: boolean;
  kubeconfig?: string;
  netns?: string;
}

/** The flags that stand for a daemon setting, by the environment variable they replace. */
const SETTING_FLAGS: Record<string, string> = {
  "--node": "NODE_NAME",
  "--cidr-annotation": "CIDR_ANNOTATION",
  "--address-annotation": "ADDRESS_ANNOTATION",
  "--protocol": "PROTOCOL",
};

/**
 * Parses the flags of `nodes` and `routes` and reads the daemon's settings: the environment,
 * with the setting flags over it. Throws {@link UsageError} for a bad flag or setting.
 */
export function parseView(
  args: string[],
  env: Record<string, string | undefined> = Deno.env.toObject(),
): { flags: ViewFlags; cfg: DaemonConfig } {
  const known: Record<string, boolean> = { "-o": true, "--output": true, "--kubeconfig": true };
  known["--netns"] = true;
  for (const f of Object.keys(SETTING_FLAGS)) known[f] = true;
  const given = parseFlags(args, known);
  const output = given.get("-o") ?? given.get("--output") ?? "table";
  if (output !== "json" && output !== "table") {
    throw new UsageError(`-o: expected json or table, not ${JSON.stringify(output)}`);
  }
  const merged = { ...env };
  for (const [flag, variable] of Object.entries(SETTING_FLAGS)) {
    if (given.has(flag)) merged[variable] = given.get(flag);
  }
  let cfg: DaemonConfig;
  try {
    cfg = parseDaemonConfig(merged);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const flag = Object.keys(SETTING_FLAGS).find((f) => SETTING_FLAGS[f] === e.variable);
    throw new UsageError(flag && given.has(flag) ? `${flag}: ${e.message}` : e.message);
  }
  return {
    flags: {
      json: output === "json",
      kubeconfig: given.get("--kubeconfig"),
      netns: given.get("--netns"),
    },
    cfg,
  };
}

/**
 * What the daemon would start from: the nodes, and this host's addresses and routes read
 * through the daemon's adapter (ROUTE_ADAPTER), in the namespace named by `--netns`.
 */
export async function readSnapshot(
  flags: ViewFlags,
  cfg: DaemonConfig,
): Promise<{ nodes: NodeInfo[]; local: LocalAddress[]; kernel: KernelRoute[] }> {
  const { kernelAdapter } = await import("../routing/adapter.ts");
  const { table } = await kernelAdapter(cfg.routeAdapter, {
    netns: flags.netns,
    log: silentLogger,
  });
  try {
    const [nodes, local, kernel] = await Promise.all([
      listNodes(cfg, flags.kubeconfig),
      table.localAddresses(),
      table.list(),
    ]);
    return { nodes, local, kernel };
  } finally {
    await table.close();
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
export function planFor(cfg: DaemonConfig, nodes: NodeInfo[], local: LocalAddress[]): NodesPlan {
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

/**
 * The problems the daemon would meet in the kernel: another owner's route in the way of a
 * planned one, and a next hop the kernel would refuse: not on-link (no device route of this
 * host covers it), or the broadcast address of a network of this host.
 */
export function kernelProblems(
  p: NodesPlan,
  kernel: readonly KernelRoute[],
  local: readonly LocalAddress[],
  protocol: number,
): Problem[] {
  const problems = diff(p.routes, indexKernel(kernel, protocol)).conflicts.map(
    foreignRouteProblem,
  );
  const links = kernel.flatMap((r) => {
    const c = r.via === undefined && r.dev !== undefined ? parseCidr(r.dst) : undefined;
    return c?.ok ? [c.cidr] : [];
  });
  const broadcasts = new Set(
    local.filter((a) => a.family === 4 && a.prefix <= 30).map((a) => {
      const ip = parseIp(a.address)!;
      const host = (1n << BigInt(32 - a.prefix)) - 1n;
      return formatCidr(makeCidr(4, ip.value | host, 32));
    }),
  );
  for (const r of p.routes) {
    const hop = parseIp(r.via);
    if (!hop) continue;
    const why = !links.some((l) => cidrContainsIp(l, hop))
      ? "the next hop is not on-link (no network of this host holds it)"
      : broadcasts.has(`${r.via}/32`)
      ? "the next hop is the broadcast address of a network of this host"
      : undefined;
    if (why === undefined) continue;
    problems.push({
      node: r.node,
      kind: "kernel",
      field: "route",
      value: `${r.dst} via ${r.via}`,
      reason: `the kernel would refuse it: ${why}`,
    });
  }
  return problems;
}
