/**
 * The kernel's routing table through rtnetlink, without `ip`: the same {@link RouteTable}
 * as the iproute2 adapter (src/routing/iproute.ts), with the same values read and the same
 * error texts for refused operations.
 *
 * A read opens its own socket (in the namespace, if any) and closes it, so answers never
 * mix. Applies, one after another, share one socket kept until the table is closed: opening
 * one (its buffers sized, bound) costs more than the batch of a watch event. A batch that
 * failed closes its socket.
 *
 * Writing: all operations of an apply go out in one `sendto` of many messages, each with its
 * own sequence number and an acknowledgement asked for; the kernel applies them in order
 * inside that call (on a worker thread: see socket.ts, unless the send holds only a few) and
 * queues one acknowledgement per message, which maps every failure back to its operation. The receive buffer must hold all
 * those acknowledgements at once (about 800 bytes of kernel memory each), so it is made
 * large (32 MiB asked, CAP_NET_ADMIN lets it past net.core.rmem_max) and a batch is split
 * only when it holds more messages than that buffer, or more bytes than the send buffer.
 *
 * Ownership as `ip` has it: a replace creates or replaces the route at its destination
 * (metric 0 for IPv4, 1024 for IPv6), whoever owned it (in IPv6 with every sibling of a
 * multipath route); the differ never asks for one where another owner's route may be
 * (diff.ts). A delete carries our protocol, and the metric read, so the kernel deletes only
 * that route of ours (in IPv6, only the sibling it names); a delete naming another protocol
 * throws before anything is sent.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { Family } from "../net/ip.ts";
import type {
  KernelRoute,
  LocalAddress,
  OpFailure,
  RouteBatch,
  RouteOp,
  RouteTable,
} from "../routing/types.ts";
import { MessageWriter } from "./codec.ts";
import { ENOBUFS, NLM_F_DUMP_INTR } from "./constants.ts";
import {
  type AddressMessage,
  decodeMessages,
  encodeAddressDump,
  encodeLinkDump,
  encodeRouteDump,
  encodeRouteOp,
  errorText,
  type NetlinkMessage,
  toKernelRoute,
  toLocalAddress,
} from "./messages.ts";
import { NetlinkSocket, strerror, SyscallError } from "./socket.ts";

/** Where the table is. */
export interface NetlinkTableOptions {
  /** Network namespace name (`/run/netns/NAME`, as `ip -n` takes it) or path. */
  netns?: string;
  /** Receive buffer to ask for; default {@link RECEIVE_BUFFER}. */
  receiveBuffer?: number;
  /** Send buffer to ask for; default {@link SEND_BUFFER}. */
  sendBuffer?: number;
  log?: Logger;
}

/** Receive buffer asked for: the acknowledgements of a whole batch wait in it. */
export const RECEIVE_BUFFER = 32 << 20;
/** Send buffer asked for: one send holds at most this many bytes (the kernel doubles it). */
export const SEND_BUFFER = 4 << 20;
/**
 * Kernel memory one acknowledgement takes in the receive buffer, with room to spare (about
 * 830 bytes measured on 6.x, errors with their message text included).
 */
export const ACK_COST = 1024;
/** How long an answer may take once its request is sent, before the call fails. */
export const ANSWER_TIMEOUT_MS = 30_000;
/**
 * Sends of at most this many messages run on the event loop's thread: the kernel applies a
 * route in well under a millisecond, less than handing the call to a worker thread costs.
 */
const SEND_HERE_MAX = 8;
/** Dumps interrupted by a change of the table are read again this many times at most. */
const DUMP_TRIES = 3;

function openSocket(opts: NetlinkTableOptions): NetlinkSocket {
  return NetlinkSocket.open({
    netns: opts.netns,
    rcvbuf: opts.receiveBuffer ?? RECEIVE_BUFFER,
    sndbuf: opts.sendBuffer ?? SEND_BUFFER,
    strict: true,
  });
}

/** The next datagram, waiting for it off the event loop's thread; throws after the timeout. */
async function nextDatagram(sock: NetlinkSocket, what: string): Promise<Uint8Array> {
  for (;;) {
    const data = sock.receive();
    if (data) return data;
    if (await sock.wait(ANSWER_TIMEOUT_MS) === "timeout") {
      throw new Error(`${what}: no answer from the kernel within ${ANSWER_TIMEOUT_MS} ms`);
    }
  }
}

/** Requests and reads the dumps of one call over one socket. */
class Reader {
  #seq = 0;
  constructor(readonly sock: NetlinkSocket, readonly log?: Logger) {}

  /**
   * Runs one dump and returns its messages (route, link or address). A dump that a change
   * interrupted (NLM_F_DUMP_INTR) is run again, so that the view is consistent.
   */
  async dump(
    what: string,
    encode: (w: MessageWriter, seq: number) => void,
  ): Promise<NetlinkMessage[]> {
    for (let attempt = 1;; attempt++) {
      const seq = ++this.#seq;
      const w = new MessageWriter(64);
      encode(w, seq);
      this.sock.send(w.bytes());
      const out: NetlinkMessage[] = [];
      let interrupted = false;
      for (let done = false; !done;) {
        for (const m of decodeMessages(await nextDatagram(this.sock, what))) {
          if (m.seq !== seq) continue;
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.kind === "done" || m.kind === "error") {
            if (m.errno !== 0) {
              throw new Error(`${what}: ${errorText(m.errno, m.message, strerror)}`);
            }
            done = true;
          } else {
            out.push(m);
          }
        }
      }
      if (!interrupted || attempt >= DUMP_TRIES) {
        if (interrupted) this.log?.warn("netlink dump inconsistent after retries", { what });
        return out;
      }
    }
  }

  /** Names of the links by index. */
  async links(): Promise<Map<number, string>> {
    const names = new Map<number, string>();
    for (const m of await this.dump("link dump", encodeLinkDump)) {
      if (m.kind === "link" && m.name !== undefined) names.set(m.index, m.name);
    }
    return names;
  }
}

/** Reads the main table: one dump per family. */
async function listRoutes(opts: NetlinkTableOptions): Promise<KernelRoute[]> {
  const sock = openSocket(opts);
  try {
    const reader = new Reader(sock, opts.log);
    const names = await reader.links();
    const out: KernelRoute[] = [];
    for (const family of [4, 6] as Family[]) {
      const messages = await reader.dump(
        `IPv${family} route dump`,
        (w, seq) => encodeRouteDump(w, seq, family),
      );
      for (const m of messages) {
        if (m.kind !== "route" || m.family !== family) continue;
        const r = toKernelRoute(m, names);
        if (r) out.push(r);
      }
    }
    return out;
  } finally {
    await sock.close();
  }
}

/** Every address message of the host, with the links' names by index. */
export async function dumpAddresses(
  opts: NetlinkTableOptions = {},
): Promise<{ names: Map<number, string>; addresses: AddressMessage[] }> {
  const sock = openSocket(opts);
  try {
    const reader = new Reader(sock, opts.log);
    const names = await reader.links();
    const addresses: AddressMessage[] = [];
    for (const m of await reader.dump("address dump", (w, seq) => encodeAddressDump(w, seq))) {
      if (m.kind === "address") addresses.push(m);
    }
    return { names, addresses };
  } finally {
    await sock.close();
  }
}

/** Every address of every link, in the order `ip address show` prints them. */
async function listAddresses(opts: NetlinkTableOptions): Promise<LocalAddress[]> {
  const { names, addresses } = await dumpAddresses(opts);
  const byLink = new Map<number, LocalAddress[]>();
  for (const m of addresses) {
    const a = toLocalAddress(m, names);
    if (!a) continue;
    const list = byLink.get(m.index);
    if (list) list.push(a);
    else byLink.set(m.index, [a]);
  }
  // `ip` prints link by link, each with its addresses in the order of the dump.
  const out: LocalAddress[] = [];
  for (const index of names.keys()) for (const a of byLink.get(index) ?? []) out.push(a);
  return out;
}

/** Where a batch gets its socket, and gives it back (`healthy`: nothing is left unread). */
interface SocketSource {
  take(): NetlinkSocket;
  give(sock: NetlinkSocket, healthy: boolean): Promise<void>;
}

/** A socket of its own for every batch. */
function freshSockets(opts: NetlinkTableOptions): SocketSource {
  return { take: () => openSocket(opts), give: (sock) => sock.close() };
}

/** One operation encoded and waiting to go. */
interface Pending {
  readonly op: RouteOp;
  readonly seq: number;
  readonly bytes: Uint8Array;
}

/**
 * A batch over one socket: operations are encoded as they are written (a delete not ours
 * throws then, with nothing of that write queued) and sent in as few sends as the buffers
 * allow, each followed by its acknowledgements.
 */
function openNetlinkBatch(
  opts: NetlinkTableOptions,
  protocol: number,
  sockets: SocketSource = freshSockets(opts),
): RouteBatch {
  let sock: NetlinkSocket | undefined;
  let nextSeq = 1;
  let pending: Pending[] = [];
  const failures: { seq: number; failure: OpFailure }[] = [];
  let sentCount = 0;
  let draining: Promise<void> | undefined;
  let fatal: unknown;
  let closed = false;

  /** Reads the acknowledgements of the messages numbered `first` to `last`. */
  const acknowledge = async (s: NetlinkSocket, sent: readonly Pending[]) => {
    const first = sent[0].seq;
    let left = sent.length;
    const seen = new Uint8Array(sent.length);
    while (left > 0) {
      let data: Uint8Array;
      try {
        data = await nextDatagram(s, `route changes (${left} of ${sent.length} unanswered)`);
      } catch (e) {
        if (e instanceof SyscallError && e.errno === ENOBUFS) {
          throw new Error(
            `route changes: ${left} of ${sent.length} acknowledgements lost: the receive ` +
              `buffer of ${s.rcvbuf} bytes overflowed`,
          );
        }
        throw e;
      }
      for (const m of decodeMessages(data)) {
        if (m.kind !== "error") continue;
        const i = m.seq - first;
        if (i < 0 || i >= sent.length || seen[i]) continue;
        seen[i] = 1;
        left--;
        if (m.errno !== 0) {
          const p = sent[i];
          failures.push({
            seq: p.seq,
            failure: { op: p.op, error: errorText(m.errno, m.message, strerror) },
          });
        }
      }
    }
  };

  const drain = async () => {
    const s = sock!;
    const maxBytes = s.sndbuf - 32;
    const maxMessages = Math.max(1, Math.floor(s.rcvbuf / ACK_COST));
    try {
      while (pending.length > 0 && fatal === undefined) {
        let bytes = 0;
        let n = 0;
        while (
          n < pending.length && n < maxMessages &&
          (n === 0 || bytes + pending[n].bytes.length <= maxBytes)
        ) bytes += pending[n++].bytes.length;
        const chunk = pending.slice(0, n);
        pending = pending.slice(n);
        const data = new Uint8Array(bytes);
        let at = 0;
        for (const p of chunk) {
          data.set(p.bytes, at);
          at += p.bytes.length;
        }
        opts.log?.trace("netlink route changes sent", { messages: chunk.length, bytes });
        if (chunk.length <= SEND_HERE_MAX) s.send(data);
        else await s.sendAsync(data);
        sentCount += chunk.length;
        await acknowledge(s, chunk);
      }
    } catch (e) {
      fatal = e;
    } finally {
      draining = undefined;
    }
  };

  return {
    write(ops) {
      if (closed) throw new Error("route batch: write after close");
      if (ops.length === 0) return;
      const w = new MessageWriter(ops.length * 64);
      const ends: number[] = [];
      for (let i = 0; i < ops.length; i++) {
        encodeRouteOp(w, ops[i], protocol, nextSeq + i);
        ends.push(w.length);
      }
      sock ??= sockets.take();
      const all = w.bytes();
      let start = 0;
      for (let i = 0; i < ops.length; i++) {
        pending.push({ op: ops[i], seq: nextSeq + i, bytes: all.subarray(start, ends[i]) });
        start = ends[i];
      }
      nextSeq += ops.length;
      draining ??= drain();
    },
    async close() {
      closed = true;
      while (draining) await draining;
      if (sock) await sockets.give(sock, fatal === undefined);
      if (fatal !== undefined) throw fatal;
      failures.sort((a, b) => a.seq - b.seq);
      if (failures.length > 0) {
        opts.log?.debug("netlink batch had failures", {
          sent: sentCount,
          failed: failures.length,
        });
      }
      return failures.map((f) => f.failure);
    },
  };
}

/**
 * A {@link RouteTable} over rtnetlink.
 *
 * @example
 * ```ts
 * const table = createNetlinkTable({ netns: "node1" });
 * const failures = await table.apply(ops, 202);
 * ```
 */
export function createNetlinkTable(opts: NetlinkTableOptions = {}): RouteTable {
  let spare: NetlinkSocket | undefined;
  const kept: SocketSource = {
    take() {
      const sock = spare ?? openSocket(opts);
      spare = undefined;
      return sock;
    },
    async give(sock, healthy) {
      if (healthy && spare === undefined) spare = sock;
      else await sock.close();
    },
  };
  return {
    list: () => listRoutes(opts),
    async apply(ops, protocol) {
      const batch = openNetlinkBatch(opts, protocol, kept);
      batch.write(ops);
      return await batch.close();
    },
    openBatch: (protocol) => openNetlinkBatch(opts, protocol),
    localAddresses: () => listAddresses(opts),
    async close() {
      const sock = spare;
      spare = undefined;
      await sock?.close();
    },
  };
}
