#!/usr/bin/env node
// `npm run infra:kafka`: the local Kafka broker `npm run up` uses (scripts/infra.js: KRaft, Kafka 3.9.2, data in
// .tollgate/kafka, TOLLGATE_KAFKA_PORT moves it), in the foreground until Ctrl-C, for running apps one by one with
// `npm run start:<app>`. A broker already answering on that port (or KAFKA_BROKERS) is reported and left alone.
const { ensureKafka } = require('./infra');

const say = (m) => process.stderr.write(`kafka: ${m}\n`);

async function main() {
  const kafka = await ensureKafka({ log: say });
  if (!kafka.started) {
    say(`nothing started: a broker already answers at ${kafka.brokers}`);
    return;
  }
  say(`running at ${kafka.brokers} (KAFKA_BROKERS=${kafka.brokers}); Ctrl-C stops it`);
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
  say(`the broker exited (${signal ?? `exit ${code}`}); see .tollgate/kafka/server.log`);
  process.exit(1);
}

main().catch((e) => {
  say(e.message);
  process.exit(1);
});
