import assert from "node:assert/strict";
import {
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
  splitList,
} from "../src/net/ip.ts";

/** A text of `min` to `max` characters drawn from `alphabet`. */
function randomText(alphabet: string, min: number, max: number): string {
  let t = "";
  for (let n = min + Math.floor(Math.random() * (max - min + 1)); n > 0; n--) {
    t += alphabet[Math.floor(Math.random() * alphabet.length)];
  }
  return t;
}

function canon(text: string): string {
  const r = parseCidr(text);
  if (!r.ok) throw new Error(`${text}: ${r.reason}`);
  return formatCidr(r.cidr);
}

Deno.test("parseCidr clears host bits and keeps the prefix", () => {
  assert.equal(canon("10.244.1.7/24"), "10.244.1.0/24");
  assert.equal(canon("fd00:1000::1:5/112"), "fd00:1000::1:0/112");
  assert.equal(canon("192.168.1.9"), "192.168.1.9/32");
  assert.equal(canon("fd00::9"), "fd00::9/128");
  assert.equal(canon("192.168.1.9/32"), "192.168.1.9/32");
  assert.equal(canon("0.0.0.0/0"), "0.0.0.0/0");
  assert.equal(canon("::/0"), "::/0");
  assert.equal(canon("FD00:0:0:0:0:0:0:1/128"), "fd00::1/128");
});

Deno.test("IPv4-mapped IPv6 counts as IPv4", () => {
  const mapped = { family: 4, value: 0x0a000001n, text: "10.0.0.1" };
  assert.deepEqual(parseIp("::ffff:10.0.0.1"), mapped);
  assert.deepEqual(parseIp("::ffff:a00:1"), mapped);
  assert.deepEqual(parseIp("0:0:0:0:0:FFFF:10.0.0.1"), mapped);
  assert.equal(canon("::ffff:10.1.2.0/120"), "10.1.2.0/24");
  assert.equal(canon("::ffff:10.1.2.3"), "10.1.2.3/32");
});

Deno.test("formatIp follows RFC 5952", () => {
  const f = (t: string) => formatIp(parseIp(t)!);
  assert.equal(f("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  assert.equal(f("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  assert.equal(f("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  assert.equal(f("::"), "::");
  assert.equal(f("1::"), "1::");
  assert.equal(f("fd00:5::1:0"), "fd00:5::1:0");
});

Deno.test("garbage is refused with a reason", () => {
  for (
    const bad of [
      "",
      "10.0.0",
      "10.0.0.256",
      "010.0.0.1",
      "1.2.3.4/33",
      "fd00::/129",
      "fd00::1%eth0/64",
      "1:2:3:4:5:6:7:8:9",
      "1::2::3",
      "10.0.0.0/x",
      "10.0.0.0/-1",
      "💥",
      " 10.0.0.0/24",
      "10.0.0.0/024",
    ]
  ) {
    const r = parseCidr(bad);
    assert.equal(r.ok, false, `accepted ${JSON.stringify(bad)}`);
    if (!r.ok) assert.ok(r.reason.length > 0);
  }
  assert.equal(parseIp("1.2.3.4/24"), undefined);
  assert.equal(parseIp("fe80::1%eth0"), undefined);
});

Deno.test("containment and overlap", () => {
  const c = (t: string) => {
    const r = parseCidr(t);
    if (!r.ok) throw new Error(t);
    return r.cidr;
  };
  assert.ok(cidrContains(c("10.0.0.0/8"), c("10.1.0.0/16")));
  assert.ok(!cidrContains(c("10.1.0.0/16"), c("10.0.0.0/8")));
  assert.ok(cidrsOverlap(c("10.1.0.0/16"), c("10.0.0.0/8")));
  assert.ok(!cidrsOverlap(c("10.1.0.0/16"), c("10.2.0.0/16")));
  assert.ok(!cidrsOverlap(c("10.0.0.0/8"), c("::/0")));
  assert.ok(cidrContains(c("fd00::/64"), c("fd00::1:0/112")));
});

Deno.test("splitList tolerates spaces and empty items", () => {
  assert.deepEqual(splitList(" 10.0.0.0/24 , fd00::/64,,"), ["10.0.0.0/24", "fd00::/64"]);
  assert.deepEqual(splitList(""), []);
  const plain = (t: string) => t.split(",").map((x) => x.trim()).filter((x) => x !== "");
  for (let k = 0; k < 2000; k++) {
    const t = randomText("a, \t", 0, 11);
    assert.deepEqual(splitList(t), plain(t), JSON.stringify(t));
  }
});

Deno.test("IPv4 text: four decimal octets, no leading zeros, nothing else", () => {
  const good: [string, bigint][] = [
    ["0.0.0.0", 0n],
    ["255.255.255.255", 0xffffffffn],
    ["1.20.255.9", 0x0114ff09n],
    ["10.0.0.1", 0x0a000001n],
  ];
  for (const [text, value] of good) {
    assert.deepEqual(parseIp(text), { family: 4, value, text }, text);
    assert.equal(formatIp({ family: 4, value }), text);
  }
  for (
    const bad of [
      "1.2.3",
      "1.2.3.4.5",
      "1.2.3.",
      ".1.2.3",
      "1..2.3",
      "1.2.3.4.",
      "256.1.1.1",
      "1.2.3.1000",
      "01.2.3.4",
      "1.2.3.00",
      "+1.2.3.4",
      "1.2.3.-4",
      "1.2.3.4 ",
      "1.2.3.a",
      "١.٢.٣.٤", // Arabic-Indic digits are not ASCII digits
      "1.2.3.4\n",
    ]
  ) {
    assert.equal(parseIp(bad), undefined, JSON.stringify(bad));
  }
  // Against a plain reading of the rule, over random near-misses.
  const rule = (t: string) => {
    const parts = t.split(".");
    return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && +p <= 255);
  };
  const alphabet = "0123456789..2519 ";
  for (let k = 0; k < 5000; k++) {
    const t = randomText(alphabet, 1, 16);
    assert.equal(parseIp(t)?.family === 4, rule(t), JSON.stringify(t));
  }
});

/** IPv6 text read the plain way (RFC 4291 section 2.2), as the value, or undefined. */
function plainV6(text: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  // Dotted IPv4 only as the last 32 bits: the last item of the last half.
  const groups = (half: string, last: boolean): number[] | undefined => {
    if (half === "") return [];
    const items = half.split(":");
    const out: number[] = [];
    for (const [i, item] of items.entries()) {
      if (last && i === items.length - 1 && item.includes(".")) {
        const parts = item.split(".");
        if (
          parts.length !== 4 || !parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && +p < 256)
        ) return undefined;
        out.push(+parts[0] * 256 + +parts[1], +parts[2] * 256 + +parts[3]);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) out.push(parseInt(item, 16));
      else return undefined;
    }
    return out;
  };
  const head = groups(halves[0], halves.length === 1);
  const tail = halves.length === 2 ? groups(halves[1], true) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...Array(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return all.reduce((v: bigint, g: number) => (v << 16n) | BigInt(g), 0n);
}

Deno.test("IPv6 text: the parser against a plain reading of the rule, over random near-misses", () => {
  for (
    const [text, want] of [
      ["::", "::"],
      ["::1", "::1"],
      ["1::", "1::"],
      ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
      ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
      ["FD00:0:0:0:0:0:0:1", "fd00::1"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
      ["0000:0000::0001", "::1"],
    ]
  ) {
    assert.equal(parseIp(text)?.text, want, text);
  }
  for (
    const bad of [
      ":",
      ":::",
      "1:",
      ":1",
      "1:::2",
      "1::2::3",
      "12345::",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "::1.2.3",
      "1.2.3.4::",
      "::1.2.3.4:5",
      "g::",
      "1:2:3:4:5:6:7:1.2.3.4",
    ]
  ) {
    assert.equal(parseIp(bad), undefined, bad);
  }
  // Random texts from an alphabet that makes near-misses likely; both readings agree, and
  // the parser's text is the canonical text of the value.
  const alphabet = "0:1:f:F::a.9.2550";
  let valid = 0;
  for (let k = 0; k < 20000; k++) {
    const t = randomText(alphabet, 1, 24);
    const plain = /^\d+\.\d+\.\d+\.\d+$/.test(t) ? undefined : plainV6(t);
    const ip = parseIp(t);
    if (ip?.family === 4 && !t.includes(":")) continue; // dotted IPv4, tested above
    if (plain === undefined) {
      assert.equal(ip, undefined, JSON.stringify(t));
      continue;
    }
    valid++;
    assert.ok(ip, JSON.stringify(t));
    const value = ip.family === 4 ? (0xffffn << 32n) | ip.value : ip.value;
    assert.equal(value, plain, JSON.stringify(t));
    assert.equal(ip.text, formatIp({ family: ip.family, value: ip.value }), JSON.stringify(t));
  }
  assert.ok(valid > 100, `only ${valid} valid texts drawn`);
});

Deno.test("CIDR text: kept when canonical, made from the value when host bits were set", () => {
  for (
    const [text, want] of [
      ["10.1.2.0/24", "10.1.2.0/24"],
      ["10.1.2.9/24", "10.1.2.0/24"],
      ["FD00::/64", "fd00::/64"],
      ["fd00::1:0/96", "fd00::/96"],
      ["::ffff:10.1.2.3/120", "10.1.2.0/24"],
      ["::ffff:10.1.2.0/120", "10.1.2.0/24"],
      ["::ffff:10.1.2.0/64", "::/64"],
    ]
  ) {
    const r = parseCidr(text);
    assert.ok(r.ok, text);
    assert.equal(formatCidr(r.cidr), want, text);
    const { family, value, prefix } = r.cidr;
    assert.equal(formatCidr({ family, value, prefix }), want, `${text} from the value`);
  }
});
