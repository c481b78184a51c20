/**
 * The installer replacing the CNI binaries while a runtime calls them: no ETXTBSY, no partial
 * file, no failed call.
 *
 * The installer runs as its own process, `main.ts install --from DIR --to DIR --self FILE`,
 * as the initContainer does, in a loop, each time with different content: host-local, bridge
 * and loopback with a generation number appended (an ELF file runs with trailing bytes), and
 * kube-node as the development wrapper with a generation comment. Meanwhile, with
 * concurrency 8:
 *
 * - 1,000 kube-node ADDs and their 1,000 DELs (full CNI calls of the installed kube-node as
 *   IPAM, CNI_PATH the installed folder, CNI_NETNS a real namespace), each delegating to the
 *   installed host-local that is being replaced;
 * - 1,000 execs of installed plugins that the installer replaces (host-local, bridge,
 *   loopback with CNI_COMMAND=VERSION);
 * - a reader that hashes every installed file over and over: each one must be exactly one of
 *   the generations written, never a mix or a prefix.
 *
 * The 3,000 calls take about 35 s on two cores. Needs root (network namespace) and the
 * plugins in /usr/lib/cni.
 */
import assert from "node:assert/strict";
import { devWrapper } from "../src/install.ts";
import { writeNodeState } from "../src/state.ts";
import { allocatedFiles, IGNORE_CNI, SYSTEM_CNI } from "./helpers/cni.ts";
import { Netns } from "./helpers/netns.ts";
import { execWithStdin, runMain } from "./helpers/tools.ts";

const MAIN_TS = new URL("../main.ts", import.meta.url).pathname;
const ANNOTATION = "cidr.example.com/race";
const PLUGINS = ["bridge", "host-local", "loopback"];
const PAIRS = 1000;
const EXECS = 1000;
const CONCURRENCY = 8;

async function sha(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test({
  name:
    "install race: 1,000 kube-node ADDs, 1,000 DELs and 1,000 plugin execs while the installer " +
    "replaces every binary: no ETXTBSY, no partial file, no failed call",
  ignore: IGNORE_CNI,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "install-race-" });
    const from = `${dir}/from`, to = `${dir}/to`, gens = `${dir}/gens`;
    let pod: Netns | undefined;
    try {
      pod = await Netns.create("race");
      const podPath = pod.path;
      await Deno.mkdir(from);
      await Deno.mkdir(gens);
      await writeNodeState(`${dir}/state`, {
        version: 1,
        node: "race",
        annotation: ANNOTATION,
        cidrs: ["10.77.0.0/16", "fd00:77::/112"],
        updated: new Date().toISOString(),
      });
      const originals = new Map<string, Uint8Array>();
      for (const p of PLUGINS) originals.set(p, await Deno.readFile(`${SYSTEM_CNI}/${p}`));
      const wrapper = devWrapper(MAIN_TS);

      // Every generation's files, by hash: what a reader may ever see installed.
      const known = new Map<string, Set<string>>(
        [...PLUGINS, "kube-node"].map((n) => [n, new Set<string>()]),
      );
      const last = new Map<string, string>();
      let generation = 0;
      const prepare = async () => {
        const g = ++generation;
        const tag = new TextEncoder().encode(`\nxcluster-cni install race generation ${g}\n`);
        for (const p of PLUGINS) {
          const orig = originals.get(p)!;
          const bytes = new Uint8Array(orig.length + tag.length);
          bytes.set(orig);
          bytes.set(tag, orig.length);
          const h = await sha(bytes);
          known.get(p)!.add(h);
          last.set(p, h);
          await Deno.writeFile(`${from}/${p}`, bytes);
        }
        const self = new TextEncoder().encode(`${wrapper}# generation ${g}\n`);
        const h = await sha(self);
        known.get("kube-node")!.add(h);
        last.set("kube-node", h);
        await Deno.writeFile(`${gens}/self`, self);
      };
      const install = async () => {
        await prepare();
        const r = await runMain(
          {},
          "install",
          "--from",
          from,
          "--to",
          to,
          "--self",
          `${gens}/self`,
        );
        if (r.code !== 0) throw new Error(`install exit ${r.code}: ${r.err}`);
      };
      await install();
      assert.deepEqual(await listDir(to), [...PLUGINS, "kube-node"].sort());

      const conf = JSON.stringify({
        cniVersion: "1.0.0",
        name: "race",
        ipam: {
          type: "kube-node",
          annotation: ANNOTATION,
          stateDir: `${dir}/state`,
          dataDir: `${dir}/ipam`,
        },
      });
      const cniEnv = (command: string, id: string) => ({
        CNI_COMMAND: command,
        CNI_CONTAINERID: id,
        CNI_NETNS: podPath,
        CNI_IFNAME: "eth0",
        CNI_PATH: to,
        HOME: dir,
      });
      const failures: string[] = [];
      let adds = 0, dels = 0, execs = 0, reads = 0, installs = 1;

      // The runtime: ADD then DEL per container, and VERSION execs of the plugins.
      const jobs = Array.from({ length: Math.max(PAIRS, EXECS) }, (_, i) => i);
      const worker = async () => {
        for (let i = jobs.shift(); i !== undefined; i = jobs.shift()) {
          if (i < PAIRS) {
            const id = `race${i}`;
            const add = await execWithStdin(`${to}/kube-node`, cniEnv("ADD", id), conf);
            const ips = add.code === 0
              ? (JSON.parse(add.stdout).ips ?? []) as { address: string }[]
              : [];
            if (ips.length !== 2) {
              failures.push(`ADD ${id}: exit ${add.code}: ${add.stdout} ${add.stderr}`);
            } else adds++;
            const del = await execWithStdin(`${to}/kube-node`, cniEnv("DEL", id), conf);
            if (del.code !== 0) failures.push(`DEL ${id}: exit ${del.code}: ${del.stdout}`);
            else dels++;
          }
          if (i < EXECS) {
            const p = PLUGINS[i % PLUGINS.length];
            const v = await execWithStdin(`${to}/${p}`, { CNI_COMMAND: "VERSION" }, "{}");
            if (v.code !== 0 || !JSON.parse(v.stdout || "{}").supportedVersions) {
              failures.push(`VERSION ${p}: exit ${v.code}: ${v.stdout} ${v.stderr}`);
            } else execs++;
          }
        }
      };
      let running = true;
      const installer = async () => {
        while (running) {
          try {
            await install();
            installs++;
          } catch (e) {
            failures.push(`installer: ${(e as Error).message}`);
          }
        }
      };
      const reader = async () => {
        while (running) {
          for (const name of known.keys()) {
            const h = await sha(await Deno.readFile(`${to}/${name}`));
            if (!known.get(name)!.has(h)) failures.push(`${name}: content of no generation`);
            reads++;
          }
          await new Promise((r) => setTimeout(r, 25));
        }
      };
      const t0 = performance.now();
      const background = [installer(), reader()];
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      running = false;
      await Promise.all(background);
      const seconds = (performance.now() - t0) / 1000;
      console.log(
        `${adds} ADDs, ${dels} DELs, ${execs} VERSION execs, ${installs} installs, ` +
          `${reads} file reads in ${seconds.toFixed(1)} s`,
      );

      assert.deepEqual(failures.slice(0, 10), [], `${failures.length} failures`);
      assert.equal(adds, PAIRS);
      assert.equal(dels, PAIRS);
      assert.equal(execs, EXECS);
      // The installer really raced the calls: many generations, each one written.
      assert.ok(installs >= 10, `only ${installs} installs overlapped the calls`);
      assert.equal(known.get("host-local")!.size, generation);
      // Nothing left behind: no temp files, every address released, the last generation in place.
      assert.deepEqual(await listDir(to), [...PLUGINS, "kube-node"].sort());
      assert.deepEqual(await allocatedFiles(`${dir}/ipam`, "race"), []);
      for (const name of known.keys()) {
        assert.equal(await sha(await Deno.readFile(`${to}/${name}`)), last.get(name), name);
      }
    } finally {
      await pod?.[Symbol.asyncDispose]();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
