import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { meterBatch } from '@tollgate/billing';
import { DeadLetterHeaders, EventValidation, MeteringConsumerGroup, parseRequestCompleted, printable, RequestCompletedV1 } from '@tollgate/contracts';
import { IncomingBatch, IncomingMessage } from '@tollgate/messaging';
import { databaseFailure } from '@tollgate/persistence';
import { asError, Batcher, creditsCharged, eventsMetered, ledgerAppendSeconds } from '@tollgate/platform';
import { deadLettersPart } from './dead-letter-store';
import { groupCommit } from './group-commit';
import { ProfileCatalog, pricingOf } from './profile-catalog';
import { loadMeterState, meteredBatchParts } from './metering-store';
import { lockOffsets, moveStoredOffset, offsetsPart, storedOffsets } from './offset-rows';
import { WritePart, writeAll } from './sql';
import { alreadyMetered, duplicateEvent, eventKey } from './usage-rows';

/** A message metering will not meter, the batch it came in, and why: it becomes a dead letter. */
interface Refusal {
  message: IncomingMessage;
  batch: IncomingBatch;
  reason: string;
}

/** What one transaction meters of one partition's batch: `messages`, then the offset moved to `nextOffset`. */
interface Slice {
  batch: IncomingBatch;
  messages: IncomingMessage[];
  nextOffset: string;
  /** Dead-letter every message for this reason instead of metering it. */
  refusedBecause?: string;
}

export interface RequestCompletedConsumerOptions {
  groupId?: string;
  clock?: () => number;
  /** Raw bytes to a validated event. Tests pass a laxer one to reach what only the database refuses. */
  parse?: (bytes: Buffer | null, nowMs: number) => EventValidation;
  /** A transaction takes more partitions' batches only while it has fewer messages than this (one batch always goes). */
  groupMessages?: number;
}

/**
 * message -> validated event -> domain -> one PostgreSQL transaction -> Kafka commit.
 *
 * The batches of several partitions handed over together share one transaction (a group commit, see handle).
 * Each transaction first locks the stored offset of each of its partitions (the fence: messages below it were
 * metered by another consumer, after a rebalance, and are dropped), loads what the events need (loadMeterState),
 * meters them with billing's pure meterBatch, then writes the usage rows, ledger entries, projections, re-access
 * windows, the dead letters of the messages it refused and each partition's new offset in one statement; the offset
 * never moves back here (only moveStoredOffset moves one back: to the start of a log that replaced the one it was
 * stored for).
 *
 * Poison: an event the validation lets through but PostgreSQL refuses (a data error, SQLSTATE class 22/23) would
 * fail its whole batch on every retry and stop the partition. So a group refused for its data is metered again
 * batch by batch, and a batch refused alone message by message, each in its own transaction with its own offset;
 * the message the database refuses becomes a dead letter with the database's reason, and the partition moves on. A database that is unreachable,
 * shutting down or deadlocked is not the data's fault: the error goes up, nothing is dead-lettered, and kafkajs
 * fetches the batch again from the stored offset.
 *
 * Crash windows (what happens if the process dies ...):
 * 1. before a transaction commits: nothing of it was written (entries, projections, usage, dead letters and the
 *    offsets of every partition in it roll back together); each batch is fetched again from its stored offset and
 *    metered once. Message by message, the messages committed so far stay committed with their offsets; the rest
 *    are fetched again.
 * 2. after the commit, before the Kafka offset commit: the database holds the new offset; on re-assignment the
 *    consumer seeks to it, and the fence drops anything below it that is fetched anyway. Were an event ever
 *    redelivered at another offset, `usage_records (org_id, event_id)` (unique) refuses the write that would meter
 *    it again (the whole transaction rolls back), and the batch is metered again with the probe, which drops it as
 *    a duplicate: no double charge.
 * 3. dead letters are only recorded here; DeadLetterRelay sends them after the commit (at-least-once, see there).
 *    No Kafka send happens while this transaction holds org rows.
 * 4. after the Kafka commit: nothing is pending.
 * Ledger entries reach tollgate.ledger.v1 through the outbox in the same transaction (see LedgerOutboxRelay).
 */
export class RequestCompletedConsumer {
  private readonly log = new Logger('metering');
  readonly groupId: string;
  private readonly clock: () => number;
  private readonly parse: NonNullable<RequestCompletedConsumerOptions['parse']>;
  /** The group commit (see handle): each flush is one transaction of several partitions' batches. */
  private readonly groups: Batcher<IncomingBatch>;
  /** Probe for events metered before (see fold): set by a duplicate, cleared by a probed batch without one. */
  private probing = false;

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    options: RequestCompletedConsumerOptions = {},
  ) {
    this.groupId = options.groupId ?? MeteringConsumerGroup;
    this.clock = options.clock ?? Date.now;
    this.parse = options.parse ?? parseRequestCompleted;
    const groupMessages = options.groupMessages ?? 2000;
    this.groups = groupCommit((group, settle) => this.commit(group, settle), groupMessages);
  }

  storedOffsets(topic: string, partitions: number[]): Promise<Map<number, string>> {
    return storedOffsets(this.ds.manager, this.groupId, topic, partitions);
  }

  /**
   * See BatchConsumerOptions.moveStoredOffset. Moved back to a replaced log's start, the fence lets its messages
   * through again, and `usage_records (org_id, event_id)` (unique) keeps an event metered before from being
   * charged twice: those come out as duplicates.
   */
  moveStoredOffset(topic: string, partition: number, from: string, to: string): Promise<boolean> {
    return moveStoredOffset(this.ds.manager, this.groupId, topic, partition, from, to);
  }

  /**
   * Group commit: the batches handed over in one turn of the event loop (kafkajs hands a fetch's partitions over
   * together, up to `partitionsConsumedConcurrently`), or while both transactions in flight are being written, go
   * together in the next transaction, each with its own offset, up to `groupMessages` messages. An idle consumer
   * adds no delay; a busy one pays the round trips and the commit once per fetch instead of once per partition.
   * Two transactions may be in flight, so that one is parsed and priced while PostgreSQL writes the other; a
   * partition is in at most one of them (its offset row would make the second wait anyway). The schedule is a
   * Batcher (`groupCommit`: linger one turn, two flushes in flight, `admit` the group rule `joinsGroup`); the promise
   * settles once the batch's transaction has committed (or failed), never before.
   */
  handle(batch: IncomingBatch): Promise<void> {
    return this.groups.add(batch);
  }

  /**
   * One group in one transaction. Refused for its data, each batch of the group is metered again alone, and a group
   * of one message by message; each batch is settled with its own outcome as soon as it has one, so a partition
   * whose batch went through is not held back by the others. Any other failure rejects the whole group.
   */
  private async commit(group: IncomingBatch[], settle: (index: number, outcome: void | Error) => void): Promise<void> {
    const stop = ledgerAppendSeconds.startTimer();
    try {
      await this.fold(group.map((batch) => ({ batch, messages: batch.messages, nextOffset: batch.nextOffset })));
    } catch (e) {
      if (databaseFailure(e) !== 'data') throw e;
      // One partition's poison must not hold the others back: each batch alone, and the refused one message by message.
      for (const [i, batch] of group.entries()) {
        await (group.length === 1 ? this.oneByOne(batch, e) : this.alone(batch)).then(
          () => settle(i, undefined),
          (failure: unknown) => settle(i, asError(failure)),
        );
      }
    } finally {
      stop();
    }
  }

  private async alone(batch: IncomingBatch): Promise<void> {
    try {
      await this.fold([{ batch, messages: batch.messages, nextOffset: batch.nextOffset }]);
    } catch (e) {
      if (databaseFailure(e) !== 'data') throw e;
      await this.oneByOne(batch, e);
    }
  }

  /** Each message in its own transaction; the one the database refuses for its data is dead-lettered. */
  private async oneByOne(batch: IncomingBatch, refusal: unknown): Promise<void> {
    this.log.warn({
      msg: 'batch refused by the database; metering it message by message',
      topic: batch.topic,
      partition: batch.partition,
      from: batch.messages[0]?.offset,
      to: batch.messages[batch.messages.length - 1]?.offset,
      error: printable((refusal as Error).message),
    });
    const last = batch.messages.length - 1;
    for (const [i, message] of batch.messages.entries()) {
      const nextOffset = i === last ? batch.nextOffset : (BigInt(message.offset) + 1n).toString();
      try {
        await this.fold([{ batch, messages: [message], nextOffset }]);
      } catch (e) {
        if (databaseFailure(e) !== 'data') throw e;
        await this.fold([{ batch, messages: [message], nextOffset, refusedBecause: printable(`refused by the database: ${(e as Error).message}`) }]);
      }
    }
  }

  /**
   * One transaction: each slice's messages metered (or, with `refusedBecause`, all dead-lettered for that reason)
   * and its partition's offset moved to its `nextOffset`.
   */
  private async fold(slices: Slice[]): Promise<void> {
    const now = this.clock();
    const topic = slices[0]!.batch.topic;
    const parsed = slices.flatMap((slice) =>
      slice.messages.map((message) => ({
        slice,
        message,
        validation: validationOf(message, slice.refusedBecause, () => this.parse(message.value, now)),
      })),
    );
    // Optimistic by default: no probe for events metered before, the unique (org_id, event_id) of usage_records
    // refuses the write if one was, and the batch is metered again with the probe. The fence already drops what a
    // restart fetches again, so duplicates are rare (a producer's retry, a replaced log); once one is seen, batches
    // are probed until a probed one finds none.
    // Crash window: the refused write rolled back whole (usage, entries, projections, offsets); nothing of it stays.
    const probe = this.probing;
    let result;
    try {
      result = await this.transact(slices, parsed, probe);
    } catch (e) {
      if (probe || !duplicateEvent(e)) throw e;
      this.probing = true;
      result = await this.transact(slices, parsed, true);
    }
    if (probe) this.probing = result.probedDuplicates > 0;
    for (const f of result.fenced) {
      this.log.warn({
        msg: 'skipped messages below the stored offset: another consumer metered them (rebalance)',
        topic,
        partition: f.partition,
        stored: f.stored.toString(),
        skipped: f.below,
      });
    }
    for (const r of result.refused) {
      this.log.warn({ msg: 'dead-lettered', partition: r.batch.partition, offset: r.message.offset, reason: printable(r.reason) });
    }
    eventsMetered.inc({ result: 'metered' }, result.metered);
    eventsMetered.inc({ result: 'duplicate' }, result.duplicates);
    eventsMetered.inc({ result: 'dead_lettered' }, result.refused.length);
    creditsCharged.inc(result.credits);
  }

  /** One transaction of `fold`: the fence, the metering of the live messages, and one composed write. */
  private transact(slices: Slice[], parsed: Array<{ slice: Slice; message: IncomingMessage; validation: EventValidation }>, probe: boolean) {
    const topic = slices[0]!.batch.topic;
    // PostgreSQL's default isolation, READ COMMITTED (named, it would cost a SET TRANSACTION round trip).
    return this.ds.transaction(async (m) => {
      const stored = await lockOffsets(m, this.groupId, topic, slices.map((s) => s.batch.partition));
      const live = parsed.filter((p) => BigInt(p.message.offset) >= stored.get(p.slice.batch.partition)!);
      const liveIn = new Map<Slice, number>();
      for (const p of live) liveIn.set(p.slice, (liveIn.get(p.slice) ?? 0) + 1);
      const fenced = slices.flatMap((s) => {
        const below = s.messages.length - (liveIn.get(s) ?? 0);
        return below > 0 ? [{ partition: s.batch.partition, below, stored: stored.get(s.batch.partition)! }] : [];
      });
      const refused: Refusal[] = [];
      const events: Array<{ event: RequestCompletedV1; message: IncomingMessage; batch: IncomingBatch }> = [];
      // An event is its id within its org: the same id from two orgs is two events, twice from one org a repeat.
      const inBatch = new Set<string>();
      let repeated = 0;
      for (const { slice, message, validation } of live) {
        if (!validation.ok) refused.push({ message, batch: slice.batch, reason: validation.reason });
        else if (inBatch.has(eventKey(validation.event.org_id, validation.event.event_id))) repeated++;
        else {
          inBatch.add(eventKey(validation.event.org_id, validation.event.event_id));
          events.push({ event: validation.event, message, batch: slice.batch });
        }
      }
      const writes: Array<WritePart | null> = [];
      const outcome = events.length > 0 ? await this.meter(m, events, refused, writes, probe) : { metered: 0, duplicates: 0, credits: 0 };
      // Everything the transaction changes, its dead letters and its offsets: one statement (one round trip), then commit.
      writes.push(
        deadLettersPart(
          refused.map(({ message, batch, reason }) => ({
            topic: batch.topic,
            partition: batch.partition,
            offset: message.offset,
            key: message.key,
            value: message.value,
            reason: printable(reason),
          })),
        ),
        // A partition all of whose messages lay below its stored offset keeps that offset (never moved back).
        offsetsPart(
          this.groupId,
          topic,
          slices.filter((s) => liveIn.has(s)).map((s) => ({ partition: s.batch.partition, nextOffset: s.nextOffset })),
        ),
      );
      await writeAll(m, writes);
      return { ...outcome, duplicates: outcome.duplicates + repeated, probedDuplicates: outcome.duplicates, refused, fenced };
    });
  }

  /**
   * The batch's events, deduplicated, metered by billing's meterBatch on the state loaded under their locks; the
   * writes go into `writes` for the caller to send as one statement. With `probe`, events metered before are looked
   * up first and dropped as duplicates; without, a duplicate makes the write fail (see fold).
   */
  private async meter(
    m: EntityManager,
    batchEvents: Array<{ event: RequestCompletedV1; message: IncomingMessage; batch: IncomingBatch }>,
    refused: Refusal[],
    writes: Array<WritePart | null>,
    probe: boolean,
  ): Promise<{ metered: number; duplicates: number; credits: number }> {
    const seen = probe ? await alreadyMetered(m, batchEvents.map((e) => ({ orgId: e.event.org_id, eventId: e.event.event_id }))) : new Set<string>();
    const events = seen.size === 0 ? batchEvents : batchEvents.filter((e) => !seen.has(eventKey(e.event.org_id, e.event.event_id)));
    if (events.length === 0) return { metered: 0, duplicates: seen.size, credits: 0 };
    const calls = events.map((e) => e.event);
    const metered = meterBatch(await loadMeterState(m, calls), calls, (event) => {
      const route = this.catalog.route(event.profile, event.method, event.route);
      return route ? pricingOf(route) : null;
    });
    for (const { index, reason } of metered.refused) refused.push({ message: events[index]!.message, batch: events[index]!.batch, reason });
    writes.push(...meteredBatchParts(metered));
    return { metered: metered.usage.length, duplicates: seen.size, credits: metered.credits };
  }
}

/**
 * What a message is to metering: dead-lettered for `refusedBecause` (its batch was refused alone), a dead letter
 * made upstream (a gateway's notice in place of an event the broker could never take: its reason is in the
 * `x-dead-letter-reason` header, see GatewayDeadLetterReasonPrefix), or an event to validate.
 */
function validationOf(message: IncomingMessage, refusedBecause: string | undefined, parse: () => EventValidation): EventValidation {
  if (refusedBecause !== undefined) return { ok: false, reason: refusedBecause };
  const upstream = message.headers[DeadLetterHeaders.Reason];
  if (upstream !== undefined) return { ok: false, reason: upstream };
  return parse();
}
