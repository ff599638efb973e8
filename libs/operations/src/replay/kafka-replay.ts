import { DataSource } from 'typeorm';
import { Account, Allocation, leaseSlice, projectAccount } from '@tollgate/billing';
import { MeteringConsumerGroup, Topics } from '@tollgate/contracts';
import { IncomingBatch, IncomingMessage, Messaging } from '@tollgate/messaging';
import { ProfileCatalog, RequestCompletedConsumer, toAccount } from '@tollgate/ledger';
import { applyCommands, CommandQueue, recordedCommands, RecordedOrg } from './recorded-commands';
import { ScratchSchema, snapshotLive } from './scratch-schema';

/**
 * `npm run replay -- (--all | --org ID) --source kafka [--profile FILE]`: re-prices the request-completed topic
 * into a scratch schema with metering's own consumer and compares the outcome with live.
 *
 * 1. The topic's end offsets are captured; the replay reads up to them, from the earliest retained offset, with
 *    a consumer group of its own (deleted afterwards). It first waits until live metering has stored offsets at
 *    or past those ends, so every replayed event has had its chance to be metered live.
 * 2. Live state is copied in one snapshot into the scratch schema (see snapshotLive), and the scratch schema gets
 *    the migrations' tables; its connections' search_path is the scratch schema alone.
 * 3. The orgs are seeded as they were created and the operator's commands re-applied at their recorded time
 *    (see recorded-commands.ts), each before the first event of its org that occurred at or after it.
 * 4. Each batch goes through RequestCompletedConsumer.handle against the scratch schema: the same validation,
 *    pricing, deciders and SQL as live. No reservation is held there, so every event is priced as a charge.
 * 5. The comparison (see compare()): per event, the credits of its usage row, scratch vs live; per org, the
 *    balance. Both sides are projected to the snapshot's instant (the same monthly roll and expiries), and live's
 *    figure is what it would be without holds and without the events the replay did not read:
 *      live balance + credits still held (on buckets not expired) + credits of live usage rows not replayed.
 *    A held call's event is not in the replayed range (its hold would be settled otherwise), so the scratch has
 *    neither the hold nor the charge: adding the hold back compares like with like.
 */
export interface KafkaReplayOptions {
  orgs: string[] | 'all';
  catalog: ProfileCatalog;
  /** A what-if run (`--profile`): report credits per org, nothing is a difference. */
  whatIf: boolean;
  /** How long to wait for live metering to reach the captured end offsets. */
  liveWaitMs?: number;
  /** The scratch schema's name (default `replay_kafka_<pid>`). */
  schema?: string;
}

export interface KafkaReplayDeps {
  live: DataSource;
  messaging: Messaging;
  /** Events consumed so far of the total between the retained start and the captured ends. */
  progress?: (done: number, total: number) => void;
  /** Lines for the operator (stderr): waits, notes. */
  note?: (line: string) => void;
  /** Aborted on SIGINT: consumption stops, the scratch schema and consumer group are dropped. */
  signal?: AbortSignal;
}

export interface Difference {
  orgId: string;
  /** `event <id>`, `balance`, `plan`, `account`. */
  what: string;
  live: string;
  replayed: string;
  reason: string;
  explained: boolean;
}

export interface WhatIfLine {
  orgId: string;
  events: number;
  live: number;
  replayed: number;
}

export interface KafkaReplayReport {
  interrupted: boolean;
  /** Messages read from the topic (up to the captured ends). */
  events: number;
  /** Of those, the distinct events of the replayed orgs the replay metered (a copy read twice counts once). */
  repriced: number;
  orgs: number;
  differences: Difference[];
  whatIf: WhatIfLine[];
  notes: string[];
}

const topic = Topics.RequestCompleted;

export async function kafkaReplay(deps: KafkaReplayDeps, opts: KafkaReplayOptions): Promise<KafkaReplayReport> {
  const { live, messaging } = deps;
  const note = deps.note ?? (() => undefined);
  const notes: string[] = [];
  const report: KafkaReplayReport = { interrupted: false, events: 0, repriced: 0, orgs: 0, differences: [], whatIf: [], notes };

  const orgIds: string[] =
    opts.orgs === 'all' ? (await live.query(`SELECT id FROM orgs ORDER BY id`)).map((r: { id: string }) => r.id) : opts.orgs;
  const ends = await messaging.endOffsets(topic);
  const starts = await messaging.startOffsets(topic);
  for (const [p, low] of starts) if (low > 0n) notes.push(`partition ${p} starts at offset ${low}: older events are no longer retained`);
  const truncated = [...starts.values()].some((low) => low > 0n);

  await waitForLive(live, messaging, ends, opts.liveWaitMs ?? 60_000, note, deps.signal);
  if (deps.signal?.aborted) return { ...report, interrupted: true };

  const schemaName = opts.schema ?? `replay_kafka_${process.pid}`;
  const scratch = await ScratchSchema.create(live, schemaName);
  const groupId = `tollgate-replay-${process.pid}-${Date.now().toString(36)}`;
  let groupUsed = false;
  try {
    const { asOf, read } = await snapshotLive(live, schemaName, orgIds, (m) => recordedCommands(m, orgIds));
    const { orgs, commands, unknown } = read;
    for (const u of unknown) notes.push(`admin entries not understood, not re-applied: ${u}`);
    report.orgs = orgs.length;
    const orgById = new Map(orgs.map((o) => [o.id, o]));
    await scratch.ds.query(
      `INSERT INTO orgs (id, name, profile, plan) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])`,
      [orgs.map((o) => o.id), orgs.map((o) => o.name), orgs.map((o) => o.profile), orgs.map((o) => o.plan)],
    );
    const queue = new CommandQueue(commands);
    const feed = new TopicFeed(scratch.ds, opts.catalog, orgById, queue, starts, ends, deps.progress);
    if (!feed.finished()) {
      groupUsed = true;
      const consumer = messaging.batchConsumer({
        groupId,
        topic,
        storedOffsets: (t, partitions) => feed.consumer.storedOffsets(t, partitions),
        moveStoredOffset: (t, partition, from, to) => feed.consumer.moveStoredOffset(t, partition, from, to),
        handle: (batch) => feed.handle(batch, deps.signal),
        partitionsConsumedConcurrently: 1,
      });
      await consumer.start();
      try {
        await Promise.race([feed.done, aborted(deps.signal)]);
      } finally {
        await consumer.stop();
      }
    }
    report.events = feed.consumed;
    report.repriced = feed.repriced;
    if (deps.signal?.aborted) return { ...report, interrupted: true };
    // Distinct events, as live counts them: a copy the topic holds twice (an at-least-once resend) is metered once.
    report.repriced = Number(((await scratch.ds.query(`SELECT count(*) AS n FROM usage_records`)) as Array<{ n: string }>)[0]?.n ?? 0);
    // Commands no event came after (a top-up after the last call) still belong to the history.
    await applyCommands(scratch.ds, opts.catalog, orgById, queue.rest());

    if (opts.whatIf) report.whatIf = await whatIfTotals(scratch.ds);
    else report.differences = await compare(scratch.ds, opts.catalog, orgById, asOf, { truncated, multiPartition: feed.multiPartitionOrgs });
    return report;
  } finally {
    await scratch.drop(live).catch((e: Error) => note(`could not drop schema ${schemaName}: ${e.message}`));
    if (groupUsed) {
      await messaging.deleteGroup(groupId).catch((e: Error) => note(`could not delete consumer group ${groupId}: ${e.message}`));
    }
  }
}

/**
 * Waits until live metering is at or past `ends` on every partition (or the time is up: a note). Its offsets are
 * those stored with its data; Kafka's copy of them counts too, for a partition whose events a kept broker's group
 * had read before this database existed (metering then never stores an offset for it).
 */
async function waitForLive(
  live: DataSource,
  messaging: Messaging,
  ends: Map<number, bigint>,
  timeoutMs: number,
  note: (l: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    const rows: Array<{ partition: number; next_offset: string }> = await live.query(
      `SELECT partition, next_offset FROM consumer_offsets WHERE group_id = $1 AND topic = $2`,
      [MeteringConsumerGroup, topic],
    );
    const stored = new Map(rows.map((r) => [r.partition, BigInt(r.next_offset)]));
    const committed = await messaging.committedOffsets(MeteringConsumerGroup, topic).catch(() => new Map<number, bigint>());
    const at = (p: number) => [stored.get(p) ?? 0n, committed.get(p) ?? 0n].reduce((x, y) => (x > y ? x : y));
    const behind = [...ends].filter(([p, end]) => end > 0n && at(p) < end);
    if (behind.length === 0) return;
    if (signal?.aborted) return;
    if (Date.now() >= deadline) {
      note(`live metering has not reached the topic's end on partition(s) ${behind.map(([p]) => p).join(', ')}: events it has not metered yet will show as differences`);
      return;
    }
    if (!said) note('waiting for live metering to reach the end of the topic...');
    said = true;
    await new Promise((r) => setTimeout(r, 250));
  }
}

function aborted(signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * Feeds the topic's batches to the scratch consumer, up to the captured ends, with each org's commands applied
 * before its first event that occurred at or after them. Events of orgs outside the replay are skipped; a batch
 * is cut where a command is due, and each piece handed to the consumer with the offset it ends at.
 */
class TopicFeed {
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

async function whatIfTotals(scratch: DataSource): Promise<WhatIfLine[]> {
  const rows: Array<{ org_id: string; events: string; live: string | null; replayed: string }> = await scratch.query(
    `SELECT r.org_id, COUNT(*) AS events, SUM(l.credits) AS live, SUM(r.credits) AS replayed
       FROM usage_records r LEFT JOIN live_usage l USING (org_id, event_id) GROUP BY r.org_id ORDER BY r.org_id`,
  );
  return rows.map((r) => ({ orgId: r.org_id, events: Number(r.events), live: Number(r.live ?? 0), replayed: Number(r.replayed) }));
}

interface EventRow {
  org_id: string;
  event_id: string;
  live: string | null;
  replayed: string;
  method: string;
  route: string;
  occurred_at: Date;
}

/**
 * The differences, each with a reason; `explained` when timing legitimately changed a price:
 * - a per-entity event whose entities another call of the org was holding credits for when it was metered live
 *   (live: free, that hold pays; replay: no holds, so the first event to arrive pays), and the holder's own event
 *   that the replay then found inside the re-access window;
 * - a per-entity event of an org whose events came on several partitions (their arrival order differs);
 * - a per-entity event when the topic no longer holds the oldest events (earlier charges of the window are gone).
 * A balance difference is explained when it is exactly what the explained event differences add up to.
 */
async function compare(
  scratch: DataSource,
  catalog: ProfileCatalog,
  orgs: Map<string, RecordedOrg>,
  asOf: number,
  context: { truncated: boolean; multiPartition: Set<string> },
): Promise<Difference[]> {
  const out: Difference[] = [];
  const eventRows: EventRow[] = await scratch.query(
    `SELECT r.org_id, r.event_id, l.credits AS live, r.credits AS replayed, r.method, r.route, r.occurred_at
       FROM usage_records r LEFT JOIN live_usage l USING (org_id, event_id)
      WHERE l.event_id IS NULL OR l.credits <> r.credits
      ORDER BY r.org_id, r.occurred_at, r.event_id`,
  );
  // Per-entity events that differ: which holds of their org could have made them free live.
  const perEntity = eventRows.filter((r) => {
    const profile = orgs.get(r.org_id)?.profile ?? '';
    return catalog.route(profile, r.method, r.route)?.cost.kind === 'per_entity' && r.live !== null;
  });
  const key = (orgId: string, eventId: string) => `${orgId}/${eventId}`;
  const holdsByEvent = new Map<string, string[]>();
  if (perEntity.length > 0) {
    const rows: Array<{ org_id: string; event_id: string; hold_id: string }> = await scratch.query(
      `SELECT e.org_id, e.event_id, h.id AS hold_id
         FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS e(event_id, org_id, occurred_at)
         JOIN replayed_entities x ON x.org_id = e.org_id AND x.event_id = e.event_id
         JOIN live_entity_holds h ON h.org_id = e.org_id AND h.entities && x.entities
          AND h.id IS DISTINCT FROM x.reservation_id
          AND h.held_at <= e.occurred_at + interval '5 minutes'
          AND (h.closed_at IS NULL OR h.closed_at >= e.occurred_at)`,
      [perEntity.map((r) => r.event_id), perEntity.map((r) => r.org_id), perEntity.map((r) => r.occurred_at)],
    );
    for (const r of rows) holdsByEvent.set(key(r.org_id, r.event_id), [...(holdsByEvent.get(key(r.org_id, r.event_id)) ?? []), r.hold_id]);
  }
  const ownHold = new Map<string, string>();
  if (perEntity.length > 0) {
    const rows: Array<{ org_id: string; event_id: string; reservation_id: string }> = await scratch.query(
      `SELECT x.org_id, x.event_id, x.reservation_id FROM replayed_entities x
         JOIN unnest($1::text[], $2::text[]) AS e(org_id, event_id) ON x.org_id = e.org_id AND x.event_id = e.event_id
        WHERE x.reservation_id IS NOT NULL`,
      [perEntity.map((r) => r.org_id), perEntity.map((r) => r.event_id)],
    );
    for (const r of rows) ownHold.set(key(r.org_id, r.event_id), `${r.org_id}/${r.reservation_id}`);
  }
  const explainingHolds = new Set([...holdsByEvent].flatMap(([k, ids]) => ids.map((id) => `${k.split('/')[0]}/${id}`)));
  const explainedDelta = new Map<string, number>();
  for (const r of eventRows) {
    let reason: string;
    let explained = false;
    if (r.live === null) reason = 'metered by the replay, not live';
    else {
      const holds = holdsByEvent.get(key(r.org_id, r.event_id));
      const own = ownHold.get(key(r.org_id, r.event_id));
      const isPerEntity = perEntity.includes(r);
      if (holds) {
        reason = `entity paid by a still-held call live (reservation ${holds.join(', ')}); the replay holds nothing, so this event paid`;
        explained = true;
      } else if (own && explainingHolds.has(own)) {
        reason = `its hold (${own.slice(r.org_id.length + 1)}) paid live for an entity that, in the replay, an earlier event had paid`;
        explained = true;
      } else if (isPerEntity && context.multiPartition.has(r.org_id)) {
        reason = 're-access window: the org\'s events came on several partitions, so they arrive in another order';
        explained = true;
      } else if (isPerEntity && context.truncated) {
        reason = 're-access window: the charges before the oldest retained event are not in the topic';
        explained = true;
      } else reason = 'credits differ';
    }
    if (explained) explainedDelta.set(r.org_id, (explainedDelta.get(r.org_id) ?? 0) + Number(r.replayed) - Number(r.live));
    out.push({ orgId: r.org_id, what: `event ${r.event_id}`, live: r.live ?? 'none', replayed: r.replayed, reason, explained });
  }

  // Events live metered that the replay refused (its dead letters).
  const refused: Array<{ value: Buffer | null; reason: string }> = await scratch.query(`SELECT value, reason FROM dead_letters`);
  const refusedIds = new Map<string, string>();
  for (const d of refused) {
    const head = d.value ? safeJson(d.value) : null;
    if (head && typeof head.event_id === 'string' && typeof head.org_id === 'string') refusedIds.set(key(head.org_id, head.event_id), d.reason);
  }
  const refusedOrgs = [...refusedIds.keys()].map((k) => k.slice(0, k.indexOf('/')));
  const refusedEvents = [...refusedIds.keys()].map((k) => k.slice(k.indexOf('/') + 1));
  if (refusedIds.size > 0) {
    const rows: Array<{ org_id: string; event_id: string; credits: string }> = await scratch.query(
      `SELECT l.org_id, l.event_id, l.credits FROM live_usage l JOIN unnest($1::text[], $2::text[]) AS d(org_id, event_id)
          ON l.org_id = d.org_id AND l.event_id = d.event_id ORDER BY l.org_id, l.event_id`,
      [refusedOrgs, refusedEvents],
    );
    for (const r of rows) {
      out.push({ orgId: r.org_id, what: `event ${r.event_id}`, live: r.credits, replayed: 'none', reason: `refused by the replay: ${refusedIds.get(key(r.org_id, r.event_id))}`, explained: false });
    }
  }

  // Balances: both projected to the snapshot; live without its holds and without events the replay did not read.
  const accounts: Array<Record<string, unknown> & { org_id: string; side: 'live' | 'replayed'; org_plan: string | null }> = await scratch.query(
    `SELECT 'live' AS side, org_id, plan, balance, debt, next_seq, allowance_month, allowance_spent, granted_one_time, buckets, org_plan FROM live_accounts
     UNION ALL
     SELECT 'replayed', a.org_id, a.plan, a.balance, a.debt, a.next_seq, a.allowance_month, a.allowance_spent, a.granted_one_time, a.buckets, o.plan FROM accounts a JOIN orgs o ON o.id = a.org_id`,
  );
  // What each still-held reservation holds: a hold all its allocation, a lease what its calls did not spend and its
  // gateway did not return (leaseSlice).
  const holds: Array<{ org_id: string; allocation: Allocation[] }> = (
    await scratch.query(`SELECT org_id, allocation, kind, credits, spent, returned FROM live_holds`)
  ).map((h: { org_id: string; allocation: Allocation[]; kind: string; credits: string; spent: string; returned: string }) => ({
    org_id: h.org_id,
    allocation: h.kind === 'lease' ? leaseSlice(h.allocation, Number(h.spent), Number(h.credits) - Number(h.returned)) : h.allocation,
  }));
  const unreplayed: Array<{ org_id: string; credits: string }> = await scratch.query(
    `SELECT l.org_id, SUM(l.credits) AS credits FROM live_usage l
      WHERE NOT EXISTS (SELECT 1 FROM usage_records r WHERE r.org_id = l.org_id AND r.event_id = l.event_id)
        AND NOT EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS d(org_id, event_id) WHERE d.org_id = l.org_id AND d.event_id = l.event_id)
      GROUP BY l.org_id`,
    [refusedOrgs, refusedEvents],
  );
  const notReplayed = new Map(unreplayed.map((r) => [r.org_id, Number(r.credits)]));
  type Side = { live?: Account; replayed?: Account; livePlan?: string; broken?: string };
  const sides = new Map<string, Side>();
  for (const a of accounts) {
    const s = sides.get(a.org_id) ?? {};
    let account = toAccount(a as unknown as Parameters<typeof toAccount>[0]);
    try {
      account = projectAccount(account, asOf);
    } catch (e) {
      // A projection that breaks the deciders' invariants (balance != buckets - debt) can't be rolled: compare as is.
      s.broken = `${a.side === 'live' ? 'live' : 'replayed'} projection: ${(e as Error).message}`;
    }
    if (a.side === 'live') {
      s.live = account;
      s.livePlan = a.org_plan ?? undefined;
    } else s.replayed = account;
    sides.set(a.org_id, s);
  }
  for (const orgId of [...orgs.keys()].sort()) {
    const s = sides.get(orgId);
    if (!s?.live && !s?.replayed) continue;
    if (!s.live || !s.replayed) {
      out.push({ orgId, what: 'account', live: s.live ? 'present' : 'missing', replayed: s.replayed ? 'present' : 'missing', reason: 'one side has no account', explained: false });
      continue;
    }
    if (s.broken) out.push({ orgId, what: 'account', live: 'inconsistent', replayed: '', reason: s.broken, explained: false });
    const liveBuckets = new Set(s.live.buckets.map((b) => b.id));
    const held = holds
      .filter((h) => h.org_id === orgId)
      .reduce((sum, h) => sum + h.allocation.filter((a) => liveBuckets.has(a.bucketId)).reduce((x, a) => x + Number(a.credits), 0), 0);
    const liveComparable = s.live.balance + held + (notReplayed.get(orgId) ?? 0);
    if (liveComparable !== s.replayed.balance) {
      const expected = -(explainedDelta.get(orgId) ?? 0);
      const explained = expected !== 0 && s.replayed.balance - liveComparable === expected;
      const parts = [`live balance ${s.live.balance}`, held ? `+ ${held} held` : '', notReplayed.get(orgId) ? `+ ${notReplayed.get(orgId)} of events not replayed` : '']
        .filter(Boolean)
        .join(' ');
      out.push({
        orgId,
        what: 'balance',
        live: String(liveComparable),
        replayed: String(s.replayed.balance),
        reason: explained ? `follows from the explained event differences (${parts})` : `balances differ (${parts})`,
        explained,
      });
    }
    if (s.livePlan && s.replayed.plan.name !== s.livePlan) {
      out.push({ orgId, what: 'plan', live: s.livePlan, replayed: s.replayed.plan.name, reason: 'a plan change the ledger has no entry of (nothing to adjust) cannot be replayed', explained: false });
    }
  }
  return out;
}

function safeJson(value: Buffer): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(value.toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
