/**
 * Writes the environment table of docs/configuration.md from the config schema:
 * `deno run -A docs/gen_config.ts`. tests/docs_test.ts fails when the two differ.
 *
 * @module
 */
import { ENV } from "../src/config.ts";

/** The markdown table of every environment variable. */
export function envTable(): string {
  const rows = ENV.map((e) =>
    `| \`${e.name}\` | ${e.default === "" ? "(empty)" : `\`${e.default}\``} | ${e.description} |`
  );
  return ["| variable | default | meaning |", "| --- | --- | --- |", ...rows].join("\n");
}

const BEGIN = "<!-- env:begin -->";
const END = "<!-- env:end -->";

/** The document with the table between its markers replaced. */
export function withTable(doc: string): string {
  const a = doc.indexOf(BEGIN), b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error("docs/configuration.md: env markers not found");
  return `${doc.slice(0, a + BEGIN.length)}\n\n${envTable()}\n\n${doc.slice(b)}`;
}

if (import.meta.main) {
  const path = new URL("./configuration.md", import.meta.url).pathname;
  await Deno.writeTextFile(path, withTable(await Deno.readTextFile(path)));
}
