import { EntityManager } from 'typeorm';
import { prepared, WritePart } from './sql';

/** Each partition's stored offset: the fence, its lock, and its writes. */

/**
 * The fence against a consumer that lost its partition in a rebalance but still holds a batch of it: locks each
 * partition's stored-offset row until the transaction ends and returns the offsets. The owner of a partition and
 * a stale consumer of it queue on this row, and each sees what the other committed: messages below the offset
 * were metered by whoever stored it. A partition without a row gets one at 0 (nothing metered), so there is
 * always a row to queue on; it commits only with the batch that stores a real offset. Several partitions are
 * locked in partition order, so two consumers of one group (mid-rebalance) never wait for each other in a cycle.
 */
export async function lockOffsets(m: EntityManager, groupId: string, topic: string, partitions: readonly number[]): Promise<Map<number, bigint>> {
  const lock = prepared(
    `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[]) ORDER BY partition FOR UPDATE`,
  );
  let rows: Array<{ partition: number; next_offset: string }> = await m.query(lock, [groupId, topic, partitions]);
  if (rows.length < partitions.length) {
    await m.query(
      `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset) SELECT $1, $2, p, 0 FROM unnest($3::int[]) AS p ORDER BY p ON CONFLICT DO NOTHING`,
      [groupId, topic, partitions],
    );
    rows = await m.query(lock, [groupId, topic, partitions]);
  }
  return new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
}

/** Stores the next offset to consume of each partition; never moves one backwards. */
export function offsetsPart(groupId: string, topic: string, next: ReadonlyArray<{ partition: number; nextOffset: string }>): WritePart | null {
  if (next.length === 0) return null;
  return {
    sql: `INSERT INTO consumer_offsets (group_id, topic, partition, next_offset)
          SELECT $1, $2, u.partition, u.next_offset FROM unnest($3::int[], $4::bigint[]) AS u(partition, next_offset)
     ON CONFLICT (group_id, topic, partition)
     DO UPDATE SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = now()`,
    params: [groupId, topic, next.map((n) => n.partition), next.map((n) => n.nextOffset)],
  };
}

/**
 * Sets a partition's stored offset to `to` if it still is `from`: the one write that may move an offset back, for an
 * offset the log no longer holds (see BatchConsumerOptions.moveStoredOffset). Comparing with `from` under the row's
 * lock keeps it from undoing what another consumer stored since `from` was read.
 */
export async function moveStoredOffset(m: EntityManager, groupId: string, topic: string, partition: number, from: string, to: string): Promise<boolean> {
  const rows: unknown[] = await m.query(
    `WITH moved AS (UPDATE consumer_offsets SET next_offset = $5, updated_at = now()
                     WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $4 RETURNING partition)
     SELECT partition FROM moved`,
    [groupId, topic, partition, from, to],
  );
  return rows.length === 1;
}

export async function storedOffsets(m: EntityManager, groupId: string, topic: string, partitions: number[]): Promise<Map<number, string>> {
  const rows: Array<{ partition: number; next_offset: string }> = await m.query(
    `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2 AND partition = ANY($3::int[])`,
    [groupId, topic, partitions],
  );
  return new Map(rows.map((r) => [r.partition, String(r.next_offset)]));
}
