import assert from "node:assert/strict";
import {
  allocate,
  type AllocInput,
  AllocMemo,
  type AllocNode,
  type Decision,
} from "../src/alloc/allocate.ts";
import { freedCidrs, updateRecentlyFreed } from "../src/alloc/freed.ts";
import {
  MAX_NODE_CIDRS_PER_POOL,
  parsePerNodeHostBits,
  parsePools,
  type Pool,
} from "../src/alloc/pools.ts";
import {
  type Cidr,
  cidrContains,
  cidrsOverlap,
  type Family,
  familyBits,
  formatCidr,
  makeCidr,
  parseCidr,
  splitList,
} from "../src/net/ip.ts";

// ---------------------------------------------------------------------------------------
// Helpers

function cidr(text: string): Cidr {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(`${text}: ${r.reason}`);
  return r.cidr;
}

/** Node `name`, created `minute` minutes into the day (older first). */
function node(name: string, minute: number, annotation?: string): AllocNode {
  const ts = `2026-01-01T${String(Math.floor(minute / 60)).padStart(2, "0")}:${
    String(minute % 60).padStart(2, "0")
  }:00Z`;
  return { name, creationTimestamp: ts, annotation };
}

const POOLS = parsePools("192.168.64.0/18/26,fd00:5::/96/112", undefined);

function decide(
  nodes: readonly AllocNode[],
  pools: readonly Pool[] = POOLS,
  o: Partial<AllocInput> = {},
): Decision {
  return allocate({
    nodes,
    pools,
    recentlyFreed: new Map(),
    now: 1_000_000,
    quarantineMs: 60_000,
    ...o,
  });
}

/** Node name to its new annotation value. */
function values(d: Decision): Record<string, string> {
  return Object.fromEntries(d.updates.map((u) => [u.node, u.value]));
}

/** The nodes with the decision's updates written into their annotations. */
function apply(nodes: readonly AllocNode[], d: Decision): AllocNode[] {
  const v = values(d);
  return nodes.map((n) => n.name in v ? { ...n, annotation: v[n.name] } : n);
}

/** mulberry32: a small seeded PRNG, so that a failing sequence can be repeated. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    let t = (s = (s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(a: readonly T[], random: () => number): T[] {
  const out = a.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Parsing

Deno.test("pools in the double-slash notation, both families, in the order written", () => {
  const pools = parsePools("192.168.64.0/18/26, FD00:5:0::/96/112,10.0.0.0/24/24", undefined);
  assert.deepEqual(
    pools.map((p) => [p.text, p.family, formatCidr(p.cidr), p.nodePrefix, p.count]),
    [
      ["192.168.64.0/18/26", 4, "192.168.64.0/18", 26, 256],
      ["fd00:5::/96/112", 6, "fd00:5::/96", 112, 65536],
      ["10.0.0.0/24/24", 4, "10.0.0.0/24", 24, 1],
    ],
  );
  assert.deepEqual(parsePools("", undefined), []);
  assert.deepEqual(parsePools(" , ", 8), []);
});

Deno.test("plain CIDRs take the same host bits in both families from PER_NODE_HOST_BITS", () => {
  const pools = parsePools("10.0.0.0/16,fd00::/104,10.1.0.0/16/26", 8);
  assert.deepEqual(pools.map((p) => [p.text, p.nodePrefix, p.count]), [
    ["10.0.0.0/16/24", 24, 256],
    ["fd00::/104/120", 120, 65536],
    ["10.1.0.0/16/26", 26, 1024],
  ]);
  assert.equal(parsePools("10.0.0.0/8/28", undefined)[0].count, MAX_NODE_CIDRS_PER_POOL);
});

Deno.test("PER_NODE_HOST_BITS is an integer 4-127 or unset", () => {
  assert.equal(parsePerNodeHostBits(""), undefined);
  assert.equal(parsePerNodeHostBits(" 8 "), 8);
  assert.equal(parsePerNodeHostBits("127"), 127);
  for (const bad of ["3", "128", "8.5", "-8", "eight", "0x8"]) {
    assert.throws(
      () => parsePerNodeHostBits(bad),
      /^Error: expected an integer 4-127$/,
    );
  }
  assert.throws(() => parsePools("10.0.0.0/16", 2), /4-127/);
});

Deno.test("a bad pool is refused naming the entry and what is wrong", () => {
  const cases: [string, number | undefined, string][] = [
    ["10.0.0.300/16/24", undefined, `"10.0.0.300/16/24": not a CIDR: not an IP address`],
    ["10.0.0.0", 8, `"10.0.0.0": not a CIDR: expected ADDRESS/PREFIX or ADDRESS/PREFIX/NODEPREFIX`],
    ["10.0.0.0/16/24/28", undefined, `"10.0.0.0/16/24/28": not a CIDR: expected`],
    ["10.0.0.0/x/24", undefined, `"10.0.0.0/x/24": not a CIDR: prefix is not a number`],
    ["10.0.0.0/33/34", undefined, `"10.0.0.0/33/34": not a CIDR: prefix /33 exceeds 32`],
    ["10.0.0.0/16/x", undefined, `"10.0.0.0/16/x": node prefix "x" is not a number`],
    [
      "10.0.1.0/16/24",
      undefined,
      `"10.0.1.0/16/24": host bits set in 10.0.1.0/16: the canonical form is 10.0.0.0/16/24`,
    ],
    [
      "fd00:5::1/96",
      8,
      `"fd00:5::1/96": host bits set in fd00:5::1/96: the canonical form is fd00:5::/96`,
    ],
    ["10.0.0.0/16/8", undefined, `"10.0.0.0/16/8": node prefix /8 is shorter than the pool's /16`],
    ["10.0.0.0/16/33", undefined, `"10.0.0.0/16/33": node prefix /33 is longer than IPv4's /32`],
    ["fd00::/96/129", undefined, `"fd00::/96/129": node prefix /129 is longer than IPv6's /128`],
    [
      "10.0.0.0/26",
      8,
      `"10.0.0.0/26": PER_NODE_HOST_BITS=8 leaves no room: per-node CIDRs of 8 host bits are ` +
      `larger than the pool, which has 6`,
    ],
    [
      "10.0.0.0/8/29",
      undefined,
      `"10.0.0.0/8/29": 2^21 per-node CIDRs of /29 in /8, more than the 2^20 a pool may hold: ` +
      `make the pool /9 or longer, or the per-node CIDRs /28 or shorter`,
    ],
    [
      "fd00::/64",
      8,
      `"fd00::/64": 2^56 per-node CIDRs of /120 in /64, more than the 2^20 a pool may hold: ` +
      `make the pool /100 or longer, or the per-node CIDRs /84 or shorter`,
    ],
    [
      "10.0.0.0/16/24,fd00::/96/112,10.0.128.0/17/26",
      undefined,
      `"10.0.128.0/17/26": overlaps the pool "10.0.0.0/16/24"; pools must not share addresses`,
    ],
    [
      "fd00::/104/112,fd00::/104/120",
      undefined,
      `"fd00::/104/120": overlaps the pool "fd00::/104/112"`,
    ],
  ];
  for (const [text, bits, message] of cases) {
    assert.throws(() => parsePools(text, bits), (e: Error) => {
      assert.ok(e.message.startsWith(message), `${text}: ${e.message}`);
      return true;
    });
  }
});

Deno.test("a plain CIDR without PER_NODE_HOST_BITS names both variables", () => {
  assert.throws(
    () => parsePools("10.0.0.0/16/24,10.1.0.0/16", undefined),
    (e: Error) => {
      assert.match(e.message, /^"10\.1\.0\.0\/16": /);
      assert.match(e.message, /PER_NODE_HOST_BITS/);
      assert.match(e.message, /CLUSTER_CIDRS/);
      assert.match(e.message, /10\.1\.0\.0\/16\/24/);
      return true;
    },
  );
});

// ---------------------------------------------------------------------------------------
// Allocation

Deno.test("new nodes get the lowest free per-node CIDR of both families in one update", () => {
  const nodes = [node("a", 1), node("b", 2, ""), node("c", 3, "192.168.64.0/26")];
  const d = decide(nodes);
  assert.deepEqual(d.updates, [
    {
      node: "a",
      previous: undefined,
      value: "192.168.64.64/26,fd00:5::/112",
      added: ["192.168.64.64/26", "fd00:5::/112"],
    },
    {
      node: "b",
      previous: "",
      value: "192.168.64.128/26,fd00:5::1:0/112",
      added: ["192.168.64.128/26", "fd00:5::1:0/112"],
    },
    {
      node: "c",
      previous: "192.168.64.0/26",
      value: "192.168.64.0/26,fd00:5::2:0/112",
      added: ["fd00:5::2:0/112"],
    },
  ]);
  assert.deepEqual(d.allocated, [
    "192.168.64.64/26",
    "fd00:5::/112",
    "192.168.64.128/26",
    "fd00:5::1:0/112",
    "fd00:5::2:0/112",
  ]);
  assert.deepEqual(d.problems, []);
  assert.deepEqual(d.pools, [
    { pool: "192.168.64.0/18/26", family: 4, size: 256, used: 3, free: 253, quarantined: 0 },
    { pool: "fd00:5::/96/112", family: 6, size: 65536, used: 3, free: 65533, quarantined: 0 },
  ]);
  // A second decision over the result changes nothing: every node has both families.
  const again = decide(apply(nodes, d));
  assert.deepEqual(again.updates, []);
  assert.deepEqual(again.pools.map((p) => p.used), [3, 3]);
});

Deno.test("the existing annotation is kept byte for byte and appended to", () => {
  const nodes = [
    node("a", 1, "  10.9.0.0/24 "),
    node("b", 2, "FD00:5::7:5/112"),
    node("c", 3, "garbage, "),
    node("d", 4, " "),
    node("e", 5, "10.9.1.0/24,,fd99::/64"),
  ];
  assert.deepEqual(values(decide(nodes)), {
    a: "  10.9.0.0/24 ,fd00:5::/112",
    b: "FD00:5::7:5/112,192.168.64.0/26",
    c: "garbage, 192.168.64.64/26,fd00:5::1:0/112",
    d: " 192.168.64.128/26,fd00:5::2:0/112",
  });
});

Deno.test("a hand-written CIDR inside a pool is adopted and never handed out again", () => {
  const nodes = [
    node("a", 1),
    node("b", 2),
    node("x", 0, "192.168.64.64/26,fd00:5::/112"),
    // Another size, partly over per-node CIDR 2: all of it counts as taken.
    node("y", 5, "192.168.64.160/27,fd00:5::1:8000/113"),
  ];
  const d = decide(nodes);
  assert.deepEqual(values(d), {
    a: "192.168.64.0/26,fd00:5::2:0/112",
    b: "192.168.64.192/26,fd00:5::3:0/112",
  });
  assert.deepEqual(d.pools.map((p) => p.used), [4, 4]);
});

Deno.test("a CIDR outside the pools is kept and no other of its family is given", () => {
  const d = decide([
    node("a", 1, "10.9.0.0/24"),
    node("b", 2, "fd99::/64"),
    node("c", 3, "10.9.1.0/24,fd99:1::/64"),
  ]);
  assert.deepEqual(values(d), {
    a: "10.9.0.0/24,fd00:5::/112",
    b: "fd99::/64,192.168.64.0/26",
  });
});

Deno.test("malformed entries stay; a family with only malformed entries gets a CIDR", () => {
  const d = decide([node("a", 1, "not-a-cidr,10.0.0.300/24,fd00::zz/64,fd00:9::/64")]);
  assert.deepEqual(values(d), {
    a: "not-a-cidr,10.0.0.300/24,fd00::zz/64,fd00:9::/64,192.168.64.0/26",
  });
});

Deno.test("a larger hand-written CIDR blocks every per-node CIDR it overlaps", () => {
  const pools = parsePools("10.0.0.0/16/24", undefined);
  const held = [node("x", 0, "10.0.0.0/22"), node("y", 0, "10.0.5.128/25")];
  const d = decide([...held, node("a", 1), node("b", 2), node("c", 3)], pools);
  assert.deepEqual(d.allocated, ["10.0.4.0/24", "10.0.6.0/24", "10.0.7.0/24"]);
  assert.equal(d.pools[0].used, 5 + 3);
  // A CIDR over the whole pool leaves nothing.
  const all = decide([node("x", 0, "10.0.0.0/8"), node("a", 1)], pools);
  assert.deepEqual(all.allocated, []);
  assert.deepEqual(all.problems, [
    {
      node: "a",
      family: 4,
      kind: "pools-full",
      reason: "pools of IPv4 are full (256 of 256 used)",
    },
  ]);
});

Deno.test("several pools of a family are used in the order written", () => {
  const pools = parsePools("10.1.0.0/24/25,fd00::/120/121,10.0.0.0/24/25", undefined);
  assert.equal(pools.length, 3);
  const nodes = ["a", "b", "c", "d", "e"].map((n, i) => node(n, i));
  const d = decide(nodes, pools);
  assert.deepEqual(d.allocated.filter((c) => c.includes(".")), [
    "10.1.0.0/25",
    "10.1.0.128/25",
    "10.0.0.0/25",
    "10.0.0.128/25",
  ]);
  assert.deepEqual(values(d).e, undefined);
  assert.deepEqual(d.problems, [
    { node: "c", family: 6, kind: "pools-full", reason: "pools of IPv6 are full (2 of 2 used)" },
    { node: "d", family: 6, kind: "pools-full", reason: "pools of IPv6 are full (2 of 2 used)" },
    { node: "e", family: 4, kind: "pools-full", reason: "pools of IPv4 are full (4 of 4 used)" },
    { node: "e", family: 6, kind: "pools-full", reason: "pools of IPv6 are full (2 of 2 used)" },
  ]);
  assert.deepEqual(
    d.pools.map((p) => [p.pool, p.used, p.free]),
    [["10.1.0.0/24/25", 2, 0], ["fd00::/120/121", 2, 0], ["10.0.0.0/24/25", 2, 0]],
  );
});

Deno.test("a full pool is reported, and the node is served once a node is deleted", () => {
  const pools = parsePools("10.0.0.0/24/25", undefined);
  let nodes = [node("a", 1), node("b", 2), node("c", 3)];
  const first = decide(nodes, pools);
  assert.deepEqual(values(first), { a: "10.0.0.0/25", b: "10.0.0.128/25" });
  assert.deepEqual(first.problems, [
    { node: "c", family: 4, kind: "pools-full", reason: "pools of IPv4 are full (2 of 2 used)" },
  ]);
  nodes = apply(nodes, first);
  // Nothing changed: still full, still reported.
  assert.deepEqual(decide(nodes, pools).problems, first.problems);
  const after = nodes.filter((n) => n.name !== "a");
  const recentlyFreed = updateRecentlyFreed(new Map(), nodes, after, 2_000_000, 60_000);
  assert.deepEqual([...recentlyFreed], [["10.0.0.0/25", 2_000_000]]);
  // Freed a moment ago, but the last one free: handed out at once.
  const later = decide(after, pools, { recentlyFreed, now: 2_000_001 });
  assert.deepEqual(values(later), { c: "10.0.0.0/25" });
  assert.deepEqual(later.problems, []);
});

Deno.test("a recently freed CIDR is the last choice until its quarantine ends", () => {
  const pools = parsePools("10.0.0.0/24/26,10.0.1.0/24/26", undefined);
  const held = [node("a", 1, "10.0.0.0/26"), node("c", 3, "10.0.0.128/26")];
  const recentlyFreed = new Map([["10.0.0.64/26", 1_000], ["10.0.1.0/26", 30_000]]);
  const at = (now: number, more: AllocNode[]) =>
    decide([...held, ...more], pools, { recentlyFreed, now, quarantineMs: 60_000 });
  const newNodes = ["e", "f", "g", "h", "i", "j", "k", "l"].map((n, i) => node(n, 10 + i));
  const d = at(50_000, newNodes);
  assert.deepEqual(d.allocated, [
    "10.0.0.192/26",
    "10.0.1.64/26",
    "10.0.1.128/26",
    "10.0.1.192/26",
    // Nothing else is free in any pool: the quarantined ones, lowest first.
    "10.0.0.64/26",
    "10.0.1.0/26",
  ]);
  assert.deepEqual(d.problems.map((p) => p.node), ["k", "l"]);
  // Before that: the stats count the quarantined free ones.
  assert.deepEqual(
    at(50_000, []).pools.map((p) => [p.free, p.quarantined]),
    [[2, 1], [4, 1]],
  );
  // 10.0.0.64/26 was freed at 1,000: at 61,000 its quarantine is over, 10.0.1.0/26's is not.
  assert.deepEqual(at(61_000, newNodes.slice(0, 2)).allocated, ["10.0.0.64/26", "10.0.0.192/26"]);
  assert.deepEqual(at(61_000, []).pools.map((p) => p.quarantined), [0, 1]);
  // A freed CIDR that a node holds again is simply taken.
  assert.deepEqual(
    decide([node("z", 0, "10.0.0.64/26"), node("e", 9)], pools, { recentlyFreed, now: 50_000 })
      .allocated,
    ["10.0.0.0/26"],
  );
});

Deno.test("nodes are served oldest first, then by name, whatever the input order", () => {
  const random = rng(7);
  const nodes: AllocNode[] = [];
  for (let i = 0; i < 60; i++) {
    const minute = Math.floor(random() * 20);
    const held = random() < 0.3 ? `192.168.64.${Math.floor(random() * 4) * 64}/26` : undefined;
    nodes.push(node(`n${i}`, minute, held));
  }
  nodes.push({ name: "undated", creationTimestamp: "", annotation: undefined });
  nodes.push({
    name: "zzz-oldest",
    creationTimestamp: "2025-12-31T23:59:59Z",
    annotation: "fd00:5::/112",
  });
  const first = decide(nodes);
  for (let round = 0; round < 10; round++) {
    assert.deepEqual(decide(shuffle(nodes, random)), first);
  }
  assert.equal(first.updates[0].node, "zzz-oldest");
  assert.equal(first.updates.at(-1)?.node, "undated");
  const order = first.updates.map((u) => nodes.find((n) => n.name === u.node)!);
  for (let i = 1; i < order.length - 1; i++) {
    const [a, b] = [order[i - 1], order[i]];
    assert.ok(
      a.creationTimestamp < b.creationTimestamp ||
        (a.creationTimestamp === b.creationTimestamp && a.name < b.name),
      `${a.name} before ${b.name}`,
    );
  }
  // The lowest free IPv6 CIDRs went to the oldest nodes in order.
  const v6 = first.updates.flatMap((u) => u.added.filter((c) => c.includes(":")));
  assert.deepEqual(v6.slice(0, 3), ["fd00:5::1:0/112", "fd00:5::2:0/112", "fd00:5::3:0/112"]);
});

Deno.test("an annotation with no room left gets a problem and spends no CIDR", () => {
  const many = Array.from({ length: 63 }, (_, i) => `bad${i}`).join(",");
  // 62 malformed and one IPv6: room for exactly one more item.
  const fewer = Array.from({ length: 62 }, (_, i) => `bad${i}`).join(",");
  const long = "x".repeat(8190);
  const d = decide([
    node("a", 1, many),
    node("b", 2, `${fewer},fd00:9::/64`),
    node("c", 3, long),
    node("d", 4),
  ]);
  assert.deepEqual(
    d.problems.map((p) => [p.node, p.family, p.kind]),
    [["a", 4, "annotation-full"], ["a", 6, "annotation-full"], ["c", 4, "annotation-full"], [
      "c",
      6,
      "annotation-full",
    ]],
  );
  assert.match(d.problems[0].reason, /63 items.*64 items of 8192 characters at most/);
  assert.deepEqual(values(d), {
    b: `${fewer},fd00:9::/64,192.168.64.0/26`,
    d: "192.168.64.64/26,fd00:5::/112",
  });
  const over = decide([node("e", 1, "192.168.64.0/26," + "y".repeat(9000)), node("f", 2)]);
  assert.match(over.problems[0].reason, /longer than 8192 characters/);
  // Its CIDR is not read by the router, but it is still never handed out beside it.
  assert.deepEqual(values(over), { f: "192.168.64.64/26,fd00:5::/112" });
});

// ---------------------------------------------------------------------------------------
// Freed CIDRs

Deno.test("a CIDR is freed when no node holds it any more", () => {
  const before = [
    node("a", 1, "10.0.1.0/24,fd00::1:0/112"),
    node("b", 2, "10.0.2.0/24"),
    node("c", 3, "10.0.3.5/24,junk"),
    node("d", 4, "10.0.4.0/24"),
  ];
  const after = [
    // Lost its IPv6 CIDR by a hand edit.
    node("a", 1, "10.0.1.0/24"),
    // b is deleted, but e holds its CIDR in another spelling.
    node("c", 3, "junk"),
    node("d", 4, "10.0.4.0/24"),
    node("e", 5, "10.0.2.0/24 "),
  ];
  assert.deepEqual(freedCidrs(before, after), ["fd00::1:0/112", "10.0.3.0/24"]);
  assert.deepEqual(freedCidrs(before, before), []);
  const old = new Map([["10.0.9.0/24", 0], ["10.0.8.0/24", 50_000], ["10.0.3.0/24", 10_000]]);
  const next = updateRecentlyFreed(old, before, after, 70_000, 60_000);
  assert.deepEqual(
    [...next].sort(),
    [["10.0.3.0/24", 70_000], ["10.0.8.0/24", 50_000], ["fd00::1:0/112", 70_000]],
  );
  assert.equal(old.size, 3, "the old map is not changed");
});

// ---------------------------------------------------------------------------------------
// Random sequences against a brute-force model

/** Every per-node CIDR of a pool, one by one: only for the small pools of the model. */
function slots(pool: Pool): Cidr[] {
  const step = BigInt(familyBits(pool.family) - pool.nodePrefix);
  return Array.from(
    { length: pool.count },
    (_, i) => makeCidr(pool.family, pool.cidr.value + (BigInt(i) << step), pool.nodePrefix),
  );
}

function heldBy(n: AllocNode): Cidr[] {
  const out: Cidr[] = [];
  for (const item of splitList(n.annotation ?? "")) {
    const r = parseCidr(item);
    if (r.ok) out.push(r.cidr);
  }
  return out;
}

/** The rules of allocate.ts written the slow way: every per-node CIDR tested one by one. */
function model(input: AllocInput): { allocated: string[]; full: string[] } {
  const held = input.nodes.flatMap(heldBy);
  const quarantined = [...input.recentlyFreed]
    .filter(([, t]) => input.now - t < input.quarantineMs)
    .map(([c]) => cidr(c));
  const given: Cidr[] = [];
  const allocated: string[] = [], full: string[] = [];
  const order = input.nodes.slice().sort((a, b) =>
    (a.creationTimestamp || "\uffff").localeCompare(b.creationTimestamp || "\uffff") ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  for (const n of order) {
    const has = new Set(heldBy(n).map((c) => c.family));
    for (const family of [4, 6] as Family[]) {
      const pools = input.pools.filter((p) => p.family === family);
      if (pools.length === 0 || has.has(family)) continue;
      const free = pools.flatMap(slots).filter((s) =>
        !held.some((h) => cidrsOverlap(h, s)) && !given.some((g) => cidrsOverlap(g, s))
      );
      const pick = free.find((s) => !quarantined.some((q) => cidrsOverlap(q, s))) ?? free[0];
      if (pick === undefined) {
        full.push(`${n.name}/${family}`);
      } else {
        given.push(pick);
        allocated.push(formatCidr(pick));
      }
    }
  }
  return { allocated, full };
}

Deno.test("random joins, deletes and hand edits: no overlap, everyone served while there is room", () => {
  const pools = parsePools("10.0.0.0/26/29,10.0.1.0/27/29,fd00::/120/124", undefined);
  const Q = 60_000;
  const handWritten = [
    () => `10.0.0.${8 * Math.floor(random() * 8)}/29`,
    () => `10.0.${Math.floor(random() * 2)}.${16 * Math.floor(random() * 16)}/28`,
    () => `10.0.0.${4 * Math.floor(random() * 16)}/30`,
    () => `10.0.1.${Math.floor(random() * 32)}`,
    () => `10.9.${Math.floor(random() * 256)}.0/24`,
    () => `fd00::${(16 * Math.floor(random() * 16)).toString(16)}/124`,
    () => `fd00::${(64 * Math.floor(random() * 4)).toString(16)}/122`,
    () => `fd99:${Math.floor(random() * 100)}::/64`,
  ];
  let random = rng(1);
  const totals = { allocated: 0, full: 0, lastChoice: 0, handWritten: 0, deleted: 0 };
  for (const seed of [1, 2, 3]) {
    random = rng(seed);
    let nodes: AllocNode[] = [];
    let recentlyFreed: ReadonlyMap<string, number> = new Map();
    const memo = new AllocMemo();
    let now = 0;
    let joined = 0;
    /** A hand-written CIDR that overlaps nothing any node holds, or undefined. */
    const freeHandWritten = (): string | undefined => {
      const text = handWritten[Math.floor(random() * handWritten.length)]();
      const c = cidr(text);
      const clash = nodes.some((n) => heldBy(n).some((h) => cidrsOverlap(h, c)));
      return clash ? undefined : text;
    };
    for (let step = 0; step < 300; step++) {
      const before = nodes;
      now += 1_000;
      const roll = random();
      // Around the 12 IPv4 and 16 IPv6 per-node CIDRs, so that the pools fill and drain.
      const joinChance = nodes.length < 12 ? 0.5 : nodes.length < 18 ? 0.3 : 0.1;
      if (roll < joinChance || nodes.length === 0) {
        joined++;
        const kind = random();
        let annotation: string | undefined;
        if (kind < 0.1) annotation = "";
        else if (kind < 0.2) annotation = "junk";
        else if (kind < 0.3) annotation = freeHandWritten();
        if (annotation !== undefined && annotation !== "" && annotation !== "junk") {
          totals.handWritten++;
        }
        // Some nodes share a creation time; names are not in joining order.
        const minute = joined - (random() < 0.3 ? 1 : 0);
        nodes = [...nodes, node(`n${Math.floor(random() * 1e6)}-${joined}`, minute, annotation)];
      } else if (roll < joinChance + 0.3) {
        const victim = nodes[Math.floor(random() * nodes.length)];
        nodes = nodes.filter((n) => n !== victim);
        totals.deleted++;
      } else if (roll < joinChance + 0.45) {
        const i = Math.floor(random() * nodes.length);
        const n = nodes[i];
        const edit = random();
        let annotation = n.annotation;
        if (edit < 0.4) {
          // The IPv4 CIDRs are removed by hand: the node gets a new one.
          annotation = splitList(n.annotation ?? "").filter((t) => !/^[0-9.]+(\/|$)/.test(t))
            .join(",");
        } else if (edit < 0.6) {
          annotation = `${n.annotation ?? ""},bad/99`;
        } else {
          const text = freeHandWritten();
          if (text !== undefined) {
            annotation = n.annotation ? `${n.annotation},${text}` : text;
            totals.handWritten++;
          }
        }
        nodes = nodes.map((m, j) => j === i ? { ...m, annotation } : m);
      } else {
        now += Math.floor(random() * 2 * Q);
      }
      recentlyFreed = updateRecentlyFreed(recentlyFreed, before, nodes, now, Q);

      const input: AllocInput = { nodes, pools, recentlyFreed, now, quarantineMs: Q };
      const d = allocate({ ...input, memo });
      const where = `seed ${seed} step ${step}`;
      assert.deepEqual(d, allocate(input), `${where}: the memo changed the decision`);
      const expected = model(input);
      assert.deepEqual(d.allocated, expected.allocated, where);
      assert.deepEqual(
        d.problems.map((p) => `${p.node}/${p.family}`),
        expected.full,
        where,
      );
      for (const u of d.updates) {
        assert.ok(u.value.startsWith(u.previous ?? ""), `${where}: ${u.node} rewritten`);
        for (const text of u.added) {
          const c = cidr(text);
          assert.ok(
            pools.some((p) => p.nodePrefix === c.prefix && cidrContains(p.cidr, c)),
            `${where}: ${text} is no per-node CIDR of a pool`,
          );
        }
      }
      const quarantined = [...recentlyFreed]
        .filter(([, t]) => now - t < Q)
        .map(([c]) => cidr(c));
      const usedLast = d.allocated.some((a) => quarantined.some((q) => cidrsOverlap(q, cidr(a))));
      if (usedLast) {
        totals.lastChoice++;
        // Only once nothing else of the family was left.
        for (const text of d.allocated) {
          const family = cidr(text).family;
          const stats = d.pools.filter((p) => p.family === family);
          const othersFree = stats.reduce((s, p) => s + p.free - p.quarantined, 0);
          if (quarantined.some((q) => cidrsOverlap(q, cidr(text)))) {
            assert.equal(othersFree, 0, `${where}: ${text} handed out from quarantine too early`);
          }
        }
      }
      totals.allocated += d.allocated.length;
      totals.full += d.problems.length;
      nodes = apply(nodes, d);

      // No two nodes hold overlapping CIDRs.
      const all = nodes.flatMap((n) => heldBy(n).map((c) => ({ n: n.name, c })));
      for (let i = 0; i < all.length; i++) {
        for (let j = i + 1; j < all.length; j++) {
          if (all[i].n !== all[j].n) {
            assert.ok(
              !cidrsOverlap(all[i].c, all[j].c),
              `${where}: ${all[i].n} ${formatCidr(all[i].c)} overlaps ${all[j].n} ${
                formatCidr(all[j].c)
              }`,
            );
          }
        }
      }
      // Every node has both families, unless its family's pools are full.
      const held = all.map((h) => h.c);
      pools.forEach((pool, p) => {
        const free = slots(pool).filter((s) => !held.some((h) => cidrsOverlap(h, s)));
        assert.equal(d.pools[p].free, free.length, `${where}: free of ${pool.text}`);
        assert.equal(
          d.pools[p].quarantined,
          free.filter((s) => quarantined.some((q) => cidrsOverlap(q, s))).length,
          `${where}: quarantined of ${pool.text}`,
        );
      });
      for (const n of nodes) {
        const has = new Set(heldBy(n).map((c) => c.family));
        for (const family of [4, 6] as Family[]) {
          if (has.has(family)) continue;
          assert.ok(
            d.problems.some((p) => p.node === n.name && p.family === family),
            `${where}: ${n.name} has no IPv${family} and no problem`,
          );
          const free = d.pools.filter((p) => p.family === family).reduce((s, p) => s + p.free, 0);
          assert.equal(free, 0, `${where}: ${n.name} left without IPv${family} while free`);
        }
      }
    }
  }
  console.log(`alloc random sequences: ${JSON.stringify(totals)}`);
  // The sequences did reach every case.
  for (const [what, count] of Object.entries(totals)) assert.ok(count > 0, what);
});

// ---------------------------------------------------------------------------------------
// Scale

/** Runs `f` `times` times: the first run's ms (the code still cold), the median's, the result. */
function timed<T>(times: number, f: () => T): { first: string; median: string; result: T } {
  const ms: number[] = [];
  let result: T | undefined;
  for (let i = 0; i < times; i++) {
    const t = performance.now();
    result = f();
    ms.push(performance.now() - t);
  }
  const first = ms[0];
  ms.sort((a, b) => a - b);
  return { first: first.toFixed(1), median: ms[times >> 1].toFixed(1), result: result! };
}

Deno.test("scale: 5,000 nodes in pools of 16,384, and a pool of 2^20", () => {
  const pools = parsePools("10.0.0.0/10/24,fd00::/98/112", undefined);
  assert.deepEqual(pools.map((p) => p.count), [16384, 16384]);
  const fresh = Array.from({ length: 5000 }, (_, i) => node(`node-${i}`, i % 1440));
  const all = timed(5, () => decide(fresh, pools));
  const first = all.result;
  assert.equal(first.updates.length, 5000);
  assert.equal(new Set(first.allocated).size, 10000);
  assert.deepEqual(first.pools.map((p) => p.used), [5000, 5000]);

  const joined = [
    ...apply(fresh, first),
    ...Array.from({ length: 10 }, (_, i) => node(`new-${i}`, 2000 + i)),
  ];
  const plain = timed(5, () => decide(joined, pools));
  const memo = new AllocMemo();
  const memoized = timed(5, () => decide(joined, pools, { memo }));
  assert.deepEqual(memoized.result, plain.result);
  const steady = plain.result;
  assert.deepEqual(steady.updates.map((u) => u.node), joined.slice(5000).map((n) => n.name));
  // 5,000 /24s from 10.0.0.0/10: the next is number 5000 = 19 * 256 + 136.
  assert.equal(steady.allocated[0], "10.19.136.0/24");
  assert.equal(steady.allocated[1], "fd00::1388:0/112");

  // 2^20 per-node CIDRs; 5,000 nodes hold scattered ones, 100 more join.
  const big = parsePools("10.0.0.0/8/28", undefined);
  assert.equal(big[0].count, 2 ** 20);
  const random = rng(42);
  const taken = new Set<number>();
  while (taken.size < 5000) taken.add(Math.floor(random() * 2 ** 20 * random()));
  const toText = (i: number) => `10.${(i >> 12) & 255}.${(i >> 4) & 255}.${(i & 15) << 4}/28`;
  const holders = [...taken].map((i, k) => node(`h-${k}`, k % 1440, toText(i)));
  const joining = Array.from({ length: 100 }, (_, i) => node(`j-${i}`, 1500 + i));
  const heapBefore = Deno.memoryUsage().heapUsed;
  const wide = timed(5, () => decide([...holders, ...joining], big));
  const heapDelta = Deno.memoryUsage().heapUsed - heapBefore;
  const expected: string[] = [];
  for (let i = 0; expected.length < 100; i++) if (!taken.has(i)) expected.push(toText(i));
  assert.deepEqual(wide.result.allocated, expected);
  assert.deepEqual(wide.result.pools[0], {
    pool: "10.0.0.0/8/28",
    family: 4,
    size: 2 ** 20,
    used: 5100,
    free: 2 ** 20 - 5100,
    quarantined: 0,
  });
  const line = (what: string, t: { first: string; median: string }) =>
    `${what} ${t.first} ms first, ${t.median} ms median`;
  console.log(
    [
      "alloc at 5,000 nodes, pools of 16,384:",
      line("  10,000 CIDRs to 5,000 new nodes:", all),
      line("  10 joining, 5,000 holding:", plain),
      line("  the same with an AllocMemo:", memoized),
      line("  pool of 2^20, 5,000 holding, 100 joining:", wide),
      `  heap after those 5 decisions: ${(heapDelta / 1e6).toFixed(1)} MB more`,
    ].join("\n"),
  );
});

Deno.test("the text of a handed-out CIDR is the canonical one", () => {
  for (
    const text of [
      "1:0:0:1::/108/112",
      "::/124/128",
      "fd00:0:0:1::/76/80",
      "fd00::/100/120",
      "2001:db8:0:0:1::/92/96",
      "255.255.0.0/16/24",
      "0.0.0.0/24/32",
    ]
  ) {
    const [pool] = parsePools(text, undefined);
    const n = Math.min(pool.count, 300);
    const d = decide(
      Array.from({ length: n }, (_, i) => node(`n${String(i).padStart(3, "0")}`, 1)),
      [pool],
    );
    const step = BigInt(familyBits(pool.family) - pool.nodePrefix);
    assert.deepEqual(
      d.allocated,
      Array.from(
        { length: n },
        (_, i) =>
          formatCidr(makeCidr(pool.family, pool.cidr.value + (BigInt(i) << step), pool.nodePrefix)),
      ),
      text,
    );
  }
});
