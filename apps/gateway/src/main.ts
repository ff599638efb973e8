import 'reflect-metadata';
import { createServer } from 'node:http';
import express from 'express';
import Redis from 'ioredis';
import { NestFactory } from '@nestjs/core';
import { EventLimits } from '@tollgate/contracts';
import { createKafkaMessaging, maxMessageBytesFromEnv } from '@tollgate/messaging';
import { connectDatabase, KeyAuthenticator } from '@tollgate/persistence';
import { ConfigError, configureHttp, createLogger, intFromEnv, metricsAccess, onShutdown, runMain, strFromEnv } from '@tollgate/platform';
import { loadProfile } from '@tollgate/profiles';
import { CounterStore, MemoryCounterStore, systemClock } from '@tollgate/rate-limit';
import { RedisCounterStore } from '@tollgate/rate-limit-redis';
import { openEventSpool } from './clients/event-spool';
import { GrpcMeteringClient } from './clients/metering-client';
import { Upstream } from './clients/upstream';
import { gatewayOpenApi } from './docs/gateway-openapi';
import { GatewayModule } from './gateway.module';
import { hostname } from 'node:os';
import { LeasedCredits } from './pipeline/credit-leases';
import { CreditPolicy, EventualCredits, StrictCredits } from './pipeline/credit-policy';
import { GatewayPipeline } from './pipeline/gateway-pipeline';

runMain('gateway', async () => {
  const logger = createLogger('gateway');
  const port = intFromEnv('GATEWAY_PORT', 8080);
  const host = strFromEnv('GATEWAY_HOST', '127.0.0.1');
  const profile = loadProfile(strFromEnv('TOLLGATE_PROFILE', 'trackyard'));
  const trustedProxies = strFromEnv('TRUSTED_PROXIES', '').split(',').map((s) => s.trim()).filter(Boolean);

  const ds = await connectDatabase({ migrate: false, poolSize: intFromEnv('GATEWAY_DB_POOL', 5) });
  const messaging = createKafkaMessaging({ clientId: 'tollgate-gateway', log: (_l, message, extra) => logger.warn({ msg: message, ...extra }) });
  // Events go through a durable spool on this gateway's disk when the broker can't acknowledge them in time, and
  // from the start when the broker is unreachable then: the topics are checked once it answers.
  let topicsChecked = false;
  const connect = async () => {
    if (!topicsChecked) await messaging.ensureTopics();
    topicsChecked = true;
    return messaging.publisher();
  };
  const events = await openEventSpool(connect, port, logger);

  let limits: CounterStore = new MemoryCounterStore();
  let redis: Redis | null = null;
  if (process.env.REDIS_URL) {
    redis = new Redis(process.env.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 2, enableAutoPipelining: true });
    try {
      await redis.connect();
    } catch (e) {
      throw new ConfigError(`Redis is not reachable at REDIS_URL=${process.env.REDIS_URL} (${(e as Error).message})`);
    }
    limits = new RedisCounterStore(redis, { prefix: 'tollgate:' });
  }

  const metering = new GrpcMeteringClient(strFromEnv('METERING_GRPC_URL', '127.0.0.1:50052'));
  // The credit policy is picked once, here: strict spends leases of credits held at metering (GATEWAY_CREDIT_LEASES=0:
  // a hold per call), eventual trusts the last known balance.
  const leases = strFromEnv('GATEWAY_CREDIT_LEASES', '1');
  if (leases !== '0' && leases !== '1') throw new ConfigError(`GATEWAY_CREDIT_LEASES must be 0 or 1 (got "${leases}")`);
  const gatewayName = strFromEnv('GATEWAY_NAME', `${hostname()}:${port}`);
  const credits: CreditPolicy =
    profile.credits.enforcement === 'eventual'
      ? new EventualCredits(metering, systemClock)
      : leases === '1'
        ? new LeasedCredits(metering, systemClock, { gateway: gatewayName })
        : new StrictCredits(metering, systemClock);
  const upstream = new Upstream(strFromEnv('UPSTREAM_URL', 'http://127.0.0.1:8090'), 30000, intFromEnv('GATEWAY_UPSTREAM_MAX_BODY_BYTES', 64 * 1024 * 1024));
  const query = new Upstream(strFromEnv('QUERY_URL', 'http://127.0.0.1:8082'), 5000);
  const pipeline = new GatewayPipeline({
    profile,
    auth: new KeyAuthenticator(ds, intFromEnv('KEY_CACHE_TTL_MS', 2000)),
    limits,
    credits,
    upstream,
    query,
    events,
    trustedProxies,
    clock: systemClock,
    serverTiming: process.env.GATEWAY_SERVER_TIMING === '1',
    // An event and the record batch around it (its overhead is far below 4 KiB) must fit what the broker takes.
    maxEventBytes: Math.min(EventLimits.eventBytes, maxMessageBytesFromEnv() - 4096),
  });

  const metricsOnPublicPort = metricsAccess(process.env, { publicPort: true });
  if (!metricsOnPublicPort.digest && !metricsOnPublicPort.openWithoutToken) {
    logger.warn('GET /metrics answers 401 on this public port until TOLLGATE_METRICS_TOKEN is set (Prometheus sends it as a bearer token)');
  }
  const app = await NestFactory.create(
    GatewayModule.register(
      [
        { name: 'postgres', check: async () => (await ds.query('SELECT 1')).length === 1 },
        // Ready while calls can be recorded: the spool has room for a broker outage, or the broker answers (asked
        // only when the spool is nearly full: an unreachable broker makes the question slow).
        { name: 'kafka', check: async () => events.accepting() || (await messaging.ping()) },
      ],
      metricsOnPublicPort,
    ),
    { logger, bodyParser: false },
  );
  configureHttp(app, 'gateway');
  if (trustedProxies.length > 0) (app.getHttpAdapter().getInstance() as express.Express).set('trust proxy', false);
  const openapi = gatewayOpenApi(profile);
  app.use('/docs/openapi.json', (_req: express.Request, res: express.Response) => void res.json(openapi));
  await app.init();
  // Paid calls take a plain Node handler (no framework on the hot path); health, metrics and docs go to Nest.
  const nest = app.getHttpAdapter().getInstance() as express.Express;
  const server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => (pipeline.owns(req.url ?? '/') ? pipeline.serve(req, res) : nest(req, res)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const base = profile.base_path.replace(/\/+$/, '') || '/';
  logger.log(`gateway ready: http://${host}:${port}${base === '/' ? '' : base} (profile ${profile.name}, ${profile.credits.enforcement} credits, limits in ${redis ? 'Redis' : 'memory'})`);

  onShutdown(async () => {
    // Stop taking connections and let the calls in flight finish (their events published), within 7 s, so the
    // process is gone within 10 s of SIGTERM.
    server.closeIdleConnections();
    await Promise.race([new Promise((r) => server.close(r)), new Promise((r) => setTimeout(r, 7000).unref())]);
    server.closeAllConnections();
    await app.close();
    // What the leases did not draw comes back to the balance now, not at the sweeper's pace.
    await credits.close?.().catch(() => undefined);
    await events.close(1000);
    await messaging.close();
    metering.close();
    await upstream.close();
    await query.close();
    await redis?.quit();
    await ds.destroy();
  });
});
