/**
 * What kernel tests need: whether they can run, namespaces (src/devcluster/netns.ts), one with a
 * LAN, and polling with a deadline instead of sleeps.
 */

/** Why kernel tests cannot run here, or false when they can (root with `ip`). */
export function requireRoot(): string | false {
  if (Deno.uid() !== 0) return "needs root (network namespaces)";
  try {
    new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync();
  } catch {
    return "needs iproute2 (Debian package iproute2)";
  }
  return false;
}

import { Netns } from "../../src/devcluster/netns.ts";
export { Netns, run } from "../../src/devcluster/netns.ts";

/**
 * A namespace with one LAN, lan0, where this host is 192.168.9.1/24 and fd00:9::1/64 (the
 * routes of the kernel tests lead to other addresses on it). For `await using`.
 */
export async function lanHost(prefix: string): Promise<Netns> {
  const ns = await Netns.create(prefix);
  try {
    await ns.lan("lan0", ["192.168.9.1/24", "fd00:9::1/64"]);
  } catch (e) {
    await ns.delete();
    throw e;
  }
  return ns;
}

export { pollUntil } from "../../src/devcluster/poll.ts";
