/**
 * coordination.k8s.io/v1 Lease objects, parsed at the border. Members the schema does not
 * name are kept (labels, owner references, managed fields...), so that an update sends the
 * object back whole, as a typed client would.
 *
 * @example
 * ```ts
 * const lease = LeaseSchema.parse(await res.json());
 * lease.spec?.holderIdentity; // "vm-001"
 * ```
 *
 * @module
 */
import { z } from "zod";

/** LeaseSpec: who holds the lease, for how long, since when. */
export const LeaseSpecSchema = z.object({
  holderIdentity: z.string().nullish(),
  leaseDurationSeconds: z.number().int().nullish(),
  /** MicroTime: RFC 3339 with six fractional digits ({@link formatMicroTime}). */
  acquireTime: z.string().nullish(),
  renewTime: z.string().nullish(),
  leaseTransitions: z.number().int().nullish(),
  strategy: z.string().nullish(),
  preferredHolder: z.string().nullish(),
}).loose();

/** A Lease object. */
export const LeaseSchema = z.object({
  apiVersion: z.string().optional(),
  kind: z.string().optional(),
  metadata: z.object({
    name: z.string().min(1),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    creationTimestamp: z.string().optional(),
    labels: z.record(z.string(), z.string()).nullish(),
    annotations: z.record(z.string(), z.string()).nullish(),
  }).loose(),
  spec: LeaseSpecSchema.nullish(),
}).loose();

/** A parsed Lease. */
export type Lease = z.infer<typeof LeaseSchema>;

/** A parsed LeaseSpec. */
export type LeaseSpec = z.infer<typeof LeaseSpecSchema>;

/**
 * One event of a watch of Leases: a whole Lease for ADDED, MODIFIED and DELETED (its last
 * state), only a resourceVersion for a BOOKMARK (where to watch from next), a Status for an
 * ERROR (410 Expired when the version to watch from is gone).
 */
export const LeaseWatchEventSchema = z.discriminatedUnion("type", [
  z.object({ type: z.enum(["ADDED", "MODIFIED", "DELETED"]), object: LeaseSchema }),
  z.object({
    type: z.literal("BOOKMARK"),
    object: z.object({
      metadata: z.object({ resourceVersion: z.string().min(1) }).loose(),
    }).loose(),
  }),
  z.object({ type: z.literal("ERROR"), object: z.unknown() }),
]);

/** A parsed watch event of Leases. */
export type LeaseWatchEvent = z.infer<typeof LeaseWatchEventSchema>;

/** What a watch of one Lease asks for. */
export interface LeaseWatchOptions {
  /** The Lease's name (the watch's fieldSelector is `metadata.name=NAME`). */
  name: string;
  /** Events after this version; a version the server no longer has is a 410 Expired. */
  resourceVersion: string;
  /**
   * The server ends the watch after this long: a normal end, upon which the caller watches
   * again from the last version it saw.
   */
  timeoutSeconds?: number;
  signal?: AbortSignal;
}

/**
 * A time as a MicroTime, the form of a Lease's acquireTime and renewTime
 * ("2006-01-02T15:04:05.000000Z07:00", in UTC).
 *
 * @example
 * ```ts
 * formatMicroTime(Date.UTC(2026, 0, 2, 3, 4, 5, 678)); // "2026-01-02T03:04:05.678000Z"
 * ```
 */
export function formatMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}
