/**
 * The kernel's routing table through iproute2: `ip -json` to read, one `ip -force -batch -`
 * to write. The only code that changes routes.
 *
 * @module
 */
import { z } from "zod";
import type { Logger } from "../log.ts";
import { type Family, formatCidr, formatIp, parseCidr, parseIp } from "../net/ip.ts";
import type {
  KernelRoute,
  LocalAddress,
  OpFailure,
  RouteBatch,
  RouteOp,
  RouteTable,
} from "./types.ts";

/** Where and how `ip` runs. */
export interface IprouteOptions {
  /** Run every command in this network namespace (`ip -n NS`). */
  netns?: string;
  /** Path of the `ip` program; default "ip" from PATH. */
  ipPath?: string;
  log?: Logger;
}

const RouteJson = z.array(z.object({
  dst: z.string(),
  gateway: z.string().optional(),
  dev: z.string().optional(),
  protocol: z.union([z.string(), z.number()]).optional(),
  type: z.string().optional(),
  metric: z.number().optional(),
  nexthops: z.array(z.object({ gateway: z.string().optional(), dev: z.string().optional() }))
    .optional(),
}));

const AddrJson = z.array(z.object({
  ifname: z.string(),
  addr_info: z.array(z.object({
    family: z.string(),
    local: z.string(),
    prefixlen: z.number(),
  })).optional(),
}));

/** `ip ARGS` (in the namespace, if any) with its args prefixed as the options say. */
function ipCommand(opts: IprouteOptions, args: string[], stdin: "null" | "piped"): Deno.Command {
  return new Deno.Command(opts.ipPath ?? "ip", {
    args: opts.netns ? ["-n", opts.netns, ...args] : args,
    stdin,
    stdout: "piped",
    stderr: "piped",
  });
}

/** What a child process printed, and its exit status. */
interface TextOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Reads a child's stdout and stderr to the end as text, and waits for its exit. Not
 * `output()`: that takes a pipe a few KiB at a time, each piece in a buffer of its own of 64
 * KiB, so one read of 10,000 routes (450 KB, 159 pieces) held 10 MiB until collected, and
 * the daemon's resident size grew with every full read; a Response reads each pipe whole.
 */
async function textOutput(child: Deno.ChildProcess): Promise<TextOutput> {
  const [stdout, stderr, status] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.status,
  ]);
  return { code: status.code, stdout, stderr };
}

/** Runs `ip -json ...`; returns its decoded output, throws with the command and stderr. */
async function ipJson(opts: IprouteOptions, args: string[]): Promise<unknown> {
  const { code, stdout, stderr } = await textOutput(ipCommand(opts, args, "null").spawn());
  if (code !== 0) throw new Error(`ip ${args.join(" ")}: exit ${code}: ${stderr.trim()}`);
  try {
    return JSON.parse(stdout || "[]");
  } catch {
    throw new Error(`ip ${args.join(" ")}: output is not JSON: ${stdout.slice(0, 200)}`);
  }
}

function canonicalDst(dst: string, family: Family): string | undefined {
  if (dst === "default") return family === 4 ? "0.0.0.0/0" : "::/0";
  const r = parseCidr(dst);
  return r.ok && r.cidr.family === family ? formatCidr(r.cidr) : undefined;
}

function canonicalIp(text: string): string | undefined {
  const ip = parseIp(text);
  return ip ? formatIp(ip) : undefined;
}

/**
 * Canonical forms of the texts `ip` printed, by one function, kept from one read of the
 * table to the next: the table holds the same 10,000 routes read after read, and parsing
 * and formatting addresses is most of the cost of a read. Only the last read's are kept.
 */
export class CanonicalCache {
  readonly #canonical: (text: string) => string | undefined;
  #last = new Map<string, string | null>();
  #next = new Map<string, string | null>();

  constructor(canonical: (text: string) => string | undefined) {
    this.#canonical = canonical;
  }

  /** The canonical form of `text` (undefined when it has none), cached. */
  get(text: string): string | undefined {
    let v = this.#next.get(text);
    if (v === undefined) {
      v = this.#last.get(text);
      if (v === undefined) v = this.#canonical(text) ?? null;
      this.#next.set(text, v);
    }
    return v ?? undefined;
  }

  /** Ends a read: what it did not ask for is forgotten. */
  rotate(): void {
    this.#last = this.#next;
    this.#next = new Map();
  }
}

/** The caches of one route table: destinations by family, and next hops. */
export interface RouteTextCache {
  readonly dst4: CanonicalCache;
  readonly dst6: CanonicalCache;
  readonly via: CanonicalCache;
}

/** Empty caches for {@link parseRoutes}. */
export function routeTextCache(): RouteTextCache {
  return {
    dst4: new CanonicalCache((dst) => canonicalDst(dst, 4)),
    dst6: new CanonicalCache((dst) => canonicalDst(dst, 6)),
    via: new CanonicalCache(canonicalIp),
  };
}

/** Parses `ip -N -json route show` output of one family. */
export function parseRoutes(
  json: unknown,
  family: Family,
  cache: RouteTextCache = routeTextCache(),
): KernelRoute[] {
  const parsed = RouteJson.safeParse(json);
  if (!parsed.success) throw new Error(`ip route output not understood: ${parsed.error.message}`);
  const out: KernelRoute[] = [];
  const dsts = family === 4 ? cache.dst4 : cache.dst6;
  for (const r of parsed.data) {
    const dst = dsts.get(r.dst);
    if (dst === undefined) continue;
    const gateway = r.gateway ?? r.nexthops?.find((h) => h.gateway)?.gateway;
    const via = gateway === undefined ? undefined : cache.via.get(gateway);
    out.push({
      family,
      dst,
      via,
      dev: r.dev ?? r.nexthops?.[0]?.dev,
      // ip leaves out the protocol when it is boot (3), the default of `ip route add`.
      protocol: Number(r.protocol ?? 3),
      type: r.type && r.type !== "unicast" ? r.type : undefined,
      metric: r.metric,
      multipath: r.nexthops && r.nexthops.length > 1 ? true : undefined,
    });
  }
  return out;
}

/**
 * One batch line for an operation; every line names our protocol, and a delete the metric
 * it was read with, if any (so that it takes that route of ours and no other).
 */
export function batchLine(op: RouteOp, protocol: number): string {
  const r = op.route;
  const via = r.via ? ` via ${r.via}` : "";
  if (op.op === "replace") return `route replace ${r.dst}${via} proto ${protocol}`;
  if (op.route.protocol !== protocol) {
    throw new Error(
      `refusing to delete ${r.dst}: protocol ${op.route.protocol} is not ours (${protocol})`,
    );
  }
  const metric = op.route.metric === undefined ? "" : ` metric ${op.route.metric}`;
  return `route del ${r.dst}${via} proto ${protocol}${metric}`;
}

/**
 * Maps `ip -force -batch` stderr to failed line numbers (1-based) with their error text:
 * ip prints the error, then `Command failed -:N`.
 */
export function parseBatchErrors(stderr: string): Map<number, string> {
  const failed = new Map<number, string>();
  let pending: string[] = [];
  for (const line of stderr.split("\n")) {
    const m = /^Command failed (?:-|.*):(\d+)\s*$/.exec(line.trim());
    if (m) {
      failed.set(Number(m[1]), pending.join("; ") || "failed");
      pending = [];
    } else if (line.trim() !== "") {
      pending.push(line.trim().replace(/^(Error: |RTNETLINK answers: )/, ""));
    }
  }
  return failed;
}

/**
 * One `ip -force -batch -` process fed as operations come: lines are queued and written one
 * chunk at a time while ip reads them. The process starts with the first operation.
 */
function openBatch(opts: IprouteOptions, protocol: number): RouteBatch {
  const encoder = new TextEncoder();
  const sent: RouteOp[] = [];
  let ip: { writer: WritableStreamDefaultWriter<Uint8Array>; output: Promise<TextOutput> };
  let queued = "";
  let writing: Promise<void> | undefined;
  let writeError: unknown;
  const start = () => {
    const child = ipCommand(opts, ["-force", "-batch", "-"], "piped").spawn();
    // Read while writing: ip reports each failed line on stderr as it goes, and once that
    // pipe is full it stops reading its input until someone drains it.
    return { output: textOutput(child), writer: child.stdin.getWriter() };
  };
  const drain = async () => {
    while (queued !== "" && writeError === undefined) {
      const text = queued;
      queued = "";
      try {
        await ip.writer.write(encoder.encode(text));
      } catch (e) {
        // A broken pipe means ip exited early: its exit status and stderr say why.
        writeError = e;
      }
    }
    writing = undefined;
  };
  return {
    write(ops) {
      if (ops.length === 0) return;
      // Formatted first: a delete of a route that is not ours throws before anything is sent.
      let text = "";
      for (const op of ops) text += batchLine(op, protocol) + "\n";
      ip ??= start();
      for (const op of ops) sent.push(op);
      queued += text;
      writing ??= drain();
    },
    async close() {
      if (!ip) return [];
      while (writing) await writing;
      if (writeError === undefined) await ip.writer.close().catch(() => {});
      const out = await ip.output;
      if (writeError !== undefined && !(writeError instanceof Deno.errors.BrokenPipe)) {
        throw writeError;
      }
      if (out.code === 0) return [];
      const errors = parseBatchErrors(out.stderr);
      if (errors.size === 0) {
        throw new Error(`ip -batch: exit ${out.code}: ${out.stderr.trim().slice(0, 500)}`);
      }
      const failures: OpFailure[] = [];
      for (const [n, error] of errors) {
        const op = sent[n - 1];
        if (op) failures.push({ op, error });
      }
      opts.log?.debug("ip -batch had failures", { lines: sent.length, failed: failures.length });
      return failures;
    },
  };
}

/** A {@link RouteTable} over iproute2. */
export function createIprouteTable(opts: IprouteOptions = {}): RouteTable {
  const canonical = routeTextCache();
  return {
    async list() {
      const [v4, v6] = await Promise.all([
        ipJson(opts, ["-N", "-4", "-json", "route", "show", "table", "main"]),
        ipJson(opts, ["-N", "-6", "-json", "route", "show", "table", "main"]),
      ]);
      const routes = parseRoutes(v4, 4, canonical);
      for (const r of parseRoutes(v6, 6, canonical)) routes.push(r);
      for (const c of Object.values(canonical)) c.rotate();
      return routes;
    },

    async apply(ops, protocol) {
      const batch = openBatch(opts, protocol);
      batch.write(ops);
      return await batch.close();
    },

    openBatch(protocol) {
      return openBatch(opts, protocol);
    },

    // Every call runs processes of its own: nothing is kept.
    close: () => Promise.resolve(),

    async localAddresses() {
      const json = await ipJson(opts, ["-json", "address", "show"]);
      const parsed = AddrJson.safeParse(json);
      if (!parsed.success) {
        throw new Error(`ip address output not understood: ${parsed.error.message}`);
      }
      const out: LocalAddress[] = [];
      for (const link of parsed.data) {
        for (const a of link.addr_info ?? []) {
          if (a.family !== "inet" && a.family !== "inet6") continue;
          const ip = parseIp(a.local);
          if (!ip) continue;
          out.push({
            family: ip.family,
            address: formatIp(ip),
            prefix: a.prefixlen,
            dev: link.ifname,
          });
        }
      }
      return out;
    },
  };
}
