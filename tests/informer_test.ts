/** The Node informer against the embedded API server, through its faults. Needs openssl. */
import assert from "node:assert/strict";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { KubeClient } from "../src/kube/client.ts";
import {
  defaultWatchTimeoutSeconds,
  NodeInformer,
  type StoreChange,
} from "../src/kube/informer.ts";
import { ListSplitter, pickFields } from "../src/kube/json_list.ts";
import { loadKubeconfig } from "../src/kube/kubeconfig.ts";
import { NODE_FIELDS, type NodeInfo, toNodeInfo } from "../src/kube/node.ts";
import { createLogger } from "../src/log.ts";
import { pollUntil } from "./helpers/netns.ts";
import { kubeconfigWithTokenFile } from "./helpers/tools.ts";

interface Rig {
  api: ApiServer;
  informer: NodeInformer<NodeInfo>;
  changes: StoreChange<NodeInfo>[];
  dir: string;
}

async function rig(
  fn: (r: Rig) => Promise<void>,
  opts: { tokenFile?: boolean; nodes?: number } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-informer-" });
  const api = await startApiServer({
    kubeconfigPath: `${dir}/kubeconfig`,
    bookmarkIntervalMs: 200,
  });
  for (let i = 0; i < (opts.nodes ?? 3); i++) {
    api.nodes.create(makeNode({ name: `n${i}`, podCIDRs: [`10.${i >> 8}.${i & 255}.0/24`] }));
  }
  let kubeconfig = `${dir}/kubeconfig`;
  if (opts.tokenFile) {
    await Deno.writeTextFile(`${dir}/token`, api.token);
    await kubeconfigWithTokenFile(kubeconfig, `${dir}/kubeconfig-tokenfile`, `${dir}/token`);
    kubeconfig = `${dir}/kubeconfig-tokenfile`;
  }
  const client = new KubeClient(await loadKubeconfig(kubeconfig));
  const informer = new NodeInformer<NodeInfo>(client, {
    project: (raw) => toNodeInfo(raw, []),
    pageSize: 500,
    backoff: { initialMs: 50, maxMs: 400 },
  });
  const changes: StoreChange<NodeInfo>[] = [];
  informer.onChange((c) => changes.push(...c));
  informer.start();
  try {
    await informer.synced;
    await fn({ api, informer, changes, dir });
  } finally {
    await informer.stop();
    client.close();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const cidrs = (r: Rig, name: string) => r.informer.store.get(name)?.podCIDRs.join(",");

Deno.test("informer: a paged list of 1,200 nodes, then watch", () =>
  rig(async (r) => {
    assert.equal(r.informer.store.size, 1200);
    assert.equal(r.changes.length, 1200);
    assert.ok(r.changes.every((c) => c.type === "added"));
    const s = r.informer.stats();
    assert.equal(s.lists, 1);
    assert.ok(s.lastSyncTime);
    await pollUntil(() => r.api.nodes.watcherCount() === 1, { message: "watching" });
    // 3 pages of 500 and one watch.
    assert.equal(r.api.faults.requestCount(), 4);
  }, { nodes: 1200 }));

Deno.test("informer: adds, updates and deletes; updates touching nothing kept emit nothing", () =>
  rig(async (r) => {
    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    r.changes.length = 0;
    r.api.nodes.create(makeNode({ name: "x", podCIDRs: ["10.9.0.0/24"] }));
    r.api.nodes.patch("n1", "merge", { spec: { podCIDRs: ["10.8.0.0/24"] } });
    r.api.nodes.patch("n2", "merge", {
      status: { conditions: [{ type: "Ready", status: "True" }] },
    });
    r.api.nodes.delete("n0");
    await pollUntil(() => !r.informer.store.has("n0"), { message: "delete seen" });
    assert.deepEqual(r.changes.map((c) => `${c.type} ${c.name}`), [
      "added x",
      "updated n1",
      "deleted n0",
    ]);
    assert.equal(cidrs(r, "n1"), "10.8.0.0/24");
  }));

Deno.test("informer: metadata only lists and watches annotations without spec or status", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-informer-" });
  const api = await startApiServer({
    kubeconfigPath: `${dir}/kubeconfig`,
    bookmarkIntervalMs: 100,
  });
  const ann = "cidr.example.com/net3";
  for (let i = 0; i < 3; i++) {
    api.nodes.create(makeNode({
      name: `n${i}`,
      podCIDRs: [`10.0.${i}.0/24`],
      annotations: { [ann]: `10.55.${i}.0/24` },
      realistic: true,
    }));
  }
  const client = new KubeClient(await loadKubeconfig(`${dir}/kubeconfig`));
  // What the informer was given of each object, besides what it kept.
  const seen: string[] = [];
  const informer = new NodeInformer<NodeInfo>(client, {
    project: (raw) => {
      seen.push(Object.keys(raw as object).sort().join(","));
      return toNodeInfo(raw, [ann]);
    },
    fields: NODE_FIELDS,
    metadataOnly: true,
  });
  informer.start();
  try {
    await informer.synced;
    assert.deepEqual(
      [...informer.store.values()].map((n) => n.annotations[ann]),
      ["10.55.0.0/24", "10.55.1.0/24", "10.55.2.0/24"],
    );
    assert.deepEqual(informer.store.get("n1")!.podCIDRs, [], "spec.podCIDRs was not sent");
    await pollUntil(() => api.nodes.watcherCount() === 1, { message: "watching" });
    api.nodes.patch("n1", "merge", { metadata: { annotations: { [ann]: "10.66.1.0/24" } } });
    await pollUntil(() => informer.store.get("n1")!.annotations[ann] === "10.66.1.0/24", {
      message: "watch event seen",
    });
    // Listed items come through the field picker; the watched one whole, as sent.
    assert.deepEqual(seen, ["metadata", "metadata", "metadata", "apiVersion,kind,metadata"]);
  } finally {
    await informer.stop();
    client.close();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * An informer watching the embedded API server, its backoff step `backoffMs` (each wait half
 * to all of it), and the warnings it logs; `fn` runs once the watch is open.
 */
async function whileWatching(
  backoffMs: number,
  fn: (informer: NodeInformer<NodeInfo>, warnings: string[]) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-informer-" });
  const api = await startApiServer({ kubeconfigPath: `${dir}/kubeconfig` });
  const client = new KubeClient(await loadKubeconfig(`${dir}/kubeconfig`));
  const warnings: string[] = [];
  const log = createLogger("warn", { write: (line) => warnings.push(line), text: false });
  const informer = new NodeInformer<NodeInfo>(client, {
    project: (raw) => toNodeInfo(raw, []),
    backoff: { initialMs: backoffMs, maxMs: backoffMs },
    log,
  });
  try {
    informer.start();
    await informer.synced;
    await pollUntil(() => api.nodes.watcherCount() === 1, { message: "watching" });
    await fn(informer, warnings);
  } finally {
    await informer.stop();
    client.close();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("informer: stop() during a watch is no failure and waits for no backoff", () =>
  // A backoff step longer than the test's own timeout: a stop that waited for one would fail.
  whileWatching(60_000, async (informer, warnings) => {
    await informer.stop();
    assert.deepEqual(warnings, [], "a stop is not a failed watch");
    assert.equal(informer.stats().shortWatches, 0);
  }));

Deno.test("informer: dropped watches resume from the last version without loss", () =>
  rig(async (r) => {
    for (let i = 0; i < 5; i++) {
      await pollUntil(() => r.api.nodes.watcherCount() === 1, { message: "watching" });
      r.api.faults.dropWatches();
      r.api.nodes.patch("n1", "merge", { spec: { podCIDRs: [`10.7.${i}.0/24`] } });
    }
    await pollUntil(() => cidrs(r, "n1") === "10.7.4.0/24", { message: "last change seen" });
    assert.equal(r.informer.stats().lists, 1, "no relist needed");
    assert.ok(r.informer.stats().watchRestarts >= 5);
  }));

Deno.test("informer: 410 Expired relists and emits only the differences", () =>
  rig(async (r) => {
    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    r.api.faults.dropWatches();
    r.api.nodes.delete("n0");
    r.api.nodes.patch("n1", "merge", { spec: { podCIDRs: ["10.6.0.0/24"] } });
    r.api.faults.compact();
    r.changes.length = 0;
    await pollUntil(() => r.informer.stats().relists >= 1 && !r.informer.store.has("n0"), {
      message: "relisted",
    });
    await pollUntil(() => cidrs(r, "n1") === "10.6.0.0/24");
    assert.deepEqual(r.changes.map((c) => `${c.type} ${c.name}`).sort(), [
      "deleted n0",
      "updated n1",
    ]);
  }));

Deno.test("informer: 500s back off and recover; 429 Retry-After is honoured", () =>
  rig(async (r) => {
    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    r.api.faults.failNext(3, 500);
    r.api.faults.dropWatches();
    r.api.nodes.create(makeNode({ name: "after500" }));
    await pollUntil(() => r.informer.store.has("after500"), { message: "recovered" });
    assert.equal(r.informer.stats().apiErrors["500"], 3);

    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    r.api.faults.failNext(1, 429, { retryAfterSeconds: 1 });
    r.api.faults.dropWatches();
    const before = r.api.faults.requestCount();
    const t0 = Date.now();
    await pollUntil(() => r.api.faults.requestCount() > before, { message: "the 429" });
    await pollUntil(() => r.api.faults.requestCount() > before + 1, {
      message: "retried",
      timeoutMs: 3000,
    });
    assert.ok(Date.now() - t0 >= 950, `retried after ${Date.now() - t0} ms`);
  }));

Deno.test("informer: a rotated token is read from the token file after a 401", () =>
  rig(async (r) => {
    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    await r.api.faults.rotateToken();
    r.api.faults.dropWatches();
    await pollUntil(() => (r.informer.stats().apiErrors["401"] ?? 0) >= 1, { message: "401 seen" });
    await Deno.writeTextFile(`${r.dir}/token`, r.api.token);
    r.api.nodes.create(makeNode({ name: "rotated" }));
    await pollUntil(() => r.informer.store.has("rotated"), {
      message: "recovered with the new token",
    });
  }, { tokenFile: true }));

Deno.test("informer: an outage keeps the store; requests are bounded by the backoff", () =>
  rig(async (r) => {
    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    await r.api.faults.stopListening();
    const t0 = Date.now();
    await pollUntil(() => (r.informer.stats().apiErrors["0"] ?? 0) >= 3, { message: "refused" });
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(r.informer.store.size, 3, "the store survives");
    const attempts = r.informer.stats().apiErrors["0"];
    const elapsed = Date.now() - t0;
    // At most one attempt per half the smallest backoff step.
    assert.ok(attempts <= elapsed / 25 + 2, `${attempts} attempts in ${elapsed} ms`);
    r.api.nodes.create(makeNode({ name: "back" }));
    r.api.faults.startListening();
    const up = Date.now();
    await pollUntil(() => r.informer.store.has("back"), { message: "converged after the outage" });
    assert.ok(Date.now() - up < 1500, `converged ${Date.now() - up} ms after the API came back`);
  }));

/** Splits `text` pushed in chunks of `size` bytes; returns the items and the rest. */
function split(text: string, size: number): { items: unknown[]; rest: unknown } {
  const bytes = new TextEncoder().encode(text);
  const items: unknown[] = [];
  const s = new ListSplitter((json) => items.push(JSON.parse(new TextDecoder().decode(json))));
  for (let i = 0; i < bytes.length; i += size) s.push(bytes.slice(i, i + size));
  return { items, rest: s.end() };
}

Deno.test("list splitter: items one by one at every chunk boundary, the rest kept", () => {
  const list = {
    kind: "NodeList",
    a: 'it"ems',
    metadata: { resourceVersion: "7", continue: "x", items: [1] },
    items: [
      { x: "\\", y: [1, { z: "]}" }], "é€😀": '\\"', e: "" },
      // Runs of backslashes, even and odd, before quotes and at the ends of strings.
      { w: "a\\\\", v: '\\\\\\"q"', u: '"\\' },
      null,
      3,
      's"',
      [1, 2],
      {},
      true,
    ],
    after: { items: "not this" },
  };
  const text = JSON.stringify(list, null, 1);
  for (const size of [1, 2, 3, 5, 7, 64, text.length]) {
    const { items, rest } = split(text, size);
    assert.deepEqual(items, list.items, `chunks of ${size}`);
    assert.deepEqual(rest, { ...list, items: [] }, `chunks of ${size}`);
  }
  assert.deepEqual(split('{"items":[]}', 1), { items: [], rest: { items: [] } });
  assert.deepEqual(split('{"kind":"Status","code":410}', 4).rest, { kind: "Status", code: 410 });
});

Deno.test("list splitter: a cut or broken body is a SyntaxError", () => {
  for (const text of ['{"items":[{"a":1}', '{"items":[{"a":"}]}', '{"items":[]', '{"a":']) {
    assert.throws(() => split(text, 3), SyntaxError, text);
  }
  assert.throws(() => split('{"items":[{"a":1,}]}', 3), SyntaxError);
});

Deno.test("toNodeInfo: only the projected fields are read and validated", () => {
  const node = makeNode({
    name: "n1",
    podCIDRs: ["10.0.1.0/24"],
    internalIPs: ["192.168.1.2"],
    annotations: { keep: "10.1.0.0/16", other: "x" },
    realistic: true,
  });
  const info = toNodeInfo(node, ["keep"]);
  assert.deepEqual(info.annotations, { keep: "10.1.0.0/16" });
  assert.deepEqual(info.podCIDRs, ["10.0.1.0/24"]);
  assert.deepEqual(info.internalIPs, ["192.168.1.2"]);
  for (
    const bad of [null, [], "x", { metadata: {} }, { metadata: { name: "a", annotations: [] } }]
  ) {
    assert.throws(() => toNodeInfo(bad, ["keep"]), Error, JSON.stringify(bad));
  }
  assert.throws(() => toNodeInfo({ metadata: { name: "a", annotations: { keep: 1 } } }, ["keep"]));
  assert.throws(() => toNodeInfo({ metadata: { name: "a" }, status: { addresses: [{}] } }, []));
});

Deno.test("NODE_FIELDS: a list's projection keeps all that toNodeInfo reads of a node", () => {
  const node = makeNode({
    name: "n1",
    podCIDRs: ["10.0.1.0/24", "fd00:1::/64"],
    internalIPs: ["192.168.1.2", "fd00:50::2"],
    annotations: { keep: "10.1.0.0/16", other: "x" },
    machineID: "0123456789abcdef",
    realistic: true,
  });
  // The API server sets it at creation.
  (node.metadata as Record<string, unknown>).creationTimestamp = "2026-01-01T00:00:00Z";
  const whole = toNodeInfo(node, ["keep"]);
  // Every member of NodeInfo has a value here, so a member the projection lost would show.
  for (const [key, value] of Object.entries(whole)) {
    assert.ok(typeof value === "string" ? value !== "" : Object.keys(value).length > 0, key);
  }
  const text = JSON.stringify(node);
  const projected = pickFields(text, NODE_FIELDS);
  assert.ok(projected.length < text.length / 4, `${projected.length} of ${text.length} bytes`);
  assert.deepEqual(toNodeInfo(JSON.parse(projected), ["keep"]), whole);
});

Deno.test("pickFields: only the members asked for, the rest skipped whole", () => {
  const value = {
    metadata: { name: 'n"1', managedFields: [{ a: "}]{[\\" }], annotations: { x: "y" } },
    status: { images: [{ names: ["a", "b"], sizeBytes: 1e9 }], addresses: [1, "2", null] },
    spec: null,
    'we"ird': { metadata: 1 },
    last: true,
  };
  const fields = {
    metadata: { name: true, annotations: true },
    spec: { podCIDRs: true },
    status: { addresses: true, nodeInfo: { machineID: true } },
    'we"ird': true,
  } as const;
  for (const text of [JSON.stringify(value), JSON.stringify(value, null, 2)]) {
    assert.deepEqual(JSON.parse(pickFields(text, fields)), {
      metadata: { name: 'n"1', annotations: { x: "y" } },
      status: { addresses: [1, "2", null] },
      spec: null,
      'we"ird': { metadata: 1 },
    });
  }
  assert.deepEqual(JSON.parse(pickFields('{"\\u0061":"é😀","b":"ü"}', { a: true })), { a: "é😀" });
  assert.deepEqual(
    JSON.parse(pickFields(new TextEncoder().encode('{"b":"ü","a":["€"]}'), { a: true })),
    { a: ["€"] },
  );
  assert.equal(pickFields("[1,2]", { a: true }), "[1,2]");
  assert.equal(pickFields(" {} ", { a: true }), "{}");
  for (const bad of ['{"a":1', '{"a" 1}', '{"a":1,}', '{"a":"x}', "{} x", '{"b":[1}']) {
    assert.throws(() => JSON.parse(pickFields(bad, { a: true })), SyntaxError, bad);
  }
});

Deno.test("informer: relist() ends the watch, lists afresh and resolves with the store current", () =>
  rig(async (r) => {
    await pollUntil(() => r.api.nodes.watcherCount() === 1);
    const lists = r.informer.stats().lists;
    const before = r.api.faults.requestCount();
    // Changed behind the watch's back: only a list can show it now.
    r.api.faults.dropWatches();
    r.api.nodes.create(makeNode({ name: "late" }));
    r.api.faults.compact();
    await r.informer.relist();
    assert.ok(r.informer.store.has("late"), "the store holds the fresh list");
    assert.equal(r.informer.stats().lists, lists + 1);
    assert.equal(r.informer.stats().apiErrors["410"], undefined, "no failure in between");
    await pollUntil(() => r.api.nodes.watcherCount() === 1, { message: "watching again" });
    assert.ok(r.api.faults.requestCount() - before <= 3, "a list and a watch, no storm");
  }));

/**
 * An API server over plain HTTP that lists no nodes (resourceVersion 7) and answers each watch
 * with its 200 chunked head, then nothing: a path gone silent, neither closed nor reset. The
 * query of each watch is kept.
 */
function silentWatchServer() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const watches: URLSearchParams[] = [];
  const enc = new TextEncoder();
  const serve = async (conn: Deno.Conn) => {
    const buf = new Uint8Array(4096);
    try {
      let head = "";
      while (!head.includes("\r\n\r\n")) {
        const n = await conn.read(buf);
        if (n === null) return;
        head += new TextDecoder().decode(buf.subarray(0, n));
      }
      const query = new URL(head.split(" ")[1], "http://x").searchParams;
      if (query.get("watch") === "true") {
        watches.push(query);
        await conn.write(
          enc.encode(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" +
              "transfer-encoding: chunked\r\n\r\n",
          ),
        );
        // Silent until the client gives up on it.
        while ((await conn.read(buf)) !== null) { /* nothing comes */ }
      } else {
        const body = enc.encode(
          JSON.stringify({ kind: "NodeList", metadata: { resourceVersion: "7" }, items: [] }),
        );
        await conn.write(enc.encode(
          "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n" +
            `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
        ));
        await conn.write(body);
      }
    } catch {
      /* reset by the client */
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch { /* closed */ }
    }
  };
  const serving = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void serve(conn);
    }
  })();
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    watches,
    async close() {
      listener.close();
      for (const c of conns) c.close();
      await serving.catch(() => {});
    },
  };
}

Deno.test("informer: a watch the server never ends is cut past its timeout and watched again", async () => {
  const api = silentWatchServer();
  const client = new KubeClient({
    server: api.url,
    insecureSkipTLSVerify: false,
    token: () => Promise.resolve("t"),
    source: "test",
  });
  const warnings: string[] = [];
  const log = createLogger("warn", { write: (line) => warnings.push(line), text: false });
  const informer = new NodeInformer<NodeInfo>(client, {
    project: (raw) => toNodeInfo(raw, []),
    watchTimeoutSeconds: 1,
    watchGraceMs: 300,
    backoff: { initialMs: 50, maxMs: 50 },
    server: api.url,
    log,
  });
  try {
    assert.ok(client.directWatches, "the watch on its own connection, where reads wait forever");
    informer.start();
    await informer.synced;
    await pollUntil(() => api.watches.length === 2, {
      message: "a second watch after the first went silent",
      timeoutMs: 5000,
    });
    assert.equal(informer.stats().stalledWatches, 1);
    assert.equal(informer.stats().lists, 1, "no relist: the watch resumes from its version");
    for (const q of api.watches) {
      assert.equal(q.get("resourceVersion"), "7");
      assert.equal(q.get("timeoutSeconds"), "1");
    }
    assert.equal(warnings.length, 1, warnings.join("\n"));
    const line = JSON.parse(warnings[0]);
    assert.equal(line.server, api.url);
    assert.match(line.cause, /outlived its timeout .* without an end from the server/);
  } finally {
    await informer.stop();
    client.close();
    await api.close();
  }
});

Deno.test("informer: relist() right after a watch opens is no failure and waits for no backoff", () =>
  // No bookmark within the watch's first second: it ends having delivered no event. A wait of
  // one backoff step is 2.5-5 s, far above what a relist takes.
  whileWatching(5000, async (informer, warnings) => {
    const t0 = performance.now();
    await informer.relist();
    const ms = performance.now() - t0;
    assert.ok(ms < 1500, `relisted in ${Math.round(ms)} ms`);
    assert.deepEqual(warnings, [], "a relist is not a failed watch");
    assert.equal(informer.stats().shortWatches, 0);
    assert.equal(informer.stats().lists, 2);
  }));

Deno.test("defaultWatchTimeoutSeconds: 5 to 10 minutes, drawn for each watch", () => {
  assert.equal(defaultWatchTimeoutSeconds(() => 0), 300);
  assert.equal(defaultWatchTimeoutSeconds(() => 0.9999999), 600);
  const drawn = Array.from({ length: 100 }, () => defaultWatchTimeoutSeconds());
  assert.ok(drawn.every((s) => Number.isInteger(s) && s >= 300 && s <= 600), drawn.join(","));
  assert.ok(new Set(drawn).size > 10, "the timeouts vary");
});
