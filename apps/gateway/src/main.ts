import 'reflect-metadata';
import { createServer } from 'node:http';
import express from 'express';
import Redis from 'ioredis';
import { NestFactory } from '@nestjs/core';
import { EventLimits } from '@tollgate/contracts';
import { createKafkaMessaging } from '@tollgate/messaging';
import { connectDatabase, KeyAuthenticator } from '@tollgate/persistence';
import { ConfigError, configureHttp, createLogger, metricsAccess, onShutdown, runMain } from '@tollgate/platform';
import { loadProfile } from '@tollgate/profiles';
import { CounterStore, MemoryCounterStore, systemClock } from '@tollgate/rate-limit';
import { RedisCounterStore } from '@tollgate/rate-limit-redis';
import { openEventSpool } from './clients/event-spool';
import { GrpcMeteringClient } from './clients/metering-client';
import { Upstream } from './clients/upstream';
import { gatewayConfig } from './config';
import { gatewayOpenApi } from './docs/gateway-openapi';
import { GatewayModule } from './gateway.module';
import { LeasedCredits } from './pipeline/credit-leases';
import { CreditPolicy, EventualCredits, StrictCredits } from './pipeline/credit-policy';
import { GatewayPipeline } from './pipeline/gateway-pipeline';

runMain('gateway', async () => {
  // Every setting, checked before anything starts (config.ts).
  const config = gatewayConfig();
  const { port, host, trustedProxies } = config;
  const logger = createLogger('gateway', config.logging);
  const profile = loadProfile(config.profile.name, config.profile.dir);

  const ds = await connectDatabase({ url: config.database.url, migrate: false, poolSize: config.database.poolSize });
  const messaging = createKafkaMessaging({ clientId: 'tollgate-gateway', ...config.kafka, log: (_l, message, extra) => logger.warn({ msg: message, ...extra }) });
  // Events go through a durable spool on this gateway's disk when the broker can't acknowledge them in time, and
  // from the start when the broker is unreachable then: the topics are checked once it answers.
  let topicsChecked = false;
  const connect = async () => {
    if (!topicsChecked) await messaging.ensureTopics();
    topicsChecked = true;
    return messaging.publisher();
  };
  const events = await openEventSpool(connect, config.spool, config.kafka.maxMessageBytes, logger);

  let limits: CounterStore = new MemoryCounterStore();
  let redis: Redis | null = null;
  if (config.redisUrl) {
    redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2, enableAutoPipelining: true });
    try {
      await redis.connect();
    } catch (e) {
      throw new ConfigError(`Redis is not reachable at REDIS_URL=${config.redisUrl} (${(e as Error).message})`);
    }
    limits = new RedisCounterStore(redis, { prefix: 'tollgate:' });
  }

  const metering = new GrpcMeteringClient(config.meteringGrpcUrl, config.internalToken.token);
  // The credit policy is picked once, here: strict spends leases of credits held at metering (GATEWAY_CREDIT_LEASES=0:
  // a hold per call), eventual trusts the last known balance.
  const credits: CreditPolicy =
    profile.credits.enforcement === 'eventual'
      ? new EventualCredits(metering, systemClock)
      : config.creditLeases
        ? new LeasedCredits(metering, systemClock, { gateway: config.gatewayName })
        : new StrictCredits(metering, systemClock);
  const upstream = new Upstream(config.upstream.url, 30000, config.upstream.maxBodyBytes);
  const query = new Upstream(config.queryUrl, 5000);
  const pipeline = new GatewayPipeline({
    profile,
    auth: new KeyAuthenticator(ds, config.keyCacheTtlMs),
    limits,
    credits,
    upstream,
    query,
    events,
    trustedProxies,
    clock: systemClock,
    serverTiming: config.serverTiming,
    // An event and the record batch around it (its overhead is far below 4 KiB) must fit what the broker takes.
    maxEventBytes: Math.min(EventLimits.eventBytes, config.kafka.maxMessageBytes - 4096),
  });

  const metricsOnPublicPort = metricsAccess(config.metrics, { publicPort: true });
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
