#!/usr/bin/env node
// `npm run up`: Kafka (a local KRaft broker unless KAFKA_BROKERS is set), the local PostgreSQL, migrations, the apps,
// a demo org and key, the console link and a curl to paste. Ctrl-C stops everything it started.
//
// A supervisor (scripts/supervisor.js, not the test suite's stack): an app or the broker it started that dies once
// the system is up is restarted with a backoff, one line per event, while the rest keep running; a crash loop (5 exits
// within 60 s) stops everything with exit 1. The apps run with the environment as given (every variable of
// .env.example, NODE_ENV development unless set), on the documented ports. The example upstream starts only when
// UPSTREAM_URL is not set; otherwise the gateway fronts that API. On a terminal the apps log readable text, each line
// prefixed with its app; off a terminal (or with NODE_ENV=production) they log JSON, one object per line, as is.
const { randomBytes } = require('node:crypto');
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { createDemo } = require('./demo');
const { ensureKafka, ensureDatabase } = require('./infra');
const { launchApp, Supervisor } = require('./supervisor');

const root = join(__dirname, '..');
const env = process.env;
const production = env.NODE_ENV === 'production';
const tty = process.stdout.isTTY === true;
const text = env.LOG_FORMAT ? env.LOG_FORMAT === 'text' : tty && !production;
const color = text && tty && !env.NO_COLOR;
const paint = (code, s) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
const say = (m) => process.stderr.write(`${paint('1', 'up:')} ${m}\n`);

const profile = env.TOLLGATE_PROFILE || 'trackyard';
const num = (name, fallback) => {
  const v = env[name] === undefined || env[name] === '' ? fallback : Number(env[name]);
  if (!Number.isInteger(v) || v < 1 || v > 65535) throw new Error(`${name} must be a port number (got "${env[name]}")`);
  return v;
};
// Where to reach an app that binds `host`: a wildcard bind is reached on the loopback.
const reach = (host) => (!host || host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host);

// Ctrl-C, SIGTERM or a crash loop: everything stops, in order.
const supervisor = new Supervisor({ say: (m) => say(paint('33', m)), onCrashLoop: () => void shutdown(1) });
const urls = {};
let appEnv;

/** Launches `app` (again, on a restart); its output is printed as it comes (launchApp keeps its last lines for errors). */
function launcher(app, extraEnv, port, host) {
  const label = paint('36', `[${app}]`.padEnd(19));
  const url = `http://${reach(host)}:${port}`;
  urls[app] = url;
  return async () => {
    const p = launchApp({
      root,
      app,
      env: { ...appEnv, ...extraEnv },
      readyUrl: `${url}/health/ready`,
      // Text: prefixed with the app. JSON: untouched, so each line stays one parseable object.
      onLine: (line) => process.stdout.write(text ? `${label} ${line}\n` : `${line}\n`),
    });
    return { exited: p.exited, ready: () => p.ready(), stop: () => p.stop() };
  };
}

/**
 * The broker up started, as a supervised unit: its first launch hands over the broker main() started (whose failures
 * are setup errors, printed as they are), later ones start it again on the same data.
 */
let kafka;
function brokerLauncher() {
  let first = kafka;
  return async () => {
    if (!first) kafka = await ensureKafka({ log: say });
    first = null;
    return { exited: kafka.exited, ready: async () => undefined, stop: () => kafka.stop() };
  };
}

let stopping = false;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  say('stopping ...');
  // The gateway first (no new calls), then what it depends on, the broker last.
  await supervisor.stopAll(['gateway', 'query', 'metering', 'example-upstream', 'kafka']);
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

async function main() {
  const started = Date.now();
  if (!existsSync(join(root, 'dist', 'apps', 'gateway', 'src', 'main.js'))) throw new Error('no build in dist/: run `npm run build` (npm run up does)');
  // up restarts the broker it started as one unit; a cluster's nodes are restarted one by one, which it does not do.
  if (!env.KAFKA_BROKERS && Number(env.TOLLGATE_KAFKA_BROKERS || 1) !== 1) {
    throw new Error('TOLLGATE_KAFKA_BROKERS: npm run up supervises one local broker; start a cluster with `TOLLGATE_KAFKA_BROKERS=3 npm run infra:kafka` and run up with the KAFKA_BROKERS, KAFKA_REPLICATION_FACTOR and KAFKA_MIN_INSYNC_REPLICAS it prints');
  }
  if (production && !env.TOLLGATE_ADMIN_TOKEN) throw new Error('NODE_ENV=production: set TOLLGATE_ADMIN_TOKEN (e.g. export TOLLGATE_ADMIN_TOKEN=$(openssl rand -hex 24))');
  const ports = {
    gateway: num('GATEWAY_PORT', 8080),
    metering: num('METERING_PORT', 8081),
    meteringGrpc: num('METERING_GRPC_PORT', 50052),
    query: num('QUERY_PORT', 8082),
    queryGrpc: num('QUERY_GRPC_PORT', 50051),
    upstream: num('EXAMPLE_UPSTREAM_PORT', 8090),
  };
  // Tokens: the environment's, or made up for this run (and printed: you need the admin one to sign in).
  const adminToken = env.TOLLGATE_ADMIN_TOKEN || randomBytes(18).toString('base64url');
  const internalToken = env.TOLLGATE_INTERNAL_TOKEN || randomBytes(24).toString('base64url');
  const ownUpstream = !env.UPSTREAM_URL;
  const upstreamUrl = env.UPSTREAM_URL || `http://127.0.0.1:${ports.upstream}`;

  kafka = await ensureKafka({ log: say });
  // One given by KAFKA_BROKERS or already running is not ours to restart.
  if (kafka.started) await supervisor.start('kafka', brokerLauncher());
  const databaseUrl = await ensureDatabase(env.DATABASE_URL, { log: say });
  await require('./offsets-check').warnIfOffsetsAhead({ databaseUrl, brokers: kafka.brokers, log: (m) => say(paint('33', m)) });
  appEnv = {
    ...env,
    NODE_ENV: env.NODE_ENV || 'development',
    LOG_FORMAT: text ? 'text' : 'json',
    // Start-up chatter (every route mapped) is noise for a person; LOG_LEVEL=log shows it.
    LOG_LEVEL: env.LOG_LEVEL || (text ? 'warn' : 'log'),
    KAFKA_BROKERS: kafka.brokers,
    DATABASE_URL: databaseUrl,
    TOLLGATE_PROFILE: profile,
    TOLLGATE_ADMIN_TOKEN: adminToken,
    TOLLGATE_INTERNAL_TOKEN: internalToken,
    UPSTREAM_URL: upstreamUrl,
    METERING_GRPC_URL: env.METERING_GRPC_URL || `${reach(env.METERING_HOST)}:${ports.meteringGrpc}`,
    QUERY_URL: env.QUERY_URL || `http://${reach(env.QUERY_HOST)}:${ports.query}`,
  };
  if (ownUpstream) {
    await supervisor.start('example-upstream', launcher('example-upstream', { EXAMPLE_UPSTREAM_PORT: String(ports.upstream) }, ports.upstream, '127.0.0.1'));
    say(`${paint('32', 'ready')}  example-upstream  ${upstreamUrl} (the four seed APIs' fake; set UPSTREAM_URL to front your own)`);
  } else {
    const seen = await fetch(upstreamUrl, { method: 'HEAD', signal: AbortSignal.timeout(3000) }).then((r) => `answers ${r.status}`, (e) => `not answering (${e.cause?.code ?? e.message})`);
    say(`upstream          ${upstreamUrl} (UPSTREAM_URL, ${seen}); the example upstream is not started`);
  }
  await supervisor.start('metering', launcher('metering', { METERING_PORT: String(ports.metering), METERING_GRPC_PORT: String(ports.meteringGrpc) }, ports.metering, env.METERING_HOST));
  say(`${paint('32', 'ready')}  metering          ${urls.metering} (admin API, console at /console; gRPC :${ports.meteringGrpc})`);
  await supervisor.start('query', launcher('query', { QUERY_PORT: String(ports.query), QUERY_GRPC_PORT: String(ports.queryGrpc) }, ports.query, env.QUERY_HOST));
  say(`${paint('32', 'ready')}  query             ${urls.query} (gRPC :${ports.queryGrpc})`);
  await supervisor.start('gateway', launcher('gateway', { GATEWAY_PORT: String(ports.gateway) }, ports.gateway, env.GATEWAY_HOST));
  say(`${paint('32', 'ready')}  gateway           ${urls.gateway} -> ${upstreamUrl} (profile ${profile})`);

  const demo = await createDemo({ meteringUrl: urls.metering, adminToken, profile });

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`
Tollgate is up in ${seconds}s: profile ${profile}, in front of ${upstreamUrl}${ownUpstream ? ' (the example upstream)' : ''}.

  Console   ${urls.metering}/console#/orgs/demo
            sign in with ${env.TOLLGATE_ADMIN_TOKEN ? 'your TOLLGATE_ADMIN_TOKEN' : `the admin token ${paint('1', adminToken)} (made up for this run; set TOLLGATE_ADMIN_TOKEN to choose it)`}
  Demo key  ${paint('1', demo.key)} (org "demo", plan ${demo.plan})
  CLI       TOLLGATE_ADMIN_URL=${urls.metering} TOLLGATE_ADMIN_TOKEN=... npm run -s tollgate -- orgs list
${env.TOLLGATE_INTERNAL_TOKEN ? '' : `  More gateways against this metering: TOLLGATE_INTERNAL_TOKEN=${internalToken} npm run start:gateway\n`}
Try:

  ${demo.curl(urls.gateway)}

An app that dies is restarted (0.5 s backoff, doubling to 10 s; 5 exits within 60 s stop everything).
Ctrl-C stops everything.
`);
}

main().catch((e) => {
  say(paint('31', e.message));
  void shutdown(1);
});
