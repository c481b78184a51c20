/**
 * Every subcommand as an operator meets it: `--help` prints the usage and does nothing else,
 * a usage error is one line naming it then the usage (exit 2), and a failure is one line
 * (exit 1), never a stack trace.
 */
import assert from "node:assert/strict";
import { runMain } from "./helpers/tools.ts";

const COMMANDS = ["daemon", "nodes", "routes", "cidr", "install", "apiserver", "demo", "version"];

/** A stack trace line, as Deno prints one. */
const STACK = /^\s+at /m;

Deno.test("cli: --help on every subcommand prints its usage and exits 0", async () => {
  for (const name of COMMANDS) {
    const r = await runMain({}, name, "--help");
    assert.equal(r.code, 0, `${name}: ${r.err}`);
    assert.match(r.out, new RegExp(`^usage: xcluster-cni ${name}\\b`), name);
  }
});

Deno.test("cli: daemon --help starts nothing; any argument is a usage error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-cli-" });
  try {
    const env = {
      CNI_BIN_DIR: `${dir}/bin`,
      CNI_CONF_DIR: `${dir}/net.d`,
      STATE_DIR: `${dir}/state`,
      KUBECONFIG: `${dir}/none`,
    };
    const t0 = performance.now();
    const help = await runMain(env, "daemon", "--help");
    assert.equal(help.code, 0);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing installed or written");
    assert.ok(performance.now() - t0 < 20_000);
    const bad = await runMain(env, "daemon", "--protocol", "200");
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^xcluster-cni daemon: takes no arguments, not "--protocol"/);
    assert.match(bad.err, /\nusage: xcluster-cni daemon\n/);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: usage errors name what is wrong, one line, then the usage; exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["nodes", "--bogus"], /^xcluster-cni nodes: unknown flag "--bogus"$/m],
    [["routes", "-o", "yaml"], /^xcluster-cni routes: -o: expected json or table, not "yaml"$/m],
    [["nodes", "--protocol", "bgp"], /^xcluster-cni nodes: --protocol: PROTOCOL="bgp": .*bgp/m],
    [["nodes", "--kubeconfig"], /^xcluster-cni nodes: --kubeconfig needs a value$/m],
    [["cidr", "192.168.0.0/16/24", "-1"], /^xcluster-cni cidr: INDEX: expected a whole number/m],
    [["cidr", "192.168.0.0/16/24"], /^xcluster-cni cidr: expected BASE\/PREFIX\/NODEPREFIX/m],
    [["frobnicate"], /^xcluster-cni: unknown command "frobnicate"/m],
  ];
  for (const [args, re] of cases) {
    const r = await runMain({}, ...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, re, args.join(" "));
    assert.match(r.err, /usage: /, args.join(" "));
    assert.doesNotMatch(r.err, STACK, args.join(" "));
  }
});

Deno.test("cli: no kubeconfig or an unreachable API is one line and exit 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-cli-" });
  try {
    const missing = await runMain({}, "nodes", "--kubeconfig", `${dir}/nope`);
    assert.equal(missing.code, 1, missing.err);
    assert.match(missing.err, /^xcluster-cni nodes: .*nope/);
    assert.equal(missing.err.trim().split("\n").length, 1, missing.err);
    // A server that refuses connections: a loopback port just let go of.
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    await Deno.writeTextFile(
      `${dir}/kubeconfig`,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "c", cluster: { server: `http://127.0.0.1:${port}` } }],
        users: [{ name: "u", user: { token: "t" } }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
        "current-context": "x",
      }),
    );
    const down = await runMain({}, "routes", "--kubeconfig", `${dir}/kubeconfig`);
    assert.equal(down.code, 1, down.err);
    assert.match(down.err, /^xcluster-cni routes: .*(refused|Connect)/);
    assert.doesNotMatch(down.err, STACK);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: --version works as version", async () => {
  const a = await runMain({}, "--version");
  const b = await runMain({}, "version");
  assert.equal(a.code, 0);
  assert.equal(a.out, b.out);
  assert.match(a.out, /^xcluster-cni \S+ \(deno /);
});
