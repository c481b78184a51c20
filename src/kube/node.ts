/**
 * The part of a Kubernetes Node that the router and the IPAM read, parsed at the border.
 *
 * A real Node object is 10-20 KB (images, conditions, managed fields); a cluster has up to
 * 5,000 of them. Only the projection below is kept in memory.
 *
 * @module
 */
import { z } from "zod";
import type { Fields } from "./json_list.ts";

/** The fields of a Node object that are read; everything else is dropped by parsing. */
export const NodeObjectSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    resourceVersion: z.string().optional(),
    creationTimestamp: z.string().optional(),
    annotations: z.record(z.string(), z.string()).nullish(),
  }),
  spec: z.object({
    podCIDR: z.string().optional(),
    podCIDRs: z.array(z.string()).nullish(),
  }).partial().nullish(),
  status: z.object({
    addresses: z.array(z.object({ type: z.string(), address: z.string() })).nullish(),
    nodeInfo: z.object({ machineID: z.string().optional() }).partial().nullish(),
  }).partial().nullish(),
});

/** The members a schema reads, as {@link Fields}: objects member by member, the rest whole. */
function fieldsOf(schema: z.ZodType): Fields {
  let s = schema;
  while (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
  if (!(s instanceof z.ZodObject)) return true;
  const out: Record<string, Fields> = {};
  for (const [key, member] of Object.entries(s.shape)) out[key] = fieldsOf(member as z.ZodType);
  return out;
}

/**
 * The members of a Node that {@link toNodeInfo} reads, taken from {@link NodeObjectSchema},
 * for lists that parse only those (see `pickFields` in json_list.ts).
 */
export const NODE_FIELDS = fieldsOf(NodeObjectSchema) as Exclude<Fields, true>;

/** A parsed Node object, still carrying all annotations. */
export type NodeObject = z.infer<typeof NodeObjectSchema>;

/**
 * What is kept of a Node: enough to plan routes, find our own node, and order claims. No
 * resourceVersion, so that an update touching nothing kept compares equal.
 */
export interface NodeInfo {
  readonly name: string;
  /** RFC 3339; the older node keeps a contested CIDR. */
  readonly creationTimestamp: string;
  readonly podCIDRs: readonly string[];
  /** `InternalIP` addresses, in the order the node lists them. */
  readonly internalIPs: readonly string[];
  readonly machineID: string;
  /** Only the annotations asked for (the instance's CIDR and address annotations). */
  readonly annotations: Readonly<Record<string, string>>;
}

/**
 * Projects a raw Node object to a {@link NodeInfo}, keeping only the named annotations.
 * Throws a ZodError naming the field when the object is not a Node.
 */
export function toNodeInfo(raw: unknown, keepAnnotations: readonly string[]): NodeInfo {
  const node = NodeObjectSchema.parse(pick(raw, keepAnnotations));
  const annotations: Record<string, string> = {};
  const all = node.metadata.annotations ?? {};
  for (const key of keepAnnotations) {
    if (key !== "" && Object.hasOwn(all, key)) annotations[key] = all[key];
  }
  const podCIDRs = node.spec?.podCIDRs ??
    (node.spec?.podCIDR ? [node.spec.podCIDR] : NONE);
  const internalIPs = (node.status?.addresses ?? [])
    .filter((a) => a.type === "InternalIP")
    .map((a) => a.address);
  return {
    name: node.metadata.name,
    creationTimestamp: node.metadata.creationTimestamp ?? "",
    podCIDRs: podCIDRs.length === 0 ? NONE : podCIDRs,
    internalIPs: internalIPs.length === 0 ? NONE : internalIPs,
    machineID: node.status?.nodeInfo?.machineID ?? "",
    annotations,
  };
}

/**
 * One empty list for every node without the field: with metadata-only reads, that is all
 * of them, and each node is kept (5,000 empty arrays are a quarter of a megabyte).
 */
const NONE: readonly string[] = Object.freeze([]);

type Json = Record<string, unknown>;

function asObject(v: unknown): Json | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? v as Json : undefined;
}

/** `fields` taken out of a parsed JSON value, member by member where it is an object. */
function take(value: unknown, fields: Fields): unknown {
  const o = asObject(value);
  if (fields === true || !o) return value;
  const out: Json = {};
  for (const key in fields) if (Object.hasOwn(o, key)) out[key] = take(o[key], fields[key]);
  return out;
}

/**
 * The members {@link NodeObjectSchema} reads, taken out of a raw Node before it is validated:
 * a real Node is mostly images, conditions and managed fields, and validating (or copying)
 * those for 5,000 nodes costs more than everything else the router does with them. Only
 * the annotations asked for are taken. Anything that is not an object is passed on as it
 * is, so that the schema reports it.
 */
function pick(raw: unknown, keepAnnotations: readonly string[]): unknown {
  const node = take(raw, NODE_FIELDS);
  const meta = asObject(asObject(node)?.metadata);
  const all = asObject(meta?.annotations);
  if (meta && all) {
    const kept: Json = {};
    for (const key of keepAnnotations) if (Object.hasOwn(all, key)) kept[key] = all[key];
    meta.annotations = kept;
  }
  return node;
}
