/**
 * compactHeap and trimMalloc, each in a Deno of its own: with and without V8's gc exposed
 * (as the image's DENO_V8_FLAGS has it, and as plain `deno run` has it not), and on this
 * machine's glibc (Debian's, as in the image). QuietRelease with real timers and a stand-in
 * for the release, whose timing is what it decides.
 */
import assert from "node:assert/strict";
import { QuietRelease } from "../src/heap.ts";

const HEAP = new URL("../src/heap.ts", import.meta.url).href;

/** A program that grows the heap with 40 MiB of short-lived objects, then compacts it. */
const PROGRAM = `
import { compactHeap } from ${JSON.stringify(HEAP)};
let keep = [];
for (let i = 0; i < 400_000; i++) keep.push({ i, text: "x".repeat(64 + (i % 64)) });
const grown = Deno.memoryUsage().heapTotal;
keep = [];
const ran = compactHeap();
const after = Deno.memoryUsage().heapTotal;
console.log(JSON.stringify({ ran, grown, after }));
`;

async function runProgram(
  v8Flags: string[],
): Promise<{ ran: boolean; grown: number; after: number }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", ...v8Flags, PROGRAM],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(text);
}

Deno.test("compactHeap: with gc exposed, a full compacting collection gives the heap back", async () => {
  const r = await runProgram(["--v8-flags=--expose-gc"]);
  assert.ok(r.ran, "compactHeap did not run with --expose-gc");
  assert.ok(r.grown > 40 * 2 ** 20, `the heap did not grow: ${r.grown} bytes`);
  assert.ok(
    r.after < r.grown / 2,
    `heap total ${r.after} bytes after compacting, ${r.grown} before`,
  );
});

Deno.test("compactHeap: without gc exposed it does nothing and says so", async () => {
  const r = await runProgram([]);
  assert.equal(r.ran, false);
});

/**
 * 125 MiB in buffers of 64 KiB (under glibc's mmap threshold, so from malloc's heap), all
 * freed but the last, which keeps the heap's top from shrinking by itself.
 */
const MALLOC_PROGRAM = `
import { compactHeap, trimMalloc } from ${JSON.stringify(HEAP)};
const anon = () =>
  Number(/RssAnon:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]) * 1024;
let bufs = [];
for (let i = 0; i < 2000; i++) bufs.push(new Uint8Array(64 * 1024).fill(1));
const pin = bufs[bufs.length - 1];
bufs = [];
compactHeap();
const before = anon();
const ran = trimMalloc();
console.log(JSON.stringify({ ran, before, after: anon(), pin: pin.length }));
`;

Deno.test("trimMalloc: glibc gives the freed buffers back to the system", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", MALLOC_PROGRAM],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const r = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.ok(r.ran, "malloc_trim did not run (is the C library glibc?)");
  assert.ok(r.before > 100 * 2 ** 20, `the freed buffers were not resident: ${r.before} bytes`);
  assert.ok(
    r.after < r.before - 80 * 2 ** 20,
    `anonymous memory ${r.after} bytes after the trim, ${r.before} before`,
  );
});

/** A QuietRelease whose release records when it ran; `busyFor` ms of reconciles first. */
function quietRelease(busyFor: number, maxWait: number) {
  const t0 = performance.now();
  const runs: number[] = [];
  const release = new QuietRelease({
    // Busy: a reconcile has just ended, every time it is asked.
    quietMs: () => performance.now() - t0 < busyFor ? 0 : 1_000,
    quiet: 50,
    maxWait,
    release: () => {
      runs.push(performance.now() - t0);
      return { standIn: true };
    },
    done: () => {},
  });
  return { release, runs };
}

Deno.test("QuietRelease: waits while reconciles keep coming, then releases once", async () => {
  const { release, runs } = quietRelease(300, 10_000);
  const then = Promise.withResolvers<number>();
  release.soon(() => then.resolve(runs.length));
  assert.equal(await then.promise, 1);
  assert.ok(runs[0] >= 300, `released at ${runs[0]} ms, while still busy`);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(runs.length, 1);
});

Deno.test("QuietRelease: a process never quiet gets it after the longest wait", async () => {
  const { release, runs } = quietRelease(Infinity, 200);
  const then = Promise.withResolvers<void>();
  release.soon(() => then.resolve());
  await then.promise;
  assert.equal(runs.length, 1);
  assert.ok(runs[0] >= 200 && runs[0] < 2_000, `released at ${runs[0]} ms`);
});

Deno.test("QuietRelease: stop cancels a waiting release and its follow-up", async () => {
  const { release, runs } = quietRelease(Infinity, 150);
  let followed = false;
  release.soon(() => followed = true);
  await new Promise((r) => setTimeout(r, 50));
  release.stop();
  await new Promise((r) => setTimeout(r, 250));
  assert.deepEqual(runs, []);
  assert.equal(followed, false);
});
