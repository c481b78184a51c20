/**
 * How the daemon speaks to the kernel, chosen by ROUTE_ADAPTER: rtnetlink sockets (the
 * default: no program is run, so the image needs no `ip`), or `ip` processes for hosts that
 * forbid FFI. Both give the same routing table contract, the same kernel events and the same
 * host addresses (tests/netlink_test.ts runs one contract suite against both).
 *
 * @module
 */
import type { RouteAdapter } from "../config.ts";
import type { Logger } from "../log.ts";
import type { AddressSelector } from "../publish/addresses.ts";
import type { AddressSource } from "../publish/sources.ts";
import type { KernelEvent } from "./monitor.ts";
import type { RouteTable } from "./types.ts";

/** The kernel as the daemon uses it. */
export interface KernelAdapter {
  readonly table: RouteTable;
  /**
   * Whether {@link watch} is subscribed when it returns (rtnetlink), rather than a moment
   * later (`ip monitor`).
   */
  readonly watchesAtOnce: boolean;
  /**
   * Watches route, link and address changes until closed. With `skipAddedOf`, additions of
   * routes of that protocol may go unreported (the daemon's own writes).
   */
  watch(
    onEvent: (e: KernelEvent) => void,
    opts?: { skipAddedOf?: number },
  ): { close(): Promise<void> };
  /** The host's addresses, for the address publisher. */
  addresses(selector: AddressSelector): AddressSource;
}

/** The adapter named `kind`, working in network namespace `netns` (default: ours). */
export async function kernelAdapter(
  kind: RouteAdapter,
  opts: { netns?: string; log: Logger },
): Promise<KernelAdapter> {
  const { netns, log } = opts;
  const sources = await import("../publish/sources.ts");
  if (kind === "netlink") {
    const { createNetlinkTable } = await import("../netlink/table.ts");
    const { watchRoutesNetlink } = await import("../netlink/monitor.ts");
    return {
      table: createNetlinkTable({ netns, log }),
      watchesAtOnce: true,
      watch: (onEvent, o) => watchRoutesNetlink({ netns, log, onEvent, ...o }),
      addresses: () => sources.netlinkAddressSource({ netns, log }),
    };
  }
  const { createIprouteTable } = await import("./iproute.ts");
  const { watchRoutes } = await import("./monitor.ts");
  return {
    table: createIprouteTable({ netns, log }),
    watchesAtOnce: false,
    watch: (onEvent) => watchRoutes({ netns, log, onEvent }),
    addresses: (selector) => sources.iprouteAddressSource({ netns, selector, log }),
  };
}
