/**
 * Waiting for a condition by asking again: the one poller of the demo, the tests and the
 * benchmark.
 *
 * @module
 */

/** How {@link pollUntil} waits. */
export interface PollOptions {
  /** Give up after this long (default 5 s). */
  timeoutMs?: number;
  /** Ask again after this long (default 20 ms). */
  intervalMs?: number;
  /** What was waited for, in the error thrown at the deadline. */
  message?: string | (() => string);
}

/**
 * Asks `cond` until it holds, and returns the time it did (`performance.now()`); after the
 * deadline throws `timed out: <message>`. An error thrown by `cond` ends the wait with it.
 *
 * @example
 * ```ts
 * await pollUntil(async () => (await countRoutes()) === 10, { message: "10 routes" });
 * ```
 */
export async function pollUntil(
  cond: () => boolean | Promise<boolean>,
  opts: PollOptions = {},
): Promise<number> {
  const deadline = performance.now() + (opts.timeoutMs ?? 5000);
  for (;;) {
    if (await cond()) return performance.now();
    if (performance.now() > deadline) {
      const m = typeof opts.message === "function" ? opts.message() : opts.message;
      throw new Error(`timed out: ${m ?? "condition not met"}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20));
  }
}
