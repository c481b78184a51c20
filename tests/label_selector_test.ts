/** Label selectors: every operator, the canonical text, and errors that name the part. */
import assert from "node:assert/strict";
import { LabelSelectorError, parseLabelSelector } from "../src/kube/label_selector.ts";

Deno.test("label selector: every operator matches as kube-apiserver's does", () => {
  const cases: [string, Record<string, string> | undefined, boolean][] = [
    ["", undefined, true],
    ["a=b", { a: "b" }, true],
    ["a==b", { a: "c" }, false],
    ["a!=b", undefined, true],
    ["a!=b", { a: "b" }, false],
    ["zone in (x, y)", { zone: "y" }, true],
    ["zone in (x,y)", undefined, false],
    ["zone notin (x,y)", undefined, true],
    ["zone notin (x,y)", { zone: "x" }, false],
    ["net.example.com/net3", { "net.example.com/net3": "" }, true],
    ["!net.example.com/net3", { "net.example.com/net3": "" }, false],
    ["a=b,zone in (x,y),!c", { a: "b", zone: "x" }, true],
    ["a=b,zone in (x,y),!c", { a: "b", zone: "x", c: "1" }, false],
    ["a=", { a: "" }, true],
  ];
  for (const [text, labels, want] of cases) {
    assert.equal(
      parseLabelSelector(text).matches(labels),
      want,
      `${text} on ${JSON.stringify(labels)}`,
    );
  }
  assert.equal(parseLabelSelector(" zone in ( x , y ) , a==b ").text, "zone in (x,y),a=b");
});

Deno.test("label selector: bad text names the requirement and the reason", () => {
  const bad: [string, RegExp][] = [
    ["a=b,,c", /empty requirement/],
    ["zone in (x,y", /parentheses/],
    ["zone in (x,,y)", /empty value/],
    ["a=b=c", /"a=b=c" is not a requirement/],
    ["-a=b", /"-a": the name/],
    ["Bad_Prefix/a=b", /prefix must be a DNS subdomain/],
    ["a=" + "v".repeat(64), /at most 63 characters/],
    ["a in (x y)", /"x y"/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parseLabelSelector(text), (e: unknown) => {
      assert.ok(e instanceof LabelSelectorError, text);
      assert.match(e.message, re, text);
      assert.ok(e.message.includes(JSON.stringify(text)), `${text}: ${e.message}`);
      return true;
    });
  }
});
