/** `demo --check`: the README's first command, end to end. Needs root and /usr/lib/cni. */
import assert from "node:assert/strict";
import { requireRoot } from "./helpers/netns.ts";

const notRoot = requireRoot();

async function leftovers(): Promise<string[]> {
  const found: string[] = [];
  const ns = new TextDecoder().decode(
    (await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped" }).output()).stdout,
  );
  found.push(...ns.split("\n").filter((l) => l.startsWith("xcd-")));
  for await (const e of Deno.readDir("/tmp")) {
    if (e.name.startsWith("xcluster-demo-")) found.push(e.name);
  }
  for await (const e of Deno.readDir("/proc")) {
    if (!/^[0-9]+$/.test(e.name)) continue;
    const env = await Deno.readTextFile(`/proc/${e.name}/environ`).catch(() => "");
    if (env.includes("XCLUSTER_CNI_DEMO=")) found.push(`process ${e.name}`);
  }
  return found;
}

Deno.test({
  name: "demo --check: pods on every node answer on both networks, IPv4 and IPv6; nothing left",
  ignore: !!notRoot,
  async fn() {
    // A leftover of a killed run must be cleaned up by the next one.
    await new Deno.Command("ip", { args: ["netns", "add", "xcd-stale"] }).output();
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "demo", "--check", "--nodes", "3"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text + new TextDecoder().decode(out.stderr));
    for (const net of ["main network", "secondary network (net3)"]) {
      for (const fam of ["IPv4", "IPv6"]) {
        assert.ok(text.includes(`${net}, ${fam}`), `${net} ${fam}`);
      }
    }
    // 6 pods: 30 ordered pairs per matrix, 4 matrices, all answered.
    assert.equal((text.match(/\bok\b/g) ?? []).length, 120);
    assert.match(text, /every pair checked answers/);
    assert.ok(!text.includes("FAIL"));
    for (let i = 1; i <= 3; i++) {
      assert.match(text, new RegExp(`xcd-node${i}  podCIDRs 10\\.244\\.${i}\\.0/24`));
    }
    assert.match(text, /10\.244\.2\.0\/24\s+via 192\.168\.50\.2\s+proto 202/);
    // net3 was annotated by nobody: each node's CIDRs come from the pool, all distinct, and
    // the routes lead to the addresses each node's router published.
    const net3 = [...text.matchAll(/xcd-node\d+ .* net3 (\S+) \(allocated\)/g)].map((m) => m[1]);
    assert.equal(net3.length, 3, text);
    const cidrs = net3.flatMap((v) => v.split(","));
    assert.equal(new Set(cidrs).size, 6, `distinct: ${cidrs}`);
    for (const c of cidrs) assert.match(c, /^(10\.55\.\d+\.0\/24|fd00:55::[0-9a-f:]*\/112)$/);
    assert.match(text, /fd00:55::\S*\/112\s+via fd00:60::3\s+proto 200/);
    assert.deepEqual(await leftovers(), []);
  },
});

Deno.test("demo: bad arguments are refused with the usage", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "demo", "--nodes", "1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /--nodes must be 2-50/);
});

Deno.test({
  name:
    "demo: Ctrl-C or SIGTERM during the set-up cleans up everything within seconds, a second one during the clean-up too",
  ignore: !!notRoot,
  async fn() {
    for (
      const [signal, after] of [["SIGINT", "node namespaces made"], [
        "SIGTERM",
        "routers ready",
      ]] as const
    ) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "main.ts", "demo", "--check", "--nodes", "4"],
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let err = "";
      const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
      const reading = (async () => {
        for (let r = await reader.read(); !r.done; r = await reader.read()) err += r.value;
      })();
      const t0 = performance.now();
      while (!err.includes(after) && performance.now() - t0 < 120_000) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.ok(err.includes(after), `${signal}: set-up reached "${after}": ${err}`);
      const sent = performance.now();
      child.kill(signal);
      // Pressed again while it cleans up (or sent again, as `timeout` sends to the group too).
      await new Promise((r) => setTimeout(r, 150));
      try {
        child.kill(signal);
      } catch { /* already gone: cleaned up within 150 ms */ }
      const status = await child.status;
      const ms = performance.now() - sent;
      await reading;
      console.log(`  ${signal} after "${after}": gone in ${Math.round(ms)} ms`);
      assert.equal(status.code, 130, err);
      assert.match(err, /interrupted; cleaning up/);
      assert.ok(ms < 10_000, `${signal}: ${Math.round(ms)} ms`);
      assert.deepEqual(await leftovers(), [], `${signal}: nothing left`);
    }
  },
});

Deno.test({
  name: "build.sh leaves no scratch folder behind, also when it hands over to the demo",
  ignore: !!notRoot,
  async fn() {
    const scratch = async () => {
      const found: string[] = [];
      for await (const e of Deno.readDir("/tmp")) {
        if (e.name.startsWith("build.sh_")) found.push(e.name);
      }
      return found.sort();
    };
    const before = await scratch();
    const out = await new Deno.Command("./build.sh", {
      args: ["demo", "--nodes", "1"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2, new TextDecoder().decode(out.stderr));
    assert.deepEqual(await scratch(), before);
  },
});
