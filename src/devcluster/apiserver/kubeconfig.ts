/**
 * The kubeconfig the embedded API server writes for kubectl and the daemon, as JSON: a
 * kubeconfig is YAML and JSON is YAML, and the daemon reads JSON without loading a YAML
 * parser.
 *
 * @module
 */

/** Writes a standard kubeconfig (atomically) for `server` with a bearer token. */
export async function writeKubeconfig(
  path: string,
  opts: { server: string; token: string; caPem?: string },
): Promise<void> {
  const cluster: Record<string, unknown> = { server: opts.server };
  if (opts.caPem) cluster["certificate-authority-data"] = btoa(opts.caPem);
  const doc = {
    apiVersion: "v1",
    kind: "Config",
    "current-context": "devcluster",
    clusters: [{ name: "devcluster", cluster }],
    users: [{ name: "devcluster-admin", user: { token: opts.token } }],
    contexts: [{
      name: "devcluster",
      context: { cluster: "devcluster", user: "devcluster-admin" },
    }],
  };
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(doc, null, 2) + "\n", { mode: 0o600 });
  await Deno.rename(tmp, path);
}
