/**
 * The Node store: Nodes in an {@link ObjectStore}, with their validation and the status
 * subresource.
 *
 * @module
 */
import {
  type KindInfo,
  type ObjectJson,
  ObjectStore,
  type Part,
  type PatchType,
  type Revision,
  type StoredObject,
} from "./object_store.ts";
import { NODE_NAMES } from "./status.ts";
import { checkObject } from "./validation.ts";

export { eventLine } from "./object_store.ts";
export type { EventType, PatchType, StoreEvent, Watcher } from "./object_store.ts";

/** A Node object as stored (plain JSON). */
export type NodeJson = ObjectJson;

/** A stored node. */
export type StoredNode = StoredObject<NodeJson>;

const NODE_KIND: KindInfo = {
  ...NODE_NAMES,
  apiVersion: "v1",
  namespaced: false,
  statusSubresource: true,
  createOnUpdate: false,
  validate: (body, nameHint) => checkObject(body, NODE_KIND, nameHint),
};

/** The Nodes of the embedded API server. */
export class NodeStore extends ObjectStore<NodeJson> {
  constructor(
    opts: {
      historySize?: number;
      nodes?: NodeJson[];
      resourceVersion?: number;
      /** The server's counter, shared with its other kinds. */
      revision?: Revision;
    } = {},
  ) {
    super(NODE_KIND, { ...opts, objects: opts.nodes });
  }

  /** One node, or undefined. */
  get(name: string): NodeJson | undefined {
    return this.storedIn(undefined, name)?.obj;
  }

  /** One node as stored (with its JSON as UTF-8), or undefined. */
  stored(name: string): StoredNode | undefined {
    return this.storedIn(undefined, name);
  }

  /** All nodes in name order. */
  list(): NodeJson[] {
    return this.listIn();
  }

  /** Creates a node: 409 if it exists, 422 if invalid. */
  create(body: unknown): NodeJson {
    return this.createIn(undefined, body);
  }

  /**
   * Replaces a node. A set metadata.resourceVersion must be the current one (409 otherwise).
   * `part` "status" takes only the status from the body, "spec" keeps the stored status.
   */
  update(name: string, body: unknown, part: Part = "all"): NodeJson {
    return this.updateIn(undefined, name, body, part);
  }

  /** Patches a node with the given patch type. */
  patch(name: string, type: PatchType, patch: unknown, part: Part = "all"): NodeJson {
    return this.patchIn(undefined, name, type, patch, part);
  }

  /** Deletes a node: 404 when absent. Returns the last state. */
  delete(name: string): NodeJson {
    return this.deleteIn(undefined, name);
  }
}
