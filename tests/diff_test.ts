import assert from "node:assert/strict";
import { diff as diffIndexed, indexKernel } from "../src/routing/diff.ts";
import type { KernelRoute, OpFailure, Route, RouteOp, RouteTable } from "../src/routing/types.ts";
import { checkNode } from "../src/routing/check.ts";
import { parseNode } from "../src/routing/node_parse.ts";
import { plan } from "../src/routing/plan.ts";
import type { NodeInfo } from "../src/kube/node.ts";
import { silentLogger } from "../src/log.ts";
import { Reconciler } from "../src/routing/reconciler.ts";

const diff = (want: Route[], kernel: KernelRoute[], protocol: number) =>
  diffIndexed(want, indexKernel(kernel, protocol));
const r = (dst: string, via: string, family: 4 | 6 = 4): Route => ({ family, dst, via, node: "n" });
const k = (
  dst: string,
  via: string | undefined,
  protocol: number,
  family: 4 | 6 = 4,
): KernelRoute => ({ family, dst, via, protocol });

Deno.test("nothing to do when the kernel already agrees", () => {
  const d = diff([r("10.0.1.0/24", "192.168.1.2"), r("fd00::/64", "fd01::2", 6)], [
    k("10.0.1.0/24", "192.168.1.2", 202),
    k("fd00::/64", "fd01::2", 202, 6),
    k("192.168.1.0/24", undefined, 2),
  ], 202);
  assert.deepEqual(d.ops, []);
});

Deno.test("adds, changes next hop, deletes only our stale routes", () => {
  const d = diff([r("10.0.1.0/24", "192.168.1.2"), r("10.0.2.0/24", "192.168.1.9")], [
    k("10.0.2.0/24", "192.168.1.3", 202),
    k("10.0.3.0/24", "192.168.1.4", 202),
    k("10.0.4.0/24", "192.168.1.4", 200),
  ], 202);
  assert.deepEqual(d.ops.map((o) => `${o.op} ${o.route.dst} ${o.route.via}`), [
    "replace 10.0.1.0/24 192.168.1.2",
    "replace 10.0.2.0/24 192.168.1.9",
    "delete 10.0.3.0/24 192.168.1.4",
  ]);
});

Deno.test("a route of ours of another type or with more next hops is replaced", () => {
  const want = [r("10.0.1.0/24", "192.168.1.2"), r("10.0.2.0/24", "192.168.1.3")];
  const d = diff(want, [
    { ...k("10.0.1.0/24", "192.168.1.2", 202), multipath: true },
    { ...k("10.0.2.0/24", undefined, 202), type: "6" },
  ], 202);
  assert.deepEqual(d.ops.map((o) => `${o.op} ${o.route.dst} ${o.route.via}`), [
    "replace 10.0.1.0/24 192.168.1.2",
    "replace 10.0.2.0/24 192.168.1.3",
  ]);
});

Deno.test("a foreign route to the same destination is a conflict, never overwritten", () => {
  const d = diff([r("10.0.1.0/24", "192.168.1.2")], [k("10.0.1.0/24", "192.168.1.77", 4)], 202);
  assert.deepEqual(d.ops, []);
  assert.equal(d.conflicts.length, 1);
  assert.equal(d.conflicts[0].foreign.protocol, 4);
});

Deno.test("a foreign route beside ours: ours is deleted by an exact match, never replaced over it", () => {
  // `ip route prepend ... proto static` puts the foreign route before ours at the same
  // metric: a replace would take the foreign route, not ours.
  const foreign = k("10.98.0.0/24", "192.168.5.3", 4);
  const ours = k("10.98.0.0/24", "192.168.5.2", 202);
  let d = diff([r("10.98.0.0/24", "192.168.5.4")], [foreign, ours], 202);
  assert.deepEqual(d.ops, [{ op: "delete", route: ours }], "the route read: its metric too");
  assert.deepEqual(d.conflicts.map((c) => c.foreign), [foreign]);
  // Once ours is gone, as when only the foreign route was there: reported, nothing sent.
  d = diff([r("10.98.0.0/24", "192.168.5.4")], [foreign], 202);
  assert.deepEqual([d.ops, d.conflicts.length], [[], 1]);
  // Ours as planned is left where it is; the conflict is reported all the same.
  d = diff([r("10.98.0.0/24", "192.168.5.2")], [foreign, ours], 202);
  assert.deepEqual([d.ops, d.conflicts.length], [[], 1]);
  // Duplicates of ours, IPv6, a foreign route at another metric: each of ours deleted.
  const at = (via: string, protocol: number, metric: number) => ({
    ...k("fd98::/64", via, protocol, 6),
    metric,
  });
  const mine = [at("fd00:1::2", 202, 1024), at("fd00:1::2", 202, 2000)];
  d = diff([r("fd98::/64", "fd00:1::2", 6)], [at("fd00:1::3", 4, 100), ...mine], 202);
  assert.deepEqual(d.ops, mine.map((route) => ({ op: "delete", route })));
  assert.equal(d.conflicts.length, 1);
});

Deno.test("an IPv6 route of ours read as multipath may hold others' hops: its first hop is deleted, nothing replaced", () => {
  // `ip -6 route append ... proto static` makes a sibling of ours; the dump shows one
  // multipath route of our protocol (the first sibling's), and a replace takes every hop.
  const mp: KernelRoute = {
    ...k("fd98::/64", "fd00:1::2", 202, 6),
    metric: 1024,
    multipath: true,
  };
  for (const via of ["fd00:1::4", "fd00:1::2"]) {
    const d = diff([r("fd98::/64", via, 6)], [mp], 202);
    assert.deepEqual(d.ops, [{ op: "delete", route: mp }], via);
    assert.deepEqual(d.conflicts, []);
  }
  const single = k("fd98::/64", "fd00:1::2", 202, 6);
  assert.deepEqual(diff([r("fd98::/64", "fd00:1::4", 6)], [single, mp], 202).ops, [
    { op: "delete", route: single },
    { op: "delete", route: mp },
  ]);
  assert.deepEqual(diff([], [mp], 202).ops, [{ op: "delete", route: mp }]);
});

Deno.test("families are separate", () => {
  const d = diff([r("fd00::/64", "fd01::2", 6)], [k("fd00::/64", "fd01::2", 202, 4)], 202);
  assert.deepEqual(d.ops.map((o) => `${o.op} ${o.route.family}`), ["replace 6", "delete 4"]);
});

/**
 * A route table in memory. `duringApply` lets a test act while the batch "runs"; `refuse`
 * gives the error of an operation the kernel refuses (it changes nothing); `echo` hears each
 * route deleted, as the route monitor would.
 */
function fakeTable(opts: {
  duringApply?: (ops: readonly RouteOp[]) => void;
  refuse?: (op: RouteOp) => string | undefined;
  echo?: (deleted: KernelRoute) => void;
} = {}) {
  const routes: KernelRoute[] = [];
  let lists = 0;
  const table: RouteTable = {
    list() {
      lists++;
      return Promise.resolve([...routes]);
    },
    localAddresses: () =>
      Promise.resolve([{ family: 4, address: "192.168.1.1", prefix: 24, dev: "eth0" }]),
    close: () => Promise.resolve(),
    apply(ops, protocol) {
      opts.duringApply?.(ops);
      const failures: OpFailure[] = [];
      for (const op of ops) {
        const error = opts.refuse?.(op);
        if (error) {
          failures.push({ op, error });
          continue;
        }
        const at = routes.findIndex((r) => r.family === op.route.family && r.dst === op.route.dst);
        if (at >= 0) {
          const [gone] = routes.splice(at, 1);
          if (op.op === "delete") opts.echo?.(gone);
        }
        if (op.op === "replace") {
          routes.push({ family: op.route.family, dst: op.route.dst, via: op.route.via, protocol });
        }
      }
      return Promise.resolve(failures);
    },
    openBatch(protocol) {
      const sent: RouteOp[] = [];
      return {
        write: (ops) => void sent.push(...ops),
        close: () => table.apply(sent, protocol),
      };
    },
  };
  return { table, routes, lists: () => lists };
}

/** A reconciler on `table` over the nodes `current` gives, our own node named by `self`. */
function reconcilerOn(
  table: RouteTable,
  current: () => NodeInfo[],
  self = () => "a",
): Reconciler {
  return new Reconciler({
    table,
    nodes: current,
    node: (name) => current().find((n) => n.name === name),
    source: { cidrAnnotation: "", addressAnnotation: "" },
    rules: () => ({ selfName: self(), allowedCidrs: [], minPrefixV4: 8, minPrefixV6: 32 }),
    protocol: 202,
    log: silentLogger,
  });
}

function info(name: string, cidr: string, ip: string): NodeInfo {
  return {
    name,
    creationTimestamp: "2026-01-01T00:00:00Z",
    podCIDRs: [cidr],
    internalIPs: [ip],
    machineID: "",
    annotations: {},
  };
}

Deno.test("reconciler: the monitor's echo of our own deletion is ignored even before the batch ends", async () => {
  // The echo of every deletion arrives while `ip -batch` still runs.
  const fake = fakeTable({
    duringApply: (ops) => {
      for (const op of ops) {
        if (op.op === "delete") {
          reconciler.kernelEvent({ kind: "route-deleted", dst: op.route.dst });
        }
      }
    },
  });
  let nodes = [info("a", "10.0.0.0/24", "192.168.1.1"), info("b", "10.0.1.0/24", "192.168.1.2")];
  const reconciler: Reconciler = reconcilerOn(fake.table, () => nodes);
  reconciler.trigger("start");
  await reconciler.idle();
  assert.deepEqual(fake.routes.map((r) => r.dst), ["10.0.1.0/24"]);
  assert.equal(fake.lists(), 1);
  nodes = [nodes[0]];
  reconciler.trigger("watch");
  await reconciler.idle();
  assert.deepEqual(fake.routes, []);
  assert.equal(reconciler.last?.trigger, "watch");
  assert.equal(fake.lists(), 1, "no full read for our own echo");
  // Someone else's deletion still counts.
  reconciler.kernelEvent({ kind: "route-deleted", dst: "10.0.1.0/24" });
  await reconciler.idle();
  assert.equal(fake.lists(), 2);
  await reconciler.stop();
});

Deno.test("reconciler: nodes checked while the list streams in serve the first reconcile, unless the rules changed since", async () => {
  const fake = fakeTable();
  let self = "a";
  const nodes = [
    info("a", "10.0.0.0/24", "192.168.1.1"),
    info("b", "10.0.1.0/24", "192.168.1.2"),
    info("c", "10.0.2.0/24", "192.168.1.3"),
  ];
  const reconciler = reconcilerOn(fake.table, () => nodes, () => self);
  reconciler.prepare(nodes[0]); // before the host's addresses are known: nothing to do
  await reconciler.preload();
  for (const n of nodes) reconciler.prepare(n);
  reconciler.trigger("start");
  await reconciler.idle();
  assert.deepEqual(fake.routes.map((r) => r.dst).sort(), ["10.0.1.0/24", "10.0.2.0/24"]);

  // Checked as node a, but by the next reconcile our node is b (found by machine ID, say):
  // b's range is ours now, and a's next hop is an address of this host.
  for (const n of nodes) reconciler.prepare(n);
  self = "b";
  reconciler.trigger("resync");
  await reconciler.idle();
  assert.deepEqual(fake.routes.map((r) => r.dst), ["10.0.2.0/24"]);
  assert.ok(reconciler.last?.problems.some((p) => p.node === "a"), "a's next hop refused");
  await reconciler.stop();
});

Deno.test("reconciler: a kernel change during a head start brings one full read after the first reconcile; a route of ours taken away comes back without one", async () => {
  for (const moved of [false, true]) {
    const fake = fakeTable();
    const nodes = [
      info("a", "10.0.0.0/24", "192.168.1.1"),
      info("b", "10.0.1.0/24", "192.168.1.2"),
    ];
    const reconciler = reconcilerOn(fake.table, () => nodes);
    // Our node is known before the list: the head start reads the table and begins.
    await reconciler.preload(Promise.resolve(nodes[0]));
    for (const n of nodes) reconciler.prepare(n);
    assert.equal(fake.lists(), 1);
    // Another owner's route, somewhere, between that read and the first plan.
    if (moved) reconciler.kernelEvent({ kind: "route-added", dst: "10.9.0.0/24", protocol: 4 });
    reconciler.trigger("start");
    await reconciler.idle();
    assert.deepEqual(fake.routes.map((r) => `${r.dst} ${r.via}`), ["10.0.1.0/24 192.168.1.2"]);
    assert.equal(fake.lists(), moved ? 2 : 1, `moved: ${moved}`);
    assert.equal(reconciler.last?.trigger, moved ? "monitor" : "start");

    // Someone deletes our route: it is put back from the event, with no read of the table.
    fake.routes.length = 0;
    reconciler.kernelEvent({ kind: "route-deleted", dst: "10.0.1.0/24", protocol: 202 });
    await reconciler.idle();
    assert.deepEqual(fake.routes.map((r) => `${r.dst} ${r.via}`), ["10.0.1.0/24 192.168.1.2"]);
    assert.equal(fake.lists(), moved ? 2 : 1);
    assert.equal(reconciler.last?.trigger, "monitor");
    assert.equal(reconciler.last?.fullRead, false);
    await reconciler.stop();
  }
});

Deno.test("reconciler: changed node by node and diffed against the view alone, the kernel follows the plan", async () => {
  // 300 rounds (a small deterministic generator: the same run every time) of nodes coming,
  // going and changing, their CIDRs now and then another's (conflicts come and go); the
  // kernel refusing some destinations for a while, and someone deleting a route of ours.
  let seed = 11;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const refused = new Set<string>();
  const fake = fakeTable({
    refuse: (op) => refused.has(op.route.dst) ? "unreachable" : undefined,
    echo: (r) => reconciler.kernelEvent({ kind: "route-deleted", dst: r.dst, protocol: 202 }),
  });
  const make = (i: number): NodeInfo => ({
    name: `n${i}`,
    creationTimestamp: `2026-01-0${1 + rand(3)}T00:00:00Z`,
    podCIDRs: [
      rand(6) === 0 ? `10.${rand(3)}.0.0/${23 + rand(2)}` : `10.${10 + i}.${rand(2)}.0/24`,
      `fd00:${i}:${rand(3)}::/64`,
    ],
    internalIPs: [`192.168.1.${10 + i}`, ...(rand(3) === 0 ? [] : [`fd00:1::${10 + i}`])],
    machineID: "",
    annotations: {},
  });
  let nodes = Array.from({ length: 20 }, (_, i) => make(i));
  const reconciler = reconcilerOn(fake.table, () => nodes, () => "n0");
  reconciler.trigger("start");
  await reconciler.idle();
  const local = await fake.table.localAddresses();
  const rules = { selfName: "n0", allowedCidrs: [], minPrefixV4: 8, minPrefixV6: 32 };
  const source = { cidrAnnotation: "", addressAnnotation: "" };
  const wanted = () =>
    new Map(
      plan(nodes.map((n) => checkNode(parseNode(n, source), rules, local))).routes
        .map((r) => [r.dst, r.via]),
    );
  let lostRounds = 0, refusals = 0, reads = 1;
  for (let round = 0; round < 300; round++) {
    const changes: { name: string; old?: NodeInfo }[] = [];
    for (let c = 1 + rand(3); c > 0; c--) {
      const i = rand(25);
      const at = nodes.findIndex((n) => n.name === `n${i}`);
      changes.push({ name: `n${i}`, old: nodes[at] });
      if (at >= 0 && rand(4) === 0) nodes = nodes.filter((_, j) => j !== at);
      else if (at >= 0) nodes = nodes.map((n, j) => j === at ? make(i) : n);
      else nodes = [...nodes, make(i)];
    }
    if (rand(8) === 0 && refused.size > 0) {
      // What stops a route (a link down, say) comes with an event that calls for a full read.
      refused.clear();
      reconciler.kernelEvent({ kind: "link" });
      reads++;
    }
    const changedNow = nodes.find((n) => n.name === changes[0].name);
    if (changedNow && rand(3) === 0) refused.add(changedNow.podCIDRs[rand(2)]);
    reconciler.nodesChanged(changes);
    await reconciler.idle();
    const ours = fake.routes.filter((r) => r.protocol === 202);
    if (rand(5) === 0 && ours.length > 0) {
      // Someone else deletes one of ours: the monitor tells, and it comes back.
      const gone = ours[rand(ours.length)];
      fake.routes.splice(fake.routes.indexOf(gone), 1);
      reconciler.kernelEvent({ kind: "route-deleted", dst: gone.dst, protocol: 202 });
      await reconciler.idle();
      lostRounds++;
    }
    const want = wanted();
    const kernel = new Map(fake.routes.map((r) => [r.dst, r.via]));
    for (const [dst, via] of want) {
      if (!refused.has(dst)) assert.equal(kernel.get(dst), via, `round ${round}: ${dst}`);
    }
    for (const dst of kernel.keys()) {
      assert.ok(want.has(dst) || refused.has(dst), `round ${round}: ${dst} is stale`);
    }
    // What the kernel refused is reported, where it stands, until it is in place.
    const reported = new Set(
      reconciler.last!.problems.filter((p) => p.kind === "kernel").map((p) =>
        p.value.split(" ")[0]
      ),
    );
    for (const [dst, via] of want) {
      const placed = kernel.get(dst) === via;
      assert.equal(reported.has(dst), !placed, `round ${round}: ${dst} in place: ${placed}`);
    }
    assert.equal(reconciler.last?.installed, fake.routes.length, `round ${round}: installed`);
    refusals += reconciler.last?.failures.length ?? 0;
  }
  assert.equal(fake.lists(), reads, "a full read only where an event called for one");
  assert.ok(lostRounds > 30 && refusals > 10, `${lostRounds} routes lost, ${refusals} refusals`);
  refused.clear();
  reconciler.trigger("resync");
  await reconciler.idle();
  assert.deepEqual(new Map(fake.routes.map((r) => [r.dst, r.via])), wanted());
  assert.equal(reconciler.last?.installed, fake.routes.length);
  await reconciler.stop();
});

Deno.test("reconciler: after deleting a hop of an IPv6 multipath route of ours, the kernel is read again, and another owner's hop left there is reported, not replaced", async () => {
  const dst = "fd00:98::/64";
  const fake = fakeTable({
    // The kernel deletes the sibling named: the other one, another owner's, shows alone.
    echo: (gone) => {
      if (gone.multipath) fake.routes.push({ family: 6, dst, via: "fd00:1::3", protocol: 4 });
    },
  });
  fake.routes.push({ family: 6, dst, via: "fd00:1::2", protocol: 202, multipath: true });
  const nodes = [info("a", "10.0.0.0/24", "192.168.1.1"), info("b", dst, "fd00:1::4")];
  const reconciler = reconcilerOn(fake.table, () => nodes);
  reconciler.trigger("start");
  await reconciler.idle();
  assert.deepEqual(fake.routes, [{ family: 6, dst, via: "fd00:1::3", protocol: 4 }]);
  assert.equal(fake.lists(), 2, "read again after the hop went");
  assert.deepEqual(
    reconciler.last?.problems.filter((p) => p.kind === "foreign-route").map((p) => p.value),
    [dst],
  );
  assert.equal(reconciler.last?.installed, 0);
  // A change there later is diffed against the view: still no replace over that route.
  nodes[1] = info("b", dst, "fd00:1::5");
  reconciler.nodesChanged([{ name: "b" }]);
  await reconciler.idle();
  assert.deepEqual(fake.routes, [{ family: 6, dst, via: "fd00:1::3", protocol: 4 }]);
  assert.equal(fake.lists(), 2);
  await reconciler.stop();
});

Deno.test("a route of ours at another metric than our writes give is deleted, then ours put back", () => {
  // Written under our protocol by something else: a replace would add a route beside it
  // (at 0 in IPv4, 1024 in IPv6), and in IPv6 the old one, at 100, would still be taken.
  const old6: KernelRoute = { ...k("fd97::/64", "fd00:1::2", 202, 6), metric: 100 };
  const want6 = r("fd97::/64", "fd00:1::4", 6);
  assert.deepEqual(diff([want6], [old6], 202).ops, [
    { op: "delete", route: old6 },
    { op: "replace", route: want6 },
  ]);
  // The same next hop at another metric is not in place either.
  const same4: KernelRoute = { ...k("10.97.0.0/24", "192.168.5.2", 202), metric: 5 };
  const want4 = r("10.97.0.0/24", "192.168.5.2");
  assert.deepEqual(diff([want4], [same4], 202).ops, [
    { op: "delete", route: same4 },
    { op: "replace", route: want4 },
  ]);
  // At the metrics our writes give, nothing is sent.
  const ok6: KernelRoute = { ...k("fd97::/64", "fd00:1::4", 202, 6), metric: 1024 };
  const ok4: KernelRoute = { ...k("10.97.0.0/24", "192.168.5.2", 202), metric: 0 };
  assert.deepEqual(diff([want6, want4], [ok6, ok4], 202).ops, []);
});
