/**
 * Where the own node's CIDRs for a network come from: the node state file the daemon
 * writes (no API call, no credentials) when it names this node, else the Kubernetes API
 * through a kubeconfig, the node found by NODE_NAME or /etc/machine-id, as Nordix kube-node
 * does.
 *
 * The Kubernetes client (with zod and yaml) is imported only on the fallback path, so an
 * ADD served from the state file evaluates none of it. The specifiers are literals so that
 * `deno compile` embeds the modules.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";
import { readNodeState, stateFilePath } from "../src/state.ts";
import { splitList } from "../src/net/ip.ts";
import { findApiCredentials } from "../src/api_credentials.ts";

/** A node's CIDRs for one network, and where they were read. */
export interface NodeCidrs {
  node: string;
  cidrs: string[];
  /** For messages: the state file, or "node X annotation Y". */
  source: string;
  /** The node's machine ID, when the state file records it. */
  machineID?: string;
}

/** Where this host's machine ID is, unless told otherwise. */
export const MACHINE_ID_FILE = "/etc/machine-id";

/** This node as kube-node knows it without the API. */
export interface OwnNode {
  /** NODE_NAME; "" when unset. */
  nodeName: string;
  /** The machine ID, read only when NODE_NAME is unset; "" when unknown. */
  machineId: string;
  /** Where the machine ID was read, for messages. */
  machineIdFile: string;
}

/**
 * This node by NODE_NAME, else by its machine ID (as the daemon finds itself). An
 * unreadable machine ID file leaves the machine ID unknown: nothing then contradicts a
 * state file.
 */
export function ownNode(nodeName: string | undefined, machineIdFile = MACHINE_ID_FILE): OwnNode {
  if (nodeName) return { nodeName, machineId: "", machineIdFile };
  let machineId = "";
  try {
    machineId = Deno.readTextFileSync(machineIdFile).trim();
  } catch { /* unknown */ }
  return { nodeName: "", machineId, machineIdFile };
}

/**
 * Why a node state file is not this node's, or undefined when it may be used. NODE_NAME
 * decides when set; else the machine ID, when both this host and the file know one. A file
 * that records no machine ID is taken as the daemon's on this host, which found its node by
 * the same machine ID: telling otherwise would take an API call on every ADD.
 */
export function foreignState(found: NodeCidrs, own: OwnNode): string | undefined {
  if (own.nodeName !== "") {
    return found.node === own.nodeName ? undefined : `${found.source} is node ` +
      `${JSON.stringify(found.node)}'s, and NODE_NAME is ${JSON.stringify(own.nodeName)}`;
  }
  if (own.machineId === "" || !found.machineID) return undefined;
  return found.machineID === own.machineId ? undefined : `${found.source} is node ` +
    `${JSON.stringify(found.node)}'s (machine ID ${JSON.stringify(found.machineID)}), ` +
    `and ${own.machineIdFile} says ${JSON.stringify(own.machineId)}`;
}

/**
 * The CIDRs from the node state file for `annotation`; undefined when there is no file.
 * Throws code 5 when the file is unreadable, malformed or for another annotation.
 */
export function cidrsFromState(
  stateDir: string,
  annotation: string,
): NodeCidrs | undefined {
  const file = stateFilePath(stateDir, annotation);
  let state;
  try {
    state = readNodeState(stateDir, annotation);
  } catch (e) {
    throw new CniError(CniCode.IoFailure, `node state file: ${(e as Error).message}`);
  }
  if (state === undefined) return undefined;
  if (state.annotation !== annotation) {
    throw new CniError(
      CniCode.IoFailure,
      `${file}: written for annotation ${JSON.stringify(state.annotation)}, ` +
        `not ${JSON.stringify(annotation)}`,
    );
  }
  const found: NodeCidrs = { node: state.node, cidrs: state.cidrs, source: file };
  if (state.machineID !== undefined) found.machineID = state.machineID;
  return found;
}

/**
 * The credentials the API fallback tries, for messages: the kubeconfig path (and what named
 * it), "in-cluster", or "none found" with the places looked. Pure.
 *
 * @example
 * ```ts
 * kubeconfigTried(undefined, { KUBECONFIG: "/a:/b" }); // "/a (KUBECONFIG)"
 * ```
 */
export function kubeconfigTried(
  kubeconfig: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  const creds = findApiCredentials(kubeconfig, env);
  switch (creds.kind) {
    case "kubeconfig":
      return `${creds.path} (${creds.from === "option" ? "ipam.kubeconfig" : creds.from})`;
    case "in-cluster":
      return `in-cluster service account (KUBERNETES_SERVICE_HOST=${creds.host}, ` +
        `KUBERNETES_SERVICE_PORT=${creds.port})`;
    case "none":
      return "none found (looked for ipam.kubeconfig, in-cluster KUBERNETES_SERVICE_HOST and " +
        "KUBERNETES_SERVICE_PORT, KUBECONFIG, and HOME for ~/.kube/config: none is set)";
  }
}

/** Options of {@link cidrsFromApi}. */
export interface ApiLookup {
  /** kubeconfig path; undefined lets the client autodetect. */
  kubeconfig?: string;
  annotation: string;
  /** Own node name (NODE_NAME); empty: match /etc/machine-id. */
  nodeName?: string;
  /** Where the machine ID is; default /etc/machine-id. */
  machineIdFile?: string;
  /** Give up after this long; default 10 s. */
  timeoutMs?: number;
  /** The node state file looked for (full path), for messages. */
  stateFile?: string;
  /** Why the node state file there was not used, for messages; default: there is none. */
  noState?: string;
  /** The environment the client autodetects its credentials from; default the process's. */
  env?: Record<string, string | undefined>;
}

const PAGE = 500;

/**
 * Reads the own node from the API and returns its CIDRs for the network (the annotation,
 * or spec.podCIDRs when the annotation name is ""). Throws code 11 (try again later) when
 * the API, the node or the CIDRs cannot be had now: the message says why the state file
 * was not used (naming it) and what failed; the details name the state file and the
 * kubeconfig tried ({@link kubeconfigTried}).
 */
export async function cidrsFromApi(opts: ApiLookup): Promise<NodeCidrs> {
  const env = opts.env ?? Deno.env.toObject();
  const tried = kubeconfigTried(opts.kubeconfig, env);
  const stateFile = opts.stateFile ?? "";
  const noState = opts.noState ??
    (stateFile === "" ? "no node state file" : `no node state file at ${stateFile}`);
  const used = opts.noState === undefined ? "not found" : "not used";
  const details = (stateFile === "" ? "" : `node state file: ${stateFile} (${used}); `) +
    `kubeconfig: ${tried}`;
  // Every failure starts from the missing state file: without it the API was not needed.
  const retry = (problem: string) =>
    new CniError(CniCode.TryAgainLater, `${noState}, and ${problem}`, details);
  const [{ loadKubeAccess }, { KubeClient, ApiError }, { toNodeInfo }] = await Promise.all([
    import("../src/kube/kubeconfig.ts"),
    import("../src/kube/client.ts"),
    import("../src/kube/node.ts"),
  ]).catch((e) => {
    throw retry(`the Kubernetes client failed to load: ${e}`);
  });
  let access;
  try {
    access = await loadKubeAccess({ kubeconfig: opts.kubeconfig, env });
  } catch (e) {
    throw retry(`no API access: ${(e as Error).message}`);
  }
  const api = `the Kubernetes API at ${access.server} (${access.source})`;
  const client = new KubeClient(access);
  const keep = opts.annotation === "" ? [] : [opts.annotation];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(retry(`${api} did not answer within ${opts.timeoutMs ?? 10000} ms`)),
      opts.timeoutMs ?? 10000,
    );
  });
  const lookup = async () => {
    if (opts.nodeName) {
      try {
        return toNodeInfo(await client.getNode(opts.nodeName), keep);
      } catch (e) {
        if (e instanceof ApiError && (e as { status?: number }).status === 404) {
          throw retry(`node ${JSON.stringify(opts.nodeName)} (NODE_NAME) not found in the API`);
        }
        throw e;
      }
    }
    const file = opts.machineIdFile ?? MACHINE_ID_FILE;
    let machineId: string;
    try {
      machineId = (await Deno.readTextFile(file)).trim();
    } catch (e) {
      throw retry(`NODE_NAME is not set and ${file} is unreadable: ${(e as Error).message}`);
    }
    let cont: string | undefined;
    do {
      const page = await client.listNodes({ limit: PAGE, continue: cont });
      for (const raw of page.items) {
        const node = toNodeInfo(raw, keep);
        if (node.machineID === machineId) return node;
      }
      cont = page.continue || undefined;
    } while (cont);
    throw retry(`no node with machineID ${JSON.stringify(machineId)} (from ${file})`);
  };
  try {
    const node = await Promise.race([lookup(), timeout]);
    if (opts.annotation === "") {
      return {
        node: node.name,
        cidrs: [...node.podCIDRs],
        source: `node ${node.name} spec.podCIDRs`,
      };
    }
    const value = node.annotations[opts.annotation];
    if (value === undefined) {
      throw retry(`node ${node.name} has no annotation ${JSON.stringify(opts.annotation)}`);
    }
    return {
      node: node.name,
      cidrs: splitList(value),
      source: `node ${node.name} annotation ${opts.annotation}`,
    };
  } catch (e) {
    if (e instanceof CniError) throw e;
    throw retry(`${api} failed: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
    client.close();
  }
}
