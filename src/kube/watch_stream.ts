/**
 * A watch over HTTP/1.1 on a connection of its own: the request written once, the body read
 * straight from the socket into one buffer, its chunked coding undone and its lines cut in
 * the same loop. Under churn a watch delivers an event at every read, and fetch's response
 * stream costs for each one. The client uses it where fetch would connect directly (no proxy
 * in the environment, certificates verified) and fetch elsewhere.
 *
 * @module
 */

/** How to reach the server. */
export interface StreamTarget {
  readonly url: URL;
  readonly headers: Readonly<Record<string, string>>;
  readonly caPem?: string;
  readonly certPem?: string;
  readonly keyPem?: string;
}

/** The response's head; `lines` (a 2xx answer) or `text` (any other: its body). */
export interface WatchStream {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly lines?: AsyncGenerator<string>;
  readonly text?: string;
}

/** Bytes read at once, and the most a response's head may take; then an error's body. */
const READ_BYTES = 64 * 1024;
const MAX_ERROR_BODY = 1024 * 1024;

/**
 * Sends a GET and reads the response's head. Throws what the connection throws (refused,
 * TLS, reset), through `mapError` when given; so do the lines. Aborting `signal` closes the
 * connection: a pending read ends, and the lines end quietly, as a fetch body's do.
 */
export async function openWatchStream(
  target: StreamTarget,
  signal?: AbortSignal,
  mapError: (e: unknown) => unknown = (e) => e,
): Promise<WatchStream> {
  signal?.throwIfAborted();
  let conn: Deno.Conn;
  const connecting = connect(target);
  try {
    conn = await untilAborted(connecting, signal);
  } catch (e) {
    if (signal?.aborted) {
      // A connection made after all is closed at once.
      connecting.then((c) => c.close(), () => {});
      throw signal.reason;
    }
    throw mapError(e);
  }
  const close = () => {
    try {
      conn.close();
    } catch { /* closed already */ }
  };
  signal?.addEventListener("abort", close);
  const done = () => {
    signal?.removeEventListener("abort", close);
    close();
  };
  try {
    const { url } = target;
    let head = `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n`;
    for (const [k, v] of Object.entries(target.headers)) head += `${k}: ${v}\r\n`;
    await writeAll(conn, new TextEncoder().encode(`${head}connection: close\r\n\r\n`));
    const buf = new Uint8Array(READ_BYTES);
    const { status, headers, first } = await readHead(conn, buf);
    const body = /\bchunked\b/i.test(headers.get("transfer-encoding") ?? "")
      ? new Body("chunked")
      : new Body("length", Number(headers.get("content-length") ?? NaN));
    if (status < 200 || status >= 300) {
      const text = await readText(conn, buf, body, first);
      done();
      return { status, headers, text };
    }
    const lines = readLines(conn, buf, body, first, done, () => signal?.aborted === true, mapError);
    return { status, headers, lines };
  } catch (e) {
    done();
    throw signal?.aborted ? signal.reason : mapError(e);
  }
}

/** `p`, or the signal's reason as soon as it aborts (a connect to a silent host takes minutes). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener("abort", onAbort));
}

async function connect(t: StreamTarget): Promise<Deno.Conn> {
  // A URL's IPv6 host is bracketed; the socket wants the address alone.
  const hostname = t.url.hostname.replace(/^\[(.*)\]$/, "$1");
  if (t.url.protocol === "http:") {
    return await Deno.connect({ hostname, port: Number(t.url.port || 80) });
  }
  const port = Number(t.url.port || 443);
  const caCerts = t.caPem ? [t.caPem] : undefined;
  return t.certPem && t.keyPem
    ? await Deno.connectTls({ hostname, port, caCerts, cert: t.certPem, key: t.keyPem })
    : await Deno.connectTls({ hostname, port, caCerts });
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

/** Reads up to the end of the head; returns it parsed and the body's bytes read with it. */
async function readHead(
  conn: Deno.Conn,
  buf: Uint8Array,
): Promise<{ status: number; headers: Map<string, string>; first: Uint8Array }> {
  let end = 0;
  let at = -1;
  while ((at = indexOfBlankLine(buf, end)) < 0) {
    if (end === buf.length) throw new Error(`response head over ${buf.length} bytes`);
    const n = await conn.read(buf.subarray(end));
    if (n === null) throw new Error("the connection closed before the response's head");
    end += n;
  }
  const lines = new TextDecoder().decode(buf.subarray(0, at)).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`not an HTTP/1.1 response: ${JSON.stringify(lines[0].slice(0, 80))}`);
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { status: Number(m[1]), headers, first: buf.slice(at + 4, end) };
}

/** Where CRLF CRLF starts in `buf` before `end`, or -1. */
function indexOfBlankLine(buf: Uint8Array, end: number): number {
  for (let i = 0; i + 3 < end; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/**
 * A body's coding undone and its text decoded as its bytes come, whatever the reads cut:
 * chunked, or a length (NaN: up to the end of the stream).
 */
class Body {
  readonly #chunked: boolean;
  readonly #decoder = new TextDecoder();
  /** Data bytes left in the current chunk, or of the length. */
  #left: number;
  /** Chunked: the text of a size line read so far, or CRLF after a chunk still to skip. */
  #sizeLine = "";
  #skip = 0;
  #ended = false;

  constructor(coding: "chunked" | "length", length = NaN) {
    this.#chunked = coding === "chunked";
    this.#left = this.#chunked ? 0 : Number.isFinite(length) ? length : Infinity;
    this.#ended = !this.#chunked && this.#left === 0;
  }

  /** Whether the body is whole. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Whether the stream may end here without cutting the body. */
  get endsAtClose(): boolean {
    return this.#ended || (!this.#chunked && this.#left === Infinity);
  }

  /** Takes bytes read; returns the text of the body's own among them. */
  text(bytes: Uint8Array): string {
    let text = "";
    let i = 0;
    while (i < bytes.length && !this.#ended) {
      if (this.#left > 0) {
        const n = Math.min(this.#left, bytes.length - i);
        text += this.#decoder.decode(bytes.subarray(i, i + n), { stream: true });
        i += n;
        this.#left -= n;
        if (this.#left === 0 && !this.#chunked) this.#ended = true;
        if (this.#left === 0 && this.#chunked) this.#skip = 2;
      } else if (this.#skip > 0) {
        i++;
        this.#skip--;
      } else {
        // A size line, to its LF (extensions after ';' ignored).
        const lf = bytes.indexOf(10, i);
        const end = lf < 0 ? bytes.length : lf;
        for (let j = i; j < end; j++) this.#sizeLine += String.fromCharCode(bytes[j]);
        if (this.#sizeLine.length > 1024) throw new Error("a chunk size line over 1 KB");
        i = end;
        if (lf < 0) break;
        i++;
        const text = this.#sizeLine.replace(/[;\r].*$/, "").trim();
        this.#sizeLine = "";
        const size = parseInt(text, 16);
        if (!/^[0-9a-f]+$/i.test(text) || !Number.isFinite(size)) {
          throw new Error(`bad chunk size ${JSON.stringify(text.slice(0, 40))}`);
        }
        // The last chunk; trailers, if any, are left unread: the connection closes.
        if (size === 0) this.#ended = true;
        this.#left = size;
      }
    }
    return text;
  }

  /** The text of a character cut by the end of the body, if any (U+FFFD). */
  end(): string {
    return this.#decoder.decode();
  }
}

/**
 * Moves the complete lines of `text` into `lines`, blank ones left out, trimmed; returns
 * the rest (a line still coming).
 */
export function takeLines(text: string, lines: string[]): string {
  let nl: number;
  while ((nl = text.indexOf("\n")) >= 0) {
    const line = text.slice(0, nl).trim();
    text = text.slice(nl + 1);
    if (line !== "") lines.push(line);
  }
  return text;
}

/** The whole of a (short) body as text. */
async function readText(
  conn: Deno.Conn,
  buf: Uint8Array,
  body: Body,
  first: Uint8Array,
): Promise<string> {
  let text = "";
  try {
    text = body.text(first);
    while (!body.ended && text.length < MAX_ERROR_BODY) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += body.text(buf.subarray(0, n));
    }
  } catch { /* what came is what there is */ }
  return text + body.end();
}

/** The body's lines as they arrive, blank ones left out; `done` once they end, however. */
async function* readLines(
  conn: Deno.Conn,
  buf: Uint8Array,
  body: Body,
  first: Uint8Array,
  done: () => void,
  aborted: () => boolean,
  mapError: (e: unknown) => unknown,
): AsyncGenerator<string> {
  const lines: string[] = [];
  try {
    let rest = takeLines(body.text(first), lines);
    for (;;) {
      for (const line of lines) yield line;
      lines.length = 0;
      if (body.ended) return;
      const n = await conn.read(buf);
      if (n === null) {
        if (body.endsAtClose) return;
        throw new Error("the connection closed inside the response's body");
      }
      rest = takeLines(rest + body.text(buf.subarray(0, n)), lines);
    }
  } catch (e) {
    if (!aborted()) throw mapError(e);
  } finally {
    done();
  }
}
