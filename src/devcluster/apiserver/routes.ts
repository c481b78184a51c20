/**
 * HTTP routes of the embedded API server: discovery, /version and /metrics, Nodes (list,
 * watch, get, create, update, patch, delete, status), Leases of coordination.k8s.io/v1 and
 * Events in any namespace (the same verbs), and Pods (list, watch, get: always none).
 *
 * @module
 */
import { z } from "zod";
import {
  COORDINATION,
  COORDINATION_GROUP,
  COORDINATION_RESOURCES,
  CORE_RESOURCES,
  GROUPS,
  OPENAPI,
  VERSION,
} from "./discovery.ts";
import { EVENT_FIELD_READERS, EVENT_FIELDS, type EventStore } from "./events.ts";
import type { LeaseStore } from "./leases.ts";
import type {
  ObjectJson,
  ObjectStore,
  Preconditions,
  StoredObject,
  WriteOptions,
} from "./object_store.ts";
import { POD_FIELD_READERS, POD_FIELDS, type PodStore } from "./pods.ts";
import {
  type FieldReader,
  parseFieldSelector,
  parseLabelSelector,
  type Selector,
  SelectorError,
} from "./selectors.ts";
import { badRequest, expired, methodNotAllowed, notFound, status, StatusError } from "./status.ts";
import { isNamespaceName } from "./validation.ts";
import {
  eventLine,
  type NodeStore,
  type PatchType,
  type StoreEvent,
  type Watcher,
} from "./store.ts";
import {
  EVENT_TABLE,
  type IncludeObject,
  includeObject,
  LEASE_TABLE,
  listHead,
  metadataBytes,
  negotiate,
  NODE_TABLE,
  objectTable,
  POD_TABLE,
  type TableSpec,
  type View,
} from "./views.ts";

/** What the routes need besides the stores. */
export interface RouteContext {
  store: NodeStore;
  leases: LeaseStore;
  events: EventStore;
  pods: PodStore;
  /** The text of /metrics (Prometheus exposition format). */
  metrics(): string;
  maxBodyBytes: number;
  /** Registers an open watch stream so that shutdown can end it. */
  trackWatch(close: () => void): () => void;
  /** Fault: every watch from a resourceVersion gets 410 Expired. */
  expireWatches?: () => boolean;
  /** Fault: every watch ends at once, with no event. */
  endWatches?: () => boolean;
}

/** One collection as a request reads it: a store, its Table, and a namespace or all. */
interface Served {
  store: ObjectStore<ObjectJson>;
  table: TableSpec;
  /** The namespace of the URL; undefined for all namespaces or a cluster-scoped kind. */
  namespace?: string;
  /** Fields a fieldSelector may name. */
  fields: readonly string[];
  /** How fields are read that are not at their path. */
  readers?: Readonly<Record<string, FieldReader>>;
}

const JSON_HEADERS = { "content-type": "application/json" };
const encoder = new TextEncoder();

/**
 * A response of JSON bytes, given as a stream of one chunk: with a body of plain bytes,
 * Deno.serve over TLS sent it behind the headers in a segment of its own, which Nagle's
 * algorithm held until the client's delayed ACK (about 40 ms per small response over
 * HTTP/1.1; kube-apiserver turns Nagle off).
 */
function jsonBytes(bytes: Uint8Array, code = 200, headers: Record<string, string> = {}): Response {
  return new Response(oneChunk(bytes), { status: code, headers: { ...JSON_HEADERS, ...headers } });
}

/** A body of one chunk, as a stream (see {@link jsonBytes}). */
function oneChunk(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

function json(body: unknown, code = 200, headers: Record<string, string> = {}): Response {
  return jsonBytes(encoder.encode(JSON.stringify(body)), code, headers);
}

/** A Status response, with the error's own headers (Allow of a 405) and `headers`. */
export function statusResponse(e: StatusError, headers: Record<string, string> = {}): Response {
  return json(e.toStatus(), e.code, { ...e.headers, ...headers });
}

/** The body's bytes; 413 past `max`. */
async function readBytes(req: Request, max: number): Promise<Uint8Array> {
  const length = Number(req.headers.get("content-length") ?? "0");
  if (length > max) {
    throw new StatusError(
      413,
      "RequestEntityTooLarge",
      `the request body is larger than ${max} bytes`,
    );
  }
  const buf = new Uint8Array(await req.arrayBuffer());
  if (buf.length > max) {
    throw new StatusError(
      413,
      "RequestEntityTooLarge",
      `the request body is larger than ${max} bytes`,
    );
  }
  return buf;
}

async function readBody(req: Request, max: number): Promise<unknown> {
  const buf = await readBytes(req, max);
  try {
    return JSON.parse(new TextDecoder().decode(buf));
  } catch (e) {
    throw badRequest(`the body is not valid JSON: ${(e as Error).message}`);
  }
}

function patchType(req: Request): PatchType {
  const ct = (req.headers.get("content-type") ?? "").split(";")[0].trim();
  if (ct === "application/merge-patch+json") return "merge";
  if (ct === "application/strategic-merge-patch+json") return "strategic";
  if (ct === "application/json-patch+json") return "json";
  throw new StatusError(
    415,
    "UnsupportedMediaType",
    `the patch content type ${JSON.stringify(ct)} is not supported`,
  );
}

function selectors(url: URL, served: Served): Selector | undefined {
  const l = url.searchParams.get("labelSelector"), f = url.searchParams.get("fieldSelector");
  if (!l && !f) return undefined;
  try {
    const ls = parseLabelSelector(l), fs = parseFieldSelector(f, served.fields, served.readers);
    return (o) => ls(o) && fs(o);
  } catch (e) {
    if (e instanceof SelectorError) throw badRequest(e.message);
    throw e;
  }
}

/** The `fieldValidation` parameter: Strict makes unknown fields a 400; others drop them. */
function writeOptions(url: URL): WriteOptions {
  const v = url.searchParams.get("fieldValidation");
  if (v === null || v === "" || v === "Ignore" || v === "Warn") return {};
  if (v === "Strict") return { strict: true };
  throw badRequest(
    `fieldValidation=${JSON.stringify(v)}: must be one of "Ignore", "Warn" or "Strict"`,
  );
}

function encodeContinue(rv: number, last: string): string {
  return btoa(JSON.stringify({ rv, start: last }));
}

function decodeContinue(token: string): { rv: number; start: string } {
  try {
    const v = JSON.parse(atob(token));
    if (typeof v.rv === "number" && typeof v.start === "string") return v;
  } catch { /* fall through */ }
  throw badRequest("continue key is not valid");
}

/** Size of the pieces a list body is streamed in. */
const LIST_CHUNK = 1 << 20;

/**
 * A list body streamed in pieces of about {@link LIST_CHUNK} bytes, copied from the stored
 * items as the client reads: 5,000 nodes are 40 MB, which as one buffer per request would
 * cost a full garbage collection each time.
 */
function listBody(head: Uint8Array, items: Uint8Array[]): ReadableStream<Uint8Array> {
  let next = 0;
  let first = true;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      let size = first ? head.length : 0;
      let end = next;
      while (end < items.length && (size === 0 || size + items[end].length < LIST_CHUNK)) {
        size += items[end].length + (end > 0 ? 1 : 0);
        end++;
      }
      const last = end === items.length;
      const chunk = new Uint8Array(size + (last ? 2 : 0));
      let at = 0;
      if (first) {
        chunk.set(head);
        at = head.length;
        first = false;
      }
      for (; next < end; next++) {
        if (next > 0) chunk[at++] = 0x2c; // ,
        chunk.set(items[next], at);
        at += items[next].length;
      }
      if (last) {
        chunk[at] = 0x5d; // ]
        chunk[at + 1] = 0x7d; // }
        controller.enqueue(chunk);
        controller.close();
      } else {
        controller.enqueue(chunk);
      }
    },
  });
}

/** A Table of `objects` with its columns, rows as `includeObject` in `url` asks. */
function tableJson(
  spec: TableSpec,
  objects: ObjectJson[],
  meta: Record<string, string>,
  url: URL,
): Response {
  const include = includeObject(url.searchParams.get("includeObject"));
  return json(objectTable(spec, objects, { meta, include, columns: true }));
}

/** A stored object's JSON in the view (the object, or its metadata, made once). */
function itemBytes(stored: StoredObject, view: View): Uint8Array<ArrayBuffer> {
  return view === "metadata" ? (stored.meta ??= metadataBytes(stored.obj.metadata)) : stored.bytes;
}

function list(served: Served, req: Request, url: URL): Response {
  const { store } = served;
  const view = negotiate(req.headers.get("accept"), "list");
  const selector = selectors(url, served);
  const limit = Number(url.searchParams.get("limit") ?? "0");
  if (!Number.isInteger(limit) || limit < 0) throw badRequest("limit must be a positive integer");
  const cont = url.searchParams.get("continue");
  let rv = store.resourceVersion();
  let after: string | undefined;
  if (cont) {
    const c = decodeContinue(cont);
    store.checkVersion(c.rv);
    rv = c.rv;
    after = c.start;
  }
  const page = store.page(selector, limit, after, served.namespace);
  const meta: Record<string, string> = { resourceVersion: String(rv) };
  if (page.last !== undefined) meta.continue = encodeContinue(rv, page.last);
  if (view === "table") {
    return tableJson(served.table, page.items.map((n) => n.obj), meta, url);
  }
  const head = encoder.encode(listHead(view, meta, store.kind));
  const items = page.items.map((n) => itemBytes(n, view));
  return new Response(listBody(head, items), { headers: JSON_HEADERS });
}

/**
 * The line of a watch event in the view. Object and metadata lines are made once per event
 * for every watcher; a Table line is each watcher's own, its first with the columns.
 */
function watchLine(
  ev: StoreEvent,
  view: View,
  table: { spec: TableSpec; include: IncludeObject; first: boolean },
): Uint8Array {
  if (view === "table") {
    const meta = { resourceVersion: ev.obj.metadata.resourceVersion ?? String(ev.rv) };
    const rows = ev.type === "BOOKMARK" ? [] : [ev.obj];
    const t = objectTable(table.spec, rows, { meta, include: table.include, columns: table.first });
    table.first = false;
    return eventLine(ev.type, encoder.encode(JSON.stringify(t)));
  }
  let line = ev.lines.get(view);
  if (line === undefined) {
    const bytes = view === "object" ? ev.bytes : metadataBytes(
      ev.type === "BOOKMARK" ? { resourceVersion: String(ev.rv) } : ev.obj.metadata,
    );
    line = eventLine(ev.type, bytes);
    ev.lines.set(view, line);
  }
  return line;
}

/** The selector of a watch, narrowed to the namespace of the URL. */
function watchSelector(served: Served, url: URL): Selector | undefined {
  const selector = selectors(url, served);
  const ns = served.namespace;
  if (ns === undefined) return selector;
  return selector
    ? (o) => o.metadata.namespace === ns && selector(o)
    : (o) => o.metadata.namespace === ns;
}

function watch(ctx: RouteContext, served: Served, req: Request, url: URL): Response {
  const view = negotiate(req.headers.get("accept"), "item");
  // includeObject means something to Tables only, as on the real server.
  const table: { spec: TableSpec; include: IncludeObject; first: boolean } = {
    spec: served.table,
    include: view === "table" ? includeObject(url.searchParams.get("includeObject")) : "None",
    first: true,
  };
  const selector = watchSelector(served, url);
  const from = url.searchParams.get("resourceVersion") ?? "";
  const bookmarks = url.searchParams.get("allowWatchBookmarks") === "true";
  const timeout = Number(url.searchParams.get("timeoutSeconds") ?? "0");
  let stop = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let closed = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const w: Watcher = {
        selector,
        bookmarks,
        send: (ev) => {
          if (!closed) controller.enqueue(watchLine(ev, view, table));
        },
        close: () => {
          if (closed) return;
          closed = true;
          clearTimeout(timer);
          unregister();
          untrack();
          try {
            controller.close();
          } catch { /* already cancelled */ }
        },
      };
      let unregister = () => {};
      const untrack = ctx.trackWatch(() => w.close());
      if (ctx.endWatches?.()) {
        w.close();
        return;
      }
      try {
        if (ctx.expireWatches?.() && from !== "" && from !== "0") throw expired(from);
        unregister = served.store.watch(from, w);
      } catch (e) {
        if (!(e instanceof StatusError)) throw e;
        // As the real server: a watch that cannot start is an ERROR event, then the end.
        controller.enqueue(
          encoder.encode(`{"type":"ERROR","object":${JSON.stringify(e.toStatus())}}\n`),
        );
        w.close();
        return;
      }
      if (timeout > 0) timer = setTimeout(() => w.close(), timeout * 1000);
      stop = () => w.close();
    },
    cancel() {
      stop();
    },
  });
  return new Response(body, { headers: { ...JSON_HEADERS, "transfer-encoding": "chunked" } });
}

/** GET of a collection: a list, or a watch with `watch=true`. */
function listOrWatch(ctx: RouteContext, served: Served, req: Request, url: URL): Response {
  const w = url.searchParams.get("watch");
  return w === "true" || w === "1" ? watch(ctx, served, req, url) : list(served, req, url);
}

/** GET of one object in the view the Accept header asks for. */
function getOne(served: Served, name: string, req: Request, url: URL): Response {
  const view = negotiate(req.headers.get("accept"), "item");
  const stored = served.store.storedIn(served.namespace, name);
  if (stored === undefined) throw notFound(name, served.store.kind);
  if (view === "table") {
    const meta = { resourceVersion: stored.obj.metadata.resourceVersion ?? "" };
    return tableJson(served.table, [stored.obj], meta, url);
  }
  return jsonBytes(itemBytes(stored, view));
}

const NODE_FIELDS = ["metadata.name"];
const NAMESPACED_FIELDS = ["metadata.name", "metadata.namespace"];

async function nodeRoutes(
  ctx: RouteContext,
  req: Request,
  url: URL,
  path: string,
): Promise<Response | undefined> {
  const m = req.method;
  const served: Served = { store: ctx.store, table: NODE_TABLE, fields: NODE_FIELDS };
  if (path === "/api/v1/nodes") {
    if (m === "GET") return listOrWatch(ctx, served, req, url);
    if (m === "POST") return json(ctx.store.create(await readBody(req, ctx.maxBodyBytes)), 201);
    throw methodNotAllowed(m, path, ["GET", "POST"]);
  }
  const node = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(path);
  if (!node) return undefined;
  const name = decodeURIComponent(node[1]);
  const part = node[2] ? "status" : "spec";
  if (m === "GET") return getOne(served, name, req, url);
  if (m === "PUT") {
    return json(ctx.store.update(name, await readBody(req, ctx.maxBodyBytes), part));
  }
  if (m === "PATCH") {
    const type = patchType(req);
    return json(ctx.store.patch(name, type, await readBody(req, ctx.maxBodyBytes), part));
  }
  if (m === "DELETE" && !node[2]) return json(ctx.store.delete(name));
  throw methodNotAllowed(
    m,
    path,
    node[2] ? ["GET", "PUT", "PATCH"] : ["GET", "PUT", "PATCH", "DELETE"],
  );
}

const DeleteOptionsSchema = z.object({
  preconditions: z.object({
    uid: z.string().nullish(),
    resourceVersion: z.string().nullish(),
  }).nullish(),
});

/** The preconditions of a DELETE's optional DeleteOptions body. */
async function deletePreconditions(req: Request, max: number): Promise<Preconditions> {
  const text = req.body ? new TextDecoder().decode(await readBytes(req, max)) : "";
  if (text.trim() === "") return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw badRequest(`the body is not valid JSON: ${(e as Error).message}`);
  }
  const parsed = DeleteOptionsSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`DeleteOptions: ${issue.path.join(".")}: ${issue.message}`);
  }
  const pre = parsed.data.preconditions;
  return { uid: pre?.uid ?? undefined, resourceVersion: pre?.resourceVersion ?? undefined };
}

const LEASES = `/apis/${COORDINATION}/v1`;
const LEASE_PATH = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/;
const CORE_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/(events|pods)(?:\/([^/]+))?$/;

/** A namespaced kind as its routes serve it. */
interface NamespacedKind extends Served {
  /** Create, update, patch and delete; false serves reads only. */
  writable: boolean;
}

/**
 * The routes of a namespaced kind: its collection across namespaces (`namespace`
 * undefined), in one namespace, and one object (`name`).
 */
async function namespacedRoutes(
  ctx: RouteContext,
  req: Request,
  url: URL,
  kind: NamespacedKind,
  namespace: string | undefined,
  name: string | undefined,
): Promise<Response> {
  const m = req.method;
  const path = url.pathname;
  const { store } = kind;
  const served: Served = { ...kind, namespace };
  const reads = m === "GET";
  if (namespace === undefined) {
    if (reads) return listOrWatch(ctx, served, req, url);
    throw methodNotAllowed(m, path, ["GET"]);
  }
  if (name === undefined) {
    if (reads) return listOrWatch(ctx, served, req, url);
    if (m !== "POST" || !kind.writable) {
      throw methodNotAllowed(m, path, kind.writable ? ["GET", "POST"] : ["GET"]);
    }
  } else if (reads) {
    return getOne(served, name, req, url);
  } else if (!kind.writable || !["PUT", "PATCH", "DELETE"].includes(m)) {
    throw methodNotAllowed(m, path, kind.writable ? ["GET", "PUT", "PATCH", "DELETE"] : ["GET"]);
  }
  if (!isNamespaceName(namespace)) {
    // No namespace of that name can exist: the real server's admission answers so.
    throw new StatusError(404, "NotFound", `namespaces "${namespace}" not found`, {
      name: namespace,
      kind: "namespaces",
    });
  }
  if (name === undefined) {
    const body = await readBody(req, ctx.maxBodyBytes);
    return json(store.createIn(namespace, body, writeOptions(url)), 201);
  }
  if (m === "PUT") {
    const body = await readBody(req, ctx.maxBodyBytes);
    const existed = store.storedIn(namespace, name) !== undefined;
    return json(
      store.updateIn(namespace, name, body, "all", writeOptions(url)),
      existed ? 200 : 201,
    );
  }
  if (m === "PATCH") {
    const type = patchType(req);
    const body = await readBody(req, ctx.maxBodyBytes);
    return json(store.patchIn(namespace, name, type, body, "all", writeOptions(url)));
  }
  const gone = store.deleteIn(namespace, name, await deletePreconditions(req, ctx.maxBodyBytes));
  const group = store.kind.group;
  return json({
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    details: {
      name,
      ...(group ? { group } : {}),
      kind: store.kind.plural,
      uid: gone.metadata.uid,
    },
  });
}

/** The namespaced kinds of the server by their resource name. */
function namespacedKinds(ctx: RouteContext): Record<"leases" | "events" | "pods", NamespacedKind> {
  return {
    leases: { store: ctx.leases, table: LEASE_TABLE, fields: NAMESPACED_FIELDS, writable: true },
    events: {
      store: ctx.events,
      table: EVENT_TABLE,
      fields: EVENT_FIELDS,
      readers: EVENT_FIELD_READERS,
      writable: true,
    },
    pods: {
      store: ctx.pods,
      table: POD_TABLE,
      fields: POD_FIELDS,
      readers: POD_FIELD_READERS,
      writable: false,
    },
  };
}

/**
 * Paths that answer GET only (HEAD is a GET without its body): discovery, OpenAPI,
 * /version and /metrics. Any other method is a 405 naming them.
 */
const READ_ONLY = new Set([
  "/version",
  "/metrics",
  "/api",
  "/apis",
  "/api/v1",
  `/apis/${COORDINATION}`,
  LEASES,
  ...Object.keys(OPENAPI),
]);

/** The methods of a path that serves GET only. */
export const READ_METHODS: readonly string[] = ["GET", "HEAD"];

/** Handles one authenticated request. */
export async function route(ctx: RouteContext, req: Request): Promise<Response> {
  const url = new URL(req.url);
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const m = req.method;
  if (READ_ONLY.has(path) && m !== "GET" && m !== "HEAD") {
    await req.body?.cancel();
    throw methodNotAllowed(m, path, READ_METHODS);
  }
  if (path === "/version") return json(VERSION);
  if (path === "/metrics") {
    return new Response(oneChunk(encoder.encode(ctx.metrics())), {
      headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
    });
  }
  if (path === "/api") {
    return json({ kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] });
  }
  if (path === "/apis") return json(GROUPS);
  if (path === "/api/v1") return json(CORE_RESOURCES);
  if (path === `/apis/${COORDINATION}`) return json(COORDINATION_GROUP);
  if (path === LEASES) return json(COORDINATION_RESOURCES);
  const doc = OPENAPI[path];
  if (doc !== undefined) return json(doc);

  if (path.startsWith("/api/v1/nodes")) {
    const answer = await nodeRoutes(ctx, req, url, path);
    if (answer) return answer;
  } else {
    const kinds = namespacedKinds(ctx);
    if (path === "/api/v1/events" || path === "/api/v1/pods") {
      return await namespacedRoutes(
        ctx,
        req,
        url,
        kinds[path === "/api/v1/pods" ? "pods" : "events"],
        undefined,
        undefined,
      );
    }
    if (path === `${LEASES}/leases`) {
      return await namespacedRoutes(ctx, req, url, kinds.leases, undefined, undefined);
    }
    const core = CORE_PATH.exec(path);
    const lease = core ? undefined : LEASE_PATH.exec(path);
    const hit = core
      ? { kind: kinds[core[2] as "events" | "pods"], ns: core[1], name: core[3] }
      : lease
      ? { kind: kinds.leases, ns: lease[1], name: lease[2] }
      : undefined;
    if (hit) {
      const name = hit.name === undefined ? undefined : decodeURIComponent(hit.name);
      return await namespacedRoutes(ctx, req, url, hit.kind, decodeURIComponent(hit.ns), name);
    }
  }
  await req.body?.cancel();
  return json(status(404, "NotFound", "the server could not find the requested resource"), 404);
}
