import 'reflect-metadata';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { DynamicModule, Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ProtoFiles, ProtoPackages } from '@tollgate/contracts';
import { connectDatabase } from '@tollgate/persistence';
import { createLogger, grpcServerOptions, holdBatches, holdsDecided, RuntimeConfig } from '@tollgate/platform';
import { ProfileCatalog } from '@tollgate/ledger';
import { HoldTally, ReservationService } from './reservation.service';
import { ReservationsGrpcController } from './reservations.grpc.controller';

/**
 * Metering's gRPC reservations run on a thread of their own, with their own event loop and connection pool. A hold
 * is on the paid call's path: it must not wait while the main thread parses, prices and writes a consumer batch or
 * relays the outbox (profiles showed PostgreSQL idle in transaction, waiting for metering's one busy event loop).
 * Correctness does not depend on the thread: holds and settlements still serialise on each org's account row.
 *
 * The thread is part of metering, not a service of its own: it starts before metering is ready, and metering exits
 * if it dies (a supervisor restarts the whole process), so there is never a metering without reservations.
 */
/**
 * Everything the thread needs, taken from metering's checked configuration (config.ts) and handed over whole: the
 * thread reads no environment variable of its own, so it can't start with a database, profile directory or log
 * format other than the ones metering validated.
 */
export interface ReservationsThreadOptions {
  /** The active profile's name and the directory of profiles (ProfileCatalog.load; none: the shipped one). */
  profile: { name: string; dir?: string };
  /** PostgreSQL's URL, as metering uses it. */
  databaseUrl: string;
  logging: RuntimeConfig['logging'];
  /** host:port of the gRPC server. */
  url: string;
  /** Callers must present it as a bearer token (the gateways' internal token). */
  bearerToken: string;
  /** PostgreSQL connections of the thread's own pool. */
  poolSize: number;
}

export interface ReservationsThread {
  stop(): Promise<void>;
}

type FromThread = { ready: true } | { failed: string } | { tally: HoldTally };

/** How often the thread reports what it decided to metering's main thread, whose registry serves /metrics. */
const TallyEveryMs = 1000;

/** Starts the thread and resolves once its gRPC server listens; rejects with the thread's start-up error. */
export function startReservationsThread(opts: ReservationsThreadOptions, onDeath: (why: string) => void): Promise<ReservationsThread> {
  const worker = new Worker(join(__dirname, 'reservations-thread.js'), { workerData: opts });
  let stopping = false;
  return new Promise((resolve, reject) => {
    let started = false;
    worker.on('message', (m: FromThread) => {
      if ('tally' in m) {
        for (const [path, n] of Object.entries(m.tally.batches)) if (n > 0) holdBatches.inc({ path }, n);
        for (const [outcome, n] of Object.entries(m.tally.holds)) if (n > 0) holdsDecided.inc({ outcome }, n);
      } else if ('ready' in m) {
        started = true;
        resolve({
          stop: () => {
            stopping = true;
            worker.postMessage('stop');
            return new Promise<void>((done) => worker.once('exit', () => done()));
          },
        });
      } else reject(new Error(`reservations thread: ${m.failed}`));
    });
    worker.on('error', (e) => (started ? onDeath(e.message) : reject(e)));
    worker.on('exit', (code) => {
      if (!started) reject(new Error(`reservations thread exited with ${code} before it was ready`));
      else if (!stopping) onDeath(`exited with ${code}`);
    });
  });
}

@Module({})
class ReservationsModule {
  static register(reservations: ReservationService): DynamicModule {
    return { module: ReservationsModule, controllers: [ReservationsGrpcController], providers: [{ provide: ReservationService, useValue: reservations }] };
  }
}

/** The thread itself: its own pool, catalog and Nest gRPC microservice. */
async function runThread(opts: ReservationsThreadOptions): Promise<void> {
  const port = parentPort!;
  const logger = createLogger('metering', opts.logging);
  const ds = await connectDatabase({ url: opts.databaseUrl, migrate: false, poolSize: opts.poolSize });
  const catalog = ProfileCatalog.load(opts.profile.name, opts.profile.dir);
  const reservations = new ReservationService(ds, catalog);
  const app = await NestFactory.createMicroservice(
    ReservationsModule.register(reservations),
    { ...grpcServerOptions(ProtoPackages.Metering, ProtoFiles.Metering, opts.url, { bearerToken: opts.bearerToken }), logger },
  );
  await app.listen();
  // This thread's prom-client registry is not the one /metrics serves: its counts go to the main thread.
  setInterval(() => {
    const tally = reservations.takeTally();
    if (Object.values(tally.batches).some((n) => n > 0) || Object.values(tally.holds).some((n) => n > 0)) port.postMessage({ tally } satisfies FromThread);
  }, TallyEveryMs).unref();
  port.on('message', (m) => {
    if (m !== 'stop') return;
    void app
      .close()
      .then(() => ds.destroy())
      .catch((e: Error) => new Logger('reservations').error({ msg: 'stopping the reservations thread failed', error: e.message }))
      .finally(() => process.exit(0));
  });
  port.postMessage({ ready: true } satisfies FromThread);
}

if (!isMainThread && (workerData as { url?: unknown; databaseUrl?: unknown } | null)?.databaseUrl) {
  runThread(workerData as ReservationsThreadOptions).catch((e: Error) => {
    parentPort!.postMessage({ failed: e.message } satisfies FromThread);
    process.exit(1);
  });
}
