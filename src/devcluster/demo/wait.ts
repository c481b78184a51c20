/**
 * Waiting for the demo cluster: poll a check until it stops throwing, with a deadline.
 *
 * @module
 */

/** Retries `check` every 100 ms until it resolves; after `ms` throws naming `what`. */
export async function pollUntilDone(
  check: () => Promise<void>,
  ms: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (e) {
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${what}: ${(e as Error).message}`);
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
