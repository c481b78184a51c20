/**
 * What keeps the reconciler in step with the kernel besides the nodes' changes: the route
 * monitor, the periodic resync (a full reconcile), and giving back the memory that the
 * start or a full read took, once no reconcile has run for a moment.
 *
 * @module
 */
import { QuietRelease } from "./heap.ts";
import type { Logger } from "./log.ts";
import type { KernelAdapter } from "./routing/adapter.ts";
import type { Reconciler } from "./routing/reconciler.ts";

/** After `ip monitor` starts, the time before the full read that closes the gap. */
const MONITOR_SETTLE_MS = 1000;
/**
 * How long no reconcile must have run before memory is given back (see QuietRelease), and
 * how long at most that waits for such a moment.
 */
const QUIET = { quiet: 300, maxWait: 30_000 };

/** What {@link Upkeep} works with. */
export interface UpkeepOptions {
  reconciler: Pick<Reconciler, "trigger" | "idle" | "kernelEvent" | "quietMs">;
  kernel: Pick<KernelAdapter, "watch" | "watchesAtOnce">;
  /** Our route protocol: the kernel need not report our own additions. */
  protocol: number;
  resyncSeconds: number;
  log: Logger;
}

/**
 * The kernel watched, and full reconciles at their times. Over rtnetlink the monitor is
 * subscribed at {@link begin}, before the first read of the table, so that no change goes
 * unseen. `ip monitor` subscribes a moment after it starts, and would print (and we would
 * read) a line for every route of the first batch: it starts after that batch, and one full
 * read a second later covers what its subscription missed.
 */
export class Upkeep {
  readonly #opts: UpkeepOptions;
  #monitor: { close(): Promise<void> } | undefined;
  readonly #timers: ReturnType<typeof setTimeout>[] = [];
  #stopped = false;
  // The start's end is said once; a resync's, every few minutes, only when debugging.
  readonly #afterStart: QuietRelease;
  readonly #afterResync: QuietRelease;

  constructor(opts: UpkeepOptions) {
    this.#opts = opts;
    const release = (said: (fields: Record<string, unknown>) => void) =>
      new QuietRelease({ ...QUIET, quietMs: () => opts.reconciler.quietMs, done: said });
    this.#afterStart = release((f) => opts.log.info("start complete; idle memory released", f));
    this.#afterResync = release((f) => opts.log.debug("resync complete; idle memory released", f));
  }

  /** Before anything reads the kernel: a monitor that subscribes at once starts here. */
  begin(): void {
    if (this.#opts.kernel.watchesAtOnce) this.#watch();
  }

  /**
   * After the first reconcile: the rest of the start, then resyncs. `over` is called once
   * the kernel is watched with nothing missed and the start's memory is given back.
   */
  synced(over: () => void): void {
    if (this.#stopped) return;
    if (this.#opts.kernel.watchesAtOnce) this.#afterStart.soon(over);
    else {
      this.#watch();
      this.#timers.push(setTimeout(() => this.#full("monitor", over), MONITOR_SETTLE_MS));
    }
    this.#timers.push(setInterval(() => this.#full("resync"), this.#opts.resyncSeconds * 1000));
  }

  /** Stops every timer at once, then the monitor. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#afterStart.stop();
    this.#afterResync.stop();
    await this.#monitor?.close();
  }

  async #full(trigger: "monitor" | "resync", then?: () => void): Promise<void> {
    const { reconciler } = this.#opts;
    reconciler.trigger(trigger);
    await reconciler.idle();
    if (!this.#stopped) (trigger === "monitor" ? this.#afterStart : this.#afterResync).soon(then);
  }

  #watch(): void {
    const { kernel, log, reconciler, protocol } = this.#opts;
    const debug = log.enabled("debug");
    this.#monitor = kernel.watch((e) => {
      if (debug) log.debug("kernel change", { kind: e.kind, detail: e.detail });
      reconciler.kernelEvent(e);
    }, { skipAddedOf: protocol });
  }
}
