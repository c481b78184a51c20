/**
 * Every manifest, rendered as `kubectl apply -k` would, checked against the code: env
 * names, values and defaults, HTTP and probe ports, selectors, node selectors, the image,
 * RBAC (read-only instances stay read-only; the components that write grant exactly what the
 * daemon uses), the admission policy, host paths, IPAM keys and routes, the image's folders.
 * Rendering needs /usr/bin/kubectl (its built-in kustomize).
 */
import assert from "node:assert/strict";
import { KUBECTL, kubectlMissing } from "./helpers/tools.ts";
import { parse, parseAllDocuments, parseDocument, stringify } from "yaml";
import {
  DAEMON_RUNTIME_ENV,
  type DaemonConfig,
  DEFAULT_CNI_BIN_DIR,
  DEFAULT_CNI_CONF_DIR,
  DEFAULT_PLUGINS_DIR,
  DEFAULT_PROTOCOL,
  DEFAULT_STATE_DIR,
  ENV,
  HTTP_PORT_BASE,
  leaseName,
  parseDaemonConfig,
} from "../src/config.ts";
import { parseLabelSelector } from "../src/kube/label_selector.ts";
import { KUBE_NODE_KEYS } from "../cni/config.ts";
import { type Cidr, cidrContains, cidrsOverlap, formatCidr, parseCidr } from "../src/net/ip.ts";

const noKubectl = !!kubectlMissing();

type Meta = { name: string; namespace?: string };
type Obj = Record<string, unknown> & { kind: string; metadata: Meta };
interface EnvEntry {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string } };
}
interface Probe {
  httpGet: { port: number | string; path: string };
}
interface Container {
  image?: string;
  env?: EnvEntry[];
  ports?: { name?: string; containerPort: number }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec extends Record<string, unknown> {
  containers: Container[];
  nodeSelector?: Record<string, string>;
}
interface DaemonSetSpec {
  selector: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] };
  template: { metadata: { labels?: Record<string, string> }; spec: PodSpec };
}
interface Rule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}
interface Binding extends Obj {
  roleRef: { kind: string; name: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
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

/** Renders a kustomization made for the test in a folder under `parent`, then removes it. */
async function renderTemp(parent: string, files: Record<string, string>): Promise<Obj[]> {
  const dir = await Deno.makeTempDir({ dir: parent, prefix: ".test-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    return await render(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The kustomizations applied as they are: the main network and the overlays, under `root`. */
async function overlayDirs(root = "manifests"): Promise<string[]> {
  const dirs = ["base"];
  for await (const d of Deno.readDir(`${root}/overlays`)) {
    if (d.isDirectory && !d.name.startsWith(".")) dirs.push(`overlays/${d.name}`);
  }
  return dirs.sort();
}

/** A copy of manifests/ in a temporary folder, whose files a test may edit; removes it after. */
async function withCopy<T>(fn: (root: string) => Promise<T>): Promise<T> {
  const root = await Deno.makeTempDir({ prefix: "xcluster-cni-manifests-" });
  const copy = async (from: string, to: string) => {
    for await (const e of Deno.readDir(from)) {
      if (e.name.startsWith(".")) continue;
      if (e.isDirectory) {
        await Deno.mkdir(`${to}/${e.name}`);
        await copy(`${from}/${e.name}`, `${to}/${e.name}`);
      } else if (e.isFile) {
        await Deno.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
      }
    }
  };
  try {
    await copy("manifests", root);
    return await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

/** Edits a YAML file in place (its comments kept). */
async function editYaml(
  path: string,
  edit: (doc: ReturnType<typeof parseDocument>) => void,
): Promise<void> {
  const doc = parseDocument(await Deno.readTextFile(path));
  edit(doc);
  await Deno.writeTextFile(path, doc.toString());
}

/** Sets the value of env `name` of the first container of a DaemonSet file or patch. */
function setEnv(path: string, name: string, value: string): Promise<void> {
  return editYaml(path, (doc) => {
    const containers = ["spec", "template", "spec", "containers"];
    const env = (doc.toJS() as { spec: DaemonSetSpec }).spec.template.spec.containers[0].env ?? [];
    const i = env.findIndex((e) => e.name === name);
    assert.ok(i >= 0, `${path} sets ${name}`);
    doc.setIn([...containers, 0, "env", i, "value"], value);
  });
}

/** The file of a kustomization that sets PROTOCOL. */
function protocolFile(root: string, dir: string): string {
  return dir === "base" ? `${root}/base/daemonset.yaml` : `${root}/${dir}/network.yaml`;
}

/** An overlay of the main network with the Events component, made for the test. */
function withEvents(): Promise<Obj[]> {
  return renderTemp("manifests", {
    "kustomization.yaml": "resources: [../base]\ncomponents: [../components/node-events]\n",
  });
}

/** The net4 overlay as it is, plus the admission-policy component (commented out there). */
async function net4WithAdmissionPolicy(): Promise<Obj[]> {
  const files: Record<string, string> = {};
  for await (const f of Deno.readDir("manifests/overlays/net4")) {
    if (f.isFile) files[f.name] = await Deno.readTextFile(`manifests/overlays/net4/${f.name}`);
  }
  const k = parse(files["kustomization.yaml"]) as { components?: string[] };
  const policy = "../../components/admission-policy";
  k.components = [...(k.components ?? []).filter((c) => c !== policy), policy];
  files["kustomization.yaml"] = stringify(k);
  return renderTemp("manifests/overlays", files);
}

function daemonSet(objs: Obj[]): { ds: Obj; spec: PodSpec; c: Container } {
  const all = objs.filter((o) => o.kind === "DaemonSet");
  assert.equal(all.length, 1);
  const spec = (all[0].spec as { template: { spec: PodSpec } }).template.spec;
  return { ds: all[0], spec, c: spec.containers[0] };
}

/** Sample values of the downward-API fields the manifests may use. */
function downwardApi(ds: Obj): Record<string, string> {
  return { "spec.nodeName": "node-1", "metadata.namespace": ds.metadata.namespace ?? "default" };
}

/** The environment the container gets: literal values, downward-API fields as samples. */
function podEnv(ds: Obj, c: Container): Record<string, string> {
  const fields = downwardApi(ds);
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.valueFrom) {
      const path = e.valueFrom.fieldRef?.fieldPath;
      assert.ok(path && path in fields, `${e.name}: downward API ${JSON.stringify(e.valueFrom)}`);
      env[e.name] = fields[path];
    } else {
      env[e.name] = e.value ?? "";
    }
  }
  return env;
}

/** Checks the DaemonSet against the code; returns the configuration its pods would parse. */
function check(objs: Obj[]): DaemonConfig {
  const { ds, spec, c } = daemonSet(objs);
  assert.equal(spec.hostNetwork, true);
  assert.equal(spec.priorityClassName, "system-node-critical");
  assert.deepEqual(spec.tolerations, [{ operator: "Exists" }]);
  const env = podEnv(ds, c);
  const known = new Map(ENV.map((e) => [e.name, e]));
  for (const name of Object.keys(env)) {
    assert.ok(known.has(name), `env ${name} is not in the config schema`);
  }
  // The whole environment parses, so the daemon starts with it: every value, and the
  // counterparts of allocation and publication (CIDR_ANNOTATION, NODE_NAME, ...).
  const cfg = parseDaemonConfig(env);
  for (
    const [name, def] of [["CNI_BIN_DIR", DEFAULT_CNI_BIN_DIR], [
      "CNI_CONF_DIR",
      DEFAULT_CNI_CONF_DIR,
    ], ["STATE_DIR", DEFAULT_STATE_DIR]]
  ) {
    assert.equal(known.get(name)?.default, def);
    const path = env[name] ?? def;
    const mount = c.volumeMounts?.find((m) => m.mountPath === path);
    assert.ok(mount, `${name}=${path} is mounted`);
    const vol = (spec.volumes as { name: string; hostPath?: { path: string } }[]).find((v) =>
      v.name === mount.name
    );
    assert.equal(vol?.hostPath?.path, def, `${name} comes from the host's ${def}`);
  }
  // The daemon listens where the probes look and the container port says: 19000 + PROTOCOL.
  const ports = httpPorts(c, cfg);
  const port = HTTP_PORT_BASE + cfg.protocol;
  assert.deepEqual(ports, { daemon: port, container: [port], readiness: port, liveness: port });
  assert.equal(c.readinessProbe?.httpGet.path, "/readyz");
  assert.equal(c.livenessProbe?.httpGet.path, "/healthz");
  assert.equal(spec.nodeSelector?.["kubernetes.io/os"], "linux", "Linux nodes only");
  assert.notEqual(c.securityContext?.privileged, true);
  assert.deepEqual(c.securityContext?.capabilities?.add, ["NET_ADMIN"]);
  if ("POD_NAMESPACE" in env) {
    const from = c.env?.find((e) => e.name === "POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath;
    assert.equal(from, "metadata.namespace", "POD_NAMESPACE is the pod's own namespace");
  }
  return cfg;
}

/** The daemon's HTTP port (from its parsed HTTP_ADDRESS), the container's and the probes'. */
function httpPorts(c: Container, cfg: DaemonConfig) {
  const m = /:([0-9]+)$/.exec(cfg.httpAddress);
  assert.ok(m, `HTTP_ADDRESS ${cfg.httpAddress} serves`);
  const named = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
  const probe = (p: Probe | undefined) => {
    const port = p?.httpGet.port;
    return typeof port === "string" ? named.get(port) : port;
  };
  return {
    daemon: Number(m[1]),
    container: (c.ports ?? []).map((p) => p.containerPort),
    readiness: probe(c.readinessProbe),
    liveness: probe(c.livenessProbe),
  };
}

function serviceAccount(objs: Obj[]): Meta {
  const sas = objs.filter((o) => o.kind === "ServiceAccount");
  assert.equal(sas.length, 1);
  const { ds } = daemonSet(objs);
  const podSa = (ds.spec as { template: { spec: { serviceAccountName?: string } } }).template.spec
    .serviceAccountName;
  assert.equal(podSa, sas[0].metadata.name, "the pods run as the rendered ServiceAccount");
  assert.equal(sas[0].metadata.namespace, ds.metadata.namespace);
  return sas[0].metadata;
}

/**
 * Every permission the instance's ServiceAccount gets from the render, one line each:
 * "<cluster | namespace NS> <group>/<resource> <verb>[ <resourceNames>]". Checks on the way
 * that every binding names the ServiceAccount as kustomize prefixed it, every role bound is
 * in the render and every role of the render is bound.
 */
function grants(objs: Obj[]): string[] {
  const sa = serviceAccount(objs);
  const out = new Set<string>();
  const bound = new Set<Obj>();
  const bindings = objs.filter((o) =>
    o.kind === "ClusterRoleBinding" || o.kind === "RoleBinding"
  ) as Binding[];
  for (const b of bindings) {
    const what = `${b.kind} ${b.metadata.name}`;
    assert.deepEqual(
      (b.subjects ?? []).map((s) => [s.kind, s.name, s.namespace]),
      [["ServiceAccount", sa.name, sa.namespace]],
      `${what} binds the instance's own ServiceAccount`,
    );
    const ns = b.kind === "RoleBinding" ? b.metadata.namespace : undefined;
    if (b.kind === "RoleBinding") assert.ok(ns, `${what} has a namespace`);
    const role = objs.find((o) =>
      o.kind === b.roleRef.kind && o.metadata.name === b.roleRef.name &&
      (o.kind === "ClusterRole" || o.metadata.namespace === ns)
    );
    assert.ok(role, `${what}: ${b.roleRef.kind} ${b.roleRef.name} is in the render`);
    bound.add(role);
    const scope = ns === undefined ? "cluster" : `namespace ${ns}`;
    for (const r of role.rules as Rule[]) {
      const names = r.resourceNames?.length ? ` ${[...r.resourceNames].sort().join(",")}` : "";
      for (const g of r.apiGroups ?? [""]) {
        for (const res of r.resources ?? []) {
          for (const v of r.verbs) out.add(`${scope} ${g || "core"}/${res} ${v}${names}`);
        }
      }
    }
  }
  for (const r of objs.filter((o) => o.kind === "ClusterRole" || o.kind === "Role")) {
    assert.ok(bound.has(r), `${r.kind} ${r.metadata.name} is bound`);
  }
  return [...out].sort();
}

const READS = ["cluster core/nodes get", "cluster core/nodes list", "cluster core/nodes watch"];
const WRITES = new Set(["create", "update", "patch", "delete", "deletecollection", "*"]);

/** Rules of any role in the render that write Nodes or Leases. */
function nodeOrLeaseWrites(objs: Obj[]): string[] {
  const found: string[] = [];
  for (const role of objs.filter((o) => o.kind === "ClusterRole" || o.kind === "Role")) {
    for (const r of role.rules as Rule[]) {
      const res = (r.resources ?? []).filter((x) => /^(\*|nodes|leases)(\/.*)?$/.test(x));
      const verbs = r.verbs.filter((v) => WRITES.has(v));
      if (res.length > 0 && verbs.length > 0) {
        found.push(`${role.kind} ${role.metadata.name}: ${res} ${verbs}`);
      }
    }
  }
  return found;
}

Deno.test({
  name: "manifests: the main network",
  ignore: noKubectl,
  async fn() {
    const objs = await render("manifests/base");
    check(objs);
    assert.deepEqual(grants(objs), READS);
  },
});

Deno.test({
  name: "manifests: a secondary network overlay has its own namespace, annotations and protocol",
  ignore: noKubectl,
  async fn() {
    const objs = await render("manifests/overlays/net3");
    const cfg = check(objs);
    assert.deepEqual(grants(objs), READS);
    const { ds } = daemonSet(objs);
    assert.equal(cfg.installK8sNet, false);
    assert.notEqual(cfg.protocol, DEFAULT_PROTOCOL);
    assert.ok(cfg.cidrAnnotation && cfg.addressAnnotation);
    assert.ok(
      objs.some((o) => o.kind === "Namespace" && o.metadata.name === ds.metadata.namespace),
    );
  },
});

Deno.test({
  name: "manifests: Node Events add only events create",
  ignore: noKubectl,
  async fn() {
    const objs = await withEvents();
    assert.equal(check(objs).nodeEvents, true);
    assert.deepEqual(grants(objs), [...READS, "cluster core/events create"].sort());
  },
});

Deno.test({
  name: "manifests: read-only instances cannot write Nodes or Leases",
  ignore: noKubectl,
  async fn() {
    for (
      const [name, objs] of [
        ["base", await render("manifests/base")],
        ["net3", await render("manifests/overlays/net3")],
        ["node-events", await withEvents()],
      ] as const
    ) {
      assert.deepEqual(nodeOrLeaseWrites(objs), [], name);
      const cfg = check(objs);
      assert.deepEqual(cfg.clusterCidrs, [], `${name} allocates nothing`);
      assert.equal(cfg.addressInterface, "", `${name} publishes nothing`);
      assert.deepEqual(cfg.addressSubnets, [], `${name} publishes nothing`);
    }
  },
});

Deno.test({
  name: "manifests: the zero-touch net4 allocates, publishes, and may write just that",
  ignore: noKubectl,
  async fn() {
    const objs = await render("manifests/overlays/net4");
    const cfg = check(objs);
    const { ds, spec } = daemonSet(objs);
    const ns = ds.metadata.namespace!;
    assert.ok(objs.some((o) => o.kind === "Namespace" && o.metadata.name === ns));
    assert.notEqual(ns, "kube-system", "a namespace of its own (lease create is namespace-wide)");
    assert.equal(cfg.installK8sNet, false);
    assert.ok(cfg.clusterCidrs.length > 0, "allocates");
    assert.ok(cfg.addressInterface !== "" || cfg.addressSubnets.length > 0, "publishes");
    assert.equal(cfg.podNamespace, ns, "the Lease is in the pod's namespace");
    // The pods run on exactly the nodes of the network: NODE_SELECTOR's equalities, on Linux.
    const selector = parseLabelSelector(cfg.nodeSelector);
    assert.ok(selector.requirements.length > 0);
    for (const r of selector.requirements) assert.equal(r.op, "=", r.key);
    assert.deepEqual(spec.nodeSelector, {
      "kubernetes.io/os": "linux",
      ...Object.fromEntries(selector.requirements.map((r) => [r.key, r.values[0]])),
    });
    // Nodes: the base's reads plus patch; the network's Lease: get, watch, create, update.
    const lease = leaseName(cfg.cidrAnnotation);
    assert.deepEqual(
      grants(objs),
      [
        ...READS,
        "cluster core/nodes patch",
        `namespace ${ns} coordination.k8s.io/leases create`,
        `namespace ${ns} coordination.k8s.io/leases get ${lease}`,
        `namespace ${ns} coordination.k8s.io/leases update ${lease}`,
        `namespace ${ns} coordination.k8s.io/leases watch ${lease}`,
      ].sort(),
    );
    const role = objs.find((o) => o.kind === "Role")!;
    assert.equal(role.metadata.namespace, ns);
    assert.ok((role.rules as Rule[]).some((r) => r.resourceNames?.includes(lease)));
  },
});

Deno.test({
  name: "manifests: the admission policy takes its network's values from the bound ConfigMap",
  ignore: noKubectl,
  async fn() {
    const objs = await net4WithAdmissionPolicy();
    const cfg = check(objs);
    const sa = serviceAccount(objs);
    const find = (kind: string) => {
      const all = objs.filter((o) => o.kind === kind);
      assert.equal(all.length, 1, kind);
      return all[0] as Obj & { spec: Record<string, unknown> };
    };
    const vap = find("ValidatingAdmissionPolicy");
    const binding = find("ValidatingAdmissionPolicyBinding");
    assert.equal(vap.apiVersion, "admissionregistration.k8s.io/v1");
    assert.equal(binding.apiVersion, "admissionregistration.k8s.io/v1");
    assert.equal(binding.spec.policyName, vap.metadata.name);
    assert.deepEqual(binding.spec.validationActions, ["Deny"]);
    assert.deepEqual(vap.spec.paramKind, { apiVersion: "v1", kind: "ConfigMap" });
    assert.equal(vap.spec.failurePolicy, "Fail");
    const ref = binding.spec.paramRef as { name: string; namespace: string };
    const cm = objs.find((o) =>
      o.kind === "ConfigMap" && o.metadata.name === ref.name &&
      o.metadata.namespace === ref.namespace
    ) as Obj & { data: Record<string, string> } | undefined;
    assert.ok(cm, `paramRef ${ref.namespace}/${ref.name} is a ConfigMap of the render`);
    assert.deepEqual(cm.data, {
      serviceAccount: `system:serviceaccount:${sa.namespace}:${sa.name}`,
      cidrAnnotation: cfg.cidrAnnotation,
      addressAnnotation: cfg.addressAnnotation,
    });
    // Node writes (patches arrive as UPDATE) by that service account alone.
    const rules = (vap.spec.matchConstraints as {
      resourceRules: { apiGroups: string[]; resources: string[]; operations: string[] }[];
    }).resourceRules;
    assert.ok(rules.some((r) =>
      r.apiGroups.includes("") && r.resources.includes("nodes") &&
      ["CREATE", "UPDATE", "DELETE"].every((op) => r.operations.includes(op))
    ));
    const exprs = (key: string) =>
      (vap.spec[key] as { expression: string }[] | undefined ?? []).map((e) => e.expression);
    assert.match(exprs("matchConditions").join(" "), /request\.userInfo\.username == params\.data/);
    // Every key of the ConfigMap is read through params, and nothing else is.
    const cel = [...exprs("matchConditions"), ...exprs("variables"), ...exprs("validations")]
      .join("\n");
    const read = new Set(
      [...cel.matchAll(/params\.data\.\??([A-Za-z]+)|"([A-Za-z]+)" in params\.data/g)]
        .map((m) => m[1] ?? m[2]),
    );
    assert.deepEqual([...read].sort(), Object.keys(cm.data).sort());
    assert.ok(cel.includes(`"authentication.kubernetes.io/node-name"`), "the token's node");
    assert.ok(cel.includes("oldObject"), "compares with the node as it was");
    for (const v of vap.spec.validations as { message?: string; reason?: string }[]) {
      assert.ok(v.message && !v.message.includes("\n"), "a static message to fall back on");
      assert.equal(v.reason, "Forbidden");
    }
    // The policy adds no permission.
    assert.deepEqual(grants(objs), grants(await render("manifests/overlays/net4")));
  },
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
  assert.equal(n, 3);
});

Deno.test({
  name: "manifests: every NetworkAttachmentDefinition is on an overlay's CIDR_ANNOTATION",
  ignore: noKubectl,
  async fn() {
    const annotations = new Set<string>();
    for await (const d of Deno.readDir("manifests/overlays")) {
      if (!d.isDirectory || d.name.startsWith(".")) continue;
      annotations.add(check(await render(`manifests/overlays/${d.name}`)).cidrAnnotation);
    }
    for await (const f of Deno.readDir("manifests/multus")) {
      for (const doc of parseAllDocuments(await Deno.readTextFile(`manifests/multus/${f.name}`))) {
        const conf = JSON.parse((doc.toJS() as { spec: { config: string } }).spec.config) as {
          ipam: { annotation?: string };
        };
        assert.ok(
          annotations.has(conf.ipam.annotation ?? ""),
          `${f.name}: ${conf.ipam.annotation}`,
        );
      }
    }
  },
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

Deno.test({
  name: "manifests: the HTTP port, container port and probes follow PROTOCOL in every overlay",
  ignore: noKubectl,
  async fn() {
    const dirs = await overlayDirs();
    assert.deepEqual(dirs, ["base", "overlays/net3", "overlays/net4"]);
    for (const dir of dirs) check(await render(`manifests/${dir}`));
    // A copy with PROTOCOL changed and nothing else: check() finds every port at 19000 + it.
    await withCopy(async (root) => {
      for (const [i, dir] of dirs.entries()) {
        const protocol = 230 + i;
        await setEnv(protocolFile(root, dir), "PROTOCOL", String(protocol));
        assert.equal(check(await render(`${root}/${dir}`)).protocol, protocol, dir);
      }
    });
  },
});

Deno.test({
  name: "manifests: DaemonSets in one namespace select only their own pods",
  ignore: noKubectl,
  async fn() {
    const sets: { name: string; spec: DaemonSetSpec }[] = [];
    const add = (name: string, objs: Obj[]) =>
      sets.push({ name, spec: daemonSet(objs).ds.spec as DaemonSetSpec });
    for (const dir of await overlayDirs()) add(dir, await render(`manifests/${dir}`));
    // net4 copied as net5 into net4's namespace, only the name prefix changed.
    await withCopy(async (root) => {
      const k = `${root}/overlays/net4/kustomization.yaml`;
      await editYaml(k, (doc) => doc.set("namePrefix", "net5-"));
      add("net4 copied as net5", await render(`${root}/overlays/net4`));
    });
    const matches = (selector: DaemonSetSpec["selector"], labels: Record<string, string>) =>
      Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
    for (const a of sets) {
      assert.equal(a.spec.selector.matchExpressions, undefined, a.name);
      assert.ok(matches(a.spec.selector, a.spec.template.metadata.labels ?? {}), a.name);
      for (const b of sets) {
        if (a === b) continue;
        assert.ok(
          !matches(a.spec.selector, b.spec.template.metadata.labels ?? {}),
          `${a.name} selects the pods of ${b.name}`,
        );
      }
    }
  },
});

Deno.test({
  name: "manifests: every DaemonSet runs on Linux nodes, net4 only on its own",
  ignore: noKubectl,
  async fn() {
    for (
      const [name, objs] of [
        ...await Promise.all(
          (await overlayDirs()).map(async (d) => [d, await render(`manifests/${d}`)] as const),
        ),
        ["node-events", await withEvents()] as const,
        ["net4 with the admission policy", await net4WithAdmissionPolicy()] as const,
      ]
    ) {
      const { spec } = daemonSet(objs);
      assert.equal(spec.nodeSelector?.["kubernetes.io/os"], "linux", name);
    }
    const { spec } = daemonSet(await render("manifests/overlays/net4"));
    assert.equal(spec.nodeSelector?.["network.example.com/net4"], "yes");
  },
});

interface ImageEntry {
  name: string;
  newName?: string;
  newTag?: string;
}

Deno.test({
  name: "manifests: the images entry of an overlay, as README shows it, sets that overlay's image",
  ignore: noKubectl,
  async fn() {
    const readme = await Deno.readTextFile("README.md");
    const block = /```yaml\n(images:\n[\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block, "README shows an images entry");
    const [example, ...more] = (parse(block) as { images: ImageEntry[] }).images;
    assert.equal(more.length, 0);
    const wanted = `${example.newName}:${example.newTag}`;
    const dirs = await overlayDirs();
    const images = async (root: string) =>
      new Map(
        await Promise.all(
          dirs.map(async (d) => [d, daemonSet(await render(`${root}/${d}`)).c.image] as const),
        ),
      );
    const before = await images("manifests");
    for (const d of dirs) {
      const k = parse(await Deno.readTextFile(`manifests/${d}/kustomization.yaml`)) as {
        images?: ImageEntry[];
      };
      assert.deepEqual(k.images?.map((i) => i.name), [example.name], `${d}: one images entry`);
      assert.equal(before.get(d), `${k.images![0].newName}:${k.images![0].newTag}`, d);
      assert.notEqual(before.get(d), wanted);
    }
    // README's entry in one overlay of a copy: that overlay's image, and no other's, changes.
    for (const d of dirs) {
      await withCopy(async (root) => {
        await editYaml(`${root}/${d}/kustomization.yaml`, (doc) => {
          doc.setIn(["images", 0], doc.createNode(example));
        });
        const after = await images(root);
        for (const o of dirs) {
          assert.equal(after.get(o), o === d ? wanted : before.get(o), `${d} edited: ${o}`);
        }
      });
    }
    // README tags and pushes the image build.sh builds.
    const build = await Deno.readTextFile("build.sh");
    assert.match(build, /^\s*-t xcluster-cni:\$version /m);
    assert.ok(readme.includes("./build.sh image"));
    assert.match(readme, /docker tag xcluster-cni:\$v (\S+):\$v\ndocker push \1:\$v\n/);
    assert.equal(/docker push (\S+):\$v/.exec(readme)?.[1], example.newName);
  },
});

Deno.test({
  name: "manifests: NetworkAttachmentDefinition routes cover the README's and the pools' CIDRs",
  ignore: noKubectl,
  async fn() {
    const readme = await Deno.readTextFile("README.md");
    const cidrs = (text: string): Cidr[] =>
      text.split(",").map((t) => {
        const r = parseCidr(t.trim());
        assert.ok(r.ok, t);
        return r.cidr;
      });
    // What each network's CIDR annotation holds: the overlay's pools, README's example value.
    const held = new Map<string, Cidr[]>();
    const hold = (annotation: string, more: Cidr[]) =>
      held.set(annotation, [...held.get(annotation) ?? [], ...more]);
    for (const dir of await overlayDirs()) {
      const cfg = check(await render(`manifests/${dir}`));
      if (cfg.cidrAnnotation) hold(cfg.cidrAnnotation, cfg.clusterCidrs.map((p) => p.cidr));
    }
    for (const m of readme.matchAll(/([a-z0-9.-]+\/[A-Za-z0-9_.-]+)=([0-9a-fA-F.:/,]+)/g)) {
      if (held.has(m[1])) hold(m[1], cidrs(m[2]));
    }
    const routed: { file: string; annotation: string; dst: Cidr[] }[] = [];
    for await (const f of Deno.readDir("manifests/multus")) {
      for (const doc of parseAllDocuments(await Deno.readTextFile(`manifests/multus/${f.name}`))) {
        const ipam = (JSON.parse((doc.toJS() as { spec: { config: string } }).spec.config) as {
          ipam: { annotation: string; routes?: { dst: string }[] };
        }).ipam;
        if (!ipam.routes?.length) continue;
        const dst = cidrs(ipam.routes.map((r) => r.dst).join(","));
        const want = held.get(ipam.annotation) ?? [];
        assert.ok(want.length > 0, `${f.name}: no pool or README example of ${ipam.annotation}`);
        for (const c of want) {
          assert.ok(
            dst.some((d) => d.family === c.family && cidrContains(d, c)),
            `${f.name}: routes ${dst.map(formatCidr)} miss ${formatCidr(c)}`,
          );
        }
        routed.push({ file: f.name, annotation: ipam.annotation, dst });
      }
    }
    assert.ok(routed.length >= 2);
    // Routes of one network never take another network's addresses.
    for (const a of routed) {
      for (const b of routed) {
        if (a.annotation === b.annotation) continue;
        for (const x of a.dst) {
          for (const y of b.dst) {
            assert.ok(
              x.family !== y.family || !cidrsOverlap(x, y),
              `${a.file} ${formatCidr(x)} and ${b.file} ${formatCidr(y)}`,
            );
          }
        }
      }
    }
  },
});
