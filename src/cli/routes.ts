/**
 * `routes`: desired routes, the kernel's routes of our protocol, and the diff the daemon
 * would apply. A dry run: nothing is changed.
 *
 * @module
 */
import { diff, indexKernel } from "../routing/diff.ts";
import { parseView, planFor, readSnapshot, table } from "./snapshot.ts";

/** `routes [-o json] [--kubeconfig FILE] [--netns NS]` */
export async function routesCommand(args: string[]): Promise<number> {
  const { flags, cfg } = parseView(args);
  const { nodes, local, kernel } = await readSnapshot(flags, cfg);
  const p = planFor(cfg, nodes, local);
  const d = diff(p.routes, indexKernel(kernel, cfg.protocol));
  const ours = kernel.filter((r) => r.protocol === cfg.protocol);
  if (flags.json) {
    console.log(
      JSON.stringify({ protocol: cfg.protocol, desired: p.routes, kernel: ours, ...d }, null, 2),
    );
    return 0;
  }
  console.log(`desired (${p.routes.length}):`);
  console.log(table(["DESTINATION", "VIA", "NODE"], p.routes.map((r) => [r.dst, r.via, r.node])));
  console.log(`\nkernel, protocol ${cfg.protocol} (${ours.length}):`);
  console.log(
    table(["DESTINATION", "VIA", "DEV"], ours.map((r) => [r.dst, r.via ?? "-", r.dev ?? "-"])),
  );
  console.log(`\ndiff (${d.ops.length} operations, dry run):`);
  console.log(
    d.ops.length === 0 ? "  none: the kernel agrees" : table(
      ["OP", "DESTINATION", "VIA"],
      d.ops.map((o) => [o.op, o.route.dst, o.route.via ?? "-"]),
    ),
  );
  for (const c of d.conflicts) {
    console.log(
      `conflict: ${c.route.dst} wanted via ${c.route.via} (node ${c.route.node}) ` +
        `but a route of protocol ${c.foreign.protocol} has it; left alone`,
    );
  }
  return 0;
}
