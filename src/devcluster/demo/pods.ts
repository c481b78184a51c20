/**
 * Demo pods: network namespaces attached through CNI as a runtime does it, the main network
 * with bridge + kube-node from the conflist the daemon wrote, and a second interface on the
 * secondary network through a Multus-style delegate config.
 *
 * @module
 */
import { z } from "zod";
import { checkInterrupted, Interrupted, interruption, makeNetns, PREFIX, sh } from "./topology.ts";

/** A pod with its addresses per network. */
export interface DemoPod {
  name: string;
  node: string;
  addrs: { main: string[]; net3: string[] };
}

const ResultSchema = z.object({ ips: z.array(z.object({ address: z.string() })) });

/** The secondary network's delegate config, as a NetworkAttachmentDefinition would hold it. */
export function net3Config(dataDir: string, stateDir: string): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "net3",
    type: "bridge",
    bridge: "cbr3",
    isGateway: true,
    ipam: {
      type: "kube-node",
      annotation: "cidr.example.com/net3",
      dataDir,
      stateDir,
      routes: [{ dst: "10.55.0.0/16" }, { dst: "fd00:55::/96" }],
    },
  };
}

/** Runs one CNI plugin inside the node's namespace, as a runtime would. */
async function cni(
  nodeNs: string,
  binDir: string,
  conf: Record<string, unknown>,
  env: Record<string, string>,
): Promise<string[]> {
  checkInterrupted();
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", nodeNs, `${binDir}/${conf.type}`],
    env: { CNI_PATH: binDir, ...env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: interruption.signal,
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(JSON.stringify(conf)));
  await w.close();
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (out.code !== 0) {
    throw new Error(`CNI ${env.CNI_COMMAND} ${conf.type} (${env.CNI_IFNAME}): ${text}`);
  }
  if (env.CNI_COMMAND !== "ADD") return [];
  const parsed = ResultSchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`CNI result not understood: ${text}`);
  return parsed.data.ips.map((ip) => ip.address.split("/")[0]);
}

/** Reads the main network's conflist that the daemon wrote and returns its plugin config. */
export async function mainConfig(
  confDir: string,
  dataDir: string,
  stateDir: string,
): Promise<Record<string, unknown>> {
  const list = JSON.parse(await Deno.readTextFile(`${confDir}/10-xcluster-cni.conflist`));
  const plugin = list.plugins[0];
  return {
    ...plugin,
    cniVersion: list.cniVersion,
    name: list.name,
    // On a real host both dirs are the defaults; each demo node has its own.
    ipam: { ...plugin.ipam, dataDir, stateDir },
  };
}

/** Creates a pod namespace and attaches it to both networks. */
export async function addPod(
  node: {
    name: string;
    ns: string;
    binDir: string;
    mainConf: Record<string, unknown>;
    net3Conf: Record<string, unknown>;
  },
  index: number,
): Promise<DemoPod> {
  const name = `${PREFIX}${node.name.slice(PREFIX.length)}-pod${index}`;
  await makeNetns(name);
  const env = (ifname: string, command = "ADD") => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: name,
    CNI_NETNS: `/var/run/netns/${name}`,
    CNI_IFNAME: ifname,
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=${name}`,
  });
  const main = await cni(node.ns, node.binDir, node.mainConf, env("eth0"));
  const net3 = await cni(node.ns, node.binDir, node.net3Conf, env("net1"));
  return { name, node: node.name, addrs: { main, net3 } };
}

/** Releases a pod's addresses (CNI DEL on both networks). */
export async function delPod(
  node: {
    ns: string;
    binDir: string;
    mainConf: Record<string, unknown>;
    net3Conf: Record<string, unknown>;
  },
  pod: DemoPod,
): Promise<void> {
  for (const [conf, ifname] of [[node.mainConf, "eth0"], [node.net3Conf, "net1"]] as const) {
    await cni(node.ns, node.binDir, conf, {
      CNI_COMMAND: "DEL",
      CNI_CONTAINERID: pod.name,
      CNI_NETNS: `/var/run/netns/${pod.name}`,
      CNI_IFNAME: ifname,
      CNI_ARGS: "",
    }).catch(() => {});
  }
}

/** One ping; true when answered. */
export async function ping(from: string, to: string): Promise<boolean> {
  try {
    await sh("ip", "netns", "exec", from, "ping", "-c1", "-W1", "-q", to);
    return true;
  } catch (e) {
    if (e instanceof Interrupted) throw e;
    return false;
  }
}
