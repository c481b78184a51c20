/**
 * Which of the host's addresses a daemon publishes in its network's address annotation
 * (`192.168.2.3,1000::1:c0a8:203`), so that peers route to this node on that network.
 *
 * Pure: the host's addresses come in as `ip -json address show` printed them, checked at
 * this border, and the selection is a function of them, the selector and the annotation's
 * current value.
 *
 * Rules, per family (IPv4, then IPv6; one address each):
 *
 * 1. In scope of the selector: on the interface named by `ADDRESS_INTERFACE`, or inside one
 *    of the `ADDRESS_SUBNETS` (on any interface: hosts name their interfaces differently).
 * 2. Usable: scope global; not loopback (127/8, ::1), not link-local (169.254/16, fe80::/10);
 *    not tentative (DAD still running), not dadfailed, not deprecated (flag, or preferred
 *    lifetime 0): peers must reach it, and the kernel would not pick it as a source.
 * 3. Best first: the subnet listed first that holds it (subnets only); then a non-temporary
 *    address before an IPv6 privacy (temporary) one, which is renewed daily and would make
 *    the annotation churn; then the lowest address.
 * 4. Sticky: the address the annotation already has for the family is kept while it is
 *    usable and ranks as the best does on 1-3, so adding an address never moves peers'
 *    routes; only its loss (or a better subnet's address) does.
 * 5. A family the annotation has but the host no longer has a usable address of keeps the
 *    annotation's entry and is a problem: dropping it would delete the peers' routes over a
 *    passing gap (an address being replaced, DAD of the new one).
 *
 * @module
 */
import { z } from "zod";
import {
  type Cidr,
  cidrContainsIp,
  type Family,
  formatCidr,
  formatIp,
  type Ip,
  makeCidr,
  parseCidr,
  parseIp,
  splitList,
} from "../net/ip.ts";

/** One address of the host, as `ip -json address show` reported it. */
export interface HostAddress {
  /** The interface (`ifname`) it is on. */
  readonly dev: string;
  readonly family: Family;
  /** The address, parsed (its `text` is canonical). */
  readonly ip: Ip;
  /** Canonical text of the address. */
  readonly address: string;
  readonly prefix: number;
  /** "global", "site", "link", "host", "nowhere", or the number ip printed. */
  readonly scope: string;
  /** Duplicate address detection still running. */
  readonly tentative: boolean;
  /** Duplicate address detection found another node with it. */
  readonly dadfailed: boolean;
  /** Flagged deprecated: kept for existing connections, not for new ones. */
  readonly deprecated: boolean;
  /** An IPv6 privacy address (RFC 8981), renewed regularly. */
  readonly temporary: boolean;
  /** Seconds; 4294967295 is forever. */
  readonly preferredLifetime: number;
}

/** Which addresses to publish: those on one interface, or those inside some subnets. */
export type AddressSelector =
  | { readonly interface: string }
  | { readonly subnets: readonly Cidr[] };

const AddrInfo = z.object({
  family: z.string(),
  // Entries without one exist (a bare peer address); they are nothing to publish.
  local: z.string().optional(),
  prefixlen: z.number().int().min(0).max(128),
  scope: z.union([z.string(), z.number()]).optional(),
  tentative: z.boolean().optional(),
  dadfailed: z.boolean().optional(),
  deprecated: z.boolean().optional(),
  temporary: z.boolean().optional(),
  preferred_life_time: z.number().optional(),
});

const AddrJson = z.array(z.object({
  ifname: z.string(),
  addr_info: z.array(AddrInfo).optional(),
}));

/** Scope names of iproute2's rt_scopes, for output printed with `-N` (numbers). */
const SCOPE_NAMES: Record<string, string> = {
  "0": "global",
  "200": "site",
  "253": "link",
  "254": "host",
  "255": "nowhere",
};

const FOREVER = 4294967295;

/**
 * Parses `ip -json address show` output into the host's IPv4 and IPv6 addresses; other
 * families and entries without an address are left out. Throws when the output does not
 * have the expected shape.
 */
export function parseHostAddresses(json: unknown): HostAddress[] {
  const parsed = AddrJson.safeParse(json);
  if (!parsed.success) throw new Error(`ip address output not understood: ${parsed.error.message}`);
  const out: HostAddress[] = [];
  for (const link of parsed.data) {
    for (const a of link.addr_info ?? []) {
      const family = a.family === "inet" ? 4 : a.family === "inet6" ? 6 : undefined;
      if (family === undefined || a.local === undefined) continue;
      const ip = parseIp(a.local);
      // An IPv4-mapped address on an IPv6 entry is not an IPv6 address of the host.
      if (!ip || ip.family !== family) continue;
      const scope = String(a.scope ?? "global");
      out.push({
        dev: link.ifname,
        family,
        ip,
        address: formatIp(ip),
        prefix: a.prefixlen,
        scope: SCOPE_NAMES[scope] ?? scope,
        tentative: a.tentative === true,
        dadfailed: a.dadfailed === true,
        deprecated: a.deprecated === true,
        temporary: a.temporary === true,
        preferredLifetime: a.preferred_life_time ?? FOREVER,
      });
    }
  }
  return out;
}

const LOOPBACK: Record<Family, Cidr> = {
  4: makeCidr(4, 0x7f000000n, 8),
  6: makeCidr(6, 1n, 128),
};
const LINK_LOCAL: Record<Family, Cidr> = {
  4: makeCidr(4, 0xa9fe0000n, 16),
  6: makeCidr(6, 0xfe80n << 112n, 10),
};

/** Whether an address can never be published, whatever its flags: loopback, link-local. */
function neverPublished(ip: Ip): "loopback" | "link-local" | undefined {
  if (cidrContainsIp(LOOPBACK[ip.family], ip)) return "loopback";
  if (cidrContainsIp(LINK_LOCAL[ip.family], ip)) return "link-local";
  return undefined;
}

/** Why an address of the host cannot be published (rule 2), or undefined when it can. */
export function unusableReason(a: HostAddress): string | undefined {
  const never = neverPublished(a.ip);
  if (never) return never;
  if (a.scope !== "global") return `scope ${a.scope}`;
  // A failed DAD leaves the address tentative as well; the failure is what matters.
  if (a.dadfailed) return "dadfailed";
  if (a.tentative) return "tentative";
  // IPv4 reports a deprecated address's preferred lifetime as forever: the flag tells.
  if (a.deprecated || a.preferredLifetime === 0) return "deprecated";
  return undefined;
}

/**
 * The rank of an address under the selector (rule 1 and the first key of rule 3): 0 for
 * the interface's own, the index of the first subnet holding it; undefined when out of scope.
 */
export function selectorRank(a: HostAddress, selector: AddressSelector): number | undefined {
  if ("interface" in selector) return a.dev === selector.interface ? 0 : undefined;
  const i = selector.subnets.findIndex((s) => cidrContainsIp(s, a.ip));
  return i < 0 ? undefined : i;
}

interface Ranked {
  readonly a: HostAddress;
  readonly rank: number;
}

/** Rule 3's order: subnet, then non-temporary first, then lowest address. */
function better(x: Ranked, y: Ranked): boolean {
  if (x.rank !== y.rank) return x.rank < y.rank;
  if (x.a.temporary !== y.a.temporary) return !x.a.temporary;
  return x.a.ip.value < y.a.ip.value;
}

/**
 * The address to publish for one family (rules 1-4), or undefined when none qualifies.
 * `prefer`: the family's address in the annotation now (rule 4).
 */
export function chooseAddress(
  addrs: readonly HostAddress[],
  selector: AddressSelector,
  family: Family,
  prefer?: Ip,
): HostAddress | undefined {
  let best: Ranked | undefined;
  let preferred: Ranked | undefined;
  for (const a of addrs) {
    if (a.family !== family || unusableReason(a) !== undefined) continue;
    const rank = selectorRank(a, selector);
    if (rank === undefined) continue;
    const r = { a, rank };
    if (!best || better(r, best)) best = r;
    if (prefer && a.ip.value === prefer.value && (!preferred || better(r, preferred))) {
      preferred = r;
    }
  }
  if (best && preferred && preferred.rank === best.rank) {
    if (preferred.a.temporary === best.a.temporary) return preferred.a;
  }
  return best?.a;
}

/** What the annotation should say, and why. */
export interface AnnotationPlan {
  /**
   * The annotation value: one address per family, IPv4 first, comma separated, canonical;
   * "" when there is nothing at all.
   */
  readonly value: string;
  /** The host's address chosen for each family that has one. */
  readonly chosen: { readonly 4?: HostAddress; readonly 6?: HostAddress };
  /** Entries of the current value kept for want of a usable address of their family (rule 5). */
  readonly kept: readonly Ip[];
}

/** The first address of each family in an annotation value; unparsable entries are ignored. */
export function annotationAddresses(value: string | undefined): { 4?: Ip; 6?: Ip } {
  const out: { 4?: Ip; 6?: Ip } = {};
  for (const item of splitList(value ?? "")) {
    const ip = parseIp(item);
    if (ip && out[ip.family] === undefined) out[ip.family] = ip;
  }
  return out;
}

/**
 * Plans the annotation value from the host's addresses (rules 1-5). `current`: the value
 * the annotation has now (undefined or "" when it has none).
 */
export function planAnnotation(
  addrs: readonly HostAddress[],
  selector: AddressSelector,
  current?: string,
): AnnotationPlan {
  const now = annotationAddresses(current);
  const chosen: { 4?: HostAddress; 6?: HostAddress } = {};
  const kept: Ip[] = [];
  const parts: string[] = [];
  for (const family of [4, 6] as const) {
    const a = chooseAddress(addrs, selector, family, now[family]);
    const old = now[family];
    if (a) {
      chosen[family] = a;
      parts.push(a.address);
    } else if (old) {
      kept.push(old);
      parts.push(formatIp(old));
    }
  }
  return { value: parts.join(","), chosen, kept };
}

/** The selector as an operator wrote it: `interface net3`, `subnets 192.168.2.0/24,...`. */
export function describeSelector(selector: AddressSelector): string {
  if ("interface" in selector) return `interface ${selector.interface}`;
  return `subnets ${selector.subnets.map(formatCidr).join(",")}`;
}

/**
 * Why the plan is not the host's own view of itself, in one line, or undefined when all is
 * well: nothing usable at all, or a family kept from the annotation (rule 5). Only facts
 * that stay the same from one read to the next, so it can be reported once.
 */
export function planProblem(plan: AnnotationPlan, selector: AddressSelector): string | undefined {
  const where = describeSelector(selector);
  if (plan.chosen[4] === undefined && plan.chosen[6] === undefined) {
    const keeping = plan.kept.length > 0 ? `; the annotation keeps ${plan.value}` : "";
    return `no usable address (${where})${keeping}`;
  }
  if (plan.kept.length === 0) return undefined;
  const families = plan.kept.map((ip) => `IPv${ip.family}`).join(" and ");
  const entries = plan.kept.map((ip) => formatIp(ip)).join(",");
  return `no usable ${families} address (${where}); the annotation keeps ${entries}`;
}

/**
 * The host's addresses in scope of the selector with what they are or why they are not
 * usable (`1000::5 tentative`), for a log line explaining a problem.
 */
export function describeCandidates(
  addrs: readonly HostAddress[],
  selector: AddressSelector,
): string[] {
  const out: string[] = [];
  for (const a of addrs) {
    if (selectorRank(a, selector) === undefined) continue;
    const why = unusableReason(a) ?? (a.temporary ? "usable, temporary" : "usable");
    out.push(`${a.address}/${a.prefix} on ${a.dev}: ${why}`);
  }
  return out;
}

/**
 * Whether a line of `ip -N monitor link address` can change the selection: a line about an
 * address that is loopback or link-local, or out of the selector's scope, cannot; nor can a
 * link other than ADDRESS_INTERFACE (by its name now: a link renamed to it counts), nor any
 * link with ADDRESS_SUBNETS; a line not understood counts, to be safe. Continuation lines
 * (lifetimes) do not.
 *
 * A node with many pods sees a link and a link-local address come and go with every pod's
 * veth.
 */
export function addressEventMatters(line: string, selector: AddressSelector): boolean {
  if (line.trim() === "" || /^\s/.test(line)) return false;
  const link = /^(?:Deleted )?\d+: ([^\s:@]+)(?:@[^\s:]+)?: </.exec(line);
  if (link) return "interface" in selector && link[1] === selector.interface;
  const m = /^(?:Deleted )?\d+: (\S+)\s+inet6? ([^\s/]+)/.exec(line);
  if (!m) return true;
  const ip = parseIp(m[2]);
  if (!ip) return true;
  if (neverPublished(ip)) return false;
  if ("interface" in selector) return m[1] === selector.interface;
  return selector.subnets.some((s) => cidrContainsIp(s, ip));
}

const IFNAMSIZ = 16;

/**
 * Parses ADDRESS_INTERFACE: a Linux interface name (1-15 bytes; no '/', ':' or whitespace;
 * not "." or ".."), as the kernel's own check. Surrounding whitespace is ignored. Throws an
 * Error naming the value and the reason.
 */
export function parseAddressInterface(text: string): string {
  const name = text.trim();
  const bad = (reason: string) => new Error(`${JSON.stringify(name)}: ${reason}`);
  if (name === "") throw bad("expected an interface name");
  const bytes = new TextEncoder().encode(name).length;
  if (bytes >= IFNAMSIZ) {
    throw bad(`an interface name has at most ${IFNAMSIZ - 1} bytes, not ${bytes}`);
  }
  if (name === "." || name === "..") throw bad("not an interface name");
  if (name.includes("/")) throw bad("an interface name has no '/'");
  if (name.includes(":")) throw bad("an interface name has no ':' (net3:1 is an address label)");
  if (/\s/.test(name)) throw bad("an interface name has no whitespace");
  return name;
}

/**
 * Parses ADDRESS_SUBNETS: comma separated CIDRs, each with its prefix, in canonical form,
 * without host bits, none twice. Throws an Error naming the entry and the reason.
 */
export function parseAddressSubnets(text: string): Cidr[] {
  const items = splitList(text);
  if (items.length === 0) throw new Error(`${JSON.stringify(text)}: expected one or more CIDRs`);
  const out: Cidr[] = [];
  for (const item of items) {
    const bad = (reason: string) => new Error(`${JSON.stringify(item)}: ${reason}`);
    const r = parseCidr(item);
    if (!r.ok) throw bad(r.reason);
    // A bare address would be read as a /32 or /128: more likely a forgotten prefix.
    if (!item.includes("/")) throw bad("expected address/prefix");
    const canonical = formatCidr(r.cidr);
    const address = parseIp(item.slice(0, item.indexOf("/")));
    if (address && address.family === r.cidr.family && address.value !== r.cidr.value) {
      throw bad(`host bits set (the network is ${canonical})`);
    }
    if (canonical !== item) throw bad(`not in canonical form (write ${canonical})`);
    if (out.some((c) => formatCidr(c) === canonical)) throw bad("listed twice");
    out.push(r.cidr);
  }
  return out;
}

/**
 * The selector of the configuration: ADDRESS_INTERFACE or ADDRESS_SUBNETS (already parsed;
 * empty counts as unset), or undefined when neither is set. Throws when both are.
 */
export function addressSelector(
  iface: string | undefined,
  subnets: readonly Cidr[] | undefined,
): AddressSelector | undefined {
  const hasInterface = iface !== undefined && iface !== "";
  const hasSubnets = subnets !== undefined && subnets.length > 0;
  if (hasInterface && hasSubnets) {
    throw new Error("set ADDRESS_INTERFACE or ADDRESS_SUBNETS, not both");
  }
  if (hasInterface) return { interface: iface };
  if (hasSubnets) return { subnets };
  return undefined;
}
