/**
 * The allocation decision for one network: which nodes get which per-node CIDR from the
 * pools, as new values of the network's CIDR annotation. Pure: the nodes, the pools, the
 * recently freed CIDRs and the time come in, the decision goes out.
 *
 * Rules:
 *
 * 1. The annotation is read as the router reads it (src/routing/node_parse.ts): a comma
 *    separated list, spaces tolerated, empty items ignored, IPv4-mapped IPv6 is IPv4. A
 *    node has a valid CIDR of a family when one of the items the router reads (the first
 *    {@link MAX_ITEMS_PER_NODE}, none of a value longer than {@link MAX_VALUE_LENGTH}) parses
 *    as a CIDR of that family, canonical or not. Malformed items are left as they are.
 * 2. Sticky: a node's CIDRs are never rewritten, moved or removed, whether inside a pool or
 *    not, whatever their size. A node with a valid CIDR of a family gets no other of it.
 * 3. Taken: every item of every node that parses as a CIDR (all items, also those the
 *    router would not read: a CIDR written anywhere is never handed out beside it) makes
 *    every per-node CIDR of the pools that overlaps it, even partly, taken.
 * 4. A node without a valid CIDR of a family that has pools gets the lowest free per-node
 *    CIDR of that family: pools in their order, lowest address first within a pool. One
 *    update per node covers both families; its value is the old one byte for byte with the
 *    new CIDRs appended (a comma added unless the value is empty or already ends in one).
 * 5. Quarantine: a CIDR freed less than `quarantineMs` before `now` (`recentlyFreed`) makes
 *    the per-node CIDRs it overlaps the last choice: they are handed out, lowest first, only
 *    when no other per-node CIDR of the family is free in any pool. Pods of a deleted node
 *    may still be known to others (conntrack, endpoints) for a while.
 * 6. Order: nodes are served oldest first (creationTimestamp, a missing one counting as
 *    newest, then name), as the router settles conflicts, so that every instance given the
 *    same input decides the same.
 * 7. Full: a node that finds nothing free gets a `pools-full` problem and no CIDR of that
 *    family; a later decision serves it once something is free. A node whose annotation
 *    has no room left (the router would not read an appended item) gets an
 *    `annotation-full` problem and nothing, so that no CIDR is spent on it.
 *
 * Taken and quarantined per-node CIDRs are kept per pool as sorted runs of indices, never
 * as a set of indices: a pool may hold 2^20 per-node CIDRs, and the work is in proportion to
 * the CIDRs the nodes hold.
 *
 * @module
 */
import { type Family, familyBits, parseCidr, splitList } from "../net/ip.ts";
import { MAX_ITEMS_PER_NODE, MAX_VALUE_LENGTH } from "../routing/node_parse.ts";
import { MAX_NODE_CIDRS_PER_POOL, type Pool } from "./pools.ts";

/** What the decision reads of a node. */
export interface AllocNode {
  readonly name: string;
  /** RFC 3339; "" when unknown (served last). */
  readonly creationTimestamp: string;
  /** The network's CIDR annotation; undefined when the node has none. */
  readonly annotation: string | undefined;
  /**
   * Off the network (NODE_SELECTOR no longer matches it): what it holds stays taken, but it
   * is given nothing.
   */
  readonly holdOnly?: boolean;
}

/** Everything the decision depends on. */
export interface AllocInput {
  readonly nodes: readonly AllocNode[];
  /** From `parsePools` (src/alloc/pools.ts): used in this order within a family. */
  readonly pools: readonly Pool[];
  /** Canonical CIDR text to the time (ms) it was freed; see src/alloc/freed.ts. */
  readonly recentlyFreed: ReadonlyMap<string, number>;
  /** The time of the decision, in the clock of `recentlyFreed`. */
  readonly now: number;
  /** How long a freed CIDR is the last choice. */
  readonly quarantineMs: number;
  /** Kept between decisions to save parsing; see {@link AllocMemo}. */
  readonly memo?: AllocMemo;
}

/** The new annotation value of one node. */
export interface NodeUpdate {
  readonly node: string;
  /** The value it replaces (undefined: no annotation). */
  readonly previous: string | undefined;
  readonly value: string;
  /** The CIDRs appended, canonical, IPv4 first. */
  readonly added: readonly string[];
}

/** Why a node got no CIDR of a family. */
export type AllocProblemKind = "pools-full" | "annotation-full";

/** A node that needs a CIDR of a family and did not get one. */
export interface AllocProblem {
  readonly node: string;
  readonly family: Family;
  readonly kind: AllocProblemKind;
  readonly reason: string;
}

/** How full one pool is after the decision, in per-node CIDRs. */
export interface PoolStats {
  /** {@link Pool.text}. */
  readonly pool: string;
  readonly family: Family;
  readonly size: number;
  /** Overlapped by a CIDR a node holds or was just given. */
  readonly used: number;
  readonly free: number;
  /** Of the free ones, those still in quarantine. */
  readonly quarantined: number;
}

/** The outcome of {@link allocate}. */
export interface Decision {
  /** One per node that gets something, in serving order. */
  readonly updates: readonly NodeUpdate[];
  readonly problems: readonly AllocProblem[];
  /** One per pool, in the order of the pools. */
  readonly pools: readonly PoolStats[];
  /** Every CIDR handed out, in serving order. */
  readonly allocated: readonly string[];
}

/** Longest canonical text of a per-node CIDR, to tell beforehand whether one still fits. */
const MAX_TEXT: Record<Family, number> = {
  4: "255.255.255.255/32".length,
  6: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128".length,
};

const HOST_MASK: Record<Family, bigint[]> = {
  4: Array.from({ length: 33 }, (_, p) => (1n << BigInt(32 - p)) - 1n),
  6: Array.from({ length: 129 }, (_, p) => (1n << BigInt(128 - p)) - 1n),
};

/**
 * A run of indices [lo, hi] as one number, lo * 2^20 + hi: runs then sort in a
 * Float64Array, numerically and without a comparator, and 2^40 is still exact.
 */
const SCALE = MAX_NODE_CIDRS_PER_POOL;

/** One pool during a decision. Runs are flat arrays of pairs [lo, hi, lo, hi, ...]. */
interface PoolState {
  readonly pool: Pool;
  readonly start: bigint;
  readonly end: bigint;
  /** log2 of a per-node CIDR's size. */
  readonly step: bigint;
  /** The pool's address as an IPv4 number, or as eight 16-bit IPv6 groups. */
  readonly base4: number;
  readonly base6: readonly number[];
  readonly takenRuns: number[];
  readonly quarantineRuns: number[];
  /** Taken or quarantined, merged: what the first choice skips. */
  blocked: number[];
  /** Quarantined and not taken, merged: the last choice. */
  lastChoice: number[];
  takenCount: number;
  lastChoiceCount: number;
  /** Lowest index the first choice may still give, and the run it has reached. */
  next: number;
  nextRun: number;
  /** The same for the last choice. */
  lastNext: number;
  lastRun: number;
  given: number;
  givenLast: number;
}

interface FamilyState {
  readonly family: Family;
  readonly pools: PoolState[];
  /** The pool the first choice, and the last, has reached. */
  at: number;
  lastAt: number;
}

/** A CIDR held, as a range of addresses. */
interface Span {
  readonly family: Family;
  readonly start: bigint;
  readonly end: bigint;
}

/** What one annotation value holds: it depends on the text alone, so it is memoized. */
interface Annotation {
  /** Number of items, malformed ones included. */
  readonly items: number;
  /** Whether the router reads a CIDR of the family in it. */
  readonly has4: boolean;
  readonly has6: boolean;
  /** Every item that parses as a CIDR. */
  readonly spans: readonly Span[];
}

/** A node as read. */
interface ReadNode {
  readonly node: AllocNode;
  readonly annotation: Annotation;
}

/**
 * What {@link allocate} keeps between decisions when given one: each annotation value
 * parsed. Parsing is most of a decision's work at thousands of nodes, and between two
 * decisions few values change. The decision is the same with or without it.
 */
export class AllocMemo {
  /** Annotation value to what it holds, for the values of the last decision. */
  annotations = new Map<string, Annotation>();
}

function readAnnotation(value: string): Annotation {
  const items = splitList(value);
  const readable = value.length <= MAX_VALUE_LENGTH;
  let has4 = false, has6 = false;
  const spans: Span[] = [];
  for (let i = 0; i < items.length; i++) {
    const r = parseCidr(items[i]);
    if (!r.ok) continue;
    const c = r.cidr;
    if (readable && i < MAX_ITEMS_PER_NODE) {
      if (c.family === 4) has4 = true;
      else has6 = true;
    }
    spans.push({ family: c.family, start: c.value, end: c.value + HOST_MASK[c.family][c.prefix] });
  }
  return { items: items.length, has4, has6, spans };
}

/**
 * Decides which nodes get which per-node CIDRs; see the module comment for the rules.
 *
 * @example
 * ```ts
 * const d = allocate({
 *   nodes: [{ name: "a", creationTimestamp: "2026-01-01T00:00:00Z", annotation: "10.9.0.0/24" }],
 *   pools: parsePools("192.168.64.0/18/26,fd00:5::/96/112", undefined),
 *   recentlyFreed: new Map(),
 *   now: Date.now(),
 *   quarantineMs: 60_000,
 * });
 * d.updates[0].value; // "10.9.0.0/24,fd00:5::/112" (it has IPv4 already)
 * ```
 */
export function allocate(input: AllocInput): Decision {
  const families = new Map<Family, FamilyState>();
  for (const pool of input.pools) {
    if (!Number.isInteger(pool.count) || pool.count < 1 || pool.count > SCALE) {
      throw new Error(`pool ${pool.text}: count ${pool.count} is outside 1-${SCALE}`);
    }
    let fs = families.get(pool.family);
    if (!fs) {
      fs = { family: pool.family, pools: [], at: 0, lastAt: 0 };
      families.set(pool.family, fs);
    }
    const start = pool.cidr.value;
    fs.pools.push({
      pool,
      start,
      end: start + HOST_MASK[pool.family][pool.cidr.prefix],
      step: BigInt(familyBits(pool.family) - pool.nodePrefix),
      base4: pool.family === 4 ? Number(start) : 0,
      base6: pool.family === 6 ? groupsOf(start) : [],
      takenRuns: [],
      quarantineRuns: [],
      blocked: [],
      lastChoice: [],
      takenCount: 0,
      lastChoiceCount: 0,
      next: 0,
      nextRun: 0,
      lastNext: 0,
      lastRun: 0,
      given: 0,
      givenLast: 0,
    });
  }

  const memo = input.memo;
  const seen = memo ? new Map<string, Annotation>() : undefined;
  const read: ReadNode[] = new Array(input.nodes.length);
  for (let n = 0; n < input.nodes.length; n++) {
    const node = input.nodes[n];
    const value = node.annotation ?? "";
    let a = seen?.get(value) ?? memo?.annotations.get(value);
    if (a === undefined) a = readAnnotation(value);
    seen?.set(value, a);
    for (let i = 0; i < a.spans.length; i++) {
      const span = a.spans[i];
      const fs = families.get(span.family);
      if (fs) markRuns(fs, span.start, span.end, "takenRuns");
    }
    read[n] = { node, annotation: a };
  }
  // Only the values of this decision are kept: the memo never outgrows the cluster.
  if (memo && seen) memo.annotations = seen;

  for (const [text, freedAt] of input.recentlyFreed) {
    if (input.now - freedAt >= input.quarantineMs) continue;
    const r = parseCidr(text);
    if (!r.ok) continue;
    const fs = families.get(r.cidr.family);
    const c = r.cidr;
    if (fs) markRuns(fs, c.value, c.value + HOST_MASK[c.family][c.prefix], "quarantineRuns");
  }

  for (const fs of families.values()) {
    for (const ps of fs.pools) {
      const taken = mergeRuns(ps.takenRuns);
      ps.takenCount = runsLength(taken);
      ps.blocked = mergeRuns(ps.takenRuns.concat(ps.quarantineRuns));
      ps.lastChoice = subtractRuns(mergeRuns(ps.quarantineRuns), taken);
      ps.lastChoiceCount = runsLength(ps.lastChoice);
    }
  }

  read.sort(serveOrder);
  const updates: NodeUpdate[] = [];
  const problems: AllocProblem[] = [];
  const allocated: string[] = [];
  const fs4 = families.get(4), fs6 = families.get(6);
  for (const r of read) {
    if (r.node.holdOnly) continue;
    const need: FamilyState[] = [];
    if (fs4 && !r.annotation.has4) need.push(fs4);
    if (fs6 && !r.annotation.has6) need.push(fs6);
    if (need.length === 0) continue;
    const value = r.node.annotation;
    const room = roomProblem(value ?? "", r.annotation.items, need);
    if (room !== undefined) {
      for (const fs of need) {
        problems.push({
          node: r.node.name,
          family: fs.family,
          kind: "annotation-full",
          reason: room,
        });
      }
      continue;
    }
    const added: string[] = [];
    for (const fs of need) {
      const text = take(fs);
      if (text === undefined) {
        problems.push({
          node: r.node.name,
          family: fs.family,
          kind: "pools-full",
          reason: fullReason(fs),
        });
        continue;
      }
      added.push(text);
      allocated.push(text);
    }
    if (added.length > 0) {
      updates.push({
        node: r.node.name,
        previous: value,
        value: appendEntries(value, added),
        added,
      });
    }
  }

  const pools: PoolStats[] = [];
  for (const pool of input.pools) {
    const ps = families.get(pool.family)?.pools.find((p) => p.pool === pool);
    if (!ps) continue;
    const used = ps.takenCount + ps.given + ps.givenLast;
    pools.push({
      pool: pool.text,
      family: pool.family,
      size: pool.count,
      used,
      free: pool.count - used,
      quarantined: ps.lastChoiceCount - ps.givenLast,
    });
  }
  return { updates, problems, pools, allocated };
}

/** Records the per-node indices that [start, end] overlaps in each pool of its family. */
function markRuns(
  fs: FamilyState,
  start: bigint,
  end: bigint,
  into: "takenRuns" | "quarantineRuns",
): void {
  for (const ps of fs.pools) {
    if (end < ps.start || start > ps.end) continue;
    const lo = Number(((start > ps.start ? start : ps.start) - ps.start) >> ps.step);
    const hi = Number(((end < ps.end ? end : ps.end) - ps.start) >> ps.step);
    ps[into].push(lo * SCALE + hi);
  }
}

/** Encoded runs, sorted and merged (touching runs too) into flat pairs. */
function mergeRuns(encoded: readonly number[]): number[] {
  const sorted = Float64Array.from(encoded).sort();
  const out: number[] = [];
  for (let i = 0; i < sorted.length; i++) {
    const lo = Math.floor(sorted[i] / SCALE), hi = sorted[i] % SCALE;
    const last = out.length - 1;
    if (last > 0 && lo <= out[last] + 1) {
      if (hi > out[last]) out[last] = hi;
    } else {
      out.push(lo, hi);
    }
  }
  return out;
}

/** The indices of merged runs `a` that are in none of merged runs `b`. */
function subtractRuns(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < a.length; i += 2) {
    let lo = a[i];
    const hi = a[i + 1];
    while (j < b.length && b[j + 1] < lo) j += 2;
    let k = j;
    while (lo <= hi) {
      if (k >= b.length || b[k] > hi) {
        out.push(lo, hi);
        break;
      }
      if (b[k] > lo) out.push(lo, b[k] - 1);
      lo = b[k + 1] + 1;
      k += 2;
    }
  }
  return out;
}

function runsLength(runs: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < runs.length; i += 2) n += runs[i + 1] - runs[i] + 1;
  return n;
}

/**
 * The lowest per-node CIDR of the family that is neither taken nor quarantined, else the
 * lowest quarantined one not taken; undefined when none is left. Within a decision the
 * lowest free index only grows, so each pool keeps where it stopped and a decision walks
 * every run once.
 */
function take(fs: FamilyState): string | undefined {
  for (; fs.at < fs.pools.length; fs.at++) {
    const ps = fs.pools[fs.at];
    const runs = ps.blocked;
    let i = ps.next, k = ps.nextRun;
    while (k < runs.length && runs[k] <= i) {
      if (runs[k + 1] >= i) i = runs[k + 1] + 1;
      k += 2;
    }
    ps.nextRun = k;
    if (i < ps.pool.count) {
      ps.next = i + 1;
      ps.given++;
      return nodeCidrText(ps, i);
    }
    ps.next = i;
  }
  for (; fs.lastAt < fs.pools.length; fs.lastAt++) {
    const ps = fs.pools[fs.lastAt];
    const runs = ps.lastChoice;
    let k = ps.lastRun;
    while (k < runs.length && runs[k + 1] < ps.lastNext) k += 2;
    ps.lastRun = k;
    if (k < runs.length) {
      const i = Math.max(ps.lastNext, runs[k]);
      ps.lastNext = i + 1;
      ps.givenLast++;
      return nodeCidrText(ps, i);
    }
  }
  return undefined;
}

/**
 * Canonical text of per-node CIDR `index` of the pool, in number arithmetic: the same text
 * as formatCidr(makeCidr(...)), which spends about 20 bigint operations on each, most of
 * the time of a decision that hands out 10,000 CIDRs. The index lies in the pool's host
 * bits, which are zero in its address, so it is added without a carry.
 */
function nodeCidrText(ps: PoolState, index: number): string {
  const p = ps.pool;
  const step = familyBits(p.family) - p.nodePrefix;
  if (p.family === 4) {
    const v = ps.base4 + index * 2 ** step;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}/${p.nodePrefix}`;
  }
  const groups = ps.base6.slice();
  // At most 20 index bits shifted by at most 15 within their group: an exact number.
  let offset = index * 2 ** (step % 16);
  for (let g = 7 - Math.floor(step / 16); offset > 0 && g >= 0; g--) {
    groups[g] += offset % 65536;
    offset = Math.floor(offset / 65536);
  }
  return `${formatGroups(groups)}/${p.nodePrefix}`;
}

function groupsOf(value: bigint): number[] {
  const groups: number[] = new Array(8);
  for (let g = 7; g >= 0; g--) {
    groups[g] = Number(value & 0xffffn);
    value >>= 16n;
  }
  return groups;
}

/** RFC 5952: lower-case hex, the first longest run of two or more zero groups as "::". */
function formatGroups(groups: readonly number[]): string {
  let runAt = -1, runLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > runLength) [runAt, runLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = (from: number, to: number) => {
    let out = "";
    for (let g = from; g < to; g++) out += (g > from ? ":" : "") + groups[g].toString(16);
    return out;
  };
  return runAt < 0 ? hex(0, 8) : `${hex(0, runAt)}::${hex(runAt + runLength, 8)}`;
}

function fullReason(fs: FamilyState): string {
  let size = 0, used = 0;
  for (const ps of fs.pools) {
    size += ps.pool.count;
    used += ps.takenCount + ps.given + ps.givenLast;
  }
  return `pools of IPv${fs.family} are full (${used} of ${size} used)`;
}

/**
 * Why the annotation cannot take the node's new CIDRs, or undefined. Judged before any is
 * taken, with the longest text a CIDR of the family can have, so that none is spent on a
 * node that would not keep it.
 */
function roomProblem(
  value: string,
  items: number,
  need: readonly FamilyState[],
): string | undefined {
  if (value.length > MAX_VALUE_LENGTH) {
    return `the annotation is longer than ${MAX_VALUE_LENGTH} characters: ` +
      `the router reads none of it, so nothing is appended`;
  }
  let length = value.length;
  for (const fs of need) length += 1 + MAX_TEXT[fs.family];
  if (items + need.length > MAX_ITEMS_PER_NODE || length > MAX_VALUE_LENGTH) {
    return `no room in the annotation (${items} items, ${value.length} characters): the ` +
      `router reads ${MAX_ITEMS_PER_NODE} items of ${MAX_VALUE_LENGTH} characters at most`;
  }
  return undefined;
}

/** The old value byte for byte, then the new CIDRs. */
function appendEntries(value: string | undefined, added: readonly string[]): string {
  const tail = added.join(",");
  if (value === undefined) return tail;
  const end = value.trimEnd();
  return end === "" || end.endsWith(",") ? value + tail : `${value},${tail}`;
}

function serveOrder(a: ReadNode, b: ReadNode): number {
  const ta = a.node.creationTimestamp || "\uffff", tb = b.node.creationTimestamp || "\uffff";
  if (ta !== tb) return ta < tb ? -1 : 1;
  const na = a.node.name, nb = b.node.name;
  return na < nb ? -1 : na > nb ? 1 : 0;
}
