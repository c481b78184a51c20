/**
 * The allocator's shell without an API server: writes go through an injected function, so
 * that refusals (403), conflicts and the loss of the lease mid-way can be made to happen.
 */
import assert from "node:assert/strict";
import { Allocator } from "../src/alloc/allocator.ts";
import type { NodeUpdate } from "../src/alloc/allocate.ts";
import { parsePools } from "../src/alloc/pools.ts";
import { ApiError } from "../src/kube/client.ts";
import type { NodeInfo } from "../src/kube/node.ts";
import { capturedLog } from "./helpers/router.ts";

const KEY = "cidr.example.com/net9";

function node(name: string, annotation?: string): NodeInfo {
  return {
    name,
    creationTimestamp: `2026-01-01T00:00:${name.slice(1).padStart(2, "0")}Z`,
    podCIDRs: [],
    internalIPs: [],
    machineID: "",
    annotations: annotation === undefined ? {} : { [KEY]: annotation },
  };
}

Deno.test("allocator: a 403 is counted and logged once per 30 s; routing is not its business", async () => {
  const log = capturedLog();
  let now = 0;
  let allowed = false;
  const written: NodeUpdate[] = [];
  const nodes = [node("n1"), node("n2")];
  const a = new Allocator({
    nodes: () => nodes,
    annotation: KEY,
    pools: parsePools("10.9.0.0/16/24", undefined),
    quarantineMs: 15_000,
    write: (u) => {
      if (!allowed) {
        return Promise.reject(new ApiError(403, "Forbidden", `PATCH /api/v1/nodes/${u.node}: 403`));
      }
      written.push(u);
      return Promise.resolve("written");
    },
    log: log.log,
    now: () => now,
  });
  const lease = new AbortController();
  a.lead(lease.signal);
  await a.idle();
  assert.equal(a.stats().failures.forbidden, 2);
  a.changed();
  await a.idle();
  assert.equal(a.stats().failures.forbidden, 4);
  const refusals = () => log.lines.filter((l) => l.includes("not allowed to write")).length;
  assert.equal(refusals(), 1, "logged once");
  now += 30_000;
  a.changed();
  await a.idle();
  assert.equal(refusals(), 2, "and again 30 s later");
  allowed = true;
  a.changed();
  await a.idle();
  assert.deepEqual(written.map((u) => `${u.node} ${u.value}`), [
    "n1 10.9.0.0/24",
    "n2 10.9.1.0/24",
  ]);
  assert.equal(a.stats().allocations, 2);
  lease.abort();
});

Deno.test("allocator: losing the lease stops the writes at once; what was written is assumed", async () => {
  const nodes = Array.from({ length: 40 }, (_, i) => node(`n${i + 10}`));
  const lease = new AbortController();
  const written: string[] = [];
  const a = new Allocator({
    nodes: () => nodes,
    annotation: KEY,
    pools: parsePools("10.9.0.0/16/24", undefined),
    quarantineMs: 15_000,
    write: async (u, signal) => {
      await new Promise((r) => setTimeout(r, 5));
      if (signal.aborted) throw new Error("aborted");
      written.push(u.node);
      // The lease is lost while the writes are under way.
      if (written.length === 20) lease.abort();
      return "written";
    },
    log: capturedLog().log,
  });
  a.lead(lease.signal);
  await a.idle();
  assert.equal(a.leading, false);
  assert.ok(written.length >= 20 && written.length < 40, `${written.length} written`);
  const after = written.length;
  a.changed();
  await a.idle();
  assert.equal(written.length, after, "nothing written once the lease is gone");
  assert.equal(a.stats().leader, false);

  // A new term: the store does not show the writes yet, but they count as held.
  const next = new AbortController();
  const second: NodeUpdate[] = [];
  const b = new Allocator({
    nodes: () => nodes,
    annotation: KEY,
    pools: parsePools("10.9.0.0/16/24", undefined),
    quarantineMs: 15_000,
    write: (u) => {
      second.push(u);
      return Promise.resolve("written");
    },
    log: capturedLog().log,
  });
  b.lead(next.signal);
  await b.idle();
  assert.equal(second.length, 40);
  b.changed();
  await b.idle();
  assert.equal(second.length, 40, "assumed values are not written twice");
  assert.equal(new Set(second.map((u) => u.value)).size, 40, "all distinct");
  next.abort();
});

/** An allocator over `nodes` (read at each decision) writing through `write`. */
function allocator(
  nodes: () => NodeInfo[],
  write: ConstructorParameters<typeof Allocator>[0]["write"],
): Allocator {
  return new Allocator({
    nodes,
    annotation: KEY,
    pools: parsePools("10.9.0.0/16/24", undefined),
    quarantineMs: 15_000,
    write,
    log: capturedLog().log,
  });
}

Deno.test("allocator: what nodes off the selection hold stays taken for a new leader", async () => {
  // The store holds the selected nodes only; b left the selection and still holds a CIDR.
  const store = [node("n1", "10.9.1.0/24"), node("n2")];
  const written: NodeUpdate[] = [];
  const a = allocator(() => store, (u) => {
    written.push(u);
    return Promise.resolve("written");
  });
  const lease = new AbortController();
  a.lead(lease.signal, new Map([["n1", "10.9.1.0/24"], ["b", "10.9.0.0/24"]]));
  await a.idle();
  assert.deepEqual(written.map((u) => `${u.node} ${u.value}`), ["n2 10.9.2.0/24"]);
  lease.abort();
});

Deno.test("allocator: a value written to a node that went does not shadow its namesake", async () => {
  const others = [node("n10", "10.9.10.0/24"), node("n11", "10.9.11.0/24")];
  let store = [...others, node("n1")];
  const written: NodeUpdate[] = [];
  const a = allocator(() => store, (u) => {
    written.push(u);
    return Promise.resolve("written");
  });
  const lease = new AbortController();
  a.lead(lease.signal);
  await a.idle();
  assert.deepEqual(written.map((u) => `${u.node} ${u.value}`), ["n1 10.9.0.0/24"]);
  // The store never shows that write (a relist finds n1 gone), then n1 registers again.
  const old = store[2];
  store = [...others];
  a.changed([{ type: "deleted", name: "n1", old }]);
  await a.idle();
  const fresh = node("n1");
  store = [...others, fresh];
  a.changed([{ type: "added", name: "n1", value: fresh }]);
  await a.idle();
  assert.equal(written.length, 2, "the new n1 is given CIDRs");
  assert.equal(written[1].node, "n1");
  lease.abort();
});

Deno.test("allocator: a node changed under a write is decided again after a pause", async () => {
  const store = [node("n1")];
  let calls = 0;
  const a = allocator(() => store, async () => {
    calls++;
    // The API holds a value the store does not show yet.
    await new Promise((r) => setTimeout(r, 1));
    return "changed";
  });
  const lease = new AbortController();
  a.lead(lease.signal);
  await new Promise((r) => setTimeout(r, 400));
  lease.abort();
  await a.idle();
  assert.equal(calls, 1, "one write, then a wait for the watch or the retry");
});

Deno.test("allocator: finish lets the writes in flight end, unaborted, and starts no more", async () => {
  const store = Array.from({ length: 40 }, (_, i) => node(`n${i + 10}`));
  const started: string[] = [];
  const ended: string[] = [];
  let finished = false;
  const a = allocator(() => store, async (u, signal) => {
    started.push(u.node);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(signal.aborted, false, "a write in flight is not aborted");
    assert.equal(finished, false, "finish waits for it");
    ended.push(u.node);
    return "written";
  });
  const lease = new AbortController();
  a.lead(lease.signal);
  await new Promise((r) => setTimeout(r, 60));
  await a.finish();
  finished = true;
  assert.ok(started.length > 0 && started.length < 40, `${started.length} started`);
  assert.deepEqual(ended, started, "every write started has ended");
  assert.equal(a.leading, false);
  a.changed();
  await a.idle();
  assert.equal(started.length, ended.length, "nothing written after finish");
  lease.abort();
});
