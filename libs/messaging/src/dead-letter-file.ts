import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { DeadLetterHeaders, GatewayDeadLetterReasonPrefix, printable } from '@tollgate/contracts';
import { OutgoingMessage } from './messaging';

/** Bytes of a dead letter's original value kept (in the file and in its notice): enough to read its fields by eye. */
export const DeadLetterHeadBytes = 4096;

/** A message the broker can never take, as the spool records it. Bounded: a few KiB whatever the message's size. */
export interface LocalDeadLetter {
  /** The sha256 of topic, key and value: a message dead-lettered twice (a crash before its spool batch was acknowledged) is one letter. */
  id: string;
  at: string;
  topic: string;
  /** The message's key, cut to 1024 characters. */
  key: string;
  /** The value's size, and its sha256 (hex). */
  bytes: number;
  sha256: string;
  /** Printable, beginning with GatewayDeadLetterReasonPrefix. */
  reason: string;
  /** The value's top-level `*_id` fields when it is a JSON object (event_id, org_id, request_id, reservation_id...). */
  ids: Record<string, string | null>;
  /** Top-level array fields' lengths (e.g. entities). */
  counts: Record<string, number>;
  /** The value's first bytes (DeadLetterHeadBytes at most) as UTF-8. */
  head: string;
  /** True when the message was itself a dead-letter notice: it gets no notice of its own (recorded here only). */
  quiet?: boolean;
}

/**
 * Describes `message` as a dead letter for `detail` (e.g. "too large for the broker (...)"). Its head is at most
 * an eighth of `maxMessageBytes`, so that its notice fits where the message did not.
 */
export function describeDeadLetter(topic: string, message: OutgoingMessage, detail: string, now: Date, maxMessageBytes: number): LocalDeadLetter {
  const value = Buffer.isBuffer(message.value) ? message.value : Buffer.from(message.value, 'utf8');
  const sha256 = createHash('sha256').update(value).digest('hex');
  const id = createHash('sha256').update(topic).update('\0').update(message.key).update('\0').update(value).digest('hex');
  const ids: Record<string, string | null> = {};
  const counts: Record<string, number> = {};
  try {
    const parsed = JSON.parse(value.toString('utf8')) as unknown;
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
        if (k.endsWith('_id') && (v === null || typeof v === 'string')) ids[k.slice(0, 64)] = v === null ? null : v.slice(0, 256);
        else if (Array.isArray(v)) counts[k.slice(0, 64)] = v.length;
        if (Object.keys(ids).length + Object.keys(counts).length >= 16) break;
      }
    }
  } catch {
    // Not JSON: the head and the hash are all there is to say.
  }
  const named = ['event_id', 'request_id'].filter((k) => typeof ids[k] === 'string').map((k) => `${k} ${ids[k]}`);
  const reason = printable(`${GatewayDeadLetterReasonPrefix}${detail}${named.length > 0 ? `; ${named.join(', ')}` : ''}`, 1000);
  const letter: LocalDeadLetter = {
    id,
    at: now.toISOString(),
    topic,
    key: message.key.slice(0, 1024),
    bytes: value.length,
    sha256,
    reason,
    ids,
    counts,
    head: value.subarray(0, Math.min(DeadLetterHeadBytes, Math.floor(maxMessageBytes / 8))).toString('utf8'),
  };
  if (message.headers?.[DeadLetterHeaders.Reason] !== undefined) letter.quiet = true;
  return letter;
}

/**
 * The message published in a dead letter's place, to its topic under its key (so on its partition): its reason in
 * `x-dead-letter-reason`, the letter as JSON for value. Metering records it as a dead letter (npm run dlq, the
 * console). A few KiB: it always fits where the original did not.
 */
export function deadLetterNotice(letter: LocalDeadLetter): OutgoingMessage {
  const { quiet: _quiet, ...summary } = letter;
  return { key: letter.key, value: JSON.stringify(summary), headers: { [DeadLetterHeaders.Reason]: letter.reason } };
}

/**
 * The gateway's local record of the messages it dead-lettered: `dead-letters.jsonl` in the spool directory, one
 * JSON line per letter (appended and fdatasync'd before the message leaves the spool's queue), and a line
 * `{"noticed": id}` once the letter's notice is published (acknowledged by the broker, or in the spool). A letter
 * without one gets its notice sent again after a restart; a crash between a notice's publication and its line
 * sends it twice (two rows in metering's dead_letters, one event). A line torn by a crash is skipped.
 */
export class DeadLetterFile {
  private readonly recorded = new Set<string>();
  private readonly unnoticed = new Map<string, LocalDeadLetter>();
  private fh: fs.FileHandle | null = null;
  private lock: Promise<unknown> = Promise.resolve();

  private constructor(readonly path: string) {}

  static async open(dir: string): Promise<DeadLetterFile> {
    const file = new DeadLetterFile(join(dir, 'dead-letters.jsonl'));
    const text = await fs.readFile(file.path, 'utf8').catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return '';
      throw e;
    });
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let entry: Partial<LocalDeadLetter> & { noticed?: string };
      try {
        entry = JSON.parse(line) as typeof entry;
      } catch {
        continue;
      }
      if (typeof entry.noticed === 'string') file.unnoticed.delete(entry.noticed);
      else if (typeof entry.id === 'string') {
        file.recorded.add(entry.id);
        if (!entry.quiet) file.unnoticed.set(entry.id, entry as LocalDeadLetter);
      }
    }
    file.fh = await fs.open(file.path, 'a');
    return file;
  }

  /** How many letters the file holds. */
  size(): number {
    return this.recorded.size;
  }

  /** Letters whose notice is not published yet, oldest first. */
  awaitingNotice(): LocalDeadLetter[] {
    return [...this.unnoticed.values()];
  }

  /** Appends `letter` durably; false (nothing written) when a letter of the same message is already recorded. */
  async record(letter: LocalDeadLetter): Promise<boolean> {
    if (this.recorded.has(letter.id)) return false;
    await this.append(letter);
    this.recorded.add(letter.id);
    if (!letter.quiet) this.unnoticed.set(letter.id, letter);
    return true;
  }

  async noticed(id: string): Promise<void> {
    if (!this.unnoticed.has(id)) return;
    await this.append({ noticed: id });
    this.unnoticed.delete(id);
  }

  private append(entry: unknown): Promise<void> {
    const run = this.lock.then(async () => {
      if (!this.fh) throw new Error(`${this.path} is closed`);
      await this.fh.write(`${JSON.stringify(entry)}\n`);
      await this.fh.datasync();
    });
    this.lock = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    await this.lock;
    await this.fh?.close();
    this.fh = null;
  }
}
