/**
 * This program as a process of its own inside a network namespace, the way the demo runs
 * its API server and routers and the tests run a daemon that reaches an API server in the
 * same namespace.
 *
 * @module
 */

const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;

/**
 * Spawns `deno run -A main.ts ARGS` under `ip netns exec NETNS`, with `env` added to ours;
 * stdin and stdout are closed, stderr goes where `stderr` says.
 *
 * @example
 * ```ts
 * const api = spawnMainInNetns("xcd-lan", ["apiserver", "--listen", "192.168.0.1:6443"]);
 * ```
 */
export function spawnMainInNetns(
  netns: string,
  args: string[],
  opts: { env?: Record<string, string>; stderr?: "null" | "inherit" } = {},
): Deno.ChildProcess {
  // Found in our PATH, not the child's: the child's environment may have none.
  return new Deno.Command(inPath("ip"), {
    args: ["netns", "exec", netns, Deno.execPath(), "run", "-A", "--quiet", MAIN_TS, ...args],
    env: opts.env,
    stdin: "null",
    stdout: "null",
    stderr: opts.stderr ?? "null",
  }).spawn();
}

/** The program's path in this process's PATH (the name itself when not found). */
function inPath(name: string): string {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (dir !== "" && Deno.statSync(`${dir}/${name}`).isFile) return `${dir}/${name}`;
    } catch { /* not there */ }
  }
  return name;
}
