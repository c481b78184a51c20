/**
 * `apiserver --listen ADDR --kubeconfig FILE [--insecure-http] [--state FILE] [--latency MS]`:
 * runs the embedded API server until SIGINT or SIGTERM. `--latency` delays every response, as a
 * remote or loaded server would.
 *
 * Arguments are checked before anything is made: a usage error names the flag and its
 * value (main.ts prints it, then the usage: exit 2); a failure to start (the port taken, an
 * address that is not this host's, a kubeconfig that cannot be written) is one line (exit 1)
 * and leaves no temporary folder behind.
 *
 * @module
 */
import { parseFlags, UsageError } from "../../cli/usage.ts";
import { ListenError, parseListen, startApiServer } from "./mod.ts";

/** What the arguments ask for. */
interface Options {
  listen?: string;
  kubeconfig?: string;
  insecure: boolean;
  state?: string;
  latency?: number;
}

/** Reads the arguments; throws {@link UsageError} naming a bad flag or value. */
function parseArgs(args: readonly string[]): Options {
  const flags = parseFlags(args, {
    "--listen": true,
    "--kubeconfig": true,
    "--insecure-http": false,
    "--state": true,
    "--latency": true,
  });
  const opts: Options = {
    insecure: flags.has("--insecure-http"),
    kubeconfig: flags.get("--kubeconfig"),
    state: flags.get("--state"),
  };
  const listen = flags.get("--listen");
  if (listen !== undefined) {
    try {
      parseListen(listen);
    } catch (e) {
      if (!(e instanceof ListenError)) throw e;
      throw new UsageError(`--listen ${JSON.stringify(e.value)}: ${e.reason}`);
    }
    opts.listen = listen;
  }
  const latency = flags.get("--latency");
  if (latency !== undefined) {
    if (!/^[0-9]{1,5}$/.test(latency)) {
      throw new UsageError(
        `--latency: expected milliseconds from 0 to 99999, not ${JSON.stringify(latency)}`,
      );
    }
    opts.latency = Number(latency);
  }
  return opts;
}

/**
 * The subcommand: 0 after SIGINT or SIGTERM, 1 when the server cannot start (one line).
 * Throws {@link UsageError} for bad arguments, which main.ts prints with the usage (exit 2);
 * main.ts answers --help before it is called.
 */
export async function apiserverCommand(args: string[]): Promise<number> {
  const opts = parseArgs(args);
  // Listened for first: a signal while the server starts ends it once started, cleanly,
  // where the default action would leave the temporary folder with the CA's key behind.
  const done = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", () => done.resolve());
  Deno.addSignalListener("SIGTERM", () => done.resolve());
  let api;
  try {
    api = await startApiServer({
      listen: opts.listen,
      insecureHttp: opts.insecure,
      kubeconfigPath: opts.kubeconfig,
      stateFile: opts.state,
    });
  } catch (e) {
    // One line for the operator: which address, file or tool, and why.
    const message = e instanceof Error ? e.message : String(e);
    console.error(`xcluster-cni apiserver: ${message.trim().replace(/\s*\n\s*/g, "; ")}`);
    return 1;
  }
  if (opts.latency) api.faults.setLatency(opts.latency);
  console.log(
    `apiserver listening on ${api.url}` +
      (api.kubeconfigPath ? `; kubeconfig ${api.kubeconfigPath}` : `; token ${api.token}`),
  );
  await done.promise;
  await api.close();
  return 0;
}
