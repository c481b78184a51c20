import assert from "node:assert/strict";
import type { NodeInfo } from "../src/kube/node.ts";
import { cidrsOverlap, parseCidr } from "../src/net/ip.ts";
import { type NetworkSource, parseNode } from "../src/routing/node_parse.ts";
import { checkNode, type PlanRules } from "../src/routing/check.ts";
import { plan, Planner } from "../src/routing/plan.ts";
import type { LocalAddress } from "../src/routing/types.ts";

const MAIN: NetworkSource = { cidrAnnotation: "", addressAnnotation: "" };
const NET3: NetworkSource = {
  cidrAnnotation: "cidr.example.com/net3",
  addressAnnotation: "adr.example.com/net3",
};
const RULES: PlanRules = { selfName: "a", allowedCidrs: [], minPrefixV4: 8, minPrefixV6: 32 };
const LOCAL: LocalAddress[] = [
  { family: 4, address: "192.168.1.1", prefix: 24, dev: "eth0" },
  { family: 6, address: "fd00:1::1", prefix: 64, dev: "eth0" },
  { family: 4, address: "127.0.0.1", prefix: 8, dev: "lo" },
];

function node(name: string, o: Partial<NodeInfo> = {}): NodeInfo {
  return {
    name,
    creationTimestamp: "2026-01-01T00:00:00Z",
    podCIDRs: [],
    internalIPs: [],
    machineID: "",
    annotations: {},
    ...o,
  };
}

function run(nodes: NodeInfo[], source = MAIN, rules = RULES, local = LOCAL) {
  return plan(nodes.map((n) => checkNode(parseNode(n, source), rules, local)));
}

Deno.test("dual-stack routes to every other node, never our own, in address order", () => {
  const p = run([
    node("a", {
      podCIDRs: ["10.244.0.0/24", "fd00:10::/64"],
      internalIPs: ["192.168.1.1", "fd00:1::1"],
    }),
    node("b", {
      podCIDRs: ["10.244.1.0/24", "fd00:10:0:1::/64"],
      internalIPs: ["192.168.1.2", "fd00:1::2"],
    }),
    node("c", {
      podCIDRs: ["10.244.2.0/24", "fd00:10:0:2::/64"],
      internalIPs: ["fd00:1::3", "192.168.1.3"],
    }),
  ]);
  assert.deepEqual(
    p.routes.map((r) => `${r.dst} via ${r.via}`),
    [
      "10.244.1.0/24 via 192.168.1.2",
      "10.244.2.0/24 via 192.168.1.3",
      "fd00:10:0:1::/64 via fd00:1::2",
      "fd00:10:0:2::/64 via fd00:1::3",
    ],
  );
  assert.deepEqual(p.selfCidrs, ["10.244.0.0/24", "fd00:10::/64"]);
  assert.deepEqual(p.problems, []);
});

Deno.test("annotations in Nordix format, all CIDRs, canonical forms, IPv4-mapped next hop", () => {
  const p = run([
    node("b", {
      annotations: {
        "cidr.example.com/net3": "192.168.55.7/26, fd00:5::1:0/112,10.9.0.0/16 , 10.9.9.9/32",
        "adr.example.com/net3": "::ffff:192.168.2.3,1000::1:c0a8:203",
      },
      podCIDRs: ["10.244.1.0/24"],
    }),
  ], NET3);
  assert.deepEqual(p.routes.map((r) => `${r.dst} via ${r.via}`), [
    "10.9.0.0/16 via 192.168.2.3",
    "10.9.9.9/32 via 192.168.2.3",
    "192.168.55.0/26 via 192.168.2.3",
    "fd00:5::1:0/112 via 1000::1:c0a8:203",
  ]);
});

Deno.test("a malformed entry is reported and the node keeps its valid ones", () => {
  const p = run([
    node("b", {
      podCIDRs: ["10.244.1.0/24", "10.244.300.0/24", "fd00:10:0:1::/64"],
      internalIPs: ["192.168.1.2", "not-an-ip", "fd00:1::2"],
    }),
  ]);
  assert.equal(p.routes.length, 2);
  const bad = p.problems.filter((x) => x.kind === "malformed");
  assert.deepEqual(bad.map((x) => [x.node, x.field, x.value]), [
    ["b", "spec.podCIDRs", "10.244.300.0/24"],
    ["b", "status.addresses[InternalIP]", "not-an-ip"],
  ]);
});

Deno.test("nodes without CIDRs or without an address of the family are skipped with a reason", () => {
  const p = run([
    node("b", { internalIPs: ["192.168.1.2"] }),
    node("c", { podCIDRs: ["10.244.2.0/24", "fd00:10:0:2::/64"], internalIPs: ["192.168.1.3"] }),
  ]);
  assert.deepEqual(p.routes.map((r) => r.dst), ["10.244.2.0/24"]);
  assert.deepEqual(p.problems.map((x) => [x.node, x.kind]), [["b", "no-cidrs"], [
    "c",
    "no-address",
  ]]);
  assert.match(p.problems[1].reason, /IPv6/);
});

Deno.test("overlapping claims: the older node keeps the range, whatever the order", () => {
  const older = node("zz-old", {
    creationTimestamp: "2025-01-01T00:00:00Z",
    podCIDRs: ["10.244.8.0/24"],
    internalIPs: ["192.168.1.8"],
  });
  const newer = node("b-new", {
    creationTimestamp: "2026-05-01T00:00:00Z",
    podCIDRs: ["10.244.0.0/16", "10.250.0.0/24"],
    internalIPs: ["192.168.1.9"],
  });
  for (const order of [[older, newer], [newer, older]]) {
    const p = run(order);
    assert.deepEqual(p.routes.map((r) => `${r.node} ${r.dst}`).sort(), [
      "b-new 10.250.0.0/24",
      "zz-old 10.244.8.0/24",
    ]);
    const conflicts = p.problems.filter((x) => x.kind === "conflict");
    assert.deepEqual(conflicts.map((x) => x.node).sort(), ["b-new", "zz-old"]);
  }
  // Same timestamp: the name decides.
  const t = "2026-01-01T00:00:00Z";
  const p = run([
    node("y", { creationTimestamp: t, podCIDRs: ["10.244.5.0/24"], internalIPs: ["192.168.1.5"] }),
    node("x", { creationTimestamp: t, podCIDRs: ["10.244.5.0/24"], internalIPs: ["192.168.1.6"] }),
  ]);
  assert.deepEqual(p.routes.map((r) => r.node), ["x"]);
});

Deno.test("an older node cannot claim our own CIDR: refused and reported on it", () => {
  const self = node("a", {
    creationTimestamp: "2026-01-01T00:00:00Z",
    podCIDRs: ["10.244.0.0/24", "fd00:10::/64"],
    internalIPs: ["192.168.1.1", "fd00:1::1"],
  });
  const evil = node("evil", {
    // Older than our own node: by age alone it would win.
    creationTimestamp: "2025-01-01T00:00:00Z",
    podCIDRs: ["10.244.0.0/25", "fd00:10::/80", "10.250.0.0/24"],
    internalIPs: ["192.168.1.66", "fd00:1::66"],
  });
  for (const order of [[self, evil], [evil, self]]) {
    const p = run(order);
    assert.deepEqual(p.routes.map((r) => `${r.node} ${r.dst} via ${r.via}`), [
      "evil 10.250.0.0/24 via 192.168.1.66",
    ]);
    assert.deepEqual(p.selfCidrs, ["10.244.0.0/24", "fd00:10::/64"]);
    const onEvil = p.problems.filter((x) => x.node === "evil");
    assert.deepEqual(onEvil.map((x) => [x.kind, x.field, x.value]), [
      ["conflict", "spec.podCIDRs", "10.244.0.0/25"],
      ["conflict", "spec.podCIDRs", "fd00:10::/80"],
    ]);
    assert.match(onEvil[0].reason, /10\.244\.0\.0\/24 of node a, this router's own node/);
    assert.match(onEvil[1].reason, /fd00:10::\/64 of node a, this router's own node/);
    const evilPlan = p.nodes.find((n) => n.name === "evil");
    assert.deepEqual(evilPlan?.cidrs, ["10.250.0.0/24"]);
  }
});

Deno.test("our own CIDRs win against a wider claim and without a creationTimestamp", () => {
  const p = run([
    node("a", { creationTimestamp: "", podCIDRs: ["10.244.0.0/24"], internalIPs: ["192.168.1.1"] }),
    node("wide", {
      creationTimestamp: "2020-01-01T00:00:00Z",
      podCIDRs: ["10.244.0.0/16"],
      internalIPs: ["192.168.1.7"],
    }),
  ]);
  assert.deepEqual(p.routes, []);
  assert.deepEqual(p.selfCidrs, ["10.244.0.0/24"]);
  assert.deepEqual(
    p.problems.filter((x) => x.kind === "conflict").map((x) => [x.node, x.value]).sort(),
    [
      ["a", "10.244.0.0/24"],
      ["wide", "10.244.0.0/16"],
    ],
  );
});

Deno.test("beside our own node, the older of two other nodes still wins between them", () => {
  const p = run([
    node("a", {
      creationTimestamp: "2026-06-01T00:00:00Z",
      podCIDRs: ["10.244.0.0/24"],
      internalIPs: ["192.168.1.1"],
    }),
    // Refused as a whole for overlapping ours: it then takes nothing from y.
    node("x", {
      creationTimestamp: "2025-01-01T00:00:00Z",
      podCIDRs: ["10.244.0.0/16"],
      internalIPs: ["192.168.1.2"],
    }),
    node("y", {
      creationTimestamp: "2025-02-01T00:00:00Z",
      podCIDRs: ["10.244.5.0/24"],
      internalIPs: ["192.168.1.3"],
    }),
    node("z", {
      creationTimestamp: "2025-03-01T00:00:00Z",
      podCIDRs: ["10.244.5.128/25"],
      internalIPs: ["192.168.1.4"],
    }),
  ]);
  assert.deepEqual(p.routes.map((r) => `${r.node} ${r.dst}`), ["y 10.244.5.0/24"]);
  assert.deepEqual(p.selfCidrs, ["10.244.0.0/24"]);
  const reasons = Object.fromEntries(
    p.problems.filter((x) => x.kind === "conflict" && x.node !== "a" && x.node !== "y")
      .map((x) => [x.node, x.reason]),
  );
  assert.match(reasons.x, /of node a, this router's own node/);
  assert.match(reasons.z, /overlaps 10\.244\.5\.0\/24 of node y, which claimed it first/);
});

Deno.test("hostile CIDRs are refused, the rest of the node still works", () => {
  const p = run([
    node("evil", {
      podCIDRs: [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.0/7",
        "127.0.0.0/24",
        "169.254.1.0/24",
        "224.1.0.0/16",
        "fe80::/64",
        "ff02::/16",
        "192.168.1.0/25",
        "192.168.0.0/16",
        "fd00:1::/96",
        "fd00::/16",
        "10.244.9.0/24",
      ],
      internalIPs: ["192.168.1.66", "fd00:1::66"],
    }),
  ]);
  assert.deepEqual(p.routes.map((r) => r.dst), ["10.244.9.0/24"]);
  const refused = p.problems.filter((x) => x.kind === "refused").map((x) => x.value);
  assert.equal(refused.length, 12);
  assert.ok(refused.includes("192.168.1.0/25"));
});

Deno.test("ALLOWED_CIDRS limits what is routed", () => {
  const allowed = ["10.244.0.0/16", "fd00:10::/48"].map((t) => {
    const r = parseCidr(t);
    if (!r.ok) throw new Error(t);
    return r.cidr;
  });
  const p = run(
    [
      node("b", {
        podCIDRs: ["10.244.1.0/24", "10.245.1.0/24", "fd00:10:0:1::/64", "fd00:11::/64"],
        internalIPs: ["192.168.1.2", "fd00:1::2"],
      }),
    ],
    MAIN,
    { ...RULES, allowedCidrs: allowed },
  );
  assert.deepEqual(p.routes.map((r) => r.dst), ["10.244.1.0/24", "fd00:10:0:1::/64"]);
  assert.deepEqual(p.problems.map((x) => [x.value, x.reason]), [
    ["10.245.1.0/24", "outside ALLOWED_CIDRS"],
    ["fd00:11::/64", "outside ALLOWED_CIDRS"],
  ]);
});

Deno.test("next hops: only unicast and never an address of this host", () => {
  const p = run([
    node("b", {
      podCIDRs: ["10.244.1.0/24", "fd00:10:0:1::/64"],
      internalIPs: ["192.168.1.1", "224.0.0.1", "fe80::1", "192.168.1.2", "fd00:1::2"],
    }),
  ]);
  assert.deepEqual(p.routes.map((r) => r.via), ["192.168.1.2", "fd00:1::2"]);
  assert.equal(p.problems.filter((x) => x.kind === "refused").length, 3);
});

Deno.test("garbage and oversized annotations never throw", () => {
  const values = [
    "",
    ",,,",
    "\u0000",
    "x".repeat(100_000),
    "1.2.3.4/24%x",
    "🙂/24",
    Array.from({ length: 5000 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`).join(","),
  ];
  for (const v of values) {
    const p = run([
      node("b", { annotations: { "cidr.example.com/net3": v, "adr.example.com/net3": v } }),
    ], NET3);
    for (const r of p.routes) assert.ok(parseCidr(r.dst).ok);
    assert.ok(p.routes.length <= 64);
  }
});

/**
 * 200 rounds of nodes coming, going and changing (a small deterministic generator: the same
 * run every time), each planned both by one planner changed node by node and from nothing;
 * asserts they agree. With `crowded`, few distinct CIDRs, so that conflicts come and go;
 * without, every node has ranges of its own but now and then one claims another's.
 */
function churn(crowded: boolean): { local: number; selfConflicts: number } {
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const make = (i: number, v: number) =>
    node(`n${i}`, {
      creationTimestamp: `2026-01-0${1 + rand(3)}T00:00:00Z`,
      podCIDRs: crowded
        ? [`10.${rand(4)}.${rand(3)}.0/${23 + rand(2)}`, `fd00:10:0:${rand(6)}::/64`]
        : rand(15) === 0
        ? [`10.${rand(60)}.0.0/16`, `fd00:10:${i}:${rand(6)}::/64`]
        : [`10.${i}.${rand(3)}.0/24`, `fd00:10:${i}:${rand(6)}::/64`],
      internalIPs: [`192.168.1.${10 + i}`, ...(v % 3 === 0 ? [] : [`fd00:1::${10 + i}`])],
    });
  // One of the nodes is our own, so that it too comes and goes, changes, and meets older
  // claims of its CIDRs.
  const rules = { ...RULES, selfName: "n5" };
  const planner = new Planner();
  let before: ReturnType<typeof checkNode>[] = [];
  let planned = new Map<string, string>();
  let local = 0;
  const checkedOf = new Map<NodeInfo, ReturnType<typeof checkNode>>();
  let selfConflicts = 0;
  let nodes = Array.from({ length: 40 }, (_, i) => make(i, i));
  for (let round = 0; round < 200; round++) {
    const i = rand(60);
    const at = nodes.findIndex((n) => n.name === `n${i}`);
    if (at >= 0 && rand(3) === 0) nodes = nodes.filter((_, j) => j !== at);
    else if (at >= 0) nodes = nodes.map((n, j) => j === at ? make(i, round) : n);
    else nodes = [...nodes, make(i, round)];
    if (round % 50 === 49) {
      nodes = nodes.map((n, j) => j % 2 ? make(Number(n.name.slice(1)), round) : n);
    }
    // The informer keeps its order, but a relist may not: the memo must not depend on it.
    if (round % 37 === 36) nodes = [...nodes].reverse();
    if (round % 41 === 40) nodes = nodes.map((n, j) => nodes[j % 2 ? j - 1 : j + 1] ?? n);
    const checked = nodes.map((n) => {
      let c = checkedOf.get(n);
      if (!c) checkedOf.set(n, c = checkNode(parseNode(n, MAIN), rules, LOCAL));
      return c;
    });
    const fresh = plan(checked);
    // The nodes that came, went or changed since the last round, each before and now.
    const removed = before.filter((n) => !checked.includes(n));
    const added = checked.filter((n) => !before.includes(n));
    const disjoint = !planner.overlapping;
    const changes = round === 0
      ? (planner.reset(checked), undefined)
      : planner.update(removed, added);
    before = checked;
    const kept = planner.plan();
    const text = (r: { dst: string; via: string; node: string }) => `${r.node} ${r.dst} ${r.via}`;
    assert.deepEqual(kept.routes.map(text), fresh.routes.map(text), `round ${round}`);
    assert.equal(kept.routeCount, fresh.routes.length);
    assert.equal(kept.nodeCount, checked.length);
    assert.deepEqual(kept.selfCidrs, fresh.selfCidrs);
    const sorted = (ps: readonly object[]) => ps.map((p) => JSON.stringify(p)).sort();
    assert.deepEqual(sorted(kept.problems), sorted(fresh.problems), `round ${round}`);
    // Where the planner says only some destinations changed, the others must not have.
    const now = new Map(fresh.routes.map((r) => [r.dst, text(r)]));
    if (changes) {
      // Both ways of planning (locally, and over every claim) must tell what they touched.
      if (disjoint && !planner.overlapping) local++;
      const patched = new Map(planned);
      for (const [key, { was, now }] of changes) {
        assert.equal(was && text(was), planned.get(key), `round ${round}: was at ${key}`);
        if (now) patched.set(key, text(now));
        else patched.delete(key);
      }
      assert.deepEqual([...patched].sort(), [...now].sort(), `round ${round}: changes`);
    }
    planned = now;
    const selves = checked.filter((n) => n.self);
    assert.ok(selves.length <= 1);
    if (selves.length === 1) {
      const self = selves[0];
      // Our own node keeps every CIDR it claims, and nothing routed overlaps them.
      assert.deepEqual(fresh.selfCidrs, self.claims.map((c) => c.dst), `round ${round}`);
      for (const r of fresh.routes) {
        const dst = parseCidr(r.dst);
        assert.ok(dst.ok);
        const ours = self.claims.map((c) => parseCidr(c.dst));
        assert.ok(!ours.some((c) => c.ok && cidrsOverlap(c.cidr, dst.cidr)), `${r.dst}`);
      }
      if (fresh.problems.some((p) => p.reason.includes("this router's own node"))) {
        selfConflicts++;
      }
    }
  }
  return { local, selfConflicts };
}

Deno.test("a planner changed node by node equals a plan from nothing, through conflicts that come and go", () => {
  const { selfConflicts } = churn(true);
  assert.ok(selfConflicts > 10, `our own node in conflict in ${selfConflicts} rounds`);
});

Deno.test("a planner changed node by node equals a plan from nothing, also where it plans the change alone", () => {
  const { local } = churn(false);
  // Most rounds are planned from the changed nodes alone; some go through a conflict.
  assert.ok(local > 100, `${local} of 200 rounds planned locally`);
  assert.ok(local < 195, `${local} of 200 rounds planned locally: too few conflicts`);
});
