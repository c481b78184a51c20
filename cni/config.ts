/**
 * The kube-node network config read from stdin, with the IPAM keys of Nordix kube-node
 * (`annotation`, `dataDir`, `kubeconfig`, `ipv4-namespaces`, `logfile`, `loglevel`) plus
 * `stateDir`, where the daemon's node state files are.
 *
 * @module
 */
import { z } from "zod";
import { CniCode, CniError } from "./errors.ts";
import { parseLevel } from "../src/log.ts";

/** The `ipam` object of a kube-node network config. Unknown keys are kept. */
export const KubeNodeIpamSchema = z.object({
  type: z.literal("kube-node"),
  /** Node annotation with this network's CIDRs; "" (default): spec.podCIDRs. */
  annotation: z.string().default(""),
  /** host-local's dataDir; host-local's default when absent. */
  dataDir: z.string().min(1).optional(),
  /** kubeconfig for the API fallback (when no node state file is there). */
  kubeconfig: z.string().min(1).optional(),
  /** When present, only pods in these namespaces get IPv4 addresses. */
  "ipv4-namespaces": z.array(z.string()).optional(),
  logfile: z.string().optional(),
  loglevel: z.string().refine((v) => parseLevel(v) !== undefined, {
    message: "expected error, warn, info, debug, trace or a number",
  }).optional(),
  /** Folder of the daemon's node state files; DEFAULT_STATE_DIR when absent. */
  stateDir: z.string().min(1).optional(),
}).loose();

/** The network config (one plugin's config, as the runtime hands it). */
export const KubeNodeNetConfSchema = z.object({
  cniVersion: z.string(),
  name: z.string().min(1),
  isDefaultGateway: z.boolean().optional(),
  ipam: KubeNodeIpamSchema,
}).loose();

/** A parsed kube-node network config. */
export type KubeNodeNetConf = z.infer<typeof KubeNodeNetConfSchema>;
/** A parsed kube-node `ipam` object. */
export type KubeNodeIpam = z.infer<typeof KubeNodeIpamSchema>;

/** The keys of `ipam` that are ours and not host-local's. */
export const KUBE_NODE_KEYS = [
  "annotation",
  "kubeconfig",
  "ipv4-namespaces",
  "logfile",
  "loglevel",
  "stateDir",
] as const;

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
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
 * first bad field and its value.
 *
 * @example
 * ```ts
 * parseKubeNodeConfig({ cniVersion: "1.0.0", name: "n", ipam: { type: "kube-node" } })
 *   .ipam.annotation; // ""
 * ```
 */
export function parseKubeNodeConfig(raw: Record<string, unknown>): KubeNodeNetConf {
  const parsed = KubeNodeNetConfSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => {
    const field = issue.path.map(String).join(".") || "(config)";
    return `${field}: ${issue.message} (value ${show(valueAt(raw, issue.path))})`;
  });
  throw new CniError(
    CniCode.InvalidConfig,
    `invalid network config: ${issues[0]}`,
    issues.join("; "),
  );
}
