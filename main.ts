/**
 * xcluster-cni: one multi-call binary. Invoked as `kube-node` it is the CNI IPAM plugin;
 * otherwise the first argument names a subcommand.
 *
 * Subcommands are imported lazily so that the IPAM path loads only what it needs. The
 * specifiers stay string literals so that `deno compile` finds and embeds every module;
 * under `deno run` Deno still resolves the modules they reach (npm packages included) at
 * start-up, unless it runs with `--unstable-lazy-dynamic-imports`, as the development
 * kube-node wrapper does.
 *
 * @module
 */
type Command = (args: string[]) => Promise<number>;

/** Flags of `nodes` and `routes`, which read the daemon's settings. */
const VIEW_FLAGS = "  -o json|table               output format (default table)\n" +
  "  --kubeconfig FILE            default: in-cluster, KUBECONFIG, ~/.kube/config\n" +
  "  --netns NS                   read the kernel in this network namespace\n" +
  "  --node NAME                  own node (default NODE_NAME)\n" +
  "  --cidr-annotation KEY        default CIDR_ANNOTATION (empty: spec.podCIDRs)\n" +
  "  --address-annotation KEY     default ADDRESS_ANNOTATION (empty: InternalIP)\n" +
  "  --protocol N                 default PROTOCOL (202)\n" +
  "Every other setting comes from the daemon's environment variables, as in its pod.";

const COMMANDS: Record<string, { help: string; usage: string; load: () => Promise<Command> }> = {
  daemon: {
    help: "run the router (and install the CNI binaries) for one network",
    usage: "xcluster-cni daemon\nTakes no arguments: every setting is an environment variable " +
      "(docs/configuration.md).",
    load: async () => (await import("./src/daemon.ts")).daemonCommand,
  },
  nodes: {
    help: "show every node's CIDRs, next hops and problems as the daemon sees them",
    usage: `xcluster-cni nodes [flags]\n${VIEW_FLAGS}`,
    load: async () => (await import("./src/cli/nodes.ts")).nodesCommand,
  },
  routes: {
    help: "show desired and kernel routes and the diff the daemon would apply (dry run)",
    usage: `xcluster-cni routes [flags]\n${VIEW_FLAGS}`,
    load: async () => (await import("./src/cli/routes.ts")).routesCommand,
  },
  cidr: {
    help: "per-node CIDR calculator: cidr fd00:1000::/96/112 5",
    usage: "xcluster-cni cidr BASE/PREFIX/NODEPREFIX[,...] INDEX\n" +
      "  node INDEX's CIDR of size NODEPREFIX inside BASE/PREFIX, for each item",
    load: async () => (await import("./src/cli/cidr.ts")).cidrCommand,
  },
  install: {
    help: "copy the CNI binaries to the host: install --from DIR --to DIR",
    usage: "xcluster-cni install [--from DIR] [--to DIR] [--self FILE] " +
      "[--conf-dir DIR (--mtu N | --address IP)]",
    load: async () => (await import("./src/install.ts")).installCommand,
  },
  "kube-node": {
    help: "the kube-node CNI IPAM plugin (also chosen by the program name)",
    usage: "kube-node: a CNI IPAM plugin, run by a container runtime with CNI_COMMAND and the " +
      "network configuration on stdin (docs/configuration.md)",
    load: async () => (await import("./cni/kube_node.ts")).kubeNodeCommand,
  },
  apiserver: {
    help: "embedded Kubernetes API server for Nodes: --listen ADDR --kubeconfig FILE",
    usage: "xcluster-cni apiserver [--listen HOST:PORT] [--kubeconfig FILE] [--insecure-http] " +
      "[--state FILE] [--latency MS]",
    load: async () => (await import("./src/devcluster/apiserver/command.ts")).apiserverCommand,
  },
  demo: {
    help: "a whole cluster in network namespaces on this machine (root)",
    usage: "xcluster-cni demo [--check] [--nodes N]\n" +
      "  --check     check and exit (0 when every pair answers)\n" +
      "  --nodes N   nodes in the cluster, 2-50 (default 3)",
    load: async () => (await import("./src/devcluster/demo.ts")).demoCommand,
  },
  version: {
    help: "print the version (also --version)",
    usage: "xcluster-cni version",
    load: async () => (await import("./src/version.ts")).versionCommand,
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.help}`);
  return `usage: xcluster-cni <command> [args]\n\ncommands:\n${lines.join("\n")}\n`;
}

async function main(): Promise<number> {
  // Not node:path's basename: loading it costs milliseconds on every CNI exec.
  const exe = Deno.execPath();
  const self = exe.slice(exe.lastIndexOf("/") + 1);
  if (self === "kube-node" || self.startsWith("kube-node.")) {
    return await (await COMMANDS["kube-node"].load())(Deno.args);
  }
  const [given, ...rest] = Deno.args;
  if (given === undefined || given === "help" || given === "-h" || given === "--help") {
    console.log(usage());
    return given === undefined ? 2 : 0;
  }
  const name = given === "--version" ? "version" : given;
  const command = COMMANDS[name];
  if (!command) {
    console.error(`xcluster-cni: unknown command ${JSON.stringify(name)}\n${usage()}`);
    return 2;
  }
  // Help does nothing else, whatever the command would do with its other arguments.
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`usage: ${command.usage}`);
    return 0;
  }
  const { UsageError } = await import("./src/cli/usage.ts");
  try {
    return await (await command.load())(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`xcluster-cni ${name}: ${e.message}\nusage: ${command.usage}`);
      return 2;
    }
    // One line for the operator; the stack trace helps no one at 3 a.m.
    console.error(`xcluster-cni ${name}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
