/**
 * Numbers of the kernel's netlink and rtnetlink interfaces (linux/netlink.h,
 * linux/rtnetlink.h, linux/if_addr.h, linux/if_link.h) and of the C library (socket.h,
 * errno.h, fcntl.h, sched.h, poll.h, sys/eventfd.h), as this adapter uses them on Linux.
 *
 * @module
 */

/** Address families. */
export const AF_UNSPEC = 0;
/** IPv4. */
export const AF_INET = 2;
/** IPv6. */
export const AF_INET6 = 10;
/** Netlink. */
export const AF_NETLINK = 16;

/** Netlink protocol of the routing family. */
export const NETLINK_ROUTE = 0;

/** Netlink message types common to every netlink family. */
export const NLMSG_NOOP = 1;
/** An error, or an acknowledgement when its errno is 0. */
export const NLMSG_ERROR = 2;
/** End of a dump. */
export const NLMSG_DONE = 3;
/** Data lost. */
export const NLMSG_OVERRUN = 4;

/** Header flags. */
export const NLM_F_REQUEST = 0x01;
/** Part of a multi-part answer ended by NLMSG_DONE. */
export const NLM_F_MULTI = 0x02;
/** Asks for an acknowledgement. */
export const NLM_F_ACK = 0x04;
/** A dump was interrupted by a change and may be inconsistent. */
export const NLM_F_DUMP_INTR = 0x10;
/** A dump of all entries (NLM_F_ROOT | NLM_F_MATCH). */
export const NLM_F_DUMP = 0x300;
/** New requests: replace an existing entry. */
export const NLM_F_REPLACE = 0x100;
/** New requests: create the entry when it does not exist. */
export const NLM_F_CREATE = 0x400;
/** Acknowledgements: the request inside was cut to its header. */
export const NLM_F_CAPPED = 0x100;
/** Acknowledgements: extended ack attributes follow. */
export const NLM_F_ACK_TLVS = 0x200;

/** Extended ack attribute: the error message text. */
export const NLMSGERR_ATTR_MSG = 1;

/** rtnetlink message types. */
export const RTM_NEWLINK = 16;
/** A link went away. */
export const RTM_DELLINK = 17;
/** Link dump request. */
export const RTM_GETLINK = 18;
/** An address added (or dumped). */
export const RTM_NEWADDR = 20;
/** An address removed. */
export const RTM_DELADDR = 21;
/** Address dump request. */
export const RTM_GETADDR = 22;
/** A route added, replaced (or dumped). */
export const RTM_NEWROUTE = 24;
/** A route removed. */
export const RTM_DELROUTE = 25;
/** Route dump request. */
export const RTM_GETROUTE = 26;

/** Route attributes (enum rtattr_type_t). */
export const RTA_DST = 1;
/** The output interface index. */
export const RTA_OIF = 4;
/** A next hop of the route's family. */
export const RTA_GATEWAY = 5;
/** The metric. */
export const RTA_PRIORITY = 6;
/** Next hops of a multipath route: a list of struct rtnexthop. */
export const RTA_MULTIPATH = 9;
/** The table id (u32, also for tables above 255). */
export const RTA_TABLE = 15;
/** A next hop of another family (family + address). */
export const RTA_VIA = 18;

/** The main routing table. */
export const RT_TABLE_MAIN = 254;
/** Route types. */
export const RTN_UNICAST = 1;
/** Scope of a route through a gateway. */
export const RT_SCOPE_UNIVERSE = 0;
/** Delete requests: any scope matches. */
export const RT_SCOPE_NOWHERE = 255;
/** rtm_flags of a cached (cloned) route, not a route of the table. */
export const RTM_F_CLONED = 0x200;

/** Link attributes: the name. */
export const IFLA_IFNAME = 3;
/** Link flags: administratively up. */
export const IFF_UP = 0x1;
/** Link flags: carrier. */
export const IFF_LOWER_UP = 0x10000;

/** Address attributes: the (peer) address. */
export const IFA_ADDRESS = 1;
/** The local address, when it differs from IFA_ADDRESS (point-to-point). */
export const IFA_LOCAL = 2;
/** 32 bits of flags, beyond the 8 of ifa_flags. */
export const IFA_FLAGS = 8;

/** Multicast groups of rtnetlink. */
export const RTNLGRP_LINK = 1;
/** IPv4 address changes. */
export const RTNLGRP_IPV4_IFADDR = 5;
/** IPv4 route changes. */
export const RTNLGRP_IPV4_ROUTE = 7;
/** IPv6 address changes. */
export const RTNLGRP_IPV6_IFADDR = 9;
/** IPv6 route changes. */
export const RTNLGRP_IPV6_ROUTE = 11;

/** Socket types and flags. */
export const SOCK_RAW = 3;
/** Nonblocking socket. */
export const SOCK_NONBLOCK = 0o4000;
/** Closed on exec, so that `ip` and friends started later do not inherit it. */
export const SOCK_CLOEXEC = 0o2000000;

/** Socket option levels and names. */
export const SOL_SOCKET = 1;
/** Send buffer size. */
export const SO_SNDBUF = 7;
/** Receive buffer size. */
export const SO_RCVBUF = 8;
/** Send buffer size beyond net.core.wmem_max (CAP_NET_ADMIN). */
export const SO_SNDBUFFORCE = 32;
/** Receive buffer size beyond net.core.rmem_max (CAP_NET_ADMIN). */
export const SO_RCVBUFFORCE = 33;
/** setsockopt: a classic BPF program run on every message before it is queued. */
export const SO_ATTACH_FILTER = 26;
/** Classic BPF opcodes (linux/filter.h): load a byte at an absolute offset, jump if equal, return. */
export const BPF_LD_B_ABS = 0x30;
export const BPF_JEQ_K = 0x15;
export const BPF_RET_K = 0x06;
/** Netlink socket options. */
export const SOL_NETLINK = 270;
/** Joins a multicast group. */
export const NETLINK_ADD_MEMBERSHIP = 1;
/** Acknowledgements of errors carry only the request's header. */
export const NETLINK_CAP_ACK = 10;
/** Errors carry the kernel's message text. */
export const NETLINK_EXT_ACK = 11;
/** Dump requests are checked strictly and their header fields filter. */
export const NETLINK_GET_STRICT_CHK = 12;

/** recv flags: do not wait. */
export const MSG_DONTWAIT = 0x40;
/** recv flags: return the real length of a datagram longer than the buffer. */
export const MSG_TRUNC = 0x20;

/** open flags. */
export const O_RDONLY = 0;
/** Closed on exec. */
export const O_CLOEXEC = 0o2000000;
/** setns: a network namespace. */
export const CLONE_NEWNET = 0x40000000;
/** poll: readable. */
export const POLLIN = 0x1;
/** eventfd flags. */
export const EFD_NONBLOCK = 0o4000;
/** eventfd flags: closed on exec. */
export const EFD_CLOEXEC = 0o2000000;

/** errno values. */
export const EPERM = 1;
/** No such process: rtnetlink's "no such route". */
export const ESRCH = 3;
/** Interrupted system call. */
export const EINTR = 4;
/** Nothing to read on a nonblocking socket. */
export const EAGAIN = 11;
/** The receive buffer overflowed: messages were lost. */
export const ENOBUFS = 105;
