/**
 * The wait between failed rounds of a list/watch cycle, as client-go's reflector spaces them:
 * 800 ms doubling up to 30 s, each wait drawn between half and all of its step, the step back
 * to the start after 2 minutes without a failure. A server's Retry-After is a floor.
 *
 * One backoff serves every failure of the cycle (an error, a 410 Expired, a watch that ends at
 * once), so that a server whose watches all expire or all end at once sees its clients spread
 * out and slow down instead of coming straight back.
 *
 * @example
 * ```ts
 * const b = new Backoff();
 * const wait = b.next(); // 400-800 ms; then 800-1600 ms, ...
 * ```
 *
 * @module
 */

/** Steps of a {@link Backoff}. */
export interface BackoffPolicy {
  /** First step (default 800 ms). */
  initialMs?: number;
  /** Largest step (default 30 s). */
  maxMs?: number;
  /** Time without a failure after which the step starts over (default 2 min). */
  resetMs?: number;
}

/** client-go's reflector defaults. */
export const REFLECTOR_BACKOFF: Required<BackoffPolicy> = {
  initialMs: 800,
  maxMs: 30_000,
  resetMs: 120_000,
};

/** Jittered exponential backoff with a reset after a quiet period. */
export class Backoff {
  readonly #policy: Required<BackoffPolicy>;
  readonly #random: () => number;
  readonly #now: () => number;
  #step: number;
  #lastFailure = -Infinity;

  constructor(
    policy: BackoffPolicy = {},
    clock: { random?: () => number; now?: () => number } = {},
  ) {
    this.#policy = { ...REFLECTOR_BACKOFF, ...policy };
    this.#random = clock.random ?? Math.random;
    this.#now = clock.now ?? (() => performance.now());
    this.#step = this.#policy.initialMs;
  }

  /**
   * Records a failure and returns the wait before the next attempt, in ms: between half and
   * all of the current step, and never less than `retryAfterMs` when the server asked for it.
   */
  next(retryAfterMs?: number): number {
    const now = this.#now();
    if (now - this.#lastFailure > this.#policy.resetMs) this.#step = this.#policy.initialMs;
    this.#lastFailure = now;
    const step = this.#step;
    this.#step = Math.min(step * 2, this.#policy.maxMs);
    const wait = step / 2 + this.#random() * step / 2;
    return Math.max(wait, retryAfterMs ?? 0);
  }
}

/** Resolves after `ms`, or as soon as `signal` aborts: the wait between two tries. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
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
