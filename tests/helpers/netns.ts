/**
 * Network namespaces for kernel tests: unique names so parallel runs never collide,
 * removal also on failure, and polling with a deadline instead of sleeps.
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

let counter = 0;

/** Runs a program; returns stdout; throws with the command and stderr on failure. */
export async function run(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) {
    const stderr = new TextDecoder().decode(out.stderr).trim();
    throw new Error(`${cmd} ${args.join(" ")}: exit ${out.code}: ${stderr}`);
  }
  return stdout;
}

/** A network namespace that a test owns. */
export class Netns implements AsyncDisposable {
  private constructor(readonly name: string) {}

  /** Creates a namespace named `<prefix>-<pid>-<n>-<random>`, loopback up, IPv6 DAD off. */
  static async create(prefix = "xt"): Promise<Netns> {
    const name = `${prefix}-${Deno.pid}-${counter++}-${Math.random().toString(36).slice(2, 6)}`;
    await run("ip", "netns", "add", name);
    const ns = new Netns(name);
    await ns.ip("link", "set", "lo", "up");
    await ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
    await ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
    // Keep IPv6 addresses over a link flap, as a real host's managed interfaces do.
    await ns.sysctl("net.ipv6.conf.all.keep_addr_on_down", "1");
    await ns.sysctl("net.ipv6.conf.default.keep_addr_on_down", "1");
    return ns;
  }

  /** Path for CNI_NETNS. */
  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  /** Addresses (`addr/prefix`) of `ifname` in the namespace, global scope only. */
  async addresses(ifname: string): Promise<string[]> {
    const json = JSON.parse(await this.ip("-json", "addr", "show", ifname)) as {
      addr_info: { local: string; prefixlen: number; scope: string }[];
    }[];
    return json.flatMap((l) =>
      l.addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`)
    );
  }

  /** Runs `ip -n NAME ...`. */
  ip(...args: string[]): Promise<string> {
    return run("ip", "-n", this.name, ...args);
  }

  /** Runs a program inside the namespace. */
  exec(cmd: string, ...args: string[]): Promise<string> {
    return run("ip", "netns", "exec", this.name, cmd, ...args);
  }

  /** Sets a sysctl inside the namespace. */
  async sysctl(key: string, value: string): Promise<void> {
    await this.exec("sysctl", "-q", "-w", `${key}=${value}`);
  }

  /** Adds a veth pair with both ends in this namespace, addresses on the first end. */
  async lan(dev: string, addrs: string[]): Promise<void> {
    await this.ip("link", "add", dev, "type", "veth", "peer", "name", `${dev}p`);
    for (const a of addrs) {
      await this.ip(...(a.includes(":") ? ["-6"] : []), "addr", "add", a, "dev", dev, "nodad");
    }
    await this.ip("link", "set", `${dev}p`, "up");
    await this.ip("link", "set", dev, "up");
  }

  /** Deletes the namespace (its links go with it). */
  async delete(): Promise<void> {
    await run("ip", "netns", "del", this.name).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.delete();
  }
}

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
