/**
 * Shared helpers for CNI tests: a CNI bin folder with the real plugins and kube-node, a
 * way to call a plugin as a runtime does, and throw-away network namespaces.
 *
 * @module
 */
import { devWrapper } from "../../src/install.ts";
import { execWithStdin } from "./tools.ts";

/** Where Debian's containernetworking-plugins are. */
export const SYSTEM_CNI = "/usr/lib/cni";

const MAIN_TS = new URL("../../main.ts", import.meta.url).pathname;

/** Why CNI tests that need root and the real plugins cannot run here, or false. */
export function cniIgnoreReason(): string | false {
  if (Deno.uid() !== 0) return "needs root (network namespaces, bridge plugin)";
  try {
    Deno.statSync(`${SYSTEM_CNI}/host-local`);
    Deno.statSync(`${SYSTEM_CNI}/bridge`);
  } catch {
    return `needs containernetworking-plugins in ${SYSTEM_CNI}`;
  }
  return false;
}

/** Whether the tests should be ignored (for `Deno.test({ ignore })`). */
export const IGNORE_CNI = cniIgnoreReason() !== false;
if (IGNORE_CNI) console.warn(`CNI tests ignored: ${cniIgnoreReason()}`);

/** A unique short name (interface and netns names are limited to 15 characters). */
export function uniq(prefix: string): string {
  return `${prefix}${crypto.randomUUID().replaceAll("-", "").slice(0, 15 - prefix.length)}`;
}

/**
 * A temp folder with symlinks to bridge, host-local and loopback and `kube-node` as the
 * development wrapper of main.ts.
 */
export async function makeCniBin(dir: string): Promise<string> {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin, { recursive: true });
  for (const name of ["bridge", "host-local", "loopback"]) {
    await Deno.symlink(`${SYSTEM_CNI}/${name}`, `${bin}/${name}`);
  }
  await Deno.writeTextFile(`${bin}/kube-node`, devWrapper(MAIN_TS), { mode: 0o755 });
  return bin;
}

/** One CNI call. */
export interface CniCall {
  /** Plugin program (path). */
  plugin: string;
  command?: string;
  containerId?: string;
  netns?: string;
  ifname?: string;
  cniPath?: string;
  cniArgs?: string;
  /** Extra or overriding variables; a value of undefined removes the variable. */
  env?: Record<string, string | undefined>;
  /** stdin: an object is JSON encoded. */
  stdin: unknown;
  /** Run inside this network namespace (`ip netns exec`). */
  inNetns?: string;
}

/** What a plugin answered. */
export interface CniAnswer {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json?: Record<string, unknown>;
}

/** Calls a plugin as a runtime does: clean CNI environment, config on stdin. */
export async function callPlugin(call: CniCall): Promise<CniAnswer> {
  const env: Record<string, string | undefined> = {
    PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    HOME: Deno.env.get("HOME"),
    DENO_DIR: Deno.env.get("DENO_DIR"),
    CNI_COMMAND: call.command ?? "ADD",
    CNI_CONTAINERID: call.containerId,
    CNI_NETNS: call.netns,
    CNI_IFNAME: call.ifname ?? "eth0",
    CNI_PATH: call.cniPath,
    CNI_ARGS: call.cniArgs,
    ...call.env,
  };
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v;
  const [cmd, args] = call.inNetns
    ? ["ip", ["netns", "exec", call.inNetns, call.plugin]]
    : [call.plugin, []];
  const text = typeof call.stdin === "string" ? call.stdin : JSON.stringify(call.stdin);
  const out = await execWithStdin(cmd, clean, text, args);
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(out.stdout);
  } catch {
    json = undefined;
  }
  return { ...out, json };
}

/** Files in host-local's data folder for network `name` that record an address. */
export async function allocatedFiles(dataDir: string, name: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(`${dataDir}/${name}`)) {
      if (e.name !== "lock" && !e.name.startsWith("last_reserved_ip")) out.push(e.name);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}
