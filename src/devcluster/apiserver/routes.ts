/**
 * HTTP routes of the embedded API server: discovery, probes, Nodes (list, watch, get,
 * create, update, patch, delete, status), and Events (create, list).
 *
 * @module
 */
import {
  parseFieldSelector,
  parseLabelSelector,
  type Selector,
  SelectorError,
} from "./selectors.ts";
import { badRequest, expired, status, StatusError } from "./status.ts";
import {
  eventLine,
  type NodeJson,
  type NodeStore,
  type PatchType,
  type StoredNode,
  type StoreEvent,
  type Watcher,
} from "./store.ts";
import {
  type IncludeObject,
  includeObject,
  listHead,
  metadataBytes,
  negotiate,
  nodeTable,
  type View,
} from "./views.ts";

/** What the routes need besides the store. */
export interface RouteContext {
  store: NodeStore;
  events: unknown[];
  maxBodyBytes: number;
  /** Registers an open watch stream so that shutdown can end it. */
  trackWatch(close: () => void): () => void;
  /** Fault: every watch from a resourceVersion gets 410 Expired. */
  expireWatches?: () => boolean;
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
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
  return new Response(body, { status: code, headers: { ...JSON_HEADERS, ...headers } });
}

function json(body: unknown, code = 200, headers: Record<string, string> = {}): Response {
  return jsonBytes(encoder.encode(JSON.stringify(body)), code, headers);
}

/** A Status response. */
export function statusResponse(e: StatusError, headers: Record<string, string> = {}): Response {
  return json(e.toStatus(), e.code, headers);
}

const VERSION = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0-xcluster-devcluster",
  gitCommit: "",
  gitTreeState: "clean",
  buildDate: "2026-01-01T00:00:00Z",
  goVersion: "",
  compiler: "deno",
  platform: "linux/amd64",
};

const RESOURCES = {
  kind: "APIResourceList",
  apiVersion: "v1",
  groupVersion: "v1",
  resources: [
    {
      name: "nodes",
      singularName: "node",
      namespaced: false,
      kind: "Node",
      verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
      shortNames: ["no"],
    },
    {
      name: "nodes/status",
      singularName: "",
      namespaced: false,
      kind: "Node",
      verbs: ["get", "patch", "update"],
    },
    {
      name: "events",
      singularName: "event",
      namespaced: true,
      kind: "Event",
      verbs: ["create", "list"],
      shortNames: ["ev"],
    },
  ],
};

// Just enough OpenAPI for kubectl to see that the server validates fields itself
// (fieldValidation), so `kubectl create -f` needs no client-side schema.
const NODE_GVK = { group: "", version: "v1", kind: "Node" };
const FIELD_VALIDATION = { name: "fieldValidation", in: "query", schema: { type: "string" } };
const OPENAPI_INDEX = { paths: { "api/v1": { serverRelativeURL: "/openapi/v3/api/v1?hash=1" } } };
const OPENAPI_V1 = {
  openapi: "3.0.0",
  info: { title: "xcluster-cni devcluster", version: "v1" },
  paths: Object.fromEntries(
    [["/api/v1/nodes", ["post"]], ["/api/v1/nodes/{name}", ["put", "patch"]]].map((
      [path, ops],
    ) => [
      path,
      Object.fromEntries((ops as string[]).map((op) => [op, {
        parameters: [FIELD_VALIDATION],
        responses: {},
        "x-kubernetes-action": op,
        "x-kubernetes-group-version-kind": NODE_GVK,
      }])),
    ]),
  ),
  components: { schemas: {} },
};

async function readBody(req: Request, max: number): Promise<unknown> {
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

function selectors(url: URL): Selector | undefined {
  const l = url.searchParams.get("labelSelector"), f = url.searchParams.get("fieldSelector");
  if (!l && !f) return undefined;
  try {
    const ls = parseLabelSelector(l), fs = parseFieldSelector(f);
    return (o) => ls(o) && fs(o);
  } catch (e) {
    if (e instanceof SelectorError) throw badRequest(e.message);
    throw e;
  }
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

/** A Table of `nodes` with its columns, rows as `includeObject` in `url` asks. */
function tableJson(nodes: NodeJson[], meta: Record<string, string>, url: URL): Response {
  const include = includeObject(url.searchParams.get("includeObject"));
  return json(nodeTable(nodes, { meta, include, columns: true }));
}

/** A stored node's JSON in the view (the object, or its metadata, made once). */
function itemBytes(node: StoredNode, view: View): Uint8Array<ArrayBuffer> {
  return view === "metadata" ? (node.meta ??= metadataBytes(node.obj.metadata)) : node.bytes;
}

function list(ctx: RouteContext, req: Request, url: URL): Response {
  const view = negotiate(req.headers.get("accept"), "list");
  const selector = selectors(url);
  const limit = Number(url.searchParams.get("limit") ?? "0");
  if (!Number.isInteger(limit) || limit < 0) throw badRequest("limit must be a positive integer");
  const cont = url.searchParams.get("continue");
  let rv = ctx.store.resourceVersion();
  let after: string | undefined;
  if (cont) {
    const c = decodeContinue(cont);
    ctx.store.checkVersion(c.rv);
    rv = c.rv;
    after = c.start;
  }
  const page = ctx.store.page(selector, limit, after);
  const meta: Record<string, string> = { resourceVersion: String(rv) };
  if (page.last !== undefined) meta.continue = encodeContinue(rv, page.last);
  if (view === "table") {
    return tableJson(page.items.map((n) => n.obj), meta, url);
  }
  const head = encoder.encode(listHead(view, meta));
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
  table: { include: IncludeObject; first: boolean },
): Uint8Array {
  if (view === "table") {
    const meta = { resourceVersion: ev.obj.metadata.resourceVersion ?? String(ev.rv) };
    const rows = ev.type === "BOOKMARK" ? [] : [ev.obj];
    const t = nodeTable(rows, { meta, include: table.include, columns: table.first });
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

function watch(ctx: RouteContext, req: Request, url: URL): Response {
  const view = negotiate(req.headers.get("accept"), "item");
  // includeObject means something to Tables only, as on the real server.
  const table: { include: IncludeObject; first: boolean } = {
    include: view === "table" ? includeObject(url.searchParams.get("includeObject")) : "None",
    first: true,
  };
  const selector = selectors(url);
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
      try {
        if (ctx.expireWatches?.() && from !== "" && from !== "0") throw expired(from);
        unregister = ctx.store.watch(from, w);
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

/** Handles one authenticated request. */
export async function route(ctx: RouteContext, req: Request): Promise<Response> {
  const url = new URL(req.url);
  const path = url.pathname.replace(/\/+$/, "") || "/";
  const m = req.method;
  if (path === "/version") return json(VERSION);
  if (path === "/api") {
    return json({ kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] });
  }
  if (path === "/apis") return json({ kind: "APIGroupList", apiVersion: "v1", groups: [] });
  if (path === "/api/v1") return json(RESOURCES);
  if (path === "/openapi/v3") return json(OPENAPI_INDEX);
  if (path === "/openapi/v3/api/v1") return json(OPENAPI_V1);

  if (path === "/api/v1/nodes") {
    if (m === "GET") {
      const w = url.searchParams.get("watch");
      return w === "true" || w === "1" ? watch(ctx, req, url) : list(ctx, req, url);
    }
    if (m === "POST") return json(ctx.store.create(await readBody(req, ctx.maxBodyBytes)), 201);
    throw new StatusError(405, "MethodNotAllowed", `${m} is not supported on nodes`);
  }
  const node = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/.exec(path);
  if (node) {
    const name = decodeURIComponent(node[1]);
    const part = node[2] ? "status" : "spec";
    if (m === "GET") {
      const view = negotiate(req.headers.get("accept"), "item");
      const stored = ctx.store.stored(name);
      if (stored === undefined) {
        throw new StatusError(404, "NotFound", `nodes "${name}" not found`, {
          name,
          kind: "nodes",
        });
      }
      if (view === "table") {
        const meta = { resourceVersion: stored.obj.metadata.resourceVersion ?? "" };
        return tableJson([stored.obj], meta, url);
      }
      return jsonBytes(itemBytes(stored, view));
    }
    if (m === "PUT") {
      return json(ctx.store.update(name, await readBody(req, ctx.maxBodyBytes), part));
    }
    if (m === "PATCH") {
      const type = patchType(req);
      return json(ctx.store.patch(name, type, await readBody(req, ctx.maxBodyBytes), part));
    }
    if (m === "DELETE" && !node[2]) return json(ctx.store.delete(name));
    throw new StatusError(
      405,
      "MethodNotAllowed",
      `${m} is not supported on nodes/${name}${node[2] ?? ""}`,
    );
  }
  const ev = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(path);
  if (ev) {
    if (m === "POST") {
      const body = await readBody(req, ctx.maxBodyBytes);
      if (typeof body !== "object" || body === null) {
        throw badRequest("the body is not a JSON object");
      }
      ctx.events.push(body);
      if (ctx.events.length > 1000) ctx.events.shift();
      return json(body, 201);
    }
    if (m === "GET") {
      return json({ kind: "EventList", apiVersion: "v1", metadata: {}, items: ctx.events });
    }
  }
  return json(status(404, "NotFound", "the server could not find the requested resource"), 404);
}
