/**
 * The kube-node IPAM plugin: hands each pod addresses from its own node's CIDRs for the
 * network by delegating to host-local with one range set per family (one address each).
 *
 * - ADD: CIDRs from the daemon's node state file when it is this node's (else the API, see
 *   {@link cidrsFromApi} and {@link foreignState}), `ipv4-namespaces` applied, host-local
 *   ADD, its result in the version asked for.
 * - DEL: host-local releases by container ID whatever the ranges, so DEL takes the state
 *   file's ranges when they are usable and a placeholder range otherwise: it succeeds when
 *   the state file, the node or the annotation is gone, or when the ranges changed since
 *   ADD. It never calls the API.
 * - CHECK: delegated the same way (host-local checks that the container holds an address).
 * - STATUS: fails (code 50) when host-local is missing from CNI_PATH, or when neither a
 *   state file of this node nor the API credentials ADD would use are there to learn the
 *   ranges from; then delegated to host-local when it implements CNI 1.1.0, whose error
 *   is passed back (the spec asks a plugin to check the plugins it delegates ADD to).
 * - GC: delegated to host-local when it implements CNI 1.1.0, else a no-op success.
 *
 * host-local runs with `IgnoreUnknown=1` in CNI_ARGS: it reads only IP there, and would
 * refuse the pod's K8S_* keys, which a runtime may send without IgnoreUnknown.
 *
 * With `logfile` set, a failed ADD, DEL or CHECK is logged there with its error (see
 * {@link kubeNodePlugin}), and so is every `ipam` key that looks like a misspelling of ours.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";
import {
  cniArgPairs,
  type CniArgs,
  type CniCommand,
  type CniContext,
  type CniFailure,
  type CniPlugin,
  runPlugin,
} from "./skel.ts";
import { type CniVersion, convertResult } from "./version.ts";
import {
  KUBE_NODE_KEYS,
  type KubeNodeNetConf,
  misspelledIpamKeys,
  parseKubeNodeConfig,
} from "./config.ts";
import { isObj } from "./shape.ts";
import { buildRanges, type HostLocalRanges, PLACEHOLDER_RANGES, wantsIpv4 } from "./ranges.ts";
import { execPluginInPath, findPlugin } from "./delegate.ts";
import {
  cidrsFromApi,
  cidrsFromState,
  foreignState,
  kubeconfigTried,
  type NodeCidrs,
  ownNode,
} from "./node_cidrs.ts";
import { DEFAULT_STATE_DIR, stateFilePath } from "../src/state.ts";
import { credentialFiles, findApiCredentials } from "../src/api_credentials.ts";
import {
  createLogger,
  type Fields,
  type Logger,
  type LogSink,
  parseLevel,
  silentLogger,
} from "../src/log.ts";

/** The delegated IPAM plugin. */
export const HOST_LOCAL = "host-local";

/**
 * Appends each line to `path` with a file opened for that line alone: a call writes a line
 * or two, and no file is left open when the plugin runs in a longer-lived process (tests).
 */
function appendSink(path: string): LogSink {
  return {
    write: (line) => {
      try {
        Deno.writeTextFileSync(path, line + "\n", { append: true });
      } catch {
        // An unwritable log file must not fail the pod.
      }
    },
    text: false,
  };
}

/**
 * The log named by `ipam.logfile` at `ipam.loglevel` (info when unset or invalid), from
 * values not yet checked, as a failed call's config may be invalid; silent without one.
 */
function openLog(logfile: unknown, loglevel: unknown): Logger {
  if (typeof logfile !== "string" || logfile === "") return silentLogger;
  const level = (typeof loglevel === "string" ? parseLevel(loglevel) : undefined) ?? "info";
  return createLogger(level, appendSink(logfile));
}

/** The fields of every line about one call: which call, which pod, which network. */
function callFields(
  command: CniCommand,
  containerId: string,
  ifname: string,
  args: Readonly<Record<string, string>>,
  network: unknown,
): Fields {
  return {
    cmd: command,
    container: containerId,
    ifname,
    network: typeof network === "string" ? network : undefined,
    ns: args.K8S_POD_NAMESPACE,
    pod: args.K8S_POD_NAME,
  };
}

/**
 * The call's logger. It first warns about `ipam` keys that look like misspellings of ours:
 * kube-node ignores them, so a misspelled `annotation` silently means spec.podCIDRs.
 */
function logger(conf: KubeNodeNetConf, ctx: CniContext): Logger {
  const { command, containerId, ifname, args } = ctx.env;
  const log = openLog(conf.ipam.logfile, conf.ipam.loglevel)
    .with(callFields(command, containerId, ifname, args.all, conf.name));
  for (const { key, resembles } of misspelledIpamKeys(conf.ipam)) {
    log.warn(
      `ipam key ${JSON.stringify(key)} looks like a misspelling of ` +
        `${JSON.stringify(resembles)}: kube-node ignores it (host-local gets it as given)`,
      { key, resembles },
    );
  }
  return log;
}

/** The commands whose failures are logged: those about one pod. */
const LOGGED_FAILURES: ReadonlySet<CniCommand> = new Set<CniCommand>(["ADD", "DEL", "CHECK"]);

/**
 * Logs a failed ADD, DEL or CHECK to `ipam.logfile` with the CNI error, however early it
 * failed (an invalid config still names its log file): the runtime keeps the error JSON
 * only as long as its own logs do.
 */
function logFailure(f: CniFailure): void {
  if (f.command === undefined || !LOGGED_FAILURES.has(f.command)) return;
  const ipam = f.config?.ipam;
  if (!isObj(ipam)) return;
  const log = openLog(ipam.logfile, ipam.loglevel).with(callFields(
    f.command,
    f.env.CNI_CONTAINERID ?? "",
    f.env.CNI_IFNAME ?? "",
    cniArgPairs(f.env.CNI_ARGS ?? ""),
    f.config?.name,
  ));
  const fields: Fields = { code: f.error.code, error: f.error.msg };
  if (f.error.details !== undefined) fields.details = f.error.details;
  log.error(`${f.command} failed`, fields);
}

/**
 * The config host-local gets: ours as given, with `ipam` made host-local's (our keys
 * dropped, `type` and `ranges` set; `dataDir`, `routes` and others kept).
 */
export function hostLocalConfig(
  raw: Record<string, unknown>,
  ranges: HostLocalRanges,
  cniVersion: string,
): Record<string, unknown> {
  const ipam: Record<string, unknown> = { ...(raw.ipam as Record<string, unknown>) };
  for (const key of KUBE_NODE_KEYS) delete ipam[key];
  ipam.type = HOST_LOCAL;
  ipam.ranges = ranges;
  return { ...raw, cniVersion, ipam };
}

/**
 * The version to speak to host-local for ADD/DEL/CHECK: 1.1.0 differs from 1.0.0 only by
 * the STATUS and GC commands, and host-local releases before 1.5 stop at 1.0.0.
 */
function delegateVersion(v: CniVersion): string {
  return v === "1.1.0" ? "1.0.0" : v;
}

function stateDir(conf: KubeNodeNetConf): string {
  return conf.ipam.stateDir ?? DEFAULT_STATE_DIR;
}

/** The node state file's CIDRs and whether they are this node's (undefined: no file). */
interface StateLookup {
  found: NodeCidrs;
  /** Why the file is another node's; undefined when it is ours. */
  foreign: string | undefined;
}

/** Reads the node state file and tells whether it is this node's. Throws as cidrsFromState. */
function readState(conf: KubeNodeNetConf): StateLookup | undefined {
  const found = cidrsFromState(stateDir(conf), conf.ipam.annotation);
  if (found === undefined) return undefined;
  return { found, foreign: foreignState(found, ownNode(Deno.env.get("NODE_NAME"))) };
}

/**
 * The state file's CIDRs when it is this node's; undefined when there is none or it is
 * another node's (then the API is asked, as without a file).
 */
function ownState(state: StateLookup | undefined, log: Logger): NodeCidrs | undefined {
  if (state === undefined) return undefined;
  if (state.foreign === undefined) return state.found;
  // Another node's range would hand out addresses that node routes to itself.
  log.info("node state file of another node not used", { reason: state.foreign });
  return undefined;
}

/** Ranges from the state file when usable, else the placeholder (DEL, CHECK, GC). */
function rangesForRelease(conf: KubeNodeNetConf, log: Logger): HostLocalRanges {
  try {
    const found = ownState(readState(conf), log);
    if (found) return buildRanges(found.cidrs, { ipv4: true, source: found.source });
    log.debug("no node state file of this node; placeholder ranges");
  } catch (e) {
    log.debug("state ranges unusable; placeholder ranges", { error: e });
  }
  return PLACEHOLDER_RANGES;
}

/** Interprets host-local's answer: its result, nothing, or its error as ours. */
function delegateAnswer(out: { code: number; stdout: string }): unknown {
  const text = out.stdout.trim();
  let json: unknown;
  if (text !== "") {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (out.code === 0) {
    if (text !== "" && json === undefined) {
      throw new CniError(CniCode.DelegateFailed, `${HOST_LOCAL} printed non-JSON`, text);
    }
    return json;
  }
  if (typeof json === "object" && json !== null) {
    const e = json as Record<string, unknown>;
    if (typeof e.code === "number" && typeof e.msg === "string") {
      throw new CniError(e.code, e.msg, typeof e.details === "string" ? e.details : "");
    }
  }
  throw new CniError(
    CniCode.DelegateFailed,
    `${HOST_LOCAL} failed with exit status ${out.code}`,
    text,
  );
}

/**
 * The CNI_ARGS host-local gets: ours with `IgnoreUnknown=1`. host-local reads only IP and
 * refuses any other key without IgnoreUnknown, while we accept the K8S_* keys without it:
 * passed unchanged, they would fail even DEL, which must succeed.
 *
 * @example
 * ```ts
 * hostLocalCniArgs(parseCniArgs("K8S_POD_NAMESPACE=x")); // "K8S_POD_NAMESPACE=x;IgnoreUnknown=1"
 * ```
 */
export function hostLocalCniArgs(args: CniArgs): string {
  const pairs = Object.entries(args.all).filter(([key]) => key !== "IgnoreUnknown");
  return [...pairs.map(([key, value]) => `${key}=${value}`), "IgnoreUnknown=1"].join(";");
}

async function delegate(
  ctx: CniContext,
  ranges: HostLocalRanges,
  version: string,
): Promise<unknown> {
  const config = hostLocalConfig(ctx.config, ranges, version);
  const env = { CNI_ARGS: hostLocalCniArgs(ctx.env.args) };
  return delegateAnswer(
    await execPluginInPath(HOST_LOCAL, ctx.env.path, JSON.stringify(config), env),
  );
}

/**
 * Whether host-local lists `version` in its VERSION answer. Asked for 1.1.0 before STATUS
 * and GC: releases before 1.5 stop at 1.0.0 and would refuse those commands.
 */
async function hostLocalSpeaks(ctx: CniContext, version: CniVersion): Promise<boolean> {
  const probe = await execPluginInPath(
    HOST_LOCAL,
    ctx.env.path,
    JSON.stringify({ cniVersion: ctx.cniVersion }),
    { CNI_COMMAND: "VERSION" },
  );
  let supported: unknown;
  try {
    supported = (JSON.parse(probe.stdout) as Record<string, unknown>).supportedVersions;
  } catch {
    supported = undefined;
  }
  return Array.isArray(supported) && supported.includes(version);
}

async function add(ctx: CniContext): Promise<unknown> {
  const conf = parseKubeNodeConfig(ctx.config);
  const log = logger(conf, ctx);
  const state = readState(conf);
  const found = ownState(state, log) ??
    await cidrsFromApi({
      kubeconfig: conf.ipam.kubeconfig,
      annotation: conf.ipam.annotation,
      nodeName: Deno.env.get("NODE_NAME"),
      stateFile: stateFilePath(stateDir(conf), conf.ipam.annotation),
      noState: state?.foreign,
    });
  const ipv4 = wantsIpv4(conf.ipam["ipv4-namespaces"], ctx.env.args.podNamespace);
  const ranges = buildRanges(found.cidrs, { ipv4, source: found.source });
  log.debug("ADD", { source: found.source, ranges, ipv4 });
  // A failure is logged by logFailure, with the error as the runtime gets it.
  const result = await delegate(ctx, ranges, delegateVersion(ctx.cniVersion));
  const converted = convertResult(result, ctx.cniVersion);
  log.info("ADD done", { ips: converted.ips?.map((ip) => ip.address) });
  return converted;
}

async function del(ctx: CniContext): Promise<unknown> {
  const conf = parseKubeNodeConfig(ctx.config);
  const log = logger(conf, ctx);
  const ranges = rangesForRelease(conf, log);
  await delegate(ctx, ranges, delegateVersion(ctx.cniVersion));
  log.info("DEL done");
  return undefined;
}

async function check(ctx: CniContext): Promise<unknown> {
  const conf = parseKubeNodeConfig(ctx.config);
  const ranges = rangesForRelease(conf, logger(conf, ctx));
  await delegate(ctx, ranges, delegateVersion(ctx.cniVersion));
  return undefined;
}

async function readable(file: string): Promise<boolean> {
  try {
    return (await Deno.stat(file)).isFile;
  } catch {
    return false;
  }
}

/**
 * The ranges STATUS hands host-local: the state file's when it is this node's and usable,
 * the placeholder when the API would be asked. Throws code 50 when neither can serve ADD.
 */
async function statusRanges(conf: KubeNodeNetConf): Promise<HostLocalRanges> {
  const unavailable = (msg: string) => new CniError(CniCode.NotAvailable, msg);
  let state: StateLookup | undefined;
  try {
    state = readState(conf);
    if (state && state.foreign === undefined) {
      return buildRanges(state.found.cidrs, { ipv4: true, source: state.found.source });
    }
  } catch (e) {
    throw unavailable((e as Error).message);
  }
  // The credentials ADD's API fallback would use (cidrsFromApi), found the same way.
  const env = Deno.env.toObject();
  const files = credentialFiles(findApiCredentials(conf.ipam.kubeconfig, env));
  if (files.length > 0 && (await Promise.all(files.map(readable))).every((ok) => ok)) {
    return PLACEHOLDER_RANGES;
  }
  throw unavailable(
    (state?.foreign ??
      `no node state file at ${stateFilePath(stateDir(conf), conf.ipam.annotation)} ` +
        `(annotation ${JSON.stringify(conf.ipam.annotation)})`) +
      ` and no readable API credentials (${kubeconfigTried(conf.ipam.kubeconfig, env)})`,
  );
}

async function status(ctx: CniContext): Promise<unknown> {
  const conf = parseKubeNodeConfig(ctx.config);
  if (ctx.env.path.length > 0) {
    try {
      findPlugin(HOST_LOCAL, ctx.env.path);
    } catch (e) {
      throw new CniError(CniCode.NotAvailable, (e as Error).message);
    }
  }
  const ranges = await statusRanges(conf);
  if (ctx.env.path.length > 0 && await hostLocalSpeaks(ctx, "1.1.0")) {
    await delegate(ctx, ranges, ctx.cniVersion);
  }
  return undefined;
}

async function gc(ctx: CniContext): Promise<unknown> {
  const conf = parseKubeNodeConfig(ctx.config);
  const log = logger(conf, ctx);
  if (!await hostLocalSpeaks(ctx, "1.1.0")) {
    log.debug("GC: host-local does not implement CNI 1.1.0; nothing to do");
    return undefined;
  }
  const ranges = rangesForRelease(conf, log);
  await delegate(ctx, ranges, ctx.cniVersion);
  return undefined;
}

/**
 * The kube-node plugin's handlers, for {@link runPlugin}; `failed` logs a failed ADD, DEL
 * or CHECK to the config's `logfile`.
 */
export const kubeNodePlugin: CniPlugin = { add, del, check, status, gc, failed: logFailure };

/**
 * Entry point of the `kube-node` program (argv0 `kube-node`, or `main.ts kube-node`):
 * one CNI invocation from the environment and stdin. Returns the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await kubeNodeCommand(Deno.args));
 * ```
 */
export async function kubeNodeCommand(_args: string[]): Promise<number> {
  return await runPlugin(kubeNodePlugin);
}
