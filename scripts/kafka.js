#!/usr/bin/env node
// `npm run infra:kafka`: the local Kafka broker `npm run up` uses (scripts/infra.js: KRaft, Kafka 3.9.2, data in
// .tollgate/kafka, TOLLGATE_KAFKA_PORT moves it, TOLLGATE_KAFKA_BROKERS=3 makes it a three-node cluster), in the
// foreground until Ctrl-C, for running apps one by one with `npm run start:<app>`. A broker already answering on that port (or KAFKA_BROKERS) is reported and left alone.
const { ensureKafka } = require('./infra');

const say = (m) => process.stderr.write(`kafka: ${m}\n`);

async function main() {
  const kafka = await ensureKafka({ log: say });
  if (!kafka.started) {
    say(`nothing started: a broker already answers at ${kafka.brokers}`);
    return;
  }
  const env = Object.entries(kafka.env).map(([k, v]) => `${k}=${v}`).join(' ');
  say(`running at ${kafka.brokers} (${env}); Ctrl-C stops it`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    say('stopping ...');
    kafka.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // Stay up as long as the broker does; one that dies on its own ends this with an error.
  const { code, signal } = await kafka.exited;
  if (stopping) return;
  say(`${kafka.nodes ? 'a node' : 'the broker'} exited (${signal ?? `exit ${code}`}); see .tollgate/kafka/${kafka.nodes ? 'node-*/' : ''}server.log`);
  process.exit(1);
}

main().catch((e) => {
  say(e.message);
  process.exit(1);
});
