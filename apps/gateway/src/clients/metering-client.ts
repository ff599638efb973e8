import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ProtoFiles, ReserveBatchReply, ReserveBatchRequest, ReserveReply, ReserveRequest } from '@tollgate/contracts';
import { bearerMetadata, grpcLoaderOptions, internalToken } from '@tollgate/platform';

/** The gateway's port to metering: credit holds and balances. */
export interface CreditReservations {
  reserve(req: ReserveRequest): Promise<ReserveReply>;
  release(reservationId: string, orgId: string): Promise<void>;
  balance(orgId: string): Promise<number>;
  close(): void;
}

type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, opts: { deadline: number }, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;

/**
 * gRPC client of tollgate.metering.v1.Reservations, with a deadline on every call and the internal token
 * (TOLLGATE_INTERNAL_TOKEN unless given; with NODE_ENV=production a missing one stops the gateway at start).
 */
export class GrpcMeteringClient implements CreditReservations {
  private readonly client: grpc.Client & Record<string, Unary<unknown, unknown>>;
  private readonly metadata: grpc.Metadata;
  private readonly queued: Array<{ req: ReserveRequest; resolve: (r: ReserveReply) => void; reject: (e: Error) => void }> = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly maxInFlight = 2;

  constructor(address: string, token: string = internalToken().token, private readonly timeoutMs = 3000) {
    this.metadata = bearerMetadata(token);
    const def = protoLoader.loadSync(ProtoFiles.Metering, grpcLoaderOptions);
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      tollgate: { metering: { v1: { Reservations: grpc.ServiceClientConstructor } } };
    };
    const Ctor = pkg.tollgate.metering.v1.Reservations;
    this.client = new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Unary<unknown, unknown>>;
  }

  private call<Req, Res>(method: string, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      const fn = this.client[method] as Unary<Req, Res>;
      fn.call(this.client, req, this.metadata.clone(), { deadline: Date.now() + this.timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  }

  /**
   * Holds are coalesced: the holds asked for in one turn of the event loop go together (sent on setImmediate, once
   * every socket the loop found ready has been handled), and a hold asked for while `maxInFlight` batches are out
   * waits for one of them to come back, then goes with every hold queued meanwhile in one ReserveBatch call. An idle
   * gateway sends each hold at once; a busy one pays one gRPC call (and metering one group commit) per batch instead
   * of per paid call.
   */
  reserve(req: ReserveRequest): Promise<ReserveReply> {
    return new Promise((resolve, reject) => {
      this.queued.push({ req, resolve, reject });
      if (this.inFlight < this.maxInFlight && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          if (this.inFlight < this.maxInFlight) this.sendQueued();
        });
      }
    });
  }

  private sendQueued(): void {
    if (this.queued.length === 0) return;
    const batch = this.queued.splice(0, 500);
    this.inFlight++;
    const done = () => {
      this.inFlight--;
      this.sendQueued();
    };
    if (batch.length === 1) {
      const only = batch[0]!;
      this.call<ReserveRequest, ReserveReply>('Reserve', only.req).then(only.resolve, only.reject).finally(done);
      return;
    }
    this.call<ReserveBatchRequest, ReserveBatchReply>('ReserveBatch', { requests: batch.map((q) => q.req) })
      .then(
        (reply) =>
          batch.forEach((q, i) => {
            const r = reply.results[i];
            if (r?.reply && r.errorCode === 0) q.resolve(r.reply);
            else q.reject(Object.assign(new Error(r?.errorMessage || 'no answer for this hold'), { code: r?.errorCode ?? grpc.status.INTERNAL }));
          }),
        (err: Error) => batch.forEach((q) => q.reject(err)),
      )
      .finally(done);
  }

  async release(reservationId: string, orgId: string): Promise<void> {
    await this.call('Release', { reservationId, orgId });
  }

  async balance(orgId: string): Promise<number> {
    return (await this.call<{ orgId: string }, { balance: number }>('GetBalance', { orgId })).balance;
  }

  close(): void {
    this.client.close();
  }
}
