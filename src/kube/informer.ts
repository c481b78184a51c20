/**
 * A Node informer: paged list, then watch from the list's resourceVersion; re-watch when a
 * watch ends; relist on 410 Expired and emit only the differences. Every failure of the
 * cycle (an error, a 410, a watch that ends within a second having delivered nothing, a watch
 * still open well past its timeout) goes through one backoff (see backoff.ts), as client-go's
 * reflector does. The store survives everything: an outage never empties it.
 *
 * @module
 */
import { z } from "zod";
import { type Logger, silentLogger } from "../log.ts";
import { Backoff, type BackoffPolicy } from "./backoff.ts";
import { ApiError, type KubeClient, statusError, type WatchEvent } from "./client.ts";
import type { Fields } from "./json_list.ts";

/** A watch that ends sooner than this having delivered no event counts as a failure. */
export const SHORT_WATCH_MS = 1000;

/** How long past its timeout a watch may stay open before the informer ends it itself. */
export const WATCH_GRACE_MS = 30_000;

/**
 * The timeout a watch asks for by default, in seconds: between 5 and 10 minutes, drawn for
 * each watch as client-go's reflector does, so that the watches of a DaemonSet's instances,
 * opened together after a rollout, do not all end (and reopen) together.
 */
export function defaultWatchTimeoutSeconds(random: () => number = Math.random): number {
  return Math.round(300 * (1 + random()));
}

/** One change of the store. */
export interface StoreChange<T> {
  type: "added" | "updated" | "deleted";
  name: string;
  value?: T;
  old?: T;
}

/** Counters for metrics, updated as things happen. */
export interface InformerStats {
  lists: number;
  relists: number;
  /** Watches started after the first one. */
  watchRestarts: number;
  /** Failed requests by HTTP status ("0": no response); 410s are counted in `relists`. */
  apiErrors: Record<string, number>;
  /** Watches that ended within {@link SHORT_WATCH_MS} having delivered no event. */
  shortWatches: number;
  /** Watches the informer ended because the server had not ended them by their timeout. */
  stalledWatches: number;
  lastSyncTime?: Date;
  lastContact?: Date;
}

/** Options of the informer. */
export interface InformerOptions<T> {
  /** Keeps what is needed of a raw Node; may throw (the node is then reported and left out). */
  project: (raw: unknown) => T;
  /**
   * Members of each listed item that `project` reads (metadata.name included); the rest is
   * never parsed. Default: everything.
   */
  fields?: Fields;
  /**
   * List and watch the nodes' metadata only (see `ListOptions.metadataOnly`), for a
   * `project` that reads nothing else.
   */
  metadataOnly?: boolean;
  /** Page size of lists (default 500). */
  pageSize?: number;
  /**
   * Server-side timeout of a watch, in seconds (default: drawn for each watch, see
   * {@link defaultWatchTimeoutSeconds}).
   */
  watchTimeoutSeconds?: number;
  /**
   * How long past its timeout a watch may stay open before the informer ends it as stalled
   * (default {@link WATCH_GRACE_MS}).
   */
  watchGraceMs?: number;
  labelSelector?: string;
  fieldSelector?: string;
  log?: Logger;
  /** The API server, named in the log lines of failures. */
  server?: string;
  /** Backoff after failures (default: client-go's reflector, see backoff.ts). */
  backoff?: BackoffPolicy;
  onProblem?: (name: string, error: Error) => void;
}

const MetaSchema = z.object({
  metadata: z.object({ name: z.string().optional(), resourceVersion: z.string().optional() }),
});

/** Why the informer ended a watch itself: the reason it aborts the watch with. */
class WatchCut extends Error {
  constructor(readonly why: "relist" | "deadline", message: string) {
    super(message);
    this.name = "WatchCut";
  }
}

/** How a watch ended: the events it delivered, and the informer's own cut, if any. */
interface WatchEnd {
  events: number;
  cut?: WatchCut;
}

/** Keeps a store of projected Nodes in step with the API. */
export class NodeInformer<T> {
  readonly #client: KubeClient;
  readonly #opts: InformerOptions<T>;
  readonly #log: Logger;
  readonly #store = new Map<string, T>();
  readonly #listeners: ((changes: StoreChange<T>[]) => void)[] = [];
  readonly #stats: InformerStats = {
    lists: 0,
    relists: 0,
    watchRestarts: 0,
    apiErrors: {},
    shortWatches: 0,
    stalledWatches: 0,
  };
  #watches = 0;
  readonly #synced = Promise.withResolvers<void>();
  #abort = new AbortController();
  #loop: Promise<void> | undefined;
  #rv = "";
  #wake: (() => void) | undefined;
  /** Callers of {@link relist} waiting for the next complete list. */
  #relists: PromiseWithResolvers<void>[] = [];
  /** Ends the open watch early: for a relist, or past its deadline. */
  #watchAbort: AbortController | undefined;

  constructor(client: KubeClient, opts: InformerOptions<T>) {
    this.#client = client;
    this.#opts = opts;
    this.#log = opts.log ?? silentLogger;
  }

  /** The current nodes by name. */
  get store(): ReadonlyMap<string, T> {
    return this.#store;
  }

  /** Resolves after the first complete list. */
  get synced(): Promise<void> {
    return this.#synced.promise;
  }

  /** Calls `cb` with every batch of changes (one per list diff, one per watch event). */
  onChange(cb: (changes: StoreChange<T>[]) => void): void {
    this.#listeners.push(cb);
  }

  /** A copy of the counters. */
  stats(): InformerStats {
    return { ...this.#stats, apiErrors: { ...this.#stats.apiErrors } };
  }

  /** Starts listing and watching. */
  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * Lists afresh, ending the open watch, and resolves once the store holds that list: a
   * consistent read of the Nodes, for a writer that must not decide on a watch that lags
   * (a newly elected allocator). Rejects when the informer stops first.
   */
  relist(): Promise<void> {
    const w = Promise.withResolvers<void>();
    if (this.#abort.signal.aborted) w.reject(new Error("informer stopped"));
    else {
      this.#relists.push(w);
      this.#watchAbort?.abort(new WatchCut("relist", "a relist was asked"));
      this.#wake?.();
    }
    return w.promise;
  }

  /** Stops promptly, aborting requests in flight. The store is kept. */
  async stop(): Promise<void> {
    this.#abort.abort();
    this.#wake?.();
    await this.#loop;
    for (const w of this.#relists.splice(0)) w.reject(new Error("informer stopped"));
  }

  #emit(changes: StoreChange<T>[]): void {
    if (changes.length === 0) return;
    for (const cb of this.#listeners) {
      try {
        cb(changes);
      } catch (e) {
        this.#log.error("informer listener failed", { error: e });
      }
    }
  }

  #project(raw: unknown, name: string): T | undefined {
    try {
      return this.#opts.project(raw);
    } catch (e) {
      this.#opts.onProblem?.(name, e as Error);
      return undefined;
    }
  }

  async #run(): Promise<void> {
    const backoff = new Backoff(this.#opts.backoff);
    let needList = true;
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      let cause: string;
      let retryAfterMs: number | undefined;
      try {
        if (needList || this.#relists.length > 0) {
          const waiting = this.#relists.splice(0);
          try {
            await this.#list(signal);
          } catch (e) {
            this.#relists.unshift(...waiting);
            throw e;
          }
          needList = false;
          for (const w of waiting) w.resolve();
          // Asked again while that list ran: its answer may predate the asking.
          if (this.#relists.length > 0) continue;
        }
        const t0 = performance.now();
        const { events, cut } = await this.#watch(signal);
        // Ended by stop(): no failure, and nothing to wait for.
        if (signal.aborted) break;
        // Ended for a relist: no failure, and the list is due now.
        if (cut?.why === "relist") continue;
        if (cut?.why === "deadline") {
          this.#stats.stalledWatches++;
          cause = cut.message;
        } else {
          const ms = Math.round(performance.now() - t0);
          if (events > 0 || ms >= SHORT_WATCH_MS) continue;
          // A proxy that cuts streams, or a server that ends watches at once: coming straight
          // back would make a request storm.
          this.#stats.shortWatches++;
          cause = `watch ended after ${ms} ms without an event`;
        }
      } catch (e) {
        if (signal.aborted) break;
        const err = e instanceof ApiError ? e : new ApiError(0, "Error", (e as Error).message);
        if (err.status === 410) {
          // History is gone: a fresh list is the only way to know what changed.
          this.#stats.relists++;
          needList = true;
          cause = `resourceVersion ${this.#rv} expired; relisting`;
        } else {
          const code = String(err.status);
          this.#stats.apiErrors[code] = (this.#stats.apiErrors[code] ?? 0) + 1;
          cause = err.message;
        }
        if (err.retryAfterSeconds !== undefined) retryAfterMs = err.retryAfterSeconds * 1000;
      }
      const wait = backoff.next(retryAfterMs);
      // The backoff spaces these lines as it spaces the requests.
      this.#log.warn("Kubernetes API list/watch failed; retrying", {
        server: this.#opts.server,
        cause,
        inMs: Math.round(wait),
      });
      await this.#sleep(wait);
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.#abort.signal.aborted) return resolve();
      const t = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  async #list(outer: AbortSignal): Promise<void> {
    const t0 = performance.now();
    const fresh = new Map<string, T>();
    const onItem = (item: unknown) => {
      const meta = MetaSchema.safeParse(item);
      const name = meta.success ? meta.data.metadata.name ?? "" : "";
      const value = this.#project(item, name);
      if (value !== undefined && name !== "") fresh.set(name, value);
    };
    // Aborts a page asked for ahead when this list fails.
    const local = new AbortController();
    const signal = AbortSignal.any([outer, local.signal]);
    const open = (cont: string | undefined) => {
      const res = this.#client.openNodeList({
        metadataOnly: this.#opts.metadataOnly,
        limit: this.#opts.pageSize ?? 500,
        continue: cont,
        labelSelector: this.#opts.labelSelector,
        fieldSelector: this.#opts.fieldSelector,
        signal,
      });
      res.catch(() => {}); // Awaited later, or dropped with the list.
      return res;
    };
    let cont: string | undefined;
    let rv = "";
    let res = open(undefined);
    try {
      for (;;) {
        let page;
        let ahead: { cont: string; res: Promise<Response> } | undefined;
        try {
          // Items are projected as they arrive, so that a page's objects never all live;
          // the next page is asked for as soon as its token is known, so that the server
          // prepares it while this one is read.
          page = await this.#client.readNodeList(await res, onItem, (token) => {
            ahead = { cont: token, res: open(token) };
          }, this.#opts.fields);
        } catch (e) {
          if (e instanceof ApiError && e.status === 410 && cont !== undefined) {
            // The continue token expired mid-list: start the list again.
            fresh.clear();
            cont = undefined;
            res = open(undefined);
            continue;
          }
          throw e;
        }
        this.#contact();
        rv = page.resourceVersion;
        cont = page.continue;
        if (!cont) break;
        res = ahead?.cont === cont ? ahead.res : open(cont);
      }
    } finally {
      local.abort();
    }
    const changes: StoreChange<T>[] = [];
    for (const [name, old] of this.#store) {
      if (!fresh.has(name)) changes.push({ type: "deleted", name, old });
    }
    for (const [name, value] of fresh) {
      const old = this.#store.get(name);
      if (old === undefined) changes.push({ type: "added", name, value });
      else if (JSON.stringify(old) !== JSON.stringify(value)) {
        changes.push({ type: "updated", name, value, old });
      } else {
        fresh.set(name, old); // keep the identity: consumers memoize per object
      }
    }
    this.#store.clear();
    for (const [k, v] of fresh) this.#store.set(k, v);
    this.#rv = rv;
    this.#stats.lists++;
    this.#stats.lastSyncTime = new Date();
    this.#log.debug("listed nodes", {
      nodes: fresh.size,
      resourceVersion: rv,
      changes: changes.length,
      ms: Math.round(performance.now() - t0),
    });
    this.#synced.resolve();
    this.#emit(changes);
  }

  #contact(): void {
    this.#stats.lastContact = new Date();
  }

  /**
   * Watches until the stream ends, or until the informer ends it (a {@link WatchCut}: then
   * however the connection reports its end, it is no error).
   */
  async #watch(signal: AbortSignal): Promise<WatchEnd> {
    const abort = new AbortController();
    this.#watchAbort = abort;
    const timeoutSeconds = this.#opts.watchTimeoutSeconds ?? defaultWatchTimeoutSeconds();
    const graceMs = this.#opts.watchGraceMs ?? WATCH_GRACE_MS;
    // The server ends a live watch by its timeout. One still open past it is on a connection
    // gone silent (a peer or path dead without FIN or RST), where a read would wait forever.
    const deadline = setTimeout(() => {
      const message = `watch outlived its timeout (${timeoutSeconds} s) by ${graceMs} ms ` +
        "without an end from the server; watching again";
      abort.abort(new WatchCut("deadline", message));
    }, timeoutSeconds * 1000 + graceMs);
    let events = 0;
    try {
      if (this.#watches++ > 0) this.#stats.watchRestarts++;
      events = await this.#follow(this.#client.watchNodes({
        metadataOnly: this.#opts.metadataOnly,
        resourceVersion: this.#rv,
        timeoutSeconds,
        allowWatchBookmarks: true,
        labelSelector: this.#opts.labelSelector,
        fieldSelector: this.#opts.fieldSelector,
        signal: AbortSignal.any([signal, abort.signal]),
      }));
    } catch (e) {
      if (!(abort.signal.reason instanceof WatchCut)) throw e;
    } finally {
      clearTimeout(deadline);
      this.#watchAbort = undefined;
    }
    const reason: unknown = abort.signal.reason;
    return { events, cut: reason instanceof WatchCut ? reason : undefined };
  }

  /** Applies a watch's events to the store as they come; returns how many there were. */
  async #follow(stream: AsyncIterable<WatchEvent>): Promise<number> {
    let count = 0;
    for await (const ev of stream) {
      count++;
      this.#contact();
      if (ev.type === "ERROR") throw statusError(ev.object, 500);
      const meta = MetaSchema.safeParse(ev.object);
      if (!meta.success) continue;
      const { name, resourceVersion } = meta.data.metadata;
      if (resourceVersion) this.#rv = resourceVersion;
      if (ev.type === "BOOKMARK" || !name) continue;
      const old = this.#store.get(name);
      if (ev.type === "DELETED") {
        if (old !== undefined) {
          this.#store.delete(name);
          this.#emit([{ type: "deleted", name, old }]);
        }
        continue;
      }
      const value = this.#project(ev.object, name);
      if (value === undefined) {
        if (old !== undefined) {
          this.#store.delete(name);
          this.#emit([{ type: "deleted", name, old }]);
        }
        continue;
      }
      // Kubelets touch their Node every few seconds; most updates change nothing we keep.
      if (old !== undefined && JSON.stringify(old) === JSON.stringify(value)) continue;
      this.#store.set(name, value);
      this.#emit([{ type: old === undefined ? "added" : "updated", name, value, old }]);
    }
    return count;
  }
}
