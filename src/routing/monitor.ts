/**
 * Watches the kernel with `ip -N monitor route link address`, so that the reconciler hears of
 * every route change at a destination it wants (ours deleted, another owner's route arriving
 * in its way or leaving it), and of link and address changes.
 *
 * A link going down flushes IPv4 routes without any "Deleted" message, so every link and
 * address change counts too.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import { formatCidr, parseCidr } from "../net/ip.ts";

/** What the monitor saw. */
export interface KernelEvent {
  readonly kind: "route-added" | "route-deleted" | "link-change" | "address-change";
  /** The line `ip monitor` printed. */
  readonly detail: string;
  /** For routes: the canonical destination (`10.0.1.0/24`, `fd00::/64`). */
  readonly dst?: string;
  /** For routes: the protocol number (3, boot, when `ip` prints none). */
  readonly protocol?: number;
}

/** Options of {@link watchRoutes}. */
export interface MonitorOptions {
  netns?: string;
  onEvent: (e: KernelEvent) => void;
  log?: Logger;
  ipPath?: string;
}

/** `ip` leaves out the protocol of routes added without one. */
const RTPROT_BOOT = 3;

const ROUTE_LINE =
  /^(Deleted )?(?:(?:unicast|blackhole|unreachable|prohibit|throw|local|broadcast|anycast|multicast|nat) )?([0-9a-f.:]+(?:\/[0-9]+)?|default)(?: |$)/;

/**
 * Classifies one line of `ip -N monitor route link address`: a route of the main table
 * added, replaced or deleted (any protocol), a link or an address change; undefined for
 * anything else (other tables, continuation lines).
 */
export function classifyMonitorLine(line: string): KernelEvent | undefined {
  if (line === "" || /^\s/.test(line)) return undefined;
  if (/^(Deleted )?\d+: \S+: </.test(line)) return { kind: "link-change", detail: line };
  if (/^(Deleted )?\d+: \S+\s+inet6? /.test(line)) return { kind: "address-change", detail: line };
  const m = ROUTE_LINE.exec(line);
  if (!m || /\btable (?!main\b)\S+/.test(line)) return undefined;
  const proto = /\bproto (\d+)\b/.exec(line);
  const family = m[2].includes(":") || (m[2] === "default" && /\bvia \S*:/.test(line)) ? 6 : 4;
  const text = m[2] === "default" ? (family === 4 ? "0.0.0.0/0" : "::/0") : m[2];
  const r = parseCidr(text);
  return {
    kind: m[1] ? "route-deleted" : "route-added",
    detail: line,
    dst: r.ok ? formatCidr(r.cidr) : text,
    protocol: proto ? Number(proto[1]) : RTPROT_BOOT,
  };
}

/**
 * Runs the monitor until closed, restarting it (with a short backoff) if it exits.
 */
export function watchRoutes(opts: MonitorOptions): { close(): Promise<void> } {
  let closed = false;
  let child: Deno.ChildProcess | undefined;
  const wake: { resolve: () => void; timer?: ReturnType<typeof setTimeout> } = {
    resolve: () => {},
  };

  const runOnce = async () => {
    const args = [
      ...(opts.netns ? ["-n", opts.netns] : []),
      "-N",
      "monitor",
      "route",
      "link",
      "address",
    ];
    child = new Deno.Command(opts.ipPath ?? "ip", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let rest = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      rest += chunk;
      const lines = rest.split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) {
        const e = classifyMonitorLine(line.trimEnd());
        if (e) opts.onEvent(e);
      }
    }
    await child.status;
  };

  const loop = (async () => {
    let delay = 100;
    while (!closed) {
      const started = Date.now();
      try {
        await runOnce();
      } catch (e) {
        if (!closed) opts.log?.warn("ip monitor failed", { error: e });
      }
      if (closed) break;
      if (Date.now() - started > 10_000) delay = 100;
      opts.log?.warn("ip monitor ended; restarting", { inMs: delay });
      // Something may have changed while nothing watched.
      opts.onEvent({ kind: "link-change", detail: "monitor restarted" });
      await new Promise<void>((resolve) => {
        wake.resolve = resolve;
        wake.timer = setTimeout(resolve, delay);
      });
      delay = Math.min(delay * 2, 5000);
    }
  })();

  return {
    async close() {
      closed = true;
      clearTimeout(wake.timer);
      wake.resolve();
      try {
        child?.kill("SIGTERM");
      } catch { /* already gone */ }
      await loop;
    },
  };
}
