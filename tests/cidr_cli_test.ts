import assert from "node:assert/strict";
import { nodeCidr } from "../src/cli/cidr.ts";

Deno.test("per-node CIDRs from a double-slash spec", () => {
  assert.equal(nodeCidr("fd00:1000::/96/112", 5), "fd00:1000::5:0/112");
  assert.equal(nodeCidr("10.0.0.0/16/24", 3), "10.0.3.0/24");
  assert.equal(nodeCidr("10.0.0.0/16/24", 255), "10.0.255.0/24");
  assert.equal(nodeCidr("192.168.55.0/24/26", 1), "192.168.55.64/26");
  assert.equal(nodeCidr("fd00::/96/120", 3), "fd00::300/120");
});

Deno.test("an index beyond the range or a bad spec is refused with the reason", () => {
  assert.throws(() => nodeCidr("10.0.0.0/16/24", 256), /index 256 is outside 0-255/);
  assert.throws(() => nodeCidr("10.0.0.0/24/16", 0), /node prefix/);
  assert.throws(() => nodeCidr("10.0.0.0/24", 0), /BASE\/PREFIX\/NODEPREFIX/);
  assert.throws(() => nodeCidr("10.0.0.300/16/24", 0), /not an IP address/);
});

Deno.test("the subcommand prints every item for the node", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "cidr", "10.0.0.0/16/24, fd00:1000::/96/112", "7"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), "10.0.7.0/24,fd00:1000::7:0/112");
});
