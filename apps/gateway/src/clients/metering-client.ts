import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ProtoFiles, ReserveReply, ReserveRequest } from '@tollgate/contracts';
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

  reserve(req: ReserveRequest): Promise<ReserveReply> {
    return this.call('Reserve', req);
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
