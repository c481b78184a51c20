/** Leader election over a Lease of the embedded API server, through its faults. Needs openssl. */
import assert from "node:assert/strict";
import { type ApiServer, startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { ApiError, KubeClient, statusError } from "../src/kube/client.ts";
import { type KubeAccess, loadKubeconfig } from "../src/kube/kubeconfig.ts";
import {
  LeaderElector,
  type LeaderElectorOptions,
  LeadershipLost,
  type LeaseClient,
} from "../src/kube/leader.ts";
import { formatMicroTime, type LeaseWatchEvent } from "../src/kube/lease.ts";
import { pollUntil } from "./helpers/netns.ts";

const NS = "kube-system";
const NAME = "xcluster-net3";
/** Short durations; the lease's duration is a whole second, as the API wants. */
const TIMING = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 };
/** client-go's jitter of the retries: up to this much more of retryPeriod. */
const JITTER = 1.2;
/** How late a timer or a loopback request may be on a busy machine. */
const SLACK_MS = 80;

/** A request the API server answered (performance.now() when its headers were made). */
interface Served {
  at: number;
  /** A read of the lease, a watch, or a write (PUT, POST, DELETE). */
  kind: "get" | "watch" | "write";
  status: number;
}

/** The requests served from `since` on, by kind. */
function tally(served: readonly Served[], since: number) {
  const from = served.filter((s) => s.at >= since);
  const of = (kind: Served["kind"]) => from.filter((s) => s.kind === kind).length;
  return { gets: of("get"), watches: of("watch"), writes: of("write"), all: from.length };
}

/** One term of leadership, as the callbacks saw it (performance.now() and wall times). */
interface Term {
  id: string;
  start: number;
  startWall: number;
  end?: number;
  signal: AbortSignal;
  /** onStoppedLeading came after the signal aborted. */
  stoppedAfterAbort?: boolean;
}

interface Candidate {
  id: string;
  elector: LeaderElector;
  client: KubeClient;
  running: Promise<void>;
  terms: Term[];
  newLeaders: string[];
}

class Rig {
  readonly candidates: Candidate[] = [];
  readonly terms: Term[] = [];
  /** Who leads now, by the callbacks; more than one at a start is a violation. */
  readonly leading = new Set<string>();
  readonly violations: string[] = [];

  constructor(
    readonly api: ApiServer,
    readonly access: KubeAccess,
    readonly served: readonly Served[],
  ) {}

  /** Starts a candidate (through `access` when given, e.g. a proxy). */
  start(id: string, opts: { access?: KubeAccess } & Partial<LeaderElectorOptions> = {}) {
    const client = new KubeClient(opts.access ?? this.access);
    const c: Candidate = {
      id,
      client,
      elector: undefined as unknown as LeaderElector,
      running: Promise.resolve(),
      terms: [],
      newLeaders: [],
    };
    c.elector = new LeaderElector(client, {
      namespace: NS,
      name: NAME,
      identity: id,
      ...TIMING,
      ...opts,
      onStartedLeading: (signal) => {
        if (this.leading.size > 0) {
          this.violations.push(`${id} started while ${[...this.leading]} led`);
        }
        this.leading.add(id);
        const term: Term = { id, start: performance.now(), startWall: Date.now(), signal };
        signal.addEventListener("abort", () => {
          term.end = performance.now();
          this.leading.delete(id);
        });
        c.terms.push(term);
        this.terms.push(term);
      },
      onStoppedLeading: () => {
        const term = c.terms.at(-1);
        if (term) term.stoppedAfterAbort = term.signal.aborted;
      },
      onNewLeader: (leader) => c.newLeaders.push(leader),
    });
    c.running = c.elector.run();
    this.candidates.push(c);
    return c;
  }

  leaders(): Candidate[] {
    return this.candidates.filter((c) => c.elector.isLeader);
  }

  /** Waits until exactly one candidate leads; returns it. */
  async leader(timeoutMs = 5000): Promise<Candidate> {
    await pollUntil(() => this.leaders().length === 1, {
      timeoutMs,
      message: () => `one leader among ${this.candidates.map((c) => c.id)}`,
    });
    return this.leaders()[0];
  }

  lease() {
    return this.api.leases.get(NS, NAME);
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.candidates.map((c) => c.elector.stop()));
    await Promise.all(this.candidates.map((c) => c.running));
    for (const c of this.candidates) c.client.close();
  }
}

async function rig(fn: (r: Rig) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-leader-" });
  const served: Served[] = [];
  const api = await startApiServer({
    kubeconfigPath: `${dir}/kubeconfig`,
    onResponse: (method, url, status) => {
      const watch = url.searchParams.get("watch") === "true";
      const kind = method !== "GET" ? "write" : watch ? "watch" : "get";
      served.push({ at: performance.now(), kind, status });
    },
  });
  const r = new Rig(api, await loadKubeconfig(`${dir}/kubeconfig`), served);
  try {
    await fn(r);
  } finally {
    await r.stopAll();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(r.violations, [], "never two leaders");
}

/**
 * A TCP proxy on loopback to the API server: `cut()` makes it swallow everything both
 * ways, as a network that lost its route (requests hang rather than fail).
 */
class Blackhole {
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Deno.Conn>();
  #cut = false;
  readonly #accepting: Promise<void>;

  constructor(readonly upstream: { hostname: string; port: number }) {
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  cut(): void {
    this.#cut = true;
  }

  async #accept(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        this.#serve(conn).catch(() => {});
      }
    } catch { /* closed */ }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    if (this.#cut) {
      await this.#pump(conn, undefined);
      return;
    }
    const up = await Deno.connect(this.upstream);
    this.#conns.add(up);
    await Promise.all([this.#pump(conn, up), this.#pump(up, conn)]);
  }

  async #pump(from: Deno.Conn, to: Deno.Conn | undefined): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        if (this.#cut || !to) continue;
        for (let at = 0; at < n;) at += await to.write(buf.subarray(at, n));
      }
    } catch { /* closed */ }
    for (const c of [from, to]) {
      if (c && this.#conns.delete(c)) {
        try {
          c.close();
        } catch { /* closed already */ }
      }
    }
  }

  async close(): Promise<void> {
    this.#listener.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* closed already */ }
    }
    this.#conns.clear();
    await this.#accepting;
  }
}

Deno.test("leader: options are checked with errors naming the values", () => {
  const client = {} as KubeClient;
  const base = { namespace: NS, name: NAME, identity: "a" };
  assert.throws(
    () => new LeaderElector(client, { ...base, leaseDurationMs: 600, renewDeadlineMs: 600 }),
    /renewDeadlineMs \(600\) must be less than leaseDurationMs \(600\)/,
  );
  assert.throws(
    () => new LeaderElector(client, { ...base, renewDeadlineMs: 1000, retryPeriodMs: 900 }),
    /retryPeriodMs × 1\.2 \(900 × 1\.2 = 1080\) must be less than renewDeadlineMs \(1000\)/,
  );
  assert.throws(
    () => new LeaderElector(client, { ...base, retryPeriodMs: -1 }),
    /retryPeriodMs must be a positive number of ms, not -1/,
  );
  assert.throws(() => new LeaderElector(client, { ...base, identity: "" }), /identity/);
  // client-go's defaults pass.
  const e = new LeaderElector(client, base);
  assert.equal(e.isLeader, false);
  assert.equal(e.leader, undefined);
});

Deno.test("leader: one of three leads; the others see it and wait while it renews", () =>
  rig(async (r) => {
    for (const id of ["a", "b", "c"]) r.start(id);
    const leader = await r.leader();
    const lease = r.lease()!;
    assert.equal(lease.spec.holderIdentity, leader.id);
    assert.equal(lease.spec.leaseDurationSeconds, 1);
    assert.equal(lease.spec.leaseTransitions, 0, "created by the first to come");
    await pollUntil(() => r.candidates.every((c) => c.elector.leader === leader.id), {
      message: "everyone saw the leader",
    });
    // Renewals for longer than the lease lasts: nobody takes over meanwhile.
    const rv = Number(lease.metadata.resourceVersion);
    await pollUntil(() => Number(r.lease()!.metadata.resourceVersion) >= rv + 15, {
      message: "15 renewals",
    });
    assert.deepEqual(r.leaders(), [leader]);
    assert.equal(r.terms.length, 1);
    assert.equal(r.lease()!.spec.acquireTime, lease.spec.acquireTime, "kept while renewing");
    assert.notEqual(r.lease()!.spec.renewTime, lease.spec.renewTime);
    for (const c of r.candidates) assert.deepEqual(c.newLeaders, [leader.id], c.id);
  }));

Deno.test("leader: stop() ends leadership at once and releases; another leads well before expiry", () =>
  rig(async (r) => {
    for (const id of ["a", "b", "c"]) r.start(id);
    const first = await r.leader();
    await pollUntil(() => r.candidates.every((c) => c.elector.leader === first.id));
    const term = first.terms[0];
    // An edit since the leader's last write: its release conflicts, reads, and tries again.
    const edited = structuredClone(r.lease()!);
    edited.metadata.labels = { team: "net" };
    r.api.leases.update(NS, NAME, edited);
    const t0 = performance.now();
    const stopping = first.elector.stop();
    // Before stop() resolves, before any request: the work must stop now.
    assert.equal(first.elector.isLeader, false);
    assert.ok(term.signal.aborted);
    assert.ok(term.signal.reason instanceof LeadershipLost);
    assert.match(String(term.signal.reason.message), /stopped/);
    assert.equal(term.stoppedAfterAbort, true);
    await stopping;
    const second = await r.leader();
    const handover = performance.now() - t0;
    assert.notEqual(second.id, first.id);
    assert.ok(
      handover < TIMING.leaseDurationMs - 200,
      `handed over in ${handover.toFixed(0)} ms, without waiting for the lease to expire`,
    );
    const lease = r.lease()!;
    assert.equal(lease.spec.holderIdentity, second.id);
    assert.equal(lease.spec.leaseTransitions, 1);
    assert.deepEqual(lease.metadata.labels, { team: "net" });
    assert.ok(second.terms[0].start >= term.end!, "no overlap");
    await pollUntil(
      () =>
        r.candidates.filter((c) => c !== first).every((c) =>
          c.newLeaders.join() === `${first.id},${second.id}`
        ),
      { message: "the others saw the new leader" },
    );
  }));

Deno.test("leader: cut off from the API, the leader stops within renewDeadline; another takes over after leaseDuration", async () => {
  let proxy: Blackhole | undefined;
  try {
    await rig(async (r) => {
      const url = new URL(r.api.url);
      proxy = new Blackhole({ hostname: url.hostname, port: Number(url.port) });
      // When a's writes land (the store calls this after it sent the change to watchers).
      let landedAt = NaN;
      r.api.leases.onChange = () => {
        if (r.lease()?.spec.holderIdentity === "a") landedAt = performance.now();
      };
      const a = r.start("a", {
        access: { ...r.access, server: `https://127.0.0.1:${proxy.port}` },
      });
      assert.equal(await r.leader(), a);
      for (const id of ["b", "c"]) r.start(id);
      await pollUntil(() => r.candidates.every((c) => c.elector.leader === "a"));
      const term = a.terms[0];

      const cutAt = performance.now();
      proxy.cut();
      await pollUntil(() => term.signal.aborted, { message: "a stopped leading" });
      const led = term.end! - cutAt;
      assert.ok(
        led <= TIMING.renewDeadlineMs + SLACK_MS,
        `led ${led.toFixed(0)} ms after the cut, past renewDeadline`,
      );
      assert.ok(led >= TIMING.renewDeadlineMs - TIMING.retryPeriodMs - SLACK_MS, `${led} ms`);
      assert.match(String(term.signal.reason.message), /renew deadline/);
      assert.equal(term.stoppedAfterAbort, true);
      // The last renewal that reached the server: nobody may lead within leaseDuration of it.
      const last = r.lease()!;
      assert.equal(last.spec.holderIdentity, "a");
      const renewedAt = Date.parse(last.spec.renewTime!);

      const next = await r.leader(5000);
      assert.notEqual(next, a);
      const t = next.terms[0];
      assert.ok(t.start > term.end!, "no overlap");
      const after = t.start - landedAt;
      console.log(`  replaced ${after.toFixed(0)} ms after the last renewal landed`);
      assert.ok(after >= TIMING.leaseDurationMs, `replaced ${after.toFixed(0)} ms after`);
      assert.ok(after <= TIMING.leaseDurationMs + 300, `replaced ${after.toFixed(0)} ms after`);
      assert.ok(
        t.startWall >= renewedAt + TIMING.leaseDurationMs,
        `took over ${t.startWall - renewedAt} ms after the last renewal`,
      );
      const lease = r.lease()!;
      assert.equal(lease.spec.holderIdentity, next.id);
      assert.equal(lease.spec.leaseTransitions, 1);
      assert.notEqual(lease.spec.acquireTime, last.spec.acquireTime);
      assert.equal(a.elector.isLeader, false, "still cut off, a does not lead again");
    });
  } finally {
    await proxy?.close();
  }
});

Deno.test("leader: a deleted lease is created again by its leader at once, as it was; the standbys do not take it meanwhile", () =>
  rig(async (r) => {
    const a = r.start("a");
    assert.equal(await r.leader(), a);
    for (const id of ["b", "c"]) r.start(id);
    await pollUntil(() => r.candidates.every((c) => c.elector.leader === "a"));
    await pollUntil(() => r.api.leases.watcherCount() === 2, { message: "b and c watch" });
    const before = r.lease()!;

    const deletedAt = performance.now();
    r.api.leases.delete(NS, NAME);
    await pollUntil(() => r.lease() !== undefined, { message: "the lease is back" });
    const back = performance.now() - deletedAt;
    assert.ok(back <= TIMING.retryPeriodMs + SLACK_MS, `created again after ${back.toFixed(0)} ms`);
    // Past the standbys' wait from the deletion: they saw the lease back and wait on.
    await pollUntil(() => performance.now() - deletedAt >= TIMING.leaseDurationMs + 300, {
      message: "a lease duration",
    });
    assert.deepEqual(r.leaders().map((c) => c.id), ["a"]);
    assert.equal(r.terms.length, 1, "a never stopped leading");
    const lease = r.lease()!;
    assert.equal(lease.spec.holderIdentity, "a");
    assert.equal(lease.spec.acquireTime, before.spec.acquireTime);
    assert.equal(lease.spec.leaseTransitions, before.spec.leaseTransitions);
    assert.notEqual(lease.metadata.uid, before.metadata.uid, "a new object");
    for (const c of r.candidates) assert.deepEqual(c.newLeaders, ["a"], c.id);
  }));

Deno.test("leader: a lease deleted as its leader dies is created by a standby only after leaseDuration", async () => {
  let proxy: Blackhole | undefined;
  try {
    await rig(async (r) => {
      const url = new URL(r.api.url);
      proxy = new Blackhole({ hostname: url.hostname, port: Number(url.port) });
      const a = r.start("a", {
        access: { ...r.access, server: `https://127.0.0.1:${proxy.port}` },
      });
      assert.equal(await r.leader(), a);
      const b = r.start("b");
      await pollUntil(() => b.elector.leader === "a", { message: "b saw a" });
      await pollUntil(() => r.api.leases.watcherCount() === 1, { message: "b watches" });

      // a dies without releasing (no request of it reaches the server again), and the lease
      // is deleted: b cannot tell a has stopped, and must wait as for an expiry.
      proxy.cut();
      const deletedAt = performance.now();
      r.api.leases.delete(NS, NAME);
      await pollUntil(() => b.elector.isLeader, { timeoutMs: 5000, message: "b took over" });
      const waited = b.terms[0].start - deletedAt;
      console.log(`  taken over ${waited.toFixed(0)} ms after the deletion`);
      assert.ok(waited >= TIMING.leaseDurationMs, `took over after ${waited.toFixed(0)} ms`);
      assert.ok(waited <= TIMING.leaseDurationMs + 300, `took over after ${waited.toFixed(0)} ms`);
      assert.ok(b.terms[0].start >= a.terms[0].end!, "no overlap");
      const lease = r.lease()!;
      assert.equal(lease.spec.holderIdentity, "b");
      assert.equal(lease.spec.leaseTransitions, 0, "a new lease");
    });
  } finally {
    await proxy?.close();
  }
});

Deno.test("leader: with no lease, the first candidates create it at once", () =>
  rig(async (r) => {
    const t0 = performance.now();
    for (const id of ["a", "b"]) r.start(id);
    const first = await r.leader();
    const after = first.terms[0].start - t0;
    console.log(`  leading ${after.toFixed(0)} ms after the start`);
    // A read and a create (with the clients' first connections), without waiting.
    assert.ok(after <= TIMING.leaseDurationMs / 2, `leading after ${after.toFixed(0)} ms`);
    assert.equal(r.lease()!.spec.holderIdentity, first.id);
    assert.equal(r.lease()!.spec.leaseTransitions, 0);
  }));

/** A lease held by `holder`, written by hand (nobody renews it). */
function deadLease(holder: string, transitions: number) {
  const now = formatMicroTime(Date.now());
  return {
    metadata: { name: NAME },
    spec: {
      holderIdentity: holder,
      leaseDurationSeconds: 1,
      acquireTime: now,
      renewTime: now,
      leaseTransitions: transitions,
    },
  };
}

Deno.test("leader: a dead holder is taken over between leaseDuration and leaseDuration + 300 ms after the last change seen, with no request meanwhile", () =>
  rig(async (r) => {
    const created = r.api.leases.create(NS, deadLease("dead", 4));
    const e = r.start("e");
    await pollUntil(() => e.newLeaders.includes("dead"), { message: "e saw the dead holder" });
    await pollUntil(() => r.api.leases.watcherCount() === 1, { message: "e watches the lease" });
    // One last renewal by hand: the expiry runs from when e sees it, not from the first read.
    const last = structuredClone(r.lease()!);
    last.spec.renewTime = formatMicroTime(Date.now());
    r.api.leases.update(NS, NAME, last);
    const lastAt = performance.now();
    await pollUntil(() => e.elector.isLeader, { message: "e took over" });
    const waited = e.terms[0].start - lastAt;
    console.log(`  taken over ${waited.toFixed(0)} ms after the last change`);
    assert.ok(waited >= TIMING.leaseDurationMs, `took over after ${waited.toFixed(0)} ms`);
    assert.ok(waited <= TIMING.leaseDurationMs + 300, `took over after ${waited.toFixed(0)} ms`);
    // Watching, e waited on its timer: no read, only the update that took the lease.
    assert.deepEqual(tally(r.served, lastAt), { gets: 0, watches: 0, writes: 1, all: 1 });
    const lease = r.lease()!;
    assert.equal(lease.spec.holderIdentity, "e");
    assert.equal(lease.spec.leaseTransitions, 5);
    assert.ok(Date.parse(lease.spec.acquireTime!) > Date.parse(created.spec.acquireTime!));
    assert.deepEqual(e.newLeaders, ["dead", "e"]);
  }));

Deno.test("leader: a leader whose lease another creates after its deletion stops leading", () =>
  rig(async (r) => {
    const client = new KubeClient(r.access);
    let intruded = false;
    // The leader's client: another creates the lease between its update (a 404) and its
    // create.
    const racing: LeaseClient = {
      getLease: (ns, name, opts) => client.getLease(ns, name, opts),
      createLease: (ns, lease, opts) => client.createLease(ns, lease, opts),
      updateLease: (ns, lease, opts) =>
        client.updateLease(ns, lease, opts).catch((e) => {
          if (e instanceof ApiError && e.status === 404 && !intruded) {
            intruded = true;
            r.api.leases.create(NS, deadLease("intruder", 0));
          }
          throw e;
        }),
    };
    let signal: AbortSignal | undefined;
    const elector = new LeaderElector(racing, {
      namespace: NS,
      name: NAME,
      identity: "a",
      ...TIMING,
      onStartedLeading: (s) => {
        signal = s;
      },
    });
    const running = elector.run();
    try {
      await pollUntil(() => elector.isLeader, { message: "a leads" });
      r.api.leases.delete(NS, NAME);
      await pollUntil(() => signal!.aborted, { message: "a stopped leading" });
      assert.ok(intruded);
      assert.match(String(signal!.reason.message), /changed by another/);
      assert.equal(r.lease()!.spec.holderIdentity, "intruder");
    } finally {
      await elector.stop();
      await running;
      client.close();
    }
  }));

Deno.test("leader: a write by another ends leadership at the next renewal; an edited label does not", () =>
  rig(async (r) => {
    const a = r.start("a");
    await r.leader();
    const put = (change: (l: ReturnType<Rig["lease"]> & object) => void) => {
      const l = structuredClone(r.lease()!);
      change(l);
      return r.api.leases.update(NS, NAME, l);
    };
    // Another writer edits a label: the leader's next write conflicts, it reads again, finds
    // itself the holder and renews, keeping the label.
    const rv = Number(put((l) => (l.metadata.labels = { team: "net" })).metadata.resourceVersion);
    await pollUntil(() => Number(r.lease()!.metadata.resourceVersion) >= rv + 3);
    assert.equal(a.elector.isLeader, true);
    assert.equal(a.terms.length, 1);
    assert.deepEqual(r.lease()!.metadata.labels, { team: "net" });

    const takenAt = performance.now();
    put((l) => {
      l.spec.holderIdentity = "intruder";
      l.spec.renewTime = formatMicroTime(Date.now());
    });
    await pollUntil(() => !a.elector.isLeader, { message: "a saw the intruder" });
    const after = a.terms[0].end! - takenAt;
    assert.ok(after <= TIMING.retryPeriodMs + SLACK_MS, `stopped ${after.toFixed(0)} ms later`);
    assert.match(String(a.terms[0].signal.reason.message), /held by intruder/);
    assert.equal(a.elector.leader, "intruder");
    // The intruder never renews: a takes the lease back once it expires.
    await pollUntil(() => a.elector.isLeader, { message: "a leads again" });
    assert.equal(r.lease()!.spec.leaseTransitions, 1);
  }));

Deno.test("leader: stop() called from onStartedLeading ends the run and releases the lease", () =>
  rig(async (r) => {
    const client = new KubeClient(r.access);
    let signal: AbortSignal | undefined;
    const elector: LeaderElector = new LeaderElector(client, {
      namespace: NS,
      name: NAME,
      identity: "quitter",
      ...TIMING,
      onStartedLeading: (s) => {
        signal = s;
        void elector.stop();
      },
    });
    try {
      await elector.run();
      assert.ok(signal?.aborted);
      assert.equal(elector.isLeader, false);
      assert.equal(r.lease()!.spec.holderIdentity, "");
    } finally {
      client.close();
    }
  }));

Deno.test("leader: the client's conflicts are ApiErrors with status 409", () =>
  rig(async (r) => {
    const client = new KubeClient(r.access);
    try {
      const made = await client.createLease(NS, { metadata: { name: NAME }, spec: {} });
      assert.equal(made.metadata.namespace, NS);
      const dup = await client.createLease(NS, { metadata: { name: NAME } }).catch((e) => e);
      assert.ok(dup instanceof ApiError);
      assert.equal(dup.status, 409);
      assert.equal(dup.reason, "AlreadyExists");
      const next = await client.updateLease(NS, { ...made, spec: { holderIdentity: "x" } });
      assert.equal(next.spec?.holderIdentity, "x");
      const stale = await client.updateLease(NS, { ...made, spec: { holderIdentity: "y" } })
        .catch((e) => e);
      assert.ok(stale instanceof ApiError);
      assert.equal(stale.status, 409);
      assert.equal(stale.reason, "Conflict");
      assert.equal((await client.getLease(NS, NAME)).spec?.holderIdentity, "x");
      const missing = await client.getLease(NS, "none").catch((e) => e);
      assert.ok(missing instanceof ApiError && missing.status === 404);
    } finally {
      client.close();
    }
  }));

Deno.test("leader: standbys watch: 5 of them make a handful of requests in 5 s while the leader renews", () =>
  rig(async (r) => {
    const leader = r.start("leader");
    await r.leader();
    const { faults } = r.api;
    /** Runs 5 standbys for `ms`; the requests the server answered meanwhile. */
    const standbys = async (prefix: string, ms: number, opts: Partial<LeaderElectorOptions>) => {
      const t0 = performance.now();
      const count0 = faults.requestCount();
      const since = r.candidates.length;
      for (let i = 0; i < 5; i++) r.start(`${prefix}${i}`, opts);
      const mine = r.candidates.slice(since);
      await pollUntil(() => mine.every((c) => c.newLeaders.includes(leader.id)), {
        message: "the standbys saw the leader",
      });
      let dropped = false;
      await pollUntil(() => {
        // Halfway, every watch ends (as when a server restarts its watch cache): re-watches.
        if (!dropped && opts.watch !== false && performance.now() - t0 >= ms / 2) {
          dropped = true;
          faults.dropWatches();
        }
        return performance.now() - t0 >= ms;
      }, { timeoutMs: ms + 5000, message: `${ms} ms` });
      const all = faults.requestCount() - count0;
      const counts = tally(r.served, t0);
      await Promise.all(mine.map((c) => c.elector.stop()));
      return { ...counts, all, seconds: (performance.now() - t0) / 1000 };
    };

    const watching = await standbys("w", 5000, {});
    const standbyRequests = watching.all - watching.writes;
    const { gets, watches, writes } = watching;
    console.log(
      `  watching: 5 standbys made ${standbyRequests} requests in ${watching.seconds.toFixed(1)}` +
        ` s (${gets} reads, ${watches} watches: one again each after the drop); the leader ` +
        `renewed ${writes} times`,
    );
    // Each: its read and its watch, then one watch again after the drop; no polling.
    assert.ok(standbyRequests <= 5 * 3, `${standbyRequests} requests`);
    assert.equal(watching.watches, 10, "a watch each, and one again after the drop");
    assert.ok(watching.writes >= 20, `the leader renewed ${watching.writes} times`);
    assert.equal(r.terms.length, 1, "the leader kept the lease");

    // The same with client-go's polling, for comparison.
    const polling = await standbys("p", 2000, { watch: false });
    const perSecond = (polling.all - polling.writes) / polling.seconds;
    console.log(
      `  polling: 5 standbys made ${polling.gets} reads in ${polling.seconds.toFixed(1)} s ` +
        `(${perSecond.toFixed(0)}/s; with client-go's 2 s period, 5,000 nodes would make ` +
        `${(5000 / (2 * (1 + JITTER / 2))).toFixed(0)}/s)`,
    );
    assert.equal(polling.watches, 0);
    assert.equal(r.terms.length, 1, "the leader kept the lease");
  }));

for (const fault of ["endWatches", "expireWatches"] as const) {
  Deno.test(`leader: with watches unavailable (${fault}), standbys poll and take over a dead lease, then watch again`, () =>
    rig(async (r) => {
      const { faults } = r.api;
      faults[fault](true);
      r.api.leases.create(NS, deadLease("dead", 0));
      const t0 = performance.now();
      for (const id of ["a", "b", "c"]) r.start(id);
      const next = await r.leader();
      const waited = next.terms[0].start - t0;
      const during = tally(r.served, t0);
      console.log(
        `  ${fault}: taken over after ${waited.toFixed(0)} ms; meanwhile ${during.gets} reads, ` +
          `${during.watches} watches tried`,
      );
      assert.ok(waited >= TIMING.leaseDurationMs, `took over after ${waited.toFixed(0)} ms`);
      assert.ok(waited <= TIMING.leaseDurationMs + 300, `took over after ${waited.toFixed(0)} ms`);
      assert.equal(r.lease()!.spec.leaseTransitions, 1);
      // Read every retryPeriod (× 1-2.2) for a second by three: more than a read each.
      assert.ok(during.gets >= 3 * 3, `${during.gets} reads`);
      assert.ok(during.watches >= 3, `${during.watches} watches`);
      await pollUntil(() => r.candidates.every((c) => c.elector.leader === next.id), {
        message: "the standbys saw the new leader by polling",
      });

      // Watches work again: after its backoff, each standby watches and stops polling.
      faults[fault](false);
      await pollUntil(() => {
        const last = r.served.findLast((s) => s.kind === "get");
        return last !== undefined &&
          performance.now() - last.at > 3 * JITTER * TIMING.retryPeriodMs;
      }, { timeoutMs: 20_000, message: "the standbys stopped polling" });
      assert.equal(r.api.leases.watcherCount(), 2, "both standbys watch");
      assert.equal(r.terms.length, 1);
    }));
}

Deno.test("leader: the client's lease watch: one lease's events, bookmarks, 410 as an ERROR", async () => {
  const dir = await Deno.makeTempDir({ prefix: "xcluster-leader-" });
  const api = await startApiServer({ kubeconfigPath: `${dir}/kubeconfig`, bookmarkIntervalMs: 50 });
  const client = new KubeClient(await loadKubeconfig(`${dir}/kubeconfig`));
  const abort = new AbortController();
  try {
    const made = await client.createLease(NS, { metadata: { name: NAME }, spec: {} });
    const from = made.metadata.resourceVersion!;
    const watch = client.watchLeases(NS, {
      name: NAME,
      resourceVersion: from,
      signal: abort.signal,
    });
    const events = watch[Symbol.asyncIterator]();
    api.leases.create(NS, { metadata: { name: "other" }, spec: { holderIdentity: "x" } });
    api.leases.update(NS, NAME, { ...made, spec: { holderIdentity: "y" } });
    const modified = await events.next();
    assert.equal(modified.value?.type, "MODIFIED", "the other lease is not seen");
    assert.equal(
      modified.value?.type === "MODIFIED" && modified.value.object.spec?.holderIdentity,
      "y",
    );
    let bookmark = await events.next();
    while (bookmark.value?.type !== "BOOKMARK") bookmark = await events.next();
    assert.ok(Number(bookmark.value.object.metadata.resourceVersion) > Number(from));
    abort.abort();
    assert.equal((await events.next()).done, true, "ended by the signal");

    api.faults.compact();
    const expired = [];
    for await (const ev of client.watchLeases(NS, { name: NAME, resourceVersion: from })) {
      expired.push(ev);
    }
    assert.equal(expired.length, 1);
    assert.equal(expired[0].type, "ERROR");
    assert.equal(statusError(expired[0].object).status, 410);
  } finally {
    abort.abort();
    client.close();
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leader: never two leaders through failures, latency, outages, hand-overs and edits", () =>
  rig(async (r) => {
    let next = 0;
    for (; next < 4; next++) r.start(`n${next}`);
    const { faults } = r.api;
    const handOver = async () => {
      const leader = r.leaders()[0];
      if (!leader) return;
      await leader.elector.stop();
      r.start(`n${next++}`);
    };
    const actions: (() => void | Promise<void>)[] = [
      () => faults.failNext(1 + Math.floor(Math.random() * 8), 500),
      () => faults.failNext(1 + Math.floor(Math.random() * 4), 429, { retryAfterSeconds: 0 }),
      async () => {
        // Slower than renewDeadline: the leader loses the lease with a request in flight.
        const leader = r.leaders()[0];
        faults.setLatency(TIMING.renewDeadlineMs + 100);
        await pollUntil(() => !leader?.elector.isLeader, { message: "the leader gave up" });
        faults.setLatency(0);
      },
      handOver,
      async () => {
        const leader = r.leaders()[0];
        // The embedded server still answers requests on open connections while it shuts
        // down, and its shutdown waits for them: a standby's watch opened then would hold it
        // until the watch's timeout. Watches that end at once cannot.
        faults.endWatches(true);
        await faults.stopListening();
        await pollUntil(() => !leader?.elector.isLeader, { message: "the leader gave up" });
        faults.startListening();
        faults.endWatches(false);
      },
      () => {
        const l = r.lease();
        if (l) r.api.leases.update(NS, NAME, { ...l, metadata: { ...l.metadata, labels: {} } });
      },
      async () => {
        // Slow but within renewDeadline, during a hand-over.
        faults.setLatency(TIMING.retryPeriodMs * 2);
        await handOver();
        await r.leader();
        faults.setLatency(0);
      },
    ];
    for (let round = 0; round < 24 || r.terms.length < 8; round++) {
      assert.ok(round < 80, `only ${r.terms.length} terms after ${round} rounds`);
      await actions[round % actions.length]();
      await pollUntil(() => r.leaders().length === 1, {
        timeoutMs: 5000,
        message: `a leader after round ${round}`,
      });
    }
    const terms = [...r.terms].sort((x, y) => x.start - y.start);
    for (let i = 1; i < terms.length; i++) {
      const [prev, cur] = [terms[i - 1], terms[i]];
      assert.ok(
        prev.end !== undefined && prev.end <= cur.start,
        `${prev.id} (to ${prev.end}) overlaps ${cur.id} (from ${cur.start})`,
      );
    }
    assert.ok(terms.every((t) => t.end === undefined || t.stoppedAfterAbort));
    assert.ok(new Set(terms.map((t) => t.id)).size >= 3, "leadership moved around");
  }));

Deno.test("leader: a lease watch the server never ends is cut past its timeout and opened again", () =>
  rig(async (r) => {
    r.start("a");
    await r.leader();
    const client = new KubeClient(r.access);
    let watches = 0;
    // A connection gone silent: the watch opens, then nothing comes, not even its end.
    const silent: LeaseClient = {
      getLease: (ns, name, o) => client.getLease(ns, name, o),
      createLease: (ns, lease, o) => client.createLease(ns, lease, o),
      updateLease: (ns, lease, o) => client.updateLease(ns, lease, o),
      watchLeases(_ns, opts) {
        watches++;
        // Its first event never comes; the abort ends the wait, as a read on a socket.
        const next = () =>
          new Promise<IteratorResult<LeaseWatchEvent>>((_, reject) => {
            opts.signal?.addEventListener("abort", () => reject(opts.signal?.reason), {
              once: true,
            });
          });
        return { [Symbol.asyncIterator]: () => ({ next }) };
      },
    };
    const b = new LeaderElector(silent, {
      namespace: NS,
      name: NAME,
      identity: "b",
      ...TIMING,
      // Long enough that a live watch is never cut in this test but by its deadline.
      leaseDurationMs: 60_000,
      watchTimeoutSeconds: 1,
      watchGraceMs: 200,
    });
    const running = b.run();
    try {
      await pollUntil(() => watches >= 2, {
        timeoutMs: 4000,
        message: () => `a second watch after the first went silent (${watches})`,
      });
    } finally {
      await b.stop();
      await running;
      client.close();
    }
  }));
