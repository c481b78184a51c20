/**
 * Figure 7, the embedded API server with N realistic nodes over HTTPS: the time of a list in
 * one page and paged by 500 (bytes read, not parsed), beside a plain Deno HTTPS server that
 * returns the same bytes; and the fan-out of one change to 200 watchers (write → the last
 * watcher has the event), beside the same with a single watcher. Clients run in the
 * benchmark's process, beside the server, as the server's only load.
 *
 * @module
 */
import { startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { serverCerts } from "../src/devcluster/apiserver/certs.ts";
import { benchNode } from "./cluster.ts";
import { deferCleanup, type Figure, median, percentile, round, summary } from "./lib.ts";

const WATCHERS = 200;
const LIST_REPS = 5;

/** Reads a list, following `continue` when `limit` is set; returns ms and bytes. */
async function timedList(
  client: Deno.HttpClient,
  base: string,
  token: string,
  limit?: number,
): Promise<{ ms: number; bytes: number; pages: number }> {
  const t0 = performance.now();
  let cont: string | undefined;
  let bytes = 0, pages = 0;
  do {
    const url = new URL("/api/v1/nodes", base);
    if (limit) url.searchParams.set("limit", String(limit));
    if (cont) url.searchParams.set("continue", cont);
    const res = await fetch(url, { client, headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) throw new Error(`list: HTTP ${res.status}`);
    const body = new Uint8Array(await res.arrayBuffer());
    bytes += body.length;
    pages++;
    // The list's metadata comes first: no need to parse the whole body for the token.
    const head = new TextDecoder().decode(body.subarray(0, 2000));
    cont = /"continue":"([^"]+)"/.exec(head)?.[1];
  } while (cont);
  return { ms: performance.now() - t0, bytes, pages };
}

/** Opens `count` watches; `changed()` resolves with the ms until every one saw `marker`. */
async function openWatchers(
  client: Deno.HttpClient,
  base: string,
  token: string,
  rv: string,
  count: number,
): Promise<{ expect(marker: string): Promise<number[]>; close(): void }> {
  const ac = new AbortController();
  let expecting: { marker: string; times: number[]; done: () => void } | undefined;
  const ready: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const url = new URL("/api/v1/nodes", base);
    url.searchParams.set("watch", "true");
    url.searchParams.set("resourceVersion", rv);
    const res = fetch(url, {
      client,
      signal: ac.signal,
      headers: { authorization: `Bearer ${token}` },
    });
    ready.push(res.then((r) => {
      if (!r.ok || !r.body) throw new Error(`watch: HTTP ${r.status}`);
      // Plain reads and a decoder per watcher: a TextDecoderStream per watcher, running in
      // the server's process, added about 2 ms to the fan-out.
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let tail = "";
      void (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            const text = tail + decoder.decode(value, { stream: true });
            const e = expecting;
            if (e && text.includes(e.marker)) {
              e.times.push(performance.now());
              if (e.times.length === count) e.done();
            }
            tail = text.slice(-64);
          }
        } catch { /* aborted */ }
      })();
    }));
  }
  await Promise.all(ready);
  return {
    expect(marker) {
      const p = Promise.withResolvers<void>();
      const times: number[] = [];
      expecting = { marker, times, done: p.resolve };
      return p.promise.then(() => times);
    },
    close: () => ac.abort(),
  };
}

/** Runs the list and fan-out figures with `n` nodes and `writes` changes per fan-out. */
export async function apiServerFigures(n: number, writes: number): Promise<Figure[]> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-bench-api-" });
  const removeDir = deferCleanup(`folder ${dir}`, () => Deno.remove(dir, { recursive: true }));
  const api = await startApiServer({ certDir: `${dir}/certs`, bookmarkIntervalMs: 60_000 });
  const closeApi = deferCleanup("API server (figure 7)", () => api.close());
  // HTTP/1.1, as the daemon's client speaks: over HTTP/2 Deno's client holds its window
  // updates back (Nagle's algorithm), which would be timed here as the server's slowness.
  const client = Deno.createHttpClient({ caCerts: [api.caPem!], http2: false });
  try {
    for (let k = 0; k <= n; k++) api.nodes.create(benchNode(k));

    // The same bytes from a plain HTTPS server with the same certificate.
    const full = await fetch(new URL("/api/v1/nodes", api.url), {
      client,
      headers: { authorization: `Bearer ${api.token}` },
    });
    const bytes = new Uint8Array(await full.arrayBuffer());
    const certs = await serverCerts(`${dir}/certs`, ["127.0.0.1"]);
    const plain = Deno.serve(
      { hostname: "127.0.0.1", port: 0, cert: certs.certPem, key: certs.keyPem, onListen() {} },
      () => new Response(bytes, { headers: { "content-type": "application/json" } }),
    );
    const closePlain = deferCleanup("plain HTTPS server", () => plain.shutdown());
    const plainUrl = `https://127.0.0.1:${plain.addr.port}`;

    const one: number[] = [], paged: number[] = [], base: number[] = [];
    let pages = 0;
    await timedList(client, api.url, api.token);
    await timedList(client, plainUrl, "");
    for (let r = 0; r < LIST_REPS; r++) {
      one.push((await timedList(client, api.url, api.token)).ms);
      const p = await timedList(client, api.url, api.token, 500);
      paged.push(p.ms);
      pages = p.pages;
      base.push((await timedList(client, plainUrl, "")).ms);
    }
    await closePlain();

    const fanout = async (count: number): Promise<number[]> => {
      const rv = String(api.nodes.resourceVersion());
      const w = await openWatchers(client, api.url, api.token, rv, count);
      const lat: number[] = [];
      try {
        for (let i = 0; i < writes; i++) {
          const marker = `fanout-${count}-${i}-${crypto.randomUUID().slice(0, 8)}`;
          const got = w.expect(marker);
          const t0 = performance.now();
          api.nodes.patch("node-1", "merge", {
            metadata: { annotations: { "bench.xcluster.example/marker": marker } },
          });
          const times = await got;
          lat.push(Math.max(...times) - t0);
        }
      } finally {
        w.close();
      }
      return lat;
    };
    const single = await fanout(1);
    const many = await fanout(WATCHERS);

    return [
      {
        figure: 7,
        name: "api-list",
        n,
        what: `list of ${n + 1} nodes in one page (${round(bytes.length / 2 ** 20, 1)} MiB)`,
        unit: "ms",
        value: median(one),
        baseline: median(base),
        baselineWhat: "plain Deno HTTPS server, same bytes",
        details: { runsMs: one.map((x) => round(x)), bytes: bytes.length },
      },
      {
        figure: 7,
        name: "api-list-paged",
        n,
        what: `list paged by 500 (${pages} pages)`,
        unit: "ms",
        value: median(paged),
        baseline: median(base),
        baselineWhat: "plain Deno HTTPS server, same bytes in one response",
        details: { runsMs: paged.map((x) => round(x)) },
      },
      {
        figure: 7,
        name: "api-fanout",
        n,
        what: `one change → last of ${WATCHERS} watchers, p50 of ${writes}`,
        unit: "ms",
        value: percentile(many, 50),
        baseline: percentile(single, 50),
        baselineWhat: "same with 1 watcher",
        target: { on: "value", max: 10 },
        details: { watchers: summary(many), single: summary(single) },
      },
    ];
  } finally {
    client.close();
    await closeApi();
    await removeDir();
  }
}
