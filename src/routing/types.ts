/**
 * Routes as plain values, shared by the planner, the differ and the iproute2 adapter.
 *
 * @module
 */
import type { Family } from "../net/ip.ts";

/** A route the planner wants: destination CIDR via a next hop, both in canonical text. */
export interface Route {
  readonly family: Family;
  /** Canonical CIDR, always with a prefix, e.g. `10.244.1.0/24`, `fd00::/64`. */
  readonly dst: string;
  /** Canonical next-hop address. */
  readonly via: string;
  /** The node the route leads to. */
  readonly node: string;
}

/** A route as read from the kernel's main table (any owner). */
export interface KernelRoute {
  readonly family: Family;
  /** Canonical CIDR with prefix (`default` becomes `0.0.0.0/0` or `::/0`). */
  readonly dst: string;
  /** Canonical next hop; absent for device routes; first hop of a multipath route. */
  readonly via?: string;
  readonly dev?: string;
  /** Route protocol number (kernel 2, boot 3, static 4, ...). */
  readonly protocol: number;
  /** Route type when not unicast, as `ip -N` prints it: its number (6 blackhole, 7 unreachable). */
  readonly type?: string;
  readonly metric?: number;
  /** Set when the route has more than one next hop (`via` is the first). */
  readonly multipath?: true;
}

/** One change to the kernel. Deletes only ever name our own protocol. */
export type RouteOp =
  | { readonly op: "replace"; readonly route: Route }
  | { readonly op: "delete"; readonly route: KernelRoute };

/** An operation the kernel refused, with the error text `ip` printed for it. */
export interface OpFailure {
  readonly op: RouteOp;
  readonly error: string;
}

/** An address configured on this host, with its prefix (a connected network). */
export interface LocalAddress {
  readonly family: Family;
  /** Canonical address text. */
  readonly address: string;
  readonly prefix: number;
  readonly dev: string;
}

/** The kernel's routing table as the reconciler uses it. */
export interface RouteTable {
  /** Every route of the main table, both families, every protocol. */
  list(): Promise<KernelRoute[]>;
  /** Applies all operations in one batch; returns the ones that failed. */
  apply(ops: readonly RouteOp[], protocol: number): Promise<OpFailure[]>;
  /** Starts a batch that takes operations as they come (see {@link RouteBatch}). */
  openBatch(protocol: number): RouteBatch;
  /** Addresses configured on this host (all links, both families). */
  localAddresses(): Promise<LocalAddress[]>;
  /** Lets go of what the table keeps between calls (a socket); it may be used again. */
  close(): Promise<void>;
}

/** A batch being written: one process applying operations in the order they are sent. */
export interface RouteBatch {
  /**
   * Sends operations; they apply after those sent before. Throws, having sent none of them,
   * for a delete of a route not ours or when the batch's process cannot start.
   */
  write(ops: readonly RouteOp[]): void;
  /**
   * Ends the batch once everything sent is applied; resolves to the operations that failed,
   * in the order sent. Rejects when the batch could not run at all.
   */
  close(): Promise<OpFailure[]>;
}
