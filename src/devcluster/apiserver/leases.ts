/**
 * coordination.k8s.io/v1 Leases: their validation as kube-apiserver does it (typed spec
 * fields, MicroTime timestamps, the ranges of the counters) and their store.
 *
 * @example
 * ```ts
 * const leases = new LeaseStore();
 * leases.create("kube-system", { metadata: { name: "net3" }, spec: { holderIdentity: "a" } });
 * leases.get("kube-system", "net3")?.spec.holderIdentity; // "a"
 * ```
 *
 * @module
 */
import {
  type KindInfo,
  type ObjectJson,
  ObjectStore,
  type PatchType,
  type Preconditions,
  type Revision,
  type WriteOptions,
} from "./object_store.ts";
import { badRequest, invalid, type ResourceNames } from "./status.ts";
import { checkObject, isObject, METADATA_FIELDS } from "./validation.ts";

/** Leases, as errors name them. */
export const LEASE_NAMES: ResourceNames = {
  kind: "Lease",
  plural: "leases",
  group: "coordination.k8s.io",
};

/** The spec of a stored Lease: every field optional, timestamps as MicroTime. */
export interface LeaseSpecJson {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  /** MicroTime: RFC 3339 in UTC with six fractional digits. */
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
  strategy?: string;
  preferredHolder?: string;
}

/** A Lease object as stored (plain JSON). */
export type LeaseJson = ObjectJson & { spec: LeaseSpecJson };

type FieldType = "string" | "int32" | "microtime";

/** The fields of LeaseSpec in the order the real server writes them. */
const SPEC_FIELDS: readonly [keyof LeaseSpecJson, FieldType][] = [
  ["holderIdentity", "string"],
  ["leaseDurationSeconds", "int32"],
  ["acquireTime", "microtime"],
  ["renewTime", "microtime"],
  ["leaseTransitions", "int32"],
  ["strategy", "string"],
  ["preferredHolder", "string"],
];

/** The one strategy the real server knows (behind a feature gate). */
const STRATEGIES = ["OldestEmulationVersion"];

const MICRO_TIME =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{3})(\d{3})(Z|[+-]\d{2}:\d{2})$/;

/**
 * A MicroTime ("2006-01-02T15:04:05.000000Z07:00", exactly six fractional digits, as Go's
 * parser demands with that layout) in the form the server writes: UTC, six digits.
 * Undefined when the text is not one.
 */
export function normalizeMicroTime(text: string): string | undefined {
  const m = MICRO_TIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, ms, us, zone] = m;
  const last = new Date(0);
  last.setUTCFullYear(Number(y), Number(mo), 0);
  const days = last.getUTCDate();
  if (
    Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > days ||
    Number(h) > 23 || Number(mi) > 59 || Number(s) > 59
  ) return undefined;
  if (zone !== "Z" && (Number(zone.slice(1, 3)) > 23 || Number(zone.slice(4)) > 59)) {
    return undefined;
  }
  const t = Date.parse(`${y}-${mo}-${d}T${h}:${mi}:${s}.${ms}${zone}`);
  if (Number.isNaN(t)) return undefined;
  return new Date(t).toISOString().replace(/Z$/, `${us}Z`);
}

/** 400, as the real server's decoder answers a field of the wrong type. */
function wrongType(field: string, want: string, value: unknown): never {
  throw badRequest(
    `Lease in version "v1" cannot be handled as a Lease: ${field}: expected ${want}, got ` +
      JSON.stringify(value),
  );
}

function checkField(field: string, type: FieldType, value: unknown): string | number {
  if (type === "string") {
    if (typeof value !== "string") wrongType(field, "a string", value);
    return value;
  }
  if (type === "int32") {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      wrongType(field, "an integer", value);
    }
    if (value < -(2 ** 31) || value >= 2 ** 31) wrongType(field, "an int32", value);
    return value;
  }
  const time = typeof value === "string" ? normalizeMicroTime(value) : undefined;
  if (time === undefined) {
    wrongType(field, 'a MicroTime "2006-01-02T15:04:05.000000Z07:00"', value);
  }
  return time;
}

const SPEC_KEYS = new Set<string>(SPEC_FIELDS.map(([k]) => k));

/**
 * The spec as stored: known fields typed and in order, nulls dropped (as Go's pointers).
 * The paths of unknown fields are added to `unknown`.
 */
function checkSpec(raw: unknown, unknown: string[]): LeaseSpecJson | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) wrongType("spec", "an object", raw);
  for (const k of Object.keys(raw)) if (!SPEC_KEYS.has(k)) unknown.push(`spec.${k}`);
  const spec: Record<string, string | number> = {};
  for (const [key, type] of SPEC_FIELDS) {
    const v = raw[key];
    if (v !== undefined && v !== null) spec[key] = checkField(`spec.${key}`, type, v);
  }
  return spec as LeaseSpecJson;
}

/** The checks of ValidateLeaseSpec. */
function validateSpec(name: string, spec: LeaseSpecJson): void {
  const fail = (field: string, message: string) => {
    throw invalid(name, `spec.${field}`, message, LEASE_NAMES);
  };
  const d = spec.leaseDurationSeconds;
  if (d !== undefined && d <= 0) {
    fail("leaseDurationSeconds", `Invalid value: ${d}: must be greater than 0`);
  }
  const t = spec.leaseTransitions;
  if (t !== undefined && t < 0) {
    fail("leaseTransitions", `Invalid value: ${t}: must be greater than or equal to 0`);
  }
  if (spec.strategy && !STRATEGIES.includes(spec.strategy)) {
    fail(
      "strategy",
      `Unsupported value: ${JSON.stringify(spec.strategy)}: supported values: ` +
        STRATEGIES.map((s) => JSON.stringify(s)).join(", "),
    );
  }
  if (spec.preferredHolder && !spec.strategy) {
    fail("preferredHolder", "Forbidden: may only be specified if `strategy` is defined");
  }
}

/**
 * A Lease as the server stores it: typed, normalized, unknown fields dropped (a 400 naming
 * them under `strict`), then checked as ValidateLease does.
 */
function validateLease(body: unknown, nameHint: string, opts: WriteOptions): LeaseJson {
  const obj = checkObject(body, LEASE_KIND, nameHint);
  const unknown: string[] = [];
  for (const k of Object.keys(obj)) {
    if (!["kind", "apiVersion", "metadata", "spec"].includes(k)) unknown.push(k);
  }
  for (const k of Object.keys(obj.metadata)) {
    if (!METADATA_FIELDS.has(k)) unknown.push(`metadata.${k}`);
  }
  const spec = checkSpec(obj.spec, unknown);
  if (unknown.length > 0 && opts.strict) {
    throw badRequest(
      `strict decoding error: ${
        unknown.map((f) => `unknown field ${JSON.stringify(f)}`).join(", ")
      }`,
    );
  }
  const metadata = { ...obj.metadata };
  for (const k of Object.keys(metadata)) if (!METADATA_FIELDS.has(k)) delete metadata[k];
  // The spec is a struct, not a pointer, in the real types: it is always written.
  const lease: LeaseJson = {
    kind: LEASE_KIND.kind,
    apiVersion: LEASE_KIND.apiVersion,
    metadata,
    spec: spec ?? {},
  };
  if (spec !== undefined) validateSpec(metadata.name, spec);
  return lease;
}

const LEASE_KIND: KindInfo = {
  ...LEASE_NAMES,
  apiVersion: "coordination.k8s.io/v1",
  namespaced: true,
  statusSubresource: false,
  createOnUpdate: true,
  validate: validateLease,
};

/** The Leases of the embedded API server, in any namespace. */
export class LeaseStore extends ObjectStore<LeaseJson> {
  constructor(
    opts: {
      historySize?: number;
      leases?: LeaseJson[];
      /** The server's counter, shared with its other kinds. */
      revision?: Revision;
    } = {},
  ) {
    super(LEASE_KIND, { ...opts, objects: opts.leases });
  }

  /** One lease, or undefined. */
  get(namespace: string, name: string): LeaseJson | undefined {
    return this.storedIn(namespace, name)?.obj;
  }

  /** The leases of a namespace, or of all, in namespace and name order. */
  list(namespace?: string): LeaseJson[] {
    return this.listIn(namespace);
  }

  /** Creates a lease: 409 if it exists, 400 or 422 if invalid. */
  create(namespace: string, body: unknown, opts: WriteOptions = {}): LeaseJson {
    return this.createIn(namespace, body, opts);
  }

  /**
   * Replaces a lease (creates it when absent and the body sets no resourceVersion, as the
   * real server does for Leases). A set metadata.resourceVersion must be the current one.
   */
  update(namespace: string, name: string, body: unknown, opts: WriteOptions = {}): LeaseJson {
    return this.updateIn(namespace, name, body, "all", opts);
  }

  /** Patches a lease with the given patch type. */
  patch(
    namespace: string,
    name: string,
    type: PatchType,
    patch: unknown,
    opts: WriteOptions = {},
  ): LeaseJson {
    return this.patchIn(namespace, name, type, patch, "all", opts);
  }

  /** Deletes a lease: 404 when absent, 409 when a precondition fails. Returns its last state. */
  delete(namespace: string, name: string, pre: Preconditions = {}): LeaseJson {
    return this.deleteIn(namespace, name, pre);
  }
}
