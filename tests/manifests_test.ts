/**
 * Every manifest, rendered as `kubectl apply -k` would, checked against the code: env
 * names and defaults, probe ports, RBAC verbs, host paths, IPAM keys, the image's folders.
 * Rendering needs /usr/bin/kubectl (its built-in kustomize).
 */
import assert from "node:assert/strict";
import { KUBECTL, kubectlMissing } from "./helpers/tools.ts";
import { parseAllDocuments } from "yaml";
import {
  DAEMON_RUNTIME_ENV,
  DEFAULT_CNI_BIN_DIR,
  DEFAULT_CNI_CONF_DIR,
  DEFAULT_PLUGINS_DIR,
  DEFAULT_PROTOCOL,
  DEFAULT_STATE_DIR,
  ENV,
  HTTP_PORT_BASE,
  parseDaemonConfig,
} from "../src/config.ts";
import { KUBE_NODE_KEYS } from "../cni/config.ts";

const noKubectl = !!kubectlMissing();

type Obj = Record<string, unknown> & { kind: string; metadata: { name: string } };
interface Container {
  env?: { name: string; value?: string }[];
  ports?: { containerPort: number }[];
  readinessProbe?: { httpGet: { port: number; path: string } };
  livenessProbe?: { httpGet: { port: number; path: string } };
  securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
}

async function render(dir: string): Promise<Obj[]> {
  const out = await new Deno.Command(KUBECTL, {
    args: ["kustomize", dir],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return parseAllDocuments(new TextDecoder().decode(out.stdout)).map((d) => d.toJS() as Obj);
}

/** An overlay of the main network with the Events component, made for the test. */
async function withEvents(): Promise<Obj[]> {
  const dir = await Deno.makeTempDir({ dir: "manifests", prefix: ".test-" });
  try {
    await Deno.writeTextFile(
      `${dir}/kustomization.yaml`,
      "resources: [../base]\ncomponents: [../components/node-events]\n",
    );
    return await render(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function check(objs: Obj[]): void {
  const ds = objs.filter((o) => o.kind === "DaemonSet");
  assert.equal(ds.length, 1);
  const spec = (ds[0].spec as { template: { spec: Record<string, unknown> } }).template.spec;
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.priorityClassName, "system-node-critical");
  assert.deepEqual(spec.tolerations, [{ operator: "Exists" }]);
  const c = (spec.containers as Container[])[0];
  const env = new Map((c.env ?? []).map((e) => [e.name, e.value]));
  const known = new Map(ENV.map((e) => [e.name, e]));
  for (const [name, value] of env) {
    assert.ok(known.has(name), `env ${name} is not in the config schema`);
    if (value !== undefined && name !== "NODE_NAME") {
      // Every literal value parses, so the daemon starts with it.
      parseDaemonConfig({ [name]: value });
    }
  }
  for (
    const [name, def] of [["CNI_BIN_DIR", DEFAULT_CNI_BIN_DIR], [
      "CNI_CONF_DIR",
      DEFAULT_CNI_CONF_DIR,
    ], ["STATE_DIR", DEFAULT_STATE_DIR]]
  ) {
    assert.equal(known.get(name)?.default, def);
    const path = env.get(name) ?? def;
    const mount = c.volumeMounts?.find((m) => m.mountPath === path);
    assert.ok(mount, `${name}=${path} is mounted`);
    const vol = (spec.volumes as { name: string; hostPath?: { path: string } }[]).find((v) =>
      v.name === mount.name
    );
    assert.equal(vol?.hostPath?.path, def, `${name} comes from the host's ${def}`);
  }
  const protocol = Number(env.get("PROTOCOL") ?? DEFAULT_PROTOCOL);
  const port = HTTP_PORT_BASE + protocol;
  assert.equal(c.readinessProbe?.httpGet.port, port);
  assert.equal(c.readinessProbe?.httpGet.path, "/readyz");
  assert.equal(c.livenessProbe?.httpGet.port, port);
  assert.equal(c.livenessProbe?.httpGet.path, "/healthz");
  for (const p of c.ports ?? []) assert.equal(p.containerPort, port);
  assert.notEqual(c.securityContext?.privileged, true);
  assert.deepEqual(c.securityContext?.capabilities?.add, ["NET_ADMIN"]);

  const events = env.get("NODE_EVENTS") === "yes";
  const rules = objs.filter((o) => o.kind === "ClusterRole").flatMap((r) =>
    r.rules as { resources: string[]; verbs: string[] }[]
  );
  assert.deepEqual(rules.filter((r) => r.resources.includes("nodes")).map((r) => r.verbs.sort()), [[
    "get",
    "list",
    "watch",
  ]]);
  assert.deepEqual(
    rules.filter((r) => r.resources.includes("events")).map((r) => r.verbs),
    events ? [["create"]] : [],
  );
  assert.equal(rules.length, events ? 2 : 1, "no other permissions");
  const sa = objs.find((o) => o.kind === "ServiceAccount")!;
  for (const b of objs.filter((o) => o.kind === "ClusterRoleBinding")) {
    const s = (b.subjects as { name: string; namespace: string }[])[0];
    assert.equal(s.name, sa.metadata.name);
    assert.equal(s.namespace, (sa.metadata as { namespace?: string }).namespace);
  }
}

Deno.test({
  name: "manifests: the main network",
  ignore: noKubectl,
  fn: async () => check(await render("manifests/base")),
});

Deno.test({
  name: "manifests: a secondary network overlay has its own namespace, annotations and protocol",
  ignore: noKubectl,
  async fn() {
    const objs = await render("manifests/overlays/net3");
    check(objs);
    const ds = objs.find((o) => o.kind === "DaemonSet")!;
    const env = new Map(
      ((ds.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers[0]
        .env ?? [])
        .map((e) => [e.name, e.value]),
    );
    assert.equal(env.get("INSTALL_K8S_NET"), "no");
    assert.notEqual(env.get("PROTOCOL"), String(DEFAULT_PROTOCOL));
    assert.ok(env.get("CIDR_ANNOTATION") && env.get("ADDRESS_ANNOTATION"));
    assert.ok(
      objs.some((o) =>
        o.kind === "Namespace" &&
        o.metadata.name === (ds.metadata as { namespace?: string }).namespace
      ),
    );
  },
});

Deno.test({
  name: "manifests: Node Events add only events create",
  ignore: noKubectl,
  fn: async () => check(await withEvents()),
});

Deno.test("manifests: NetworkAttachmentDefinitions use kube-node with known keys only", async () => {
  const hostLocalKeys = ["type", "dataDir", "routes", "resolvConf"];
  let n = 0;
  for await (const f of Deno.readDir("manifests/multus")) {
    for (const doc of parseAllDocuments(await Deno.readTextFile(`manifests/multus/${f.name}`))) {
      const nad = doc.toJS() as { kind: string; spec: { config: string } };
      assert.equal(nad.kind, "NetworkAttachmentDefinition");
      const conf = JSON.parse(nad.spec.config) as {
        ipam: Record<string, unknown>;
        cniVersion: string;
      };
      assert.equal(conf.ipam.type, "kube-node");
      for (const key of Object.keys(conf.ipam)) {
        assert.ok(
          [...KUBE_NODE_KEYS, ...hostLocalKeys].includes(key),
          `${f.name}: unknown ipam key ${key}`,
        );
      }
      n++;
    }
  }
  assert.equal(n, 2);
});

Deno.test("Dockerfile: plugins where the installer looks, Deno as pinned in build.sh", async () => {
  const docker = await Deno.readTextFile("Dockerfile");
  const build = await Deno.readTextFile("build.sh");
  assert.ok(docker.includes(`${DEFAULT_PLUGINS_DIR}/`), "plugin folder");
  const pinned = /^DENO_VERSION=(\S+)$/m.exec(build)?.[1];
  assert.ok(pinned);
  assert.match(docker, new RegExp(`^ARG DENO_VERSION=${pinned.replace(/\./g, "\\.")}$`, "m"));
  for (const p of ["bridge", "host-local", "loopback"]) {
    assert.ok(docker.includes(`/usr/lib/cni/${p}`));
  }
  const env = /^ENV (.+)$/m.exec(docker)?.[1].split(/\s+/) ?? [];
  assert.deepEqual(
    env.sort(),
    Object.entries(DAEMON_RUNTIME_ENV).map(([k, v]) => `${k}=${v}`).sort(),
    "the image's ENV is DAEMON_RUNTIME_ENV",
  );
});
