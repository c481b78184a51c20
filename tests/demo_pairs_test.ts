/** The demo's check of a larger cluster: a sample of pairs that covers every node. */
import assert from "node:assert/strict";
import { pairsToCheck } from "../src/devcluster/demo.ts";
import type { DemoPod } from "../src/devcluster/demo/pods.ts";

function cluster(nodes: number): { pods: DemoPod[]; names: string[] } {
  const names = Array.from({ length: nodes }, (_, i) => `node${i + 1}`);
  const pods = names.flatMap((node) =>
    [1, 2].map((i) => ({ name: `${node}-pod${i}`, node, addrs: { main: [], net3: [] } }))
  );
  return { pods, names };
}

Deno.test("demo pairs: every pair on a small cluster", () => {
  const { pods, names } = cluster(3);
  assert.equal(pairsToCheck(pods, names).length, 6 * 5);
});

Deno.test("demo pairs: on 50 nodes, a few per pod, every node a source and a target", () => {
  const { pods, names } = cluster(50);
  const pairs = pairsToCheck(pods, names);
  assert.equal(pairs.length, pods.length * 3, "three per pod, not 99");
  assert.ok(pairs.every(([a, b]) => a.node !== b.node), "across nodes only");
  assert.deepEqual(new Set(pairs.map(([a]) => a.node)).size, 50);
  assert.deepEqual(new Set(pairs.map(([, b]) => b.node)).size, 50);
  assert.deepEqual(new Set(pairs.map(([, b]) => b.name)).size, 100, "every pod a target");
});
