/**
 * A namespace with an API server process of its own, for daemons run as processes inside it
 * (killed with -9, restarted), and the processes' children. Needs root and kubectl.
 */
import { childrenOf } from "../../bench/lib.ts";
import { spawnMainInNetns } from "../../src/devcluster/netns_main.ts";
import { Netns, pollUntil, run } from "./netns.ts";
import { cluster } from "./router.ts";
import { KUBECTL } from "./tools.ts";

export { childrenOf };

/**
 * A namespace with its own API server process (seeded with nodes a, b and c of the router
 * test bed through its state file), so that processes inside it reach the API; kubectl
 * run inside the namespace drives it.
 */
export async function isolatedCluster(opts: { latencyMs?: number } = {}) {
  const seed = await cluster();
  const dir = seed.dir;
  const nodes = seed.api.nodes.list();
  await seed.api.close();
  await seed.ns.delete();
  const ns = await Netns.create("xk");
  await ns.lan("lan0", ["192.168.50.1/24", "fd00:50::1/64"]);
  await Deno.writeTextFile(
    `${dir}/apiserver.json`,
    JSON.stringify({ resourceVersion: 10, nodes }),
  );
  const kubeconfig = `${dir}/kubeconfig.isolated`;
  const api = spawnMainInNetns(ns.name, [
    "apiserver",
    "--listen",
    "127.0.0.1:6443",
    "--kubeconfig",
    kubeconfig,
    "--state",
    `${dir}/apiserver.json`,
    ...(opts.latencyMs ? ["--latency", String(opts.latencyMs)] : []),
  ], { stderr: "inherit" });
  const kubectl = (...args: string[]) => ns.exec(KUBECTL, "--kubeconfig", kubeconfig, ...args);
  await pollUntil(async () => {
    try {
      return (await kubectl("get", "nodes", "-o", "name")).includes("node/c");
    } catch {
      return false;
    }
  }, { timeoutMs: 20_000, message: "the API server in the namespace" });
  return {
    ns,
    dir,
    kubeconfig,
    kubectl,
    async close() {
      try {
        api.kill("SIGTERM");
      } catch { /* gone */ }
      await api.status;
      await ns.delete();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Kills a process with SIGKILL, and its children (an `ip monitor` outlives its parent). */
export async function killHard(child: Deno.ChildProcess): Promise<void> {
  const orphans = await childrenOf(child.pid);
  try {
    child.kill("SIGKILL");
  } catch { /* already gone */ }
  await child.status;
  for (const pid of orphans) await run("kill", ["-9", String(pid)]).catch(() => "");
}
