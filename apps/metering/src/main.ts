import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { MeteringConsumerGroup, Topics } from '@tollgate/contracts';
import { createKafkaMessaging } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { configureHttp, consumerLag, createLogger, fieldValidationPipe, onShutdown, refuseUndecodablePaths, runMain } from '@tollgate/platform';
import { AdminService } from './admin/admin.service';
import { meteringConfig } from './config';
import { DeadLetterRelay } from './dead-letters/dead-letter-relay';
import { ConsumerStallWatch } from './ledger/consumer-stall';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { MeteringModule } from './metering.module';
import { LedgerOutboxRelay } from './outbox/ledger-outbox-relay';
import { HoldSweeper } from './reservations/hold-sweeper';
import { ReservationService } from './reservations/reservation.service';
import { startReservationsThread } from './reservations/reservations-thread';
import { Notifier } from './webhooks/notifier';
import { WebhookSender } from './webhooks/webhook-sender';
import { WebhooksService } from './webhooks/webhooks.service';

runMain('metering', async () => {
  // Every setting, checked before anything starts (config.ts).
  const config = meteringConfig();
  const { port, grpcPort, host } = config;
  const logger = createLogger('metering', config.logging);
  const token = config.adminToken;
  const internal = config.internalToken;
  const catalog = ProfileCatalog.load(config.profile.name, config.profile.dir);

  const ds = await connectDatabase({ url: config.database.url, migrate: true, poolSize: config.database.poolSize });
  const messaging = createKafkaMessaging({
    clientId: 'tollgate-metering',
    ...config.kafka,
    log: (level, message, extra) => (level === 'error' ? logger.error({ msg: message, ...extra }) : logger.warn({ msg: message, ...extra })),
  });
  await messaging.ensureTopics();
  const publisher = await messaging.publisher();

  // The hold sweeper's releases; the gateways' holds go to the reservations thread.
  const reservations = new ReservationService(ds, catalog);
  const admin = new AdminService(ds, catalog);
  const consumer = new RequestCompletedConsumer(ds, catalog);
  const urlRules = config.webhooks.urlRules;
  const webhooks = new WebhooksService(ds, urlRules, catalog);
  const batches = messaging.batchConsumer({
    groupId: MeteringConsumerGroup,
    topic: Topics.RequestCompleted,
    storedOffsets: (topic, partitions) => consumer.storedOffsets(topic, partitions),
    moveStoredOffset: (topic, partition, from, to) => consumer.moveStoredOffset(topic, partition, from, to),
    handle: (batch) => consumer.handle(batch),
    // Every partition of a fetch handed over at once: the consumer meters them in one transaction (see handle).
    partitionsConsumedConcurrently: config.partitionsConcurrently,
    // Crash tests only: die between the database commit and the Kafka offset commit.
    afterStored: config.failpoint === 'metering-after-db-commit' ? () => process.kill(process.pid, 'SIGKILL') : undefined,
  });
  // Readiness: a consumer in its group whose partitions stay behind their log's end, offsets unmoved, is not ready.
  const stall = new ConsumerStallWatch({
    topic: Topics.RequestCompleted,
    stallMs: config.stallMs,
    assignment: () => batches.assignment(),
    storedOffsets: (topic, partitions) => consumer.storedOffsets(topic, partitions),
    broker: messaging,
  });
  // Reservations answer gateways from their own thread (see reservations-thread.ts); this one keeps the rest.
  const reservationsThread = await startReservationsThread(
    {
      profile: config.profile,
      databaseUrl: config.database.url,
      logging: config.logging,
      url: `${host}:${grpcPort}`,
      bearerToken: internal.token,
      poolSize: config.database.reservationsPoolSize,
    },
    (why) => {
      logger.error({ msg: `the reservations thread died (${why}); metering stops so that it is restarted whole` });
      process.exit(1);
    },
  );
  const app = await NestFactory.create(
    MeteringModule.register({ ds, messaging, admin, webhooks, adminToken: token.token, consuming: () => batches.joined() && stall.progressing() }),
    { logger },
  );
  configureHttp(app, 'metering');
  refuseUndecodablePaths(app);
  app.useGlobalPipes(fieldValidationPipe());
  const openapi = SwaggerModule.createDocument(app, new DocumentBuilder().setTitle('Tollgate admin API').addBearerAuth().build());
  SwaggerModule.setup('docs', app, openapi, { jsonDocumentUrl: 'docs/openapi.json' });
  app.enableShutdownHooks();
  await app.listen(port, host);

  await batches.start();
  const relay = new LedgerOutboxRelay(ds, publisher);
  relay.start();
  // Dead letters are recorded with the batch that refused them and sent from here, after its commit.
  const deadLetters = new DeadLetterRelay(ds, publisher);
  deadLetters.start();
  // Webhooks: derived from the ledger and the usage log, delivered from here (see README, "Webhooks"). A pool of
  // their own: a backlog of deliveries never waits for, nor keeps, the connections the consumer meters with.
  const hooksDs = await connectDatabase({ url: config.database.url, migrate: false, poolSize: config.database.webhooksPoolSize });
  const notifier = new Notifier(hooksDs, config.webhooks.notifyIntervalMs);
  notifier.start();
  const sender = new WebhookSender(hooksDs, config.webhooks.policy, urlRules, config.webhooks.sendIntervalMs);
  sender.start();
  const holds = new HoldSweeper(ds, reservations, messaging, {
    groupId: MeteringConsumerGroup,
    topic: Topics.RequestCompleted,
    publishWindowMs: config.publishWindowMs,
  });
  const sweeper = setInterval(() => void holds.sweep().catch((e: Error) => logger.error({ msg: 'reservation sweep failed', error: e.message })), 5000);
  const lagProbe = setInterval(() => {
    void messaging.lag(MeteringConsumerGroup, Topics.RequestCompleted).then((n) => consumerLag.set(n)).catch(() => undefined);
    void stall.probe().catch((e: Error) => logger.warn({ msg: 'consumer progress probe failed', error: e.message }));
  }, 10000);
  sweeper.unref();
  lagProbe.unref();

  if (token.isDefault) logger.warn(`admin API uses the development token "${token.token}"; set TOLLGATE_ADMIN_TOKEN`);
  if (internal.isDefault) logger.warn('gRPC uses the development internal token; set TOLLGATE_INTERNAL_TOKEN (the same on every gateway)');
  logger.log(`metering ready: admin http://${host}:${port}, gRPC ${host}:${grpcPort}, profile ${catalog.active.name}`);

  onShutdown(async () => {
    clearInterval(sweeper);
    clearInterval(lagProbe);
    await batches.stop();
    await relay.stop();
    await deadLetters.stop();
    await notifier.stop();
    await sender.stop();
    await hooksDs.destroy();
    await app.close();
    await reservationsThread.stop();
    await messaging.close();
    await ds.destroy();
  });
});
