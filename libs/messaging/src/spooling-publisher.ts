import { OutgoingMessage, Publisher } from './messaging';
import { SpoolBatch, SpoolLog } from './spool-log';

export interface SpoolingPublisherOptions {
  /** How long publish() waits for the broker's ack before the messages go to the spool instead (default 1500 ms). */
  deadlineMs?: number;
  /** First and longest pause between the drainer's attempts while the broker refuses (default 250 ms, 5 s). */
  retryMs?: number;
  maxRetryMs?: number;
  log?: (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) => void;
  /**
   * A new broker publisher, taken when the current one keeps failing (5 drain attempts in a row, at most every
   * 10 s). After a broker dies uncleanly an idempotent producer can be refused for good (OutOfOrderSequence on a
   * sequence the broker lost); a new producer gets a new producer id. Its copies of what the old one may have
   * written are duplicates, deduped by event_id.
   */
  reconnect?: () => Promise<Publisher>;
}

/**
 * A Publisher that survives a broker outage: publish() resolves once the broker acknowledged the messages or, when
 * it can't within `deadlineMs`, once they are fsync'd to the spool (SpoolLog) on the gateway's disk. A background
 * drainer re-sends the spool in order once the broker answers again, and deletes what it acknowledged. While the
 * spool holds anything, new messages are appended behind it (not sent around it), so the broker receives them in
 * the order they were published. When the spool is full, publish() rejects: the caller answers 503 rather than
 * hand out an unrecorded call.
 *
 * Delivery is at-least-once: a send that missed the deadline may still reach the broker, and the spooled copy is
 * sent again; a crash after a drained batch's ack and before its deletion sends it again. Both carry the same
 * event_id, which metering dedupes. The crash windows of the file itself are in spool-log.ts.
 */
export class SpoolingPublisher implements Publisher {
  private readonly deadlineMs: number;
  private draining: Promise<void> | null = null;
  private closed = false;
  private wake: (() => void) | null = null;
  private outageSince: number | null = null;
  private spooledTotal = 0;

  private lastReconnect = 0;

  constructor(
    private inner: Publisher,
    readonly spool: SpoolLog,
    private readonly opts: SpoolingPublisherOptions = {},
  ) {
    this.deadlineMs = opts.deadlineMs ?? 1500;
  }

  /** Starts the drainer: whatever an earlier run left in the spool is sent first (crash recovery). */
  start(): void {
    this.kick();
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) throw new Error('publisher is closed');
    if (this.spool.holdsAny()) return this.toSpool(topic, messages);
    const sent = this.inner.publish(topic, messages);
    let timer: NodeJS.Timeout | undefined;
    const acked = await Promise.race([
      sent.then(() => true, () => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.deadlineMs))),
    ]);
    clearTimeout(timer);
    if (acked) return;
    // Not acknowledged in time, or refused. The send may still land (then the spooled copy is a duplicate).
    sent.catch(() => undefined);
    return this.toSpool(topic, messages);
  }

  private async toSpool(topic: string, messages: OutgoingMessage[]): Promise<void> {
    // Rejects when full (SpoolFullError) or when the disk fails: the call is refused, nothing is handed out.
    await this.spool.append(topic, messages);
    this.spooledTotal += messages.length;
    if (this.outageSince === null) {
      this.outageSince = Date.now();
      this.opts.log?.('warn', `spool: the broker did not acknowledge within ${this.deadlineMs} ms; events go to ${this.spool.dir} until it does`);
    }
    this.kick();
  }

  /** Events appended to the spool by this process (metrics). */
  spooled(): number {
    return this.spooledTotal;
  }

  /** True while a publish can still be taken (the broker answers, or the spool has room): for readiness. */
  accepting(maxFill = 0.9): boolean {
    return !this.closed && this.spool.bytes() < maxFill * this.spool.maxBytes;
  }

  private kick(): void {
    if (this.wake) {
      const w = this.wake;
      this.wake = null;
      w();
    }
    if (this.draining || this.closed) return;
    this.draining = this.drain().finally(() => {
      this.draining = null;
      // An append that landed after the drainer found the spool empty, before it let go: drain it now.
      if (this.spool.holdsAny()) this.kick();
    });
  }

  private async drain(): Promise<void> {
    let pause = this.opts.retryMs ?? 250;
    const maxPause = this.opts.maxRetryMs ?? 5000;
    let failures = 0;
    while (!this.closed) {
      let batch: SpoolBatch | null;
      try {
        batch = await this.spool.next();
      } catch (e) {
        this.opts.log?.('error', `spool: cannot read the spool: ${(e as Error).message}`);
        await this.sleep(maxPause);
        continue;
      }
      if (!batch) {
        if (this.spool.holdsAny()) {
          // An append is being written: it will kick us; wait briefly rather than spin.
          await this.sleep(5);
          continue;
        }
        break;
      }
      try {
        await this.send(batch);
        // Crash here (acked, not yet deleted): sent again at start; event_id dedupes.
        await this.spool.acknowledge(batch);
        pause = this.opts.retryMs ?? 250;
        failures = 0;
      } catch (e) {
        if (failures++ % 20 === 0) this.opts.log?.('warn', `spool: the broker still refuses (${(e as Error).message}); ${this.spool.bytes()} bytes wait`);
        if (failures >= 5) await this.reconnect();
        await this.sleep(pause);
        pause = Math.min(maxPause, pause * 2);
      }
    }
    if (this.outageSince !== null && !this.spool.holdsAny()) {
      this.opts.log?.('warn', `spool: drained; ${this.spooledTotal} events spooled since start, the last outage began ${((Date.now() - this.outageSince) / 1000).toFixed(1)} s ago`);
      this.outageSince = null;
    }
  }

  private async reconnect(): Promise<void> {
    if (!this.opts.reconnect || Date.now() - this.lastReconnect < 10_000) return;
    this.lastReconnect = Date.now();
    try {
      const fresh = await this.opts.reconnect();
      const old = this.inner;
      this.inner = fresh;
      void old.close().catch(() => undefined);
      this.opts.log?.('warn', 'spool: sends kept failing; a new broker publisher takes over');
    } catch (e) {
      this.opts.log?.('warn', `spool: no new broker publisher yet (${(e as Error).message})`);
    }
  }

  /** Consecutive records of one topic go in one send, in spool order. */
  private async send(batch: SpoolBatch): Promise<void> {
    let i = 0;
    while (i < batch.messages.length) {
      const topic = batch.messages[i]!.topic;
      const run: OutgoingMessage[] = [];
      while (i < batch.messages.length && batch.messages[i]!.topic === topic) run.push(batch.messages[i++]!.message);
      await this.inner.publish(topic, run);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      t.unref();
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /**
   * Stops taking messages, gives the drainer up to `drainMs` to empty the spool (the broker permitting), then
   * closes the file. What is left stays on disk for the next start; the inner publisher is closed by its owner.
   */
  async close(drainMs = 3000): Promise<void> {
    const deadline = Date.now() + drainMs;
    while (this.spool.holdsAny() && Date.now() < deadline) {
      this.kick();
      await new Promise((r) => setTimeout(r, 50));
    }
    this.closed = true;
    if (this.wake) this.wake();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.draining, new Promise((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))))]);
    clearTimeout(timer);
    if (this.spool.holdsAny()) this.opts.log?.('warn', `spool: ${this.spool.bytes()} bytes of events stay in ${this.spool.dir} for the next start`);
    await this.spool.close();
  }
}
