/**
 * Giving back the memory of a start. The first list, the first batch and the first full
 * read of the kernel leave V8's heap grown to hold their garbage, and malloc's arenas
 * holding the runtime's freed buffers; both keep that memory long after it is free.
 *
 * @module
 */

/** V8's `gc` as `--expose-gc` defines it. */
type Gc = (options?: {
  type?: "major" | "minor";
  execution?: "sync" | "async";
  flavor?: "regular" | "last-resort";
}) => void;

/**
 * Runs V8's most thorough collection (full and compacting, repeated while it frees memory)
 * when the runtime exposes `gc` (`DENO_V8_FLAGS=--expose-gc`, as `DAEMON_RUNTIME_ENV` has
 * it); returns whether it ran. It blocks for a few tens of milliseconds: call it once the
 * daemon is quiet.
 *
 * @example
 * ```ts
 * if (compactHeap()) log.debug("heap compacted");
 * ```
 */
export function compactHeap(): boolean {
  const gc = (globalThis as { gc?: Gc }).gc;
  if (typeof gc !== "function") return false;
  gc({ type: "major", execution: "sync", flavor: "last-resort" });
  return true;
}

/**
 * Asks glibc's malloc to return the free memory of its arenas to the system
 * (`malloc_trim(0)`); returns whether it ran: not where the C library is not glibc, nor
 * without FFI permission. About 3 ms, most of it opening the library.
 *
 * @example
 * ```ts
 * compactHeap();
 * trimMalloc();
 * ```
 */
export function trimMalloc(): boolean {
  let libc;
  try {
    libc = Deno.dlopen(
      "libc.so.6",
      {
        malloc_trim: { parameters: ["usize"], result: "i32" },
      } as const,
    );
  } catch {
    return false;
  }
  try {
    libc.symbols.malloc_trim(0n);
    return true;
  } finally {
    libc.close();
  }
}

/** What {@link QuietRelease} needs of the daemon. */
export interface QuietReleaseOptions {
  /** How long since the last reconcile ended (ms); large when none ran. */
  quietMs: () => number;
  /** How long no reconcile must have run. */
  quiet: number;
  /** How long at most to wait for such a moment; then it runs all the same. */
  maxWait: number;
  /** Gives the memory back; by default {@link compactHeap} then {@link trimMalloc}. */
  release?: () => Record<string, boolean>;
  /** Told what was done and how long it took. */
  done?: (fields: Record<string, boolean | number>) => void;
}

/**
 * Gives memory back at a quiet moment. The collection pauses the process for tens of
 * milliseconds, which a change arriving meanwhile would wait out; so it waits until no
 * reconcile has run for a while, and a process never quiet gives it back after the longest
 * wait all the same.
 *
 * @example
 * ```ts
 * const release = new QuietRelease({ quietMs: () => reconciler.quietMs, quiet: 300, maxWait: 30_000 });
 * release.soon(() => log.info("start over"));
 * ```
 */
export class QuietRelease {
  readonly #opts: QuietReleaseOptions;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #stopped = false;

  constructor(opts: QuietReleaseOptions) {
    this.#opts = opts;
  }

  /** Gives memory back at the next quiet moment, then calls `then`. */
  soon(then?: () => void): void {
    const { quietMs, quiet, maxWait } = this.#opts;
    const from = performance.now();
    const wait = (ms: number) => {
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        if (this.#stopped) return;
        const since = quietMs();
        if (since < quiet && performance.now() - from < maxWait) {
          wait(quiet - since);
          return;
        }
        const t0 = performance.now();
        const given = (this.#opts.release ?? defaultRelease)();
        this.#opts.done?.({ ...given, ms: Math.round(performance.now() - t0) });
        then?.();
      }, ms);
      this.#timers.add(timer);
    };
    wait(0);
  }

  /** Cancels every release still waiting; their `then` is never called. */
  stop(): void {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

function defaultRelease(): Record<string, boolean> {
  return { heapCompacted: compactHeap(), mallocTrimmed: trimMalloc() };
}
