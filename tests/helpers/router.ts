/**
 * A router test bed: a host namespace with two LANs, the embedded API server with nodes a
 * (self), b and c, the daemon in process, and route readers. Needs root.
 */
import { parseDaemonConfig } from "../../src/config.ts";
import { type Daemon, startDaemon } from "../../src/daemon.ts";
import { type ApiServer, startApiServer } from "../../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../../src/devcluster/nodes.ts";
import { createLogger, type Logger, silentLogger } from "../../src/log.ts";
import { Netns, pollUntil } from "./netns.ts";

/** The secondary network's annotations, in Nordix's format. */
export const NET3 = { cidr: "cidr.example.com/net3", adr: "adr.example.com/net3" };

export interface Cluster {
  ns: Netns;
  api: ApiServer;
  dir: string;
  close(): Promise<void>;
}

/** A host namespace with LANs lan0 and lan1, an API server with nodes a (self), b and c. */
export async function cluster(): Promise<
  { ns: Netns; api: ApiServer; dir: string; close(): Promise<void> }
> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-daemon-" });
  const ns = await Netns.create("xd");
  try {
    await ns.lan("lan0", ["192.168.50.1/24", "fd00:50::1/64"]);
    await ns.lan("lan1", ["192.168.60.1/24", "fd00:60::1/64"]);
  } catch (e) {
    await ns.delete();
    throw e;
  }
  const api = await startApiServer({ kubeconfigPath: `${dir}/kubeconfig` });
  for (const [name, i] of [["a", 0], ["b", 1], ["c", 2]] as const) {
    api.nodes.create(makeNode({
      name,
      podCIDRs: [`10.244.${i}.0/24`, `fd00:244:0:${i}::/64`],
      internalIPs: [`192.168.50.${i + 1}`, `fd00:50::${i + 1}`],
      annotations: {
        [NET3.cidr]: `10.55.${i}.0/24,fd00:55::${i}:0/112`,
        [NET3.adr]: `192.168.60.${i + 1},fd00:60::${i + 1}`,
      },
    }));
  }
  return {
    ns,
    api,
    dir,
    async close() {
      await api.close();
      await ns.delete();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Starts the daemon as node a, in the namespace, and waits for its first sync. */
export async function daemon(
  c: { ns: Netns; api: ApiServer; dir: string },
  env: Record<string, string> = {},
  opts: { log?: Logger } = {},
): Promise<Daemon> {
  const cfg = parseDaemonConfig({
    NODE_NAME: "a",
    HTTP_ADDRESS: "off",
    STATE_DIR: `${c.dir}/state`,
    RESYNC_INTERVAL: "1h",
    ...env,
  });
  const d = await startDaemon(cfg, {
    netns: c.ns.name,
    kubeconfig: c.api.kubeconfigPath,
    install: false,
    log: opts.log ?? silentLogger,
  });
  try {
    await d.ready;
  } catch (e) {
    await d.stop();
    throw e;
  }
  return d;
}

/** Routes of a protocol as `dst via gateway`, read with plain `ip`, sorted. */
export async function routes(ns: Netns, proto: number | string): Promise<string[]> {
  const out: string[] = [];
  for (const fam of ["-4", "-6"]) {
    const text = await ns.ip(fam, "route", "show", "proto", String(proto));
    for (const line of text.split("\n")) {
      const m = /^(\S+) via (\S+)/.exec(line.trim());
      if (m) {
        out.push(
          `${m[1].includes("/") ? m[1] : m[1] + (fam === "-4" ? "/32" : "/128")} via ${m[2]}`,
        );
      }
    }
  }
  return out.sort();
}

/** Waits (5 s) until the routes of a protocol are exactly `want`. */
export async function expectRoutes(
  ns: Netns,
  proto: number | string,
  want: string[],
  message: string,
) {
  const sorted = [...want].sort();
  let last: string[] = [];
  await pollUntil(async () => {
    last = await routes(ns, proto);
    return JSON.stringify(last) === JSON.stringify(sorted);
  }, { timeoutMs: 5000, message: () => `${message}: have ${JSON.stringify(last)}` });
}

/** Node b's and c's main-network routes as seen from a. */
export const MAIN_B = ["10.244.1.0/24 via 192.168.50.2", "fd00:244:0:1::/64 via fd00:50::2"];
export const MAIN_C = ["10.244.2.0/24 via 192.168.50.3", "fd00:244:0:2::/64 via fd00:50::3"];

/** A logger that keeps its JSON lines (level info), for tests that count what was logged. */
export function capturedLog(): {
  log: Logger;
  lines: string[];
  records(): Record<string, unknown>[];
} {
  const lines: string[] = [];
  return {
    log: createLogger("info", { write: (l) => lines.push(l), text: false }),
    lines,
    records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** One route as `ip -json route show table all` lists it. */
export interface ListedRoute {
  family: 4 | 6;
  /** With a prefix always (`default` becomes `0.0.0.0/0` or `::/0`). */
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  type?: string;
  protocol?: string;
}

/** Every route of protocol `proto` in every table, both families. */
export async function kernelRoutes(ns: Netns, proto: number | string): Promise<ListedRoute[]> {
  const out: ListedRoute[] = [];
  for (const family of [4, 6] as const) {
    const text = await ns.ip(
      `-${family}`,
      "-json",
      "route",
      "show",
      "table",
      "all",
      "proto",
      String(proto),
    );
    for (const r of JSON.parse(text || "[]") as Record<string, string>[]) {
      let dst = r.dst === "default" ? (family === 4 ? "0.0.0.0/0" : "::/0") : r.dst;
      if (!dst.includes("/")) dst += family === 4 ? "/32" : "/128";
      out.push({
        family,
        dst,
        gateway: r.gateway,
        dev: r.dev,
        table: r.table,
        type: r.type,
        protocol: r.protocol,
      });
    }
  }
  return out;
}

/** Route types `ip monitor` prints before the destination. */
const ROUTE_TYPES = new Set([
  "unicast",
  "local",
  "broadcast",
  "anycast",
  "multicast",
  "blackhole",
  "unreachable",
  "prohibit",
  "throw",
  "nat",
]);

/**
 * `ip monitor route` in a namespace for the length of a test: every route that was added
 * at any moment, not only the ones left at the end.
 */
export class RouteWatch {
  #text = "";
  #done: Promise<void>;
  private constructor(private readonly child: Deno.ChildProcess) {
    this.#done = (async () => {
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        this.#text += chunk;
      }
    })();
  }

  /** Starts the monitor and waits until it demonstrably listens (a marker route). */
  static async start(ns: Netns): Promise<RouteWatch> {
    const child = new Deno.Command("ip", {
      args: ["-n", ns.name, "monitor", "route"],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const w = new RouteWatch(child);
    // A new marker route each try: the monitor may start listening after the first one.
    const markers: string[] = [];
    try {
      await pollUntil(async () => {
        const marker = `10.254.${markers.length % 256}.0/24`;
        markers.push(marker);
        await ns.ip("route", "replace", marker, "dev", "lo", "proto", "99");
        await new Promise((r) => setTimeout(r, 20));
        return markers.some((m) => w.#text.includes(m));
      }, { timeoutMs: 5000, message: "ip monitor route listening" });
      await ns.ip("route", "flush", "proto", "99");
    } catch (e) {
      await w.stop();
      throw e;
    }
    return w;
  }

  /** Everything the monitor printed so far. */
  get text(): string {
    return this.#text;
  }

  /** Waits until the monitor has printed `needle` (a marker route proves it is caught up). */
  async seen(needle: string, timeoutMs = 5000): Promise<void> {
    await pollUntil(() => this.#text.includes(needle), {
      timeoutMs,
      message: `ip monitor printed ${needle}`,
    });
  }

  /** Routes of `proto` added (or replaced) so far, as `dst via gateway` with prefixes. */
  added(proto: number): { dst: string; via?: string; line: string }[] {
    const out: { dst: string; via?: string; line: string }[] = [];
    for (const line of this.#text.split("\n")) {
      if (
        line.startsWith("Deleted") ||
        !new RegExp(`\\bproto (${proto}|0x${proto.toString(16)})\\b`).test(line)
      ) {
        continue;
      }
      const words = line.trim().split(/\s+/);
      let i = 0;
      if (ROUTE_TYPES.has(words[i])) i++;
      let dst = words[i];
      const v6 = dst.includes(":") || line.includes(" via inet6 ") ||
        /\bvia [0-9a-f:]*:[0-9a-f:]*\b/.test(line);
      if (dst === "default") dst = v6 ? "::/0" : "0.0.0.0/0";
      else if (!dst.includes("/")) dst += v6 ? "/128" : "/32";
      const via = / via (?:inet6 |inet )?(\S+)/.exec(line)?.[1];
      out.push({ dst, via, line });
    }
    return out;
  }

  /** Stops the monitor. */
  async stop(): Promise<void> {
    try {
      this.child.kill();
    } catch { /* already gone */ }
    await this.child.status;
    await this.#done.catch(() => {});
  }
}
