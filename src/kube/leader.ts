/**
 * Leader election over a coordination.k8s.io/v1 Lease, with the semantics of client-go's
 * leaderelection package, except that a candidate that does not hold the lease watches it
 * instead of reading it every retryPeriod:
 *
 * - A candidate reads the lease, creates it when absent, and takes it over (holder, a new
 *   acquireTime, leaseTransitions + 1) when it is free or expired, by an update carrying
 *   the resourceVersion it last saw: of two candidates, one gets a 409 Conflict.
 * - A lease is expired when it has not changed for leaseDuration, timed on the local
 *   monotonic clock from when the change was observed; the holder's clock is never read.
 * - After its first read, a candidate watches the lease from the version read: every
 *   change arrives as it lands, and a timer set for the last change seen + leaseDuration
 *   (+ a random spread of up to `takeOverSpreadMs`, so that thousands of candidates do not
 *   write at the same instant) makes it try to take over when no change came meanwhile.
 *   A released lease (holder "") is tried after the spread alone. So the API server gets
 *   no request from a candidate while the leader lives, and an expiry is seen when it
 *   happens rather than at the next poll. A watch that ends is opened again (from the last
 *   version it showed), one that fails after a backoff (src/kube/backoff.ts; after a 410
 *   Expired the lease is read again first); while none is open, the candidate reads the
 *   lease every retryPeriod (jittered) as client-go does, the timer still running.
 * - The leader renews every retryPeriod. When no renewal has succeeded for renewDeadline
 *   (counted from the start of the last one that succeeded), or a renewal finds the lease
 *   taken (another holder, or a conflict on the update made after reading it again), it
 *   stops leading at once. As renewDeadline < leaseDuration and a candidate waits at
 *   least leaseDuration from a renewal it saw, the old leader has stopped before another
 *   can take over.
 * - A deleted lease (`kubectl delete lease`) is a change too, for the leader may not know
 *   of it before its next renewal: a candidate that saw it held by another and then sees
 *   it deleted, or finds it absent, creates it only after leaseDuration (+ the spread)
 *   from then, unless the lease comes back meanwhile (then the rules above apply). The
 *   leader, finding its lease gone when it renews, creates it again at once as it was
 *   (same acquireTime and leaseTransitions), and stops leading if another created it
 *   first. A candidate that never saw a holder (no lease yet, or a released one) creates
 *   it at once, so that nothing waits on a new cluster.
 * - {@link LeaderElector.stop} releases a held lease (holder "", as client-go's
 *   ReleaseOnCancel), so that another takes over without waiting for it to expire.
 *
 * @example
 * ```ts
 * const elector = new LeaderElector(client, {
 *   namespace: "kube-system",
 *   name: "xcluster-cni-net3",
 *   identity: nodeName,
 *   onStartedLeading: (signal) => allocateCidrs(signal),
 * });
 * const done = elector.run();
 * // ... on shutdown:
 * await elector.stop();
 * await done;
 * ```
 *
 * @module
 */
import { type Logger, silentLogger } from "../log.ts";
import { Backoff, sleep } from "./backoff.ts";
import { ApiError, statusError } from "./client.ts";
import { defaultWatchTimeoutSeconds, SHORT_WATCH_MS, WATCH_GRACE_MS } from "./informer.ts";
import {
  formatMicroTime,
  type Lease,
  type LeaseSpec,
  type LeaseWatchEvent,
  type LeaseWatchOptions,
} from "./lease.ts";

/** The Lease calls an elector makes (a KubeClient has them). */
export interface LeaseClient {
  getLease(namespace: string, name: string, opts?: { signal?: AbortSignal }): Promise<Lease>;
  createLease(namespace: string, lease: Lease, opts?: { signal?: AbortSignal }): Promise<Lease>;
  updateLease(namespace: string, lease: Lease, opts?: { signal?: AbortSignal }): Promise<Lease>;
  /** Watches one lease; a client without it makes the candidates read the lease by polling. */
  watchLeases?(namespace: string, opts: LeaseWatchOptions): AsyncIterable<LeaseWatchEvent>;
}

/** Options of a {@link LeaderElector}. */
export interface LeaderElectorOptions {
  namespace: string;
  /** The Lease's name: one per thing to lead. */
  name: string;
  /** Who this candidate is (the node name): the lease's holderIdentity while it leads. */
  identity: string;
  /**
   * How long others wait, from a change of the lease they saw, before taking it over
   * (default 15 s). Written to the lease in whole seconds, rounded up.
   */
  leaseDurationMs?: number;
  /** How long the leader keeps leading without a successful renewal (default 10 s). */
  renewDeadlineMs?: number;
  /**
   * Between two renewals, and between two attempts to acquire (then with up to 1.2 times
   * more at random, as client-go) (default 2 s).
   */
  retryPeriodMs?: number;
  /**
   * A candidate tries to take an expired or released lease after a random wait of up to
   * this long (drawn anew at each change seen), so that when a leader dies the first try
   * lands, and is seen by the others, before most of them have tried (default half the
   * retryPeriod; 0 tries at once).
   */
  takeOverSpreadMs?: number;
  /**
   * Watch the lease while not holding it (default true); false reads it every retryPeriod
   * (jittered) as client-go does, as when watches are unavailable.
   */
  watch?: boolean;
  /** Server-side timeout of a lease watch, in seconds (default: drawn, 5 to 10 minutes). */
  watchTimeoutSeconds?: number;
  /** How long past its timeout a lease watch may stay open (default 30 s). */
  watchGraceMs?: number;
  log?: Logger;
  /**
   * Called on becoming the leader. `signal` aborts the moment leadership ends (its reason
   * says why); the work it guards must stop then.
   */
  onStartedLeading?(signal: AbortSignal): void | Promise<void>;
  /** Called when leadership ends, after the signal aborted. */
  onStoppedLeading?(): void;
  /** Called when the observed holder changes to someone (this candidate included). */
  onNewLeader?(identity: string): void;
}

/** client-go's defaults. */
export const LEADER_ELECTION_DEFAULTS = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
} as const;

/** client-go's jitter of the retries to acquire: up to this much more of retryPeriod. */
const JITTER = 1.2;

/** Why leadership ended: the reason of the aborted signal. */
export class LeadershipLost extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LeadershipLost";
  }
}

/** The outcome of one attempt to acquire or renew ("absent": an update found no lease). */
type Attempt = "held" | "other" | "conflict" | "absent" | "failed";

/** The part of a lease that is compared to see a change (client-go's raw record). */
function recordKey(spec: LeaseSpec | null | undefined): string {
  return JSON.stringify([
    spec?.holderIdentity ?? "",
    spec?.leaseDurationSeconds ?? 0,
    spec?.acquireTime ?? "",
    spec?.renewTime ?? "",
    spec?.leaseTransitions ?? 0,
  ]);
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`LeaderElector: ${name} must be a positive number of ms, not ${value}`);
  }
  return value;
}

/** setTimeout's largest delay: a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Campaigns for a Lease and keeps it while it can; see the module's documentation. */
export class LeaderElector {
  readonly #client: LeaseClient;
  readonly #opts: LeaderElectorOptions;
  readonly #log: Logger;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  /** The lease as last read or written: its resourceVersion is the next write's precondition. */
  #lease: Lease | undefined;
  #observedKey = "";
  /** performance.now() when the lease was last seen to change. */
  #observedAt = 0;
  #reported: string | undefined;
  /** Set while leading; aborted when leadership ends. */
  #leading: AbortController | undefined;
  #deadline: ReturnType<typeof setTimeout> | undefined;
  /** performance.now() at which leadership ends unless renewed. */
  #deadlineAt = 0;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;
  /** The last renewTime written (epoch ms): each is later than the one before. */
  #lastRenewMs = 0;
  /** performance.now() when the last write of the lease was sent. */
  #wroteAt = 0;
  readonly #spreadMs: number;
  /** The random part of the wait before a take-over, drawn at each change observed. */
  #spread = 0;
  /** The version to watch from: of the last lease or bookmark seen. */
  #watchFrom: string | undefined;
  /** A watch of the lease is open, or is being opened again at once. */
  #watching = false;
  /**
   * Set while the lease is known to be absent (deleted, or not found): how long after that
   * was seen (`#observedAt`) a candidate waits before creating it.
   */
  #absentWaitMs: number | undefined;
  /**
   * The lease seen may be behind the server's (a take-over failed, or the watch lost it):
   * the candidate reads it at the next poll unless a watch event brings it first.
   */
  #stale = false;
  /** Ends the wait of a candidate that does not hold the lease: something changed. */
  #wake: (() => void) | undefined;
  /** Watches of the lease that were asked to end and may not have yet. */
  readonly #watches = new Set<Promise<void>>();

  constructor(client: LeaseClient, opts: LeaderElectorOptions) {
    for (const key of ["namespace", "name", "identity"] as const) {
      if (typeof opts[key] !== "string" || opts[key] === "") {
        throw new TypeError(`LeaderElector: ${key} must be a non-empty string`);
      }
    }
    const lease = positive(
      "leaseDurationMs",
      opts.leaseDurationMs ?? LEADER_ELECTION_DEFAULTS.leaseDurationMs,
    );
    const renew = positive(
      "renewDeadlineMs",
      opts.renewDeadlineMs ?? LEADER_ELECTION_DEFAULTS.renewDeadlineMs,
    );
    const retry = positive(
      "retryPeriodMs",
      opts.retryPeriodMs ?? LEADER_ELECTION_DEFAULTS.retryPeriodMs,
    );
    if (renew >= lease) {
      throw new RangeError(
        `LeaderElector: renewDeadlineMs (${renew}) must be less than leaseDurationMs ` +
          `(${lease}), or a leader cut off from the API could still lead when others take over`,
      );
    }
    if (retry * JITTER >= renew) {
      throw new RangeError(
        `LeaderElector: retryPeriodMs × ${JITTER} (${retry} × ${JITTER} = ${retry * JITTER}) ` +
          `must be less than renewDeadlineMs (${renew})`,
      );
    }
    this.#client = client;
    this.#opts = opts;
    this.#log = (opts.log ?? silentLogger).with({
      lease: `${opts.namespace}/${opts.name}`,
      identity: opts.identity,
    });
    const spread = opts.takeOverSpreadMs ?? retry / 2;
    if (!Number.isFinite(spread) || spread < 0) {
      throw new RangeError(
        `LeaderElector: takeOverSpreadMs must be a number of ms of 0 or more, not ${spread}`,
      );
    }
    this.#leaseDurationMs = lease;
    this.#renewDeadlineMs = renew;
    this.#retryPeriodMs = retry;
    this.#spreadMs = spread;
  }

  /** Whether this candidate leads now (false past the deadline even if its timer is late). */
  get isLeader(): boolean {
    return this.#leading !== undefined && performance.now() < this.#deadlineAt;
  }

  /** The holder of the lease as last observed; undefined when none. */
  get leader(): string | undefined {
    return this.#lease?.spec?.holderIdentity || undefined;
  }

  /**
   * Campaigns, leads while it can, and campaigns again after losing the lease, until
   * {@link stop}. Resolves once stopped and the lease released.
   */
  run(): Promise<void> {
    if (this.#running) throw new Error("LeaderElector.run: already running");
    this.#running = this.#loop();
    return this.#running;
  }

  /**
   * Ends leadership at once (the signal has aborted when the call returns its promise),
   * stops campaigning, and releases the lease when held. Resolves when {@link run} has
   * ended.
   */
  async stop(): Promise<void> {
    this.#stopLeading("stopped");
    this.#stop.abort();
    await this.#running;
  }

  async #loop(): Promise<void> {
    const stop = this.#stop.signal;
    try {
      while (!stop.aborted) {
        const started = await this.#acquire();
        if (started === undefined) break;
        const leading = this.#startLeading(started);
        if (!leading) {
          // The acquisition took longer than renewDeadline: it counts as no renewal.
          await sleep(this.#jittered(), stop);
          continue;
        }
        await this.#renew(leading, started);
      }
    } finally {
      this.#stopLeading("stopped");
      await this.#release();
      await Promise.all(this.#watches);
    }
  }

  /**
   * Tries until the lease is ours; the start of the write that made it so, or undefined
   * when stopped. Reads the lease first, then (with a client that can) watches it and
   * writes only when the timer of its expiry fires; reads it every retryPeriod (jittered)
   * while no watch is open or what it saw may be behind.
   */
  async #acquire(): Promise<number | undefined> {
    const stop = this.#stop.signal;
    const identity = this.#opts.identity;
    const watch = new AbortController();
    let watching: Promise<void> | undefined;
    let readAt = -Infinity;
    let pollMs = 0;
    // A watch of an earlier campaign has ended (or been told to): none is open yet.
    this.#watching = false;
    try {
      while (!stop.aborted) {
        const now = performance.now();
        const lease = this.#lease;
        const known = lease !== undefined || this.#absentWaitMs !== undefined;
        const polling = !this.#watching || this.#stale || !known;
        if (polling && now >= readAt + pollMs) {
          readAt = now;
          pollMs = this.#jittered();
          const read = await this.#read();
          if (stop.aborted) return undefined;
          // An absent lease has no version to watch from: polled until it is there.
          if (read === "read" && watching === undefined && this.#opts.watch !== false) {
            watching = this.#watch(AbortSignal.any([stop, watch.signal]));
          }
          continue;
        }
        const due = this.#dueAt();
        if (!this.#stale && known && now >= due) {
          const holder = lease?.spec?.holderIdentity ?? "";
          const attempt = lease === undefined
            ? await this.#create(this.#freshSpec())
            : await this.#write(this.#spec(identity, holder === identity));
          if (stop.aborted) return undefined;
          if (attempt === "held") return this.#wroteAt;
          // A conflict means the lease changed since the version written on (or was created
          // by another): unless the watch has brought a newer one already, read it at the next
          // poll if no event comes first. A failed write may have landed or not: the same.
          if (this.#lease === lease) this.#stale = true;
          readAt = performance.now();
          pollMs = this.#jittered();
          continue;
        }
        // What is seen may be behind: no write on it before a read or a watch event.
        const wakeAt = this.#stale
          ? readAt + pollMs
          : Math.min(due, polling ? readAt + pollMs : Infinity);
        await this.#standBy(wakeAt, stop);
      }
      return undefined;
    } finally {
      this.#wake = undefined;
      watch.abort();
      if (watching) {
        const done = watching
          .catch((e) => this.#log.error("watching the lease failed", { error: e }))
          .finally(() => this.#watches.delete(done));
        this.#watches.add(done);
      }
    }
  }

  /**
   * When a candidate may try to take the lease seen: at once when it names this candidate
   * (its own term, e.g. cut short by the renew deadline, as client-go), after the spread
   * when released, after its duration and the spread from the last change seen otherwise.
   * An absent lease is created after the wait set when that was seen (and the spread), at
   * once when there is none. Infinity when nothing is known.
   */
  #dueAt(): number {
    const lease = this.#lease;
    if (lease === undefined) {
      const wait = this.#absentWaitMs;
      if (wait === undefined) return Infinity;
      return wait === 0 ? -Infinity : this.#observedAt + wait + this.#spread;
    }
    const holder = lease.spec?.holderIdentity ?? "";
    if (holder === this.#opts.identity) return -Infinity;
    if (holder === "") return this.#observedAt + this.#spread;
    return this.#observedAt + this.#durationMs() + this.#spread;
  }

  /** Waits until `until` (performance.now()), a change observed, or `signal` aborts. */
  #standBy(until: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        if (this.#wake === done) this.#wake = undefined;
        resolve();
      };
      const ms = Math.min(Math.max(0, until - performance.now()), MAX_TIMER_MS);
      const timer = setTimeout(done, ms);
      this.#wake = done;
      signal.addEventListener("abort", done);
    });
  }

  /** Reads the lease: "absent" (and so recorded) when there is none. */
  async #read(): Promise<"read" | "absent" | "failed"> {
    const { namespace, name } = this.#opts;
    try {
      this.#observe(
        await this.#call("get", (signal) => this.#client.getLease(namespace, name, { signal })),
      );
      this.#stale = false;
      return "read";
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        this.#observeAbsent();
        this.#stale = false;
        return "absent";
      }
      this.#log.debug("lease read failed", { error: e });
      return "failed";
    }
  }

  /** The spec of a lease a candidate creates: held by it from now, never changed hands. */
  #freshSpec(): LeaseSpec {
    const now = this.#now();
    return {
      holderIdentity: this.#opts.identity,
      leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
      acquireTime: now,
      renewTime: now,
      leaseTransitions: 0,
    };
  }

  /** Creates the lease with `spec`: "conflict" when it exists (another created it first). */
  async #create(spec: LeaseSpec): Promise<Attempt> {
    const { namespace, name } = this.#opts;
    const lease: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name, namespace },
      spec,
    };
    this.#wroteAt = performance.now();
    try {
      this.#observe(
        await this.#call(
          "create",
          (signal) => this.#client.createLease(namespace, lease, { signal }),
        ),
      );
      return "held";
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) return "conflict";
      this.#log.debug("lease create failed", { error: e });
      return "failed";
    }
  }

  /**
   * Watches the lease until `signal` aborts: from the version last seen; again at once
   * after a watch that ended normally, after a backoff after one that failed or ended at
   * once having shown nothing (a proxy cutting streams would make a storm of them), after
   * a 410 Expired by reading the lease first. `#watching` says whether a watch is open.
   */
  async #watch(signal: AbortSignal): Promise<void> {
    const client = this.#client;
    if (!client.watchLeases) return;
    const { namespace, name } = this.#opts;
    const backoff = new Backoff();
    let failing = false;
    while (!signal.aborted) {
      let cause: string;
      let retryAfterMs: number | undefined;
      try {
        if (this.#watchFrom === undefined) {
          const lease = await this.#call(
            "get",
            (s) => client.getLease(namespace, name, { signal: AbortSignal.any([s, signal]) }),
          );
          if (signal.aborted) return;
          this.#observe(lease);
          this.#stale = false;
          this.#wake?.();
        }
        const from = this.#watchFrom;
        if (from === undefined) throw new Error(`lease ${name} read without a resourceVersion`);
        const t0 = performance.now();
        this.#setWatching(true, signal);
        // As the informer's (kube/informer.ts): one the server has not ended by its timeout
        // is on a connection gone silent, and is ended here.
        const timeoutSeconds = this.#opts.watchTimeoutSeconds ?? defaultWatchTimeoutSeconds();
        const graceMs = this.#opts.watchGraceMs ?? WATCH_GRACE_MS;
        const cut = new AbortController();
        const deadline = setTimeout(() => cut.abort(), timeoutSeconds * 1000 + graceMs);
        let count = 0;
        try {
          const events = client.watchLeases(namespace, {
            name,
            resourceVersion: from,
            timeoutSeconds,
            signal: AbortSignal.any([signal, cut.signal]),
          });
          for await (const ev of events) {
            if (signal.aborted) return;
            count++;
            this.#watched(ev);
            if (failing) {
              failing = false;
              this.#log.info("watching the lease again");
            }
          }
        } catch (e) {
          if (!cut.signal.aborted) throw e;
        } finally {
          clearTimeout(deadline);
        }
        if (signal.aborted) return;
        const ms = Math.round(performance.now() - t0);
        if (cut.signal.aborted) {
          cause = `the watch outlived its timeout (${timeoutSeconds} s) without an end ` +
            "from the server";
        } else if (count > 0 || ms >= SHORT_WATCH_MS) continue;
        else cause = `the watch ended after ${ms} ms without an event`;
      } catch (e) {
        if (signal.aborted) return;
        const err = e instanceof ApiError ? e : new ApiError(0, "Error", (e as Error).message);
        if (err.status === 410) {
          // The version is gone from the server's history: read the lease, watch from there.
          this.#watchFrom = undefined;
        } else if (err.status === 404) {
          // The lease was deleted: the candidate reads it and finds it absent.
          this.#watchFrom = undefined;
          this.#stale = true;
        }
        cause = err.message;
        if (err.retryAfterSeconds !== undefined) retryAfterMs = err.retryAfterSeconds * 1000;
      }
      this.#setWatching(false, signal);
      this.#wake?.();
      const wait = backoff.next(retryAfterMs);
      if (!failing) {
        failing = true;
        this.#log.warn("watching the lease failed; reading it every retry period meanwhile", {
          cause,
          retryInMs: Math.round(wait),
        });
      } else {
        this.#log.debug("watching the lease failed again", { cause, retryInMs: Math.round(wait) });
      }
      await sleep(wait, signal);
    }
  }

  /** Takes in one event of a watch of the lease. */
  #watched(ev: LeaseWatchEvent): void {
    switch (ev.type) {
      case "ERROR":
        throw statusError(ev.object, 500);
      case "BOOKMARK":
        this.#watchFrom = ev.object.metadata.resourceVersion;
        return;
      case "DELETED":
        // The watch goes on from the deletion: it brings the lease when created again.
        this.#watchFrom = ev.object.metadata.resourceVersion ?? this.#watchFrom;
        this.#observeAbsent();
        this.#stale = false;
        this.#wake?.();
        return;
      default:
        this.#observe(ev.object);
        this.#stale = false;
        this.#wake?.();
    }
  }

  /** Says whether a watch is open, unless `signal` (of the watch's campaign) has aborted. */
  #setWatching(on: boolean, signal: AbortSignal): void {
    if (signal.aborted || this.#watching === on) return;
    this.#watching = on;
    this.#wake?.();
  }

  /**
   * Renews every retryPeriod, counted from the start of each attempt so that a slow server
   * does not stretch the period; after a successful write, leadership lasts until its start
   * + renewDeadline.
   */
  async #renew(leading: AbortSignal, since: number): Promise<void> {
    const stop = this.#stop.signal;
    const either = AbortSignal.any([stop, leading]);
    let last = since;
    while (!either.aborted) {
      await sleep(last + this.#retryPeriodMs - performance.now(), either);
      if (either.aborted) return;
      last = performance.now();
      const attempt = await this.#tryAcquireOrRenew();
      if (either.aborted) return;
      if (attempt === "held") this.#arm(this.#wroteAt + this.#renewDeadlineMs);
      else if (attempt === "conflict") this.#stopLeading("the lease was changed by another");
      else if (attempt === "other") this.#stopLeading(`the lease is held by ${this.leader}`);
      // "failed": tried again after retryPeriod, until the deadline.
    }
  }

  #jittered(): number {
    return this.#retryPeriodMs * (1 + Math.random() * JITTER);
  }

  /**
   * Leads from now until `start` + renewDeadline unless renewed; the signal of the term, or
   * undefined when that is already past. `start` is when the write that took the lease was
   * sent: others saw it change no earlier, so they wait until at least `start` +
   * leaseDuration.
   */
  #startLeading(start: number): AbortSignal | undefined {
    if (start + this.#renewDeadlineMs <= performance.now()) return undefined;
    const leading = new AbortController();
    this.#leading = leading;
    this.#arm(start + this.#renewDeadlineMs);
    this.#log.info("started leading");
    try {
      const done = this.#opts.onStartedLeading?.(leading.signal);
      if (done instanceof Promise) {
        done.catch((e) => this.#log.error("onStartedLeading failed", { error: e }));
      }
    } catch (e) {
      this.#log.error("onStartedLeading failed", { error: e });
    }
    return leading.signal;
  }

  /** Sets the moment leadership ends unless renewed before. */
  #arm(deadline: number): void {
    clearTimeout(this.#deadline);
    this.#deadlineAt = deadline;
    const left = deadline - performance.now();
    if (left <= 0) {
      this.#stopLeading("renew deadline passed");
      return;
    }
    this.#deadline = setTimeout(() => this.#stopLeading("renew deadline passed"), left);
  }

  #stopLeading(reason: string): void {
    const leading = this.#leading;
    if (!leading) return;
    this.#leading = undefined;
    clearTimeout(this.#deadline);
    this.#deadline = undefined;
    leading.abort(new LeadershipLost(`leadership of ${this.#opts.name} lost: ${reason}`));
    this.#log.info("stopped leading", { reason });
    try {
      this.#opts.onStoppedLeading?.();
    } catch (e) {
      this.#log.error("onStoppedLeading failed", { error: e });
    }
  }

  /** Records a lease read, written or watched; a change restarts its expiry. */
  #observe(lease: Lease): void {
    this.#lease = lease;
    this.#absentWaitMs = undefined;
    this.#watchFrom = lease.metadata.resourceVersion ?? this.#watchFrom;
    const key = recordKey(lease.spec);
    if (key !== this.#observedKey) this.#changed(key);
    const holder = lease.spec?.holderIdentity || undefined;
    if (holder !== this.#reported) {
      this.#reported = holder;
      if (holder !== undefined) {
        try {
          this.#opts.onNewLeader?.(holder);
        } catch (e) {
          this.#log.error("onNewLeader failed", { error: e });
        }
      }
    }
  }

  /**
   * Records that the lease is absent, a change when it was not known so. When it last named
   * another holder, that one may lead until its next renewal shows it the deletion: the
   * candidate waits the lease's duration, as for an expiry. Otherwise nobody leads.
   */
  #observeAbsent(): void {
    if (this.#absentWaitMs !== undefined) return;
    const holder = this.#lease?.spec?.holderIdentity ?? "";
    this.#absentWaitMs = holder !== "" && holder !== this.#opts.identity ? this.#durationMs() : 0;
    this.#lease = undefined;
    // Not a key of any lease: the lease created again is a change even if written the same.
    this.#changed("");
  }

  /** The lease's record is now `key`: its expiry and the spread start over. */
  #changed(key: string): void {
    this.#observedKey = key;
    this.#observedAt = performance.now();
    this.#spread = Math.random() * this.#spreadMs;
  }

  /**
   * Whether the observed lease is still valid: unchanged for less than its duration (ours
   * when it has none, rather than taking it at once).
   */
  #valid(now: number): boolean {
    return this.#observedAt + this.#durationMs() > now;
  }

  /** The duration of the lease seen (ours when it has none). */
  #durationMs(): number {
    const seconds = this.#lease?.spec?.leaseDurationSeconds;
    return seconds && seconds > 0 ? seconds * 1000 : this.#leaseDurationMs;
  }

  /** A renewTime later than the last one written, so that every renewal is a change. */
  #now(): string {
    this.#lastRenewMs = Math.max(Date.now(), this.#lastRenewMs + 1);
    return formatMicroTime(this.#lastRenewMs);
  }

  /** One request with a timeout of renewDeadline, as client-go's leader election client. */
  async #call<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timeout = new AbortController();
    const timer = setTimeout(
      () => timeout.abort(new Error(`${what}: no answer within ${this.#renewDeadlineMs} ms`)),
      this.#renewDeadlineMs,
    );
    try {
      return await fn(timeout.signal);
    } catch (e) {
      if (timeout.signal.aborted) throw timeout.signal.reason;
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  #spec(holderIdentity: string, keep: boolean): LeaseSpec {
    const old = this.#lease?.spec;
    const now = this.#now();
    return {
      ...old,
      holderIdentity,
      leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
      acquireTime: keep ? old?.acquireTime ?? now : now,
      renewTime: now,
      leaseTransitions: (old?.leaseTransitions ?? 0) + (keep ? 0 : 1),
    };
  }

  /** An update of the lease last seen, carrying its resourceVersion. */
  async #write(spec: LeaseSpec): Promise<Attempt> {
    const { namespace } = this.#opts;
    const next: Lease = { ...this.#lease!, spec };
    this.#wroteAt = performance.now();
    try {
      this.#observe(
        await this.#call(
          "update",
          (signal) => this.#client.updateLease(namespace, next, { signal }),
        ),
      );
      return "held";
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) return "conflict";
      if (e instanceof ApiError && e.status === 404) return "absent";
      this.#log.debug("lease update failed", { error: e });
      return "failed";
    }
  }

  /** One renewal by the leader: its lease still, another's, or unknown. */
  async #tryAcquireOrRenew(): Promise<Attempt> {
    const identity = this.#opts.identity;
    // The leader writes on the lease it last wrote, without reading it first. A conflict
    // means another wrote since: then it reads the lease and decides again, as client-go
    // does, for the writer may have been its own timed-out renewal or an edit of a label.
    // A lease deleted is created again as it was: its holder never stopped leading, and
    // the candidates that saw it wait for it to expire before they create it; one that
    // does first (a 409) had seen no holder, and this one then stops.
    const ours = this.#lease?.spec?.holderIdentity === identity
      ? this.#spec(identity, true)
      : undefined;
    if (this.#leading && ours) {
      const fast = await this.#write(ours);
      if (fast === "absent") return await this.#create(ours);
      if (fast !== "conflict") return fast;
    }
    const read = await this.#read();
    if (read === "absent") return await this.#create(ours ?? this.#freshSpec());
    if (read !== "read") return "failed";
    const holder = this.#lease?.spec?.holderIdentity ?? "";
    if (holder !== "" && holder !== identity && this.#valid(performance.now())) return "other";
    return await this.#write(this.#spec(identity, holder === identity));
  }

  /**
   * Gives the lease up when this candidate holds it, so that others need not wait. After a
   * conflict (an edit since its last write, e.g. of a label) it reads the lease and, still
   * its holder, tries once more.
   */
  async #release(): Promise<void> {
    const { namespace, name, identity } = this.#opts;
    for (let tries = 1;; tries++) {
      if (this.#lease?.spec?.holderIdentity !== identity) return;
      const now = this.#now();
      const attempt = await this.#write({
        ...this.#lease.spec,
        holderIdentity: "",
        leaseDurationSeconds: 1,
        acquireTime: now,
        renewTime: now,
      });
      if (attempt === "held") {
        this.#log.info("released the lease");
        return;
      }
      if (attempt === "absent") return; // deleted: nobody waits for it
      if (attempt !== "conflict" || tries === 2) {
        this.#log.warn("could not release the lease; it will expire", { attempt });
        return;
      }
      try {
        this.#observe(
          await this.#call("get", (signal) => this.#client.getLease(namespace, name, { signal })),
        );
      } catch (e) {
        this.#log.warn("could not release the lease; it will expire", { error: e });
        return;
      }
    }
  }
}
