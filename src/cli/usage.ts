/**
 * Usage errors of the subcommands: thrown by a command that cannot make sense of its
 * arguments; main.ts prints the message and the command's usage on one line each, exit 2.
 *
 * @module
 */

/** A bad argument: unknown flag, bad value, missing argument. The message names it. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/**
 * Reads `--flag value` and `--flag=value` pairs; `flags` maps each known flag to whether it
 * takes a value. Throws {@link UsageError} naming an unknown flag, a missing value or a
 * stray argument.
 *
 * @example
 * ```ts
 * parseFlags(["-o", "json", "--netns=x"], { "-o": true, "--netns": true });
 * // Map { "-o" => "json", "--netns" => "x" }
 * ```
 */
export function parseFlags(
  args: readonly string[],
  flags: Readonly<Record<string, boolean>>,
): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const eq = a.startsWith("--") ? a.indexOf("=") : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (!Object.hasOwn(flags, name)) {
      throw new UsageError(
        a.startsWith("-")
          ? `unknown flag ${JSON.stringify(name)}`
          : `unexpected argument ${JSON.stringify(a)}`,
      );
    }
    if (!flags[name]) {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      out.set(name, "");
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === "") throw new UsageError(`${name} needs a value`);
    out.set(name, value);
  }
  return out;
}
