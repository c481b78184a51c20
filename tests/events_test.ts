/**
 * postNodeEvents against the embedded API server: the Events a reconcile's new problems
 * make, bounded, and a failed post logged rather than thrown.
 */
import assert from "node:assert/strict";
import { startApiServer } from "../src/devcluster/apiserver/mod.ts";
import { EVENT_NAMESPACE, MAX_EVENTS_AT_ONCE, postNodeEvents } from "../src/events.ts";
import { createLogger } from "../src/log.ts";
import type { Problem } from "../src/routing/problem.ts";
import { pollUntil } from "./helpers/netns.ts";
import { kubeClient } from "./helpers/apiserver_http.ts";

const refused = (i: number): Problem => ({
  node: `vm-${i}`,
  kind: "refused",
  field: "cidr.example.com/net3",
  value: "0.0.0.0/0",
  reason: "refused",
});

Deno.test("postNodeEvents: a flood of problems posts a bounded number of Events, one per node", async () => {
  const api = await startApiServer({});
  const lines: string[] = [];
  const log = createLogger("warn", { write: (l) => lines.push(l), text: false });
  const client = kubeClient(api);
  try {
    // A kind that posts no Event first: it must not take a place in the bound.
    const problems: Problem[] = [{ ...refused(0), kind: "no-cidrs" }];
    for (let i = 1; i <= 3 * MAX_EVENTS_AT_ONCE; i++) problems.push(refused(i));
    postNodeEvents(client, problems, { protocol: 202, host: "vm-0", log });
    await pollUntil(() => api.events.length === MAX_EVENTS_AT_ONCE, {
      message: () => `${api.events.length} Events`,
    });
    // Nothing more comes: the rest of the flood is dropped.
    await new Promise((r) => setTimeout(r, 200));
    const events = api.events as {
      metadata: { namespace: string };
      involvedObject: { name: string };
    }[];
    assert.equal(events.length, MAX_EVENTS_AT_ONCE);
    assert.deepEqual(
      events.map((e) => e.involvedObject.name).sort(),
      problems.slice(1, MAX_EVENTS_AT_ONCE + 1).map((p) => p.node).sort(),
    );
    assert.ok(events.every((e) => e.metadata.namespace === EVENT_NAMESPACE));
    assert.deepEqual(lines, []);

    // The server gone: each post fails, and says so in the log, naming its node.
    await api.close();
    postNodeEvents(client, [refused(99)], { protocol: 202, host: "vm-0", log });
    await pollUntil(() => lines.length === 1, { message: () => `log: ${lines.join("\n")}` });
    const line = JSON.parse(lines[0]);
    assert.equal(line.msg, "posting a Node Event failed");
    assert.equal(line.node, "vm-99");
  } finally {
    client.close();
    await api.close();
  }
});

Deno.test("postNodeEvents: every instance reporting a node's problem makes one Event; a foreign route is on its host", async () => {
  const api = await startApiServer({});
  const lines: string[] = [];
  const log = createLogger("warn", { write: (l) => lines.push(l), text: false });
  const client = kubeClient(api);
  const foreign: Problem = {
    node: "vm-5",
    kind: "foreign-route",
    field: "route",
    value: "10.5.0.0/24",
    reason: "a route of protocol 4 via 192.168.1.9 already has this destination; left alone",
  };
  try {
    // Three instances of the network, and one of another network, see vm-5's bad CIDR.
    for (const host of ["vm-1", "vm-2", "vm-3"]) {
      postNodeEvents(client, [refused(5)], { protocol: 202, host, log });
    }
    postNodeEvents(client, [refused(5)], { protocol: 203, host: "vm-1", log });
    // Two hosts find a foreign route in the way of their route to vm-5.
    for (const host of ["vm-1", "vm-2"]) {
      postNodeEvents(client, [foreign], { protocol: 202, host, log });
    }
    await new Promise((r) => setTimeout(r, 300));
    const events = api.events as { involvedObject: { name: string }; message: string }[];
    const on = (node: string) => events.filter((e) => e.involvedObject.name === node);
    assert.equal(on("vm-5").length, 2, "one per network");
    assert.deepEqual(on("vm-1").map((e) => e.message), [
      'xcluster-cni (protocol 202, on vm-1): node vm-5: route="10.5.0.0/24": ' + foreign.reason,
    ]);
    assert.equal(on("vm-2").length, 1);
    assert.equal(events.length, 4);
    assert.deepEqual(lines, [], "the instances that came second say nothing");
  } finally {
    client.close();
    await api.close();
  }
});
