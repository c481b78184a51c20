/**
 * Running a delegated plugin (host-local) as a runtime would: found in CNI_PATH, the same
 * environment, the config on stdin, its stdout and exit status back.
 *
 * @module
 */
import { CniCode, CniError } from "./errors.ts";

/** A lookup that found nothing: NotFound, or a CNI_PATH entry that is not a folder. */
function isMissing(e: unknown): boolean {
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
}

function notInPath(name: string, path: readonly string[]): CniError {
  return new CniError(
    CniCode.DelegateFailed,
    `plugin ${JSON.stringify(name)} not found in CNI_PATH`,
    `searched: ${path.length === 0 ? "(CNI_PATH is empty)" : path.join(":")}`,
  );
}

/**
 * Finds plugin `name` in the CNI_PATH folders, first match wins. Throws code 101 naming
 * the folders searched. Synchronous, as the rest of a CNI call's I/O (readAllStdin in skel.ts
 * says why).
 */
export function findPlugin(name: string, path: readonly string[]): string {
  for (const dir of path) {
    const file = `${dir}/${name}`;
    try {
      if (Deno.statSync(file).isFile) return file;
    } catch (e) {
      if (!isMissing(e)) throw e;
    }
  }
  throw notInPath(name, path);
}

/** What a delegated plugin answered. */
export interface DelegateOutput {
  /** Exit status. */
  code: number;
  stdout: string;
}

/**
 * Runs plugin `name` from the first CNI_PATH folder that has it, as a runtime would: our
 * environment plus `env` overrides, `stdin` as its stdin, its stderr to ours. The spawn
 * itself is the lookup: a stat before it would cost every pod a file system call. Throws
 * code 101 naming the folders searched when no folder has it.
 *
 * @example
 * ```ts
 * const out = await execPluginInPath("host-local", ["/opt/cni/bin"], config);
 * ```
 */
export async function execPluginInPath(
  name: string,
  path: readonly string[],
  stdin: string,
  env: Record<string, string> = {},
): Promise<DelegateOutput> {
  for (const dir of path) {
    const file = `${dir}/${name}`;
    let child: Deno.ChildProcess;
    try {
      child = new Deno.Command(file, { env, stdin: "piped", stdout: "piped", stderr: "inherit" })
        .spawn();
    } catch (e) {
      if (isMissing(e)) continue;
      throw new CniError(CniCode.DelegateFailed, `cannot run ${file}: ${(e as Error).message}`);
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
  throw notInPath(name, path);
}
