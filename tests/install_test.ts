/**
 * The installer: atomic copies (also while the installed plugin is being executed),
 * skipping identical files, the development wrapper, the conflist, the interface MTU.
 */
import assert from "node:assert/strict";
import { createIprouteTable } from "../src/routing/iproute.ts";
import {
  CONFLIST_NAME,
  installBinaries,
  installCommand,
  installConflist,
  installFile,
  interfaceMtu,
  mainConflist,
} from "../src/install.ts";
import { DEFAULT_STATE_DIR } from "../src/config.ts";
import { IGNORE_CNI, SYSTEM_CNI } from "./helpers/cni.ts";

const MAIN_TS = new URL("../main.ts", import.meta.url).pathname;

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test({
  name: "install: copies plugins and self, skips identical files, replaces changed ones",
  ignore: IGNORE_CNI,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "install-test-" });
    const from = `${dir}/from`, to = `${dir}/to`;
    await Deno.mkdir(from);
    for (const p of ["bridge", "host-local", "loopback"]) {
      await Deno.copyFile(`${SYSTEM_CNI}/${p}`, `${from}/${p}`);
    }
    await Deno.writeTextFile(`${dir}/self`, "#!/bin/sh\necho self\n");
    const first = await installBinaries({ from, to, self: `${dir}/self` });
    assert.deepEqual(first.installed, ["bridge", "host-local", "loopback", "kube-node"]);
    assert.deepEqual(first.skipped, []);
    assert.deepEqual(await listDir(to), ["bridge", "host-local", "kube-node", "loopback"]);
    assert.equal((await Deno.stat(`${to}/bridge`)).mode! & 0o777, 0o755);
    assert.deepEqual(
      await Deno.readFile(`${to}/host-local`),
      await Deno.readFile(`${SYSTEM_CNI}/host-local`),
    );

    const second = await installBinaries({ from, to, self: `${dir}/self` });
    assert.deepEqual(second.installed, []);
    assert.equal(second.skipped.length, 4);

    // Same size, different bytes: replaced.
    await Deno.writeTextFile(`${dir}/self`, "#!/bin/sh\necho SELF\n");
    const third = await installBinaries({ from, to, self: `${dir}/self` });
    assert.deepEqual(third.installed, ["kube-node"]);
    assert.equal(await Deno.readTextFile(`${to}/kube-node`), "#!/bin/sh\necho SELF\n");
    assert.deepEqual(await listDir(to), ["bridge", "host-local", "kube-node", "loopback"]);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "install: the development wrapper runs main.ts as the kube-node plugin",
  ignore: IGNORE_CNI,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "install-test-" });
    await Deno.mkdir(`${dir}/from`);
    const r = await installBinaries({ from: `${dir}/from`, to: `${dir}/to`, self: MAIN_TS });
    assert.deepEqual(r.installed, ["kube-node"]);
    const out = await new Deno.Command(`${dir}/to/kube-node`, {
      env: { CNI_COMMAND: "VERSION" },
      clearEnv: true,
      cwd: "/",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(text).supportedVersions, [
      "0.3.0",
      "0.3.1",
      "0.4.0",
      "1.0.0",
      "1.1.0",
    ]);
    await Deno.remove(dir, { recursive: true });
  },
});

/**
 * Callers of the plugin in loops, each its own process as a container runtime is. They must
 * not be children forked by this process while it writes a temp file: a child holds a copy
 * of every open descriptor from its fork to its exec, and an exec of a file that some
 * process holds open for writing fails with ETXTBSY. A runtime forks from its own process,
 * never from the installer's, so only this arrangement is the real one.
 */
const CALLER = `
n=0
while [ ! -e "$STOP" ]; do
  out=$("$TARGET" 2>&1); rc=$?
  case "$out" in *supportedVersions*) ;; *) echo "exit $rc: $out" >> "$FAILURES" ;; esac
  n=$((n + 1))
done
echo $n`;

const INSTALL_TS = new URL("../src/install.ts", import.meta.url).href;

Deno.test({
  name: "install: reinstalling while the plugin runs in a loop: no ETXTBSY, no partial file",
  ignore: IGNORE_CNI,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "install-test-" });
    const to = `${dir}/to`;
    await Deno.mkdir(to);
    // Two different real plugins take turns as "plugin"; both answer VERSION.
    const variants = [`${SYSTEM_CNI}/host-local`, `${SYSTEM_CNI}/loopback`];
    const target = `${to}/plugin`;
    assert.equal(await installFile(target, variants[0]), true);

    const env = {
      CNI_COMMAND: "VERSION",
      TARGET: target,
      STOP: `${dir}/stop`,
      FAILURES: `${dir}/failures`,
    };
    // Spawned before the first write below, so no caller inherits a temp file's descriptor.
    const callers = Array.from(
      { length: 4 },
      () => new Deno.Command("sh", { args: ["-c", CALLER], env, stdout: "piped" }).spawn(),
    );
    // The installs run in a process of their own: Deno runs parallel test files in one
    // process, and a child forked by another test between our open and close of a temp file
    // would hold it open for writing (the ETXTBSY this test is about, made by the harness).
    const script = `import { installFile } from ${JSON.stringify(INSTALL_TS)};
      const variants = ${JSON.stringify(variants)};
      let n = 0;
      for (let i = 1; i <= 60; i++) if (await installFile(${
      JSON.stringify(target)
    }, variants[i % 2])) n++;
      console.log(n);`;
    const installer = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const installs = Number(new TextDecoder().decode(installer.stdout));
    await Deno.writeTextFile(env.STOP, "");
    const outs = await Promise.all(callers.map((c) => c.output()));
    const runs = outs.reduce((sum, o) => sum + Number(new TextDecoder().decode(o.stdout)), 0);
    const failures = await Deno.readTextFile(env.FAILURES).catch(() => "");

    assert.equal(installs, 60);
    assert.ok(runs > 10, `only ${runs} runs overlapped the installs`);
    assert.equal(failures, "");
    assert.deepEqual(await listDir(to), ["plugin"], "temp files left behind");
    assert.deepEqual(await Deno.readFile(target), await Deno.readFile(variants[0]));
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("install: one changed byte anywhere in a large binary replaces it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "install-test-" });
  try {
    await Deno.mkdir(`${dir}/from`);
    // Past one read chunk (1 MiB), and not a whole number of words.
    const bytes = new Uint8Array((1 << 20) + 7).map((_, i) => (i * 7919) & 255);
    const install = async () => {
      await Deno.writeFile(`${dir}/self`, bytes);
      return (await installBinaries({ from: `${dir}/from`, to: `${dir}/to`, self: `${dir}/self` }))
        .installed;
    };
    assert.deepEqual(await install(), ["kube-node"]);
    assert.deepEqual(await install(), [], "identical: left alone");
    for (const at of [0, 5, (1 << 20) - 1, (1 << 20) + 1, bytes.length - 1]) {
      bytes[at] ^= 0x40;
      assert.deepEqual(await install(), ["kube-node"], `byte ${at} changed`);
      assert.deepEqual(await Deno.readFile(`${dir}/to/kube-node`), bytes);
      assert.deepEqual(await install(), [], `byte ${at}: then identical`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install: conflist written once, with the MTU; skipped when ours is there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "install-test-" });
  const a = await installConflist({ confDir: `${dir}/a`, mtu: 1450 });
  assert.equal(a.written, true);
  assert.equal(a.path, `${dir}/a/${CONFLIST_NAME}`);
  const conf = JSON.parse(await Deno.readTextFile(a.path));
  assert.equal(conf.plugins[0].type, "bridge");
  assert.equal(conf.plugins[0].mtu, 1450);
  assert.equal(conf.plugins[0].ipam.type, "kube-node");
  const again = await installConflist({ confDir: `${dir}/a`, mtu: 9000 });
  assert.equal(again.written, false);
  assert.equal(JSON.parse(await Deno.readTextFile(a.path)).plugins[0].mtu, 1450);

  // Another file of ours (uses kube-node) under another name: nothing written.
  await Deno.mkdir(`${dir}/b`);
  await Deno.writeTextFile(
    `${dir}/b/05-custom.conflist`,
    JSON.stringify({ cniVersion: "1.0.0", name: "x", plugins: [{ ipam: { type: "kube-node" } }] }),
  );
  const b = await installConflist({ confDir: `${dir}/b`, mtu: 1500 });
  assert.equal(b.written, false);
  assert.match(b.reason ?? "", /05-custom\.conflist/);
  // Someone else's config is not ours: ours is written next to it.
  await Deno.mkdir(`${dir}/c`);
  await Deno.writeTextFile(`${dir}/c/20-other.conf`, JSON.stringify({ type: "ptp" }));
  assert.equal((await installConflist({ confDir: `${dir}/c`, mtu: 1500 })).written, true);
  await assert.rejects(() => installConflist({ confDir: `${dir}/d`, mtu: 20 }), /MTU 20/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("install: the conflist's ipam names the daemon's annotation and state folder", async () => {
  const ipam = (o: { annotation?: string; stateDir?: string }) =>
    (mainConflist({ mtu: 1500, confDir: "/unused", ...o }).plugins as { ipam: unknown }[])[0]
      .ipam;
  assert.deepEqual(ipam({}), { type: "kube-node" });
  // kube-node's defaults are left out: "" is spec.podCIDRs, and its own default folder.
  assert.deepEqual(ipam({ annotation: "", stateDir: DEFAULT_STATE_DIR }), { type: "kube-node" });
  assert.deepEqual(ipam({ annotation: "cidr.example.com/main", stateDir: "/var/lib/xc" }), {
    type: "kube-node",
    annotation: "cidr.example.com/main",
    stateDir: "/var/lib/xc",
  });
  const dir = await Deno.makeTempDir({ prefix: "install-test-" });
  try {
    const r = await installConflist({
      confDir: dir,
      mtu: 1450,
      annotation: "cidr.example.com/main",
      stateDir: `${dir}/state`,
    });
    const conf = JSON.parse(await Deno.readTextFile(r.path));
    assert.equal(conf.plugins[0].ipam.annotation, "cidr.example.com/main");
    assert.equal(conf.plugins[0].ipam.stateDir, `${dir}/state`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install: every argument is checked before anything is copied; usage errors exit 2", async () => {
  const dir = await Deno.makeTempDir({ prefix: "install-test-" });
  const quiet = console.error;
  const said: string[] = [];
  console.error = (...a: unknown[]) => said.push(a.join(" "));
  try {
    await Deno.mkdir(`${dir}/from`);
    await Deno.writeTextFile(`${dir}/from/bridge`, "#!/bin/sh\n");
    await Deno.writeTextFile(`${dir}/self`, "#!/bin/sh\n");
    const base = ["--from", `${dir}/from`, "--to", `${dir}/to`, "--self", `${dir}/self`];
    const conf = ["--conf-dir", `${dir}/net.d`];
    const cases: [string[], RegExp][] = [
      [conf, /--conf-dir needs --mtu or --address/],
      [[...conf, "--mtu", "abc"], /--mtu: expected an integer 68-65535, not "abc"/],
      [[...conf, "--mtu=1e3"], /--mtu: expected an integer/],
      [[...conf, "--mtu", "20"], /--mtu: expected an integer/],
      [[...conf, "--address", "999.1.1.1"], /--address: not an IP address/],
      [[...conf, "--mtu", "1500", "--address", "10.0.0.1"], /not both/],
      [["--mtu", "1500"], /need --conf-dir/],
      [["--to="], /--to: empty/],
    ];
    for (const [args, reason] of cases) {
      said.length = 0;
      assert.equal(await installCommand([...base, ...args]), 2, args.join(" "));
      assert.match(said.join("\n"), reason, args.join(" "));
      for (const folder of ["to", "net.d"]) {
        await assert.rejects(() => Deno.stat(`${dir}/${folder}`), Deno.errors.NotFound);
      }
    }
  } finally {
    console.error = quiet;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install: interfaceMtu finds the interface holding an address", async () => {
  const local = await createIprouteTable().localAddresses();
  assert.equal(await interfaceMtu("127.0.0.1", local), 65536);
  await assert.rejects(
    () => interfaceMtu("192.0.2.254", local),
    /no interface holds 192\.0\.2\.254/,
  );
  await assert.rejects(() => interfaceMtu("nope", local), /not an IP address/);
});
