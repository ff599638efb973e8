import { DataSource } from 'typeorm';
import { IncomingBatch, IncomingMessage } from '@tollgate/messaging';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { applyCommands, CommandQueue, RecordedOrg } from './recorded-commands';

// The kafka replay's reading side (kafka-replay.ts step 3 and 4): the topic's batches into the scratch consumer.

/**
 * Feeds the topic's batches to the scratch consumer, up to the captured ends, with each org's commands applied
 * before its first event that occurred at or after them. Events of orgs outside the replay are skipped; a batch
 * is cut where a command is due, and each piece handed to the consumer with the offset it ends at.
 */
export class TopicFeed {
  readonly consumer: RequestCompletedConsumer;
  readonly done: Promise<void>;
  consumed = 0;
  repriced = 0;
  readonly total: number;
  /** Orgs whose events came on more than one partition: their relative order may differ from live's. */
  readonly multiPartitionOrgs = new Set<string>();
  private readonly partitionOf = new Map<string, number>();
  private readonly position = new Map<number, bigint>();
  private resolve!: () => void;

  constructor(
    private readonly scratch: DataSource,
    private readonly catalog: ProfileCatalog,
    private readonly orgs: Map<string, RecordedOrg>,
    private readonly queue: CommandQueue,
    starts: Map<number, bigint>,
    private readonly ends: Map<number, bigint>,
    private readonly progress?: (done: number, total: number) => void,
  ) {
    this.consumer = new RequestCompletedConsumer(scratch, catalog, { groupId: 'replay' });
    this.done = new Promise((r) => (this.resolve = r));
    let total = 0n;
    for (const [p, end] of ends) {
      const start = starts.get(p) ?? 0n;
      this.position.set(p, start);
      total += end > start ? end - start : 0n;
    }
    this.total = Number(total);
    this.progress?.(0, this.total);
    if (this.finished()) this.resolve();
  }

  finished(): boolean {
    return [...this.ends].every(([p, end]) => (this.position.get(p) ?? 0n) >= end);
  }

  async handle(batch: IncomingBatch, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return;
    const end = this.ends.get(batch.partition) ?? 0n;
    const inRange = batch.messages.filter((m) => BigInt(m.offset) < end);
    if (inRange.length === 0) return;
    const batchEnd = inRange.length < batch.messages.length ? end.toString() : batch.nextOffset;
    let piece: IncomingMessage[] = [];
    const entityRows: EventHead[] = [];
    for (const message of inRange) {
      const head = peek(message);
      if (head && !this.orgs.has(head.orgId)) continue;
      if (head) {
        this.notePartition(head.orgId, batch.partition);
        if (head.entities.length > 0 && this.catalog.route(head.profile, head.method, head.route)?.cost.kind === 'per_entity') entityRows.push(head);
        const due = this.queue.due(head.orgId, head.at);
        if (due.length > 0) {
          await this.flush(batch, piece, message.offset);
          piece = [];
          await applyCommands(this.scratch, this.catalog, this.orgs, due);
        }
      }
      piece.push(message);
    }
    await this.flush(batch, piece, batchEnd);
    // Per-entity events' entities and holds: only the comparison reads them (to explain a price a hold changed).
    if (entityRows.length > 0) {
      await this.scratch.query(
        `INSERT INTO replayed_entities (event_id, org_id, reservation_id, entities)
         SELECT e.event_id, e.org_id, e.reservation_id, ARRAY(SELECT jsonb_array_elements_text(e.entities))
           FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[]) AS e(event_id, org_id, reservation_id, entities)`,
        [entityRows.map((h) => h.eventId), entityRows.map((h) => h.orgId), entityRows.map((h) => h.reservationId), entityRows.map((h) => JSON.stringify(h.entities))],
      );
    }
    this.consumed += inRange.length;
    this.position.set(batch.partition, BigInt(inRange[inRange.length - 1]!.offset) + 1n);
    this.progress?.(this.consumed, this.total);
    if (this.finished()) this.resolve();
  }

  private async flush(batch: IncomingBatch, messages: IncomingMessage[], nextOffset: string): Promise<void> {
    if (messages.length === 0) return;
    this.repriced += messages.length;
    await this.consumer.handle({ topic: batch.topic, partition: batch.partition, messages, nextOffset });
  }

  private notePartition(orgId: string, partition: number): void {
    const seen = this.partitionOf.get(orgId);
    if (seen === undefined) this.partitionOf.set(orgId, partition);
    else if (seen !== partition) this.multiPartitionOrgs.add(orgId);
  }
}

interface EventHead {
  eventId: string;
  orgId: string;
  at: number;
  profile: string;
  method: string;
  route: string;
  entities: string[];
  reservationId: string | null;
}

/** What the feed needs of an event, read cheaply; null when unreadable (the consumer then dead-letters it). */
function peek(message: IncomingMessage): EventHead | null {
  if (!message.value) return null;
  const v = safeJson(message.value);
  if (!v) return null;
  const at = typeof v.occurred_at === 'string' ? Date.parse(v.occurred_at) : NaN;
  if (typeof v.org_id !== 'string' || !Number.isFinite(at)) return null;
  const text = (x: unknown) => (typeof x === 'string' ? x : '');
  return {
    eventId: text(v.event_id),
    orgId: v.org_id,
    at,
    profile: text(v.profile),
    method: text(v.method),
    route: text(v.route),
    entities: Array.isArray(v.entities) ? v.entities.filter((e): e is string => typeof e === 'string') : [],
    reservationId: typeof v.reservation_id === 'string' ? v.reservation_id : null,
  };
}

/** A message's JSON object, or null when it is not one. */
export function safeJson(value: Buffer): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(value.toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
