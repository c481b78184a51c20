/**
 * Watches the kernel through rtnetlink's multicast groups instead of `ip monitor`: the same
 * options and {@link KernelEvent}s as src/routing/monitor.ts. Routes of the main table
 * (added, replaced or deleted, any protocol) with their canonical destination and protocol;
 * link and address changes, which count whole (a link going down flushes IPv4 routes
 * without a message).
 *
 * The receive buffer overflowing (ENOBUFS) means events were lost: that is reported as a
 * link change with detail "overrun", so that a full reconcile follows. Waiting for events
 * costs nothing at rest (see socket.ts): `poll(2)` on a worker thread, with no timeout.
 *
 * @module
 */
import type { KernelEvent, MonitorOptions } from "../routing/monitor.ts";
import {
  BPF_JEQ_K,
  BPF_LD_B_ABS,
  BPF_RET_K,
  ENOBUFS,
  IFF_LOWER_UP,
  IFF_UP,
  RT_TABLE_MAIN,
  RTM_F_CLONED,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
} from "./constants.ts";
import { formatIp } from "../net/ip.ts";
import { decodeMessages, type NetlinkMessage } from "./messages.ts";
import { type BpfInstruction, NetlinkSocket, SyscallError } from "./socket.ts";

/** Options of {@link watchRoutesNetlink}: those of `watchRoutes` but the path of `ip`. */
export interface NetlinkMonitorOptions extends Omit<MonitorOptions, "ipPath"> {
  /** Receive buffer to ask for, in bytes; default {@link MONITOR_BUFFER}. */
  receiveBuffer?: number;
  /** The groups to join; default {@link MONITOR_GROUPS}. */
  groups?: readonly number[];
  /**
   * Additions of routes of this protocol are not reported. They are our own writes, which
   * the route-event rule ignores; the kernel drops them from this socket (a BPF filter), so
   * the 10,000 of a first batch, and each route a watch event changes, wake no one.
   */
  skipAddedOf?: number;
}

/**
 * A socket filter dropping RTM_NEWROUTE messages of route protocol `protocol`; everything
 * else passes. Offsets are into the message: the type's two bytes at 4 (little-endian),
 * rtmsg's protocol at 16 + 5.
 */
export function dropAddedRoutesOf(protocol: number): BpfInstruction[] {
  const ld = (k: number) => ({ code: BPF_LD_B_ABS, jt: 0, jf: 0, k });
  const jeq = (k: number, jf: number) => ({ code: BPF_JEQ_K, jt: 0, jf, k });
  const ret = (k: number) => ({ code: BPF_RET_K, jt: 0, jf: 0, k });
  return [
    ld(4),
    jeq(RTM_NEWROUTE & 0xff, 5),
    ld(5),
    jeq(RTM_NEWROUTE >> 8, 3),
    ld(16 + 5),
    jeq(protocol, 1),
    ret(0),
    ret(0xffffffff),
  ];
}

/** The groups joined: routes, links and addresses of both families. */
export const MONITOR_GROUPS: readonly number[] = [
  RTNLGRP_LINK,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_ROUTE,
];

/**
 * Receive buffer asked for: the notifications of a batch of 10,000 routes (about 1 KiB of
 * kernel memory each) fit while the event loop is busy elsewhere.
 */
export const MONITOR_BUFFER = 8 << 20;

/** Datagrams read in a row before the event loop gets a turn. */
const BURST = 256;

/**
 * What one notification means to the reconciler, as `classifyMonitorLine` sees `ip`'s line
 * of it; undefined for what does not matter (other tables, cached routes, dump endings).
 */
export function classifyMessage(m: NetlinkMessage): KernelEvent | undefined {
  switch (m.kind) {
    case "route": {
      if (m.table !== RT_TABLE_MAIN || m.rtmFlags & RTM_F_CLONED) return undefined;
      const verb = m.deleted ? "deleted" : "added";
      const via = m.gateway ? ` via ${m.gateway}` : "";
      const dev = m.oif !== undefined ? ` oif ${m.oif}` : "";
      return {
        kind: m.deleted ? "route-deleted" : "route-added",
        detail: `route ${verb} ${m.dst.text}${via}${dev} proto ${m.protocol} type ${m.type}`,
        dst: m.dst.text,
        protocol: m.protocol,
      };
    }
    case "link": {
      const state = m.ifFlags & IFF_UP ? (m.ifFlags & IFF_LOWER_UP ? "up" : "no-carrier") : "down";
      return {
        kind: "link-change",
        detail: `link ${m.deleted ? "deleted" : "changed"} ${m.index}: ${m.name ?? "?"} ${state}`,
      };
    }
    case "address": {
      const a = m.address ? `${formatIp(m.address)}/${m.prefix}` : "?";
      return {
        kind: "address-change",
        detail: `address ${m.deleted ? "deleted" : "added"} ${m.index}: ${a}`,
      };
    }
    default:
      return undefined;
  }
}

/**
 * Watches until closed; a socket that fails is opened again (with a backoff doubling from
 * 100 ms to 5 s), and a "monitor restarted" link change reports that something may have
 * been missed meanwhile. `close()` ends the wait at once.
 */
export function watchRoutesNetlink(opts: NetlinkMonitorOptions): { close(): Promise<void> } {
  let closed = false;
  let sock: NetlinkSocket | undefined;
  const pause: { resolve: () => void; timer?: ReturnType<typeof setTimeout> } = {
    resolve: () => {},
  };

  const runOnce = async (s: NetlinkSocket) => {
    let burst = 0;
    while (!closed) {
      if (++burst > BURST) {
        // Thousands of notifications (a large batch being applied) must not hold the
        // event loop: let timers and I/O run between bursts.
        burst = 0;
        await new Promise((resolve) => setTimeout(resolve, 0));
        continue;
      }
      let data: Uint8Array | undefined;
      try {
        data = s.receive();
      } catch (e) {
        if (e instanceof SyscallError && e.errno === ENOBUFS) {
          opts.log?.warn("netlink monitor overrun: events lost", { buffer: s.rcvbuf });
          opts.onEvent({ kind: "link-change", detail: "overrun" });
          continue;
        }
        throw e;
      }
      if (data === undefined) {
        burst = 0;
        await s.wait(-1);
        continue;
      }
      for (const m of decodeMessages(data)) {
        const e = classifyMessage(m);
        if (e) opts.onEvent(e);
      }
    }
  };

  const loop = (async () => {
    let delay = 100;
    while (!closed) {
      const started = Date.now();
      try {
        sock = NetlinkSocket.open({
          netns: opts.netns,
          rcvbuf: opts.receiveBuffer ?? MONITOR_BUFFER,
          groups: opts.groups ?? MONITOR_GROUPS,
          filter: opts.skipAddedOf === undefined ? undefined : dropAddedRoutesOf(opts.skipAddedOf),
        });
        if (closed) break;
        await runOnce(sock);
      } catch (e) {
        if (!closed) opts.log?.warn("netlink monitor failed", { error: e });
      } finally {
        await sock?.close();
        sock = undefined;
      }
      if (closed) break;
      if (Date.now() - started > 10_000) delay = 100;
      opts.log?.warn("netlink monitor ended; restarting", { inMs: delay });
      opts.onEvent({ kind: "link-change", detail: "monitor restarted" });
      await new Promise<void>((resolve) => {
        pause.resolve = resolve;
        pause.timer = setTimeout(resolve, delay);
      });
      delay = Math.min(delay * 2, 5000);
    }
  })();

  return {
    async close() {
      closed = true;
      clearTimeout(pause.timer);
      pause.resolve();
      sock?.wake();
      await loop;
    },
  };
}
