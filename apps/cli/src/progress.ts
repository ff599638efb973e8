/**
 * How the operator programs (`tollgate replay`, `audit`, `dlq`) show progress.
 */

/** Reports how far a long command got: `update(done)` as often as you like, `finish()` once. */
export interface Progress {
  update(done: number, total?: number): void;
  finish(): void;
}

/**
 * A progress bar with rate and ETA on a terminal (redrawn at most 10 times a second), plain lines every 5 seconds
 * otherwise (a log file or CI), both on stderr so stdout stays the command's report.
 */
export function progress(label: string, unit: string, total: number, stream: NodeJS.WriteStream = process.stderr, now: () => number = Date.now): Progress {
  const started = now();
  const tty = Boolean(stream.isTTY);
  const every = tty ? 100 : 5000;
  let shown = -Infinity;
  let done = 0;
  const line = (): string => {
    const seconds = (now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 && total > done ? `ETA ${Math.ceil((total - done) / rate)}s` : '';
    const figures = `${done}/${total} ${unit}  ${Math.round(rate)} ${unit}/s  ${eta}`.trimEnd();
    if (!tty) return `${label}: ${figures}`;
    const width = 30;
    const filled = total === 0 ? width : Math.min(width, Math.round((done / total) * width));
    return `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${figures}`;
  };
  return {
    update(n, newTotal) {
      done = n;
      if (newTotal !== undefined) total = newTotal;
      if (now() - shown < every) return;
      shown = now();
      stream.write(tty ? `\r${line()}\x1b[K` : `${line()}\n`);
    },
    finish() {
      stream.write(tty ? `\r${line()}\x1b[K\n` : `${line()}\n`);
    },
  };
}
