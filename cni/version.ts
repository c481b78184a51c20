/**
 * CNI versions: which ones we implement, the VERSION answer, and converting a result to the
 * version the runtime asked for.
 *
 * Results of 0.3.0, 0.3.1 and 0.4.0 carry `"version": "4"|"6"` in every `ips` entry;
 * results of 1.0.0 and 1.1.0 do not. Everything else in the shapes we produce is the same.
 *
 * @module
 */
import { z } from "zod";
import { CniCode, CniError } from "./errors.ts";
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

const IpConfigSchema = z.object({
  address: z.string(),
  gateway: z.string().optional(),
  interface: z.number().int().optional(),
  version: z.enum(["4", "6"]).optional(),
}).loose();

const ResultSchema = z.object({
  cniVersion: z.string(),
  interfaces: z.array(z.unknown()).optional(),
  ips: z.array(IpConfigSchema).optional(),
  routes: z.array(z.unknown()).optional(),
  dns: z.unknown().optional(),
}).loose();

/** A CNI ADD result (any supported version), parsed loosely: unknown keys are kept. */
export type CniResult = z.infer<typeof ResultSchema>;

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
  const parsed = ResultSchema.safeParse(raw);
  if (!parsed.success) {
    throw new CniError(
      CniCode.IncompatibleVersion,
      `cannot convert result to version ${to}: not a CNI result`,
      parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
    );
  }
  const result: CniResult = { ...parsed.data, cniVersion: to };
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
