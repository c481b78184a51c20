/**
 * Route protocol numbers that belong to someone else. An instance owns every route of its
 * protocol: it replaces them and deletes the ones it does not plan. Running under a number
 * that the kernel, a boot script or another routing daemon uses would delete that owner's
 * routes, so such numbers are refused at start.
 *
 * @module
 */

/** A protocol number assigned to another source of routes. */
export interface AssignedProtocol {
  /** Its name in the kernel's rtnetlink.h (RTPROT_*) and iproute2's rt_protos. */
  readonly name: string;
  /** Who installs routes under it. */
  readonly owner: string;
}

/** The lowest and highest numbers left free for instances (see {@link protocolRefusal}). */
export const FREE_PROTOCOLS = { first: 200, last: 254 } as const;

/** The numbers that include/uapi/linux/rtnetlink.h assigns (RTPROT_*). */
export const ASSIGNED_PROTOCOLS: ReadonlyMap<number, AssignedProtocol> = new Map([
  [0, { name: "unspec", owner: "no protocol: routes of unknown origin" }],
  [1, { name: "redirect", owner: "ICMP redirects" }],
  [2, { name: "kernel", owner: "the kernel" }],
  [3, { name: "boot", owner: "boot scripts and `ip route add` without proto" }],
  [4, { name: "static", owner: "administrators' static routes" }],
  [8, { name: "gated", owner: "GateD" }],
  [9, { name: "ra", owner: "router advertisements" }],
  [10, { name: "mrt", owner: "Merit MRT" }],
  [11, { name: "zebra", owner: "FRR/Quagga" }],
  [12, { name: "bird", owner: "BIRD" }],
  [13, { name: "dnrouted", owner: "the DECnet routing daemon" }],
  [14, { name: "xorp", owner: "XORP" }],
  [15, { name: "ntk", owner: "Netsukuku" }],
  [16, { name: "dhcp", owner: "DHCP clients" }],
  [17, { name: "mrouted", owner: "multicast routing daemons" }],
  [18, { name: "keepalived", owner: "keepalived" }],
  [42, { name: "babel", owner: "Babel daemons such as babeld, FRR" }],
  [99, { name: "openr", owner: "Open/R" }],
  [186, { name: "bgp", owner: "BGP daemons such as BIRD, FRR" }],
  [187, { name: "isis", owner: "IS-IS daemons such as FRR" }],
  [188, { name: "ospf", owner: "OSPF daemons such as BIRD, FRR" }],
  [189, { name: "rip", owner: "RIP daemons such as BIRD, FRR" }],
  [192, { name: "eigrp", owner: "EIGRP daemons such as FRR" }],
]);

const BY_NAME: ReadonlyMap<string, number> = new Map(
  [...ASSIGNED_PROTOCOLS].map(([n, p]) => [p.name, n]),
);

/** The number the kernel's table gives `name`, or undefined when it names none. */
export function assignedNumber(name: string): number | undefined {
  return BY_NAME.get(name);
}

const CHOOSE = `choose a number ${FREE_PROTOCOLS.first}-${FREE_PROTOCOLS.last}`;

/**
 * Why an instance may not use protocol `n`, or undefined when it may.
 *
 * Refused: every number of {@link ASSIGNED_PROTOCOLS}, and below the free range every
 * number the host's rt_protos names (an administrator's entry there means some program uses
 * it). Names that rt_protos gives to the free range are the instances' own.
 *
 * @param hostNames the host's rt_protos, name to number
 * @param hostSource where `hostNames` were read, for the message
 * @example
 * ```ts
 * protocolRefusal(186, new Map(), "/etc/iproute2/rt_protos");
 * // "protocol 186 belongs to bgp (BGP daemons such as BIRD, FRR); choose a number 200-254"
 * ```
 */
export function protocolRefusal(
  n: number,
  hostNames: ReadonlyMap<string, number>,
  hostSource: string,
): string | undefined {
  const assigned = ASSIGNED_PROTOCOLS.get(n);
  if (assigned) return `protocol ${n} belongs to ${assigned.name} (${assigned.owner}); ${CHOOSE}`;
  if (n >= FREE_PROTOCOLS.first) return undefined;
  for (const [name, number] of hostNames) {
    if (number === n) return `protocol ${n} is assigned to ${name} in ${hostSource}; ${CHOOSE}`;
  }
  return undefined;
}
