/**
 * The daemon under test in a process of its own, so that its CPU time and memory are its
 * own: the configuration from the environment exactly as `xcluster-cni daemon` reads it,
 * `ip` run in the namespace named by BENCH_NETNS, the installer off.
 *
 * It speaks JSON lines: on stdout `boot` (modules about to load), `start` (startDaemon
 * called), `ready` (first reconcile after the first full list done), `started` (the start
 * over, its memory given back), and one `stats` per
 * `stats` line on stdin (and per `gc` line, after a full collection, when V8's gc is
 * exposed, and per `spaces` line, with V8's heap statistics by space); `stop` on stdin
 * stops it.
 *
 * @module
 */
const now = () => performance.timeOrigin + performance.now();
const encoder = new TextEncoder();
const say = (o: Record<string, unknown>) =>
  Deno.stdout.writeSync(encoder.encode(JSON.stringify(o) + "\n"));

say({ ev: "boot", t: now() });
const { parseDaemonConfig } = await import("../src/config.ts");
const { startDaemon } = await import("../src/daemon.ts");

const cfg = parseDaemonConfig(Deno.env.toObject());
const netns = Deno.env.get("BENCH_NETNS");
const kubeconfig = Deno.env.get("BENCH_KUBECONFIG");
say({ ev: "start", t: now() });
const daemon = await startDaemon(cfg, { netns, kubeconfig, install: false });
daemon.ready.then(() => say({ ev: "ready", t: now() }));
daemon.started.then(() => say({ ev: "started", t: now() }));

/** Counters parsed from the daemon's own /metrics text. */
function stats(): Record<string, unknown> {
  const text = daemon.metrics.render();
  const reconciles: Record<string, number> = {};
  for (const m of text.matchAll(/^xcluster_cni_reconciles_total\{trigger="(\w+)"\} (\d+)$/gm)) {
    reconciles[m[1]] = Number(m[2]);
  }
  const num = (name: string) =>
    Number(new RegExp(`^xcluster_cni_${name} ([0-9.e+-]+)$`, "m").exec(text)?.[1] ?? NaN);
  const last = daemon.reconciler.last;
  // The allocation metrics exist only when the daemon allocates.
  const leader = num("allocation_leader");
  const allocation = Number.isNaN(leader)
    ? undefined
    : { leader: leader === 1, allocations: num("allocations_total") };
  return {
    ev: "stats",
    t: now(),
    reconciles,
    durationSumS: num("reconcile_duration_seconds_sum"),
    durationCount: num("reconcile_duration_seconds_count"),
    installed: num("routes_installed"),
    memory: Deno.memoryUsage(),
    desired: num("routes_desired"),
    allocation,
    last: last && {
      trigger: last.trigger,
      durationMs: last.durationMs,
      applied: last.applied,
      fullRead: last.fullRead,
      problems: last.problems.length,
    },
  };
}

const lines = Deno.stdin.readable.pipeThrough(new TextDecoderStream());
let rest = "";
outer: for await (const chunk of lines) {
  rest += chunk;
  let nl: number;
  while ((nl = rest.indexOf("\n")) >= 0) {
    const cmd = rest.slice(0, nl).trim();
    rest = rest.slice(nl + 1);
    if (cmd === "stats") say(stats());
    if (cmd === "gc") {
      (globalThis as { gc?: () => void }).gc?.();
      say(stats());
    }
    if (cmd === "spaces") {
      // Loaded only when asked: node:v8 adds to the heap it would measure.
      const before = Deno.memoryUsage();
      const v8 = await import("node:v8");
      const heap = v8.getHeapStatistics() as unknown as Record<string, number>;
      say({ ...stats(), v8: { heap, spaces: v8.getHeapSpaceStatistics(), before } });
    }
    if (cmd === "stop") break outer;
  }
}
await daemon.stop();
say({ ev: "stopped", t: now() });
Deno.exit(0);
