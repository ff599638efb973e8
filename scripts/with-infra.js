#!/usr/bin/env node
// `node scripts/with-infra.js <command ...>`: runs a command (the test suite, the benchmarks) with real Kafka
// and PostgreSQL in its environment, started the way `npm run up` starts them, and stops what it started.
// Tests get their own database (`tollgate_test`, recreated each run) and, when the broker is ours, fresh
// broker data, so every run starts from nothing. With DATABASE_URL set, both are kept.
const { spawn } = require('node:child_process');
const { ensureKafka, ensureDatabase, defaultDatabaseUrl } = require('./infra');

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
  const fresh = !process.env.DATABASE_URL;
  const databaseUrl = await ensureDatabase(testDatabaseUrl(), { log, fresh });
  // Fresh broker data only with a fresh database: offsets stored in a kept database belong to the kept log.
  const kafka = await ensureKafka({ log, fresh });
  const child = spawn(cmd, args, {
    stdio: 'inherit',
    shell: false,
    env: { ...process.env, ...kafka.env, KAFKA_BROKERS: kafka.brokers, DATABASE_URL: databaseUrl },
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
