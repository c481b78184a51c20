/** kubectl drives the embedded API server: the judge of its fidelity. Needs /usr/bin/kubectl. */
import assert from "node:assert/strict";
import { KUBECTL, kubectlMissing } from "./helpers/tools.ts";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { nodeEvent } from "../src/events.ts";
import { pollUntil } from "./helpers/netns.ts";

const noKubectl = !!kubectlMissing();

/** A `kubectl get -w` running against `kubeconfig`, read until its output matches. */
class KubectlWatch {
  readonly #child: Deno.ChildProcess;
  readonly #reader: ReadableStreamDefaultReader<string>;
  #seen = "";

  constructor(kubeconfig: string, args: string[]) {
    this.#child = new Deno.Command(KUBECTL, {
      args: ["--kubeconfig", kubeconfig, ...args],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** Reads until all the output so far matches `re`. */
  async readUntil(re: RegExp): Promise<void> {
    while (!re.test(this.#seen)) {
      const { value, done } = await this.#reader.read();
      if (done) break;
      this.#seen += value;
    }
    assert.match(this.#seen, re);
  }

  /** Stops reading and ends kubectl (again: nothing more). */
  async stop(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    try {
      this.#child.kill();
    } catch { /* ended when its output was closed, or stopped before */ }
    await this.#child.status;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** A request the server answered with an error status. */
interface Refused {
  method: string;
  path: string;
  status: number;
}

/**
 * An embedded API server with its kubeconfig in a folder of its own; both go on disposal.
 * `refused` collects the requests answered with a status of 400 or more.
 */
async function kubectlServer(): Promise<
  { api: ApiServer; dir: string; kubeconfig: string; refused: Refused[] } & AsyncDisposable
> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-kubectl-" });
  const kubeconfig = `${dir}/kubeconfig`;
  const refused: Refused[] = [];
  const api = await startApiServer({
    kubeconfigPath: kubeconfig,
    onResponse(method, url, status) {
      if (status >= 400) refused.push({ method, path: url.pathname + url.search, status });
    },
  });
  return {
    api,
    dir,
    kubeconfig,
    refused,
    async [Symbol.asyncDispose]() {
      await api.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs kubectl against `kubeconfig`: `kubectl` gives the outcome, `ok` the output of a success. */
function runner(kubeconfig: string) {
  const kubectl = async (...args: string[]) => {
    const out = await new Deno.Command(KUBECTL, {
      args: ["--kubeconfig", kubeconfig, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      out: new TextDecoder().decode(out.stdout),
      err: new TextDecoder().decode(out.stderr),
    };
  };
  const ok = async (...args: string[]) => {
    const r = await kubectl(...args);
    assert.equal(r.code, 0, `kubectl ${args.join(" ")}: ${r.err}`);
    return r.out;
  };
  return { kubectl, ok };
}

Deno.test({
  name: "kubectl: get, yaml, watch, annotate, label, create, replace conflict, delete",
  ignore: noKubectl,
  async fn() {
    await using server = await kubectlServer();
    const { api, dir, kubeconfig } = server;
    const { kubectl, ok } = runner(kubeconfig);
    api.nodes.create(makeNode({
      name: "vm-001",
      podCIDRs: ["10.244.1.0/24"],
      internalIPs: ["192.168.7.1"],
    }));
    // Served as a Table: kubectl prints the server's columns and cells.
    assert.match(
      await ok("get", "nodes"),
      /^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s*\nvm-001\s+Ready\s+<none>\s+\d+s\s+v1\.32\.0\s*\n$/,
    );
    assert.match(
      await ok("get", "nodes", "-o", "wide"),
      /INTERNAL-IP\s+EXTERNAL-IP\s+OS-IMAGE[^\n]*\nvm-001\s+Ready[^\n]*192\.168\.7\.1\s+<none>\s+Debian/,
    );
    assert.match(
      await ok("get", "node", "vm-001", "-o", "yaml"),
      /podCIDRs:\n\s*- 10\.244\.1\.0\/24/,
    );

    await using watch = new KubectlWatch(kubeconfig, ["get", "nodes", "-w", "-o", "name"]);
    await watch.readUntil(/node\/vm-001/);
    await pollUntil(() => api.nodes.watcherCount() > 0, { message: "kubectl watching" });

    await ok("annotate", "node", "vm-001", "cidr.example.com/net3=10.55.1.0/24", "--overwrite");
    const ann = () => api.nodes.get("vm-001")!.metadata.annotations as Record<string, string>;
    assert.equal(ann()["cidr.example.com/net3"], "10.55.1.0/24");
    await ok("annotate", "node", "vm-001", "cidr.example.com/net3-");
    assert.equal(ann()["cidr.example.com/net3"], undefined);
    await ok("label", "node", "vm-001", "zone=a");
    assert.equal(api.nodes.get("vm-001")!.metadata.labels?.zone, "a");

    // The watch saw the changes as lines of their own.
    await watch.readUntil(/(node\/vm-001\n){4}/);
    await watch.stop();

    await Deno.writeTextFile(
      `${dir}/node.yaml`,
      "apiVersion: v1\nkind: Node\nmetadata:\n  name: vm-002\n",
    );
    await ok("create", "-f", `${dir}/node.yaml`);
    assert.ok(api.nodes.get("vm-002"));
    const dup = await kubectl("create", "-f", `${dir}/node.yaml`);
    assert.notEqual(dup.code, 0);
    assert.match(dup.err, /AlreadyExists|already exists/);

    await Deno.writeTextFile(
      `${dir}/stale.yaml`,
      'apiVersion: v1\nkind: Node\nmetadata:\n  name: vm-002\n  resourceVersion: "1"\n',
    );
    const stale = await kubectl("replace", "-f", `${dir}/stale.yaml`);
    assert.notEqual(stale.code, 0);
    assert.match(stale.err, /Conflict|modified/);

    await ok("delete", "node", "vm-002");
    assert.equal(api.nodes.get("vm-002"), undefined);
    const missing = await kubectl("delete", "node", "vm-002");
    assert.match(missing.err, /NotFound|not found/);
  },
});

Deno.test({
  name: "kubectl: get nodes -w prints a row per change from the server's Table watch",
  ignore: noKubectl,
  async fn() {
    await using server = await kubectlServer();
    const { api, kubeconfig } = server;
    api.nodes.create(makeNode({ name: "vm-001" }));
    await using watch = new KubectlWatch(kubeconfig, ["get", "nodes", "-w"]);
    await watch.readUntil(/^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s*\nvm-001\s+Ready\s+<none>/);
    await pollUntil(() => api.nodes.watcherCount() > 0, { message: "kubectl watching" });
    api.nodes.patch("vm-001", "merge", {
      metadata: { labels: { "node-role.kubernetes.io/worker": "" } },
    });
    await watch.readUntil(/\nvm-001\s+Ready\s+worker\s/);
    api.nodes.patch("vm-001", "merge", { spec: { unschedulable: true } });
    await watch.readUntil(/\nvm-001\s+Ready,SchedulingDisabled\s+worker\s/);
  },
});

Deno.test({
  name: "kubectl: leases: get -n and -A, describe, create -f (strict fields), delete",
  ignore: noKubectl,
  async fn() {
    await using server = await kubectlServer();
    const { api, dir, kubeconfig } = server;
    const { kubectl, ok } = runner(kubeconfig);
    api.leases.create("kube-system", {
      metadata: { name: "xcluster-net3" },
      spec: {
        holderIdentity: "vm-001",
        leaseDurationSeconds: 15,
        acquireTime: "2026-01-01T00:00:00.000000Z",
        renewTime: "2026-01-01T00:00:10.500000Z",
        leaseTransitions: 2,
      },
    });
    api.leases.create("default", { metadata: { name: "free" } });

    assert.match(
      await ok("get", "lease", "-n", "kube-system"),
      /^NAME\s+HOLDER\s+AGE\s*\nxcluster-net3\s+vm-001\s+\d+s\s*\n$/,
    );
    // kubectl adds the namespace column from the rows' objects.
    assert.match(
      await ok("get", "leases", "-A"),
      /^NAMESPACE\s+NAME\s+HOLDER\s+AGE\s*\ndefault\s+free\s+\d+s\s*\nkube-system\s+xcluster-net3\s+vm-001\s+\d+s\s*\n$/,
    );
    assert.equal(
      await ok("get", "lease", "-n", "default", "-o", "name"),
      "lease.coordination.k8s.io/free\n",
    );
    const described = await ok("describe", "lease", "xcluster-net3", "-n", "kube-system");
    assert.match(described, /^Name:\s+xcluster-net3\n/);
    assert.match(described, /\nNamespace:\s+kube-system\n/);
    assert.match(described, /\n\s+Holder Identity:\s+vm-001\n/);
    assert.match(described, /\n\s+Lease Duration Seconds:\s+15\n/);
    assert.match(described, /\n\s+Renew Time:\s+2026-01-01T00:00:10\.500000Z\n/);
    assert.match(described, /\n\s+Lease Transitions:\s+2\n/);

    await Deno.writeTextFile(
      `${dir}/lease.yaml`,
      "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: made\n" +
        "  namespace: kube-system\nspec:\n  holderIdentity: vm-002\n  leaseDurationSeconds: 10\n",
    );
    assert.match(
      await ok("create", "-f", `${dir}/lease.yaml`),
      /lease\.coordination\.k8s\.io\/made created/,
    );
    const made = api.leases.get("kube-system", "made");
    assert.equal(made?.spec.holderIdentity, "vm-002");
    assert.equal(made?.spec.leaseDurationSeconds, 10);
    const dup = await kubectl("create", "-f", `${dir}/lease.yaml`);
    assert.notEqual(dup.code, 0);
    assert.match(dup.err, /AlreadyExists|already exists/);
    // kubectl validates strictly, on the server: an unknown field is refused.
    await Deno.writeTextFile(
      `${dir}/typo.yaml`,
      "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: typo\n" +
        "  namespace: kube-system\nspec:\n  holder: vm-002\n",
    );
    const typo = await kubectl("create", "-f", `${dir}/typo.yaml`);
    assert.notEqual(typo.code, 0);
    assert.match(typo.err, /unknown field "spec\.holder"/);
    assert.equal(api.leases.get("kube-system", "typo"), undefined);

    assert.match(
      await ok("delete", "lease", "made", "-n", "kube-system"),
      /lease\.coordination\.k8s\.io "made" deleted/,
    );
    assert.equal(api.leases.get("kube-system", "made"), undefined);
    const missing = await kubectl("delete", "lease", "made", "-n", "kube-system");
    assert.notEqual(missing.code, 0);
    assert.match(missing.err, /NotFound|not found/);
    assert.deepEqual(api.leases.list().map((l) => `${l.metadata.namespace}/${l.metadata.name}`), [
      "default/free",
      "kube-system/xcluster-net3",
    ]);
  },
});

/** POSTs an Event through the API, as a client does, and checks that it was stored. */
async function postEvent(api: ApiServer, namespace: string, event: unknown): Promise<void> {
  const http = Deno.createHttpClient({ caCerts: api.caPem ? [api.caPem] : [] });
  try {
    const res = await fetch(`${api.url}/api/v1/namespaces/${namespace}/events`, {
      method: "POST",
      client: http,
      headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json" },
      body: JSON.stringify(event),
    });
    const text = await res.text();
    assert.equal(res.status, 201, text);
  } finally {
    http.close();
  }
}

Deno.test({
  name: "kubectl: get events -A, -n, -o wide, --field-selector, delete: the server's Table",
  ignore: noKubectl,
  async fn() {
    await using server = await kubectlServer();
    const { api, kubeconfig, refused } = server;
    const { ok } = runner(kubeconfig);
    // The daemon's own Event, as it posts it for a CIDR it refuses.
    const daemonEvent = nodeEvent(
      {
        node: "vm-002",
        kind: "refused",
        field: "annotation",
        value: "10.0.0.0/8",
        reason: "too wide",
      },
      { protocol: 202, host: "vm-001" },
    );
    assert.ok(daemonEvent);
    await postEvent(api, "default", daemonEvent);
    await postEvent(api, "kube-system", {
      metadata: { name: "net3.1" },
      involvedObject: { kind: "Lease", namespace: "kube-system", name: "xcluster-net3" },
      reason: "LeaderElection",
      message: "vm-001 became leader  ",
      type: "Normal",
      source: { component: "xcluster-cni" },
      firstTimestamp: new Date(Date.now() - 3 * 60_000).toISOString(),
      lastTimestamp: new Date(Date.now() - 60_000).toISOString(),
      count: 4,
    });

    const all = await ok("get", "events", "-A");
    assert.match(
      all,
      /^NAMESPACE\s+LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\s*\n/,
    );
    assert.match(
      all,
      /\ndefault\s+\d+s\s+Warning\s+NetworkCIDRRefused\s+node\/vm-002\s+xcluster-cni \(protocol 202\): [^\n]*10\.0\.0\.0\/8/,
    );
    assert.match(
      all,
      /\nkube-system\s+(60|61|62)s\s+Normal\s+LeaderElection\s+lease\/xcluster-net3\s+vm-001 became leader\n$/,
    );
    const inDefault = await ok("get", "events", "-n", "default");
    assert.match(inDefault, /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+MESSAGE\s*\n\d+s\s+Warning\s+/);
    assert.doesNotMatch(inDefault, /LeaderElection/);

    const wide = await ok("get", "ev", "-n", "kube-system", "-o", "wide");
    assert.match(
      wide,
      /^LAST SEEN\s+TYPE\s+REASON\s+OBJECT\s+SUBOBJECT\s+SOURCE\s+MESSAGE\s+FIRST SEEN\s+COUNT\s+NAME\s*\n/,
    );
    assert.match(wide, /\sxcluster-cni\s+vm-001 became leader\s+3m(\ds)?\s+4\s+net3\.1\n$/);

    const warnings = await ok(
      "get",
      "events",
      "-A",
      "--field-selector",
      "type=Warning",
      "-o",
      "name",
    );
    assert.equal(warnings, `event/${(daemonEvent.metadata as { name: string }).name}\n`);
    assert.deepEqual(refused, [], "every request was served");
    await ok("delete", "event", "net3.1", "-n", "kube-system");
    assert.equal(api.events.length, 1);
    // kubectl waits for the object to be gone: its GETs after the delete find nothing.
    assert.ok(refused.length > 0);
    for (const r of refused) {
      assert.deepEqual(r, {
        method: "GET",
        path: "/api/v1/namespaces/kube-system/events/net3.1",
        status: 404,
      });
    }
  },
});

Deno.test({
  name: "kubectl: describe node: annotations, addresses, no pods, and the node's own events",
  ignore: noKubectl,
  async fn() {
    await using server = await kubectlServer();
    const { api, kubeconfig, refused } = server;
    const { ok } = runner(kubeconfig);
    const node = api.nodes.create(makeNode({
      name: "vm-001",
      podCIDRs: ["10.244.1.0/24"],
      internalIPs: ["192.168.7.1"],
      annotations: { "cidr.example.com/net3": "10.55.1.0/24" },
    }));
    api.nodes.create(makeNode({ name: "vm-002" }));
    const event = (name: string, node: string, uid: string | undefined, reason: string) => ({
      metadata: { name },
      involvedObject: { kind: "Node", name: node, ...(uid === undefined ? {} : { uid }) },
      reason,
      message: `${reason} on ${node}`,
      type: "Warning",
      source: { component: "xcluster-cni", host: node },
      firstTimestamp: new Date().toISOString(),
      lastTimestamp: new Date().toISOString(),
      count: 1,
    });
    // kubectl looks for the node's Events by its UID, then by its name in the UID field (as
    // the kubelet records them): both are found, Events of another node are not.
    await postEvent(api, "default", event("a", "vm-001", node.metadata.uid, "ByUID"));
    await postEvent(api, "default", event("b", "vm-001", "vm-001", "ByName"));
    await postEvent(api, "default", event("c", "vm-002", "vm-002", "OtherNode"));

    const described = await ok("describe", "node", "vm-001");
    assert.match(described, /^Name:\s+vm-001\n/);
    assert.match(described, /\nAnnotations:\s+cidr\.example\.com\/net3: 10\.55\.1\.0\/24\n/);
    assert.match(
      described,
      /\nAddresses:\n\s+InternalIP:\s+192\.168\.7\.1\n\s+Hostname:\s+vm-001\n/,
    );
    assert.match(described, /\nPodCIDRs:\s+10\.244\.1\.0\/24\n/);
    assert.match(described, /\nNon-terminated Pods:\s+\(0 in total\)\n/);
    assert.match(described, /\nEvents:\n\s+Type\s+Reason\s+Age\s+From\s+Message\n/);
    assert.match(described, /\n\s+Warning\s+ByName\s+\S+\s+xcluster-cni\s+ByName on vm-001\n/);
    assert.match(described, /\n\s+Warning\s+ByUID\s+\S+\s+xcluster-cni\s+ByUID on vm-001\n/);
    assert.doesNotMatch(described, /OtherNode/);
    // Everything kubectl asked for is served; the node's heartbeat Lease is not there, as
    // in a cluster without kubelets (kubectl prints that and goes on).
    assert.deepEqual(refused, [{
      method: "GET",
      path: "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vm-001",
      status: 404,
    }]);

    const quiet = await ok("describe", "node", "vm-002", "--show-events=false");
    assert.doesNotMatch(quiet, /OtherNode/);
    assert.match(await ok("describe", "node", "vm-002"), /\n\s+Warning\s+OtherNode\s+/);
  },
});
