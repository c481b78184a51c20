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
