import { EntityManager } from 'typeorm';
import { DeadLetterHeaders, MaxDeadLetterBytes } from '@tollgate/contracts';
import { OutgoingMessage } from '@tollgate/messaging';

/**
 * SQL for dead letters: request-completed messages metering refused. They are recorded in the transaction that
 * moves the partition's stored offset past them, sent to the dead-letter topic by DeadLetterRelay after that
 * commit, and re-driven by `npm run dlq -- replay`.
 */
export interface NewDeadLetter {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  /** Printable (see `printable` in @tollgate/contracts). */
  reason: string;
}

export interface DeadLetter extends NewDeadLetter {
  id: string;
  createdAt: Date;
  sentAt: Date | null;
  replayedAt: Date | null;
  replays: number;
}

interface DeadLetterRow {
  id: string;
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  reason: string;
  created_at: Date;
  sent_at: Date | null;
  replayed_at: Date | null;
  replays: number;
}

const columns = `id, topic, partition, "offset", key, value, reason, created_at, sent_at, replayed_at, replays`;

function toDeadLetter(r: DeadLetterRow): DeadLetter {
  return {
    id: String(r.id),
    topic: r.topic,
    partition: r.partition,
    offset: String(r.offset),
    key: r.key,
    value: r.value,
    reason: r.reason,
    createdAt: r.created_at,
    sentAt: r.sent_at,
    replayedAt: r.replayed_at,
    replays: r.replays,
  };
}

/** One statement for the batch's dead letters. Byte arrays go as bytea: a poison message is what text refuses. */
export async function recordDeadLetters(m: EntityManager, letters: NewDeadLetter[]): Promise<void> {
  const part = deadLettersPart(letters);
  if (part) await m.query(part.sql, part.params);
}

/** The insert of `letters`, as a part of a composed write (see ledger-store's writeAll). */
export function deadLettersPart(letters: NewDeadLetter[]): { sql: string; params: unknown[] } | null {
  if (letters.length === 0) return null;
  return {
    sql: `INSERT INTO dead_letters (topic, partition, "offset", key, value, reason)
          SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[], $5::bytea[], $6::text[])`,
    params: [
      letters.map((l) => l.topic),
      letters.map((l) => l.partition),
      letters.map((l) => l.offset),
      letters.map((l) => l.key),
      letters.map((l) => l.value),
      letters.map((l) => l.reason),
    ],
  };
}

/** Dead letters not yet on the dead-letter topic, oldest first. */
export async function unsentDeadLetters(m: EntityManager, limit: number): Promise<DeadLetter[]> {
  const rows: DeadLetterRow[] = await m.query(`SELECT ${columns} FROM dead_letters WHERE sent_at IS NULL ORDER BY id LIMIT $1`, [limit]);
  return rows.map(toDeadLetter);
}

export async function markSent(m: EntityManager, ids: string[]): Promise<void> {
  await m.query(`UPDATE dead_letters SET sent_at = now() WHERE id = ANY($1::bigint[])`, [ids]);
}

export interface DeadLetterSelection {
  /** Every dead letter not replayed yet. */
  pending?: boolean;
  ids?: string[];
  /** Offsets on the original topic, optionally of one partition. */
  offsets?: string[];
  partition?: number;
}

/** Dead letters matching every given criterion, oldest first. */
export async function findDeadLetters(m: EntityManager, s: DeadLetterSelection): Promise<DeadLetter[]> {
  const rows: DeadLetterRow[] = await m.query(
    `SELECT ${columns} FROM dead_letters
      WHERE ($1::boolean IS NOT TRUE OR replayed_at IS NULL)
        AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))
        AND ($3::bigint[] IS NULL OR "offset" = ANY($3::bigint[]))
        AND ($4::int IS NULL OR partition = $4)
      ORDER BY id`,
    [s.pending ?? false, s.ids ?? null, s.offsets ?? null, s.partition ?? null],
  );
  return rows.map(toDeadLetter);
}

export async function markReplayed(m: EntityManager, ids: string[]): Promise<void> {
  await m.query(`UPDATE dead_letters SET replayed_at = now(), replays = replays + 1 WHERE id = ANY($1::bigint[])`, [ids]);
}

/** The dead letter as it goes on the dead-letter topic: the original key and bytes, the reason and origin in headers. */
/**
 * The message for the dead-letter topic. An original too large for a Kafka message (a 1 MB poison event) is cut to
 * MaxDeadLetterBytes, with its length in a header: sent whole, the broker would refuse it on every retry, and with
 * it every record coalesced into the same send (the ledger outbox shares metering's publisher).
 */
export function deadLetterMessage(d: DeadLetter): OutgoingMessage {
  const value = d.value ?? Buffer.alloc(0);
  const key = (d.key?.toString('utf8') ?? '').slice(0, 1024);
  return {
    key,
    value: value.length > MaxDeadLetterBytes ? value.subarray(0, MaxDeadLetterBytes) : value,
    headers: {
      ...(value.length > MaxDeadLetterBytes ? { [DeadLetterHeaders.TruncatedFrom]: String(value.length) } : {}),
      [DeadLetterHeaders.Reason]: d.reason.slice(0, 2000),
      [DeadLetterHeaders.OriginalTopic]: d.topic,
      [DeadLetterHeaders.OriginalPartition]: String(d.partition),
      [DeadLetterHeaders.OriginalOffset]: d.offset,
      [DeadLetterHeaders.Id]: d.id,
    },
  };
}
