/**
 * The printed table: one line per figure with value, baseline, ratio, target and verdict.
 *
 * @module
 */
import type { JudgedFigure } from "./lib.ts";

function num(x: number | undefined, unit = ""): string {
  if (x === undefined || Number.isNaN(x)) return "-";
  const digits = Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : Math.abs(x) >= 1 ? 2 : 3;
  return `${x.toFixed(digits)}${unit ? " " + unit : ""}`;
}

function target(f: JudgedFigure): string {
  if (!f.target) return "-";
  return f.target.on === "ratio" ? `≤ ${f.target.max}x` : `≤ ${f.target.max} ${f.unit}`;
}

/** Formats the figures as an aligned plain-text table. */
export function formatTable(figures: readonly JudgedFigure[]): string {
  const head = ["fig", "name", "N", "value", "baseline", "ratio", "target", "met", "what"];
  const rows = figures.map((f) => [
    String(f.figure),
    f.name,
    f.n === undefined ? "-" : String(f.n),
    num(f.value, f.unit),
    num(f.baseline, f.unit),
    f.ratio === undefined ? "-" : `${f.ratio.toFixed(2)}x`,
    target(f),
    f.met === undefined ? "-" : f.met ? "yes" : "NO",
    f.what + (f.baselineWhat ? ` | baseline: ${f.baselineWhat}` : ""),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ");
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}
