/**
 * Figure 8, zero-touch allocation (docs/architecture.md, "Zero-touch networks"): N nodes that
 * already hold CIDRs inside the pools (adopted as taken), and two daemon processes allocating
 * from the same pools with client-go's Lease timings: one on our node (node-0), which takes
 * the Lease first, and one on node-1, in a namespace of its own on the same LAN.
 *
 * - 8a: 100 nodes created at once on the server's store without CIDRs, each timed from its
 *   creation until the store takes the leader's patch of its CIDR annotation. Baseline: a
 *   client process writing 100 annotations the way the allocator writes one (a GET of the
 *   node's metadata, then a PATCH carrying its resourceVersion; 16 at a time), timed from
 *   their start until the store takes each patch: the API round trips any allocator pays.
 * - 8b: the same nodes, until node-1's kernel has the routes to both CIDRs of each (ip
 *   monitor). Baseline: 100 nodes created with their CIDRs already written, timed the same
 *   way on the same daemon.
 * - 8c: the leader killed with -9 and a node created at once: the time from the kill until
 *   the other instance has written the node's CIDRs. Baseline: the lease duration, which it
 *   must wait out.
 *
 * Run as a program (`allocation.ts patch-client KUBECONFIG ANNOTATION`), this module is 8a's
 * baseline client: JSON lines on stdout (`ready`, then `done` per request), a JSON array of
 * node names per line on stdin.
 *
 * @module
 */
import { DAEMON_RUNTIME_ENV, DEFAULT_POD_NAMESPACE, leaseName } from "../src/config.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import type {
  ObjectJson,
  ObjectStore,
  StoreEvent,
} from "../src/devcluster/apiserver/object_store.ts";
import type { NodeJson } from "../src/devcluster/apiserver/store.ts";
import { annotateNode } from "../src/kube/annotate.ts";
import { KubeClient } from "../src/kube/client.ts";
import { loadKubeAccess } from "../src/kube/kubeconfig.ts";
import { LEADER_ELECTION_DEFAULTS } from "../src/kube/leader.ts";
import { formatCidr, parseCidr, splitList } from "../src/net/ip.ts";
import {
  ADDRESS_ANNOTATION,
  addressing,
  type BenchCluster,
  benchNode,
  CIDR_ANNOTATION,
  hostNamespace,
  PROTOCOL,
  SELF,
  startCluster,
} from "./cluster.ts";
import { DaemonProcess } from "./daemon.ts";
import { pollUntil } from "../src/devcluster/poll.ts";
import {
  type BenchNetns,
  deferCleanup,
  type Figure,
  percentile,
  round,
  RouteMonitor,
  sleep,
  summary,
} from "./lib.ts";

/** Nodes that join at once in 8a and 8b. */
export const JOINING = 100;
/**
 * The pools: every CIDR the cluster's nodes hold (10.H.L.0/24 and fd00:244:0:H::/64 for
 * H < 2^16) is inside them, so all of them count as taken.
 */
export const POOLS = "10.0.0.0/8/24,fd00:244::/48/64";
/** Writes the allocator has in flight at once (CONCURRENT_WRITES in src/alloc/allocator.ts). */
const WRITERS = 16;
/** The annotation the baseline client writes: none of the daemons reads it. */
const MARKER = "bench.xcluster.example/baseline";
const LEASE_MS = LEADER_ELECTION_DEFAULTS.leaseDurationMs;
/**
 * How long 8c waits: the lease, then at worst two of the standby's retries (2 s × 2.2 each:
 * one between the last change it saw and the kill, one after the expiry), and as much again
 * for its relist and write.
 */
const FAILOVER_TIMEOUT_MS = LEASE_MS + 4 * LEADER_ELECTION_DEFAULTS.retryPeriodMs * 2.2;
const TIMEOUT_MS = 30_000;

const SELF_FILE = new URL(import.meta.url).pathname;
const CONFIG = new URL("../deno.json", import.meta.url).pathname;

/** Node k joining without CIDRs; its addresses (on the LAN) in the address annotation. */
function joiningNode(k: number): NodeJson {
  const a = addressing(k);
  return makeNode({
    name: a.name,
    internalIPs: [a.addr4, a.addr6],
    annotations: { [ADDRESS_ANNOTATION]: `${a.addr4},${a.addr6}` },
    realistic: true,
  });
}

/** Times (performance.now) at which a store took the changes picked, first per key. */
interface CommitLog {
  readonly times: Map<string, number>;
  /** Resolves once every key has a time; throws after `timeoutMs`. */
  until(keys: readonly string[], timeoutMs: number): Promise<void>;
  stop(): void;
}

/**
 * Watches a store in process: the watcher is called inside the write, before the server
 * answers it, so the time is the moment the server has the change.
 */
function recordCommits<T extends ObjectJson>(
  store: ObjectStore<T>,
  pick: (ev: StoreEvent) => string | undefined,
): CommitLog {
  const times = new Map<string, number>();
  const stop = store.watch(String(store.resourceVersion()), {
    bookmarks: false,
    send(ev) {
      const t = performance.now();
      const key = ev.type === "BOOKMARK" ? undefined : pick(ev);
      if (key !== undefined && !times.has(key)) times.set(key, t);
    },
    close() {},
  });
  return {
    times,
    async until(keys, timeoutMs) {
      await pollUntil(
        () => Promise.resolve(keys.every((k) => times.has(k))),
        {
          timeoutMs,
          intervalMs: 5,
          message: () => {
            const missing = keys.filter((k) => !times.has(k));
            return `${missing.length} of ${keys.length} writes missing (${missing.slice(0, 3)})`;
          },
        },
      );
    },
    stop: () => void stop(),
  };
}

/** The annotations of a stored object. */
function annotationsOf(obj: ObjectJson): Record<string, string> {
  return (obj.metadata.annotations ?? {}) as Record<string, string>;
}

/** Canonical CIDRs of an annotation value. */
function cidrsOf(value: string): string[] {
  return splitList(value).flatMap((item) => {
    const r = parseCidr(item);
    return r.ok ? [formatCidr(r.cidr)] : [];
  });
}

/**
 * The time `ip monitor` printed the addition of a route to each of `cidrs` (the monitor
 * recording); waits until all are there.
 */
async function routeTimes(
  monitor: RouteMonitor,
  cidrs: readonly string[],
  timeoutMs: number,
): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const pending = new Set(cidrs);
  let scanned = 0;
  await pollUntil(
    () => {
      for (; scanned < monitor.recorded.length; scanned++) {
        const { line, t } = monitor.recorded[scanned];
        // An addition starts with its destination ("Deleted ..." for a deletion).
        const dst = line.slice(0, line.indexOf(" "));
        if (pending.delete(dst)) found.set(dst, t);
      }
      return Promise.resolve(pending.size === 0);
    },
    {
      timeoutMs,
      intervalMs: 5,
      message: () =>
        `${pending.size} of ${cidrs.length} routes missing (${[...pending].slice(0, 3)})`,
    },
  );
  return found;
}

/** Per node, the time until the later of its routes, from its creation. */
function untilRoutes(
  created: ReadonlyMap<string, number>,
  cidrs: ReadonlyMap<string, readonly string[]>,
  routes: ReadonlyMap<string, number>,
): number[] {
  return [...created].map(([name, t0]) =>
    Math.max(...cidrs.get(name)!.map((c) => routes.get(c)!)) - t0
  );
}

/** 8a's baseline client, a process of its own as the daemon is. */
class PatchClient {
  #child: Deno.ChildProcess;
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #replies: PromiseWithResolvers<Record<string, unknown>>[] = [];
  #release: () => Promise<void>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    void this.#read();
    void child.status.then((s) => {
      const err = new Error(`baseline client exited (code ${s.code})`);
      for (const p of this.#replies.splice(0)) p.reject(err);
    });
    this.#release = deferCleanup(`baseline client pid ${child.pid}`, () => this.#kill());
  }

  /** Starts the client and waits until it has made a first request (its connection open). */
  static async start(kubeconfig: string): Promise<PatchClient> {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        "--no-lock",
        "--config",
        CONFIG,
        SELF_FILE,
        "patch-client",
        kubeconfig,
        MARKER,
      ],
      env: { ...DAEMON_RUNTIME_ENV },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const c = new PatchClient(child);
    const ready = Promise.withResolvers<Record<string, unknown>>();
    c.#replies.push(ready);
    await ready.promise;
    return c;
  }

  async #read(): Promise<void> {
    let rest = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        let reply: Record<string, unknown>;
        try {
          reply = JSON.parse(line);
        } catch {
          continue; // not a reply
        }
        this.#replies.shift()?.resolve(reply);
      }
    }
  }

  /** Writes the marker annotation of these nodes; the number that failed. */
  async write(names: readonly string[]): Promise<number> {
    const done = Promise.withResolvers<Record<string, unknown>>();
    this.#replies.push(done);
    await this.#writer.write(new TextEncoder().encode(JSON.stringify(names) + "\n"));
    return Number((await done.promise).failed);
  }

  /** Ends the process. */
  stop(): Promise<void> {
    return this.#release();
  }

  async #kill(): Promise<void> {
    try {
      await this.#writer.close();
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await this.#child.status;
    clearTimeout(timer);
  }
}

/** The child side of {@link PatchClient}. */
async function patchClientMain(kubeconfig: string, annotation: string): Promise<void> {
  const encoder = new TextEncoder();
  const say = (o: Record<string, unknown>) =>
    Deno.stdout.writeSync(encoder.encode(JSON.stringify(o) + "\n"));
  const client = new KubeClient(await loadKubeAccess({ kubeconfig }));
  // The daemon has its connections open by the time nodes join: so has this client.
  await client.getNode(SELF, { metadataOnly: true });
  say({ ev: "ready" });
  let rest = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    rest += chunk;
    for (let nl = rest.indexOf("\n"); nl >= 0; nl = rest.indexOf("\n")) {
      const queue = JSON.parse(rest.slice(0, nl)) as string[];
      rest = rest.slice(nl + 1);
      let failed = 0;
      // As the allocator writes: a worker pool over the queue, each write read-then-patch.
      const worker = async () => {
        for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
          try {
            const outcome = await annotateNode(client, name, annotation, {
              previous: undefined,
              value: "1",
            });
            if (outcome !== "written") failed++;
          } catch {
            failed++;
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(WRITERS, queue.length) }, worker));
      say({ ev: "done", failed });
    }
  }
  client.close();
}

/** Options of {@link allocationFigures}. */
export interface AllocationOptions {
  /** Leaders killed in turn for 8c (the figure is the slowest take-over). */
  kills: number;
}

/** One turn of 8c, in ms from the kill. */
interface Failover {
  /** The node whose daemon was killed. */
  killed: string;
  /** Until the process and its children were gone (then the node was created). */
  killMs: number;
  /** Until the other took the Lease (its update of the Lease reached the server). */
  takeoverMs: number;
  /** From then until the node's CIDRs were written (its relist, decision and write). */
  thenWrittenMs: number;
  totalMs: number;
}

/** Which daemon runs where: our node in the cluster's namespace, node-1 in one of its own. */
interface Instance {
  node: string;
  ns: BenchNetns;
  daemon?: DaemonProcess;
  /** Starts so far (each a log file of its own). */
  starts: number;
}

/** Figures 8a-8c with `n` existing nodes. */
export async function allocationFigures(n: number, opts: AllocationOptions): Promise<Figure[]> {
  if (n < JOINING + 2) throw new Error(`allocation: needs at least ${JOINING + 2} nodes`);
  const loadBefore = await loadAverage();
  const c = await startCluster(n);
  const instances: Instance[] = [];
  const logs: string[] = [];
  let monitor: RouteMonitor | undefined;
  const start = async (inst: Instance): Promise<DaemonProcess> => {
    const log = `${c.dir}/daemon-${inst.node}-${inst.starts++}.log`;
    logs.push(log);
    inst.daemon = DaemonProcess.start(c, log, {
      NODE_NAME: inst.node,
      BENCH_NETNS: inst.ns.name,
      STATE_DIR: `${c.dir}/state-${inst.node}`,
      CLUSTER_CIDRS: POOLS,
      // The daemon's default: each allocation and each change of leader is logged.
      LOG_LEVEL: "info",
    });
    await inst.daemon.at("ready");
    return inst.daemon;
  };
  try {
    const nodeNs = await hostNamespace(1);
    instances.push({ node: SELF, ns: c.ns, starts: 0 }, {
      node: addressing(1).name,
      ns: nodeNs,
      starts: 0,
    });
    const [first, second] = instances;
    const leader = await start(first);
    await waitLeading(leader);
    const other = await start(second);
    // Both route to every node but their own, with the lease held by the first.
    const routes = await nodeNs.countRoutes(PROTOCOL);
    if (routes !== 2 * n) throw new Error(`node-1 has ${routes} routes, not ${2 * n}`);
    if ((await other.stats()).allocation?.leader !== false) {
      throw new Error("node-1 allocates while node-0 holds the lease");
    }
    monitor = await RouteMonitor.start(nodeNs);

    await settle([leader, other]);

    // 8a's baseline: the allocator's writes without the allocator, on nodes that exist.
    const client = await PatchClient.start(c.kubeconfig);
    const targets = Array.from({ length: JOINING }, (_, i) => addressing(2 + i).name);
    const marked = recordCommits(
      c.api.nodes,
      (ev) =>
        ev.type === "MODIFIED" && annotationsOf(ev.obj)[MARKER] !== undefined
          ? ev.obj.metadata.name
          : undefined,
    );
    const tWrites = performance.now();
    const failed = await client.write(targets);
    await marked.until(targets, TIMEOUT_MS);
    marked.stop();
    await client.stop();
    if (failed > 0) throw new Error(`baseline client: ${failed} writes failed`);
    const writes = targets.map((t) => marked.times.get(t)! - tWrites);

    // 8b's baseline: nodes that come with their CIDRs (inside the pools: taken from now on).
    const handKs = Array.from({ length: JOINING }, (_, i) => n + 1 + JOINING + i);
    const hand = await joinAndRoute(c, monitor, handKs.map((k) => benchNode(k)));
    // The leader takes them in more slowly than node-1 (it decides on each): the nodes that
    // join next must not queue behind them.
    await settle([leader, other]);

    // 8a and 8b: nodes without CIDRs.
    const s0 = await leader.stats();
    const joinKs = Array.from({ length: JOINING }, (_, i) => n + 1 + i);
    const joined = await joinAndRoute(c, monitor, joinKs.map(joiningNode), true);
    const s1 = await leader.stats();
    await monitor.stop();
    await settle([leader, other]);
    const allocated = [...joined.cidrs.values()].flat();
    const distinct = new Set(allocated).size;
    if (distinct !== 2 * JOINING || allocated.length !== 2 * JOINING) {
      throw new Error(`${allocated.length} CIDRs allocated, ${distinct} distinct`);
    }

    // 8c: the holder killed, in turns.
    const failovers: Failover[] = [];
    for (let rep = 0; rep < opts.kills; rep++) {
      const holder = instances.find((i) => i.daemon !== undefined && isHolder(c, i.node));
      if (!holder) throw new Error("no running daemon holds the lease");
      const standby = instances.find((i) => i !== holder)!;
      // The standby must be running (a new process after the first turn) and not leading.
      if (!standby.daemon) await start(standby);
      const k = n + 2 * JOINING + 1 + rep;
      const name = addressing(k).name;
      const written = recordCommits(
        c.api.nodes,
        (ev) =>
          ev.obj.metadata.name === name && annotationsOf(ev.obj)[CIDR_ANNOTATION] !== undefined
            ? name
            : undefined,
      );
      const taken = recordCommits(
        c.api.leases,
        (ev) =>
          (ev.obj.spec as { holderIdentity?: string } | undefined)?.holderIdentity ===
              standby.node
            ? "taken"
            : undefined,
      );
      const tKill = await holder.daemon!.killHard();
      holder.daemon = undefined;
      const killMs = performance.now() - tKill;
      c.api.nodes.create(joiningNode(k));
      try {
        await written.until([name], FAILOVER_TIMEOUT_MS);
      } finally {
        written.stop();
        taken.stop();
      }
      const total = written.times.get(name)! - tKill;
      const takeover = (taken.times.get("taken") ?? NaN) - tKill;
      failovers.push({
        killed: holder.node,
        killMs: round(killMs),
        takeoverMs: round(takeover),
        thenWrittenMs: round(total - takeover),
        totalMs: round(total),
      });
    }
    for (const inst of instances) await inst.daemon?.stop();
    // Other programs on the machine weigh on these figures: what the kernel saw of them.
    const load = { before: loadBefore, after: await loadAverage() };

    const alloc = joined.written;
    const allocatedNow = (s1.allocation?.allocations ?? NaN) - (s0.allocation?.allocations ?? NaN);
    const worst = Math.max(...failovers.map((f) => f.totalMs));
    return [
      {
        figure: 8,
        name: "allocation-p50",
        n,
        what: `p50 of ${JOINING} nodes created at once, creation → CIDR annotation written`,
        unit: "ms",
        value: percentile(alloc, 50),
        baseline: percentile(writes, 50),
        baselineWhat: `${JOINING} GET + PATCH as the allocator writes (${WRITERS} at a time) ` +
          "by a client process",
        details: {
          ...summary(alloc),
          allocations: allocatedNow,
          baselineWrites: summary(writes),
          load,
        },
      },
      {
        figure: 8,
        name: "allocation-p99",
        n,
        what: "p99 of the same",
        unit: "ms",
        value: percentile(alloc, 99),
        baseline: percentile(writes, 99),
        baselineWhat: "same client, p99",
        target: { on: "value", max: 1000 },
        details: {},
      },
      {
        figure: 8,
        name: "allocation-routes-p99",
        n,
        what: `p99 of the same nodes, creation → routes to both CIDRs on another node`,
        unit: "ms",
        value: percentile(joined.routed, 99),
        baseline: percentile(hand.routed, 99),
        baselineWhat: `${JOINING} nodes created with their CIDRs written, same daemon`,
        target: { on: "value", max: 1000 },
        details: { ...summary(joined.routed), baselineRouted: summary(hand.routed) },
      },
      {
        figure: 8,
        name: "allocation-failover",
        n,
        what: `leader killed (-9) → a node created then has its CIDRs, worst of ${opts.kills}`,
        unit: "s",
        value: worst / 1000,
        baseline: LEASE_MS / 1000,
        baselineWhat: "the lease duration",
        target: { on: "value", max: (LEASE_MS + 2000) / 1000 },
        details: { failovers },
      },
    ];
  } catch (e) {
    for (const log of logs) {
      const text = await Deno.readTextFile(log).catch(() => "");
      const lines = text.split("\n").filter((l) => /lease|lead|allocat|error/i.test(l));
      if (lines.length) console.error(`${log} (last lines):\n${lines.slice(-10).join("\n")}`);
    }
    throw e;
  } finally {
    await monitor?.stop();
    for (const inst of instances) await inst.daemon?.stop();
    await c.close();
    for (const inst of instances) if (inst.ns !== c.ns) await inst.ns.delete();
  }
}

/** The 1-minute load average of the machine (/proc/loadavg). */
async function loadAverage(): Promise<number> {
  const text = await Deno.readTextFile("/proc/loadavg").catch(() => "");
  return Number(text.split(" ")[0]);
}

/** Whether `node` holds the network's Lease now, on the server. */
function isHolder(c: BenchCluster, node: string): boolean {
  const lease = c.api.leases.get(DEFAULT_POD_NAMESPACE, leaseName(CIDR_ANNOTATION));
  return lease?.spec.holderIdentity === node;
}

/**
 * Waits until each daemon is at rest: its start is over (memory given back) and it has not
 * reconciled for a while, so that it has taken in every change made before.
 */
async function settle(daemons: readonly DaemonProcess[], quietMs = 500): Promise<void> {
  for (const d of daemons) {
    const deadline = performance.now() + TIMEOUT_MS;
    await d.startEnded(TIMEOUT_MS);
    let last = -1, since = performance.now();
    for (;;) {
      const s = await d.stats();
      const total = Object.values(s.reconciles).reduce((a, b) => a + b, 0);
      if (total !== last) [last, since] = [total, performance.now()];
      if (performance.now() - since >= quietMs) break;
      if (performance.now() > deadline) throw new Error(`daemon pid ${d.pid} never settled`);
      await sleep(50);
    }
  }
}

/** Waits until the daemon allocates: it holds the Lease and has its fresh list. */
async function waitLeading(d: DaemonProcess): Promise<void> {
  await pollUntil(
    async () => (await d.stats()).allocation?.leader === true,
    { timeoutMs: TIMEOUT_MS, intervalMs: 5, message: "the first daemon never led" },
  );
}

/**
 * Creates the nodes at once and waits until node-1's kernel has the routes to their CIDRs
 * (and, with `allocated`, until the server has their CIDRs written).
 */
async function joinAndRoute(
  c: BenchCluster,
  monitor: RouteMonitor,
  nodes: NodeJson[],
  allocated = false,
): Promise<{ written: number[]; routed: number[]; cidrs: Map<string, string[]> }> {
  const names = nodes.map((node) => node.metadata.name);
  const wanted = new Set(names);
  const commits = recordCommits(
    c.api.nodes,
    (ev) =>
      ev.type === "MODIFIED" && wanted.has(ev.obj.metadata.name) &&
        annotationsOf(ev.obj)[CIDR_ANNOTATION] !== undefined
        ? ev.obj.metadata.name
        : undefined,
  );
  monitor.recorded = [];
  monitor.record = true;
  const created = new Map<string, number>();
  try {
    for (const node of nodes) {
      created.set(node.metadata.name, performance.now());
      c.api.nodes.create(node);
    }
    if (allocated) await commits.until(names, TIMEOUT_MS);
  } finally {
    commits.stop();
  }
  const cidrs = new Map(names.map((name) => {
    const value = annotationsOf(c.api.nodes.get(name)!)[CIDR_ANNOTATION] ?? "";
    return [name, cidrsOf(value)];
  }));
  const routes = await routeTimes(monitor, [...cidrs.values()].flat(), TIMEOUT_MS);
  monitor.record = false;
  return {
    written: allocated ? names.map((name) => commits.times.get(name)! - created.get(name)!) : [],
    routed: untilRoutes(created, cidrs, routes),
    cidrs,
  };
}

if (import.meta.main) {
  const [mode, kubeconfig, annotation] = Deno.args;
  if (mode !== "patch-client" || !kubeconfig || !annotation) {
    console.error("usage: allocation.ts patch-client KUBECONFIG ANNOTATION");
    Deno.exit(2);
  }
  await patchClientMain(kubeconfig, annotation);
}
