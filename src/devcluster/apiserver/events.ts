/**
 * core/v1 Events: their validation as kube-apiserver does it for the core API (typed fields,
 * Time and MicroTime timestamps, the rule that ties an Event's namespace to its object's),
 * the fields a field selector may name, and their store, which keeps the newest
 * {@link EVENT_LIMIT} (the real server lets Events expire after an hour instead).
 *
 * @example
 * ```ts
 * const events = new EventStore();
 * events.create("default", {
 *   metadata: { name: "vm-001.1" },
 *   involvedObject: { kind: "Node", name: "vm-001" },
 *   reason: "NetworkCIDRRefused",
 * });
 * events.inCreationOrder()[0].reason; // "NetworkCIDRRefused"
 * ```
 *
 * @module
 */
import { normalizeMicroTime } from "./leases.ts";
import {
  type KindInfo,
  type ObjectJson,
  ObjectStore,
  type Revision,
  type WriteOptions,
} from "./object_store.ts";
import { fieldAt, type FieldReader } from "./selectors.ts";
import { badRequest, invalid, type ResourceNames } from "./status.ts";
import { checkObject, DNS1123_SUBDOMAIN, isObject, METADATA_FIELDS } from "./validation.ts";

/** Events, as errors name them. */
export const EVENT_NAMES: ResourceNames = { kind: "Event", plural: "events", group: "" };

/** Events kept: past this, the oldest goes when one more is created. */
export const EVENT_LIMIT = 1000;

/** An ObjectReference (involvedObject, related): every field optional. */
export interface ObjectReferenceJson {
  kind?: string;
  namespace?: string;
  name?: string;
  uid?: string;
  apiVersion?: string;
  resourceVersion?: string;
  fieldPath?: string;
}

/** An Event as stored: typed, in the field order and with the empty values the server writes. */
export type EventJson = ObjectJson & {
  involvedObject: ObjectReferenceJson;
  reason?: string;
  message?: string;
  source: { component?: string; host?: string };
  /** Time: RFC 3339 in UTC, whole seconds; null when unset. */
  firstTimestamp: string | null;
  lastTimestamp: string | null;
  count?: number;
  type?: string;
  /** MicroTime; null when unset. */
  eventTime: string | null;
  series?: { count?: number; lastObservedTime?: string };
  action?: string;
  related?: ObjectReferenceJson;
  reportingComponent: string;
  reportingInstance: string;
};

/** Fields a fieldSelector may name on Events, as the real server's field label conversion. */
export const EVENT_FIELDS: readonly string[] = [
  "involvedObject.kind",
  "involvedObject.namespace",
  "involvedObject.name",
  "involvedObject.uid",
  "involvedObject.apiVersion",
  "involvedObject.resourceVersion",
  "involvedObject.fieldPath",
  "reason",
  "reportingComponent",
  "source",
  "type",
  "metadata.namespace",
  "metadata.name",
];

/** Fields not read at their path: `source` is the component, else the reporting component. */
export const EVENT_FIELD_READERS: Readonly<Record<string, FieldReader>> = {
  source: (o) => fieldAt(o, "source.component") || fieldAt(o, "reportingComponent"),
};

const REFERENCE_FIELDS = [
  "kind",
  "namespace",
  "name",
  "uid",
  "apiVersion",
  "resourceVersion",
  "fieldPath",
] as const;

/** The fields of Event in the order the real server writes them. */
const EVENT_KEYS = new Set([
  "kind",
  "apiVersion",
  "metadata",
  "involvedObject",
  "reason",
  "message",
  "source",
  "firstTimestamp",
  "lastTimestamp",
  "count",
  "type",
  "eventTime",
  "series",
  "action",
  "related",
  "reportingComponent",
  "reportingInstance",
]);

/** Limits of ValidateEvent for Events that set eventTime. */
const LENGTH_LIMIT = 128;
const NOTE_LENGTH_LIMIT = 1024;

/** The name part of a qualified name: at most 63 characters. */
const QUALIFIED_PART = /^[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** A qualified name (`[prefix/]name`, the prefix a DNS subdomain), as reportingComponent must be. */
function isQualifiedName(text: string): boolean {
  const slash = text.lastIndexOf("/");
  if (slash < 0) return QUALIFIED_PART.test(text);
  const prefix = text.slice(0, slash);
  return prefix.length <= 253 && DNS1123_SUBDOMAIN.test(prefix) &&
    QUALIFIED_PART.test(text.slice(slash + 1));
}

/** 400, as the real server's decoder answers a field of the wrong type. */
function wrongType(field: string, want: string, value: unknown): never {
  throw badRequest(
    `Event in version "v1" cannot be handled as a Event: ${field}: expected ${want}, got ` +
      JSON.stringify(value),
  );
}

function str(field: string, value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") wrongType(field, "a string", value);
  return value;
}

function int32(field: string, value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) wrongType(field, "an integer", value);
  if (value < -(2 ** 31) || value >= 2 ** 31) wrongType(field, "an int32", value);
  return value;
}

/**
 * A Time (RFC 3339, any fraction of a second) in the form the server writes: UTC, whole
 * seconds. Undefined when the text is not one.
 */
export function normalizeTime(text: string): string | undefined {
  const m = /^(.{19})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return undefined;
  const micro = normalizeMicroTime(`${m[1]}.${(m[2] ?? "").padEnd(6, "0").slice(0, 6)}${m[3]}`);
  return micro?.replace(/\.\d{6}Z$/, "Z");
}

function time(field: string, value: unknown, micro: boolean): string | null {
  if (value === undefined || value === null) return null;
  const t = typeof value === "string"
    ? (micro ? normalizeMicroTime(value) : normalizeTime(value))
    : undefined;
  if (t === undefined) {
    wrongType(
      field,
      micro
        ? 'a MicroTime "2006-01-02T15:04:05.000000Z07:00"'
        : 'a Time "2006-01-02T15:04:05Z07:00"',
      value,
    );
  }
  return t;
}

/** Each key of `raw` not in `known`, as `prefix.key`, goes to `unknown`. */
function collectUnknown(
  raw: Record<string, unknown>,
  known: ReadonlySet<string>,
  prefix: string,
  unknown: string[],
): void {
  for (const k of Object.keys(raw)) if (!known.has(k)) unknown.push(`${prefix}${k}`);
}

const REFERENCE_KEYS: ReadonlySet<string> = new Set(REFERENCE_FIELDS);

function reference(field: string, raw: unknown, unknown: string[]): ObjectReferenceJson {
  if (raw === undefined || raw === null) return {};
  if (!isObject(raw)) wrongType(field, "an object", raw);
  collectUnknown(raw, REFERENCE_KEYS, `${field}.`, unknown);
  const ref: Record<string, string> = {};
  for (const k of REFERENCE_FIELDS) {
    const v = str(`${field}.${k}`, raw[k]);
    if (v) ref[k] = v; // omitempty
  }
  return ref;
}

/** Sets `key` on `obj` unless the value is empty, as Go's omitempty. */
function put(obj: Record<string, unknown>, key: string, value: unknown): void {
  if (value !== undefined && value !== "" && value !== 0) obj[key] = value;
}

/** The typed Event, unknown fields left out and their paths added to `unknown`. */
function typedEvent(obj: ObjectJson, unknown: string[]): EventJson {
  collectUnknown(obj, EVENT_KEYS, "", unknown);
  collectUnknown(obj.metadata, METADATA_FIELDS, "metadata.", unknown);
  const metadata = { ...obj.metadata };
  for (const k of Object.keys(metadata)) if (!METADATA_FIELDS.has(k)) delete metadata[k];
  const out: Record<string, unknown> = {
    kind: EVENT_KIND.kind,
    apiVersion: EVENT_KIND.apiVersion,
    metadata,
    involvedObject: reference("involvedObject", obj.involvedObject, unknown),
  };
  put(out, "reason", str("reason", obj.reason));
  put(out, "message", str("message", obj.message));
  const source: Record<string, string> = {};
  if (obj.source !== undefined && obj.source !== null) {
    if (!isObject(obj.source)) wrongType("source", "an object", obj.source);
    collectUnknown(obj.source, new Set(["component", "host"]), "source.", unknown);
    put(source, "component", str("source.component", obj.source.component));
    put(source, "host", str("source.host", obj.source.host));
  }
  out.source = source;
  out.firstTimestamp = time("firstTimestamp", obj.firstTimestamp, false);
  out.lastTimestamp = time("lastTimestamp", obj.lastTimestamp, false);
  put(out, "count", int32("count", obj.count));
  put(out, "type", str("type", obj.type));
  out.eventTime = time("eventTime", obj.eventTime, true);
  if (obj.series !== undefined && obj.series !== null) {
    if (!isObject(obj.series)) wrongType("series", "an object", obj.series);
    collectUnknown(obj.series, new Set(["count", "lastObservedTime"]), "series.", unknown);
    const series: Record<string, unknown> = {};
    put(series, "count", int32("series.count", obj.series.count));
    const last = time("series.lastObservedTime", obj.series.lastObservedTime, true);
    if (last !== null) series.lastObservedTime = last;
    out.series = series;
  }
  put(out, "action", str("action", obj.action));
  if (obj.related !== undefined && obj.related !== null) {
    out.related = reference("related", obj.related, unknown);
  }
  // Not omitempty in the real type: always written.
  out.reportingComponent = str("reportingComponent", obj.reportingComponent) ?? "";
  out.reportingInstance = str("reportingInstance", obj.reportingInstance) ?? "";
  return out as EventJson;
}

/**
 * The checks of the real server's legacy Event validation, which core/v1 writes get:
 * without eventTime, an object in no namespace (a Node) has its Events in "default", and
 * one in a namespace has them in its own; with eventTime, the reporting fields are
 * required and bounded.
 */
function checkEvent(ev: EventJson, namespace: string): void {
  const name = ev.metadata.name;
  const fail = (field: string, message: string): never => {
    throw invalid(name, field, message, EVENT_NAMES);
  };
  const objectNs = ev.involvedObject.namespace ?? "";
  const mismatch = () =>
    fail(
      "involvedObject.namespace",
      `Invalid value: ${JSON.stringify(objectNs)}: does not match event.namespace`,
    );
  if (ev.eventTime === null) {
    if (objectNs === "" ? namespace !== "default" : namespace !== objectNs) mismatch();
    return;
  }
  if (objectNs === "" && namespace !== "default" && namespace !== "kube-system") mismatch();
  const required = (field: string, value: string | undefined) => {
    if (!value) fail(field, "Required value");
  };
  const bounded = (field: string, value: string | undefined, limit: number) => {
    if (value && value.length > limit) {
      fail(field, `Invalid value: "": can have at most ${limit} characters`);
    }
  };
  required("reportingComponent", ev.reportingComponent);
  if (!isQualifiedName(ev.reportingComponent)) {
    fail(
      "reportingComponent",
      `Invalid value: ${JSON.stringify(ev.reportingComponent)}: must be a qualified name`,
    );
  }
  required("reportingInstance", ev.reportingInstance);
  bounded("reportingInstance", ev.reportingInstance, LENGTH_LIMIT);
  required("action", ev.action);
  bounded("action", ev.action, LENGTH_LIMIT);
  required("reason", ev.reason);
  bounded("reason", ev.reason, LENGTH_LIMIT);
  bounded("message", ev.message, NOTE_LENGTH_LIMIT);
}

/**
 * An Event as the server stores it: typed, normalized, unknown fields dropped (a 400 naming
 * them under `strict`), then checked as the core API's validation does.
 */
function validateEvent(
  body: unknown,
  nameHint: string,
  opts: WriteOptions,
  namespace: string | undefined,
): EventJson {
  const obj = checkObject(body, EVENT_KIND, nameHint);
  const unknown: string[] = [];
  const ev = typedEvent(obj, unknown);
  if (unknown.length > 0 && opts.strict) {
    throw badRequest(
      `strict decoding error: ${
        unknown.map((f) => `unknown field ${JSON.stringify(f)}`).join(", ")
      }`,
    );
  }
  const own = ev.metadata.namespace;
  // A namespace in the body other than the URL's is a 400 of the store, which comes first.
  if (own && namespace !== undefined && own !== namespace) return ev;
  checkEvent(ev, namespace ?? own ?? "");
  return ev;
}

const EVENT_KIND: KindInfo = {
  ...EVENT_NAMES,
  apiVersion: "v1",
  namespaced: true,
  statusSubresource: false,
  createOnUpdate: true,
  validate: validateEvent,
};

/** The Events of the embedded API server, in any namespace; the newest {@link EVENT_LIMIT}. */
export class EventStore extends ObjectStore<EventJson> {
  readonly #limit: number;

  constructor(
    opts: {
      historySize?: number;
      /** The server's counter, shared with its other kinds. */
      revision?: Revision;
      /** Events kept (default {@link EVENT_LIMIT}). */
      limit?: number;
    } = {},
  ) {
    super(EVENT_KIND, opts);
    this.#limit = opts.limit ?? EVENT_LIMIT;
  }

  /** Creates an Event, then deletes the oldest while there are more than the limit. */
  override createIn(
    namespace: string | undefined,
    body: unknown,
    opts: WriteOptions = {},
  ): EventJson {
    const made = super.createIn(namespace, body, opts);
    while (this.count() > this.#limit) {
      const old = this.oldest()!;
      this.deleteIn(old.metadata.namespace, old.metadata.name);
    }
    return made;
  }

  /** Creates an Event in `namespace`: 409 if it exists, 400 or 422 if invalid. */
  create(namespace: string, body: unknown, opts: WriteOptions = {}): EventJson {
    return this.createIn(namespace, body, opts);
  }

  /** One Event, or undefined. */
  get(namespace: string, name: string): EventJson | undefined {
    return this.storedIn(namespace, name)?.obj;
  }
}
