import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Account, applyCharges, LedgerEntryDraft } from '@tollgate/billing';
import { DeadLetterHeaders, EventValidation, MeteringConsumerGroup, parseRequestCompleted, printable, RequestCompletedV1 } from '@tollgate/contracts';
import { IncomingBatch, IncomingMessage } from '@tollgate/messaging';
import { databaseFailure } from '@tollgate/persistence';
import { creditsCharged, eventsMetered, ledgerAppendSeconds } from '@tollgate/platform';
import { deadLettersPart } from './dead-letter-store';
import { ProfileCatalog, pricingOf } from './profile-catalog';
import {
  accountsPart,
  alreadyMetered,
  closeReservationsPart,
  entriesParts,
  eventKey,
  givenBackReservations,
  leaseSpentPart,
  loadWindows,
  lockAccounts,
  lockHeldReservations,
  lockOffsets,
  moveStoredOffset,
  offsetsPart,
  pendingEntityHolds,
  ReservationRef,
  reservationKey,
  storedOffsets,
  usageCountPart,
  usagePart,
  UsageRow,
  windowsPart,
  withPendingCharges,
  WritePart,
  writeAll,
} from './ledger-store';
import { meterEvent } from './meter-event';

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

/** A partition's batch waiting for the next group commit. */
interface Waiting {
  batch: IncomingBatch;
  resolve: () => void;
  reject: (e: unknown) => void;
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
 * metered by another consumer, after a rebalance, and are dropped), then writes the usage rows, ledger entries,
 * projections, re-access windows, the dead letters of the messages it refused and each partition's new offset,
 * which never moves back here (only moveStoredOffset moves one back: to the start of a log that replaced the one
 * it was stored for).
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
 *    redelivered at another offset, `usage_records (org_id, event_id)` (unique) marks it as metered: no double
 *    charge.
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
  /** Batches handed over and not yet in a transaction, and the partitions of the transactions in flight (see handle). */
  private waiting: Waiting[] = [];
  private readonly writing = new Set<string>();
  private scheduled = false;
  private readonly groupMessages: number;

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    options: RequestCompletedConsumerOptions = {},
  ) {
    this.groupId = options.groupId ?? MeteringConsumerGroup;
    this.clock = options.clock ?? Date.now;
    this.parse = options.parse ?? parseRequestCompleted;
    this.groupMessages = options.groupMessages ?? 2000;
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
   * partition is in at most one of them (its offset row would make the second wait anyway).
   */
  handle(batch: IncomingBatch): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ batch, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.writing.size >= 2 || this.waiting.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.startGroups();
    });
  }

  private startGroups(): void {
    while (this.writing.size < 2) {
      const group = this.nextGroup();
      if (group.length === 0) return;
      const partitions = group.map((w) => `${w.batch.topic}:${w.batch.partition}`);
      for (const p of partitions) this.writing.add(p);
      void this.commit(group).finally(() => {
        for (const p of partitions) this.writing.delete(p);
        this.startGroups();
      });
    }
  }

  /** The waiting batches of one topic, one per partition and none of a partition being written, up to the cap. */
  private nextGroup(): Waiting[] {
    const group: Waiting[] = [];
    const later: Waiting[] = [];
    let messages = 0;
    for (const w of this.waiting) {
      const fits =
        (group.length === 0 || messages + w.batch.messages.length <= this.groupMessages) &&
        w.batch.topic === (group[0]?.batch.topic ?? w.batch.topic) &&
        !this.writing.has(`${w.batch.topic}:${w.batch.partition}`) &&
        !group.some((g) => g.batch.partition === w.batch.partition);
      if (fits) messages += w.batch.messages.length;
      (fits ? group : later).push(w);
    }
    this.waiting = later;
    return group;
  }

  private async commit(group: Waiting[]): Promise<void> {
    const stop = ledgerAppendSeconds.startTimer();
    try {
      await this.fold(group.map(({ batch }) => ({ batch, messages: batch.messages, nextOffset: batch.nextOffset })));
      for (const w of group) w.resolve();
    } catch (e) {
      if (databaseFailure(e) !== 'data') {
        for (const w of group) w.reject(e);
        return;
      }
      // One partition's poison must not hold the others back: each batch alone, and the refused one message by message.
      for (const w of group) await (group.length === 1 ? this.oneByOne(w.batch, e) : this.alone(w.batch)).then(w.resolve, w.reject);
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
    // PostgreSQL's default isolation, READ COMMITTED (named, it would cost a SET TRANSACTION round trip).
    const result = await this.ds.transaction(async (m) => {
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
      const outcome = events.length > 0 ? await this.meter(m, events, refused, writes) : { metered: 0, duplicates: 0, credits: 0 };
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
      return { ...outcome, duplicates: outcome.duplicates + repeated, refused, fenced };
    });
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

  private async meter(
    m: EntityManager,
    batchEvents: Array<{ event: RequestCompletedV1; message: IncomingMessage; batch: IncomingBatch }>,
    refused: Refusal[],
    writes: Array<WritePart | null>,
  ): Promise<{ metered: number; duplicates: number; credits: number }> {
    const seen = await alreadyMetered(m, batchEvents.map((e) => ({ orgId: e.event.org_id, eventId: e.event.event_id })));
    const events = batchEvents.filter((e) => !seen.has(eventKey(e.event.org_id, e.event.event_id)));
    if (events.length === 0) return { metered: 0, duplicates: seen.size, credits: 0 };

    const accounts = await lockAccounts(m, [...new Set(events.map((e) => e.event.org_id))]);
    // A reservation is named by the event's org and its id: an event settles only a hold of its own org.
    const named: ReservationRef[] = events.flatMap((e) => (e.event.reservation_id === null ? [] : [{ orgId: e.event.org_id, id: e.event.reservation_id }]));
    const reservations = await lockHeldReservations(m, named);
    // Holds named by an event but no longer held: only those the gateway gave back matter (see meterEvent).
    const givenBack = await givenBackReservations(m, named.filter((r) => !reservations.has(reservationKey(r.orgId, r.id))));
    const pairs = events.flatMap((e) => e.event.entities.map((entity) => [e.event.org_id, entity] as const));
    const windows = await loadWindows(m, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
    // Holds of other calls that are paying for entities these events returned (see ReservationService.reserve).
    const pending = await pendingEntityHolds(m, pairs.map((p) => p[0]), pairs.map((p) => p[1]));

    const touched = new Map<string, Account>();
    const entries: LedgerEntryDraft[] = [];
    const usage: UsageRow[] = [];
    const windowWrites: Array<{ orgId: string; entityId: string; at: number }> = [];
    const settled: ReservationRef[] = [];
    // Which event settled each hold (closed_by `event:<event_id>`): a hold settled at its price has no entry naming
    // the event, so this is how the ledger's reader (npm run audit) pairs the call with the hold that paid for it.
    const settledBy: string[] = [];
    // Leases the batch's events drew on, with what they spent so far (a lease stays held: the sweeper closes it).
    const leasesDrawn = new Map<string, { orgId: string; id: string; spent: number }>();
    let credits = 0;

    for (const { event, message, batch } of events) {
      const locked = accounts.get(event.org_id);
      if (!locked) {
        refused.push({ message, batch, reason: `unknown org_id "${event.org_id}"` });
        continue;
      }
      if (locked.profile !== event.profile) {
        refused.push({ message, batch, reason: `profile "${event.profile}" does not match org ${event.org_id}'s profile "${locked.profile}"` });
        continue;
      }
      const route = this.catalog.route(event.profile, event.method, event.route);
      if (!route) {
        refused.push({ message, batch, reason: `route "${event.method} ${event.route}" is not in profile "${event.profile}"` });
        continue;
      }
      const reservation = (event.reservation_id && reservations.get(reservationKey(event.org_id, event.reservation_id))) || null;
      const orgWindows = windows.get(event.org_id) ?? new Map<string, number>();
      windows.set(event.org_id, orgWindows);
      const account = touched.get(event.org_id) ?? locked.account;
      // An entity another still-held call is paying for is free here, as it was when that call's reservation
      // priced this one: its holder's settlement charges it, so the org pays once and never goes below zero.
      // A call drawn from a lease is priced in arrival order only: its lease covers its every id, so it pays what is
      // new now, and a held call paying for the same entity finds it charged when it settles (and gives it back).
      const others = reservation?.lease
        ? []
        : pending.filter((h) => h.orgId === event.org_id && h.id !== event.reservation_id && !settled.some((s) => s.orgId === h.orgId && s.id === h.id));
      const pricingWindows = withPendingCharges(orgWindows, others);
      let metered;
      try {
        const wasGivenBack = !reservation && event.reservation_id !== null && givenBack.has(reservationKey(event.org_id, event.reservation_id));
        metered = meterEvent(account, event, pricingOf(route), pricingWindows, reservation, wasGivenBack);
        if (pricingWindows !== orgWindows) applyCharges(orgWindows, metered.priced.chargedEntities, Date.parse(event.occurred_at));
      } catch (e) {
        refused.push({ message, batch, reason: `cannot be metered: ${(e as Error).message}` });
        continue;
      }
      touched.set(event.org_id, metered.account);
      entries.push(...metered.entries);
      if (reservation?.lease) {
        if (metered.fromLease > 0) {
          reservation.lease.spent += metered.fromLease;
          leasesDrawn.set(reservationKey(event.org_id, reservation.id), { orgId: event.org_id, id: reservation.id, spent: reservation.lease.spent });
        }
      } else if (reservation) {
        settled.push({ orgId: event.org_id, id: reservation.id });
        settledBy.push(`event:${event.event_id}`);
        reservations.delete(reservationKey(event.org_id, reservation.id));
      }
      const at = Date.parse(event.occurred_at);
      for (const entityId of metered.priced.chargedEntities) windowWrites.push({ orgId: event.org_id, entityId, at });
      credits += metered.priced.credits;
      usage.push({
        eventId: event.event_id,
        orgId: event.org_id,
        occurredAt: event.occurred_at,
        method: event.method,
        route: event.route,
        path: event.path,
        statusCode: event.status_code,
        credits: metered.priced.credits,
        costReason: metered.reason,
        responseTimeMs: event.response_time_ms,
        requestId: event.request_id ?? null,
        decision: event.decision ?? 'forwarded',
        apiKeyId: event.api_key_id,
        entities: event.entities.length,
        chargedEntities: metered.priced.chargedEntities,
        leaseId: metered.fromLease > 0 ? reservation!.id : null,
      });
    }

    // The batch's writes, returned for the caller to send as one statement with its offset and dead letters.
    writes.push(
      ...entriesParts(entries),
      accountsPart([...touched.values()]),
      usagePart(usage),
      usageCountPart(usage),
      windowsPart(windowWrites),
      closeReservationsPart(settled, 'settled', settledBy),
      leaseSpentPart([...leasesDrawn.values()]),
    );
    return { metered: usage.length, duplicates: seen.size, credits };
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
