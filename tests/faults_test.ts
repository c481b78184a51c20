/**
 * The router through the embedded API server's faults, end to end through the kernel: the API
 * down for 60 s, 500s, 429 with Retry-After, a watch dropped every second, 410 Expired on
 * every re-watch, a rotated token, and a node re-created with a new address while the watch
 * was down.
 *
 * For each fault: `ip monitor route` runs for the whole test and no route of a live node is
 * ever deleted; the changes made in the store during the fault (a node deleted, one added, a
 * CIDR changed) reach the kernel once the API is back (the time is printed); and the requests
 * made during the fault stay within what the informer's backoff allows (client-go's: 800 ms
 * doubling to 30 s, each wait between half and all of the step) while it does keep retrying.
 * The metrics count the failures as they happen, with no reconcile to carry them.
 *
 * Needs root (network namespaces).
 */
import assert from "node:assert/strict";
import { parseDaemonConfig } from "../src/config.ts";
import { type Daemon, startDaemon } from "../src/daemon.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { createLogger } from "../src/log.ts";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { Netns, pollUntil, requireRoot } from "./helpers/netns.ts";
import { type Cluster, MAIN_B, MAIN_C, routes } from "./helpers/router.ts";
import { kubeconfigWithTokenFile } from "./helpers/tools.ts";
import { REFLECTOR_BACKOFF } from "../src/kube/backoff.ts";

const notRoot = requireRoot();
const PROTO = 202;

/** Node k: in the cluster from the start, never touched. */
const MAIN_K = ["10.244.9.0/24 via 192.168.50.9", "fd00:244:0:9::/64 via fd00:50::9"];
/** Node d, created during the fault. */
const MAIN_D = ["10.244.3.0/24 via 192.168.50.4", "fd00:244:0:3::/64 via fd00:50::4"];
/** Node b after its IPv4 CIDR changed during the fault (its IPv6 one stays). */
const MAIN_B2 = ["10.244.11.0/24 via 192.168.50.2", "fd00:244:0:1::/64 via fd00:50::2"];

const BEFORE = [...MAIN_B, ...MAIN_C, ...MAIN_K];
const AFTER = [...MAIN_B2, ...MAIN_D, ...MAIN_K];
/** Destinations that may go once the changes are seen: c's, and b's old IPv4 CIDR. */
const MAY_GO = new Set(["10.244.2.0/24", "fd00:244:0:2::/64", "10.244.1.0/24"]);

/**
 * How long a restored API may take to reach the kernel before a test fails: the backoff's
 * longest wait (a step of 30 s) and then some.
 */
const CONVERGE_TIMEOUT_MS = REFLECTOR_BACKOFF.maxMs + 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The changes made in the store while the daemon cannot see them. */
function changeStore(c: Cluster): void {
  c.api.nodes.delete("c");
  c.api.nodes.create(makeNode({
    name: "d",
    podCIDRs: ["10.244.3.0/24", "fd00:244:0:3::/64"],
    internalIPs: ["192.168.50.4", "fd00:50::4"],
  }));
  c.api.nodes.patch("b", "merge", { spec: { podCIDRs: ["10.244.11.0/24", "fd00:244:0:1::/64"] } });
}

/** `ip monitor route` in a namespace, every line with the time it was read. */
class RouteLog {
  readonly lines: { at: number; text: string }[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #reading: Promise<void>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#reading = (async () => {
      let rest = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        const at = performance.now();
        rest += chunk;
        const parts = rest.split("\n");
        rest = parts.pop()!;
        for (const text of parts) if (text !== "") this.lines.push({ at, text });
      }
    })();
  }

  /** Starts the monitor and returns once a marker route proves that it listens. */
  static async start(ns: Netns): Promise<RouteLog> {
    const child = new Deno.Command("ip", {
      args: ["-n", ns.name, "monitor", "route"],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const log = new RouteLog(child);
    const marker = ["10.77.0.0/24", "via", "192.168.50.77", "proto", "99"];
    try {
      await pollUntil(async () => {
        await ns.ip("route", "add", ...marker);
        await sleep(50);
        await ns.ip("route", "del", ...marker);
        return log.lines.some((l) => l.text.includes("10.77.0.0/24"));
      }, { timeoutMs: 5000, message: "ip monitor route listening" });
    } catch (e) {
      await log.stop();
      throw e;
    }
    return log;
  }

  /** Deletions of routes of our protocol in the main table: destination and time read. */
  deletions(): { at: number; dst: string; text: string }[] {
    const out: { at: number; dst: string; text: string }[] = [];
    for (const { at, text } of this.lines) {
      const m = /^Deleted (?:(?:unicast|blackhole|unreachable|prohibit) )?(\S+) .*\bproto (\S+)/
        .exec(text);
      if (!m || !["202", "0xca"].includes(m[2]) || /\btable (?!main\b)/.test(text)) continue;
      out.push({ at, dst: m[1], text });
    }
    return out;
  }

  /** Returns once every kernel change made so far has been read: a marker route proves it. */
  async flush(ns: Netns): Promise<void> {
    const marker = ["10.78.0.0/24", "via", "192.168.50.78", "proto", "99"];
    const seen = this.lines.length;
    await ns.ip("route", "add", ...marker);
    await ns.ip("route", "del", ...marker);
    await pollUntil(
      () => this.lines.slice(seen).some((l) => l.text.startsWith("Deleted 10.78.0.0/24")),
      { timeoutMs: 5000, message: "the route monitor caught up" },
    );
  }

  async stop(): Promise<void> {
    try {
      this.#child.kill();
    } catch { /* already gone */ }
    await this.#reading.catch(() => {});
    await this.#child.status;
  }
}

interface Bed {
  c: Cluster;
  d: Daemon;
  mon: RouteLog;
  /** The daemon's log lines (warnings and up), for failure messages. */
  log: string[];
  /** The token file the daemon's kubeconfig names, when asked for. */
  tokenFile?: string;
}

/**
 * A port the kernel never hands out by itself (below the ephemeral range, and below the
 * 20000.. of other tests' fixed ports): while the API is down, a parallel test's `bind(0)` or
 * outgoing connection cannot take it, so listening again on it cannot fail.
 */
function quietPort(): number {
  let low = 32768;
  try {
    low = Number(Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range").split(/\s+/)[0]);
  } catch { /* the usual default */ }
  const top = Math.min(low, 20000);
  return 10000 + Math.floor(Math.random() * (top - 10000));
}

/**
 * The cluster of tests/helpers/router.ts (nodes a, b, c) on an API server listening on a
 * {@link quietPort}.
 */
async function faultCluster(): Promise<Cluster> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-faults-" });
  const ns = await Netns.create("xf");
  let api: ApiServer | undefined;
  try {
    await ns.lan("lan0", ["192.168.50.1/24", "fd00:50::1/64"]);
    for (let i = 0; api === undefined; i++) {
      try {
        api = await startApiServer({
          listen: `127.0.0.1:${quietPort()}`,
          kubeconfigPath: `${dir}/kubeconfig`,
        });
      } catch (e) {
        if (!(e instanceof Deno.errors.AddrInUse) || i === 9) throw e;
      }
    }
  } catch (e) {
    await ns.delete();
    await Deno.remove(dir, { recursive: true });
    throw e;
  }
  for (const [name, i] of [["a", 0], ["b", 1], ["c", 2]] as const) {
    api.nodes.create(makeNode({
      name,
      podCIDRs: [`10.244.${i}.0/24`, `fd00:244:0:${i}::/64`],
      internalIPs: [`192.168.50.${i + 1}`, `fd00:50::${i + 1}`],
    }));
  }
  const server = api;
  return {
    ns,
    api: server,
    dir,
    async close() {
      await server.close();
      await ns.delete();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * {@link faultCluster} plus node k, a route monitor, and the daemon as node a with its
 * default backoff, optionally through a kubeconfig with a token file.
 */
async function withBed(fn: (b: Bed) => Promise<void>, opts: { tokenFile?: boolean } = {}) {
  const c = await faultCluster();
  let mon: RouteLog | undefined;
  let d: Daemon | undefined;
  try {
    c.api.nodes.create(makeNode({
      name: "k",
      podCIDRs: ["10.244.9.0/24", "fd00:244:0:9::/64"],
      internalIPs: ["192.168.50.9", "fd00:50::9"],
    }));
    let kubeconfig = c.api.kubeconfigPath!;
    let tokenFile: string | undefined;
    if (opts.tokenFile) {
      tokenFile = `${c.dir}/token`;
      await Deno.writeTextFile(tokenFile, c.api.token);
      await kubeconfigWithTokenFile(kubeconfig, `${c.dir}/kubeconfig-tokenfile`, tokenFile);
      kubeconfig = `${c.dir}/kubeconfig-tokenfile`;
    }
    mon = await RouteLog.start(c.ns);
    const log: string[] = [];
    d = await startDaemon(
      parseDaemonConfig({
        NODE_NAME: "a",
        HTTP_ADDRESS: "off",
        STATE_DIR: `${c.dir}/state`,
        RESYNC_INTERVAL: "1h",
      }),
      {
        netns: c.ns.name,
        kubeconfig,
        install: false,
        log: createLogger("warn", { write: (l) => log.push(l), text: true }),
      },
    );
    await d.ready;
    await converge(c.ns, BEFORE, "initial routes");
    await pollUntil(() => c.api.nodes.watcherCount() === 1, { message: "the daemon watches" });
    assert.equal(metric(d, "xcluster_cni_watch_restarts_total"), 0, "a clean start restarts none");
    await fn({ c, d, mon, log, tokenFile });
  } finally {
    await d?.stop();
    await mon?.stop();
    await c.close();
  }
}

/** Waits until our routes are exactly `want`; returns the milliseconds it took. */
async function converge(ns: Netns, want: string[], what: string, log: string[] = []) {
  const sorted = [...want].sort();
  const t0 = performance.now();
  let last: string[] = [];
  await pollUntil(async () => {
    last = await routes(ns, PROTO);
    return JSON.stringify(last) === JSON.stringify(sorted);
  }, {
    timeoutMs: CONVERGE_TIMEOUT_MS,
    intervalMs: 10,
    message: () =>
      `${what}: have ${JSON.stringify(last)}, want ${JSON.stringify(sorted)}\n` +
      log.slice(-20).join("\n"),
  });
  return Math.round(performance.now() - t0);
}

/**
 * No route of ours deleted before `restoredAt` (the daemon saw no change then), and none ever
 * but those in `mayGo` (destinations of nodes deleted or CIDRs changed during the fault).
 * When every destination of `mayGo` had to go, the monitor must have seen them go: proof
 * that it recorded the whole test.
 */
async function assertNoLiveRouteDeleted(
  b: Bed,
  restoredAt: number,
  mayGo: Set<string>,
  mustGo = true,
) {
  await b.mon.flush(b.c.ns);
  const all = b.mon.deletions();
  if (mustGo) {
    assert.deepEqual(
      [...new Set(all.map((x) => x.dst))].filter((x) => mayGo.has(x)).sort(),
      [...mayGo].sort(),
      "the monitor saw the routes of the changes go",
    );
  }
  const early = all.filter((x) => x.at < restoredAt);
  assert.deepEqual(early.map((x) => x.text), [], "routes deleted during the fault");
  const live = all.filter((x) => !mayGo.has(x.dst));
  assert.deepEqual(live.map((x) => x.text), [], "routes of live nodes deleted");
}

/** The daemon's metric `name` (with labels, if any) as a scrape would read it; 0 when absent. */
function metric(d: Daemon, name: string): number {
  const line = d.metrics.render().split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/**
 * Attempts possible in a window of `windowMs` failing from its start: one at once, then one
 * after each wait of the backoff. `shortest`: every wait is half its step (the jitter's
 * floor), which bounds the attempts from above; otherwise every wait is its whole step, which
 * bounds them from below.
 */
function backoffAttempts(windowMs: number, shortest: boolean): number {
  let n = 1, t = 0, step = REFLECTOR_BACKOFF.initialMs;
  for (;;) {
    t += shortest ? step / 2 : step;
    if (t > windowMs) return n;
    n++;
    step = Math.min(step * 2, REFLECTOR_BACKOFF.maxMs);
  }
}

/** Asserts an attempt count is within the backoff's bounds for the window, and reports it. */
function assertBackoffBounded(what: string, attempts: number, windowMs: number) {
  const most = backoffAttempts(windowMs, true);
  // Timers run late on a loaded machine, so the floor is only half the slowest schedule.
  const least = Math.max(2, Math.floor(backoffAttempts(windowMs, false) / 2));
  console.log(
    `  ${what}: ${attempts} attempts in ${Math.round(windowMs)} ms ` +
      `(backoff allows ${least}..${most})`,
  );
  assert.ok(attempts <= most + 2, `${what}: ${attempts} attempts in ${windowMs} ms > ${most} + 2`);
  assert.ok(attempts >= least, `${what}: only ${attempts} attempts in ${windowMs} ms`);
}

/**
 * A fault that makes every request fail: set at once (the open watch is dropped so that the
 * daemon meets it), the store changed half way, then cleared. Returns the requests the
 * server saw during the fault and the time of the fault.
 */
async function failingWindow(
  b: Bed,
  windowMs: number,
  fault: { set(): void | Promise<void>; clear(): void | Promise<void> },
) {
  const before = b.c.api.faults.requestCount();
  const t0 = performance.now();
  await fault.set();
  b.c.api.faults.dropWatches();
  await sleep(windowMs / 2);
  changeStore(b.c);
  await sleep(windowMs / 2);
  // Nothing seen yet: every route as before.
  assert.deepEqual(await routes(b.c.ns, PROTO), [...BEFORE].sort(), "routes during the fault");
  const requests = b.c.api.faults.requestCount() - before;
  const elapsed = performance.now() - t0;
  await fault.clear();
  return { requests, elapsed, restoredAt: performance.now() };
}

Deno.test({
  name: "faults: the API down for 60 s (connections refused) keeps every route, then converges",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      const errorsBefore = metric(b.d, 'xcluster_cni_api_errors_total{code="0"}');
      const t0 = performance.now();
      await b.c.api.faults.stopListening();
      await sleep(2000);
      changeStore(b.c);
      // Half way and at the end of the outage, every route is still there.
      await sleep(28_000);
      assert.deepEqual(await routes(b.c.ns, PROTO), [...BEFORE].sort(), "routes after 30 s");
      // Counted as they happen: no reconcile has run since the outage began.
      const reconciles = b.d.metrics.render().match(/^xcluster_cni_reconciles_total.*$/gm);
      const midway = metric(b.d, 'xcluster_cni_api_errors_total{code="0"}') - errorsBefore;
      assert.ok(midway >= 3, `${midway} refused connections counted after 30 s`);
      await sleep(30_000);
      assert.deepEqual(await routes(b.c.ns, PROTO), [...BEFORE].sort(), "routes after 60 s");
      assert.deepEqual(
        b.d.metrics.render().match(/^xcluster_cni_reconciles_total.*$/gm),
        reconciles,
        "no reconcile during the outage",
      );
      const elapsed = performance.now() - t0;
      const refused = metric(b.d, 'xcluster_cni_api_errors_total{code="0"}') - errorsBefore;
      assertBackoffBounded("refused connections", refused, elapsed);
      // One line per failure, naming the server and the cause.
      const lines = b.log.filter((l) => l.includes("list/watch failed"));
      assert.ok(lines.length >= refused && lines.length <= refused + 1, lines.join("\n"));
      const server = new URL(b.c.api.url).host;
      assert.ok(lines.every((l) => l.includes(server)), `server named: ${lines[0]}`);
      assert.ok(lines.some((l) => /refused/i.test(l)), `cause named:\n${lines.join("\n")}`);
      b.c.api.faults.startListening();
      const restoredAt = performance.now();
      const ms = await converge(b.c.ns, AFTER, "after the outage", b.log);
      console.log(`  API down ${Math.round(elapsed)} ms: converged ${ms} ms after restore`);
      await assertNoLiveRouteDeleted(b, restoredAt, MAY_GO);
    }),
});

Deno.test({
  name: "faults: 500 on every request for 3 s keeps every route, backs off, then converges",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      const errorsBefore = metric(b.d, 'xcluster_cni_api_errors_total{code="500"}');
      const w = await failingWindow(b, 3000, {
        set: () => b.c.api.faults.failNext(1_000_000, 500),
        clear: () => b.c.api.faults.failNext(0, 500),
      });
      const ms = await converge(b.c.ns, AFTER, "after the 500s", b.log);
      console.log(`  500s for ${Math.round(w.elapsed)} ms: converged ${ms} ms after restore`);
      assertBackoffBounded("requests answered 500", w.requests, w.elapsed);
      await b.d.reconciler.idle();
      const seen = metric(b.d, 'xcluster_cni_api_errors_total{code="500"}') - errorsBefore;
      assert.ok(seen >= w.requests - 1, `the daemon counted ${seen} of ${w.requests} 500s`);
      await assertNoLiveRouteDeleted(b, w.restoredAt, MAY_GO);
    }),
});

Deno.test({
  name: "faults: 429 with Retry-After: 1 for 4 s is honoured, keeps every route, then converges",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      const w = await failingWindow(b, 4000, {
        set: () => b.c.api.faults.failNext(1_000_000, 429, { retryAfterSeconds: 1 }),
        clear: () => b.c.api.faults.failNext(0, 429),
      });
      const ms = await converge(b.c.ns, AFTER, "after the 429s", b.log);
      console.log(`  429s for ${Math.round(w.elapsed)} ms: converged ${ms} ms after restore`);
      // Never more than one attempt a second (Retry-After: 1), each wait also the backoff's.
      const most = Math.floor(w.elapsed / 1000) + 1;
      console.log(`  requests answered 429: ${w.requests} (Retry-After allows ${most})`);
      assert.ok(w.requests <= most + 1, `${w.requests} requests in ${w.elapsed} ms`);
      // The backoff spaces them more than Retry-After alone: 0, then 1 s, then 0.8-1.6 s more.
      assert.ok(w.requests >= 2, `only ${w.requests} requests: no retries`);
      await assertNoLiveRouteDeleted(b, w.restoredAt, MAY_GO);
    }),
});

Deno.test({
  name: "faults: a watch dropped every second resumes without relisting and loses nothing",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      const listsBefore = metric(b.d, "xcluster_cni_lists_total");
      const before = b.c.api.faults.requestCount();
      const t0 = performance.now();
      const drops = 4;
      const steps = [
        () => b.c.api.nodes.delete("c"),
        () =>
          b.c.api.nodes.create(makeNode({
            name: "d",
            podCIDRs: ["10.244.3.0/24", "fd00:244:0:3::/64"],
            internalIPs: ["192.168.50.4", "fd00:50::4"],
          })),
        () =>
          b.c.api.nodes.patch("b", "merge", {
            spec: { podCIDRs: ["10.244.11.0/24", "fd00:244:0:1::/64"] },
          }),
        () => b.c.api.nodes.patch("k", "merge", { metadata: { labels: { touched: "yes" } } }),
      ];
      for (let i = 0; i < drops; i++) {
        if (i > 0) await sleep(1000);
        // The change is made while no watch is open: the re-watch must replay it.
        b.c.api.faults.dropWatches();
        steps[i]();
      }
      await sleep(1000);
      const requests = b.c.api.faults.requestCount() - before;
      const elapsed = performance.now() - t0;
      const ms = await converge(b.c.ns, AFTER, "after the drops", b.log);
      console.log(
        `  ${drops} drops in ${Math.round(elapsed)} ms: ${requests} requests; ` +
          `converged ${ms} ms after the last drop + 1 s`,
      );
      // One re-watch per drop, from the last version: no list, no retry storm.
      assert.ok(requests >= drops, `${requests} requests for ${drops} drops: not re-watched`);
      assert.ok(requests <= drops + 2, `${requests} requests for ${drops} drops`);
      await b.d.reconciler.idle();
      assert.equal(metric(b.d, "xcluster_cni_lists_total"), listsBefore, "no relist");
      assert.ok(metric(b.d, "xcluster_cni_watch_restarts_total") >= drops);
      // The changes were seen during the drops, so deletions of c's and b's old routes may
      // come before the end: only live destinations are checked here.
      await assertNoLiveRouteDeleted(b, 0, MAY_GO);
    }),
});

/**
 * A fault that ends or expires every watch for `windowMs`: the requests the server counts stay
 * within the backoff (each cycle is `perCycle` requests: a watch, or a watch and a relist), no
 * route goes, and a change made after the fault lands.
 */
async function stormWindow(
  b: Bed,
  what: string,
  perCycle: number,
  fault: (on: boolean) => void,
) {
  const windowMs = 10_000;
  const before = b.c.api.faults.requestCount();
  const t0 = performance.now();
  fault(true);
  b.c.api.faults.dropWatches();
  await sleep(windowMs);
  const requests = b.c.api.faults.requestCount() - before;
  const elapsed = performance.now() - t0;
  fault(false);
  assert.deepEqual(await routes(b.c.ns, PROTO), [...BEFORE].sort(), `routes after ${what}`);
  const restoredAt = performance.now();
  changeStore(b.c);
  const ms = await converge(b.c.ns, AFTER, `after ${what}`, b.log);
  console.log(`  ${what}: converged ${ms} ms after the fault ended`);
  // The first watch after the drop comes at once; every cycle after it waits its turn.
  const cycles = Math.ceil(requests / perCycle);
  assertBackoffBounded(what, cycles, elapsed);
  await assertNoLiveRouteDeleted(b, restoredAt, MAY_GO);
}

Deno.test({
  name: "faults: every watch ends at once for 10 s: backed off as failures, routes kept",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      await stormWindow(b, "watches ended at once", 1, (on) => b.c.api.faults.endWatches(on));
      assert.ok(metric(b.d, "xcluster_cni_short_watches_total") >= 3, "short watches counted");
      assert.equal(metric(b.d, "xcluster_cni_relists_total"), 0, "no relist");
    }),
});

Deno.test({
  name: "faults: every watch expires (410) for 10 s: relists backed off, routes kept",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      await stormWindow(b, "watches expired", 2, (on) => b.c.api.faults.expireWatches(on));
      assert.ok(metric(b.d, "xcluster_cni_relists_total") >= 3, "relists counted");
    }),
});

Deno.test({
  name: "faults: a rotated token (401 until the token file is renewed) keeps routes, converges",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      const w = await failingWindow(b, 3000, {
        set: async () => {
          await b.c.api.faults.rotateToken();
        },
        // What the kubelet does for a projected service account token.
        clear: () => Deno.writeTextFile(b.tokenFile!, b.c.api.token),
      });
      const ms = await converge(b.c.ns, AFTER, "after the new token", b.log);
      console.log(`  401s for ${Math.round(w.elapsed)} ms: converged ${ms} ms after the renewal`);
      assertBackoffBounded("requests answered 401", w.requests, w.elapsed);
      await b.d.reconciler.idle();
      assert.ok(metric(b.d, 'xcluster_cni_api_errors_total{code="401"}') >= w.requests - 1);
      await assertNoLiveRouteDeleted(b, w.restoredAt, MAY_GO);
    }, { tokenFile: true }),
});

/** Node b deleted and created again with new addresses (same CIDRs). */
function recreateB(c: Cluster): void {
  c.api.nodes.delete("b");
  c.api.nodes.create(makeNode({
    name: "b",
    podCIDRs: ["10.244.1.0/24", "fd00:244:0:1::/64"],
    internalIPs: ["192.168.50.12", "fd00:50::12"],
  }));
}
const MAIN_B_NEW = ["10.244.1.0/24 via 192.168.50.12", "fd00:244:0:1::/64 via fd00:50::12"];
const B_DSTS = new Set(["10.244.1.0/24", "fd00:244:0:1::/64"]);

/** How b's IPv4 route went over to the new address: replaced, or deleted and added (gap). */
function bGap(mon: RouteLog): string {
  const del = mon.deletions().find((x) => x.dst === "10.244.1.0/24");
  if (!del) return "b's route replaced in place (no deletion)";
  const add = mon.lines.find((l) => l.at >= del.at && l.text.startsWith("10.244.1.0/24 via"));
  const gap = add ? `${Math.round(add.at - del.at)} ms` : "never re-added";
  return `b's routes deleted ${mon.deletions().filter((x) => B_DSTS.has(x.dst)).length}x, ` +
    `IPv4 route missing for ${gap}`;
}

Deno.test({
  name: "faults: a node re-created with a new address while the API was down: via the new only",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      await b.c.api.faults.stopListening();
      recreateB(b.c);
      await sleep(1500);
      assert.deepEqual(await routes(b.c.ns, PROTO), [...BEFORE].sort(), "routes while down");
      b.c.api.faults.startListening();
      const restoredAt = performance.now();
      const ms = await converge(b.c.ns, [...MAIN_B_NEW, ...MAIN_C, ...MAIN_K], "b re-created");
      await assertNoLiveRouteDeleted(b, restoredAt, B_DSTS, false);
      console.log(`  watch replay: converged ${ms} ms after restore; ${bGap(b.mon)}`);
    }),
});

Deno.test({
  name: "faults: a node re-created with a new address behind a 503 and a 410: via the new only",
  ignore: !!notRoot,
  fn: () =>
    withBed(async (b) => {
      const relistsBefore = metric(b.d, "xcluster_cni_relists_total");
      b.c.api.faults.failNext(3, 503);
      b.c.api.faults.dropWatches();
      recreateB(b.c);
      b.c.api.faults.compact();
      const restoredAt = performance.now();
      const ms = await converge(b.c.ns, [...MAIN_B_NEW, ...MAIN_C, ...MAIN_K], "b re-created");
      await b.d.reconciler.idle();
      assert.equal(
        metric(b.d, "xcluster_cni_relists_total") - relistsBefore,
        1,
        "one relist",
      );
      assert.ok(metric(b.d, 'xcluster_cni_api_errors_total{code="503"}') >= 3);
      await assertNoLiveRouteDeleted(b, restoredAt, B_DSTS, false);
      console.log(`  relist: converged ${ms} ms after the fault was set; ${bGap(b.mon)}`);
    }),
});
