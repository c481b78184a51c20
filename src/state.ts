/**
 * The node state file: the own node's CIDRs for one network, written by the daemon and read
 * by the kube-node IPAM on every pod ADD, so that ADD needs neither the API nor credentials.
 *
 * One file per network, named after the CIDR annotation (see {@link stateFilePath}): distinct
 * annotations never share a file.
 *
 * This module is on the IPAM's start-up path: it imports nothing, and the file is checked
 * by hand rather than with zod, whose import alone costs more than one exec's budget.
 *
 * @module
 */

/** Where the daemon writes node state files and kube-node reads them, unless configured. */
export const DEFAULT_STATE_DIR = "/run/xcluster-cni";

/** Contents of a node state file. */
export interface NodeState {
  version: 1;
  node: string;
  /** The CIDR annotation this file is for; "" means spec.podCIDRs. */
  annotation: string;
  /** The node's valid CIDRs for the network, canonical text, in the node's order. */
  cidrs: string[];
  updated: string;
  /**
   * The node's machine ID (status.nodeInfo.machineID), when the writer knows it: without
   * NODE_NAME, kube-node can then tell whether the file is its own node's.
   */
  machineID?: string;
}

function describe(value: unknown): string {
  if (value === undefined) return "missing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

/**
 * Checks a decoded state file; throws naming the first bad field and its value. Unknown
 * keys are dropped.
 */
export function parseNodeState(value: unknown): NodeState {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`expected an object, got ${describe(value)}`);
  }
  const v = value as Record<string, unknown>;
  const bad = (field: string, expected: string) =>
    new Error(`${field}: expected ${expected} (value ${describe(v[field])})`);
  if (v.version !== 1) throw bad("version", "1");
  for (const field of ["node", "annotation"] as const) {
    if (typeof v[field] !== "string") throw bad(field, "a string");
  }
  const cidrs = v.cidrs;
  if (!Array.isArray(cidrs) || !cidrs.every((c) => typeof c === "string")) {
    throw bad("cidrs", "an array of strings");
  }
  if (typeof v.updated !== "string") throw bad("updated", "a string");
  if (v.machineID !== undefined && typeof v.machineID !== "string") {
    throw bad("machineID", "a string");
  }
  const state: NodeState = {
    version: 1,
    node: v.node as string,
    annotation: v.annotation as string,
    cidrs: [...cidrs],
    updated: v.updated,
  };
  if (v.machineID !== undefined) state.machineID = v.machineID;
  return state;
}

/**
 * The file name of spec.podCIDRs (annotation ""): "@" is escaped in every annotation's
 * name, so no annotation is named so.
 */
const POD_CIDRS_NAME = "@podCIDRs";

const UTF8 = new TextEncoder();

/**
 * An annotation as a file name, one to one: ASCII letters, digits, "." and "-" as they are,
 * "/" as "_" (so the usual `cidr.example.com/net3` keeps its readable name), and every other
 * byte of its UTF-8, "_" and "%" included, as %XX.
 */
function encodeAnnotation(annotation: string): string {
  let name = "";
  for (const ch of annotation) {
    if (/[A-Za-z0-9.-]/.test(ch)) name += ch;
    else if (ch === "/") name += "_";
    else {
      for (const byte of UTF8.encode(ch)) {
        name += `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
      }
    }
  }
  return name;
}

/**
 * Path of the state file for a network's CIDR annotation ("" for spec.podCIDRs). Distinct
 * annotations give distinct paths.
 *
 * @example
 * ```ts
 * stateFilePath("/run/xcluster-cni", "cidr.example.com/net3");
 * // "/run/xcluster-cni/node-cidr.example.com_net3.json"
 * stateFilePath("/run/xcluster-cni", "example.com/my_net");
 * // "/run/xcluster-cni/node-example.com_my%5Fnet.json"
 * stateFilePath("/run/xcluster-cni", "");
 * // "/run/xcluster-cni/node-@podCIDRs.json"
 * ```
 */
export function stateFilePath(dir: string, annotation: string): string {
  const name = annotation === "" ? POD_CIDRS_NAME : encodeAnnotation(annotation);
  return `${dir}/node-${name}.json`;
}

/** Writes the state atomically (temp file in the same folder, fsync, rename). */
export async function writeNodeState(dir: string, state: NodeState): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const path = stateFilePath(dir, state.annotation);
  const tmp = `${path}.${Deno.pid}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o644 });
  try {
    await file.write(new TextEncoder().encode(JSON.stringify(state) + "\n"));
    await file.sync();
  } finally {
    file.close();
  }
  await Deno.rename(tmp, path);
}

/** Reads the state file; undefined when absent. Throws naming the file when malformed. */
export function readNodeState(
  dir: string,
  annotation: string,
): NodeState | undefined {
  const path = stateFilePath(dir, annotation);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  try {
    return parseNodeState(JSON.parse(text));
  } catch (e) {
    throw new Error(`${path}: not a node state file: ${(e as Error).message}`);
  }
}

/**
 * The node state file of one network as the daemon keeps it: written when our node's CIDRs
 * change, not on every reconcile.
 */
export class NodeStateFile {
  /**
   * The CIDRs the file holds as this process wrote it; null when there is no file; undefined
   * until then, for a file a previous run left may be there.
   */
  #last: string | null | undefined;

  constructor(readonly dir: string, readonly annotation: string) {}

  /**
   * Writes our node's CIDRs unless the file already holds them; returns whether it changed
   * the file. A node with no CIDRs yet has no file: one a previous run left is removed.
   */
  async update(node: string, cidrs: readonly string[], machineID?: string): Promise<boolean> {
    const text = cidrs.join(",");
    if (text === this.#last || text === "" && this.#last === null) return false;
    if (text === "" && this.#last === undefined) return await this.remove();
    await writeNodeState(this.dir, {
      version: 1,
      node,
      ...(machineID ? { machineID } : {}),
      annotation: this.annotation,
      cidrs: [...cidrs],
      updated: new Date().toISOString(),
    });
    this.#last = text;
    return true;
  }

  /** Removes the file unless this process knows there is none; returns whether it did. */
  async remove(): Promise<boolean> {
    if (this.#last === null) return false;
    let removed = true;
    try {
      await Deno.remove(stateFilePath(this.dir, this.annotation));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      removed = false;
    }
    this.#last = null;
    return removed;
  }
}
