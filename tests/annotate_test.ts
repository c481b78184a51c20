/**
 * Guarded annotation writes against the embedded API server: the value decided from must
 * still be there, and a change between the read and the patch (409 Conflict on the
 * resourceVersion precondition) is read again, never written over. Needs openssl.
 */
import assert from "node:assert/strict";
import { startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { makeNode } from "../src/devcluster/nodes.ts";
import { annotateNode } from "../src/kube/annotate.ts";
import { KubeClient } from "../src/kube/client.ts";
import { loadKubeconfig } from "../src/kube/kubeconfig.ts";

const KEY = "cidr.example.com/net9";

async function withClient(
  fn: (api: Awaited<ReturnType<typeof startApiServer>>, client: KubeClient) => Promise<void>,
) {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-annotate-" });
  const api = await startApiServer({ kubeconfigPath: `${dir}/kubeconfig` });
  const client = new KubeClient(await loadKubeconfig(`${dir}/kubeconfig`));
  try {
    await fn(api, client);
  } finally {
    client.close();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const value = (api: Awaited<ReturnType<typeof startApiServer>>, node: string) =>
  (api.nodes.get(node)?.metadata.annotations as Record<string, string> | undefined)?.[KEY];

Deno.test("annotate: written only over the value decided from; gone and changed told apart", () =>
  withClient(async (api, client) => {
    api.nodes.create(makeNode({ name: "n1" }));
    assert.equal(
      await annotateNode(client, "n1", KEY, { previous: undefined, value: "10.9.1.0/24" }),
      "written",
    );
    assert.equal(value(api, "n1"), "10.9.1.0/24");
    // Decided from "absent", but a value is there now: nothing written.
    assert.equal(
      await annotateNode(client, "n1", KEY, { previous: undefined, value: "10.9.2.0/24" }),
      "changed",
    );
    assert.equal(value(api, "n1"), "10.9.1.0/24");
    assert.equal(
      await annotateNode(client, "n1", KEY, { value: "10.9.3.0/24", overwrite: true }),
      "written",
    );
    assert.equal(value(api, "n1"), "10.9.3.0/24");
    assert.equal(
      await annotateNode(client, "nope", KEY, { previous: undefined, value: "x" }),
      "gone",
    );
  }));

Deno.test("annotate: a change between the read and the patch wins (409), then decides again", () =>
  withClient(async (api, client) => {
    api.nodes.create(makeNode({ name: "n1" }));
    let patches = 0;
    let conflicts = 0;
    // The real client, with a person's edit slipped in after each read.
    const racing = {
      getNode: async (name: string, opts?: { metadataOnly?: boolean; signal?: AbortSignal }) => {
        const raw = await client.getNode(name, opts);
        if (patches === 0) api.nodes.patch(name, "merge", { metadata: { labels: { edit: "1" } } });
        return raw;
      },
      patchNode: async (...args: Parameters<KubeClient["patchNode"]>) => {
        patches++;
        try {
          return await client.patchNode(...args);
        } catch (e) {
          conflicts++;
          throw e;
        }
      },
    };
    // A label edit: the value is still the one decided from, so the second try writes.
    assert.equal(
      await annotateNode(racing, "n1", KEY, { previous: undefined, value: "10.9.1.0/24" }),
      "written",
    );
    assert.deepEqual([patches, conflicts], [2, 1]);
    assert.equal(value(api, "n1"), "10.9.1.0/24");

    // The person writes the annotation itself between the read and the patch: theirs stays.
    patches = 0;
    conflicts = 0;
    const person = {
      getNode: async (name: string, opts?: { metadataOnly?: boolean; signal?: AbortSignal }) => {
        const raw = await client.getNode(name, opts);
        if (patches === 0) {
          api.nodes.patch(name, "merge", { metadata: { annotations: { [KEY]: "by hand" } } });
        }
        return raw;
      },
      patchNode: racing.patchNode,
    };
    assert.equal(
      await annotateNode(person, "n1", KEY, { previous: "10.9.1.0/24", value: "10.9.1.0/24,x" }),
      "changed",
    );
    assert.deepEqual([patches, conflicts], [1, 1]);
    assert.equal(value(api, "n1"), "by hand");
  }));
