/** The iproute2 adapter and the route monitor on a real kernel. Needs root. */
import assert from "node:assert/strict";
import { batchLine, createIprouteTable, parseBatchErrors } from "../src/routing/iproute.ts";
import { classifyMonitorLine, type KernelEvent, watchRoutes } from "../src/routing/monitor.ts";
import { diff, indexKernel } from "../src/routing/diff.ts";
import type { Route, RouteOp } from "../src/routing/types.ts";
import { lanHost, type Netns, pollUntil, requireRoot } from "./helpers/netns.ts";

const notRoot = requireRoot();

/** `count` replaces of distinct routes (10.x.y.0/24 or fd10:x::/64) via one next hop. */
function replaces(count: number, family: 4 | 6, via: string): RouteOp[] {
  return Array.from({ length: count }, (_, i) => ({
    op: "replace",
    route: {
      family,
      dst: family === 4 ? `10.${i >> 8}.${i & 255}.0/24` : `fd10:${i.toString(16)}::/64`,
      via,
      node: "x",
    },
  }));
}

Deno.test("batch errors map back to their lines", () => {
  const errors = parseBatchErrors(
    "Error: Nexthop has invalid gateway.\nCommand failed -:2\n" +
      "RTNETLINK answers: No such process\nCommand failed -:4\n",
  );
  assert.deepEqual([...errors], [[2, "Nexthop has invalid gateway."], [4, "No such process"]]);
});

Deno.test("batch lines name our protocol, and a delete the metric it was read with", () => {
  const route = { family: 6, dst: "fd03::/64", via: "fd00:9::3", protocol: 202 } as const;
  assert.deepEqual([
    batchLine({ op: "replace", route: { ...route, node: "n" } }, 202),
    batchLine({ op: "delete", route }, 202),
    batchLine({ op: "delete", route: { ...route, metric: 1024 } }, 202),
  ], [
    "route replace fd03::/64 via fd00:9::3 proto 202",
    "route del fd03::/64 via fd00:9::3 proto 202",
    "route del fd03::/64 via fd00:9::3 proto 202 metric 1024",
  ]);
});

Deno.test("monitor lines: main-table routes of every protocol, links and addresses", () => {
  const c = classifyMonitorLine;
  assert.deepEqual(c("Deleted 10.5.0.0/24 via 192.168.9.5 dev d0 proto 202 "), {
    kind: "route-deleted",
    detail: "Deleted 10.5.0.0/24 via 192.168.9.5 dev d0 proto 202 ",
    dst: "10.5.0.0/24",
    protocol: 202,
  });
  const v6 = c("Deleted fd05::/64 via fd00:9::5 dev d0 proto 202 metric 1024 pref medium");
  assert.equal(v6?.dst, "fd05::/64");
  assert.equal(c("Deleted 10.3.3.3 via 192.168.9.3 dev d0 proto 202")?.dst, "10.3.3.3/32");
  // Another owner's route in the way of ours, and a route added with no protocol (boot).
  const foreign = c("10.5.0.0/24 via 192.168.9.5 dev d0 proto 4");
  assert.deepEqual([foreign?.kind, foreign?.dst, foreign?.protocol], [
    "route-added",
    "10.5.0.0/24",
    4,
  ]);
  assert.equal(c("10.6.0.0/24 via 192.168.9.6 dev d0")?.protocol, 3);
  assert.equal(c("blackhole fd06::/64 dev lo proto 200 metric 1024 pref medium")?.dst, "fd06::/64");
  assert.equal(c("Deleted default via fd00:9::1 dev d0 proto 16 metric 1024")?.dst, "::/0");
  // Other tables are not ours to care about.
  assert.equal(
    c("local 192.168.9.1 dev d0 table local proto 2 scope host src 192.168.9.1"),
    undefined,
  );
  assert.equal(c("10.5.0.0/24 via 192.168.9.5 dev d0 table 7 proto 202"), undefined);
  assert.equal(
    c("3: d0@d1: <BROADCAST,MULTICAST> mtu 1500 qdisc noqueue state DOWN")?.kind,
    "link-change",
  );
  assert.equal(c("Deleted 3: d0    inet6 fd00:9::1/64 scope 0")?.kind, "address-change");
  assert.equal(c("    link/ether b6:78:f3:a2:2f:87 brd ff:ff:ff:ff:ff:ff"), undefined);
  assert.equal(c("    nexthop via 192.168.9.7 dev d0 weight 1"), undefined);
});

/** Routes of ours that are not plain: 10.7.0.0/24 over two next hops, 10.8.0.0/24 a blackhole. */
async function addMultipathAndBlackhole(ns: Netns) {
  await ns.ip(
    ..."route add 10.7.0.0/24 proto 202 nexthop via 192.168.9.7 nexthop via 192.168.9.8"
      .split(" "),
  );
  await ns.ip("route", "add", "blackhole", "10.8.0.0/24", "proto", "202");
}

Deno.test({
  name: "iproute: list both families with protocols, host and default routes",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xip");
    await ns.ip("route", "add", "10.1.0.0/24", "via", "192.168.9.2", "proto", "202");
    await ns.ip("route", "add", "10.3.3.3", "via", "192.168.9.3", "proto", "static");
    await ns.ip("route", "add", "default", "via", "192.168.9.254");
    await ns.ip("-6", "route", "add", "fd01::/64", "via", "fd00:9::2", "proto", "202");
    await ns.ip("-6", "route", "add", "fd01::7", "via", "fd00:9::7", "proto", "200");
    // Forms whose JSON differs: next hops in a list, a route type, a metric.
    await addMultipathAndBlackhole(ns);
    await ns.ip("-6", "route", "add", "fd02::/64", "via", "fd00:9::2", "metric", "50");
    const routes = await createIprouteTable({ netns: ns.name }).list();
    const find = (dst: string) => routes.find((r) => r.dst === dst);
    assert.deepEqual(
      { ...find("10.7.0.0/24") },
      {
        family: 4,
        dst: "10.7.0.0/24",
        via: "192.168.9.7",
        dev: "lan0",
        protocol: 202,
        type: undefined,
        metric: undefined,
        multipath: true,
      },
    );
    assert.equal(find("10.8.0.0/24")?.type, "6", "blackhole, numeric under ip -N");
    assert.equal(find("10.8.0.0/24")?.via, undefined);
    assert.equal(find("fd02::/64")?.metric, 50);
    const text = routes.map((r) => `${r.family} ${r.dst} ${r.via ?? "-"} ${r.protocol}`);
    for (
      const want of [
        "4 10.1.0.0/24 192.168.9.2 202",
        "4 10.3.3.3/32 192.168.9.3 4",
        "4 0.0.0.0/0 192.168.9.254 3",
        "4 192.168.9.0/24 - 2",
        "6 fd01::/64 fd00:9::2 202",
        "6 fd01::7/128 fd00:9::7 200",
      ]
    ) assert.ok(text.includes(want), `${want} missing in ${JSON.stringify(text)}`);
    const local = await createIprouteTable({ netns: ns.name }).localAddresses();
    assert.ok(
      local.some((a) => a.address === "fd00:9::1" && a.prefix === 64 && a.dev === "lan0"),
    );
    assert.ok(local.some((a) => a.address === "192.168.9.1" && a.prefix === 24));
  },
});

Deno.test({
  name: "iproute: the diff's replace turns a multipath or blackhole route of ours into one hop",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xip");
    await addMultipathAndBlackhole(ns);
    const table = createIprouteTable({ netns: ns.name });
    const want: Route[] = [
      { family: 4, dst: "10.7.0.0/24", via: "192.168.9.7", node: "n7" },
      { family: 4, dst: "10.8.0.0/24", via: "192.168.9.8", node: "n8" },
    ];
    const { ops } = diff(want, indexKernel(await table.list(), 202));
    assert.equal(ops.length, 2);
    assert.deepEqual(await table.apply(ops, 202), []);
    const after = (await table.list()).filter((r) => r.protocol === 202);
    assert.deepEqual(diff(want, indexKernel(after, 202)).ops, [], JSON.stringify(after));
    assert.deepEqual(after.map((r) => `${r.dst} ${r.via} ${r.multipath} ${r.type}`).sort(), [
      "10.7.0.0/24 192.168.9.7 undefined undefined",
      "10.8.0.0/24 192.168.9.8 undefined undefined",
    ]);
  },
});

Deno.test({
  name: "iproute: one batch applies, failing lines map to their ops, others' routes survive",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xip");
    await ns.ip("route", "add", "10.2.0.0/24", "via", "192.168.9.2", "proto", "static");
    await ns.ip("route", "add", "10.4.0.0/24", "via", "192.168.9.4", "proto", "202");
    const table = createIprouteTable({ netns: ns.name });
    const ops: RouteOp[] = [
      { op: "replace", route: { family: 4, dst: "10.5.0.0/24", via: "192.168.9.5", node: "n5" } },
      {
        op: "replace",
        route: { family: 4, dst: "10.6.0.0/24", via: "192.168.99.5", node: "n6" },
      },
      { op: "replace", route: { family: 6, dst: "fd05::/64", via: "fd00:9::5", node: "n5" } },
      // Same destination as a static route: the kernel must refuse deleting it as ours.
      {
        op: "delete",
        route: { family: 4, dst: "10.2.0.0/24", via: "192.168.9.2", protocol: 202 },
      },
      {
        op: "delete",
        route: { family: 4, dst: "10.4.0.0/24", via: "192.168.9.4", protocol: 202 },
      },
    ];
    const failures = await table.apply(ops, 202);
    assert.deepEqual(failures.map((f) => f.op), [ops[1], ops[3]]);
    assert.match(failures[0].error, /gateway|unreachable/i);
    const after = (await table.list()).map((r) => `${r.dst} ${r.protocol}`);
    assert.ok(after.includes("10.5.0.0/24 202"));
    assert.ok(after.includes("fd05::/64 202"));
    assert.ok(after.includes("10.2.0.0/24 4"), "static route kept");
    assert.ok(!after.some((r) => r.startsWith("10.4.0.0/24")), "our stale route deleted");
    await assert.rejects(
      () =>
        table.apply(
          [{ op: "delete", route: { family: 4, dst: "10.2.0.0/24", protocol: 4 } }],
          202,
        ),
      /not ours/,
    );
  },
});

Deno.test({
  name: "iproute: a batch of 5,000 refused lines returns every failure (stderr is drained)",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xip");
    const table = createIprouteTable({ netns: ns.name });
    // Next hops off every link: each line fails, and ip's report of them (about 400 KB)
    // overflows the stderr pipe long before the batch has been read.
    const ops = replaces(5000, 4, "192.168.99.2");
    const failures = await table.apply(ops, 202);
    assert.equal(failures.length, ops.length);
    assert.equal(failures[4999].op, ops[4999]);
    assert.match(failures[4999].error, /gateway|unreachable/i);
  },
});

Deno.test({
  name: "iproute: 2,000 routes in one batch",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xip");
    const table = createIprouteTable({ netns: ns.name });
    const ops = [...replaces(1000, 4, "192.168.9.2"), ...replaces(1000, 6, "fd00:9::2")];
    assert.deepEqual(await table.apply(ops, 202), []);
    const ours = (await table.list()).filter((r) => r.protocol === 202);
    assert.equal(ours.length, 2000);
  },
});

Deno.test({
  name: "monitor: reports route changes of every protocol with their destination, and links",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xip");
    const seen: KernelEvent[] = [];
    const m = watchRoutes({ netns: ns.name, onEvent: (e) => seen.push(e) });
    try {
      // The monitor is listening once it reports a marker change. Each try sets another MTU:
      // setting the one a link has already changes nothing, and reports nothing.
      let tries = 0;
      await pollUntil(async () => {
        await ns.ip("link", "set", "lan0p", "mtu", String(1400 + (tries++ % 2)));
        return seen.some((e) => e.kind === "link-change");
      }, { message: "monitor running" });
      await ns.ip("route", "add", "10.7.0.0/24", "via", "192.168.9.7", "proto", "200");
      await ns.ip("route", "add", "10.8.0.0/24", "via", "192.168.9.8", "proto", "202");
      await ns.ip("-6", "route", "add", "fd08::/64", "via", "fd00:9::8", "proto", "202");
      // The monitor's lines come when they come: its report of the last addition, then none.
      await pollUntil(() => seen.some((e) => e.kind === "route-added" && e.dst === "fd08::/64"), {
        message: "additions reported",
      });
      seen.length = 0;
      await ns.ip("route", "del", "10.7.0.0/24");
      await ns.ip("route", "del", "10.8.0.0/24");
      await ns.ip("-6", "route", "del", "fd08::/64");
      await ns.ip("route", "replace", "10.9.0.0/24", "via", "192.168.9.9", "proto", "static");
      const deleted = () => seen.filter((e) => e.kind === "route-deleted");
      await pollUntil(() => deleted().length >= 3 && seen.some((e) => e.dst === "10.9.0.0/24"), {
        message: "changes reported",
      });
      assert.deepEqual(deleted().map((e) => `${e.dst} ${e.protocol}`), [
        "10.7.0.0/24 200",
        "10.8.0.0/24 202",
        "fd08::/64 202",
      ]);
      const added = seen.filter((e) => e.kind === "route-added");
      assert.deepEqual(added.map((e) => `${e.dst} ${e.protocol}`), ["10.9.0.0/24 4"]);
      seen.length = 0;
      await ns.ip("link", "set", "lan0", "down");
      await pollUntil(() => seen.some((e) => e.kind === "link-change"), { message: "link down" });
      await ns.ip("link", "set", "lan0", "up");
    } finally {
      await m.close();
    }
  },
});
