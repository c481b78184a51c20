/**
 * The node state file: the own node's CIDRs for one network, written by the daemon and read
 * by the kube-node IPAM on every pod ADD, so that ADD needs neither the API nor credentials.
 *
 * One file per network, named after the CIDR annotation (`podCIDRs` for spec.podCIDRs).
 *
 * @module
 */
import { z } from "zod";

/** Contents of a node state file. */
export const NodeStateSchema = z.object({
  version: z.literal(1),
  node: z.string(),
  /** The CIDR annotation this file is for; "" means spec.podCIDRs. */
  annotation: z.string(),
  /** The node's valid CIDRs for the network, canonical text, in the node's order. */
  cidrs: z.array(z.string()),
  updated: z.string(),
});

/** A parsed node state file. */
export type NodeState = z.infer<typeof NodeStateSchema>;

/**
 * Path of the state file for a network's CIDR annotation.
 *
 * @example
 * ```ts
 * stateFilePath("/run/xcluster-cni", "cidr.example.com/net3");
 * // "/run/xcluster-cni/node-cidr.example.com_net3.json"
 * ```
 */
export function stateFilePath(dir: string, annotation: string): string {
  const name = annotation === "" ? "podCIDRs" : annotation.replace(/[^A-Za-z0-9._-]/g, "_");
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
export async function readNodeState(
  dir: string,
  annotation: string,
): Promise<NodeState | undefined> {
  const path = stateFilePath(dir, annotation);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
  const parsed = NodeStateSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${path}: not a node state file: ${parsed.error.message}`);
  return parsed.data;
}
