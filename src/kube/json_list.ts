/**
 * Splits a Kubernetes list response (`{"metadata":{...},"items":[...]}`) while it streams
 * in: each element of the top-level `items` array is handed over as its own JSON text, and
 * the rest of the object (with `items` left empty) is parsed at the end.
 *
 * A page of 500 real Nodes is 5-10 MB of JSON. Parsing it whole holds the text and every
 * object of the page at once, and the heap (and the resident memory, which V8 does not give
 * back soon) grows to several times that. Split, only one item is alive at a time and a
 * consumer can keep its small projection and drop the rest.
 *
 * Only the structure is scanned here (strings, brackets, braces); JSON.parse validates
 * each item and the rest. The delimiters are ASCII, and in UTF-8 no byte of a multi-byte
 * character is, so the bytes are split before they are decoded.
 *
 * @module
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;

/** Where the scanner is: in the list object's own fields, between items, or in an item. */
const enum Mode {
  Rest,
  Between,
  Item,
}

/** A streaming splitter of one list response. */
export class ListSplitter {
  readonly #onItem: (json: Uint8Array) => void;
  readonly #onHead: ((head: unknown) => void) | undefined;
  readonly #decoder = new TextDecoder();
  /** The response without its items, as byte pieces. */
  #rest: Uint8Array[] = [];
  /** The current item's byte pieces. */
  #item: Uint8Array[] = [];
  #mode = Mode.Rest;
  #depth = 0;
  #inString = false;
  /** The previous chunk ended in a string right after a backslash. */
  #escaped = false;
  /** The last string closed at depth 1, when short: the key before an array. */
  #lastKey = "";
  #keyBytes: number[] | undefined;
  /** The current item is a bare scalar (not an object or array). */
  #scalar = false;
  #items = 0;

  /**
   * @param onItem called with the UTF-8 JSON text of every item, in order (valid only
   *   during the call: it may share the buffer of a chunk)
   * @param onHead called once the items begin, with what came before them (closed with
   *   an empty `items`): a list's metadata, continue token included, when it comes first
   */
  constructor(onItem: (json: Uint8Array) => void, onHead?: (head: unknown) => void) {
    this.#onItem = onItem;
    this.#onHead = onHead;
  }

  /** Items handed over so far. */
  get items(): number {
    return this.#items;
  }

  /** Takes the next chunk of the body. */
  push(chunk: Uint8Array): void {
    // State in locals for the loop (written back at the end): this runs over every byte.
    const n = chunk.length;
    if (n === 0) return;
    let depth = this.#depth;
    let mode = this.#mode;
    let inString = this.#inString;
    let i = 0;
    // Start of the part of this chunk that belongs to the current region (rest or item).
    let from = 0;
    if (this.#escaped) {
      this.#escaped = false;
      i = 1;
    }
    while (i < n) {
      if (inString) {
        // Strings are most of the bytes: find the closing quote, stepping over escapes.
        let j = i;
        let c = 0;
        while (j < n) {
          c = chunk[j];
          if (c === QUOTE || c === BACKSLASH) break;
          j++;
        }
        if (this.#keyBytes) this.#collectKey(chunk, i, j);
        if (j === n) break;
        if (c === BACKSLASH) {
          if (this.#keyBytes) this.#collectKey(chunk, j, j + 2);
          if (j + 1 >= n) this.#escaped = true;
          i = j + 2;
          continue;
        }
        inString = false;
        i = j + 1;
        if (this.#keyBytes) {
          this.#lastKey = this.#keyBytes.length <= 16 ? String.fromCharCode(...this.#keyBytes) : "";
          this.#keyBytes = undefined;
        }
        if (mode === Mode.Item && this.#scalar && depth === 2) {
          this.#endItem(chunk, from, i);
          mode = Mode.Between;
          from = i;
        }
        continue;
      }
      const b = chunk[i];
      if (mode === Mode.Item) {
        if (b === QUOTE) {
          inString = true;
          i++;
        } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
          depth++;
          i++;
        } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
          if (depth === 2) {
            // A scalar item ends at the array's end; the Between case takes the bracket.
            this.#endItem(chunk, from, i);
            mode = Mode.Between;
            from = i;
            continue;
          }
          depth--;
          i++;
          if (depth === 2) {
            this.#endItem(chunk, from, i);
            mode = Mode.Between;
            from = i;
          }
        } else if (depth === 2 && (b === COMMA || isSpace(b))) {
          this.#endItem(chunk, from, i);
          mode = Mode.Between;
          from = i;
        } else {
          i++;
        }
      } else if (mode === Mode.Between) {
        if (b === CLOSE_BRACKET) {
          depth--;
          from = i;
          mode = Mode.Rest;
          i++;
        } else if (b === COMMA || isSpace(b)) {
          i++;
          from = i;
        } else {
          // An item starts; its first byte is taken in Item mode.
          from = i;
          mode = Mode.Item;
          this.#scalar = b !== OPEN_BRACE && b !== OPEN_BRACKET;
        }
      } else {
        if (b === QUOTE) {
          inString = true;
          if (depth === 1) this.#keyBytes = [];
        } else if (b === OPEN_BRACE || b === OPEN_BRACKET) {
          depth++;
          if (b === OPEN_BRACKET && depth === 2 && this.#lastKey === "items") {
            this.#rest.push(chunk.subarray(from, i + 1));
            from = i + 1;
            mode = Mode.Between;
            this.#head();
          }
        } else if (b === CLOSE_BRACE || b === CLOSE_BRACKET) {
          depth--;
        }
        i++;
      }
    }
    if (from < n) {
      if (mode === Mode.Item) this.#item.push(chunk.subarray(from, n));
      else if (mode === Mode.Rest) this.#rest.push(chunk.subarray(from, n));
    }
    this.#depth = depth;
    this.#mode = mode;
    this.#inString = inString;
  }

  #head(): void {
    if (!this.#onHead) return;
    let head: unknown;
    try {
      head = JSON.parse(this.#decoder.decode(concat(this.#rest)) + "]}");
    } catch {
      return; // Not a list after all: end() reports it.
    }
    this.#onHead(head);
  }

  #collectKey(chunk: Uint8Array, start: number, end: number): void {
    const key = this.#keyBytes!;
    for (let j = start; j < end && j < chunk.length && key.length <= 16; j++) key.push(chunk[j]);
  }

  #endItem(chunk: Uint8Array, from: number, end: number): void {
    let bytes: Uint8Array;
    if (this.#item.length === 0) {
      bytes = chunk.subarray(from, end);
    } else {
      this.#item.push(chunk.subarray(from, end));
      bytes = concat(this.#item);
      this.#item = [];
    }
    this.#items++;
    this.#onItem(bytes);
  }

  /**
   * Ends the body: returns the list object without its items (`items: []` when the list
   * had them). Throws a SyntaxError when the body is not a complete JSON document.
   */
  end(): unknown {
    if (this.#mode !== Mode.Rest || this.#inString || this.#depth !== 0) {
      throw new SyntaxError("list response ended in the middle of a JSON value");
    }
    return JSON.parse(this.#decoder.decode(concat(this.#rest)));
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0];
  let size = 0;
  for (const p of pieces) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of pieces) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Which members of a JSON object to keep: `true` keeps a value whole. */
export type Fields = true | { readonly [key: string]: Fields };

/** A {@link Fields} map with its keys as UTF-8 bytes, to compare keys without decoding. */
interface ByteFields {
  readonly keys: readonly { readonly key: Uint8Array; readonly sub: ByteFields | true }[];
  readonly byName: ReadonlyMap<string, ByteFields | true>;
}

const byteFieldsCache = new WeakMap<object, ByteFields>();

function byteFields(fields: Exclude<Fields, true>): ByteFields {
  let b = byteFieldsCache.get(fields);
  if (!b) {
    const encoder = new TextEncoder();
    const byName = new Map<string, ByteFields | true>();
    for (const [key, sub] of Object.entries(fields)) {
      byName.set(key, sub === true ? true : byteFields(sub));
    }
    const keys = [...byName].map(([key, sub]) => ({ key: encoder.encode(key), sub }));
    b = { keys, byName };
    byteFieldsCache.set(fields, b);
  }
  return b;
}

const textDecoder = new TextDecoder();

/**
 * Returns the JSON text of one value with only `fields` kept, without decoding or building
 * the rest: a real Node is mostly images, conditions and managed fields that nothing here
 * reads, and decoding and parsing them costs more than everything else a list does. What
 * is dropped is only scanned for its end (strings, brackets), not validated; what is kept
 * is JSON.parse'd by the caller. Throws a SyntaxError when the structure is broken.
 *
 * @example
 * ```ts
 * pickFields('{"a":{"b":1,"c":[2]},"d":3}', { a: { b: true } }); // '{"a":{"b":1}}'
 * ```
 */
export function pickFields(input: string | Uint8Array, fields: Fields): string {
  const t = typeof input === "string" ? new TextEncoder().encode(input) : input;
  if (fields === true) return textDecoder.decode(t);
  const out = new Picked(t);
  const end = skipSpace(t, pick(t, skipSpace(t, 0), byteFields(fields), out));
  if (end !== t.length) throw new SyntaxError(`unexpected text at ${end}`);
  return out.text();
}

/** The kept pieces of a text: ranges of it and punctuation, joined at the end. */
class Picked {
  #parts: (string | number)[] = [];
  #size = 0;
  constructor(readonly source: Uint8Array) {}

  range(start: number, end: number): void {
    this.#parts.push(start, end);
    this.#size += end - start;
  }

  punct(text: "{" | "}" | "," | ":"): void {
    this.#parts.push(text);
    this.#size++;
  }

  text(): string {
    const bytes = new Uint8Array(this.#size);
    let at = 0;
    const parts = this.#parts;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (typeof p === "string") {
        bytes[at++] = p.charCodeAt(0);
      } else {
        const end = parts[++i] as number;
        bytes.set(this.source.subarray(p, end), at);
        at += end - p;
      }
    }
    return textDecoder.decode(bytes);
  }
}

function pick(t: Uint8Array, i: number, fields: ByteFields | true, out: Picked): number {
  if (fields === true || t[i] !== OPEN_BRACE) {
    // Kept whole, or not an object where one was expected: the caller's schema judges it.
    const end = skipValue(t, i);
    out.range(i, end);
    return end;
  }
  out.punct("{");
  i = skipSpace(t, i + 1);
  if (t[i] === CLOSE_BRACE) {
    out.punct("}");
    return i + 1;
  }
  let first = true;
  for (;;) {
    if (t[i] !== QUOTE) throw new SyntaxError(`expected a key at ${i}`);
    const keyStart = i;
    const keyEnd = skipString(t, i);
    const sub = memberFields(t, keyStart, keyEnd, fields);
    i = skipSpace(t, keyEnd);
    if (t[i] !== 0x3a) throw new SyntaxError(`expected ':' at ${i}`);
    const valueAt = skipSpace(t, i + 1);
    if (sub === undefined) {
      i = skipValue(t, valueAt);
    } else {
      if (!first) out.punct(",");
      first = false;
      out.range(keyStart, keyEnd);
      out.punct(":");
      i = pick(t, valueAt, sub, out);
    }
    i = skipSpace(t, i);
    const c = t[i];
    if (c === COMMA) {
      i = skipSpace(t, i + 1);
    } else if (c === CLOSE_BRACE) {
      out.punct("}");
      return i + 1;
    } else {
      throw new SyntaxError(`expected ',' or '}' at ${i}`);
    }
  }
}

/** The fields of the member whose key spans [start, end) (quotes included), if kept. */
function memberFields(
  t: Uint8Array,
  start: number,
  end: number,
  fields: ByteFields,
): ByteFields | true | undefined {
  const len = end - start - 2;
  let escaped = false;
  for (const { key, sub } of fields.keys) {
    if (key.length !== len) continue;
    let j = 0;
    while (j < len && t[start + 1 + j] === key[j]) j++;
    if (j === len) return sub;
  }
  for (let j = start + 1; j < end - 1; j++) if (t[j] === BACKSLASH) escaped = true;
  if (!escaped) return undefined;
  // A key written with escapes: rare enough to decode.
  const key = JSON.parse(textDecoder.decode(t.subarray(start, end))) as string;
  return fields.byName.get(key);
}

function skipSpace(t: Uint8Array, i: number): number {
  while (i < t.length && isSpace(t[i])) i++;
  return i;
}

/** The index after the string starting at `i` (a quote). */
function skipString(t: Uint8Array, i: number): number {
  let from = i + 1;
  for (;;) {
    // Short strings are the most: a plain loop, then indexOf for long ones.
    let q = -1;
    const stop = Math.min(from + 32, t.length);
    for (let j = from; j < stop; j++) {
      if (t[j] === QUOTE) {
        q = j;
        break;
      }
    }
    if (q < 0) {
      if (stop === t.length) throw new SyntaxError(`unterminated string at ${i}`);
      q = t.indexOf(QUOTE, stop);
      if (q < 0) throw new SyntaxError(`unterminated string at ${i}`);
    }
    let k = q - 1;
    while (t[k] === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    from = q + 1;
  }
}

/** The index after the value starting at `i`. */
function skipValue(t: Uint8Array, i: number): number {
  const c = t[i];
  if (c === QUOTE) return skipString(t, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 1;
    let j = i + 1;
    while (depth > 0) {
      if (j >= t.length) throw new SyntaxError(`unterminated value at ${i}`);
      const d = t[j];
      if (d === QUOTE) {
        j = skipString(t, j);
        continue;
      }
      if (d === OPEN_BRACE || d === OPEN_BRACKET) depth++;
      else if (d === CLOSE_BRACE || d === CLOSE_BRACKET) depth--;
      j++;
    }
    return j;
  }
  let j = i;
  while (j < t.length) {
    const d = t[j];
    if (d === COMMA || d === CLOSE_BRACE || d === CLOSE_BRACKET || isSpace(d)) break;
    j++;
  }
  if (j === i) throw new SyntaxError(`expected a value at ${i}`);
  return j;
}
