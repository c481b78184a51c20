/**
 * The pools that per-node CIDRs of a network are allocated from: `CLUSTER_CIDRS` and
 * `PER_NODE_HOST_BITS`, parsed. Pure.
 *
 * An entry of `CLUSTER_CIDRS` is either written as `xcluster-cni cidr` reads it,
 * `BASE/PREFIX/NODEPREFIX` (`192.168.64.0/18/26`: the pool 192.168.64.0/18 cut into /26
 * per node), or as a plain CIDR (`10.0.0.0/16`) whose per-node size comes from
 * `PER_NODE_HOST_BITS`, as in Kubernetes' ClusterCIDR: the same number of host bits for
 * both families (8 gives /24 per node in IPv4 and /120 in IPv6). Several pools of a family
 * are used in the order written.
 *
 * A pool holds at most {@link MAX_NODE_CIDRS_PER_POOL} (2^20) per-node CIDRs. The
 * allocator tracks taken ranges sparsely, so the bound is not about memory; it is there
 * because a larger pool is almost always a slip (`fd00::/64` with 8 host bits is 2^56
 * per-node CIDRs), because Kubernetes' own range allocator stops at 2^16 per cluster CIDR,
 * and because 2^20 (200 times the 5,000 nodes a cluster is supported up to) keeps every
 * index and every count an exact small integer.
 *
 * @module
 */
import { type Cidr, type Family, familyBits, formatCidr, parseCidr, splitList } from "../net/ip.ts";

/** Most per-node CIDRs one pool may hold, as a power of two (see the module comment). */
export const MAX_POOL_BITS = 20;
/** Most per-node CIDRs one pool may hold: 2^{@link MAX_POOL_BITS}. */
export const MAX_NODE_CIDRS_PER_POOL = 2 ** MAX_POOL_BITS;
/**
 * Fewest host bits accepted in PER_NODE_HOST_BITS, as ClusterCIDR has it: 16 addresses,
 * of which a bridge takes one and IPv4 two more for the network and broadcast addresses.
 */
export const MIN_PER_NODE_HOST_BITS = 4;
/** Most host bits accepted in PER_NODE_HOST_BITS: a per-node IPv6 /1 is the largest. */
export const MAX_PER_NODE_HOST_BITS = 127;

/** One pool: a CIDR cut into per-node CIDRs of one size. */
export interface Pool {
  readonly family: Family;
  /** The pool, canonical. */
  readonly cidr: Cidr;
  /** Prefix length of each per-node CIDR. */
  readonly nodePrefix: number;
  /** Number of per-node CIDRs: 2^(nodePrefix - cidr.prefix), at most 2^20. */
  readonly count: number;
  /** Canonical text in the double-slash notation, `192.168.64.0/18/26`, for logs. */
  readonly text: string;
}

/**
 * Parses PER_NODE_HOST_BITS: "" (unset) gives undefined, else an integer
 * {@link MIN_PER_NODE_HOST_BITS}-{@link MAX_PER_NODE_HOST_BITS}. Throws Error with the
 * reason, as the parsers of src/config.ts do.
 *
 * @example
 * ```ts
 * parsePerNodeHostBits("8"); // 8
 * parsePerNodeHostBits(""); // undefined
 * parsePerNodeHostBits("2"); // throws: expected an integer 4-127
 * ```
 */
export function parsePerNodeHostBits(text: string): number | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  const n = /^[0-9]{1,3}$/.test(t) ? Number(t) : NaN;
  checkHostBits(n);
  return n;
}

function checkHostBits(n: number): void {
  if (!Number.isInteger(n) || n < MIN_PER_NODE_HOST_BITS || n > MAX_PER_NODE_HOST_BITS) {
    throw new Error(
      `expected an integer ` +
        `${MIN_PER_NODE_HOST_BITS}-${MAX_PER_NODE_HOST_BITS}`,
    );
  }
}

/**
 * Parses CLUSTER_CIDRS: comma separated pools, each `BASE/PREFIX/NODEPREFIX` or a plain
 * CIDR sized by `perNodeHostBits` (PER_NODE_HOST_BITS, undefined when unset). "" gives no
 * pools. Throws Error naming the entry and what is wrong: not a CIDR, host bits set in the
 * base, a node prefix outside the pool's and the family's bounds, a plain CIDR without
 * PER_NODE_HOST_BITS, more than 2^20 per-node CIDRs, pools that overlap.
 *
 * @example
 * ```ts
 * const [v4, v6] = parsePools("192.168.64.0/18/26,fd00:5::/96", 16);
 * v4.text; // "192.168.64.0/18/26"
 * v4.count; // 256
 * v6.text; // "fd00:5::/96/112"
 * ```
 */
export function parsePools(text: string, perNodeHostBits: number | undefined): Pool[] {
  if (perNodeHostBits !== undefined) checkHostBits(perNodeHostBits);
  const pools: Pool[] = [];
  for (const entry of splitList(text)) {
    const pool = parsePool(entry, perNodeHostBits);
    for (const other of pools) {
      if (other.family === pool.family && overlap(other.cidr, pool.cidr)) {
        throw new Error(
          `${JSON.stringify(entry)}: overlaps the pool ${JSON.stringify(other.text)}; ` +
            `pools must not share addresses`,
        );
      }
    }
    pools.push(pool);
  }
  return pools;
}

function overlap(a: Cidr, b: Cidr): boolean {
  const p = BigInt(familyBits(a.family) - Math.min(a.prefix, b.prefix));
  return a.value >> p === b.value >> p;
}

function parsePool(entry: string, perNodeHostBits: number | undefined): Pool {
  const name = JSON.stringify(entry);
  const parts = entry.split("/");
  if (parts.length !== 2 && parts.length !== 3) {
    throw new Error(
      `${name}: not a CIDR: expected ADDRESS/PREFIX or ADDRESS/PREFIX/NODEPREFIX`,
    );
  }
  const baseText = `${parts[0]}/${parts[1]}`;
  const r = parseCidr(baseText);
  if (!r.ok) throw new Error(`${name}: not a CIDR: ${r.reason}`);
  const cidr = r.cidr;
  const family = cidr.family;
  const bits = familyBits(family);
  const poolText = formatCidr(cidr);
  // parseCidr clears host bits silently; a pool written with them is most likely a typo
  // of another pool, so it is refused with the form that was probably meant.
  if (hostBitsSet(parts[0], cidr)) {
    const canonical = parts.length === 3 ? `${poolText}/${parts[2]}` : poolText;
    throw new Error(
      `${name}: host bits set in ${baseText}: the canonical form is ${canonical}`,
    );
  }

  let nodePrefix: number;
  if (parts.length === 3) {
    if (!/^[0-9]{1,3}$/.test(parts[2])) {
      throw new Error(`${name}: node prefix ${JSON.stringify(parts[2])} is not a number`);
    }
    nodePrefix = Number(parts[2]);
  } else {
    if (perNodeHostBits === undefined) {
      throw new Error(
        `${name}: a plain CIDR takes its per-node size from PER_NODE_HOST_BITS, which is ` +
          `unset: set PER_NODE_HOST_BITS, or write the node prefix in CLUSTER_CIDRS ` +
          `(e.g. ${poolText}/${Math.min(bits, cidr.prefix + 8)})`,
      );
    }
    nodePrefix = bits - perNodeHostBits;
    if (nodePrefix < cidr.prefix) {
      throw new Error(
        `${name}: PER_NODE_HOST_BITS=${perNodeHostBits} leaves no room: per-node CIDRs of ` +
          `${perNodeHostBits} host bits are larger than the pool, which has ` +
          `${bits - cidr.prefix}`,
      );
    }
  }

  if (nodePrefix < cidr.prefix) {
    throw new Error(
      `${name}: node prefix /${nodePrefix} is shorter than the pool's /${cidr.prefix}`,
    );
  }
  if (nodePrefix > bits) {
    throw new Error(`${name}: node prefix /${nodePrefix} is longer than IPv${family}'s /${bits}`);
  }
  const poolBits = nodePrefix - cidr.prefix;
  if (poolBits > MAX_POOL_BITS) {
    throw new Error(
      `${name}: 2^${poolBits} per-node CIDRs of /${nodePrefix} in /${cidr.prefix}, more than ` +
        `the 2^${MAX_POOL_BITS} a pool may hold: make the pool /${nodePrefix - MAX_POOL_BITS} ` +
        `or longer, or the per-node CIDRs /${cidr.prefix + MAX_POOL_BITS} or shorter`,
    );
  }
  return {
    family,
    cidr: { ...cidr, text: poolText },
    nodePrefix,
    count: 2 ** poolBits,
    text: `${poolText}/${nodePrefix}`,
  };
}

/** Whether the address as written has bits set beyond the parsed CIDR's prefix. */
function hostBitsSet(addressText: string, cidr: Cidr): boolean {
  const r = parseCidr(addressText);
  if (!r.ok) return false;
  // An IPv4-mapped address with a prefix under /96 stays IPv6 in the CIDR but becomes
  // IPv4 alone: compare it as the IPv6 value it was written as.
  const value = r.cidr.family === cidr.family ? r.cidr.value : (0xffffn << 32n) | r.cidr.value;
  return value !== cidr.value;
}
