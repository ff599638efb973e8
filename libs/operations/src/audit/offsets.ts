import { Messaging } from '@tollgate/messaging';
import { Sql } from './sql';
import { Violation } from './violation';

/** What the `offsets` check can and cannot prove with this schema; printed in the report's header. */
export const OffsetsScope = [
  'offsets: usage_records does not store the topic, partition or offset an event came from, so from the database',
  'alone the audit cannot prove that every offset below a partition\'s stored next_offset produced a usage row.',
  'It checks what the schema records: every dead letter\'s offset is below its partition\'s stored next_offset',
  '(the transaction that recorded it moved the offset past it) and no offset is dead-lettered twice; with',
  'KAFKA_BROKERS set, also that every consumed topic and partition exists and no stored next_offset is beyond the',
  'partition\'s end offset (an offset never written cannot have been consumed). With --read-topic it also reads each',
  'consumed partition back from Kafka up to its stored next_offset and requires every message there to be a dead',
  'letter at its offset or an event whose (org_id, event_id) has a usage row (metered, or a copy of one that was); offsets',
  'retention already removed (below the log\'s start, printed as a note) cannot be read.',
];

/**
 * `offsets`: database-wide (consumer offsets are per partition, not per org), or one consumer group's (`group`:
 * its stored offsets, and the dead letters of the topics it consumes). `broker` is null when KAFKA_BROKERS is not
 * set: then only the database side is checked, and the report says so.
 */
export async function checkOffsets(
  sql: Sql,
  broker: Pick<Messaging, 'topics' | 'endOffsets' | 'readTopic'> | null,
  group: string | null,
  readBack = false,
): Promise<{ violations: Violation[]; notes: string[] }> {
  const violations: Violation[] = [];
  const notes: string[] = [];
  const v = (subject: string, expected: string, found: string) => violations.push({ check: 'offsets', org: null, subject, expected, found });

  const letters = await sql<{ id: string; topic: string; partition: number; offset: string; stored: string | null }>(
    `SELECT d.id, d.topic, d.partition, d."offset",
            (SELECT MAX(c.next_offset) FROM consumer_offsets c WHERE c.topic = d.topic AND c.partition = d.partition AND ($1::text IS NULL OR c.group_id = $1)) AS stored
       FROM dead_letters d
      WHERE ($1::text IS NULL OR EXISTS (SELECT 1 FROM consumer_offsets c WHERE c.group_id = $1 AND c.topic = d.topic))
        AND NOT EXISTS (SELECT 1 FROM consumer_offsets c
                         WHERE c.topic = d.topic AND c.partition = d.partition AND c.next_offset > d."offset" AND ($1::text IS NULL OR c.group_id = $1))
      ORDER BY d.id`,
    [group],
  );
  for (const d of letters) {
    v(`dead letter ${d.id} (${d.topic}[${d.partition}]@${d.offset})`, `a stored next_offset above ${d.offset}`, d.stored === null ? 'no stored offset for the partition' : `next_offset ${d.stored}`);
  }
  const twice = await sql<{ topic: string; partition: number; offset: string; ids: string[] }>(
    `SELECT topic, partition, "offset", array_agg(id::text ORDER BY id) AS ids FROM dead_letters d
      WHERE ($1::text IS NULL OR EXISTS (SELECT 1 FROM consumer_offsets c WHERE c.group_id = $1 AND c.topic = d.topic))
      GROUP BY 1, 2, 3 HAVING COUNT(*) > 1 ORDER BY 1, 2, 3`,
    [group],
  );
  for (const d of twice) v(`${d.topic}[${d.partition}]@${d.offset}`, 'dead-lettered at most once', `dead letters ${d.ids.join(', ')}`);

  if (!broker) {
    notes.push('offsets: KAFKA_BROKERS is not set: stored offsets were not compared with the topics\' end offsets');
    return { violations, notes };
  }
  const stored = await sql<{ group_id: string; topic: string; partition: number; next_offset: string }>(
    `SELECT group_id, topic, partition, next_offset FROM consumer_offsets WHERE $1::text IS NULL OR group_id = $1 ORDER BY topic, partition, group_id`,
    [group],
  );
  const existing = new Set(await broker.topics());
  const ends = new Map<string, Map<number, bigint>>();
  for (const topic of new Set(stored.map((s) => s.topic))) if (existing.has(topic)) ends.set(topic, await broker.endOffsets(topic));
  for (const s of stored) {
    const subject = `${s.topic}[${s.partition}] (group ${s.group_id})`;
    const topicEnds = ends.get(s.topic);
    if (!topicEnds) {
      v(subject, 'a topic the cluster has', `no topic ${s.topic} (next_offset ${s.next_offset})`);
      continue;
    }
    const end = topicEnds.get(s.partition);
    if (end === undefined) v(subject, `one of the topic's ${topicEnds.size} partitions`, `no partition ${s.partition} (next_offset ${s.next_offset})`);
    else if (BigInt(s.next_offset) > end) v(subject, `next_offset at most the end offset ${end}`, `next_offset ${s.next_offset}`);
  }
  if (!readBack) return { violations, notes };
  for (const rows of groupBy(stored.filter((s) => ends.has(s.topic)), (s) => `${s.group_id}\u0000${s.topic}`).values()) {
    const { group_id: groupId, topic } = rows[0]!;
    const until = new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
    const read = await broker.readTopic(topic, until, (partition, messages) => checkMessages(sql, topic, partition, messages, v), { groupPrefix: 'tollgate-audit' });
    for (const [partition, r] of read) {
      const subject = `${topic}[${partition}] (group ${groupId})`;
      if (r.from > 0n) notes.push(`offsets: ${subject}: offsets below ${r.from} were removed by retention and not read back`);
      if (!r.complete) v(subject, `every message below next_offset ${until.get(partition)} read back`, 'reading stopped early: no message came for 15 s (a gap at the end of the log?)');
    }
  }
  return { violations, notes };
}

/** Each message read back below a stored offset: a dead letter at its offset, or an event with a usage row. */
async function checkMessages(
  sql: Sql,
  topic: string,
  partition: number,
  messages: Array<{ offset: string; value: Buffer | null }>,
  v: (subject: string, expected: string, found: string) => void,
): Promise<void> {
  const events = messages.map((m) => eventOf(m.value));
  const known = events.filter((e): e is { orgId: string; eventId: string } => e !== null);
  const letters = await sql<{ offset: string }>(
    `SELECT "offset" FROM dead_letters WHERE topic = $1 AND partition = $2 AND "offset" = ANY($3::bigint[])`,
    [topic, partition, messages.map((m) => m.offset)],
  );
  // An event is its id within its org (usage_records is unique on (org_id, event_id)).
  const metered = await sql<{ org_id: string; event_id: string }>(
    `SELECT org_id, event_id FROM usage_records WHERE (org_id, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [known.map((e) => e.orgId), known.map((e) => e.eventId)],
  );
  const dead = new Set(letters.map((l) => String(l.offset)));
  const seen = new Set(metered.map((u) => `${u.org_id}\u0000${u.event_id}`));
  messages.forEach((m, i) => {
    const e = events[i] ?? null;
    if (dead.has(m.offset) || (e !== null && seen.has(`${e.orgId}\u0000${e.eventId}`))) return;
    v(
      `${topic}[${partition}]@${m.offset}`,
      'a usage row for its event or a dead letter at this offset',
      e === null ? 'no org_id and event_id in it, and no dead letter' : `event ${e.eventId} of ${e.orgId}: neither`,
    );
  });
}

function eventOf(value: Buffer | null): { orgId: string; eventId: string } | null {
  try {
    const parsed: unknown = JSON.parse(value?.toString('utf8') ?? '');
    if (!parsed || typeof parsed !== 'object') return null;
    const { org_id: orgId, event_id: eventId } = parsed as { org_id?: unknown; event_id?: unknown };
    return typeof orgId === 'string' && typeof eventId === 'string' ? { orgId, eventId } : null;
  } catch {
    return null;
  }
}

function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const t of items) out.set(key(t), [...(out.get(key(t)) ?? []), t]);
  return out;
}
