/**
 * compactHeap and trimMalloc, each in a Deno of its own: with and without V8's gc exposed
 * (as the image's DENO_V8_FLAGS has it, and as plain `deno run` has it not), and on this
 * machine's glibc (Debian's, as in the image).
 */
import assert from "node:assert/strict";

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
