/**
 * The CNI plugin skeleton: environment, stdin, version negotiation and error output, apart
 * from what the plugin decides. A plugin is a set of handlers; {@link runPlugin} reads the
 * invocation, calls one handler and prints its answer (or CNI error JSON, exit status 1).
 *
 * @module
 */
import { CniCode, CniError, type CniErrorJson, toErrorJson } from "./errors.ts";
import {
  type CniVersion,
  compareVersions,
  LATEST_VERSION,
  requireSupportedVersion,
  versionInfo,
} from "./version.ts";

/** The commands of CNI 1.1. */
export const CNI_COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC"] as const;
/** One CNI command. */
export type CniCommand = typeof CNI_COMMANDS[number];

/** Keys of CNI_ARGS that we know; others are refused unless IgnoreUnknown is set. */
const KNOWN_ARGS = new Set([
  "IgnoreUnknown",
  "K8S_POD_NAMESPACE",
  "K8S_POD_NAME",
  "K8S_POD_INFRA_CONTAINER_ID",
  "K8S_POD_UID",
  "IP",
]);

/** Environment variables each command needs (CNI spec, "Parameters"). */
const REQUIRED_ENV: Record<CniCommand, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
  GC: ["CNI_PATH"],
  STATUS: [],
  VERSION: [],
};

/** Parsed CNI_ARGS. */
export interface CniArgs {
  /** Every pair as given. */
  readonly all: Readonly<Record<string, string>>;
  readonly podNamespace?: string;
  readonly podName?: string;
  readonly ignoreUnknown: boolean;
}

/** The invocation's environment, validated for its command. */
export interface CniEnv {
  readonly command: CniCommand;
  /** "" when the command does not need it. */
  readonly containerId: string;
  readonly netns: string;
  readonly ifname: string;
  readonly args: CniArgs;
  /** CNI_PATH split on ":" (empty items dropped). */
  readonly path: readonly string[];
}

type Env = Record<string, string | undefined>;

/**
 * Parses CNI_ARGS (`K=V;K2=V2`). Throws code 4 for a malformed pair, or for an unknown key
 * when `IgnoreUnknown` is not true/1.
 *
 * @example
 * ```ts
 * parseCniArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=default").podNamespace; // "default"
 * ```
 */
export function parseCniArgs(text: string): CniArgs {
  const all = splitCniArgs(text, (pair) => {
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_ARGS: invalid pair ${JSON.stringify(pair)}: expected KEY=VALUE`,
    );
  });
  const ignore = (all.IgnoreUnknown ?? "").toLowerCase();
  const ignoreUnknown = ignore === "1" || ignore === "true";
  if (!ignoreUnknown) {
    const unknown = Object.keys(all).filter((k) => !KNOWN_ARGS.has(k));
    if (unknown.length > 0) {
      throw new CniError(
        CniCode.InvalidEnvironment,
        `CNI_ARGS: unknown key ${JSON.stringify(unknown[0])} (set IgnoreUnknown=1 to allow)`,
      );
    }
  }
  return {
    all,
    podNamespace: all.K8S_POD_NAMESPACE,
    podName: all.K8S_POD_NAME,
    ignoreUnknown,
  };
}

/** The KEY=VALUE pairs of CNI_ARGS; `bad` is called with each malformed pair. */
function splitCniArgs(text: string, bad: (pair: string) => void): Record<string, string> {
  const all: Record<string, string> = {};
  for (const pair of text.split(";")) {
    if (pair.trim() === "") continue;
    const eq = pair.indexOf("=");
    if (eq <= 0) {
      bad(pair);
      continue;
    }
    all[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return all;
}

/**
 * The well-formed pairs of CNI_ARGS, unchecked otherwise: for reporting a call that may
 * have failed on its CNI_ARGS, whose pod names are still worth a log line.
 *
 * @example
 * ```ts
 * cniArgPairs("K8S_POD_NAME=p;junk;FOO=1"); // { K8S_POD_NAME: "p", FOO: "1" }
 * ```
 */
export function cniArgPairs(text: string): Record<string, string> {
  return splitCniArgs(text, () => {});
}

/** Parses CNI_COMMAND alone; code 4 when unset or unknown. */
export function parseCommand(value: string | undefined): CniCommand {
  const expected = `expected one of ${CNI_COMMANDS.join(", ")}`;
  if (value === undefined || value === "") {
    throw new CniError(CniCode.InvalidEnvironment, `CNI_COMMAND is not set (${expected})`);
  }
  if (!(CNI_COMMANDS as readonly string[]).includes(value)) {
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_COMMAND=${JSON.stringify(value)}: unknown command (${expected})`,
    );
  }
  return value as CniCommand;
}

/**
 * Reads and validates the environment for the command in CNI_COMMAND. Throws code 4
 * naming every missing variable, or the bad one with its value.
 */
export function readCniEnv(env: Env): CniEnv {
  const command = parseCommand(env.CNI_COMMAND);
  const missing = REQUIRED_ENV[command].filter((name) => (env[name] ?? "") === "");
  if (missing.length > 0) {
    throw new CniError(
      CniCode.InvalidEnvironment,
      `required environment variable${missing.length > 1 ? "s" : ""} missing for ` +
        `${command}: ${missing.join(", ")}`,
    );
  }
  const containerId = env.CNI_CONTAINERID ?? "";
  if (containerId !== "" && !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(containerId)) {
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_CONTAINERID=${JSON.stringify(containerId)}: must be alphanumeric ` +
        `(then also _ . -)`,
    );
  }
  const ifname = env.CNI_IFNAME ?? "";
  if (
    ifname !== "" &&
    (ifname.length > 15 || ifname === "." || ifname === ".." || /[/:\s]/.test(ifname))
  ) {
    throw new CniError(
      CniCode.InvalidEnvironment,
      `CNI_IFNAME=${JSON.stringify(ifname)}: not a valid interface name ` +
        `(at most 15 characters, no "/", ":" or spaces)`,
    );
  }
  return {
    command,
    containerId,
    netns: env.CNI_NETNS ?? "",
    ifname,
    args: parseCniArgs(env.CNI_ARGS ?? ""),
    path: (env.CNI_PATH ?? "").split(":").filter((p) => p !== ""),
  };
}

/**
 * Decodes the stdin config as a JSON object. Throws code 6 when it is not JSON or not an
 * object.
 */
export function decodeConfig(bytes: Uint8Array): Record<string, unknown> {
  const text = new TextDecoder().decode(bytes);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CniError(
      CniCode.DecodingFailure,
      `stdin: network config is not JSON: ${(e as Error).message}`,
      text.length > 200 ? `${text.slice(0, 200)}...` : text,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CniError(
      CniCode.DecodingFailure,
      `stdin: network config must be a JSON object, got ${
        Array.isArray(value) ? "an array" : JSON.stringify(value)
      }`,
    );
  }
  return value as Record<string, unknown>;
}

/** What a handler gets: the validated invocation. */
export interface CniContext {
  readonly env: CniEnv;
  /** The decoded stdin config (a JSON object). */
  readonly config: Record<string, unknown>;
  /** The config's cniVersion, known to be supported. */
  readonly cniVersion: CniVersion;
}

/**
 * A call that failed, as far as it was read before it failed: what a plugin needs to
 * report it (a log line) beside the error JSON on stdout.
 */
export interface CniFailure {
  /** The command; undefined when CNI_COMMAND is missing or unknown. */
  readonly command: CniCommand | undefined;
  /** The environment as given, unvalidated: the failure may be in it. */
  readonly env: Readonly<Env>;
  /** The decoded stdin config; undefined when stdin is not a JSON object. */
  readonly config: Readonly<Record<string, unknown>> | undefined;
  /** The error JSON printed on stdout. */
  readonly error: CniErrorJson;
}

/**
 * A plugin: one handler per command. A handler returns the object to print (undefined
 * prints nothing) or throws a {@link CniError}.
 */
export interface CniPlugin {
  add(ctx: CniContext): Promise<unknown>;
  del(ctx: CniContext): Promise<unknown>;
  check(ctx: CniContext): Promise<unknown>;
  status(ctx: CniContext): Promise<unknown>;
  gc(ctx: CniContext): Promise<unknown>;
  /**
   * Called for every call that fails, before the error JSON is printed. What it throws is
   * ignored: a report must not change the answer.
   */
  failed?(failure: CniFailure): void;
}

/** Where {@link runPlugin} reads and writes; defaults are the process's own. */
export interface PluginIo {
  env?: Env;
  stdin?: () => Uint8Array | Promise<Uint8Array>;
  stdout?: (text: string) => void | Promise<void>;
}

/**
 * Reads all of stdin. A CNI call has nothing to overlap with its I/O, and the first
 * synchronous read or write costs a fraction of an asynchronous one, which pays for
 * Deno's async op and promise machinery on first use.
 */
export function readAllStdin(): Uint8Array {
  if (Deno.stdin.isTerminal()) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  let total = 0;
  for (;;) {
    const n = Deno.stdin.readSync(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
    total += n;
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

/** Writes all of `text` to stdout (synchronously, as {@link readAllStdin} reads). */
export function writeStdout(text: string): void {
  const bytes = new TextEncoder().encode(text);
  let done = 0;
  while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
}

function configVersion(config: Record<string, unknown> | undefined): string | undefined {
  const v = config?.cniVersion;
  return typeof v === "string" ? v : undefined;
}

/** The version before which a command does not exist. */
const COMMAND_SINCE: Partial<Record<CniCommand, string>> = {
  CHECK: "0.4.0",
  STATUS: "1.1.0",
  GC: "1.1.0",
};

/**
 * Runs one CNI invocation: reads env and stdin, negotiates the version, calls the
 * handler and prints its answer. Returns the exit status (0, or 1 after printing CNI
 * error JSON).
 *
 * @example
 * ```ts
 * Deno.exit(await runPlugin(myPlugin));
 * ```
 */
export async function runPlugin(plugin: CniPlugin, io: PluginIo = {}): Promise<number> {
  const env = io.env ?? Deno.env.toObject();
  const write = io.stdout ?? writeStdout;
  let config: Record<string, unknown> | undefined;
  let decodeError: unknown;
  let errorVersion = LATEST_VERSION;
  let command: CniCommand | undefined;
  try {
    command = parseCommand(env.CNI_COMMAND);
    const bytes = await (io.stdin ?? readAllStdin)();
    try {
      config = decodeConfig(bytes);
      const v = configVersion(config);
      if (v !== undefined) errorVersion = v;
    } catch (e) {
      decodeError = e;
    }
    if (command === "VERSION") {
      await write(JSON.stringify(versionInfo(configVersion(config))) + "\n");
      return 0;
    }
    const cniEnv = readCniEnv(env);
    if (decodeError !== undefined || config === undefined) throw decodeError;
    const asked = configVersion(config);
    if (asked === undefined) {
      throw new CniError(
        CniCode.IncompatibleVersion,
        "cniVersion missing from the network config (0.1.0 implied, not supported)",
      );
    }
    const cniVersion = requireSupportedVersion(asked);
    const since = COMMAND_SINCE[command];
    if (since !== undefined && compareVersions(cniVersion, since) < 0) {
      throw new CniError(
        CniCode.IncompatibleVersion,
        `${command} is not defined in CNI version ${cniVersion} (needs ${since} or later)`,
      );
    }
    const ctx: CniContext = { env: cniEnv, config, cniVersion };
    const handler = {
      ADD: plugin.add,
      DEL: plugin.del,
      CHECK: plugin.check,
      STATUS: plugin.status,
      GC: plugin.gc,
    }[command];
    const out = await handler.call(plugin, ctx);
    if (out !== undefined) await write(JSON.stringify(out) + "\n");
    return 0;
  } catch (e) {
    const error = toErrorJson(errorVersion, e);
    try {
      plugin.failed?.({ command, env, config, error });
    } catch {
      // The runtime acts on the error JSON alone; a failed report must not replace it.
    }
    await write(JSON.stringify(error) + "\n");
    return 1;
  }
}
