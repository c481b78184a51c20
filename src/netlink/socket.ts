/**
 * An AF_NETLINK / NETLINK_ROUTE socket through the C library (Deno FFI).
 *
 * How it never blocks the event loop: the socket is nonblocking. Receiving is a synchronous
 * `recv(MSG_DONTWAIT)` on the JavaScript thread, which returns at once, so that errno (EAGAIN:
 * nothing there, ENOBUFS: messages were lost) is read on the thread that set it; a
 * `nonblocking: true` FFI call, which runs on another thread, could not tell its errno. Only
 * the waiting, `poll(2)` on the socket and on an eventfd, runs on a worker thread, with no
 * timeout when the caller wants none: nothing runs at rest, and {@link NetlinkSocket.wake}
 * ends the wait at once. A large write (thousands of routes, which the kernel applies inside
 * the `sendto` call) also runs on a worker thread ({@link NetlinkSocket.sendAsync}).
 *
 * A socket opened for a named network namespace is created inside it: the JavaScript thread
 * enters the namespace (`setns`), calls `socket()` and goes back at once; the socket stays
 * bound to the namespace it was made in. Nothing else runs on that thread in between, and
 * the worker threads never change namespace.
 *
 * @module
 */
import {
  AF_NETLINK,
  CLONE_NEWNET,
  EAGAIN,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EINTR,
  MSG_DONTWAIT,
  MSG_TRUNC,
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GET_STRICT_CHK,
  NETLINK_ROUTE,
  O_CLOEXEC,
  O_RDONLY,
  POLLIN,
  SO_ATTACH_FILTER,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_NETLINK,
  SOL_SOCKET,
} from "./constants.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  sendto: {
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
  },
  sendto_nonblocking: {
    name: "sendto",
    parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"],
    result: "isize",
    nonblocking: true,
  },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  poll_now: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | undefined;

/**
 * The C library, opened once for the process and never closed: a call may still be running
 * on a worker thread when a socket is dropped, and the library must outlive it.
 */
function lib(): Libc {
  if (!libc) {
    try {
      libc = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
    } catch (e) {
      throw new Error(`dlopen libc.so.6: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return libc;
}

/** errno of the last failed call on this thread; read right after the call. */
function errno(): number {
  const p = lib().__errno_location();
  return p === null ? 0 : new Deno.UnsafePointerView(p).getInt32();
}

/** The C library's text for an errno value, as `ip` prints it ("No such process"). */
export function strerror(code: number): string {
  const p = lib().strerror(code);
  return p === null ? `errno ${code}` : Deno.UnsafePointerView.getCString(p);
}

/** A failed system call: names the call, the value it was given and errno's text. */
export class SyscallError extends Error {
  constructor(readonly call: string, readonly errno: number, what = "") {
    super(`${call}${what ? ` ${what}` : ""}: ${strerror(errno)} (errno ${errno})`);
    this.name = "SyscallError";
  }
}

function check(call: string, result: number | bigint, what = ""): number {
  const n = Number(result);
  if (n < 0) throw new SyscallError(call, errno(), what);
  return n;
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array {
  return encoder.encode(text + "\0");
}

/** The path of a named network namespace as `ip netns` makes it; a path stays a path. */
export function netnsPath(netns: string): string {
  return netns.includes("/") ? netns : `/run/netns/${netns}`;
}

/**
 * Runs `fn` (which must be synchronous and short) with the calling thread inside the
 * network namespace `netns`, and brings the thread back before returning or throwing.
 */
function inNetns<T>(netns: string, fn: () => T): T {
  const c = lib();
  const path = netnsPath(netns);
  const self = check("open", c.open(cString("/proc/thread-self/ns/net"), O_RDONLY | O_CLOEXEC));
  let result: { value: T } | { error: unknown };
  try {
    const target = check("open", c.open(cString(path), O_RDONLY | O_CLOEXEC), path);
    try {
      check("setns", c.setns(target, CLONE_NEWNET), path);
    } finally {
      c.close(target);
    }
    try {
      result = { value: fn() };
    } catch (e) {
      result = { error: e };
    }
    if (c.setns(self, CLONE_NEWNET) < 0) {
      // The event loop's thread would stay in another host's network: nothing it does
      // from now on could be trusted.
      throw new SyscallError("setns", errno(), "back to the original network namespace");
    }
  } finally {
    c.close(self);
  }
  if ("error" in result) throw result.error;
  return result.value;
}

/** Options of {@link NetlinkSocket.open}. */
export interface NetlinkSocketOptions {
  /** Network namespace name (`/run/netns/NAME`) or path; default the caller's. */
  netns?: string;
  /** Receive buffer wanted, in bytes (the kernel doubles it for its bookkeeping). */
  rcvbuf?: number;
  /** Send buffer wanted, in bytes; one send can be at most about this long. */
  sndbuf?: number;
  /** Dump requests are checked strictly and filter by their header (NETLINK_GET_STRICT_CHK). */
  strict?: boolean;
  /** rtnetlink multicast groups to join (RTNLGRP_*). */
  groups?: readonly number[];
  /**
   * A classic BPF program the kernel runs on every message before queuing it; a message it
   * returns 0 for is dropped, and never wakes a reader.
   */
  filter?: readonly BpfInstruction[];
}

/** One classic BPF instruction (struct sock_filter). */
export interface BpfInstruction {
  readonly code: number;
  readonly jt: number;
  readonly jf: number;
  readonly k: number;
}

/** What {@link NetlinkSocket.wait} saw. */
export type WaitResult = "readable" | "woken" | "timeout";

/** One netlink socket; see the module's notes on blocking. */
export class NetlinkSocket {
  /** The receive buffer the kernel granted (its doubled value, as it counts it). */
  readonly rcvbuf: number;
  /** The send buffer the kernel granted; a send must be at most this minus 32 bytes. */
  readonly sndbuf: number;
  readonly #fd: number;
  #wakeFd = -1;
  #closed = false;
  #waiting: Promise<unknown> | undefined;
  #buf = new Uint8Array(64 * 1024);
  /** sockaddr_nl of the kernel: family AF_NETLINK, port 0, no groups. */
  static readonly #kernel = (() => {
    const a = new Uint8Array(12);
    new DataView(a.buffer).setUint16(0, AF_NETLINK, true);
    return a;
  })();

  private constructor(fd: number, rcvbuf: number, sndbuf: number) {
    this.#fd = fd;
    this.rcvbuf = rcvbuf;
    this.sndbuf = sndbuf;
  }

  /** Opens, configures and binds a socket; throws naming the call that failed. */
  static open(opts: NetlinkSocketOptions = {}): NetlinkSocket {
    const c = lib();
    const create = () =>
      check(
        "socket",
        c.socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE),
        "AF_NETLINK NETLINK_ROUTE",
      );
    const fd = opts.netns === undefined ? create() : inNetns(opts.netns, create);
    try {
      if (opts.rcvbuf) setBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, opts.rcvbuf);
      if (opts.sndbuf) setBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, opts.sndbuf);
      // Acknowledgements of errors carry only the request's header (the sequence number is
      // what maps them back), with the kernel's message text when it has one.
      setInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, "NETLINK_CAP_ACK");
      setInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1, "NETLINK_EXT_ACK");
      if (opts.strict) setInt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1, "NETLINK_GET_STRICT_CHK");
      const addr = new Uint8Array(12);
      new DataView(addr.buffer).setUint16(0, AF_NETLINK, true);
      check("bind", c.bind(fd, addr, addr.length), "AF_NETLINK");
      if (opts.filter) attachFilter(fd, opts.filter);
      for (const g of opts.groups ?? []) {
        setInt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g, `NETLINK_ADD_MEMBERSHIP ${g}`);
      }
      return new NetlinkSocket(
        fd,
        getInt(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"),
        getInt(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"),
      );
    } catch (e) {
      c.close(fd);
      throw e;
    }
  }

  #open(call: string): void {
    if (this.#closed) throw new Error(`${call}: netlink socket is closed`);
  }

  /** Sends one datagram (any number of messages) on this thread; for small requests. */
  send(data: Uint8Array): void {
    this.#open("sendto");
    const k = NetlinkSocket.#kernel;
    const n = check(
      "sendto",
      lib().sendto(this.#fd, data, BigInt(data.length), 0, k, k.length),
      `(${data.length} bytes)`,
    );
    if (n !== data.length) throw new Error(`sendto: sent ${n} of ${data.length} bytes`);
  }

  /**
   * Sends one datagram on a worker thread: the kernel processes every message in it before
   * `sendto` returns (0.3 s for 10,000 routes), and the event loop must not wait for that.
   */
  async sendAsync(data: Uint8Array): Promise<void> {
    this.#open("sendto");
    const k = NetlinkSocket.#kernel;
    const n = Number(
      await lib().sendto_nonblocking(this.#fd, data, BigInt(data.length), 0, k, k.length),
    );
    if (n === data.length) return;
    if (n >= 0) throw new Error(`sendto: sent ${n} of ${data.length} bytes`);
    // errno stayed on the worker thread. A netlink send that fails delivers nothing to the
    // kernel, so sending again here, where errno can be read, applies nothing twice.
    this.send(data);
  }

  /**
   * Receives one datagram without waiting: its bytes (valid until the next call), or
   * undefined when nothing is queued. Throws a {@link SyscallError} otherwise; errno
   * ENOBUFS means the receive buffer overflowed and messages were lost.
   */
  receive(): Uint8Array | undefined {
    this.#open("recv");
    for (;;) {
      const n = Number(
        lib().recv(this.#fd, this.#buf, BigInt(this.#buf.length), MSG_DONTWAIT | MSG_TRUNC),
      );
      if (n >= 0) {
        if (n > this.#buf.length) {
          throw new Error(`recv: datagram of ${n} bytes exceeds the ${this.#buf.length} read`);
        }
        return this.#buf.subarray(0, n);
      }
      const e = errno();
      if (e === EAGAIN) return undefined;
      if (e !== EINTR) throw new SyscallError("recv", e);
    }
  }

  /**
   * Waits until the socket is readable, {@link wake} is called, or `timeoutMs` passes
   * (negative: no timeout). The wait runs on a worker thread; one at a time.
   */
  async wait(timeoutMs: number): Promise<WaitResult> {
    this.#open("poll");
    if (this.#waiting) throw new Error("poll: a wait is already running on this socket");
    const c = lib();
    if (this.#wakeFd < 0) {
      this.#wakeFd = check("eventfd", c.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    }
    // struct pollfd { int fd; short events; short revents; } for the socket and the eventfd.
    const fds = new Uint8Array(16);
    const v = new DataView(fds.buffer);
    v.setInt32(0, this.#fd, true);
    v.setInt16(4, POLLIN, true);
    v.setInt32(8, this.#wakeFd, true);
    v.setInt16(12, POLLIN, true);
    const call = c.poll(fds, 2n, Math.trunc(timeoutMs));
    this.#waiting = call;
    try {
      const n = await call;
      if (n === 0) return "timeout";
      if (n < 0) {
        // errno stayed on the worker thread: asking again here, without waiting, tells a
        // passing EINTR (the caller reads, finds nothing, and waits again) from a real fault.
        check("poll", c.poll_now(fds, 2n, 0));
        return "readable";
      }
      if (v.getInt16(12, true) !== 0) return "woken";
      return "readable";
    } finally {
      this.#waiting = undefined;
    }
  }

  /** Ends a running {@link wait} at once (it returns "woken"); later waits too, until read. */
  wake(): void {
    if (this.#wakeFd < 0 || this.#closed) return;
    const one = new Uint8Array(8);
    one[0] = 1;
    lib().write(this.#wakeFd, one, 8n);
  }

  /** Wakes any wait, lets it end, then closes the descriptors. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.wake();
    await this.#waiting?.catch(() => {});
    this.#closed = true;
    const c = lib();
    c.close(this.#fd);
    if (this.#wakeFd >= 0) c.close(this.#wakeFd);
  }
}

/** SO_ATTACH_FILTER: the kernel copies the program, which need not outlive the call. */
function attachFilter(fd: number, program: readonly BpfInstruction[]): void {
  const code = new Uint8Array(program.length * 8);
  const v = new DataView(code.buffer);
  program.forEach((ins, i) => {
    v.setUint16(i * 8, ins.code, true);
    v.setUint8(i * 8 + 2, ins.jt);
    v.setUint8(i * 8 + 3, ins.jf);
    v.setUint32(i * 8 + 4, ins.k, true);
  });
  // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
  const fprog = new Uint8Array(16);
  const f = new DataView(fprog.buffer);
  f.setUint16(0, program.length, true);
  f.setBigUint64(8, BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(code))), true);
  check(
    "setsockopt",
    lib().setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, fprog, fprog.length),
    "SO_ATTACH_FILTER",
  );
}

/**
 * Sets an integer socket option on any descriptor of this process; throws a
 * {@link SyscallError} naming `what` when the kernel refuses, an Error without FFI.
 */
export function setInt(
  fd: number,
  level: number,
  name: number,
  value: number,
  what: string,
): void {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, value, true);
  check("setsockopt", lib().setsockopt(fd, level, name, b, 4), what);
}

function getInt(fd: number, level: number, name: number, what: string): number {
  const b = new Uint8Array(4);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, 4, true);
  check("getsockopt", lib().getsockopt(fd, level, name, b, len), what);
  return new DataView(b.buffer).getInt32(0, true);
}

/**
 * Sets a buffer size past the system's limit when allowed (CAP_NET_ADMIN), else as far as
 * the limit goes; the caller reads back what it got.
 */
function setBuffer(fd: number, force: number, plain: number, bytes: number): void {
  try {
    setInt(
      fd,
      SOL_SOCKET,
      force,
      bytes,
      force === SO_RCVBUFFORCE ? "SO_RCVBUFFORCE" : "SO_SNDBUFFORCE",
    );
  } catch {
    setInt(fd, SOL_SOCKET, plain, bytes, plain === SO_RCVBUF ? "SO_RCVBUF" : "SO_SNDBUF");
  }
}
