/**
 * The forms a response can give objects in, chosen by the Accept header as kube-apiserver
 * chooses them: the objects themselves, their metadata only (`as=PartialObjectMetadata`,
 * what metadata informers ask for), or a Table (`as=Table`, what `kubectl get` asks for)
 * with the columns of the kind (Nodes, Leases, Events, Pods).
 *
 * @module
 */
import { StatusError } from "./status.ts";
import type { ObjectJson } from "./object_store.ts";
import type { EventJson } from "./events.ts";
import type { LeaseJson } from "./leases.ts";
import type { NodeJson } from "./store.ts";

/** How objects are rendered in a response. */
export type View = "object" | "metadata" | "table";

/** What a request reads: a list, or one object (get, and every event of a watch). */
export type Target = "list" | "item";

const META_GROUP = "meta.k8s.io";
const META_VERSION = "v1";

interface Clause {
  type: string;
  params: Record<string, string>;
  q: number;
  order: number;
}

function parseAccept(header: string): Clause[] {
  const clauses: Clause[] = [];
  header.split(",").forEach((part, order) => {
    const [type, ...rest] = part.split(";").map((s) => s.trim());
    if (type === "") return;
    const params: Record<string, string> = {};
    for (const p of rest) {
      const eq = p.indexOf("=");
      if (eq > 0) params[p.slice(0, eq).trim().toLowerCase()] = p.slice(eq + 1).trim();
    }
    const q = params.q === undefined ? 1 : Number(params.q);
    clauses.push({ type: type.toLowerCase(), params, q: Number.isFinite(q) ? q : 0, order });
  });
  return clauses.sort((a, b) => b.q - a.q || a.order - b.order);
}

function viewOf(c: Clause, target: Target): View | undefined {
  if (c.q <= 0) return undefined;
  if (c.type !== "application/json" && c.type !== "application/*" && c.type !== "*/*") {
    return undefined;
  }
  const as = c.params.as;
  if (as === undefined) return "object";
  if (c.params.g !== META_GROUP || c.params.v !== META_VERSION) return undefined;
  if (as === "Table") return "table";
  if (as === (target === "list" ? "PartialObjectMetadataList" : "PartialObjectMetadata")) {
    return "metadata";
  }
  return undefined;
}

/**
 * The view the Accept header asks for: its first acceptable clause by quality, then
 * order. No header is JSON objects. Throws 406 when no clause can be served (protobuf,
 * YAML, or an `as` this target has no form for, e.g. PartialObjectMetadata for a list).
 */
export function negotiate(accept: string | null, target: Target): View {
  if (accept === null || accept.trim() === "") return "object";
  for (const c of parseAccept(accept)) {
    const view = viewOf(c, target);
    if (view !== undefined) return view;
  }
  const partial = target === "list" ? "PartialObjectMetadataList" : "PartialObjectMetadata";
  throw new StatusError(
    406,
    "NotAcceptable",
    `the server cannot respond in any of the accepted media types (${accept}): it serves ` +
      `application/json as the objects, as=${partial} or as=Table (g=${META_GROUP}, v=${META_VERSION})`,
  );
}

const encoder = new TextEncoder();

/** A PartialObjectMetadata with this metadata (a Node's, or a bookmark's) as UTF-8 JSON. */
export function metadataBytes(metadata: Record<string, unknown>): Uint8Array<ArrayBuffer> {
  return encoder.encode(
    `{"kind":"PartialObjectMetadata","apiVersion":"${META_GROUP}/${META_VERSION}",` +
      `"metadata":${JSON.stringify(metadata)}}`,
  );
}

/** The head of a list body, up to the opening bracket of its items (a NodeList unless told). */
export function listHead(
  view: View,
  meta: Record<string, string>,
  of: { kind: string; apiVersion: string } = { kind: "Node", apiVersion: "v1" },
): string {
  const kind = view === "object"
    ? `"kind":"${of.kind}List","apiVersion":"${of.apiVersion}"`
    : `"kind":"PartialObjectMetadataList","apiVersion":"${META_GROUP}/${META_VERSION}"`;
  return `{${kind},"metadata":${JSON.stringify(meta)},"items":[`;
}

/** What each Table row carries besides its cells (the `includeObject` parameter). */
export type IncludeObject = "None" | "Metadata" | "Object";

/** Reads `includeObject`; throws 400 naming a bad value. */
export function includeObject(value: string | null): IncludeObject {
  if (value === null || value === "") return "Metadata";
  if (value === "None" || value === "Metadata" || value === "Object") return value;
  throw new StatusError(
    400,
    "BadRequest",
    `includeObject=${JSON.stringify(value)}: must be None, Metadata or Object`,
  );
}

/** One column of a Table. */
export interface Column {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

/** A cell of a Table row: text, or a number (an Event's count, as the real server sends it). */
export type Cell = string | number;

/** How a kind is shown in a Table: its columns, and the cells of one object. */
export interface TableSpec<T extends ObjectJson = ObjectJson> {
  readonly columns: readonly Column[];
  cells(obj: T, now: number): Cell[];
}

/** The columns of `kubectl get nodes` (priority 1: `-o wide` only). */
const NODE_COLUMNS: Column[] = ([
  ["Name", 0, "Name must be unique within a namespace."],
  ["Status", 0, "The status of the node."],
  ["Roles", 0, "The roles of the node."],
  ["Age", 0, "Time since the node was created."],
  ["Version", 0, "Kubelet version reported by the node."],
  ["Internal-IP", 1, "The node's first InternalIP address."],
  ["External-IP", 1, "The node's first ExternalIP address."],
  ["OS-Image", 1, "OS image reported by the node."],
  ["Kernel-Version", 1, "Kernel version reported by the node."],
  ["Container-Runtime", 1, "Container runtime and version reported by the node."],
] as const).map(([name, priority, description]) => ({
  name,
  type: "string",
  format: name === "Name" ? "name" : "",
  description,
  priority,
}));

type Json = Record<string, unknown>;

function asObject(v: unknown): Json {
  return typeof v === "object" && v !== null && !Array.isArray(v) ? v as Json : {};
}

function text(v: unknown, otherwise: string): string {
  return typeof v === "string" && v !== "" ? v : otherwise;
}

/** Age as kubectl shows it: "45s", "3m12s", "5h", "12d", "2y30d". */
export function humanAge(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < -1) return "<invalid>";
  if (s < 0) return "0s"; // a second of clock skew between server and node
  if (s < 120) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 10) return s % 60 === 0 ? `${m}m` : `${m}m${s % 60}s`;
  if (m < 180) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 8) return m % 60 === 0 ? `${h}h` : `${h}h${m % 60}m`;
  if (h < 48) return `${h}h`;
  if (h < 24 * 8) {
    return h % 24 === 0 ? `${Math.floor(h / 24)}d` : `${Math.floor(h / 24)}d${h % 24}h`;
  }
  const d = Math.floor(h / 24);
  if (d < 365 * 2) return `${d}d`;
  if (d < 365 * 8) {
    return d % 365 === 0 ? `${Math.floor(d / 365)}y` : `${Math.floor(d / 365)}y${d % 365}d`;
  }
  return `${Math.floor(d / 365)}y`;
}

/** Ready, NotReady or Unknown from the Ready condition, with SchedulingDisabled. */
function nodeStatus(node: NodeJson): string {
  const conditions = asObject(node.status).conditions;
  const ready = Array.isArray(conditions)
    ? conditions.map(asObject).find((c) => c.type === "Ready")
    : undefined;
  let s = ready?.status === "True" ? "Ready" : ready?.status === "False" ? "NotReady" : "Unknown";
  if (asObject(node.spec).unschedulable === true) s += ",SchedulingDisabled";
  return s;
}

function roles(node: NodeJson): string {
  const found = new Set<string>();
  for (const [k, v] of Object.entries(node.metadata.labels ?? {})) {
    if (k.startsWith("node-role.kubernetes.io/") && k.length > 24) found.add(k.slice(24));
    else if (k === "kubernetes.io/role" && v !== "") found.add(v);
  }
  return found.size === 0 ? "<none>" : [...found].sort().join(",");
}

function firstAddress(node: NodeJson, type: string): string {
  const addresses = asObject(node.status).addresses;
  const a = Array.isArray(addresses)
    ? addresses.map(asObject).find((x) => x.type === type)
    : undefined;
  return text(a?.address, "<none>");
}

/** The cells of one node's row, in the order of the columns. */
export function nodeCells(node: NodeJson, now: number): string[] {
  const info = asObject(asObject(node.status).nodeInfo);
  return [
    node.metadata.name,
    nodeStatus(node),
    roles(node),
    age(node, now),
    text(info.kubeletVersion, ""),
    firstAddress(node, "InternalIP"),
    firstAddress(node, "ExternalIP"),
    text(info.osImage, "<unknown>"),
    text(info.kernelVersion, "<unknown>"),
    text(info.containerRuntimeVersion, "<unknown>"),
  ];
}

/** Nodes in a Table. */
export const NODE_TABLE: TableSpec<NodeJson> = { columns: NODE_COLUMNS, cells: nodeCells };

function age(obj: ObjectJson, now: number): string {
  const created = Date.parse(obj.metadata.creationTimestamp ?? "");
  return Number.isNaN(created) ? "<unknown>" : humanAge(now - created);
}

/** Leases in a Table: the columns of `kubectl get leases`. */
export const LEASE_TABLE: TableSpec<LeaseJson> = {
  columns: [
    ["Name", "name", "Name must be unique within a namespace."],
    ["Holder", "", "The holder of the lease (spec.holderIdentity)."],
    ["Age", "", "Time since the lease was created."],
  ].map(([name, format, description]) => ({
    name,
    type: name === "Age" ? "date" : "string",
    format,
    description,
    priority: 0,
  })),
  cells: (lease, now) => [lease.metadata.name, lease.spec?.holderIdentity ?? "", age(lease, now)],
};

/** Columns as [name, priority, description], every one a string but those named in `formats`. */
function columns(
  list: readonly (readonly [string, number, string])[],
  formats: Record<string, string> = {},
): Column[] {
  return list.map(([name, priority, description]) => ({
    name,
    type: "string",
    format: formats[name] ?? "",
    description,
    priority,
  }));
}

/** Time since an RFC 3339 timestamp, as kubectl prints it; "<unknown>" when unset. */
function since(timestamp: string | null | undefined, now: number): string {
  const t = Date.parse(timestamp ?? "");
  return Number.isNaN(t) ? "<unknown>" : humanAge(now - t);
}

/** The source of an Event: component (or reporting component), then host (or instance). */
function eventSource(ev: EventJson): string {
  const component = ev.source.component || ev.reportingComponent;
  const host = ev.source.host || ev.reportingInstance;
  if (!component) return "<unknown>";
  return host ? `${component}, ${host}` : component;
}

/**
 * Events in a Table: the columns of `kubectl get events` (priority 1: `-o wide` only) and
 * the cells the real server's printer makes. Timestamps fall back as it does: an unset
 * firstTimestamp to eventTime, an unset lastTimestamp to the first; a series gives the last
 * time and the count; a count of 0 is 1 (a singleton of the newer API).
 */
export const EVENT_TABLE: TableSpec<EventJson> = {
  columns: columns([
    ["Last Seen", 0, "The time at which the most recent occurrence of this event was recorded."],
    ["Type", 0, "Type of this event (Normal, Warning), new types could be added in the future"],
    [
      "Reason",
      0,
      "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ],
    ["Object", 0, "The object that this event is about."],
    [
      "Subobject",
      1,
      "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
    ],
    [
      "Source",
      1,
      "The component reporting this event. Should be a short machine understandable string.",
    ],
    ["Message", 0, "A human-readable description of the status of this operation."],
    [
      "First Seen",
      1,
      "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ],
    ["Count", 1, "The number of times this event has occurred."],
    ["Name", 1, "Name must be unique within a namespace."],
  ], { Name: "name" }),
  cells(ev, now) {
    const first = ev.firstTimestamp ? since(ev.firstTimestamp, now) : since(ev.eventTime, now);
    let last = ev.lastTimestamp ? since(ev.lastTimestamp, now) : first;
    let count = ev.count ?? 0;
    if (ev.series) {
      last = since(ev.series.lastObservedTime, now);
      count = ev.series.count ?? 0;
    } else if (count === 0) count = 1;
    const kind = (ev.involvedObject.kind ?? "").toLowerCase();
    const target = ev.involvedObject.name ? `${kind}/${ev.involvedObject.name}` : kind;
    return [
      last,
      ev.type ?? "",
      ev.reason ?? "",
      target,
      ev.involvedObject.fieldPath ?? "",
      eventSource(ev),
      (ev.message ?? "").trim(),
      first,
      count,
      ev.metadata.name,
    ];
  },
};

/** Pods in a Table: the columns of `kubectl get pods`; this server never has a row. */
export const POD_TABLE: TableSpec = {
  columns: columns([
    ["Name", 0, "Name must be unique within a namespace."],
    ["Ready", 0, "The aggregate readiness state of this pod for accepting traffic."],
    ["Status", 0, "The aggregate status of the containers in this pod."],
    ["Restarts", 0, "The number of times the containers in this pod have been restarted."],
    ["Age", 0, "Time since the pod was created."],
    ["IP", 1, "The IP address assigned to the pod."],
    ["Node", 1, "Name of the Node to which this pod is assigned."],
  ], { Name: "name" }),
  cells: (pod, now) => {
    const status = asObject(pod.status);
    return [
      pod.metadata.name,
      "0/0",
      text(status.phase, "Unknown"),
      "0",
      age(pod, now),
      text(status.podIP, "<none>"),
      text(asObject(pod.spec).nodeName, "<none>"),
    ];
  },
};

function row<T extends ObjectJson>(
  spec: TableSpec<T>,
  obj: T,
  include: IncludeObject,
  now: number,
): Json {
  const r: Json = { cells: spec.cells(obj, now) };
  if (include === "Metadata") {
    r.object = {
      kind: "PartialObjectMetadata",
      apiVersion: `${META_GROUP}/${META_VERSION}`,
      metadata: obj.metadata,
    };
  } else if (include === "Object") r.object = obj;
  return r;
}

/** Options of a Table: its metadata, what rows carry, whether it has the columns. */
export interface TableOptions {
  meta: Record<string, string>;
  include: IncludeObject;
  /** False leaves the column definitions out, as a watch does after its first event. */
  columns: boolean;
  now?: number;
}

/** A Table of objects of the kind `spec` shows. */
export function objectTable<T extends ObjectJson>(
  spec: TableSpec<T>,
  objects: readonly T[],
  opts: TableOptions,
): Json {
  const now = opts.now ?? Date.now();
  return {
    kind: "Table",
    apiVersion: `${META_GROUP}/${META_VERSION}`,
    metadata: opts.meta,
    columnDefinitions: opts.columns ? spec.columns : [],
    rows: objects.map((o) => row(spec, o, opts.include, now)),
  };
}

/** A Table of nodes. */
export function nodeTable(nodes: readonly NodeJson[], opts: TableOptions): Json {
  return objectTable(NODE_TABLE, nodes, opts);
}
