import { DataSource } from 'typeorm';
import { MeteringConsumerGroup, Topics } from '@tollgate/contracts';
import { Messaging } from '@tollgate/messaging';
import { ProfileCatalog } from '@tollgate/ledger';
import { applyCommands, CommandQueue, recordedCommands } from './recorded-commands';
import { compare, Difference } from './kafka-replay-compare';
import { ScratchSchema, snapshotLive } from './scratch-schema';
import { TopicFeed } from './topic-feed';

export type { Difference };

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

async function whatIfTotals(scratch: DataSource): Promise<WhatIfLine[]> {
  const rows: Array<{ org_id: string; events: string; live: string | null; replayed: string }> = await scratch.query(
    `SELECT r.org_id, COUNT(*) AS events, SUM(l.credits) AS live, SUM(r.credits) AS replayed
       FROM usage_records r LEFT JOIN live_usage l USING (org_id, event_id) GROUP BY r.org_id ORDER BY r.org_id`,
  );
  return rows.map((r) => ({ orgId: r.org_id, events: Number(r.events), live: Number(r.live ?? 0), replayed: Number(r.replayed) }));
}
