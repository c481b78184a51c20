/**
 * Label and field selectors as kube-apiserver reads them for Nodes: `a=b`, `a==b`, `a!=b`,
 * `a`, `!a`, comma separated (all must hold); fields: `metadata.name`.
 *
 * @module
 */

/** A parsed selector: a predicate over a Node object. */
export type Selector = (obj: NodeLike) => boolean;

/** The parts of a Node a selector reads. */
export interface NodeLike {
  metadata: { name: string; labels?: Record<string, string> };
}

/** Thrown for a selector that cannot be parsed; becomes a 400 BadRequest. */
export class SelectorError extends Error {}

function terms(text: string): string[] {
  return text.split(",").map((t) => t.trim()).filter((t) => t !== "");
}

/** Parses a labelSelector; undefined or "" selects everything. */
export function parseLabelSelector(text: string | null | undefined): Selector {
  const checks: Selector[] = [];
  for (const t of terms(text ?? "")) {
    const m = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(t);
    if (m) {
      const [, key, op, value] = m;
      checks.push((o) => {
        const v = o.metadata.labels?.[key];
        return op === "!=" ? v !== value : v === value;
      });
    } else if (/^![^=!\s]+$/.test(t)) {
      const key = t.slice(1);
      checks.push((o) => !(o.metadata.labels && key in o.metadata.labels));
    } else if (/^[^=!\s]+$/.test(t)) {
      checks.push((o) => !!o.metadata.labels && t in o.metadata.labels);
    } else {
      throw new SelectorError(`unable to parse requirement: ${JSON.stringify(t)}`);
    }
  }
  return (o) => checks.every((c) => c(o));
}

/** Parses a fieldSelector; Nodes support metadata.name. */
export function parseFieldSelector(text: string | null | undefined): Selector {
  const checks: Selector[] = [];
  for (const t of terms(text ?? "")) {
    const m = /^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$/.exec(t);
    if (!m) throw new SelectorError(`invalid field selector: ${JSON.stringify(t)}`);
    const [, field, op, value] = m;
    if (field !== "metadata.name") {
      throw new SelectorError(`field label not supported: ${field}`);
    }
    checks.push((o) => (op === "!=" ? o.metadata.name !== value : o.metadata.name === value));
  }
  return (o) => checks.every((c) => c(o));
}
