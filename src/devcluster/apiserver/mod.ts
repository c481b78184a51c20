/**
 * The embedded Kubernetes API server for core/v1 Nodes and Events (and Pods: always none)
 * and coordination.k8s.io/v1 Leases: HTTPS with a generated CA and a bearer token, real
 * list/watch semantics (one global resourceVersion for every kind), optional persistence of
 * Nodes and Leases, and fault injection for tests and benchmarks.
 *
 * @example
 * ```ts
 * const api = await startApiServer({ kubeconfigPath: "/tmp/kubeconfig" });
 * api.nodes.create(makeNode({ name: "a", podCIDRs: ["10.244.0.0/24"] }));
 * api.leases.get("kube-system", "net3")?.spec.holderIdentity;
 * await api.close();
 * ```
 *
 * @module
 */
import { type Logger, silentLogger } from "../../log.ts";
import { parseIp } from "../../net/ip.ts";
import { type ServerCerts, serverCerts } from "./certs.ts";
import { EventStore } from "./events.ts";
import { writeKubeconfig } from "./kubeconfig.ts";
import { type LeaseJson, LeaseStore } from "./leases.ts";
import { NoDelayConnections } from "./nodelay.ts";
import { type ObjectJson, type ObjectStore, Revision } from "./object_store.ts";
import { PodStore } from "./pods.ts";
import { READ_METHODS, route, type RouteContext, statusResponse } from "./routes.ts";
import { methodNotAllowed, StatusError } from "./status.ts";
import { type NodeJson, NodeStore } from "./store.ts";

export { NodeStore } from "./store.ts";
export type { NodeJson } from "./store.ts";
export { LeaseStore } from "./leases.ts";
export type { LeaseJson, LeaseSpecJson } from "./leases.ts";
export { EVENT_LIMIT } from "./events.ts";
export type { EventJson } from "./events.ts";

/** Where the server listens. */
export interface ListenAddress {
  /** An IP address (IPv6 without brackets) or a host name. */
  hostname: string;
  /** 0 picks a free one. */
  port: number;
}

/** A listen address that is not HOST:PORT; the message names the value. */
export class ListenError extends Error {
  constructor(readonly value: string, readonly reason: string) {
    super(`listen address ${JSON.stringify(value)}: ${reason}`);
    this.name = "ListenError";
  }
}

/** A host name (RFC 1123): labels of letters, digits and inner hyphens. */
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$/;

/**
 * Reads HOST:PORT: an IPv4 address, an IPv6 address in brackets or a host name (none:
 * 127.0.0.1), and a port 0-65535 (0 picks a free one). Throws {@link ListenError} naming the
 * value and what is wrong with it, before anything is made or bound.
 *
 * @example
 * ```ts
 * parseListen("[::1]:6443"); // { hostname: "::1", port: 6443 }
 * ```
 */
export function parseListen(text: string): ListenAddress {
  const fail = (why: string): never => {
    throw new ListenError(text, why);
  };
  const m = /^(?:\[([^\]]*)\]|([^:\[\]]*)):([^:]*)$/.exec(text);
  if (!m) {
    fail("expected HOST:PORT (an IPv6 address in brackets: [::1]:6443)");
  }
  const [, v6, host, portText] = m!;
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
    fail(`the port ${JSON.stringify(portText)} is not a number from 0 to 65535`);
  }
  let hostname: string;
  if (v6 !== undefined) {
    if (!v6.includes(":") || parseIp(v6) === undefined) {
      fail(`${JSON.stringify(v6)} is not an IPv6 address`);
    }
    hostname = v6;
  } else if (host === "") {
    hostname = "127.0.0.1";
  } else if (/^[0-9.]+$/.test(host)) {
    if (parseIp(host)?.family !== 4) fail(`${JSON.stringify(host)} is not an IPv4 address`);
    hostname = host;
  } else {
    if (!HOST_NAME.test(host)) fail(`${JSON.stringify(host)} is not a host name or IP address`);
    hostname = host;
  }
  return { hostname: hostname!, port: Number(portText) };
}

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /**
   * HOST:PORT (see {@link parseListen}); port 0 picks one. Default 127.0.0.1:0. A value that
   * is not one throws {@link ListenError}.
   */
  listen?: string;
  /** Plain HTTP without authentication. */
  insecureHttp?: boolean;
  /** Write a kubeconfig for this server there. */
  kubeconfigPath?: string;
  /** Keep the nodes and leases in this file across restarts. */
  stateFile?: string;
  /** Watch events kept for replay (default 10,000). */
  historySize?: number;
  token?: string;
  /** Where the CA and server certificate live (default: a temp folder). */
  certDir?: string;
  log?: Logger;
  /** Largest request body (default 3 MiB, as the real one). */
  maxBodyBytes?: number;
  /** Interval of watch bookmarks (default 5 s). */
  bookmarkIntervalMs?: number;
  /**
   * Called for every request with its method, its URL and the status of the answer, once
   * the headers are made (a body may still stream): how a test sees what a client asked
   * for that the server does not serve.
   */
  onResponse?: (method: string, url: URL, status: number) => void;
}

/** Faults to inject, for tests and benchmarks. */
export interface Faults {
  /** Ends every open watch now. */
  dropWatches(): void;
  /** Forgets the history: watches from older versions get 410 Expired. */
  compact(): void;
  /**
   * While on, every watch from a resourceVersion (even the current one) gets 410 Expired,
   * as from a server whose watch cache lags behind its lists.
   */
  expireWatches(on: boolean): void;
  /**
   * While on, every watch ends as soon as it is answered, with no event, as behind a proxy
   * that cuts long requests.
   */
  endWatches(on: boolean): void;
  /** The next `n` requests get a Status with `code` (429 with Retry-After). */
  failNext(n: number, code: number, opts?: { retryAfterSeconds?: number }): void;
  /** Delays every response by `ms`. */
  setLatency(ms: number): void;
  /** A new token: the old one gets 401 from now on. Rewrites the kubeconfig. */
  rotateToken(): Promise<string>;
  /** Closes the listener (connections refused); the store is kept. */
  stopListening(): Promise<void>;
  /**
   * Listens again on the same port. Throws AddrInUse when another socket took the port
   * meanwhile: for long outages beside other programs, listen on a fixed port outside the
   * kernel's ephemeral range.
   */
  startListening(): void;
  /** Requests served so far. */
  requestCount(): number;
}

/** A running embedded API server. */
export interface ApiServer {
  readonly url: string;
  readonly token: string;
  readonly caPem: string | undefined;
  readonly kubeconfigPath: string | undefined;
  readonly nodes: NodeStore;
  /** The Leases (coordination.k8s.io/v1) of every namespace. */
  readonly leases: LeaseStore;
  readonly faults: Faults;
  /**
   * The Events stored (posted and not deleted, the newest {@link EVENT_LIMIT}), oldest
   * first: a new array each time.
   */
  readonly events: readonly unknown[];
  close(): Promise<void>;
}

function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Probes: open to all, as on the real server, and GET only. */
const PROBES = new Set(["/healthz", "/readyz", "/livez"]);
/** Paths served without a token; /metrics needs one, as on the real server. */
const OPEN_PATHS = new Set([...PROBES, "/version"]);

/** What the state file keeps; files written before Leases have none. */
interface State {
  nodes: NodeJson[];
  leases?: LeaseJson[];
  resourceVersion: number;
}

async function loadState(path: string): Promise<State | undefined> {
  try {
    const v = JSON.parse(await Deno.readTextFile(path));
    if (
      Array.isArray(v.nodes) && typeof v.resourceVersion === "number" &&
      (v.leases === undefined || Array.isArray(v.leases))
    ) return v;
    throw new Error("not a state file");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`apiserver state ${path}: ${(e as Error).message}`);
  }
}

/** The text of /metrics: objects stored by resource, under the real server's metric name. */
function metricsText(stores: readonly ObjectStore<ObjectJson>[]): string {
  const lines = [
    "# HELP apiserver_storage_objects Number of stored objects at the time of last check split by kind.",
    "# TYPE apiserver_storage_objects gauge",
  ];
  const rows = stores.map((s) => {
    const resource = s.kind.group ? `${s.kind.plural}.${s.kind.group}` : s.kind.plural;
    return `apiserver_storage_objects{resource="${resource}"} ${s.count()}`;
  });
  return [...lines, ...rows.sort()].join("\n") + "\n";
}

/** Starts the server. */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const log = opts.log ?? silentLogger;
  const listen = opts.listen ?? "127.0.0.1:0";
  // Before anything is made: a bad address leaves nothing behind.
  const address = parseListen(listen);
  const hostname = address.hostname;
  let port = address.port;
  let token = opts.token ?? newToken();

  const saved = opts.stateFile ? await loadState(opts.stateFile) : undefined;
  const revision = new Revision(saved?.resourceVersion ?? 0);
  const historySize = opts.historySize;
  const store = new NodeStore({ historySize, nodes: saved?.nodes, revision });
  const leases = new LeaseStore({ historySize, leases: saved?.leases, revision });
  const eventStore = new EventStore({ historySize, revision });
  const pods = new PodStore({ historySize, revision });
  const stores: ObjectStore<ObjectJson>[] = [store, leases, eventStore, pods];
  let saveTimer: ReturnType<typeof setTimeout> | undefined;
  const save = async () => {
    saveTimer = undefined;
    const tmp = `${opts.stateFile}.tmp`;
    const state: State = {
      resourceVersion: revision.value,
      nodes: store.list(),
      leases: leases.list(),
    };
    await Deno.writeTextFile(tmp, JSON.stringify(state));
    await Deno.rename(tmp, opts.stateFile!);
  };
  if (opts.stateFile) {
    // Events are not kept, but their writes move the resourceVersion, which must not go
    // back across a restart.
    store.onChange = leases.onChange = eventStore.onChange = () => {
      saveTimer ??= setTimeout(
        () => save().catch((e) => log.error("saving state failed", { error: e })),
        100,
      );
    };
  }

  let tempCertDir: string | undefined;
  let certs: ServerCerts | undefined;

  let failCount = 0, failCode = 0, retryAfter: number | undefined;
  let latency = 0;
  let expireAll = false;
  let endAll = false;
  let requests = 0;
  const openWatches = new Set<() => void>();
  const ctx: RouteContext = {
    store,
    leases,
    events: eventStore,
    pods,
    metrics: () => metricsText(stores),
    maxBodyBytes: opts.maxBodyBytes ?? 3 * 1024 * 1024,
    expireWatches: () => expireAll,
    endWatches: () => endAll,
    trackWatch(close) {
      openWatches.add(close);
      return () => openWatches.delete(close);
    },
  };

  /** Set while the listener shuts down: requests on connections still open are refused. */
  let closing = false;
  const handler = async (req: Request): Promise<Response> => {
    requests++;
    if (closing) {
      // A watch served now would hold the shutdown until its timeout.
      await req.body?.cancel();
      return new Response(null, { status: 503, headers: { connection: "close" } });
    }
    if (latency > 0) await new Promise((r) => setTimeout(r, latency));
    const path = new URL(req.url).pathname;
    if (PROBES.has(path)) {
      if (req.method === "GET" || req.method === "HEAD") return new Response("ok");
      await req.body?.cancel();
      return statusResponse(methodNotAllowed(req.method, path, READ_METHODS));
    }
    if (
      !opts.insecureHttp && !OPEN_PATHS.has(path) &&
      req.headers.get("authorization") !== `Bearer ${token}`
    ) {
      await req.body?.cancel();
      return statusResponse(new StatusError(401, "Unauthorized", "Unauthorized"));
    }
    if (failCount > 0) {
      failCount--;
      await req.body?.cancel();
      const headers: Record<string, string> = retryAfter !== undefined
        ? { "retry-after": String(retryAfter) }
        : {};
      const reason = failCode === 429
        ? "TooManyRequests"
        : failCode >= 500
        ? "InternalError"
        : "BadRequest";
      return statusResponse(
        new StatusError(failCode, reason, `injected failure (${failCode})`),
        headers,
      );
    }
    try {
      return await route(ctx, req);
    } catch (e) {
      if (e instanceof StatusError) return statusResponse(e);
      log.error("apiserver request failed", { path, error: e });
      return statusResponse(new StatusError(500, "InternalError", (e as Error).message));
    }
  };

  const onResponse = opts.onResponse;
  // Wrapped only when asked for: the list and watch paths of benchmarks pay nothing.
  const answering = onResponse
    ? async (req: Request) => {
      const res = await handler(req);
      onResponse(req.method, new URL(req.url), res.status);
      return res;
    }
    : handler;
  // Over TLS, each connection gets Nagle's algorithm turned off at its first request.
  const noDelay = new NoDelayConnections(() => port);
  const serving = (req: Request, info: Deno.ServeHandlerInfo<Deno.NetAddr>) => {
    if (certs) noDelay.take(info.remoteAddr.port);
    return answering(req);
  };
  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  const serve = () => {
    const base = { hostname, port, onListen: () => {} };
    server = certs
      ? Deno.serve({ ...base, cert: certs.certPem, key: certs.keyPem }, serving)
      : Deno.serve(base, serving);
    port = server.addr.port;
  };
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  let url = "";
  const writeConfig = async () => {
    if (opts.kubeconfigPath) {
      await writeKubeconfig(opts.kubeconfigPath, { server: url, token, caPem: certs?.caPem });
    }
  };
  try {
    if (!opts.insecureHttp) {
      const dir = opts.certDir ??
        (tempCertDir = await Deno.makeTempDir({ prefix: "xcluster-apiserver-" }));
      certs = await serverCerts(dir, [hostname]);
    }
    try {
      serve();
    } catch (e) {
      // Same class (AddrInUse, PermissionDenied...), with the address it was about.
      if (e instanceof Error) e.message = `cannot listen on ${listen}: ${e.message}`;
      throw e;
    }
    url = `${certs ? "https" : "http"}://${host}:${port}`;
    try {
      await writeConfig();
    } catch (e) {
      if (e instanceof Error) {
        e.message = `cannot write the kubeconfig ${opts.kubeconfigPath}: ${e.message}`;
      }
      throw e;
    }
  } catch (e) {
    // Nothing of a start that failed stays: no listener, no folder with the CA's key.
    await server?.shutdown();
    if (tempCertDir) await Deno.remove(tempCertDir, { recursive: true }).catch(() => {});
    throw e;
  }
  const bookmarks = setInterval(() => {
    for (const s of stores) s.bookmark();
  }, opts.bookmarkIntervalMs ?? 5000);

  const dropWatches = () => {
    for (const close of [...openWatches]) close();
    for (const s of stores) s.dropWatches();
  };
  const stopListening = async () => {
    closing = true;
    dropWatches();
    try {
      await server?.shutdown();
    } finally {
      closing = false;
    }
    server = undefined;
  };

  const api: ApiServer = {
    url,
    get token() {
      return token;
    },
    caPem: certs?.caPem,
    kubeconfigPath: opts.kubeconfigPath,
    nodes: store,
    leases,
    get events() {
      return eventStore.inCreationOrder();
    },
    faults: {
      dropWatches,
      compact() {
        for (const s of stores) s.compact();
      },
      expireWatches(on) {
        expireAll = on;
      },
      endWatches(on) {
        endAll = on;
      },
      failNext(n, code, o) {
        failCount = n;
        failCode = code;
        retryAfter = o?.retryAfterSeconds;
      },
      setLatency(ms) {
        latency = ms;
      },
      async rotateToken() {
        token = newToken();
        await writeConfig();
        return token;
      },
      stopListening,
      startListening() {
        if (!server) serve();
      },
      requestCount: () => requests,
    },
    async close() {
      clearInterval(bookmarks);
      await stopListening();
      if (saveTimer !== undefined) {
        clearTimeout(saveTimer);
        await save();
      }
      if (tempCertDir) await Deno.remove(tempCertDir, { recursive: true }).catch(() => {});
    },
  };
  return api;
}
