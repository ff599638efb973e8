// PostgreSQL, Kafka and Redis for a test run from containers (Testcontainers), on the images `npm run images` builds
// (tollgate/{postgres,kafka,redis}:local; no registry is needed). scripts/with-infra.js uses it when
// TOLLGATE_TESTCONTAINERS is set and a Docker engine answers (DOCKER_HOST or the default socket); the tests see the
// same seam as with the local services: DATABASE_URL, KAFKA_BROKERS and REDIS_URL.
//   TOLLGATE_TESTCONTAINERS=1        containers when an engine answers, the local services otherwise (said on stderr)
//   TOLLGATE_TESTCONTAINERS=require  containers, or fail (CI: scripts/ci-docker.sh)
// Testcontainers' reaper (Ryuk) is an image from a registry, so it is off unless TESTCONTAINERS_RYUK_DISABLED says
// otherwise: stop() removes the containers, and a killed run leaves them labelled org.testcontainers=true
// (scripts/ci-docker.sh removes those).
const crypto = require('node:crypto');
const net = require('node:net');

if (process.env.TESTCONTAINERS_RYUK_DISABLED === undefined) process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
// The engine publishes on this machine's loopback (scripts/ci-docker.sh: --ip=127.0.0.1); left to guess, Testcontainers
// may pick the bridge's gateway address instead.
if (process.env.TESTCONTAINERS_HOST_OVERRIDE === undefined) process.env.TESTCONTAINERS_HOST_OVERRIDE = '127.0.0.1';

function mode() {
  const v = (process.env.TOLLGATE_TESTCONTAINERS || '').trim().toLowerCase();
  if (v === '' || v === '0' || v === 'false') return 'off';
  if (v === 'require') return 'require';
  if (v === '1' || v === 'true') return 'auto';
  throw new Error(`TOLLGATE_TESTCONTAINERS=${process.env.TOLLGATE_TESTCONTAINERS}: use 1 (containers when an engine answers) or require`);
}

/** Whether a Docker engine answers, as Testcontainers finds it. */
async function engineAnswers(log) {
  try {
    const { getContainerRuntimeClient } = require('testcontainers');
    const client = await getContainerRuntimeClient();
    await client.info;
    return true;
  } catch (e) {
    log(`no Docker engine answers (${e.message.split('\n')[0]})`);
    return false;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A new broker creates its offsets topic on the first group lookup and loads it a moment later; until then group
 * calls answer NOT_COORDINATOR. The tests start once a group lookup succeeds, as they would on a broker that has served
 * a consumer before.
 */
async function coordinatorReady(brokers, timeoutMs = 60_000) {
  const { Kafka, logLevel } = require('kafkajs');
  const admin = new Kafka({ brokers: [brokers], logLevel: logLevel.NOTHING, retry: { retries: 0 } }).admin();
  const deadline = Date.now() + timeoutMs;
  try {
    await admin.connect();
    for (;;) {
      try {
        await admin.fetchOffsets({ groupId: 'tollgate-readiness', topics: ['__consumer_offsets'] });
        return;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`Kafka's group coordinator did not answer within ${timeoutMs / 1000} s (${e.message})`);
        await new Promise((r) => setTimeout(r, 300));
      }
    }
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Starts the three containers (in parallel) and returns `{ databaseUrl, brokers, redisUrl, stop }`, or null when
 * containers are not asked for or (TOLLGATE_TESTCONTAINERS=1) no engine answers.
 */
async function startContainers({ log = () => undefined, database = 'tollgate_test' } = {}) {
  const m = mode();
  if (m === 'off') return null;
  if (!(await engineAnswers(log))) {
    if (m === 'require') throw new Error('TOLLGATE_TESTCONTAINERS=require but no Docker engine answers (DOCKER_HOST or the default socket)');
    log('TOLLGATE_TESTCONTAINERS=1: using the local services');
    return null;
  }
  const { GenericContainer, Wait } = require('testcontainers');
  const started = Date.now();
  const password = crypto.randomBytes(12).toString('hex');
  // Kafka advertises the address clients use, so its host port is fixed before it starts: the same on both sides.
  const kafkaPort = await freePort();
  const specs = {
    postgres: new GenericContainer('tollgate/postgres:local')
      .withEnvironment({ POSTGRES_PASSWORD: password })
      .withExposedPorts(5432)
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/))
      .withStartupTimeout(120_000),
    kafka: new GenericContainer('tollgate/kafka:local')
      .withEnvironment({
        KAFKA_LISTENERS: `PLAINTEXT://0.0.0.0:${kafkaPort},CONTROLLER://127.0.0.1:9093`,
        KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://127.0.0.1:${kafkaPort}`,
        KAFKA_CONTROLLER_QUORUM_VOTERS: '1@127.0.0.1:9093',
        // As scripts/infra.js configures the local broker.
        KAFKA_NUM_PARTITIONS: '6',
        KAFKA_DEFAULT_REPLICATION_FACTOR: '1',
        KAFKA_MIN_INSYNC_REPLICAS: '1',
        KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS: '10',
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
        KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
        KAFKA_LOG_SEGMENT_BYTES: '67108864',
      })
      .withExposedPorts({ container: kafkaPort, host: kafkaPort })
      .withWaitStrategy(Wait.forLogMessage(/Transition from STARTING to STARTED/))
      .withStartupTimeout(180_000),
    redis: new GenericContainer('tollgate/redis:local')
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/))
      .withStartupTimeout(60_000),
  };
  const names = Object.keys(specs);
  const results = await Promise.allSettled(names.map((n) => specs[n].start()));
  const running = {};
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') running[names[i]] = r.value;
  });
  const stop = async () => {
    await Promise.allSettled(Object.values(running).map((c) => c.stop({ timeout: 10_000, removeVolumes: true })));
  };
  const failed = results.findIndex((r) => r.status === 'rejected');
  if (failed >= 0) {
    await stop();
    throw new Error(`the ${names[failed]} container did not start: ${results[failed].reason.message}`);
  }
  try {
    await coordinatorReady(`127.0.0.1:${kafkaPort}`);
  } catch (e) {
    await stop();
    throw e;
  }
  const pg = running.postgres;
  const url = new URL(`postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/${database}`);
  url.password = password;
  const result = {
    databaseUrl: url.toString(),
    brokers: `127.0.0.1:${kafkaPort}`,
    redisUrl: `redis://${running.redis.getHost()}:${running.redis.getMappedPort(6379)}`,
    stop,
  };
  log(`Testcontainers: PostgreSQL ${pg.getHost()}:${pg.getMappedPort(5432)}, Kafka ${result.brokers}, Redis ${result.redisUrl.slice(8)} from tollgate/*:local in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return result;
}

module.exports = { startContainers };
