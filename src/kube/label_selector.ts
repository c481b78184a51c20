/**
 * Kubernetes label selectors in their text form, as `kubectl -l` and `?labelSelector=` take
 * them: requirements joined by commas, all of which must hold.
 *
 * - `key=value`, `key==value`, `key!=value` (a missing label is "not equal");
 * - `key in (a,b)`, `key notin (a,b)` (a missing label is "not in");
 * - `key` (exists), `!key` (does not exist).
 *
 * Keys are an optional DNS subdomain prefix and a `/`, then a name of at most 63 characters;
 * values at most 63 characters, alphanumeric at both ends with `-`, `_`, `.` inside.
 *
 * @example
 * ```ts
 * const s = parseLabelSelector("network.example.com/net3=yes,zone in (a,b)");
 * s.matches({ "network.example.com/net3": "yes", zone: "a" }); // true
 * ```
 *
 * @module
 */

/** One requirement of a selector. */
export interface Requirement {
  readonly key: string;
  readonly op: "=" | "!=" | "in" | "notin" | "exists" | "!";
  readonly values: readonly string[];
}

/** A parsed selector. */
export interface LabelSelector {
  readonly requirements: readonly Requirement[];
  /** Whether labels (absent: none) satisfy every requirement. */
  matches(labels: Readonly<Record<string, string>> | undefined): boolean;
  /** The canonical text, as sent to the API server. */
  readonly text: string;
}

/** Thrown for text that is not a label selector; the message says which part and why. */
export class LabelSelectorError extends Error {
  constructor(readonly selector: string, reason: string) {
    super(`label selector ${JSON.stringify(selector)}: ${reason}`);
    this.name = "LabelSelectorError";
  }
}

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const PREFIX = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Why `key` is not a label key, or undefined when it is one. */
export function labelKeyProblem(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const [prefix, name] = slash < 0 ? ["", key] : [key.slice(0, slash), key.slice(slash + 1)];
  if (slash >= 0 && (prefix.length > 253 || !PREFIX.test(prefix))) {
    return `${JSON.stringify(key)}: the prefix must be a DNS subdomain`;
  }
  if (!NAME.test(name)) {
    return `${JSON.stringify(key)}: the name must be 1-63 characters, alphanumeric at both ` +
      `ends, with '-', '_' or '.' inside`;
  }
  return undefined;
}

/** Why `value` is not a label value, or undefined when it is one ("" is one). */
export function labelValueProblem(value: string): string | undefined {
  if (value === "" || NAME.test(value)) return undefined;
  return `${JSON.stringify(value)}: a value must be at most 63 characters, alphanumeric at ` +
    `both ends, with '-', '_' or '.' inside`;
}

/** Splits at the commas that are not inside a `( )` list. */
function splitTerms(text: string): string[] | undefined {
  const out: string[] = [];
  let depth = 0, start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(") depth++;
    else if (c === ")") depth--;
    if (depth < 0 || depth > 1) return undefined;
    if (c === "," && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  if (depth !== 0) return undefined;
  out.push(text.slice(start).trim());
  return out;
}

function parseTerm(term: string, whole: string): Requirement {
  const fail = (reason: string): never => {
    throw new LabelSelectorError(whole, reason);
  };
  let m = /^(\S+?)\s+(in|notin)\s*\(([^()]*)\)$/.exec(term);
  let req: Requirement;
  if (m) {
    const values = m[3].split(",").map((v) => v.trim());
    if (values.some((v) => v === "")) fail(`${JSON.stringify(term)}: an empty value in the list`);
    req = { key: m[1], op: m[2] as "in" | "notin", values };
  } else if ((m = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(term))) {
    req = { key: m[1], op: m[2] === "!=" ? "!=" : "=", values: [m[3]] };
  } else if ((m = /^!\s*([^=!\s(),]+)$/.exec(term))) {
    req = { key: m[1], op: "!", values: [] };
  } else if (/^[^=!\s(),]+$/.test(term)) {
    req = { key: term, op: "exists", values: [] };
  } else {
    return fail(
      `${JSON.stringify(term)} is not a requirement (key=value, key!=value, ` +
        `key in (a,b), key notin (a,b), key, !key)`,
    );
  }
  const keyProblem = labelKeyProblem(req.key);
  if (keyProblem) fail(keyProblem);
  for (const v of req.values) {
    const valueProblem = labelValueProblem(v);
    if (valueProblem) fail(valueProblem);
  }
  return req;
}

function holds(r: Requirement, labels: Readonly<Record<string, string>> | undefined): boolean {
  const has = labels !== undefined && Object.hasOwn(labels, r.key);
  const v = has ? labels[r.key] : undefined;
  switch (r.op) {
    case "=":
      return v === r.values[0];
    case "!=":
      return v !== r.values[0];
    case "in":
      return v !== undefined && r.values.includes(v);
    case "notin":
      return v === undefined || !r.values.includes(v);
    case "exists":
      return has;
    case "!":
      return !has;
  }
}

function format(r: Requirement): string {
  switch (r.op) {
    case "in":
    case "notin":
      return `${r.key} ${r.op} (${r.values.join(",")})`;
    case "exists":
      return r.key;
    case "!":
      return `!${r.key}`;
    default:
      return `${r.key}${r.op}${r.values[0]}`;
  }
}

/**
 * Parses a label selector; "" selects everything. Throws {@link LabelSelectorError} naming
 * the requirement that is wrong.
 */
export function parseLabelSelector(text: string): LabelSelector {
  const trimmed = text.trim();
  const terms = trimmed === "" ? [] : splitTerms(trimmed);
  if (terms === undefined) throw new LabelSelectorError(text, "unbalanced parentheses");
  const requirements = terms.map((t) => {
    if (t === "") throw new LabelSelectorError(text, "an empty requirement");
    return parseTerm(t, text);
  });
  return {
    requirements,
    text: requirements.map(format).join(","),
    matches: (labels) => requirements.every((r) => holds(r, labels)),
  };
}
