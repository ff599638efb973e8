import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Account, applyCharges, LedgerEntryDraft } from '@tollgate/billing';
import { EventValidation, MeteringConsumerGroup, parseRequestCompleted, printable, RequestCompletedV1 } from '@tollgate/contracts';
import { IncomingBatch, IncomingMessage } from '@tollgate/messaging';
import { databaseFailure } from '@tollgate/persistence';
import { creditsCharged, eventsMetered, ledgerAppendSeconds } from '@tollgate/platform';
import { deadLettersPart } from '../dead-letters/dead-letter-store';
import { ProfileCatalog, pricingOf } from '../profile-catalog';
import {
  accountsPart,
  alreadyMetered,
  closeReservationsPart,
  entriesParts,
  eventKey,
  givenBackReservations,
  loadWindows,
  lockAccounts,
  lockHeldReservations,
  lockOffset,
  offsetPart,
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

/** A message metering will not meter, and why: it becomes a dead letter. */
interface Refusal {
  message: IncomingMessage;
  reason: string;
}

export interface RequestCompletedConsumerOptions {
  groupId?: string;
  clock?: () => number;
  /** Raw bytes to a validated event. Tests pass a laxer one to reach what only the database refuses. */
  parse?: (bytes: Buffer | null, nowMs: number) => EventValidation;
}

/**
 * message -> validated event -> domain -> one PostgreSQL transaction -> Kafka commit.
 *
 * Each transaction first locks the partition's stored offset (the fence: messages below it were metered by
 * another consumer, after a rebalance, and are dropped), then writes the usage rows, ledger entries, projections,
 * re-access windows, the dead letters of the messages it refused and the new offset, which never moves back.
 *
 * Poison: an event the validation lets through but PostgreSQL refuses (a data error, SQLSTATE class 22/23) would
 * fail its whole batch on every retry and stop the partition. So a batch refused for its data is metered again
 * message by message, each in its own transaction with its own offset, and the message the database refuses
 * becomes a dead letter with the database's reason; the partition moves on. A database that is unreachable,
 * shutting down or deadlocked is not the data's fault: the error goes up, nothing is dead-lettered, and kafkajs
 * fetches the batch again from the stored offset.
 *
 * Crash windows (what happens if the process dies ...):
 * 1. before a transaction commits: nothing of it was written (entries, projections, usage, dead letters, offset
 *    roll back together); the batch is fetched again from the stored offset and metered once. Message by message,
 *    the messages committed so far stay committed with their offsets; the rest are fetched again.
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

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    options: RequestCompletedConsumerOptions = {},
  ) {
    this.groupId = options.groupId ?? MeteringConsumerGroup;
    this.clock = options.clock ?? Date.now;
    this.parse = options.parse ?? parseRequestCompleted;
  }

  storedOffsets(topic: string, partitions: number[]): Promise<Map<number, string>> {
    return storedOffsets(this.ds.manager, this.groupId, topic, partitions);
  }

  async handle(batch: IncomingBatch): Promise<void> {
    const stop = ledgerAppendSeconds.startTimer();
    try {
      await this.fold(batch, batch.messages, batch.nextOffset);
    } catch (e) {
      if (databaseFailure(e) !== 'data') throw e;
      this.log.warn({
        msg: 'batch refused by the database; metering it message by message',
        topic: batch.topic,
        partition: batch.partition,
        from: batch.messages[0]?.offset,
        to: batch.messages[batch.messages.length - 1]?.offset,
        error: printable((e as Error).message),
      });
      await this.oneByOne(batch);
    }
    stop();
  }

  /** Each message in its own transaction; the one the database refuses for its data is dead-lettered. */
  private async oneByOne(batch: IncomingBatch): Promise<void> {
    const last = batch.messages.length - 1;
    for (const [i, message] of batch.messages.entries()) {
      const next = i === last ? batch.nextOffset : (BigInt(message.offset) + 1n).toString();
      try {
        await this.fold(batch, [message], next);
      } catch (e) {
        if (databaseFailure(e) !== 'data') throw e;
        await this.fold(batch, [message], next, printable(`refused by the database: ${(e as Error).message}`));
      }
    }
  }

  /**
   * One transaction: `messages` metered (or, with `refusedBecause`, all dead-lettered for that reason) and the
   * partition's offset moved to `nextOffset`.
   */
  private async fold(batch: IncomingBatch, messages: IncomingMessage[], nextOffset: string, refusedBecause?: string): Promise<void> {
    const now = this.clock();
    const parsed = messages.map((message) => ({
      message,
      validation: refusedBecause === undefined ? this.parse(message.value, now) : ({ ok: false, reason: refusedBecause } as const),
    }));
    // PostgreSQL's default isolation, READ COMMITTED (named, it would cost a SET TRANSACTION round trip).
    const result = await this.ds.transaction(async (m) => {
      const stored = await lockOffset(m, this.groupId, batch.topic, batch.partition);
      const live = parsed.filter((p) => BigInt(p.message.offset) >= stored);
      const fenced = { below: parsed.length - live.length, stored };
      if (live.length === 0) return { metered: 0, duplicates: 0, credits: 0, refused: [] as Refusal[], fenced };

      const refused: Refusal[] = [];
      const events: Array<{ event: RequestCompletedV1; message: IncomingMessage }> = [];
      // An event is its id within its org: the same id from two orgs is two events, twice from one org a repeat.
      const inBatch = new Set<string>();
      let repeated = 0;
      for (const { message, validation } of live) {
        if (!validation.ok) refused.push({ message, reason: validation.reason });
        else if (inBatch.has(eventKey(validation.event.org_id, validation.event.event_id))) repeated++;
        else {
          inBatch.add(eventKey(validation.event.org_id, validation.event.event_id));
          events.push({ event: validation.event, message });
        }
      }
      const writes: Array<WritePart | null> = [];
      const outcome = await this.meter(m, events, refused, writes);
      // Everything the batch changes, its dead letters and its offset: one statement (one round trip), then commit.
      writes.push(
        deadLettersPart(
          refused.map(({ message, reason }) => ({
            topic: batch.topic,
            partition: batch.partition,
            offset: message.offset,
            key: message.key,
            value: message.value,
            reason: printable(reason),
          })),
        ),
        offsetPart(this.groupId, batch.topic, batch.partition, nextOffset),
      );
      await writeAll(m, writes);
      return { ...outcome, duplicates: outcome.duplicates + repeated, refused, fenced };
    });
    if (result.fenced.below > 0) {
      this.log.warn({
        msg: 'skipped messages below the stored offset: another consumer metered them (rebalance)',
        topic: batch.topic,
        partition: batch.partition,
        stored: result.fenced.stored.toString(),
        skipped: result.fenced.below,
      });
    }
    for (const r of result.refused) {
      this.log.warn({ msg: 'dead-lettered', partition: batch.partition, offset: r.message.offset, reason: printable(r.reason) });
    }
    eventsMetered.inc({ result: 'metered' }, result.metered);
    eventsMetered.inc({ result: 'duplicate' }, result.duplicates);
    eventsMetered.inc({ result: 'dead_lettered' }, result.refused.length);
    creditsCharged.inc(result.credits);
  }

  private async meter(
    m: EntityManager,
    batchEvents: Array<{ event: RequestCompletedV1; message: IncomingMessage }>,
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
    let credits = 0;

    for (const { event, message } of events) {
      const locked = accounts.get(event.org_id);
      if (!locked) {
        refused.push({ message, reason: `unknown org_id "${event.org_id}"` });
        continue;
      }
      if (locked.profile !== event.profile) {
        refused.push({ message, reason: `profile "${event.profile}" does not match org ${event.org_id}'s profile "${locked.profile}"` });
        continue;
      }
      const route = this.catalog.route(event.profile, event.method, event.route);
      if (!route) {
        refused.push({ message, reason: `route "${event.method} ${event.route}" is not in profile "${event.profile}"` });
        continue;
      }
      const reservation = (event.reservation_id && reservations.get(reservationKey(event.org_id, event.reservation_id))) || null;
      const orgWindows = windows.get(event.org_id) ?? new Map<string, number>();
      windows.set(event.org_id, orgWindows);
      const account = touched.get(event.org_id) ?? locked.account;
      // An entity another still-held call is paying for is free here, as it was when that call's reservation
      // priced this one: its holder's settlement charges it, so the org pays once and never goes below zero.
      const others = pending.filter((h) => h.orgId === event.org_id && h.id !== event.reservation_id && !settled.some((s) => s.orgId === h.orgId && s.id === h.id));
      const pricingWindows = withPendingCharges(orgWindows, others);
      let metered;
      try {
        const wasGivenBack = !reservation && event.reservation_id !== null && givenBack.has(reservationKey(event.org_id, event.reservation_id));
        metered = meterEvent(account, event, pricingOf(route), pricingWindows, reservation, wasGivenBack);
        if (pricingWindows !== orgWindows) applyCharges(orgWindows, metered.priced.chargedEntities, Date.parse(event.occurred_at));
      } catch (e) {
        refused.push({ message, reason: `cannot be metered: ${(e as Error).message}` });
        continue;
      }
      touched.set(event.org_id, metered.account);
      entries.push(...metered.entries);
      if (reservation) {
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
    );
    return { metered: usage.length, duplicates: seen.size, credits };
  }
}
