/**
 * The daemon's HTTP endpoint: /healthz, /readyz and /metrics.
 *
 * @module
 */
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";

/** What the probes look at. */
export interface Health {
  ready: boolean;
  lastContact?: Date;
}

/** The API counts as reachable when it answered within this time (watches answer often). */
export const API_CONTACT_WINDOW_MS = 10 * 60 * 1000;

/** Serves the endpoint on `host:port`. */
export function serveHttp(
  address: string,
  metrics: Metrics,
  health: () => Health,
  log: Logger,
): { close(): Promise<void> } {
  const i = address.lastIndexOf(":");
  const hostname = address.slice(0, i).replace(/^\[|\]$/g, "") || "0.0.0.0";
  const port = Number(address.slice(i + 1));
  let server: Deno.HttpServer;
  try {
    server = serve(hostname, port, metrics, health);
  } catch (e) {
    throw new Error(`HTTP_ADDRESS ${address}: ${(e as Error).message}`);
  }
  log.info("http endpoint listening", { address: `${hostname}:${port}` });
  return { close: () => server.shutdown() };
}

function serve(
  hostname: string,
  port: number,
  metrics: Metrics,
  health: () => Health,
): Deno.HttpServer {
  return Deno.serve({ hostname, port, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    const h = health();
    if (path === "/healthz" || path === "/livez") {
      const age = h.lastContact ? Date.now() - h.lastContact.getTime() : Infinity;
      // Before the first contact the process is alive; after it, a long silence is not.
      const ok = !h.ready || age < API_CONTACT_WINDOW_MS;
      return new Response(ok ? "ok\n" : "API not reached recently\n", { status: ok ? 200 : 503 });
    }
    if (path === "/readyz") {
      return new Response(h.ready ? "ok\n" : "first sync not done\n", {
        status: h.ready ? 200 : 503,
      });
    }
    if (path === "/metrics") {
      return new Response(metrics.render(), {
        headers: { "content-type": "text/plain; version=0.0.4" },
      });
    }
    return new Response("not found\n", { status: 404 });
  });
}
