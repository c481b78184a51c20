/**
 * kube-node IPAM through the real bridge and host-local plugins, pods in network
 * namespaces; the bridge runs inside a "node" namespace so the host is never touched.
 */
import assert from "node:assert/strict";
import { writeNodeState } from "../src/state.ts";
import {
  allocatedFiles,
  callPlugin,
  type CniCall,
  IGNORE_CNI,
  makeCniBin,
  uniq,
} from "./helpers/cni.ts";
import { Netns } from "./helpers/netns.ts";

const ANNOTATION = "cidr.example.com/net1";

interface Setup {
  dir: string;
  bin: string;
  stateDir: string;
  dataDir: string;
  name: string;
}

async function setup(cidrs: string[] | undefined, annotation = ANNOTATION): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "kube-node-test-" });
  const bin = await makeCniBin(dir);
  const stateDir = `${dir}/state`;
  if (cidrs) {
    await writeNodeState(stateDir, {
      version: 1,
      node: "node-1",
      annotation,
      cidrs,
      updated: new Date().toISOString(),
    });
  }
  return { dir, bin, stateDir, dataDir: `${dir}/ipam`, name: uniq("net") };
}

function bridgeConf(s: Setup, ipam: Record<string, unknown> = {}, version = "1.0.0") {
  return {
    cniVersion: version,
    name: s.name,
    type: "bridge",
    bridge: uniq("br"),
    isGateway: true,
    isDefaultGateway: true,
    ipam: {
      type: "kube-node",
      annotation: ANNOTATION,
      stateDir: s.stateDir,
      dataDir: s.dataDir,
      ...ipam,
    },
  };
}

function ipamConf(s: Setup, ipam: Record<string, unknown> = {}, version = "1.0.0") {
  return { cniVersion: version, name: s.name, ipam: bridgeConf(s, ipam).ipam };
}

function ipamCall(s: Setup, over: Partial<CniCall>): CniCall {
  return {
    plugin: `${s.bin}/kube-node`,
    cniPath: s.bin,
    netns: "/var/run/netns/none",
    stdin: ipamConf(s),
    ...over,
  };
}

function ips(answer: { json?: Record<string, unknown> }): string[] {
  const list = (answer.json?.ips ?? []) as { address: string }[];
  return list.map((ip) => ip.address);
}

Deno.test({
  name: "kube-node: bridge ADD, CHECK, DEL, DEL again; dual-stack from the state file",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["10.123.1.0/24", "fd00:123::1:0/112"]);
    await using node = await Netns.create("kn-node");
    await using pod = await Netns.create("kn-pod");
    const conf = bridgeConf(s);
    const base: CniCall = {
      plugin: `${s.bin}/bridge`,
      cniPath: s.bin,
      containerId: "pod1",
      netns: pod.path,
      inNetns: node.name,
      stdin: conf,
    };
    const add = await callPlugin(base);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.deepEqual(ips(add), ["10.123.1.2/24", "fd00:123::1:2/112"]);
    assert.deepEqual((await pod.addresses("eth0")).sort(), [
      "10.123.1.2/24",
      "fd00:123::1:2/112",
    ]);
    assert.equal((await allocatedFiles(s.dataDir, s.name)).length, 2);

    const check = await callPlugin({
      ...base,
      command: "CHECK",
      stdin: { ...conf, prevResult: add.json },
    });
    assert.equal(check.code, 0, check.stdout + check.stderr);

    const del = await callPlugin({ ...base, command: "DEL" });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(await allocatedFiles(s.dataDir, s.name), []);
    const again = await callPlugin({ ...base, command: "DEL" });
    assert.equal(again.code, 0, again.stdout + again.stderr);
    await Deno.remove(s.dir, { recursive: true });
  },
});

Deno.test({
  name: "kube-node: 50 ADDs in parallel get 50 distinct addresses; DELs free them all",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["10.124.0.0/24", "fd00:124::/112"]);
    const ids = Array.from({ length: 50 }, (_, i) => `c${i}`);
    const adds = await Promise.all(ids.map((id) => callPlugin(ipamCall(s, { containerId: id }))));
    for (const a of adds) assert.equal(a.code, 0, a.stdout + a.stderr);
    const v4 = adds.map((a) => ips(a)[0]);
    const v6 = adds.map((a) => ips(a)[1]);
    assert.equal(new Set(v4).size, 50);
    assert.equal(new Set(v6).size, 50);
    assert.ok(v4.every((a) => a.startsWith("10.124.0.")));
    assert.ok(v6.every((a) => a.startsWith("fd00:124::")));
    assert.equal((await allocatedFiles(s.dataDir, s.name)).length, 100);
    const dels = await Promise.all(
      ids.map((id) => callPlugin(ipamCall(s, { containerId: id, command: "DEL" }))),
    );
    for (const d of dels) assert.equal(d.code, 0, d.stdout + d.stderr);
    assert.deepEqual(await allocatedFiles(s.dataDir, s.name), []);
    await Deno.remove(s.dir, { recursive: true });
  },
});

Deno.test({
  name: "kube-node: DEL succeeds and releases after the state file is gone or changed",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["10.125.0.0/24", "fd00:125::/112"]);
    const a = await callPlugin(ipamCall(s, { containerId: "gone" }));
    const b = await callPlugin(ipamCall(s, { containerId: "changed" }));
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.equal(b.code, 0, b.stdout + b.stderr);
    assert.equal((await allocatedFiles(s.dataDir, s.name)).length, 4);

    // The node's ranges change (even to something host-local refuses): DEL still works.
    await writeNodeState(s.stateDir, {
      version: 1,
      node: "node-1",
      annotation: ANNOTATION,
      cidrs: ["10.200.0.0/32"],
      updated: new Date().toISOString(),
    });
    const delChanged = await callPlugin(ipamCall(s, { containerId: "changed", command: "DEL" }));
    assert.equal(delChanged.code, 0, delChanged.stdout + delChanged.stderr);
    assert.equal((await allocatedFiles(s.dataDir, s.name)).length, 2);

    // The state file is removed: DEL releases by container ID with a placeholder range.
    await Deno.remove(s.stateDir, { recursive: true });
    const delGone = await callPlugin(ipamCall(s, { containerId: "gone", command: "DEL" }));
    assert.equal(delGone.code, 0, delGone.stdout + delGone.stderr);
    assert.deepEqual(await allocatedFiles(s.dataDir, s.name), []);
    // ... and DEL of something never added is fine too.
    const delNever = await callPlugin(ipamCall(s, { containerId: "never", command: "DEL" }));
    assert.equal(delNever.code, 0, delNever.stdout + delNever.stderr);
    await Deno.remove(s.dir, { recursive: true });
  },
});

Deno.test({
  name: "kube-node: ipv4-namespaces gives IPv4 only to pods in the listed namespaces",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["10.126.0.0/24", "fd00:126::/112", "fd00:127::/112"]);
    const ipam = { "ipv4-namespaces": ["legacy"] };
    const legacy = await callPlugin(ipamCall(s, {
      containerId: "legacy",
      cniArgs: "IgnoreUnknown=1;K8S_POD_NAMESPACE=legacy;K8S_POD_NAME=a",
      stdin: ipamConf(s, ipam),
    }));
    assert.equal(legacy.code, 0, legacy.stdout + legacy.stderr);
    assert.deepEqual(ips(legacy), ["10.126.0.2/24", "fd00:126::2/112"]);
    const other = await callPlugin(ipamCall(s, {
      containerId: "other",
      cniArgs: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=b",
      stdin: ipamConf(s, ipam),
    }));
    assert.equal(other.code, 0, other.stdout + other.stderr);
    assert.deepEqual(ips(other), ["fd00:126::3/112"]);
    await Deno.remove(s.dir, { recursive: true });
  },
});

Deno.test({
  name: "kube-node: several CIDRs of a family give one address of it, from the first with room",
  ignore: IGNORE_CNI,
  async fn() {
    // The /30 has room for one pod (.2; .1 is the gateway).
    const s = await setup(["10.133.0.0/30", "10.133.1.0/24", "fd00:133::/112"]);
    try {
      const first = await callPlugin(ipamCall(s, { containerId: "first" }));
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.deepEqual(ips(first), ["10.133.0.2/30", "fd00:133::2/112"]);
      const second = await callPlugin(ipamCall(s, { containerId: "second" }));
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.deepEqual(ips(second), ["10.133.1.2/24", "fd00:133::3/112"]);
      assert.equal((await allocatedFiles(s.dataDir, s.name)).length, 4);
    } finally {
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kube-node: a bridge with isGateway takes two pods on a node with two IPv4 CIDRs",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["10.134.1.0/24", "10.134.2.0/24", "fd00:134::/112"]);
    try {
      await using node = await Netns.create("kn-node");
      const conf = bridgeConf(s);
      for (const id of ["pod1", "pod2"]) {
        await using pod = await Netns.create("kn-pod");
        const add = await callPlugin({
          plugin: `${s.bin}/bridge`,
          cniPath: s.bin,
          containerId: id,
          netns: pod.path,
          inNetns: node.name,
          stdin: conf,
        });
        assert.equal(add.code, 0, add.stdout + add.stderr);
        assert.equal(ips(add).filter((a) => a.includes(".")).length, 1, ips(add).join(" "));
        assert.equal(ips(add).filter((a) => a.includes(":")).length, 1, ips(add).join(" "));
        assert.equal((await pod.addresses("eth0")).length, 2);
      }
    } finally {
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kube-node: IPv6 in a pod netns through bridge, IPv6-only node",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["fd00:128::/120"]);
    await using node = await Netns.create("kn-node");
    await using pod = await Netns.create("kn-pod");
    const add = await callPlugin({
      plugin: `${s.bin}/bridge`,
      cniPath: s.bin,
      containerId: "v6",
      netns: pod.path,
      inNetns: node.name,
      stdin: bridgeConf(s, {}, "0.4.0"),
    });
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.equal(add.json?.cniVersion, "0.4.0");
    assert.deepEqual(await pod.addresses("eth0"), ["fd00:128::2/120"]);
    await Deno.remove(s.dir, { recursive: true });
  },
});

Deno.test({
  name: "kube-node: unusable or missing ranges give clear errors",
  ignore: IGNORE_CNI,
  async fn() {
    const tiny = await setup(["10.127.0.1/32", "fd00:129::/112"]);
    const a = await callPlugin(ipamCall(tiny, { containerId: "x" }));
    assert.equal(a.code, 1);
    assert.equal(a.json?.code, 100);
    assert.match(String(a.json?.msg), /10\.127\.0\.1\/32.*too small for host-local/);

    const v4only = await setup(["10.128.0.0/24"]);
    const b = await callPlugin(ipamCall(v4only, {
      containerId: "x",
      cniArgs: "K8S_POD_NAMESPACE=default",
      stdin: ipamConf(v4only, { "ipv4-namespaces": [] }),
    }));
    assert.equal(b.json?.code, 100, b.stdout);
    assert.match(String(b.json?.msg), /no IPv6 CIDR/);

    const none = await setup(undefined);
    const c = await callPlugin(ipamCall(none, {
      containerId: "x",
      env: { KUBECONFIG: `${none.dir}/absent`, NODE_NAME: "node-1" },
      stdin: ipamConf(none, { kubeconfig: `${none.dir}/absent` }),
    }));
    assert.equal(c.code, 1);
    assert.equal(c.json?.code, 11, c.stdout);
    for (const s of [tiny, v4only, none]) await Deno.remove(s.dir, { recursive: true });
  },
});

/** The JSON lines of a log file (none when it is not there). */
async function logLines(file: string): Promise<Record<string, unknown>[]> {
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

Deno.test({
  name: "kube-node: a failed ADD, DEL or CHECK is logged with its error; stdout is the error",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(["10.131.0.1/32", "fd00:131::/112"]);
    try {
      const logfile = `${s.dir}/kube-node.log`;
      const conf = ipamConf(s, { logfile });
      const cniArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=pod1";
      const calls: Partial<CniCall>[] = [
        // The node's range is too small: fails before host-local is run.
        { command: "ADD", containerId: "too-small" },
        // No host-local: an error with details.
        { command: "DEL", containerId: "no-host-local", cniPath: `${s.dir}/empty` },
        // host-local's own error.
        { command: "CHECK", containerId: "never-added", stdin: { ...conf, prevResult: {} } },
        // An invalid config still names its log file.
        { command: "ADD", containerId: "bad-config", stdin: ipamConf(s, { logfile, loglevel: 7 }) },
        // So does a call refused before any handler runs.
        { command: "ADD", containerId: "old", stdin: { ...conf, cniVersion: "0.2.0" } },
      ];
      const answers = [];
      for (const call of calls) {
        const a = await callPlugin(ipamCall(s, { stdin: conf, cniArgs, ...call }));
        assert.equal(a.code, 1, a.stdout + a.stderr);
        // stdout is the CNI error JSON, one line, nothing else.
        assert.equal(a.stdout, JSON.stringify(a.json) + "\n");
        assert.deepEqual(
          Object.keys(a.json ?? {}).filter((k) =>
            !["cniVersion", "code", "msg", "details"].includes(k)
          ),
          [],
        );
        answers.push(a);
      }
      assert.equal(answers[0].json?.code, 100, answers[0].stdout);
      assert.equal(answers[1].json?.code, 101, answers[1].stdout);
      assert.match(String(answers[1].json?.details), /searched: /);
      assert.equal(answers[3].json?.code, 7, answers[3].stdout);
      assert.equal(answers[4].json?.code, 1, answers[4].stdout);

      const errors = (await logLines(logfile)).filter((l) => l.level === "error");
      assert.equal(errors.length, calls.length, JSON.stringify(errors));
      for (const [i, line] of errors.entries()) {
        const call = calls[i];
        const json: Record<string, unknown> = answers[i].json ?? {};
        assert.equal(line.msg, `${call.command} failed`);
        assert.equal(line.cmd, call.command);
        assert.equal(line.container, call.containerId);
        assert.equal(line.ifname, "eth0");
        assert.equal(line.network, s.name);
        assert.equal(line.ns, "ns1");
        assert.equal(line.pod, "pod1");
        assert.equal(line.code, json.code);
        assert.equal(line.error, json.msg);
        assert.equal(line.details, json.details);
      }
      assert.match(String(errors[0].error), /10\.131\.0\.1\/32.*too small/);

      // Without a logfile nothing is written; STATUS is not a pod's call and is not logged.
      const before = (await Deno.readTextFile(logfile)).length;
      const status = await callPlugin(ipamCall(s, {
        command: "STATUS",
        cniPath: `${s.dir}/empty`,
        stdin: ipamConf(s, { logfile }, "1.1.0"),
      }));
      assert.equal(status.json?.code, 50, status.stdout);
      const unlogged = await callPlugin(ipamCall(s, { containerId: "no-log" }));
      assert.equal(unlogged.json?.code, 100, unlogged.stdout);
      assert.equal((await Deno.readTextFile(logfile)).length, before);
    } finally {
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kube-node: without a state file or API, the error names the state file and kubeconfig",
  ignore: IGNORE_CNI,
  async fn() {
    const s = await setup(undefined);
    try {
      const stateFile = `${s.stateDir}/node-cidr.example.com_net1.json`;
      const noApi = (env: Record<string, string | undefined>, ipam: Record<string, unknown>) =>
        callPlugin(ipamCall(s, {
          containerId: "x",
          env: { NODE_NAME: "node-1", KUBECONFIG: undefined, ...env },
          stdin: ipamConf(s, ipam),
        }));
      const expect = (
        a: { json?: Record<string, unknown>; stdout: string },
        kubeconfig: string,
      ) => {
        assert.equal(a.json?.code, 11, a.stdout);
        assert.ok(
          String(a.json?.msg).startsWith(`no node state file at ${stateFile}, and `),
          a.stdout,
        );
        assert.equal(
          a.json?.details,
          `node state file: ${stateFile} (not found); kubeconfig: ${kubeconfig}`,
        );
      };

      // ipam.kubeconfig, not there.
      const absent = `${s.dir}/absent`;
      const a = await noApi({}, { kubeconfig: absent });
      expect(a, `${absent} (ipam.kubeconfig)`);
      assert.match(String(a.json?.msg), /no API access: kubeconfig .*absent: cannot read/);

      // KUBECONFIG, then ~/.kube/config.
      expect(await noApi({ KUBECONFIG: absent }, {}), `${absent} (KUBECONFIG)`);
      expect(await noApi({ HOME: s.dir }, {}), `${s.dir}/.kube/config (HOME)`);

      // Nothing to try: every place looked is named.
      const none = await noApi({ HOME: undefined }, {});
      assert.equal(none.json?.code, 11, none.stdout);
      assert.match(
        String(none.json?.details),
        new RegExp(`^node state file: ${stateFile} \\(not found\\); kubeconfig: none found`),
      );
      for (const place of ["ipam.kubeconfig", "KUBERNETES_SERVICE_HOST", "KUBECONFIG", "HOME"]) {
        assert.ok(String(none.json?.details).includes(place), `${place}: ${none.stdout}`);
      }

      // A kubeconfig whose API does not answer: the message names the server and the file.
      const kubeconfig = `${s.dir}/kubeconfig`;
      await Deno.writeTextFile(
        kubeconfig,
        JSON.stringify({
          clusters: [{ name: "c", cluster: { server: "https://127.0.0.1:1" } }],
          contexts: [{ name: "x", context: { cluster: "c" } }],
        }),
      );
      const down = await noApi({}, { kubeconfig });
      expect(down, `${kubeconfig} (ipam.kubeconfig)`);
      assert.match(
        String(down.json?.msg),
        new RegExp(
          `the Kubernetes API at https://127\\.0\\.0\\.1:1 \\(kubeconfig ${kubeconfig}\\)`,
        ),
      );
    } finally {
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kube-node: an ipam key that looks like a misspelling of ours is warned about in the log",
  ignore: IGNORE_CNI,
  async fn() {
    // spec.podCIDRs's state file only: a misspelled annotation falls back to it.
    const s = await setup(["10.132.0.0/24"], "");
    try {
      const logfile = `${s.dir}/kube-node.log`;
      const add = await callPlugin(ipamCall(s, {
        containerId: "typo",
        stdin: ipamConf(s, {
          annotation: undefined,
          anotation: ANNOTATION,
          // host-local matches JSON keys regardless of case: this one, last, wins there.
          DataDir: `${s.dir}/ipam-too`,
          logfile,
          // Not ours and like none of ours: host-local's, another plugin's.
          routes: [{ dst: "10.99.0.0/16" }],
          capabilities: { ips: true },
        }),
      }));
      assert.equal(add.code, 0, add.stdout + add.stderr);
      assert.deepEqual(ips(add), ["10.132.0.2/24"]);
      // Unknown keys still reach host-local: its routes are in the result, and the address
      // is recorded in the folder of the misspelled key.
      assert.deepEqual(add.json?.routes, [{ dst: "10.99.0.0/16" }]);
      assert.equal((await allocatedFiles(`${s.dir}/ipam-too`, s.name)).length, 1);
      const warnings = (await logLines(logfile)).filter((l) => l.level === "warn");
      assert.deepEqual(warnings.map((w) => [w.key, w.resembles]), [
        ["anotation", "annotation"],
        ["DataDir", "dataDir"],
      ]);
      assert.match(String(warnings[0].msg), /"anotation".*misspelling of "annotation"/);
      assert.equal(warnings[0].cmd, "ADD");
      assert.equal(warnings[0].network, s.name);
    } finally {
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

// ---- API fallback: no state file, the node read from the embedded API server ----

const API_MODULE = new URL("../src/devcluster/apiserver/mod.ts", import.meta.url);
const NODES_MODULE = new URL("../src/devcluster/nodes.ts", import.meta.url);

function apiIgnoreReason(): string | false {
  for (const m of [API_MODULE, NODES_MODULE, new URL("../src/kube/client.ts", import.meta.url)]) {
    try {
      Deno.statSync(m);
    } catch {
      return `${m.pathname} is not there (yet)`;
    }
  }
  return false;
}

Deno.test({
  name: "kube-node: without a state file, CIDRs come from the API (NODE_NAME, machine-id)",
  ignore: IGNORE_CNI || apiIgnoreReason() !== false,
  async fn() {
    const { startApiServer } = await import("../src/devcluster/apiserver/mod.ts");
    const { makeNode } = await import("../src/devcluster/nodes.ts");
    const s = await setup(undefined);
    const kubeconfig = `${s.dir}/kubeconfig`;
    const api = await startApiServer({ kubeconfigPath: kubeconfig });
    let closed = false;
    try {
      const machineID = (await Deno.readTextFile("/etc/machine-id")).trim();
      await api.nodes.create(makeNode({
        name: "node-a",
        podCIDRs: ["10.140.0.0/24", "fd00:140::/112"],
        annotations: { [ANNOTATION]: "10.141.0.0/24,fd00:141::/112" },
        machineID: "not-this-machine",
      }));
      await api.nodes.create(makeNode({
        name: "node-b",
        podCIDRs: ["10.142.0.0/24"],
        annotations: {},
        machineID,
      }));
      // By NODE_NAME, the network's annotation.
      const byName = await callPlugin(ipamCall(s, {
        containerId: "by-name",
        env: { NODE_NAME: "node-a" },
        stdin: ipamConf(s, { kubeconfig }),
      }));
      assert.equal(byName.code, 0, byName.stdout + byName.stderr);
      assert.deepEqual(ips(byName), ["10.141.0.2/24", "fd00:141::2/112"]);
      // By /etc/machine-id, spec.podCIDRs (annotation "").
      const byId = await callPlugin(ipamCall(s, {
        containerId: "by-id",
        stdin: ipamConf(s, { kubeconfig, annotation: "" }),
      }));
      assert.equal(byId.code, 0, byId.stdout + byId.stderr);
      assert.deepEqual(ips(byId), ["10.142.0.2/24"]);
      // An unknown NODE_NAME: try again later.
      const unknown = await callPlugin(ipamCall(s, {
        containerId: "unknown",
        env: { NODE_NAME: "node-x" },
        stdin: ipamConf(s, { kubeconfig }),
      }));
      assert.equal(unknown.json?.code, 11, unknown.stdout);
      assert.match(String(unknown.json?.msg), /node-x/);
      // A node without the annotation: try again later, naming it.
      const noAnn = await callPlugin(ipamCall(s, {
        containerId: "no-ann",
        env: { NODE_NAME: "node-b" },
        stdin: ipamConf(s, { kubeconfig }),
      }));
      assert.equal(noAnn.json?.code, 11, noAnn.stdout);
      assert.match(String(noAnn.json?.msg), /node-b has no annotation/);

      // DEL never needs the API: it works with the server gone.
      await api.close();
      closed = true;
      for (const id of ["by-name", "by-id"]) {
        const del = await callPlugin(ipamCall(s, {
          containerId: id,
          command: "DEL",
          stdin: ipamConf(s, { kubeconfig }),
        }));
        assert.equal(del.code, 0, del.stdout + del.stderr);
      }
      assert.deepEqual(await allocatedFiles(s.dataDir, s.name), []);
    } finally {
      if (!closed) await api.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "kube-node: a state file of another node is not used; the API gives our own CIDRs",
  ignore: IGNORE_CNI || apiIgnoreReason() !== false,
  async fn() {
    const { startApiServer } = await import("../src/devcluster/apiserver/mod.ts");
    const { makeNode } = await import("../src/devcluster/nodes.ts");
    const s = await setup(undefined);
    const kubeconfig = `${s.dir}/kubeconfig`;
    const logfile = `${s.dir}/kube-node.log`;
    const api = await startApiServer({ kubeconfigPath: kubeconfig });
    try {
      const machineID = (await Deno.readTextFile("/etc/machine-id")).trim();
      await api.nodes.create(makeNode({
        name: "self",
        annotations: { [ANNOTATION]: "10.151.0.0/24,fd00:151::/112" },
        machineID,
      }));
      // In the API another range than in its state file: an address from the file's range
      // shows that the file was used.
      await api.nodes.create(makeNode({
        name: "other",
        annotations: { [ANNOTATION]: "10.152.0.0/24,fd00:152::/112" },
        machineID: "not-this-machine",
      }));
      const writeState = (extra: { machineID?: string } = {}) =>
        writeNodeState(s.stateDir, {
          version: 1,
          node: "other",
          annotation: ANNOTATION,
          cidrs: ["10.150.0.0/24", "fd00:150::/112"],
          updated: new Date().toISOString(),
          ...extra,
        });
      const add = (containerId: string, env: Record<string, string | undefined>) =>
        callPlugin(ipamCall(s, {
          containerId,
          env,
          stdin: ipamConf(s, { kubeconfig, logfile, loglevel: "debug" }),
        }));
      const inRange = (a: { json?: Record<string, unknown> }, v4: string, v6: string) =>
        ips(a).length === 2 && ips(a)[0].startsWith(v4) && ips(a)[1].startsWith(v6);

      await writeState();
      const asSelf = await add("as-self", { NODE_NAME: "self" });
      assert.equal(asSelf.code, 0, asSelf.stdout + asSelf.stderr);
      assert.ok(inRange(asSelf, "10.151.0.", "fd00:151::"), ips(asSelf).join(" "));
      const log = await Deno.readTextFile(logfile);
      assert.match(log, /node state file of another node not used/);
      assert.match(log, /is node \\"other\\"'s, and NODE_NAME is \\"self\\"/);

      const asOther = await add("as-other", { NODE_NAME: "other" });
      assert.equal(asOther.code, 0, asOther.stdout + asOther.stderr);
      assert.ok(inRange(asOther, "10.150.0.", "fd00:150::"), ips(asOther).join(" "));

      // Without NODE_NAME the machine ID decides, when the file records one.
      await writeState({ machineID: "not-this-machine" });
      const byId = await add("by-id", {});
      assert.equal(byId.code, 0, byId.stdout + byId.stderr);
      assert.ok(inRange(byId, "10.151.0.", "fd00:151::"), ips(byId).join(" "));
      await writeState({ machineID });
      const sameId = await add("same-id", {});
      assert.equal(sameId.code, 0, sameId.stdout + sameId.stderr);
      assert.ok(inRange(sameId, "10.150.0.", "fd00:150::"), ips(sameId).join(" "));
      // A file without a machine ID cannot be told from ours without the API: used.
      await writeState();
      const noId = await add("no-id", {});
      assert.equal(noId.code, 0, noId.stdout + noId.stderr);
      assert.ok(inRange(noId, "10.150.0.", "fd00:150::"), ips(noId).join(" "));

      // STATUS: another node's file does not make the plugin ready without API access.
      const status = await callPlugin(ipamCall(s, {
        command: "STATUS",
        env: { NODE_NAME: "self", KUBECONFIG: undefined, HOME: undefined },
        stdin: ipamConf(s, {}, "1.1.0"),
      }));
      assert.equal(status.json?.code, 50, status.stdout);
      assert.match(String(status.json?.msg), /node "other"'s, and NODE_NAME is "self"/);
      const ready = await callPlugin(ipamCall(s, {
        command: "STATUS",
        env: { NODE_NAME: "other", KUBECONFIG: undefined, HOME: undefined },
        stdin: ipamConf(s, {}, "1.1.0"),
      }));
      assert.equal(ready.code, 0, ready.stdout);

      // DEL releases whatever the file, without the API.
      for (const id of ["as-self", "as-other", "by-id", "same-id", "no-id"]) {
        const del = await callPlugin(ipamCall(s, {
          containerId: id,
          command: "DEL",
          env: { NODE_NAME: "self" },
        }));
        assert.equal(del.code, 0, del.stdout + del.stderr);
      }
      assert.deepEqual(await allocatedFiles(s.dataDir, s.name), []);
    } finally {
      await api.close();
      await Deno.remove(s.dir, { recursive: true });
    }
  },
});
