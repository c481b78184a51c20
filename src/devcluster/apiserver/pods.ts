/**
 * core/v1 Pods, read only and always none: this cluster runs no pods as API objects (the
 * demo's pods are network namespaces), but `kubectl describe node` lists the pods of the
 * node, and a list with the real semantics (its field selectors, a resourceVersion, watch)
 * answers it as a real server without pods would.
 *
 * @module
 */
import { type KindInfo, type ObjectJson, ObjectStore, type Revision } from "./object_store.ts";
import { fieldAt, type FieldReader } from "./selectors.ts";
import type { ResourceNames } from "./status.ts";
import { checkObject } from "./validation.ts";

/** Pods, as errors name them. */
export const POD_NAMES: ResourceNames = { kind: "Pod", plural: "pods", group: "" };

/** Fields a fieldSelector may name on Pods, as the real server's field label conversion. */
export const POD_FIELDS: readonly string[] = [
  "metadata.name",
  "metadata.namespace",
  "spec.nodeName",
  "spec.restartPolicy",
  "spec.schedulerName",
  "spec.serviceAccountName",
  "spec.hostNetwork",
  "status.phase",
  "status.podIP",
  "status.podIPs",
  "status.nominatedNodeName",
];

/** Fields not read at their path: the real field set defaults hostNetwork to false. */
export const POD_FIELD_READERS: Readonly<Record<string, FieldReader>> = {
  "spec.hostNetwork": (o) => fieldAt(o, "spec.hostNetwork") || "false",
};

const POD_KIND: KindInfo = {
  ...POD_NAMES,
  apiVersion: "v1",
  namespaced: true,
  statusSubresource: true,
  createOnUpdate: false,
  validate: (body, nameHint) => checkObject(body, POD_KIND, nameHint),
};

/** The Pods of the server: served for lists, gets and watches, never written. */
export class PodStore extends ObjectStore<ObjectJson> {
  constructor(opts: { historySize?: number; revision?: Revision } = {}) {
    super(POD_KIND, opts);
  }
}
