/**
 * Running a delegated plugin (host-local) as a runtime would: found in CNI_PATH, the same
 * environment, the config on stdin, its stdout and exit status back.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";

/**
 * Finds plugin `name` in the CNI_PATH folders, first match wins. Throws code 101 naming
 * the folders searched. Synchronous: see {@link readAllStdin} in skel.ts for why.
 */
export function findPlugin(name: string, path: readonly string[]): string {
  for (const dir of path) {
    const file = `${dir}/${name}`;
    try {
      const st = Deno.statSync(file);
      if (st.isFile) return file;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) {
        throw e;
      }
    }
  }
  throw new CniError(
    CniCode.DelegateFailed,
    `plugin ${JSON.stringify(name)} not found in CNI_PATH`,
    `searched: ${path.length === 0 ? "(CNI_PATH is empty)" : path.join(":")}`,
  );
}

/** What a delegated plugin answered. */
export interface DelegateOutput {
  /** Exit status. */
  code: number;
  stdout: string;
}

/**
 * Runs `file` with `stdin`, our environment plus `env` overrides; stderr goes to ours.
 *
 * @example
 * ```ts
 * const out = await execPlugin("/opt/cni/bin/host-local", config);
 * ```
 */
export async function execPlugin(
  file: string,
  stdin: string,
  env: Record<string, string> = {},
): Promise<DelegateOutput> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(file, {
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    throw new CniError(
      CniCode.DelegateFailed,
      `cannot run ${file}: ${(e as Error).message}`,
    );
  }
  const writer = child.stdin.getWriter();
  try {
    await writer.write(new TextEncoder().encode(stdin));
    await writer.close();
  } catch (e) {
    // A plugin may exit without reading all of stdin (VERSION needs none of it): its
    // answer and exit status still count, not our broken pipe.
    if (!(e instanceof Deno.errors.BrokenPipe)) throw e;
  }
  const out = await child.output();
  return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
}
