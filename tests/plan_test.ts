import assert from "node:assert/strict";
import type { NodeInfo } from "../src/kube/node.ts";
import { parseCidr } from "../src/net/ip.ts";
import { type NetworkSource, parseNode } from "../src/routing/node_parse.ts";
import { checkNode, plan, PlanMemo, type PlanRules } from "../src/routing/plan.ts";
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
    uid: name,
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

Deno.test("dual-stack routes to every other node, never our own", () => {
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
      "fd00:10:0:1::/64 via fd00:1::2",
      "10.244.2.0/24 via 192.168.1.3",
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
    "192.168.55.0/26 via 192.168.2.3",
    "fd00:5::1:0/112 via 1000::1:c0a8:203",
    "10.9.0.0/16 via 192.168.2.3",
    "10.9.9.9/32 via 192.168.2.3",
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

Deno.test("another node cannot claim our own CIDR", () => {
  const p = run([
    node("a", {
      creationTimestamp: "2025-01-01T00:00:00Z",
      podCIDRs: ["10.244.0.0/24"],
      internalIPs: ["192.168.1.1"],
    }),
    node("evil", {
      creationTimestamp: "2026-01-01T00:00:00Z",
      podCIDRs: ["10.244.0.0/25"],
      internalIPs: ["192.168.1.66"],
    }),
  ]);
  assert.deepEqual(p.routes, []);
  assert.deepEqual(p.selfCidrs, ["10.244.0.0/24"]);
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

Deno.test("plan with a memo equals plan without, through adds, changes, deletes and conflicts", () => {
  // A small deterministic generator: the same run every time.
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const make = (i: number, v: number) =>
    node(`n${i}`, {
      creationTimestamp: `2026-01-0${1 + rand(3)}T00:00:00Z`,
      // Few distinct CIDRs, so that conflicts come and go.
      podCIDRs: [`10.${rand(4)}.${rand(3)}.0/${23 + rand(2)}`, `fd00:10:0:${rand(6)}::/64`],
      internalIPs: [`192.168.1.${10 + i}`, ...(v % 3 === 0 ? [] : [`fd00:1::${10 + i}`])],
    });
  const memo = new PlanMemo();
  const checkedOf = new Map<NodeInfo, ReturnType<typeof checkNode>>();
  let nodes = Array.from({ length: 40 }, (_, i) => make(i, i));
  for (let round = 0; round < 200; round++) {
    const i = rand(60);
    const at = nodes.findIndex((n) => n.name === `n${i}`);
    if (at >= 0 && rand(3) === 0) nodes = nodes.filter((_, j) => j !== at);
    else if (at >= 0) nodes = nodes.map((n, j) => j === at ? make(i, round) : n);
    else nodes = [...nodes, make(i, round)];
    if (round % 50 === 49) nodes = nodes.map((n, j) => j % 2 ? make(j, round) : n);
    // The informer keeps its order, but a relist may not: the memo must not depend on it.
    if (round % 37 === 36) nodes = [...nodes].reverse();
    if (round % 41 === 40) nodes = nodes.map((n, j) => nodes[j % 2 ? j - 1 : j + 1] ?? n);
    const checked = nodes.map((n) => {
      let c = checkedOf.get(n);
      if (!c) checkedOf.set(n, c = checkNode(parseNode(n, MAIN), RULES, LOCAL));
      return c;
    });
    assert.deepEqual(plan(checked, memo), plan(checked), `round ${round}`);
  }
});
