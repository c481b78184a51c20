/** The embedded API server over HTTPS, as a client sees it. Needs openssl. */
import assert from "node:assert/strict";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
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
