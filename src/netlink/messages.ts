/**
 * rtnetlink messages, pure: the requests this adapter sends (route changes, dumps) and the
 * answers and notifications it reads (routes, links, addresses, errors), with addresses in
 * the canonical text of src/net/ip.ts, so that a route read here equals what the iproute2
 * adapter reads from `ip -json`.
 *
 * Requests are what `ip route replace DST via GW proto P` and `ip route del DST via GW
 * proto P [metric M]` send: table main in rtm_table, a unicast route of scope universe for a
 * replace; scope "nowhere" and type unspecified for a delete, which then matches any route
 * at DST (with that first next hop, and that metric, when given) of protocol P only. An
 * IPv6 delete naming a next hop removes that sibling of a multipath route alone.
 *
 * @module
 */
import {
  type Family,
  formatCidr,
  formatIp,
  type Ip,
  makeCidr,
  parseCidr,
  parseIp,
} from "../net/ip.ts";
import type { KernelRoute, LocalAddress, RouteOp } from "../routing/types.ts";
import { attrString, forEachAttr, MessageWriter, type RawMessage, splitMessages } from "./codec.ts";
import {
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  IFA_ADDRESS,
  IFA_FLAGS,
  IFA_LOCAL,
  IFLA_IFNAME,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_MULTIPATH,
  RTA_OIF,
  RTA_PRIORITY,
  RTA_TABLE,
  RTA_VIA,
  RTM_DELADDR,
  RTM_DELLINK,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_GETADDR,
  RTM_GETLINK,
  RTM_GETROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTN_UNICAST,
} from "./constants.ts";

/** The address family number of a {@link Family}. */
export function afOf(family: Family): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function familyOf(af: number): Family | undefined {
  return af === AF_INET ? 4 : af === AF_INET6 ? 6 : undefined;
}

// ---------------------------------------------------------------------------------------
// Addresses

/** The 128 bits at `at`, network order. */
function u128(view: DataView, at: number): bigint {
  return (BigInt(view.getUint32(at)) << 96n) | (BigInt(view.getUint32(at + 4)) << 64n) |
    (BigInt(view.getUint32(at + 8)) << 32n) | BigInt(view.getUint32(at + 12));
}

/** Whether the 16 bytes at `at` are an IPv4-mapped IPv6 address (::ffff:a.b.c.d). */
function isMapped(view: DataView, at: number): boolean {
  return view.getUint32(at) === 0 && view.getUint32(at + 4) === 0 &&
    view.getUint32(at + 8) === 0xffff;
}

/**
 * The address in `length` bytes at `at`, network order; an IPv4-mapped IPv6 address is
 * IPv4 (as parseIp makes it). Undefined for any other length.
 */
export function ipAt(view: DataView, at: number, length: number): Ip | undefined {
  if (length === 4) return { family: 4, value: BigInt(view.getUint32(at)) };
  if (length !== 16) return undefined;
  if (isMapped(view, at)) return { family: 4, value: BigInt(view.getUint32(at + 12)) };
  return { family: 6, value: u128(view, at) };
}

/**
 * The canonical destination of a route of family `af` with `prefix` bits of the address at
 * `at` (none: the default route), as parseCidr reads `ip`'s text of it: an IPv4-mapped
 * IPv6 destination of /96 or longer is IPv4.
 */
export function dstAt(
  view: DataView,
  at: number,
  length: number,
  af: number,
  prefix: number,
): { family: Family; text: string } | undefined {
  const family = familyOf(af);
  if (family === undefined || prefix > (family === 4 ? 32 : 128)) return undefined;
  if (length === 0) {
    return prefix === 0 ? { family, text: family === 4 ? "0.0.0.0/0" : "::/0" } : undefined;
  }
  if (family === 4) {
    return length === 4 ? cidrText(4, BigInt(view.getUint32(at)), prefix) : undefined;
  }
  if (length !== 16) return undefined;
  if (prefix >= 96 && isMapped(view, at)) {
    return cidrText(4, BigInt(view.getUint32(at + 12)), prefix - 96);
  }
  return cidrText(6, u128(view, at), prefix);
}

function cidrText(family: Family, value: bigint, prefix: number): { family: Family; text: string } {
  return { family, text: formatCidr(makeCidr(family, value, prefix)) };
}

/** An address to write: its length in bytes and value. */
export interface AddressValue {
  readonly length: 4 | 16;
  readonly value: bigint;
}

/**
 * The next hop `via` of a route of `family` as written: an IPv4 address (also when written
 * as IPv4-mapped IPv6) for IPv4; an IPv6 address for IPv6, where an IPv4 one stands for its
 * IPv4-mapped form (the canonical text of a mapped next hop is IPv4). Throws, naming it,
 * for anything else.
 */
export function gatewayValue(family: Family, via: string, dst: string): AddressValue {
  const ip = parseIp(via);
  if (!ip) throw new Error(`route ${dst}: next hop ${JSON.stringify(via)} is not an address`);
  if (family === 4) {
    if (ip.family !== 4) throw new Error(`route ${dst}: next hop ${via} is not IPv4`);
    return { length: 4, value: ip.value };
  }
  return { length: 16, value: ip.family === 4 ? 0xffff00000000n | ip.value : ip.value };
}

// ---------------------------------------------------------------------------------------
// Requests

/** Writes a struct rtmsg (source length, TOS and flags 0). */
function rtmsg(
  w: MessageWriter,
  af: number,
  dstLen: number,
  table: number,
  protocol: number,
  scope: number,
  type: number,
): void {
  w.bytesOf(af, dstLen, 0, 0, table, protocol, scope, type, 0, 0, 0, 0);
}

/** Header flags of a route replace: create it, or replace the route at its destination. */
export const REPLACE_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
/** Header flags of a route delete. */
export const DELETE_FLAGS = NLM_F_REQUEST | NLM_F_ACK;

/**
 * Checks an operation as the contract wants it checked before anything is sent: a delete
 * must name our protocol, destinations and next hops must be addresses of the route's
 * family. Throws naming the route; else returns what {@link encodeRouteOp} writes.
 */
export function checkRouteOp(
  op: RouteOp,
  protocol: number,
): { prefix: number; dst: AddressValue; gateway?: AddressValue } {
  const r = op.route;
  if (op.op === "delete" && op.route.protocol !== protocol) {
    throw new Error(
      `refusing to delete ${r.dst}: protocol ${op.route.protocol} is not ours (${protocol})`,
    );
  }
  if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) {
    throw new Error(`route protocol ${protocol} is not a number from 0 to 255`);
  }
  const c = parseCidr(r.dst);
  if (!c.ok) throw new Error(`route ${JSON.stringify(r.dst)}: ${c.reason}`);
  if (c.cidr.family !== r.family) {
    throw new Error(`route ${r.dst}: not an IPv${r.family} destination`);
  }
  return {
    prefix: c.cidr.prefix,
    dst: { length: r.family === 4 ? 4 : 16, value: c.cidr.value },
    gateway: r.via === undefined ? undefined : gatewayValue(r.family, r.via, r.dst),
  };
}

/**
 * Writes the RTM_NEWROUTE (replace) or RTM_DELROUTE (delete) of one operation, with
 * sequence number `seq` and an acknowledgement asked for. Throws, writing nothing, where
 * {@link checkRouteOp} does.
 */
export function encodeRouteOp(w: MessageWriter, op: RouteOp, protocol: number, seq: number): void {
  const c = checkRouteOp(op, protocol);
  const af = afOf(op.route.family);
  if (op.op === "replace") {
    w.begin(RTM_NEWROUTE, REPLACE_FLAGS, seq);
    rtmsg(w, af, c.prefix, RT_TABLE_MAIN, protocol, RT_SCOPE_UNIVERSE, RTN_UNICAST);
  } else {
    w.begin(RTM_DELROUTE, DELETE_FLAGS, seq);
    rtmsg(w, af, c.prefix, RT_TABLE_MAIN, protocol, RT_SCOPE_NOWHERE, 0);
  }
  w.attrAddress(RTA_DST, c.dst.length, c.dst.value);
  if (c.gateway) w.attrAddress(RTA_GATEWAY, c.gateway.length, c.gateway.value);
  // The metric read: the delete takes that route of ours, not one at another metric.
  if (op.op === "delete" && op.route.metric !== undefined) {
    w.attrU32(RTA_PRIORITY, op.route.metric);
  }
  w.end();
}

/** What a route dump asks the kernel to keep (NETLINK_GET_STRICT_CHK filters). */
export interface RouteDumpFilter {
  /** Table id; default main. */
  table?: number;
  /** Only routes of this protocol. */
  protocol?: number;
}

/** Writes a dump request of the routes of one family (strictly checked, filtered). */
export function encodeRouteDump(
  w: MessageWriter,
  seq: number,
  family: Family,
  filter: RouteDumpFilter = {},
): void {
  const table = filter.table ?? RT_TABLE_MAIN;
  w.begin(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq);
  // Under strict checking dst_len, src_len, tos and scope must be 0; table, protocol and
  // type are filters (0: any).
  rtmsg(w, afOf(family), 0, table < 256 ? table : 0, filter.protocol ?? 0, 0, 0);
  w.attrU32(RTA_TABLE, table);
  w.end();
}

/** Writes a dump request of every link (struct ifinfomsg all zero, as strict checks want). */
export function encodeLinkDump(w: MessageWriter, seq: number): void {
  w.begin(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq);
  w.raw(new Uint8Array(16));
  w.end();
}

/** Writes a dump request of the addresses of a family (AF_UNSPEC: IPv4, then IPv6). */
export function encodeAddressDump(w: MessageWriter, seq: number, af = AF_UNSPEC): void {
  w.begin(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq);
  w.raw(new Uint8Array([af, 0, 0, 0, 0, 0, 0, 0]));
  w.end();
}

// ---------------------------------------------------------------------------------------
// Answers and notifications

/** A route message (RTM_NEWROUTE / RTM_DELROUTE) of IPv4 or IPv6. */
export interface RouteMessage {
  readonly kind: "route";
  readonly seq: number;
  readonly flags: number;
  readonly deleted: boolean;
  /** The route's family (rtm_family). */
  readonly family: Family;
  /**
   * Canonical destination; its family differs from the route's for an IPv4-mapped IPv6
   * destination of /96 or longer, which parseCidr reads as IPv4.
   */
  readonly dst: { readonly family: Family; readonly text: string };
  /** Canonical next hop (RTA_GATEWAY, else the first hop of RTA_MULTIPATH that has one). */
  readonly gateway?: string;
  /** Whether the route has a next hop of another family (RTA_VIA), which `ip` prints apart. */
  readonly via: boolean;
  /** Output interface (RTA_OIF, else the first hop's). */
  readonly oif?: number;
  /** Number of next hops in RTA_MULTIPATH (0 without it). */
  readonly hops: number;
  readonly protocol: number;
  readonly type: number;
  readonly scope: number;
  /** RTA_TABLE, else rtm_table. */
  readonly table: number;
  readonly metric?: number;
  /** rtm_flags (RTM_F_CLONED...). */
  readonly rtmFlags: number;
}

/** A link message (RTM_NEWLINK / RTM_DELLINK). */
export interface LinkMessage {
  readonly kind: "link";
  readonly seq: number;
  readonly flags: number;
  readonly deleted: boolean;
  readonly index: number;
  /** Interface flags (IFF_UP...). */
  readonly ifFlags: number;
  readonly name?: string;
}

/** An address message (RTM_NEWADDR / RTM_DELADDR) of IPv4 or IPv6. */
export interface AddressMessage {
  readonly kind: "address";
  readonly seq: number;
  readonly flags: number;
  readonly deleted: boolean;
  /** The family of the message (an IPv4-mapped address in it still reads as IPv4). */
  readonly af: number;
  readonly index: number;
  readonly prefix: number;
  /** IFA_FLAGS when present, else ifa_flags. */
  readonly addrFlags: number;
  readonly scope: number;
  /** IFA_LOCAL, else IFA_ADDRESS, as `ip` shows it as "local". */
  readonly address?: Ip;
}

/** An NLMSG_ERROR: errno 0 is an acknowledgement. */
export interface ErrorMessage {
  readonly kind: "error";
  readonly seq: number;
  readonly flags: number;
  /** Positive errno, 0 for success. */
  readonly errno: number;
  /** The kernel's extended ack text (NLMSGERR_ATTR_MSG), when it gave one. */
  readonly message?: string;
}

/** NLMSG_DONE, the end of a dump; a dump that failed late carries an errno. */
export interface DoneMessage {
  readonly kind: "done";
  readonly seq: number;
  readonly flags: number;
  readonly errno: number;
  readonly message?: string;
}

/** Any other message, of its type. */
export interface OtherMessage {
  readonly kind: "other";
  readonly seq: number;
  readonly flags: number;
  readonly type: number;
}

/** A decoded message. */
export type NetlinkMessage =
  | RouteMessage
  | LinkMessage
  | AddressMessage
  | ErrorMessage
  | DoneMessage
  | OtherMessage;

function decodeRoute(m: RawMessage): RouteMessage | OtherMessage {
  const v = m.view;
  const other: OtherMessage = { kind: "other", seq: m.seq, flags: m.flags, type: m.type };
  if (m.end - m.start < 12) return other;
  const family = familyOf(v.getUint8(m.start));
  if (family === undefined) return other;
  const dstLen = v.getUint8(m.start + 1);
  let dstAtOff = 0, dstLength = 0;
  let gateway: Ip | undefined;
  let oif: number | undefined;
  let hops = 0;
  let hopGateway: Ip | undefined;
  let hopOif: number | undefined;
  let table = v.getUint8(m.start + 4);
  let metric: number | undefined;
  let via = false;
  forEachAttr(v, m.start + 12, m.end, (type, at, len) => {
    switch (type) {
      case RTA_DST:
        dstAtOff = at;
        dstLength = len;
        break;
      case RTA_GATEWAY:
        gateway = ipAt(v, at, len);
        break;
      case RTA_OIF:
        if (len >= 4) oif = v.getUint32(at, true);
        break;
      case RTA_PRIORITY:
        if (len >= 4) metric = v.getUint32(at, true);
        break;
      case RTA_TABLE:
        if (len >= 4) table = v.getUint32(at, true);
        break;
      case RTA_VIA:
        via = true;
        break;
      case RTA_MULTIPATH: {
        // struct rtnexthop { u16 len; u8 flags; u8 hops; int ifindex; } then attributes.
        let at2 = at;
        const end = at + len;
        while (at2 + 8 <= end) {
          const hlen = v.getUint16(at2, true);
          if (hlen < 8 || at2 + hlen > end) break;
          if (hops === 0) hopOif = v.getInt32(at2 + 4, true);
          if (hopGateway === undefined) {
            forEachAttr(v, at2 + 8, at2 + hlen, (t, a, l) => {
              if (t === RTA_GATEWAY) hopGateway = ipAt(v, a, l);
            });
          }
          hops++;
          at2 += (hlen + 3) & ~3;
        }
        break;
      }
    }
  });
  const dst = dstAt(v, dstAtOff, dstLength, afOf(family), dstLen);
  if (!dst) return other;
  const gw = gateway ?? hopGateway;
  const out = oif ?? hopOif;
  return {
    kind: "route",
    seq: m.seq,
    flags: m.flags,
    deleted: m.type === RTM_DELROUTE,
    family,
    dst,
    gateway: gw === undefined ? undefined : formatIp(gw),
    via,
    oif: out === undefined || out === 0 ? undefined : out,
    hops,
    protocol: v.getUint8(m.start + 5),
    scope: v.getUint8(m.start + 6),
    type: v.getUint8(m.start + 7),
    table,
    metric,
    rtmFlags: v.getUint32(m.start + 8, true),
  };
}

function decodeLink(m: RawMessage): LinkMessage | OtherMessage {
  const v = m.view;
  if (m.end - m.start < 16) return { kind: "other", seq: m.seq, flags: m.flags, type: m.type };
  let name: string | undefined;
  forEachAttr(v, m.start + 16, m.end, (type, at, len) => {
    if (type === IFLA_IFNAME) name = attrString(v, at, len);
  });
  return {
    kind: "link",
    seq: m.seq,
    flags: m.flags,
    deleted: m.type === RTM_DELLINK,
    index: v.getInt32(m.start + 4, true),
    ifFlags: v.getUint32(m.start + 8, true),
    name,
  };
}

function decodeAddress(m: RawMessage): AddressMessage | OtherMessage {
  const v = m.view;
  if (m.end - m.start < 8) return { kind: "other", seq: m.seq, flags: m.flags, type: m.type };
  let local: Ip | undefined;
  let address: Ip | undefined;
  let addrFlags = v.getUint8(m.start + 2);
  forEachAttr(v, m.start + 8, m.end, (type, at, len) => {
    if (type === IFA_LOCAL) local = ipAt(v, at, len);
    else if (type === IFA_ADDRESS) address = ipAt(v, at, len);
    else if (type === IFA_FLAGS && len >= 4) addrFlags = v.getUint32(at, true);
  });
  return {
    kind: "address",
    seq: m.seq,
    flags: m.flags,
    deleted: m.type === RTM_DELADDR,
    af: v.getUint8(m.start),
    prefix: v.getUint8(m.start + 1),
    addrFlags,
    scope: v.getUint8(m.start + 3),
    index: v.getUint32(m.start + 4, true),
    address: local ?? address,
  };
}

/** The errno and extended ack text of an NLMSG_ERROR or NLMSG_DONE payload. */
function decodeStatus(m: RawMessage): { errno: number; message?: string } {
  const v = m.view;
  if (m.end - m.start < 4) return { errno: 0 };
  const code = v.getInt32(m.start, true);
  const errno = code === 0 ? 0 : -code;
  let message: string | undefined;
  if (m.flags & NLM_F_ACK_TLVS) {
    // NLMSG_ERROR: struct nlmsgerr (error, then the request's header, then the rest of the
    // request unless capped); NLMSG_DONE: the error alone.
    let tlvs = m.start + 4;
    if (m.type === NLMSG_ERROR) {
      const innerLen = m.end - m.start >= 20 ? v.getUint32(m.start + 4, true) : 16;
      tlvs += m.flags & NLM_F_CAPPED ? 16 : ((innerLen + 3) & ~3);
    }
    forEachAttr(v, tlvs, m.end, (type, at, len) => {
      if (type === NLMSGERR_ATTR_MSG) message = attrString(v, at, len);
    });
  }
  return { errno, message: message || undefined };
}

/** Decodes every message of one datagram. */
export function decodeMessages(data: Uint8Array): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  for (const m of splitMessages(data)) {
    switch (m.type) {
      case RTM_NEWROUTE:
      case RTM_DELROUTE:
        out.push(decodeRoute(m));
        break;
      case RTM_NEWLINK:
      case RTM_DELLINK:
        out.push(decodeLink(m));
        break;
      case RTM_NEWADDR:
      case RTM_DELADDR:
        out.push(decodeAddress(m));
        break;
      case NLMSG_ERROR:
        out.push({ kind: "error", seq: m.seq, flags: m.flags, ...decodeStatus(m) });
        break;
      case NLMSG_DONE:
        out.push({ kind: "done", seq: m.seq, flags: m.flags, ...decodeStatus(m) });
        break;
      default:
        out.push({ kind: "other", seq: m.seq, flags: m.flags, type: m.type });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Into the contract's values

/** The name `ip` shows for a link index: its name, else `if<N>`. */
export function linkName(names: ReadonlyMap<number, string>, index: number): string {
  return names.get(index) ?? `if${index}`;
}

/**
 * A route of the main table as {@link KernelRoute}, the same value the iproute2 adapter
 * makes of `ip -N -json route show`; undefined for what it leaves out (other tables,
 * cached routes, a destination whose canonical text is of the other family).
 */
export function toKernelRoute(
  m: RouteMessage,
  names: ReadonlyMap<number, string>,
): KernelRoute | undefined {
  if (m.table !== RT_TABLE_MAIN || m.rtmFlags & RTM_F_CLONED || m.dst.family !== m.family) return;
  return {
    family: m.family,
    dst: m.dst.text,
    via: m.gateway,
    dev: m.oif === undefined ? undefined : linkName(names, m.oif),
    protocol: m.protocol,
    type: m.type !== RTN_UNICAST ? String(m.type) : undefined,
    metric: m.metric,
    multipath: m.hops > 1 ? true : undefined,
  };
}

/** An address as {@link LocalAddress}; undefined when it has none. */
export function toLocalAddress(
  m: AddressMessage,
  names: ReadonlyMap<number, string>,
): LocalAddress | undefined {
  if (!m.address || (m.af !== AF_INET && m.af !== AF_INET6)) return undefined;
  return {
    family: m.address.family,
    address: formatIp(m.address),
    prefix: m.prefix,
    dev: linkName(names, m.index),
  };
}

/**
 * The text `ip` prints for a refused request, as the iproute2 adapter keeps it: the
 * kernel's message with a final period, else the C library's text of the errno
 * ("No such process").
 */
export function errorText(
  errno: number,
  message: string | undefined,
  describe: (errno: number) => string,
): string {
  if (message) return message.endsWith(".") ? message : `${message}.`;
  return describe(errno);
}
