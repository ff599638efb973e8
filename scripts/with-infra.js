#!/usr/bin/env node
// `node scripts/with-infra.js <command ...>`: runs a command (the test suite, the benchmarks) with real Kafka
// and PostgreSQL in its environment, started the way `npm run up` starts them, and stops what it started.
// Tests get their own database (`tollgate_test`, recreated each run) and, when the broker is ours, fresh
// broker data, so every run starts from nothing. With DATABASE_URL set, both are kept.
// With TOLLGATE_TESTCONTAINERS=1 (or `require`) and a Docker engine answering, PostgreSQL, Kafka and Redis come from
// containers of the local images instead (scripts/containers.js), started for this run and removed after it; the
// command then also gets REDIS_URL.
const { spawn } = require('node:child_process');
const { ensureKafka, ensureDatabase, defaultDatabaseUrl } = require('./infra');
const { startContainers } = require('./containers');

const log = (m) => process.stderr.write(`infra: ${m}\n`);

function testDatabaseUrl() {
  if (process.env.DATABASE_URL) return process.env.DATABASE_URL;
  const u = new URL(defaultDatabaseUrl);
  u.pathname = `/${process.env.TOLLGATE_TEST_DATABASE || 'tollgate_test'}`;
  return u.toString();
}

async function main() {
  const [cmd, ...args] = process.argv.slice(2);
  if (!cmd) throw new Error('usage: with-infra.js <command> [args...]');
  const containers = await startContainers({ log, database: process.env.TOLLGATE_TEST_DATABASE || 'tollgate_test' });
  let databaseUrl;
  let kafka;
  const extra = {};
  if (containers) {
    try {
      databaseUrl = await ensureDatabase(containers.databaseUrl, { log, fresh: true });
      process.env.KAFKA_BROKERS = containers.brokers; // ensureKafka checks that it answers
      kafka = await ensureKafka({ log });
    } catch (e) {
      await containers.stop();
      throw e;
    }
    kafka.stop = containers.stop;
    extra.REDIS_URL = containers.redisUrl;
  } else {
    const fresh = !process.env.DATABASE_URL;
    databaseUrl = await ensureDatabase(testDatabaseUrl(), { log, fresh });
    // Fresh broker data only with a fresh database: offsets stored in a kept database belong to the kept log.
    kafka = await ensureKafka({ log, fresh });
  }
  const child = spawn(cmd, args, {
    stdio: 'inherit',
    shell: false,
    env: { ...process.env, ...kafka.env, KAFKA_BROKERS: kafka.brokers, DATABASE_URL: databaseUrl, ...extra },
  });
  const forward = (sig) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const code = await new Promise((resolve) => child.once('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
  await kafka.stop();
  process.exit(code);
}

main().catch((e) => {
  log(e.message);
  process.exit(1);
});
