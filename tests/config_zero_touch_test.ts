/**
 * The settings of zero-touch networks: pools, node selection, address publication. Each bad
 * value or missing counterpart stops the daemon with one line naming the variable.
 */
import assert from "node:assert/strict";
import { ConfigError, leaseName, parseDaemonConfig } from "../src/config.ts";

const NET3 = {
  NODE_NAME: "vm-003",
  CIDR_ANNOTATION: "cidr.example.com/net3",
  ADDRESS_ANNOTATION: "adr.example.com/net3",
};

Deno.test("zero-touch settings: off by default; parsed when set", () => {
  const off = parseDaemonConfig({});
  assert.deepEqual(
    [off.clusterCidrs, off.nodeSelector, off.addressInterface, off.addressSubnets],
    [[], "", "", []],
  );
  assert.equal(off.podNamespace, "kube-system");
  const cfg = parseDaemonConfig({
    ...NET3,
    CLUSTER_CIDRS: "192.168.64.0/18/26, fd00:5::/96",
    PER_NODE_HOST_BITS: "16",
    NODE_SELECTOR: "net.example.com/net3 in (yes, true),!excluded",
    POD_NAMESPACE: "xcluster-net3",
    ADDRESS_INTERFACE: "net3",
  });
  assert.deepEqual(cfg.clusterCidrs.map((p) => p.text), ["192.168.64.0/18/26", "fd00:5::/96/112"]);
  assert.equal(cfg.nodeSelector, "net.example.com/net3 in (yes,true),!excluded");
  assert.equal(cfg.podNamespace, "xcluster-net3");
  assert.equal(cfg.addressInterface, "net3");
  assert.equal(
    parseDaemonConfig({ ...NET3, ADDRESS_SUBNETS: "192.168.2.0/24,1000::/64" })
      .addressSubnets.length,
    2,
  );
});

Deno.test("zero-touch settings: bad values and missing counterparts name the variable", () => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [
      { CLUSTER_CIDRS: "192.168.64.0/18/26" },
      "CLUSTER_CIDRS",
      /spec\.podCIDRs belongs to kube-controller-manager/,
    ],
    [{ ...NET3, NODE_NAME: "", CLUSTER_CIDRS: "10.0.0.0/16/24" }, "CLUSTER_CIDRS", /NODE_NAME/],
    [{ ...NET3, CLUSTER_CIDRS: "10.0.0.0/16" }, "CLUSTER_CIDRS", /PER_NODE_HOST_BITS/],
    [{ ...NET3, CLUSTER_CIDRS: "10.0.0.1/16/24" }, "CLUSTER_CIDRS", /10\.0\.0\.1\/16/],
    [{ ...NET3, PER_NODE_HOST_BITS: "x" }, "PER_NODE_HOST_BITS", /integer/],
    [{ ...NET3, NODE_SELECTOR: "zone in (a" }, "NODE_SELECTOR", /parentheses/],
    [{ ...NET3, POD_NAMESPACE: "Kube_System" }, "POD_NAMESPACE", /namespace/],
    [
      { ...NET3, ADDRESS_ANNOTATION: "", ADDRESS_INTERFACE: "net3" },
      "ADDRESS_INTERFACE",
      /ADDRESS_ANNOTATION/,
    ],
    [{ ...NET3, NODE_NAME: "", ADDRESS_SUBNETS: "10.0.0.0/8" }, "ADDRESS_SUBNETS", /NODE_NAME/],
    [
      { ...NET3, ADDRESS_INTERFACE: "net3", ADDRESS_SUBNETS: "10.0.0.0/8" },
      "ADDRESS_SUBNETS",
      /not both/,
    ],
    [{ ...NET3, ADDRESS_INTERFACE: "a/b" }, "ADDRESS_INTERFACE", /"a\/b"/],
    [{ ...NET3, ADDRESS_SUBNETS: "10.0.0.1/8" }, "ADDRESS_SUBNETS", /host bits/],
  ];
  for (const [env, variable, reason] of cases) {
    assert.throws(() => parseDaemonConfig(env), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${JSON.stringify(env)}: ${e}`);
      assert.equal(e.variable, variable, e.message);
      assert.match(e.message, reason);
      assert.ok(e.message.startsWith(`${variable}=`), e.message);
      assert.ok(!e.message.includes("\n"), "one line");
      return true;
    });
  }
});

Deno.test("the allocation Lease is named after the network's annotation, a DNS subdomain", () => {
  assert.equal(leaseName("cidr.example.com/net3"), "xcluster-cni-cidr.example.com-net3");
  assert.equal(leaseName("example.com/Net_3"), "xcluster-cni-example.com-net-3");
  assert.notEqual(leaseName("a.example.com/net3"), leaseName("b.example.com/net3"));
  for (const a of ["cidr.example.com/net3", "x/Y_", "net"]) {
    assert.match(leaseName(a), /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
  }
});

Deno.test("zero-touch settings: CLUSTER_CIDRS whose node CIDRs the routers refuse is refused", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [
      { CLUSTER_CIDRS: "10.0.0.0/16/24", ALLOWED_CIDRS: "192.168.0.0/16" },
      /pool 10\.0\.0\.0\/16\/24 would not be routed: outside ALLOWED_CIDRS/,
    ],
    [{ CLUSTER_CIDRS: "127.0.0.0/8/24" }, /pool 127\.0\.0\.0\/8\/24 .*: overlaps the loopback/],
    [
      { CLUSTER_CIDRS: "fd00::/16/24" },
      /pool fd00::\/16\/24 .*: node CIDR prefix \/24 is shorter than the minimum \/32/,
    ],
    [
      { CLUSTER_CIDRS: "10.0.0.0/8/16", MIN_PREFIX_V4: "20" },
      /node CIDR prefix \/16 is shorter than the minimum \/20/,
    ],
    [{ CLUSTER_CIDRS: "169.254.0.0/16/24" }, /overlaps the link-local 169\.254\.0\.0\/16/],
    [{ CLUSTER_CIDRS: "10.8.0.0/16/24,fe80::/64/80" }, /pool fe80::\/64\/80 .*link-local/],
  ];
  for (const [env, reason] of cases) {
    assert.throws(() => parseDaemonConfig({ ...NET3, ...env }), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${JSON.stringify(env)}: ${e}`);
      assert.equal(e.variable, "CLUSTER_CIDRS", e.message);
      assert.ok(
        e.message.startsWith(`CLUSTER_CIDRS=${JSON.stringify(env.CLUSTER_CIDRS)}: `),
        e.message,
      );
      assert.match(e.message, reason);
      return true;
    });
  }
  // The minimum prefix is a node CIDR's: a large pool of small node CIDRs passes.
  const ok = [
    { CLUSTER_CIDRS: "10.0.0.0/8/24", MIN_PREFIX_V4: "16" },
    { CLUSTER_CIDRS: "192.168.64.0/18/26", ALLOWED_CIDRS: "192.168.0.0/16" },
    { CLUSTER_CIDRS: "fd00::/48/64" },
  ];
  for (const env of ok) assert.equal(parseDaemonConfig({ ...NET3, ...env }).clusterCidrs.length, 1);
});
