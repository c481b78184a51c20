/** Leases (coordination.k8s.io/v1) of the embedded API server over HTTPS. Needs openssl. */
import assert from "node:assert/strict";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { pollUntil } from "./helpers/netns.ts";
import { call, client, readWatch, type Reply, type WatchEvent } from "./helpers/apiserver_http.ts";

type Obj = Record<string, unknown>;

const LEASES = "/apis/coordination.k8s.io/v1";
const TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1";

const leasesIn = (ns: string, name = "") =>
  `${LEASES}/namespaces/${ns}/leases${name ? `/${name}` : ""}`;

async function withServer(
  fn: (api: ApiServer, http: Deno.HttpClient) => Promise<void>,
): Promise<void> {
  const api = await startApiServer({ bookmarkIntervalMs: 100 });
  const http = client(api);
  try {
    await fn(api, http);
  } finally {
    http.close();
    await api.close();
  }
}

function lease(name: string, spec: Obj = {}, metadata: Obj = {}): Obj {
  return {
    apiVersion: "coordination.k8s.io/v1",
    kind: "Lease",
    metadata: { name, ...metadata },
    spec,
  };
}

const meta = (o: Obj) => o.metadata as Record<string, string>;
const spec = (o: Obj) => o.spec as Obj;
const keys = (r: Reply) =>
  (r.body.items as Obj[]).map((o) => `${meta(o).namespace}/${meta(o).name}`);
const eventNames = (events: WatchEvent[]) =>
  events.filter((e) => e.type !== "BOOKMARK").map((e) =>
    `${e.type} ${meta(e.object).namespace}/${meta(e.object).name}`
  );

Deno.test("leases: discovery lists coordination.k8s.io/v1 and its namespaced leases", () =>
  withServer(async (api, http) => {
    const groups = await call(api, http, "GET", "/apis");
    assert.equal(groups.body.kind, "APIGroupList");
    const group = (groups.body.groups as Obj[]).find((g) => g.name === "coordination.k8s.io");
    assert.deepEqual(group?.preferredVersion, {
      groupVersion: "coordination.k8s.io/v1",
      version: "v1",
    });
    const one = await call(api, http, "GET", "/apis/coordination.k8s.io");
    assert.equal(one.body.kind, "APIGroup");
    assert.equal(one.body.name, "coordination.k8s.io");
    const resources = await call(api, http, "GET", LEASES);
    assert.equal(resources.body.groupVersion, "coordination.k8s.io/v1");
    const leases = (resources.body.resources as Obj[]).find((r) => r.name === "leases");
    assert.equal(leases?.kind, "Lease");
    assert.equal(leases?.namespaced, true);
    assert.equal(leases?.singularName, "lease");
    for (const verb of ["create", "delete", "get", "list", "patch", "update", "watch"]) {
      assert.ok((leases?.verbs as string[]).includes(verb), verb);
    }
  }));

Deno.test("leases: create, get, AlreadyExists, 404; one resourceVersion with the nodes", () =>
  withServer(async (api, http) => {
    api.nodes.create(makeNode({ name: "n1" }));
    const nodeRv = api.nodes.resourceVersion();
    const created = await call(
      api,
      http,
      "POST",
      leasesIn("kube-system"),
      lease("net3", {
        holderIdentity: "vm-001",
        leaseDurationSeconds: 15,
        acquireTime: "2026-01-02T03:04:05.123456+02:00",
        renewTime: "2026-01-02T01:04:06.000001Z",
        leaseTransitions: 3,
      }),
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.kind, "Lease");
    assert.equal(created.body.apiVersion, "coordination.k8s.io/v1");
    const m = meta(created.body);
    assert.equal(m.namespace, "kube-system", "the namespace comes from the URL");
    assert.ok(m.uid && m.creationTimestamp);
    assert.equal(m.resourceVersion, String(nodeRv + 1), "the one global counter");
    assert.equal(api.nodes.resourceVersion(), nodeRv + 1);
    assert.deepEqual(created.body.spec, {
      holderIdentity: "vm-001",
      leaseDurationSeconds: 15,
      // MicroTime is written in UTC with six digits.
      acquireTime: "2026-01-02T01:04:05.123456Z",
      renewTime: "2026-01-02T01:04:06.000001Z",
      leaseTransitions: 3,
    });

    const got = await call(api, http, "GET", leasesIn("kube-system", "net3"));
    assert.equal(got.status, 200);
    assert.deepEqual(got.body, created.body);
    assert.deepEqual(api.leases.get("kube-system", "net3"), created.body);

    const again = await call(api, http, "POST", leasesIn("kube-system"), lease("net3"));
    assert.equal(again.status, 409);
    assert.equal(again.body.reason, "AlreadyExists");
    assert.equal(again.body.message, 'leases.coordination.k8s.io "net3" already exists');

    // The same name in another namespace is another lease; a bare one gets an empty spec.
    const other = await call(api, http, "POST", leasesIn("default"), {
      metadata: { name: "net3" },
    });
    assert.equal(other.status, 201);
    assert.deepEqual(other.body.spec, {});

    const elsewhere = await call(
      api,
      http,
      "POST",
      leasesIn("default"),
      lease("x", {}, { namespace: "kube-system" }),
    );
    assert.equal(elsewhere.status, 400);
    assert.match(String(elsewhere.body.message), /does not match the namespace/);

    const missing = await call(api, http, "GET", leasesIn("kube-system", "nope"));
    assert.equal(missing.status, 404);
    assert.equal(missing.body.reason, "NotFound");
    assert.equal(missing.body.message, 'leases.coordination.k8s.io "nope" not found');
    assert.deepEqual(missing.body.details, {
      name: "nope",
      group: "coordination.k8s.io",
      kind: "leases",
    });
    assert.equal((await call(api, http, "GET", leasesIn("elsewhere", "net3"))).status, 404);
  }));

Deno.test("leases: a stale resourceVersion is a 409 Conflict for PUT and patch; nothing changes", () =>
  withServer(async (api, http) => {
    const first = api.leases.create("kube-system", lease("net3", { holderIdentity: "a" }));
    const rv1 = meta(first).resourceVersion;
    const renewed = await call(api, http, "PUT", leasesIn("kube-system", "net3"), {
      ...first,
      spec: { holderIdentity: "a", renewTime: "2026-01-01T00:00:01.000000Z" },
    });
    assert.equal(renewed.status, 200);
    const rv2 = meta(renewed.body).resourceVersion;
    assert.equal(Number(rv2), Number(rv1) + 1);
    assert.equal(meta(renewed.body).uid, meta(first).uid);

    // A second writer still holding the first version loses.
    const stale = await call(api, http, "PUT", leasesIn("kube-system", "net3"), {
      ...first,
      spec: { holderIdentity: "b" },
    });
    assert.equal(stale.status, 409);
    assert.equal(stale.body.kind, "Status");
    assert.equal(stale.body.status, "Failure");
    assert.equal(stale.body.reason, "Conflict");
    assert.equal(stale.body.code, 409);
    assert.match(
      String(stale.body.message),
      /^Operation cannot be fulfilled on leases\.coordination\.k8s\.io "net3": the object has been modified/,
    );
    assert.deepEqual(stale.body.details, {
      name: "net3",
      group: "coordination.k8s.io",
      kind: "leases",
    });
    const mergeStale = await call(api, http, "PATCH", leasesIn("kube-system", "net3"), {
      metadata: { resourceVersion: rv1 },
      spec: { holderIdentity: "b" },
    }, { "content-type": "application/merge-patch+json" });
    assert.equal(mergeStale.status, 409);
    assert.equal(mergeStale.body.reason, "Conflict");
    assert.equal(api.leases.get("kube-system", "net3")!.spec.holderIdentity, "a");
    assert.equal(String(api.leases.resourceVersion()), rv2, "no write happened");

    const merged = await call(api, http, "PATCH", leasesIn("kube-system", "net3"), {
      metadata: { resourceVersion: rv2 },
      spec: { holderIdentity: "b", leaseTransitions: 1 },
    }, { "content-type": "application/merge-patch+json" });
    assert.equal(merged.status, 200);
    assert.deepEqual(spec(merged.body), {
      holderIdentity: "b",
      renewTime: "2026-01-01T00:00:01.000000Z",
      leaseTransitions: 1,
    });
    const json = await call(api, http, "PATCH", leasesIn("kube-system", "net3"), [
      { op: "replace", path: "/spec/holderIdentity", value: "c" },
    ], { "content-type": "application/json-patch+json" });
    assert.equal(spec(json.body).holderIdentity, "c");
    const smp = await call(api, http, "PATCH", leasesIn("kube-system", "net3"), {
      spec: { leaseDurationSeconds: 5 },
    }, { "content-type": "application/strategic-merge-patch+json" });
    assert.equal(spec(smp.body).leaseDurationSeconds, 5);
    const badPatch = await call(api, http, "PATCH", leasesIn("kube-system", "net3"), {
      spec: { leaseDurationSeconds: -5 },
    }, { "content-type": "application/merge-patch+json" });
    assert.equal(badPatch.status, 422);

    // Without a resourceVersion a PUT is unconditional.
    const { resourceVersion: _, ...noVersion } = meta(smp.body);
    const blind = await call(api, http, "PUT", leasesIn("kube-system", "net3"), {
      metadata: noVersion,
      spec: { holderIdentity: "d" },
    });
    assert.equal(blind.status, 200);
    assert.deepEqual(spec(blind.body), { holderIdentity: "d" });

    const renamed = await call(api, http, "PUT", leasesIn("kube-system", "net3"), lease("other"));
    assert.equal(renamed.status, 400);
    // A PUT of an absent lease creates it, as for real Leases; not with a version to match.
    const made = await call(api, http, "PUT", leasesIn("kube-system", "new"), lease("new"));
    assert.equal(made.status, 201);
    assert.equal(meta(made.body).namespace, "kube-system");
    const ghost = await call(
      api,
      http,
      "PUT",
      leasesIn("kube-system", "ghost"),
      lease("ghost", {}, { resourceVersion: "3" }),
    );
    assert.equal(ghost.status, 404);
  }));

Deno.test("leases: invalid leases are 422 or 400 naming the field, and store nothing", () =>
  withServer(async (api, http) => {
    const rv = api.leases.resourceVersion();
    const cases: [Obj, number, RegExp][] = [
      [lease("Bad_Name"), 422, /metadata\.name: Invalid value: "Bad_Name"/],
      [{ metadata: {} }, 422, /metadata\.name: Required value/],
      [lease("a", { leaseDurationSeconds: 0 }), 422, /spec\.leaseDurationSeconds: .*0.*greater/],
      [lease("a", { leaseTransitions: -1 }), 422, /spec\.leaseTransitions: .*-1/],
      [lease("a", { strategy: "Newest" }), 422, /spec\.strategy: Unsupported value: "Newest"/],
      [lease("a", { preferredHolder: "x" }), 422, /spec\.preferredHolder: Forbidden/],
      [lease("a", { holderIdentity: 5 }), 400, /spec\.holderIdentity: expected a string, got 5/],
      [lease("a", { leaseDurationSeconds: "15" }), 400, /spec\.leaseDurationSeconds: .*"15"/],
      [lease("a", { leaseDurationSeconds: 1.5 }), 400, /spec\.leaseDurationSeconds: .*1\.5/],
      [lease("a", { leaseTransitions: 2 ** 31 }), 400, /spec\.leaseTransitions: expected an int32/],
      [
        lease("a", { renewTime: "2026-01-01T00:00:00Z" }),
        400,
        /spec\.renewTime: expected a MicroTime .*"2026-01-01T00:00:00Z"/,
      ],
      [
        lease("a", { acquireTime: "2026-02-30T00:00:00.000000Z" }),
        400,
        /spec\.acquireTime: .*2026-02-30/,
      ],
      [{ ...lease("a"), spec: [] }, 400, /spec: expected an object/],
      [{ ...lease("a"), kind: "Node" }, 400, /kind "Node" is not Lease/],
      [{ ...lease("a"), apiVersion: "v1" }, 400, /apiVersion "v1" is not coordination/],
    ];
    for (const [body, code, message] of cases) {
      const r = await call(api, http, "POST", leasesIn("default"), body);
      const what = JSON.stringify(body);
      assert.equal(r.status, code, `${what}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.kind, "Status", what);
      assert.equal(r.body.reason, code === 422 ? "Invalid" : "BadRequest", what);
      assert.match(String(r.body.message), message, what);
    }
    // No namespace of that name can exist.
    const noNs = await call(api, http, "POST", leasesIn("Bad_NS"), lease("a"));
    assert.equal(noNs.status, 404);
    assert.equal(noNs.body.message, 'namespaces "Bad_NS" not found');
    assert.throws(
      () => api.leases.create("Bad_NS", lease("a")),
      /metadata\.namespace: Invalid value: "Bad_NS"/,
    );
    const invalid = await call(
      api,
      http,
      "POST",
      leasesIn("default"),
      lease("a", {
        leaseDurationSeconds: 0,
      }),
    );
    assert.equal(
      invalid.body.message,
      'Lease.coordination.k8s.io "a" is invalid: ' +
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
    );
    assert.deepEqual((invalid.body.details as Obj).causes, [{
      reason: "FieldValueInvalid",
      message: "Invalid value: 0: must be greater than 0",
      field: "spec.leaseDurationSeconds",
    }]);

    // Unknown fields: a 400 under fieldValidation=Strict (kubectl's), else dropped.
    const extra = lease("a", { holderIdentity: "x", bogus: 1 });
    const strict = await call(api, http, "POST", `${leasesIn("default")}?fieldValidation=Strict`, {
      ...extra,
      status: {},
    });
    assert.equal(strict.status, 400);
    assert.equal(
      strict.body.message,
      'strict decoding error: unknown field "status", unknown field "spec.bogus"',
    );
    const badMode = await call(
      api,
      http,
      "POST",
      `${leasesIn("default")}?fieldValidation=Loud`,
      extra,
    );
    assert.equal(badMode.status, 400);
    assert.equal(api.leases.resourceVersion(), rv, "nothing stored");
    const lax = await call(api, http, "POST", leasesIn("default"), extra);
    assert.equal(lax.status, 201);
    assert.deepEqual(lax.body.spec, { holderIdentity: "x" });
  }));

Deno.test("leases: lists across and within namespaces, in pages, by label and field, as a Table", () =>
  withServer(async (api, http) => {
    for (const ns of ["kube-system", "a", "a-b", "default"]) {
      for (const name of ["y", "x"]) {
        api.leases.create(
          ns,
          lease(name, { holderIdentity: `${ns}-${name}` }, {
            labels: { net: name === "x" ? "net3" : "net4" },
          }),
        );
      }
    }
    const all = await call(api, http, "GET", `${LEASES}/leases`);
    assert.equal(all.status, 200);
    assert.equal(all.body.kind, "LeaseList");
    assert.equal(all.body.apiVersion, "coordination.k8s.io/v1");
    assert.equal(meta(all.body).resourceVersion, String(api.leases.resourceVersion()));
    assert.deepEqual(keys(all), [
      "a-b/x",
      "a-b/y",
      "a/x",
      "a/y",
      "default/x",
      "default/y",
      "kube-system/x",
      "kube-system/y",
    ]);
    assert.deepEqual(api.leases.list("a").map((l) => l.metadata.name), ["x", "y"]);
    assert.equal(api.leases.list().length, 8);

    const inA = await call(api, http, "GET", leasesIn("a"));
    assert.deepEqual(keys(inA), ["a/x", "a/y"], "a-b is another namespace");
    assert.deepEqual(keys(await call(api, http, "GET", leasesIn("none"))), []);

    const pages = async (path: string) => {
      const seen: string[][] = [];
      let cont = "";
      do {
        const sep = path.includes("?") ? "&" : "?";
        const r = await call(
          api,
          http,
          "GET",
          `${path}${sep}limit=3${cont ? `&continue=${encodeURIComponent(cont)}` : ""}`,
        );
        assert.equal(r.status, 200);
        seen.push(keys(r));
        cont = meta(r.body).continue ?? "";
      } while (cont);
      return seen;
    };
    assert.deepEqual(await pages(`${LEASES}/leases`), [
      ["a-b/x", "a-b/y", "a/x"],
      ["a/y", "default/x", "default/y"],
      ["kube-system/x", "kube-system/y"],
    ]);
    assert.deepEqual(await pages(`${leasesIn("default")}?labelSelector=net`), [
      ["default/x", "default/y"],
    ]);

    const net3 = await call(api, http, "GET", `${LEASES}/leases?labelSelector=net%3Dnet3`);
    assert.deepEqual(keys(net3), ["a-b/x", "a/x", "default/x", "kube-system/x"]);
    const byField = await call(
      api,
      http,
      "GET",
      `${LEASES}/leases?fieldSelector=metadata.namespace%3Da,metadata.name!%3Dx`,
    );
    assert.deepEqual(keys(byField), ["a/y"]);
    const badField = await call(api, http, "GET", `${LEASES}/leases?fieldSelector=spec.x%3D1`);
    assert.equal(badField.status, 400);

    const table = await call(api, http, "GET", leasesIn("kube-system"), undefined, {
      accept: TABLE,
    });
    assert.equal(table.body.kind, "Table");
    assert.deepEqual((table.body.columnDefinitions as Obj[]).map((c) => c.name), [
      "Name",
      "Holder",
      "Age",
    ]);
    const rows = table.body.rows as { cells: string[]; object: Obj }[];
    assert.deepEqual(rows.map((r) => r.cells.slice(0, 2)), [
      ["x", "kube-system-x"],
      ["y", "kube-system-y"],
    ]);
    assert.match(rows[0].cells[2], /^\d+s$/);
    assert.equal(meta(rows[0].object).namespace, "kube-system", "kubectl -A reads it there");
    const one = await call(api, http, "GET", leasesIn("a", "x"), undefined, { accept: TABLE });
    assert.deepEqual((one.body.rows as { cells: string[] }[])[0].cells.slice(0, 2), ["x", "a-x"]);
  }));

Deno.test("leases: watch per namespace and across, from a version, bookmarks, 410; nodes apart", () =>
  withServer(async (api, http) => {
    api.leases.create("a", lease("x"));
    const from = api.leases.resourceVersion();
    const auth = { authorization: `Bearer ${api.token}` };
    const open = (path: string, accept = "application/json") =>
      fetch(`${api.url}${path}`, { client: http, headers: { ...auth, accept } });
    const inA = await open(
      `${leasesIn("a")}?watch=true&resourceVersion=${from}&allowWatchBookmarks=true`,
    );
    const across = await open(`${LEASES}/leases?watch=1&resourceVersion=${from}`);
    const nodes = await open(`/api/v1/nodes?watch=true&resourceVersion=${from}`);
    const table = await open(`${leasesIn("a")}?watch=true&resourceVersion=${from}`, TABLE);
    await pollUntil(() => api.leases.watcherCount() === 3 && api.nodes.watcherCount() === 1, {
      message: "watching",
    });

    api.leases.create("b", lease("x"));
    api.nodes.create(makeNode({ name: "n1" }));
    api.leases.patch("a", "x", "merge", { spec: { holderIdentity: "me" } });
    api.leases.create("a", lease("y"));
    api.leases.delete("a", "x");
    const last = api.leases.resourceVersion();

    const events = await readWatch(
      inA,
      (e) => e.some((x) => x.type === "BOOKMARK" && Number(meta(x.object).resourceVersion) >= last),
    );
    assert.deepEqual(eventNames(events), ["MODIFIED a/x", "ADDED a/y", "DELETED a/x"]);
    const bookmark = events.findLast((e) => e.type === "BOOKMARK")!;
    assert.equal(meta(bookmark.object).resourceVersion, String(last), "the global version");
    assert.equal(bookmark.object.kind, "Lease");
    const modified = events.find((e) => e.type === "MODIFIED")!;
    assert.equal(spec(modified.object).holderIdentity, "me");

    assert.deepEqual(eventNames(await readWatch(across, (e) => e.length >= 4)), [
      "ADDED b/x",
      "MODIFIED a/x",
      "ADDED a/y",
      "DELETED a/x",
    ]);
    const nodeEvents = await readWatch(nodes, (e) => e.length >= 1);
    assert.deepEqual(nodeEvents.map((e) => `${e.type} ${e.object.kind}`), ["ADDED Node"]);
    const rows = await readWatch(table, (e) => e.length >= 3);
    assert.deepEqual(
      rows.map((e) => `${e.type} ${(e.object.rows as { cells: string[] }[])[0].cells[1]}`),
      ["MODIFIED me", "ADDED ", "DELETED me"],
    );

    // From no version: the current leases of the namespace, as ADDED.
    const initial = await readWatch(
      await open(`${leasesIn("a")}?watch=true&timeoutSeconds=1`),
      () => false,
    );
    assert.deepEqual(eventNames(initial), ["ADDED a/y"]);

    api.faults.compact();
    const expired = await readWatch(
      await open(`${LEASES}/leases?watch=true&resourceVersion=${from}`),
      () => false,
    );
    assert.equal(expired.length, 1);
    assert.equal(expired[0].type, "ERROR");
    assert.equal(expired[0].object.code, 410);
    assert.equal(expired[0].object.reason, "Expired");
  }));

Deno.test("leases: delete answers a Status, honours preconditions, then 404", () =>
  withServer(async (api, http) => {
    const made = api.leases.create("kube-system", lease("net3"));
    const path = leasesIn("kube-system", "net3");
    const staleRv = await call(api, http, "DELETE", path, {
      kind: "DeleteOptions",
      apiVersion: "v1",
      preconditions: { resourceVersion: "1234" },
    });
    assert.equal(staleRv.status, 409);
    assert.match(String(staleRv.body.message), /ResourceVersion in precondition: 1234/);
    const otherUid = await call(api, http, "DELETE", path, { preconditions: { uid: "nope" } });
    assert.equal(otherUid.status, 409);
    const badOptions = await call(api, http, "DELETE", path, { preconditions: { uid: 7 } });
    assert.equal(badOptions.status, 400);
    assert.match(String(badOptions.body.message), /preconditions\.uid/);
    assert.ok(api.leases.get("kube-system", "net3"), "still there");

    const gone = await call(api, http, "DELETE", path, {
      preconditions: { uid: made.metadata.uid, resourceVersion: made.metadata.resourceVersion },
    });
    assert.equal(gone.status, 200);
    assert.equal(gone.body.kind, "Status");
    assert.equal(gone.body.status, "Success");
    assert.deepEqual(gone.body.details, {
      name: "net3",
      group: "coordination.k8s.io",
      kind: "leases",
      uid: made.metadata.uid,
    });
    assert.equal(api.leases.get("kube-system", "net3"), undefined);
    assert.equal((await call(api, http, "DELETE", path)).status, 404);

    api.leases.create("kube-system", lease("bare"));
    const noBody = await call(api, http, "DELETE", leasesIn("kube-system", "bare"));
    assert.equal(noBody.status, 200, JSON.stringify(noBody.body));
    assert.throws(() => api.leases.delete("kube-system", "bare"), /not found/);
  }));

Deno.test("leases: the state file keeps leases and the shared resourceVersion", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-lease-state-" });
  try {
    const a = await startApiServer({ stateFile: `${dir}/state.json`, certDir: `${dir}/certs` });
    a.nodes.create(makeNode({ name: "n1" }));
    a.leases.create("kube-system", lease("net3", { holderIdentity: "n1" }));
    const rv = a.leases.resourceVersion();
    await a.close();
    const b = await startApiServer({ stateFile: `${dir}/state.json`, certDir: `${dir}/certs` });
    try {
      assert.equal(b.leases.get("kube-system", "net3")?.spec.holderIdentity, "n1");
      assert.equal(b.nodes.resourceVersion(), rv);
      const next = b.leases.update("kube-system", "net3", {
        ...b.leases.get("kube-system", "net3"),
        spec: { holderIdentity: "n2" },
      });
      assert.equal(next.metadata.resourceVersion, String(rv + 1));
      assert.equal(
        b.nodes.create(makeNode({ name: "n2" })).metadata.resourceVersion,
        String(rv + 2),
      );
    } finally {
      await b.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
