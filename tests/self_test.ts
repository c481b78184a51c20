import assert from "node:assert/strict";
import { findSelf, OwnNode, readMachineId } from "../src/own_node.ts";
import type { NodeInfo } from "../src/kube/node.ts";
import type { Plan } from "../src/routing/plan.ts";
import { createLogger } from "../src/log.ts";
import { NodeStateFile, readNodeState } from "../src/state.ts";
import { CONFLIST_NAME } from "../src/install.ts";
import type { CheckedNode } from "../src/routing/check.ts";
import { runPlugin } from "../cni/skel.ts";
import { kubeNodePlugin } from "../cni/kube_node.ts";

const node = (name: string, machineID: string): NodeInfo => ({
  name,
  creationTimestamp: "",
  podCIDRs: [],
  internalIPs: [],
  machineID,
  annotations: {},
});

Deno.test("own node: NODE_NAME first, else the node with this machine ID", () => {
  const nodes = [node("a", "m-a"), node("b", "m-b")];
  assert.equal(findSelf(nodes, "a", "m-b"), "a");
  assert.equal(findSelf(nodes, "", "m-b"), "b");
  assert.equal(findSelf(nodes, "", "m-x"), undefined);
  assert.equal(findSelf(nodes, "", ""), undefined, "an empty machine ID matches nothing");
  assert.equal(findSelf([node("c", "")], "", ""), undefined);
  // Hosts cloned from one image: which node is ours cannot be told.
  assert.equal(findSelf([...nodes, node("c", "m-b")], "", "m-b"), undefined);
});

Deno.test("own node: two nodes with this host's machine ID are named, and neither is taken", async () => {
  const dir = await Deno.makeTempDir();
  const lines: { msg: string; matching?: string[] }[] = [];
  const log = createLogger("info", { write: (l) => lines.push(JSON.parse(l)), text: false });
  const ann = "example.com/net1";
  // A state file a previous run left, naming a node and its CIDRs then.
  await new NodeStateFile(dir, ann).update("b", ["10.0.9.0/24"], "m-b");
  const own = new OwnNode({
    cfg: { nodeName: "", stateDir: dir, cidrAnnotation: ann, cniConfDir: `${dir}/conf` },
    nodes: () => new Map([["b", node("b", "m-b")], ["c", node("c", "m-b")]]),
    table: { localAddresses: () => Promise.resolve([]) },
    conflist: false,
    machineId: "m-b",
    log,
  });
  try {
    assert.equal(own.name, "");
    await own.planned(planOf(undefined));
    const said = lines.find((l) => l.msg.startsWith("own node not found"));
    assert.deepEqual(said?.matching, ["b", "c"]);
    assert.equal(readNodeState(dir, ann), undefined, "the old file serves no CIDRs");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("machine ID is read trimmed; absent file gives empty", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/machine-id`, "0123abcd\n");
    assert.equal(readMachineId(`${dir}/machine-id`), "0123abcd");
    assert.equal(readMachineId(`${dir}/none`), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A plan of our own node alone, with these CIDRs (undefined: our node not planned). */
const planOf = (selfCidrs: string[] | undefined): Plan => ({
  routes: [],
  routeCount: 0,
  problems: [],
  nodeCount: 1,
  self: undefined,
  selfCidrs,
  wants: () => false,
});

Deno.test("own node: found by machine ID once it is listed; the state file follows its CIDRs", async () => {
  const dir = await Deno.makeTempDir();
  const lines: { msg: string; level: string }[] = [];
  const log = createLogger("info", { write: (l) => lines.push(JSON.parse(l)), text: false });
  const store = new Map<string, NodeInfo>([["a", node("a", "m-a")]]);
  const ann = "example.com/net1";
  const own = new OwnNode({
    cfg: { nodeName: "", stateDir: dir, cidrAnnotation: ann, cniConfDir: `${dir}/conf` },
    nodes: () => store,
    table: { localAddresses: () => Promise.resolve([]) },
    conflist: false,
    machineId: "m-b",
    log,
  });
  const said = (msg: string) => lines.filter((l) => l.msg === msg).length;
  try {
    assert.equal(own.name, "", "no node has this host's machine ID yet");
    await own.planned(planOf(undefined));
    await own.planned(planOf(undefined));
    assert.equal(
      said(
        "own node not found: set NODE_NAME, or make /etc/machine-id match exactly one node's status.nodeInfo.machineID",
      ),
      1,
      "said once",
    );
    assert.equal(readNodeState(dir, ann), undefined, "nothing written before our node is planned");

    store.set("b", node("b", "m-b"));
    assert.equal(own.name, "b");
    store.delete("b");
    assert.equal(own.name, "b", "once found, kept");

    store.set("b", node("b", "m-b"));
    await own.planned(planOf(["10.0.1.0/24", "fd00::/64"]));
    const first = readNodeState(dir, ann);
    assert.deepEqual(first?.cidrs, ["10.0.1.0/24", "fd00::/64"]);
    assert.equal(first?.node, "b");
    assert.equal(first?.machineID, "m-b");
    await own.planned(planOf(["10.0.1.0/24", "fd00::/64"]));
    assert.equal(said("node state written"), 1, "the same CIDRs are not written again");
    await own.planned(planOf(["10.0.2.0/24"]));
    assert.deepEqual(readNodeState(dir, ann)?.cidrs, ["10.0.2.0/24"]);
    assert.equal(said("node state written"), 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("own node: the conflist is tried once, and its failure is said, not thrown", async () => {
  const dir = await Deno.makeTempDir();
  const lines: { msg: string }[] = [];
  const log = createLogger("info", { write: (l) => lines.push(JSON.parse(l)), text: false });
  const own = new OwnNode({
    cfg: { nodeName: "a", stateDir: dir, cidrAnnotation: "x/y", cniConfDir: `${dir}/conf` },
    nodes: () => new Map([["a", node("a", "")]]),
    table: { localAddresses: () => Promise.resolve([]) },
    conflist: true,
    log,
  });
  try {
    assert.equal(own.name, "a");
    // Our node planned with no address: the MTU cannot be found.
    await own.planned(planOf(["10.0.1.0/24"]));
    await own.planned(planOf(["10.0.3.0/24"]));
    assert.equal(lines.filter((l) => l.msg === "writing the CNI conflist failed").length, 1);
    assert.deepEqual(readNodeState(dir, "x/y")?.cidrs, ["10.0.3.0/24"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** An interface of this host whose MTU a conflist takes (lo's 65536 is too large). */
function conflistDev(): string {
  for (const e of Deno.readDirSync("/sys/class/net")) {
    const mtu = Number(Deno.readTextFileSync(`/sys/class/net/${e.name}/mtu`));
    if (mtu >= 68 && mtu <= 65535) return e.name;
  }
  throw new Error("no interface with an MTU of 68-65535");
}

Deno.test("own node: the conflist leads kube-node to the state file, by annotation and folder", async () => {
  const dir = await Deno.makeTempDir();
  const ann = "cidr.example.com/main";
  const own = new OwnNode({
    cfg: { nodeName: "a", stateDir: `${dir}/state`, cidrAnnotation: ann, cniConfDir: dir },
    nodes: () => new Map([["a", node("a", "")]]),
    // Our node's address is on an interface of this host, for its MTU in sysfs.
    table: {
      localAddresses: () =>
        Promise.resolve([{ family: 4, address: "192.0.2.1", prefix: 24, dev: conflistDev() }]),
    },
    conflist: true,
    log: createLogger("error", { write: () => {}, text: false }),
  });
  // A host-local that keeps the config it is given and hands out one address.
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin);
  await Deno.writeTextFile(
    `${bin}/host-local`,
    `#!/bin/sh\ncat > "${dir}/host-local-stdin"\n` +
      `echo '{"cniVersion":"1.0.0","ips":[{"address":"10.0.1.2/24"}]}'\n`,
    { mode: 0o755 },
  );
  const nodeName = Deno.env.get("NODE_NAME");
  Deno.env.set("NODE_NAME", "a");
  try {
    const self = { addresses: ["192.0.2.1"] } as unknown as CheckedNode;
    await own.planned({ ...planOf(["10.0.1.0/24"]), self });
    const conflist = JSON.parse(await Deno.readTextFile(`${dir}/${CONFLIST_NAME}`));
    const { ipam } = conflist.plugins[0];
    assert.deepEqual(ipam, { type: "kube-node", annotation: ann, stateDir: `${dir}/state` });

    let out = "";
    const code = await runPlugin(kubeNodePlugin, {
      env: {
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: "c1",
        CNI_NETNS: "/var/run/netns/c1",
        CNI_IFNAME: "eth0",
        CNI_PATH: bin,
      },
      stdin: () =>
        new TextEncoder().encode(
          JSON.stringify({ cniVersion: conflist.cniVersion, name: conflist.name, ipam }),
        ),
      stdout: (t) => {
        out += t;
      },
    });
    assert.equal(code, 0, out);
    const given = JSON.parse(await Deno.readTextFile(`${dir}/host-local-stdin`));
    assert.deepEqual(given.ipam.ranges, [[{ subnet: "10.0.1.0/24" }]]);
  } finally {
    if (nodeName === undefined) Deno.env.delete("NODE_NAME");
    else Deno.env.set("NODE_NAME", nodeName);
    await Deno.remove(dir, { recursive: true });
  }
});
