/**
 * Waiting for the demo cluster: poll a check until it stops throwing, with a deadline.
 *
 * @module
 */

import { pollUntil } from "../poll.ts";
import { checkInterrupted } from "./topology.ts";

/**
 * Retries `check` every 100 ms until it resolves; after `ms` throws naming `what` and the
 * check's last error; at once when the demo is interrupted.
 */
export async function pollUntilDone(
  check: () => Promise<void>,
  ms: number,
  what: string,
): Promise<void> {
  let last: unknown;
  await pollUntil(async () => {
    checkInterrupted();
    try {
      await check();
      return true;
    } catch (e) {
      checkInterrupted();
      last = e;
      return false;
    }
  }, {
    timeoutMs: ms,
    intervalMs: 100,
    message: () => `waiting for ${what}: ${(last as Error | undefined)?.message}`,
  });
}
