/**
 * The daemon's configuration: environment variables, parsed and documented in one place.
 *
 * Names and meanings are those of Nordix xcluster-cni where it has them. Every variable is
 * listed once in {@link ENV}; docs/configuration.md and the manifests are checked against it.
 *
 * @module
 */
import { type Level, parseLevel } from "./log.ts";
import { type Cidr, formatCidr, makeCidr, parseCidr, parseIp, splitList } from "./net/ip.ts";
import { assignedNumber, protocolRefusal } from "./routing/protocols.ts";
import { type PlanRules, refuseCidr } from "./routing/check.ts";
import { parsePerNodeHostBits, parsePools, type Pool } from "./alloc/pools.ts";
import { parseLabelSelector } from "./kube/label_selector.ts";
import { parseAddressInterface, parseAddressSubnets } from "./publish/addresses.ts";
import { DEFAULT_STATE_DIR } from "./state.ts";

/** Route protocol used when PROTOCOL is unset. */
export const DEFAULT_PROTOCOL = 202;
/** The host's CNI plugin folder, as mounted into the pod. */
export const DEFAULT_CNI_BIN_DIR = "/opt/cni/bin";
/** The host's CNI config folder, as mounted into the pod. */
export const DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d";
/** Where the image keeps the standard plugins that the installer copies. */
export const DEFAULT_PLUGINS_DIR = "/opt/xcluster-cni/cni";
export { DEFAULT_STATE_DIR } from "./state.ts";
/** Namespace of the allocation Lease when POD_NAMESPACE is unset. */
export const DEFAULT_POD_NAMESPACE = "kube-system";
/** Base of the default HTTP port: the port is this plus PROTOCOL, so instances differ. */
export const HTTP_PORT_BASE = 19000;
/**
 * Environment of the runtime under which the daemon runs (set in the image, and for the
 * daemons of the demo and the benchmark). The daemon's heap is small, but the first list
 * streams the JSON of every Node (43 MiB at 5,000 nodes): a young generation of 1 MiB
 * semi-spaces and two malloc arenas keep much of that transient from becoming resident
 * memory (about 150 -> 110 MiB at 5,000 nodes). Buffers of 64 KiB and more (reads of pipes
 * and sockets) are mapped on their own, so that freeing one gives its memory back instead
 * of leaving holes in malloc's heap: under 100 node updates a second the daemon at 1,000
 * nodes held about 120 MiB without it and 90 MiB with it, for the same CPU. V8's `gc` is
 * exposed so that the daemon can compact its heap once its start is over (src/heap.ts,
 * which also trims malloc then): at 5,000 nodes, about 78 MiB from then on instead of
 * 100-103 MiB until V8 gets to it.
 */
export const DAEMON_RUNTIME_ENV: Readonly<Record<string, string>> = {
  DENO_V8_FLAGS: "--max-semi-space-size=1,--expose-gc",
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "65536",
};

/** Everything the daemon reads from its environment. */
export interface DaemonConfig {
  /** Own node name; empty: find it by /etc/machine-id. */
  nodeName: string;
  /** Node annotation with this network's CIDRs; empty: spec.podCIDRs. */
  cidrAnnotation: string;
  /** Node annotation with this network's node addresses; empty: InternalIP. */
  addressAnnotation: string;
  protocol: number;
  logLevel: Level;
  /** Log file; empty: stderr. */
  logFile: string;
  resyncSeconds: number;
  cniBinDir: string;
  cniConfDir: string;
  pluginsDir: string;
  installK8sNet: boolean;
  stateDir: string;
  httpAddress: string;
  /** When non-empty, only CIDRs inside these are routed. */
  allowedCidrs: Cidr[];
  /** Shortest prefix accepted for a node CIDR when ALLOWED_CIDRS is unset. */
  minPrefixV4: number;
  minPrefixV6: number;
  /** Post Kubernetes Events on Nodes whose CIDRs are refused. */
  nodeEvents: boolean;
  /** Only nodes whose labels match are on this network ("" all). Canonical text. */
  nodeSelector: string;
  /** Pools the leader allocates node CIDRs from; empty: no allocation. */
  clusterCidrs: Pool[];
  /** Host bits of a per-node CIDR for plain CIDRs in CLUSTER_CIDRS. */
  perNodeHostBits: number | undefined;
  /** Namespace of the network's Lease (the pod's own). */
  podNamespace: string;
  /** Publish the global addresses of this interface into ADDRESS_ANNOTATION. */
  addressInterface: string;
  /** Publish the host's addresses inside these subnets into ADDRESS_ANNOTATION. */
  addressSubnets: Cidr[];
  /** How the kernel is spoken to: rtnetlink sockets, or `ip` processes. */
  routeAdapter: RouteAdapter;
}

/** The ways of speaking to the kernel. */
export const ROUTE_ADAPTERS = ["netlink", "iproute2"] as const;
/** One of {@link ROUTE_ADAPTERS}. */
export type RouteAdapter = typeof ROUTE_ADAPTERS[number];

/** One documented environment variable. */
export interface EnvVar {
  name: string;
  /** Default as written in a manifest ("" when empty). */
  default: string;
  description: string;
}

type Parser<T> = (value: string, env: Env) => T;
type Env = Record<string, string | undefined>;

/** Thrown for a bad value; the message is the one line the daemon prints before exit 2. */
export class ConfigError extends Error {
  constructor(readonly variable: string, readonly value: string, reason: string) {
    super(`${variable}=${JSON.stringify(value)}: ${reason}`);
    this.name = "ConfigError";
  }
}

const bool: Parser<boolean> = (v) => {
  const t = v.trim().toLowerCase();
  if (["yes", "true", "1", "on"].includes(t)) return true;
  if (["no", "false", "0", "off"].includes(t)) return false;
  throw new Error("expected yes/no or true/false");
};

const int = (min: number, max: number): Parser<number> => (v) => {
  const t = v.trim();
  // Decimal digits alone: Number() also reads "0x10", "1e1" and " " as numbers.
  const n = /^[0-9]{1,9}$/.test(t) ? Number(t) : NaN;
  if (!(n >= min && n <= max)) throw new Error(`expected an integer ${min}-${max}`);
  return n;
};

const str: Parser<string> = (v) => v.trim();

/**
 * An absolute path: a relative one would depend on the folder the daemon is started in.
 * With `emptyAllowed`, "" is accepted too (that variable's documented default).
 */
const absolutePath = (emptyAllowed = false): Parser<string> => (v) => {
  const t = v.trim();
  if (t === "" && emptyAllowed) return "";
  if (!t.startsWith("/")) throw new Error("expected an absolute path");
  return t;
};

/**
 * LOG_FILE: an absolute path in a folder that exists, checked here so that a typo stops
 * the daemon at start naming the variable rather than when the file is opened.
 */
const logFile: Parser<string> = (v) => {
  const t = absolutePath(true)(v, {});
  if (t === "") return "";
  if (t.endsWith("/")) throw new Error("expected a file, not a folder");
  const dir = t.slice(0, t.lastIndexOf("/")) || "/";
  let isDir = false;
  try {
    isDir = Deno.statSync(dir).isDirectory;
  } catch { /* absent: said below */ }
  if (!isDir) throw new Error(`${dir} is not an existing folder`);
  return t;
};

const annotation: Parser<string> = (v) => {
  const t = v.trim();
  // Kubernetes annotation keys: optional DNS prefix "/" name of at most 63 characters.
  if (
    t !== "" &&
    !/^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/.test(t)
  ) {
    throw new Error("not a valid annotation key");
  }
  return t;
};

/** Parses a duration: seconds as a number, or with a unit (`90s`, `5m`, `1h`). */
const duration: Parser<number> = (v) => {
  const m = /^([0-9]+)(s|m|h)?$/.exec(v.trim());
  if (!m) throw new Error("expected a duration such as 60, 60s, 5m");
  const n = Number(m[1]) * ({ s: 1, m: 60, h: 3600 }[m[2] ?? "s"] ?? 1);
  if (n < 1 || n > 86400) throw new Error("expected between 1s and 24h");
  return n;
};

/** Reads the protocol name table (`number name` lines) as iproute2 does. */
export function parseRtProtos(text: string): Map<string, number> {
  const names = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^\s*(0x[0-9a-fA-F]+|[0-9]+)\s+([A-Za-z0-9_.-]+)/.exec(line);
    if (m) names.set(m[2], Number(m[1]));
  }
  return names;
}

/** Protocol names as iproute2 reads them, and the files they came from (for messages). */
export interface ProtocolNames {
  readonly names: ReadonlyMap<string, number>;
  readonly source: string;
}

const RT_PROTOS_DIRS = ["/usr/share/iproute2", "/etc/iproute2"];

/** The host's rt_protos files, as iproute2 reads them: later files override earlier ones. */
function rtProtosFiles(): string[] {
  const files: string[] = [];
  for (const dir of RT_PROTOS_DIRS) {
    files.push(`${dir}/rt_protos`);
    try {
      const conf = [...Deno.readDirSync(`${dir}/rt_protos.d`)]
        .filter((e) => e.name.endsWith(".conf")).map((e) => `${dir}/rt_protos.d/${e.name}`);
      files.push(...conf.sort());
    } catch { /* no such folder */ }
  }
  return files;
}

function readRtProtos(): ProtocolNames {
  const names = new Map<string, number>();
  const read: string[] = [];
  for (const file of rtProtosFiles()) {
    try {
      for (const [k, v] of parseRtProtos(Deno.readTextFileSync(file))) names.set(k, v);
      read.push(file);
    } catch { /* absent file: numbers still work */ }
  }
  return { names, source: read.join(", ") || "rt_protos" };
}

/**
 * Parses PROTOCOL: a number or a name from rt_protos. Refuses every number that belongs to
 * the kernel or another routing daemon (see routing/protocols.ts), by number or by name:
 * this instance would delete that owner's routes.
 */
export function parseProtocol(text: string, host: ProtocolNames = readRtProtos()): number {
  const t = text.trim();
  let n: number | undefined;
  if (/^[0-9]+$/.test(t)) n = Number(t);
  // The kernel's own names first: a host that renumbered one still means that owner.
  else n = assignedNumber(t) ?? host.names.get(t);
  if (n === undefined) throw new Error("expected a number 1-255 or a name from rt_protos");
  if (n < 0 || n > 255) throw new Error("expected a number 1-255");
  const refused = protocolRefusal(n, host.names, host.source);
  if (refused) throw new Error(refused);
  return n;
}

const cidrList: Parser<Cidr[]> = (v) =>
  splitList(v).map((item) => {
    const r = parseCidr(item);
    if (!r.ok) throw new Error(`${JSON.stringify(item)}: ${r.reason}`);
    return r.cidr;
  });

interface Spec<K extends keyof DaemonConfig> extends EnvVar {
  key: K;
  parse: Parser<DaemonConfig[K]>;
}
type AnySpec = { [K in keyof DaemonConfig]: Spec<K> }[keyof DaemonConfig];

const SPECS: AnySpec[] = [
  {
    key: "nodeName",
    name: "NODE_NAME",
    default: "",
    parse: str,
    description: "Own node name (downward API). Empty: the node whose " +
      "status.nodeInfo.machineID equals /etc/machine-id.",
  },
  {
    key: "cidrAnnotation",
    name: "CIDR_ANNOTATION",
    default: "",
    parse: annotation,
    description: "Node annotation holding this network's CIDRs, comma separated. " +
      "Empty: spec.podCIDRs.",
  },
  {
    key: "addressAnnotation",
    name: "ADDRESS_ANNOTATION",
    default: "",
    parse: annotation,
    description: "Node annotation holding the node's addresses on this network (next hops), " +
      "comma separated. Empty: the node's InternalIP addresses.",
  },
  {
    key: "protocol",
    name: "PROTOCOL",
    default: String(DEFAULT_PROTOCOL),
    parse: (v) => parseProtocol(v),
    description: "Route protocol marking this instance's routes: a number or a name from " +
      "the container's rt_protos (the image's, not the host's), unique per instance on a " +
      "node; 200-254 are free for instances. The manifests need a number: they build the " +
      "HTTP port from it. Refused: the numbers the kernel or rt_protos gives to other " +
      "sources of routes (kernel, boot, static, dhcp, ra, zebra, bird, bgp, ospf, ...).",
  },
  {
    key: "logLevel",
    name: "LOG_LEVEL",
    default: "info",
    parse: (v) => {
      const l = parseLevel(v);
      if (!l) throw new Error("expected error, warn, info, debug, trace or a number");
      return l;
    },
    description:
      "error, warn, info, debug, trace, or a verbosity number (0 info, 1 debug, 2 trace).",
  },
  {
    key: "logFile",
    name: "LOG_FILE",
    default: "",
    parse: logFile,
    description: "File to append log lines to (an absolute path in an existing folder). " +
      "Empty: stderr.",
  },
  {
    key: "resyncSeconds",
    name: "RESYNC_INTERVAL",
    default: "5m",
    parse: duration,
    description: "Period of the full reconcile (a fresh read of the routing table) that backs " +
      "up the watches (60, 60s, 5m, 1h). The route monitor repairs routes at once; this only " +
      "catches what it could miss.",
  },
  {
    key: "cniBinDir",
    name: "CNI_BIN_DIR",
    default: DEFAULT_CNI_BIN_DIR,
    parse: absolutePath(),
    description: "Host CNI plugin folder (as mounted) that the installer copies into.",
  },
  {
    key: "cniConfDir",
    name: "CNI_CONF_DIR",
    default: DEFAULT_CNI_CONF_DIR,
    parse: absolutePath(),
    description: "Host CNI config folder (as mounted) for the main network's conflist.",
  },
  {
    key: "pluginsDir",
    name: "PLUGINS_DIR",
    default: DEFAULT_PLUGINS_DIR,
    parse: absolutePath(),
    description: "Folder of standard CNI plugins carried in the image, copied to CNI_BIN_DIR.",
  },
  {
    key: "installK8sNet",
    name: "INSTALL_K8S_NET",
    default: "yes",
    parse: bool,
    description: "Write the main network's CNI conflist (bridge + kube-node). " +
      "Set no/false for secondary networks.",
  },
  {
    key: "stateDir",
    name: "STATE_DIR",
    default: DEFAULT_STATE_DIR,
    parse: absolutePath(),
    description: "Folder of the node state files read by the kube-node IPAM.",
  },
  {
    key: "httpAddress",
    name: "HTTP_ADDRESS",
    default: `0.0.0.0:${HTTP_PORT_BASE}+PROTOCOL`,
    parse: str,
    description: `IP:port, [IPv6]:port or :port (every IPv4 address) of /healthz, /readyz ` +
      `and /metrics, port 1-65535. Unset or empty: 0.0.0.0 and port ${HTTP_PORT_BASE} + ` +
      `PROTOCOL, so that instances on a node never collide. "off" disables.`,
  },
  {
    key: "allowedCidrs",
    name: "ALLOWED_CIDRS",
    default: "",
    parse: cidrList,
    description: "Comma separated CIDRs (IPv4 and IPv6): a node CIDR is routed only inside " +
      "one of them. Empty: any CIDR that passes the built-in safety checks.",
  },
  {
    key: "minPrefixV4",
    name: "MIN_PREFIX_V4",
    default: "8",
    parse: int(1, 32),
    description: "Shortest IPv4 node CIDR prefix accepted when ALLOWED_CIDRS is empty.",
  },
  {
    key: "minPrefixV6",
    name: "MIN_PREFIX_V6",
    default: "32",
    parse: int(1, 128),
    description: "Shortest IPv6 node CIDR prefix accepted when ALLOWED_CIDRS is empty.",
  },
  {
    key: "nodeEvents",
    name: "NODE_EVENTS",
    default: "no",
    parse: bool,
    description: "Post a Kubernetes Event on a Node whose CIDRs are refused " +
      "(needs RBAC events create).",
  },
  {
    key: "nodeSelector",
    name: "NODE_SELECTOR",
    default: "",
    parse: (v) => parseLabelSelector(v).text,
    description: "Label selector (`key=value`, `key in (a,b)`, `!key`, ...): only matching " +
      "nodes are on this network, routed to and allocated; the list and watch ask the API " +
      "server for them alone. Empty: every node.",
  },
  {
    key: "perNodeHostBits",
    name: "PER_NODE_HOST_BITS",
    default: "",
    parse: parsePerNodeHostBits,
    description: "Host bits of a node CIDR for the plain CIDRs of CLUSTER_CIDRS, the same for " +
      "both families (8: /24 for IPv4, /120 for IPv6).",
  },
  {
    key: "clusterCidrs",
    name: "CLUSTER_CIDRS",
    default: "",
    parse: (v, env) =>
      v.trim() === "" ? [] : parsePools(v, parsePerNodeHostBits(env.PER_NODE_HOST_BITS ?? "")),
    description: "Pools of node CIDRs to allocate from, comma separated, each " +
      "`BASE/PREFIX/NODEPREFIX` (as `xcluster-cni cidr`) or a CIDR sized by " +
      "PER_NODE_HOST_BITS: the instance holding the network's Lease writes a CIDR of each " +
      "family into CIDR_ANNOTATION of every node that has none. Needs CIDR_ANNOTATION and " +
      "NODE_NAME. Empty: no allocation.",
  },
  {
    key: "podNamespace",
    name: "POD_NAMESPACE",
    default: DEFAULT_POD_NAMESPACE,
    parse: (v) => {
      const t = v.trim();
      if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(t)) throw new Error("not a namespace name");
      return t;
    },
    description: "Namespace of the network's allocation Lease: the pod's own (downward API).",
  },
  {
    key: "addressInterface",
    name: "ADDRESS_INTERFACE",
    default: "",
    parse: (v) => v.trim() === "" ? "" : parseAddressInterface(v),
    description: "Publish this node's global addresses on this interface (one per family) " +
      "into ADDRESS_ANNOTATION, and follow their changes. Needs ADDRESS_ANNOTATION and " +
      "NODE_NAME.",
  },
  {
    key: "addressSubnets",
    name: "ADDRESS_SUBNETS",
    default: "",
    parse: (v) => v.trim() === "" ? [] : parseAddressSubnets(v),
    description: "Publish this node's global addresses inside these CIDRs (one per family) " +
      "into ADDRESS_ANNOTATION, for hosts whose interface names differ. Needs " +
      "ADDRESS_ANNOTATION and NODE_NAME; not with ADDRESS_INTERFACE.",
  },
  {
    key: "routeAdapter",
    name: "ROUTE_ADAPTER",
    default: "netlink",
    parse: (v) => {
      const t = v.trim();
      const found = ROUTE_ADAPTERS.find((a) => a === t);
      if (!found) throw new Error(`expected ${ROUTE_ADAPTERS.join(" or ")}`);
      return found;
    },
    description: "How routes and addresses are read, written and watched: `netlink` (rtnetlink " +
      "sockets through FFI to libc; no program is run) or `iproute2` (`ip` processes, for hosts " +
      "that forbid FFI).",
  },
];

/** Every environment variable the daemon reads, with default and meaning. */
export const ENV: readonly EnvVar[] = SPECS.map(({ name, default: d, description }) => ({
  name,
  default: d,
  description,
}));

/**
 * Whether the nodes' metadata is all the configuration reads: CIDRs and addresses both from
 * annotations and the own node named. Then lists and watches ask for metadata only, a sixth
 * of a real Node's bytes (spec.podCIDRs, InternalIP and the machine ID are in the rest).
 */
export function readsMetadataOnly(
  cfg: Pick<DaemonConfig, "nodeName" | "cidrAnnotation" | "addressAnnotation">,
): boolean {
  return cfg.nodeName !== "" && cfg.cidrAnnotation !== "" && cfg.addressAnnotation !== "";
}

/**
 * Parses the daemon's environment. Throws {@link ConfigError} naming the first bad variable.
 *
 * @example
 * ```ts
 * const cfg = parseDaemonConfig({ PROTOCOL: "200" });
 * cfg.protocol; // 200
 * ```
 */
export function parseDaemonConfig(env: Env): DaemonConfig {
  const out: Partial<Record<keyof DaemonConfig, unknown>> = {};
  for (const spec of SPECS) {
    const raw = env[spec.name];
    if (spec.key === "httpAddress") continue;
    const value = raw ?? spec.default;
    try {
      out[spec.key] = spec.parse(value, env);
    } catch (e) {
      throw new ConfigError(spec.name, value, (e as Error).message);
    }
  }
  const cfg = out as DaemonConfig;
  cfg.httpAddress = parseHttpAddress(env.HTTP_ADDRESS, cfg.protocol);
  checkWriters(cfg, env);
  return cfg;
}

/** The settings that make an instance write Node annotations need their counterparts. */
function checkWriters(cfg: DaemonConfig, env: Env): void {
  const refuse = (name: string, reason: string) => {
    throw new ConfigError(name, env[name] ?? "", reason);
  };
  if (cfg.clusterCidrs.length > 0) {
    if (cfg.cidrAnnotation === "") {
      refuse(
        "CLUSTER_CIDRS",
        "allocation needs CIDR_ANNOTATION: spec.podCIDRs belongs to kube-controller-manager",
      );
    }
    if (cfg.nodeName === "") {
      refuse("CLUSTER_CIDRS", "allocation needs NODE_NAME (the Lease holder)");
    }
    for (const pool of cfg.clusterCidrs) {
      const why = poolRefusal(pool, cfg);
      if (why) refuse("CLUSTER_CIDRS", `pool ${pool.text} would not be routed: ${why}`);
    }
  }
  for (const name of ["ADDRESS_INTERFACE", "ADDRESS_SUBNETS"]) {
    if ((env[name] ?? "").trim() === "") continue;
    if (cfg.addressAnnotation === "") {
      refuse(name, "publishing an address needs ADDRESS_ANNOTATION (InternalIP is the kubelet's)");
    }
    if (cfg.nodeName === "") refuse(name, "publishing an address needs NODE_NAME");
  }
  if (cfg.addressInterface !== "" && cfg.addressSubnets.length > 0) {
    refuse("ADDRESS_SUBNETS", "set ADDRESS_INTERFACE or ADDRESS_SUBNETS, not both");
  }
}

/**
 * Why the routers would refuse the node CIDRs of `pool`, by the rules each instance applies
 * to a node's CIDR (routing/check.ts), or undefined. The pool itself must be inside
 * ALLOWED_CIDRS and clear of the special ranges; the minimum prefix is a node CIDR's. The
 * rule on this host's own networks is left to run time: only the host knows them.
 */
function poolRefusal(pool: Pool, cfg: DaemonConfig): string | undefined {
  const rules: PlanRules = {
    selfName: "",
    allowedCidrs: cfg.allowedCidrs,
    minPrefixV4: cfg.minPrefixV4,
    minPrefixV6: cfg.minPrefixV6,
  };
  const whole = refuseCidr(pool.cidr, { ...rules, minPrefixV4: 0, minPrefixV6: 0 }, []);
  if (whole) return whole;
  const node = refuseCidr(makeCidr(pool.family, pool.cidr.value, pool.nodePrefix), rules, []);
  return node && `node CIDR ${node}`;
}

/** The network's allocation Lease: named after its CIDR annotation, a DNS subdomain. */
export function leaseName(cidrAnnotation: string): string {
  return `xcluster-cni-${cidrAnnotation.toLowerCase().replace(/[^a-z0-9.-]+/g, "-")}`
    .replace(/[-.]+$/, "").slice(0, 253);
}

function parseHttpAddress(raw: string | undefined, protocol: number): string {
  const value = raw?.trim() ?? "";
  if (value === "off") return "off";
  if (value === "") return `0.0.0.0:${HTTP_PORT_BASE + protocol}`;
  // An IP literal or nothing: a name would be resolved (or fail) only when listening.
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([0-9]{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : 0;
  const [v6, v4] = [m?.[1], m?.[2]];
  const hostOk = v6 !== undefined
    ? v6.includes(":") && parseIp(v6) !== undefined
    : v4 === "" || (v4 !== undefined && parseIp(v4) !== undefined);
  if (!m || !hostOk || port < 1 || port > 65535) {
    throw new ConfigError(
      "HTTP_ADDRESS",
      value,
      "expected IPv4:port, [IPv6]:port, :port (port 1-65535) or off",
    );
  }
  return `${v6 !== undefined ? `[${v6}]` : v4 || "0.0.0.0"}:${port}`;
}

/** Text of the allowed CIDRs, for logs and `nodes`. */
export function describeAllowed(cfg: DaemonConfig): string {
  return cfg.allowedCidrs.map(formatCidr).join(",");
}
