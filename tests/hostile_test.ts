/**
 * A compromised node, end to end: the daemon (in process, `ip` in a network namespace)
 * against the embedded API server, while a node annotates itself with CIDRs and next hops it
 * does not own. tests/plan_test.ts proves the rules one by one on the pure planner; this file
 * proves what reaches the kernel and what an operator sees: no route outside the rules at any
 * moment (`ip monitor route` for the whole test, and `ip -json route show table all`), the
 * hostile node's valid entries and the rest of the cluster still routed, and every refusal in
 * the reconcile result, in `main.ts nodes`, in /metrics, in the log once per change (not per
 * resync), and as a Warning Event on the node (NODE_EVENTS). Needs root.
 */
import assert from "node:assert/strict";
import { makeNode } from "../src/devcluster/nodes.ts";
import type { Daemon } from "../src/daemon.ts";
import { describeProblem, type Problem, type ProblemKind } from "../src/routing/problem.ts";
import { pollUntil, requireRoot } from "./helpers/netns.ts";
import {
  capturedLog,
  type Cluster,
  cluster,
  daemon,
  kernelRoutes,
  NET3,
  RouteWatch,
} from "./helpers/router.ts";
import { runMain } from "./helpers/tools.ts";

const notRoot = requireRoot();
const PROTO = 202;
/** Sorts before b and c: only its later creationTimestamp makes it lose a conflict. */
const EVIL = "a0-evil";
const CIDR_FIELD = `metadata.annotations[${NET3.cidr}]`;
const ADR_FIELD = `metadata.annotations[${NET3.adr}]`;
const NET3_ENV = { CIDR_ANNOTATION: NET3.cidr, ADDRESS_ANNOTATION: NET3.adr };

/** b's and c's secondary-network routes as seen from a (see helpers/router.ts). */
const B3 = ["10.55.1.0/24 via 192.168.60.2", "fd00:55::1:0/112 via fd00:60::2"];
const C3 = ["10.55.2.0/24 via 192.168.60.3", "fd00:55::2:0/112 via fd00:60::3"];
const EVIL_VALID = "10.55.9.0/24,fd00:55::9:0/112";
const EVIL_HOPS = "192.168.60.66,fd00:60::66";
const EVIL_ROUTES = ["10.55.9.0/24 via 192.168.60.66", "fd00:55::9:0/112 via fd00:60::66"];

/** A problem the test expects: reason as a pattern, field as cidr/adr/route. */
interface Want {
  node: string;
  kind: ProblemKind;
  field: "cidr" | "adr" | "route";
  value: string;
  reason: RegExp;
}

const w = (
  node: string,
  kind: ProblemKind,
  field: Want["field"],
  value: string,
  reason: RegExp,
): Want => ({ node, kind, field, value, reason });

function fieldName(f: Want["field"]): string {
  return f === "cidr" ? CIDR_FIELD : f === "adr" ? ADR_FIELD : "route";
}

function matches(p: Problem, want: Want): boolean {
  return p.node === want.node && p.kind === want.kind && p.field === fieldName(want.field) &&
    p.value === want.value && want.reason.test(p.reason);
}

/** Why `have` is not exactly `want` (each wanted problem once, nothing else), or "". */
function mismatch(have: readonly Problem[], want: readonly Want[]): string {
  const missing = want.filter((x) => have.filter((p) => matches(p, x)).length !== 1);
  const extra = have.filter((p) => !want.some((x) => matches(p, x)));
  if (missing.length === 0 && extra.length === 0 && have.length === want.length) return "";
  return `missing: ${JSON.stringify(missing.map((x) => [x.node, x.kind, x.value]))}\n` +
    `unexpected: ${JSON.stringify(extra.map(describeProblem))}`;
}

/** Waits until the daemon's last reconcile reports exactly `want`. */
async function settle(d: Daemon, want: readonly Want[], step: string): Promise<Problem[]> {
  let why = "";
  await pollUntil(async () => {
    await d.reconciler.idle();
    why = mismatch(d.reconciler.last?.problems ?? [], want);
    return why === "";
  }, { timeoutMs: 10_000, message: () => `${step}: problems\n${why}` });
  return [...d.reconciler.last!.problems];
}

/** The kernel's routes of our protocol, in every table, are exactly `want` (main table). */
async function expectKernel(c: Cluster, want: readonly string[], step: string): Promise<void> {
  const sorted = [...want].sort();
  let have: string[] = [];
  await pollUntil(async () => {
    const listed = await kernelRoutes(c.ns, PROTO);
    have = listed.map((r) =>
      `${r.dst} via ${r.gateway ?? "-"}${r.table && r.table !== "main" ? ` table ${r.table}` : ""}`
    ).sort();
    return JSON.stringify(have) === JSON.stringify(sorted);
  }, { timeoutMs: 10_000, message: () => `${step}: kernel has ${JSON.stringify(have)}` });
}

/** Reconciles by resync and by a watch event about something else: nothing new to log. */
async function churn(c: Cluster, d: Daemon): Promise<void> {
  for (let i = 0; i < 2; i++) {
    d.reconciler.trigger("resync");
    await d.reconciler.idle();
  }
  const before = d.reconciler.last;
  // A change the projection keeps (it drops labels, and spec with metadata-only reads) that
  // the plan cannot see: a space before the node's addresses, which is tolerated.
  const hops = (c.api.nodes.get("c")!.metadata.annotations as Record<string, string>)[NET3.adr];
  const next = hops.startsWith(" ") ? hops.trim() : ` ${hops}`;
  c.api.nodes.patch("c", "merge", { metadata: { annotations: { [NET3.adr]: next } } });
  // Its reconcile says "watch", unless a kernel event came meanwhile and they were folded.
  await pollUntil(() => d.reconciler.last !== before, {
    timeoutMs: 5000,
    message: "a reconcile for the watch event",
  });
  await d.reconciler.idle();
}

/** Waits for a creationTimestamp (whole seconds) later than `node`'s. */
async function nextSecond(c: Cluster, node: string): Promise<void> {
  const t = c.api.nodes.get(node)?.metadata.creationTimestamp ?? "";
  await pollUntil(() => new Date().toISOString().replace(/\.\d+Z$/, "Z") > t, {
    timeoutMs: 3000,
    intervalMs: 50,
  });
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function metrics(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line === "") continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function eventMessage(p: Problem): string {
  return `xcluster-cni (protocol ${PROTO}): ${describeProblem(p)}`.slice(0, 1024);
}

interface EventJson {
  type?: string;
  reason?: string;
  message?: string;
  involvedObject?: { kind?: string; name?: string };
}

/** Events posted so far whose message is `p`'s. */
function eventsFor(c: Cluster, p: Problem): EventJson[] {
  return (c.api.events as EventJson[]).filter((e) => e.message === eventMessage(p));
}

/** Log lines (warn) reporting `p`, and (info) reporting it resolved. */
function logCount(lines: readonly Record<string, unknown>[], p: Problem) {
  const same = (l: Record<string, unknown>) =>
    l.node === p.node && l.kind === p.kind && l.field === p.field && l.value === p.value;
  return {
    warned:
      lines.filter((l) =>
        l.level === "warn" && l.msg === "node problem" && same(l) && l.reason === p.reason
      ).length,
    resolved:
      lines.filter((l) => l.level === "info" && l.msg === "node problem resolved" && same(l))
        .length,
  };
}

/** `main.ts nodes` against the API server and the namespace: the same problems as the daemon. */
async function cliAgrees(c: Cluster, d: Daemon, env: Record<string, string>, must: string[]) {
  const flags = ["--kubeconfig", c.api.kubeconfigPath!, "--netns", c.ns.name];
  const all = { NODE_NAME: "a", ...NET3_ENV, ...env };
  const json = await runMain(all, "nodes", "-o", "json", ...flags);
  assert.equal(json.code, 0, json.err);
  // The kernel's refusals are foreseen by `nodes` and met by the daemon: same route, own words.
  const key = (p: Problem) =>
    p.kind === "kernel" ? `${p.node} kernel ${p.value}` : describeProblem(p);
  const cli = (JSON.parse(json.out) as { nodes: { problems: Problem[] }[] }).nodes
    .flatMap((n) => n.problems).map(key).sort();
  const daemonSees = d.reconciler.last!.problems.map(key).sort();
  assert.ok(daemonSees.length > 0);
  assert.deepEqual(cli, daemonSees, "nodes -o json lists the daemon's problems");
  const table = await runMain(all, "nodes", ...flags);
  assert.equal(table.code, 0, table.err);
  const row = table.out.split("\n").find((l) => l.startsWith(`${EVIL} `)) ?? "";
  for (const text of must) assert.ok(row.includes(text), `nodes row of ${EVIL} shows ${text}`);
}

/** Every route `ip monitor` saw added during the test is one of `allowed`. */
function neverOutside(watch: RouteWatch, allowed: readonly string[]): void {
  const seen = watch.added(PROTO);
  assert.ok(seen.length >= allowed.length, `monitor saw ${seen.length} additions`);
  const bad = seen.filter((r) => !allowed.includes(`${r.dst} via ${r.via}`));
  assert.deepEqual(bad.map((r) => r.line), [], "routes outside the rules reached the kernel");
}

Deno.test({
  name: "hostile: a node claiming others' ranges, special ranges, our networks and our " +
    "addresses as next hops gets only its valid routes; every refusal reported once",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    let watch: RouteWatch | undefined;
    let d: Daemon | undefined;
    try {
      watch = await RouteWatch.start(c.ns);
      await nextSecond(c, "c");
      const evil = (cidrs: string, hops = EVIL_HOPS) =>
        c.api.nodes.patch(EVIL, "merge", {
          metadata: { annotations: { [NET3.cidr]: cidrs, [NET3.adr]: hops } },
        });
      c.api.nodes.create(makeNode({ name: EVIL, internalIPs: ["192.168.50.66"] }));
      evil(EVIL_VALID);
      // Next hops of the wrong family only: that family gets no route. An IPv4-mapped
      // address is IPv4. A subnet broadcast passes the plan; the kernel refuses it.
      c.api.nodes.create(makeNode({
        name: "a1-v6only",
        annotations: { [NET3.cidr]: "10.55.21.0/24,fd00:55::21:0/112", [NET3.adr]: "fd00:60::21" },
      }));
      c.api.nodes.create(makeNode({
        name: "a2-mapped",
        annotations: {
          [NET3.cidr]: "10.55.22.0/24,fd00:55::22:0/112",
          [NET3.adr]: "::ffff:192.168.60.22",
        },
      }));
      c.api.nodes.create(makeNode({
        name: "a3-bcast",
        annotations: { [NET3.cidr]: "10.55.23.0/24", [NET3.adr]: "192.168.60.255" },
      }));
      const port = freePort();
      const log = capturedLog();
      d = await daemon(c, { ...NET3_ENV, NODE_EVENTS: "yes", HTTP_ADDRESS: `127.0.0.1:${port}` }, {
        log: log.log,
      });
      const routes = [
        ...B3,
        ...C3,
        ...EVIL_ROUTES,
        "fd00:55::21:0/112 via fd00:60::21",
        "10.55.22.0/24 via 192.168.60.22",
      ];
      const base: Want[] = [
        w("a1-v6only", "no-address", "adr", "10.55.21.0/24", /no usable IPv4 address/),
        w("a2-mapped", "no-address", "adr", "fd00:55::22:0/112", /no usable IPv6 address/),
        w(
          "a3-bcast",
          "kernel",
          "route",
          "10.55.23.0/24 via 192.168.60.255",
          /refused by the kernel/,
        ),
      ];
      await settle(d, base, "start");
      await expectKernel(c, routes, "start");

      // Each step adds to what the node claims; fewer than 20 new problems per step, so
      // that every one gets its Event (the daemon posts at most 20 per reconcile).
      const steps: { name: string; cidrs: string[]; hops?: string; want: Want[] }[] = [{
        name: "other nodes' ranges, default routes, short prefixes",
        cidrs: [
          "10.55.1.0/24",
          "10.55.0.128/25",
          "fd00:55::2:0/112",
          "::ffff:0.0.0.0/96",
          "::/0",
          "0.0.0.0/1",
          "128.0.0.0/1",
          "8000::/1",
          "10.0.0.0/7",
        ],
        want: [
          w(EVIL, "conflict", "cidr", "10.55.1.0/24", /of node b, which claimed it first/),
          w("b", "conflict", "cidr", "10.55.1.0/24", /also claimed by node a0-evil .*kept here/),
          w(EVIL, "conflict", "cidr", "10.55.0.128/25", /overlaps 10\.55\.0\.0\/24 of node a,/),
          w("a", "conflict", "cidr", "10.55.0.0/24", /node a0-evil \(10\.55\.0\.128\/25\)/),
          w(EVIL, "conflict", "cidr", "fd00:55::2:0/112", /of node c, which claimed it first/),
          w("c", "conflict", "cidr", "fd00:55::2:0/112", /also claimed by node a0-evil/),
          w(EVIL, "refused", "cidr", "0.0.0.0/0", /default route/),
          w(EVIL, "refused", "cidr", "::/0", /default route/),
          w(EVIL, "refused", "cidr", "0.0.0.0/1", /prefix \/1 is shorter than the minimum \/8/),
          w(EVIL, "refused", "cidr", "128.0.0.0/1", /prefix \/1 is shorter .* \/8/),
          w(EVIL, "refused", "cidr", "8000::/1", /prefix \/1 is shorter .* \/32/),
          w(EVIL, "refused", "cidr", "10.0.0.0/7", /prefix \/7 is shorter .* \/8/),
        ],
      }, {
        name: "loopback, link-local, multicast, reserved",
        cidrs: [
          "127.0.0.0/8",
          "::ffff:127.0.0.1",
          "::1/128",
          "169.254.169.254/32",
          "fe80::/64",
          "239.255.0.0/16",
          "ff02::1:0/112",
          "250.1.0.0/16",
          "255.255.255.255/32",
          "0.0.0.0/8",
        ],
        want: [
          w(EVIL, "refused", "cidr", "127.0.0.0/8", /loopback 127\.0\.0\.0\/8/),
          w(EVIL, "refused", "cidr", "127.0.0.1/32", /loopback 127\.0\.0\.0\/8/),
          w(EVIL, "refused", "cidr", "::1/128", /loopback ::1\/128/),
          w(EVIL, "refused", "cidr", "169.254.169.254/32", /link-local 169\.254\.0\.0\/16/),
          w(EVIL, "refused", "cidr", "fe80::/64", /link-local fe80::\/10/),
          w(EVIL, "refused", "cidr", "239.255.0.0/16", /multicast 224\.0\.0\.0\/4/),
          w(EVIL, "refused", "cidr", "ff02::1:0/112", /multicast ff00::\/8/),
          w(EVIL, "refused", "cidr", "250.1.0.0/16", /reserved range 240\.0\.0\.0\/4/),
          w(EVIL, "refused", "cidr", "255.255.255.255/32", /reserved range/),
          w(EVIL, "refused", "cidr", "0.0.0.0/8", /this-network range 0\.0\.0\.0\/8/),
        ],
      }, {
        name: "this host's addresses and connected networks",
        cidrs: [
          "192.168.50.0/24",
          "192.168.60.1/32",
          "192.168.0.0/16",
          "::ffff:192.168.60.128/121",
          "fd00:50::/48",
          "fd00:60::1/128",
        ],
        want: [
          w(
            EVIL,
            "refused",
            "cidr",
            "192.168.50.0/24",
            /host's network 192\.168\.50\.0\/24 \(lan0\)/,
          ),
          w(
            EVIL,
            "refused",
            "cidr",
            "192.168.60.1/32",
            /host's network 192\.168\.60\.0\/24 \(lan1\)/,
          ),
          w(EVIL, "refused", "cidr", "192.168.0.0/16", /host's network 192\.168\.[56]0\.0\/24/),
          w(EVIL, "refused", "cidr", "192.168.60.128/25", /192\.168\.60\.0\/24 \(lan1\)/),
          w(EVIL, "refused", "cidr", "fd00:50::/48", /host's network fd00:50::\/64 \(lan0\)/),
          w(EVIL, "refused", "cidr", "fd00:60::1/128", /host's network fd00:60::\/64 \(lan1\)/),
        ],
      }, {
        name: "next hops: ours, multicast, loopback, link-local, unspecified, reserved",
        cidrs: [],
        hops: "192.168.60.1, 192.168.50.1,224.0.0.1,::ffff:127.0.0.1,169.254.0.1,0.0.0.0," +
          "255.255.255.255,fd00:60::1,ff02::1,fe80::1,::,::1," + EVIL_HOPS +
          // After the usable ones: never used, reported all the same.
          ",224.0.0.2,fd00:50::1",
        want: [
          ...["192.168.60.1", "192.168.50.1", "fd00:60::1", "fd00:50::1"].map((a) =>
            w(EVIL, "refused", "adr", a, /^not a usable next hop: an address of this host$/)
          ),
          w(EVIL, "refused", "adr", "224.0.0.1", /next hop: multicast address/),
          w(EVIL, "refused", "adr", "127.0.0.1", /next hop: loopback address/),
          w(EVIL, "refused", "adr", "169.254.0.1", /next hop: link-local address/),
          w(EVIL, "refused", "adr", "0.0.0.0", /next hop: this-network range address/),
          w(EVIL, "refused", "adr", "255.255.255.255", /next hop: reserved range address/),
          w(EVIL, "refused", "adr", "ff02::1", /next hop: multicast address/),
          w(EVIL, "refused", "adr", "fe80::1", /next hop: link-local address/),
          w(EVIL, "refused", "adr", "::", /^not a usable next hop: unspecified address$/),
          w(EVIL, "refused", "adr", "224.0.0.2", /next hop: multicast address/),
          w(EVIL, "refused", "adr", "::1", /next hop: loopback address/),
        ],
      }];

      let claimed = [EVIL_VALID];
      let want = [...base];
      const seen: Problem[] = [];
      for (const step of steps) {
        claimed = [...claimed, ...step.cidrs];
        want = [...want, ...step.want];
        const eventsBefore = c.api.events.length;
        evil(claimed.join(","), step.hops);
        const now = await settle(d, want, step.name);
        await expectKernel(c, routes, step.name);
        await churn(c, d);
        assert.equal(mismatch(d.reconciler.last!.problems, want), "", `${step.name} after churn`);
        const fresh = now.filter((p) => step.want.some((x) => matches(p, x)));
        assert.equal(fresh.length, step.want.length);
        seen.push(...fresh);
        // One Warning Event per new refusal, on the node concerned, none for the old ones.
        await pollUntil(() => fresh.every((p) => eventsFor(c, p).length === 1), {
          timeoutMs: 5000,
          message: () => `${step.name}: events ${JSON.stringify(c.api.events.slice(eventsBefore))}`,
        });
        assert.equal(c.api.events.length - eventsBefore, fresh.length, `${step.name}: events`);
        for (const p of fresh) {
          const [e] = eventsFor(c, p);
          assert.equal(e.type, "Warning");
          assert.equal(e.involvedObject?.kind, "Node");
          assert.equal(e.involvedObject?.name, p.node);
          assert.equal(
            e.reason,
            p.kind === "conflict" ? "NetworkCIDRConflict" : "NetworkCIDRRefused",
          );
        }
      }

      // Everything at once, as an operator sees it.
      const m = await metrics(port);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="refused"}'), 1);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="conflict"}'), 4);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="no-address"}'), 2);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="kernel"}'), 1);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="malformed"}'), 0);
      assert.equal(m.get("xcluster_cni_routes_desired"), routes.length + 1);
      assert.equal(m.get("xcluster_cni_routes_installed"), routes.length);
      assert.equal(m.get("xcluster_cni_nodes"), 7);
      await cliAgrees(c, d, {}, [
        "refused: 0.0.0.0/0: a default route is never a pod network",
        "conflict: 10.55.1.0/24: overlaps 10.55.1.0/24 of node b, which claimed it first",
        "refused: 127.0.0.1/32: overlaps the loopback 127.0.0.0/8",
        "refused: 192.168.60.1: not a usable next hop: an address of this host",
      ]);

      // The node gives up: every problem resolved, logged once as such.
      evil(EVIL_VALID);
      await settle(d, base, "retreat");
      await expectKernel(c, routes, "retreat");
      await churn(c, d);
      const after = await metrics(port);
      assert.equal(after.get('xcluster_cni_nodes_with_problems{reason="refused"}'), 0);
      assert.equal(after.get('xcluster_cni_nodes_with_problems{reason="conflict"}'), 0);

      const records = log.records();
      for (const p of [...seen, ...d.reconciler.last!.problems]) {
        const n = logCount(records, p);
        assert.equal(n.warned, 1, `logged once: ${describeProblem(p)}`);
        assert.equal(n.resolved, seen.includes(p) ? 1 : 0, `resolved once: ${describeProblem(p)}`);
      }
      neverOutside(watch, routes);
    } finally {
      await d?.stop();
      await watch?.stop();
      await c.close();
    }
  },
});

Deno.test({
  name: "hostile: with ALLOWED_CIDRS only ranges inside them are routed, special ranges and " +
    "this host's networks still refused inside them",
  ignore: !!notRoot,
  async fn() {
    const c = await cluster();
    let watch: RouteWatch | undefined;
    let d: Daemon | undefined;
    try {
      watch = await RouteWatch.start(c.ns);
      await nextSecond(c, "c");
      // Wide on purpose: they hold this host's LANs, link-local and multicast ranges.
      const allowed = "10.55.0.0/16,192.168.0.0/16,fd00::/16,169.254.0.0/16,ff00::/8";
      c.api.nodes.create(makeNode({
        name: EVIL,
        annotations: {
          [NET3.cidr]: [
            EVIL_VALID,
            "192.168.70.0/24", // inside ALLOWED_CIDRS, nobody's: routed
            "10.66.0.0/24",
            "10.55.0.0/15",
            "0.0.0.0/1",
            "::/1",
            "0.0.0.0/0",
            "::ffff:10.54.0.0/112",
            "10.55.0.0/16",
            "192.168.50.0/25",
            "fd00:60::/64",
            "fd00::/16",
            "169.254.169.254/32",
            "ff05::/16",
            "fe80::/64",
          ].join(","),
          [NET3.adr]: "fd00:60::1," + EVIL_HOPS,
        },
      }));
      const port = freePort();
      const log = capturedLog();
      d = await daemon(c, {
        ...NET3_ENV,
        ALLOWED_CIDRS: allowed,
        NODE_EVENTS: "yes",
        HTTP_ADDRESS: `127.0.0.1:${port}`,
      }, { log: log.log });
      const routes = [...B3, ...C3, ...EVIL_ROUTES, "192.168.70.0/24 via 192.168.60.66"];
      const outside = /^outside ALLOWED_CIDRS$/;
      const want: Want[] = [
        w(EVIL, "refused", "cidr", "10.66.0.0/24", outside),
        w(EVIL, "refused", "cidr", "10.54.0.0/15", outside),
        w(EVIL, "refused", "cidr", "0.0.0.0/1", outside),
        w(EVIL, "refused", "cidr", "::/1", outside),
        w(EVIL, "refused", "cidr", "0.0.0.0/0", /default route/),
        w(EVIL, "refused", "cidr", "10.54.0.0/16", outside),
        w(
          EVIL,
          "conflict",
          "cidr",
          "10.55.0.0/16",
          /of node a, this router.s own node, whose CIDRs no other node may take/,
        ),
        w("a", "conflict", "cidr", "10.55.0.0/24", /node a0-evil \(10\.55\.0\.0\/16\)/),
        w(EVIL, "refused", "cidr", "192.168.50.0/25", /host's network 192\.168\.50\.0\/24/),
        w(EVIL, "refused", "cidr", "fd00:60::/64", /host's network fd00:60::\/64 \(lan1\)/),
        w(EVIL, "refused", "cidr", "fd00::/16", /host's network fd00:(50|60)::\/64/),
        w(EVIL, "refused", "cidr", "169.254.169.254/32", /link-local 169\.254\.0\.0\/16/),
        w(EVIL, "refused", "cidr", "ff05::/16", /multicast ff00::\/8/),
        w(EVIL, "refused", "cidr", "fe80::/64", outside),
        w(EVIL, "refused", "adr", "fd00:60::1", /an address of this host/),
      ];
      const problems = await settle(d, want, "allowed");
      await expectKernel(c, routes, "allowed");
      await churn(c, d);
      await churn(c, d);
      assert.equal(mismatch(d.reconciler.last!.problems, want), "");

      const records = log.records();
      for (const p of problems) assert.equal(logCount(records, p).warned, 1, describeProblem(p));
      await pollUntil(() => problems.every((p) => eventsFor(c, p).length === 1), {
        timeoutMs: 5000,
        message: "one Event per problem",
      });
      assert.equal(c.api.events.length, problems.length);

      const m = await metrics(port);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="refused"}'), 1);
      assert.equal(m.get('xcluster_cni_nodes_with_problems{reason="conflict"}'), 2);
      assert.equal(m.get("xcluster_cni_routes_desired"), routes.length);
      assert.equal(m.get("xcluster_cni_routes_installed"), routes.length);
      await cliAgrees(c, d, { ALLOWED_CIDRS: allowed }, [
        "refused: 10.66.0.0/24: outside ALLOWED_CIDRS",
        "refused: 169.254.169.254/32: overlaps the link-local 169.254.0.0/16",
      ]);
      neverOutside(watch, routes);
    } finally {
      await d?.stop();
      await watch?.stop();
      await c.close();
    }
  },
});
