/**
 * The head start: which routes go in while the first list streams (pure), and the reconciler
 * writing them into one open batch on a real kernel (root, in a network namespace).
 */
import assert from "node:assert/strict";
import type { NodeInfo } from "../src/kube/node.ts";
import { type Logger, silentLogger } from "../src/log.ts";
import { indexKernel } from "../src/routing/diff.ts";
import { HeadStart, MAX_ODD } from "../src/routing/head_start.ts";
import { createIprouteTable } from "../src/routing/iproute.ts";
import { type NetworkSource, parseNode } from "../src/routing/node_parse.ts";
import { type CheckedNode, checkNode, type PlanRules } from "../src/routing/check.ts";
import { plan } from "../src/routing/plan.ts";
import { Reconciler } from "../src/routing/reconciler.ts";
import type { KernelRoute, LocalAddress, RouteTable } from "../src/routing/types.ts";
import { lanHost, type Netns, pollUntil, requireRoot } from "./helpers/netns.ts";
import { capturedLog, routes } from "./helpers/router.ts";

const SOURCE: NetworkSource = { cidrAnnotation: "", addressAnnotation: "" };
const RULES: PlanRules = { selfName: "a", allowedCidrs: [], minPrefixV4: 8, minPrefixV6: 32 };
const LOCAL: LocalAddress[] = [
  { family: 4, address: "192.168.9.1", prefix: 24, dev: "lan0" },
  { family: 6, address: "fd00:9::1", prefix: 64, dev: "lan0" },
];

function node(name: string, cidrs: string[], ips: string[], created = "2026-01-02"): NodeInfo {
  return {
    name,
    creationTimestamp: `${created}T00:00:00Z`,
    podCIDRs: cidrs,
    internalIPs: ips,
    machineID: "",
    annotations: {},
  };
}

const check = (n: NodeInfo): CheckedNode => checkNode(parseNode(n, SOURCE), RULES, LOCAL);
const SELF = node("a", ["10.1.0.0/24", "fd01::/64"], ["192.168.9.1", "fd00:9::1"]);
const kernel = (routes: KernelRoute[] = []) => indexKernel(routes, 202);
const texts = (h: HeadStart, n: NodeInfo) => h.routes(check(n)).map((r) => `${r.dst} ${r.via}`);

Deno.test("head start: a plain node's routes at once, the same as the plan's", () => {
  const h = new HeadStart(kernel(), check(SELF));
  const b = node("b", ["10.1.1.0/24", "fd01:0:0:1::/64"], ["192.168.9.2", "fd00:9::2"]);
  assert.deepEqual(texts(h, b), ["10.1.1.0/24 192.168.9.2", "fd01:0:0:1::/64 fd00:9::2"]);
  const planned = plan([check(SELF), check(b)]).routes.map((r) => `${r.dst} ${r.via}`);
  assert.deepEqual(texts(new HeadStart(kernel(), check(SELF)), b), planned);
  assert.deepEqual(texts(h, SELF), [], "never our own node");
});

Deno.test("head start: nothing without our own node", () => {
  const h = new HeadStart(kernel(), undefined);
  assert.ok(h.off);
  assert.deepEqual(texts(h, node("b", ["10.1.1.0/24"], ["192.168.9.2"])), []);
});

Deno.test("head start: what the plan alone can decide waits", () => {
  const h = new HeadStart(
    kernel([
      { family: 4, dst: "10.1.5.0/24", via: "192.168.9.5", protocol: 202 },
      { family: 4, dst: "10.1.6.0/24", via: "192.168.9.6", protocol: 4 },
    ]),
    check(SELF),
  );
  // Inside our own CIDR, equal to a destination in the kernel (ours or another's).
  assert.deepEqual(texts(h, node("x", ["10.1.0.128/25"], ["192.168.9.3"])), [], "odd size");
  assert.deepEqual(texts(h, node("b", ["10.1.0.0/24"], ["192.168.9.3"])), [], "our CIDR");
  assert.deepEqual(texts(h, node("c", ["10.1.5.0/24"], ["192.168.9.3"])), [], "ours in kernel");
  assert.deepEqual(texts(h, node("d", ["10.1.6.0/24"], ["192.168.9.3"])), [], "foreign route");
  // The same CIDR claimed twice: the first claimant's route goes, the second waits.
  assert.deepEqual(texts(h, node("e", ["10.1.7.0/24"], ["192.168.9.7"])), [
    "10.1.7.0/24 192.168.9.7",
  ]);
  assert.deepEqual(texts(h, node("f", ["10.1.7.0/24"], ["192.168.9.8"])), []);
  // A CIDR of another size waits, and so do the usual ones inside it.
  assert.deepEqual(texts(h, node("g", ["10.2.0.0/16"], ["192.168.9.9"])), []);
  assert.deepEqual(texts(h, node("h", ["10.2.3.0/24"], ["192.168.9.10"])), []);
  assert.deepEqual(texts(h, node("i", ["10.3.3.0/24"], ["192.168.9.11"])), [
    "10.3.3.0/24 192.168.9.11",
  ]);
  assert.ok(!h.off);
});

Deno.test("head start: an older node's claim on our own CIDR goes neither early nor later", () => {
  const h = new HeadStart(kernel(), check(SELF));
  const older = node("old", ["10.1.0.0/24", "fd01::/64", "10.1.9.0/24"], [
    "192.168.9.3",
    "fd00:9::3",
  ], "2025-01-01");
  assert.deepEqual(texts(h, older), ["10.1.9.0/24 192.168.9.3"]);
  const planned = plan([check(older), check(SELF)]);
  assert.deepEqual(planned.routes.map((r) => `${r.dst} ${r.via}`), ["10.1.9.0/24 192.168.9.3"]);
  assert.deepEqual(planned.selfCidrs, ["10.1.0.0/24", "fd01::/64"]);
});

Deno.test("head start: stops after too many CIDRs of unusual sizes", () => {
  const h = new HeadStart(kernel(), check(SELF));
  for (let i = 0; i <= MAX_ODD; i++) {
    assert.deepEqual(texts(h, node(`o${i}`, [`10.${i + 10}.0.0/16`], ["192.168.9.2"])), []);
  }
  assert.ok(h.off);
  assert.deepEqual(texts(h, node("b", ["10.1.1.0/24"], ["192.168.9.2"])), []);
});

const notRoot = requireRoot();

/** A reconciler in `ns` over real iproute2, with a table and log that tests may swap. */
function reconcilerIn(
  ns: Netns,
  nodes: NodeInfo[],
  o: { table?: RouteTable; log?: Logger } = {},
): Reconciler {
  return new Reconciler({
    table: o.table ?? createIprouteTable({ netns: ns.name }),
    nodes: () => nodes,
    node: (name) => nodes.find((n) => n.name === name),
    source: SOURCE,
    rules: () => RULES,
    protocol: 202,
    log: o.log ?? silentLogger,
  });
}

/** Our node and one other, whose route the first reconcile must install in any case. */
const PAIR = [SELF, node("b", ["10.1.1.0/24"], ["192.168.9.2"])];

async function firstReconcileRoutesAll(reconciler: Reconciler, ns: Netns): Promise<void> {
  reconciler.trigger("start");
  await reconciler.idle();
  assert.deepEqual(await routes(ns, 202), ["10.1.1.0/24 via 192.168.9.2"]);
  assert.equal(reconciler.last!.applied, 1);
  await reconciler.stop();
}

Deno.test({
  name: "head start: routes reach the kernel before the first reconcile, which settles the rest",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xhs");
    await ns.ip("route", "add", "10.1.6.0/24", "via", "192.168.9.66", "proto", "static");
    const nodes = [
      SELF,
      node("b", ["10.1.1.0/24", "fd01:0:0:1::/64"], ["192.168.9.2", "fd00:9::2"]),
      // Listed before y but younger: its route goes first, then y's replaces it.
      node("x", ["10.1.7.0/24"], ["192.168.9.7"], "2026-01-03"),
      node("y", ["10.1.7.0/24"], ["192.168.9.8"], "2026-01-01"),
      node("z", ["10.1.6.0/24"], ["192.168.9.9"]),
    ];
    const self = Promise.withResolvers<NodeInfo | undefined>();
    const reconciler = reconcilerIn(ns, nodes);
    const preloaded = reconciler.preload(self.promise);
    // Nodes arriving before our own node wait for it; the rest go as they come.
    reconciler.prepare(nodes[1]);
    self.resolve(SELF);
    await preloaded;
    for (const n of nodes.slice(2)) reconciler.prepare(n);
    await pollUntil(async () => (await routes(ns, 202)).length === 3, {
      timeoutMs: 5000,
      message: "head start routes",
    });
    assert.deepEqual(await routes(ns, 202), [
      "10.1.1.0/24 via 192.168.9.2",
      "10.1.7.0/24 via 192.168.9.7",
      "fd01:0:0:1::/64 via fd00:9::2",
    ]);

    reconciler.trigger("start");
    await reconciler.idle();
    const want = [
      "10.1.1.0/24 via 192.168.9.2",
      "10.1.7.0/24 via 192.168.9.8",
      "fd01:0:0:1::/64 via fd00:9::2",
    ];
    assert.deepEqual(await routes(ns, 202), want, "the older claimant wins in the end");
    const last = reconciler.last!;
    assert.equal(last.applied, 4, "3 early, 1 moved");
    assert.equal(last.installed, 3);
    assert.ok(last.problems.some((p) => p.kind === "conflict" && p.node === "x"));
    assert.ok(last.problems.some((p) => p.kind === "foreign-route" && p.node === "z"));
    assert.deepEqual(await routes(ns, "static"), ["10.1.6.0/24 via 192.168.9.66"]);
    await reconciler.stop();

    // A restart with everything in place sends nothing.
    const again = reconcilerIn(ns, nodes);
    await again.preload(Promise.resolve(SELF));
    for (const n of nodes) again.prepare(n);
    again.trigger("start");
    await again.idle();
    assert.equal(again.last!.applied, 0);
    assert.deepEqual(await routes(ns, 202), want);
    await again.stop();
  },
});

Deno.test({
  name: "head start: without our own node the first reconcile routes everything, and preload ends",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xhs");
    const reconciler = reconcilerIn(ns, PAIR);
    // Our node is in no list and its GET failed: the promise never settles.
    const preloaded = reconciler.preload(new Promise<NodeInfo | undefined>(() => {}));
    for (const n of PAIR) reconciler.prepare(n);
    // Time for the reads at start (a few ms), so that preload is waiting for our node.
    await new Promise((r) => setTimeout(r, 500));
    const done = firstReconcileRoutesAll(reconciler, ns);
    await preloaded;
    await done;
  },
});

Deno.test({
  name: "head start: an ip that cannot start stops it, and the first reconcile routes everything",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xhs");
    const table = createIprouteTable({ netns: ns.name });
    // Reads work; the head start's batch runs a program that is not there.
    const missing = createIprouteTable({ netns: ns.name, ipPath: "/nonexistent/ip" });
    const log = capturedLog();
    const reconciler = reconcilerIn(ns, PAIR, {
      table: { ...table, openBatch: (p) => missing.openBatch(p) },
      log: log.log,
    });
    await reconciler.preload(Promise.resolve(SELF));
    for (const n of PAIR) reconciler.prepare(n);
    assert.ok(log.records().some((r) => r.msg === "head start stopped: the batch did not start"));
    await firstReconcileRoutesAll(reconciler, ns);
  },
});
