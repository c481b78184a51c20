/**
 * Label and field selectors as kube-apiserver reads them: labels with every operator
 * (`a=b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`), comma separated (all must hold);
 * fields: `metadata.name`, and `metadata.namespace` for namespaced kinds.
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

/** Parses a fieldSelector over `fields` (by default metadata.name, as for Nodes). */
export function parseFieldSelector(
  text: string | null | undefined,
  fields: readonly string[] = ["metadata.name"],
): Selector {
  const checks: Selector[] = [];
  for (const t of terms(text ?? "")) {
    const m = /^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/.exec(t);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(t)}`);
    const [, field, op, value] = m;
    if (!fields.includes(field)) {
      throw new SelectorError(`field label not supported: ${field}`);
    }
    const read = field === "metadata.name"
      ? (o: NodeLike) => o.metadata.name
      : (o: NodeLike) => o.metadata.namespace ?? "";
    checks.push((o) => (op === "!=" ? read(o) !== value : read(o) === value));
  }
  return (o) => checks.every((c) => c(o));
}
