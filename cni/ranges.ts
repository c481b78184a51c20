/**
 * From a node's CIDRs to host-local `ranges`: one range set per family, holding that
 * family's CIDRs in the node's order, checked against what host-local accepts. Pure: no
 * files, no processes.
 *
 * host-local gives one address per range set, so a set per CIDR would give a pod two
 * addresses of one family on a node with two CIDRs of it; CNI IPAM gives one per family.
 * Within a set, host-local takes the first range with a free address.
 *
 * host-local reserves the network address and the gateway (the first address) of every
 * subnet and refuses a subnet without room for one more (`/31`, `/32`, `/127`, `/128`),
 * and ranges that overlap. Both are reported here with the CIDR that causes them.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";
import {
  type Cidr,
  cidrsOverlap,
  type Family,
  familyBits,
  formatCidr,
  parseCidr,
  sameCidr,
} from "../src/net/ip.ts";

/** One host-local range. */
export interface HostLocalRange {
  subnet: string;
}

/** host-local `ranges`: a list of range sets, each a list of ranges. */
export type HostLocalRanges = HostLocalRange[][];

/**
 * A valid range set for commands that do not allocate (DEL, CHECK, GC) when the node's
 * CIDRs are unknown: host-local releases and finds addresses by container ID, whatever
 * the ranges. TEST-NET-1 (RFC 5737), never handed out.
 */
export const PLACEHOLDER_RANGES: HostLocalRanges = [[{ subnet: "192.0.2.0/24" }]];

/** Options of {@link buildRanges}. */
export interface BuildRangesOptions {
  /** Whether the pod gets IPv4 addresses (ipv4-namespaces). */
  ipv4: boolean;
  /** Where the CIDRs came from, for messages (a file, "node X annotation Y"). */
  source: string;
}

/**
 * Builds host-local ranges from a node's CIDRs. Throws {@link CniError}: code 11 when
 * there are no CIDRs (yet), code 100 naming the CIDR host-local cannot take.
 *
 * @example
 * ```ts
 * buildRanges(["10.0.1.0/24", "fd00::1:0/112", "10.0.2.0/24"], { ipv4: true, source: "test" });
 * // [[{ subnet: "10.0.1.0/24" }, { subnet: "10.0.2.0/24" }], [{ subnet: "fd00::1:0/112" }]]
 * ```
 */
export function buildRanges(
  cidrs: readonly string[],
  opts: BuildRangesOptions,
): HostLocalRanges {
  if (cidrs.length === 0) {
    throw new CniError(
      CniCode.TryAgainLater,
      `no CIDRs for this network in ${opts.source} (not assigned yet?)`,
    );
  }
  const kept: Cidr[] = [];
  for (const text of cidrs) {
    const r = parseCidr(text.trim());
    if (!r.ok) {
      throw new CniError(
        CniCode.UnusableRanges,
        `${opts.source}: CIDR ${JSON.stringify(text)}: ${r.reason}`,
      );
    }
    const cidr = r.cidr;
    const hostBits = familyBits(cidr.family) - cidr.prefix;
    if (hostBits < 2) {
      throw new CniError(
        CniCode.UnusableRanges,
        `${opts.source}: CIDR ${JSON.stringify(text)} is too small for host-local: ` +
          `it needs at least 2 host bits (/${familyBits(cidr.family) - 2} or larger), as ` +
          `the network address and the gateway are reserved`,
      );
    }
    if (kept.some((k) => sameCidr(k, cidr))) continue;
    const other = kept.find((k) => cidrsOverlap(k, cidr));
    if (other) {
      throw new CniError(
        CniCode.UnusableRanges,
        `${opts.source}: CIDRs ${formatCidr(other)} and ${formatCidr(cidr)} overlap; ` +
          `host-local refuses overlapping ranges`,
      );
    }
    kept.push(cidr);
  }
  const chosen = opts.ipv4 ? kept : kept.filter((c) => c.family === 6);
  if (chosen.length === 0) {
    throw new CniError(
      CniCode.UnusableRanges,
      `${opts.source}: no IPv6 CIDR for a pod outside ipv4-namespaces ` +
        `(the node has only ${kept.map(formatCidr).join(", ")})`,
    );
  }
  // The sets in the order of each family's first CIDR.
  const sets = new Map<Family, HostLocalRange[]>();
  for (const c of chosen) {
    const set = sets.get(c.family) ?? [];
    set.push({ subnet: formatCidr(c) });
    sets.set(c.family, set);
  }
  return [...sets.values()];
}

/**
 * Whether a pod in `namespace` gets IPv4, per `ipv4-namespaces` (absent: every pod does;
 * present: only pods whose K8S_POD_NAMESPACE is listed).
 */
export function wantsIpv4(
  ipv4Namespaces: readonly string[] | undefined,
  namespace: string | undefined,
): boolean {
  if (ipv4Namespaces === undefined) return true;
  return namespace !== undefined && ipv4Namespaces.includes(namespace);
}
