import assert from "node:assert/strict";
import {
  ConfigError,
  ENV,
  parseDaemonConfig,
  parseProtocol,
  parseRtProtos,
  readsMetadataOnly,
} from "../src/config.ts";

Deno.test("defaults are Nordix's: protocol 202, podCIDRs, InternalIP", () => {
  const cfg = parseDaemonConfig({});
  assert.equal(cfg.protocol, 202);
  assert.equal(cfg.cidrAnnotation, "");
  assert.equal(cfg.addressAnnotation, "");
  assert.equal(cfg.nodeName, "");
  assert.equal(cfg.logLevel, "info");
  assert.equal(cfg.installK8sNet, true);
  assert.equal(cfg.httpAddress, "0.0.0.0:19202");
});

Deno.test("values are parsed", () => {
  const cfg = parseDaemonConfig({
    NODE_NAME: "vm-003",
    CIDR_ANNOTATION: "cidr.example.com/net3",
    ADDRESS_ANNOTATION: "adr.example.com/net3",
    PROTOCOL: "200",
    LOG_LEVEL: "1",
    RESYNC_INTERVAL: "5m",
    INSTALL_K8S_NET: "no",
    ALLOWED_CIDRS: "10.0.0.0/8, fd00::/48",
    HTTP_ADDRESS: ":9000",
  });
  assert.equal(cfg.nodeName, "vm-003");
  assert.equal(cfg.cidrAnnotation, "cidr.example.com/net3");
  assert.equal(cfg.protocol, 200);
  assert.equal(cfg.logLevel, "debug");
  assert.equal(cfg.resyncSeconds, 300);
  assert.equal(cfg.installK8sNet, false);
  assert.equal(cfg.allowedCidrs.length, 2);
  assert.equal(cfg.httpAddress, "0.0.0.0:9000");
  assert.equal(parseDaemonConfig({ PROTOCOL: "200" }).httpAddress, "0.0.0.0:19200");
});

Deno.test("a bad value names the variable and the value", () => {
  const cases: [Record<string, string>, string][] = [
    [{ PROTOCOL: "2" }, "PROTOCOL"],
    [{ PROTOCOL: "0" }, "PROTOCOL"],
    [{ PROTOCOL: "256" }, "PROTOCOL"],
    [{ PROTOCOL: "nosuchproto" }, "PROTOCOL"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ RESYNC_INTERVAL: "soon" }, "RESYNC_INTERVAL"],
    [{ INSTALL_K8S_NET: "maybe" }, "INSTALL_K8S_NET"],
    [{ ALLOWED_CIDRS: "10.0.0.0/33" }, "ALLOWED_CIDRS"],
    [{ CIDR_ANNOTATION: "bad key!" }, "CIDR_ANNOTATION"],
    [{ HTTP_ADDRESS: "nope" }, "HTTP_ADDRESS"],
  ];
  for (const [env, name] of cases) {
    assert.throws(() => parseDaemonConfig(env), (e: unknown) => {
      assert.ok(e instanceof ConfigError, String(e));
      assert.equal(e.variable, name);
      const value = Object.values(env)[0];
      assert.ok(e.message.startsWith(`${name}=${JSON.stringify(value)}: `), e.message);
      assert.ok(!e.message.includes("\n"));
      return true;
    });
  }
});

Deno.test("protocol names resolve through rt_protos, the kernel's are refused", () => {
  const names = parseRtProtos("# comment\n2\tkernel\n4 static\n0x10 zebra\n200 net3\n");
  assert.equal(parseProtocol("net3", names), 200);
  assert.equal(parseProtocol("zebra", names), 16);
  assert.throws(() => parseProtocol("kernel", names), /kernel/);
  assert.throws(() => parseProtocol("static", names), /static/);
});

Deno.test("every variable is documented once", () => {
  const names = ENV.map((e) => e.name);
  assert.equal(new Set(names).size, names.length);
  for (const e of ENV) assert.ok(e.description.length > 20, e.name);
  for (
    const n of [
      "NODE_NAME",
      "CIDR_ANNOTATION",
      "ADDRESS_ANNOTATION",
      "PROTOCOL",
      "LOG_LEVEL",
      "LOG_FILE",
    ]
  ) {
    assert.ok(names.includes(n), n);
  }
});

Deno.test("config: nodes are read as metadata only when nothing else is needed", () => {
  const all = { nodeName: "n1", cidrAnnotation: "a/cidrs", addressAnnotation: "a/addrs" };
  assert.equal(readsMetadataOnly(all), true);
  assert.equal(readsMetadataOnly({ ...all, nodeName: "" }), false, "machine ID is in status");
  assert.equal(readsMetadataOnly({ ...all, cidrAnnotation: "" }), false, "spec.podCIDRs");
  assert.equal(readsMetadataOnly({ ...all, addressAnnotation: "" }), false, "InternalIP");
});
