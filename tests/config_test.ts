import assert from "node:assert/strict";
import {
  ConfigError,
  ENV,
  parseDaemonConfig,
  parseProtocol,
  parseRtProtos,
  readsMetadataOnly,
} from "../src/config.ts";
import { fileSink } from "../src/log.ts";

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
    [{ PROTOCOL: "186" }, "PROTOCOL"],
    [{ PROTOCOL: "zebra" }, "PROTOCOL"],
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

Deno.test("protocol names resolve through rt_protos; 200-254 are free for instances", () => {
  const host = {
    names: parseRtProtos("# comment\n2\tkernel\n4 static\n200 net3\n0xfe net4\n"),
    source: "/test/rt_protos",
  };
  assert.equal(parseProtocol("net3", host), 200);
  assert.equal(parseProtocol("net4", host), 254);
  for (const n of [200, 202, 254]) assert.equal(parseProtocol(String(n), host), n);
  assert.equal(parseProtocol(" 202 ", { names: new Map(), source: "none" }), 202);
  assert.throws(() => parseProtocol("kernel", host), /kernel/);
  assert.throws(() => parseProtocol("static", host), /static/);
});

Deno.test("PROTOCOL of the kernel or another routing daemon is refused, by number or name", () => {
  const cases: [string, RegExp][] = [
    ["0", /^protocol 0 belongs to unspec \(/],
    ["1", /^protocol 1 belongs to redirect \(ICMP redirects\)/],
    ["2", /^protocol 2 belongs to kernel \(the kernel\)/],
    ["3", /^protocol 3 belongs to boot \(/],
    ["4", /^protocol 4 belongs to static \(/],
    ["9", /^protocol 9 belongs to ra \(router advertisements\)/],
    ["11", /^protocol 11 belongs to zebra \(FRR\/Quagga\)/],
    ["zebra", /^protocol 11 belongs to zebra \(FRR\/Quagga\)/],
    ["12", /^protocol 12 belongs to bird \(BIRD\)/],
    ["bird", /^protocol 12 belongs to bird \(BIRD\)/],
    ["16", /^protocol 16 belongs to dhcp \(DHCP clients\)/],
    ["dhcp", /^protocol 16 belongs to dhcp \(DHCP clients\)/],
    ["17", /^protocol 17 belongs to mrouted \(/],
    ["18", /^protocol 18 belongs to keepalived \(/],
    ["42", /^protocol 42 belongs to babel \(/],
    ["99", /^protocol 99 belongs to openr \(/],
    ["186", /^protocol 186 belongs to bgp \(BGP daemons such as BIRD, FRR\)/],
    ["bgp", /^protocol 186 belongs to bgp \(BGP daemons such as BIRD, FRR\)/],
    ["187", /^protocol 187 belongs to isis \(/],
    ["ospf", /^protocol 188 belongs to ospf \(/],
    ["189", /^protocol 189 belongs to rip \(/],
    ["192", /^protocol 192 belongs to eigrp \(/],
  ];
  // The host's file renumbers "zebra": the kernel's name still means FRR's routes.
  const host = { names: parseRtProtos("230 zebra\n"), source: "/test/rt_protos" };
  for (const [value, reason] of cases) {
    for (const names of [host, { names: new Map<string, number>(), source: "none" }]) {
      assert.throws(() => parseProtocol(value, names), (e: unknown) => {
        assert.match((e as Error).message, reason, value);
        assert.match((e as Error).message, /; choose a number 200-254$/, value);
        return true;
      });
    }
  }
  assert.throws(() => parseDaemonConfig({ PROTOCOL: "bgp" }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(
      e.message,
      'PROTOCOL="bgp": protocol 186 belongs to bgp (BGP daemons such as BIRD, FRR); ' +
        "choose a number 200-254",
    );
    return true;
  });
  assert.throws(() => parseDaemonConfig({ PROTOCOL: "12" }), /PROTOCOL="12": .*BIRD/);
});

Deno.test("PROTOCOL named by the host's rt_protos below 200 is refused, naming the entry", () => {
  const host = {
    names: parseRtProtos("77 mydaemon\n0x30 other\n210 net5\n"),
    source: "/etc/iproute2/rt_protos",
  };
  const message = (value: string) => {
    try {
      parseProtocol(value, host);
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail(`${value} accepted`);
  };
  const want = "protocol 77 is assigned to mydaemon in /etc/iproute2/rt_protos; " +
    "choose a number 200-254";
  assert.equal(message("77"), want);
  assert.equal(message("mydaemon"), want);
  assert.match(message("48"), /^protocol 48 is assigned to other in \/etc\/iproute2\/rt_protos;/);
  assert.equal(parseProtocol("net5", host), 210);
  // A number nobody names stays usable.
  assert.equal(parseProtocol("78", host), 78);
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

/** The ConfigError of `env`, checked to be one line naming `variable` and its value. */
function refusal(env: Record<string, string>, variable: string): string {
  try {
    parseDaemonConfig(env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.variable, variable, e.message);
    assert.ok(e.message.startsWith(`${variable}=${JSON.stringify(env[variable])}: `), e.message);
    assert.ok(!e.message.includes("\n"), e.message);
    return e.message;
  }
  assert.fail(`${JSON.stringify(env)} accepted`);
}

Deno.test("config: integers are decimal digits alone", () => {
  assert.equal(parseDaemonConfig({ MIN_PREFIX_V4: " 16 " }).minPrefixV4, 16);
  for (const value of ["0x10", "1e1", "16.0", "+16", "-1", "", " ", "0", "33"]) {
    assert.match(refusal({ MIN_PREFIX_V4: value }, "MIN_PREFIX_V4"), /expected an integer 1-32/);
  }
  assert.match(refusal({ MIN_PREFIX_V6: "0x40" }, "MIN_PREFIX_V6"), /integer 1-128/);
});

Deno.test("config: path variables take absolute paths; LOG_FILE empty is stderr", () => {
  const cfg = parseDaemonConfig({ STATE_DIR: " /var/run/x ", LOG_FILE: " " });
  assert.equal(cfg.stateDir, "/var/run/x");
  assert.equal(cfg.logFile, "");
  for (const name of ["STATE_DIR", "CNI_BIN_DIR", "CNI_CONF_DIR", "PLUGINS_DIR"]) {
    for (const value of ["", " ", "state", "./state"]) {
      assert.match(refusal({ [name]: value }, name), /expected an absolute path/);
    }
  }
  assert.match(refusal({ LOG_FILE: "x.log" }, "LOG_FILE"), /expected an absolute path/);
});

Deno.test("config: LOG_FILE in a folder that does not exist stops the start, naming it", () => {
  const dir = Deno.makeTempDirSync();
  try {
    assert.equal(parseDaemonConfig({ LOG_FILE: `${dir}/d.log` }).logFile, `${dir}/d.log`);
    assert.equal(parseDaemonConfig({ LOG_FILE: "/d.log" }).logFile, "/d.log", "in /");
    assert.match(
      refusal({ LOG_FILE: `${dir}/none/d.log` }, "LOG_FILE"),
      /\/none is not an existing folder/,
    );
    assert.match(refusal({ LOG_FILE: `${dir}/` }, "LOG_FILE"), /not a folder/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("config: LOG_FILE that cannot be opened is named by the sink's error", () => {
  assert.throws(() => fileSink("/nonexistent-xcluster-cni/d.log"), /^Error: LOG_FILE \//);
});

Deno.test("config: HTTP_ADDRESS is an IP literal or nothing, and a port 1-65535", () => {
  const accepted: [string, string][] = [
    ["127.0.0.1:8080", "127.0.0.1:8080"],
    [":9000", "0.0.0.0:9000"],
    ["[::1]:9000", "[::1]:9000"],
    ["[::]:65535", "[::]:65535"],
    ["0.0.0.0:1", "0.0.0.0:1"],
    [" off ", "off"],
    ["", "0.0.0.0:19202"],
  ];
  for (const [value, want] of accepted) {
    assert.equal(parseDaemonConfig({ HTTP_ADDRESS: value }).httpAddress, want, value);
  }
  for (
    const value of [
      "999.1.1.1:80",
      "localhost:80",
      "example.com:80",
      ":0",
      "127.0.0.1:0",
      ":65536",
      "::1:80",
      "[127.0.0.1]:80",
      "[::1]",
      "127.0.0.1",
      "127.0.0.1:",
      "[fe80::1%eth0]:80",
    ]
  ) {
    assert.match(refusal({ HTTP_ADDRESS: value }, "HTTP_ADDRESS"), /port 1-65535/, value);
  }
});
