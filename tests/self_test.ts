import assert from "node:assert/strict";
import { findSelf, readMachineId } from "../src/daemon.ts";
import type { NodeInfo } from "../src/kube/node.ts";

const node = (name: string, machineID: string): NodeInfo => ({
  name,
  creationTimestamp: "",
  podCIDRs: [],
  internalIPs: [],
  machineID,
  annotations: {},
});

Deno.test("own node: NODE_NAME first, else the node with this machine ID", () => {
  const nodes = [node("a", "m-a"), node("b", "m-b")];
  assert.equal(findSelf(nodes, "a", "m-b"), "a");
  assert.equal(findSelf(nodes, "", "m-b"), "b");
  assert.equal(findSelf(nodes, "", "m-x"), undefined);
  assert.equal(findSelf(nodes, "", ""), undefined, "an empty machine ID matches nothing");
  assert.equal(findSelf([node("c", "")], "", ""), undefined);
});

Deno.test("machine ID is read trimmed; absent file gives empty", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/machine-id`, "0123abcd\n");
    assert.equal(readMachineId(`${dir}/machine-id`), "0123abcd");
    assert.equal(readMachineId(`${dir}/none`), "");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
