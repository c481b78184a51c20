import assert from "node:assert/strict";
import { diff as diffIndexed, indexKernel } from "../src/routing/diff.ts";
import type { KernelRoute, Route } from "../src/routing/types.ts";

const diff = (want: Route[], kernel: KernelRoute[], protocol: number) =>
  diffIndexed(want, indexKernel(kernel, protocol));
const r = (dst: string, via: string, family: 4 | 6 = 4): Route => ({ family, dst, via, node: "n" });
const k = (
  dst: string,
  via: string | undefined,
  protocol: number,
  family: 4 | 6 = 4,
): KernelRoute => ({ family, dst, via, protocol });

Deno.test("nothing to do when the kernel already agrees", () => {
  const d = diff([r("10.0.1.0/24", "192.168.1.2"), r("fd00::/64", "fd01::2", 6)], [
    k("10.0.1.0/24", "192.168.1.2", 202),
    k("fd00::/64", "fd01::2", 202, 6),
    k("192.168.1.0/24", undefined, 2),
  ], 202);
  assert.deepEqual(d.ops, []);
});

Deno.test("adds, changes next hop, deletes only our stale routes", () => {
  const d = diff([r("10.0.1.0/24", "192.168.1.2"), r("10.0.2.0/24", "192.168.1.9")], [
    k("10.0.2.0/24", "192.168.1.3", 202),
    k("10.0.3.0/24", "192.168.1.4", 202),
    k("10.0.4.0/24", "192.168.1.4", 200),
  ], 202);
  assert.deepEqual(d.ops.map((o) => `${o.op} ${o.route.dst} ${o.route.via}`), [
    "replace 10.0.1.0/24 192.168.1.2",
    "replace 10.0.2.0/24 192.168.1.9",
    "delete 10.0.3.0/24 192.168.1.4",
  ]);
});

Deno.test("a foreign route to the same destination is a conflict, never overwritten", () => {
  const d = diff([r("10.0.1.0/24", "192.168.1.2")], [k("10.0.1.0/24", "192.168.1.77", 4)], 202);
  assert.deepEqual(d.ops, []);
  assert.equal(d.conflicts.length, 1);
  assert.equal(d.conflicts[0].foreign.protocol, 4);
});

Deno.test("families are separate", () => {
  const d = diff([r("fd00::/64", "fd01::2", 6)], [k("fd00::/64", "fd01::2", 202, 4)], 202);
  assert.deepEqual(d.ops.map((o) => `${o.op} ${o.route.family}`), ["replace 6", "delete 4"]);
});
