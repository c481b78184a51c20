import assert from "node:assert/strict";
import type { NodeInfo } from "../src/kube/node.ts";
import { Pending } from "../src/routing/pending.ts";

function node(name: string, podCIDR: string): NodeInfo {
  return {
    name,
    creationTimestamp: "2026-01-01T00:00:00Z",
    podCIDRs: [podCIDR],
    internalIPs: ["192.0.2.1"],
    machineID: "",
    annotations: {},
  };
}

Deno.test("pending: the first reconcile reads the kernel and plans every node", () => {
  const p = new Pending();
  assert.deepEqual(p.takeRead(), true);
  assert.deepEqual(p.takeRead(), false);
  assert.deepEqual(p.takePlan().changed, undefined);
  // Taken: from now on only what is named.
  assert.deepEqual(p.takePlan().changed?.size, 0);
});

Deno.test("pending: a node changed twice keeps what the last plan had", () => {
  const p = new Pending();
  p.takePlan();
  const planned = node("a", "10.0.1.0/24");
  const between = node("a", "10.0.2.0/24");
  p.nodesChanged([{ name: "a", old: planned }, { name: "b" }]);
  p.nodesChanged([{ name: "a", old: between }]);
  const { changed } = p.takePlan();
  assert.equal(changed?.get("a"), planned);
  assert.deepEqual(changed?.has("b"), true);
  assert.deepEqual(changed?.get("b"), undefined);
  assert.deepEqual(p.takePlan().changed?.size, 0);
});

Deno.test("pending: every node afresh stands until taken, whatever is named meanwhile", () => {
  const p = new Pending();
  p.takePlan();
  p.nodesChanged([{ name: "a" }]);
  p.everyNode();
  p.nodesChanged([{ name: "b" }]);
  assert.deepEqual(p.takePlan().changed, undefined);
});

Deno.test("pending: lost destinations go to the plan that takes them; later ones are apart", () => {
  const p = new Pending();
  p.lose("10.0.1.0/24");
  const { lost } = p.takePlan();
  assert.deepEqual([...lost], ["10.0.1.0/24"]);
  assert.deepEqual(p.lostSince.size, 0);
  // Gone again while the batch runs.
  p.lose("10.0.2.0/24");
  assert.deepEqual([...p.lostSince], ["10.0.2.0/24"]);
  assert.deepEqual([...lost], ["10.0.1.0/24"]);
});

Deno.test("pending: a full read asked for is taken once", () => {
  const p = new Pending();
  p.takeRead();
  p.readKernel();
  p.readKernel();
  assert.deepEqual(p.takeRead(), true);
  assert.deepEqual(p.takeRead(), false);
});
