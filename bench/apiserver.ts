/** placeholder */
import type { Figure } from "./lib.ts";
/** API server figures. */
export function apiServerFigures(_n: number, _writes: number): Promise<Figure[]> {
  return Promise.resolve([]);
}
