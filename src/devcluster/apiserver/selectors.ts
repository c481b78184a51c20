/**
 * Label and field selectors as kube-apiserver reads them: labels with every operator
 * (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`), comma separated (all must hold);
 * fields: those the kind lets a selector name (`metadata.name`, `metadata.namespace` for a
 * namespaced kind, and fields of its own such as an Event's `involvedObject.name`).
 *
 * @module
 */
import {
  LabelSelectorError,
  parseLabelSelector as parseLabels,
} from "../../kube/label_selector.ts";

/** A parsed selector: a predicate over an object. */
export type Selector = (obj: NodeLike) => boolean;

/** The parts of an object a selector reads. */
export interface NodeLike {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
}

/** Thrown for a selector that cannot be parsed; becomes a 400 BadRequest. */
export class SelectorError extends Error {}

function terms(text: string): string[] {
  return text.split(",").map((t) => t.trim()).filter((t) => t !== "");
}

/**
 * Parses a labelSelector (every operator, set-based ones included: see
 * src/kube/label_selector.ts); undefined or "" selects everything.
 */
export function parseLabelSelector(text: string | null | undefined): Selector {
  let parsed;
  try {
    parsed = parseLabels(text ?? "");
  } catch (e) {
    if (e instanceof LabelSelectorError) throw new SelectorError(e.message);
    throw e;
  }
  return (o) => parsed.matches(o.metadata.labels);
}

/** Reads a field of an object as a field selector compares it: a string, "" when unset. */
export type FieldReader = (obj: NodeLike) => string;

/**
 * The value at a dotted path (`involvedObject.name`) as the real server's field sets hold
 * it: strings as they are, numbers and booleans in their text form, "" when unset.
 */
export function fieldAt(obj: NodeLike, path: string): string {
  let v: unknown = obj;
  for (const part of path.split(".")) {
    if (typeof v !== "object" || v === null) return "";
    v = (v as Record<string, unknown>)[part];
  }
  return typeof v === "string"
    ? v
    : typeof v === "number" || typeof v === "boolean"
    ? String(v)
    : "";
}

const readName: FieldReader = (o) => o.metadata.name;
const readNamespace: FieldReader = (o) => o.metadata.namespace ?? "";

/**
 * Parses a fieldSelector over `fields` (by default metadata.name, as for Nodes). A field is
 * read by its reader in `readers`, else at its dotted path (see {@link fieldAt}).
 */
export function parseFieldSelector(
  text: string | null | undefined,
  fields: readonly string[] = ["metadata.name"],
  readers: Readonly<Record<string, FieldReader>> = {},
): Selector {
  const checks: Selector[] = [];
  for (const t of terms(text ?? "")) {
    const m = /^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/.exec(t);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(t)}`);
    const [, field, op, value] = m;
    if (!fields.includes(field)) {
      throw new SelectorError(`field label not supported: ${field}`);
    }
    const read: FieldReader = readers[field] ??
      (field === "metadata.name"
        ? readName
        : field === "metadata.namespace"
        ? readNamespace
        : (o) => fieldAt(o, field));
    checks.push((o) => (op === "!=" ? read(o) !== value : read(o) === value));
  }
  return (o) => checks.every((c) => c(o));
}
