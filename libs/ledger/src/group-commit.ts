import { IncomingBatch } from '@tollgate/messaging';
import { Batcher, Flush } from '@tollgate/platform';

/**
 * The consumer's group-commit schedule (see RequestCompletedConsumer.handle): the batches handed over in one turn of
 * the event loop go together, as `joinsGroup` admits them; at most two transactions are in flight, and what queues
 * while both are goes as soon as one settles, with no linger. `commit` writes one group in one transaction and
 * settles each batch of it (a batch's promise settles only once its transaction has committed or failed).
 */
export function groupCommit(commit: Flush<IncomingBatch, void>, groupMessages: number): Batcher<IncomingBatch> {
  return new Batcher<IncomingBatch>(commit, {
    linger: 'turn',
    concurrency: 2,
    admit: (batch, group, inFlight) => joinsGroup(batch, group, inFlight, groupMessages),
  });
}

/**
 * The group rule (see RequestCompletedConsumer.handle): whether `batch` may join `group` now, given the groups in
 * flight. A group is of one topic and takes a partition once (its offset is written once per transaction); a
 * partition in a transaction in flight waits for it (its offset row would make the second transaction wait anyway);
 * and a group takes batches while it stays within `groupMessages` messages: a heavier batch is passed over, keeps
 * its place, and heads a later group. The Batcher asks nothing of a group's first batch while nothing is in flight:
 * it always goes, however heavy, so the consumer never stalls.
 */
export function joinsGroup(
  batch: IncomingBatch,
  group: readonly IncomingBatch[],
  inFlight: ReadonlyArray<readonly IncomingBatch[]>,
  groupMessages: number,
): boolean {
  const samePartition = (b: IncomingBatch) => b.topic === batch.topic && b.partition === batch.partition;
  if (inFlight.some((g) => g.some(samePartition))) return false;
  if (group.length === 0) return true;
  if (group[0]!.topic !== batch.topic || group.some(samePartition)) return false;
  return group.reduce((n, b) => n + b.messages.length, 0) + batch.messages.length <= groupMessages;
}
