/**
 * CNI errors: the well-known codes of the CNI specification and the error JSON a plugin
 * prints on stdout (with exit status 1) when a command fails.
 *
 * Codes follow the CNI specification (SPEC.md, "Error"): 4 is *invalid necessary
 * environment variables* and 7 is *invalid network config*. Codes from 100 up are this
 * plugin's own.
 *
 * @module
 */

/** The well-known error codes of the CNI specification, plus this plugin's own (100+). */
export const CniCode = {
  /** The config's cniVersion is not one we implement. */
  IncompatibleVersion: 1,
  /** A field in the network config is not supported; the message names key and value. */
  UnsupportedField: 2,
  /** The container is unknown or does not exist. */
  UnknownContainer: 3,
  /** A needed environment variable (CNI_COMMAND, CNI_CONTAINERID, ...) is missing or bad. */
  InvalidEnvironment: 4,
  /** Reading or writing a file failed. */
  IoFailure: 5,
  /** stdin could not be decoded (not JSON). */
  DecodingFailure: 6,
  /** The network config is invalid; the message names the field and the value. */
  InvalidConfig: 7,
  /** A transient condition: the runtime should retry later. */
  TryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now. */
  NotAvailable: 50,
  /** The node's CIDRs cannot be handed to host-local (too small, overlapping, ...). */
  UnusableRanges: 100,
  /** The delegated IPAM plugin (host-local) could not be found or run. */
  DelegateFailed: 101,
} as const;

/** One of the codes above (or any other number a delegate returned). */
export type CniCodeValue = number;

/**
 * An error to report to the runtime as CNI error JSON.
 *
 * @example
 * ```ts
 * throw new CniError(CniCode.InvalidConfig, "ipam.type: expected \"kube-node\"", "got \"foo\"");
 * ```
 */
export class CniError extends Error {
  constructor(
    readonly code: CniCodeValue,
    msg: string,
    readonly details: string = "",
  ) {
    super(msg);
    this.name = "CniError";
  }
}

/** The error object printed on stdout. */
export interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

/**
 * Builds the CNI error object for `err` in `cniVersion`. An error that is not a
 * {@link CniError} becomes code 999 (generic) with its message, so nothing is lost.
 */
export function toErrorJson(cniVersion: string, err: unknown): CniErrorJson {
  if (err instanceof CniError) {
    const out: CniErrorJson = { cniVersion, code: err.code, msg: err.message };
    if (err.details !== "") out.details = err.details;
    return out;
  }
  const msg = err instanceof Error ? err.message : String(err);
  return { cniVersion, code: 999, msg };
}
