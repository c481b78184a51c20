/**
 * Upkeep's order of things with real timers, around a stand-in reconciler and kernel (what
 * they do with it is the daemon's tests'): when the monitor is subscribed for each kind of
 * adapter, which full reconciles follow, when the start is over, and that stop ends it all.
 */
import assert from "node:assert/strict";
import { silentLogger } from "../src/log.ts";
import type { KernelEvent } from "../src/routing/monitor.ts";
import { Upkeep } from "../src/upkeep.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A reconciler that records its triggers and events, and a kernel that records watches. */
function standIns(watchesAtOnce: boolean) {
  const triggers: string[] = [];
  const events: KernelEvent[] = [];
  const kernel = {
    watchesAtOnce,
    watching: 0,
    closed: 0,
    emit: (_e: KernelEvent) => {},
    watch(onEvent: (e: KernelEvent) => void, opts?: { skipAddedOf?: number }) {
      assert.equal(opts?.skipAddedOf, 202, "our own additions need not be reported");
      kernel.watching++;
      kernel.emit = onEvent;
      // Closing takes a while, as a socket's or a process's does.
      return { close: () => sleep(200).then(() => void kernel.closed++) };
    },
  };
  const reconciler = {
    trigger: (t: string) => void triggers.push(t),
    idle: () => Promise.resolve(),
    kernelEvent: (e: KernelEvent) => void events.push(e),
    quietMs: 1e9,
  };
  return { triggers, events, kernel, reconciler };
}

Deno.test("upkeep over rtnetlink: watched from the beginning, resyncs once synced, stop ends all", async () => {
  const s = standIns(true);
  const upkeep = new Upkeep({ ...s, protocol: 202, resyncSeconds: 0.1, log: silentLogger });
  upkeep.begin();
  assert.equal(s.kernel.watching, 1, "subscribed before the first read");
  s.kernel.emit({ kind: "link-change", detail: "x" });
  assert.equal(s.events.length, 1, "events go to the reconciler");
  await sleep(250);
  assert.deepEqual(s.triggers, [], "no resync before the first sync");

  const over = Promise.withResolvers<number>();
  const t0 = performance.now();
  upkeep.synced(() => over.resolve(performance.now() - t0));
  assert.ok(await over.promise < 1000, "the start ends once quiet, with no second full read");
  await sleep(350);
  assert.equal(s.kernel.watching, 1, "not subscribed twice");
  assert.ok(s.triggers.length >= 2, `resyncs every 0.1 s: ${s.triggers}`);
  assert.ok(s.triggers.every((t) => t === "resync"), `${s.triggers}`);

  const n = s.triggers.length;
  const stopping = upkeep.stop();
  await sleep(150);
  assert.equal(s.triggers.length, n, "no resync once stop is called, while the monitor closes");
  await stopping;
  assert.equal(s.kernel.closed, 1);
  await sleep(150);
  assert.equal(s.triggers.length, n, "nor after");
});

Deno.test("upkeep with ip monitor: watched once synced, and a full read a second later ends the start", async () => {
  const s = standIns(false);
  const upkeep = new Upkeep({ ...s, protocol: 202, resyncSeconds: 60, log: silentLogger });
  upkeep.begin();
  assert.equal(s.kernel.watching, 0, "not during the first batch");
  const over = Promise.withResolvers<void>();
  upkeep.synced(() => over.resolve());
  assert.equal(s.kernel.watching, 1);
  await sleep(500);
  assert.deepEqual(s.triggers, [], "the monitor settles first");
  await over.promise;
  assert.deepEqual(s.triggers, ["monitor"]);
  await upkeep.stop();
  assert.equal(s.kernel.closed, 1);
});

Deno.test("upkeep stopped before the first sync starts nothing", async () => {
  const s = standIns(false);
  const upkeep = new Upkeep({ ...s, protocol: 202, resyncSeconds: 0.05, log: silentLogger });
  upkeep.begin();
  await upkeep.stop();
  let over = false;
  upkeep.synced(() => over = true);
  await sleep(1300);
  assert.equal(s.kernel.watching, 0);
  assert.deepEqual(s.triggers, []);
  assert.equal(over, false);
});
