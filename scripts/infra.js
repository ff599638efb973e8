// The real infrastructure Tollgate needs, started by the project itself (no Docker):
// - Kafka: KAFKA_BROKERS when set; else a broker already answering on 127.0.0.1:9092 is reused; else a
//   single-node KRaft Apache Kafka 3.9.2 is resolved from Maven Central (scripts/kafka/pom.xml) and started on
//   Java 17, with its state in .tollgate/kafka; TOLLGATE_KAFKA_BROKERS=3 starts a three-node cluster of the same
//   jars instead. The brokers we start are ours to stop: stop() ends them (TERM, then KILL after 30 s) and pid
//   files let the next run kill those left behind by a killed parent.
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

/**
 * One node's configuration. A cluster's nodes are combined controller+broker nodes (KRaft), each a voter of the
 * controller quorum; its internal topics (consumer offsets, transactions) get `replication` copies and need
 * `minInsync` of them for a write, as the apps' topics do (KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS).
 */
function brokerProperties(dataDir, port, controllerPort, { nodeId = 1, voters = `1@127.0.0.1:${controllerPort}`, replication = 1, minInsync = 1 } = {}) {
  return [
    'process.roles=broker,controller',
    `node.id=${nodeId}`,
    `controller.quorum.voters=${voters}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${dataDir}`,
    'num.partitions=6',
    `default.replication.factor=${replication}`,
    `min.insync.replicas=${minInsync}`,
    `offsets.topic.replication.factor=${replication}`,
    'offsets.topic.num.partitions=10',
    `transaction.state.log.replication.factor=${replication}`,
    `transaction.state.log.min.isr=${minInsync}`,
    // A replica is out of sync after 10 s without fetching (the default 30 s holds acks=all writes longer when a
    // node dies); an unclean leader (one that was out of sync) is never elected: acknowledged writes stay.
    ...(replication > 1 ? ['replica.lag.time.max.ms=10000', 'unclean.leader.election.enable=false'] : []),
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    'log.retention.hours=168',
    'log.segment.bytes=67108864',
    '',
  ].join('\n');
}

/** How many copies of each partition a cluster of `count` nodes keeps (at most 3), and how many a write needs. */
function replicationFor(count) {
  const replication = Math.min(3, count);
  return { replication, minInsync: replication >= 3 ? 2 : 1 };
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
 * One broker JVM on a formatted data directory: starts it and returns `{ pid, exited, stop, alive }`. Its pid file
 * lets the next run kill one left behind by a killed parent.
 */
function launchNode({ home, props, cp, pidFile, heap }) {
  const jvm = spawn(
    'java',
    [
      ...heap,
      '-XX:+UseG1GC', '-Djava.awt.headless=true',
      `-Dkafka.logs.dir=${home}`,
      `-Dlog4j.configuration=file:${path.join(__dirname, 'kafka', 'log4j.properties')}`,
      '-cp', cp, 'kafka.Kafka', props,
    ],
    { cwd: home, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const node = { pid: jvm.pid, alive: true, stderr: '' };
  jvm.stderr.on('data', (d) => (node.stderr = (node.stderr + d).slice(-4000)));
  fs.writeFileSync(pidFile, String(jvm.pid));
  // Settles when the broker process ends, however it ends (a supervisor restarts it, `infra:kafka` reports it).
  node.exited = new Promise((resolve) => jvm.once('exit', (code, signal) => resolve({ code, signal })));
  jvm.once('exit', () => (node.alive = false));
  node.stop = async () => {
    if (!node.alive) return fs.rmSync(pidFile, { force: true });
    const gone = new Promise((r) => jvm.once('exit', r));
    jvm.kill('SIGTERM');
    const timer = setTimeout(() => jvm.kill('SIGKILL'), 30_000);
    await gone;
    clearTimeout(timer);
    fs.rmSync(pidFile, { force: true });
  };
  node.signal = (sig) => {
    if (node.alive) jvm.kill(sig);
  };
  // A parent that exits without calling stop() (an uncaught error) still takes its broker with it.
  process.once('exit', () => {
    if (node.alive) jvm.kill('SIGKILL');
  });
  return node;
}

/**
 * Kafka for this run. Returns `{ brokers, stop }`; `stop` only stops brokers this call started.
 * Options: `fresh` wipes the broker's data first (tests), `log` prints progress, `name` keeps the broker's data,
 * configuration, pid file and log in `.tollgate/<name>` (default `kafka`; the fault suite runs a broker of its own
 * that it kills and restarts on the same data), `data` names its data directory there (default `data-test` when
 * fresh, else `data`). The result's `pid` is the broker's process, when started here, and `exited` a promise of its
 * `{ code, signal }` once it ends.
 *
 * `brokers` (default TOLLGATE_KAFKA_BROKERS, else 1) > 1 starts a KRaft cluster of that many combined
 * controller+broker nodes from the same jars, sharing one cluster id, every node a voter of the controller quorum:
 * node i (1-based) listens on TOLLGATE_KAFKA_PORT + i - 1, its controller on TOLLGATE_KAFKA_PORT + count + i - 1
 * (a single broker's controller stays one port up), with its state in `.tollgate/<name>/node-<i>`. The internal
 * topics get min(3, count) copies (min in-sync 2 from 3 nodes). The result then also has `nodes`, one per node
 * `{ id, address, pid, alive, kill(signal), restart() }` (restart starts a node again on its data), `exited`
 * settles when any node ends, and `env` is what the apps need to create their topics the same way
 * (KAFKA_REPLICATION_FACTOR, KAFKA_MIN_INSYNC_REPLICAS).
 */
async function ensureKafka({
  log = () => undefined,
  fresh = false,
  name = 'kafka',
  data = fresh ? 'data-test' : 'data',
  brokers: count = Number(process.env.TOLLGATE_KAFKA_BROKERS || 1),
} = {}) {
  if (!Number.isSafeInteger(count) || count < 1 || count > 9) throw new Error(`TOLLGATE_KAFKA_BROKERS: must be a whole number from 1 to 9 (got "${count}")`);
  if (process.env.KAFKA_BROKERS) {
    const brokers = process.env.KAFKA_BROKERS;
    if (!(await kafkaAnswers(brokers))) throw new Error(`Kafka is not reachable at KAFKA_BROKERS=${brokers}`);
    return { brokers, started: false, stop: async () => undefined, env: { KAFKA_BROKERS: brokers } };
  }
  // TOLLGATE_KAFKA_PORT moves the local broker (and its controller, one port up), e.g. for a second checkout.
  const port = Number(process.env.TOLLGATE_KAFKA_PORT || 9092);
  const ports = Array.from({ length: count }, (_, i) => ({ id: i + 1, port: port + i, controllerPort: port + count + i }));
  const brokers = ports.map((p) => `127.0.0.1:${p.port}`).join(',');
  const { replication, minInsync } = replicationFor(count);
  const env = { KAFKA_BROKERS: brokers, ...(count > 1 ? { KAFKA_REPLICATION_FACTOR: String(replication), KAFKA_MIN_INSYNC_REPLICAS: String(minInsync) } : {}) };
  const open = [];
  for (const p of ports) if (await portOpen('127.0.0.1', p.port)) open.push(p.port);
  if (open.length > 0) {
    if (open.length === count && (await kafkaAnswers(brokers))) {
      log(`reusing the Kafka broker${count > 1 ? 's' : ''} already running at ${brokers}`);
      return { brokers, started: false, stop: async () => undefined, env };
    }
    throw new Error(`port ${open.join(', ')} is taken by something that is not ${count > 1 ? `a ${count}-node Kafka cluster` : 'a Kafka broker'}; set KAFKA_BROKERS to a broker`);
  }

  const home = path.join(state, name);
  fs.mkdirSync(home, { recursive: true });
  const libs = kafkaJars(log);
  const cp = `${libs}/*`;
  const voters = ports.map((p) => `${p.id}@127.0.0.1:${p.controllerPort}`).join(',');
  // A single broker keeps its files where they always were (`.tollgate/<name>`); a cluster's node i in node-<i>.
  const nodeHome = (id) => (count === 1 ? home : path.join(home, `node-${id}`));
  const specs = ports.map((p) => {
    const dir = nodeHome(p.id);
    fs.mkdirSync(dir, { recursive: true });
    const dataDir = path.join(dir, data);
    const pidFile = path.join(dir, 'broker.pid');
    killLeftover(pidFile, log);
    if (fresh) fs.rmSync(dataDir, { recursive: true, force: true });
    const props = path.join(dir, fresh ? 'server-test.properties' : 'server.properties');
    fs.writeFileSync(props, brokerProperties(dataDir, p.port, p.controllerPort, { nodeId: p.id, voters, replication, minInsync }));
    run('java', ['-cp', cp, 'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', props, '--ignore-formatted'], 'formatting the Kafka data directory');
    return { ...p, home: dir, props, pidFile };
  });

  const started = Date.now();
  log(`starting Kafka 3.9.2 (KRaft${count > 1 ? `, ${count} nodes, replication ${replication}, min in-sync ${minInsync}` : ''}) at ${brokers}, logs in ${path.relative(root, home)}${count > 1 ? '/node-*' : ''}/server.log`);
  // A cluster's nodes share the machine: each gets less heap than a lone broker.
  const heap = count === 1 ? ['-Xms256m', '-Xmx1g'] : ['-Xms128m', '-Xmx512m'];
  const launch = (s) => launchNode({ home: s.home, props: s.props, cp, pidFile: s.pidFile, heap });
  const running = new Map(specs.map((s) => [s.id, launch(s)]));
  const stop = async () => {
    await Promise.all([...running.values()].map((n) => n.stop()));
  };

  const answers = async (addresses, nodes) => {
    if (nodes === 1) return kafkaAnswers(addresses);
    const { Kafka, logLevel } = require('kafkajs');
    const admin = new Kafka({ brokers: addresses.split(','), logLevel: logLevel.NOTHING, retry: { retries: 1 }, connectionTimeout: 2000 }).admin();
    try {
      await admin.connect();
      return (await admin.describeCluster()).brokers.length === nodes;
    } catch {
      return false;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  };
  for (;;) {
    const dead = specs.find((s) => !running.get(s.id).alive);
    if (dead) {
      await stop();
      throw new Error(`Kafka exited during start-up; see ${path.join(dead.home, 'server.log')}\n${running.get(dead.id).stderr}`);
    }
    let open = true;
    for (const p of ports) open = open && (await portOpen('127.0.0.1', p.port));
    if (open && (await answers(brokers, count))) break;
    if (Date.now() - started > 90_000) {
      await stop();
      throw new Error(`Kafka did not answer at ${brokers} within 90 s; see ${path.join(home, count > 1 ? 'node-*' : '', 'server.log')}`);
    }
    await sleep(300);
  }
  log(`Kafka ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const first = running.get(1);
  if (count === 1) return { brokers, started: true, stop, pid: first.pid, exited: first.exited, env };

  const nodes = specs.map((s) => ({
    id: s.id,
    address: `127.0.0.1:${s.port}`,
    get pid() {
      return running.get(s.id).pid;
    },
    get alive() {
      return running.get(s.id).alive;
    },
    kill: (sig = 'SIGKILL') => running.get(s.id).signal(sig),
    /** Starts the node again on its data (after a kill); resolves once it listens. */
    restart: async () => {
      await running.get(s.id).stop();
      const node = launch(s);
      running.set(s.id, node);
      const t = Date.now();
      while (!(await portOpen('127.0.0.1', s.port))) {
        if (!node.alive) throw new Error(`Kafka node ${s.id} exited during start-up; see ${path.join(s.home, 'server.log')}\n${node.stderr}`);
        if (Date.now() - t > 90_000) throw new Error(`Kafka node ${s.id} did not listen on ${s.port} within 90 s`);
        await sleep(300);
      }
    },
  }));
  const exited = Promise.race(specs.map((s) => running.get(s.id).exited));
  return { brokers, started: true, stop, pid: first.pid, exited, nodes, env };
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
