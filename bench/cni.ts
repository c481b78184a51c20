/** placeholder */
import type { Figure } from "./lib.ts";
/** CNI figures. */
export function cniFigures(_pods: number): Promise<Figure[]> {
  return Promise.resolve([]);
}
