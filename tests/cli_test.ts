/** `nodes` and `routes`: what an operator sees, against the API server and a netns. Needs root. */
import assert from "node:assert/strict";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { Netns, requireRoot } from "./helpers/netns.ts";
import { runMain } from "./helpers/tools.ts";

const notRoot = requireRoot();

const cli = runMain;

/** A temp folder, a namespace and an API server for one test; all removed after it. */
async function withBed(
  fn: (b: { dir: string; ns: Netns; api: ApiServer }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-cli-" });
  const ns = await Netns.create("xcli");
  const api = await startApiServer({ kubeconfigPath: `${dir}/kubeconfig` });
  try {
    await fn({ dir, ns, api });
  } finally {
    await api.close();
    await ns.delete();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "cli: nodes and routes show the plan, the kernel and the dry-run diff",
  ignore: !!notRoot,
  fn: () =>
    withBed(async ({ dir, ns, api }) => {
      await ns.lan("lan0", ["192.168.50.1/24", "fd00:50::1/64"]);
      api.nodes.create(
        makeNode({ name: "a", podCIDRs: ["10.244.0.0/24"], internalIPs: ["192.168.50.1"] }),
      );
      api.nodes.create(makeNode({
        name: "b",
        podCIDRs: ["10.244.1.0/24", "fd00:244:0:1::/64"],
        internalIPs: ["192.168.50.2", "fd00:50::2"],
      }));
      api.nodes.create(
        makeNode({
          name: "c",
          podCIDRs: ["10.244.2.0/24", "bogus"],
          internalIPs: ["192.168.50.3"],
        }),
      );
      // A route of ours that no node wants any more, and one that is already right.
      await ns.ip("route", "add", "10.244.9.0/24", "via", "192.168.50.9", "proto", "202");
      await ns.ip("route", "add", "10.244.1.0/24", "via", "192.168.50.2", "proto", "202");
      const env = { NODE_NAME: "a" };
      const flags = ["--kubeconfig", `${dir}/kubeconfig`, "--netns", ns.name];

      const nodes = await cli(env, "nodes", ...flags);
      assert.equal(nodes.code, 0, nodes.err);
      const lines = nodes.out.trim().split("\n");
      assert.match(lines[0], /^NODE\s+CIDRS\s+NEXT HOPS\s+PROBLEMS$/);
      assert.match(nodes.out, /^a \(self\)\s+10\.244\.0\.0\/24\s+-\s+-$/m);
      assert.match(
        nodes.out,
        /^b\s+10\.244\.1\.0\/24,fd00:244:0:1::\/64\s+192\.168\.50\.2,fd00:50::2\s+-$/m,
      );
      assert.match(
        nodes.out,
        /^c\s+10\.244\.2\.0\/24\s+192\.168\.50\.3\s+malformed: bogus: not an IP address$/m,
      );

      const json = await cli(env, "nodes", "-o", "json", ...flags);
      const parsed = JSON.parse(json.out) as {
        nodes: { name: string; problems: { field: string }[] }[];
      };
      assert.deepEqual(parsed.nodes.find((n) => n.name === "c")?.problems.map((p) => p.field), [
        "spec.podCIDRs",
      ]);

      const routes = await cli(env, "routes", "-o", "json", ...flags);
      assert.equal(routes.code, 0, routes.err);
      const r = JSON.parse(routes.out) as { ops: { op: string; route: { dst: string } }[] };
      assert.deepEqual(r.ops.map((o) => `${o.op} ${o.route.dst}`).sort(), [
        "delete 10.244.9.0/24",
        "replace 10.244.2.0/24",
        "replace fd00:244:0:1::/64",
      ]);
      // Read through the daemon's adapter: rtnetlink needs no `ip`, and iproute2 reads the same.
      const others: Record<string, string>[] = [{ PATH: "/nonexistent" }, {
        ROUTE_ADAPTER: "iproute2",
      }];
      for (const extra of others) {
        const again = await cli({ ...env, ...extra }, "routes", "-o", "json", ...flags);
        assert.equal(again.code, 0, again.err);
        assert.deepEqual(JSON.parse(again.out), r, JSON.stringify(extra));
      }
      const table = await cli(env, "routes", ...flags);
      assert.match(table.out, /diff \(3 operations, dry run\)/);
      // A dry run: the kernel is unchanged.
      assert.match(await ns.ip("route", "show", "proto", "202"), /10\.244\.9\.0\/24/);

      const bad = await cli({ PROTOCOL: "kernel" }, "nodes", ...flags);
      assert.equal(bad.code, 2);
      assert.equal(
        bad.err.split("\n")[0],
        'xcluster-cni nodes: PROTOCOL="kernel": protocol 2 belongs to kernel (the kernel); ' +
          "choose a number 200-254",
      );
      // The same settings as flags: the flag's value wins over the environment.
      const flagged = await cli(
        { PROTOCOL: "kernel", NODE_NAME: "a" },
        "nodes",
        "--protocol",
        "202",
        "--node",
        "b",
        ...flags,
      );
      assert.equal(flagged.code, 0, flagged.err);
      assert.match(flagged.out, /^b \(self\)\s/m);
    }),
});

Deno.test("cli: a bad environment stops the daemon with exit 2 and one line", async () => {
  const r = await cli({ LOG_LEVEL: "loud" }, "daemon");
  assert.equal(r.code, 2);
  assert.equal(
    r.err.trim(),
    'xcluster-cni: LOG_LEVEL="loud": expected error, warn, info, debug, trace or a number',
  );
});

Deno.test({
  name:
    "cli: nodes shows the pools, what is still to allocate, the full pool, and the lease holder",
  ignore: !!notRoot,
  fn: () =>
    withBed(async ({ dir, ns, api }) => {
      const key = "cidr.example.com/net9";
      await ns.lan("lan0", ["192.168.50.1/24"]);
      api.nodes.create(makeNode({
        name: "a",
        internalIPs: ["192.168.50.1"],
        annotations: { [key]: "10.9.0.0/24" },
      }));
      api.nodes.create(makeNode({
        name: "b",
        internalIPs: ["192.168.50.2"],
        annotations: { [key]: "10.9.1.0/24" },
      }));
      api.nodes.create(makeNode({ name: "c", internalIPs: ["192.168.50.3"] }));
      api.nodes.create(makeNode({ name: "d", internalIPs: ["192.168.50.4"] }));
      const env = {
        NODE_NAME: "a",
        CIDR_ANNOTATION: key,
        CLUSTER_CIDRS: "10.9.0.0/22/24",
        POD_NAMESPACE: "net9",
      };
      const flags = ["--kubeconfig", `${dir}/kubeconfig`, "--netns", ns.name];
      let out = await cli(env, "nodes", ...flags);
      assert.equal(out.code, 0, out.err);
      assert.match(out.out, /^c\s+-\s+-\s+.*allocation pending: 10\.9\.2\.0\/24$/m);
      assert.match(out.out, /^d\s+-\s+-\s+.*allocation pending: 10\.9\.3\.0\/24$/m);
      assert.match(
        out.out,
        /^allocation lease net9\/xcluster-cni-cidr\.example\.com-net9: \(nobody\)$/m,
      );
      assert.match(out.out, /^10\.9\.0\.0\/22\/24\s+IPv4\s+4\s+2\s+2$/m);

      // c holds a CIDR now, and e joins: the pool has one left for two nodes.
      api.nodes.patch("c", "merge", { metadata: { annotations: { [key]: "10.9.2.0/24" } } });
      api.nodes.create(makeNode({ name: "e", internalIPs: ["192.168.50.5"] }));
      api.leases.create("net9", {
        apiVersion: "coordination.k8s.io/v1",
        kind: "Lease",
        metadata: { name: "xcluster-cni-cidr.example.com-net9", namespace: "net9" },
        spec: { holderIdentity: "b", leaseDurationSeconds: 15 },
      });
      out = await cli(env, "nodes", ...flags);
      assert.equal(out.code, 0, out.err);
      assert.match(out.out, /^d\s+.*allocation pending: 10\.9\.3\.0\/24$/m);
      assert.match(out.out, /^e\s+.*pools-full: IPv4: pools of IPv4 are full/m);
      assert.match(out.out, /: b$/m);
      assert.match(out.out, /^10\.9\.0\.0\/22\/24\s+IPv4\s+4\s+3\s+1$/m);
    }),
});

Deno.test({
  name: "cli: nodes shows what the kernel would refuse and another owner's route in the way",
  ignore: !!notRoot,
  fn: () =>
    withBed(async ({ dir, ns, api }) => {
      await ns.lan("lan0", ["192.168.50.1/24"]);
      api.nodes.create(
        makeNode({ name: "a", podCIDRs: ["10.244.0.0/24"], internalIPs: ["192.168.50.1"] }),
      );
      api.nodes.create(
        makeNode({ name: "b", podCIDRs: ["10.244.1.0/24"], internalIPs: ["192.168.50.2"] }),
      );
      api.nodes.create(
        makeNode({ name: "far", podCIDRs: ["10.244.7.0/24"], internalIPs: ["192.168.99.7"] }),
      );
      await ns.ip("route", "add", "10.244.1.0/24", "via", "192.168.50.9", "proto", "static");
      const out = await cli(
        { NODE_NAME: "a" },
        "nodes",
        "--kubeconfig",
        `${dir}/kubeconfig`,
        "--netns",
        ns.name,
      );
      assert.equal(out.code, 0, out.err);
      assert.match(
        out.out,
        /^b\s.*foreign-route: 10\.244\.1\.0\/24: a route of protocol 4 via 192\.168\.50\.9 already has this destination/m,
      );
      assert.match(
        out.out,
        /^far\s.*kernel: 10\.244\.7\.0\/24 via 192\.168\.99\.7: the kernel would refuse it: the next hop is not on-link/m,
      );
      assert.doesNotMatch(out.out, /^b\s.*kernel:/m);
    }),
});
