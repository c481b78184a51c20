/**
 * Network namespaces for the tests and the benchmark, made with `ip`: unique names, so that
 * parallel runs never collide, and the set-up a host has (loopback up, no IPv6 duplicate
 * address detection, IPv6 addresses kept over a link flap).
 *
 * @module
 */

/** Runs a program, `stdin` written to it; returns stdout; throws naming it and its stderr. */
export async function run(cmd: string, args: string[], stdin?: string): Promise<string> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) {
    const stderr = new TextDecoder().decode(out.stderr).trim().slice(0, 500);
    throw new Error(`${cmd} ${args.join(" ").slice(0, 200)}: exit ${out.code}: ${stderr}`);
  }
  return stdout;
}

let counter = 0;

/** A network namespace; `await using` deletes it. */
export class Netns implements AsyncDisposable {
  protected constructor(readonly name: string) {}

  /** Creates a namespace named `<prefix>-<pid>-<n>-<random>`. */
  static async create(prefix = "xt"): Promise<Netns> {
    const ns = new Netns(
      `${prefix}-${Deno.pid}-${counter++}-${Math.random().toString(36).slice(2, 6)}`,
    );
    await ns.setUp();
    return ns;
  }

  /** Adds the namespace and sets it up as a host has it. */
  protected async setUp(): Promise<void> {
    await run("ip", ["netns", "add", this.name]);
    await this.ip("link", "set", "lo", "up");
    await this.sysctl("net.ipv6.conf.all.accept_dad", "0");
    await this.sysctl("net.ipv6.conf.default.accept_dad", "0");
    // Keep IPv6 addresses over a link flap, as a real host's managed interfaces do.
    await this.sysctl("net.ipv6.conf.all.keep_addr_on_down", "1");
    await this.sysctl("net.ipv6.conf.default.keep_addr_on_down", "1");
  }

  /** Path for CNI_NETNS. */
  get path(): string {
    return `/var/run/netns/${this.name}`;
  }

  /** Runs `ip -n NAME ...`. */
  ip(...args: string[]): Promise<string> {
    return run("ip", ["-n", this.name, ...args]);
  }

  /** Runs a program inside the namespace. */
  exec(cmd: string, ...args: string[]): Promise<string> {
    return run("ip", ["netns", "exec", this.name, cmd, ...args]);
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

  /** Addresses (`addr/prefix`) of `ifname` in the namespace, global scope only. */
  async addresses(ifname: string): Promise<string[]> {
    const json = JSON.parse(await this.ip("-json", "addr", "show", ifname)) as {
      addr_info: { local: string; prefixlen: number; scope: string }[];
    }[];
    return json.flatMap((l) =>
      l.addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`)
    );
  }

  /** Deletes the namespace (its links go with it). */
  async delete(): Promise<void> {
    await run("ip", ["netns", "del", this.name]).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.delete();
  }
}
