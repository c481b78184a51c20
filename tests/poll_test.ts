/** pollUntil, the poller of the demo, the tests and the benchmark, with real timers. */
import assert from "node:assert/strict";
import { pollUntil } from "../src/devcluster/poll.ts";

Deno.test("pollUntil: returns the time the condition held, asking again until then", async () => {
  let asked = 0;
  const t0 = performance.now();
  const at = await pollUntil(() => ++asked === 3, { intervalMs: 10 });
  assert.equal(asked, 3);
  assert.ok(at >= t0 + 20 && at <= performance.now(), `held at ${at - t0} ms`);
});

Deno.test("pollUntil: after the deadline, an error naming what was waited for", async () => {
  let asked = 0;
  const t0 = performance.now();
  await assert.rejects(
    pollUntil(() => (asked++, false), {
      timeoutMs: 100,
      intervalMs: 10,
      message: () => `asked ${asked} times`,
    }),
    (e: Error) => /^timed out: asked \d+ times$/.test(e.message),
  );
  assert.ok(performance.now() - t0 >= 100);
  assert.ok(asked >= 5, `asked ${asked} times`);
});

Deno.test("pollUntil: an error of the condition ends the wait with it", async () => {
  await assert.rejects(
    pollUntil(() => Promise.reject(new Error("interrupted")), { timeoutMs: 10_000 }),
    /^Error: interrupted$/,
  );
});
