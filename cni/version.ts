/**
 * CNI versions: which ones we implement, the VERSION answer, and converting a result to the
 * version the runtime asked for.
 *
 * Results of 0.3.0, 0.3.1 and 0.4.0 carry `"version": "4"|"6"` in every `ips` entry;
 * results of 1.0.0 and 1.1.0 do not. Everything else in the shapes we produce is the same.
 *
 * Results are checked by hand (./shape.ts), not with zod: start-up time is paid on every
 * CNI exec.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";
import { Checker, type Issue, type Obj, pathText, rest } from "./shape.ts";
import { parseCidr } from "../src/net/ip.ts";

/** The CNI versions this plugin implements, oldest first. */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;

/** The newest supported version; used for VERSION and errors when none was asked for. */
export const LATEST_VERSION = "1.1.0";

/** One supported version. */
export type CniVersion = typeof SUPPORTED_VERSIONS[number];

/** Whether `v` is a version we implement. */
export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/**
 * Compares two dotted versions numerically: negative when a < b, 0 when equal.
 *
 * @example
 * ```ts
 * compareVersions("0.4.0", "1.0.0") < 0; // true
 * ```
 */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Checks that the config's version is implemented; throws code 1 naming the version
 * and the supported ones otherwise.
 */
export function requireSupportedVersion(v: string): CniVersion {
  if (isSupportedVersion(v)) return v;
  throw new CniError(
    CniCode.IncompatibleVersion,
    `incompatible CNI version ${JSON.stringify(v)}`,
    `supported versions: ${SUPPORTED_VERSIONS.join(", ")}`,
  );
}

/** The VERSION command's answer. */
export interface VersionInfo {
  cniVersion: string;
  supportedVersions: string[];
}

/**
 * The answer to VERSION: the version asked for when we implement it (else the latest),
 * and all supported versions.
 */
export function versionInfo(asked?: string): VersionInfo {
  return {
    cniVersion: asked !== undefined && isSupportedVersion(asked) ? asked : LATEST_VERSION,
    supportedVersions: [...SUPPORTED_VERSIONS],
  };
}

/** Whether results of version `v` carry a `version` field in `ips`. */
export function ipsHaveVersion(v: string): boolean {
  return compareVersions(v, "1.0.0") < 0;
}

/** One entry of a result's `ips`. Unknown keys are kept. */
export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
  version?: "4" | "6";
  [key: string]: unknown;
}

/** A CNI ADD result (any supported version), parsed loosely: unknown keys are kept. */
export interface CniResult {
  cniVersion: string;
  interfaces?: unknown[];
  ips?: CniIpConfig[];
  routes?: unknown[];
  dns?: unknown;
  [key: string]: unknown;
}

const IP_KEYS = ["address", "gateway", "interface", "version"];
const RESULT_KEYS = ["cniVersion", "interfaces", "ips", "routes", "dns"];

/** The defined entries of `known` in order, then `extra`. */
function assemble(known: Obj, extra: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(known)) if (v !== undefined) out[k] = v;
  return Object.assign(out, extra);
}

function checkIp(c: Checker, value: unknown, i: number): CniIpConfig | undefined {
  const at = (key: string) => ["ips", i, key];
  const ip = c.object(value, ["ips", i]);
  if (ip === undefined) return undefined;
  const before = c.issues.length;
  const address = c.string(ip.address, at("address"));
  const gateway = c.optionalString(ip.gateway, at("gateway"));
  const iface = c.optionalInt(ip.interface, at("interface"));
  const version = ip.version;
  if (version !== undefined && version !== "4" && version !== "6") {
    c.fail(at("version"), 'Invalid option: expected one of "4"|"6"');
  }
  if (c.issues.length > before) return undefined;
  return assemble(
    { address, gateway, interface: iface, version },
    rest(ip, IP_KEYS),
  ) as CniIpConfig;
}

/** Checks `raw` as a CNI result; the issues found when it is not one. */
function parseResult(raw: unknown): CniResult | Issue[] {
  const c = new Checker();
  const r = c.object(raw, []);
  if (r === undefined) return c.issues;
  const cniVersion = c.string(r.cniVersion, ["cniVersion"]);
  const interfaces = c.optionalArray(r.interfaces, ["interfaces"]);
  const rawIps = c.optionalArray(r.ips, ["ips"]);
  const ips = rawIps?.map((ip, i) => checkIp(c, ip, i));
  const routes = c.optionalArray(r.routes, ["routes"]);
  if (c.issues.length > 0) return c.issues;
  return assemble(
    { cniVersion, interfaces, ips, routes, dns: r.dns },
    rest(r, RESULT_KEYS),
  ) as CniResult;
}

/**
 * Converts an ADD result (0.3.0 ... 1.1.0) to version `to`: adds or drops the `version`
 * field of every IP and stamps `cniVersion`. Throws code 1 when the result cannot be read.
 *
 * @example
 * ```ts
 * convertResult({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24" }] }, "0.4.0");
 * // { cniVersion: "0.4.0", ips: [{ address: "10.0.0.2/24", version: "4" }] }
 * ```
 */
export function convertResult(raw: unknown, to: CniVersion): CniResult {
  const parsed = parseResult(raw);
  if (Array.isArray(parsed)) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `cannot convert result to version ${to}: not a CNI result`,
      parsed.map((i) => `${pathText(i.path)}: ${i.message}`).join("; "),
    );
  }
  const result: CniResult = { ...parsed, cniVersion: to };
  if (result.ips) {
    const withVersion = ipsHaveVersion(to);
    result.ips = result.ips.map((ip) => {
      const { version: _drop, ...rest } = ip;
      if (!withVersion) return rest;
      const cidr = parseCidr(ip.address);
      if (!cidr.ok) {
        throw new CniError(
          CniCode.IncompatibleVersion,
          `cannot convert result to version ${to}: bad address ${JSON.stringify(ip.address)}`,
          cidr.reason,
        );
      }
      return { ...rest, version: String(cidr.cidr.family) as "4" | "6" };
    });
  }
  return result;
}
