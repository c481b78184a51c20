import assert from "node:assert/strict";
import { loadKubeAccess, loadKubeconfig } from "../src/kube/kubeconfig.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-kubeconfig-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const b64 = (s: string) => btoa(s);

Deno.test("kubeconfig: current context, data fields, token", () =>
  withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/config`,
      `
apiVersion: v1
kind: Config
current-context: second
clusters:
- name: one
  cluster: { server: "https://10.0.0.1:6443" }
- name: two
  cluster:
    server: "https://127.0.0.1:7443/"
    certificate-authority-data: ${b64("CA-PEM")}
users:
- name: u2
  user:
    token: abc
    client-certificate-data: ${b64("CERT")}
    client-key-data: ${b64("KEY")}
contexts:
- name: first
  context: { cluster: one }
- name: second
  context: { cluster: two, user: u2 }
`,
    );
    const a = await loadKubeconfig(`${dir}/config`);
    assert.equal(a.server, "https://127.0.0.1:7443");
    assert.equal(a.caPem, "CA-PEM");
    assert.equal(a.clientCertPem, "CERT");
    assert.equal(a.clientKeyPem, "KEY");
    assert.equal(await a.token(), "abc");
    assert.equal(a.insecureSkipTLSVerify, false);
  }));

Deno.test("kubeconfig: files relative to the kubeconfig, tokenFile re-read, insecure, http", () =>
  withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ca.crt`, "CA-FILE");
    await Deno.writeTextFile(`${dir}/token`, "t1\n");
    await Deno.writeTextFile(
      `${dir}/config`,
      `
current-context: c
clusters:
- name: k
  cluster: { server: "http://127.0.0.1:8080", certificate-authority: ca.crt, insecure-skip-tls-verify: true }
users:
- name: u
  user: { tokenFile: token }
contexts:
- name: c
  context: { cluster: k, user: u }
`,
    );
    const a = await loadKubeconfig(`${dir}/config`);
    assert.equal(a.caPem, "CA-FILE");
    assert.equal(a.insecureSkipTLSVerify, true);
    assert.equal(a.server, "http://127.0.0.1:8080");
    assert.equal(await a.token(), "t1");
    await Deno.writeTextFile(`${dir}/token`, "t2\n");
    assert.equal(await a.token(), "t2", "rotated token read on the next request");
  }));

Deno.test("kubeconfig: errors name the file and the field", () =>
  withDir(async (dir) => {
    const cases: [string, RegExp][] = [
      ["clusters: [{ name: k, cluster: { server: 'not a url' } }]", /clusters\.0\.cluster\.server/],
      [
        "current-context: nope\ncontexts: [{ name: c, context: { cluster: k } }]",
        /current-context "nope" not found/,
      ],
      [
        "contexts: [{ name: c, context: { cluster: k, user: u } }]\nclusters: [{ name: k, cluster: { server: 'https://a:1' } }]\nusers: [{ name: u, user: { client-key-data: '%%%' , client-certificate-data: 'QQ==' } }]",
        /users\[0\]\.user\.client-key-data: not base64/,
      ],
      [": : :", /not YAML/],
      [
        "contexts: [{ name: c, context: { cluster: k } }, { name: d, context: { cluster: k } }]",
        /current-context not set, and 2 contexts to choose from/,
      ],
    ];
    for (const [text, re] of cases) {
      await Deno.writeTextFile(`${dir}/bad`, text);
      await assert.rejects(() => loadKubeconfig(`${dir}/bad`), (e: Error) => {
        assert.match(e.message, re);
        assert.ok(e.message.includes(`${dir}/bad`), e.message);
        return true;
      });
    }
  }));

Deno.test("autodetect: in-cluster first (IPv6 host bracketed), then KUBECONFIG", () =>
  withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/ca.crt`, "SA-CA");
    await Deno.writeTextFile(`${dir}/token`, "sa1");
    const env = { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" };
    const a = await loadKubeAccess({ env, serviceAccountDir: dir });
    assert.equal(a.server, "https://[fd00::1]:443");
    assert.equal(a.caPem, "SA-CA");
    assert.equal(await a.token(), "sa1");
    await Deno.writeTextFile(`${dir}/token`, "sa2");
    assert.equal(await a.token(), "sa2");

    await Deno.writeTextFile(
      `${dir}/kc`,
      `
clusters: [{ name: k, cluster: { server: "https://127.0.0.9:1" } }]
contexts: [{ name: c, context: { cluster: k } }]
`,
    );
    const b = await loadKubeAccess({ env: { KUBECONFIG: `${dir}/kc:/nonexistent` } });
    assert.equal(b.server, "https://127.0.0.9:1");
    await assert.rejects(() => loadKubeAccess({ env: {} }), /no Kubernetes API found/);
  }));
