/**
 * The Node store: objects with one global resourceVersion, a bounded history of change
 * events for watch replay, and watchers fed with events serialized once for all of them.
 *
 * @module
 */
import { badRequest, expired, invalid, notFound, StatusError } from "./status.ts";
import type { Selector } from "./selectors.ts";
import { type Json, jsonPatch, mergePatch, PatchError, strategicMergePatch } from "./patch.ts";

/** A Node object as stored (plain JSON). */
export interface NodeJson {
  metadata: {
    name: string;
    labels?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    creationTimestamp?: string;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** Watch event types. */
export type EventType = "ADDED" | "MODIFIED" | "DELETED";

/** A stored node. */
export interface StoredNode {
  readonly obj: NodeJson;
  /** Its JSON as UTF-8, ready for list and watch bodies (no re-encoding per request). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Its PartialObjectMetadata as UTF-8, made when first asked for. */
  meta?: Uint8Array<ArrayBuffer>;
}

/** One change (or bookmark) as watchers get it. */
export interface StoreEvent {
  readonly rv: number;
  readonly type: EventType | "BOOKMARK";
  readonly obj: NodeJson;
  /** The object's JSON as UTF-8. */
  readonly bytes: Uint8Array;
  /** The event's line per view, made once for all the watchers that share the view. */
  readonly lines: Map<string, Uint8Array>;
}

/** One open watch. */
export interface Watcher {
  selector?: Selector;
  bookmarks: boolean;
  send(ev: StoreEvent): void;
  close(): void;
}

/** Patch content types. */
export type PatchType = "merge" | "strategic" | "json";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Encodes one watch event line around an object's UTF-8 JSON. */
export function eventLine(type: string, json: Uint8Array): Uint8Array {
  const head = encoder.encode(`{"type":"${type}","object":`);
  const line = new Uint8Array(head.length + json.length + 2);
  line.set(head);
  line.set(json, head.length);
  line[line.length - 2] = 0x7d; // }
  line[line.length - 1] = 0x0a; // newline
  return line;
}

/** Checks kind, apiVersion and name; returns the object typed. */
function validate(body: unknown, nameHint = ""): NodeJson {
  if (!isObject(body)) throw badRequest("the body is not a JSON object");
  if (body.kind !== undefined && body.kind !== "Node") {
    throw badRequest(`the object kind ${JSON.stringify(body.kind)} is not Node`);
  }
  if (body.apiVersion !== undefined && body.apiVersion !== "v1") {
    throw badRequest(`the apiVersion ${JSON.stringify(body.apiVersion)} is not v1`);
  }
  const meta = body.metadata;
  if (!isObject(meta)) throw invalid(nameHint, "metadata", "Required value");
  const name = meta.name;
  if (typeof name !== "string" || name === "") {
    throw invalid(nameHint, "metadata.name", "Required value: name is required");
  }
  if (name.length > 253 || !DNS1123.test(name)) {
    throw invalid(
      name,
      "metadata.name",
      `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of ` +
        "lower case alphanumeric characters, '-' or '.', and must start and end with an " +
        "alphanumeric character",
    );
  }
  for (const key of ["labels", "annotations"] as const) {
    const m = meta[key];
    if (m === undefined || m === null) continue;
    if (!isObject(m) || Object.values(m).some((v) => typeof v !== "string")) {
      throw invalid(name, `metadata.${key}`, "Invalid value: values must be strings");
    }
  }
  return body as unknown as NodeJson;
}

/** The Nodes of the embedded API server. */
export class NodeStore {
  #nodes = new Map<string, StoredNode>();
  #sorted: string[] | undefined;
  #rv = 0;
  #history: StoreEvent[] = [];
  /** Events with rv > this are in the history. */
  #oldest = 0;
  readonly #historySize: number;
  #watchers = new Set<Watcher>();
  /** Called after every change (persistence). */
  onChange: () => void = () => {};

  constructor(opts: { historySize?: number; nodes?: NodeJson[]; resourceVersion?: number } = {}) {
    this.#historySize = opts.historySize ?? 10_000;
    for (const n of opts.nodes ?? []) {
      this.#nodes.set(n.metadata.name, { obj: n, bytes: encoder.encode(JSON.stringify(n)) });
    }
    this.#rv = opts.resourceVersion ?? 0;
    this.#oldest = this.#rv;
  }

  /** The current global resourceVersion. */
  resourceVersion(): number {
    return this.#rv;
  }

  /** Number of open watches. */
  watcherCount(): number {
    return this.#watchers.size;
  }

  /** One node, or undefined. */
  get(name: string): NodeJson | undefined {
    return this.#nodes.get(name)?.obj;
  }

  /** One node as stored (with its JSON as UTF-8), or undefined. */
  stored(name: string): StoredNode | undefined {
    return this.#nodes.get(name);
  }

  /** All nodes in name order. */
  list(): NodeJson[] {
    return this.#names().map((n) => this.#nodes.get(n)!.obj);
  }

  #names(): string[] {
    return this.#sorted ??= [...this.#nodes.keys()].sort();
  }

  /**
   * One page of the list: the nodes after `after` (a name) matching `selector`, and the
   * last name when more remain.
   */
  page(selector: Selector | undefined, limit: number, after?: string): {
    items: StoredNode[];
    last?: string;
  } {
    const names = this.#names();
    let i = 0;
    if (after !== undefined) {
      let lo = 0, hi = names.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (names[mid] <= after) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    const items: StoredNode[] = [];
    for (; i < names.length; i++) {
      const e = this.#nodes.get(names[i])!;
      if (selector && !selector(e.obj)) continue;
      if (limit > 0 && items.length === limit) return { items, last: names[i - 1] };
      items.push(e);
    }
    return { items };
  }

  /** Creates a node: 409 if it exists, 422 if invalid. */
  create(body: unknown): NodeJson {
    const obj = validate(structuredClone(body));
    const meta = obj.metadata;
    if (this.#nodes.has(meta.name)) {
      throw new StatusError(409, "AlreadyExists", `nodes "${meta.name}" already exists`, {
        name: meta.name,
        kind: "nodes",
      });
    }
    obj.kind = "Node";
    obj.apiVersion = "v1";
    meta.uid = crypto.randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    delete meta.resourceVersion;
    this.#sorted = undefined;
    return this.#commit("ADDED", obj);
  }

  /**
   * Replaces a node. A set metadata.resourceVersion must be the current one (409 otherwise).
   * `part` "status" takes only the status from the body, "spec" keeps the stored status.
   */
  update(name: string, body: unknown, part: "all" | "spec" | "status" = "all"): NodeJson {
    const obj = validate(structuredClone(body), name);
    if (obj.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`,
      );
    }
    const cur = this.#nodes.get(name);
    if (!cur) throw notFound(name);
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== cur.obj.metadata.resourceVersion) {
      throw new StatusError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on nodes "${name}": the object has been modified; ` +
          "please apply your changes to the latest version and try again",
        { name, kind: "nodes" },
      );
    }
    return this.#replace(cur.obj, obj, part);
  }

  #replace(cur: NodeJson, next: NodeJson, part: "all" | "spec" | "status"): NodeJson {
    let obj: NodeJson;
    if (part === "status") obj = { ...structuredClone(cur), status: next.status ?? {} };
    else if (part === "spec") obj = { ...next, status: structuredClone(cur.status ?? {}) };
    else obj = next;
    validate(obj, cur.metadata.name);
    if (obj.metadata.name !== cur.metadata.name) throw badRequest("metadata.name cannot change");
    obj.kind = "Node";
    obj.apiVersion = "v1";
    obj.metadata.uid = cur.metadata.uid;
    obj.metadata.creationTimestamp = cur.metadata.creationTimestamp;
    obj.metadata.resourceVersion = cur.metadata.resourceVersion;
    // A no-op update keeps the resourceVersion and emits nothing, as the real one does.
    const stored = this.#nodes.get(cur.metadata.name)?.bytes;
    if (stored && JSON.stringify(obj) === decoder.decode(stored)) return cur;
    return this.#commit("MODIFIED", obj);
  }

  /** Patches a node with the given patch type. */
  patch(
    name: string,
    type: PatchType,
    patch: unknown,
    part: "all" | "spec" | "status" = "all",
  ): NodeJson {
    const cur = this.#nodes.get(name);
    if (!cur) throw notFound(name);
    let next: Json;
    try {
      const base = structuredClone(cur.obj) as Json;
      if (type === "json") next = jsonPatch(base, patch);
      else if (!isObject(patch)) throw new PatchError("a merge patch must be a JSON object");
      else if (type === "merge") next = mergePatch(base, patch as Json);
      else next = strategicMergePatch(base, patch as Json);
    } catch (e) {
      if (e instanceof PatchError) throw new StatusError(422, "Invalid", e.message);
      throw e;
    }
    const obj = validate(next, name);
    const rv = obj.metadata.resourceVersion;
    if (
      isObject(patch) && isObject(patch.metadata) && patch.metadata.resourceVersion !== undefined &&
      rv !== cur.obj.metadata.resourceVersion
    ) {
      throw new StatusError(
        409,
        "Conflict",
        `Operation cannot be fulfilled on nodes "${name}": the object has been modified`,
      );
    }
    return this.#replace(cur.obj, obj, part);
  }

  /** Deletes a node: 404 when absent. Returns the last state. */
  delete(name: string): NodeJson {
    const cur = this.#nodes.get(name);
    if (!cur) throw notFound(name);
    this.#nodes.delete(name);
    this.#sorted = undefined;
    return this.#commit("DELETED", structuredClone(cur.obj), true);
  }

  #commit(type: EventType, obj: NodeJson, deleted = false): NodeJson {
    this.#rv++;
    obj.metadata.resourceVersion = String(this.#rv);
    const bytes = encoder.encode(JSON.stringify(obj));
    if (!deleted) this.#nodes.set(obj.metadata.name, { obj, bytes });
    const ev: StoreEvent = { rv: this.#rv, type, obj, bytes, lines: new Map() };
    this.#history.push(ev);
    if (this.#history.length > this.#historySize * 2) {
      // Trim in chunks so pushes stay O(1) on average.
      const drop = this.#history.length - this.#historySize;
      this.#oldest = this.#history[drop - 1].rv;
      this.#history = this.#history.slice(drop);
    }
    for (const w of this.#watchers) {
      if (!w.selector || w.selector(obj)) w.send(ev);
    }
    this.onChange();
    return obj;
  }

  /**
   * Opens a watch. From "" or "0": synthetic ADDED events for every node first. From a
   * version older than the history: throws 410 Expired.
   */
  watch(from: string, w: Watcher): () => void {
    if (from === "" || from === "0") {
      for (const name of this.#names()) {
        const e = this.#nodes.get(name)!;
        if (!w.selector || w.selector(e.obj)) {
          w.send({ rv: this.#rv, type: "ADDED", obj: e.obj, bytes: e.bytes, lines: new Map() });
        }
      }
    } else {
      if (!/^[0-9]+$/.test(from)) {
        throw badRequest(`invalid resourceVersion ${JSON.stringify(from)}`);
      }
      const rv = Number(from);
      if (rv < this.#oldest) throw expired(from);
      for (const ev of this.#history) {
        if (ev.rv > rv && (!w.selector || w.selector(ev.obj))) w.send(ev);
      }
    }
    this.#watchers.add(w);
    return () => this.#watchers.delete(w);
  }

  /** Whether a list continue token from version `rv` is still valid. */
  checkVersion(rv: number): void {
    if (rv < this.#oldest) throw expired(String(rv));
  }

  /** Sends a bookmark with the current version to every watcher that asked for them. */
  bookmark(): void {
    const obj: NodeJson = {
      kind: "Node",
      apiVersion: "v1",
      metadata: { name: "", resourceVersion: String(this.#rv) },
    };
    const bytes = encoder.encode(
      JSON.stringify({ ...obj, metadata: { resourceVersion: String(this.#rv) } }),
    );
    const ev: StoreEvent = { rv: this.#rv, type: "BOOKMARK", obj, bytes, lines: new Map() };
    for (const w of this.#watchers) if (w.bookmarks) w.send(ev);
  }

  /** Ends every open watch. */
  dropWatches(): void {
    for (const w of [...this.#watchers]) w.close();
    this.#watchers.clear();
  }

  /** Forgets the history: any watch from an older version gets 410 Expired. */
  compact(): void {
    this.#history = [];
    this.#oldest = this.#rv;
  }
}
