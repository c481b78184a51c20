/**
 * `xcluster-cni daemon`: one instance per network. Installs the CNI binaries, watches the
 * Nodes, keeps the kernel's routes in step and writes the node state file for kube-node.
 *
 * @module
 */
import { ConfigError, type DaemonConfig, parseDaemonConfig, readsMetadataOnly } from "./config.ts";
import { NODE_FIELDS, type NodeInfo, toNodeInfo } from "./kube/node.ts";
import { createLogger, fileSink, type Logger, stderrSink } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { serveHttp } from "./http.ts";
import { kernelAdapter } from "./routing/adapter.ts";
import { QuietRelease } from "./heap.ts";
import { Reconciler, type ReconcileResult } from "./routing/reconciler.ts";
import type { RouteTable } from "./routing/types.ts";
import { NodeStateFile } from "./state.ts";
import { postNodeEvents } from "./events.ts";
import type { Problem } from "./routing/problem.ts";
import { VERSION } from "./version.ts";
import { type LeaseTiming, startWriters } from "./zero_touch.ts";

/** After the route monitor starts, the time before the full read that closes the gap. */
const MONITOR_SETTLE_MS = 1000;
/**
 * How long no reconcile must have run before the daemon gives memory back (see
 * QuietRelease), and how long at most it waits for such a moment.
 */
const QUIET = { quiet: 300, maxWait: 30_000 };

/** Reads /etc/machine-id (or the file named), trimmed; "" when absent. */
export function readMachineId(path = "/etc/machine-id"): string {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return "";
  }
}

/** Finds our node: by name, else by machine ID. */
export function findSelf(
  nodes: Iterable<NodeInfo>,
  nodeName: string,
  machineId: string,
): string | undefined {
  if (nodeName !== "") return nodeName;
  if (machineId === "") return undefined;
  for (const n of nodes) if (n.machineID === machineId) return n.name;
  return undefined;
}

/** Extra wiring for tests and the demo: run inside a netns, skip the installer. */
export interface DaemonOptions {
  /** Run `ip` in this network namespace instead of the current one. */
  netns?: string;
  /** Kubeconfig path; default: autodetect (in-cluster, KUBECONFIG, ~/.kube/config). */
  kubeconfig?: string;
  /** Install the CNI binaries and conflist on start (default true). */
  install?: boolean;
  /** Timings of the allocation Lease (default client-go's). */
  lease?: LeaseTiming;
  log?: Logger;
}

/** A running daemon. */
export interface Daemon {
  readonly reconciler: Reconciler;
  readonly metrics: Metrics;
  /** Resolves when the first reconcile after the first full list is done. */
  readonly ready: Promise<void>;
  /**
   * Resolves when the start is over: the kernel watched with nothing missed since the first
   * read, and the start's memory given back. Never, when the daemon stops before.
   */
  readonly started: Promise<void>;
  stop(): Promise<void>;
}

/** Starts a daemon with a parsed configuration. */
export async function startDaemon(cfg: DaemonConfig, opts: DaemonOptions = {}): Promise<Daemon> {
  const log = opts.log ?? createLogger(
    cfg.logLevel,
    cfg.logFile === "" ? stderrSink() : fileSink(cfg.logFile),
    { protocol: cfg.protocol },
  );
  // Whole Nodes are read only when spec.podCIDRs, InternalIP or the machine ID is needed.
  const metadataOnly = readsMetadataOnly(cfg);
  log.info("starting", {
    version: VERSION,
    node: cfg.nodeName || "(by machine-id)",
    cidrAnnotation: cfg.cidrAnnotation || "spec.podCIDRs",
    addressAnnotation: cfg.addressAnnotation || "InternalIP",
    reads: metadataOnly ? "node metadata" : "whole nodes",
  });

  const install = opts.install ?? true;
  if (install) await installBinaries(cfg, log);
  let conflistPending = install && cfg.installK8sNet;

  const metrics = new Metrics(cfg.protocol, VERSION);
  const { loadKubeAccess } = await import("./kube/kubeconfig.ts");
  const { KubeClient } = await import("./kube/client.ts");
  const { NodeInformer } = await import("./kube/informer.ts");
  const access = await loadKubeAccess({ kubeconfig: opts.kubeconfig });
  const client = new KubeClient(access, { log });
  // A proxy in the environment, or certificate checks off, send the watches through fetch.
  if (!client.directWatches) log.info("watches go through fetch", { server: access.server });
  const keep = [cfg.cidrAnnotation, cfg.addressAnnotation];
  /** Whether the first full list is in (the reconciles may start). */
  let synced = false;
  // Resolved when the informer projects our own node (see the head start below).
  const selfInList = Promise.withResolvers<NodeInfo>();
  const informer = new NodeInformer<NodeInfo>(client, {
    project: (raw) => {
      const node = toNodeInfo(raw, keep);
      if (node.name === cfg.nodeName) selfInList.resolve(node);
      // Checked as it arrives while the first list streams in (the reconciler is there by
      // the time the informer starts); afterwards a reconcile checks only what changed,
      // and most updates (kubelets' heartbeats) change nothing.
      if (!synced) reconciler.prepare(node);
      return node;
    },
    fields: NODE_FIELDS,
    metadataOnly,
    // Only the nodes on this network, chosen by the API server.
    labelSelector: cfg.nodeSelector || undefined,
    log,
    server: access.server,
    onProblem: (name, error) => log.warn("node object not understood", { node: name, error }),
  });

  metrics.informer = () => informer.stats();
  const kernel = await kernelAdapter(cfg.routeAdapter, { netns: opts.netns, log });
  const table: RouteTable = kernel.table;
  const machineId = cfg.nodeName === "" ? readMachineId() : "";
  let selfName = cfg.nodeName;
  let warnedNoSelf = false;
  const stateFile = new NodeStateFile(cfg.stateDir, cfg.cidrAnnotation);

  const onResult = async (r: ReconcileResult) => {
    metrics.record(r);
    if (selfName === "" && !warnedNoSelf) {
      warnedNoSelf = true;
      log.error(
        "own node not found: set NODE_NAME, or make /etc/machine-id match a node's " +
          "status.nodeInfo.machineID",
        { machineId },
      );
    }
    if (r.plan.selfCidrs === undefined) return;
    if (conflistPending) {
      conflistPending = false;
      await installMainConflist(cfg, r.plan.self?.addresses[0], table, log);
    }
    const own = informer.store.get(selfName);
    if (await stateFile.update(selfName, r.plan.selfCidrs, own?.machineID)) {
      log.info("node state written", { node: selfName, cidrs: r.plan.selfCidrs.join(",") });
    }
  };

  const postEvents = (problems: Problem[]) =>
    postNodeEvents(client, problems, { protocol: cfg.protocol, host: selfName, log });

  const reconciler = new Reconciler({
    table,
    nodes: () => informer.store.values(),
    node: (name) => informer.store.get(name),
    source: { cidrAnnotation: cfg.cidrAnnotation, addressAnnotation: cfg.addressAnnotation },
    rules: () => ({
      selfName: selfName || (selfName = findSelf(informer.store.values(), "", machineId) ?? ""),
      allowedCidrs: cfg.allowedCidrs,
      minPrefixV4: cfg.minPrefixV4,
      minPrefixV6: cfg.minPrefixV6,
    }),
    protocol: cfg.protocol,
    log,
    onResult,
    onNewProblems: cfg.nodeEvents ? postEvents : undefined,
  });

  const writers = startWriters({
    cfg,
    client,
    informer,
    log,
    addresses: kernel.addresses,
    lease: opts.lease,
    postEvents: cfg.nodeEvents ? postEvents : undefined,
  });
  metrics.writers = () => writers.stats();

  // Our own node, from a GET or from the list, whichever has it first: with its CIDRs known, sure
  // routes go into the kernel while the list still comes in (see routing/head_start.ts).
  const self = cfg.nodeName === "" ? undefined : Promise.race([
    client.getNode(cfg.nodeName, { metadataOnly }).then(
      (raw) => toNodeInfo(raw, keep),
      (error) => {
        log.debug("own node not read ahead of the list", { error });
        return selfInList.promise;
      },
    ),
    selfInList.promise,
  ]);
  reconciler.preload(self).catch((error) =>
    log.warn("reading the host's addresses and routes failed", { error })
  );
  informer.onChange((changes) => {
    if (synced) reconciler.nodesChanged(changes);
  });
  // Bound first: a taken port must stop the start before anything runs.
  const http = cfg.httpAddress === "off" ? undefined : serveHttp(cfg.httpAddress, metrics, () => ({
    ready: metrics.ready,
    lastContact: informer.stats().lastContact,
  }), log);

  let monitor: { close(): Promise<void> } | undefined;
  let monitorCheck: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const started = Promise.withResolvers<void>();
  // The memory that the start or a full read took (a full read of the table is megabytes of
  // garbage at thousands of nodes, which V8 and malloc would keep for minutes) is given back.
  // The start's end is said once; a resync's, every few minutes, only when debugging.
  const quietRelease = (said: (fields: Record<string, unknown>) => void) =>
    new QuietRelease({ ...QUIET, quietMs: () => reconciler.quietMs, done: said });
  const afterStart = quietRelease((f) => log.info("start complete; idle memory released", f));
  const afterResync = quietRelease((f) => log.debug("resync complete; idle memory released", f));
  const fullReconcile = async (trigger: "monitor" | "resync", then?: () => void) => {
    reconciler.trigger(trigger);
    await reconciler.idle();
    if (!stopped) (trigger === "monitor" ? afterStart : afterResync).soon(then);
  };
  const watchKernel = () => {
    const debug = log.enabled("debug");
    monitor = kernel.watch((e) => {
      if (debug) log.debug("kernel change", { kind: e.kind, detail: e.detail });
      reconciler.kernelEvent(e);
    }, { skipAddedOf: cfg.protocol });
  };
  // rtnetlink subscribes at once: watched from before the first read of the table, the
  // kernel leaves no change unseen. `ip monitor` subscribes a moment after it starts, and
  // would print (and we would read) a line for every route of the first batch: it starts
  // after that batch, and one full read a second later covers what its subscription missed.
  if (kernel.watchesAtOnce) watchKernel();
  informer.start();

  const ready = informer.synced.then(async () => {
    synced = true;
    reconciler.trigger("start");
    await reconciler.idle();
    if (stopped) return;
    metrics.ready = true;
    log.info("first sync done", { nodes: informer.store.size });
    const over = () => started.resolve();
    if (kernel.watchesAtOnce) afterStart.soon(over);
    else {
      watchKernel();
      monitorCheck = setTimeout(() => fullReconcile("monitor", over), MONITOR_SETTLE_MS);
    }
  });
  const resync = setInterval(() => {
    if (synced) void fullReconcile("resync");
  }, cfg.resyncSeconds * 1000);

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      stopped = true;
      clearInterval(resync);
      clearTimeout(monitorCheck);
      afterStart.stop();
      afterResync.stop();
      // First, so that the Lease is released while the API can still be reached.
      await writers.stop();
      await Promise.allSettled([
        informer.stop(),
        monitor?.close(),
        reconciler.stop().then(() => table.close()),
        http?.close(),
      ]);
      client.close();
      log.info("stopped; routes left in place");
    })();
  return { reconciler, metrics, ready, started: started.promise, stop };
}

async function installBinaries(cfg: DaemonConfig, log: Logger): Promise<void> {
  const install = await import("./install.ts");
  try {
    const r = await install.installBinaries({
      from: cfg.pluginsDir,
      to: cfg.cniBinDir,
      self: install.selfPath(),
      log,
    });
    log.info("CNI binaries installed", { installed: r.installed, unchanged: r.skipped });
  } catch (e) {
    // Routing still works without the plugins; pods on this node cannot start until fixed.
    log.error("installing the CNI binaries failed", { error: e });
  }
}

/** Writes the main network's conflist, with the MTU of the interface holding our address. */
async function installMainConflist(
  cfg: DaemonConfig,
  address: string | undefined,
  table: RouteTable,
  log: Logger,
): Promise<void> {
  const install = await import("./install.ts");
  try {
    if (address === undefined) throw new Error("own node has no address to find the MTU by");
    const mtu = await install.interfaceMtu(address, await table.localAddresses());
    const r = await install.installConflist({ confDir: cfg.cniConfDir, mtu, log });
    log.info(r.written ? "CNI conflist written" : "CNI conflist left as it is", {
      path: r.path,
      mtu,
      reason: r.reason,
    });
  } catch (e) {
    log.error("writing the CNI conflist failed", { error: e });
  }
}

/** `daemon` subcommand: exit 2 on bad configuration, 0 after SIGTERM/SIGINT. */
export async function daemonCommand(args: string[]): Promise<number> {
  if (args.length > 0) {
    const { UsageError } = await import("./cli/usage.ts");
    throw new UsageError(
      `takes no arguments, not ${JSON.stringify(args[0])}: settings are environment variables`,
    );
  }
  let cfg: DaemonConfig;
  try {
    cfg = parseDaemonConfig(Deno.env.toObject());
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`xcluster-cni: ${e.message}`);
      return 2;
    }
    throw e;
  }
  let daemon: Daemon;
  try {
    daemon = await startDaemon(cfg);
  } catch (e) {
    // No credentials, or the HTTP port taken: one line, and the kubelet restarts us.
    console.error(`xcluster-cni: cannot start: ${(e as Error).message}`);
    return 1;
  }
  const done = Promise.withResolvers<void>();
  const onSignal = () => done.resolve();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  await done.promise;
  await daemon.stop();
  return 0;
}
