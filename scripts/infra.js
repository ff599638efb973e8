// The real infrastructure Tollgate needs, started by the project itself (no Docker):
// - Kafka: KAFKA_BROKERS when set; else a broker already answering on 127.0.0.1:9092 is reused; else a
//   single-node KRaft Apache Kafka 3.9.2 is resolved from Maven Central (scripts/kafka/pom.xml) and started on
//   Java 17, with its state in .tollgate/kafka. The broker we start is ours to stop: stop() ends it (TERM, then
//   KILL after 30 s) and a pid file lets the next run kill one left behind by a killed parent.
// - PostgreSQL: DATABASE_URL (default the local server); the database is created when missing.
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

const root = path.join(__dirname, '..');
const state = path.join(root, '.tollgate');
const clusterId = 'dG9sbGdhdGUtbG9jYWwtMQ'; // fixed, so a formatted data dir is reused across runs
const defaultDatabaseUrl = 'postgres://postgres@127.0.0.1:5432/tollgate';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function portOpen(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

async function kafkaAnswers(brokers) {
  const { Kafka, logLevel } = require('kafkajs');
  const admin = new Kafka({ brokers: brokers.split(','), logLevel: logLevel.NOTHING, retry: { retries: 1 }, connectionTimeout: 2000 }).admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8' });
  if (r.error) throw new Error(`${what}: could not run ${cmd} (${r.error.message})`);
  if (r.status !== 0) throw new Error(`${what} failed (${cmd} exit ${r.status}):\n${(r.stdout || '') + (r.stderr || '')}`.trim());
  return r.stdout;
}

/** The broker's jars, resolved once from Maven Central into .tollgate/kafka/libs. */
function kafkaJars(log) {
  const dir = path.join(state, 'kafka', 'libs');
  const pom = path.join(__dirname, 'kafka', 'pom.xml');
  const stamp = path.join(dir, '.resolved');
  const wanted = fs.readFileSync(pom, 'utf8');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === wanted) return dir;
  log('resolving Apache Kafka 3.9.2 from Maven Central (first run only) ...');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  run('mvn', ['-B', '-q', '-f', pom, 'dependency:copy-dependencies', '-DincludeScope=runtime', `-DoutputDirectory=${dir}`], 'resolving the Kafka jars with Maven');
  fs.writeFileSync(stamp, wanted);
  return dir;
}

function brokerProperties(dataDir, port, controllerPort) {
  return [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${dataDir}`,
    'num.partitions=6',
    'default.replication.factor=1',
    'min.insync.replicas=1',
    'offsets.topic.replication.factor=1',
    'offsets.topic.num.partitions=10',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    'log.retention.hours=168',
    'log.segment.bytes=67108864',
    '',
  ].join('\n');
}

function killLeftover(pidFile, log) {
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  fs.rmSync(pidFile, { force: true });
  if (!pid) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // not running
  }
  log(`stopping a broker left behind by an earlier run (pid ${pid})`);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/**
 * Kafka for this run. Returns `{ brokers, stop }`; `stop` only stops a broker this call started.
 * Options: `fresh` wipes the broker's data first (tests), `log` prints progress, `name` keeps the broker's data,
 * configuration, pid file and log in `.tollgate/<name>` (default `kafka`; the fault suite runs a broker of its own
 * that it kills and restarts on the same data), `data` names its data directory there (default `data-test` when
 * fresh, else `data`). The result's `pid` is the broker's process, when started here, and `exited` a promise of its
 * `{ code, signal }` once it ends.
 */
async function ensureKafka({ log = () => undefined, fresh = false, name = 'kafka', data = fresh ? 'data-test' : 'data' } = {}) {
  if (process.env.KAFKA_BROKERS) {
    const brokers = process.env.KAFKA_BROKERS;
    if (!(await kafkaAnswers(brokers))) throw new Error(`Kafka is not reachable at KAFKA_BROKERS=${brokers}`);
    return { brokers, started: false, stop: async () => undefined };
  }
  // TOLLGATE_KAFKA_PORT moves the local broker (and its controller, one port up), e.g. for a second checkout.
  const port = Number(process.env.TOLLGATE_KAFKA_PORT || 9092);
  const controllerPort = port + 1;
  const brokers = `127.0.0.1:${port}`;
  if (await portOpen('127.0.0.1', port)) {
    if (await kafkaAnswers(brokers)) {
      log(`reusing the Kafka broker already running at ${brokers}`);
      return { brokers, started: false, stop: async () => undefined };
    }
    throw new Error(`port ${port} is taken by something that is not a Kafka broker; set KAFKA_BROKERS to a broker`);
  }

  const home = path.join(state, name);
  const dataDir = path.join(home, data);
  const pidFile = path.join(home, 'broker.pid');
  fs.mkdirSync(home, { recursive: true });
  killLeftover(pidFile, log);
  if (fresh) fs.rmSync(dataDir, { recursive: true, force: true });
  const libs = kafkaJars(log);
  const props = path.join(home, fresh ? 'server-test.properties' : 'server.properties');
  fs.writeFileSync(props, brokerProperties(dataDir, port, controllerPort));
  const cp = `${libs}/*`;
  run('java', ['-cp', cp, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props, '--ignore-formatted'], 'formatting the Kafka data directory');

  const started = Date.now();
  log(`starting Kafka 3.9.2 (KRaft) at ${brokers}, logs in ${path.relative(root, home)}/server.log`);
  const jvm = spawn(
    'java',
    [
      '-Xms256m', '-Xmx1g', '-XX:+UseG1GC', '-Djava.awt.headless=true',
      `-Dkafka.logs.dir=${home}`,
      `-Dlog4j.configuration=file:${path.join(__dirname, 'kafka', 'log4j.properties')}`,
      '-cp', cp, 'kafka.Kafka', props,
    ],
    { cwd: home, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  jvm.stderr.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  fs.writeFileSync(pidFile, String(jvm.pid));
  let exited = false;
  // Settles when the broker process ends, however it ends (a supervisor restarts it, `infra:kafka` reports it).
  const ended = new Promise((resolve) => jvm.once('exit', (code, signal) => resolve({ code, signal })));
  jvm.once('exit', () => (exited = true));

  const stop = async () => {
    if (exited) return fs.rmSync(pidFile, { force: true });
    const gone = new Promise((r) => jvm.once('exit', r));
    jvm.kill('SIGTERM');
    const timer = setTimeout(() => jvm.kill('SIGKILL'), 30_000);
    await gone;
    clearTimeout(timer);
    fs.rmSync(pidFile, { force: true });
  };
  // A parent that exits without calling stop() (an uncaught error) still takes its broker with it.
  process.once('exit', () => {
    if (!exited) jvm.kill('SIGKILL');
  });

  for (;;) {
    if (exited) throw new Error(`Kafka exited during start-up; see ${path.join(home, 'server.log')}\n${stderr}`);
    if ((await portOpen('127.0.0.1', port)) && (await kafkaAnswers(brokers))) break;
    if (Date.now() - started > 90_000) {
      await stop();
      throw new Error(`Kafka did not answer at ${brokers} within 90 s; see ${path.join(home, 'server.log')}`);
    }
    await sleep(300);
  }
  log(`Kafka ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { brokers, started: true, stop, pid: jvm.pid, exited: ended };
}

/** The database at `url` (default the local server's `tollgate`), created when missing. Returns the URL. */
async function ensureDatabase(url = process.env.DATABASE_URL || defaultDatabaseUrl, { log = () => undefined, fresh = false } = {}) {
  const { Client } = require('pg');
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, '')) || 'tollgate';
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new Client({ connectionString: admin.toString(), connectionTimeoutMillis: 5000 });
  try {
    await client.connect();
  } catch (e) {
    throw new Error(`PostgreSQL is not reachable at ${target.host} (DATABASE_URL): ${e.message}`);
  }
  try {
    const quoted = `"${name.replace(/"/g, '""')}"`;
    if (fresh) {
      await client.query(`DROP DATABASE IF EXISTS ${quoted} WITH (FORCE)`);
    }
    const exists = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (exists.rowCount === 0) {
      await client.query(`CREATE DATABASE ${quoted}`);
      log(`created database ${name}`);
    }
  } finally {
    await client.end();
  }
  return url;
}

module.exports = { ensureKafka, ensureDatabase, defaultDatabaseUrl, portOpen, kafkaJars };
