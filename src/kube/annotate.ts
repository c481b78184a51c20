/**
 * Writing one annotation of one Node, guarded: the node is read, the write happens only when
 * the annotation still has the value the writer decided from, and the patch carries the
 * resourceVersion read, so that any change made meanwhile, by a person or another writer,
 * wins and the writer decides again from what is there.
 *
 * @example
 * ```ts
 * const outcome = await annotateNode(client, "vm-003", "cidr.example.com/net3", {
 *   previous: undefined,
 *   value: "192.168.64.0/26",
 * });
 * ```
 *
 * @module
 */
import { z } from "zod";
import { ApiError, type KubeClient } from "./client.ts";
import { NODE_FIELDS, type NodeInfo, toNodeInfo } from "./node.ts";

/** What became of a guarded write. */
export type AnnotateOutcome =
  /** The node has the new value. */
  | "written"
  /** The annotation no longer had the expected value: nothing written. */
  | "changed"
  /** The node does not exist. */
  | "gone";

/** A conflict means the node changed between the read and the patch: read it again. */
const ATTEMPTS = 3;

const NodeMetaSchema = z.object({
  metadata: z.object({
    resourceVersion: z.string().min(1),
    annotations: z.record(z.string(), z.string()).nullish(),
  }),
});

/** A node's resourceVersion and annotations as the API has them now, or "gone". */
async function readMeta(
  client: Pick<KubeClient, "getNode">,
  name: string,
  signal?: AbortSignal,
): Promise<z.infer<typeof NodeMetaSchema>["metadata"] | "gone"> {
  let raw: unknown;
  try {
    raw = await client.getNode(name, { metadataOnly: true, signal });
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) return "gone";
    throw e;
  }
  const parsed = NodeMetaSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ApiError(200, "BadNode", `node ${name}: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data.metadata;
}

/** One annotation of a node as the API has it now (undefined: absent), or "gone". */
export async function nodeAnnotation(
  client: Pick<KubeClient, "getNode">,
  name: string,
  annotation: string,
): Promise<string | undefined | "gone"> {
  const meta = await readMeta(client, name);
  return meta === "gone" ? meta : meta.annotations?.[annotation];
}

/**
 * Every node's value of `annotation`, by node name (nodes without it are left out), from a
 * paged list of the nodes' metadata with no selector, read item by item.
 */
export async function annotatedNodes(
  client: Pick<KubeClient, "listNodesEach">,
  annotation: string,
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const onItem = (item: unknown) => {
    let node: NodeInfo;
    try {
      node = toNodeInfo(item, [annotation]);
    } catch {
      return; // not a Node: skipped, as the informer skips it
    }
    const value = node.annotations[annotation];
    if (value !== undefined) out.set(node.name, value);
  };
  let cont: string | undefined;
  do {
    const list = { metadataOnly: true, limit: 500, continue: cont, signal };
    cont = (await client.listNodesEach(list, onItem, NODE_FIELDS)).continue;
  } while (cont);
  return out;
}

/**
 * What to write: `value`, when the annotation is `previous` now (undefined: absent), or over
 * whatever is there (`overwrite`, for a writer that owns the annotation).
 */
export type AnnotationChange =
  | { readonly value: string; readonly previous: string | undefined }
  | { readonly value: string; readonly overwrite: true };

/**
 * Sets `annotation` of node `name` as `change` says. Throws the ApiError of a failed request
 * (403 when not allowed; 409 when the node kept changing under every attempt).
 */
export async function annotateNode(
  client: Pick<KubeClient, "getNode" | "patchNode">,
  name: string,
  annotation: string,
  change: AnnotationChange,
  signal?: AbortSignal,
): Promise<AnnotateOutcome> {
  for (let attempt = 1;; attempt++) {
    const meta = await readMeta(client, name, signal);
    if (meta === "gone") return "gone";
    const { resourceVersion, annotations } = meta;
    const now = annotations?.[annotation];
    if (now === change.value) return "written";
    if (!("overwrite" in change) && now !== change.previous) return "changed";
    try {
      await client.patchNode(name, { metadata: { annotations: { [annotation]: change.value } } }, {
        resourceVersion,
        signal,
      });
      return "written";
    } catch (e) {
      if (e instanceof ApiError && e.status === 409 && attempt < ATTEMPTS) continue;
      if (e instanceof ApiError && e.status === 404) return "gone";
      throw e;
    }
  }
}
