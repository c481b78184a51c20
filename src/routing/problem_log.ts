/**
 * Problems said once: each is logged when it appears and once more when it is gone, with a
 * stable message and the values in fields. A node without CIDRs for the network is normal
 * where a network covers some nodes only: that is said at debug level.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import { type Problem, problemKey } from "./problem.ts";

/** The problems reported so far, so that each is logged once per appearance. */
export class ProblemLog {
  #reported = new Map<string, Problem>();

  constructor(readonly log: Logger) {}

  /** Takes the problems of now; logs what appeared and what went; returns what appeared. */
  update(problems: readonly Problem[]): Problem[] {
    const { log } = this;
    const now = new Map(problems.map((p) => [problemKey(p), p]));
    const fresh: Problem[] = [];
    for (const [key, p] of now) {
      if (this.#reported.has(key)) continue;
      fresh.push(p);
      const fields = {
        node: p.node,
        kind: p.kind,
        field: p.field,
        value: p.value,
        reason: p.reason,
      };
      if (p.kind === "no-cidrs") log.debug("node problem", fields);
      else log.warn("node problem", fields);
    }
    for (const [key, p] of this.#reported) {
      if (now.has(key)) continue;
      const fields = { node: p.node, kind: p.kind, field: p.field, value: p.value };
      if (p.kind === "no-cidrs") log.debug("node problem resolved", fields);
      else log.info("node problem resolved", fields);
    }
    this.#reported = now;
    return fresh;
  }
}
