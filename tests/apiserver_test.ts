/** The embedded API server over HTTPS, as a client sees it. Needs openssl. */
import assert from "node:assert/strict";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { humanAge } from "../src/devcluster/apiserver/views.ts";
import { ApiError, KubeClient } from "../src/kube/client.ts";
import { pollUntil } from "./helpers/netns.ts";

interface Reply {
  status: number;
  headers: Headers;
  body: Record<string, unknown>;
}

function client(api: ApiServer): Deno.HttpClient {
  return Deno.createHttpClient({ caCerts: api.caPem ? [api.caPem] : [] });
}

async function call(
  api: ApiServer,
  http: Deno.HttpClient,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const res = await fetch(api.url + path, {
    method,
    client: http,
    headers: {
      authorization: `Bearer ${api.token}`,
      "content-type": "application/json",
      ...headers,
    },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : {} };
}

/** Reads watch events until `until` holds or the stream ends. */
async function readWatch(
  res: Response,
  until: (events: { type: string; object: Record<string, unknown> }[]) => boolean,
): Promise<{ type: string; object: Record<string, unknown> }[]> {
  const events: { type: string; object: Record<string, unknown> }[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  try {
    while (!until(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += value;
      const lines = rest.split("\n");
      rest = lines.pop()!;
      for (const l of lines) if (l.trim()) events.push(JSON.parse(l));
    }
  } finally {
    await reader.cancel();
  }
  return events;
}

async function withServer(fn: (api: ApiServer, http: Deno.HttpClient) => Promise<void>, opts = {}) {
  const api = await startApiServer({ bookmarkIntervalMs: 100, ...opts });
  const http = client(api);
  try {
    await fn(api, http);
  } finally {
    http.close();
    await api.close();
  }
}

const names = (r: Reply) =>
  (r.body.items as { metadata: { name: string } }[]).map((n) => n.metadata.name);

Deno.test("apiserver: discovery, probes, and 401 without the token", () =>
  withServer(async (api, http) => {
    const v1 = await call(api, http, "GET", "/api/v1");
    const nodes = (v1.body.resources as {
      name: string;
      kind: string;
      verbs: string[];
      shortNames?: string[];
    }[])
      .find((r) => r.name === "nodes");
    assert.equal(nodes?.kind, "Node");
    assert.ok(nodes?.verbs.includes("watch") && nodes.shortNames?.includes("no"));
    assert.deepEqual((await call(api, http, "GET", "/api")).body.versions, ["v1"]);
    assert.equal((await call(api, http, "GET", "/version")).body.major, "1");
    for (const p of ["/healthz", "/readyz", "/livez"]) {
      assert.equal(
        await fetch(api.url + p, { client: http }).then(async (r) => (await r.text(), r.status)),
        200,
      );
    }
    const denied = await call(api, http, "GET", "/api/v1/nodes", undefined, {
      authorization: "Bearer nope",
    });
    assert.equal(denied.status, 401);
    assert.equal(denied.body.kind, "Status");
    assert.equal(denied.body.reason, "Unauthorized");
  }));

Deno.test("apiserver: create, get, conflicts and bad input leave nothing stored", () =>
  withServer(async (api, http) => {
    const created = await call(api, http, "POST", "/api/v1/nodes", makeNode({ name: "a" }));
    assert.equal(created.status, 201);
    const meta = created.body.metadata as Record<string, string>;
    assert.ok(meta.uid && meta.creationTimestamp && meta.resourceVersion);
    const again = await call(api, http, "POST", "/api/v1/nodes", makeNode({ name: "a" }));
    assert.equal(again.status, 409);
    assert.equal(again.body.reason, "AlreadyExists");
    const rv = api.nodes.resourceVersion();
    const bad: [unknown, number, string][] = [
      ["{not json", 400, "BadRequest"],
      [{ kind: "Pod", apiVersion: "v1", metadata: { name: "p" } }, 400, "BadRequest"],
      [makeNode({ name: "Bad_Name" }), 422, "Invalid"],
      [{ metadata: {} }, 422, "Invalid"],
      [{ metadata: { name: "x", annotations: { k: 1 } } }, 422, "Invalid"],
      [
        { ...makeNode({ name: "huge" }), pad: "x".repeat(4 * 1024 * 1024) },
        413,
        "RequestEntityTooLarge",
      ],
    ];
    for (const [body, code, reason] of bad) {
      const r = await call(api, http, "POST", "/api/v1/nodes", body);
      assert.equal(r.status, code, JSON.stringify(r.body));
      assert.equal(r.body.reason, reason);
      assert.equal(r.body.kind, "Status");
      assert.ok(String(r.body.message).length > 0);
    }
    assert.equal(api.nodes.resourceVersion(), rv, "nothing stored");
    assert.deepEqual(names(await call(api, http, "GET", "/api/v1/nodes")), ["a"]);
    const missing = await call(api, http, "GET", "/api/v1/nodes/zz");
    assert.equal(missing.status, 404);
    assert.equal(missing.body.reason, "NotFound");
  }));

Deno.test("apiserver: list pages with continue, label and field selectors", () =>
  withServer(async (api, http) => {
    for (let i = 0; i < 23; i++) {
      api.nodes.create(
        makeNode({
          name: `n${String(i).padStart(2, "0")}`,
          labels: { zone: i % 2 ? "odd" : "even" },
        }),
      );
    }
    const seen: string[] = [];
    let cont = "";
    let pages = 0;
    do {
      const r = await call(
        api,
        http,
        "GET",
        `/api/v1/nodes?limit=5${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
      );
      assert.equal(r.status, 200);
      seen.push(...names(r));
      cont = (r.body.metadata as { continue?: string }).continue ?? "";
      pages++;
    } while (cont);
    assert.equal(pages, 5);
    assert.equal(seen.length, 23);
    assert.equal(new Set(seen).size, 23);
    const odd = await call(api, http, "GET", "/api/v1/nodes?labelSelector=zone%3Dodd");
    assert.equal(names(odd).length, 11);
    const notOdd = await call(api, http, "GET", "/api/v1/nodes?labelSelector=zone!%3Dodd");
    assert.equal(names(notOdd).length, 12);
    const one = await call(api, http, "GET", "/api/v1/nodes?fieldSelector=metadata.name%3Dn07");
    assert.deepEqual(names(one), ["n07"]);
    const badSel = await call(api, http, "GET", "/api/v1/nodes?fieldSelector=spec.x%3D1");
    assert.equal(badSel.status, 400);
  }));

Deno.test("apiserver: update conflicts, patches of every type, status subresource, delete", () =>
  withServer(async (api, http) => {
    const n = api.nodes.create(
      makeNode({ name: "a", podCIDRs: ["10.0.0.0/24"], internalIPs: ["192.168.1.1"] }),
    );
    const stale = { ...n, metadata: { ...n.metadata, resourceVersion: "1" } };
    api.nodes.patch("a", "merge", { metadata: { labels: { x: "1" } } });
    const conflict = await call(api, http, "PUT", "/api/v1/nodes/a", stale);
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.reason, "Conflict");

    const merge = await call(api, http, "PATCH", "/api/v1/nodes/a", {
      metadata: { annotations: { k: "v" } },
    }, {
      "content-type": "application/merge-patch+json",
    });
    assert.equal(
      (merge.body.metadata as { annotations: Record<string, string> }).annotations.k,
      "v",
    );
    const smp = await call(api, http, "PATCH", "/api/v1/nodes/a/status", {
      status: { addresses: [{ type: "InternalIP", address: "192.168.1.9" }] },
    }, { "content-type": "application/strategic-merge-patch+json" });
    const addrs = (smp.body.status as { addresses: { type: string; address: string }[] }).addresses;
    assert.deepEqual(addrs.map((a) => `${a.type}=${a.address}`), [
      "InternalIP=192.168.1.9",
      "Hostname=a",
    ]);
    const jp = await call(api, http, "PATCH", "/api/v1/nodes/a", [
      { op: "add", path: "/metadata/annotations/cidr.example.com~1net3", value: "10.55.0.0/24" },
      { op: "remove", path: "/metadata/annotations/k" },
      { op: "test", path: "/metadata/name", value: "a" },
    ], { "content-type": "application/json-patch+json" });
    assert.deepEqual((jp.body.metadata as { annotations: Record<string, string> }).annotations, {
      "cidr.example.com/net3": "10.55.0.0/24",
    });
    const failedTest = await call(api, http, "PATCH", "/api/v1/nodes/a", [{
      op: "test",
      path: "/metadata/name",
      value: "b",
    }], {
      "content-type": "application/json-patch+json",
    });
    assert.equal(failedTest.status, 422);
    // A status change through the main resource is ignored, as for real Nodes.
    const cur = api.nodes.get("a")!;
    const put = await call(api, http, "PUT", "/api/v1/nodes/a", {
      ...cur,
      status: { addresses: [] },
    });
    assert.equal(put.status, 200);
    assert.equal((api.nodes.get("a")!.status as { addresses: unknown[] }).addresses.length, 2);

    assert.equal((await call(api, http, "DELETE", "/api/v1/nodes/a")).status, 200);
    const gone = await call(api, http, "DELETE", "/api/v1/nodes/a");
    assert.equal(gone.status, 404);
  }));

Deno.test("apiserver: watch replays from a version, bookmarks, timeout, 410 after compaction", () =>
  withServer(async (api, http) => {
    api.nodes.create(makeNode({ name: "a" }));
    const from = api.nodes.resourceVersion();
    api.nodes.create(makeNode({ name: "b" }));
    api.nodes.patch("a", "merge", { metadata: { labels: { x: "1" } } });
    api.nodes.delete("b");
    const auth = { authorization: `Bearer ${api.token}` };
    const res = await fetch(
      `${api.url}/api/v1/nodes?watch=true&resourceVersion=${from}&allowWatchBookmarks=true`,
      {
        client: http,
        headers: auth,
      },
    );
    const events = await readWatch(res, (e) => e.some((x) => x.type === "BOOKMARK"));
    assert.deepEqual(
      events.filter((e) => e.type !== "BOOKMARK").map((e) =>
        `${e.type} ${(e.object.metadata as { name: string }).name}`
      ),
      [
        "ADDED b",
        "MODIFIED a",
        "DELETED b",
      ],
    );
    const bm = events.find((e) => e.type === "BOOKMARK")!;
    assert.equal(
      (bm.object.metadata as { resourceVersion: string }).resourceVersion,
      String(api.nodes.resourceVersion()),
    );

    const all = await fetch(`${api.url}/api/v1/nodes?watch=1&timeoutSeconds=1`, {
      client: http,
      headers: auth,
    });
    const t0 = Date.now();
    const initial = await readWatch(all, () => false);
    assert.deepEqual(
      initial.map((e) => e.type),
      ["ADDED"],
      "synthetic ADDED, then the end at the timeout",
    );
    assert.ok(Date.now() - t0 >= 900);

    api.faults.compact();
    const old = await fetch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=${from}`, {
      client: http,
      headers: auth,
    });
    const expired = await readWatch(old, () => false);
    assert.equal(expired.length, 1);
    assert.equal(expired[0].type, "ERROR");
    assert.equal(expired[0].object.code, 410);
    assert.equal(expired[0].object.reason, "Expired");
  }));

Deno.test("apiserver: one change reaches 200 watchers", () =>
  withServer(async (api, http) => {
    const auth = { authorization: `Bearer ${api.token}` };
    const rv = api.nodes.resourceVersion();
    const streams = await Promise.all(Array.from({ length: 200 }, () =>
      fetch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=${rv}`, {
        client: http,
        headers: auth,
      })));
    await pollUntil(() =>
      api.nodes.watcherCount() === 200, { message: "200 watchers" });
    api.nodes.create(makeNode({ name: "fan" }));
    const got = await Promise.all(streams.map((s) => readWatch(s, (e) => e.length > 0)));
    assert.ok(got.every((e) =>
      e[0]?.type === "ADDED" && (e[0].object.metadata as { name: string }).name === "fan"
    ));
  }));

Deno.test("apiserver: injected faults", () =>
  withServer(async (api, http) => {
    api.faults.failNext(2, 429, { retryAfterSeconds: 3 });
    const r1 = await call(api, http, "GET", "/api/v1/nodes");
    assert.equal(r1.status, 429);
    assert.equal(r1.headers.get("retry-after"), "3");
    assert.equal(r1.body.reason, "TooManyRequests");
    assert.equal((await call(api, http, "GET", "/api/v1/nodes")).status, 429);
    assert.equal((await call(api, http, "GET", "/api/v1/nodes")).status, 200);

    api.faults.failNext(1, 500);
    assert.equal((await call(api, http, "GET", "/api/v1/nodes")).status, 500);

    api.faults.setLatency(150);
    const t0 = Date.now();
    await call(api, http, "GET", "/api/v1/nodes");
    assert.ok(Date.now() - t0 >= 140);
    api.faults.setLatency(0);

    const old = api.token;
    const fresh = await api.faults.rotateToken();
    assert.notEqual(old, fresh);
    assert.equal(
      (await call(api, http, "GET", "/api/v1/nodes", undefined, { authorization: `Bearer ${old}` }))
        .status,
      401,
    );
    assert.equal((await call(api, http, "GET", "/api/v1/nodes")).status, 200);

    const w = await fetch(`${api.url}/api/v1/nodes?watch=true`, {
      client: http,
      headers: { authorization: `Bearer ${api.token}` },
    });
    await pollUntil(() => api.nodes.watcherCount() === 1);
    api.faults.dropWatches();
    assert.deepEqual(await readWatch(w, () => false), [], "the stream ends");

    await api.faults.stopListening();
    await assert.rejects(() => fetch(`${api.url}/version`, { client: http }).then((r) => r.text()));
    api.faults.startListening();
    assert.equal((await call(api, http, "GET", "/version")).status, 200);
    assert.ok(api.faults.requestCount() >= 9);
  }));

Deno.test("apiserver: expireWatches answers every watch from a version with 410", () =>
  withServer(async (api, http) => {
    api.nodes.create(makeNode({ name: "a" }));
    const auth = { authorization: `Bearer ${api.token}` };
    const watchFrom = (rv: string) =>
      fetch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=${rv}&timeoutSeconds=1`, {
        client: http,
        headers: auth,
      }).then((res) => readWatch(res, (e) => e.length > 0));
    const current = String(api.nodes.resourceVersion());
    api.faults.expireWatches(true);
    const expired = await watchFrom(current);
    assert.equal(expired.length, 1);
    assert.equal(expired[0].type, "ERROR");
    assert.equal(expired[0].object.code, 410);
    assert.equal(expired[0].object.reason, "Expired");
    // A list still works, and a watch without a version starts with the synthetic ADDED.
    assert.equal((await call(api, http, "GET", "/api/v1/nodes")).status, 200);
    assert.deepEqual((await watchFrom("")).map((e) => e.type), ["ADDED"]);
    api.faults.expireWatches(false);
    const watching = fetch(
      `${api.url}/api/v1/nodes?watch=true&resourceVersion=${current}&timeoutSeconds=5`,
      { client: http, headers: auth },
    ).then((res) => readWatch(res, (e) => e.length > 0));
    await pollUntil(() => api.nodes.watcherCount() === 1, { message: "watching again" });
    api.nodes.create(makeNode({ name: "b" }));
    const events = await watching;
    assert.equal(events[0].type, "ADDED");
    assert.equal((events[0].object.metadata as { name: string }).name, "b");
  }));

Deno.test("apiserver: state persists across a restart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-apiserver-state-" });
  try {
    const a = await startApiServer({ stateFile: `${dir}/state.json`, certDir: `${dir}/certs` });
    a.nodes.create(makeNode({ name: "keep", podCIDRs: ["10.1.0.0/24"] }));
    const rv = a.nodes.resourceVersion();
    await a.close();
    const b = await startApiServer({ stateFile: `${dir}/state.json`, certDir: `${dir}/certs` });
    try {
      assert.deepEqual(b.nodes.list().map((n) => n.metadata.name), ["keep"]);
      assert.equal(b.nodes.resourceVersion(), rv);
      assert.equal(
        b.nodes.create(makeNode({ name: "next" })).metadata.resourceVersion,
        String(rv + 1),
      );
    } finally {
      await b.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

const META_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
const META_ITEM = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1";

Deno.test("apiserver: metadata only for list (paged), get and watch, as a metadata informer asks", () =>
  withServer(async (api, http) => {
    for (const name of ["a", "b", "c"]) {
      api.nodes.create(makeNode({
        name,
        podCIDRs: ["10.244.1.0/24"],
        annotations: { "cidr.example.com/net3": `10.55.${name.charCodeAt(0)}.0/24` },
        realistic: true,
      }));
    }
    const accept = { accept: `${META_LIST},application/json` };
    const first = await call(api, http, "GET", "/api/v1/nodes?limit=2", undefined, accept);
    assert.equal(first.status, 200);
    assert.equal(first.body.kind, "PartialObjectMetadataList");
    assert.equal(first.body.apiVersion, "meta.k8s.io/v1");
    const items = first.body.items as Record<string, unknown>[];
    assert.deepEqual(names(first), ["a", "b"]);
    for (const item of items) {
      assert.deepEqual(Object.keys(item).sort(), ["apiVersion", "kind", "metadata"]);
      assert.equal(item.kind, "PartialObjectMetadata");
    }
    const meta = items[0].metadata as Record<string, unknown>;
    assert.deepEqual(meta.annotations, { "cidr.example.com/net3": "10.55.97.0/24" });
    assert.deepEqual(meta, api.nodes.get("a")!.metadata, "all of the metadata, nothing else");
    const cont = (first.body.metadata as { continue: string }).continue;
    const second = await call(
      api,
      http,
      "GET",
      `/api/v1/nodes?limit=2&continue=${encodeURIComponent(cont)}`,
      undefined,
      accept,
    );
    assert.deepEqual(names(second), ["c"]);
    assert.equal(second.body.kind, "PartialObjectMetadataList");

    const one = await call(api, http, "GET", "/api/v1/nodes/b", undefined, { accept: META_ITEM });
    assert.equal(one.body.kind, "PartialObjectMetadata");
    assert.equal(one.body.spec, undefined);
    assert.equal((one.body.metadata as { name: string }).name, "b");

    const from = api.nodes.resourceVersion();
    const res = await fetch(
      `${api.url}/api/v1/nodes?watch=true&resourceVersion=${from}&allowWatchBookmarks=true`,
      { client: http, headers: { authorization: `Bearer ${api.token}`, accept: META_ITEM } },
    );
    const full = await fetch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=${from}`, {
      client: http,
      headers: { authorization: `Bearer ${api.token}` },
    });
    api.nodes.patch("a", "merge", { metadata: { annotations: { x: "1" } } });
    api.nodes.delete("c");
    // A bookmark may come before the changes (the interval is short); read to one after them.
    const bookmarkAfter = (e: { type: string }[]) =>
      e.findIndex((x, i) =>
        x.type === "BOOKMARK" && e.slice(0, i).some((y) => y.type === "DELETED")
      );
    const read = await readWatch(res, (e) => bookmarkAfter(e) >= 0);
    const events = read.slice(
      read.findIndex((e) => e.type !== "BOOKMARK"),
      bookmarkAfter(read) + 1,
    );
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.object.kind} ${Object.keys(e.object).sort().join(",")}`),
      [
        "MODIFIED PartialObjectMetadata apiVersion,kind,metadata",
        "DELETED PartialObjectMetadata apiVersion,kind,metadata",
        "BOOKMARK PartialObjectMetadata apiVersion,kind,metadata",
      ],
    );
    assert.equal((events[0].object.metadata as { annotations: { x: string } }).annotations.x, "1");
    // A watcher of whole objects on the same events still gets Nodes.
    const whole = await readWatch(full, (e) => e.length >= 2);
    assert.deepEqual(whole.map((e) => `${e.type} ${e.object.kind}`), [
      "MODIFIED Node",
      "DELETED Node",
    ]);
    assert.ok(whole[0].object.status, "the Node's status is there");
  }));

Deno.test("apiserver: content negotiation by quality and order; 406 when nothing fits", () =>
  withServer(async (api, http) => {
    api.nodes.create(makeNode({ name: "a" }));
    const kind = async (path: string, accept: string) => {
      const r = await call(api, http, "GET", path, undefined, { accept });
      return `${r.status} ${r.body.kind}`;
    };
    assert.equal(await kind("/api/v1/nodes", "application/json"), "200 NodeList");
    assert.equal(await kind("/api/v1/nodes", "*/*"), "200 NodeList");
    assert.equal(await kind("/api/v1/nodes", `${META_LIST};q=0, application/json`), "200 NodeList");
    assert.equal(
      await kind("/api/v1/nodes", `application/json;q=0.5, ${META_LIST}`),
      "200 PartialObjectMetadataList",
    );
    // kubectl's own header: protobuf first, then Table, then JSON.
    assert.equal(
      await kind(
        "/api/v1/nodes",
        `application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,${TABLE},application/json`,
      ),
      "200 Table",
    );
    // The list form is PartialObjectMetadataList; the item form does not fit a list.
    assert.equal(await kind("/api/v1/nodes", META_ITEM), "406 Status");
    assert.equal(await kind("/api/v1/nodes/a", META_LIST), "406 Status");
    const refused = await call(api, http, "GET", "/api/v1/nodes", undefined, {
      accept: "application/vnd.kubernetes.protobuf",
    });
    assert.equal(refused.status, 406);
    assert.equal(refused.body.reason, "NotAcceptable");
    assert.match(String(refused.body.message), /application\/vnd\.kubernetes\.protobuf/);
    assert.equal(
      await kind("/api/v1/nodes", "application/json;as=Table;g=meta.k8s.io;v=v1beta9"),
      "406 Status",
    );
    const bad = await call(api, http, "GET", "/api/v1/nodes?includeObject=All", undefined, {
      accept: TABLE,
    });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.message), /includeObject="All"/);
    // Only Tables read it.
    const plain = await call(api, http, "GET", "/api/v1/nodes?includeObject=All");
    assert.equal(`${plain.status} ${plain.body.kind}`, "200 NodeList");
  }));

Deno.test("apiserver: Tables for kubectl get: columns, cells, rows' objects, watch", () =>
  withServer(async (api, http) => {
    api.nodes.create(makeNode({
      name: "cp1",
      internalIPs: ["192.168.1.1"],
      labels: { "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "master" },
    }));
    api.nodes.create(makeNode({ name: "w1" }));
    api.nodes.patch("w1", "merge", {
      spec: { unschedulable: true },
      status: { conditions: [{ type: "Ready", status: "False" }] },
    });
    const list = await call(api, http, "GET", "/api/v1/nodes", undefined, { accept: TABLE });
    assert.equal(list.body.kind, "Table");
    const columns = list.body.columnDefinitions as { name: string; priority: number }[];
    assert.deepEqual(
      columns.filter((c) => c.priority === 0).map((c) => c.name),
      ["Name", "Status", "Roles", "Age", "Version"],
    );
    const rows = list.body.rows as { cells: string[]; object: Record<string, unknown> }[];
    const byName = Object.fromEntries(rows.map((r) => [r.cells[0], r.cells]));
    assert.deepEqual(byName.cp1.slice(1, 3), ["Ready", "control-plane,master"]);
    assert.equal(byName.cp1[5], "192.168.1.1", "-o wide: INTERNAL-IP");
    assert.deepEqual(byName.w1.slice(1, 3), ["NotReady,SchedulingDisabled", "<none>"]);
    assert.match(byName.w1[3], /^\d+s$/);
    assert.equal(rows[0].object.kind, "PartialObjectMetadata");
    assert.equal((list.body.metadata as { resourceVersion: string }).resourceVersion, "3");

    const none = await call(api, http, "GET", "/api/v1/nodes/w1?includeObject=None", undefined, {
      accept: TABLE,
    });
    assert.equal((none.body.rows as unknown[]).length, 1);
    assert.equal((none.body.rows as { object?: unknown }[])[0].object, undefined);
    const whole = await call(api, http, "GET", "/api/v1/nodes?includeObject=Object", undefined, {
      accept: TABLE,
    });
    assert.equal((whole.body.rows as { object: { kind: string } }[])[0].object.kind, "Node");

    const res = await fetch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=3`, {
      client: http,
      headers: { authorization: `Bearer ${api.token}`, accept: TABLE },
    });
    api.nodes.patch("w1", "merge", { spec: { unschedulable: false } });
    api.nodes.delete("cp1");
    const events = await readWatch(res, (e) => e.length >= 2);
    assert.deepEqual(events.map((e) => `${e.type} ${e.object.kind}`), [
      "MODIFIED Table",
      "DELETED Table",
    ]);
    const cells = (e: { object: Record<string, unknown> }) =>
      (e.object.rows as { cells: string[] }[])[0].cells;
    assert.deepEqual(cells(events[0]).slice(0, 2), ["w1", "NotReady"]);
    assert.equal(cells(events[1])[0], "cp1");
    assert.equal((events[0].object.columnDefinitions as unknown[]).length, columns.length);
    assert.deepEqual(events[1].object.columnDefinitions, [], "columns on the first event only");
  }));

Deno.test("apiserver: ages as kubectl prints them, at each change of unit", () => {
  const s = 1000, m = 60 * s, h = 60 * m, d = 24 * h;
  const cases: [number, string][] = [
    [-5 * s, "<invalid>"],
    [-0.5 * s, "0s"],
    [0, "0s"],
    [119 * s, "119s"],
    [2 * m, "2m"],
    [3 * m + 12 * s, "3m12s"],
    [10 * m + 59 * s, "10m"],
    [179 * m, "179m"],
    [3 * h, "3h"],
    [7 * h + 59 * m, "7h59m"],
    [8 * h + 30 * m, "8h"],
    [47 * h, "47h"],
    [2 * d + 5 * h, "2d5h"],
    [7 * d, "7d"],
    [8 * d + 5 * h, "8d"],
    [729 * d, "729d"],
    [730 * d, "2y"],
    [731 * d, "2y1d"],
    [8 * 365 * d + 40 * d, "8y"],
  ];
  assert.deepEqual(cases.map(([ms]) => humanAge(ms)), cases.map(([, want]) => want));
});

Deno.test("apiserver: the client's patchNode sends a merge patch; a stale resourceVersion is a 409", () =>
  withServer(async (api) => {
    const client = new KubeClient({
      server: api.url,
      caPem: api.caPem,
      insecureSkipTLSVerify: false,
      token: () => Promise.resolve(api.token),
      source: "test",
    });
    try {
      const made = api.nodes.create(makeNode({ name: "a", labels: { keep: "1" } }));
      const rv = made.metadata.resourceVersion!;
      // A merge patch: null deletes, the rest merges (a strategic one would too, a JSON
      // patch would be refused as not a list of operations).
      const patched = await client.patchNode("a", {
        metadata: { labels: { keep: null, added: "2" }, annotations: { k: "v" } },
      }, { resourceVersion: rv }) as { metadata: Record<string, unknown> };
      const labels = patched.metadata.labels as Record<string, string>;
      assert.equal(labels.keep, undefined);
      assert.equal(labels.added, "2");
      assert.equal(labels["kubernetes.io/os"], "linux", "merged, not replaced");
      assert.deepEqual(patched.metadata.annotations, { k: "v" });
      assert.equal(patched.metadata.resourceVersion, String(Number(rv) + 1));

      const stale = await client.patchNode("a", { metadata: { annotations: { k: "w" } } }, {
        resourceVersion: rv,
      }).catch((e) => e);
      assert.ok(stale instanceof ApiError, String(stale));
      assert.equal(stale.status, 409);
      assert.equal(stale.reason, "Conflict");
      assert.equal(
        (api.nodes.get("a")!.metadata.annotations as Record<string, string>).k,
        "v",
        "nothing written",
      );
      // Without a version the patch applies to whatever is there.
      await client.patchNode("a", { metadata: { annotations: { k: "w" } } });
      assert.equal((api.nodes.get("a")!.metadata.annotations as Record<string, string>).k, "w");

      const missing = await client.patchNode("zz", {}).catch((e) => e);
      assert.ok(missing instanceof ApiError && missing.status === 404);
      await assert.rejects(
        () => client.patchNode("a", { metadata: "x" }, { resourceVersion: "1" }),
        /metadata of the patch is not an object: "x"/,
      );
    } finally {
      client.close();
    }
  }));
