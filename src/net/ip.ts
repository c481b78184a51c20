/**
 * IP addresses and CIDRs as plain values: parsing, canonical text, containment.
 *
 * Addresses are held as bigints so IPv4 and IPv6 share one arithmetic. An IPv4-mapped
 * IPv6 address (`::ffff:a.b.c.d`) is IPv4: a node that publishes its IPv4 address in that
 * form must still get IPv4 routes.
 *
 * @module
 */

/** Address family: 4 or 6. */
export type Family = 4 | 6;

/** One IP address. */
export interface Ip {
  readonly family: Family;
  readonly value: bigint;
}

/** One CIDR in canonical form: host bits cleared. */
export interface Cidr {
  readonly family: Family;
  /** Network address, host bits zero. */
  readonly value: bigint;
  readonly prefix: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Number of bits in an address of the family. */
export function familyBits(family: Family): number {
  return BITS[family];
}

function parseV4(text: string): bigint | undefined {
  // Four decimal octets, no leading zeros (some parsers read them as octal).
  let value = 0;
  let octets = 0;
  let i = 0;
  const n = text.length;
  while (octets < 4) {
    const start = i;
    let octet = 0;
    while (i < n) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      octet = octet * 10 + c;
      i++;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || octet > 255) return undefined;
    if (digits > 1 && text.charCodeAt(start) === 48) return undefined;
    value = value * 256 + octet;
    octets++;
    if (octets < 4) {
      if (text.charCodeAt(i) !== 46) return undefined;
      i++;
    }
  }
  return i === n ? BigInt(value) : undefined;
}

function parseV6(text: string): bigint | undefined {
  if (text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (half: string): bigint[] | undefined => {
    if (half === "") return [];
    const out: bigint[] = [];
    const items = half.split(":");
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseV4(item);
        if (v4 === undefined) return undefined;
        out.push(v4 >> 16n, v4 & 0xffffn);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) {
        out.push(BigInt(parseInt(item, 16)));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  let value = 0n;
  for (
    const g of [...head, ...Array<bigint>(halves.length === 2 ? missing : 0).fill(0n), ...tail]
  ) {
    value = (value << 16n) | g;
  }
  return value;
}

/**
 * Parses an IP address; IPv4-mapped IPv6 becomes IPv4. Zones (`%eth0`) are refused.
 *
 * @example
 * ```ts
 * parseIp("::ffff:10.0.0.1"); // { family: 4, value: 167772161n }
 * ```
 */
export function parseIp(text: string): Ip | undefined {
  const v4 = parseV4(text);
  if (v4 !== undefined) return { family: 4, value: v4 };
  const v6 = parseV6(text);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === 0xffffn) return { family: 4, value: v6 & 0xffffffffn };
  return { family: 6, value: v6 };
}

/** Why a CIDR text was refused, or the CIDR. */
export type CidrResult = { ok: true; cidr: Cidr } | { ok: false; reason: string };

/**
 * Parses `addr/prefix` into canonical form (host bits cleared). A bare address is a host
 * route (/32 or /128). IPv4-mapped IPv6 CIDRs (`::ffff:10.0.0.0/104`) become IPv4.
 */
export function parseCidr(text: string): CidrResult {
  const slash = text.indexOf("/");
  const addrText = slash < 0 ? text : text.slice(0, slash);
  if (addrText.includes("%")) return { ok: false, reason: "zone index not allowed" };
  const v4 = parseV4(addrText);
  const v6 = v4 === undefined ? parseV6(addrText) : undefined;
  if (v4 === undefined && v6 === undefined) return { ok: false, reason: "not an IP address" };
  let family: Family = v4 !== undefined ? 4 : 6;
  let value = v4 ?? v6!;
  let prefix = BITS[family];
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return { ok: false, reason: "prefix is not a number" };
    prefix = Number(p);
    if (prefix > BITS[family]) {
      return { ok: false, reason: `prefix /${prefix} exceeds ${BITS[family]}` };
    }
  }
  if (family === 6 && value >> 32n === 0xffffn && (slash < 0 || prefix >= 96)) {
    family = 4;
    value &= 0xffffffffn;
    prefix = slash < 0 ? 32 : prefix - 96;
  }
  return { ok: true, cidr: makeCidr(family, value, prefix) };
}

/** Builds a canonical CIDR, clearing host bits. */
export function makeCidr(family: Family, value: bigint, prefix: number): Cidr {
  const host = BITS[family] - prefix;
  return { family, value: (value >> BigInt(host)) << BigInt(host), prefix };
}

/** Canonical text of an address (RFC 5952 for IPv6). */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) {
    const v = Number(ip.value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  // Four 32-bit numbers, then the groups: far fewer bigint operations than one per group.
  const groups: number[] = [];
  for (let w = 3; w >= 0; w--) {
    const word = Number((ip.value >> BigInt(w * 32)) & 0xffffffffn);
    groups.push(word >>> 16, word & 0xffff);
  }
  // Longest run of two or more zero groups is written as "::" (first one on ties).
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestAt, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (g: number[]) => g.map((n) => n.toString(16)).join(":");
  if (bestAt < 0) return hex(groups);
  return `${hex(groups.slice(0, bestAt))}::${hex(groups.slice(bestAt + bestLen))}`;
}

/** Canonical text of a CIDR, always with its prefix. */
export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr)}/${cidr.prefix}`;
}

/** Whether `ip` lies inside `cidr` (same family only). */
export function cidrContainsIp(cidr: Cidr, ip: Ip): boolean {
  if (cidr.family !== ip.family) return false;
  const host = BigInt(BITS[cidr.family] - cidr.prefix);
  return ip.value >> host === cidr.value >> host;
}

/** Whether `outer` contains all of `inner` (same family only). */
export function cidrContains(outer: Cidr, inner: Cidr): boolean {
  return outer.prefix <= inner.prefix && cidrContainsIp(outer, inner);
}

/** Whether two CIDRs share any address. */
export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b) || cidrContains(b, a);
}

/** Number of addresses in a CIDR. */
export function cidrSize(cidr: Cidr): bigint {
  return 1n << BigInt(BITS[cidr.family] - cidr.prefix);
}

/**
 * Splits a comma separated list (spaces tolerated, empty items ignored), as written in
 * node annotations.
 */
export function splitList(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
}
