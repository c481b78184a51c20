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
