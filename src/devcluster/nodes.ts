/**
 * Node objects for the embedded API server: minimal ones, or realistic ones of 10-20 KB
 * (images, conditions, managed fields) as a kubelet writes them, for scale tests.
 *
 * @module
 */
import type { NodeJson } from "./apiserver/store.ts";

/** What a made node carries. */
export interface MakeNodeOptions {
  name: string;
  podCIDRs?: string[];
  internalIPs?: string[];
  annotations?: Record<string, string>;
  labels?: Record<string, string>;
  machineID?: string;
  /** Add the bulk of a real kubelet's Node (about 15 KB). */
  realistic?: boolean;
}

function bulk(
  name: string,
): { images: unknown[]; conditions: unknown[]; managedFields: unknown[] } {
  const now = "2026-01-01T00:00:00Z";
  const images = Array.from({ length: 30 }, (_, i) => ({
    names: [
      `registry.example.com/team-${i}/service-${i}@sha256:${
        (i * 7919).toString(16).padStart(64, "0")
      }`,
      `registry.example.com/team-${i}/service-${i}:v1.${i}.0`,
    ],
    sizeBytes: 10_000_000 + i * 123_457,
  }));
  const conditions = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"].map((type) => ({
    type,
    status: type === "Ready" ? "True" : "False",
    lastHeartbeatTime: now,
    lastTransitionTime: now,
    reason: type === "Ready" ? "KubeletReady" : `KubeletHasNo${type}`,
    message: type === "Ready" ? "kubelet is posting ready status" : `kubelet has no ${type}`,
  }));
  const managedFields = ["kubelet", "kube-controller-manager", "kubeadm"].map((manager) => ({
    manager,
    operation: "Update",
    apiVersion: "v1",
    time: now,
    fieldsType: "FieldsV1",
    fieldsV1: {
      "f:metadata": { "f:annotations": { ".": {}, [`f:${manager}.example.com/${name}`]: {} } },
      "f:status": {
        "f:conditions": Object.fromEntries(
          conditions.map((c) => [`k:{"type":"${c.type}"}`, { ".": {} }]),
        ),
      },
    },
  }));
  return { images, conditions, managedFields };
}

/** Builds a Node object. */
export function makeNode(o: MakeNodeOptions): NodeJson {
  const addresses = [
    ...(o.internalIPs ?? []).map((address) => ({ type: "InternalIP", address })),
    { type: "Hostname", address: o.name },
  ];
  const node: NodeJson = {
    apiVersion: "v1",
    kind: "Node",
    metadata: {
      name: o.name,
      labels: { "kubernetes.io/hostname": o.name, "kubernetes.io/os": "linux", ...o.labels },
      annotations: { ...o.annotations },
    },
    spec: o.podCIDRs?.length ? { podCIDR: o.podCIDRs[0], podCIDRs: o.podCIDRs } : {},
    status: {
      addresses,
      // What `kubectl get nodes` reads for STATUS; a running kubelet keeps it True.
      conditions: [{ type: "Ready", status: "True", reason: "KubeletReady" }],
      nodeInfo: {
        machineID: o.machineID ?? "",
        kubeletVersion: "v1.32.0",
        osImage: "Debian GNU/Linux 12 (bookworm)",
        architecture: "amd64",
        operatingSystem: "linux",
        kernelVersion: "6.1.0",
        containerRuntimeVersion: "containerd://1.7.0",
      },
    },
  };
  if (o.realistic) {
    const b = bulk(o.name);
    node.metadata.managedFields = b.managedFields;
    const status = node.status as Record<string, unknown>;
    status.images = b.images;
    status.conditions = b.conditions;
    status.capacity = {
      cpu: "16",
      memory: "65851900Ki",
      pods: "110",
      "ephemeral-storage": "101430960Ki",
    };
    status.allocatable = {
      cpu: "15800m",
      memory: "64700924Ki",
      pods: "110",
      "ephemeral-storage": "93478772582",
    };
    status.daemonEndpoints = { kubeletEndpoint: { Port: 10250 } };
  }
  return node;
}
