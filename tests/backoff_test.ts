/** The list/watch backoff: client-go's reflector steps, jitter, Retry-After and reset. */
import assert from "node:assert/strict";
import { Backoff, REFLECTOR_BACKOFF } from "../src/kube/backoff.ts";

Deno.test("backoff: 800 ms doubling to 30 s, each wait between half and all of its step", () => {
  let now = 0;
  for (const r of [0, 0.999999]) {
    const b = new Backoff({}, { random: () => r, now: () => now });
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      waits.push(Math.round(b.next()));
      now += 1000;
    }
    const steps = [800, 1600, 3200, 6400, 12800, 25600, 30000, 30000];
    assert.deepEqual(waits, steps.map((s) => r === 0 ? s / 2 : s));
  }
  assert.deepEqual(REFLECTOR_BACKOFF, { initialMs: 800, maxMs: 30_000, resetMs: 120_000 });
});

Deno.test("backoff: Retry-After is a floor; the step starts over after 2 minutes quiet", () => {
  let now = 0;
  const b = new Backoff({}, { random: () => 0, now: () => now });
  assert.equal(b.next(5000), 5000, "Retry-After above the step");
  assert.equal(b.next(100), 800, "Retry-After below the step");
  now += 119_000;
  assert.equal(b.next(), 1600, "failures 2 minutes apart keep growing");
  now += 120_001;
  assert.equal(b.next(), 400, "after 2 minutes without a failure, from the start");
});
