/**
 * CNI plumbing: env, CNI_ARGS, versions and result shapes, error JSON and codes; pure
 * parts directly, the protocol through the kube-node program as a runtime calls it.
 */
import assert from "node:assert/strict";
import { CniCode, CniError } from "../cni/errors.ts";
import {
  cniArgPairs,
  type CniFailure,
  type CniPlugin,
  decodeConfig,
  parseCniArgs,
  readCniEnv,
  runPlugin,
} from "../cni/skel.ts";
import { compareVersions, convertResult, SUPPORTED_VERSIONS, versionInfo } from "../cni/version.ts";
import {
  editDistance,
  misspelledIpamKeys,
  parseKubeNodeConfig,
  resemblesIpamKey,
} from "../cni/config.ts";
import { buildRanges, wantsIpv4 } from "../cni/ranges.ts";
import { hostLocalCniArgs, hostLocalConfig } from "../cni/kube_node.ts";
import { foreignState, kubeconfigTried, ownNode } from "../cni/node_cidrs.ts";
import { loadKubeAccess } from "../src/kube/kubeconfig.ts";
import { execPluginInPath } from "../cni/delegate.ts";
import { parseNodeState, writeNodeState } from "../src/state.ts";
import { callPlugin, type CniCall, IGNORE_CNI, makeCniBin, uniq } from "./helpers/cni.ts";

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof CniError, `expected CniError, got ${e}`);
    return e;
  }
  assert.fail("expected an error");
}

Deno.test("CNI_ARGS: pairs, K8S names, IgnoreUnknown, bad pairs", () => {
  const a = parseCniArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p;FOO=bar");
  assert.equal(a.podNamespace, "ns1");
  assert.equal(a.podName, "p");
  assert.equal(a.ignoreUnknown, true);
  assert.equal(a.all.FOO, "bar");
  const unknown = cniError(() => parseCniArgs("K8S_POD_NAME=p;FOO=bar"));
  assert.equal(unknown.code, CniCode.InvalidEnvironment);
  assert.match(unknown.message, /CNI_ARGS: unknown key "FOO"/);
  const bad = cniError(() => parseCniArgs("IgnoreUnknown=true;novalue"));
  assert.match(bad.message, /CNI_ARGS: invalid pair "novalue"/);
  assert.equal(parseCniArgs("").podNamespace, undefined);
});

Deno.test("CNI_ARGS for reports: the well-formed pairs, whatever else is there", () => {
  assert.deepEqual(cniArgPairs("K8S_POD_NAME=p;junk;=x;FOO=a=b;;"), {
    K8S_POD_NAME: "p",
    FOO: "a=b",
  });
  assert.deepEqual(cniArgPairs(""), {});
});

Deno.test("skel: a failed call is reported to the plugin's failed(); stdout is the error alone", async () => {
  const reports: CniFailure[] = [];
  const failing = (e: unknown) => () => Promise.reject(e);
  const plugin = (failed: (f: CniFailure) => void): CniPlugin => ({
    add: failing(new CniError(CniCode.UnusableRanges, "too small", "10.0.0.1/32")),
    del: failing(new Error("plain")),
    check: () => Promise.resolve(undefined),
    status: () => Promise.resolve(undefined),
    gc: () => Promise.resolve(undefined),
    failed,
  });
  const env = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "c1",
    CNI_NETNS: "/var/run/netns/x",
    CNI_IFNAME: "eth0",
    CNI_PATH: "/bin",
  };
  const config = { cniVersion: "0.4.0", name: "net", ipam: {} };
  const run = async (p: CniPlugin, over: Record<string, string | undefined>, stdin: unknown) => {
    let out = "";
    const code = await runPlugin(p, {
      env: { ...env, ...over },
      stdin: () => new TextEncoder().encode(JSON.stringify(stdin)),
      stdout: (t) => {
        out += t;
      },
    });
    return { code, out };
  };
  const add = await run(plugin((f) => reports.push(f)), {}, config);
  assert.equal(add.code, 1);
  const error = { cniVersion: "0.4.0", code: 100, msg: "too small", details: "10.0.0.1/32" };
  assert.equal(add.out, JSON.stringify(error) + "\n");
  assert.deepEqual(reports, [{ command: "ADD", env, config, error }]);

  // Failures before the handler are reported too, with what was read: the raw environment.
  reports.length = 0;
  const noId = await run(plugin((f) => reports.push(f)), { CNI_CONTAINERID: "" }, config);
  assert.equal(noId.code, 1);
  assert.equal(reports.length, 1);
  assert.equal(reports[0].command, "ADD");
  assert.equal(reports[0].error.code, CniCode.InvalidEnvironment);
  assert.equal(noId.out, JSON.stringify(reports[0].error) + "\n");
  reports.length = 0;
  await run(plugin((f) => reports.push(f)), { CNI_COMMAND: "DEL" }, "not an object");
  assert.deepEqual(
    reports.map((r) => [r.command, r.config, r.error.code]),
    [["DEL", undefined, CniCode.DecodingFailure]],
  );

  // A report that throws changes nothing on stdout.
  const quiet = await run(plugin(() => {}), { CNI_COMMAND: "DEL" }, config);
  const loud = await run(
    plugin(() => {
      throw new Error("log broken");
    }),
    { CNI_COMMAND: "DEL" },
    config,
  );
  assert.deepEqual(loud, quiet);
  assert.deepEqual(JSON.parse(loud.out), { cniVersion: "0.4.0", code: 999, msg: "plain" });
});

Deno.test("env: each command's required variables, named when missing", () => {
  const full = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "abc",
    CNI_NETNS: "/var/run/netns/x",
    CNI_IFNAME: "eth0",
    CNI_PATH: "/a:/b::",
  };
  assert.deepEqual(readCniEnv(full).path, ["/a", "/b"]);
  const noCmd = cniError(() => readCniEnv({ ...full, CNI_COMMAND: undefined }));
  assert.equal(noCmd.code, 4);
  assert.match(noCmd.message, /CNI_COMMAND is not set/);
  const badCmd = cniError(() => readCniEnv({ ...full, CNI_COMMAND: "FOO" }));
  assert.match(badCmd.message, /CNI_COMMAND="FOO": unknown command/);
  const noId = cniError(() => readCniEnv({ ...full, CNI_CONTAINERID: "", CNI_IFNAME: "" }));
  assert.equal(noId.code, 4);
  assert.match(noId.message, /missing for ADD: CNI_CONTAINERID, CNI_IFNAME/);
  // DEL does not need CNI_NETNS.
  assert.equal(readCniEnv({ ...full, CNI_COMMAND: "DEL", CNI_NETNS: undefined }).netns, "");
  assert.match(
    cniError(() => readCniEnv({ ...full, CNI_IFNAME: "a/b" })).message,
    /CNI_IFNAME="a\/b"/,
  );
  assert.match(
    cniError(() => readCniEnv({ ...full, CNI_CONTAINERID: "-x y" })).message,
    /CNI_CONTAINERID="-x y"/,
  );
  assert.equal(readCniEnv({ CNI_COMMAND: "VERSION" }).command, "VERSION");
});

Deno.test("stdin: not JSON or not an object is a decoding failure (6)", () => {
  const e = cniError(() => decodeConfig(new TextEncoder().encode("{nope")));
  assert.equal(e.code, CniCode.DecodingFailure);
  assert.match(e.message, /not JSON/);
  assert.equal(cniError(() => decodeConfig(new TextEncoder().encode("[1]"))).code, 6);
});

Deno.test("config: errors name the field and the value (7)", () => {
  const ok = parseKubeNodeConfig({ cniVersion: "1.0.0", name: "n", ipam: { type: "kube-node" } });
  assert.equal(ok.ipam.annotation, "");
  const type = cniError(() =>
    parseKubeNodeConfig({ cniVersion: "1.0.0", name: "n", ipam: { type: "host-local" } })
  );
  assert.equal(type.code, CniCode.InvalidConfig);
  assert.match(type.message, /ipam\.type: .*"host-local"/);
  const ann = cniError(() =>
    parseKubeNodeConfig({
      cniVersion: "1.0.0",
      name: "n",
      ipam: { type: "kube-node", annotation: 5 },
    })
  );
  assert.match(ann.message, /ipam\.annotation: .*value 5/);
  const ns = cniError(() =>
    parseKubeNodeConfig({
      cniVersion: "1.0.0",
      name: "n",
      ipam: { type: "kube-node", "ipv4-namespaces": "default" },
    })
  );
  assert.match(ns.message, /ipam\.ipv4-namespaces: .*"default"/);
  assert.match(
    cniError(() => parseKubeNodeConfig({ cniVersion: "1.0.0", name: "n" })).message,
    /ipam: .*missing/,
  );
});

Deno.test("config: every bad field in the details, unknown keys kept, defaults", () => {
  const many = cniError(() =>
    parseKubeNodeConfig({
      cniVersion: 1,
      name: "",
      isDefaultGateway: "yes",
      ipam: { type: "kube-node", dataDir: "", "ipv4-namespaces": ["a", 2], loglevel: "loud" },
    })
  );
  assert.equal(many.code, CniCode.InvalidConfig);
  assert.equal(
    many.message,
    "invalid network config: cniVersion: Invalid input: expected string, received number " +
      "(value 1)",
  );
  assert.deepEqual(many.details.split("; "), [
    "cniVersion: Invalid input: expected string, received number (value 1)",
    'name: Too small: expected string to have >=1 characters (value "")',
    'isDefaultGateway: Invalid input: expected boolean, received string (value "yes")',
    'ipam.dataDir: Too small: expected string to have >=1 characters (value "")',
    "ipam.ipv4-namespaces.1: Invalid input: expected string, received number (value 2)",
    'ipam.loglevel: expected error, warn, info, debug, trace or a number (value "loud")',
  ]);
  assert.match(
    cniError(() => parseKubeNodeConfig({ cniVersion: "1.0.0", name: "n", ipam: [] })).message,
    /ipam: Invalid input: expected object, received array \(value \[\]\)/,
  );
  const ok = parseKubeNodeConfig({
    cniVersion: "1.0.0",
    name: "n",
    other: { x: 1 },
    ipam: { type: "kube-node", loglevel: "2", stateDir: "/s", routes: [] },
  });
  assert.deepEqual(ok, {
    cniVersion: "1.0.0",
    name: "n",
    other: { x: 1 },
    ipam: { type: "kube-node", annotation: "", loglevel: "2", stateDir: "/s", routes: [] },
  });
});

Deno.test("versions: a result that is not a CNI result is refused (1), naming the fields", () => {
  for (const bad of [undefined, null, [], "x"]) {
    const e = cniError(() => convertResult(bad, "1.0.0"));
    assert.equal(e.code, CniCode.IncompatibleVersion);
    assert.match(e.message, /cannot convert result to version 1\.0\.0: not a CNI result/);
    assert.match(e.details, /^: Invalid input: expected object/);
  }
  const e = cniError(() =>
    convertResult({
      cniVersion: "1.0.0",
      ips: [{ address: 5 }, { address: "10.0.0.2/24", interface: 1.5, version: "5" }],
      routes: {},
    }, "0.4.0")
  );
  assert.deepEqual(e.details.split("; "), [
    "ips.0.address: Invalid input: expected string, received number",
    "ips.1.interface: Invalid input: expected int, received number",
    'ips.1.version: Invalid option: expected one of "4"|"6"',
    "routes: Invalid input: expected array, received object",
  ]);
  assert.match(
    cniError(() => convertResult({ cniVersion: "1.0.0", ips: [{ address: "x" }] }, "0.4.0"))
      .message,
    /bad address "x"/,
  );
  // Unknown keys survive, in and out of ips.
  assert.deepEqual(
    convertResult({
      cniVersion: "0.4.0",
      ips: [{ version: "4", address: "10.0.0.2/24", interface: 0, mac: "m" }],
      extra: true,
    }, "1.0.0"),
    { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24", interface: 0, mac: "m" }], extra: true },
  );
});

Deno.test("state file: checked by hand, errors name the field and the value", () => {
  const good = { version: 1, node: "n", annotation: "a", cidrs: ["10.0.0.0/24"], updated: "t" };
  assert.deepEqual(parseNodeState({ ...good, extra: 1 }), good);
  const message = (v: unknown) => {
    try {
      parseNodeState(v);
    } catch (e) {
      return (e as Error).message;
    }
    assert.fail("expected an error");
  };
  assert.equal(message([]), "expected an object, got []");
  assert.equal(message({ ...good, version: 2 }), "version: expected 1 (value 2)");
  assert.equal(message({ ...good, node: 5 }), "node: expected a string (value 5)");
  assert.equal(
    message({ ...good, cidrs: ["x", 5] }),
    'cidrs: expected an array of strings (value ["x",5])',
  );
  assert.equal(
    message({ ...good, updated: undefined }),
    "updated: expected a string (value missing)",
  );
  assert.deepEqual(parseNodeState({ ...good, machineID: "m1" }), { ...good, machineID: "m1" });
  assert.equal(message({ ...good, machineID: 7 }), "machineID: expected a string (value 7)");
});

Deno.test("state file: used only when it is this node's, by NODE_NAME, else the machine ID", () => {
  const file = { node: "other", cidrs: ["10.0.0.0/24"], source: "/state/node-@podCIDRs.json" };
  const byName = (nodeName: string) => ({ nodeName, machineId: "", machineIdFile: "/m" });
  assert.equal(foreignState(file, byName("other")), undefined);
  assert.equal(
    foreignState(file, byName("self")),
    '/state/node-@podCIDRs.json is node "other"\'s, and NODE_NAME is "self"',
  );
  // NODE_NAME decides even when the machine IDs agree.
  assert.match(foreignState({ ...file, machineID: "m1" }, byName("self")) ?? "", /NODE_NAME/);
  const byId = (machineId: string) => ({ nodeName: "", machineId, machineIdFile: "/m" });
  assert.equal(foreignState({ ...file, machineID: "m1" }, byId("m1")), undefined);
  assert.equal(
    foreignState({ ...file, machineID: "m2" }, byId("m1")),
    '/state/node-@podCIDRs.json is node "other"\'s (machine ID "m2"), and /m says "m1"',
  );
  // Nothing to compare: trusted, as the daemon on this host wrote it.
  assert.equal(foreignState(file, byId("m1")), undefined);
  assert.equal(foreignState({ ...file, machineID: "m2" }, byId("")), undefined);
  assert.equal(foreignState({ ...file, machineID: "" }, byId("m1")), undefined);
});

Deno.test("state file: this node is NODE_NAME, else the machine ID file, else unknown", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cni-own-node-" });
  try {
    Deno.writeTextFileSync(`${dir}/machine-id`, "abc123\n");
    assert.deepEqual(ownNode("n1", `${dir}/machine-id`), {
      nodeName: "n1",
      machineId: "",
      machineIdFile: `${dir}/machine-id`,
    });
    assert.equal(ownNode(undefined, `${dir}/machine-id`).machineId, "abc123");
    assert.equal(ownNode("", `${dir}/machine-id`).machineId, "abc123");
    assert.deepEqual(ownNode(undefined, `${dir}/absent`), {
      nodeName: "",
      machineId: "",
      machineIdFile: `${dir}/absent`,
    });
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("delegate: a plugin that exits without reading stdin still answers", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cni-delegate-" });
  try {
    const file = `${dir}/answers`;
    await Deno.writeTextFile(file, `#!/bin/sh\necho '{"cniVersion":"1.0.0"}'\nexit 3\n`, {
      mode: 0o755,
    });
    // More than a pipe holds, so the write meets the closed pipe whatever the timing.
    const out = await execPluginInPath("answers", [dir], "x".repeat(1 << 20));
    assert.deepEqual(out, { code: 3, stdout: '{"cniVersion":"1.0.0"}\n' });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Modules reachable from `entry` through static imports only, per `deno info --json`. */
async function staticGraph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  interface Dep {
    code?: { specifier: string };
    isDynamic?: boolean;
  }
  interface Info {
    roots: string[];
    modules: { specifier: string; dependencies?: Dep[] }[];
    redirects: Record<string, string>;
  }
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as Info;
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const walk = (spec: string) => {
    const s = info.redirects[spec] ?? spec;
    if (seen.has(s)) return;
    seen.add(s);
    for (const d of bySpecifier.get(s)?.dependencies ?? []) {
      if (d.code && !d.isDynamic) walk(d.code.specifier);
    }
  };
  for (const r of info.roots) walk(r);
  return [...seen];
}

Deno.test("start-up: the IPAM path statically loads no npm or node: module", async () => {
  // Every CNI call starts a process: zod, yaml, the Kubernetes client and node: modules
  // cost more start-up time than the plugin's budget, so they load only on the API
  // fallback (dynamic imports).
  for (const entry of ["../main.ts", "../cni/kube_node.ts"]) {
    const heavy = (await staticGraph(entry)).filter((s) =>
      !s.startsWith("file:") || /\/src\/(kube|config\.ts)/.test(s)
    );
    assert.deepEqual(heavy, [], `${entry} loads ${heavy.join(", ")}`);
  }
});

Deno.test("versions: VERSION answer, ordering, result conversion both ways", () => {
  assert.deepEqual(versionInfo("0.4.0"), {
    cniVersion: "0.4.0",
    supportedVersions: [...SUPPORTED_VERSIONS],
  });
  assert.equal(versionInfo("9.9.9").cniVersion, "1.1.0");
  assert.ok(compareVersions("0.3.1", "0.4.0") < 0);
  assert.ok(compareVersions("1.1.0", "1.0.0") > 0);
  const v1 = {
    cniVersion: "1.0.0",
    ips: [{ address: "10.0.0.2/24", gateway: "10.0.0.1" }, { address: "fd00::2/64" }],
    dns: {},
  };
  const old = convertResult(v1, "0.3.1");
  assert.deepEqual(old.ips, [
    { address: "10.0.0.2/24", gateway: "10.0.0.1", version: "4" },
    { address: "fd00::2/64", version: "6" },
  ]);
  assert.equal(old.cniVersion, "0.3.1");
  const back = convertResult(old, "1.1.0");
  assert.deepEqual(back, { ...v1, cniVersion: "1.1.0" });
});

Deno.test("ranges: one set per family, ipv4-namespaces, what host-local refuses", () => {
  const src = { ipv4: true, source: "test" };
  // host-local gives one address per set: two sets of one family would give two addresses.
  assert.deepEqual(buildRanges(["10.0.1.0/24", "10.0.2.0/24", "fd00::/112"], src), [
    [{ subnet: "10.0.1.0/24" }, { subnet: "10.0.2.0/24" }],
    [{ subnet: "fd00::/112" }],
  ]);
  // Each family's CIDRs in the node's order; the sets in the order of their first CIDR.
  assert.deepEqual(
    buildRanges(["fd00::2:0/112", "10.0.2.0/24", "fd00::1:0/112", "10.0.1.0/24"], src),
    [
      [{ subnet: "fd00::2:0/112" }, { subnet: "fd00::1:0/112" }],
      [{ subnet: "10.0.2.0/24" }, { subnet: "10.0.1.0/24" }],
    ],
  );
  assert.deepEqual(buildRanges(["10.0.1.0/24", "fd00::1:0/112", "fd00::2:0/112"], src), [
    [{ subnet: "10.0.1.0/24" }],
    [{ subnet: "fd00::1:0/112" }, { subnet: "fd00::2:0/112" }],
  ]);
  assert.deepEqual(
    buildRanges(["10.0.1.0/24", "fd00::1:0/112", "10.0.2.0/24"], { ...src, ipv4: false }),
    [[{ subnet: "fd00::1:0/112" }]],
  );
  assert.deepEqual(buildRanges(["10.0.1.7/24", "10.0.1.0/24"], src), [[{
    subnet: "10.0.1.0/24",
  }]]);
  assert.deepEqual(buildRanges(["10.0.1.0/24", "fd00::/120"], { ...src, ipv4: false }), [[{
    subnet: "fd00::/120",
  }]]);
  assert.equal(cniError(() => buildRanges([], src)).code, CniCode.TryAgainLater);
  assert.match(cniError(() => buildRanges(["10.0.0.0/31"], src)).message, /too small/);
  assert.match(cniError(() => buildRanges(["fd00::/127"], src)).message, /too small/);
  assert.ok(buildRanges(["10.0.0.0/30", "fd00::/126"], src).length === 2);
  assert.match(
    cniError(() => buildRanges(["10.0.0.0/16", "10.0.1.0/24"], src)).message,
    /overlap/,
  );
  assert.match(cniError(() => buildRanges(["nope/24"], src)).message, /"nope\/24"/);
  assert.equal(wantsIpv4(undefined, undefined), true);
  assert.equal(wantsIpv4(["a"], "a"), true);
  assert.equal(wantsIpv4(["a"], "b"), false);
  assert.equal(wantsIpv4([], undefined), false);
});

Deno.test("delegation config: our keys dropped, everything else kept", () => {
  const raw = {
    cniVersion: "1.0.0",
    name: "n",
    isDefaultGateway: true,
    runtimeConfig: { ips: ["10.0.0.9/24"] },
    ipam: {
      type: "kube-node",
      annotation: "a",
      kubeconfig: "/k",
      "ipv4-namespaces": [],
      stateDir: "/s",
      logfile: "/l",
      loglevel: "debug",
      dataDir: "/d",
      routes: [{ dst: "0.0.0.0/0" }],
    },
  };
  assert.deepEqual(hostLocalConfig(raw, [[{ subnet: "10.0.0.0/24" }]], "1.0.0"), {
    cniVersion: "1.0.0",
    name: "n",
    isDefaultGateway: true,
    runtimeConfig: { ips: ["10.0.0.9/24"] },
    ipam: {
      type: "host-local",
      dataDir: "/d",
      routes: [{ dst: "0.0.0.0/0" }],
      ranges: [[{ subnet: "10.0.0.0/24" }]],
    },
  });
});

Deno.test("ipam keys: a near miss of one of ours is named with the key it resembles", () => {
  assert.equal(editDistance("", "abc"), 3);
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(editDistance("stateDir", "stateDir"), 0);
  assert.equal(editDistance("anotation", "annotation"), 1);
  const near: [string, string][] = [
    ["anotation", "annotation"],
    ["annotations", "annotation"],
    ["Annotation", "annotation"],
    ["stateDIR", "stateDir"],
    ["statedir", "stateDir"],
    ["state-dir", "stateDir"],
    ["datadir", "dataDir"],
    ["data_dir", "dataDir"],
    ["kubeConfig", "kubeconfig"],
    ["kube-config", "kubeconfig"],
    ["kubconfg", "kubeconfig"],
    ["ipv4_namespaces", "ipv4-namespaces"],
    ["ipv4-namespace", "ipv4-namespaces"],
    ["logFile", "logfile"],
    ["log-file", "logfile"],
    ["logLevel", "loglevel"],
    ["loglvl", "loglevel"],
  ];
  for (const [key, known] of near) assert.equal(resemblesIpamKey(key), known, key);
  const far = [
    // Ours, spelled right.
    "type",
    "annotation",
    "kubeconfig",
    "ipv4-namespaces",
    "logfile",
    "loglevel",
    "stateDir",
    "dataDir",
    // host-local's own keys, which pass through to it.
    "ranges",
    "routes",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "resolvConf",
    // Other keys, and three edits away.
    "time",
    "Type",
    "mtu",
    "capabilities",
    "kubernetes",
    "annotationXYZ",
    "logfileabc",
    "",
  ];
  for (const key of far) assert.equal(resemblesIpamKey(key), undefined, key);
  assert.deepEqual(
    misspelledIpamKeys({
      type: "kube-node",
      anotation: "a",
      routes: [],
      annotation: "b",
      stateDIR: "/s",
      other: 1,
    }),
    [{ key: "anotation", resembles: "annotation" }, { key: "stateDIR", resembles: "stateDir" }],
  );
  // Still passed through, as any key that is not ours.
  const conf = parseKubeNodeConfig({
    cniVersion: "1.0.0",
    name: "n",
    ipam: { type: "kube-node", anotation: "a" },
  });
  assert.equal(conf.ipam.annotation, "");
  assert.equal(conf.ipam.anotation, "a");
  const ipam = hostLocalConfig(conf, [[{ subnet: "10.0.0.0/24" }]], "1.0.0").ipam;
  assert.equal((ipam as Record<string, unknown>).anotation, "a");
});

Deno.test("API fallback: the kubeconfig tried is the one loadKubeAccess tries", async () => {
  const dir = await Deno.makeTempDir({ prefix: "cni-kubeconfig-" });
  try {
    const k = `${dir}/k`, e = `${dir}/e`;
    const sa = `${dir}/sa`;
    await Deno.mkdir(sa);
    await Deno.writeTextFile(`${sa}/ca.crt`, "ca");
    const inCluster = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };
    // What loadKubeAccess used: its source, or the error naming what it tried.
    const used = async (kubeconfig: string | undefined, env: Record<string, string>) => {
      try {
        return (await loadKubeAccess({ kubeconfig, env, serviceAccountDir: sa })).source;
      } catch (err) {
        return (err as Error).message;
      }
    };
    // [ipam.kubeconfig, environment, what kubeconfigTried says, how loadKubeAccess's source
    // or error starts]: the same place each time.
    const cases: [string | undefined, Record<string, string>, RegExp, string][] = [
      [
        k,
        { ...inCluster, KUBECONFIG: e, HOME: dir },
        new RegExp(`^${k} \\(ipam\\.kubeconfig\\)$`),
        `kubeconfig ${k}: cannot read ${k}`,
      ],
      [
        undefined,
        { ...inCluster, KUBECONFIG: e, HOME: dir },
        /^in-cluster service account \(KUBERNETES_SERVICE_HOST=10\.96\.0\.1, KUBERNETES_SERVICE_PORT=443\)$/,
        "in-cluster service account",
      ],
      // Half of the in-cluster pair is not in-cluster; the first KUBECONFIG entry counts.
      [
        undefined,
        { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBECONFIG: `::${e}:${k}`, HOME: dir },
        new RegExp(`^${e} \\(KUBECONFIG\\)$`),
        `kubeconfig ${e}: cannot read ${e}`,
      ],
      [
        undefined,
        { KUBECONFIG: ":", HOME: dir },
        new RegExp(`^${dir}/\\.kube/config \\(HOME\\)$`),
        `kubeconfig ${dir}/.kube/config: cannot read`,
      ],
      [undefined, {}, /^none found/, "no Kubernetes API found"],
    ];
    for (const [kubeconfig, env, tried, source] of cases) {
      assert.match(kubeconfigTried(kubeconfig, env), tried);
      const got = await used(kubeconfig, env);
      assert.ok(got.startsWith(source), `${got} starts with ${source}`);
    }
    const none = kubeconfigTried(undefined, {});
    for (const place of ["ipam.kubeconfig", "KUBERNETES_SERVICE_HOST", "KUBECONFIG", "HOME"]) {
      assert.ok(none.includes(place), `${none} names ${place}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---- The protocol, through the kube-node program ----

async function fixture() {
  const dir = await Deno.makeTempDir({ prefix: "cni-test-" });
  const bin = await makeCniBin(dir);
  const stateDir = `${dir}/state`;
  await writeNodeState(stateDir, {
    version: 1,
    node: "n1",
    annotation: "",
    cidrs: ["10.130.0.0/24", "fd00:130::/112"],
    updated: new Date().toISOString(),
  });
  const name = uniq("net");
  const conf = (version: string, ipam: Record<string, unknown> = {}) => ({
    cniVersion: version,
    name,
    ipam: { type: "kube-node", stateDir, dataDir: `${dir}/ipam`, ...ipam },
  });
  const call = (over: Partial<CniCall>) =>
    callPlugin({
      plugin: `${bin}/kube-node`,
      cniPath: bin,
      containerId: "c1",
      netns: "/var/run/netns/none",
      stdin: conf("1.0.0"),
      ...over,
    });
  return { dir, bin, stateDir, conf, call };
}

Deno.test({
  name: "protocol: VERSION, with and without a config",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    const v = await f.call({ command: "VERSION", stdin: { cniVersion: "0.4.0" } });
    assert.equal(v.code, 0);
    assert.deepEqual(v.json, {
      cniVersion: "0.4.0",
      supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    });
    const bare = await f.call({ command: "VERSION", stdin: "", env: { CNI_PATH: undefined } });
    assert.equal(bare.code, 0);
    assert.equal(bare.json?.cniVersion, "1.1.0");
    await Deno.remove(f.dir, { recursive: true });
  },
});

Deno.test({
  name: "protocol: every CNI version gets its result shape; CHECK and DEL per version",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    for (const [i, version] of SUPPORTED_VERSIONS.entries()) {
      const id = `v${i}`;
      const add = await f.call({ containerId: id, stdin: f.conf(version) });
      assert.equal(add.code, 0, `${version}: ${add.stdout}`);
      assert.equal(add.json?.cniVersion, version);
      const list = add.json?.ips as Record<string, unknown>[];
      assert.equal(list.length, 2);
      if (compareVersions(version, "1.0.0") < 0) {
        assert.deepEqual(list.map((ip) => ip.version), ["4", "6"], version);
      } else {
        assert.ok(list.every((ip) => !("version" in ip)), version);
      }
      const check = await f.call({
        containerId: id,
        command: "CHECK",
        stdin: { ...f.conf(version), prevResult: add.json },
      });
      if (compareVersions(version, "0.4.0") < 0) {
        assert.equal(check.json?.code, CniCode.IncompatibleVersion, check.stdout);
        assert.match(String(check.json?.msg), /CHECK is not defined in CNI version/);
      } else {
        assert.equal(check.code, 0, `${version}: ${check.stdout}`);
      }
      const del = await f.call({ containerId: id, command: "DEL", stdin: f.conf(version) });
      assert.equal(del.code, 0, `${version}: ${del.stdout}`);
      assert.equal(del.stdout, "");
    }
    // CHECK of a container that has no address is an error (from host-local).
    const missing = await f.call({ containerId: "nobody", command: "CHECK" });
    assert.equal(missing.code, 1);
    assert.match(String(missing.json?.msg), /nobody/);
    await Deno.remove(f.dir, { recursive: true });
  },
});

Deno.test({
  name: "protocol: bad stdin (6), bad config (7), missing env (4), bad version (1)",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    const notJson = await f.call({ stdin: "this is not json" });
    assert.equal(notJson.code, 1);
    assert.equal(notJson.json?.code, 6);
    assert.match(String(notJson.json?.msg), /not JSON/);

    const type = await f.call({ stdin: { ...f.conf("1.0.0"), ipam: { type: "host-local" } } });
    assert.equal(type.code, 1);
    assert.equal(type.json?.code, 7);
    assert.equal(type.json?.cniVersion, "1.0.0");
    assert.match(String(type.json?.msg), /ipam\.type.*"host-local"/);

    const ann = await f.call({ stdin: f.conf("0.3.1", { annotation: 5 }) });
    assert.equal(ann.json?.code, 7);
    assert.equal(ann.json?.cniVersion, "0.3.1");
    assert.match(String(ann.json?.msg), /ipam\.annotation.*5/);

    const noCmd = await f.call({ env: { CNI_COMMAND: undefined } });
    assert.equal(noCmd.code, 1);
    assert.equal(noCmd.json?.code, 4);
    assert.match(String(noCmd.json?.msg), /CNI_COMMAND is not set/);

    const noId = await f.call({ containerId: undefined });
    assert.equal(noId.json?.code, 4);
    assert.match(String(noId.json?.msg), /CNI_CONTAINERID/);

    const old = await f.call({ stdin: f.conf("0.2.0") });
    assert.equal(old.json?.code, 1);
    assert.match(String(old.json?.msg), /incompatible CNI version "0\.2\.0"/);

    const noHostLocal = await f.call({ cniPath: `${f.dir}/empty` });
    assert.equal(noHostLocal.json?.code, CniCode.DelegateFailed);
    assert.match(String(noHostLocal.json?.msg), /host-local.*not found in CNI_PATH/);
    assert.match(String(noHostLocal.json?.details), new RegExp(`searched: ${f.dir}/empty`));

    // Folders without host-local, and a file where a folder should be, are passed over.
    const aFile = `${f.dir}/a-file`;
    await Deno.writeTextFile(aFile, "");
    const later = await f.call({
      containerId: "path-order",
      cniPath: `${f.dir}/nowhere:${aFile}:${f.bin}`,
    });
    assert.equal(later.code, 0, later.stdout);
    assert.ok(Array.isArray(later.json?.ips), later.stdout);
    await Deno.remove(f.dir, { recursive: true });
  },
});

Deno.test({
  name: "protocol: STATUS and GC (1.1.0)",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    const ok = await f.call({ command: "STATUS", stdin: f.conf("1.1.0") });
    assert.equal(ok.code, 0, ok.stdout);
    assert.equal(ok.stdout, "");
    const noState = await f.call({
      command: "STATUS",
      stdin: f.conf("1.1.0", { stateDir: `${f.dir}/nowhere` }),
      env: { KUBECONFIG: undefined, HOME: undefined },
    });
    assert.equal(noState.json?.code, CniCode.NotAvailable, noState.stdout);
    assert.ok(
      String(noState.json?.msg).startsWith(
        `no node state file at ${f.dir}/nowhere/node-@podCIDRs.json`,
      ),
      noState.stdout,
    );
    const old = await f.call({ command: "STATUS", stdin: f.conf("1.0.0") });
    assert.equal(old.json?.code, 1);

    const gc = await f.call({
      command: "GC",
      stdin: { ...f.conf("1.1.0"), "cni.dev/valid-attachments": [] },
    });
    assert.equal(gc.code, 0, gc.stdout);
    await Deno.remove(f.dir, { recursive: true });
  },
});

Deno.test({
  name: "protocol: STATUS without a state file finds the credentials where ADD's API fallback does",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    try {
      const status = (env: Record<string, string | undefined>) =>
        f.call({
          command: "STATUS",
          stdin: f.conf("1.1.0", { stateDir: `${f.dir}/nowhere` }),
          env: { KUBECONFIG: undefined, HOME: undefined, ...env },
        });
      const home = `${f.dir}/home`;
      await Deno.mkdir(`${home}/.kube`, { recursive: true });
      await Deno.writeTextFile(`${home}/.kube/config`, "{}");
      const a = `${f.dir}/a`, b = `${f.dir}/b`;
      await Deno.writeTextFile(a, "{}");

      const fromHome = await status({ HOME: home });
      assert.equal(fromHome.code, 0, fromHome.stdout);
      // The first entry of KUBECONFIG is the one ADD uses, whatever follows.
      const first = await status({ KUBECONFIG: `${a}:${b}` });
      assert.equal(first.code, 0, first.stdout);
      const notFirst = await status({ KUBECONFIG: `${b}:${a}`, HOME: home });
      assert.equal(notFirst.json?.code, CniCode.NotAvailable, notFirst.stdout);
      assert.match(
        String(notFirst.json?.msg),
        new RegExp(`no readable API credentials \\(${b} \\(KUBECONFIG\\)\\)`),
      );
      // In a pod, the service account's files, not ~/.kube/config.
      const inPod = await status({
        HOME: home,
        KUBERNETES_SERVICE_HOST: "10.96.0.1",
        KUBERNETES_SERVICE_PORT: "443",
      });
      assert.equal(inPod.json?.code, CniCode.NotAvailable, inPod.stdout);
      assert.match(String(inPod.json?.msg), /in-cluster service account/);
    } finally {
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "protocol: STATUS runs host-local's STATUS when it implements 1.1.0, and fails with it",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    try {
      // A host-local of CNI 1.1.0 that is not ready; it keeps the STATUS config it got.
      const fake = `${f.dir}/fake`;
      await Deno.mkdir(fake);
      await Deno.writeTextFile(
        `${fake}/host-local`,
        `#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
STATUS)
  cat > "${fake}/status-stdin"
  echo '{"cniVersion":"1.1.0","code":50,"msg":"fake host-local: not ready"}'
  exit 1 ;;
*) exit 2 ;;
esac
`,
        { mode: 0o755 },
      );
      const failed = await f.call({ command: "STATUS", cniPath: fake, stdin: f.conf("1.1.0") });
      assert.equal(failed.code, 1, failed.stdout + failed.stderr);
      assert.equal(failed.json?.code, CniCode.NotAvailable, failed.stdout);
      assert.equal(failed.json?.msg, "fake host-local: not ready");
      const got = JSON.parse(await Deno.readTextFile(`${fake}/status-stdin`));
      assert.equal(got.cniVersion, "1.1.0");
      assert.deepEqual(got.ipam.type, "host-local");
      assert.deepEqual(got.ipam.ranges, [[{ subnet: "10.130.0.0/24" }], [{
        subnet: "fd00:130::/112",
      }]]);

      // Debian's host-local stops at 1.0.0: not asked, and STATUS succeeds.
      const real = await f.call({ command: "STATUS", stdin: f.conf("1.1.0") });
      assert.equal(real.code, 0, real.stdout + real.stderr);
    } finally {
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});

Deno.test("CNI_ARGS for host-local: ours with IgnoreUnknown=1, the only IgnoreUnknown", () => {
  assert.equal(hostLocalCniArgs(parseCniArgs("")), "IgnoreUnknown=1");
  assert.equal(
    hostLocalCniArgs(parseCniArgs("K8S_POD_NAMESPACE=x;IP=10.0.0.9")),
    "K8S_POD_NAMESPACE=x;IP=10.0.0.9;IgnoreUnknown=1",
  );
  assert.equal(
    hostLocalCniArgs(parseCniArgs("IgnoreUnknown=true;FOO=1;")),
    "FOO=1;IgnoreUnknown=1",
  );
});

Deno.test({
  name: "protocol: K8S_* keys in CNI_ARGS without IgnoreUnknown: ADD, CHECK, DEL succeed",
  ignore: IGNORE_CNI,
  async fn() {
    const f = await fixture();
    try {
      const cniArgs = "K8S_POD_NAMESPACE=x;K8S_POD_NAME=p";
      const add = await f.call({ containerId: "k8s-args", cniArgs });
      assert.equal(add.code, 0, add.stdout + add.stderr);
      assert.equal((add.json?.ips as unknown[]).length, 2, add.stdout);
      const check = await f.call({
        containerId: "k8s-args",
        cniArgs,
        command: "CHECK",
        stdin: { ...f.conf("1.0.0"), prevResult: add.json },
      });
      assert.equal(check.code, 0, check.stdout + check.stderr);
      for (const _ of [1, 2]) {
        const del = await f.call({ containerId: "k8s-args", cniArgs, command: "DEL" });
        assert.equal(del.code, 0, del.stdout + del.stderr);
      }
      // host-local still reads IP: the address asked for is the one given.
      const ip = await f.call({
        containerId: "with-ip",
        cniArgs: "K8S_POD_NAMESPACE=x;IP=10.130.0.77",
      });
      assert.equal(ip.code, 0, ip.stdout + ip.stderr);
      assert.deepEqual((ip.json?.ips as { address: string }[])[0].address, "10.130.0.77/24");
    } finally {
      await Deno.remove(f.dir, { recursive: true });
    }
  },
});
