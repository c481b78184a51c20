/**
 * Waiting for the demo cluster: poll a check until it stops throwing, with a deadline.
 *
 * @module
 */

import { checkInterrupted } from "./topology.ts";

/**
 * Retries `check` every 100 ms until it resolves; after `ms` throws naming `what`; at once
 * when the demo is interrupted.
 */
export async function pollUntilDone(
  check: () => Promise<void>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    checkInterrupted();
    try {
      await check();
      return;
    } catch (e) {
      checkInterrupted();
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}: ${(e as Error).message}`);
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
