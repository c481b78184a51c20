/**
 * The embedded Kubernetes API server for core/v1 Nodes and coordination.k8s.io/v1 Leases:
 * HTTPS with a generated CA and a bearer token, real list/watch semantics (one global
 * resourceVersion for both kinds), optional persistence, and fault injection for tests and
 * benchmarks.
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
import { type ServerCerts, serverCerts } from "./certs.ts";
import { writeKubeconfig } from "./kubeconfig.ts";
import { type LeaseJson, LeaseStore } from "./leases.ts";
import { Revision } from "./object_store.ts";
import { route, type RouteContext, statusResponse } from "./routes.ts";
import { StatusError } from "./status.ts";
import { type NodeJson, NodeStore } from "./store.ts";

export { NodeStore } from "./store.ts";
export type { NodeJson } from "./store.ts";
export { LeaseStore } from "./leases.ts";
export type { LeaseJson, LeaseSpecJson } from "./leases.ts";

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** host:port; port 0 picks one. Default 127.0.0.1:0. */
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
  /** Events posted to the server, newest last. */
  readonly events: readonly unknown[];
  close(): Promise<void>;
}

function newToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const OPEN_PATHS = new Set(["/healthz", "/readyz", "/livez", "/version"]);

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

/** Starts the server. */
export async function startApiServer(opts: ApiServerOptions = {}): Promise<ApiServer> {
  const log = opts.log ?? silentLogger;
  const listen = opts.listen ?? "127.0.0.1:0";
  const i = listen.lastIndexOf(":");
  const hostname = listen.slice(0, i).replace(/^\[|\]$/g, "") || "127.0.0.1";
  let port = Number(listen.slice(i + 1));
  let token = opts.token ?? newToken();

  const saved = opts.stateFile ? await loadState(opts.stateFile) : undefined;
  const revision = new Revision(saved?.resourceVersion ?? 0);
  const historySize = opts.historySize;
  const store = new NodeStore({ historySize, nodes: saved?.nodes, revision });
  const leases = new LeaseStore({ historySize, leases: saved?.leases, revision });
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
    store.onChange = leases.onChange = () => {
      saveTimer ??= setTimeout(
        () => save().catch((e) => log.error("saving state failed", { error: e })),
        100,
      );
    };
  }

  let tempCertDir: string | undefined;
  let certs: ServerCerts | undefined;
  if (!opts.insecureHttp) {
    const dir = opts.certDir ??
      (tempCertDir = await Deno.makeTempDir({ prefix: "xcluster-apiserver-" }));
    certs = await serverCerts(dir, [hostname]);
  }

  let failCount = 0, failCode = 0, retryAfter: number | undefined;
  let latency = 0;
  let expireAll = false;
  let endAll = false;
  let requests = 0;
  const events: unknown[] = [];
  const openWatches = new Set<() => void>();
  const ctx: RouteContext = {
    store,
    leases,
    events,
    maxBodyBytes: opts.maxBodyBytes ?? 3 * 1024 * 1024,
    expireWatches: () => expireAll,
    endWatches: () => endAll,
    trackWatch(close) {
      openWatches.add(close);
      return () => openWatches.delete(close);
    },
  };

  const handler = async (req: Request): Promise<Response> => {
    requests++;
    if (latency > 0) await new Promise((r) => setTimeout(r, latency));
    const path = new URL(req.url).pathname;
    if (path === "/healthz" || path === "/readyz" || path === "/livez") return new Response("ok");
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

  let server: Deno.HttpServer<Deno.NetAddr> | undefined;
  const serve = () => {
    const base = { hostname, port, onListen: () => {} };
    server = certs
      ? Deno.serve({ ...base, cert: certs.certPem, key: certs.keyPem }, handler)
      : Deno.serve(base, handler);
    port = server.addr.port;
  };
  serve();
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  const url = `${certs ? "https" : "http"}://${host}:${port}`;
  const writeConfig = async () => {
    if (opts.kubeconfigPath) {
      await writeKubeconfig(opts.kubeconfigPath, { server: url, token, caPem: certs?.caPem });
    }
  };
  await writeConfig();
  const bookmarks = setInterval(() => {
    store.bookmark();
    leases.bookmark();
  }, opts.bookmarkIntervalMs ?? 5000);

  const dropWatches = () => {
    for (const close of [...openWatches]) close();
    store.dropWatches();
    leases.dropWatches();
  };
  const stopListening = async () => {
    dropWatches();
    await server?.shutdown();
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
    events,
    faults: {
      dropWatches,
      compact() {
        store.compact();
        leases.compact();
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
