/**
 * Leader election over a coordination.k8s.io/v1 Lease, with the semantics of client-go's
 * leaderelection package:
 *
 * - A candidate reads the lease, creates it when absent, and takes it over (holder, a new
 *   acquireTime, leaseTransitions + 1) when it is free or expired, by an update carrying
 *   the resourceVersion it read: of two candidates, one gets a 409 Conflict.
 * - A lease is expired when it has not changed for leaseDuration, timed on the local
 *   monotonic clock from when the change was observed; the holder's clock is never read.
 * - The leader renews every retryPeriod. When no renewal has succeeded for renewDeadline
 *   (counted from the start of the last one that succeeded), or a renewal finds the lease
 *   taken (another holder, or a conflict on the update made after reading it again), it
 *   stops leading at once. As renewDeadline < leaseDuration and a candidate waits at
 *   least leaseDuration from a renewal it saw, the old leader has stopped before another
 *   can take over.
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
import { ApiError } from "./client.ts";
import { formatMicroTime, type Lease, type LeaseSpec } from "./lease.ts";

/** The Lease calls an elector makes (a KubeClient has them). */
export interface LeaseClient {
  getLease(namespace: string, name: string, opts?: { signal?: AbortSignal }): Promise<Lease>;
  createLease(namespace: string, lease: Lease, opts?: { signal?: AbortSignal }): Promise<Lease>;
  updateLease(namespace: string, lease: Lease, opts?: { signal?: AbortSignal }): Promise<Lease>;
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

/** The outcome of one attempt to acquire or renew. */
type Attempt = "held" | "other" | "conflict" | "failed";

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

/** Resolves after `ms`, or as soon as `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal.addEventListener("abort", done);
  });
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`LeaderElector: ${name} must be a positive number of ms, not ${value}`);
  }
  return value;
}

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
    this.#leaseDurationMs = lease;
    this.#renewDeadlineMs = renew;
    this.#retryPeriodMs = retry;
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
    }
  }

  /**
   * Tries until the lease is ours; the start of the write that made it so, or undefined
   * when stopped.
   */
  async #acquire(): Promise<number | undefined> {
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      const attempt = await this.#tryAcquireOrRenew();
      if (stop.aborted) return undefined;
      if (attempt === "held") return this.#wroteAt;
      await sleep(this.#jittered(), stop);
    }
    return undefined;
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

  /** Records a lease read or written; a change restarts its expiry. */
  #observe(lease: Lease): void {
    this.#lease = lease;
    const key = recordKey(lease.spec);
    if (key !== this.#observedKey) {
      this.#observedKey = key;
      this.#observedAt = performance.now();
    }
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
   * Whether the observed lease is still valid: unchanged for less than its duration (ours
   * when it has none, rather than taking it at once).
   */
  #valid(now: number): boolean {
    const seconds = this.#lease?.spec?.leaseDurationSeconds;
    const duration = seconds && seconds > 0 ? seconds * 1000 : this.#leaseDurationMs;
    return this.#observedAt + duration > now;
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
      this.#log.debug("lease update failed", { error: e });
      return "failed";
    }
  }

  async #tryAcquireOrRenew(): Promise<Attempt> {
    const { namespace, name, identity } = this.#opts;
    // The leader writes on the lease it last wrote, without reading it first. A conflict
    // means another wrote since: then it reads the lease and decides again, as client-go
    // does, for the writer may have been its own timed-out renewal or an edit of a label.
    if (this.#leading && this.#lease?.spec?.holderIdentity === identity) {
      const fast = await this.#write(this.#spec(identity, true));
      if (fast !== "conflict") return fast;
    }
    let lease: Lease;
    try {
      lease = await this.#call(
        "get",
        (signal) => this.#client.getLease(namespace, name, { signal }),
      );
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        this.#log.debug("lease read failed", { error: e });
        return "failed";
      }
      const now = this.#now();
      const fresh: Lease = {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name, namespace },
        spec: {
          holderIdentity: identity,
          leaseDurationSeconds: Math.ceil(this.#leaseDurationMs / 1000),
          acquireTime: now,
          renewTime: now,
          leaseTransitions: 0,
        },
      };
      this.#wroteAt = performance.now();
      try {
        this.#observe(
          await this.#call(
            "create",
            (signal) => this.#client.createLease(namespace, fresh, { signal }),
          ),
        );
        return "held";
      } catch (e) {
        this.#log.debug("lease create failed", { error: e });
        return "failed";
      }
    }
    this.#observe(lease);
    const holder = lease.spec?.holderIdentity ?? "";
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
