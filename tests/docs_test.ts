import assert from "node:assert/strict";
import { withTable } from "../docs/gen_config.ts";
import { KUBE_NODE_KEYS } from "../cni/config.ts";
import { ENV } from "../src/config.ts";

Deno.test("docs/configuration.md lists every variable as the schema says", async () => {
  const doc = await Deno.readTextFile("docs/configuration.md");
  // deno fmt pads the table's columns; compare with the padding folded.
  const fold = (s: string) => s.replace(/ +/g, " ").replace(/-{3,}/g, "---");
  assert.equal(fold(doc), fold(withTable(doc)), "run: deno run -A docs/gen_config.ts");
  for (const e of ENV) assert.match(doc, new RegExp(`\\| \`${e.name}\` +\\|`), e.name);
});

Deno.test("docs/configuration.md lists every kube-node IPAM key", async () => {
  const doc = await Deno.readTextFile("docs/configuration.md");
  for (const key of KUBE_NODE_KEYS) assert.match(doc, new RegExp(`\\| \`${key}\` +\\|`), key);
});

Deno.test("README and docs link to files that exist", async () => {
  for (
    const file of [
      "README.md",
      ...[...Deno.readDirSync("docs")].filter((f) => f.name.endsWith(".md")).map((f) =>
        `docs/${f.name}`
      ),
    ]
  ) {
    const text = await Deno.readTextFile(file);
    const base = file.includes("/") ? file.slice(0, file.lastIndexOf("/") + 1) : "";
    for (const m of text.matchAll(/\]\(([^)#:]+)\)/g)) {
      await Deno.stat(base + m[1]).catch(() => assert.fail(`${file} links to missing ${m[1]}`));
    }
  }
});
