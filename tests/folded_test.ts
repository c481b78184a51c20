import assert from "node:assert/strict";
import { Folded } from "../src/routing/folded.ts";

Deno.test("folded: requests made during a run fold into one run after it; stop drops the waiting one", async () => {
  const runs: string[] = [];
  let release = () => {};
  const folded = new Folded<string>(async (r) => {
    runs.push(r);
    await new Promise<void>((resolve) => release = resolve);
  }, (pending, next) => `${pending}+${next}`);
  folded.request("a");
  assert.equal(folded.quietMs, 0, "busy while a run is under way");
  folded.request("b");
  folded.request("c");
  assert.deepEqual(runs, ["a"], "one run at a time");
  release();
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(runs, ["a", "b+c"], "the two made meanwhile, folded into one");
  folded.request("d");
  const stopping = folded.stop();
  folded.request("e");
  release();
  await stopping;
  assert.deepEqual(runs, ["a", "b+c"], "nothing runs once stopped");
  await folded.idle();
  assert.ok(folded.quietMs >= 0 && folded.quietMs < 1000);
});
