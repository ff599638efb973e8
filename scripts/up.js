#!/usr/bin/env node
// `npm run up`: Kafka (a local KRaft broker unless KAFKA_BROKERS is set), the local PostgreSQL, migrations,
// the four apps, a demo org and key, and a curl to paste. Ctrl-C stops everything it started.
const { randomBytes } = require('node:crypto');
const { ensureKafka, ensureDatabase } = require('./infra');

const profile = process.env.TOLLGATE_PROFILE || 'trackyard';
const adminToken = process.env.TOLLGATE_ADMIN_TOKEN || 'dev-admin-token-change-me';
// What gateways present to metering's gRPC: the environment's, or one made up for this run.
const internalToken = process.env.TOLLGATE_INTERNAL_TOKEN || randomBytes(24).toString('base64url');
const log = (m) => process.stderr.write(`up: ${m}\n`);

const demo = {
  trackyard: { plan: 'starter', curl: (k) => `curl -i -X POST http://127.0.0.1:8080/api/external/v1/search -H "Authorization: Bearer ${k}" -H "Content-Type: application/json" -d '{"query":"upbeat music"}'` },
  beatpass: { plan: 'standard', curl: (k) => `curl -i http://127.0.0.1:8080/api/v1/tracks -H "Authorization: Bearer ${k}"` },
  trakt: { plan: 'standard', curl: (k) => `curl -i http://127.0.0.1:8080/shows/trending -H "trakt-api-key: ${k}"` },
  trace: { plan: 'standard', topUp: 100, curl: (k) => `curl -i http://127.0.0.1:8080/v1/companies/c_0042 -H "Authorization: Bearer ${k}"` },
};

async function main() {
  const started = Date.now();
  const kafka = await ensureKafka({ log });
  process.env.KAFKA_BROKERS = kafka.brokers;
  process.env.DATABASE_URL = await ensureDatabase(process.env.DATABASE_URL, { log });
  const { Stack } = require('../dist/test/support/stack');
  let stack;
  const shutdown = async (code) => {
    log('stopping ...');
    if (stack) await stack.stop();
    await kafka.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  try {
    stack = await Stack.start({
      profile,
      adminToken,
      internalToken,
      streamLogs: true,
      env: { LOG_LEVEL: process.env.LOG_LEVEL || 'log' },
      ports: {
        gateway: Number(process.env.GATEWAY_PORT || 8080),
        metering: Number(process.env.METERING_PORT || 8081),
        meteringGrpc: Number(process.env.METERING_GRPC_PORT || 50052),
        query: Number(process.env.QUERY_PORT || 8082),
        queryGrpc: Number(process.env.QUERY_GRPC_PORT || 50051),
        upstream: Number(process.env.EXAMPLE_UPSTREAM_PORT || 8090),
      },
    });
  } catch (e) {
    log(e.message);
    return shutdown(1);
  }
  const d = demo[profile] || demo.trackyard;
  const org = await stack.admin('POST', '/admin/orgs', { id: 'demo', name: 'Demo org', plan: d.plan });
  if (org.status !== 201 && org.status !== 409) throw new Error(`creating the demo org failed: ${JSON.stringify(org.body)}`);
  if (d.topUp) await stack.admin('POST', '/admin/orgs/demo/credits', { amount: d.topUp, reason: 'demo credits', idempotency_key: 'demo-welcome' });
  const key = await stack.admin('POST', '/admin/orgs/demo/keys', { name: `up ${new Date().toISOString()}` });
  if (key.status !== 201) throw new Error(`creating a demo key failed: ${JSON.stringify(key.body)}`);
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`
Tollgate is up (profile ${profile}) in ${seconds}s.
  gateway   http://127.0.0.1:${stack.ports.gateway}
  metering  http://127.0.0.1:${stack.ports.metering} (admin API, Authorization: Bearer ${adminToken}; docs at /docs)
  query     http://127.0.0.1:${stack.ports.query}
${process.env.TOLLGATE_INTERNAL_TOKEN ? '' : `  (more gateways against this metering: TOLLGATE_INTERNAL_TOKEN=${internalToken} npm run start:gateway)\n`}
Demo org "demo" (plan ${d.plan}), API key ${key.body.key}
Try:

  ${d.curl(key.body.key)}

Ctrl-C stops everything.
`);
}

main().catch((e) => {
  log(e.message);
  process.exit(1);
});
