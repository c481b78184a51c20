/**
 * The demo cluster's network: a "LAN" namespace with two bridges (main and secondary
 * network), and one namespace per node with an interface on each.
 *
 * @module
 */

/** Prefix of every namespace the demo makes, so leftovers of a killed run can be found. */
export const PREFIX = "xcd-";
/** Namespace holding the two LAN bridges. */
export const LAN_NS = `${PREFIX}lan`;

/** Where the API server listens: an address of the main LAN bridge. */
export const API_ADDRESS = "192.168.50.254";

/** Thrown by the demo's steps once Ctrl-C or SIGTERM came. */
export class Interrupted extends Error {
  constructor() {
    super("interrupted");
    this.name = "Interrupted";
  }
}

/**
 * Aborted by Ctrl-C or SIGTERM: every step of the set-up and the check stops at once (a
 * command running is killed), so that the clean-up comes within seconds.
 */
export const interruption = new AbortController();

/** Throws {@link Interrupted} once the demo is interrupted. */
export function checkInterrupted(): void {
  if (interruption.signal.aborted) throw new Interrupted();
}

/** Runs a program; returns stdout; throws with the command and stderr on failure. */
export function sh(cmd: string, ...args: string[]): Promise<string> {
  checkInterrupted();
  return run(cmd, args, interruption.signal);
}

/** {@link sh} for the clean-up, which must run after an interruption too. */
export function shAlways(cmd: string, ...args: string[]): Promise<string> {
  return run(cmd, args);
}

async function run(cmd: string, args: string[], signal?: AbortSignal): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", signal })
    .output();
  if (signal?.aborted) throw new Interrupted();
  if (out.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** One demo node's names and addresses. */
export interface DemoNode {
  index: number;
  name: string;
  ns: string;
  mainV4: string;
  mainV6: string;
  netV4: string;
  netV6: string;
  podCIDRs: string[];
}

/** The addressing plan of node `i` (1-based). */
export function demoNode(i: number): DemoNode {
  return {
    index: i,
    name: `${PREFIX}node${i}`,
    ns: `${PREFIX}node${i}`,
    mainV4: `192.168.50.${i}`,
    mainV6: `fd00:50::${i}`,
    netV4: `192.168.60.${i}`,
    netV6: `fd00:60::${i}`,
    podCIDRs: [`10.244.${i}.0/24`, `fd00:244:0:${i}::/64`],
  };
}

async function sysctls(ns: string, pairs: [string, string][]): Promise<void> {
  for (const [k, v] of pairs) {
    await sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", `${k}=${v}`);
  }
}

/** A namespace with loopback up and IPv6 DAD off (addresses usable at once). */
export async function makeNetns(ns: string, forwarding = false): Promise<void> {
  await sh("ip", "netns", "add", ns);
  await sh("ip", "-n", ns, "link", "set", "lo", "up");
  await sysctls(ns, [
    ["net.ipv6.conf.all.accept_dad", "0"],
    ["net.ipv6.conf.default.accept_dad", "0"],
    ...(forwarding
      ? [["net.ipv4.ip_forward", "1"], ["net.ipv6.conf.all.forwarding", "1"]] as [string, string][]
      : []),
  ]);
}

/** Creates the LAN namespace with bridges br0 (main) and br1 (secondary). */
export async function makeLan(): Promise<void> {
  await makeNetns(LAN_NS);
  for (const br of ["br0", "br1"]) {
    await sh("ip", "-n", LAN_NS, "link", "add", br, "type", "bridge");
    await sh("ip", "-n", LAN_NS, "link", "set", br, "up");
  }
  await sh("ip", "-n", LAN_NS, "addr", "add", `${API_ADDRESS}/24`, "dev", "br0");
}

/** Creates a node namespace wired to both bridges. */
export async function makeNodeNs(n: DemoNode): Promise<void> {
  await makeNetns(n.ns, true);
  const links: [string, string, string, string][] = [
    ["eth0", "br0", `${n.mainV4}/24`, `${n.mainV6}/64`],
    ["eth1", "br1", `${n.netV4}/24`, `${n.netV6}/64`],
  ];
  for (const [dev, br, v4, v6] of links) {
    const peer = `n${n.index}${dev}`;
    await sh(
      "ip",
      "-n",
      n.ns,
      "link",
      "add",
      dev,
      "type",
      "veth",
      "peer",
      "name",
      peer,
      "netns",
      LAN_NS,
    );
    await sh("ip", "-n", LAN_NS, "link", "set", peer, "master", br, "up");
    await sh("ip", "-n", n.ns, "addr", "add", v4, "dev", dev);
    await sh("ip", "-n", n.ns, "-6", "addr", "add", v6, "dev", dev, "nodad");
    await sh("ip", "-n", n.ns, "link", "set", dev, "up");
  }
}

/** Names of existing namespaces with the demo prefix. */
export async function demoNamespaces(): Promise<string[]> {
  const out = await shAlways("ip", "netns", "list");
  return out.split("\n").map((l) => l.split(" ")[0]).filter((n) => n.startsWith(PREFIX));
}

/** Deletes every demo namespace (and with them their links). */
export async function removeNamespaces(): Promise<void> {
  for (const ns of await demoNamespaces()) await shAlways("ip", "netns", "del", ns).catch(() => {});
}
