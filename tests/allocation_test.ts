/**
 * Zero-touch allocation end to end, in process: three instances of one network (nodes a, b
 * and c, each in a namespace of its own as on its own host) against the embedded API server,
 * electing one allocator by Lease. Nodes get CIDRs nobody wrote by hand, and routes to them
 * follow; hand-written annotations are adopted; a person's concurrent edit wins; a full pool
 * is reported and served once a CIDR frees up; the lease moves when its holder stops.
 * Needs root (network namespaces).
 */
import assert from "node:assert/strict";
import { leaseName, parseDaemonConfig } from "../src/config.ts";
import { type Daemon, startDaemon } from "../src/daemon.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { formatCidr, parseCidr, splitList } from "../src/net/ip.ts";
import { Netns, pollUntil, requireRoot } from "./helpers/netns.ts";
import { capturedLog, type Cluster, cluster, expectRoutes } from "./helpers/router.ts";

const notRoot = requireRoot();
const NET9 = { cidr: "cidr.example.com/net9", adr: "adr.example.com/net9" };
const LEASE = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200 };

/** Namespaces made for the hosts of b and c, removed with the cluster. */
const hosts: Netns[] = [];
/** Each cluster's hosts as made, so that an instance started again finds its host as it was. */
const prepared = new WeakMap<Cluster, Map<string, Netns>>();

/**
 * The namespace of node `name`'s host: a's is the test bed's own; b's and c's are made with
 * their InternalIPs on lan0, so that the same next hops are on-link everywhere.
 */
async function hostOf(c: Cluster, name: string): Promise<Netns> {
  const made = prepared.get(c) ?? new Map<string, Netns>();
  prepared.set(c, made);
  const known = made.get(name);
  if (known) return known;
  const i = name.charCodeAt(0) - "a".charCodeAt(0);
  let ns = c.ns;
  if (name !== "a") {
    ns = await Netns.create(`xz${name}`);
    hosts.push(ns);
    await ns.lan("lan0", [`192.168.50.${i + 1}/24`, `fd00:50::${i + 1}/64`]);
  }
  // The network's own interface, whose addresses the instances may publish.
  await ns.lan("net9", [`192.168.70.${i + 1}/24`, `fd00:70::${i + 1}/64`]);
  made.set(name, ns);
  return ns;
}

async function closeAll(c: Cluster): Promise<void> {
  for (const ns of hosts.splice(0)) await ns.delete();
  await c.close();
}

/** Starts the network's instance of node `name` in its host's namespace. */
async function instance(
  c: Cluster,
  name: string,
  env: Record<string, string> = {},
  log = capturedLog(),
): Promise<Daemon> {
  const cfg = parseDaemonConfig({
    NODE_NAME: name,
    CIDR_ANNOTATION: NET9.cidr,
    PROTOCOL: "210",
    CLUSTER_CIDRS: "10.9.0.0/22/24,fd00:9::/104/112",
    HTTP_ADDRESS: "off",
    STATE_DIR: `${c.dir}/state-${name}`,
    RESYNC_INTERVAL: "1h",
    NODE_EVENTS: "yes",
    ...env,
  });
  const d = await startDaemon(cfg, {
    netns: (await hostOf(c, name)).name,
    kubeconfig: c.api.kubeconfigPath,
    install: false,
    log: log.log,
    lease: LEASE,
  });
  await d.ready;
  return d;
}

/** The network's CIDR annotation of a node in the API server's store. */
function annotation(c: Cluster, node: string): string | undefined {
  const all = c.api.nodes.get(node)?.metadata.annotations as Record<string, string> | undefined;
  return all?.[NET9.cidr];
}

/** Every node's CIDRs of the network, canonical. */
function held(c: Cluster): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const n of c.api.nodes.list()) {
    const v = annotation(c, n.metadata.name);
    if (v === undefined) continue;
    out.set(
      n.metadata.name,
      splitList(v).flatMap((i) => {
        const r = parseCidr(i);
        return r.ok ? [formatCidr(r.cidr)] : [];
      }),
    );
  }
  return out;
}

/** No CIDR is held by two nodes. */
function assertDistinct(c: Cluster) {
  const owner = new Map<string, string>();
  for (const [node, cidrs] of held(c)) {
    for (const cidr of cidrs) {
      assert.equal(owner.get(cidr), undefined, `${cidr} held by ${owner.get(cidr)} and ${node}`);
      owner.set(cidr, node);
    }
  }
}

function metric(d: Daemon, name: string): number {
  const line = d.metrics.render().split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? NaN : Number(line.slice(name.length + 1));
}

Deno.test({
  name: "allocation: one leader gives every node a CIDR of each family; routes follow; " +
    "hand-written CIDRs adopted; a concurrent edit wins; a full pool waits for a free CIDR",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    // Written by hand before allocation was turned on: adopted, and never handed out again.
    c.api.nodes.patch("b", "merge", {
      metadata: { annotations: { [NET9.cidr]: "10.9.0.0/24" } },
    });
    const daemons: Daemon[] = [];
    try {
      const logs = [capturedLog(), capturedLog(), capturedLog()];
      for (const [i, name] of ["a", "b", "c"].entries()) {
        daemons.push(await instance(c, name, {}, logs[i]));
      }
      await pollUntil(() => ["a", "b", "c"].every((n) => held(c).get(n)?.length === 2), {
        message: () => `allocated: ${JSON.stringify([...held(c)])}`,
      });
      // b's hand-written IPv4 CIDR stays byte for byte; it got an IPv6 one appended.
      assert.match(annotation(c, "b")!, /^10\.9\.0\.0\/24,fd00:9::[0-9a-f:]*\/112$/);
      assertDistinct(c);
      // Oldest first, lowest first: a (created first) got the lowest free ones.
      assert.deepEqual(held(c).get("a"), ["10.9.1.0/24", "fd00:9::/112"]);

      const holder = c.api.leases.get("kube-system", leaseName(NET9.cidr))?.spec?.holderIdentity;
      assert.ok(holder && ["a", "b", "c"].includes(holder), `lease held by ${holder}`);
      const leaders = daemons.filter((d) => metric(d, "xcluster_cni_allocation_leader") === 1);
      assert.equal(leaders.length, 1, "exactly one leader");
      const leader = leaders[0];
      // The instance leading now (the short test lease may change hands under load).
      const leading = () =>
        daemons.find((d) => metric(d, "xcluster_cni_allocation_leader") === 1) ?? leader;
      // One CIDR per family for a and c, IPv6 for b: written once, by whichever instance led
      // (under load the short test lease may change hands).
      // A write cut off by a change of leader may land uncounted: never more than 5.
      // Every write may be cut off that way only when the lease did change hands.
      const written = daemons.reduce((n, d) => n + metric(d, "xcluster_cni_allocations_total"), 0);
      const transitions =
        c.api.leases.get("kube-system", leaseName(NET9.cidr))?.spec?.leaseTransitions ?? 0;
      assert.ok(
        written <= 5 && (written >= 1 || transitions > 0),
        `${written} CIDRs counted as written, ${transitions} lease transitions`,
      );

      // Routes to what was allocated, on a's host, via InternalIPs.
      const routesOf = (node: string, via: [string, string]) =>
        held(c).get(node)!.map((cidr) => `${cidr} via ${cidr.includes(":") ? via[1] : via[0]}`);
      await expectRoutes(c.ns, 210, [
        ...routesOf("b", ["192.168.50.2", "fd00:50::2"]),
        ...routesOf("c", ["192.168.50.3", "fd00:50::3"]),
      ], "routes to the allocated CIDRs");

      // A node joins: it gets a CIDR, and a's instance routes to it.
      c.api.nodes.create(makeNode({ name: "d", internalIPs: ["192.168.50.4", "fd00:50::4"] }));
      await pollUntil(() => held(c).get("d")?.length === 2, { message: "d allocated" });
      let shown = "";
      await pollUntil(
        async () =>
          (shown = await c.ns.ip("route", "show", "proto", "210")).includes(held(c).get("d")![0]),
        { message: () => `route to d ${held(c).get("d")}: ${shown}\n${logs[0].lines.join("\n")}` },
      );

      // The pool has 4 IPv4 CIDRs: b's, a's, c's, d's. e joins and finds the pool full.
      c.api.nodes.create(makeNode({ name: "e", internalIPs: ["192.168.50.5", "fd00:50::5"] }));
      await pollUntil(() => held(c).get("e")?.length === 1, { message: "e gets IPv6 only" });
      assert.match(annotation(c, "e")!, /^fd00:9::/);
      await pollUntil(
        () => metric(leading(), 'xcluster_cni_nodes_with_problems{reason="no-free-cidr"}') === 1,
        { message: "full pool reported in the metrics" },
      );
      assert.equal(
        metric(leading(), 'xcluster_cni_pool_used{pool="10.9.0.0/22/24",family="ipv4"}'),
        4,
      );
      await pollUntil(
        () =>
          c.api.events.some((e) =>
            JSON.stringify(e).includes("NetworkCIDRNotAvailable") &&
            JSON.stringify(e).includes('"e"')
          ),
        { message: "an Event on node e" },
      );
      // d goes: its CIDRs are free again, and e gets the IPv4 one (quarantine or not, it is
      // the only one left).
      const dCidr = held(c).get("d")![0];
      c.api.nodes.delete("d");
      await pollUntil(() => held(c).get("e")?.includes(dCidr) === true, {
        message: () => `e after d went: ${annotation(c, "e")}`,
      });
      await pollUntil(
        () => metric(leading(), 'xcluster_cni_nodes_with_problems{reason="no-free-cidr"}') === 0,
      );
      assertDistinct(c);

      // A person edits f's annotation while it is being allocated: the hand-written value is
      // never overwritten (only appended to, from what is there).
      c.api.nodes.create(makeNode({ name: "f" }));
      c.api.nodes.patch("f", "merge", {
        metadata: { annotations: { [NET9.cidr]: "fd00:9::ff:0/112" } },
      });
      await pollUntil(() => annotation(c, "f")?.startsWith("fd00:9::ff:0/112") === true);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(annotation(c, "f")!.startsWith("fd00:9::ff:0/112"), annotation(c, "f"));
      assertDistinct(c);

      // The leader stops (lease released): another instance takes over and allocates.
      const old = leading();
      const i = daemons.indexOf(old);
      await old.stop();
      daemons.splice(i, 1);
      await pollUntil(
        () => daemons.some((d) => metric(d, "xcluster_cni_allocation_leader") === 1),
        { timeoutMs: 5000, message: "a new leader" },
      );
      // f has waited for an IPv4 CIDR since the pool filled: e's goes to it when e goes.
      const eCidr = held(c).get("e")!.find((x) => !x.includes(":"))!;
      c.api.nodes.delete("e");
      await pollUntil(() => held(c).get("f")?.includes(eCidr) === true, {
        message: () => `f after e went, by the new leader: ${annotation(c, "f")}`,
      });
      c.api.nodes.create(makeNode({ name: "g" }));
      await pollUntil(() => held(c).get("g")?.length === 1, { message: "g: IPv6 only" });
      const next = daemons.find((d) => metric(d, "xcluster_cni_allocation_leader") === 1)!;
      await pollUntil(
        () => metric(next, 'xcluster_cni_nodes_with_problems{reason="no-free-cidr"}') === 1,
      );
      assertDistinct(c);
      // Sticky: a, b and c kept what they had from the start.
      assert.deepEqual(held(c).get("a"), ["10.9.1.0/24", "fd00:9::/112"]);
      assert.match(annotation(c, "b")!, /^10\.9\.0\.0\/24,/);
    } finally {
      for (const d of daemons) await d.stop();
      await closeAll(c);
    }
  },
});

Deno.test({
  name: "allocation: NODE_SELECTOR narrows the network server-side; a node that stops matching " +
    "loses its routes and keeps its annotation",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    for (const n of ["a", "b", "c"]) {
      c.api.nodes.patch(n, "merge", { metadata: { labels: { "net9": "yes" } } });
    }
    c.api.nodes.create(makeNode({ name: "x", internalIPs: ["192.168.50.9", "fd00:50::9"] }));
    let d: Daemon | undefined;
    try {
      d = await instance(c, "a", { NODE_SELECTOR: "net9=yes" });
      await pollUntil(() => ["a", "b", "c"].every((n) => held(c).get(n)?.length === 2), {
        message: "selected nodes allocated",
      });
      assert.equal(annotation(c, "x"), undefined, "x is not on the network");
      assert.equal(metric(d, "xcluster_cni_nodes"), 3, "x not even seen");
      const bRoutes = held(c).get("b")!;
      await pollUntil(async () => {
        const r = await c.ns.ip("route", "show", "proto", "210");
        return r.includes(bRoutes[0]);
      });
      c.api.nodes.patch("b", "merge", { metadata: { labels: { "net9": "no" } } });
      await pollUntil(async () => {
        const r = await c.ns.ip("route", "show", "proto", "210");
        return !r.includes(bRoutes[0]);
      }, { message: "b's route removed once b left the network" });
      assert.deepEqual(held(c).get("b"), bRoutes, "b keeps its annotation");
      // x joins the network by its label and gets the pool's last IPv4 CIDR; y finds the pool
      // full: b, off the network but still there, keeps what it holds.
      c.api.nodes.patch("x", "merge", { metadata: { labels: { "net9": "yes" } } });
      await pollUntil(() => held(c).get("x")?.length === 2, { message: "x allocated" });
      c.api.nodes.create(makeNode({ name: "y", labels: { "net9": "yes" } }));
      await pollUntil(() => held(c).get("y")?.length === 1, { message: "y: IPv6 only" });
      await new Promise((r) => setTimeout(r, LEASE.leaseDurationMs));
      c.api.nodes.patch("y", "merge", { metadata: { labels: { "touched": "1" } } });
      c.api.nodes.create(makeNode({ name: "z", labels: { "net9": "yes" } }));
      await pollUntil(() => held(c).get("z")?.length === 1, { message: "z: IPv6 only" });
      assert.equal(held(c).get("y")?.length, 1, "b's IPv4 CIDR is not handed out");
      assertDistinct(c);
      // A new leader, whose informer never saw b: what b holds stays taken all the same.
      await d.stop();
      d = await instance(c, "a", { NODE_SELECTOR: "net9=yes" });
      c.api.nodes.create(makeNode({ name: "w", labels: { "net9": "yes" } }));
      await pollUntil(() => held(c).get("w")?.length === 1, { message: "w: IPv6 only" });
      assert.equal(held(c).get("y")?.length, 1, "b's IPv4 CIDR is not handed out after a restart");
      assert.equal(held(c).get("z")?.length, 1);
      assertDistinct(c);
    } finally {
      await d?.stop();
      await closeAll(c);
    }
  },
});

Deno.test({
  name: "zero touch: with no annotation written by anyone, every node gets CIDRs and publishes " +
    "its address, and every host routes to the others over the network",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    const daemons: Daemon[] = [];
    try {
      for (const name of ["a", "b", "c"]) {
        daemons.push(
          await instance(c, name, { ADDRESS_ANNOTATION: NET9.adr, ADDRESS_INTERFACE: "net9" }),
        );
      }
      const adr = (node: string) =>
        (c.api.nodes.get(node)?.metadata.annotations as Record<string, string>)?.[NET9.adr];
      await pollUntil(
        () => ["a", "b", "c"].every((n, i) => adr(n) === `192.168.70.${i + 1},fd00:70::${i + 1}`),
        { message: () => `addresses: ${["a", "b", "c"].map(adr)}` },
      );
      await pollUntil(() => ["a", "b", "c"].every((n) => held(c).get(n)?.length === 2));
      const want = (node: string, i: number) =>
        held(c).get(node)!.map((cidr) =>
          `${cidr} via ${cidr.includes(":") ? `fd00:70::${i + 1}` : `192.168.70.${i + 1}`}`
        );
      // On a's host, routes to b and c over the network's own addresses.
      await expectRoutes(c.ns, 210, [...want("b", 1), ...want("c", 2)], "a's routes");
      assert.equal(metric(daemons[1], "xcluster_cni_address_publications_total"), 1);

      // b's address moves: published within a second or so, and a's route follows.
      const bHost = hosts[0];
      await bHost.ip("addr", "del", "192.168.70.2/24", "dev", "net9");
      await bHost.ip("addr", "add", "192.168.70.12/24", "dev", "net9");
      await pollUntil(() => adr("b") === "192.168.70.12,fd00:70::2", {
        message: () => `b's address after the move: ${adr("b")}`,
      });
      await expectRoutes(c.ns, 210, [
        ...want("b", 1).map((r) => r.replace("via 192.168.70.2", "via 192.168.70.12")),
        ...want("c", 2),
      ], "a's route to b after b's address moved");
    } finally {
      for (const d of daemons) await d.stop();
      await closeAll(c);
    }
  },
});
