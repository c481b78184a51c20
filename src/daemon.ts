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
import { Reconciler, type ReconcileResult } from "./routing/reconciler.ts";
import type { RouteTable } from "./routing/types.ts";
import { OwnNode } from "./own_node.ts";
import { postNodeEvents } from "./events.ts";
import type { Problem } from "./routing/problem.ts";
import { VERSION } from "./version.ts";
import { type LeaseTiming, startWriters } from "./zero_touch.ts";
import { Upkeep } from "./upkeep.ts";

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

  const metrics = new Metrics(cfg.protocol, VERSION);
  // Bound first: a taken port stops the start before anything is installed or written.
  const http = cfg.httpAddress === "off" ? undefined : serveHttp(cfg.httpAddress, metrics, () => ({
    ready: metrics.ready,
    lastContact: metrics.informer()?.lastContact,
  }), log);
  try {
    return await startRouting(cfg, opts, log, metrics, http);
  } catch (e) {
    await http?.close();
    throw e;
  }
}

/** The rest of the start, once the HTTP endpoint is bound. */
async function startRouting(
  cfg: DaemonConfig,
  opts: DaemonOptions,
  log: Logger,
  metrics: Metrics,
  http: { close(): Promise<void> } | undefined,
): Promise<Daemon> {
  const metadataOnly = readsMetadataOnly(cfg);
  const install = opts.install ?? true;
  if (install) await installBinaries(cfg, log);
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
  const own = new OwnNode({
    cfg,
    nodes: () => informer.store,
    table,
    conflist: install && cfg.installK8sNet,
    log,
  });
  const postEvents = (problems: Problem[]) =>
    postNodeEvents(client, problems, { protocol: cfg.protocol, host: own.name, log });

  const reconciler = new Reconciler({
    table,
    nodes: () => informer.store.values(),
    node: (name) => informer.store.get(name),
    source: { cidrAnnotation: cfg.cidrAnnotation, addressAnnotation: cfg.addressAnnotation },
    rules: () => ({
      selfName: own.name,
      allowedCidrs: cfg.allowedCidrs,
      minPrefixV4: cfg.minPrefixV4,
      minPrefixV6: cfg.minPrefixV6,
    }),
    protocol: cfg.protocol,
    log,
    onResult: async (r: ReconcileResult) => {
      metrics.record(r);
      await own.planned(r.plan);
    },
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
  let stopped = false;
  const started = Promise.withResolvers<void>();
  const upkeep = new Upkeep({
    reconciler,
    kernel,
    protocol: cfg.protocol,
    resyncSeconds: cfg.resyncSeconds,
    log,
  });
  upkeep.begin();
  informer.start();

  const ready = informer.synced.then(async () => {
    synced = true;
    reconciler.trigger("start");
    // Ready once a reconcile has put the routes and the node state file in place.
    if (!await reconciler.succeeded || stopped) return;
    metrics.ready = true;
    log.info("first sync done", { nodes: informer.store.size });
    upkeep.synced(() => started.resolve());
  });

  let stopping: Promise<void> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      stopped = true;
      // No resync or release from here on (their timers end at once).
      const upkeepStopped = upkeep.stop();
      // First, so that the Lease is released while the API can still be reached.
      await writers.stop();
      await Promise.allSettled([
        informer.stop(),
        upkeepStopped,
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
