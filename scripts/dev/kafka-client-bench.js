#!/usr/bin/env node
/*
 * kafkajs against @platformatic/kafka, producing what a gateway produces (issue 9): request-completed-sized JSON
 * events keyed by 100 orgs over a 6-partition topic, acks=all, idempotent, one send in flight, the events of one
 * event-loop turn (or of the time the previous send took) coalesced into the next send, exactly as
 * libs/messaging's SerialisedPublisher does. Reports, per library, at a fixed offered rate and at saturation:
 * events/s, the client process's CPU and the broker's CPU per event, and the ack latency of a lone event.
 *
 *   npm i --no-save @platformatic/kafka@1.35.0     (not a dependency: this script only measures it)
 *   node scripts/with-infra.js node scripts/dev/kafka-client-bench.js [rate=1000] [seconds=10]
 *
 * The broker is the one scripts/with-infra.js started (KAFKA_BROKERS); its pid is found by its port.
 */
const { execSync } = require('node:child_process');
const { readFileSync } = require('node:fs');
const { Kafka, Partitioners, logLevel } = require('kafkajs');

const brokers = (process.env.KAFKA_BROKERS || '127.0.0.1:9092').split(',');
const rate = Number(process.argv[2] || 1000);
const seconds = Number(process.argv[3] || 10);
const topic = `client-bench-${Date.now().toString(36)}`;
const value = JSON.stringify({
  event_id: '0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b', schema_version: 1, occurred_at: new Date().toISOString(), org_id: 'org-00',
  api_key_id: 'key_0123456789abcdef', subject: { kind: 'key', id: 'key_0123456789abcdef' }, profile: 'trackyard', method: 'POST',
  route: '/search', path: '/api/external/v1/search', status_code: 200, response_time_ms: 3, entities: [], reservation_id: '0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c',
});

function brokerPid() {
  const port = brokers[0].split(':').pop();
  const out = execSync(`ss -ltnpH 'sport = :${port}'`).toString();
  return Number(/pid=(\d+)/.exec(out)[1]);
}
const ticks = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return Number(f[11]) + Number(f[12]); };
const hz = Number(execSync('getconf CLK_TCK').toString());
const selfCpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

/** SerialisedPublisher's coalescing over a `send(messages)` of one library. */
function coalescing(send) {
  let queue = [];
  let sending = false;
  const drain = async () => {
    while (queue.length > 0) {
      const pending = queue;
      queue = [];
      try {
        await send(pending.map((p) => p.message));
        for (const p of pending) p.resolve();
      } catch (e) {
        for (const p of pending) p.reject(e);
      }
    }
    sending = false;
  };
  return (message) => new Promise((resolve, reject) => {
    queue.push({ message, resolve, reject });
    if (!sending) { sending = true; setImmediate(() => void drain()); }
  });
}

async function kafkajsClient() {
  const kafka = new Kafka({ clientId: 'client-bench', brokers, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  return {
    publish: coalescing((messages) => producer.sendBatch({ acks: -1, topicMessages: [{ topic, messages }] })),
    close: () => producer.disconnect(),
  };
}

async function platformaticClient() {
  const { Producer, stringSerializers } = require('@platformatic/kafka');
  const producer = new Producer({ clientId: 'client-bench', bootstrapBrokers: brokers, serializers: stringSerializers, idempotent: true, acks: -1 });
  return {
    publish: coalescing((messages) => producer.send({ messages: messages.map((m) => ({ topic, key: m.key, value: m.value })) })),
    close: () => producer.close(),
  };
}

async function measure(name, client, offered) {
  const broker = brokerPid();
  const { publish, close } = await client();
  // Warm-up (JIT, metadata, producer id), then the timed run.
  for (let i = 0; i < 2000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, j) => publish({ key: `org-${(i + j) % 100}`, value })));
  const lone = [];
  for (let i = 0; i < 200; i++) { const t = performance.now(); await publish({ key: `org-${i % 100}`, value }); lone.push(performance.now() - t); }
  lone.sort((a, b) => a - b);
  const cpu0 = selfCpuMs(); const b0 = ticks(broker); const t0 = performance.now();
  let sent = 0;
  const inFlight = new Set();
  if (offered > 0) {
    // A fixed rate, in 1 ms steps, as calls arrive at a gateway.
    await new Promise((done) => {
      const timer = setInterval(() => {
        const due = Math.floor(((performance.now() - t0) / 1000) * offered) - sent;
        for (let i = 0; i < due; i++) { const p = publish({ key: `org-${sent++ % 100}`, value }); inFlight.add(p); p.finally(() => inFlight.delete(p)); }
        if (performance.now() - t0 >= seconds * 1000) { clearInterval(timer); done(); }
      }, 1);
    });
  } else {
    // Saturation: 256 callers, each publishing again as soon as its event is acknowledged.
    const until = t0 + seconds * 1000;
    await Promise.all(Array.from({ length: 256 }, async () => { while (performance.now() < until) await publish({ key: `org-${sent++ % 100}`, value }); }));
  }
  await Promise.all(inFlight);
  const wall = (performance.now() - t0) / 1000;
  const row = {
    client: name, offered: offered > 0 ? `${offered}/s` : 'saturation', 'events/s': Math.round(sent / wall),
    'client CPU µs/event': Math.round(((selfCpuMs() - cpu0) * 1000) / sent), 'broker CPU µs/event': Math.round((((ticks(broker) - b0) / hz) * 1e6) / sent),
    'lone ack p50 ms': lone[100].toFixed(2), 'lone ack p90 ms': lone[180].toFixed(2),
  };
  await close();
  return row;
}

async function main() {
  const admin = new Kafka({ clientId: 'client-bench-admin', brokers, logLevel: logLevel.NOTHING }).admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 6 }], waitForLeaders: true });
  const rows = [];
  // Alternated, twice each, so that neither library always runs on a warmer broker.
  for (const offered of [rate, 0]) {
    for (let round = 0; round < 2; round++) {
      rows.push(await measure('kafkajs', kafkajsClient, offered));
      rows.push(await measure('@platformatic/kafka', platformaticClient, offered));
    }
  }
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
  console.table(rows);
}

main().catch((e) => { console.error(e); process.exit(1); });
