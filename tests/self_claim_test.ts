/**
 * Our own node's CIDRs on a real kernel: a node older than ours that claims part of them
 * gets no route there, neither from the head start nor from the plan, and is reported; the
 * node state file keeps our CIDRs. The daemon runs in process, `ip` inside a network
 * namespace, against the embedded API server. Needs root (network namespaces).
 */
import assert from "node:assert/strict";
import { startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { cidrsOverlap, parseCidr } from "../src/net/ip.ts";
import { stateFilePath } from "../src/state.ts";
import { Netns, pollUntil, requireRoot } from "./helpers/netns.ts";
import { daemon, expectRoutes, MAIN_B, RouteWatch } from "./helpers/router.ts";

const notRoot = requireRoot();

/** Our own node's CIDRs (node a). */
const OURS = ["10.244.0.0/24", "fd00:244::/64"];

function overlapsOurs(dst: string): boolean {
  const d = parseCidr(dst);
  if (!d.ok) throw new Error(`${dst}: ${d.reason}`);
  return OURS.some((text) => {
    const o = parseCidr(text);
    return o.ok && cidrsOverlap(o.cidr, d.cidr);
  });
}

Deno.test({
  name: "self claim: an older node's claim on our CIDRs is refused, reported, never routed",
  ignore: !!notRoot,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "xcluster-self-claim-" });
    await using ns = await Netns.create("xs");
    await ns.lan("lan0", ["192.168.50.1/24", "fd00:50::1/64"]);
    const api = await startApiServer({ kubeconfigPath: `${dir}/kubeconfig` });
    let watch: RouteWatch | undefined;
    let d: Awaited<ReturnType<typeof daemon>> | undefined;
    try {
      // Created before node a, and before it by name should the second be the same: older
      // either way, so that by age alone they would win.
      api.nodes.create(makeNode({
        name: "0-older",
        podCIDRs: ["10.244.0.0/25", "fd00:244::/80", "10.244.7.0/24"],
        internalIPs: ["192.168.50.7", "fd00:50::7"],
      }));
      api.nodes.create(makeNode({
        name: "1-older",
        podCIDRs: ["10.244.8.0/24"],
        internalIPs: ["192.168.50.8"],
      }));
      api.nodes.create(makeNode({
        name: "a",
        podCIDRs: OURS,
        internalIPs: ["192.168.50.1", "fd00:50::1"],
      }));
      api.nodes.create(makeNode({
        name: "b",
        podCIDRs: ["10.244.1.0/24", "fd00:244:0:1::/64"],
        internalIPs: ["192.168.50.2", "fd00:50::2"],
      }));
      const created = (name: string) => api.nodes.get(name)?.metadata.creationTimestamp ?? "";
      for (const older of ["0-older", "1-older"]) {
        assert.ok(created(older) !== "" && created(older) <= created("a"), older);
      }

      watch = await RouteWatch.start(ns);
      d = await daemon({ ns, api, dir });
      const expected = [
        ...MAIN_B,
        "10.244.7.0/24 via 192.168.50.7",
        "10.244.8.0/24 via 192.168.50.8",
      ];
      await expectRoutes(ns, 202, expected, "no route into our own CIDRs");

      const state = JSON.parse(await Deno.readTextFile(stateFilePath(`${dir}/state`, "")));
      assert.equal(state.node, "a");
      assert.deepEqual(state.cidrs, OURS);

      const reported = () =>
        (d?.reconciler.last?.problems ?? []).filter((p) => p.kind === "conflict")
          .map((p) => `${p.node} ${p.value}: ${p.reason}`).sort();
      const older = reported().filter((p) => p.startsWith("0-older "));
      assert.equal(older.length, 2, reported().join("\n"));
      assert.match(older[0], /^0-older 10\.244\.0\.0\/25: overlaps 10\.244\.0\.0\/24 of node a,/);
      assert.match(older[1], /^0-older fd00:244::\/80: overlaps fd00:244::\/64 of node a,/);
      const metric = d.metrics.render().split("\n")
        .find((l) => l.startsWith('xcluster_cni_nodes_with_problems{reason="conflict"} '));
      assert.ok(metric && Number(metric.split(" ")[1]) >= 1, metric);

      // An older node that claims part of our range later, through a watch.
      api.nodes.patch("1-older", "merge", {
        spec: { podCIDRs: ["10.244.8.0/24", "10.244.0.128/25"] },
      });
      const later = () => reported().filter((p) => p.startsWith("1-older 10.244.0.128/25: "));
      await pollUntil(() => later().length === 1, {
        message: () => `the later claim reported: ${reported().join("; ")}`,
      });
      assert.match(later()[0], /overlaps 10\.244\.0\.0\/24 of node a,/);
      await expectRoutes(ns, 202, expected, "a later claim on our CIDRs is refused as well");
      assert.deepEqual(
        JSON.parse(await Deno.readTextFile(stateFilePath(`${dir}/state`, ""))).cidrs,
        OURS,
      );

      // Never, not even for a moment: the monitor saw every route of ours added. A marker
      // route proves it has printed everything before it.
      await ns.ip("route", "add", "10.254.99.0/24", "dev", "lo", "proto", "99");
      await watch.seen("10.254.99.0/24");
      const into = watch.added(202).filter((r) => overlapsOurs(r.dst));
      assert.deepEqual(into.map((r) => r.line), []);
      assert.ok(watch.added(202).some((r) => r.dst === "10.244.7.0/24"), watch.text);
    } finally {
      await d?.stop();
      await watch?.stop();
      await api.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
