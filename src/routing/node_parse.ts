/**
 * One node's CIDRs and addresses for one network, read from its Node projection.
 *
 * Pure and cheap to memoize: the result depends only on the node and the two annotation
 * names, so the reconciler caches it per NodeInfo object.
 *
 * @module
 */
import type { NodeInfo } from "../kube/node.ts";
import { type Cidr, type Ip, parseCidr, parseIp, sameCidr, sameIp, splitList } from "../net/ip.ts";
import type { Problem } from "./problem.ts";

/** At most this many CIDRs and addresses are read from one node; the rest are reported. */
export const MAX_ITEMS_PER_NODE = 64;
/** Values longer than this are not parsed at all: no pod network needs them. */
export const MAX_VALUE_LENGTH = 8192;

/** Which node fields carry this network's CIDRs and addresses. */
export interface NetworkSource {
  /** Annotation with the CIDRs; "" for spec.podCIDRs. */
  cidrAnnotation: string;
  /** Annotation with the addresses; "" for InternalIP. */
  addressAnnotation: string;
}

/** A node's parsed claims, before any safety or conflict check. */
export interface ParsedNode {
  readonly name: string;
  readonly creationTimestamp: string;
  readonly cidrs: readonly Cidr[];
  readonly addresses: readonly Ip[];
  /** Name of the field the CIDRs came from, for reports. */
  readonly cidrField: string;
  readonly addressField: string;
  readonly problems: readonly Problem[];
}

const fieldNames = new Map<string, string>();

/** The field's name for reports: one string per annotation, shared by every node. */
function fieldName(annotation: string, fallback: string): string {
  if (annotation === "") return fallback;
  let name = fieldNames.get(annotation);
  if (name === undefined) {
    name = `metadata.annotations[${annotation}]`;
    if (fieldNames.size < 16) fieldNames.set(annotation, name);
  }
  return name;
}

/** A malformed entry of a node's field, for the report. */
function malformed(node: NodeInfo, field: string, value: string, reason: string): Problem {
  return { node: node.name, kind: "malformed", field, value, reason };
}

/**
 * The items of the field: the annotation's list, or the fallback's when the annotation name
 * is "". Overlong values and lists beyond {@link MAX_ITEMS_PER_NODE} are reported.
 */
function readList(
  node: NodeInfo,
  annotation: string,
  fallback: readonly string[],
  field: string,
  problems: Problem[],
): string[] {
  let items: string[];
  if (annotation === "") {
    items = fallback.flatMap(splitList);
  } else {
    const value = node.annotations[annotation];
    if (value === undefined) return [];
    if (value.length > MAX_VALUE_LENGTH) {
      problems.push(malformed(
        node,
        field,
        `${value.slice(0, 40)}... (${value.length} characters)`,
        `longer than ${MAX_VALUE_LENGTH} characters`,
      ));
      return [];
    }
    items = splitList(value);
  }
  if (items.length <= MAX_ITEMS_PER_NODE) return items;
  problems.push(
    malformed(
      node,
      field,
      `${items.length} items`,
      `only the first ${MAX_ITEMS_PER_NODE} are used`,
    ),
  );
  return items.slice(0, MAX_ITEMS_PER_NODE);
}

function hasCidr(list: readonly Cidr[], c: Cidr): boolean {
  for (let i = 0; i < list.length; i++) if (sameCidr(list[i], c)) return true;
  return false;
}

function hasIp(list: readonly Ip[], ip: Ip): boolean {
  for (let i = 0; i < list.length; i++) if (sameIp(list[i], ip)) return true;
  return false;
}

/**
 * Reads a node's CIDRs and addresses for the network. Malformed entries are reported and
 * dropped; the valid ones are kept in the node's order, duplicates removed.
 */
export function parseNode(node: NodeInfo, source: NetworkSource): ParsedNode {
  const problems: Problem[] = [];
  const cidrField = fieldName(source.cidrAnnotation, "spec.podCIDRs");
  const addressField = fieldName(source.addressAnnotation, "status.addresses[InternalIP]");

  // Indexed loops and no callbacks: this runs for every node of the first list, mostly
  // before V8 optimizes it, where iterators and closures allocate at every step.
  const cidrs: Cidr[] = [];
  const cidrTexts = readList(node, source.cidrAnnotation, node.podCIDRs, cidrField, problems);
  for (let i = 0; i < cidrTexts.length; i++) {
    const r = parseCidr(cidrTexts[i]);
    if (!r.ok) {
      problems.push(malformed(node, cidrField, cidrTexts[i], r.reason));
    } else if (!hasCidr(cidrs, r.cidr)) {
      cidrs.push(r.cidr);
    }
  }

  const addresses: Ip[] = [];
  const addrTexts = readList(
    node,
    source.addressAnnotation,
    node.internalIPs,
    addressField,
    problems,
  );
  for (let i = 0; i < addrTexts.length; i++) {
    const text = addrTexts[i];
    const ip = text.includes("/") || text.includes("%") ? undefined : parseIp(text);
    if (!ip) {
      problems.push(malformed(node, addressField, text, "not an IP address"));
    } else if (!hasIp(addresses, ip)) {
      addresses.push(ip);
    }
  }

  return {
    name: node.name,
    creationTimestamp: node.creationTimestamp,
    cidrs,
    addresses,
    cidrField,
    addressField,
    problems,
  };
}
