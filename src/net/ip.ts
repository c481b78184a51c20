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
  /**
   * Canonical text, when the parser already had it: turning a bigint back into text is
   * the costly part of formatting, and most addresses are read once and printed often.
   */
  readonly text?: string;
}

/** One CIDR in canonical form: host bits cleared. */
export interface Cidr {
  readonly family: Family;
  /** Network address, host bits zero. */
  readonly value: bigint;
  readonly prefix: number;
  /** Canonical `address/prefix`, when the parser already had it (see {@link Ip.text}). */
  readonly text?: string;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Number of bits in an address of the family. */
export function familyBits(family: Family): number {
  return BITS[family];
}

/**
 * Four decimal octets from `start` to the end of `text`, no leading zeros (some parsers
 * read them as octal), as a number; -1 when it is not.
 */
function parseV4At(text: string, start: number): number {
  let value = 0;
  let octets = 0;
  let i = start;
  const n = text.length;
  while (octets < 4) {
    const first = i;
    let octet = 0;
    while (i < n) {
      const c = text.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      octet = octet * 10 + c;
      i++;
    }
    const digits = i - first;
    if (digits === 0 || digits > 3 || octet > 255) return -1;
    if (digits > 1 && text.charCodeAt(first) === 48) return -1;
    value = value * 256 + octet;
    octets++;
    if (octets < 4) {
      if (text.charCodeAt(i) !== 46) return -1;
      i++;
    }
  }
  return i === n ? value : -1;
}

/** Value of a hex digit's character code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 32;
  return lower >= 97 && lower <= 102 ? lower - 87 : -1;
}

/**
 * The eight 16-bit groups of an IPv6 address (RFC 4291 text: hex groups of one to four
 * digits, one "::" at most, a dotted IPv4 tail allowed), or undefined.
 */
function parseV6Groups(text: string): number[] | undefined {
  const n = text.length;
  if (n < 2 || n > 45) return undefined;
  const groups: number[] = [];
  let gap = -1; // where "::" stands, as a group index
  let i = 0;
  if (text.charCodeAt(0) === 58) {
    if (text.charCodeAt(1) !== 58) return undefined;
    gap = 0;
    i = 2;
    if (i === n) return [0, 0, 0, 0, 0, 0, 0, 0];
  }
  for (;;) {
    if (groups.length === 8) return undefined;
    const first = i;
    let g = 0;
    while (i < n && i - first < 5) {
      const d = hexDigit(text.charCodeAt(i));
      if (d < 0) break;
      g = g * 16 + d;
      i++;
    }
    const digits = i - first;
    if (i < n && text.charCodeAt(i) === 46) {
      // The dotted IPv4 tail: the last 32 bits.
      if (groups.length > 6) return undefined;
      const v4 = parseV4At(text, first);
      if (v4 < 0) return undefined;
      groups.push(v4 >>> 16, v4 & 0xffff);
      break;
    }
    if (digits === 0 || digits > 4) return undefined;
    groups.push(g);
    if (i === n) break;
    if (text.charCodeAt(i) !== 58) return undefined;
    i++;
    if (i < n && text.charCodeAt(i) === 58) {
      if (gap >= 0) return undefined;
      gap = groups.length;
      i++;
      if (i === n) break;
    } else if (i === n) {
      return undefined; // a single trailing ":"
    }
  }
  if (gap < 0) return groups.length === 8 ? groups : undefined;
  const missing = 8 - groups.length;
  if (missing < 1) return undefined;
  groups.splice(gap, 0, ...new Array<number>(missing).fill(0));
  return groups;
}

/** The 128-bit value of eight 16-bit groups: four 32-bit words, four bigint steps. */
function groupsValue(g: readonly number[]): bigint {
  return (BigInt(g[0] * 65536 + g[1]) << 96n) | (BigInt(g[2] * 65536 + g[3]) << 64n) |
    (BigInt(g[4] * 65536 + g[5]) << 32n) | BigInt(g[6] * 65536 + g[7]);
}

/** RFC 5952 text of eight groups: lower case, the longest run of 2+ zero groups as "::". */
function formatGroups(groups: readonly number[]): string {
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
  const hex = (from: number, to: number) => {
    let out = "";
    for (let k = from; k < to; k++) out += (k > from ? ":" : "") + groups[k].toString(16);
    return out;
  };
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

function formatV4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** An address read from text, before the IPv4-mapped rule: family, value and text. */
interface Read {
  family: Family;
  value: bigint;
  /** Canonical text of the address as read (IPv6 still, when IPv4-mapped). */
  text: string;
  /** The IPv4 value of an IPv4-mapped IPv6 address, else -1. */
  mapped: number;
}

function readAddress(text: string): Read | undefined {
  const v4 = parseV4At(text, 0);
  if (v4 >= 0) return { family: 4, value: BigInt(v4), text, mapped: -1 };
  const g = parseV6Groups(text);
  if (g === undefined) return undefined;
  const isMapped = g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 &&
    g[5] === 0xffff;
  const canonical = formatGroups(g);
  return {
    family: 6,
    value: groupsValue(g),
    // The text given when it is already canonical: it is usually part of a string that is
    // kept anyway (an annotation), where a made one would be a chain of pieces.
    text: canonical === text ? text : canonical,
    mapped: isMapped ? g[6] * 65536 + g[7] : -1,
  };
}

/**
 * Parses an IP address; IPv4-mapped IPv6 becomes IPv4. Zones (`%eth0`) are refused.
 *
 * @example
 * ```ts
 * parseIp("::ffff:10.0.0.1"); // { family: 4, value: 167772161n, text: "10.0.0.1" }
 * ```
 */
export function parseIp(text: string): Ip | undefined {
  const r = readAddress(text);
  if (r === undefined) return undefined;
  if (r.mapped >= 0) return { family: 4, value: BigInt(r.mapped), text: formatV4(r.mapped) };
  return { family: r.family, value: r.value, text: r.text };
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
  const r = readAddress(addrText);
  if (r === undefined) return { ok: false, reason: "not an IP address" };
  let family = r.family;
  let value = r.value;
  let addr = r.text;
  let prefix = BITS[family];
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return { ok: false, reason: "prefix is not a number" };
    prefix = Number(p);
    if (prefix > BITS[family]) {
      return { ok: false, reason: `prefix /${prefix} exceeds ${BITS[family]}` };
    }
  }
  if (r.mapped >= 0 && (slash < 0 || prefix >= 96)) {
    family = 4;
    value = BigInt(r.mapped);
    addr = formatV4(r.mapped);
    prefix = slash < 0 ? 32 : prefix - 96;
  }
  const cidr = makeCidr(family, value, prefix);
  // Host bits set: the text read is not the network's; it is made from the value instead.
  if (cidr.value !== value) return { ok: true, cidr };
  // The text given when it is canonical (the prefix was checked to be), as for addresses.
  const canonical = addr === addrText && slash >= 0 ? text : `${addr}/${prefix}`;
  return { ok: true, cidr: { family, value, prefix, text: canonical } };
}

/** Builds a canonical CIDR, clearing host bits. */
export function makeCidr(family: Family, value: bigint, prefix: number): Cidr {
  const host = BITS[family] - prefix;
  return { family, value: (value >> BigInt(host)) << BigInt(host), prefix };
}

/** Canonical text of an address (RFC 5952 for IPv6). */
export function formatIp(ip: Ip): string {
  if (ip.text !== undefined) return ip.text;
  if (ip.family === 4) return formatV4(Number(ip.value));
  const groups: number[] = [];
  for (let w = 3; w >= 0; w--) {
    const word = Number((ip.value >> BigInt(w * 32)) & 0xffffffffn);
    groups.push(word >>> 16, word & 0xffff);
  }
  return formatGroups(groups);
}

/** Canonical text of a CIDR, always with its prefix. */
export function formatCidr(cidr: Cidr): string {
  return cidr.text ?? `${formatIp({ family: cidr.family, value: cidr.value })}/${cidr.prefix}`;
}

/** Whether `ip` lies inside `cidr` (same family only). */
export function cidrContainsIp(cidr: Cidr, ip: Ip): boolean {
  if (cidr.family !== ip.family) return false;
  const host = BigInt(BITS[cidr.family] - cidr.prefix);
  return ip.value >> host === cidr.value >> host;
}

/** Whether two parsed addresses are the same (parseIp makes an IPv4-mapped one IPv4). */
export function sameIp(a: Ip, b: Ip): boolean {
  return a.family === b.family && a.value === b.value;
}

/** Whether two CIDRs are the same network. */
export function sameCidr(a: Cidr, b: Cidr): boolean {
  return a.family === b.family && a.value === b.value && a.prefix === b.prefix;
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
  // One pass and one array: this runs for every node's annotations on every list.
  const items: string[] = [];
  for (let start = 0;;) {
    const comma = text.indexOf(",", start);
    const item = (comma < 0 ? text.slice(start) : text.slice(start, comma)).trim();
    if (item !== "") items.push(item);
    if (comma < 0) return items;
    start = comma + 1;
  }
}
