/**
 * Where the Kubernetes API is and how to authenticate: in-cluster service account, else a
 * kubeconfig (`KUBECONFIG` or ~/.kube/config). Token files are re-read on every request so
 * rotated projected tokens keep working.
 *
 * @module
 */
import { z } from "zod";
import { findApiCredentials, SERVICE_ACCOUNT_DIR } from "../api_credentials.ts";

export { SERVICE_ACCOUNT_DIR };

/** Everything needed to talk to one API server. */
export interface KubeAccess {
  /** Base URL without a trailing slash, e.g. `https://10.96.0.1:443`. */
  readonly server: string;
  readonly caPem?: string;
  readonly insecureSkipTLSVerify: boolean;
  readonly clientCertPem?: string;
  readonly clientKeyPem?: string;
  /** The bearer token for the next request (token files are read each time). */
  token(): Promise<string | undefined>;
  /** Where the credentials came from, for logs and errors. */
  readonly source: string;
}

const ClusterSchema = z.object({
  server: z.string().url(),
  "certificate-authority": z.string().optional(),
  "certificate-authority-data": z.string().optional(),
  "insecure-skip-tls-verify": z.boolean().optional(),
});

const UserSchema = z.object({
  token: z.string().optional(),
  tokenFile: z.string().optional(),
  "client-certificate": z.string().optional(),
  "client-certificate-data": z.string().optional(),
  "client-key": z.string().optional(),
  "client-key-data": z.string().optional(),
});

const KubeconfigSchema = z.object({
  "current-context": z.string().optional(),
  clusters: z.array(z.object({ name: z.string(), cluster: ClusterSchema })).nullish(),
  users: z.array(z.object({ name: z.string(), user: UserSchema.nullish() })).nullish(),
  contexts: z.array(z.object({
    name: z.string(),
    context: z.object({ cluster: z.string(), user: z.string().optional() }),
  })).nullish(),
});

function fromBase64(data: string, where: string): string {
  try {
    return new TextDecoder().decode(Uint8Array.from(atob(data.trim()), (c) => c.charCodeAt(0)));
  } catch {
    throw new Error(`${where}: not base64`);
  }
}

async function readFile(path: string, where: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`${where}: cannot read ${path}: ${(e as Error).message}`);
  }
}

function tokenFromFile(path: string, where: string): () => Promise<string> {
  return async () => (await readFile(path, where)).trim();
}

/**
 * A kubeconfig's document. JSON (which is YAML) is read without loading the YAML parser,
 * whose modules cost about 30 ms of start-up.
 */
async function parseDocument(text: string): Promise<unknown> {
  try {
    return JSON.parse(text);
  } catch {
    // YAML, as most kubeconfigs are.
  }
  const { parse } = await import("yaml");
  return parse(text);
}

/** Reads a kubeconfig file into {@link KubeAccess}; errors name the file and the field. */
export async function loadKubeconfig(path: string): Promise<KubeAccess> {
  const text = await readFile(path, `kubeconfig ${path}`);
  const where = (field: string) => `kubeconfig ${path}: ${field}`;
  let doc: unknown;
  try {
    doc = await parseDocument(text);
  } catch (e) {
    throw new Error(`kubeconfig ${path}: not YAML: ${(e as Error).message}`);
  }
  const parsed = KubeconfigSchema.safeParse(doc);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(where(`${issue.path.join(".")}: ${issue.message}`));
  }
  const cfg = parsed.data;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : ".";
  const rel = (p: string) => (p.startsWith("/") ? p : `${dir}/${p}`);
  const contexts = cfg.contexts ?? [];
  if (!cfg["current-context"] && contexts.length > 1) {
    // kubectl refuses too: taking the first would be a guess at which cluster is meant.
    throw new Error(
      where(`current-context not set, and ${contexts.length} contexts to choose from`),
    );
  }
  const ctxIndex = cfg["current-context"]
    ? contexts.findIndex((c) => c.name === cfg["current-context"])
    : 0;
  const ctx = contexts[ctxIndex];
  if (!ctx) {
    throw new Error(
      where(`current-context ${JSON.stringify(cfg["current-context"] ?? "")} not found`),
    );
  }
  const clusters = cfg.clusters ?? [];
  const ci = clusters.findIndex((c) => c.name === ctx.context.cluster);
  if (ci < 0) {
    throw new Error(
      where(
        `contexts[${ctxIndex}].context.cluster ${JSON.stringify(ctx.context.cluster)} not found`,
      ),
    );
  }
  const cluster = clusters[ci].cluster;
  const users = cfg.users ?? [];
  const ui = users.findIndex((u) => u.name === ctx.context.user);
  const user = ui >= 0 ? users[ui].user ?? {} : {};
  const uf = (f: string) => where(`users[${ui}].user.${f}`);

  const caPem = cluster["certificate-authority-data"]
    ? fromBase64(
      cluster["certificate-authority-data"],
      where(`clusters[${ci}].cluster.certificate-authority-data`),
    )
    : cluster["certificate-authority"]
    ? await readFile(
      rel(cluster["certificate-authority"]),
      where(`clusters[${ci}].cluster.certificate-authority`),
    )
    : undefined;
  const clientCertPem = user["client-certificate-data"]
    ? fromBase64(user["client-certificate-data"], uf("client-certificate-data"))
    : user["client-certificate"]
    ? await readFile(rel(user["client-certificate"]), uf("client-certificate"))
    : undefined;
  const clientKeyPem = user["client-key-data"]
    ? fromBase64(user["client-key-data"], uf("client-key-data"))
    : user["client-key"]
    ? await readFile(rel(user["client-key"]), uf("client-key"))
    : undefined;
  if ((clientCertPem === undefined) !== (clientKeyPem === undefined)) {
    throw new Error(uf("client-certificate and client-key go together"));
  }
  const staticToken = user.token;
  const tokenFile = user.tokenFile ? rel(user.tokenFile) : undefined;
  const token = tokenFile
    ? tokenFromFile(tokenFile, uf("tokenFile"))
    : () => Promise.resolve(staticToken);
  return {
    server: cluster.server.replace(/\/+$/, ""),
    caPem,
    insecureSkipTLSVerify: cluster["insecure-skip-tls-verify"] ?? false,
    clientCertPem,
    clientKeyPem,
    token,
    source: `kubeconfig ${path}`,
  };
}

/** The service account's access to the API at `endpoint`. */
async function serviceAccountAccess(
  endpoint: { host: string; port: string },
  dir: string,
): Promise<KubeAccess> {
  const { host, port } = endpoint;
  const h = host.includes(":") ? `[${host}]` : host;
  return {
    server: `https://${h}:${port}`,
    caPem: await readFile(`${dir}/ca.crt`, "in-cluster service account"),
    insecureSkipTLSVerify: false,
    token: tokenFromFile(`${dir}/token`, "in-cluster service account"),
    source: "in-cluster service account",
  };
}

/**
 * Finds the API where {@link findApiCredentials} says: an explicit kubeconfig path, else
 * in-cluster, else `KUBECONFIG` (its first file), else ~/.kube/config.
 */
export async function loadKubeAccess(
  opts: {
    kubeconfig?: string;
    env?: Record<string, string | undefined>;
    serviceAccountDir?: string;
  } = {},
): Promise<KubeAccess> {
  const env = opts.env ?? Deno.env.toObject();
  const creds = findApiCredentials(opts.kubeconfig, env);
  switch (creds.kind) {
    case "kubeconfig":
      return await loadKubeconfig(creds.path);
    case "in-cluster":
      return await serviceAccountAccess(creds, opts.serviceAccountDir ?? SERVICE_ACCOUNT_DIR);
    case "none":
      throw new Error("no Kubernetes API found: not in a pod, no KUBECONFIG, no ~/.kube/config");
  }
}
