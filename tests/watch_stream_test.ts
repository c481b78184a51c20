/**
 * The watch's own HTTP/1.1 connection (src/kube/watch_stream.ts): its framing against a
 * socket that answers byte by byte as servers may (chunks split anywhere, a line larger than
 * a read, lengths and closes), and through the client against the embedded API server, where
 * its errors must be the ones fetch's path gives.
 */
import assert from "node:assert/strict";
import { openWatchStream } from "../src/kube/watch_stream.ts";
import { ApiError, parseRetryAfter } from "../src/kube/client.ts";
import { startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { kubeClient } from "./helpers/apiserver_http.ts";

const enc = new TextEncoder();

/**
 * A server of one connection: reads the request's head, then `answer` writes. Resolves
 * `request` with the head and `closed` once the client has closed.
 */
function oneShot(answer: (write: (s: string | Uint8Array) => Promise<void>) => Promise<void>) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const request = Promise.withResolvers<string>();
  const closed = (async () => {
    const conn = await listener.accept();
    listener.close();
    let head = "";
    const buf = new Uint8Array(4096);
    while (!head.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      head += new TextDecoder().decode(buf.subarray(0, n));
    }
    request.resolve(head);
    const write = async (s: string | Uint8Array) => {
      const b = typeof s === "string" ? enc.encode(s) : s;
      for (let off = 0; off < b.length;) off += await conn.write(b.subarray(off));
    };
    try {
      await answer(write);
      // Until the client closes: a read that ends.
      while ((await conn.read(buf)) !== null) { /* the client sends nothing more */ }
    } catch { /* reset by the client */ }
    try {
      conn.close();
    } catch { /* closed */ }
  })();
  const { port } = listener.addr as Deno.NetAddr;
  return {
    url: new URL(`http://127.0.0.1:${port}/api/v1/nodes?watch=true`),
    request: request.promise,
    closed,
  };
}

const chunk = (s: string) => `${enc.encode(s).length.toString(16)}\r\n${s}\r\n`;

async function collect(lines: AsyncGenerator<string> | undefined): Promise<string[]> {
  const out: string[] = [];
  for await (const l of lines ?? []) out.push(l);
  return out;
}

Deno.test("watch stream: chunks split anywhere, lines across chunks, the head as sent", async () => {
  const a = JSON.stringify({ type: "ADDED", object: { metadata: { name: "é-1" } } });
  const b = JSON.stringify({ type: "MODIFIED", object: { metadata: { name: "n-2" } } });
  const body = chunk(a.slice(0, 10)) + chunk(`${a.slice(10)}\n${b.slice(0, 3)}`) +
    chunk(`${b.slice(3)}\n\n`) + "0\r\n\r\n";
  const s = oneShot(async (write) => {
    await write("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n");
    await write("Transfer-Encoding: chunked\r\n\r\n");
    // A byte at a time: every boundary falls inside a read somewhere.
    for (const byte of enc.encode(body)) await write(new Uint8Array([byte]));
  });
  const stream = await openWatchStream({ url: s.url, headers: { authorization: "Bearer t" } });
  assert.equal(stream.status, 200);
  assert.deepEqual(await collect(stream.lines), [a, b]);
  const head = await s.request;
  assert.match(head, /^GET \/api\/v1\/nodes\?watch=true HTTP\/1\.1\r\n/);
  assert.match(head, /\r\nauthorization: Bearer t\r\n/);
  await s.closed;
});

Deno.test("watch stream: a line larger than a read, and a body by length", async () => {
  const big = JSON.stringify({ type: "ADDED", object: { pad: "x".repeat(200_000) } });
  const s = oneShot(async (write) => {
    await write(`HTTP/1.1 200 OK\r\nContent-Length: ${big.length + 1}\r\n\r\n`);
    await write(`${big}\n`);
  });
  const stream = await openWatchStream({ url: s.url, headers: {} });
  const got = await collect(stream.lines);
  assert.equal(got.length, 1);
  assert.equal(got[0].length, big.length);
  await s.closed;
});

Deno.test("watch stream: an error's body is read whole; a body cut inside a chunk throws", async () => {
  const status = JSON.stringify({ kind: "Status", code: 410, reason: "Expired", message: "old" });
  const s = oneShot(async (write) => {
    await write(`HTTP/1.1 410 Gone\r\nContent-Length: ${status.length}\r\n\r\n${status}`);
  });
  const gone = await openWatchStream({ url: s.url, headers: {} });
  assert.equal(gone.status, 410);
  assert.equal(gone.lines, undefined);
  assert.equal(gone.text, status);
  await s.closed;

  const cut = oneShot(async (write) => {
    await write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    await write(`${chunk('{"type":"ADDED"}\n')}40\r\n{"type":`);
    throw new Error("hang up"); // the connection closes inside the chunk
  });
  const stream = await openWatchStream({ url: cut.url, headers: {} });
  const got: string[] = [];
  await assert.rejects(async () => {
    for await (const l of stream.lines!) got.push(l);
  }, /closed inside the response's body/);
  assert.deepEqual(got, ['{"type":"ADDED"}']);
});

Deno.test("watch stream: an abort ends the lines quietly and closes the connection", async () => {
  const s = oneShot(async (write) => {
    await write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    await write(chunk('{"type":"ADDED"}\n'));
  });
  const ac = new AbortController();
  const stream = await openWatchStream({ url: s.url, headers: {} }, ac.signal);
  const got: string[] = [];
  for await (const l of stream.lines!) {
    got.push(l);
    ac.abort();
  }
  assert.deepEqual(got, ['{"type":"ADDED"}']);
  // The server's read ends: the client closed.
  await s.closed;
});

Deno.test("watch stream: an abort ends the opening while the server is silent", async () => {
  // A listener that never accepts: the kernel completes TCP's handshake, TLS's gets no answer.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  const url = new URL(`https://127.0.0.1:${port}/api/v1/nodes`);
  const ac = new AbortController();
  const opening = openWatchStream({ url, headers: {} }, ac.signal);
  setTimeout(() => ac.abort(new Error("stop")), 50);
  const t0 = performance.now();
  await assert.rejects(opening, /stop/);
  assert.ok(performance.now() - t0 < 2000);
  listener.close();
});

Deno.test("client watch over its own connection: events, and errors as the list's", async () => {
  const api = await startApiServer({});
  const client = kubeClient(api);
  try {
    assert.equal(client.directWatches, true);
    // With certificate checks off, node:https carries the watch.
    const insecure = kubeClient(api, true);
    assert.equal(insecure.directWatches, false);
    insecure.close();
    const rv = String(api.nodes.resourceVersion());
    const ac = new AbortController();
    const events = client.watchNodes({ resourceVersion: rv, signal: ac.signal });
    const first = events.next();
    api.nodes.create({ metadata: { name: "vm-1" } });
    const ev = (await first).value as { type: string; object: { metadata: { name: string } } };
    assert.equal(ev.type, "ADDED");
    assert.equal(ev.object.metadata.name, "vm-1");
    ac.abort();
    assert.equal((await events.next()).done, true);

    // A 429 with Retry-After: the same ApiError a list gets.
    api.faults.failNext(2, 429, { retryAfterSeconds: 3 });
    const listed = await client.listNodes({}).then(() => undefined, (e) => e);
    const watched = await client.watchNodes({ resourceVersion: rv }).next().then(
      () => undefined,
      (e) => e,
    );
    for (const e of [listed, watched]) {
      assert.ok(e instanceof ApiError, String(e));
      assert.equal(e.status, 429);
      assert.equal(e.retryAfterSeconds, 3);
    }
    assert.equal(watched.reason, listed.reason);

    // Too old a version: 410 Expired, which makes an informer list again.
    api.faults.expireWatches(true);
    const old = client.watchNodes({ resourceVersion: String(api.nodes.resourceVersion()) });
    const expired = await old.next().then((r) => r.value, (e) => e);
    await old.return(undefined);
    api.faults.expireWatches(false);
    const code = expired instanceof ApiError
      ? expired.status
      : (expired as { object?: { code?: number } })?.object?.code;
    assert.equal(code, 410, JSON.stringify(expired));

    // The server gone: a connection failure, named so.
    await api.faults.stopListening();
    const refused = await client.watchNodes({ resourceVersion: rv }).next().then(
      () => undefined,
      (e) => e,
    );
    assert.ok(refused instanceof ApiError);
    assert.equal(refused.reason, "ConnectionFailed");
    assert.match(refused.message, /^GET \/api\/v1\/nodes: /);
  } finally {
    client.close();
    await api.close();
  }
});

Deno.test("Retry-After: seconds as the API server sends them, or an HTTP-date as a proxy may", () => {
  const now = Date.parse("2026-12-02T05:00:00Z");
  assert.equal(parseRetryAfter("3", now), 3);
  assert.equal(parseRetryAfter(" 0 ", now), 0);
  assert.equal(parseRetryAfter("Wed, 02 Dec 2026 05:00:10 GMT", now), 10);
  assert.equal(parseRetryAfter("Wed, 02 Dec 2026 04:59:00 GMT", now), 0, "a date past is now");
  for (const bad of [null, undefined, "", "soon", "-1", "1.5", "2026-12-02"]) {
    assert.equal(parseRetryAfter(bad, now), undefined, String(bad));
  }
});
