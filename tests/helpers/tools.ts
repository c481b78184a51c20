/** Programs the tests run: kubectl where the machine has it, and this project's main.ts. */

/** Where kubectl is on these machines. */
export const KUBECTL = "/usr/bin/kubectl";

/** Why kubectl tests cannot run, or false when they can. */
export function kubectlMissing(): string | false {
  try {
    Deno.statSync(KUBECTL);
    return false;
  } catch {
    return `needs ${KUBECTL}`;
  }
}

/** Runs `deno run -A main.ts ARGS` with `env` added; returns exit code and output. */
export async function runMain(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; out: string; err: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    out: new TextDecoder().decode(out.stdout),
    err: new TextDecoder().decode(out.stderr),
  };
}

/**
 * Writes a copy of the embedded API server's kubeconfig (`from`, JSON) to `to` whose user
 * reads its token from `tokenFile` instead of carrying it.
 */
export async function kubeconfigWithTokenFile(
  from: string,
  to: string,
  tokenFile: string,
): Promise<void> {
  const doc = JSON.parse(await Deno.readTextFile(from));
  const user = doc.users[0].user;
  if (typeof user.token !== "string") throw new Error(`${from}: no token to replace`);
  doc.users[0].user = { tokenFile };
  await Deno.writeTextFile(to, JSON.stringify(doc));
}

/**
 * Runs a program with a clean environment (PATH kept unless `env` has one) and `stdin`; its
 * exit status, stdout and stderr. A program may answer before reading all of its stdin (a CNI
 * plugin asked for its VERSION, or given an unknown command): the broken pipe is then no
 * finding.
 */
export async function execWithStdin(
  file: string,
  env: Record<string, string>,
  stdin: string,
  args: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(file, {
    args,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", ...env },
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  try {
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  } catch (e) {
    if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
  }
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}
