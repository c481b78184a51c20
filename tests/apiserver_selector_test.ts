/**
 * Watches with a label selector, as kube-apiserver's watch cache serves them: an object that
 * starts matching arrives as ADDED, one that stops matching as DELETED, and set-based
 * selectors are understood.
 */
import assert from "node:assert/strict";
import { NodeStore } from "../src/devcluster/apiserver/mod.ts";
import { parseLabelSelector } from "../src/devcluster/apiserver/selectors.ts";
import { makeNode } from "../src/devcluster/nodes.ts";

function watchLog(store: NodeStore, selector: string, from: string) {
  const seen: string[] = [];
  const stop = store.watch(from, {
    selector: parseLabelSelector(selector),
    bookmarks: false,
    send: (ev) => seen.push(`${ev.type} ${ev.obj.metadata.name}`),
    close: () => {},
  });
  return { seen, stop };
}

Deno.test("apiserver: a selector's watch sees objects enter as ADDED and leave as DELETED", () => {
  const store = new NodeStore();
  store.create(makeNode({ name: "a", labels: { net: "yes" } }));
  store.create(makeNode({ name: "b" }));
  const from = String(store.resourceVersion());
  const live = watchLog(store, "net in (yes,maybe)", from);
  store.patch("b", "merge", { metadata: { labels: { net: "maybe" } } });
  store.patch("a", "merge", { metadata: { labels: { net: "no" } } });
  store.patch("a", "merge", { metadata: { labels: { other: "1" } } });
  store.patch("b", "merge", { metadata: { labels: { other: "1" } } });
  store.delete("b");
  const want = ["ADDED b", "DELETED a", "MODIFIED b", "DELETED b"];
  assert.deepEqual(live.seen, want);
  // The same from the history, for a watch that starts later.
  const replay = watchLog(store, "net in (yes,maybe)", from);
  assert.deepEqual(replay.seen, want);
  live.stop();
  replay.stop();
});
