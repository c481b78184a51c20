/**
 * One run at a time, on demand: requests that come while a run is under way fold into the
 * next run, so that a burst of them costs one run after the current one. Only scheduling;
 * what a run does, and how two requests fold into one, are the caller's.
 *
 * @module
 */

/** Runs `run` on demand, never two at once, folding the requests made meanwhile. */
export class Folded<R> {
  readonly #run: (request: R) => Promise<void>;
  readonly #fold: (pending: R, next: R) => R;
  #pending: R | undefined;
  #running: Promise<void> | undefined;
  #quietSince = performance.now();
  #stopped = false;

  /**
   * @param run does one run; it handles its own errors (it must not reject)
   * @param fold the request that stands for two made before a run began
   */
  constructor(run: (request: R) => Promise<void>, fold: (pending: R, next: R) => R) {
    this.#run = run;
    this.#fold = fold;
  }

  /** Asks for a run; returns at once. Ignored once stopped. */
  request(request: R): void {
    if (this.#stopped) return;
    this.#pending = this.#pending === undefined ? request : this.#fold(this.#pending, request);
    if (!this.#running) this.#running = this.#loop();
  }

  /** For how many milliseconds no run has been under way or asked for (0 while one is). */
  get quietMs(): number {
    return this.#running ? 0 : performance.now() - this.#quietSince;
  }

  /** Resolves when no run is asked for or under way. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Takes no more requests, drops the one waiting, and waits for the run under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#pending = undefined;
    await this.idle();
  }

  async #loop(): Promise<void> {
    try {
      while (this.#pending !== undefined && !this.#stopped) {
        const request = this.#pending;
        this.#pending = undefined;
        await this.#run(request);
      }
    } finally {
      this.#running = undefined;
      this.#quietSince = performance.now();
    }
  }
}
