/**
 * A small Kubernetes client over fetch: the Node calls the router needs, Leases (for leader
 * election), Events, and Status errors turned into {@link ApiError}.
 *
 * @module
 */
import { z } from "zod";
import { openWatchStream, takeLines } from "./watch_stream.ts";
import type { Logger } from "../log.ts";
import type { KubeAccess } from "./kubeconfig.ts";
import { type Fields, ListSplitter, pickFields } from "./json_list.ts";
import {
  type Lease,
  LeaseSchema,
  type LeaseWatchEvent,
  LeaseWatchEventSchema,
  type LeaseWatchOptions,
} from "./lease.ts";

/**
 * A failed API request: HTTP status (0 when no response), reason and message. A write whose
 * resourceVersion precondition is stale is status 409, reason "Conflict".
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Accept headers of metadata-only reads, with plain JSON for servers without them. */
const METADATA_LIST =
  "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
const METADATA_ITEM =
  "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

/** What selects a page of Nodes. */
export interface ListOptions {
  /**
   * Ask for the nodes' metadata only (PartialObjectMetadataList): no spec or status, a
   * sixth of a real Node's bytes. A server that cannot sends whole Nodes.
   */
  metadataOnly?: boolean;
  limit?: number;
  continue?: string;
  resourceVersion?: string;
  labelSelector?: string;
  fieldSelector?: string;
  signal?: AbortSignal;
}

/** A page of Nodes read item by item: how many, and where the list stands. */
export interface ListPage {
  count: number;
  resourceVersion: string;
  continue?: string;
}

/** One event of a watch stream. */
export interface WatchEvent {
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  object: unknown;
}

const StatusSchema = z.object({
  kind: z.literal("Status"),
  message: z.string().optional(),
  reason: z.string().optional(),
  code: z.number().optional(),
});

const ListSchema = z.object({
  items: z.array(z.unknown()).nullish(),
  metadata: z.object({
    resourceVersion: z.string().optional(),
    continue: z.string().optional(),
  }).optional(),
});

const WatchEventSchema = z.object({
  type: z.enum(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]),
  object: z.unknown(),
});

/** Turns a Status object (from a body or an ERROR watch event) into an ApiError. */
export function statusError(status: unknown, fallbackCode = 0): ApiError {
  const s = StatusSchema.safeParse(status);
  if (!s.success) {
    return new ApiError(fallbackCode, "Unknown", `unexpected response (${fallbackCode})`);
  }
  return new ApiError(
    s.data.code ?? fallbackCode,
    s.data.reason ?? "Unknown",
    s.data.message ?? s.data.reason ?? "",
  );
}

/** The URL of a namespace's Leases, or of one. */
function leasePath(namespace: string, name?: string): string {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/** A Lease from a response body; ApiError (BadLease) naming what does not fit. */
async function parseLease(res: Response, what: string): Promise<Lease> {
  let body: unknown;
  try {
    body = await res.json();
  } catch (e) {
    throw new ApiError(res.status, "BadLease", `lease ${what}: ${(e as Error).message}`);
  }
  const parsed = LeaseSchema.safeParse(body);
  if (!parsed.success) {
    throw new ApiError(
      res.status,
      "BadLease",
      `lease ${what} not understood: ${parsed.error.message}`,
    );
  }
  return parsed.data;
}

type Send = (url: string, init: RequestInit) => Promise<Response>;

/**
 * fetch with the cluster's CA and client certificate, over HTTP/1.1 only. Over HTTP/2 a
 * watch stalls now and then for about 40 ms: Deno's client socket keeps Nagle's algorithm
 * on, so the flow-control window update it owes the server waits for the server's delayed
 * ACK while the server waits for the window (seen as the p99 of change latency).
 */
function fetchSender(access: KubeAccess): { send: Send; close(): void } {
  const client = Deno.createHttpClient({
    caCerts: access.caPem ? [access.caPem] : undefined,
    cert: access.clientCertPem,
    key: access.clientKeyPem,
    http2: false,
  });
  return {
    send: (url, init) => fetch(url, { ...init, client }),
    close: () => client.close(),
  };
}

/** node:https, the only way here to skip certificate verification for one client. */
async function insecureSender(access: KubeAccess): Promise<{ send: Send; close(): void }> {
  const https = await import("node:https");
  const agent = new https.Agent({
    rejectUnauthorized: false,
    keepAlive: true,
    cert: access.clientCertPem,
    key: access.clientKeyPem,
  });
  const send: Send = (url, init) =>
    new Promise((resolve, reject) => {
      const req = https.request(url, {
        method: init.method ?? "GET",
        headers: init.headers as Record<string, string>,
        agent,
        signal: init.signal ?? undefined,
      }, (res) => {
        // A byte stream, as fetch's bodies are: a watch reads into a buffer of its own.
        const body = new ReadableStream({
          type: "bytes",
          start(controller) {
            res.on("data", (c: Uint8Array) => controller.enqueue(new Uint8Array(c)));
            res.on("end", () => controller.close());
            res.on("error", (e: Error) => controller.error(e));
          },
          cancel() {
            res.destroy();
          },
        });
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          if (typeof v === "string") headers.set(k, v);
        }
        resolve(new Response(body, { status: res.statusCode ?? 0, headers }));
      });
      req.on("error", reject);
      if (typeof init.body === "string") req.write(init.body);
      req.end();
    });
  return { send, close: () => agent.destroy() };
}

/** Options of the client. */
export interface ClientOptions {
  log?: Logger;
  userAgent?: string;
}

/** The Node, Lease (and Event) calls of the Kubernetes API. */
export class KubeClient {
  #access: KubeAccess;
  #sender: Promise<{ send: Send; close(): void }>;
  #opts: ClientOptions;
  /** Whether watches go over a connection of their own (watch_stream.ts). */
  #direct: boolean;

  constructor(access: KubeAccess, opts: ClientOptions = {}) {
    this.#access = access;
    this.#opts = opts;
    const insecure = access.insecureSkipTLSVerify && access.server.startsWith("https:");
    this.#sender = insecure ? insecureSender(access) : Promise.resolve(fetchSender(access));
    this.#direct = !insecure && !proxied();
  }

  /**
   * Whether watches go over a connection of their own (watch_stream.ts): not through a proxy
   * named in the environment, nor with certificate checks off. Else through fetch.
   */
  get directWatches(): boolean {
    return this.#direct;
  }

  #url(path: string, query: Record<string, string | undefined> = {}): URL {
    const url = new URL(this.#access.server + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    return url;
  }

  async #headers(accept: string | undefined): Promise<Record<string, string>> {
    const headers: Record<string, string> = {
      accept: accept ?? "application/json",
      "user-agent": this.#opts.userAgent ?? "xcluster-cni",
    };
    const token = await this.#access.token();
    if (token) headers.authorization = `Bearer ${token}`;
    return headers;
  }

  /** Sends a request; non-2xx becomes an ApiError with the Status's reason and message. */
  async request(
    method: string,
    path: string,
    opts: {
      query?: Record<string, string | undefined>;
      body?: unknown;
      signal?: AbortSignal;
      accept?: string;
      /** Content type of the body (default application/json). */
      contentType?: string;
    } = {},
  ): Promise<Response> {
    const url = this.#url(path, opts.query);
    const headers = await this.#headers(opts.accept);
    if (opts.body !== undefined) headers["content-type"] = opts.contentType ?? "application/json";
    const { send } = await this.#sender;
    let res: Response;
    try {
      res = await send(url.toString(), {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: opts.signal,
      });
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      throw connectionFailed(method, url, e);
    }
    if (res.status >= 200 && res.status < 300) return res;
    const text = await res.text().catch(() => "");
    throw httpError(method, url, res.status, text, res.headers.get("retry-after"));
  }

  /**
   * The lines of a watch: over a connection of its own where fetch would connect directly
   * (see watch_stream.ts), else through fetch. Errors as {@link request} gives them.
   */
  async #watchLines(
    path: string,
    query: Record<string, string | undefined>,
    accept: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<AsyncIterable<string>> {
    if (!this.#direct) {
      return watchLines(await this.request("GET", path, { query, accept, signal }), signal);
    }
    const url = this.#url(path, query);
    const a = this.#access;
    const target = {
      url,
      headers: await this.#headers(accept),
      caPem: a.caPem,
      certPem: a.clientCertPem,
      keyPem: a.clientKeyPem,
    };
    const stream = await openWatchStream(target, signal, (e) => connectionFailed("GET", url, e));
    if (stream.lines) return stream.lines;
    const retryAfter = stream.headers.get("retry-after");
    throw httpError("GET", url, stream.status, stream.text ?? "", retryAfter);
  }

  /**
   * GET one Node as raw JSON (with `metadataOnly`, its PartialObjectMetadata where the
   * server can); ApiError 404 when absent.
   */
  async getNode(
    name: string,
    opts: { metadataOnly?: boolean; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    const res = await this.request("GET", `/api/v1/nodes/${encodeURIComponent(name)}`, {
      accept: opts.metadataOnly ? METADATA_ITEM : undefined,
      signal: opts.signal,
    });
    return await res.json();
  }

  /** One page of Nodes. */
  async listNodes(
    opts: ListOptions = {},
  ): Promise<{ items: unknown[]; resourceVersion: string; continue?: string }> {
    const res = await this.openNodeList(opts);
    const parsed = ListSchema.safeParse(await res.json());
    if (!parsed.success) {
      throw new ApiError(
        res.status,
        "BadList",
        `node list not understood: ${parsed.error.message}`,
      );
    }
    return {
      items: parsed.data.items ?? [],
      resourceVersion: parsed.data.metadata?.resourceVersion ?? "",
      continue: parsed.data.metadata?.continue || undefined,
    };
  }

  /**
   * One page of Nodes, read as it streams in: `onItem` gets every item as soon as it is
   * parsed, so that the caller keeps what it needs and a whole page of objects never lives
   * at once (see {@link ListSplitter}). Throws an ApiError (BadList) when the body is not a
   * list; items already handed over are then the caller's to drop.
   */
  async listNodesEach(
    opts: ListOptions,
    onItem: (item: unknown) => void,
    fields?: Fields,
  ): Promise<ListPage> {
    return await this.readNodeList(await this.openNodeList(opts), onItem, undefined, fields);
  }

  /** Sends the request for one page of Nodes; the body is read by {@link readNodeList}. */
  openNodeList(opts: ListOptions): Promise<Response> {
    return this.request("GET", "/api/v1/nodes", {
      accept: opts.metadataOnly ? METADATA_LIST : undefined,
      query: {
        limit: opts.limit?.toString(),
        continue: opts.continue,
        resourceVersion: opts.resourceVersion,
        labelSelector: opts.labelSelector,
        fieldSelector: opts.fieldSelector,
      },
      signal: opts.signal,
    });
  }

  /**
   * Reads a page opened by {@link openNodeList}, item by item. `onContinue` is called as
   * soon as the continue token is known, which with a real API server (metadata first) is
   * before the items: the next page can be asked for while this one is still read. With
   * `fields`, only those members of each item are parsed (see {@link pickFields}).
   */
  async readNodeList(
    res: Response,
    onItem: (item: unknown) => void,
    onContinue?: (token: string) => void,
    fields?: Fields,
  ): Promise<ListPage> {
    const bad = (why: string) =>
      new ApiError(res.status, "BadList", `node list not understood: ${why}`);
    let rest: unknown;
    let count = 0;
    const decoder = new TextDecoder();
    try {
      const splitter = new ListSplitter((json) => {
        count++;
        onItem(JSON.parse(fields ? pickFields(json, fields) : decoder.decode(json)));
      }, (head) => {
        const token = ListSchema.safeParse(head).data?.metadata?.continue;
        if (token) onContinue?.(token);
      });
      if (res.body) {
        for await (const chunk of res.body) splitter.push(chunk);
      }
      rest = splitter.end();
    } catch (e) {
      if (e instanceof SyntaxError) throw bad(e.message);
      throw e;
    }
    const parsed = ListSchema.safeParse(rest);
    if (!parsed.success) throw bad(parsed.error.message);
    return {
      count,
      resourceVersion: parsed.data.metadata?.resourceVersion ?? "",
      continue: parsed.data.metadata?.continue || undefined,
    };
  }

  /**
   * Watches Nodes from a resourceVersion; ends when the server ends the stream. With
   * `metadataOnly`, events carry PartialObjectMetadata where the server can.
   */
  async *watchNodes(opts: {
    resourceVersion: string;
    metadataOnly?: boolean;
    timeoutSeconds?: number;
    allowWatchBookmarks?: boolean;
    labelSelector?: string;
    fieldSelector?: string;
    signal?: AbortSignal;
  }): AsyncGenerator<WatchEvent> {
    const query = {
      watch: "true",
      resourceVersion: opts.resourceVersion,
      timeoutSeconds: opts.timeoutSeconds?.toString(),
      allowWatchBookmarks: opts.allowWatchBookmarks ? "true" : undefined,
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
    };
    const accept = opts.metadataOnly ? METADATA_ITEM : undefined;
    const lines = await this.#watchLines("/api/v1/nodes", query, accept, opts.signal);
    for await (const line of lines) {
      const ev = WatchEventSchema.safeParse(JSON.parse(line));
      if (!ev.success) {
        throw new ApiError(
          200,
          "BadWatchEvent",
          `watch event not understood: ${line.slice(0, 200)}`,
        );
      }
      yield ev.data;
    }
  }

  /**
   * Patches a Node with a JSON merge patch (RFC 7386) and returns the Node as raw JSON.
   * With `resourceVersion`, the patch carries it in metadata.resourceVersion: the server
   * applies it only to that version, else an ApiError 409 (Conflict), upon which the caller
   * reads the node again and decides afresh.
   *
   * @example
   * ```ts
   * await client.patchNode("vm-001", { metadata: { annotations: { k: "v" } } }, {
   *   resourceVersion: node.metadata.resourceVersion,
   * });
   * ```
   */
  async patchNode(
    name: string,
    patch: Record<string, unknown>,
    opts: { resourceVersion?: string; signal?: AbortSignal } = {},
  ): Promise<unknown> {
    let body = patch;
    if (opts.resourceVersion !== undefined) {
      const meta = patch.metadata ?? {};
      if (typeof meta !== "object" || meta === null || Array.isArray(meta)) {
        throw new TypeError(
          `patchNode ${name}: metadata of the patch is not an object: ${JSON.stringify(meta)}`,
        );
      }
      body = { ...patch, metadata: { ...meta, resourceVersion: opts.resourceVersion } };
    }
    const res = await this.request("PATCH", `/api/v1/nodes/${encodeURIComponent(name)}`, {
      body,
      contentType: "application/merge-patch+json",
      signal: opts.signal,
    });
    return await res.json();
  }

  /** GET a Lease; ApiError 404 when absent. */
  async getLease(
    namespace: string,
    name: string,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Lease> {
    const res = await this.request("GET", leasePath(namespace, name), { signal: opts.signal });
    return await parseLease(res, `${namespace}/${name}`);
  }

  /** Creates a Lease in `namespace`; ApiError 409 (AlreadyExists) when it exists. */
  async createLease(
    namespace: string,
    lease: Lease,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Lease> {
    const res = await this.request("POST", leasePath(namespace), {
      body: lease,
      signal: opts.signal,
    });
    return await parseLease(res, `${namespace}/${lease.metadata.name}`);
  }

  /**
   * Replaces a Lease (PUT). The metadata.resourceVersion it carries is a precondition: when
   * the lease changed since, ApiError 409 (Conflict).
   */
  async updateLease(
    namespace: string,
    lease: Lease,
    opts: { signal?: AbortSignal } = {},
  ): Promise<Lease> {
    const name = lease.metadata.name;
    const res = await this.request("PUT", leasePath(namespace, name), {
      body: lease,
      signal: opts.signal,
    });
    return await parseLease(res, `${namespace}/${name}`);
  }

  /**
   * Watches one Lease of `namespace` (fieldSelector `metadata.name=NAME`, bookmarks allowed)
   * from a resourceVersion; ends when the server ends the stream or `signal` aborts. Each
   * event is checked with {@link LeaseWatchEventSchema}: one that does not fit is an ApiError
   * (BadWatchEvent) naming the lease and quoting the line. An ERROR event is yielded as it
   * came (its object is a Status: see {@link statusError}).
   *
   * @example
   * ```ts
   * const rv = (await client.getLease("kube-system", "net3")).metadata.resourceVersion!;
   * const opts = { name: "net3", resourceVersion: rv };
   * for await (const ev of client.watchLeases("kube-system", opts)) {
   *   if (ev.type === "MODIFIED") console.log(ev.object.spec?.holderIdentity);
   * }
   * ```
   */
  async *watchLeases(
    namespace: string,
    opts: LeaseWatchOptions,
  ): AsyncGenerator<LeaseWatchEvent> {
    const what = `lease ${namespace}/${opts.name}`;
    const query = {
      watch: "true",
      resourceVersion: opts.resourceVersion,
      timeoutSeconds: opts.timeoutSeconds?.toString(),
      allowWatchBookmarks: "true",
      fieldSelector: `metadata.name=${opts.name}`,
    };
    const lines = await this.#watchLines(leasePath(namespace), query, undefined, opts.signal);
    const bad = (line: string, why: string) =>
      new ApiError(
        200,
        "BadWatchEvent",
        `watch event of ${what} not understood (${why}): ${line.slice(0, 200)}`,
      );
    for await (const line of lines) {
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch (e) {
        throw bad(line, (e as Error).message);
      }
      const ev = LeaseWatchEventSchema.safeParse(json);
      if (!ev.success) throw bad(line, ev.error.message.replace(/\s+/g, " ").slice(0, 200));
      yield ev.data;
    }
  }

  /** Creates a core/v1 Event. */
  async createEvent(namespace: string, event: unknown, signal?: AbortSignal): Promise<void> {
    const res = await this.request(
      "POST",
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/events`,
      {
        body: event,
        signal,
      },
    );
    await res.body?.cancel();
  }

  /** Releases connections. */
  close(): void {
    this.#sender.then((s) => s.close()).catch(() => {});
  }
}

/** A request that got no answer: refused, reset, TLS. */
function connectionFailed(method: string, url: URL, e: unknown): ApiError {
  // fetch says only "fetch failed"; what went wrong is its cause.
  const cause = (e as Error).cause;
  const why = cause instanceof Error ? `: ${cause.message}` : "";
  return new ApiError(
    0,
    "ConnectionFailed",
    `${method} ${url.pathname}: ${(e as Error).message}${why}`,
  );
}

/** A non-2xx answer, with the reason and message of its Status where it has one. */
function httpError(
  method: string,
  url: URL,
  status: number,
  text: string,
  retryAfter: string | null | undefined,
): ApiError {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const err = statusError(body, status);
  return new ApiError(
    status,
    err.reason,
    `${method} ${url.pathname}: ${status} ${err.reason}: ${err.message || text.slice(0, 200)}`,
    parseRetryAfter(retryAfter),
  );
}

/**
 * A Retry-After header in seconds: delay-seconds, as the API server sends it, or an
 * HTTP-date, as a proxy may (the seconds from `now` until then, at least 0); undefined when
 * absent or unreadable.
 *
 * @example
 * ```ts
 * parseRetryAfter("3"); // 3
 * parseRetryAfter("Wed, 02 Dec 2026 05:00:10 GMT", Date.parse("2026-12-02T05:00:00Z")); // 10
 * ```
 */
export function parseRetryAfter(
  value: string | null | undefined,
  now = Date.now(),
): number | undefined {
  const v = value?.trim() ?? "";
  if (/^[0-9]+$/.test(v)) return Number(v);
  // An HTTP-date names its weekday; a bare number with other marks is not one.
  const at = /^[A-Za-z]{3}, /.test(v) ? Date.parse(v) : NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

/** Whether the environment names a proxy, which fetch would go through. */
function proxied(): boolean {
  const names = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
  ];
  try {
    return names.some((n) => (Deno.env.get(n) ?? "") !== "");
  } catch {
    // Without leave to read the environment, assume one.
    return true;
  }
}

/** Bytes a watch reads at most at once (an event of a real Node is up to 20 KB). */
const WATCH_BUFFER = 64 * 1024;

/**
 * The lines of a watch response as they arrive, blank ones left out. Not every sender ends
 * its body when the request's signal aborts (node:https may not): cancelling the reader then
 * ends a pending read at once.
 */
async function* watchLines(res: Response, signal?: AbortSignal): AsyncGenerator<string> {
  if (!res.body) return;
  // Read into one buffer for the whole watch: a default reader allocates 64 KiB for every
  // read, which is one per event at rest (100 a second under churn at 5,000 nodes).
  const reader = res.body.getReader({ mode: "byob" });
  const cancel = () => void reader.cancel().catch(() => {});
  signal?.addEventListener("abort", cancel);
  const decoder = new TextDecoder();
  let buffer = new ArrayBuffer(WATCH_BUFFER);
  let rest = "";
  const lines: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read(new Uint8Array(buffer));
      if (done || !value) break;
      // The read hands the same memory back in a new ArrayBuffer.
      buffer = value.buffer as ArrayBuffer;
      rest = takeLines(rest + decoder.decode(value, { stream: true }), lines);
      for (const line of lines) yield line;
      lines.length = 0;
    }
  } finally {
    signal?.removeEventListener("abort", cancel);
    await reader.cancel().catch(() => {});
  }
}
