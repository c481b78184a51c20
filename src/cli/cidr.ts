/**
 * `cidr`: the per-node CIDR calculator of Nordix xcluster-cni. `BASE/PREFIX/NODEPREFIX N`
 * gives node N's CIDR of size NODEPREFIX inside BASE/PREFIX, for every comma separated item.
 *
 * @example
 * ```sh
 * xcluster-cni cidr fd00:1000::/96/112 5          # fd00:1000::5:0/112
 * xcluster-cni cidr 10.0.0.0/16/24,fd00::/96/120 3 # 10.0.3.0/24,fd00::300/120
 * ```
 *
 * @module
 */
import { familyBits, formatCidr, makeCidr, parseCidr, splitList } from "../net/ip.ts";
import { UsageError } from "./usage.ts";

/** Node `index`'s CIDR for one `BASE/PREFIX/NODEPREFIX` item. Throws with the reason. */
export function nodeCidr(item: string, index: number): string {
  const m = /^(.+)\/([0-9]{1,3})\/([0-9]{1,3})$/.exec(item.trim());
  if (!m) throw new Error(`${JSON.stringify(item)}: expected BASE/PREFIX/NODEPREFIX`);
  const base = parseCidr(`${m[1]}/${m[2]}`);
  if (!base.ok) throw new Error(`${JSON.stringify(item)}: ${base.reason}`);
  const { family, value, prefix } = base.cidr;
  const nodePrefix = Number(m[3]);
  if (nodePrefix < prefix || nodePrefix > familyBits(family)) {
    throw new Error(
      `${JSON.stringify(item)}: node prefix /${nodePrefix} must be /${prefix}-/${
        familyBits(family)
      }`,
    );
  }
  const count = 1n << BigInt(nodePrefix - prefix);
  if (!Number.isSafeInteger(index) || index < 0 || BigInt(index) >= count) {
    throw new Error(`${JSON.stringify(item)}: node index ${index} is outside 0-${count - 1n}`);
  }
  const step = BigInt(familyBits(family) - nodePrefix);
  return formatCidr(makeCidr(family, value + (BigInt(index) << step), nodePrefix));
}

/** `cidr BASE/PREFIX/NODEPREFIX[,...] INDEX` */
export function cidrCommand(args: string[]): Promise<number> {
  if (args.length !== 2) {
    throw new UsageError(
      args.length < 2
        ? `expected BASE/PREFIX/NODEPREFIX[,...] and INDEX, got ${args.length} argument(s)`
        : `unexpected argument ${JSON.stringify(args[2])}`,
    );
  }
  if (!/^[0-9]+$/.test(args[1])) {
    throw new UsageError(
      `INDEX: expected a whole number 0 or more, not ${JSON.stringify(args[1])}`,
    );
  }
  try {
    console.log(splitList(args[0]).map((item) => nodeCidr(item, Number(args[1]))).join(","));
    return Promise.resolve(0);
  } catch (e) {
    console.error(`xcluster-cni cidr: ${(e as Error).message}`);
    return Promise.resolve(1);
  }
}
