/**
 * Instances side by side and instances killed: eight routers with eight protocols on one
 * node among static, boot and foreign routes; a daemon killed with SIGKILL and started
 * again. Needs root (network namespaces).
 */
import assert from "node:assert/strict";
import { DAEMON_RUNTIME_ENV } from "../src/config.ts";
import type { Daemon } from "../src/daemon.ts";
import { spawnMainInNetns } from "../src/devcluster/netns_main.ts";
import { type Netns, pollUntil, requireRoot } from "./helpers/netns.ts";
import { kubectlMissing } from "./helpers/tools.ts";
import { childrenOf, isolatedCluster, killHard } from "./helpers/isolated.ts";
import {
  cluster,
  daemon,
  expectRoutes,
  MAIN_B,
  MAIN_C,
  routes,
  RouteWatch,
} from "./helpers/router.ts";

const notRoot = requireRoot();

/** Network k of eight (1..8): its annotations, protocol, and the CIDRs of node i (0..2). */
function network(k: number) {
  return {
    cidr: `cidr.example.com/net${k}`,
    adr: `adr.example.com/net${k}`,
    protocol: 200 + k,
    cidrs: (i: number) => [`10.${100 + k}.${i}.0/24`, `fd00:${100 + k}::${i}:0/112`],
  };
}

/** Routes in the namespace that no instance owns: another owner's, the admin's, boot's. */
const OTHERS: [string, string[]][] = [
  ["static", ["10.98.0.0/24 via 192.168.50.9", "fd00:98::/64 via fd00:50::9"]],
  ["boot", ["10.97.0.0/24 via 192.168.50.9", "fd00:97::/64 via fd00:50::9"]],
  // Node b's IPv4 range of network 1, taken first by someone else.
  ["98", ["10.101.1.0/24 via 192.168.50.9"]],
];

Deno.test({
  name: "instances: eight protocols on one node, with static, boot and foreign routes: " +
    "each keeps to its own",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const daemons: Daemon[] = [];
    let watch: RouteWatch | undefined;
    try {
      for (const [i, name] of ["a", "b", "c"].entries()) {
        const annotations: Record<string, string> = {};
        for (let k = 1; k <= 8; k++) {
          const n = network(k);
          annotations[n.cidr] = n.cidrs(i).join(",");
          annotations[n.adr] = `192.168.50.${i + 1},fd00:50::${i + 1}`;
        }
        c.api.nodes.patch(name, "merge", { metadata: { annotations } });
      }
      for (const [proto, list] of OTHERS) {
        for (const r of list) await c.ns.ip("route", "add", ...r.split(" "), "proto", proto);
      }
      watch = await RouteWatch.start(c.ns);
      for (let k = 1; k <= 8; k++) {
        const n = network(k);
        daemons.push(
          await daemon(c, {
            PROTOCOL: String(n.protocol),
            CIDR_ANNOTATION: n.cidr,
            ADDRESS_ANNOTATION: n.adr,
            STATE_DIR: `${c.dir}/state${k}`,
          }),
        );
      }
      const want = (k: number, nodes: number[]) =>
        nodes.flatMap((i) => {
          const [v4, v6] = network(k).cidrs(i);
          return [`${v4} via 192.168.50.${i + 1}`, `${v6} via fd00:50::${i + 1}`];
        }).filter((r) => k !== 1 || !r.startsWith("10.101.1.0/24"));
      for (let k = 1; k <= 8; k++) {
        await expectRoutes(c.ns, network(k).protocol, want(k, [1, 2]), `network ${k}`);
      }
      assert.ok(
        daemons[0].reconciler.last?.problems.some((p) => p.kind === "foreign-route"),
        "network 1 reports the foreign route to its destination",
      );

      // Node c goes: every instance removes its own route to c and nothing else.
      c.api.nodes.delete("c");
      for (let k = 1; k <= 8; k++) {
        await expectRoutes(c.ns, network(k).protocol, want(k, [1]), `network ${k} after c`);
      }
      for (const d of daemons.splice(0)) await d.stop();
      for (const [proto, list] of OTHERS) {
        assert.deepEqual(await routes(c.ns, proto), [...list].sort(), `${proto} routes intact`);
      }
      for (let k = 1; k <= 8; k++) {
        assert.deepEqual(await routes(c.ns, network(k).protocol), want(k, [1]).sort());
      }
      const marker = "10.254.254.0/24";
      await c.ns.ip("route", "add", marker, "dev", "lo", "proto", "99");
      await watch.seen(marker);
      const touched = watch.text.split("\n").filter((l) =>
        /\bproto (static|boot|98)\b/.test(l) && !l.includes(marker)
      );
      // Added before the monitor started: any line about them is an instance touching them.
      assert.deepEqual(touched, []);
    } finally {
      for (const d of daemons) await d.stop();
      await watch?.stop();
      await c.close();
    }
  },
});

/** `main.ts daemon` as its own process inside the namespace, logging to a file. */
function startProcess(c: { ns: Netns; dir: string; kubeconfig: string }): Deno.ChildProcess {
  return spawnMainInNetns(c.ns.name, ["daemon"], {
    env: {
      ...DAEMON_RUNTIME_ENV,
      // No `ip` to be found: with the netlink adapter (the default) none is needed.
      PATH: c.dir,
      NODE_NAME: "a",
      KUBECONFIG: c.kubeconfig,
      HTTP_ADDRESS: "off",
      STATE_DIR: `${c.dir}/state`,
      CNI_BIN_DIR: `${c.dir}/bin`,
      PLUGINS_DIR: `${c.dir}/plugins`,
      INSTALL_K8S_NET: "no",
      LOG_FILE: `${c.dir}/daemon.log`,
    },
    stderr: "inherit",
  });
}

/** Waits until the daemon's log says `first sync done` `count` times. */
async function syncs(dir: string, count: number): Promise<void> {
  await pollUntil(async () => {
    const log = await Deno.readTextFile(`${dir}/daemon.log`).catch(() => "");
    return log.split("\n").filter((l) => l.includes('"first sync done"')).length >= count;
  }, {
    timeoutMs: 20_000,
    message: () => {
      let log = "(no log)";
      try {
        log = Deno.readTextFileSync(`${dir}/daemon.log`);
      } catch { /* not written yet */ }
      return `first sync number ${count}; log:\n${log}`;
    },
  });
}

Deno.test({
  name: "instances: after kill -9 a new daemon adopts every route without churn; " +
    "nodes deleted while it was down lose their routes; SIGTERM stops it at once, routes kept",
  ignore: notRoot || kubectlMissing() ? true : false,
  async fn() {
    const c = await isolatedCluster();
    await Deno.mkdir(`${c.dir}/plugins`);
    let child: Deno.ChildProcess | undefined;
    let watch: RouteWatch | undefined;
    const kill = async () => {
      if (!child) return;
      // Its `ip monitor` outlives it, as on a host without a PID namespace: end it too.
      await killHard(child);
      child = undefined;
    };
    try {
      child = startProcess(c);
      await syncs(c.dir, 1);
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "first daemon");
      // The image's runtime settings expose V8's gc, and the C library is glibc: the start
      // ends with V8's heap compacted and malloc trimmed.
      let over = "";
      await pollUntil(
        async () =>
          (over = (await Deno.readTextFile(`${c.dir}/daemon.log`)).split("\n")
            .find((l) => l.includes('"start complete; idle memory released"')) ?? "") !== "",
        { timeoutMs: 10_000, message: () => "the daemon did not give memory back after its start" },
      );
      const given = JSON.parse(over);
      assert.equal(given.heapCompacted, true, over);
      assert.equal(given.mallocTrimmed, true, over);
      await kill();

      watch = await RouteWatch.start(c.ns);
      child = startProcess(c);
      await syncs(c.dir, 2);
      const marker = "10.254.253.0/24";
      await c.ns.ip("route", "add", marker, "dev", "lo", "proto", "99");
      await watch.seen(marker);
      const churn = watch.text.split("\n").filter((l) => /\bproto (202|0xca)\b/.test(l));
      assert.deepEqual(churn, [], "the restart after kill -9 deleted or re-added routes");
      assert.deepEqual(await routes(c.ns, 202), [...MAIN_B, ...MAIN_C].sort());
      await kill();

      await c.kubectl("delete", "node", "c");
      child = startProcess(c);
      await syncs(c.dir, 3);
      await expectRoutes(c.ns, 202, MAIN_B, "c's routes removed on start");
      await watch.seen("Deleted 10.244.2.0/24");
      assert.ok(!watch.text.includes("Deleted 10.244.1.0/24"), "b's route kept");

      // It speaks to the kernel over netlink: no `ip` process, no child at all.
      assert.deepEqual(await childrenOf(child.pid), [], "the daemon runs no program");
      // SIGTERM once the start is over (its memory given back, a pause that nothing
      // interrupts): gone within a second, exit 0, routes in place.
      await pollUntil(async () => {
        const lines = (await Deno.readTextFile(`${c.dir}/daemon.log`)).split("\n");
        const third = lines.filter((l) => l.includes('"first sync done"'))[2];
        return lines.slice(lines.indexOf(third))
          .some((l) => l.includes('"start complete; idle memory released"'));
      }, { timeoutMs: 10_000, message: "the third start did not end" });
      const t0 = performance.now();
      child.kill("SIGTERM");
      const status = await child.status;
      const ms = performance.now() - t0;
      child = undefined;
      assert.equal(status.code, 0);
      assert.ok(ms < 1000, `stopped in ${Math.round(ms)} ms`);
      assert.deepEqual(await routes(c.ns, 202), [...MAIN_B].sort());
    } finally {
      await kill();
      await watch?.stop();
      await c.close();
    }
  },
});
