'use strict';
// Before the apps start: does the database remember offsets of the request-completed topic beyond the broker's log?
// Then the two were not used together (a second clone with its own .tollgate/kafka and the same database, a broker
// whose log was recreated), and metering will move those offsets to the log's start (see realign in
// libs/messaging/src/kafka-messaging.ts). Nothing here changes anything: it says so before it happens.

// Topics.RequestCompleted in libs/contracts (scripts run without the build).
const RequestCompletedTopic = 'tollgate.request-completed.v1';

/**
 * The stored offsets of `topic` past their partition's log end, one line each. A database without the
 * consumer_offsets table (never migrated) or without rows is not ahead; a topic the broker lacks has every log end at 0.
 */
async function offsetsAhead({ databaseUrl, brokers, topic = RequestCompletedTopic }) {
  const { Client } = require('pg');
  const db = new Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 });
  await db.connect();
  let rows;
  try {
    const table = await db.query(`SELECT to_regclass('consumer_offsets') AS t`);
    if (table.rows[0].t === null) return [];
    rows = (await db.query(`SELECT group_id, partition, next_offset FROM consumer_offsets WHERE topic = $1 ORDER BY group_id, partition`, [topic])).rows;
  } finally {
    await db.end();
  }
  if (rows.length === 0) return [];
  const { Kafka, logLevel } = require('kafkajs');
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING, retry: { retries: 2 }, connectionTimeout: 3000 }).admin();
  await admin.connect();
  const ends = new Map();
  try {
    if ((await admin.listTopics()).includes(topic)) for (const p of await admin.fetchTopicOffsets(topic)) ends.set(p.partition, BigInt(p.high));
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
  return rows
    .map((r) => ({ group: r.group_id, partition: r.partition, stored: BigInt(r.next_offset), end: ends.get(r.partition) ?? 0n }))
    .filter((r) => r.stored > r.end);
}

/** Prints a warning naming both offsets when the database is ahead of the broker's log; a failed check is only a note. */
async function warnIfOffsetsAhead({ databaseUrl, brokers, log }) {
  let ahead;
  try {
    ahead = await offsetsAhead({ databaseUrl, brokers });
  } catch (e) {
    log(`could not compare the database's consumer offsets with the broker's log (${e.message})`);
    return;
  }
  if (ahead.length === 0) return;
  const where = ahead.map((a) => `${RequestCompletedTopic}[${a.partition}] stored ${a.stored}, log end ${a.end} (group ${a.group})`).join('; ');
  log(
    `warning: this database was used with another broker log: its stored offsets are past the topic's end (${where}). ` +
      'Metering will read the topic from its start (event ids keep anything from being charged twice) and log an error for each partition; ' +
      "events of the other log it never read are not in this one. To keep the two apart, give this clone its own database (DATABASE_URL).",
  );
}

module.exports = { offsetsAhead, warnIfOffsetsAhead, RequestCompletedTopic };
