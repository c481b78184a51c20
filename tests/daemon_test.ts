/**
 * The router end to end: the daemon (in process, `ip` inside a network namespace) against
 * the embedded API server. Needs root (network namespaces).
 */
import assert from "node:assert/strict";
import { makeNode } from "../src/devcluster/nodes.ts";
import { createLogger } from "../src/log.ts";
import { stateFilePath } from "../src/state.ts";
import { parseDaemonConfig } from "../src/config.ts";
import { startDaemon } from "../src/daemon.ts";
import { pollUntil, requireRoot } from "./helpers/netns.ts";
import {
  capturedLog,
  cluster,
  daemon,
  expectRoutes,
  MAIN_B,
  MAIN_C,
  NET3,
  routes,
  RouteWatch,
} from "./helpers/router.ts";

const notRoot = requireRoot();
Deno.test({
  name: "daemon: routes to every other node, dual-stack; follows changes and deletion",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const d = await daemon(c);
    try {
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "routes to b and c, none to a");
      const state = JSON.parse(await Deno.readTextFile(stateFilePath(`${c.dir}/state`, "")));
      assert.deepEqual(state.cidrs, ["10.244.0.0/24", "fd00:244::/64"]);

      c.api.nodes.delete("c");
      await expectRoutes(c.ns, 202, MAIN_B, "c's routes removed with the node");

      c.api.nodes.create(makeNode({
        name: "d",
        podCIDRs: ["10.244.3.0/24", "10.244.33.0/24", "fd00:244:0:3::/64"],
        internalIPs: ["fd00:50::4", "192.168.50.4"],
      }));
      const d4 = [
        "10.244.3.0/24 via 192.168.50.4",
        "10.244.33.0/24 via 192.168.50.4",
        "fd00:244:0:3::/64 via fd00:50::4",
      ];
      await expectRoutes(c.ns, 202, [...MAIN_B, ...d4], "all three CIDRs of a new node");

      c.api.nodes.patch("b", "merge", {
        status: {
          addresses: [{ type: "InternalIP", address: "192.168.50.22" }, {
            type: "InternalIP",
            address: "fd00:50::22",
          }],
        },
      });
      await expectRoutes(c.ns, 202, [
        "10.244.1.0/24 via 192.168.50.22",
        "fd00:244:0:1::/64 via fd00:50::22",
        ...d4,
      ], "next hop follows a changed address");
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: a secondary network on annotations beside the main one; foreign routes untouched",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    await c.ns.ip("route", "add", "10.99.0.0/24", "via", "192.168.50.9", "proto", "static");
    await c.ns.ip("route", "add", "10.98.0.0/24", "via", "192.168.50.9", "proto", "99");
    // A foreign route to a destination an instance wants: reported, never taken over.
    await c.ns.ip("route", "add", "10.55.2.0/24", "via", "192.168.60.9", "proto", "boot");
    const logs = { main: [] as string[], net3: [] as string[] };
    const capture = (lines: string[]) => ({
      log: createLogger("info", { write: (l) => lines.push(l), text: false }),
    });
    const main = await daemon(c, {}, capture(logs.main));
    const net3 = await daemon(c, {
      PROTOCOL: "200",
      CIDR_ANNOTATION: NET3.cidr,
      ADDRESS_ANNOTATION: NET3.adr,
    }, capture(logs.net3));
    try {
      // The main network needs spec.podCIDRs and InternalIP; the secondary one, with both
      // annotations and NODE_NAME, lists and watches the nodes' metadata only.
      const reads = (lines: string[]) => JSON.parse(lines[0]).reads;
      assert.equal(reads(logs.main), "whole nodes");
      assert.equal(reads(logs.net3), "node metadata");
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "main network");
      await expectRoutes(c.ns, 200, [
        "10.55.1.0/24 via 192.168.60.2",
        "fd00:55::1:0/112 via fd00:60::2",
        "fd00:55::2:0/112 via fd00:60::3",
      ], "secondary network");
      const conflict = net3.reconciler.last?.problems.find((p) => p.kind === "foreign-route");
      assert.equal(conflict?.value, "10.55.2.0/24");

      c.api.nodes.patch("b", "merge", {
        metadata: { annotations: { [NET3.cidr]: "10.55.11.0/24", [NET3.adr]: "192.168.60.12" } },
      });
      await expectRoutes(c.ns, 200, [
        "10.55.11.0/24 via 192.168.60.12",
        "fd00:55::2:0/112 via fd00:60::3",
      ], "annotation change followed");
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "main network unchanged");
      assert.deepEqual(await routes(c.ns, "static"), ["10.99.0.0/24 via 192.168.50.9"]);
      assert.deepEqual(await routes(c.ns, 99), ["10.98.0.0/24 via 192.168.50.9"]);
      assert.deepEqual(await routes(c.ns, "boot"), ["10.55.2.0/24 via 192.168.60.9"]);
    } finally {
      await Promise.all([main.stop(), net3.stop()]);
      await c.close();
    }
  },
});

for (const adapter of ["netlink", "iproute2"]) {
  Deno.test({
    name: `daemon (${adapter}): routes come back after ip route del and after a link flap`,
    ignore: !!notRoot,
    async fn() {
      const c = await cluster();
      const d = await daemon(c, { ROUTE_ADAPTER: adapter });
      try {
        const all = [...MAIN_B, ...MAIN_C];
        await expectRoutes(c.ns, 202, all, "initial");
        await d.started;
        await c.ns.ip("route", "del", "10.244.1.0/24");
        await c.ns.ip("-6", "route", "del", "fd00:244:0:2::/64");
        await expectRoutes(c.ns, 202, all, "deleted routes restored");
        // Put back from the route events alone, with no full read of the table.
        await d.reconciler.idle();
        assert.equal(d.reconciler.last?.trigger, "monitor");
        assert.equal(d.reconciler.last?.fullRead, false);
        await c.ns.ip("link", "set", "lan0", "down");
        await pollUntil(async () => (await routes(c.ns, 202)).length === 0, {
          timeoutMs: 5000,
          message: "link down flushes the routes",
        });
        await c.ns.ip("link", "set", "lan0", "up");
        await expectRoutes(c.ns, 202, all, "routes restored after the link came back");
        // A change of the cluster reaches the kernel through the same adapter.
        c.api.nodes.delete("c");
        await expectRoutes(c.ns, 202, MAIN_B, "c's routes gone");
      } finally {
        await d.stop();
        await c.close();
      }
    },
  });
}

Deno.test({
  name: "daemon: a foreign route that takes ours is reported at once; when it goes, ours is back",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const d = await daemon(c, { RESYNC_INTERVAL: "1h" });
    const value = (name: string) =>
      Number(d.metrics.render().split("\n").find((l) => l.startsWith(name + " "))?.split(" ")[1]);
    const foreignProblems = () =>
      d.reconciler.last?.problems.filter((p) => p.kind === "foreign-route").map((p) => p.value);
    try {
      const all = [...MAIN_B, ...MAIN_C];
      await expectRoutes(c.ns, 202, all, "initial");
      // Past the start, so that only the route events can explain what follows.
      await d.started;
      const t0 = performance.now();
      await c.ns.ip("route", "replace", "10.244.1.0/24", "via", "192.168.50.3", "proto", "static");
      await pollUntil(() => value("xcluster_cni_routes_installed") === 3, {
        timeoutMs: 5000,
        message: "the metrics count the route taken",
      });
      assert.deepEqual(foreignProblems(), ["10.244.1.0/24"], "reported in the way");
      assert.equal(value("xcluster_cni_routes_desired"), 4);
      assert.deepEqual(await routes(c.ns, "static"), ["10.244.1.0/24 via 192.168.50.3"], "left");
      const seen = performance.now();
      await c.ns.ip("route", "del", "10.244.1.0/24", "proto", "static");
      await expectRoutes(c.ns, 202, all, "ours back once the foreign route went");
      const back = performance.now();
      await pollUntil(() => value("xcluster_cni_routes_installed") === 4);
      assert.deepEqual(foreignProblems(), [], "resolved");
      console.log(
        `  foreign route seen in ${Math.round(seen - t0)} ms; ours back ${
          Math.round(back - seen)
        } ms after it went`,
      );
      // Another owner's routes elsewhere are none of our business: no reconcile for them.
      const before = value('xcluster_cni_reconciles_total{trigger="monitor"}');
      await c.ns.ip("route", "add", "10.99.0.0/24", "via", "192.168.50.3", "proto", "static");
      await c.ns.ip("route", "del", "10.99.0.0/24", "proto", "static");
      await c.ns.ip("route", "replace", "10.244.2.0/24", "via", "192.168.50.2", "proto", "static");
      await pollUntil(() => foreignProblems()?.length === 1, { message: "marker seen" });
      assert.equal(value('xcluster_cni_reconciles_total{trigger="monitor"}'), before + 1);
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: watch drops and 410 Expired lose nothing",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const d = await daemon(c);
    try {
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "initial");
      c.api.faults.dropWatches();
      c.api.nodes.delete("c");
      await expectRoutes(c.ns, 202, MAIN_B, "change during a dropped watch");
      c.api.faults.compact();
      c.api.faults.dropWatches();
      c.api.nodes.create(makeNode({
        name: "e",
        podCIDRs: ["10.244.5.0/24"],
        internalIPs: ["192.168.50.5"],
      }));
      await expectRoutes(c.ns, 202, [...MAIN_B, "10.244.5.0/24 via 192.168.50.5"], "after 410");
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: a restart adopts the routes without churn; routes of nodes gone meanwhile go",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    let d = await daemon(c);
    let watch: RouteWatch | undefined;
    try {
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "initial");
      watch = await RouteWatch.start(c.ns);
      await d.stop();
      // Marker routes of another protocol bracket each phase in the monitor's output.
      await c.ns.ip("route", "add", "10.77.0.0/24", "via", "192.168.50.9", "proto", "99");
      d = await daemon(c);
      await d.reconciler.idle();
      await c.ns.ip("route", "del", "10.77.0.0/24", "proto", "99");
      await d.stop();
      c.api.nodes.delete("c");
      d = await daemon(c);
      await expectRoutes(c.ns, 202, MAIN_B, "route of the node deleted while down removed");
      await c.ns.ip("route", "add", "10.78.0.0/24", "via", "192.168.50.9", "proto", "99");
      await watch.seen("10.78.0.0/24");
    } finally {
      await d.stop();
      await watch?.stop();
      await c.close();
    }
    const text = watch.text;
    const restart = text.slice(text.indexOf("10.77.0.0/24"), text.lastIndexOf("10.77.0.0/24"));
    assert.ok(restart.length > 0, "markers seen");
    assert.ok(!/proto (202|0xca)\b/.test(restart), `restart churned routes:\n${restart}`);
    const after = text.slice(text.lastIndexOf("10.77.0.0/24"));
    assert.match(after, /Deleted 10\.244\.2\.0\/24/);
    assert.ok(!/Deleted 10\.244\.1\.0\/24/.test(after), "b's route kept");
  },
});

Deno.test({
  name: "daemon: /readyz after the first sync, /healthz, and /metrics with the routes and problems",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    c.api.nodes.create(
      makeNode({ name: "bad", podCIDRs: ["0.0.0.0/0"], internalIPs: ["192.168.50.66"] }),
    );
    const port = 20000 + Math.floor(Math.random() * 20000);
    const d = await daemon(c, { HTTP_ADDRESS: `127.0.0.1:${port}` });
    const get = async (path: string) => {
      const r = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: r.status, text: await r.text() };
    };
    try {
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "routes");
      assert.equal((await get("/readyz")).status, 200);
      assert.equal((await get("/healthz")).status, 200);
      const m = (await get("/metrics")).text;
      const value = (name: string) => {
        const line = m.split("\n").find((l) =>
          l.startsWith(name + " ") || l.startsWith(name + "{")
        );
        assert.ok(line, `${name} in metrics`);
        return Number(line.split(" ").pop());
      };
      assert.equal(value("xcluster_cni_routes_desired"), 4);
      assert.equal(value("xcluster_cni_routes_installed"), 4);
      assert.equal(value("xcluster_cni_nodes"), 4);
      assert.equal(value('xcluster_cni_nodes_with_problems{reason="refused"}'), 1);
      assert.equal(value('xcluster_cni_reconciles_total{trigger="start"}'), 1);
      assert.equal(value("xcluster_cni_lists_total"), 1);
      assert.ok(value("xcluster_cni_last_sync_timestamp_seconds") > 1.7e9);
      assert.match(m, /^xcluster_cni_build_info\{version="[^"]+",protocol="202"\} 1$/m);
      assert.match(m, /^xcluster_cni_reconcile_duration_seconds_count [1-9]/m);
      assert.equal((await get("/nope")).status, 404);
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: a next hop that is not on-link is reported once, the rest still routed",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    c.api.nodes.create(
      makeNode({ name: "far", podCIDRs: ["10.244.7.0/24"], internalIPs: ["192.168.99.7"] }),
    );
    const lines: string[] = [];
    const d = await daemon(c, {}, {
      log: createLogger("info", { write: (l) => lines.push(l), text: false }),
    });
    try {
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "reachable nodes routed");
      const p = d.reconciler.last?.problems.find((x) => x.node === "far");
      assert.equal(p?.kind, "kernel");
      assert.match(p?.reason ?? "", /gateway|unreachable/i);
      // More reconciles (watch events) retry it but do not log it again.
      for (let i = 0; i < 3; i++) {
        c.api.nodes.patch("b", "merge", { metadata: { labels: { n: String(i) } } });
      }
      c.api.nodes.patch("c", "merge", { spec: { podCIDRs: ["10.244.2.0/24"] } });
      await expectRoutes(
        c.ns,
        202,
        [...MAIN_B, "10.244.2.0/24 via 192.168.50.3"],
        "change applied",
      );
      assert.equal(
        lines.filter((l) => l.includes(`"msg":"node problem","node":"far"`)).length,
        1,
        lines.join("\n"),
      );
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: the end of the start and every resync give memory back (malloc trimmed)",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const lines: string[] = [];
    const d = await daemon(c, { RESYNC_INTERVAL: "1s" }, {
      log: createLogger("debug", { write: (l) => lines.push(l), text: false }),
    });
    const given = (msg: string) =>
      lines.map((l) => JSON.parse(l)).filter((o) => o.msg === `${msg}; idle memory released`);
    try {
      await pollUntil(() => Promise.resolve(given("resync complete").length >= 2), {
        timeoutMs: 10_000,
        message: () => `no two resyncs that gave memory back:\n${lines.join("\n")}`,
      });
      const start = given("start complete");
      assert.equal(start.length, 1, lines.join("\n"));
      // This test's Deno runs without V8's gc exposed (the image's runtime has it), and on
      // Debian's glibc.
      for (const o of [...start, ...given("resync complete")]) {
        assert.equal(o.heapCompacted, false);
        assert.equal(o.mallocTrimmed, true);
      }
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: with NODE_NAME, every route goes in while a slow first list still streams",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    // Two pages of 500 nodes, each answered 150 ms late: the list takes 300 ms or more, the
    // reads of the kernel at start a few ms.
    for (let i = 10; i < 610; i++) {
      const hop = (i % 200) + 10;
      c.api.nodes.create(makeNode({
        name: `n${i}`,
        podCIDRs: [`10.${100 + (i >> 8)}.${i & 255}.0/24`, `fd00:245:0:${i.toString(16)}::/64`],
        internalIPs: [`192.168.50.${hop}`, `fd00:50::${hop.toString(16)}`],
      }));
    }
    c.api.faults.setLatency(150);
    const log = capturedLog();
    const d = await daemon(c, {}, { log: log.log });
    try {
      c.api.faults.setLatency(0);
      const first = log.records().find((r) => r.msg === "reconciled")!;
      assert.equal(first.trigger, "start");
      assert.equal(first.desired, 2 * 602);
      assert.equal(first.early, first.desired, "every route sent before the list ended");
      assert.equal(first.applied, first.desired);
      const ours = await routes(c.ns, 202);
      assert.equal(ours.length, 2 * 602);
      assert.ok(ours.includes("10.102.97.0/24 via 192.168.50.19"), "node n609");
      assert.ok(ours.includes(MAIN_B[1]));
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: at debug level a reconcile names each route it added, replaced and deleted",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const lines: string[] = [];
    const log = createLogger("debug", { write: (l) => lines.push(l), text: false });
    const d = await daemon(c, {}, { log });
    const said = (msg: string) =>
      lines.map((l) => JSON.parse(l) as Record<string, string>).filter((l) => l.msg === msg)
        .map((l) => `${l.dst} via ${l.via}${l.node ? ` (${l.node})` : ""}`).sort();
    try {
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "initial");
      assert.deepEqual(said("route added"), [
        "10.244.1.0/24 via 192.168.50.2 (b)",
        "10.244.2.0/24 via 192.168.50.3 (c)",
        "fd00:244:0:1::/64 via fd00:50::2 (b)",
        "fd00:244:0:2::/64 via fd00:50::3 (c)",
      ]);
      lines.length = 0;
      c.api.nodes.patch("b", "merge", {
        status: { addresses: [{ type: "InternalIP", address: "192.168.50.12" }] },
      });
      c.api.nodes.delete("c");
      await expectRoutes(c.ns, 202, ["10.244.1.0/24 via 192.168.50.12"], "after the changes");
      assert.deepEqual(said("route replaced"), ["10.244.1.0/24 via 192.168.50.12 (b)"]);
      assert.deepEqual(said("route deleted"), [
        "10.244.2.0/24 via 192.168.50.3",
        "fd00:244:0:1::/64 via fd00:50::2",
        "fd00:244:0:2::/64 via fd00:50::3",
      ]);
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "daemon: not ready while its reconciles fail (no state file), retried without a trigger",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    // The state directory cannot be made: a file is in its place.
    const stateDir = `${c.dir}/state`;
    await Deno.writeTextFile(stateDir, "");
    const log = capturedLog();
    const d = await startDaemon(
      parseDaemonConfig({
        NODE_NAME: "a",
        HTTP_ADDRESS: "off",
        STATE_DIR: stateDir,
        RESYNC_INTERVAL: "1h",
      }),
      { netns: c.ns.name, kubeconfig: c.api.kubeconfigPath, install: false, log: log.log },
    );
    try {
      await pollUntil(() => log.lines.some((l) => l.includes("reconcile failed; retrying")), {
        message: "the first reconcile fails",
      });
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(d.metrics.ready, false, "not ready without the node state file");
      await Deno.remove(stateDir);
      await pollUntil(() => d.metrics.ready, {
        timeoutMs: 10_000,
        message: "ready once the state file can be written",
      });
      const state = JSON.parse(await Deno.readTextFile(stateFilePath(stateDir, "")));
      assert.deepEqual(state.cidrs, ["10.244.0.0/24", "fd00:244::/64"]);
      await expectRoutes(c.ns, 202, [...MAIN_B, ...MAIN_C], "routes to b and c");
      const text = d.metrics.render();
      assert.match(text, /xcluster_cni_reconciles_total\{trigger="retry"\} [1-9]/);
    } finally {
      await d.stop();
      await c.close();
    }
  },
});

Deno.test("daemon: an HTTP port taken stops the start before anything is installed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-test-port-" });
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    await Deno.mkdir(`${dir}/plugins`);
    await Deno.writeTextFile(`${dir}/plugins/bridge`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.mkdir(`${dir}/bin`);
    const cfg = parseDaemonConfig({
      NODE_NAME: "a",
      HTTP_ADDRESS: `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`,
      STATE_DIR: `${dir}/state`,
      PLUGINS_DIR: `${dir}/plugins`,
      CNI_BIN_DIR: `${dir}/bin`,
      CNI_CONF_DIR: `${dir}/conf`,
    });
    await assert.rejects(
      startDaemon(cfg, { kubeconfig: `${dir}/no-kubeconfig`, log: capturedLog().log }),
      /HTTP_ADDRESS 127\.0\.0\.1:\d+/,
    );
    assert.deepEqual([...Deno.readDirSync(`${dir}/bin`)], [], "nothing installed");
  } finally {
    taken.close();
    await Deno.remove(dir, { recursive: true });
  }
});
