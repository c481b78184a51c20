/**
 * The rtnetlink adapter (src/netlink/): its messages on real kernel output, the RouteTable
 * contract run against both adapters (iproute2 and rtnetlink) in fresh namespaces, and the
 * monitor. Needs root (network namespaces) and iproute2 for the reference side.
 */
import assert from "node:assert/strict";
import { createIprouteTable } from "../src/routing/iproute.ts";
import { type KernelEvent, watchRoutes } from "../src/routing/monitor.ts";
import type { KernelRoute, OpFailure, RouteOp, RouteTable } from "../src/routing/types.ts";
import { createLogger, type Logger, silentLogger } from "../src/log.ts";
import type { NodeInfo } from "../src/kube/node.ts";
import { Reconciler } from "../src/routing/reconciler.ts";
import { MessageWriter, splitMessages } from "../src/netlink/codec.ts";
import { ESRCH, NLM_F_MULTI, RTN_UNICAST } from "../src/netlink/constants.ts";
import {
  checkRouteOp,
  decodeMessages,
  dstAt,
  encodeAddressDump,
  encodeLinkDump,
  encodeRouteDump,
  encodeRouteOp,
  errorText,
  gatewayValue,
  type NetlinkMessage,
  type RouteMessage,
} from "../src/netlink/messages.ts";
import { NetlinkSocket, strerror } from "../src/netlink/socket.ts";
import { createNetlinkTable } from "../src/netlink/table.ts";
import { watchRoutesNetlink } from "../src/netlink/monitor.ts";
import { lanHost, type Netns, pollUntil, requireRoot } from "./helpers/netns.ts";

const notRoot = requireRoot();
const PROTO = 202;

function replace(dst: string, via: string): RouteOp {
  return {
    op: "replace",
    route: { family: dst.includes(":") ? 6 : 4, dst, via, node: "n" },
  };
}

function del(dst: string, via?: string, protocol = PROTO): RouteOp {
  return {
    op: "delete",
    route: { family: dst.includes(":") ? 6 : 4, dst, via, protocol },
  };
}

/** `count` replaces of distinct routes (10.x.y.0/24 or fd10:x::/64) via one next hop. */
function replaces(count: number, family: 4 | 6, via: string): RouteOp[] {
  return Array.from(
    { length: count },
    (_, i) =>
      replace(family === 4 ? `10.${i >> 8}.${i & 255}.0/24` : `fd10:${i.toString(16)}::/64`, via),
  );
}

/** The main table of both families as plain `ip -json` prints it (the reference view). */
async function kernelState(ns: Netns): Promise<unknown[]> {
  const v4 = JSON.parse(await ns.ip("-json", "route", "show", "table", "main"));
  const v6 = JSON.parse(await ns.ip("-6", "-json", "route", "show", "table", "main"));
  return [...v4, ...v6];
}

/** Routes of a protocol (as plain `ip` names it) in the kernel as `dst via` lines, sorted. */
async function routesOf(ns: Netns, proto = String(PROTO)): Promise<string[]> {
  const state = await kernelState(ns) as { dst: string; gateway?: string; protocol?: string }[];
  return state.filter((r) => r.protocol === proto).map((r) => `${r.dst} ${r.gateway ?? "-"}`)
    .sort();
}

/** Failures as comparable values: the index of their operation in `ops`, and the text. */
function failed(ops: readonly RouteOp[], failures: readonly OpFailure[]): [number, string][] {
  return failures.map((f) => {
    const i = ops.indexOf(f.op);
    assert.ok(i >= 0, "a failure names an operation object that was given");
    return [i, f.error];
  });
}

type Adapter = "iproute" | "netlink";
const ADAPTERS: readonly Adapter[] = ["iproute", "netlink"];

function tableFor(adapter: Adapter, ns: Netns): RouteTable {
  return adapter === "iproute"
    ? createIprouteTable({ netns: ns.name })
    : createNetlinkTable({ netns: ns.name });
}

/**
 * Runs one case against each adapter in a fresh namespace (set up alike), and asserts that
 * both give the same result (what `run` returns: failures, kernel state...). Returns the
 * results by adapter for the case's own assertions.
 */
async function contract<T>(
  setup: (ns: Netns) => Promise<void>,
  runCase: (table: RouteTable, ns: Netns) => Promise<T>,
): Promise<Record<Adapter, T>> {
  const out = {} as Record<Adapter, T>;
  for (const adapter of ADAPTERS) {
    await using ns = await lanHost("xnl");
    await setup(ns);
    const table = tableFor(adapter, ns);
    try {
      out[adapter] = await runCase(table, ns);
    } finally {
      await table.close();
    }
  }
  assert.deepEqual(out.netlink, out.iproute);
  return out;
}

/** Applies `ops` and returns the failures and the kernel's table after. */
async function applyCase(table: RouteTable, ns: Netns, ops: readonly RouteOp[]) {
  const failures = failed(ops, await table.apply(ops, PROTO));
  return { failures, state: await kernelState(ns) };
}

const none = () => Promise.resolve();

// ---------------------------------------------------------------------------------------
// Pure parts

Deno.test("messages: next hops and destinations keep the project's canonical forms", () => {
  // An IPv4-mapped next hop is IPv4 for an IPv4 route, and stays mapped for an IPv6 one,
  // whether written mapped or (canonically) as IPv4.
  assert.deepEqual(gatewayValue(4, "::ffff:192.168.9.5", "10.0.0.0/24"), {
    length: 4,
    value: 0xc0a80905n,
  });
  assert.deepEqual(gatewayValue(6, "192.168.9.5", "fd05::/64"), {
    length: 16,
    value: 0xffffc0a80905n,
  });
  assert.deepEqual(gatewayValue(6, "::ffff:192.168.9.5", "fd05::/64").value, 0xffffc0a80905n);
  assert.throws(
    () => gatewayValue(4, "fd00::1", "10.0.0.0/24"),
    /10\.0\.0\.0\/24.*fd00::1 is not IPv4/,
  );
  assert.throws(() => gatewayValue(4, "nope", "10.0.0.0/24"), /"nope" is not an address/);
  // A delete names our protocol or nothing is sent; a destination must be of its family.
  assert.throws(() => checkRouteOp(del("10.2.0.0/24", undefined, 4), PROTO), /not ours \(202\)/);
  assert.throws(
    () =>
      checkRouteOp({
        op: "replace",
        route: { family: 6, dst: "10.0.0.0/24", via: "fd00::1", node: "n" },
      }, PROTO),
    /not an IPv6 destination/,
  );
  // Destinations as parseCidr reads `ip`'s text: a mapped IPv6 one of /96 or more is IPv4.
  const bytes = (hex: string) => {
    const b = new Uint8Array(hex.length / 2);
    for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    return new DataView(b.buffer);
  };
  const mapped = bytes("00000000000000000000ffff0a010000");
  assert.deepEqual(dstAt(mapped, 0, 16, 10, 120), { family: 4, text: "10.1.0.0/24" });
  assert.deepEqual(dstAt(mapped, 0, 16, 10, 80), { family: 6, text: "::/80" });
  assert.deepEqual(dstAt(bytes(""), 0, 0, 10, 0), { family: 6, text: "::/0" });
  assert.deepEqual(dstAt(bytes("0a030303"), 0, 4, 2, 32), { family: 4, text: "10.3.3.3/32" });
  assert.equal(dstAt(bytes("0a030303"), 0, 4, 2, 33), undefined);
});

Deno.test("messages: error texts are those `ip` prints, as the iproute2 adapter keeps them", () => {
  const describe = (e: number) => (e === ESRCH ? "No such process" : `errno ${e}`);
  assert.equal(errorText(ESRCH, undefined, describe), "No such process");
  assert.equal(
    errorText(101, "Nexthop has invalid gateway", describe),
    "Nexthop has invalid gateway.",
  );
  assert.equal(errorText(22, "Invalid prefix.", describe), "Invalid prefix.");
});

Deno.test("codec: a message longer than its datagram is refused, naming where", () => {
  const w = new MessageWriter(16);
  encodeLinkDump(w, 7);
  const data = w.bytes().slice();
  assert.equal(splitMessages(data).length, 1);
  assert.equal(splitMessages(data)[0].seq, 7);
  new DataView(data.buffer).setUint32(0, 400, true);
  assert.throws(() => splitMessages(data), /at byte 0 claims 400 bytes of 32 left/);
});

Deno.test("messages: a route change encoded here decodes to what it says", () => {
  const w = new MessageWriter();
  encodeRouteOp(w, replace("fd05::/64", "::ffff:192.168.9.5"), PROTO, 41);
  encodeRouteOp(w, del("10.3.3.3/32", "192.168.9.3"), PROTO, 42);
  const read = { family: 6, dst: "fd03::/64", via: "fd00:9::3", protocol: PROTO } as const;
  encodeRouteOp(w, { op: "delete", route: { ...read, metric: 1024 } }, PROTO, 43);
  const [a, b, c] = decodeMessages(w.bytes()) as RouteMessage[];
  assert.deepEqual(
    [a.kind, a.seq, a.deleted, a.family, a.dst, a.gateway, a.protocol, a.type, a.table, a.scope],
    [
      "route",
      41,
      false,
      6,
      { family: 6, text: "fd05::/64" },
      "192.168.9.5",
      PROTO,
      RTN_UNICAST,
      254,
      0,
    ],
  );
  assert.deepEqual(
    [b.seq, b.deleted, b.family, b.dst.text, b.gateway, b.protocol, b.type, b.scope],
    [42, true, 4, "10.3.3.3/32", "192.168.9.3", PROTO, 0, 255],
  );
  // A delete names the metric it was read with (none: any), as `ip route del ... metric`.
  assert.deepEqual([b.metric, c.seq, c.deleted, c.metric], [undefined, 43, true, 1024]);
});

// ---------------------------------------------------------------------------------------
// Messages on real kernel output

/** Sends one request and collects the answer's messages up to NLMSG_DONE or the ack. */
async function converse(sock: NetlinkSocket, w: MessageWriter, seq: number) {
  sock.send(w.bytes());
  const got: { m: NetlinkMessage; multi: boolean; datagram: number }[] = [];
  for (let datagram = 0;; datagram++) {
    let data = sock.receive();
    while (!data) {
      assert.notEqual(await sock.wait(5000), "timeout");
      data = sock.receive();
    }
    for (const m of decodeMessages(data)) {
      if (m.seq !== seq) continue;
      got.push({ m, multi: (m.flags & NLM_F_MULTI) !== 0, datagram });
      if (m.kind === "done" || m.kind === "error") return got;
    }
  }
}

Deno.test({
  name: "messages: dumps of links, routes and addresses decode as `ip -json` shows them",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    await ns.ip(
      ..."route add 10.7.0.0/24 proto 202 nexthop via 192.168.9.7 nexthop via 192.168.9.8".split(
        " ",
      ),
    );
    await ns.ip(
      "-6",
      "route",
      "add",
      "fd02::/64",
      "via",
      "fd00:9::2",
      "metric",
      "50",
      "proto",
      "static",
    );
    await ns.ip("route", "add", "blackhole", "10.8.0.0/24", "proto", "202");
    await ns.ip("route", "add", "10.9.0.0/24", "via", "192.168.9.9", "table", "7");
    const sock = NetlinkSocket.open({ netns: ns.name, strict: true, rcvbuf: 1 << 20 });
    try {
      const links = await converse(
        sock,
        (() => {
          const w = new MessageWriter();
          encodeLinkDump(w, 1);
          return w;
        })(),
        1,
      );
      const ipLinks = JSON.parse(await ns.ip("-json", "link", "show")) as {
        ifindex: number;
        ifname: string;
      }[];
      assert.deepEqual(
        links.flatMap(({ m }) => (m.kind === "link" ? [[m.index, m.name]] : [])),
        ipLinks.map((l) => [l.ifindex, l.ifname]),
      );
      const lan0 = ipLinks.find((l) => l.ifname === "lan0")!.ifindex;

      const w = new MessageWriter();
      encodeRouteDump(w, 2, 4);
      const v4 = (await converse(sock, w, 2)).map(({ m }) => m);
      assert.equal(v4.at(-1)?.kind, "done");
      const routes = v4.filter((m): m is RouteMessage => m.kind === "route");
      // Table 7 is not dumped: strict checking filters by the table in the request.
      assert.deepEqual(routes.map((r) => r.dst.text).sort(), [
        "10.7.0.0/24",
        "10.8.0.0/24",
        "192.168.9.0/24",
      ]);
      const mp = routes.find((r) => r.dst.text === "10.7.0.0/24")!;
      assert.deepEqual(
        [mp.hops, mp.gateway, mp.oif, mp.protocol, mp.table, mp.type, mp.metric],
        [2, "192.168.9.7", lan0, 202, 254, RTN_UNICAST, undefined],
      );
      assert.equal(routes.find((r) => r.dst.text === "10.8.0.0/24")!.type, 6);

      const w6 = new MessageWriter();
      encodeRouteDump(w6, 3, 6, { protocol: 4 });
      const v6 = (await converse(sock, w6, 3)).flatMap(({ m }) => (m.kind === "route" ? [m] : []));
      // The protocol in the request filters too: only the static route comes back.
      assert.deepEqual(v6.map((r) => [r.dst.text, r.gateway, r.metric, r.protocol]), [[
        "fd02::/64",
        "fd00:9::2",
        50,
        4,
      ]]);

      const wa = new MessageWriter();
      encodeAddressDump(wa, 4);
      const addrs = (await converse(sock, wa, 4)).flatMap((
        { m },
      ) => (m.kind === "address" ? [m] : []));
      const lanAddrs = addrs.filter((a) => a.index === lan0).map((a) =>
        `${a.address?.value.toString(16)}/${a.prefix}`
      );
      assert.ok(lanAddrs.includes("c0a80901/24"), JSON.stringify(lanAddrs));
      assert.ok(lanAddrs.includes("fd000009000000000000000000000001/64"), JSON.stringify(lanAddrs));
    } finally {
      await sock.close();
    }
  },
});

Deno.test({
  name: "messages: a dump of 2,000 routes is multi-part over several datagrams, ended by DONE",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    await ns.exec(
      "sh",
      "-c",
      `for i in $(seq 0 1999); do echo "route add 10.$((i / 256)).$((i % 256)).0/24 via 192.168.9.2 proto 202"; done | ip -batch -`,
    );
    const sock = NetlinkSocket.open({ netns: ns.name, strict: true });
    try {
      const w = new MessageWriter();
      encodeRouteDump(w, 9, 4, { protocol: PROTO });
      const got = await converse(sock, w, 9);
      const routes = got.filter(({ m }) => m.kind === "route");
      assert.equal(routes.length, 2000);
      assert.ok(got.every((g) => g.multi), "every part of a dump says NLM_F_MULTI");
      assert.ok(got.at(-1)!.datagram >= 2, `datagrams: ${got.at(-1)!.datagram + 1}`);
      assert.equal(got.at(-1)!.m.kind, "done");
    } finally {
      await sock.close();
    }
  },
});

Deno.test({
  name:
    "messages: acknowledgements and errors map to their sequence numbers, with the kernel's text",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const sock = NetlinkSocket.open({ netns: ns.name, rcvbuf: 1 << 20 });
    try {
      const w = new MessageWriter();
      encodeRouteOp(w, replace("10.5.0.0/24", "192.168.9.5"), PROTO, 100);
      encodeRouteOp(w, replace("10.6.0.0/24", "192.168.99.5"), PROTO, 101);
      encodeRouteOp(w, del("10.4.0.0/24"), PROTO, 102);
      await sock.sendAsync(w.bytes());
      const acks: NetlinkMessage[] = [];
      for (let d = sock.receive(); d; d = sock.receive()) acks.push(...decodeMessages(d));
      assert.deepEqual(
        acks.map((m) => (m.kind === "error" ? [m.seq, m.errno, m.message] : [m.kind])),
        [[100, 0, undefined], [101, 101, "Nexthop has invalid gateway"], [102, ESRCH, undefined]],
      );
      assert.equal(strerror(ESRCH), "No such process");
      assert.deepEqual(await routesOf(ns), ["10.5.0.0/24 192.168.9.5"]);
    } finally {
      await sock.close();
    }
  },
});

Deno.test({
  name: "socket: a namespace that does not exist is an error naming the path and errno",
  ignore: !!notRoot,
  fn() {
    assert.throws(
      () => NetlinkSocket.open({ netns: "xnl-none-such" }),
      /open \/run\/netns\/xnl-none-such: No such file or directory/,
    );
    // The thread is back in its own namespace: a socket opened now sees this host's links.
    const sock = NetlinkSocket.open({});
    return sock.close();
  },
});

// ---------------------------------------------------------------------------------------
// The RouteTable contract, both adapters

Deno.test({
  name: "contract: an unreachable next hop fails that operation alone, with ip's text",
  ignore: !!notRoot,
  async fn() {
    const ops = [
      replace("10.5.0.0/24", "192.168.9.5"),
      replace("10.6.0.0/24", "192.168.99.5"),
      replace("fd05::/64", "fd00:9::5"),
      replace("fd06::/64", "fd00:99::5"),
    ];
    const r = await contract(none, (t, ns) => applyCase(t, ns, ops));
    assert.deepEqual(r.netlink.failures, [
      [1, "Nexthop has invalid gateway."],
      [3, "No route to host"],
    ]);
  },
});

Deno.test({
  name: "contract: a replace over another owner's route takes it over, in both adapters",
  ignore: !!notRoot,
  async fn() {
    // Both send what `ip route replace` sends: NLM_F_REPLACE replaces the route with the
    // same key (destination, metric), whatever its protocol. The differ never asks for
    // this (a foreign destination is a reported conflict); a different metric is another
    // route, and ours goes beside it. A delete carries our protocol: the static route stays.
    const setup = async (ns: Netns) => {
      await ns.ip("route", "add", "10.2.0.0/24", "via", "192.168.9.2", "proto", "static");
      await ns.ip(
        "route",
        "add",
        "10.3.0.0/24",
        "via",
        "192.168.9.3",
        "proto",
        "static",
        "metric",
        "100",
      );
      await ns.ip("route", "add", "10.4.0.0/24", "via", "192.168.9.4", "proto", "static");
      await ns.ip("-6", "route", "add", "fd02::/64", "via", "fd00:9::2", "proto", "static");
    };
    const ops = [
      replace("10.2.0.0/24", "192.168.9.5"),
      replace("10.3.0.0/24", "192.168.9.5"),
      replace("fd02::/64", "fd00:9::5"),
      del("10.4.0.0/24", "192.168.9.4"),
      del("10.4.0.0/24"),
    ];
    const r = await contract(setup, async (t, ns) => ({
      ...await applyCase(t, ns, ops),
      static: await routesOf(ns, "static"),
      ours: await routesOf(ns),
    }));
    assert.deepEqual(r.netlink.failures, [[3, "No such process"], [4, "No such process"]]);
    assert.deepEqual(r.netlink.ours, [
      "10.2.0.0/24 192.168.9.5",
      "10.3.0.0/24 192.168.9.5",
      "fd02::/64 fd00:9::5",
    ]);
    assert.deepEqual(r.netlink.static, ["10.3.0.0/24 192.168.9.3", "10.4.0.0/24 192.168.9.4"]);
  },
});

Deno.test({
  name: "contract: multipath routes of ours are replaced by one hop and deleted by their first",
  ignore: !!notRoot,
  async fn() {
    const setup = async (ns: Netns) => {
      for (const dst of ["10.7.0.0/24", "10.17.0.0/24"]) {
        await ns.ip(
          ..."route add DST proto 202 nexthop via 192.168.9.7 nexthop via 192.168.9.8".replace(
            "DST",
            dst,
          ).split(" "),
        );
      }
      for (const dst of ["fd07::/64", "fd17::/64"]) {
        await ns.ip(
          ..."-6 route add DST proto 202 nexthop via fd00:9::7 nexthop via fd00:9::8".replace(
            "DST",
            dst,
          ).split(" "),
        );
      }
    };
    const mp = (dst: string, via: string): RouteOp => ({
      op: "delete",
      route: { family: dst.includes(":") ? 6 : 4, dst, via, protocol: PROTO, multipath: true },
    });
    const ops = [
      replace("10.7.0.0/24", "192.168.9.9"),
      replace("fd07::/64", "fd00:9::9"),
      mp("10.17.0.0/24", "192.168.9.7"),
      mp("fd17::/64", "fd00:9::7"),
    ];
    const r = await contract(setup, async (t, ns) => ({
      ...await applyCase(t, ns, ops),
      listed: (await t.list()).filter((k) => k.protocol === PROTO),
    }));
    assert.deepEqual(r.netlink.failures, []);
    const byDst = new Map(r.netlink.listed.map((k) => [k.dst, k]));
    assert.equal(byDst.get("10.7.0.0/24")?.multipath, undefined);
    assert.equal(byDst.get("10.7.0.0/24")?.via, "192.168.9.9");
    assert.equal(byDst.has("10.17.0.0/24"), false, "IPv4: the whole multipath route goes");
    // IPv6 keeps next hops as sibling routes: a delete naming one hop removes that one.
    assert.equal(byDst.get("fd17::/64")?.via, "fd00:9::8");
    // The replace of fd07::/64 took every sibling: the adapters do as they are told, but the
    // differ no longer asks for it over an IPv6 multipath route, whose other siblings may
    // be another owner's (see the cases below).
  },
});

Deno.test({
  name: "contract: a delete takes our route at the metric read, and in IPv6 the sibling named",
  ignore: !!notRoot,
  async fn() {
    const setup = async (ns: Netns) => {
      const ip = (line: string) => ns.ip(...line.split(" "));
      await ip("route add 10.20.0.0/24 via 192.168.9.2 proto 202");
      await ip("route add 10.20.0.0/24 via 192.168.9.2 proto 202 metric 100");
      await ip("-6 route add fd20::/64 via fd00:9::2 proto 202");
      await ip("-6 route add fd20::/64 via fd00:9::2 proto 202 metric 100");
      await ip("-6 route add fd21::/64 via fd00:9::2 proto 202");
      await ip("-6 route append fd21::/64 via fd00:9::3 proto static");
    };
    const at = (dst: string, via: string, metric?: number, multipath?: true): RouteOp => ({
      op: "delete",
      route: { family: dst.includes(":") ? 6 : 4, dst, via, protocol: PROTO, metric, multipath },
    });
    const ops = [
      at("10.20.0.0/24", "192.168.9.2", 100),
      at("fd20::/64", "fd00:9::2", 1024),
      at("fd21::/64", "fd00:9::2", 1024, true),
    ];
    const r = await contract(setup, async (t, ns) => {
      const { failures, state } = await applyCase(t, ns, ops);
      const left =
        (state as { dst: string; gateway?: string; protocol?: string; metric?: number }[])
          .filter((k) => /^(10\.20\.|fd2)/.test(k.dst))
          .map((k) => `${k.dst} ${k.gateway ?? "-"} ${k.protocol} ${k.metric ?? 0}`);
      return { failures, left };
    });
    assert.deepEqual(r.netlink.failures, []);
    assert.deepEqual(r.netlink.left, [
      "10.20.0.0/24 192.168.9.2 202 0",
      "fd20::/64 fd00:9::2 202 100",
      "fd21::/64 fd00:9::3 static 1024",
    ]);
  },
});

/** A node of the cluster the reconciler cases route to. */
function nodeInfo(name: string, podCIDRs: string[], internalIPs: string[]): NodeInfo {
  return {
    name,
    creationTimestamp: "2026-01-01T00:00:00Z",
    podCIDRs,
    internalIPs,
    machineID: "",
    annotations: {},
  };
}

/**
 * Reconciles, through `table`, our node "a" and node "b" (its CIDRs via its addresses)
 * until nothing more is asked for; returns what the reconciles said and how many full
 * reads they made.
 */
async function reconcileB(table: RouteTable, cidrs: string[], ips: string[]) {
  let reads = 0;
  const counted: RouteTable = {
    ...table,
    list: () => {
      reads++;
      return table.list();
    },
  };
  const nodes = [nodeInfo("a", ["10.0.0.0/24"], ["192.168.9.1"]), nodeInfo("b", cidrs, ips)];
  const reconciler = new Reconciler({
    table: counted,
    nodes: () => nodes,
    node: (name) => nodes.find((n) => n.name === name),
    source: { cidrAnnotation: "", addressAnnotation: "" },
    rules: () => ({ selfName: "a", allowedCidrs: [], minPrefixV4: 8, minPrefixV6: 32 }),
    protocol: PROTO,
    log: silentLogger,
  });
  try {
    reconciler.trigger("start");
    await reconciler.idle();
    const last = reconciler.last!;
    return {
      reads,
      failures: last.failures.map((f) => `${f.op.op} ${f.op.route.dst} ${f.error}`),
      problems: last.problems.map((p) => `${p.kind} ${p.value}: ${p.reason}`),
      installed: last.installed,
    };
  } finally {
    await reconciler.stop();
  }
}

Deno.test({
  name: "contract: IPv4, a foreign route prepended before ours survives our change of next hop",
  ignore: !!notRoot,
  async fn() {
    // `ip route prepend` (NLM_F_CREATE alone) puts the static route first at metric 0; an
    // IPv4 replace would take it (the first at destination and metric), leaving ours too.
    const setup = async (ns: Netns) => {
      await ns.ip(..."route add 10.98.0.0/24 via 192.168.9.2 proto 202".split(" "));
      await ns.ip(..."route prepend 10.98.0.0/24 via 192.168.9.3 proto static".split(" "));
    };
    const r = await contract(setup, async (t, ns) => ({
      said: await reconcileB(t, ["10.98.0.0/24"], ["192.168.9.4"]),
      at: JSON.parse(await ns.ip("-json", "route", "show", "10.98.0.0/24")),
      state: await kernelState(ns),
    }));
    assert.deepEqual(r.netlink.at, [
      { dst: "10.98.0.0/24", gateway: "192.168.9.3", dev: "lan0", protocol: "static", flags: [] },
    ], "the static route untouched; ours deleted, not left beside it");
    assert.deepEqual(r.netlink.said, {
      reads: 1,
      failures: [],
      problems: [
        "foreign-route 10.98.0.0/24: a route of protocol 4 via 192.168.9.3 already has this " +
        "destination; left alone",
      ],
      installed: 0,
    });
  },
});

Deno.test({
  name: "contract: IPv6, a foreign route appended beside ours (one multipath route read as ours) " +
    "survives our change of next hop",
  ignore: !!notRoot,
  async fn() {
    // `ip -6 route append` makes the static route a sibling of ours: the dump shows one
    // route of protocol 202 with both hops, and an IPv6 replace takes every sibling.
    const setup = async (ns: Netns) => {
      await ns.ip(..."-6 route add fd98::/64 via fd00:9::2 proto 202".split(" "));
      await ns.ip(..."-6 route append fd98::/64 via fd00:9::3 proto static".split(" "));
    };
    const r = await contract(setup, async (t, ns) => ({
      said: await reconcileB(t, ["fd98::/64"], ["fd00:9::4"]),
      at: JSON.parse(await ns.ip("-6", "-json", "route", "show", "fd98::/64")),
      state: await kernelState(ns),
    }));
    assert.deepEqual(r.netlink.at, [{
      dst: "fd98::/64",
      gateway: "fd00:9::3",
      dev: "lan0",
      protocol: "static",
      metric: 1024,
      flags: [],
      pref: "medium",
    }], "the static hop untouched; ours deleted, not left beside it");
    assert.deepEqual(r.netlink.said, {
      // Our hop deleted alone, then the kernel read again: the static route shows.
      reads: 2,
      failures: [],
      problems: [
        "foreign-route fd98::/64: a route of protocol 4 via fd00:9::3 already has this " +
        "destination; left alone",
      ],
      installed: 0,
    });
  },
});

Deno.test({
  name: "contract: a route of ours at another metric is taken out, not left preferred beside ours",
  ignore: !!notRoot,
  async fn() {
    // Ours by protocol, at metric 100 (written by hand): a replace alone would add ours at
    // 1024 beside it, and the kernel would go on taking the old next hop, at 100.
    const setup = async (ns: Netns) => {
      await ns.ip(..."-6 route add fd97::/64 via fd00:9::2 proto 202 metric 100".split(" "));
    };
    const r = await contract(setup, async (t, ns) => ({
      said: await reconcileB(t, ["fd97::/64"], ["fd00:9::4"]),
      at: JSON.parse(await ns.ip("-6", "-json", "route", "show", "fd97::/64")),
      state: await kernelState(ns),
    }));
    assert.deepEqual(
      r.netlink.at.map((x: { gateway: string; metric: number }) => [x.gateway, x.metric]),
      [
        ["fd00:9::4", 1024],
      ],
    );
    assert.deepEqual(r.netlink.said, { reads: 1, failures: [], problems: [], installed: 1 });
  },
});

Deno.test({
  name: "contract: IPv4-mapped next hops of IPv6 routes, installed and deleted",
  ignore: !!notRoot,
  async fn() {
    // The kernel takes an IPv4-mapped next hop for an IPv6 route (RFC 4798) when it can
    // reach it: here through a route to ::ffff:0:0/96 on the LAN.
    const setup = (ns: Netns) =>
      ns.ip("-6", "route", "add", "::ffff:0:0/96", "dev", "lan0").then(() => {});
    const ops = [
      replace("fd05::/64", "::ffff:192.168.9.5"),
      replace("fd06::/64", "::ffff:192.168.9.6"),
    ];
    const r = await contract(setup, async (t, ns) => {
      const first = await applyCase(t, ns, ops);
      const listed = (await t.list()).filter((k) => k.protocol === PROTO);
      const deleted = await applyCase(t, ns, [del("fd06::/64", "::ffff:192.168.9.6")]);
      return { first, listed, deleted };
    });
    assert.deepEqual(r.netlink.first.failures, []);
    // Read back, a mapped next hop is IPv4 text (parseIp's rule), on an IPv6 route.
    assert.deepEqual(r.netlink.listed.map((k) => [k.family, k.dst, k.via]), [
      [6, "fd05::/64", "192.168.9.5"],
      [6, "fd06::/64", "192.168.9.6"],
    ]);
    assert.deepEqual(r.netlink.deleted.failures, []);
    // Without a way to reach it, the kernel refuses the next hop.
    const refused = await contract(none, (t, ns) => applyCase(t, ns, ops.slice(0, 1)));
    assert.deepEqual(refused.netlink.failures, [[0, "No route to host"]]);
  },
});

Deno.test({
  name: "adapters differ: a next hop not written in its route's family (documented)",
  ignore: !!notRoot,
  async fn() {
    // `ip` takes a next hop in the route's family only, and a wrong one ends the whole
    // batch (get_addr exits), so the iproute2 adapter rejects the apply. rtnetlink follows
    // the project's rule that an IPv4-mapped address is IPv4: an IPv4 route via
    // ::ffff:a.b.c.d goes via a.b.c.d, and an IPv6 route via a.b.c.d (the canonical text
    // of a mapped next hop, as list() returns it) goes via ::ffff:a.b.c.d.
    for (const adapter of ADAPTERS) {
      await using ns = await lanHost("xnl");
      await ns.ip("-6", "route", "add", "::ffff:0:0/96", "dev", "lan0");
      const t = tableFor(adapter, ns);
      const v4 = [replace("10.5.0.0/24", "::ffff:192.168.9.5")];
      const v6 = [replace("fd05::/64", "192.168.9.5")];
      if (adapter === "iproute") {
        await assert.rejects(() => t.apply(v4, PROTO), /inet address is expected/);
        await assert.rejects(() => t.apply(v6, PROTO), /inet6 address is expected/);
        assert.deepEqual(await routesOf(ns), []);
      } else {
        assert.deepEqual(await t.apply(v4, PROTO), []);
        assert.deepEqual(await t.apply(v6, PROTO), []);
        assert.deepEqual(await routesOf(ns), [
          "10.5.0.0/24 192.168.9.5",
          "fd05::/64 ::ffff:192.168.9.5",
        ]);
        // What list() returns for it can be deleted again.
        const listed = (await t.list()).filter((k) => k.dst === "fd05::/64");
        assert.deepEqual(await t.apply([{ op: "delete", route: listed[0] }], PROTO), []);
        assert.deepEqual(await routesOf(ns), ["10.5.0.0/24 192.168.9.5"]);
      }
    }
  },
});

Deno.test({
  name: "contract: host routes (/32, /128) installed, listed and deleted",
  ignore: !!notRoot,
  async fn() {
    const r = await contract(none, async (t, ns) => {
      const add = await applyCase(t, ns, [
        replace("10.3.3.3/32", "192.168.9.3"),
        replace("fd03::3/128", "fd00:9::3"),
      ]);
      const listed = (await t.list()).filter((k) => k.protocol === PROTO).map((k) =>
        `${k.dst} ${k.via}`
      );
      const gone = await applyCase(t, ns, [del("10.3.3.3/32", "192.168.9.3"), del("fd03::3/128")]);
      return { add, listed, gone };
    });
    assert.deepEqual(r.netlink.listed, ["10.3.3.3/32 192.168.9.3", "fd03::3/128 fd00:9::3"]);
    assert.deepEqual([r.netlink.add.failures, r.netlink.gone.failures], [[], []]);
  },
});

Deno.test({
  name: "contract: 2,000 routes in one apply",
  ignore: !!notRoot,
  async fn() {
    const ops = [...replaces(1000, 4, "192.168.9.2"), ...replaces(1000, 6, "fd00:9::2")];
    const r = await contract(none, async (t, ns) => ({
      ...await applyCase(t, ns, ops),
      ours: (await routesOf(ns)).length,
    }));
    assert.deepEqual([r.netlink.failures, r.netlink.ours], [[], 2000]);
  },
});

/** The netlink sockets of namespace `ns` that this process holds open. */
async function netlinkSockets(ns: Netns): Promise<number> {
  const inodes = new Set<string>();
  const table = await new Deno.Command("ip", {
    args: ["netns", "exec", ns.name, "cat", "/proc/net/netlink"],
  }).output();
  for (const line of new TextDecoder().decode(table.stdout).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 9) inodes.add(f[f.length - 1]);
  }
  let n = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
    } catch {
      continue; // the directory's own descriptor, closed by now
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1])) n++;
  }
  return n;
}

Deno.test({
  name: "netlink table: applies share one socket until the table is closed",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const before = await netlinkSockets(ns);
    const table = createNetlinkTable({ netns: ns.name });
    for (let i = 0; i < 20; i++) {
      const via = i % 2 ? "192.168.9.3" : "192.168.9.2";
      assert.deepEqual(await table.apply([replace("10.1.0.0/24", via)], PROTO), []);
    }
    assert.equal(await netlinkSockets(ns), before + 1, "one socket kept for all 20");
    assert.deepEqual(await routesOf(ns), ["10.1.0.0/24 192.168.9.3"]);
    await table.close();
    assert.equal(await netlinkSockets(ns), before, "let go on close");
    // Usable again after close, and a refusal is no failure of the socket.
    const refused = await table.apply([replace("10.2.0.0/24", "192.168.99.2")], PROTO);
    assert.equal(refused.length, 1);
    assert.equal(await netlinkSockets(ns), before + 1);
    assert.deepEqual(await table.apply([replace("10.2.0.0/24", "192.168.9.2")], PROTO), []);
    assert.deepEqual(await routesOf(ns), ["10.1.0.0/24 192.168.9.3", "10.2.0.0/24 192.168.9.2"]);
    await table.close();
    assert.equal(await netlinkSockets(ns), before);
  },
});

/** A logger keeping the messages of the sends the netlink table logs (at trace level). */
function sendLog(): { log: Logger; sends: { messages: number; bytes: number }[] } {
  const sends: { messages: number; bytes: number }[] = [];
  const log = createLogger("trace", {
    text: false,
    write: (line) => {
      const rec = JSON.parse(line);
      if (rec.msg === "netlink route changes sent") sends.push(rec);
    },
  });
  return { log, sends };
}

Deno.test({
  name: "netlink apply: one send for 2,000 operations; small buffers split it, failures still map",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    // Every seventh next hop is off the LAN and refused.
    const ops = [...replaces(1000, 4, "192.168.9.2"), ...replaces(1000, 6, "fd00:9::2")].map((
      op,
      i,
    ) => (i % 7 === 3
      ? replace(op.route.dst, op.route.family === 4 ? "192.168.99.2" : "fd00:99::2")
      : op)
    );
    const bad = ops.flatMap((_, i) => (i % 7 === 3 ? [i] : []));
    const one = sendLog();
    const table = createNetlinkTable({ netns: ns.name, log: one.log });
    const failures = failed(ops, await table.apply(ops, PROTO));
    assert.deepEqual(failures.map(([i]) => i), bad);
    assert.deepEqual(one.sends.map((s) => s.messages), [2000]);

    // Buffers as small as the kernel allows (about 4 KiB to send): many sends, and every
    // failure still names its own operation, in order.
    const dels = ops.map((
      op,
      i,
    ) => (i % 5 === 0 ? del(op.route.dst, op.route.via) : del(`10.250.${i & 255}.0/24`)));
    const many = sendLog();
    const small = createNetlinkTable({
      netns: ns.name,
      log: many.log,
      sendBuffer: 1,
      receiveBuffer: 1,
    });
    const delFailures = failed(dels, await small.apply(dels, PROTO));
    const expected = dels.flatMap((
      _,
      i,
    ) => (i % 5 === 0 && i % 7 !== 3 ? [] : [[i, "No such process"]]));
    assert.deepEqual(delFailures, expected);
    assert.ok(many.sends.length > 10, `${many.sends.length} sends`);
    assert.equal(many.sends.reduce((n, s) => n + s.messages, 0), 2000);
    assert.equal(
      (await routesOf(ns)).length,
      2000 - bad.length - (400 - bad.filter((i) => i % 5 === 0).length),
    );
    await table.close();
    await small.close();
  },
});

Deno.test({
  name: "contract: deletes of ours, of a route not there, and of a route not ours",
  ignore: !!notRoot,
  async fn() {
    const setup = async (ns: Netns) => {
      for (const [dst, via] of [["10.1.0.0/24", "192.168.9.1"], ["10.2.0.0/24", "192.168.9.2"]]) {
        await ns.ip("route", "add", dst, "via", via, "proto", "202");
      }
      await ns.ip("-6", "route", "add", "fd01::/64", "via", "fd00:9::2", "proto", "202");
      await ns.ip("route", "add", "10.9.0.0/24", "via", "192.168.9.9", "proto", "static");
    };
    const ops = [
      del("10.1.0.0/24", "192.168.9.1"),
      del("10.2.0.0/24"),
      del("fd01::/64", "fd00:9::2"),
      del("10.77.0.0/24", "192.168.9.7"),
      del("10.1.0.0/24", "192.168.9.1"),
    ];
    const r = await contract(setup, async (t, ns) => {
      const result = await applyCase(t, ns, ops);
      // Another protocol: refused before anything of the call is sent.
      const notOurs: RouteOp[] = [
        replace("10.50.0.0/24", "192.168.9.5"),
        del("10.9.0.0/24", undefined, 4),
      ];
      await assert.rejects(
        () => t.apply(notOurs, PROTO),
        /refusing to delete 10\.9\.0\.0\/24: protocol 4 is not ours/,
      );
      return {
        ...result,
        after: await kernelState(ns),
        ours: await routesOf(ns),
        static: await routesOf(ns, "static"),
      };
    });
    assert.deepEqual(r.netlink.failures, [[3, "No such process"], [4, "No such process"]]);
    assert.deepEqual(r.netlink.after, r.netlink.state, "nothing of the refused call was sent");
    assert.deepEqual(r.netlink.ours, [], "every route of ours deleted");
    assert.deepEqual(r.netlink.static, ["10.9.0.0/24 192.168.9.9"], "the static route kept");
  },
});

Deno.test({
  name: "contract: list() equal on multipath, blackhole, metric, default and odd routes",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const ip = (line: string) => ns.ip(...line.split(" "));
    await ip("route add 10.7.0.0/24 proto 202 nexthop via 192.168.9.7 nexthop via 192.168.9.8");
    await ip("-6 route add fd07::/64 proto 202 nexthop via fd00:9::7 nexthop via fd00:9::8");
    await ip("route add blackhole 10.8.0.0/24 proto 202");
    await ip("-6 route add blackhole fd08::/64 proto 202");
    await ip("route add unreachable 10.9.0.0/24");
    await ip("route add prohibit 10.10.0.0/24 proto static");
    await ip("route add 10.11.0.0/24 via 192.168.9.11 metric 77 proto 200");
    await ip("-6 route add fd02::/64 via fd00:9::2 metric 50");
    await ip("route add default via 192.168.9.254");
    await ip("-6 route add default via fd00:9::fe proto 16");
    await ip("route add 10.3.3.3 via 192.168.9.3 proto static");
    await ip("-6 route add ::ffff:0:0/96 dev lan0");
    await ip("-6 route add fd05::/64 via ::ffff:192.168.9.5 proto 202");
    await ip("route add 10.5.0.0/24 via inet6 fd00:9::5 proto 202");
    await ip("route add 10.12.0.0/24 via 192.168.9.12 table 7");
    const want = await createIprouteTable({ netns: ns.name }).list();
    const got = await createNetlinkTable({ netns: ns.name }).list();
    assert.deepEqual(got, want);
    const find = (dst: string) => got.find((r) => r.dst === dst);
    assert.deepEqual(
      { ...find("fd07::/64") },
      {
        family: 6,
        dst: "fd07::/64",
        via: "fd00:9::7",
        dev: "lan0",
        protocol: 202,
        type: undefined,
        metric: 1024,
        multipath: true,
      } satisfies KernelRoute,
    );
    assert.equal(find("10.8.0.0/24")?.type, "6");
    assert.equal(find("10.11.0.0/24")?.metric, 77);
    assert.equal(find("::/0")?.protocol, 16);
    assert.equal(find("fd05::/64")?.via, "192.168.9.5");
    // Left out alike: another table; a mapped IPv6 destination whose text reads as IPv4.
    assert.equal(find("10.12.0.0/24"), undefined);
    assert.equal(got.some((r) => r.dst === "0.0.0.0/0" && r.family === 6), false);
    // A next hop of the other family (RTA_VIA) is not a `gateway` in ip's JSON either.
    assert.equal(find("10.5.0.0/24")?.via, undefined);
  },
});

Deno.test({
  name: "contract: localAddresses() equal",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    await ns.lan("x0", ["10.9.8.1/24", "10.9.8.2/24", "fd00:1::1/128"]);
    await ns.ip("addr", "add", "10.9.9.1", "peer", "10.9.9.2/32", "dev", "x0");
    await ns.ip("-6", "addr", "add", "fd00:2::1", "peer", "fd00:2::2/128", "dev", "x0");
    await ns.ip("-6", "addr", "add", "::ffff:10.1.1.1/128", "dev", "x0");
    const want = await createIprouteTable({ netns: ns.name }).localAddresses();
    const got = await createNetlinkTable({ netns: ns.name }).localAddresses();
    assert.deepEqual(got, want);
    assert.ok(got.some((a) => a.address === "10.9.9.1" && a.prefix === 32 && a.dev === "x0"));
    assert.ok(got.some((a) => a.address === "fd00:2::1" && a.prefix === 128));
    assert.ok(got.some((a) => a.address === "10.9.8.2" && a.prefix === 24));
  },
});

Deno.test({
  name: "contract: openBatch written in three chunks, failures in the order sent",
  ignore: !!notRoot,
  async fn() {
    const chunks = [
      replaces(100, 4, "192.168.9.2"),
      [
        replace("10.200.0.0/24", "192.168.99.2"),
        del("10.201.0.0/24"),
        replace("10.202.0.0/24", "192.168.9.2"),
      ],
      [...replaces(100, 6, "fd00:9::2"), replace("fd99::/64", "fd00:99::1")],
    ];
    const all = chunks.flat();
    const r = await contract(none, async (t, ns) => {
      const batch = t.openBatch(PROTO);
      batch.write(chunks[0]);
      // A write holding a delete not ours throws and sends none of it; the batch goes on.
      assert.throws(
        () =>
          batch.write([replace("10.203.0.0/24", "192.168.9.2"), del("10.9.0.0/24", undefined, 4)]),
        /not ours/,
      );
      batch.write(chunks[1]);
      // One turn of the event loop: the last chunk comes while the others are being applied.
      await new Promise((r) => setTimeout(r, 0));
      batch.write(chunks[2]);
      const failures = failed(all, await batch.close());
      return { failures, state: await kernelState(ns), ours: (await routesOf(ns)).length };
    });
    assert.deepEqual(r.netlink.failures, [
      [100, "Nexthop has invalid gateway."],
      [101, "No such process"],
      [203, "No route to host"],
    ]);
    assert.equal(r.netlink.ours, 201);
    // An empty batch runs nothing.
    assert.deepEqual(
      await createNetlinkTable({ netns: "xnl-none-such" }).openBatch(PROTO).close(),
      [],
    );
  },
});

Deno.test({
  name: "netlink table: works with no `ip` on PATH (child process, namespace made here)",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const emptyBin = await Deno.makeTempDir({ prefix: "xnl-empty-path-" });
    const scriptDir = await Deno.makeTempDir({ prefix: "xnl-script-" });
    try {
      const table = new URL("../src/netlink/table.ts", import.meta.url).href;
      const script = `${scriptDir}/child.ts`;
      await Deno.writeTextFile(
        script,
        `import { createNetlinkTable } from ${JSON.stringify(table)};
let ipFound = true;
try { new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" }).outputSync(); }
catch (e) { if (e instanceof Deno.errors.NotFound) ipFound = false; else throw e; }
const t = createNetlinkTable({ netns: Deno.args[0] });
const ops = [
  { op: "replace", route: { family: 4, dst: "10.5.0.0/24", via: "192.168.9.5", node: "n" } },
  { op: "replace", route: { family: 6, dst: "fd05::/64", via: "fd00:99::5", node: "n" } },
];
const failures = (await t.apply(ops, 202)).map((f) => [ops.indexOf(f.op), f.error]);
const routes = (await t.list()).filter((r) => r.protocol === 202).map((r) => r.dst + " " + r.via);
const addresses = (await t.localAddresses()).filter((a) => a.dev === "lan0").map((a) => a.address);
console.log(JSON.stringify({ ipFound, failures, routes, addresses }));
`,
      );
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-ffi", "--allow-read", script, ns.name],
        cwd: scriptDir,
        env: { PATH: emptyBin },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      const got = JSON.parse(new TextDecoder().decode(out.stdout));
      assert.equal(got.ipFound, false, "the child must not find ip");
      assert.deepEqual(got.failures, [[1, "No route to host"]]);
      assert.deepEqual(got.routes, ["10.5.0.0/24 192.168.9.5"]);
      assert.deepEqual(got.addresses.slice(0, 2), ["192.168.9.1", "fd00:9::1"]);
      assert.deepEqual(await routesOf(ns), ["10.5.0.0/24 192.168.9.5"]);
    } finally {
      await Deno.remove(emptyBin, { recursive: true });
      await Deno.remove(scriptDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "timing: one apply of 10,000 routes with each adapter (printed, not asserted)",
  ignore: !!notRoot,
  async fn() {
    const ops = [...replaces(5000, 4, "192.168.9.2"), ...replaces(5000, 6, "fd00:9::2")];
    for (const adapter of ADAPTERS) {
      await using ns = await lanHost("xnl");
      const table = tableFor(adapter, ns);
      const t0 = performance.now();
      const failures = await table.apply(ops, PROTO);
      const applyMs = performance.now() - t0;
      const t1 = performance.now();
      const listed = await table.list();
      const listMs = performance.now() - t1;
      assert.deepEqual(failures, []);
      assert.equal(listed.filter((r) => r.protocol === PROTO).length, 10_000);
      console.log(
        `${adapter}: apply of 10,000 routes ${applyMs.toFixed(0)} ms, list ${listMs.toFixed(0)} ms`,
      );
    }
  },
});

// ---------------------------------------------------------------------------------------
// The monitor

/** Waits until a monitor reports a link change that this test makes (its subscription is on). */
async function monitorListening(ns: Netns, seen: readonly KernelEvent[]): Promise<void> {
  let tries = 0;
  await pollUntil(async () => {
    await ns.ip("link", "set", "lan0p", "mtu", String(1400 + (tries++ % 2)));
    return seen.some((e) => e.kind === "link-change");
  }, { message: "monitor running" });
}

Deno.test({
  name: "monitor: route changes of every protocol with dst and protocol, as `ip monitor` sees them",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const nl: KernelEvent[] = [];
    const ip: KernelEvent[] = [];
    // As the daemon runs it: its own additions (protocol 202) dropped by the kernel.
    const own: KernelEvent[] = [];
    const a = watchRoutesNetlink({ netns: ns.name, onEvent: (e) => nl.push(e) });
    const b = watchRoutes({ netns: ns.name, onEvent: (e) => ip.push(e) });
    const c = watchRoutesNetlink({ netns: ns.name, onEvent: (e) => own.push(e), skipAddedOf: 202 });
    try {
      await monitorListening(ns, nl);
      await monitorListening(ns, ip);
      await monitorListening(ns, own);
      nl.length = 0;
      ip.length = 0;
      own.length = 0;
      await ns.ip("route", "add", "10.7.0.0/24", "via", "192.168.9.7", "proto", "200");
      await ns.ip("route", "add", "10.8.0.0/24", "via", "192.168.9.8", "proto", "202");
      await ns.ip("-6", "route", "add", "fd08::/64", "via", "fd00:9::8", "proto", "202");
      await ns.ip("route", "add", "10.3.3.3", "via", "192.168.9.3");
      await ns.ip("route", "add", "10.12.0.0/24", "via", "192.168.9.12", "table", "7");
      await ns.ip("route", "del", "10.7.0.0/24");
      await ns.ip("route", "del", "10.8.0.0/24");
      await ns.ip("-6", "route", "del", "fd08::/64");
      await ns.ip("route", "replace", "10.9.0.0/24", "via", "192.168.9.9", "proto", "static");
      const routeEvents = (seen: KernelEvent[]) =>
        seen.filter((e) => e.kind.startsWith("route")).map((e) =>
          `${e.kind} ${e.dst} ${e.protocol}`
        );
      const want = [
        "route-added 10.7.0.0/24 200",
        "route-added 10.8.0.0/24 202",
        "route-added fd08::/64 202",
        "route-added 10.3.3.3/32 3",
        "route-deleted 10.7.0.0/24 200",
        "route-deleted 10.8.0.0/24 202",
        "route-deleted fd08::/64 202",
        "route-added 10.9.0.0/24 4",
      ];
      await pollUntil(
        () => routeEvents(nl).length >= want.length && routeEvents(ip).length >= want.length,
        {
          message: () => JSON.stringify({ nl: routeEvents(nl), ip: routeEvents(ip) }),
        },
      );
      assert.deepEqual(routeEvents(nl), want);
      assert.deepEqual(routeEvents(nl), routeEvents(ip));
      const notOwnAdded = want.filter((e) => !(e.startsWith("route-added") && e.endsWith(" 202")));
      await pollUntil(() => routeEvents(own).length >= notOwnAdded.length);
      assert.deepEqual(routeEvents(own), notOwnAdded);
      nl.length = 0;
      await ns.ip("link", "set", "lan0", "down");
      await pollUntil(
        () => nl.some((e) => e.kind === "link-change" && / lan0 down$/.test(e.detail)),
        {
          message: () => `link down: ${JSON.stringify(nl)}`,
        },
      );
      await ns.ip("link", "set", "lan0", "up");
      await ns.ip("addr", "add", "192.168.19.1/24", "dev", "lan0");
      await pollUntil(
        () => nl.some((e) => e.kind === "address-change" && e.detail.includes("192.168.19.1/24")),
        {
          message: () => `address: ${JSON.stringify(nl)}`,
        },
      );
    } finally {
      await a.close();
      await b.close();
      await c.close();
    }
  },
});

Deno.test({
  name: "monitor: waiting blocks nothing (timers tick), and close() ends the wait at once",
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const seen: KernelEvent[] = [];
    const m = watchRoutesNetlink({ netns: ns.name, onEvent: (e) => seen.push(e) });
    let closed = false;
    try {
      await monitorListening(ns, seen);
      // The monitor now waits in poll(2), on a worker thread: the event loop must run.
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      try {
        await pollUntil(() => ticks >= 20, { timeoutMs: 2000, message: () => `${ticks} ticks` });
      } finally {
        clearInterval(timer);
      }
      const t0 = performance.now();
      await m.close();
      closed = true;
      const ms = performance.now() - t0;
      assert.ok(ms < 500, `close took ${ms.toFixed(0)} ms`);
    } finally {
      if (!closed) await m.close();
    }
  },
});

Deno.test({
  name: 'monitor: an overrun (ENOBUFS) is reported as a link change "overrun"',
  ignore: !!notRoot,
  async fn() {
    await using ns = await lanHost("xnl");
    const seen: KernelEvent[] = [];
    // The smallest buffer the kernel allows, and an event loop kept busy while 2,000
    // routes are added: the notifications cannot all wait in it.
    const m = watchRoutesNetlink({
      netns: ns.name,
      onEvent: (e) => seen.push(e),
      receiveBuffer: 1,
    });
    try {
      await monitorListening(ns, seen);
      const lines = Array.from(
        { length: 2000 },
        (_, i) => `route add 10.${i >> 8}.${i & 255}.0/24 via 192.168.9.2 proto 202`,
      );
      const file = await Deno.makeTempFile({ prefix: "xnl-batch-" });
      try {
        await Deno.writeTextFile(file, lines.join("\n") + "\n");
        // Synchronous on purpose: the monitor cannot read while this runs.
        const out = new Deno.Command("ip", { args: ["-n", ns.name, "-batch", file] }).outputSync();
        assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      } finally {
        await Deno.remove(file);
      }
      await pollUntil(() => seen.some((e) => e.kind === "link-change" && e.detail === "overrun"), {
        message: () => `no overrun in ${seen.length} events`,
      });
      assert.ok(seen.filter((e) => e.kind === "route-added").length < 2000, "some were lost");
    } finally {
      await m.close();
    }
  },
});
