/**
 * Netlink framing, pure: message headers and attributes (TLVs), aligned to 4 bytes, in the
 * host's byte order (little-endian on the machines this runs on).
 *
 * @module
 */

/** Length of struct nlmsghdr. */
export const NLMSG_HDRLEN = 16;

/** Rounds up to the 4-byte alignment of messages and attributes. */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** Writes netlink messages one after the other into a growing buffer. */
export class MessageWriter {
  #buf: Uint8Array;
  #view: DataView;
  #len = 0;
  #start = -1;

  constructor(capacity = 4096) {
    this.#buf = new Uint8Array(capacity);
    this.#view = new DataView(this.#buf.buffer);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#len;
  }

  #reserve(n: number): number {
    const at = this.#len;
    if (at + n > this.#buf.length) {
      const bigger = new Uint8Array(Math.max(this.#buf.length * 2, at + n));
      bigger.set(this.#buf.subarray(0, at));
      this.#buf = bigger;
      this.#view = new DataView(bigger.buffer);
    }
    this.#len = at + n;
    return at;
  }

  /** Starts a message: its header, its length filled in by {@link end}. */
  begin(type: number, flags: number, seq: number): void {
    if (this.#start >= 0) throw new Error("netlink message begun inside another");
    this.#start = this.#reserve(NLMSG_HDRLEN);
    const v = this.#view;
    v.setUint32(this.#start, 0, true);
    v.setUint16(this.#start + 4, type, true);
    v.setUint16(this.#start + 6, flags, true);
    v.setUint32(this.#start + 8, seq >>> 0, true);
    v.setUint32(this.#start + 12, 0, true);
  }

  /** Appends raw bytes (a fixed header such as struct rtmsg), padded to 4. */
  raw(bytes: Uint8Array): void {
    const at = this.#reserve(align4(bytes.length));
    this.#buf.set(bytes, at);
    this.#buf.fill(0, at + bytes.length, this.#len);
  }

  /** Appends an attribute holding `bytes`. */
  attr(type: number, bytes: Uint8Array): void {
    const at = this.#reserve(align4(4 + bytes.length));
    this.#view.setUint16(at, 4 + bytes.length, true);
    this.#view.setUint16(at + 2, type, true);
    this.#buf.set(bytes, at + 4);
    this.#buf.fill(0, at + 4 + bytes.length, this.#len);
  }

  /** Appends a u32 attribute. */
  attrU32(type: number, value: number): void {
    const at = this.#reserve(8);
    this.#view.setUint16(at, 8, true);
    this.#view.setUint16(at + 2, type, true);
    this.#view.setUint32(at + 4, value >>> 0, true);
  }

  /** Appends an address attribute: `length` (4 or 16) bytes of `value`, network order. */
  attrAddress(type: number, length: 4 | 16, value: bigint): void {
    const at = this.#reserve(4 + length);
    const v = this.#view;
    v.setUint16(at, 4 + length, true);
    v.setUint16(at + 2, type, true);
    if (length === 4) v.setUint32(at + 4, Number(value));
    else {
      v.setBigUint64(at + 4, value >> 64n);
      v.setBigUint64(at + 12, BigInt.asUintN(64, value));
    }
  }

  /** Appends bytes given one by one (a small fixed header), padded to 4. */
  bytesOf(...values: number[]): void {
    const at = this.#reserve(align4(values.length));
    for (let i = 0; i < values.length; i++) this.#buf[at + i] = values[i];
    this.#buf.fill(0, at + values.length, this.#len);
  }

  /** Ends the message begun last; returns its offset and length. */
  end(): { offset: number; length: number } {
    const start = this.#start;
    if (start < 0) throw new Error("netlink message ended without a beginning");
    const length = this.#len - start;
    this.#view.setUint32(start, length, true);
    this.#start = -1;
    return { offset: start, length };
  }

  /** Drops everything after `offset` (a message that could not be finished). */
  truncate(offset: number): void {
    this.#len = Math.min(this.#len, offset);
    this.#start = -1;
  }

  /** The bytes written, as a view of the buffer (valid until the next write). */
  bytes(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** One message of a datagram: its header and where its payload lies in `view`. */
export interface RawMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly pid: number;
  readonly view: DataView;
  /** Offset of the payload (after the header) in `view`. */
  readonly start: number;
  /** Offset just past the payload. */
  readonly end: number;
}

/**
 * Splits a datagram into its messages; throws on a length that does not fit, naming it.
 */
export function splitMessages(data: Uint8Array): RawMessage[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: RawMessage[] = [];
  let at = 0;
  while (at + NLMSG_HDRLEN <= data.byteLength) {
    const len = view.getUint32(at, true);
    if (len < NLMSG_HDRLEN || at + len > data.byteLength) {
      throw new Error(
        `netlink message at byte ${at} claims ${len} bytes of ${data.byteLength - at} left`,
      );
    }
    out.push({
      type: view.getUint16(at + 4, true),
      flags: view.getUint16(at + 6, true),
      seq: view.getUint32(at + 8, true),
      pid: view.getUint32(at + 12, true),
      view,
      start: at + NLMSG_HDRLEN,
      end: at + len,
    });
    at += align4(len);
  }
  return out;
}

/**
 * Calls `fn` for each attribute between `start` and `end` with its type (nested and byte
 * order bits cleared), and where its value lies; stops at a malformed length.
 */
export function forEachAttr(
  view: DataView,
  start: number,
  end: number,
  fn: (type: number, at: number, length: number) => void,
): void {
  let at = start;
  while (at + 4 <= end) {
    const len = view.getUint16(at, true);
    if (len < 4 || at + len > end) return;
    fn(view.getUint16(at + 2, true) & 0x3fff, at + 4, len - 4);
    at += align4(len);
  }
}

const decoder = new TextDecoder();

/** A NUL-terminated string attribute's text. */
export function attrString(view: DataView, at: number, length: number): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + at, length);
  const nul = bytes.indexOf(0);
  return decoder.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}
