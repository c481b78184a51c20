/**
 * `apiserver --listen ADDR --kubeconfig FILE [--insecure-http] [--state FILE] [--latency MS]`:
 * runs the embedded API server until SIGINT or SIGTERM. `--latency` delays every response, as a
 * remote or loaded server would.
 *
 * @module
 */
import { startApiServer } from "./mod.ts";

const USAGE = "usage: xcluster-cni apiserver [--listen 127.0.0.1:PORT] [--kubeconfig FILE] " +
  "[--insecure-http] [--state FILE] [--latency MS]";

/** The subcommand. */
export async function apiserverCommand(args: string[]): Promise<number> {
  const opts: {
    listen?: string;
    kubeconfig?: string;
    insecure: boolean;
    state?: string;
    latency?: number;
  } = { insecure: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i], v = args[i + 1];
    if (a === "--insecure-http") opts.insecure = true;
    else if (a === "--listen" && v) opts.listen = args[++i];
    else if (a === "--kubeconfig" && v) opts.kubeconfig = args[++i];
    else if (a === "--state" && v) opts.state = args[++i];
    else if (a === "--latency" && v && /^[0-9]{1,5}$/.test(v)) opts.latency = Number(args[++i]);
    else {
      console.error(`xcluster-cni apiserver: unexpected argument ${JSON.stringify(a)}\n${USAGE}`);
      return 2;
    }
  }
  const api = await startApiServer({
    listen: opts.listen,
    insecureHttp: opts.insecure,
    kubeconfigPath: opts.kubeconfig,
    stateFile: opts.state,
  });
  if (opts.latency) api.faults.setLatency(opts.latency);
  console.log(
    `apiserver listening on ${api.url}` +
      (api.kubeconfigPath ? `; kubeconfig ${api.kubeconfigPath}` : `; token ${api.token}`),
  );
  const done = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", () => done.resolve());
  Deno.addSignalListener("SIGTERM", () => done.resolve());
  await done.promise;
  await api.close();
  return 0;
}
