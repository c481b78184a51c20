/**
 * The kube-node network config read from stdin, with the IPAM keys of Nordix kube-node
 * (`annotation`, `dataDir`, `kubeconfig`, `ipv4-namespaces`, `logfile`, `loglevel`) plus
 * `stateDir`, where the daemon's node state files are.
 *
 * Checked by hand (./shape.ts), not with zod: start-up time is paid on every CNI exec.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";
import { Checker, type Obj, type Path, pathText, rest } from "./shape.ts";
import { parseLevel } from "../src/log.ts";

/** The `ipam` object of a kube-node network config. Unknown keys are kept. */
export interface KubeNodeIpam {
  type: "kube-node";
  /** Node annotation with this network's CIDRs; "" (default): spec.podCIDRs. */
  annotation: string;
  /** host-local's dataDir; host-local's default when absent. */
  dataDir?: string;
  /** kubeconfig for the API fallback (when no node state file is there). */
  kubeconfig?: string;
  /** When present, only pods in these namespaces get IPv4 addresses. */
  "ipv4-namespaces"?: string[];
  logfile?: string;
  /** error, warn, info, debug, trace or a number (see parseLevel). */
  loglevel?: string;
  /** Folder of the daemon's node state files; DEFAULT_STATE_DIR when absent. */
  stateDir?: string;
  [key: string]: unknown;
}

/** A parsed kube-node network config (one plugin's config, as the runtime hands it). */
export interface KubeNodeNetConf {
  cniVersion: string;
  name: string;
  isDefaultGateway?: boolean;
  ipam: KubeNodeIpam;
  [key: string]: unknown;
}

/** The keys of `ipam` that are ours and not host-local's. */
export const KUBE_NODE_KEYS = [
  "annotation",
  "kubeconfig",
  "ipv4-namespaces",
  "logfile",
  "loglevel",
  "stateDir",
] as const;

const IPAM_KEYS: readonly string[] = ["type", ...KUBE_NODE_KEYS, "dataDir"];
const NET_KEYS = ["cniVersion", "name", "isDefaultGateway", "ipam"];

/**
 * The keys whose misspellings are worth a warning: ours, and `dataDir`, which we check
 * before host-local gets it. Not `type`: it is required, so a misspelled `type` is already
 * an error, and two edits from a 4-letter word cover unrelated words (`time`, `size`).
 */
const SPELLED_KEYS: readonly string[] = [...KUBE_NODE_KEYS, "dataDir"];

/** At most this many edits from one of our keys, a key is taken for its misspelling. */
export const MAX_KEY_EDITS = 2;

/**
 * The Levenshtein distance: how many single-character insertions, deletions and
 * substitutions turn `a` into `b`.
 *
 * @example
 * ```ts
 * editDistance("anotation", "annotation"); // 1
 * ```
 */
export function editDistance(a: string, b: string): number {
  // One row of the table at a time: row i holds the distances from a[0..i) to each b[0..j).
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitute = prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min(prev[j] + 1, row[j - 1] + 1, substitute));
    }
    prev = row;
  }
  return prev[b.length];
}

/**
 * The kube-node `ipam` key that `key` looks like a misspelling of: equal but for case, or
 * at most {@link MAX_KEY_EDITS} edits away (case ignored); the nearest, the first listed on
 * a tie. Undefined for a key we know (ours, `type`, `dataDir`) and for one that resembles
 * none, such as host-local's `routes` or another plugin's key. Pure.
 *
 * @example
 * ```ts
 * resemblesIpamKey("anotation"); // "annotation"
 * resemblesIpamKey("stateDIR"); // "stateDir"
 * resemblesIpamKey("routes"); // undefined
 * ```
 */
export function resemblesIpamKey(key: string): string | undefined {
  if (IPAM_KEYS.includes(key)) return undefined;
  const lower = key.toLowerCase();
  let nearest: string | undefined;
  let distance = MAX_KEY_EDITS + 1;
  for (const known of SPELLED_KEYS) {
    const d = editDistance(lower, known.toLowerCase());
    if (d < distance) [nearest, distance] = [known, d];
  }
  return nearest;
}

/** An `ipam` key that is not ours but looks like one of ours. */
export interface MisspelledKey {
  /** The key as written. */
  key: string;
  /** Our key it resembles. */
  resembles: string;
}

/**
 * The keys of an `ipam` object that look like misspellings of ours, in input order (see
 * {@link resemblesIpamKey}). They are kept and passed to host-local as any unknown key;
 * kube-node itself ignores them, so the key meant takes its default.
 */
export function misspelledIpamKeys(ipam: Readonly<Record<string, unknown>>): MisspelledKey[] {
  const out: MisspelledKey[] = [];
  for (const key of Object.keys(ipam)) {
    const resembles = resemblesIpamKey(key);
    if (resembles !== undefined) out.push({ key, resembles });
  }
  return out;
}

/** Copies the defined entries of `known` (in order), then `extra`: the parsed object. */
function assemble<T>(known: Obj, extra: Obj): T {
  const out: Obj = {};
  for (const [k, v] of Object.entries(known)) if (v !== undefined) out[k] = v;
  return Object.assign(out, extra) as T;
}

function checkIpam(c: Checker, value: unknown): KubeNodeIpam | undefined {
  const ipam = c.object(value, ["ipam"]);
  if (ipam === undefined) return undefined;
  const at = (key: string): Path => ["ipam", key];
  const before = c.issues.length;
  if (ipam.type !== "kube-node") c.fail(at("type"), 'Invalid input: expected "kube-node"');
  const annotation = ipam.annotation === undefined
    ? ""
    : c.string(ipam.annotation, at("annotation"));
  const dataDir = c.optionalString(ipam.dataDir, at("dataDir"), true);
  const kubeconfig = c.optionalString(ipam.kubeconfig, at("kubeconfig"), true);
  const namespaces = c.optionalStrings(ipam["ipv4-namespaces"], at("ipv4-namespaces"));
  const logfile = c.optionalString(ipam.logfile, at("logfile"));
  const loglevel = c.optionalString(ipam.loglevel, at("loglevel"));
  if (loglevel !== undefined && parseLevel(loglevel) === undefined) {
    c.fail(at("loglevel"), "expected error, warn, info, debug, trace or a number");
  }
  const stateDir = c.optionalString(ipam.stateDir, at("stateDir"), true);
  if (c.issues.length > before) return undefined;
  return assemble<KubeNodeIpam>({
    type: "kube-node",
    annotation,
    dataDir,
    kubeconfig,
    "ipv4-namespaces": namespaces,
    logfile,
    loglevel,
    stateDir,
  }, rest(ipam, IPAM_KEYS));
}

function valueAt(root: unknown, path: Path): unknown {
  let v: unknown = root;
  for (const key of path) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<PropertyKey, unknown>)[key];
  }
  return v;
}

function show(value: unknown): string {
  if (value === undefined) return "missing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 80)}...` : text;
}

/**
 * Parses a decoded network config. Throws code 7 (invalid network config) naming the
 * first bad field and its value; the details list every bad field.
 *
 * @example
 * ```ts
 * parseKubeNodeConfig({ cniVersion: "1.0.0", name: "n", ipam: { type: "kube-node" } })
 *   .ipam.annotation; // ""
 * ```
 */
export function parseKubeNodeConfig(raw: Record<string, unknown>): KubeNodeNetConf {
  const c = new Checker();
  const cniVersion = c.string(raw.cniVersion, ["cniVersion"]);
  const name = c.string(raw.name, ["name"], true);
  const isDefaultGateway = c.optionalBoolean(raw.isDefaultGateway, ["isDefaultGateway"]);
  const ipam = checkIpam(c, raw.ipam);
  if (c.issues.length === 0) {
    return assemble<KubeNodeNetConf>(
      { cniVersion, name, isDefaultGateway, ipam },
      rest(raw, NET_KEYS),
    );
  }
  const issues = c.issues.map((issue) =>
    `${pathText(issue.path) || "(config)"}: ${issue.message} ` +
    `(value ${show(valueAt(raw, issue.path))})`
  );
  throw new CniError(
    CniCode.InvalidConfig,
    `invalid network config: ${issues[0]}`,
    issues.join("; "),
  );
}
