/**
 * `xcluster-cni apiserver` as an operator runs it: a bad --listen is a usage error before
 * anything is made, a start that fails is one line, and neither leaves its temporary folder
 * (which holds the CA's private key) behind. Each run gets a TMPDIR of its own, so that what
 * it leaves is told apart from the folders of servers other tests run at the same time.
 */
import assert from "node:assert/strict";
import { runMain } from "./helpers/tools.ts";

/** A stack trace line, as Deno prints one. */
const STACK = /^\s+at /m;

/** A private TMPDIR for the server, and what is in it once a run is over. */
async function privateTmp(): Promise<
  { env: Record<string, string>; left(): string[] } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-apiserver-cli-" });
  return {
    env: { TMPDIR: dir },
    left: () => [...Deno.readDirSync(dir)].map((e) => e.name).sort(),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

/** An IPv4 address of TEST-NET-3 that no interface of this host holds: binding it fails. */
function foreignAddress(): string {
  const mine = new Set(Deno.networkInterfaces().map((i) => i.address));
  for (let i = 254; i > 0; i--) {
    const a = `203.0.113.${i}`;
    if (!mine.has(a)) return a;
  }
  throw new Error("every address of 203.0.113.0/24 is on this host");
}

Deno.test("apiserver cli: --help prints the usage on stdout and exits 0", async () => {
  await using tmp = await privateTmp();
  const r = await runMain(tmp.env, "apiserver", "--help");
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^usage: xcluster-cni apiserver \[--listen HOST:PORT\] /);
  assert.equal(r.err, "");
  assert.deepEqual(tmp.left(), [], "nothing made");
});

Deno.test("apiserver cli: a bad --listen is a usage error naming the value: exit 2, nothing made", async () => {
  await using tmp = await privateTmp();
  const cases: [string[], RegExp][] = [
    [["--listen", "bogus"], /^xcluster-cni apiserver: --listen "bogus": expected HOST:PORT/],
    [
      ["--listen", "127.0.0.1:99999"],
      /^xcluster-cni apiserver: --listen "127\.0\.0\.1:99999": the port "99999" is not a number from 0 to 65535\n/,
    ],
    [["--listen=[::1]"], /^xcluster-cni apiserver: --listen "\[::1\]": expected HOST:PORT/],
    [["--listen"], /^xcluster-cni apiserver: --listen needs a value\n/],
    [["--latency", "soon"], /^xcluster-cni apiserver: --latency: expected milliseconds/],
    [["--bogus"], /^xcluster-cni apiserver: unknown flag "--bogus"\n/],
  ];
  for (const [args, re] of cases) {
    const r = await runMain(tmp.env, "apiserver", ...args);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, re, args.join(" "));
    const lines = r.err.trimEnd().split("\n");
    assert.equal(lines.length, 2, `one line, then the usage: ${r.err}`);
    assert.match(lines[1], /^usage: xcluster-cni apiserver /);
    assert.doesNotMatch(r.err, STACK);
    assert.equal(r.out, "");
    assert.deepEqual(tmp.left(), [], `${args.join(" ")}: nothing made`);
  }
});

Deno.test("apiserver cli: a port taken or an address not here is one line, exit 1, no folder left", async () => {
  await using tmp = await privateTmp();
  // A port held open by this test.
  const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (held.addr as Deno.NetAddr).port;
  const kubeconfig = `${tmp.env.TMPDIR}/kubeconfig`;
  try {
    const taken = await runMain(
      tmp.env,
      "apiserver",
      "--listen",
      `127.0.0.1:${port}`,
      "--kubeconfig",
      kubeconfig,
    );
    assert.equal(taken.code, 1, taken.err);
    assert.match(
      taken.err,
      new RegExp(
        `^xcluster-cni apiserver: cannot listen on 127\\.0\\.0\\.1:${port}: .*in use`,
        "i",
      ),
    );
    assert.equal(taken.err.trimEnd().split("\n").length, 1, taken.err);
    assert.doesNotMatch(taken.err, STACK);
    assert.deepEqual(tmp.left(), [], "no cert folder, no kubeconfig");
  } finally {
    held.close();
  }

  const away = foreignAddress();
  const notHere = await runMain(tmp.env, "apiserver", "--listen", `${away}:0`);
  assert.equal(notHere.code, 1, notHere.err);
  assert.match(notHere.err, new RegExp(`^xcluster-cni apiserver: cannot listen on ${away}:0: `));
  assert.equal(notHere.err.trimEnd().split("\n").length, 1, notHere.err);
  assert.deepEqual(tmp.left(), []);

  // Listening works, writing the kubeconfig does not: the listener and the folder go.
  const noDir = await runMain(
    tmp.env,
    "apiserver",
    "--listen",
    "127.0.0.1:0",
    "--kubeconfig",
    `${tmp.env.TMPDIR}/missing/kubeconfig`,
  );
  assert.equal(noDir.code, 1, noDir.err);
  assert.match(
    noDir.err,
    /^xcluster-cni apiserver: cannot write the kubeconfig .*missing\/kubeconfig: /,
  );
  assert.equal(noDir.err.trimEnd().split("\n").length, 1, noDir.err);
  assert.deepEqual(tmp.left(), []);
});

Deno.test("apiserver cli: serves until SIGTERM, then exits 0 and removes its folder", async () => {
  await using tmp = await privateTmp();
  const kubeconfig = `${tmp.env.TMPDIR}/kubeconfig`;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "main.ts",
      "apiserver",
      "--listen",
      "127.0.0.1:0",
      "--kubeconfig",
      kubeconfig,
    ],
    env: tmp.env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  try {
    assert.match(out, /^apiserver listening on https:\/\/127\.0\.0\.1:\d+; kubeconfig /);
    const left = tmp.left();
    assert.ok(left.includes("kubeconfig"), String(left));
    assert.ok(left.some((n) => n.startsWith("xcluster-apiserver-")), `the cert folder: ${left}`);
    const url = /https:\/\/\S+?(?=;)/.exec(out)![0];
    const ca = JSON.parse(await Deno.readTextFile(kubeconfig))
      .clusters[0].cluster["certificate-authority-data"];
    const http = Deno.createHttpClient({ caCerts: [atob(ca)] });
    try {
      const res = await fetch(`${url}/healthz`, { client: http });
      assert.equal(`${res.status} ${await res.text()}`, "200 ok");
    } finally {
      http.close();
    }
  } finally {
    child.kill("SIGTERM");
    await reader.cancel().catch(() => {});
  }
  const status = await child.status;
  assert.equal(status.code, 0, await stderr);
  assert.deepEqual(tmp.left(), ["kubeconfig"], "the cert folder is gone, the kubeconfig stays");
});
