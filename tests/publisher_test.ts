/**
 * The address publisher: which of the host's addresses go into the address annotation, and
 * how changes are followed. Selection cases run on `ip -json address` output read from a
 * namespace built for them; the publisher runs against a namespace too. Needs root.
 */
import assert from "node:assert/strict";
import { createLogger, type Fields } from "../src/log.ts";
import { formatCidr } from "../src/net/ip.ts";
import {
  addressEventMatters,
  type AddressSelector,
  addressSelector,
  describeCandidates,
  type HostAddress,
  parseAddressInterface,
  parseAddressSubnets,
  parseHostAddresses,
  planAnnotation,
  planProblem,
  unusableReason,
} from "../src/publish/addresses.ts";
import {
  type AddressPublisher,
  type AddressPublisherOptions,
  readHostAddresses,
  startAddressPublisher,
} from "../src/publish/publisher.ts";
import { netlinkAddressSource } from "../src/publish/sources.ts";
import { Netns, pollUntil, requireRoot } from "./helpers/netns.ts";

const notRoot = requireRoot();

const net3 = { interface: "net3" } as const;
const subnets = (text: string): AddressSelector => ({ subnets: parseAddressSubnets(text) });

/** Runs `ip -n NS` with the words of one command line. */
function ip(ns: Netns, line: string): Promise<string> {
  return ns.ip(...line.split(" "));
}

/** Whether the namespace has `address` (canonical) on `dev` with `flag` in `ip -json`. */
async function hasFlag(ns: Netns, address: string, flag: keyof HostAddress): Promise<boolean> {
  const addrs = await readHostAddresses({ netns: ns.name });
  return addrs.some((a) => a.address === address && a[flag] === true);
}

/**
 * Builds the host the selection cases read:
 * - net3 (a veth, its peer up): IPv4 192.168.2.5, .3, .1 (deprecated), 169.254.7.7
 *   (link-local, scope global), 10.9.9.9 (scope host), 10.8.8.8 (scope link); IPv6
 *   1000::1:c0a8:205, :203, :200 (deprecated), :201 (tentative), :202 (dadfailed), fe80::.
 * - eth9: 10.20.0.5/16, 10.20.0.4/16, fd20::5/64.
 * - priv0: fd30::ffff:ffff:ffff:ffff/64 managing privacy addresses, and its temporary one.
 */
async function buildHost(ns: Netns): Promise<void> {
  await ip(ns, "link add net3 type veth peer name net3p");
  // The namespace turns DAD off; net3 needs it for a tentative and a dadfailed address,
  // and a long one (50 probes, a second apart) keeps the tentative one so while we read.
  await ns.sysctl("net.ipv6.conf.net3.accept_dad", "1");
  await ns.sysctl("net.ipv6.conf.net3.dad_transmits", "50");
  await ip(ns, "link set net3p up");
  await ip(ns, "link set net3 up");
  await ip(ns, "addr add 192.168.2.5/24 dev net3");
  await ip(ns, "addr add 192.168.2.3/24 dev net3");
  await ip(ns, "addr add 192.168.2.1/24 dev net3 preferred_lft 0");
  await ip(ns, "addr add 169.254.7.7/16 dev net3");
  await ip(ns, "addr add 10.9.9.9/32 dev net3 scope host");
  await ip(ns, "addr add 10.8.8.8/24 dev net3 scope link");
  await ip(ns, "-6 addr add 1000::1:c0a8:205/120 dev net3 nodad");
  await ip(ns, "-6 addr add 1000::1:c0a8:203/120 dev net3 nodad");
  await ip(ns, "-6 addr add 1000::1:c0a8:200/120 dev net3 nodad preferred_lft 0");
  // dadfailed: the peer end holds the address, answers net3's probe, and then lets it go.
  await ip(ns, "-6 addr add 1000::1:c0a8:202/120 dev net3p nodad");
  await ip(ns, "-6 addr add 1000::1:c0a8:202/120 dev net3");
  await pollUntil(() => hasFlag(ns, "1000::1:c0a8:202", "dadfailed"), {
    timeoutMs: 10_000,
    message: "DAD of 1000::1:c0a8:202 did not fail",
  });
  await ip(ns, "-6 addr del 1000::1:c0a8:202/120 dev net3p");

  await ip(ns, "link add eth9 type veth peer name eth9p");
  await ip(ns, "link set eth9 up");
  await ip(ns, "addr add 10.20.0.5/16 dev eth9");
  await ip(ns, "addr add 10.20.0.4/16 dev eth9");
  await ip(ns, "-6 addr add fd20::5/64 dev eth9 nodad");

  await ip(ns, "link add priv0 type veth peer name priv0p");
  await ns.sysctl("net.ipv6.conf.priv0.use_tempaddr", "2");
  await ip(ns, "link set priv0 up");
  await ip(ns, "-6 addr add fd30::ffff:ffff:ffff:ffff/64 dev priv0 mngtmpaddr nodad");
  await pollUntil(
    async () => (await readHostAddresses({ netns: ns.name })).some((a) => a.temporary),
    { message: "no privacy address made on priv0" },
  );

  // Last, and read at once: DAD runs for 50 s, so it is still tentative when read.
  await ip(ns, "-6 addr add 1000::1:c0a8:201/120 dev net3");
}

function find(addrs: readonly HostAddress[], address: string): HostAddress {
  const a = addrs.find((x) => x.address === address);
  assert.ok(a, `${address} not among ${addrs.map((x) => x.address).join(" ")}`);
  return a;
}

Deno.test({
  name: "selection: rules applied to a real namespace's addresses",
  ignore: !!notRoot,
  async fn(t) {
    await using ns = await Netns.create("xpub");
    await buildHost(ns);
    const json: unknown = JSON.parse(await ip(ns, "-json address show"));
    const addrs = parseHostAddresses(json);
    const temporary = addrs.find((a) => a.temporary && a.dev === "priv0");
    assert.ok(temporary);

    await t.step("rtnetlink reads what ip reads, flags included", async () => {
      const key = (a: HostAddress) =>
        [a.dev, a.address, a.prefix, a.scope, a.tentative, a.dadfailed, a.deprecated, a.temporary]
          .join(" ");
      const viaNetlink = (await netlinkAddressSource({ netns: ns.name }).read()).map(key);
      // The tentative address may finish DAD between the two reads: compare the rest.
      const settled = (k: string) => !k.includes("1000::1:c0a8:201");
      assert.deepEqual(viaNetlink.filter(settled).sort(), addrs.map(key).filter(settled).sort());
      assert.ok(viaNetlink.some((k) => k.startsWith("net3 1000::1:c0a8:202 120 global true true")));
    });

    await t.step("the kernel's flags come through parsing", () => {
      const reasons = Object.fromEntries(
        [
          "192.168.2.3",
          "192.168.2.1",
          "169.254.7.7",
          "10.9.9.9",
          "10.8.8.8",
          "127.0.0.1",
          "::1",
          "1000::1:c0a8:203",
          "1000::1:c0a8:200",
          "1000::1:c0a8:201",
          "1000::1:c0a8:202",
        ].map((x) => [x, unusableReason(find(addrs, x)) ?? "usable"]),
      );
      assert.deepEqual(reasons, {
        "192.168.2.3": "usable",
        "192.168.2.1": "deprecated",
        "169.254.7.7": "link-local",
        "10.9.9.9": "scope host",
        "10.8.8.8": "scope link",
        "127.0.0.1": "loopback",
        "::1": "loopback",
        "1000::1:c0a8:203": "usable",
        "1000::1:c0a8:200": "deprecated",
        "1000::1:c0a8:201": "tentative",
        "1000::1:c0a8:202": "dadfailed",
      });
      assert.equal(find(addrs, "1000::1:c0a8:200").preferredLifetime, 0);
      const linkLocal = addrs.find((a) => a.dev === "net3" && a.address.startsWith("fe80:"));
      assert.ok(linkLocal && unusableReason(linkLocal) === "link-local");
      assert.equal(temporary.family, 6);
      assert.equal(unusableReason(temporary), undefined);
    });

    await t.step("interface: its lowest usable address of each family", () => {
      const plan = planAnnotation(addrs, net3, "");
      // .1 and :200 (deprecated), :201 (tentative), :202 (dadfailed) are lower, and
      // 10.x are lower still but not global; eth9's addresses are on another interface.
      assert.equal(plan.value, "192.168.2.3,1000::1:c0a8:203");
      assert.equal(plan.value.split(",").length, 2);
      assert.equal(planProblem(plan, net3), undefined);
    });

    await t.step("the pick does not depend on the order ip lists addresses in", () => {
      const reversed = [...addrs].reverse();
      for (const selector of [net3, subnets("10.20.0.0/16,192.168.2.0/24,1000::/16")]) {
        assert.equal(
          planAnnotation(reversed, selector).value,
          planAnnotation(addrs, selector).value,
        );
      }
    });

    await t.step("sticky: the annotation's address stays while it is usable", () => {
      assert.equal(
        planAnnotation(addrs, net3, "192.168.2.5,1000::1:c0a8:205").value,
        "192.168.2.5,1000::1:c0a8:205",
      );
      // Non-canonical text of the same address is rewritten canonically.
      assert.equal(
        planAnnotation(addrs, net3, "192.168.2.5, 1000:0::1:c0a8:205").value,
        "192.168.2.5,1000::1:c0a8:205",
      );
      // Deprecated, tentative or not ours: the best usable one instead.
      assert.equal(
        planAnnotation(addrs, net3, "192.168.2.1,1000::1:c0a8:201").value,
        "192.168.2.3,1000::1:c0a8:203",
      );
      assert.equal(
        planAnnotation(addrs, net3, "192.168.2.77,garbage").value,
        "192.168.2.3,1000::1:c0a8:203",
      );
    });

    await t.step("subnets: the first subnet listed wins, then the lowest address", () => {
      const a = subnets("192.168.2.0/24,10.20.0.0/16,1000::1:c0a8:200/120,fd20::/64");
      assert.equal(planAnnotation(addrs, a).value, "192.168.2.3,1000::1:c0a8:203");
      const b = subnets("fd20::/64,10.20.0.0/16,192.168.2.0/24,1000::1:c0a8:200/120");
      assert.equal(planAnnotation(addrs, b).value, "10.20.0.4,fd20::5");
      // One subnet over both interfaces: the lowest address, whichever interface has it.
      assert.equal(planAnnotation(addrs, subnets("0.0.0.0/0")).value, "10.20.0.4");
      // A subnet listed first does not move the annotation off a usable address ranked
      // below it... unless it is a better subnet's: rule 3 comes before rule 4.
      assert.equal(planAnnotation(addrs, a, "192.168.2.5").value, "192.168.2.5,1000::1:c0a8:203");
      assert.equal(planAnnotation(addrs, b, "192.168.2.5").value, "10.20.0.4,fd20::5");
    });

    await t.step("never loopback, link-local, host or link scope, whatever is asked", () => {
      for (const s of ["127.0.0.0/8,::1/128", "169.254.0.0/16,fe80::/10", "10.8.0.0/15"]) {
        const plan = planAnnotation(addrs, subnets(s), "");
        assert.equal(plan.value, "", s);
        assert.match(planProblem(plan, subnets(s)) ?? "", /^no usable address \(subnets /);
      }
    });

    await t.step("temporary addresses: only when nothing else is usable", () => {
      const priv0 = { interface: "priv0" };
      // The managing address is the highest possible, so only rule 3's flag can pick it.
      assert.ok(temporary.ip.value < find(addrs, "fd30::ffff:ffff:ffff:ffff").ip.value);
      assert.equal(planAnnotation(addrs, priv0).value, "fd30::ffff:ffff:ffff:ffff");
      assert.equal(
        planAnnotation(addrs, priv0, temporary.address).value,
        "fd30::ffff:ffff:ffff:ffff",
      );
      const onlyTemporary = addrs.filter((a) => a.address !== "fd30::ffff:ffff:ffff:ffff");
      assert.equal(planAnnotation(onlyTemporary, priv0).value, temporary.address);
    });

    await t.step("a family without a usable address keeps the annotation's entry", () => {
      const noV6 = addrs.filter((a) => !(a.dev === "net3" && a.family === 6));
      const plan = planAnnotation(noV6, net3, "192.168.2.3,1000::1:c0a8:203");
      assert.equal(plan.value, "192.168.2.3,1000::1:c0a8:203");
      assert.deepEqual(plan.kept.map((ip) => ip.text), ["1000::1:c0a8:203"]);
      assert.equal(
        planProblem(plan, net3),
        "no usable IPv6 address (interface net3); the annotation keeps 1000::1:c0a8:203",
      );
      // A family the annotation never had is no problem.
      const single = planAnnotation(noV6, net3, "");
      assert.equal(single.value, "192.168.2.3");
      assert.equal(planProblem(single, net3), undefined);
    });

    await t.step("an interface without addresses: nothing, and the problem says why", () => {
      const plan = planAnnotation(addrs, { interface: "net9" }, "192.168.2.3");
      assert.equal(plan.value, "192.168.2.3");
      assert.equal(plan.chosen[4], undefined);
      assert.equal(
        planProblem(plan, { interface: "net9" }),
        "no usable address (interface net9); the annotation keeps 192.168.2.3",
      );
      const seen = describeCandidates(addrs, net3);
      assert.ok(seen.includes("1000::1:c0a8:201/120 on net3: tentative"), seen.join("; "));
    });
  },
});

/** Asserts that `fn` throws an Error whose message matches `reason`. */
function throwsWith(fn: () => unknown, reason: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, reason);
    return true;
  });
}

Deno.test("ADDRESS_INTERFACE and ADDRESS_SUBNETS: values and errors naming them", () => {
  assert.equal(parseAddressInterface(" net3 "), "net3");
  assert.equal(parseAddressInterface("enp0s31f6.100"), "enp0s31f6.100");
  const refused: [string, RegExp][] = [
    ["", /^"": expected an interface name$/],
    ["net/3", /^"net\/3": .*'\/'/],
    ["net3:1", /^"net3:1": .*':'/],
    ["net 3", /^"net 3": .*whitespace/],
    [".", /^"\.": not an interface name$/],
    ["..", /^"\.\.": not an interface name$/],
    ["abcdefghijklmnop", /^"abcdefghijklmnop": .*at most 15 bytes, not 16$/],
  ];
  for (const [value, reason] of refused) throwsWith(() => parseAddressInterface(value), reason);
  assert.equal(parseAddressInterface("abcdefghijklmno"), "abcdefghijklmno");

  assert.deepEqual(
    parseAddressSubnets("192.168.2.0/24, 1000::1:c0a8:200/120").map((c) => formatCidr(c)),
    ["192.168.2.0/24", "1000::1:c0a8:200/120"],
  );
  const badSubnets: [string, RegExp][] = [
    ["", /^"": expected one or more CIDRs$/],
    [
      "192.168.2.3/24",
      /^"192\.168\.2\.3\/24": host bits set \(the network is 192\.168\.2\.0\/24\)$/,
    ],
    ["1000:0::/64", /^"1000:0::\/64": not in canonical form \(write 1000::\/64\)$/],
    [
      "::ffff:10.0.0.0/104",
      /^"::ffff:10\.0\.0\.0\/104": not in canonical form \(write 10\.0\.0\.0\/8\)$/,
    ],
    ["192.168.2.0", /^"192\.168\.2\.0": expected address\/prefix$/],
    ["10.0.0.0/33", /^"10\.0\.0\.0\/33": prefix \/33 exceeds 32$/],
    ["net3", /^"net3": not an IP address$/],
    ["192.168.2.0/24,net3/24", /^"net3\/24": not an IP address$/],
    ["10.0.0.0/8,fd00::/8,10.0.0.0/8", /^"10\.0\.0\.0\/8": listed twice$/],
  ];
  for (const [value, reason] of badSubnets) throwsWith(() => parseAddressSubnets(value), reason);

  assert.deepEqual(addressSelector("net3", undefined), { interface: "net3" });
  assert.equal(addressSelector("", []), undefined);
  throwsWith(
    () => addressSelector("net3", parseAddressSubnets("10.0.0.0/8")),
    /^set ADDRESS_INTERFACE or ADDRESS_SUBNETS, not both$/,
  );
});

Deno.test("monitor lines that cannot change the selection are skipped", () => {
  const s = subnets("192.168.2.0/24");
  // Lines as `ip -N monitor address` prints them.
  assert.equal(addressEventMatters("3: net3    inet 192.168.2.3/24 scope 0 net3", net3), true);
  assert.equal(
    addressEventMatters("Deleted 3: net3    inet6 1000::1:c0a8:203/120 scope 0 ", net3),
    true,
  );
  assert.equal(addressEventMatters("4: eth9    inet 192.168.2.3/24 scope 0 eth9", net3), false);
  assert.equal(addressEventMatters("4: eth9    inet 192.168.2.3/24 scope 0 eth9", s), true);
  assert.equal(addressEventMatters("4: eth9    inet 10.0.0.3/24 scope 0 eth9", s), false);
  assert.equal(addressEventMatters("3: net3    inet6 fe80::1/64 scope 253 ", net3), false);
  assert.equal(addressEventMatters("       valid_lft forever preferred_lft forever", net3), false);
  assert.equal(addressEventMatters("something new", net3), true);
  // Links: ours by its name now (a rename to it), no other, none with subnets.
  const up = "5: net3: <BROADCAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN ";
  assert.equal(addressEventMatters(up, net3), true);
  assert.equal(addressEventMatters(`Deleted ${up}`, net3), true);
  assert.equal(addressEventMatters(up, s), false);
  assert.equal(addressEventMatters("7: veth1@if2: <BROADCAST,UP> mtu 1500 state UP ", net3), false);
});

/** Log lines captured as records. */
function captureLog(): { lines: Fields[]; log: ReturnType<typeof createLogger> } {
  const lines: Fields[] = [];
  const log = createLogger("debug", { write: (l) => lines.push(JSON.parse(l)), text: false });
  return { lines, log };
}

/** Our Node's annotation as the publisher sees it, and the patches made to it. */
class FakeNode {
  /** undefined: the Node is not known yet. */
  value: string | undefined = "";
  readonly calls: { value: string; at: number }[] = [];
  /** How many of the next publishes throw. */
  failures = 0;
  publisher?: AddressPublisher;

  readonly publish = (value: string): Promise<void> => {
    this.calls.push({ value, at: Date.now() });
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error("the API server is unavailable"));
    }
    this.value = value;
    // The informer shows the change, and the caller rechecks, after the patch returns.
    return Promise.resolve().then(() => {
      queueMicrotask(() => this.publisher?.recheck());
    });
  };
}

/** A publisher of net3's addresses in `ns` for `node`, with its log and problems. */
function start(
  ns: Netns,
  node: FakeNode,
  extra: Partial<AddressPublisherOptions> = {},
): { pub: AddressPublisher; lines: Fields[]; problems: (string | undefined)[] } {
  const { lines, log } = captureLog();
  const problems: (string | undefined)[] = [];
  const pub = startAddressPublisher({
    netns: ns.name,
    selector: net3,
    current: () => node.value,
    publish: node.publish,
    log,
    onProblem: (p) => problems.push(p),
    ...extra,
  });
  node.publisher = pub;
  return { pub, lines, problems };
}

/** A namespace with net3 (a veth, up) holding 192.168.2.3/24 and 1000::1:c0a8:203/120. */
async function net3Host(): Promise<Netns> {
  const ns = await Netns.create("xpub");
  try {
    await ip(ns, "link add net3 type veth peer name net3p");
    // As systemd sets it on hosts: deleting the first IPv4 address of a subnet keeps the
    // others of the subnet (the kernel's default deletes them with it).
    await ns.sysctl("net.ipv4.conf.net3.promote_secondaries", "1");
    await ip(ns, "link set net3p up");
    await ip(ns, "link set net3 up");
    await ip(ns, "addr add 192.168.2.3/24 dev net3");
    await ip(ns, "-6 addr add 1000::1:c0a8:203/120 dev net3 nodad");
  } catch (e) {
    await ns.delete();
    throw e;
  }
  return ns;
}

/** Polls until the publisher has read `address` (present or not, as `present` says). */
async function untilRead(pub: AddressPublisher, address: string, present = true): Promise<void> {
  await pollUntil(() => pub.addresses().some((a) => a.address === address) === present, {
    message: `publisher never read ${address} ${present ? "present" : "gone"}`,
  });
}

/** Polls until the node's annotation is `value`, within `ms`; returns the time it took. */
async function untilPublished(node: FakeNode, value: string, since: number, ms = 1000) {
  await pollUntil(() => node.value === value, {
    timeoutMs: ms,
    intervalMs: 5,
    message: () => `annotation ${JSON.stringify(node.value)}, expected ${JSON.stringify(value)}`,
  });
  return Date.now() - since;
}

const warnings = (lines: Fields[], msg: string) =>
  lines.filter((l) => l.level === "warn" && l.msg === msg).length;

Deno.test({
  name: "publisher: publishes, stays put, follows a replacement, holds on loss",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    // A grace long enough that a replacement (delete, add) is never reported as a problem.
    const { pub, lines, problems } = start(ns, node, { timing: { problemGraceMs: 1000 } });
    try {
      await untilPublished(node, "192.168.2.3,1000::1:c0a8:203", Date.now(), 5000);
      assert.equal(pub.counters.publications, 1);

      // A second address of each family, lower ones: peers keep routing to the first.
      await ip(ns, "addr add 192.168.2.2/24 dev net3");
      await ip(ns, "-6 addr add 1000::1:c0a8:202/120 dev net3 nodad");
      await untilRead(pub, "192.168.2.2");
      await untilRead(pub, "1000::1:c0a8:202");
      assert.equal(node.calls.length, 1);
      assert.equal(pub.selected(), "192.168.2.3,1000::1:c0a8:203");

      // The first goes: the second takes over.
      let t0 = Date.now();
      await ip(ns, "addr del 192.168.2.3/24 dev net3");
      let ms = await untilPublished(node, "192.168.2.2,1000::1:c0a8:203", t0);
      console.log(`IPv4 address gone -> annotation updated in ${ms} ms`);

      // Replaced (delete, then add another): the new one, within a second.
      t0 = Date.now();
      await ip(ns, "addr del 192.168.2.2/24 dev net3");
      await ip(ns, "addr add 192.168.2.9/24 dev net3");
      ms = await untilPublished(node, "192.168.2.9,1000::1:c0a8:203", t0);
      console.log(`IPv4 address replaced -> annotation updated in ${ms} ms`);
      t0 = Date.now();
      await ip(ns, "-6 addr del 1000::1:c0a8:203/120 dev net3");
      await ip(ns, "-6 addr del 1000::1:c0a8:202/120 dev net3");
      await ip(ns, "-6 addr add 1000::1:c0a8:209/120 dev net3 nodad");
      ms = await untilPublished(node, "192.168.2.9,1000::1:c0a8:209", t0);
      console.log(`IPv6 address replaced -> annotation updated in ${ms} ms`);
      // Never an annotation without one of the families, even between delete and add.
      for (const c of node.calls) assert.equal(c.value.split(",").length, 2, c.value);
      assert.equal(pub.problem(), undefined);

      // The IPv6 address goes without a successor: kept, and reported.
      const published = node.calls.length;
      await ip(ns, "-6 addr del 1000::1:c0a8:209/120 dev net3");
      await pollUntil(() => pub.problem() !== undefined, { message: "no problem reported" });
      assert.equal(
        pub.problem(),
        "no usable IPv6 address (interface net3); the annotation keeps 1000::1:c0a8:209",
      );
      await ip(ns, "-6 addr add 1000::1:c0a8:209/120 dev net3 nodad");
      await pollUntil(() => pub.problem() === undefined, { message: "problem not resolved" });

      // All addresses gone: nothing published, the problem reported once.
      await ip(ns, "addr flush dev net3");
      await pollUntil(() => pub.problem()?.startsWith("no usable address") === true, {
        message: () => `problem: ${pub.problem()}`,
      });
      // More events while it lasts: a tentative address (DAD on, and long), a link-local.
      await ns.sysctl("net.ipv6.conf.net3.accept_dad", "1");
      await ns.sysctl("net.ipv6.conf.net3.dad_transmits", "50");
      await ip(ns, "-6 addr add 1000::1:c0a8:2aa/120 dev net3");
      await ip(ns, "addr add 169.254.3.3/16 dev net3");
      await untilRead(pub, "1000::1:c0a8:2aa");
      assert.equal(find(pub.addresses(), "1000::1:c0a8:2aa").tentative, true);
      assert.equal(node.calls.length, published);
      assert.equal(node.value, "192.168.2.9,1000::1:c0a8:209");
      assert.equal(warnings(lines, "address annotation problem"), 2);
      assert.deepEqual(problems, [
        "no usable IPv6 address (interface net3); the annotation keeps 1000::1:c0a8:209",
        undefined,
        "no usable address (interface net3); the annotation keeps 192.168.2.9,1000::1:c0a8:209",
      ]);

      // Back: resolved, and as the annotation already says so, nothing to publish.
      await ip(ns, "addr add 192.168.2.9/24 dev net3");
      await ip(ns, "-6 addr add 1000::1:c0a8:209/120 dev net3 nodad");
      await pollUntil(() => pub.problem() === undefined, { message: "problem not resolved" });
      assert.equal(problems.at(-1), undefined);
      assert.ok(lines.some((l) => l.msg === "address annotation: problem resolved"));
      assert.equal(node.calls.length, published);
      assert.equal(pub.counters.failures, 0);
    } finally {
      const t0 = Date.now();
      await pub.close();
      const closeMs = Date.now() - t0;
      assert.ok(closeMs < 500, `close took ${closeMs} ms`);
    }
  },
});

Deno.test({
  name: "publisher: nothing when the annotation is right; a hand edit is put back",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    node.value = "192.168.2.3,1000::1:c0a8:203";
    const { pub } = start(ns, node, { timing: { settleReadMs: 50 } });
    try {
      // The first read and the one after the monitor started.
      await pollUntil(() => pub.counters.reads >= 2, { message: "fewer than 2 reads" });
      assert.equal(pub.selected(), "192.168.2.3,1000::1:c0a8:203");
      assert.deepEqual(node.calls, []);

      node.value = "10.1.1.1";
      pub.recheck();
      await untilPublished(node, "192.168.2.3,1000::1:c0a8:203", Date.now());
      assert.equal(node.calls.length, 1);
    } finally {
      await pub.close();
    }
  },
});

Deno.test({
  name: "publisher: waits for our Node to be known",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    node.value = undefined;
    const { pub } = start(ns, node, { timing: { settleReadMs: 50 } });
    try {
      await pollUntil(() => pub.counters.reads >= 2, { message: "fewer than 2 reads" });
      assert.deepEqual(node.calls, []);
      node.value = "";
      pub.recheck();
      await untilPublished(node, "192.168.2.3,1000::1:c0a8:203", Date.now());
    } finally {
      await pub.close();
    }
  },
});

Deno.test({
  name: "publisher: a failed publish is retried with backoff, its error logged once",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    node.failures = 3;
    const { pub, lines } = start(ns, node, { timing: { retryMinMs: 100 } });
    try {
      await untilPublished(node, "192.168.2.3,1000::1:c0a8:203", Date.now(), 5000);
      assert.equal(pub.counters.failures, 3);
      assert.equal(pub.counters.publications, 1);
      assert.deepEqual(node.calls.map((c) => c.value), Array(4).fill(node.value));
      const gaps = node.calls.slice(1).map((c, i) => c.at - node.calls[i].at);
      console.log(`retries after ${gaps.join(", ")} ms`);
      // 100, 200, 400 ms (timers may fire a millisecond early).
      gaps.forEach((gap, i) => assert.ok(gap >= 100 * 2 ** i - 5, `gap ${i}: ${gap} ms`));
      const failed = lines.filter((l) => l.msg === "address annotation: publish failed");
      assert.equal(failed.length, 3);
      assert.deepEqual(failed.map((l) => l.level), ["warn", "debug", "debug"]);
      assert.equal(failed[0].error, "the API server is unavailable");
    } finally {
      await pub.close();
    }
  },
});

Deno.test({
  name: "publisher: an interface that is not there is reported, nothing published",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    const { pub, problems, lines } = start(ns, node, {
      selector: { interface: "net9" },
      timing: { problemGraceMs: 100 },
    });
    try {
      await pollUntil(() => problems.length > 0, { message: "no problem reported" });
      assert.deepEqual(problems, ["no usable address (interface net9)"]);
      assert.equal(warnings(lines, "address annotation problem"), 1);
      assert.deepEqual(node.calls, []);
    } finally {
      await pub.close();
    }
  },
});

Deno.test({
  name: "publisher: retries stop once the annotation is right by other means",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    node.failures = 1000;
    const { pub } = start(ns, node, { timing: { retryMinMs: 50 } });
    try {
      await pollUntil(() => pub.counters.failures >= 2, { message: "fewer than 2 failures" });
      // Someone else writes the same value; the informer shows it.
      node.value = "192.168.2.3,1000::1:c0a8:203";
      pub.recheck();
      const calls = node.calls.length;
      // A change that makes the publisher read and compare again: still nothing to do.
      await ip(ns, "addr add 192.168.2.4/24 dev net3");
      await untilRead(pub, "192.168.2.4");
      assert.equal(node.calls.length, calls);
      assert.equal(pub.counters.publications, 0);
    } finally {
      await pub.close();
    }
  },
});

Deno.test({
  name: "publisher: the monitor is restarted when it exits, and changes are followed after",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const dir = await Deno.makeTempDir({ prefix: "xpub-" });
    try {
      // An `ip` whose first two monitors exit at once; everything else is the real one.
      const ipPath = `${dir}/ip`;
      await Deno.writeTextFile(
        ipPath,
        `#!/bin/sh
case " $* " in *" monitor "*)
  echo x >> "${dir}/monitors"
  [ "$(wc -l < "${dir}/monitors")" -le 2 ] && { echo "simulated failure" >&2; exit 1; } ;;
esac
exec ip "$@"
`,
      );
      await Deno.chmod(ipPath, 0o755);
      const node = new FakeNode();
      // No read after start: what is followed is followed by the monitor.
      const { pub, lines } = start(ns, node, { ipPath, timing: { settleReadMs: 600_000 } });
      try {
        await untilPublished(node, "192.168.2.3,1000::1:c0a8:203", Date.now(), 5000);
        await pollUntil(() => warnings(lines, "address monitor ended; restarting") === 2, {
          message: "the monitor did not exit twice",
        });
        const restarted = lines.filter((l) => l.msg === "address monitor ended; restarting");
        assert.match(String(restarted[0].reason), /exit 1: simulated failure/);
        assert.deepEqual(restarted.map((l) => l.inMs), [100, 200]);
        // The third monitor runs: an address that is never published, added and deleted,
        // makes it read again once it listens.
        const reads = () => pub.counters.reads;
        const before = reads();
        let on = false;
        await pollUntil(async () => {
          on = !on;
          await ip(ns, `addr ${on ? "add" : "del"} 10.8.8.8/24 dev net3 scope link`);
          return reads() > before + 1;
        }, { intervalMs: 50, message: "no read after the monitor was restarted" });
        const t0 = Date.now();
        await ip(ns, "addr del 192.168.2.3/24 dev net3");
        await ip(ns, "addr add 192.168.2.8/24 dev net3");
        const ms = await untilPublished(node, "192.168.2.8,1000::1:c0a8:203", t0);
        console.log(`after restarts: IPv4 address replaced -> annotation updated in ${ms} ms`);
      } finally {
        await pub.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "publisher: addresses that cannot be read are a problem, and nothing is published",
  ignore: !!notRoot,
  async fn() {
    const node = new FakeNode();
    const { lines, log } = captureLog();
    const problems: (string | undefined)[] = [];
    const pub = startAddressPublisher({
      netns: `xpub-absent-${Deno.pid}`,
      selector: net3,
      current: () => node.value,
      publish: node.publish,
      log,
      onProblem: (p) => problems.push(p),
      timing: { problemGraceMs: 100, retryMinMs: 50 },
    });
    try {
      await pollUntil(() => problems.length > 0, { message: "no problem reported" });
      assert.match(problems[0] ?? "", /^cannot read the host's addresses: ip -n xpub-absent-/);
      assert.equal(warnings(lines, "address annotation problem"), 1);
      assert.equal(pub.counters.reads, 0);
      assert.deepEqual(node.calls, []);
    } finally {
      await pub.close();
    }
  },
});

Deno.test({
  name: "publisher over rtnetlink: publishes, and follows a replacement within a second",
  ignore: !!notRoot,
  async fn() {
    await using ns = await net3Host();
    const node = new FakeNode();
    const { pub } = start(ns, node, { source: netlinkAddressSource({ netns: ns.name }) });
    try {
      await untilPublished(node, "192.168.2.3,1000::1:c0a8:203", Date.now(), 5000);
      const t0 = Date.now();
      await ip(ns, "addr add 192.168.2.9/24 dev net3");
      await ip(ns, "addr del 192.168.2.3/24 dev net3");
      await untilPublished(node, "192.168.2.9,1000::1:c0a8:203", t0, 1000);
      console.log(`  replacement published in ${Date.now() - t0} ms`);
      assert.equal(pub.counters.publications, 2);
    } finally {
      await pub.close();
    }
  },
});
