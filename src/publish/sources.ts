/**
 * Where the publisher reads the host's addresses and hears of their changes: rtnetlink (an
 * address dump and the address groups, no program run), or `ip -json address show` and
 * `ip -N monitor address` on hosts that forbid FFI.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import { type Family, formatIp } from "../net/ip.ts";
import { RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR } from "../netlink/constants.ts";
import { type AddressMessage, linkName } from "../netlink/messages.ts";
import { watchRoutesNetlink } from "../netlink/monitor.ts";
import { dumpAddresses } from "../netlink/table.ts";
import {
  addressEventMatters,
  type AddressSelector,
  type HostAddress,
  parseHostAddresses,
} from "./addresses.ts";

/** The host's addresses and their changes. */
export interface AddressSource {
  read(): Promise<HostAddress[]>;
  /**
   * Calls `changed` when the addresses may have changed (the publisher reads them again);
   * runs until closed, starting again by itself when it fails.
   */
  watch(changed: () => void): { close(): Promise<void> };
}

/** ifa_flags bits (linux/if_addr.h); 0x01 is "temporary" for IPv6, "secondary" for IPv4. */
const IFA_F_TEMPORARY = 0x01;
const IFA_F_DADFAILED = 0x08;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_TENTATIVE = 0x40;
/** rtnetlink scopes as `ip` names them. */
const SCOPES = new Map([[0, "global"], [200, "site"], [253, "link"], [254, "host"], [
  255,
  "nowhere",
]]);
const FOREVER = 0xffffffff;

/** A host address from an rtnetlink address message, as `ip -json` would have shown it. */
export function toHostAddress(
  m: AddressMessage,
  names: ReadonlyMap<number, string>,
): HostAddress | undefined {
  const family: Family | undefined = m.af === 2 ? 4 : m.af === 10 ? 6 : undefined;
  // An IPv4-mapped address on an IPv6 entry is not an IPv6 address of the host.
  if (family === undefined || m.address === undefined || m.address.family !== family) {
    return undefined;
  }
  const deprecated = (m.addrFlags & IFA_F_DEPRECATED) !== 0;
  return {
    dev: linkName(names, m.index),
    family,
    ip: m.address,
    address: formatIp(m.address),
    prefix: m.prefix,
    scope: SCOPES.get(m.scope) ?? String(m.scope),
    tentative: (m.addrFlags & IFA_F_TENTATIVE) !== 0,
    dadfailed: (m.addrFlags & IFA_F_DADFAILED) !== 0,
    deprecated,
    temporary: family === 6 && (m.addrFlags & IFA_F_TEMPORARY) !== 0,
    preferredLifetime: deprecated ? 0 : FOREVER,
  };
}

/** The addresses through rtnetlink. */
export function netlinkAddressSource(opts: { netns?: string; log?: Logger } = {}): AddressSource {
  return {
    async read() {
      const { names, addresses } = await dumpAddresses({ netns: opts.netns, log: opts.log });
      return addresses.flatMap((m) => toHostAddress(m, names) ?? []);
    },
    watch: (changed) =>
      watchRoutesNetlink({
        netns: opts.netns,
        log: opts.log,
        groups: [RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR],
        // An overrun or a restart may have hidden a change: read again in any case.
        onEvent: () => changed(),
      }),
  };
}

const MONITOR_RESTART_MS = { first: 100, max: 5000 };
/** A monitor that ran this long was healthy: its next restart starts from the first delay. */
const MONITOR_HEALTHY_MS = 10_000;

/** The addresses through `ip [-n NS]`; only changes that can move `selector` are told. */
export function iprouteAddressSource(
  opts: { netns?: string; ipPath?: string; selector: AddressSelector; log?: Logger },
): AddressSource {
  const ns = opts.netns ? ["-n", opts.netns] : [];
  const ip = opts.ipPath ?? "ip";
  return {
    async read() {
      const args = [...ns, "-json", "address", "show"];
      const out = await new Deno.Command(ip, { args, stdin: "null" }).output();
      const text = new TextDecoder().decode(out.stdout);
      if (out.code !== 0) {
        const err = new TextDecoder().decode(out.stderr).trim();
        throw new Error(`ip ${args.join(" ")}: exit ${out.code}: ${err}`);
      }
      let json: unknown;
      try {
        json = JSON.parse(text || "[]");
      } catch {
        throw new Error(`ip ${args.join(" ")}: output is not JSON: ${text.slice(0, 200)}`);
      }
      return parseHostAddresses(json);
    },
    watch(changed) {
      let closed = false;
      let child: Deno.ChildProcess | undefined;
      const pause: { wake: () => void; timer?: ReturnType<typeof setTimeout> } = {
        wake: () => {},
      };
      const runOnce = async (): Promise<string> => {
        child = new Deno.Command(ip, {
          // Links too: a rename announces no IPv6 address, and ip prints the old name on
          // the IPv4 ones (its name cache follows link messages only).
          args: [...ns, "-N", "monitor", "link", "address"],
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const stderr = new Response(child.stderr).text();
        let rest = "";
        for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
          rest += chunk;
          const lines = rest.split("\n");
          rest = lines.pop() ?? "";
          if (lines.some((line) => addressEventMatters(line, opts.selector))) changed();
        }
        const status = await child.status;
        return `exit ${status.code}: ${(await stderr).trim()}`;
      };
      const loop = (async () => {
        let delay = MONITOR_RESTART_MS.first;
        while (!closed) {
          const started = Date.now();
          let why: string;
          try {
            why = await runOnce();
          } catch (e) {
            why = e instanceof Error ? e.message : String(e);
          }
          if (closed) break;
          if (Date.now() - started > MONITOR_HEALTHY_MS) delay = MONITOR_RESTART_MS.first;
          opts.log?.warn("address monitor ended; restarting", { reason: why, inMs: delay });
          await new Promise<void>((resolve) => {
            pause.wake = resolve;
            pause.timer = setTimeout(resolve, delay);
          });
          delay = Math.min(delay * 2, MONITOR_RESTART_MS.max);
          // Whatever changed while nothing watched.
          changed();
        }
      })();
      return {
        async close() {
          closed = true;
          clearTimeout(pause.timer);
          pause.wake();
          try {
            child?.kill("SIGTERM");
          } catch { /* already gone */ }
          await loop;
        },
      };
    },
  };
}
