#!/usr/bin/env node
// `npm run up`: Kafka (a local KRaft broker unless KAFKA_BROKERS is set), the local PostgreSQL, migrations, the apps,
// a demo org and key, the console link and a curl to paste. Ctrl-C stops everything it started.
//
// Its own small supervisor (not the test suite's stack): the apps run with the environment as given (every variable
// of .env.example, NODE_ENV development unless set), on the documented ports. The example upstream starts only when
// UPSTREAM_URL is not set; otherwise the gateway fronts that API. On a terminal the apps log readable text, each line
// prefixed with its app; off a terminal (or with NODE_ENV=production) they log JSON, one object per line, as is.
const { spawn } = require('node:child_process');
const { randomBytes } = require('node:crypto');
const { existsSync } = require('node:fs');
const { join } = require('node:path');
const { createDemo } = require('./demo');
const { ensureKafka, ensureDatabase } = require('./infra');

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

const children = new Map();
let stopping = false;

function start(app, extraEnv, port, host) {
  const child = spawn(process.execPath, [join(root, 'dist', 'apps', app, 'src', 'main.js')], {
    env: { ...appEnv, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = [];
  const label = paint('36', `[${app}]`.padEnd(19));
  let partial = '';
  const onData = (b) => {
    const lines = (partial + b.toString('utf8')).split('\n');
    partial = lines.pop();
    for (const line of lines) {
      if (!line) continue;
      tail.push(line);
      if (tail.length > 50) tail.shift();
      // Text: prefixed with the app. JSON: untouched, so each line stays one parseable object.
      process.stdout.write(text ? `${label} ${line}\n` : `${line}\n`);
    }
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const entry = { app, child, tail, url: `http://${reach(host)}:${port}` };
  children.set(app, entry);
  child.on('exit', (code, signal) => {
    if (stopping) return;
    say(paint('31', `${app} stopped (${signal ?? `exit ${code}`}); stopping everything`));
    void shutdown(1);
  });
  return entry;
}

async function ready(entry, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (entry.child.exitCode !== null) throw new Error(`${entry.app} exited with ${entry.child.exitCode}:\n${entry.tail.join('\n')}`);
    try {
      const res = await fetch(`${entry.url}/health/ready`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`${entry.app} not ready at ${entry.url} after ${timeoutMs / 1000} s:\n${entry.tail.join('\n')}`);
}

let kafka;
async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  say('stopping ...');
  // The gateway first (no new calls), then what it depends on.
  for (const app of ['gateway', 'query', 'metering', 'example-upstream']) {
    const entry = children.get(app);
    if (!entry || entry.child.exitCode !== null || entry.child.signalCode !== null) continue;
    await new Promise((resolve) => {
      const t = setTimeout(() => entry.child.kill('SIGKILL'), 10_000);
      entry.child.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      entry.child.kill('SIGTERM');
    });
  }
  if (kafka) await kafka.stop();
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

let appEnv;

async function main() {
  const started = Date.now();
  if (!existsSync(join(root, 'dist', 'apps', 'gateway', 'src', 'main.js'))) throw new Error('no build in dist/: run `npm run build` (npm run up does)');
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
    await ready(start('example-upstream', { EXAMPLE_UPSTREAM_PORT: String(ports.upstream) }, ports.upstream, '127.0.0.1'));
    say(`${paint('32', 'ready')}  example-upstream  ${upstreamUrl} (the four seed APIs' fake; set UPSTREAM_URL to front your own)`);
  } else {
    const seen = await fetch(upstreamUrl, { method: 'HEAD', signal: AbortSignal.timeout(3000) }).then((r) => `answers ${r.status}`, (e) => `not answering (${e.cause?.code ?? e.message})`);
    say(`upstream          ${upstreamUrl} (UPSTREAM_URL, ${seen}); the example upstream is not started`);
  }
  const metering = start('metering', { METERING_PORT: String(ports.metering), METERING_GRPC_PORT: String(ports.meteringGrpc) }, ports.metering, env.METERING_HOST);
  await ready(metering);
  say(`${paint('32', 'ready')}  metering          ${metering.url} (admin API, console at /console; gRPC :${ports.meteringGrpc})`);
  const query = start('query', { QUERY_PORT: String(ports.query), QUERY_GRPC_PORT: String(ports.queryGrpc) }, ports.query, env.QUERY_HOST);
  await ready(query);
  say(`${paint('32', 'ready')}  query             ${query.url} (gRPC :${ports.queryGrpc})`);
  const gateway = start('gateway', { GATEWAY_PORT: String(ports.gateway) }, ports.gateway, env.GATEWAY_HOST);
  await ready(gateway);
  say(`${paint('32', 'ready')}  gateway           ${gateway.url} -> ${upstreamUrl} (profile ${profile})`);

  const demo = await createDemo({ meteringUrl: metering.url, adminToken, profile });

  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  process.stdout.write(`
Tollgate is up in ${seconds}s: profile ${profile}, in front of ${upstreamUrl}${ownUpstream ? ' (the example upstream)' : ''}.

  Console   ${metering.url}/console#/orgs/demo
            sign in with ${env.TOLLGATE_ADMIN_TOKEN ? 'your TOLLGATE_ADMIN_TOKEN' : `the admin token ${paint('1', adminToken)} (made up for this run; set TOLLGATE_ADMIN_TOKEN to choose it)`}
  Demo key  ${paint('1', demo.key)} (org "demo", plan ${demo.plan})
  CLI       TOLLGATE_ADMIN_URL=${metering.url} TOLLGATE_ADMIN_TOKEN=... npm run -s tollgate -- orgs list
${env.TOLLGATE_INTERNAL_TOKEN ? '' : `  More gateways against this metering: TOLLGATE_INTERNAL_TOKEN=${internalToken} npm run start:gateway\n`}
Try:

  ${demo.curl(gateway.url)}

Ctrl-C stops everything.
`);
}

main().catch((e) => {
  say(paint('31', e.message));
  void shutdown(1);
});
