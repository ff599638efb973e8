import { backOff } from 'exponential-backoff';
import { DeadLetterFile, deadLetterNotice, describeDeadLetter, LocalDeadLetter } from './dead-letter-file';
import { MessageRefusedError, OutgoingMessage, Publisher, recordBatchBytesBound } from './messaging';
import { SpoolBatch, SpoolLog } from './spool-log';

/** A spooled message and its position in the batch being drained. */
interface Positioned {
  at: number;
  m: OutgoingMessage;
}

/** Why a message was dead-lettered, for the metric: larger than the broker takes, or refused as a record. */
export type DeadLetterCause = 'too_large' | 'invalid_record';

export interface SpoolingPublisherOptions {
  /** How long publish() waits for the broker's ack before the messages go to the spool instead (default 1500 ms). */
  deadlineMs?: number;
  /** First and longest pause between the drainer's attempts while the broker refuses (default 250 ms, 5 s). */
  retryMs?: number;
  maxRetryMs?: number;
  log?: (level: 'error' | 'warn' | 'info', message: string, extra?: Record<string, unknown>) => void;
  /**
   * Makes a broker publisher: in the background, retried, while there is none (the broker was unreachable at
   * start), and again when the current one keeps failing (5 drain attempts in a row, at most every 10 s). After a
   * broker dies uncleanly an idempotent producer can be refused for good (OutOfOrderSequence on a sequence the
   * broker lost); a new producer gets a new producer id. Its copies of what the old one may have written are
   * duplicates, deduped by event_id.
   */
  connect?: () => Promise<Publisher>;
  /**
   * The largest record batch the broker takes (KAFKA_MAX_MESSAGE_BYTES, default 1 MiB): a message larger than it
   * is dead-lettered without being sent, and the drainer's sends stay within it.
   */
  maxMessageBytes?: number;
  /** Called once per message dead-lettered (after it is recorded), for the metric. */
  onDeadLetter?: (letter: LocalDeadLetter, cause: DeadLetterCause) => void;
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
 *
 * Faults that pass are retried; faults that don't are not. A message the broker can never take (larger than
 * `maxMessageBytes`, or refused by the broker for its size or content: MessageRefusedError) would be retried
 * forever with every later message queued behind it. It is dead-lettered instead: recorded durably in
 * DeadLetterFile before it leaves the queue, counted (onDeadLetter), and a small notice is published in its place
 * so metering lists it (npm run dlq, the console); a notice that can't be published yet stays in the file and is
 * published later, never ahead of the queue. A send of several messages that the broker refuses is sent again one
 * message at a time, so only the guilty one is dead-lettered.
 *
 * Without a broker at start the publisher is created without one: events go straight to the spool and a broker
 * publisher is made in the background (`connect`, retried), after which the spool drains.
 */
export class SpoolingPublisher implements Publisher {
  private readonly deadlineMs: number;
  private draining: Promise<void> | null = null;
  private closed = false;
  private wake: (() => void) | null = null;
  private outageSince: number | null = null;
  private spooledTotal = 0;

  private lastReconnect = 0;
  private readonly maxMessageBytes: number;
  private inner: Publisher | null = null;
  private connecting = false;
  private noticing: Promise<void> | null = null;
  /** The batch being drained (its first record) and the positions in it a broker acknowledged (see send). */
  private progress: { start: string; delivered: Set<number> } | null = null;

  /**
   * `inner` is the broker publisher, or its creation under way (the gateway does not wait for an unreachable
   * broker); should that fail, `connect` is retried in the background.
   */
  constructor(
    inner: Publisher | Promise<Publisher>,
    readonly spool: SpoolLog,
    readonly deadLetters: DeadLetterFile,
    private readonly opts: SpoolingPublisherOptions = {},
  ) {
    this.deadlineMs = opts.deadlineMs ?? 1500;
    this.maxMessageBytes = opts.maxMessageBytes ?? 1024 * 1024;
    if (inner instanceof Promise) this.keepConnecting(inner);
    else this.inner = inner;
  }

  /**
   * Starts the drainer: whatever an earlier run left in the spool is sent first (crash recovery), and notices of
   * dead letters an earlier run could not publish follow.
   */
  start(): void {
    this.kick();
    this.publishNotices();
  }

  /** True once a broker publisher exists (it may still be failing). */
  connected(): boolean {
    return this.inner !== null;
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (this.closed) throw new Error('publisher is closed');
    // A message the broker can never take is dead-lettered here, without a round trip; the rest go on.
    const fitting = messages.filter((m) => recordBatchBytesBound([m]) <= this.maxMessageBytes);
    if (fitting.length < messages.length) {
      for (const m of messages) if (!fitting.includes(m)) await this.deadLetter(topic, m, this.tooLarge(m), 'too_large');
      if (fitting.length === 0) return;
    }
    if (!this.inner || this.spool.holdsAny()) return this.toSpool(topic, fitting);
    const sent = this.inner.publish(topic, fitting);
    let timer: NodeJS.Timeout | undefined;
    const acked = await Promise.race([
      sent.then(() => true, () => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), this.deadlineMs))),
    ]);
    clearTimeout(timer);
    if (acked) return;
    // Not acknowledged in time, or refused. The send may still land (then the spooled copy is a duplicate). A
    // refusal for the messages' content is sorted out by the drainer, which sends them one by one.
    sent.catch(() => undefined);
    return this.toSpool(topic, fitting);
  }

  private async toSpool(topic: string, messages: OutgoingMessage[]): Promise<void> {
    // Rejects when full (SpoolFullError) or when the disk fails: the call is refused, nothing is handed out.
    await this.spool.append(topic, messages);
    this.spooledTotal += messages.length;
    if (this.outageSince === null) {
      this.outageSince = Date.now();
      this.opts.log?.(
        'warn',
        this.inner
          ? `spool: the broker did not acknowledge within ${this.deadlineMs} ms; events go to ${this.spool.dir} until it does`
          : `spool: no connection to the broker yet; events go to ${this.spool.dir} until there is one`,
      );
    }
    this.kick();
  }

  private tooLarge(m: OutgoingMessage): string {
    return `too large for the broker (${recordBatchBytesBound([m])} bytes as a record batch > ${this.maxMessageBytes}, KAFKA_MAX_MESSAGE_BYTES)`;
  }

  /**
   * Records `message` as a dead letter (durably, before the caller lets it go) and has its notice published. A
   * message already recorded (sent again after a crash or a failed batch) is not counted twice.
   */
  private async deadLetter(topic: string, message: OutgoingMessage, detail: string, cause: DeadLetterCause): Promise<void> {
    const letter = describeDeadLetter(topic, message, detail, new Date(), this.maxMessageBytes);
    if (await this.deadLetters.record(letter)) {
      this.opts.log?.('error', `spool: dead-lettered a message the broker can never take: ${letter.reason} (recorded in ${this.deadLetters.path})`, {
        topic,
        bytes: letter.bytes,
        sha256: letter.sha256,
      });
      this.opts.onDeadLetter?.(letter, cause);
    }
    this.publishNotices();
  }

  /**
   * Publishes the notices of the dead letters that have none yet, one at a time, in the background: each goes the
   * way any message does (the broker, or the spool behind what waits there). One that can't be published (the
   * spool full, the publisher closed) stays in the file for the next round: after the spool drained, or at start.
   */
  private publishNotices(): void {
    if (this.noticing || this.closed) return;
    this.noticing = (async () => {
      for (const letter of this.deadLetters.awaitingNotice()) {
        if (this.closed) return;
        try {
          await this.publish(letter.topic, [deadLetterNotice(letter)]);
          await this.deadLetters.noticed(letter.id);
        } catch (e) {
          this.opts.log?.('warn', `spool: the notice of dead letter ${letter.id} is not published yet (${(e as Error).message}); it stays in ${this.deadLetters.path}`);
          return;
        }
      }
    })().finally(() => (this.noticing = null));
  }

  /**
   * Takes `pending` as the broker publisher once it resolves; until one exists, tries `connect` again with a
   * growing pause (up to maxRetryMs), saying once that the broker is unreachable and events are being spooled.
   */
  private keepConnecting(pending?: Promise<Publisher>): void {
    if (this.connecting || this.closed) return;
    this.connecting = true;
    let next = pending;
    let failures = 0;
    void backOff(
      async () => {
        if (this.closed || this.inner) return;
        const attempt = next ?? this.opts.connect?.();
        next = undefined;
        if (!attempt) return;
        const fresh = await attempt;
        if (this.closed) {
          await fresh.close().catch(() => undefined);
          return;
        }
        this.inner = fresh;
        if (failures > 0) this.opts.log?.('warn', `spool: connected to the broker; sending the ${this.spool.bytes()} bytes spooled meanwhile`);
        this.kick();
      },
      {
        // Until it succeeds or the publisher closes: retryMs, doubling to maxRetryMs, between attempts.
        numOfAttempts: Number.POSITIVE_INFINITY,
        startingDelay: this.opts.retryMs ?? 250,
        timeMultiple: 2,
        maxDelay: this.opts.maxRetryMs ?? 5000,
        retry: (e: unknown) => {
          if (failures++ % 20 === 0) {
            this.opts.log?.('error', `spool: the broker is unreachable (${(e as Error).message}); paid calls go on, their events are spooled to ${this.spool.dir} until it answers`);
          }
          return !this.closed;
        },
      },
    )
      .catch(() => undefined)
      .finally(() => (this.connecting = false));
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
      if (!this.inner) {
        // keepConnecting kicks the drainer once a publisher exists.
        this.keepConnecting();
        await this.sleep(maxPause);
        continue;
      }
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
        this.progress = null;
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
    if (!this.spool.holdsAny()) this.publishNotices();
  }

  private async reconnect(): Promise<void> {
    if (!this.opts.connect || Date.now() - this.lastReconnect < 10_000) return;
    this.lastReconnect = Date.now();
    try {
      const fresh = await this.opts.connect();
      const old = this.inner;
      this.inner = fresh;
      void old?.close().catch(() => undefined);
      this.opts.log?.('warn', 'spool: sends kept failing; a new broker publisher takes over');
    } catch (e) {
      this.opts.log?.('warn', `spool: no new broker publisher yet (${(e as Error).message})`);
    }
  }

  /**
   * Consecutive records of one topic go in one send, in spool order, each send within maxMessageBytes. A message
   * larger than that is dead-lettered unsent (a spool written before the limit was lowered). What a broker
   * acknowledged of this batch on an earlier attempt is not sent again (see sendRun).
   */
  private async send(batch: SpoolBatch): Promise<void> {
    const first = batch.messages[0];
    // The batch starts at the oldest record not yet acknowledged, so the same start is the same batch (it may have
    // grown at its end since); its records keep their positions, which is what `delivered` remembers.
    const start = `${batch.segment}\0${first ? String(first.message.value) : ''}`;
    if (this.progress?.start !== start) this.progress = { start, delivered: new Set() };
    let i = 0;
    while (i < batch.messages.length) {
      const topic = batch.messages[i]!.topic;
      let run: Positioned[] = [];
      let bytes = 61;
      while (i < batch.messages.length && batch.messages[i]!.topic === topic) {
        const at = i;
        const m = batch.messages[i++]!.message;
        const size = recordBatchBytesBound([m]) - 61;
        if (size + 61 > this.maxMessageBytes) {
          await this.sendRun(topic, run);
          run = [];
          bytes = 61;
          if (!this.progress.delivered.has(at)) await this.deadLetter(topic, m, this.tooLarge(m), 'too_large');
          this.progress.delivered.add(at);
          continue;
        }
        if (bytes + size > this.maxMessageBytes) {
          await this.sendRun(topic, run);
          run = [];
          bytes = 61;
        }
        run.push({ at, m });
        bytes += size;
      }
      await this.sendRun(topic, run);
    }
  }

  /**
   * Sends what of `run` was not delivered yet. When the broker refuses it for its content, its messages go one by
   * one, and each one the broker refuses alone is dead-lettered. Any other failure (a leader away: a broker died)
   * is retried per partition at once, when the publisher knows the partitions: the partitions whose leaders are
   * alive are written now, and only the rest waits for the batch's next attempt. (Before, the whole batch was sent
   * again on every attempt: a broker's death wrote the live partitions' events 4-5 times, each copy deduped by
   * event_id but carried by the broker, the consumer and the disk.) Delivered positions are kept in memory only: a
   * crash sends the batch again whole, as before (event_id dedupes).
   */
  private async sendRun(topic: string, run: Positioned[]): Promise<void> {
    const delivered = this.progress!.delivered;
    const left = run.filter((p) => !delivered.has(p.at));
    if (left.length === 0) return;
    try {
      await this.inner!.publish(topic, left.map((p) => p.m));
      for (const p of left) delivered.add(p.at);
    } catch (e) {
      if (e instanceof MessageRefusedError) {
        if (left.length > 1) {
          for (const p of left) await this.sendRun(topic, [p]);
          return;
        }
        const cause: DeadLetterCause = e.type === 'INVALID_RECORD' ? 'invalid_record' : 'too_large';
        await this.deadLetter(topic, left[0]!.m, e.message, cause);
        delivered.add(left[0]!.at);
        return;
      }
      const parts = this.byPartition(topic, left);
      if (parts.length <= 1) throw e;
      let failed: unknown = null;
      for (const part of parts) await this.sendRun(topic, part).catch((err: unknown) => (failed ??= err));
      if (failed) throw failed;
    }
  }

  /** `run` split by partition, each part in spool order; one part when the partitions are unknown. */
  private byPartition(topic: string, run: Positioned[]): Positioned[][] {
    const parts = new Map<number, Positioned[]>();
    for (const p of run) {
      const partition = this.inner?.partitionOf?.(topic, p.m.key);
      if (partition === undefined) return [run];
      const part = parts.get(partition) ?? [];
      part.push(p);
      parts.set(partition, part);
    }
    return [...parts.values()];
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
    await this.noticing;
    await this.spool.close();
    await this.deadLetters.close();
  }
}
