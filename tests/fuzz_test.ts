/**
 * Fuzzing what nodes and runtimes hand us.
 *
 * 1. 10,000 random and adversarial annotation values (garbage bytes, 1 MB strings, lookalike
 *    digits, IPv4-mapped and embedded IPv4, zones, odd whitespace and commas, leading zeros,
 *    octal and hex forms, hundreds and thousands of items, prefixes /-5../135) through the pure
 *    parse and plan, checked against rules re-stated here with the src/net/ip.ts helpers.
 * 2. 200 such nodes through the embedded API server and the daemon: the kernel never holds a
 *    route outside ALLOWED_CIDRS (needs root).
 * 3. Random stdin and environments for kube-node, in process and through the real program:
 *    always CNI error JSON with a well-known code, exit status 1, never a stack trace.
 *
 * The PRNG is seeded; the seed is printed. Repeat a run with FUZZ_SEED=<seed>.
 */
import assert from "node:assert/strict";
import { makeNode } from "../src/devcluster/nodes.ts";
import type { NodeInfo } from "../src/kube/node.ts";
import {
  type Cidr,
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIp,
  makeCidr,
  parseCidr,
  parseIp,
  splitList,
} from "../src/net/ip.ts";
import {
  MAX_ITEMS_PER_NODE,
  MAX_VALUE_LENGTH,
  type NetworkSource,
  parseNode,
} from "../src/routing/node_parse.ts";
import { checkNode, type PlanRules } from "../src/routing/check.ts";
import { plan } from "../src/routing/plan.ts";
import { describeProblem, type Problem } from "../src/routing/problem.ts";
import type { LocalAddress, Route } from "../src/routing/types.ts";
import { kubeNodePlugin } from "../cni/kube_node.ts";
import { runPlugin } from "../cni/skel.ts";
import { CniCode } from "../cni/errors.ts";
import { pollUntil, requireRoot } from "./helpers/netns.ts";
import { cluster, daemon, kernelRoutes, NET3, RouteWatch } from "./helpers/router.ts";
import { IGNORE_CNI, makeCniBin } from "./helpers/cni.ts";
import { execWithStdin } from "./helpers/tools.ts";

const SEED = Number(Deno.env.get("FUZZ_SEED") ?? Math.floor(Math.random() * 2 ** 31));
console.log(`fuzz seed ${SEED} (repeat with FUZZ_SEED=${SEED})`);

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(a: readonly T[]): T {
    return a[this.int(a.length)];
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

// ---------------------------------------------------------------------------------------
// Generators

const V4_POOLS: ((r: Rng) => string)[] = [
  (r) => [r.int(256), r.int(256), r.int(256), r.int(256)].join("."),
  (r) => `10.${r.int(256)}.${r.int(256)}.${r.int(256)}`,
  (r) => `10.55.${r.int(256)}.0`,
  (r) => `192.168.1.${r.int(256)}`, // this host's LAN
  (r) => `127.${r.int(256)}.0.${r.int(3)}`,
  (r) => `169.254.${r.int(256)}.${r.int(256)}`,
  (r) => `${r.range(224, 255)}.${r.int(256)}.0.${r.int(256)}`,
  (r) => `0.0.${r.int(3)}.0`,
];

const V6_POOLS: ((r: Rng) => string)[] = [
  (r) => Array.from({ length: 8 }, () => r.int(65536).toString(16)).join(":"),
  (r) => `fd00:55::${r.int(65536).toString(16)}:0`,
  (r) => `fd00:1::${r.int(65536).toString(16)}`, // this host's LAN
  (r) => r.pick(["::", "::1", "fe80::1", "ff02::1", "fe80::", "ff00::", "2001:db8::"]),
  (r) => `::ffff:${v4(r)}`,
  (r) => `::${v4(r)}`,
  (r) => `64:ff9b::${v4(r)}`,
  (r) => `2001:db8:${r.int(65536).toString(16)}::${r.int(65536).toString(16)}`,
  (r) => `${r.int(65536).toString(16)}::`,
];

function v4(r: Rng): string {
  return r.pick(V4_POOLS)(r);
}

function v6(r: Rng): string {
  return r.pick(V6_POOLS)(r);
}

function prefixText(r: Rng, family: 4 | 6): string {
  const max = family === 4 ? 32 : 128;
  switch (r.int(10)) {
    case 0:
      return "";
    case 1:
      return `/${r.range(-5, 135)}`;
    case 2:
      return `/${
        r.pick(["", "-1", "+8", "08", "0x8", "8.0", "1e1", " 8", "8 ", "٨", "８", "0", "00"])
      }`;
    case 3:
      return `/${r.int(max + 1)}`;
    default:
      return `/${family === 4 ? r.range(8, 32) : r.range(32, 128)}`;
  }
}

function cidr(r: Rng): string {
  return r.chance(0.55) ? v4(r) + prefixText(r, 4) : v6(r) + prefixText(r, 6);
}

const LOOKALIKE: Record<string, string[]> = {
  ".": ["．", "。", "․", "｡", "\u2024"],
  "/": ["∕", "／", "⁄", "\u2215"],
  ":": ["：", "꞉", "\u02d0"],
  ",": ["，", "、", "\u201a"],
};

function lookalike(r: Rng, s: string): string {
  let out = "";
  for (const ch of s) {
    if (!r.chance(0.3)) {
      out += ch;
    } else if (ch >= "0" && ch <= "9") {
      const d = ch.charCodeAt(0) - 48;
      // Fullwidth, Arabic-Indic, Devanagari, mathematical bold (astral), superscript one.
      const base = r.pick([0xff10, 0x0660, 0x0966, 0x1d7ce, 0x2070]);
      out += String.fromCodePoint(base === 0x2070 && d === 1 ? 0xb9 : base + d);
    } else {
      out += LOOKALIKE[ch] ? r.pick(LOOKALIKE[ch]) : ch;
    }
  }
  return out;
}

function garbage(r: Rng, n: number): string {
  switch (r.int(3)) {
    case 0: // bytes through a lossy UTF-8 decode
      return new TextDecoder().decode(Uint8Array.from({ length: n }, () => r.int(256)));
    case 1: // any UTF-16 code unit: lone surrogates, NUL, controls
      return String.fromCharCode(...Array.from({ length: n }, () => r.int(65536)));
    default: // the alphabet of addresses, shuffled
      return Array.from({ length: n }, () => r.pick([..."0123456789abcdefABCDEF.:/%,- x"])).join(
        "",
      );
  }
}

const ODD_SPACE = [" ", "\t", "\n", "\r", "\u00a0", "\u200b", "\ufeff", "\u3000", ",", ",,", ", ,"];

function mutate(r: Rng, s: string): string {
  const chars = [...s];
  for (let k = r.range(1, 4); k > 0; k--) {
    const at = r.int(chars.length + 1);
    switch (r.int(4)) {
      case 0:
        chars.splice(at, 1);
        break;
      case 1:
        chars.splice(at, 0, r.pick(ODD_SPACE));
        break;
      case 2:
        chars.splice(at, 0, garbage(r, 1));
        break;
      default:
        chars.splice(at, 1, r.pick([..."0123456789:./%"]));
    }
  }
  return chars.join("");
}

const ODD_FORMS = [
  "010.001.000.000/16",
  "10.1.0.0/016",
  "0x0a.0.0.0/8",
  "0xa000000/8",
  "012.0.0.0/8",
  "10.1/16",
  "10/8",
  "167772160/8",
  "10.0.0.0/0x8",
  "10.0.0.0/+8",
  "10.0.0.0/-8",
  "-10.0.0.0/8",
  "1e1.0.0.0/8",
  "10.0.0.0/8/8",
  "10.0.0.0//8",
  "10.0.0.0.0/8",
  "10.0.0.256/32",
  "::ffff:0.0.0.0/96",
  "::ffff:0:0/96",
  "::ffff:127.0.0.1",
  "::ffff:7f00:1/128",
  "0:0:0:0:0:ffff:192.168.1.7",
  "::ffff:10.55.0.0/112",
  "::ffff:10.0.0.0/100",
  "::ffff:1.2.3",
  "1::2:3:4:5:6:1.2.3.4",
  "::1.2.3.4.5",
  "fe80::1%eth0/64",
  "10.55.1.0%eth0/24",
  "fd00:55::1%25lo",
  "%",
  "fd00:55:::1/64",
  "fd00:55::1::/64",
  "fd00:55:0:0:0:0:0:0:1/128",
  "fd00:55::10000/128",
  "[fd00:55::]/64",
  "fd00:55::/64\u0000",
  "0.0.0.0/0",
  "::/0",
  "0.0.0.0/1",
  "128.0.0.0/1",
  "::/1",
  "8000::/1",
  "10.55.7.0/33",
  "fd00:55::/129",
  "10.55.7.0/4294967328",
  "10.55.7.0/",
  "/24",
  "255.255.255.255/32",
  "224.0.0.0/4",
  "ff02::/16",
  "fe80::/64",
  "169.254.169.254/32",
  "127.0.0.0/8",
  "192.168.1.0/24",
  "192.168.0.0/16",
  "fd00:1::/48",
];

/** Values of 1 MB: one character repeated, a valid list, garbage. */
const HUGE = [
  "x".repeat(1 << 20),
  "10.55.1.0/24,".repeat(Math.ceil((1 << 20) / 13)),
  Array.from({ length: 1 << 10 }, (_, i) => garbage(new Rng(i), 1 << 10)).join(""),
];

/** One adversarial annotation value for the CIDRs. */
function cidrValue(r: Rng): string {
  switch (r.int(16)) {
    case 0:
      return garbage(r, r.int(300));
    case 1: // 1 MB and more (made once: the point is their size, not a new copy each time)
      return r.pick(HUGE) + (r.chance(0.5) ? "" : cidr(r));
    case 2: { // exactly at and just over the length limit
      const unit = "10.55.3.0/24,";
      const s = unit.repeat(Math.ceil(MAX_VALUE_LENGTH / unit.length)).slice(0, MAX_VALUE_LENGTH);
      return r.chance(0.5) ? s : s + "1";
    }
    case 3:
      return lookalike(r, Array.from({ length: r.range(1, 4) }, () => cidr(r)).join(","));
    case 4: // hundreds of items (over the cap of 64), thousands of items (over the length)
      return Array.from({ length: r.pick([65, 200, 700, 3000]) }, () => cidr(r)).join(",");
    case 5:
      return Array.from({ length: r.range(1, 6) }, () => r.pick(ODD_FORMS)).join(",");
    case 6: { // odd whitespace and commas around and inside items
      const items = Array.from({ length: r.range(1, 5) }, () => cidr(r));
      return items.map((x) => r.pick(ODD_SPACE) + (r.chance(0.3) ? mutate(r, x) : x))
        .join(r.pick([",", ", ", " ,", ",,", "\n,", ",\t"])) + r.pick(ODD_SPACE);
    }
    case 7:
      return mutate(r, Array.from({ length: r.range(1, 4) }, () => cidr(r)).join(","));
    case 8:
      return "";
    default: // mostly well-formed lists: the routes that do get through are checked too
      return Array.from({ length: r.range(1, 8) }, () => cidr(r)).join(",");
  }
}

/** One adversarial value for the addresses (next hops). */
function addressValue(r: Rng, lan4: () => string, lan6: () => string): string {
  const items: string[] = [];
  for (let k = r.range(0, 4); k > 0; k--) {
    items.push(
      r.pick([
        () => v4(r),
        () => v6(r),
        () => r.pick(["192.168.1.1", "fd00:1::1", "127.0.0.1", "::", "0.0.0.0", "224.0.0.1"]),
        () => cidr(r),
        () => garbage(r, r.int(30)),
        () => lookalike(r, lan4()),
        () => `${lan6()}%eth0`,
        () => `::ffff:${lan4()}`,
        () => mutate(r, lan4()),
      ])(),
    );
  }
  if (r.chance(0.7)) items.push(lan4());
  if (r.chance(0.6)) items.push(lan6());
  if (r.chance(0.3)) items.push(r.pick(["192.168.1.1", "fd00:1::1", "127.0.0.1", "ff02::1"]));
  if (r.chance(0.02)) return "192.168.1.9,".repeat(r.pick([65, 1000, 100_000]));
  return items.join(r.pick([",", ", ", " , "]));
}

// ---------------------------------------------------------------------------------------
// The rules, re-stated: what may be routed at all

const SPECIAL = [
  "0.0.0.0/8",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "::/128",
  "::1/128",
  "fe80::/10",
  "ff00::/8",
].map(mustCidr);

function mustCidr(text: string): Cidr {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(text);
  return r.cidr;
}

function localNets(local: readonly LocalAddress[]): Cidr[] {
  return local.map((a) => {
    const ip = parseIp(a.address)!;
    return makeCidr(ip.family, ip.value, a.prefix);
  });
}

/** Why a planned route breaks the rules, or "" when it keeps them. */
function breaks(route: Route, rules: PlanRules, local: readonly LocalAddress[]): string {
  const r = parseCidr(route.dst);
  if (!r.ok) return `dst ${route.dst} does not parse`;
  const c = r.cidr;
  if (formatCidr(c) !== route.dst) return `dst ${route.dst} is not canonical`;
  if (c.family !== route.family) return "family";
  if (c.prefix === 0) return "default route";
  if (rules.allowedCidrs.length > 0) {
    if (!rules.allowedCidrs.some((a) => a.family === c.family && cidrContains(a, c))) {
      return "outside ALLOWED_CIDRS";
    }
  } else if (c.prefix < (c.family === 4 ? rules.minPrefixV4 : rules.minPrefixV6)) {
    return "prefix too short";
  }
  if (SPECIAL.some((s) => cidrsOverlap(s, c))) return "special range";
  if (localNets(local).some((n) => cidrsOverlap(n, c))) return "over a local network";
  const via = parseIp(route.via);
  if (!via || formatIp(via) !== route.via) return `via ${route.via} not canonical`;
  if (via.family !== c.family) return "next hop of the other family";
  if (
    SPECIAL.some((s) =>
      cidrContains(s, makeCidr(via.family, via.value, via.family === 4 ? 32 : 128))
    )
  ) {
    return "next hop in a special range";
  }
  if (local.some((a) => a.address === route.via)) return "next hop is ours";
  if (route.node === rules.selfName) return "route to ourselves";
  return "";
}

// ---------------------------------------------------------------------------------------
// 1. Pure parse and plan

const SOURCE: NetworkSource = { cidrAnnotation: NET3.cidr, addressAnnotation: NET3.adr };
const CIDR_FIELD = `metadata.annotations[${NET3.cidr}]`;
const ADR_FIELD = `metadata.annotations[${NET3.adr}]`;
const LOCAL: LocalAddress[] = [
  { family: 4, address: "192.168.1.1", prefix: 24, dev: "eth0" },
  { family: 6, address: "fd00:1::1", prefix: 64, dev: "eth0" },
  { family: 6, address: "fe80::1", prefix: 64, dev: "eth0" },
  { family: 4, address: "127.0.0.1", prefix: 8, dev: "lo" },
  { family: 6, address: "::1", prefix: 128, dev: "lo" },
];
const TIMES = ["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", ""];

function info(name: string, created: string, annotations: Record<string, string>): NodeInfo {
  return {
    name,
    creationTimestamp: created,
    podCIDRs: [],
    internalIPs: [],
    machineID: "",
    annotations,
  };
}

/** The canonical text an item is reported or routed under. */
function canonical(item: string): string {
  const r = parseCidr(item);
  return r.ok ? formatCidr(r.cidr) : item;
}

/** Checks one node's outcome against its values; returns what is wrong. */
function audit(
  node: NodeInfo,
  routes: readonly Route[],
  problems: readonly Problem[],
): string[] {
  const wrong: string[] = [];
  const value = node.annotations[NET3.cidr];
  const mine = problems.filter((p) => p.node === node.name);
  const reported = (field: string, v: string) =>
    mine.some((p) => p.field === field && p.value === v);
  // Bounded text whatever the input.
  for (const p of mine) {
    if (p.value.length > MAX_VALUE_LENGTH) wrong.push(`problem value of ${p.value.length} chars`);
    if (p.reason.length > 400) wrong.push(`reason of ${p.reason.length} chars`);
    if (describeProblem(p).length > 6 * MAX_VALUE_LENGTH + 1000) wrong.push("problem text size");
  }
  const text = mine.reduce((n, p) => n + p.value.length + p.reason.length, 0);
  const conflictsWon = mine.filter((p) => p.kind === "conflict" && p.reason.startsWith("also"));
  if (
    text - conflictsWon.reduce((n, p) => n + p.value.length + p.reason.length, 0) >
      4 * MAX_VALUE_LENGTH + 64 * 200
  ) {
    wrong.push(`${text} characters of problems`);
  }

  if (value === undefined || splitList(value.length > MAX_VALUE_LENGTH ? "" : value).length === 0) {
    if (!mine.some((p) => p.kind === "no-cidrs")) wrong.push("no CIDRs, not reported");
  }
  if (value !== undefined && value.length > MAX_VALUE_LENGTH) {
    const p = mine.find((p) => p.field === CIDR_FIELD && p.kind === "malformed");
    if (!p || !p.value.startsWith(value.slice(0, 40)) || p.value.length > 100) {
      wrong.push("an overlong value not reported (truncated)");
    }
    if (routes.some((r) => r.node === node.name)) wrong.push("routes from an overlong value");
  } else if (value !== undefined) {
    const items = splitList(value);
    const used = items.slice(0, MAX_ITEMS_PER_NODE);
    if (items.length > MAX_ITEMS_PER_NODE && !reported(CIDR_FIELD, `${items.length} items`)) {
      wrong.push(`${items.length} items, the cap not reported`);
    }
    const texts = new Set(used.map(canonical));
    for (const r of routes.filter((r) => r.node === node.name)) {
      if (!texts.has(r.dst)) wrong.push(`route ${r.dst} not among the node's first items`);
    }
    for (const item of used) {
      const t = canonical(item);
      const routed = routes.some((r) => r.node === node.name && r.dst === t);
      if (!routed && !reported(CIDR_FIELD, t) && !reported(ADR_FIELD, t)) {
        wrong.push(`${JSON.stringify(item.slice(0, 60))} neither routed nor reported`);
      }
    }
  }

  const adr = node.annotations[NET3.adr];
  if (adr !== undefined && adr.length <= MAX_VALUE_LENGTH) {
    const items = splitList(adr).slice(0, MAX_ITEMS_PER_NODE);
    for (const item of items) {
      const ip = item.includes("/") || item.includes("%") ? undefined : parseIp(item);
      if (!ip) {
        if (!reported(ADR_FIELD, item)) wrong.push(`address ${JSON.stringify(item)} not reported`);
        continue;
      }
      const text = formatIp(ip);
      const bad = SPECIAL.some((s) =>
        cidrContains(s, makeCidr(ip.family, ip.value, ip.family === 4 ? 32 : 128))
      ) || LOCAL.some((a) =>
        a.address === text
      );
      if (bad && !reported(ADR_FIELD, text)) wrong.push(`next hop ${text} refused silently`);
    }
  } else if (
    adr !== undefined && !reported(ADR_FIELD, `${adr.slice(0, 40)}... (${adr.length} characters)`)
  ) {
    wrong.push("an overlong address value not reported");
  }
  return wrong;
}

const NODES_PER_PLAN = 100;
const VALUES = 10_000;

const RULESETS: PlanRules[] = [
  { selfName: "a", allowedCidrs: [], minPrefixV4: 8, minPrefixV6: 32 },
  { selfName: "a", allowedCidrs: [], minPrefixV4: 1, minPrefixV6: 1 },
  {
    selfName: "a",
    allowedCidrs: ["10.55.0.0/16", "fd00:55::/32", "192.168.0.0/16", "0.0.0.0/1"].map(mustCidr),
    minPrefixV4: 8,
    minPrefixV6: 32,
  },
];

/** The batches of the run: our own node and NODES_PER_PLAN hostile ones, and the rules. */
function* batches(seed: number): Generator<{ batch: number; rules: PlanRules; nodes: NodeInfo[] }> {
  const r = new Rng(seed);
  for (let batch = 0; batch < VALUES / NODES_PER_PLAN; batch++) {
    const nodes = [info("a", "2025-01-01T00:00:00Z", {
      [NET3.cidr]: "10.55.0.0/24,fd00:55::/112",
      [NET3.adr]: "192.168.1.1,fd00:1::1",
    })];
    for (let i = 0; i < NODES_PER_PLAN; i++) {
      const n = nodes.length;
      const annotations: Record<string, string> = {};
      if (r.chance(0.98)) annotations[NET3.cidr] = cidrValue(r);
      if (r.chance(0.95)) {
        annotations[NET3.adr] = addressValue(
          r,
          () => `192.168.1.${2 + (n % 250)}`,
          () => `fd00:1::${(n + 2).toString(16)}`,
        );
      }
      nodes.push(info(`f${batch}-${i}`, r.pick(TIMES), annotations));
    }
    yield { batch, rules: RULESETS[batch % RULESETS.length], nodes };
  }
}

function planOf(nodes: readonly NodeInfo[], rules: PlanRules) {
  return plan(nodes.map((n) => checkNode(parseNode(n, SOURCE), rules, LOCAL)));
}

/** Routes of different nodes that overlap, and routes over our own node's range. */
function overlaps(routes: readonly Route[], self: readonly string[]): string[] {
  const wrong: string[] = [];
  const own = self.map(mustCidr);
  const end = (c: Cidr) => c.value + (1n << BigInt((c.family === 4 ? 32 : 128) - c.prefix)) - 1n;
  const sorted = routes.map((x) => ({ x, c: mustCidr(x.dst) }))
    .sort((a, b) => (a.c.value < b.c.value ? -1 : a.c.value > b.c.value ? 1 : 0));
  for (let i = 0; i < sorted.length; i++) {
    const a = sorted[i];
    if (own.some((o) => cidrsOverlap(o, a.c))) wrong.push(`${a.x.node} ${a.x.dst} over ours`);
    for (let j = i + 1; j < sorted.length && sorted[j].c.value <= end(a.c); j++) {
      const b = sorted[j];
      if (a.x.node !== b.x.node && cidrsOverlap(a.c, b.c)) {
        wrong.push(`${a.x.node} ${a.x.dst} and ${b.x.node} ${b.x.dst} overlap`);
      }
    }
  }
  return wrong;
}

Deno.test("fuzz: 10,000 hostile annotation values through parse and plan", () => {
  const before = Deno.memoryUsage().heapUsed;
  let peak = before;
  let routed = 0, refused = 0, malformed = 0, conflicts = 0, reasons = 0;
  const t0 = performance.now();
  for (const { batch, rules, nodes } of batches(SEED)) {
    let p;
    try {
      p = planOf(nodes, rules);
    } catch (e) {
      throw new Error(`seed ${SEED} batch ${batch}: ${(e as Error).stack}`);
    }
    const wrong: string[] = [];
    for (const route of p.routes) {
      const why = breaks(route, rules, LOCAL);
      if (why) wrong.push(`${route.node}: ${route.dst} via ${route.via}: ${why}`);
    }
    wrong.push(...overlaps(p.routes, p.selfCidrs ?? []));
    for (const n of nodes.slice(1)) {
      for (const why of audit(n, p.routes, p.problems)) {
        const v = JSON.stringify((n.annotations[NET3.cidr] ?? "").slice(0, 80));
        wrong.push(`${n.name} ${v}: ${why}`);
      }
    }
    assert.deepEqual(
      wrong.slice(0, 20),
      [],
      `seed ${SEED} batch ${batch}: ${wrong.length} findings`,
    );
    routed += p.routes.length;
    refused += p.problems.filter((x) => x.kind === "refused").length;
    malformed += p.problems.filter((x) => x.kind === "malformed").length;
    conflicts += p.problems.filter((x) => x.kind === "conflict").length;
    reasons += p.problems.length;
    peak = Math.max(peak, Deno.memoryUsage().heapUsed);
  }
  console.log(
    `${VALUES} values in ${Math.round(performance.now() - t0)} ms: ${routed} routes, ` +
      `${refused} refused, ${malformed} malformed, ${conflicts} conflicts (${reasons} problems); ` +
      `heap peak +${Math.round((peak - before) / 2 ** 20)} MB`,
  );
  // The generator must have produced every outcome, or the checks above proved little.
  const outcomes = { routed, refused, malformed, conflicts };
  for (const [what, n] of Object.entries(outcomes)) assert.ok(n > 1000, `only ${n} ${what}`);
  // Generous: garbage is collected when V8 likes; the exact test is the next one.
  assert.ok(peak - before < 768 * 2 ** 20, `heap peaked ${(peak - before) / 2 ** 20} MB higher`);
});

const gc = (globalThis as { gc?: () => void }).gc;

Deno.test("fuzz: memory retained after the 10,000 values is bounded (V8 gc exposed)", async () => {
  if (!gc) {
    // Run this test again in a Deno with the collector exposed: only then is a heap
    // measurement more than the collector's mood.
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "test",
        "-A",
        "--v8-flags=--expose-gc",
        "--filter",
        "fuzz: memory retained",
        new URL(import.meta.url).pathname,
      ],
      env: { FUZZ_SEED: String(SEED), NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    assert.match(text, /retained -?\d+ KB/);
    assert.match(text, /1 passed/);
    return;
  }
  // A first pass warms up what legitimately stays (compiled code, module caches); whatever
  // a second pass over the same 10,000 values leaves behind is a leak.
  const pass = () => {
    let n = 0;
    for (const { rules, nodes } of batches(SEED)) n += planOf(nodes, rules).problems.length;
    return n;
  };
  pass();
  gc();
  const before = Deno.memoryUsage().heapUsed;
  const kept = pass();
  gc();
  const retained = Deno.memoryUsage().heapUsed - before;
  console.log(`retained ${Math.round(retained / 1024)} KB after ${kept} problems`);
  assert.ok(kept > 10_000);
  assert.ok(retained < 4 * 2 ** 20, `${Math.round(retained / 2 ** 20)} MB retained`);
});

// ---------------------------------------------------------------------------------------
// 2. Hostile nodes through the API server and the daemon, into the kernel

/** A value for the end-to-end run: half the general fuzz, half near ALLOWED_CIDRS. */
function e2eValue(r: Rng): string {
  if (r.chance(0.4)) return cidrValue(r);
  return Array.from({ length: r.range(1, 6) }, () =>
    r.pick([
      () => `10.55.${r.int(256)}.0/${r.range(16, 30)}`,
      () => `fd00:55:${r.int(65536).toString(16)}::/${r.range(32, 128)}`,
      () => `10.${r.int(256)}.0.0/${r.range(8, 24)}`,
      () => `192.168.${r.pick([50, 60, 70, r.int(256)])}.${r.int(256)}/${r.range(16, 32)}`,
      () => `fd00:${r.pick(["50", "60", "55"])}::${r.int(65536).toString(16)}/${r.range(16, 128)}`,
      () => r.pick(ODD_FORMS),
      () => cidr(r),
    ])()).join(",");
}

async function netnsAddresses(ns: string): Promise<LocalAddress[]> {
  const out = await new Deno.Command("ip", { args: ["-n", ns, "-json", "addr", "show"] }).output();
  const links = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    ifname: string;
    addr_info: { family: string; local: string; prefixlen: number }[];
  }[];
  return links.flatMap((l) =>
    l.addr_info.map((a) => ({
      family: a.family === "inet" ? 4 : 6,
      address: formatIp(parseIp(a.local)!),
      prefix: a.prefixlen,
      dev: l.ifname,
    } as LocalAddress))
  );
}

const notRoot = requireRoot();
Deno.test({
  name: "fuzz: 200 hostile nodes through the API server and the daemon: no route outside " +
    "ALLOWED_CIDRS or the safety rules ever reaches the kernel",
  ignore: !!notRoot,
  async fn() {
    const r = new Rng(SEED ^ 0x5eed);
    const c = await cluster();
    let watch: RouteWatch | undefined;
    let d: Awaited<ReturnType<typeof daemon>> | undefined;
    try {
      watch = await RouteWatch.start(c.ns);
      const allowedText = "10.55.0.0/16,fd00:55::/32,192.168.0.0/16";
      const rules: PlanRules = {
        selfName: "a",
        allowedCidrs: allowedText.split(",").map(mustCidr),
        minPrefixV4: 8,
        minPrefixV6: 32,
      };
      const create = (i: number) => {
        // Next hops on lan1 mostly, so that many claims do get routes.
        const adr = addressValue(
          r,
          () => `192.168.60.${10 + (i % 240)}`,
          () => `fd00:60::${(i + 16).toString(16)}`,
        );
        c.api.nodes.create(makeNode({
          name: `h${i}`,
          annotations: { [NET3.cidr]: e2eValue(r), [NET3.adr]: adr },
        }));
      };
      // Half known at the first list, half arriving by the watch.
      for (let i = 0; i < 100; i++) create(i);
      d = await daemon(c, {
        CIDR_ANNOTATION: NET3.cidr,
        ADDRESS_ANNOTATION: NET3.adr,
        ALLOWED_CIDRS: allowedText,
      });
      for (let i = 100; i < 200; i++) create(i);
      const daemonNow = d;
      await pollUntil(async () => {
        await daemonNow.reconciler.idle();
        return daemonNow.reconciler.last?.plan.nodeCount === 203;
      }, { timeoutMs: 20_000, message: "the daemon saw all 203 nodes" });
      daemonNow.reconciler.trigger("resync");
      await daemonNow.reconciler.idle();
      const last = daemonNow.reconciler.last!;

      const local = await netnsAddresses(c.ns.name);
      assert.ok(local.some((a) => a.address === "192.168.60.1"));
      const listed = await kernelRoutes(c.ns, 202);
      const wrong: string[] = [];
      for (const k of listed) {
        const route = { family: k.family, dst: k.dst, via: k.gateway ?? "", node: "" };
        const why = k.table && k.table !== "main"
          ? `in table ${k.table}`
          : breaks(route, rules, local);
        if (why) wrong.push(`${k.dst} via ${k.gateway}: ${why}`);
      }
      for (const a of watch.added(202)) {
        const route = {
          family: (a.dst.includes(":") ? 6 : 4) as 4 | 6,
          dst: a.dst,
          via: a.via ?? "",
          node: "",
        };
        const why = breaks(route, rules, local);
        if (why) wrong.push(`seen by ip monitor: ${a.line.trim()}: ${why}`);
      }
      assert.deepEqual(wrong, [], `seed ${SEED}`);
      // The kernel holds what the plan wants, but for what the kernel itself refused: when
      // a replace is refused (a new owner's next hop not on-link), the old route stays.
      const failed = new Set(last.failures.map((f) => `${f.op.route.dst} via ${f.op.route.via}`));
      const failedDst = new Set(last.failures.map((f) => f.op.route.dst));
      const want = last.plan.routes.map((x) => `${x.dst} via ${x.via}`).filter((x) =>
        !failed.has(x)
      );
      const have = listed.map((k) => `${k.dst} via ${k.gateway}`);
      assert.deepEqual(want.filter((x) => !have.includes(x)), [], "planned routes missing");
      const stale = listed.filter((k) => !want.includes(`${k.dst} via ${k.gateway}`));
      assert.deepEqual(stale.filter((k) => !failedDst.has(k.dst)), [], "routes nobody wants");
      if (stale.length > 0) {
        console.log(
          `kept after a refused replace: ${stale.map((k) => `${k.dst} via ${k.gateway}`)}`,
        );
      }
      for (const b of ["10.55.1.0/24 via 192.168.60.2", "fd00:55::2:0/112 via fd00:60::3"]) {
        assert.ok(want.includes(b), `the older nodes keep their routes: ${b}`);
      }
      assert.ok(listed.length >= 40, `only ${listed.length} routes: the run proved little`);
      const kinds = new Set(last.problems.map((p) => p.kind));
      for (const k of ["malformed", "refused", "conflict"] as const) assert.ok(kinds.has(k), k);
      console.log(
        `200 hostile nodes: ${listed.length} routes in the kernel, ${last.problems.length} ` +
          `problems, ${last.failures.length} refused by the kernel`,
      );
    } finally {
      await d?.stop();
      await watch?.stop();
      await c.close();
    }
  },
});

// ---------------------------------------------------------------------------------------
// 3. kube-node with random stdin

const WELL_KNOWN = new Set<number>(Object.values(CniCode));

/** A random stdin for kube-node: bytes, broken JSON, wrong types, each field mutated. */
function cniStdin(r: Rng, dir: string): string {
  const base: Record<string, unknown> = {
    cniVersion: r.pick(["0.3.1", "0.4.0", "1.0.0", "1.1.0"]),
    name: "fuzz",
    ipam: {
      type: "kube-node",
      annotation: NET3.cidr,
      stateDir: `${dir}/state`,
      dataDir: `${dir}/ipam`,
      kubeconfig: `${dir}/no-kubeconfig`,
    },
  };
  const randomJson = (depth = 0): unknown =>
    r.pick([
      () => null,
      () => r.chance(0.5),
      () => r.range(-1e6, 1e6),
      () => r.next() * 1e308,
      () => garbage(r, r.int(40)),
      () => r.pick(["", "1.0.0", "kube-node", "host-local", "0.1.0", "99.0.0", "1.0.0\u0000"]),
      () => (depth > 2 ? [] : Array.from({ length: r.int(4) }, () => randomJson(depth + 1))),
      () => (depth > 2 ? {} : { [garbage(r, 5)]: randomJson(depth + 1), type: randomJson(3) }),
    ])();
  const mutated = () => {
    const conf = structuredClone(base) as Record<string, Record<string, unknown>>;
    for (let k = r.range(1, 3); k > 0; k--) {
      const key = r.pick([
        "cniVersion",
        "name",
        "ipam",
        "ipam.type",
        "ipam.annotation",
        "ipam.stateDir",
        "ipam.dataDir",
        "ipam.ipv4-namespaces",
        "ipam.loglevel",
        "ipam.logfile",
        "ipam.kubeconfig",
        "prevResult",
        "runtimeConfig",
        "args",
      ]);
      let value = randomJson();
      // Paths stay inside the test's folder: a string there would create files.
      if (/stateDir|dataDir|logfile|kubeconfig/.test(key) && typeof value === "string") {
        value = `${dir}/${value.replace(/[^A-Za-z0-9]/g, "_")}`;
      }
      const [a, b] = key.split(".");
      if (b === undefined) conf[a] = value as Record<string, unknown>;
      else if (typeof conf.ipam === "object" && conf.ipam !== null && !Array.isArray(conf.ipam)) {
        conf.ipam[b] = value;
      }
    }
    // Never the API of whatever cluster this machine can reach: an ipam object always names
    // a kubeconfig that does not exist (or a value of the wrong type, refused with code 7).
    const ipam = conf.ipam as unknown;
    if (
      typeof ipam === "object" && ipam !== null && !Array.isArray(ipam) && !("kubeconfig" in ipam)
    ) {
      (ipam as Record<string, unknown>).kubeconfig = `${dir}/no-kubeconfig`;
    }
    return JSON.stringify(conf);
  };
  switch (r.int(10)) {
    case 0:
      return new TextDecoder().decode(Uint8Array.from({ length: r.int(2000) }, () => r.int(256)));
    case 1: {
      const text = JSON.stringify(base);
      return text.slice(0, r.int(text.length));
    }
    case 2:
      return JSON.stringify(randomJson());
    case 3:
      return r.pick(["[".repeat(100_000), '{"a":'.repeat(50_000), '"' + "x".repeat(1 << 20) + '"']);
    case 4:
      return "\ufeff" + JSON.stringify(base);
    case 5:
      return JSON.stringify(base).replace('"ipam":', '"__proto__":{"ipam":1},"ipam":');
    case 6:
      return "";
    default:
      return mutated();
  }
}

const COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC"];

function cniEnv(r: Rng, bin: string): Record<string, string> {
  const env: Record<string, string> = {
    CNI_COMMAND: r.chance(0.95) ? r.pick(COMMANDS) : r.pick(["add", "", "VERSION2", garbage(r, 5)]),
    CNI_CONTAINERID: r.chance(0.9) ? `c${r.int(1e6)}` : garbage(r, r.int(20)),
    CNI_NETNS: "/var/run/netns/none",
    CNI_IFNAME: r.chance(0.9) ? "eth0" : garbage(r, r.int(20)),
    // A folder without host-local: a config that happens to be valid fails all the same.
    CNI_PATH: bin,
  };
  if (r.chance(0.2)) {
    env.CNI_ARGS = r.pick(["IgnoreUnknown=1;K8S_POD_NAMESPACE=x", garbage(r, 30), "=;;="]);
  }
  for (const [k, v] of Object.entries(env)) {
    if (v.includes("\u0000")) env[k] = v.replaceAll("\u0000", "");
  }
  return env;
}

/** Why an answer is not a proper CNI error, or "". */
function notCniError(code: number, stdout: string, stderr = ""): string {
  if (code !== 1) return `exit status ${code}`;
  if (/\n\s+at |Uncaught|panicked/.test(stdout + stderr)) return "a stack trace";
  const lines = stdout.trim().split("\n");
  if (lines.length !== 1) return `${lines.length} lines on stdout`;
  let e: { cniVersion?: unknown; code?: unknown; msg?: unknown };
  try {
    e = JSON.parse(lines[0]);
  } catch {
    return "stdout is not JSON";
  }
  if (typeof e.code !== "number" || !WELL_KNOWN.has(e.code)) return `code ${e.code}`;
  if (typeof e.msg !== "string" || e.msg === "") return "no msg";
  if (typeof e.cniVersion !== "string") return "no cniVersion";
  return "";
}

Deno.test("fuzz: 300 random stdins and environments for kube-node in process: CNI errors only", async () => {
  const r = new Rng(SEED ^ 0xc41);
  const dir = await Deno.makeTempDir({ prefix: "fuzz-cni-" });
  try {
    await Deno.mkdir(`${dir}/bin`);
    const wrong: string[] = [];
    const codes = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const stdin = cniStdin(r, dir);
      const env = cniEnv(r, `${dir}/bin`);
      let out = "";
      let status: number;
      try {
        status = await runPlugin(kubeNodePlugin, {
          env,
          stdin: () => Promise.resolve(new TextEncoder().encode(stdin)),
          stdout: (t) => {
            out += t;
            return Promise.resolve();
          },
        });
      } catch (e) {
        wrong.push(`case ${i}: threw ${(e as Error).stack}`);
        continue;
      }
      const why = notCniError(status, out);
      if (why) {
        wrong.push(
          `case ${i} ${env.CNI_COMMAND} ${JSON.stringify(stdin.slice(0, 80))}: ${why}: ${
            out.slice(0, 300)
          }`,
        );
      } else {
        const code = JSON.parse(out).code as number;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    assert.deepEqual(wrong.slice(0, 10), [], `seed ${SEED}: ${wrong.length} cases`);
    console.log(
      `codes: ${JSON.stringify(Object.fromEntries([...codes].sort((a, b) => a[0] - b[0])))}`,
    );
    // Decoding, config and environment errors and the fallbacks all occurred.
    for (
      const code of [CniCode.DecodingFailure, CniCode.InvalidConfig, CniCode.InvalidEnvironment]
    ) {
      assert.ok((codes.get(code) ?? 0) > 0, `code ${code} never seen`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "fuzz: 60 random stdins through the real kube-node program: CNI errors only",
  ignore: IGNORE_CNI,
  async fn() {
    const r = new Rng(SEED ^ 0x9e7);
    const dir = await Deno.makeTempDir({ prefix: "fuzz-cni-" });
    try {
      const bin = await makeCniBin(dir);
      await Deno.mkdir(`${dir}/empty`);
      const wrong: string[] = [];
      const cases = Array.from(
        { length: 60 },
        () => ({ stdin: cniStdin(r, dir), env: cniEnv(r, `${dir}/empty`) }),
      );
      let next = 0;
      const worker = async () => {
        while (next < cases.length) {
          const i = next++;
          const { stdin, env } = cases[i];
          const a = await execWithStdin(`${bin}/kube-node`, { ...env, HOME: dir }, stdin);
          const why = notCniError(a.code, a.stdout, a.stderr);
          if (why) {
            wrong.push(
              `case ${i} ${env.CNI_COMMAND}: ${why}: ${a.stdout.slice(0, 200)} ${
                a.stderr.slice(0, 300)
              }`,
            );
          }
        }
      };
      await Promise.all(Array.from({ length: 4 }, worker));
      assert.deepEqual(wrong.slice(0, 10), [], `seed ${SEED}: ${wrong.length} cases`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
