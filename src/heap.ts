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
