/**
 * Shared pieces of the benchmarks: clocks and statistics, the figure record, programs,
 * throw-away network namespaces, a cleanup registry, the kernel's route table as seen by
 * `ip`, raw route batches (`ip -batch` and rtnetlink), and per-process CPU and memory from
 * /proc.
 *
 * @module
 */
import { createNetlinkTable } from "../src/netlink/table.ts";
import type { RouteOp } from "../src/routing/types.ts";
import { Netns, run } from "../src/devcluster/netns.ts";

/** Milliseconds on a clock shared by every process of this machine (sub-millisecond). */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** The `p`-th percentile (0-100) of `xs` by nearest rank; NaN when empty. */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Median of `xs`. */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Rounds to `digits` decimals (for printing and JSON). */
export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** p50, p99 and max of a sample, rounded. */
export function summary(
  xs: readonly number[],
): { n: number; p50: number; p99: number; max: number } {
  return {
    n: xs.length,
    p50: round(percentile(xs, 50)),
    p99: round(percentile(xs, 99)),
    max: round(xs.length ? Math.max(...xs) : NaN),
  };
}

/** How a figure is judged: the value or the ratio at most `max`. */
export interface Target {
  on: "value" | "ratio";
  max: number;
}

/** One line of the table. */
export interface Figure {
  /** Figure number (1-8), as in docs/performance.md. */
  figure: number;
  /** Short name, unique in a run, e.g. `convergence` or `cni-add`. */
  name: string;
  /** Nodes present, when it matters. */
  n?: number;
  /** What `value` is, e.g. "ms to 2N routes". */
  what: string;
  unit: string;
  value: number;
  /** Same run's baseline in the same unit, when the figure has one. */
  baseline?: number;
  baselineWhat?: string;
  target?: Target;
  /** Everything else measured on the way (samples summarized, counts). */
  details: Record<string, unknown>;
}

/** A figure with its ratio and verdict worked out. */
export interface JudgedFigure extends Figure {
  ratio?: number;
  met?: boolean;
}

/** Adds the ratio to the baseline and whether the target is met. */
export function judge(f: Figure): JudgedFigure {
  const ratio = f.baseline !== undefined && f.baseline > 0
    ? round(f.value / f.baseline, 2)
    : undefined;
  let met: boolean | undefined;
  if (f.target) {
    const x = f.target.on === "ratio" ? ratio : f.value;
    met = x !== undefined && Number.isFinite(x) && x <= f.target.max;
  }
  return {
    ...f,
    value: round(f.value, 3),
    baseline: f.baseline && round(f.baseline, 3),
    ratio,
    met,
  };
}

/** Cleanups to run at the end, also on failure and on Ctrl-C; newest first. */
const cleanups: { what: string; fn: () => Promise<void> | void }[] = [];
/** Cleanups taken from the list and still running (by their owner or by cleanupAll). */
const running = new Set<Promise<void>>();

/** Runs one cleanup, tracked in {@link running}; failures are printed, never thrown. */
async function runCleanup(entry: { what: string; fn: () => Promise<void> | void }) {
  const p = (async () => {
    try {
      await entry.fn();
    } catch (e) {
      console.error(`cleanup of ${entry.what} failed: ${(e as Error).message}`);
    }
  })();
  running.add(p);
  try {
    await p;
  } finally {
    running.delete(p);
  }
}

/** Registers a cleanup; returns a function that runs it now and unregisters it. */
export function deferCleanup(what: string, fn: () => Promise<void> | void): () => Promise<void> {
  const entry = { what, fn };
  cleanups.push(entry);
  return async () => {
    const i = cleanups.indexOf(entry);
    if (i < 0) return;
    cleanups.splice(i, 1);
    // Run by its owner, a failure is the owner's to see.
    const p = Promise.resolve().then(entry.fn);
    const tracked = p.then(() => {}, () => {});
    running.add(tracked);
    try {
      await p;
    } finally {
      running.delete(tracked);
    }
  };
}

/**
 * Runs every registered cleanup, newest first, then waits for those already running (an
 * owner's, or another call's: Ctrl-C during the final cleanup); failures are printed, never
 * thrown.
 */
export async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) await runCleanup(cleanups.pop()!);
  while (running.size > 0) await Promise.all([...running]);
}

/** Set by Ctrl-C (or SIGTERM): the cleanup under way, which exits the process when done. */
let interrupted: Promise<void> | undefined;

/** From now on, Ctrl-C and SIGTERM run every cleanup and exit with 130. */
export function cleanUpOnSignals(): void {
  const onSignal = () => {
    if (interrupted) return;
    console.error("\ninterrupted: cleaning up");
    interrupted = cleanupAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
}

/**
 * Runs a bench program's `main` and exits with its code. After an interruption, work still
 * running when the namespaces went away fails: that is no error, and the cleanup ends the
 * process.
 */
export async function runProgram(main: () => Promise<number>): Promise<void> {
  try {
    Deno.exit(await main());
  } catch (e) {
    if (!interrupted) throw e;
    await interrupted;
  }
}

let nsCounter = 0;

/** A network namespace owned by the benchmark; removed by {@link cleanupAll} at the latest. */
export class BenchNetns extends Netns {
  #release: () => Promise<void>;

  private constructor(name: string) {
    super(name);
    this.#release = deferCleanup(`netns ${name}`, () => super.delete());
  }

  /** Creates `xb-<pid>-<n>`, set up as {@link Netns} does. */
  static override async create(): Promise<BenchNetns> {
    const ns = new BenchNetns(`xb-${Deno.pid}-${nsCounter++}`);
    await ns.setUp();
    return ns;
  }

  /** `ip -n NAME -batch -` with the lines on stdin; the time it took in ms. */
  async batch(lines: string[]): Promise<number> {
    const t0 = performance.now();
    await run("ip", ["-n", this.name, "-batch", "-"], lines.join("\n") + "\n");
    return performance.now() - t0;
  }

  /**
   * The same kind of work as {@link batch} through rtnetlink: `ops` applied with the
   * project's netlink table (one socket made in the namespace, every message sent at once,
   * one acknowledgement each); the time it took in ms. Throws when the kernel refused any.
   */
  async netlinkApply(ops: readonly RouteOp[], protocol: number): Promise<number> {
    const table = createNetlinkTable({ netns: this.name });
    const t0 = performance.now();
    const failures = await table.apply(ops, protocol);
    const ms = performance.now() - t0;
    await table.close();
    if (failures.length > 0) {
      throw new Error(
        `netlink batch in ${this.name}: ${failures.length} refused; first: ${failures[0].error}`,
      );
    }
    return ms;
  }

  /** Routes of a protocol, both families (one `ip route show table all`). */
  async countRoutes(protocol: number): Promise<number> {
    const text = await this.ip("route", "show", "table", "all", "proto", String(protocol));
    let n = 0;
    for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) n++;
    return n;
  }

  /** Deletes the namespace now. */
  override delete(): Promise<void> {
    return this.#release();
  }
}

/** One line printed by `ip monitor route`, with the time the kernel's message reached `ip`. */
export interface MonitorLine {
  line: string;
  /** performance.now() of this process at that moment. */
  t: number;
}

/** `ip -ts` prefixes each message with its local time of receipt, to the microsecond. */
const STAMP = /^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})\] ?(.*)$/;

/**
 * Wall-clock ms minus performance.now(), to a few µs. Date.now() is whole ms, read before
 * performance.now(): each difference is at most the offset, whatever preempts the thread
 * between the two reads, and the largest over 2 ms comes right after a tick.
 */
function wallOffset(): number {
  let best = -Infinity;
  const t0 = performance.now();
  for (let t = t0; t - t0 < 2;) {
    const wall = Date.now();
    t = performance.now();
    best = Math.max(best, wall - t);
  }
  return best;
}

/**
 * `ip -n NS -ts monitor route` in the background: callers wait for a line they expect. Register
 * the wait before causing the change, so that no line is missed.
 *
 * Each line is timed by the `ip` process when the kernel's message reaches it, not when this
 * process reads the line: this process also serves the API server, and its own pauses (a
 * scavenge of its store's heap takes 5-25 ms) would otherwise be counted as the daemon's.
 */
export class RouteMonitor {
  #child: Deno.ChildProcess;
  #waiters = new Set<
    { match: (line: string) => boolean; since: number; resolve: (t: number) => void }
  >();
  #done: Promise<void>;
  #release: () => Promise<void>;
  #offset = wallOffset();
  /** Lines seen so far (kept only while {@link record} is on). */
  recorded: MonitorLine[] = [];
  record = false;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#done = this.#read();
    this.#release = deferCleanup("ip monitor", () => this.#stop());
  }

  /** Starts the monitor and waits until it listens. */
  static async start(ns: BenchNetns): Promise<RouteMonitor> {
    const child = new Deno.Command("ip", {
      args: ["-n", ns.name, "-ts", "monitor", "route"],
      // The stamps are local time with no zone.
      env: { TZ: "UTC" },
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const m = new RouteMonitor(child);
    // ip subscribes before reading; give it a moment, then prove it with a probe route.
    const probe = "198.51.100.77/32";
    for (let i = 0; i < 50; i++) {
      const seen = m.waitFor((l) => l.includes("198.51.100.77"), 100);
      await ns.ip("route", "replace", "unreachable", probe);
      await ns.ip("route", "del", "unreachable", probe);
      if (await seen.then(() => true, () => false)) return m;
    }
    throw new Error("ip monitor route never printed the probe route");
  }

  async #read(): Promise<void> {
    let rest = "";
    // A multipath route's nexthop lines carry no stamp of their own.
    let t = performance.now();
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop() ?? "";
      for (const raw of lines) {
        const m = STAMP.exec(raw);
        if (m) t = Date.parse(`${m[1]}Z`) + Number(m[2]) / 1000 - this.#offset;
        const line = (m ? m[3] : raw).trim();
        if (line === "") continue;
        if (this.record) this.recorded.push({ line, t });
        for (const w of this.#waiters) {
          // A line still in the pipe from before the wait is not the change waited for.
          if (t >= w.since && w.match(line)) {
            this.#waiters.delete(w);
            w.resolve(t);
          }
        }
      }
    }
  }

  /**
   * Resolves once every line the kernel sent before this call has been read: a probe route
   * is added and deleted, and its line awaited (a table flush prints thousands of lines,
   * read later than they happen; a wait registered while they are still coming would be
   * timed late).
   */
  async sync(ns: BenchNetns): Promise<void> {
    // The wall clock may have been slewed since the last sync.
    this.#offset = wallOffset();
    const probe = "198.51.100.78/32";
    const seen = this.waitFor((l) => l.includes("198.51.100.78"), 30_000);
    await ns.ip("route", "replace", "unreachable", probe);
    await ns.ip("route", "del", "unreachable", probe);
    await seen;
  }

  /**
   * Resolves with the time (performance.now) the first line matching reached `ip`; rejects after
   * `timeoutMs`.
   */
  waitFor(match: (line: string) => boolean, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const w = {
        match,
        since: performance.now(),
        resolve: (t: number) => {
          clearTimeout(timer);
          resolve(t);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(w);
        reject(new Error(`no route line within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiters.add(w);
    });
  }

  /** Stops the monitor. */
  stop(): Promise<void> {
    return this.#release();
  }

  async #stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch { /* gone */ }
    await this.#done.catch(() => {});
    await this.#child.status;
  }
}

/** A route line of `ip monitor` for `dst` (optionally `via`), added or (`deleted`) removed. */
export function routeLine(dst: string, opts: { via?: string; deleted?: boolean } = {}) {
  const head = opts.deleted ? `Deleted ${dst} ` : `${dst} `;
  const via = opts.via === undefined ? "" : `via ${opts.via} `;
  return (line: string) => line.startsWith(head) && (via === "" || line.includes(via));
}

/** CPU seconds (self + waited-for children) and memory of a process, from /proc. */
export interface ProcSample {
  /** user + system, own threads. */
  cpuSelf: number;
  /** The system part of {@link cpuSelf}: the kernel's work for it (netlink, sockets, faults). */
  cpuSystem: number;
  /** user + system of children it waited for (the `ip` runs). */
  cpuChildren: number;
  rssMiB: number;
  /** The part of RSS that is the process's own memory (heaps, stacks). */
  rssAnonMiB: number;
  /** The part of RSS that is mapped files: mostly the Deno binary's code, shared and clean. */
  rssFileMiB: number;
  hwmMiB: number;
  /**
   * Minor page faults of its own threads: memory touched for the first time (or again after
   * it was given back), each a trip into the kernel.
   */
  minorFaults: number;
}

let clkTck: number | undefined;

/** Reads /proc/PID/stat and /proc/PID/status. */
export async function procSample(pid: number | "self"): Promise<ProcSample> {
  clkTck ??= Number((await run("getconf", ["CLK_TCK"])).trim()) || 100;
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces) start at field 3.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const [minflt, utime, stime, cutime, cstime] = [f[7], f[11], f[12], f[13], f[14]].map(Number);
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
  return {
    cpuSelf: (utime + stime) / clkTck,
    cpuSystem: stime / clkTck,
    cpuChildren: (cutime + cstime) / clkTck,
    rssMiB: kb("VmRSS") / 1024,
    rssAnonMiB: kb("RssAnon") / 1024,
    rssFileMiB: kb("RssFile") / 1024,
    hwmMiB: kb("VmHWM") / 1024,
    minorFaults: minflt,
  };
}

/**
 * Resets the peak resident size (VmHWM) of a process to its current size (writes 5 to
 * /proc/PID/clear_refs), so that a later {@link procSample} gives the peak of what came
 * between.
 */
export async function resetPeak(pid: number): Promise<void> {
  await Deno.writeTextFile(`/proc/${pid}/clear_refs`, "5");
}

/** Where a process's resident memory is, by kind of mapping, from /proc/PID/smaps (MiB). */
export interface MemoryMap {
  rssMiB: number;
  /** Executable mappings of the program's own file (Deno's machine code). */
  binaryCodeMiB: number;
  /** The rest of the program's file (read-only data, relocated tables). */
  binaryDataMiB: number;
  /** Other mapped files (the C library, ICU data, ...). */
  libsMiB: number;
  /** All anonymous memory: V8's heap pages, malloc's arenas, thread stacks. */
  anonMiB: number;
  /** The part of it in the brk heap, malloc's main arena. */
  brkHeapMiB: number;
  /** Anonymous mappings, by how much of them is resident: the largest first. */
  largestAnonMiB: number[];
}

/** Reads /proc/PID/smaps and sums the resident size of each kind of mapping. */
export async function memoryMap(pid: number): Promise<MemoryMap> {
  const exe = await Deno.readLink(`/proc/${pid}/exe`);
  const text = await Deno.readTextFile(`/proc/${pid}/smaps`);
  const m = { rss: 0, binCode: 0, binData: 0, libs: 0, anon: 0, brk: 0 };
  const anonSizes: number[] = [];
  let kind: "binCode" | "binData" | "libs" | "brk" | "anon" | "other" = "other";
  const head = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ \d+\s*(.*)$/;
  for (const line of text.split("\n")) {
    const h = head.exec(line);
    if (h) {
      const [, perms, path] = h;
      if (path === exe) kind = perms.includes("x") ? "binCode" : "binData";
      else if (path.startsWith("/")) kind = "libs";
      else if (path === "[heap]") kind = "brk";
      else if (path === "" || path === "[stack]" || path.startsWith("[anon")) kind = "anon";
      else kind = "other";
      continue;
    }
    if (!line.startsWith("Rss:")) continue;
    const kb = Number(/(\d+)/.exec(line)?.[1] ?? 0);
    m.rss += kb;
    if (kind === "brk") {
      m.brk += kb;
      m.anon += kb;
    } else if (kind === "anon") {
      m.anon += kb;
      if (kb > 0) anonSizes.push(kb);
    } else if (kind !== "other") m[kind] += kb;
  }
  const mib = (kb: number) => round(kb / 1024);
  return {
    rssMiB: mib(m.rss),
    binaryCodeMiB: mib(m.binCode),
    binaryDataMiB: mib(m.binData),
    libsMiB: mib(m.libs),
    anonMiB: mib(m.anon),
    brkHeapMiB: mib(m.brk),
    largestAnonMiB: anonSizes.sort((a, b) => b - a).slice(0, 5).map(mib),
  };
}

/** The processes whose parent is `pid`, from /proc. */
export async function childrenOf(pid: number): Promise<number[]> {
  const found: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(e.name)) continue;
    const stat = await Deno.readTextFile(`/proc/${e.name}/stat`).catch(() => "");
    // After the command name (which may hold spaces and parentheses): state, then parent.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (ppid === pid) found.push(Number(e.name));
  }
  return found;
}

/** Sleeps (used only for paced load and rest periods, never to wait for a result). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
