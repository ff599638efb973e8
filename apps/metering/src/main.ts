import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import { MeteringConsumerGroup, TopicPartitions, Topics } from '@tollgate/contracts';
import { createKafkaMessaging } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import {
  adminToken,
  configureHttp,
  consumerLag,
  createLogger,
  fieldValidationPipe,
  internalToken,
  intFromEnv,
  onShutdown,
  refuseUndecodablePaths,
  runMain,
  strFromEnv,
} from '@tollgate/platform';
import { AdminService } from './admin/admin.service';
import { DeadLetterRelay } from './dead-letters/dead-letter-relay';
import { ConsumerStallWatch } from './ledger/consumer-stall';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { MeteringModule } from './metering.module';
import { LedgerOutboxRelay } from './outbox/ledger-outbox-relay';
import { HoldSweeper } from './reservations/hold-sweeper';
import { ReservationService } from './reservations/reservation.service';
import { startReservationsThread } from './reservations/reservations-thread';
import { DefaultPolicy, urlRulesFromEnv } from './webhooks/delivery-policy';
import { Notifier } from './webhooks/notifier';
import { WebhookSender } from './webhooks/webhook-sender';
import { WebhooksService } from './webhooks/webhooks.service';

runMain('metering', async () => {
  const logger = createLogger('metering');
  const port = intFromEnv('METERING_PORT', 8081);
  const grpcPort = intFromEnv('METERING_GRPC_PORT', 50052);
  const host = strFromEnv('METERING_HOST', '127.0.0.1');
  const token = adminToken();
  const internal = internalToken();
  const catalog = ProfileCatalog.load(strFromEnv('TOLLGATE_PROFILE', 'trackyard'));
  // A gateway's longest time from a granted hold to its event acknowledged by Kafka (HoldSweeper).
  const publishWindowSeconds = intFromEnv('RESERVATION_PUBLISH_WINDOW_SECONDS', 120);

  const ds = await connectDatabase({ migrate: true, poolSize: intFromEnv('METERING_DB_POOL', 10) });
  const messaging = createKafkaMessaging({
    clientId: 'tollgate-metering',
    log: (level, message, extra) => (level === 'error' ? logger.error({ msg: message, ...extra }) : logger.warn({ msg: message, ...extra })),
  });
  await messaging.ensureTopics();
  const publisher = await messaging.publisher();

  // The hold sweeper's releases; the gateways' holds go to the reservations thread.
  const reservations = new ReservationService(ds, catalog);
  const admin = new AdminService(ds, catalog);
  const consumer = new RequestCompletedConsumer(ds, catalog);
  const urlRules = urlRulesFromEnv();
  const webhooks = new WebhooksService(ds, urlRules, catalog);
  const batches = messaging.batchConsumer({
    groupId: MeteringConsumerGroup,
    topic: Topics.RequestCompleted,
    storedOffsets: (topic, partitions) => consumer.storedOffsets(topic, partitions),
    moveStoredOffset: (topic, partition, from, to) => consumer.moveStoredOffset(topic, partition, from, to),
    handle: (batch) => consumer.handle(batch),
    // Every partition of a fetch handed over at once: the consumer meters them in one transaction (see handle).
    partitionsConsumedConcurrently: intFromEnv('METERING_PARTITIONS_CONCURRENTLY', TopicPartitions[Topics.RequestCompleted]),
    // Crash tests only: die between the database commit and the Kafka offset commit.
    afterStored: process.env.TOLLGATE_FAILPOINT === 'metering-after-db-commit' ? () => process.kill(process.pid, 'SIGKILL') : undefined,
  });
  // Readiness: a consumer in its group whose partitions stay behind their log's end, offsets unmoved, is not ready.
  const stall = new ConsumerStallWatch({
    topic: Topics.RequestCompleted,
    stallMs: intFromEnv('METERING_STALL_SECONDS', 120) * 1000,
    assignment: () => batches.assignment(),
    storedOffsets: (topic, partitions) => consumer.storedOffsets(topic, partitions),
    broker: messaging,
  });
  // Reservations answer gateways from their own thread (see reservations-thread.ts); this one keeps the rest.
  const reservationsThread = await startReservationsThread(
    { profile: catalog.active.name, url: `${host}:${grpcPort}`, bearerToken: internal.token, poolSize: intFromEnv('METERING_RESERVATIONS_DB_POOL', 4) },
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
  const hooksDs = await connectDatabase({ migrate: false, poolSize: intFromEnv('WEBHOOK_DB_POOL', 4) });
  const notifier = new Notifier(hooksDs, intFromEnv('WEBHOOK_NOTIFY_INTERVAL_MS', 250));
  notifier.start();
  const sender = new WebhookSender(hooksDs, {
    retryBaseMs: intFromEnv('WEBHOOK_RETRY_BASE_MS', DefaultPolicy.retryBaseMs),
    retryMaxMs: intFromEnv('WEBHOOK_RETRY_MAX_MS', DefaultPolicy.retryMaxMs),
    disableAfterMs: intFromEnv('WEBHOOK_DISABLE_AFTER_MS', DefaultPolicy.disableAfterMs),
    timeoutMs: intFromEnv('WEBHOOK_TIMEOUT_MS', DefaultPolicy.timeoutMs),
  }, urlRules, intFromEnv('WEBHOOK_SEND_INTERVAL_MS', 250));
  sender.start();
  const holds = new HoldSweeper(ds, reservations, messaging, {
    groupId: MeteringConsumerGroup,
    topic: Topics.RequestCompleted,
    publishWindowMs: publishWindowSeconds * 1000,
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
