/**
 * Our own node: which of the Nodes it is, and what follows on this host from its plan after
 * each reconcile (the node state file kube-node reads, the main network's conflist once).
 *
 * @module
 */
import type { DaemonConfig } from "./config.ts";
import type { NodeInfo } from "./kube/node.ts";
import type { Logger } from "./log.ts";
import type { Plan } from "./routing/plan.ts";
import type { RouteTable } from "./routing/types.ts";
import { NodeStateFile } from "./state.ts";

/** Reads /etc/machine-id (or the file named), trimmed; "" when absent. */
export function readMachineId(path = "/etc/machine-id"): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return "";
  }
}

/**
 * Finds our node: by name, else by machine ID. Two nodes with one machine ID (hosts cloned
 * from one image) give none: taking either would route and hand out another node's CIDRs.
 */
export function findSelf(
  nodes: Iterable<NodeInfo>,
  nodeName: string,
  machineId: string,
): string | undefined {
  if (nodeName !== "") return nodeName;
  const [only, more] = withMachineId(nodes, machineId);
  return more === undefined ? only : undefined;
}

/** The names of the nodes whose machine ID is `machineId` (none for an empty one). */
function withMachineId(nodes: Iterable<NodeInfo>, machineId: string): string[] {
  if (machineId === "") return [];
  const names: string[] = [];
  for (const n of nodes) if (n.machineID === machineId) names.push(n.name);
  return names;
}

/** What {@link OwnNode} works with. */
export interface OwnNodeOptions {
  cfg: Pick<DaemonConfig, "nodeName" | "stateDir" | "cidrAnnotation" | "cniConfDir">;
  /** The nodes as the informer has them. */
  nodes: () => ReadonlyMap<string, NodeInfo>;
  /** Where the MTU of our address's interface is found, for the conflist. */
  table: Pick<RouteTable, "localAddresses">;
  /** Write the main network's conflist once our node is planned. */
  conflist: boolean;
  /** This host's machine ID, when NODE_NAME is unset; default: read from /etc/machine-id. */
  machineId?: string;
  log: Logger;
}

/**
 * Our node, named by NODE_NAME or, without it, found by this host's machine ID among the
 * nodes (once found, kept).
 */
export class OwnNode {
  readonly #opts: OwnNodeOptions;
  readonly #machineId: string;
  #name: string;
  #conflistPending: boolean;
  #warned = false;
  readonly #stateFile: NodeStateFile;

  constructor(opts: OwnNodeOptions) {
    this.#opts = opts;
    this.#name = opts.cfg.nodeName;
    this.#machineId = this.#name === "" ? opts.machineId ?? readMachineId() : "";
    this.#conflistPending = opts.conflist;
    this.#stateFile = new NodeStateFile(opts.cfg.stateDir, opts.cfg.cidrAnnotation);
  }

  /** Our node's name; "" while no node has this host's machine ID. */
  get name(): string {
    return this.#name ||= findSelf(this.#opts.nodes().values(), "", this.#machineId) ?? "";
  }

  /**
   * Follows a reconcile's plan on this host: says once when our node is not found, writes
   * the main network's conflist once our node is planned (a failure is logged, not retried),
   * and the node state file whenever our CIDRs change (a failure throws to the reconciler,
   * and a later reconcile tries again).
   */
  async planned(plan: Plan): Promise<void> {
    const { log } = this.#opts;
    if (this.#name === "" && !this.#warned) {
      this.#warned = true;
      const matching = withMachineId(this.#opts.nodes().values(), this.#machineId);
      log.error(
        "own node not found: set NODE_NAME, or make /etc/machine-id match exactly one " +
          "node's status.nodeInfo.machineID",
        { machineId: this.#machineId, ...(matching.length > 1 ? { matching } : {}) },
      );
    }
    if (plan.selfCidrs === undefined) {
      // Our node is not planned: a file a previous run left must not serve its CIDRs.
      if (await this.#stateFile.remove()) log.info("node state removed: own node not planned");
      return;
    }
    if (this.#conflistPending) {
      this.#conflistPending = false;
      await this.#writeConflist(plan.self?.addresses[0]);
    }
    const name = this.#name;
    const own = this.#opts.nodes().get(name);
    if (await this.#stateFile.update(name, plan.selfCidrs, own?.machineID)) {
      log.info("node state written", { node: name, cidrs: plan.selfCidrs.join(",") });
    }
  }

  /** Writes the main network's conflist, with the MTU of the interface holding our address. */
  async #writeConflist(address: string | undefined): Promise<void> {
    const { cfg, log, table } = this.#opts;
    const install = await import("./install.ts");
    try {
      if (address === undefined) throw new Error("own node has no address to find the MTU by");
      const mtu = await install.interfaceMtu(address, await table.localAddresses());
      // kube-node finds our node state file by the annotation and folder we write it by.
      const r = await install.installConflist({
        confDir: cfg.cniConfDir,
        mtu,
        annotation: cfg.cidrAnnotation,
        stateDir: cfg.stateDir,
        log,
      });
      log.info(r.written ? "CNI conflist written" : "CNI conflist left as it is", {
        path: r.path,
        mtu,
        reason: r.reason,
      });
    } catch (e) {
      log.error("writing the CNI conflist failed", { error: e });
    }
  }
}
