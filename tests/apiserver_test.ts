/** The embedded API server over HTTPS, as a client sees it. Needs openssl. */
import assert from "node:assert/strict";
import {
  type ApiServer,
  ListenError,
  parseListen,
  startApiServer,
} from "../src/devcluster/apiserver/mod.ts";
import { EventStore } from "../src/devcluster/apiserver/events.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { humanAge } from "../src/devcluster/apiserver/views.ts";
import { ApiError } from "../src/kube/client.ts";
import { pollUntil } from "./helpers/netns.ts";
import { call, client, kubeClient, readWatch, type Reply } from "./helpers/apiserver_http.ts";

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
    const client = kubeClient(api);
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

/** An Event on node `node` as the kubelet's recorder writes one (uid: the node's name). */
function nodeEventBody(name: string, node: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name },
    involvedObject: { apiVersion: "v1", kind: "Node", name: node, uid: node },
    reason: "NetworkCIDRRefused",
    message: `refused on ${node}`,
    type: "Warning",
    source: { component: "xcluster-cni", host: node },
    firstTimestamp: "2026-01-01T00:00:00.123Z",
    lastTimestamp: "2026-01-01T00:00:05Z",
    count: 1,
    ...extra,
  };
}

const eventNames = (r: Reply) =>
  (r.body.items as { metadata: { namespace: string; name: string } }[]).map((e) =>
    `${e.metadata.namespace}/${e.metadata.name}`
  );

Deno.test("apiserver: Events: create, list per namespace and across, field selectors, pages, watch", () =>
  withServer(async (api, http) => {
    const post = (ns: string, body: unknown, query = "") =>
      call(api, http, "POST", `/api/v1/namespaces/${ns}/events${query}`, body);
    const made = await post("default", nodeEventBody("vm-001.1", "vm-001"));
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const meta = made.body.metadata as Record<string, string>;
    assert.equal(meta.namespace, "default");
    assert.ok(meta.uid && meta.resourceVersion && meta.creationTimestamp);
    // A Time is written as the real server writes it: UTC, whole seconds.
    assert.equal(made.body.firstTimestamp, "2026-01-01T00:00:00Z");
    assert.equal(made.body.eventTime, null);
    assert.equal(made.body.reportingComponent, "");
    assert.equal((await post("default", nodeEventBody("vm-002.1", "vm-002"))).status, 201);
    // An Event on an object of a namespace lives in that namespace.
    const inKube = await post("kube-system", {
      metadata: { name: "lease.1" },
      involvedObject: { kind: "Lease", namespace: "kube-system", name: "net3" },
      reason: "LeaderElection",
    });
    assert.equal(inKube.status, 201, JSON.stringify(inKube.body));

    const all = await call(api, http, "GET", "/api/v1/events");
    assert.equal(all.status, 200);
    assert.equal(all.body.kind, "EventList");
    assert.deepEqual(eventNames(all), [
      "default/vm-001.1",
      "default/vm-002.1",
      "kube-system/lease.1",
    ]);
    assert.equal(
      (all.body.metadata as { resourceVersion: string }).resourceVersion,
      String(api.nodes.resourceVersion()),
      "one resourceVersion for every kind",
    );
    const inDefault = await call(api, http, "GET", "/api/v1/namespaces/default/events");
    assert.deepEqual(eventNames(inDefault), ["default/vm-001.1", "default/vm-002.1"]);
    const none = await call(api, http, "GET", "/api/v1/namespaces/other/events");
    assert.deepEqual(eventNames(none), []);

    // The selector `kubectl describe node` sends, and others of the real field set.
    const selected = async (selector: string) =>
      eventNames(
        await call(
          api,
          http,
          "GET",
          `/api/v1/events?fieldSelector=${encodeURIComponent(selector)}`,
        ),
      );
    assert.deepEqual(
      await selected(
        "involvedObject.name=vm-001,involvedObject.namespace=,involvedObject.kind=Node,involvedObject.uid=vm-001",
      ),
      ["default/vm-001.1"],
    );
    assert.deepEqual(await selected("involvedObject.kind!=Node"), ["kube-system/lease.1"]);
    assert.deepEqual(await selected("source=xcluster-cni,type=Warning"), [
      "default/vm-001.1",
      "default/vm-002.1",
    ]);
    assert.deepEqual(await selected("reason=LeaderElection,metadata.namespace=kube-system"), [
      "kube-system/lease.1",
    ]);
    const badField = await call(api, http, "GET", "/api/v1/events?fieldSelector=spec.x%3D1");
    assert.equal(badField.status, 400);
    assert.match(String(badField.body.message), /field label not supported: spec\.x/);

    const page = await call(api, http, "GET", "/api/v1/events?limit=2");
    assert.deepEqual(eventNames(page), ["default/vm-001.1", "default/vm-002.1"]);
    const cont = (page.body.metadata as { continue: string }).continue;
    const rest = await call(
      api,
      http,
      "GET",
      `/api/v1/events?limit=2&continue=${encodeURIComponent(cont)}`,
    );
    assert.deepEqual(eventNames(rest), ["kube-system/lease.1"]);

    const one = await call(api, http, "GET", "/api/v1/namespaces/default/events/vm-002.1");
    assert.equal(one.body.message, "refused on vm-002");
    assert.equal(
      (await call(api, http, "GET", "/api/v1/namespaces/kube-system/events/vm-002.1")).status,
      404,
    );

    const from = api.nodes.resourceVersion();
    const res = await fetch(
      `${api.url}/api/v1/namespaces/default/events?watch=true&resourceVersion=${from}`,
      { client: http, headers: { authorization: `Bearer ${api.token}` } },
    );
    await post("kube-system", {
      metadata: { name: "lease.2" },
      involvedObject: { kind: "Lease", namespace: "kube-system", name: "net3" },
    });
    await post("default", nodeEventBody("vm-003.1", "vm-003"));
    const deleted = await call(api, http, "DELETE", "/api/v1/namespaces/default/events/vm-001.1");
    assert.equal(deleted.status, 200);
    assert.equal((deleted.body.details as { kind: string }).kind, "events");
    const events = await readWatch(res, (e) => e.length >= 2);
    assert.deepEqual(
      events.map((e) => `${e.type} ${(e.object.metadata as { name: string }).name}`),
      ["ADDED vm-003.1", "DELETED vm-001.1"],
      "only the namespace of the URL",
    );
    // What the tests of the daemons read: the stored Events, oldest first.
    assert.deepEqual(
      (api.events as { metadata: { name: string } }[]).map((e) => e.metadata.name),
      ["vm-002.1", "lease.1", "lease.2", "vm-003.1"],
    );
  }));

Deno.test("apiserver: Events are checked as the real server checks them; nothing is stored then", () =>
  withServer(async (api, http) => {
    const post = (ns: string, body: unknown, query = "") =>
      call(api, http, "POST", `/api/v1/namespaces/${ns}/events${query}`, body);
    const rv = api.nodes.resourceVersion();
    const cases: [string, unknown, string, number, RegExp][] = [
      // A Node is in no namespace: its Events go to "default".
      ["kube-system", nodeEventBody("a.1", "a"), "", 422, /involvedObject\.namespace/],
      [
        "default",
        { metadata: { name: "b.1" }, involvedObject: { kind: "Pod", namespace: "x", name: "p" } },
        "",
        422,
        /involvedObject\.namespace: Invalid value: "x": does not match event\.namespace/,
      ],
      ["default", nodeEventBody("c.1", "c", { count: "1" }), "", 400, /count: expected an integer/],
      [
        "default",
        nodeEventBody("d.1", "d", { lastTimestamp: "yesterday" }),
        "",
        400,
        /lastTimestamp: expected a Time/,
      ],
      // With eventTime (the newer API's fields), the reporting fields are required.
      [
        "default",
        nodeEventBody("e.1", "e", { eventTime: "2026-01-01T00:00:00.000000Z" }),
        "",
        422,
        /reportingComponent: Required value/,
      ],
      [
        "default",
        nodeEventBody("f.1", "f", { note: "x" }),
        "?fieldValidation=Strict",
        400,
        /unknown field "note"/,
      ],
      ["default", { ...nodeEventBody("g.1", "g"), kind: "Pod" }, "", 400, /kind "Pod"/],
      ["Bad_NS", nodeEventBody("h.1", "h"), "", 404, /namespaces "Bad_NS" not found/],
    ];
    for (const [ns, body, query, code, re] of cases) {
      const r = await post(ns, body, query);
      assert.equal(r.status, code, `${ns} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
      assert.match(String(r.body.message), re);
    }
    assert.equal(api.nodes.resourceVersion(), rv, "nothing stored");
    assert.deepEqual(api.events, []);
    // Unknown fields are dropped without Strict, as the real server does.
    const loose = await post("default", nodeEventBody("f.1", "f", { note: "x" }));
    assert.equal(loose.status, 201);
    assert.equal(loose.body.note, undefined);
  }));

Deno.test("apiserver: the Event store keeps the newest; the oldest goes as a DELETED event", () => {
  const events = new EventStore({ limit: 3 });
  const seen: string[] = [];
  events.watch("0", {
    bookmarks: false,
    send: (ev) => seen.push(`${ev.type} ${ev.obj.metadata.name}`),
    close: () => {},
  });
  for (const i of [1, 2, 3, 4]) events.create("default", nodeEventBody(`n.${i}`, "n"));
  // An update does not make an Event newer: it goes in the order it was created.
  events.patchIn("default", "n.2", "merge", { count: 2 });
  events.create("default", nodeEventBody("n.5", "n"));
  assert.deepEqual(events.inCreationOrder().map((e) => e.metadata.name), ["n.3", "n.4", "n.5"]);
  assert.deepEqual(seen, [
    "ADDED n.1",
    "ADDED n.2",
    "ADDED n.3",
    "ADDED n.4",
    "DELETED n.1",
    "MODIFIED n.2",
    "ADDED n.5",
    "DELETED n.2",
  ]);
});

Deno.test("apiserver: Pods are served read only and empty, with the real field selectors", () =>
  withServer(async (api, http) => {
    // What `kubectl describe node` asks for.
    const selector = "spec.nodeName=vm-001,status.phase!=Failed,status.phase!=Succeeded";
    const list = await call(
      api,
      http,
      "GET",
      `/api/v1/pods?fieldSelector=${encodeURIComponent(selector)}&limit=500`,
    );
    assert.equal(list.status, 200, JSON.stringify(list.body));
    assert.equal(list.body.kind, "PodList");
    assert.deepEqual(list.body.items, []);
    assert.equal(
      (list.body.metadata as { resourceVersion: string }).resourceVersion,
      String(api.nodes.resourceVersion()),
    );
    const ns = await call(
      api,
      http,
      "GET",
      "/api/v1/namespaces/default/pods?fieldSelector=spec.hostNetwork%3Dtrue",
    );
    assert.equal(`${ns.status} ${ns.body.kind}`, "200 PodList");
    for (const bad of ["spec.containers=x", "metadata.labels=x", "status.hostIP=1.2.3.4"]) {
      const r = await call(
        api,
        http,
        "GET",
        `/api/v1/pods?fieldSelector=${encodeURIComponent(bad)}`,
      );
      assert.equal(r.status, 400, bad);
      assert.match(String(r.body.message), /field label not supported/, bad);
    }
    const table = await call(api, http, "GET", "/api/v1/pods", undefined, { accept: TABLE });
    assert.equal(table.body.kind, "Table");
    assert.deepEqual(
      (table.body.columnDefinitions as { name: string; priority: number }[])
        .filter((c) => c.priority === 0).map((c) => c.name),
      ["Name", "Ready", "Status", "Restarts", "Age"],
    );
    assert.equal((await call(api, http, "GET", "/api/v1/namespaces/default/pods/p")).status, 404);
    const write = await call(api, http, "POST", "/api/v1/namespaces/default/pods", {
      metadata: { name: "p" },
    });
    assert.equal(write.status, 405);
    assert.equal(write.headers.get("allow"), "GET");
    const v1 = await call(api, http, "GET", "/api/v1");
    const pods = (v1.body.resources as { name: string; verbs: string[] }[])
      .find((r) => r.name === "pods");
    assert.deepEqual(pods?.verbs, ["get", "list", "watch"]);
  }));

Deno.test("apiserver: probes, /version, /metrics and discovery answer GET only: 405 with Allow", () =>
  withServer(async (api, http) => {
    const send = async (method: string, path: string, token = true) => {
      const res = await fetch(api.url + path, {
        method,
        client: http,
        headers: token ? { authorization: `Bearer ${api.token}` } : {},
        body: method === "POST" || method === "PUT" ? "{}" : undefined,
      });
      return { status: res.status, allow: res.headers.get("allow"), text: await res.text() };
    };
    for (const path of ["/healthz", "/readyz", "/livez", "/version", "/metrics", "/api", "/apis"]) {
      for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
        const r = await send(method, path);
        assert.equal(r.status, 405, `${method} ${path}: ${r.text}`);
        assert.equal(r.allow, "GET, HEAD", `${method} ${path}`);
        const body = JSON.parse(r.text);
        assert.equal(body.reason, "MethodNotAllowed");
        assert.match(body.message, new RegExp(`${method} .*${path.replace("/", "\\/")}`));
      }
      assert.equal((await send("GET", path)).status, 200, path);
      assert.equal((await send("HEAD", path)).status, 200, `HEAD ${path}`);
    }
    // Probes and /version are open; /metrics needs the token first, as on the real server.
    assert.equal((await send("POST", "/healthz", false)).status, 405);
    assert.equal((await send("POST", "/metrics", false)).status, 401);
    assert.equal((await send("GET", "/metrics", false)).status, 401);
    api.nodes.create(makeNode({ name: "a" }));
    api.leases.create("kube-system", { metadata: { name: "l" } });
    const metrics = await send("GET", "/metrics");
    assert.match(metrics.text, /^# TYPE apiserver_storage_objects gauge$/m);
    assert.match(metrics.text, /^apiserver_storage_objects\{resource="nodes"\} 1$/m);
    assert.match(
      metrics.text,
      /^apiserver_storage_objects\{resource="leases\.coordination\.k8s\.io"\} 1$/m,
    );
    assert.match(metrics.text, /^apiserver_storage_objects\{resource="events"\} 0$/m);
    // Resource paths name their own methods.
    const put = await send("PUT", "/api/v1/nodes");
    assert.equal(`${put.status} ${put.allow}`, "405 GET, POST");
    const post = await send("POST", "/api/v1/nodes/a/status");
    assert.equal(`${post.status} ${post.allow}`, "405 GET, PUT, PATCH");
    const lease = await send(
      "POST",
      "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l",
    );
    assert.equal(`${lease.status} ${lease.allow}`, "405 GET, PUT, PATCH, DELETE");
  }));

Deno.test("apiserver: listen addresses are read before anything starts, naming the value", async () => {
  assert.deepEqual(parseListen("127.0.0.1:6443"), { hostname: "127.0.0.1", port: 6443 });
  assert.deepEqual(parseListen("[::1]:0"), { hostname: "::1", port: 0 });
  assert.deepEqual(parseListen(":8443"), { hostname: "127.0.0.1", port: 8443 });
  assert.deepEqual(parseListen("localhost:1"), { hostname: "localhost", port: 1 });
  const bad: [string, RegExp][] = [
    ["bogus", /"bogus": expected HOST:PORT/],
    ["127.0.0.1:99999", /the port "99999" is not a number from 0 to 65535/],
    ["127.0.0.1:", /the port "" is not/],
    ["127.0.0.1:-1", /the port "-1"/],
    ["::1:80", /expected HOST:PORT \(an IPv6 address in brackets/],
    ["[10.0.0.1]:80", /"10\.0\.0\.1" is not an IPv6 address/],
    ["256.0.0.1:80", /"256\.0\.0\.1" is not an IPv4 address/],
    ["bad_host:80", /"bad_host" is not a host name/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parseListen(text), (e) => e instanceof ListenError && re.test(e.message));
  }
  await assert.rejects(() => startApiServer({ listen: "bogus" }), ListenError);
});

Deno.test("apiserver: the client watches nodes through fetch and through node:https (insecure-skip-tls-verify) alike", () =>
  withServer(async (api) => {
    for (const insecure of [false, true]) {
      const client = kubeClient(api, insecure);
      const stop = new AbortController();
      try {
        const rv = api.nodes.create(makeNode({ name: `w${insecure}` })).metadata.resourceVersion!;
        const events = client.watchNodes({ resourceVersion: rv, signal: stop.signal });
        const seen: string[] = [];
        const reading = (async () => {
          for await (const e of events) {
            seen.push(`${e.type} ${(e.object as { metadata: { name: string } }).metadata.name}`);
          }
        })();
        // Events of every size, one at a time and several at once: a watch's reads split
        // them anywhere, and one buffer serves every read.
        const big = "x".repeat(150_000);
        api.nodes.create(makeNode({ name: "small" }));
        api.nodes.create(makeNode({ name: "big", annotations: { big } }));
        for (let i = 0; i < 20; i++) api.nodes.create(makeNode({ name: `n${i}` }));
        await pollUntil(() => seen.length >= 22, {
          timeoutMs: 10_000,
          message: () => `insecure ${insecure}: ${seen}`,
        });
        assert.deepEqual(seen, [
          "ADDED small",
          "ADDED big",
          ...Array.from({ length: 20 }, (_, i) => `ADDED n${i}`),
        ]);
        stop.abort();
        await reading.catch(() => {});
        for (const n of ["small", "big", ...Array.from({ length: 20 }, (_, i) => `n${i}`)]) {
          api.nodes.delete(n);
        }
      } finally {
        stop.abort();
        client.close();
      }
    }
  }));
