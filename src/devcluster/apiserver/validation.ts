/**
 * What every object must satisfy, as kube-apiserver checks it: its kind and apiVersion, a
 * name that is a DNS subdomain, a namespace that is a DNS label, labels and annotations
 * of strings.
 *
 * @module
 */
import type { ObjectJson } from "./object_store.ts";
import type { Json } from "./patch.ts";
import { badRequest, invalid, type ResourceNames } from "./status.ts";

/** A DNS subdomain (RFC 1123), as object names must be. */
export const DNS1123_SUBDOMAIN =
  /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A DNS label (RFC 1123), as namespaces must be. */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** The fields of ObjectMeta: the others are unknown fields, dropped (or refused under Strict). */
export const METADATA_FIELDS: ReadonlySet<string> = new Set([
  "name",
  "generateName",
  "namespace",
  "selfLink",
  "uid",
  "resourceVersion",
  "generation",
  "creationTimestamp",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
  "labels",
  "annotations",
  "ownerReferences",
  "finalizers",
  "managedFields",
]);

/** Whether a value is a JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The kind an object must be, and how errors name it. */
export interface ObjectKind extends ResourceNames {
  readonly apiVersion: string;
  readonly namespaced: boolean;
}

/**
 * Checks kind, apiVersion, metadata.name (and of a namespaced kind metadata.namespace when
 * set), labels and annotations; returns the object typed. 400 for the wrong kind, 422 for invalid metadata.
 */
export function checkObject(body: unknown, kind: ObjectKind, nameHint = ""): ObjectJson {
  if (!isObject(body)) throw badRequest("the body is not a JSON object");
  if (body.kind !== undefined && body.kind !== kind.kind) {
    throw badRequest(`the object kind ${JSON.stringify(body.kind)} is not ${kind.kind}`);
  }
  if (body.apiVersion !== undefined && body.apiVersion !== kind.apiVersion) {
    throw badRequest(
      `the apiVersion ${JSON.stringify(body.apiVersion)} is not ${kind.apiVersion}`,
    );
  }
  const meta = body.metadata;
  if (!isObject(meta)) throw invalid(nameHint, "metadata", "Required value", kind);
  const name = meta.name;
  if (typeof name !== "string" || name === "") {
    throw invalid(nameHint, "metadata.name", "Required value: name is required", kind);
  }
  if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
    throw invalid(
      name,
      "metadata.name",
      `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of ` +
        "lower case alphanumeric characters, '-' or '.', and must start and end with an " +
        "alphanumeric character",
      kind,
    );
  }
  const ns = meta.namespace;
  if (kind.namespaced && ns !== undefined && ns !== null && ns !== "") {
    checkNamespace(name, ns, kind);
  }
  for (const key of ["labels", "annotations"] as const) {
    const m = meta[key];
    if (m === undefined || m === null) continue;
    if (!isObject(m) || Object.values(m).some((v) => typeof v !== "string")) {
      throw invalid(name, `metadata.${key}`, "Invalid value: values must be strings", kind);
    }
  }
  return body as unknown as ObjectJson;
}

/** Whether a namespace name can exist: a DNS label. */
export function isNamespaceName(ns: unknown): ns is string {
  return typeof ns === "string" && ns.length <= 63 && DNS1123_LABEL.test(ns);
}

/** 422 naming metadata.namespace when `ns` cannot be a namespace. */
export function checkNamespace(name: string, ns: unknown, kind: ResourceNames): void {
  if (isNamespaceName(ns)) return;
  throw invalid(
    name,
    "metadata.namespace",
    `Invalid value: ${JSON.stringify(ns)}: a lowercase RFC 1123 label must consist of lower ` +
      "case alphanumeric characters or '-', and must start and end with an alphanumeric " +
      "character",
    kind,
  );
}
