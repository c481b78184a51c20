/**
 * Runs {@link ./daemon_child.ts} as a process of its own and talks to it over its stdin and
 * stdout: start and ready times, reconcile counters, /proc samples, stop.
 *
 * @module
 */
import {
  ADDRESS_ANNOTATION,
  type BenchCluster,
  CIDR_ANNOTATION,
  PROTOCOL,
  SELF,
} from "./cluster.ts";
import { childrenOf, deferCleanup, type ProcSample, procSample, wallMs } from "./lib.ts";
import { DAEMON_RUNTIME_ENV } from "../src/config.ts";

const CHILD = new URL("./daemon_child.ts", import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/**
 * How a daemon under test is run beyond the bench's configuration: extra V8 flags
 * (`deno run --v8-flags=`, after the image's `DENO_V8_FLAGS`), and environment variables
 * that override the bench's and `DAEMON_RUNTIME_ENV` (`DENO_V8_FLAGS` itself, or
 * `ROUTE_ADAPTER`).
 */
export interface DaemonOptions {
  v8Flags?: string;
  env?: Record<string, string>;
}

/** One V8 heap space, as node:v8's `getHeapSpaceStatistics` gives it (bytes). */
export interface HeapSpace {
  space_name: string;
  space_size: number;
  space_used_size: number;
  space_available_size: number;
  physical_space_size: number;
}

/** Counters the child reports. */
export interface DaemonStats {
  t: number;
  reconciles: Record<string, number>;
  durationSumS: number;
  durationCount: number;
  installed: number;
  desired: number;
  memory: { rss: number; heapTotal: number; heapUsed: number; external: number };
  /** Present when the daemon allocates (CLUSTER_CIDRS set). */
  allocation?: {
    /** Whether it holds the Lease and decides (after its fresh list). */
    leader: boolean;
    /** CIDRs it wrote. */
    allocations: number;
  };
  /**
   * V8's own statistics, present in the answer to {@link DaemonProcess.heapSpaces} only:
   * node:v8 is loaded for it, which adds about 1.4 MiB to the heap, so it is asked last.
   */
  v8?: {
    heap: Record<string, number>;
    spaces: HeapSpace[];
    /** `Deno.memoryUsage()` before node:v8 was loaded. */
    before: { rss: number; heapTotal: number; heapUsed: number; external: number };
  };
  last?: {
    trigger: string;
    durationMs: number;
    applied: number;
    fullRead: boolean;
    problems: number;
  };
}

/** A daemon process under test. */
export class DaemonProcess {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #events = new Map<string, PromiseWithResolvers<Record<string, unknown>>>();
  #statsQueue: PromiseWithResolvers<DaemonStats>[] = [];
  #release: () => Promise<void>;
  #exited: Promise<Deno.CommandStatus>;
  /** Wall-clock ms when the process was spawned. */
  readonly spawnedAt: number;

  private constructor(child: Deno.ChildProcess, spawnedAt: number) {
    this.#child = child;
    this.spawnedAt = spawnedAt;
    this.#writer = child.stdin.getWriter();
    for (const ev of ["boot", "start", "ready", "started", "stopped"]) {
      this.#events.set(ev, Promise.withResolvers());
    }
    this.#exited = child.status;
    this.#exited.then((s) => {
      const err = new Error(`daemon process exited (code ${s.code})`);
      for (const p of this.#events.values()) p.reject(err);
      for (const p of this.#statsQueue) p.reject(err);
    });
    for (const p of this.#events.values()) p.promise.catch(() => {});
    void this.#read();
    this.#release = deferCleanup(`daemon pid ${child.pid}`, () => this.#kill());
  }

  /**
   * Starts the daemon against the cluster; `logFile` gets its log lines, `env` overrides the
   * environment, `v8Flags` (when given) go to `deno run --v8-flags=`.
   */
  static start(
    c: BenchCluster,
    logFile: string,
    env: Record<string, string> = {},
    v8Flags?: string,
  ): DaemonProcess {
    const spawnedAt = wallMs();
    // V8's gc, which statsAfterGc needs, is exposed by DAEMON_RUNTIME_ENV, as in the image.
    const flags = v8Flags ? [`--v8-flags=${v8Flags}`] : [];
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "--no-lock", ...flags, "--config", CONFIG, CHILD],
      env: {
        ...DAEMON_RUNTIME_ENV,
        NODE_NAME: SELF,
        CIDR_ANNOTATION,
        ADDRESS_ANNOTATION,
        PROTOCOL: String(PROTOCOL),
        HTTP_ADDRESS: "off",
        STATE_DIR: `${c.dir}/state`,
        LOG_LEVEL: "warn",
        LOG_FILE: logFile,
        INSTALL_K8S_NET: "no",
        BENCH_NETNS: c.ns.name,
        BENCH_KUBECONFIG: c.kubeconfig,
        ...env,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    return new DaemonProcess(child, spawnedAt);
  }

  /** The process ID. */
  get pid(): number {
    return this.#child.pid;
  }

  async #read(): Promise<void> {
    let rest = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.ev === "stats") this.#statsQueue.shift()?.resolve(msg as unknown as DaemonStats);
        else this.#events.get(String(msg.ev))?.resolve(msg);
      }
    }
  }

  /** Wall-clock ms of a lifecycle event (`boot`, `start`, `ready`). */
  async at(ev: "boot" | "start" | "ready"): Promise<number> {
    return Number((await this.#events.get(ev)!.promise).t);
  }

  /** The child's counters now. */
  stats(): Promise<DaemonStats> {
    return this.#ask("stats");
  }

  /** The child's counters right after a full collection of its heap. */
  statsAfterGc(): Promise<DaemonStats> {
    return this.#ask("gc");
  }

  /**
   * The child's counters with V8's heap statistics by space (`v8` set). Loading node:v8
   * grows the heap a little for good: ask it once the figures of this process are taken.
   */
  heapSpaces(): Promise<DaemonStats> {
    return this.#ask("spaces");
  }

  /**
   * Resolves once the start is over: the kernel watched with nothing missed since the first
   * read (with `ip monitor`, after the full read that follows its subscription), the heap
   * compacted and malloc trimmed.
   */
  async startEnded(timeoutMs = 15_000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("the daemon's start did not end")), timeoutMs);
    });
    try {
      await Promise.race([this.#events.get("started")!.promise, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #ask(cmd: "stats" | "gc" | "spaces"): Promise<DaemonStats> {
    const p = Promise.withResolvers<DaemonStats>();
    this.#statsQueue.push(p);
    await this.#writer.write(new TextEncoder().encode(`${cmd}\n`));
    return await p.promise;
  }

  /** CPU and memory of the process, from /proc. */
  proc(): Promise<ProcSample> {
    return procSample(this.pid);
  }

  /** Stops the daemon (routes stay) and waits for the process to end. */
  stop(): Promise<void> {
    return this.#release();
  }

  /**
   * Kills the process with SIGKILL, as a node that dies, and its children: an `ip monitor`
   * outlives its parent. Nothing is released: the Lease it holds stays until it expires.
   * Resolves, once all are gone, with the time (performance.now) the signal was sent.
   */
  async killHard(): Promise<number> {
    const orphans = await childrenOf(this.pid);
    const at = performance.now();
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already gone */ }
    await this.#exited;
    for (const pid of orphans) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone with its parent */ }
    }
    await this.#release();
    return at;
  }

  async #kill(): Promise<void> {
    try {
      await this.#writer.write(new TextEncoder().encode("stop\n"));
      await this.#writer.close();
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await this.#exited;
    clearTimeout(timer);
  }
}
