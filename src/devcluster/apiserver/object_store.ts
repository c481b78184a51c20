/**
 * Objects of one kind as the embedded API server keeps them: the JSON of each, one global
 * resourceVersion shared with every other kind (as etcd's revision), a bounded history of
 * change events for watch replay, and watchers fed with events serialized once for all of
 * them. What differs between kinds (validation, scope, the status subresource) comes from a
 * {@link KindInfo}.
 *
 * @module
 */
import { type Json, jsonPatch, mergePatch, PatchError, strategicMergePatch } from "./patch.ts";
import type { Selector } from "./selectors.ts";
import {
  alreadyExists,
  badRequest,
  conflict,
  expired,
  notFound,
  type ResourceNames,
  StatusError,
} from "./status.ts";
import { checkNamespace } from "./validation.ts";

/** An object as stored (plain JSON). */
export interface ObjectJson {
  metadata: {
    name: string;
    namespace?: string;
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

/** A stored object. */
export interface StoredObject<T extends ObjectJson = ObjectJson> {
  readonly obj: T;
  /** Its JSON as UTF-8, ready for list and watch bodies (no re-encoding per request). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** Its PartialObjectMetadata as UTF-8, made when first asked for. */
  meta?: Uint8Array<ArrayBuffer>;
}

/** One change (or bookmark) as watchers get it. */
export interface StoreEvent {
  readonly rv: number;
  readonly type: EventType | "BOOKMARK";
  readonly obj: ObjectJson;
  /** The object's JSON as UTF-8. */
  readonly bytes: Uint8Array;
  /** The event's line per view, made once for all the watchers that share the view. */
  readonly lines: Map<string, Uint8Array>;
  /**
   * For MODIFIED: what selectors read of the object before the change (name and labels; a
   * selector may have matched only it). Only that, so that the history stays small.
   */
  readonly prev?: ObjectJson;
}

/**
 * The event as a watcher with `selector` sees it, as kube-apiserver's watch cache filters:
 * an object that starts matching is ADDED, one that stops matching is DELETED, one that
 * matches neither before nor after is not sent.
 */
export function eventFor(ev: StoreEvent, selector: Selector | undefined): StoreEvent | undefined {
  if (!selector || ev.type === "BOOKMARK") return ev;
  const now = selector(ev.obj);
  if (ev.type !== "MODIFIED" || ev.prev === undefined) return now ? ev : undefined;
  const before = selector(ev.prev);
  if (now === before) return now ? ev : undefined;
  return { ...ev, type: now ? "ADDED" : "DELETED", lines: new Map() };
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

/** Which part of an object a write may change: all, all but the status, the status only. */
export type Part = "all" | "spec" | "status";

/** How a write treats fields the kind does not have (the `fieldValidation` parameter). */
export interface WriteOptions {
  /** Unknown fields are a 400 instead of being dropped. */
  strict?: boolean;
}

/** What a store needs to know of its kind. */
export interface KindInfo extends ResourceNames {
  /** apiVersion of the objects: "v1", "coordination.k8s.io/v1". */
  readonly apiVersion: string;
  readonly namespaced: boolean;
  /** Writes to the main resource keep the stored status; `status` writes only it. */
  readonly statusSubresource: boolean;
  /** A PUT of an absent object creates it (as for Leases). */
  readonly createOnUpdate: boolean;
  /**
   * Checks a body (already a copy) and returns the object to store: the same object or a
   * normalized one. Throws a 400 or 422 StatusError naming the field and the value.
   * `namespace` is the request's, for rules that compare fields with it (an Event's).
   */
  validate(
    body: unknown,
    nameHint: string,
    opts: WriteOptions,
    namespace: string | undefined,
  ): ObjectJson;
}

/** Preconditions of a delete (DeleteOptions.preconditions). */
export interface Preconditions {
  resourceVersion?: string;
  uid?: string;
}

/** The global resourceVersion, one counter for every kind of the server. */
export class Revision {
  constructor(public value = 0) {}
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

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

/** The key of an object: its name, or namespace/name, which sorts as the real list does. */
function keyOf(namespace: string | undefined, name: string): string {
  return namespace === undefined ? name : `${namespace}/${name}`;
}

/** Options of an {@link ObjectStore}. */
export interface ObjectStoreOptions<T extends ObjectJson> {
  /** Watch events kept for replay (default 10,000). */
  historySize?: number;
  /** Objects to start with (from a state file), as stored. */
  objects?: T[];
  /** The server's counter, shared with the other kinds; a new one when absent. */
  revision?: Revision;
  /** The counter's value when a new one is made. */
  resourceVersion?: number;
}

/**
 * The objects of one kind. The methods taking a namespace take `undefined` for a
 * cluster-scoped kind; subclasses give each kind its own typed surface.
 */
export class ObjectStore<T extends ObjectJson> {
  readonly kind: KindInfo;
  #objects = new Map<string, StoredObject<T>>();
  #sorted: string[] | undefined;
  readonly #rev: Revision;
  #history: StoreEvent[] = [];
  /** Events with rv > this are in the history. */
  #oldest = 0;
  readonly #historySize: number;
  #watchers = new Set<Watcher>();
  /** Called after every change (persistence). */
  onChange: () => void = () => {};

  constructor(kind: KindInfo, opts: ObjectStoreOptions<T> = {}) {
    this.kind = kind;
    this.#historySize = opts.historySize ?? 10_000;
    this.#rev = opts.revision ?? new Revision(opts.resourceVersion ?? 0);
    for (const o of opts.objects ?? []) {
      const key = keyOf(kind.namespaced ? o.metadata.namespace ?? "" : undefined, o.metadata.name);
      this.#objects.set(key, { obj: o, bytes: encoder.encode(JSON.stringify(o)) });
    }
    this.#oldest = this.#rev.value;
  }

  /** The current global resourceVersion. */
  resourceVersion(): number {
    return this.#rev.value;
  }

  /** Number of open watches. */
  watcherCount(): number {
    return this.#watchers.size;
  }

  /** One object as stored (with its JSON as UTF-8), or undefined. */
  storedIn(namespace: string | undefined, name: string): StoredObject<T> | undefined {
    return this.#objects.get(keyOf(namespace, name));
  }

  /** Number of objects stored. */
  count(): number {
    return this.#objects.size;
  }

  /**
   * All objects, oldest first: a Map keeps the order of insertion, and an update replaces
   * the value of a key without moving it, so this is the order of creation.
   */
  inCreationOrder(): T[] {
    return Array.from(this.#objects.values(), (s) => s.obj);
  }

  /** The object created first among those stored, or undefined when there is none. */
  oldest(): T | undefined {
    return this.#objects.values().next().value?.obj;
  }

  /** All objects (of one namespace when given) in key order. */
  listIn(namespace?: string): T[] {
    return this.page(undefined, 0, undefined, namespace).items.map((s) => s.obj);
  }

  #keys(): string[] {
    return this.#sorted ??= [...this.#objects.keys()].sort();
  }

  /**
   * One page of the list: the objects (of `namespace` when given) after the key `after`
   * matching `selector`, and the last key when more remain.
   */
  page(selector: Selector | undefined, limit: number, after?: string, namespace?: string): {
    items: StoredObject<T>[];
    last?: string;
  } {
    const keys = this.#keys();
    const prefix = namespace === undefined ? undefined : `${namespace}/`;
    // A continue key is the last one sent; a namespace's prefix is where its keys begin.
    const past = after !== undefined && (prefix === undefined || after >= prefix);
    const from = past ? after : prefix;
    let i = 0;
    if (from !== undefined) {
      let lo = 0, hi = keys.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (past ? keys[mid] <= from : keys[mid] < from) lo = mid + 1;
        else hi = mid;
      }
      i = lo;
    }
    const items: StoredObject<T>[] = [];
    for (; i < keys.length; i++) {
      if (prefix !== undefined && !keys[i].startsWith(prefix)) break;
      const e = this.#objects.get(keys[i])!;
      if (selector && !selector(e.obj)) continue;
      if (limit > 0 && items.length === limit) return { items, last: keys[i - 1] };
      items.push(e);
    }
    return { items };
  }

  /** Sets the namespace from the URL; 400 when the object names another. */
  #place(obj: ObjectJson, namespace: string | undefined): void {
    if (!this.kind.namespaced) return;
    if (namespace === undefined) throw badRequest(`${this.kind.plural} need a namespace`);
    const ns = obj.metadata.namespace;
    if (!ns) {
      checkNamespace(obj.metadata.name, namespace, this.kind);
      obj.metadata.namespace = namespace;
    } else if (ns !== namespace) {
      throw badRequest(
        `the namespace of the provided object (${ns}) does not match the namespace sent on ` +
          `the request (${namespace})`,
      );
    }
  }

  /** Creates an object: 409 if it exists, 400 or 422 if invalid. */
  createIn(namespace: string | undefined, body: unknown, opts: WriteOptions = {}): T {
    const obj = this.kind.validate(structuredClone(body), "", opts, namespace);
    this.#place(obj, namespace);
    const meta = obj.metadata;
    const key = keyOf(namespace, meta.name);
    if (this.#objects.has(key)) throw alreadyExists(meta.name, this.kind);
    obj.kind = this.kind.kind;
    obj.apiVersion = this.kind.apiVersion;
    meta.uid = crypto.randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, "Z");
    delete meta.resourceVersion;
    this.#sorted = undefined;
    return this.#commit("ADDED", obj, key);
  }

  /**
   * Replaces an object. A set metadata.resourceVersion must be the current one (409
   * otherwise). For a kind with a status subresource, `part` "status" takes only the status
   * from the body and "spec" keeps the stored status. An absent object is a 404, or is
   * created when the kind allows it and the body sets no resourceVersion.
   */
  updateIn(
    namespace: string | undefined,
    name: string,
    body: unknown,
    part: Part = "all",
    opts: WriteOptions = {},
  ): T {
    const obj = this.kind.validate(structuredClone(body), name, opts, namespace);
    if (obj.metadata.name !== name) {
      throw badRequest(
        `the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`,
      );
    }
    this.#place(obj, namespace);
    const cur = this.#objects.get(keyOf(namespace, name));
    if (!cur) {
      if (!this.kind.createOnUpdate || obj.metadata.resourceVersion) {
        throw notFound(name, this.kind);
      }
      return this.createIn(namespace, obj, opts);
    }
    const rv = obj.metadata.resourceVersion;
    if (rv !== undefined && rv !== cur.obj.metadata.resourceVersion) {
      throw conflict(name, this.kind);
    }
    return this.#replace(cur, obj, part, opts);
  }

  #replace(cur: StoredObject<T>, next: ObjectJson, part: Part, opts: WriteOptions): T {
    const status = this.kind.statusSubresource ? part : "all";
    let obj: ObjectJson;
    if (status === "status") obj = { ...structuredClone(cur.obj), status: next.status ?? {} };
    else if (status === "spec") obj = { ...next, status: structuredClone(cur.obj.status ?? {}) };
    else obj = next;
    const name = cur.obj.metadata.name;
    const namespace = this.kind.namespaced ? cur.obj.metadata.namespace : undefined;
    obj = this.kind.validate(obj, name, opts, namespace);
    if (obj.metadata.name !== name) throw badRequest("metadata.name cannot change");
    this.#place(obj, namespace);
    obj.kind = this.kind.kind;
    obj.apiVersion = this.kind.apiVersion;
    obj.metadata.uid = cur.obj.metadata.uid;
    obj.metadata.creationTimestamp = cur.obj.metadata.creationTimestamp;
    obj.metadata.resourceVersion = cur.obj.metadata.resourceVersion;
    // A no-op update keeps the resourceVersion and emits nothing, as the real one does.
    if (JSON.stringify(obj) === decoder.decode(cur.bytes)) return cur.obj;
    return this.#commit("MODIFIED", obj, keyOf(namespace, name));
  }

  /**
   * Patches an object with the given patch type. A metadata.resourceVersion in a merge
   * patch is a precondition (409 when stale).
   */
  patchIn(
    namespace: string | undefined,
    name: string,
    type: PatchType,
    patch: unknown,
    part: Part = "all",
    opts: WriteOptions = {},
  ): T {
    const cur = this.#objects.get(keyOf(namespace, name));
    if (!cur) throw notFound(name, this.kind);
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
    const obj = this.kind.validate(next, name, opts, namespace);
    const rv = obj.metadata.resourceVersion;
    if (
      isObject(patch) && isObject(patch.metadata) && patch.metadata.resourceVersion !== undefined &&
      rv !== cur.obj.metadata.resourceVersion
    ) {
      throw conflict(name, this.kind);
    }
    return this.#replace(cur, obj, part, opts);
  }

  /** Deletes an object: 404 when absent, 409 when a precondition fails. Returns its last state. */
  deleteIn(namespace: string | undefined, name: string, pre: Preconditions = {}): T {
    const key = keyOf(namespace, name);
    const cur = this.#objects.get(key);
    if (!cur) throw notFound(name, this.kind);
    const meta = cur.obj.metadata;
    if (pre.uid !== undefined && pre.uid !== meta.uid) {
      throw new StatusError(
        409,
        "Conflict",
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${meta.uid}`,
      );
    }
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== meta.resourceVersion) {
      throw new StatusError(
        409,
        "Conflict",
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ` +
          `ResourceVersion in object meta: ${meta.resourceVersion}`,
      );
    }
    this.#objects.delete(key);
    this.#sorted = undefined;
    return this.#commit("DELETED", structuredClone(cur.obj), key, true);
  }

  #commit(type: EventType, obj: ObjectJson, key: string, deleted = false): T {
    const old = type === "MODIFIED" ? this.#objects.get(key)?.obj : undefined;
    const prev = old && {
      metadata: {
        name: old.metadata.name,
        namespace: old.metadata.namespace,
        labels: old.metadata.labels,
      },
    };
    const rv = ++this.#rev.value;
    obj.metadata.resourceVersion = String(rv);
    const bytes = encoder.encode(JSON.stringify(obj));
    if (!deleted) this.#objects.set(key, { obj: obj as T, bytes });
    const ev: StoreEvent = { rv, type, obj, bytes, lines: new Map(), prev };
    this.#history.push(ev);
    if (this.#history.length > this.#historySize * 2) {
      // Trim in chunks so pushes stay O(1) on average.
      const drop = this.#history.length - this.#historySize;
      this.#oldest = this.#history[drop - 1].rv;
      this.#history = this.#history.slice(drop);
    }
    for (const w of this.#watchers) {
      const seen = eventFor(ev, w.selector);
      if (seen) w.send(seen);
    }
    this.onChange();
    return obj as T;
  }

  /**
   * Opens a watch. From "" or "0": synthetic ADDED events for every object first. From a
   * version older than the history: throws 410 Expired.
   */
  watch(from: string, w: Watcher): () => void {
    if (from === "" || from === "0") {
      const rv = this.#rev.value;
      for (const key of this.#keys()) {
        const e = this.#objects.get(key)!;
        if (!w.selector || w.selector(e.obj)) {
          w.send({ rv, type: "ADDED", obj: e.obj, bytes: e.bytes, lines: new Map() });
        }
      }
    } else {
      if (!/^[0-9]+$/.test(from)) {
        throw badRequest(`invalid resourceVersion ${JSON.stringify(from)}`);
      }
      const rv = Number(from);
      if (rv < this.#oldest) throw expired(from);
      for (const ev of this.#history) {
        const seen = ev.rv > rv ? eventFor(ev, w.selector) : undefined;
        if (seen) w.send(seen);
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
    const version = String(this.#rev.value);
    const head = { kind: this.kind.kind, apiVersion: this.kind.apiVersion };
    const obj: ObjectJson = { ...head, metadata: { name: "", resourceVersion: version } };
    const bytes = encoder.encode(
      JSON.stringify({ ...head, metadata: { resourceVersion: version } }),
    );
    const ev: StoreEvent = { rv: this.#rev.value, type: "BOOKMARK", obj, bytes, lines: new Map() };
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
    this.#oldest = this.#rev.value;
  }
}
