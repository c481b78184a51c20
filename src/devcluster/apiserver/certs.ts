/**
 * A CA and a server certificate for the embedded API server, made with openssl.
 *
 * @module
 */

/** PEM texts of the generated CA and server certificate. */
export interface ServerCerts {
  caPem: string;
  certPem: string;
  keyPem: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output().catch((e) => {
      throw new Error(`openssl not available (Debian package openssl): ${(e as Error).message}`);
    });
  if (out.code !== 0) {
    throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/**
 * Generates a CA and a server certificate for `hosts` (IP addresses or DNS names) in
 * `dir`, reusing them when already there.
 */
export async function serverCerts(dir: string, hosts: string[]): Promise<ServerCerts> {
  await Deno.mkdir(dir, { recursive: true });
  const read = async () => ({
    caPem: await Deno.readTextFile(`${dir}/ca.crt`),
    certPem: await Deno.readTextFile(`${dir}/server.crt`),
    keyPem: await Deno.readTextFile(`${dir}/server.key`),
  });
  try {
    return await read();
  } catch { /* not made yet */ }
  const san = [...new Set(["127.0.0.1", "localhost", ...hosts])]
    .map((h) => (/^[0-9.]+$/.test(h) || h.includes(":") ? `IP:${h}` : `DNS:${h}`)).join(",");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl([
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.crt",
    "-days",
    "3650",
    "-subj",
    "/CN=xcluster-cni devcluster CA",
  ], dir);
  await openssl([
    "req",
    ...ec,
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=kube-apiserver",
  ], dir);
  await Deno.writeTextFile(
    `${dir}/ext.cnf`,
    `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n`,
  );
  await openssl([
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.crt",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.crt",
    "-days",
    "3650",
    "-extfile",
    "ext.cnf",
  ], dir);
  return await read();
}
