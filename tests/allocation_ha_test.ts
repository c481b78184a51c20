/**
 * No double allocation, ever: three instances of one network run as processes beside an API
 * server process (each response delayed a little, as a loaded server's), 200 nodes join at
 * once, and the allocating leader is killed with -9 while it writes. Every node ends with
 * CIDRs of both families, no CIDR held by two nodes. Needs root and kubectl.
 */
import assert from "node:assert/strict";
import { DAEMON_RUNTIME_ENV, leaseName } from "../src/config.ts";
import { spawnMainInNetns } from "../src/devcluster/netns_main.ts";
import { formatCidr, parseCidr, splitList } from "../src/net/ip.ts";
import { pollUntil, requireRoot } from "./helpers/netns.ts";
import { isolatedCluster, killHard } from "./helpers/isolated.ts";
import { kubectlMissing } from "./helpers/tools.ts";

const notRoot = requireRoot();
const KEY = "cidr.example.com/net9";
const JOINING = 200;

Deno.test({
  name: "allocation: leader killed with -9 while 200 nodes join: every node ends with distinct " +
    "CIDRs of both families",
  ignore: notRoot || kubectlMissing() ? true : false,
  async fn() {
    const c = await isolatedCluster({ latencyMs: 20 });
    const procs = new Map<string, Deno.ChildProcess>();
    const start = (node: string, proto: number) =>
      procs.set(
        node,
        spawnMainInNetns(c.ns.name, ["daemon"], {
          env: {
            ...DAEMON_RUNTIME_ENV,
            NODE_NAME: node,
            KUBECONFIG: c.kubeconfig,
            CIDR_ANNOTATION: KEY,
            CLUSTER_CIDRS: "10.96.0.0/16/24,fd00:96::/96/112",
            // All three share the namespace: each its own protocol, so they never fight.
            PROTOCOL: String(proto),
            HTTP_ADDRESS: "off",
            STATE_DIR: `${c.dir}/state-${node}`,
            CNI_BIN_DIR: `${c.dir}/bin-${node}`,
            PLUGINS_DIR: `${c.dir}/plugins`,
            INSTALL_K8S_NET: "no",
            LOG_FILE: `${c.dir}/${node}.log`,
          },
          stderr: "inherit",
        }),
      );
    const held = async () => {
      const list = JSON.parse(await c.kubectl("get", "nodes", "-o", "json")) as {
        items: { metadata: { name: string; annotations?: Record<string, string> } }[];
      };
      return new Map(list.items.map((n) => [
        n.metadata.name,
        splitList(n.metadata.annotations?.[KEY] ?? "").flatMap((i) => {
          const r = parseCidr(i);
          return r.ok ? [formatCidr(r.cidr)] : [];
        }),
      ]));
    };
    try {
      await Deno.mkdir(`${c.dir}/plugins`);
      start("a", 200);
      start("b", 201);
      start("c", 203);
      await pollUntil(async () => [...(await held()).values()].every((v) => v.length === 2), {
        timeoutMs: 30_000,
        message: "a, b and c allocated",
      });
      const holder = async () =>
        (await c.kubectl(
          "get",
          "lease",
          "-n",
          "kube-system",
          leaseName(KEY),
          "-o",
          "jsonpath={.spec.holderIdentity}",
        )).trim();
      const leader = await holder();
      assert.ok(procs.has(leader), `lease held by ${JSON.stringify(leader)}`);

      const nodes = Array.from({ length: JOINING }, (_, i) => ({
        apiVersion: "v1",
        kind: "Node",
        metadata: { name: `j${String(i).padStart(3, "0")}` },
      }));
      await Deno.writeTextFile(
        `${c.dir}/joining.json`,
        JSON.stringify({ apiVersion: "v1", kind: "List", items: nodes }),
      );
      // The leader is held still while they join, so that they are all there at once when it
      // goes on; it is killed while it writes: some have their CIDRs, most not yet.
      const leaderPid = procs.get(leader)!.pid;
      Deno.kill(leaderPid, "SIGSTOP");
      try {
        await c.kubectl("create", "--validate=false", "-f", `${c.dir}/joining.json`);
      } finally {
        Deno.kill(leaderPid, "SIGCONT");
      }
      await pollUntil(async () => [...(await held()).values()].filter((v) => v.length).length > 5, {
        timeoutMs: 20_000,
        intervalMs: 5,
        message: "the leader started writing",
      });
      await killHard(procs.get(leader)!);
      const killedAt = performance.now();
      procs.delete(leader);
      const before = [...(await held()).values()].filter((v) => v.length === 2).length - 3;

      await pollUntil(async () => {
        const h = await held();
        return h.size === JOINING + 3 && [...h.values()].every((v) => v.length === 2);
      }, { timeoutMs: 60_000, intervalMs: 200, message: "every node allocated" });
      const seconds = ((performance.now() - killedAt) / 1000).toFixed(1);
      const owner = new Map<string, string>();
      for (const [node, cidrs] of await held()) {
        for (const cidr of cidrs) {
          assert.equal(owner.get(cidr), undefined, `${cidr}: ${owner.get(cidr)} and ${node}`);
          owner.set(cidr, node);
        }
      }
      assert.equal(owner.size, 2 * (JOINING + 3));
      const next = await holder();
      const logs = async () => {
        let text = "";
        for (const n of ["a", "b", "c"]) {
          const lines = (await Deno.readTextFile(`${c.dir}/${n}.log`).catch(() => "")).split("\n");
          text += `--- ${n}\n` + lines.filter((l) => /lease|leader|allocat/i.test(l)).join("\n");
        }
        return text;
      };
      assert.ok(next !== leader && procs.has(next), `new holder ${next}\n${await logs()}`);
      console.log(
        `  ${before} of ${JOINING} joining nodes allocated when ${leader} was killed; ` +
          `the rest by ${next} within ${seconds} s of the kill`,
      );
      assert.ok(before < JOINING, "killed mid-way");
    } finally {
      for (const p of procs.values()) await killHard(p);
      await c.close();
    }
  },
});
