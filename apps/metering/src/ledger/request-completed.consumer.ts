import { Logger } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import { Account, applyCharges, LedgerEntryDraft } from '@tollgate/billing';
import { MeteringConsumerGroup, parseRequestCompleted, RequestCompletedV1, Topics } from '@tollgate/contracts';
import { IncomingBatch, IncomingMessage, Publisher } from '@tollgate/messaging';
import { creditsCharged, eventsMetered, ledgerAppendSeconds } from '@tollgate/platform';
import { ProfileCatalog, pricingOf } from '../profile-catalog';
import {
  alreadyMetered,
  appendEntries,
  closeReservations,
  countUsage,
  insertUsage,
  loadWindows,
  lockAccounts,
  lockHeldReservations,
  pendingEntityHolds,
  saveAccounts,
  saveWindows,
  storedOffsets,
  storeOffset,
  UsageRow,
  withPendingCharges,
} from './ledger-store';
import { meterEvent } from './meter-event';

interface DeadLetter {
  message: IncomingMessage;
  reason: string;
}

/**
 * message -> validated event -> domain -> one PostgreSQL transaction -> Kafka commit.
 *
 * Crash windows (what happens if the process dies ...):
 * 1. before the transaction commits: nothing was written (entries, projections, usage, offset roll back
 *    together); the batch is fetched again from the stored offset and metered once.
 * 2. after the commit, before the Kafka offset commit: the database holds the new offset; on re-assignment the
 *    consumer seeks to it and skips the batch. Were it ever redelivered, `usage_records.event_id` (unique)
 *    marks each event as metered and it is skipped: no double charge.
 * 3. after dead letters were published, before the commit: the batch is processed again and its dead letters
 *    are published a second time. The dead-letter topic is at-least-once; its records carry the original
 *    partition and offset, so duplicates are recognisable.
 * 4. after the Kafka commit: nothing is pending.
 * Ledger entries reach tollgate.ledger.v1 through the outbox in the same transaction (see LedgerOutboxRelay).
 */
export class RequestCompletedConsumer {
  private readonly log = new Logger('metering');

  constructor(
    private readonly ds: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly deadLetters: Publisher,
    readonly groupId: string = MeteringConsumerGroup,
    private readonly clock: () => number = Date.now,
  ) {}

  storedOffsets(topic: string, partitions: number[]): Promise<Map<number, string>> {
    return storedOffsets(this.ds.manager, this.groupId, topic, partitions);
  }

  async handle(batch: IncomingBatch): Promise<void> {
    const stop = ledgerAppendSeconds.startTimer();
    const dead: DeadLetter[] = [];
    const events: Array<{ event: RequestCompletedV1; message: IncomingMessage }> = [];
    const inBatch = new Set<string>();
    const now = this.clock();
    for (const message of batch.messages) {
      const parsed = parseRequestCompleted(message.value, now);
      if (!parsed.ok) dead.push({ message, reason: parsed.reason });
      else if (!inBatch.has(parsed.event.event_id)) {
        inBatch.add(parsed.event.event_id);
        events.push({ event: parsed.event, message });
      } else eventsMetered.inc({ result: 'duplicate' });
    }

    const result = await this.ds.transaction('READ COMMITTED', async (m) => {
      const outcome = await this.meter(m, events, dead);
      if (dead.length > 0) await this.publishDeadLetters(batch, dead);
      await storeOffset(m, this.groupId, batch.topic, batch.partition, batch.nextOffset);
      return outcome;
    });
    stop();
    eventsMetered.inc({ result: 'metered' }, result.metered);
    eventsMetered.inc({ result: 'duplicate' }, result.duplicates);
    eventsMetered.inc({ result: 'dead_lettered' }, dead.length);
    creditsCharged.inc(result.credits);
  }

  private async meter(
    m: EntityManager,
    batchEvents: Array<{ event: RequestCompletedV1; message: IncomingMessage }>,
    dead: DeadLetter[],
  ): Promise<{ metered: number; duplicates: number; credits: number }> {
    const seen = await alreadyMetered(m, batchEvents.map((e) => e.event.event_id));
    const events = batchEvents.filter((e) => !seen.has(e.event.event_id));
    if (events.length === 0) return { metered: 0, duplicates: seen.size, credits: 0 };

    const accounts = await lockAccounts(m, [...new Set(events.map((e) => e.event.org_id))]);
    const reservations = await lockHeldReservations(
      m,
      events.map((e) => e.event.reservation_id).filter((id): id is string => id !== null),
    );
    const pairs = events.flatMap((e) => e.event.entities.map((entity) => [e.event.org_id, entity] as const));
    const windows = await loadWindows(m, pairs.map((p) => p[0]), pairs.map((p) => p[1]));
    // Holds of other calls that are paying for entities these events returned (see ReservationService.reserve).
    const pending = await pendingEntityHolds(m, pairs.map((p) => p[0]), pairs.map((p) => p[1]));

    const touched = new Map<string, Account>();
    const entries: LedgerEntryDraft[] = [];
    const usage: UsageRow[] = [];
    const windowWrites: Array<{ orgId: string; entityId: string; at: number }> = [];
    const settled: string[] = [];
    let credits = 0;

    for (const { event, message } of events) {
      const locked = accounts.get(event.org_id);
      if (!locked) {
        dead.push({ message, reason: `unknown org_id "${event.org_id}"` });
        continue;
      }
      if (locked.profile !== event.profile) {
        dead.push({ message, reason: `profile "${event.profile}" does not match org ${event.org_id}'s profile "${locked.profile}"` });
        continue;
      }
      const route = this.catalog.route(event.profile, event.method, event.route);
      if (!route) {
        dead.push({ message, reason: `route "${event.method} ${event.route}" is not in profile "${event.profile}"` });
        continue;
      }
      const held = event.reservation_id ? reservations.get(event.reservation_id) : undefined;
      // A reservation settles only the org that made it: another org's id in an event is ignored.
      const reservation = held && held.orgId === event.org_id ? held : null;
      const orgWindows = windows.get(event.org_id) ?? new Map<string, number>();
      windows.set(event.org_id, orgWindows);
      const account = touched.get(event.org_id) ?? locked.account;
      // An entity another still-held call is paying for is free here, as it was when that call's reservation
      // priced this one: its holder's settlement charges it, so the org pays once and never goes below zero.
      const others = pending.filter((h) => h.orgId === event.org_id && h.id !== event.reservation_id && !settled.includes(h.id));
      const pricingWindows = withPendingCharges(orgWindows, others);
      let metered;
      try {
        metered = meterEvent(account, event, pricingOf(route), pricingWindows, reservation);
        if (pricingWindows !== orgWindows) applyCharges(orgWindows, metered.priced.chargedEntities, Date.parse(event.occurred_at));
      } catch (e) {
        dead.push({ message, reason: `cannot be metered: ${(e as Error).message}` });
        continue;
      }
      touched.set(event.org_id, metered.account);
      entries.push(...metered.entries);
      if (reservation) {
        settled.push(reservation.id);
        reservations.delete(reservation.id);
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
      });
    }

    // One statement per table for the whole batch.
    await appendEntries(m, entries);
    await saveAccounts(m, [...touched.values()]);
    await insertUsage(m, usage);
    await countUsage(m, usage);
    await saveWindows(m, windowWrites);
    await closeReservations(m, settled, 'settled', settled.map(() => 'event'));
    return { metered: usage.length, duplicates: seen.size, credits };
  }

  private async publishDeadLetters(batch: IncomingBatch, dead: DeadLetter[]): Promise<void> {
    for (const d of dead) this.log.warn({ msg: 'dead-lettered', partition: batch.partition, offset: d.message.offset, reason: d.reason });
    await this.deadLetters.publish(
      Topics.RequestCompletedDeadLetter,
      dead.map((d) => ({
        key: d.message.key?.toString('utf8') ?? '',
        value: d.message.value ?? Buffer.alloc(0),
        headers: {
          'x-dead-letter-reason': d.reason,
          'x-original-topic': batch.topic,
          'x-original-partition': String(batch.partition),
          'x-original-offset': d.message.offset,
        },
      })),
    );
  }
}
