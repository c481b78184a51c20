/**
 * Small typed shape checks for the IPAM hot path (the CNI config, results of host-local).
 *
 * Hand-written instead of zod: every CNI call starts a new process, and importing zod
 * costs more start-up time than the budget of one exec. The messages are those zod gave
 * (`Invalid input: expected string, received number`), so errors read as before.
 *
 * @module
 */

/** A path into a JSON value: object keys and array indexes. */
export type Path = readonly (string | number)[];

/** One problem found in a value: where, and what is wrong. */
export interface Issue {
  path: Path;
  message: string;
}

/** A plain JSON-like object (not null, not an array). */
export type Obj = Record<string, unknown>;

/**
 * The type name of `value` as the messages say it: `undefined`, `null`, `array`, `NaN`,
 * else its `typeof`.
 */
export function received(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number" && Number.isNaN(value)) return "NaN";
  return typeof value;
}

/** Whether `value` is a plain object (not null, not an array). */
export function isObj(value: unknown): value is Obj {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The message for a value of the wrong type. */
export function wrongType(expected: string, value: unknown): string {
  return `Invalid input: expected ${expected}, received ${received(value)}`;
}

/**
 * Collects issues while a value is checked; each check returns the value when it is of
 * the expected type, else undefined after recording an issue.
 */
export class Checker {
  /** Issues found so far, in the order checked. */
  readonly issues: Issue[] = [];

  /** Records an issue at `path`. */
  fail(path: Path, message: string): undefined {
    this.issues.push({ path, message });
    return undefined;
  }

  /** A plain object. */
  object(value: unknown, path: Path): Obj | undefined {
    return isObj(value) ? value : this.fail(path, wrongType("object", value));
  }

  /** A string; `min1` also refuses the empty string. */
  string(value: unknown, path: Path, min1 = false): string | undefined {
    if (typeof value !== "string") return this.fail(path, wrongType("string", value));
    if (min1 && value.length === 0) {
      return this.fail(path, "Too small: expected string to have >=1 characters");
    }
    return value;
  }

  /** A string when present (undefined allowed). */
  optionalString(value: unknown, path: Path, min1 = false): string | undefined {
    return value === undefined ? undefined : this.string(value, path, min1);
  }

  /** A boolean when present. */
  optionalBoolean(value: unknown, path: Path): boolean | undefined {
    if (value === undefined || typeof value === "boolean") return value;
    return this.fail(path, wrongType("boolean", value));
  }

  /** A safe integer when present. */
  optionalInt(value: unknown, path: Path): number | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isFinite(value)) {
      return this.fail(path, wrongType("number", value));
    }
    if (!Number.isInteger(value)) return this.fail(path, wrongType("int", value));
    if (value > Number.MAX_SAFE_INTEGER) {
      return this.fail(path, `Too big: expected int to be <${Number.MAX_SAFE_INTEGER}`);
    }
    if (value < Number.MIN_SAFE_INTEGER) {
      return this.fail(path, `Too small: expected int to be >${Number.MIN_SAFE_INTEGER}`);
    }
    return value;
  }

  /** An array when present; its items are not checked. */
  optionalArray(value: unknown, path: Path): unknown[] | undefined {
    if (value === undefined) return undefined;
    return Array.isArray(value) ? value : this.fail(path, wrongType("array", value));
  }

  /** An array of strings when present; every bad item is an issue. */
  optionalStrings(value: unknown, path: Path): string[] | undefined {
    const list = this.optionalArray(value, path);
    if (list === undefined) return undefined;
    let ok = true;
    for (const [i, item] of list.entries()) {
      if (this.string(item, [...path, i]) === undefined) ok = false;
    }
    return ok ? list as string[] : undefined;
  }
}

/**
 * The keys of `input` that are not in `known`, with their values, in input order: loose
 * objects keep what they do not know.
 */
export function rest(input: Obj, known: readonly string[]): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(input)) if (!known.includes(k)) out[k] = v;
  return out;
}

/** `path` as text: `ipam.ipv4-namespaces.1`. */
export function pathText(path: Path): string {
  return path.map(String).join(".");
}
