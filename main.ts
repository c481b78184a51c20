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

const COMMANDS: Record<string, { help: string; load: () => Promise<Command> }> = {
  daemon: {
    help: "run the router (and install the CNI binaries) for one network",
    load: async () => (await import("./src/daemon.ts")).daemonCommand,
  },
  nodes: {
    help: "show every node's CIDRs, next hops and problems as the daemon sees them",
    load: async () => (await import("./src/cli/nodes.ts")).nodesCommand,
  },
  routes: {
    help: "show desired and kernel routes and the diff the daemon would apply (dry run)",
    load: async () => (await import("./src/cli/routes.ts")).routesCommand,
  },
  cidr: {
    help: "per-node CIDR calculator: cidr fd00:1000::/96/112 5",
    load: async () => (await import("./src/cli/cidr.ts")).cidrCommand,
  },
  install: {
    help: "copy the CNI binaries to the host: install --from DIR --to DIR",
    load: async () => (await import("./src/install.ts")).installCommand,
  },
  "kube-node": {
    help: "the kube-node CNI IPAM plugin (also chosen by the program name)",
    load: async () => (await import("./cni/kube_node.ts")).kubeNodeCommand,
  },
  apiserver: {
    help: "embedded Kubernetes API server for Nodes: --listen ADDR --kubeconfig FILE",
    load: async () => (await import("./src/devcluster/apiserver/command.ts")).apiserverCommand,
  },
  demo: {
    help: "a whole cluster in network namespaces on this machine (root)",
    load: async () => (await import("./src/devcluster/demo.ts")).demoCommand,
  },
  version: {
    help: "print the version",
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
  const [name, ...rest] = Deno.args;
  if (name === undefined || name === "help" || name === "-h" || name === "--help") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`xcluster-cni: unknown command ${JSON.stringify(name)}\n${usage()}`);
    return 2;
  }
  return await (await command.load())(rest);
}

if (import.meta.main) Deno.exit(await main());
