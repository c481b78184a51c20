/**
 * A router test bed: a host namespace with two LANs, the embedded API server with nodes a
 * (self), b and c, the daemon in process, and route readers. Needs root.
 */
import { parseDaemonConfig } from "../../src/config.ts";
import { type Daemon, startDaemon } from "../../src/daemon.ts";
import { type ApiServer, startApiServer } from "../../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../../src/devcluster/nodes.ts";
import { silentLogger } from "../../src/log.ts";
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
    log: silentLogger,
  });
  await d.ready;
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
