/**
 * Nagle's algorithm off on the server's TLS connections. Deno.serve turns it off on plain
 * TCP connections but leaves it on over TLS; kube-apiserver (Go) turns it off on every
 * connection. With it on, a watch event written while the previous one is not yet
 * acknowledged waits for the client's delayed ACK (tens of milliseconds), which would be
 * counted against whatever a test or a benchmark measures behind this server.
 *
 * Deno gives no handle on an accepted connection, so the socket is found as Linux shows it:
 * its inode in /proc/self/net/tcp{,6} by the two ports, then the descriptor holding that
 * inode in /proc/self/fd; TCP_NODELAY is then set on it through libc (as the netlink
 * sockets' options are).
 *
 * @module
 */

import { setInt } from "../../netlink/socket.ts";

const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;

/** The inode of the TCP socket from `localPort` to `remotePort`, if this process has it. */
function socketInode(localPort: number, remotePort: number): string | undefined {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, "0");
  const local = `:${hex(localPort)}`, remote = `:${hex(remotePort)}`;
  for (const file of ["/proc/self/net/tcp", "/proc/self/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[1].endsWith(local) && f[2].endsWith(remote)) return f[9];
    }
  }
  return undefined;
}

/** The descriptor of this process that holds the socket `inode`. */
function socketFd(inode: string): number | undefined {
  const want = `socket:[${inode}]`;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      if (Deno.readLinkSync(`/proc/self/fd/${e.name}`) === want) return Number(e.name);
    } catch { /* closed meanwhile */ }
  }
  return undefined;
}

/**
 * Turns Nagle's algorithm off on this process's connection from local port `localPort` to
 * remote port `remotePort`; returns whether it did (not on other systems, nor without FFI).
 */
export function setNoDelay(localPort: number, remotePort: number): boolean {
  const inode = socketInode(localPort, remotePort);
  const fd = inode === undefined ? undefined : socketFd(inode);
  if (fd === undefined) return false;
  try {
    setInt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
    return true;
  } catch {
    return false;
  }
}

/**
 * Remembers the connections already seen, so that each is set once: by remote port, a
 * few thousand at most (a port seen again after that is set again, which is harmless).
 */
export class NoDelayConnections {
  #seen = new Set<number>();

  constructor(readonly localPort: () => number) {}

  /** Sets TCP_NODELAY on the connection from `remotePort` unless it was seen before. */
  take(remotePort: number): void {
    if (this.#seen.has(remotePort)) return;
    if (this.#seen.size > 4096) this.#seen.clear();
    this.#seen.add(remotePort);
    setNoDelay(this.localPort(), remotePort);
  }
}
