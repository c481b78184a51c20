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

Deno.test("NodeStateFile: a file a previous run left goes when our node has no CIDRs now", async () => {
  const dir = await Deno.makeTempDir({ prefix: "state-test-" });
  try {
    await new NodeStateFile(dir, ANNOTATION).update("node-1", ["10.9.1.0/24"]);
    // A new process (the daemon restarted), our node registered again with no CIDRs.
    const file = new NodeStateFile(dir, ANNOTATION);
    assert.equal(await file.update("node-1", []), true);
    assert.equal(readNodeState(dir, ANNOTATION), undefined);
    assert.equal(await file.update("node-1", []), false);
    // CIDRs come, then go again: an empty list is written, as within one run.
    assert.equal(await file.update("node-1", ["10.9.2.0/24"]), true);
    assert.equal(await file.update("node-1", []), true);
    assert.deepEqual(readNodeState(dir, ANNOTATION)?.cidrs, []);
    // Our node no longer planned at all: the file goes.
    assert.equal(await file.remove(), true);
    assert.equal(readNodeState(dir, ANNOTATION), undefined);
    assert.equal(await file.remove(), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("stateFilePath: distinct annotations give distinct files; common names stay readable", () => {
  const annotations = [
    "",
    "podCIDRs",
    "@podCIDRs",
    "example.com/net3",
    "example.com_net3",
    "example.com%2Fnet3",
    "example.com%5Fnet3",
    "example.com/my_net",
    "example.com_my/net",
    "example.com/my/net",
    "a/b_c",
    "a_b/c",
    "a__b",
    "a_/b",
    "a/_b",
    "a%b",
    "a%25b",
    "é",
    "%C3%A9",
    "net",
    "Net",
  ];
  const paths = annotations.map((a) => stateFilePath("/s", a));
  for (const [i, path] of paths.entries()) {
    const same = annotations.filter((_, j) => paths[j] === path);
    assert.deepEqual(same, [annotations[i]], `${path}: ${same.join(" and ")}`);
    // One file in the folder, whatever the annotation.
    assert.match(path, /^\/s\/node-[^/]+\.json$/);
  }
  // The examples of stateFilePath's documentation.
  assert.equal(
    stateFilePath("/run/xcluster-cni", "cidr.example.com/net3"),
    "/run/xcluster-cni/node-cidr.example.com_net3.json",
  );
  assert.equal(
    stateFilePath("/run/xcluster-cni", "example.com/my_net"),
    "/run/xcluster-cni/node-example.com_my%5Fnet.json",
  );
  assert.equal(stateFilePath("/run/xcluster-cni", ""), "/run/xcluster-cni/node-@podCIDRs.json");
});

Deno.test("node state files of annotations that used to share a name are kept apart", async () => {
  const dir = await Deno.makeTempDir({ prefix: "state-test-" });
  try {
    const pairs = [["", "podCIDRs"], ["example.com/net3", "example.com_net3"]];
    for (const pair of pairs) {
      for (const [i, annotation] of pair.entries()) {
        await new NodeStateFile(dir, annotation).update("node-1", [`10.${i}.0.0/24`]);
      }
      for (const [i, annotation] of pair.entries()) {
        const state = readNodeState(dir, annotation);
        assert.equal(state?.annotation, annotation);
        assert.deepEqual(state?.cidrs, [`10.${i}.0.0/24`]);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
