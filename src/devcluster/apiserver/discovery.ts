/**
 * What the embedded API server says of itself: its version, the resources of core/v1 (Nodes,
 * Events, Pods) and of coordination.k8s.io/v1 (discovery, as kubectl reads it to map `lease` to a URL), and
 * just enough OpenAPI for kubectl to see that the server validates fields itself
 * (fieldValidation), so that `kubectl create -f` needs no client-side schema.
 *
 * @module
 */

/** The answer to /version. */
export const VERSION = {
  major: "1",
  minor: "32",
  gitVersion: "v1.32.0-xcluster-devcluster",
  gitCommit: "",
  gitTreeState: "clean",
  buildDate: "2026-01-01T00:00:00Z",
  goVersion: "",
  compiler: "deno",
  platform: "linux/amd64",
};

/** The API group of Leases. */
export const COORDINATION = "coordination.k8s.io";
const COORDINATION_V1 = `${COORDINATION}/v1`;

const ALL_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"];

/** /api/v1 */
export const CORE_RESOURCES = {
  kind: "APIResourceList",
  apiVersion: "v1",
  groupVersion: "v1",
  resources: [
    {
      name: "nodes",
      singularName: "node",
      namespaced: false,
      kind: "Node",
      verbs: ALL_VERBS,
      shortNames: ["no"],
    },
    {
      name: "nodes/status",
      singularName: "",
      namespaced: false,
      kind: "Node",
      verbs: ["get", "patch", "update"],
    },
    {
      name: "events",
      singularName: "event",
      namespaced: true,
      kind: "Event",
      verbs: ALL_VERBS,
      shortNames: ["ev"],
    },
    {
      // Read only, and always none: for `kubectl describe node`, which lists a node's pods.
      name: "pods",
      singularName: "pod",
      namespaced: true,
      kind: "Pod",
      verbs: ["get", "list", "watch"],
      shortNames: ["po"],
    },
  ],
};

const COORDINATION_VERSION = { groupVersion: COORDINATION_V1, version: "v1" };

/** /apis/coordination.k8s.io */
export const COORDINATION_GROUP = {
  kind: "APIGroup",
  apiVersion: "v1",
  name: COORDINATION,
  versions: [COORDINATION_VERSION],
  preferredVersion: COORDINATION_VERSION,
};

/** /apis */
export const GROUPS = {
  kind: "APIGroupList",
  apiVersion: "v1",
  groups: [{
    name: COORDINATION,
    versions: [COORDINATION_VERSION],
    preferredVersion: COORDINATION_VERSION,
  }],
};

/** /apis/coordination.k8s.io/v1 */
export const COORDINATION_RESOURCES = {
  kind: "APIResourceList",
  apiVersion: "v1",
  groupVersion: COORDINATION_V1,
  resources: [{
    name: "leases",
    singularName: "lease",
    namespaced: true,
    kind: "Lease",
    verbs: ALL_VERBS,
  }],
};

const FIELD_VALIDATION = { name: "fieldValidation", in: "query", schema: { type: "string" } };

/** An OpenAPI v3 document of the writes of one kind, each taking fieldValidation. */
function openapi(
  gvk: { group: string; version: string; kind: string },
  paths: [string, string[]][],
): Record<string, unknown> {
  return {
    openapi: "3.0.0",
    info: { title: "xcluster-cni devcluster", version: gvk.version },
    paths: Object.fromEntries(paths.map(([path, ops]) => [
      path,
      Object.fromEntries(ops.map((op) => [op, {
        parameters: [FIELD_VALIDATION],
        responses: {},
        "x-kubernetes-action": op,
        "x-kubernetes-group-version-kind": gvk,
      }])),
    ])),
    components: { schemas: {} },
  };
}

const LEASES_PATH = `/apis/${COORDINATION_V1}/namespaces/{namespace}/leases`;

/** OpenAPI v3 documents by path (/openapi/v3 and each group-version). */
export const OPENAPI: Record<string, unknown> = {
  "/openapi/v3": {
    paths: {
      "api/v1": { serverRelativeURL: "/openapi/v3/api/v1?hash=1" },
      [`apis/${COORDINATION_V1}`]: {
        serverRelativeURL: `/openapi/v3/apis/${COORDINATION_V1}?hash=1`,
      },
    },
  },
  "/openapi/v3/api/v1": openapi({ group: "", version: "v1", kind: "Node" }, [
    ["/api/v1/nodes", ["post"]],
    ["/api/v1/nodes/{name}", ["put", "patch"]],
  ]),
  [`/openapi/v3/apis/${COORDINATION_V1}`]: openapi(
    { group: COORDINATION, version: "v1", kind: "Lease" },
    [[LEASES_PATH, ["post"]], [`${LEASES_PATH}/{name}`, ["put", "patch"]]],
  ),
};
