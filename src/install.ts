/**
 * Installing the CNI binaries and the main network's conflist on the host.
 *
 * Every file is written to a temp file in the target folder, fsynced, made executable and
 * renamed over the old one: a CNI call starting at that moment runs either the old or the
 * new file, never a partial one, and never hits ETXTBSY (the running binary's inode is
 * replaced, not written to). A file whose content is already the same is left alone.
 *
 * Development: when running as `deno run main.ts` there is no single binary to copy. The
 * installer then writes `kube-node` as a small shell wrapper that execs
 * `deno run -A --config <deno.json> <abs main.ts> kube-node` ({@link devWrapper}). In the
 * compiled binary, self is `Deno.execPath()`.
 *
 * @module
 */
import { z } from "zod";
import {
  DEFAULT_CNI_BIN_DIR,
  DEFAULT_CNI_CONF_DIR,
  DEFAULT_PLUGINS_DIR,
  DEFAULT_STATE_DIR,
} from "./config.ts";
import { createLogger, type Logger, silentLogger } from "./log.ts";
import { parseIp, sameIp } from "./net/ip.ts";
import type { LocalAddress } from "./routing/types.ts";

/** File name of the IPAM plugin in the CNI bin folder. */
export const KUBE_NODE_BINARY = "kube-node";
/** File name of the main network's conflist. */
export const CONFLIST_NAME = "10-xcluster-cni.conflist";
/** Smallest MTU of a conflist: IPv4's minimum. */
export const MIN_MTU = 68;
/** Largest MTU of a conflist. */
export const MAX_MTU = 65535;

const CHUNK = 1 << 20;

async function readChunk(file: Deno.FsFile, buf: Uint8Array): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await file.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/**
 * Whether the first `n` bytes of two chunks agree, four at a time: the own binary is about
 * 100 MB, compared on every start of the daemon.
 */
function sameBytes(a: Uint8Array, b: Uint8Array, n: number): boolean {
  const words = n >> 2;
  const wa = new Int32Array(a.buffer, a.byteOffset, words);
  const wb = new Int32Array(b.buffer, b.byteOffset, words);
  for (let i = 0; i < words; i++) if (wa[i] !== wb[i]) return false;
  for (let i = words << 2; i < n; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether file `path` holds exactly `content` (a path to compare with, or bytes). */
async function sameContent(path: string, content: string | Uint8Array): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  if (!st.isFile) return false;
  if (typeof content !== "string") {
    if (st.size !== content.length) return false;
    const have = await Deno.readFile(path);
    return have.every((b, i) => b === content[i]);
  }
  const src = await Deno.stat(content);
  if (src.size !== st.size) return false;
  const [a, b] = await Promise.all([Deno.open(path), Deno.open(content)]);
  try {
    const ba = new Uint8Array(CHUNK), bb = new Uint8Array(CHUNK);
    for (;;) {
      const [na, nb] = await Promise.all([readChunk(a, ba), readChunk(b, bb)]);
      if (na !== nb) return false;
      if (na === 0) return true;
      if (!sameBytes(ba, bb, na)) return false;
    }
  } finally {
    a.close();
    b.close();
  }
}

/**
 * Writes `content` (bytes, or the path of a file to copy) to `dest` atomically: temp file
 * in the same folder, fsync, chmod, rename. Returns false when `dest` already had that
 * content (nothing written).
 *
 * @example
 * ```ts
 * await installFile("/opt/cni/bin/bridge", "/opt/xcluster-cni/cni/bridge");
 * ```
 */
export async function installFile(
  dest: string,
  content: string | Uint8Array,
  mode = 0o755,
): Promise<boolean> {
  if (await sameContent(dest, content)) return false;
  const slash = dest.lastIndexOf("/");
  const dir = slash < 0 ? "." : dest.slice(0, slash) || "/";
  const base = dest.slice(slash + 1);
  const tmp = `${dir}/.${base}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const out = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    try {
      if (typeof content === "string") {
        const src = await Deno.open(content);
        try {
          const buf = new Uint8Array(CHUNK);
          for (;;) {
            const n = await readChunk(src, buf);
            if (n === 0) break;
            await writeAll(out, buf.subarray(0, n));
          }
        } finally {
          src.close();
        }
      } else {
        await writeAll(out, content);
      }
      await out.sync();
    } finally {
      out.close();
    }
    await Deno.chmod(tmp, mode);
    await Deno.rename(tmp, dest);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`install ${dest}: ${(e as Error).message}`, { cause: e });
  }
  await syncDir(dir);
  return true;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

/** Makes a rename durable; best effort (some file systems refuse fsync on folders). */
async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Durability only; the rename itself is already atomic.
  }
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/**
 * The development stand-in for the compiled binary: a shell script that runs `main.ts`
 * as the kube-node plugin with this Deno, this deno.json (import map) and this DENO_DIR
 * (runtimes call plugins with a bare environment), without touching the lock file.
 */
export function devWrapper(mainTs: string, denoPath: string = Deno.execPath()): string {
  const dir = mainTs.slice(0, mainTs.lastIndexOf("/")) || "/";
  const denoDir = Deno.env.get("DENO_DIR") ??
    (Deno.env.get("HOME") ? `${Deno.env.get("HOME")}/.cache/deno` : "");
  const lines = [
    "#!/bin/sh",
    "# kube-node CNI IPAM (development wrapper written by xcluster-cni install)",
  ];
  if (denoDir !== "") lines.push(`DENO_DIR="\${DENO_DIR:-${denoDir}}"; export DENO_DIR`);
  lines.push(
    // Lazy dynamic imports: the IPAM path then resolves only the modules it loads (about
    // 5 ms less per CNI call than resolving every subcommand's graph at start). No lazy
    // compilation: V8 then compiles every function of a module with the module, so Deno's
    // code cache holds them all, instead of compiling each on its first call in every CNI
    // call (about 1 ms less per call).
    `exec ${shellQuote(denoPath)} run -A --quiet --no-lock --unstable-lazy-dynamic-imports ` +
      `--v8-flags=--no-lazy --config ${shellQuote(`${dir}/deno.json`)} ${shellQuote(mainTs)} ` +
      `kube-node "$@"`,
  );
  return lines.join("\n") + "\n";
}

/** Options of {@link installBinaries}. */
export interface InstallBinariesOptions {
  /** The image's plugin folder: every file in it is copied. */
  from: string;
  /** The host's CNI bin folder. */
  to: string;
  /**
   * Own binary, installed as `kube-node`. A `.ts` path (development) installs
   * {@link devWrapper} for it instead.
   */
  self: string;
  log?: Logger;
}

/**
 * Copies every plugin in `from`, and `self` as `kube-node`, into `to`, each atomically.
 * Returns the names written and the names skipped because already identical.
 *
 * @example
 * ```ts
 * await installBinaries({ from: "/opt/xcluster-cni/cni", to: "/opt/cni/bin", self: Deno.execPath() });
 * ```
 */
export async function installBinaries(
  opts: InstallBinariesOptions,
): Promise<{ installed: string[]; skipped: string[] }> {
  const log = opts.log ?? silentLogger;
  await Deno.mkdir(opts.to, { recursive: true });
  const sources: [string, string | Uint8Array][] = [];
  for await (const entry of Deno.readDir(opts.from)) {
    if (entry.name.startsWith(".") || entry.name === KUBE_NODE_BINARY) continue;
    const path = `${opts.from}/${entry.name}`;
    const st = await Deno.stat(path); // follows symlinks
    if (st.isFile) sources.push([entry.name, path]);
  }
  sources.sort(([a], [b]) => a.localeCompare(b));
  const selfAbs = opts.self.startsWith("/") ? opts.self : `${Deno.cwd()}/${opts.self}`;
  const self = selfAbs.endsWith(".ts") ? new TextEncoder().encode(devWrapper(selfAbs)) : selfAbs;
  sources.push([KUBE_NODE_BINARY, self]);
  const installed: string[] = [], skipped: string[] = [];
  for (const [name, content] of sources) {
    if (await installFile(`${opts.to}/${name}`, content)) {
      installed.push(name);
      log.info("installed CNI binary", { file: `${opts.to}/${name}` });
    } else {
      skipped.push(name);
      log.debug("CNI binary up to date", { file: `${opts.to}/${name}` });
    }
  }
  return { installed, skipped };
}

/** Options of {@link installConflist}. */
export interface InstallConflistOptions {
  /** The host's CNI config folder. */
  confDir: string;
  /** MTU of the pod interfaces: the node interface's, see {@link interfaceMtu}. */
  mtu: number;
  /** Network name; default "xcluster". */
  name?: string;
  /** Bridge device; default "cbr0". */
  bridge?: string;
  /** Node annotation with the CIDRs; default "" (spec.podCIDRs). */
  annotation?: string;
  /** Folder of the daemon's node state files (STATE_DIR); default {@link DEFAULT_STATE_DIR}. */
  stateDir?: string;
  /** cniVersion of the conflist; default "1.0.0". */
  cniVersion?: string;
  log?: Logger;
}

/** What {@link installConflist} did. */
export interface ConflistOutcome {
  path: string;
  written: boolean;
  /** Why nothing was written. */
  reason?: string;
}

/**
 * The main network's conflist: bridge with the kube-node IPAM, which finds the daemon's node
 * state file by `annotation` and `stateDir` (each written only when not kube-node's default).
 */
export function mainConflist(opts: InstallConflistOptions): Record<string, unknown> {
  const ipam: Record<string, unknown> = { type: KUBE_NODE_BINARY };
  if (opts.annotation) ipam.annotation = opts.annotation;
  if (opts.stateDir && opts.stateDir !== DEFAULT_STATE_DIR) ipam.stateDir = opts.stateDir;
  return {
    cniVersion: opts.cniVersion ?? "1.0.0",
    name: opts.name ?? "xcluster",
    plugins: [{
      type: "bridge",
      bridge: opts.bridge ?? "cbr0",
      isGateway: true,
      isDefaultGateway: true,
      hairpinMode: true,
      mtu: opts.mtu,
      ipam,
    }],
  };
}

/** Whether a CNI config text uses the kube-node IPAM (then it is one of ours). */
function usesKubeNode(text: string): boolean {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return false;
  }
  const conf = z.object({
    ipam: z.object({ type: z.string() }).loose().optional(),
    plugins: z.array(
      z.object({ ipam: z.object({ type: z.string() }).loose().optional() })
        .loose(),
    ).optional(),
  }).loose().safeParse(json);
  if (!conf.success) return false;
  const types = [conf.data.ipam?.type, ...(conf.data.plugins ?? []).map((p) => p.ipam?.type)];
  return types.includes(KUBE_NODE_BINARY);
}

/**
 * Writes the main network's conflist ({@link CONFLIST_NAME}) into `confDir`, atomically,
 * unless one of ours (that file, or any config using the kube-node IPAM) is already there.
 */
export async function installConflist(opts: InstallConflistOptions): Promise<ConflistOutcome> {
  const log = opts.log ?? silentLogger;
  const path = `${opts.confDir}/${CONFLIST_NAME}`;
  if (!Number.isInteger(opts.mtu) || opts.mtu < MIN_MTU || opts.mtu > MAX_MTU) {
    throw new Error(`conflist ${path}: MTU ${opts.mtu} is not between ${MIN_MTU} and ${MAX_MTU}`);
  }
  await Deno.mkdir(opts.confDir, { recursive: true });
  for await (const entry of Deno.readDir(opts.confDir)) {
    if (!/\.(conflist|conf|json)$/.test(entry.name) || entry.name.startsWith(".")) continue;
    const file = `${opts.confDir}/${entry.name}`;
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch {
      continue;
    }
    if (entry.name === CONFLIST_NAME || usesKubeNode(text)) {
      log.info("CNI config already present; not written", { file });
      return { path: file, written: false, reason: `${file} is already there` };
    }
  }
  const text = JSON.stringify(mainConflist(opts), null, 2) + "\n";
  await installFile(path, new TextEncoder().encode(text), 0o644);
  log.info("CNI config written", { file: path, mtu: opts.mtu });
  return { path, written: true };
}

/**
 * MTU of the interface holding `address` (the node's address) among the host's addresses
 * (`RouteTable.localAddresses()`), read from sysfs, so that no program is run. Throws naming
 * the address when no interface has it.
 *
 * @example
 * ```ts
 * await interfaceMtu("192.168.1.2", await table.localAddresses()); // 1500
 * ```
 */
export async function interfaceMtu(
  address: string,
  local: readonly LocalAddress[],
): Promise<number> {
  const want = parseIp(address);
  if (!want) throw new Error(`interfaceMtu: ${JSON.stringify(address)} is not an IP address`);
  const holder = local.find((a) => {
    const ip = parseIp(a.address);
    return ip !== undefined && sameIp(ip, want);
  });
  if (!holder) throw new Error(`no interface holds ${address}`);
  const path = `/sys/class/net/${holder.dev}/mtu`;
  const mtu = Number((await Deno.readTextFile(path)).trim());
  if (!Number.isInteger(mtu) || mtu <= 0) throw new Error(`${path}: not an MTU`);
  return mtu;
}

/** Path of this program's main.ts when running under `deno run`, else undefined. */
function devMainTs(): string | undefined {
  const exe = Deno.execPath();
  const name = exe.slice(exe.lastIndexOf("/") + 1);
  if (name !== "deno" && !name.startsWith("deno.")) return undefined;
  return new URL("../main.ts", import.meta.url).pathname;
}

/** Own binary to install as kube-node: the compiled executable, or main.ts in development. */
export function selfPath(): string {
  return devMainTs() ?? Deno.execPath();
}

const USAGE = `usage: xcluster-cni install [--from DIR] [--to DIR] [--self PATH]
                             [--conf-dir DIR (--mtu N | --address NODE_IP)]

Copies the plugins in --from (default ${DEFAULT_PLUGINS_DIR}) and this program as
kube-node into --to (default ${DEFAULT_CNI_BIN_DIR}), atomically. --self overrides the
program (a .ts path installs a development wrapper). With --conf-dir (e.g.
${DEFAULT_CNI_CONF_DIR}) also writes the main network's conflist, with the MTU given or
that of the interface holding NODE_IP.`;

/**
 * Checks the `install` arguments as a whole; returns the usage error, or undefined. Run
 * before anything is copied, so that a usage error leaves the host as it was.
 */
function installArgsError(opts: Record<string, string>): string | undefined {
  for (const [key, value] of Object.entries(opts)) {
    if (value.trim() === "") return `${key}: empty`;
  }
  const mtu = opts["--mtu"], address = opts["--address"];
  if (mtu !== undefined) {
    const n = /^[0-9]{1,5}$/.test(mtu) ? Number(mtu) : NaN;
    if (!(n >= MIN_MTU && n <= MAX_MTU)) {
      return `--mtu: expected an integer ${MIN_MTU}-${MAX_MTU}, not ${JSON.stringify(mtu)}`;
    }
  }
  if (address !== undefined && parseIp(address) === undefined) {
    return `--address: not an IP address: ${JSON.stringify(address)}`;
  }
  if (mtu !== undefined && address !== undefined) return "--mtu or --address, not both";
  if (opts["--conf-dir"] === undefined) {
    if (mtu !== undefined || address !== undefined) return "--mtu and --address need --conf-dir";
  } else if (mtu === undefined && address === undefined) {
    return "--conf-dir needs --mtu or --address";
  }
  return undefined;
}

/**
 * `install` subcommand (initContainer): binaries, and optionally the conflist.
 * Returns 0 on success, 2 on bad arguments (nothing copied then), 1 on failure.
 */
export async function installCommand(args: string[]): Promise<number> {
  const opts: Record<string, string> = {};
  const known = ["--from", "--to", "--self", "--conf-dir", "--mtu", "--address"];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      return 0;
    }
    const eq = a.indexOf("=");
    const [key, value] = eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, args[++i]];
    if (!known.includes(key) || value === undefined) {
      console.error(`install: bad argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
    opts[key] = value;
  }
  const error = installArgsError(opts);
  if (error !== undefined) {
    console.error(`install: ${error}\n${USAGE}`);
    return 2;
  }
  const log = createLogger("info").with({ cmd: "install" });
  try {
    const result = await installBinaries({
      from: opts["--from"] ?? DEFAULT_PLUGINS_DIR,
      to: opts["--to"] ?? DEFAULT_CNI_BIN_DIR,
      self: opts["--self"] ?? selfPath(),
      log,
    });
    log.info("binaries", result);
    const confDir = opts["--conf-dir"];
    if (confDir !== undefined) {
      let mtu: number;
      if (opts["--mtu"] !== undefined) mtu = Number(opts["--mtu"]);
      else {
        const { createIprouteTable } = await import("./routing/iproute.ts");
        mtu = await interfaceMtu(opts["--address"], await createIprouteTable().localAddresses());
      }
      const outcome = await installConflist({ confDir, mtu, log });
      log.info("conflist", { ...outcome });
    }
    return 0;
  } catch (e) {
    log.error("install failed", { error: e });
    return 1;
  }
}
