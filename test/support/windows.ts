/** Helpers for tests that fill rate-limit windows (aligned to the UTC clock) with many calls. */

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits, if needed, until at least `needMs` remain in the current UTC window of `periodSeconds` (then `marginMs`
 * into the next one), so a burst that must fit in one window does not straddle a boundary.
 */
export async function roomInWindow(periodSeconds: number, needMs: number, marginMs = 100): Promise<void> {
  const periodMs = periodSeconds * 1000;
  const left = periodMs - (Date.now() % periodMs);
  if (left < needMs) await sleep(left + marginMs);
}

/** `fn(i)` for i in 0..n-1, at most `concurrency` at a time; answers in index order. */
export async function pool<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const out = new Array<T>(n);
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return out;
}
