/**
 * The daemon's node state file (NodeStateFile) as kube-node reads it back (readNodeState),
 * in a temporary folder.
 */
import assert from "node:assert/strict";
import { NodeStateFile, readNodeState, stateFilePath } from "../src/state.ts";

const ANNOTATION = "cidr.example.com/net1";

Deno.test("NodeStateFile: writes when our CIDRs change, not on every reconcile", async () => {
  const dir = await Deno.makeTempDir({ prefix: "state-test-" });
  try {
    const file = new NodeStateFile(`${dir}/state`, ANNOTATION);
    // No CIDRs yet: nothing for kube-node to read.
    assert.equal(await file.update("node-1", [], "m-1"), false);
    assert.equal(readNodeState(`${dir}/state`, ANNOTATION), undefined);

    assert.equal(await file.update("node-1", ["10.1.0.0/24", "fd00:1::/64"], "m-1"), true);
    const first = readNodeState(`${dir}/state`, ANNOTATION)!;
    assert.deepEqual(
      { node: first.node, cidrs: first.cidrs, annotation: first.annotation, id: first.machineID },
      { node: "node-1", cidrs: ["10.1.0.0/24", "fd00:1::/64"], annotation: ANNOTATION, id: "m-1" },
    );
    const written = (await Deno.stat(stateFilePath(`${dir}/state`, ANNOTATION))).mtime;

    assert.equal(await file.update("node-1", ["10.1.0.0/24", "fd00:1::/64"], "m-1"), false);
    assert.deepEqual((await Deno.stat(stateFilePath(`${dir}/state`, ANNOTATION))).mtime, written);

    assert.equal(await file.update("node-1", ["10.2.0.0/24"]), true);
    const second = readNodeState(`${dir}/state`, ANNOTATION)!;
    assert.deepEqual(second.cidrs, ["10.2.0.0/24"]);
    assert.equal(second.machineID, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
