import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { BalancesReply, BalancesRequest, EndLeaseRequest, MaxBalancesPerCall, ProtoFiles, ReserveReply, ReserveRequest, ReserveStreamReply, ReserveStreamRequest } from '@tollgate/contracts';
import { asError, Batcher, bearerMetadata, grpcLoaderOptions, internalToken } from '@tollgate/platform';

/** The gateway's port to metering: credit holds and balances. */
export interface CreditReservations {
  reserve(req: ReserveRequest): Promise<ReserveReply>;
  release(reservationId: string, orgId: string): Promise<void>;
  /** Stops drawing from a lease, `drawn` credits of it drawn for calls; resolves with the credits given back. */
  endLease(leaseId: string, orgId: string, drawn: number): Promise<number>;
  /**
   * The org's spendable balance at metering (holds and leases taken off). `ahead`: a refresh no call waits for,
   * which may wait a few milliseconds for other orgs' to go in the same GetBalances.
   */
  balance(orgId: string, ahead?: boolean): Promise<number>;
  close(): void;
}

type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, opts: { deadline: number }, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;
type HoldStream = grpc.ClientDuplexStream<ReserveStreamRequest, ReserveStreamReply>;

const failure = (message: string, code: grpc.status) => Object.assign(new Error(message), { code });

/**
 * gRPC client of tollgate.metering.v1.Reservations, with a deadline on every call and the internal token
 * (TOLLGATE_INTERNAL_TOKEN unless given; with NODE_ENV=production a missing one stops the gateway at start).
 */
export class GrpcMeteringClient implements CreditReservations {
  private readonly client: grpc.Client & Record<string, Unary<unknown, unknown>>;
  private readonly metadata: grpc.Metadata;
  /** Holds coalesced into batches of up to 500, two batches out at most (see reserve). */
  private readonly holds = new Batcher<ReserveRequest, ReserveReply>((requests) => this.sendHolds(requests), { maxItems: 500, concurrency: 2 });
  /** The ReserveStream the holds go on (opened on first use, again after it failed), and its unanswered batches. */
  private stream: HoldStream | null = null;
  private nextId = 1;
  private readonly awaiting = new Map<number, { answer: (outcome: ReserveStreamReply | Error) => void; stream: HoldStream; timer: NodeJS.Timeout }>();

  /**
   * Balance fetches, gathered into one GetBalances per batch: those a call waits for go at the end of the loop turn
   * (as holds do), two batches out at most; refreshes ahead of need (nobody waits: the cached balance is still
   * young enough) linger `refreshLingerMs` for company, one batch out at a time.
   */
  private readonly balancesWaited = new Batcher<string, number>((orgIds) => this.sendBalances(orgIds), { maxItems: MaxBalancesPerCall, concurrency: 2 });
  private readonly balancesAhead: Batcher<string, number>;
  /** Metering answered GetBalances UNIMPLEMENTED (an older metering): GetBalance per org from then on. */
  private oneByOne = false;

  /**
   * `refreshLingerMs`: how long a refresh ahead of need waits for others. Gateways refresh a balance once it is half
   * its max age old (0.5 s in eventual mode), so a refresh that lingers 50 ms still lands long before any call would
   * have to wait; with 100 orgs refreshing about twice a second, 50 ms gathers about ten per GetBalances where a
   * few ms would gather one or two (a unary call measured 4-5x the CPU of a message on an open stream).
   */
  constructor(address: string, token: string = internalToken().token, private readonly timeoutMs = 3000, refreshLingerMs = 50) {
    this.balancesAhead = new Batcher<string, number>((orgIds) => this.sendBalances(orgIds), { maxItems: MaxBalancesPerCall, linger: refreshLingerMs });
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
   * waits for one of them to come back, then goes with every hold queued meanwhile in one batch. An idle gateway
   * sends each hold at once; a busy one pays one message (and metering one group commit) per batch instead of per
   * paid call. Batches go on one long-lived ReserveStream: a unary call costs an HTTP/2 stream with its headers and
   * trailers each way, which measured 4-5x the CPU of a message on an open stream, on both sides.
   */
  reserve(req: ReserveRequest): Promise<ReserveReply> {
    return this.holds.add(req);
  }

  /** One batch of holds as one message on the stream; resolves with each hold's reply or error, in order. */
  private sendHolds(requests: ReserveRequest[]): Promise<Array<ReserveReply | Error>> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const stream = this.openStream();
      // No answer in time: the batch fails (its calls answer 503), and the stream is cancelled so that the next
      // batch goes on a new one rather than behind a metering or a connection that stopped answering. A hold
      // metering still decides later is settled or released like one whose unary call passed its deadline.
      const timer = setTimeout(() => {
        this.finish(id, failure(`metering did not answer a hold within ${this.timeoutMs} ms`, grpc.status.DEADLINE_EXCEEDED));
        stream.cancel();
      }, this.timeoutMs);
      const answer = (outcome: ReserveStreamReply | Error) => {
        if (outcome instanceof Error) return reject(outcome);
        resolve(
          requests.map((_, i) => {
            const r = outcome.results[i];
            return r?.reply && r.errorCode === 0 ? r.reply : failure(r?.errorMessage || 'no answer for this hold', r?.errorCode || grpc.status.INTERNAL);
          }),
        );
      };
      this.awaiting.set(id, { answer, stream, timer });
      stream.write({ id, requests } satisfies ReserveStreamRequest);
    });
  }

  private openStream(): HoldStream {
    if (this.stream) return this.stream;
    const open = (this.client['ReserveStream'] as unknown as (md: grpc.Metadata) => HoldStream).call(this.client, this.metadata.clone());
    const broken = (err: Error) => {
      if (this.stream === open) this.stream = null;
      for (const [id, pending] of [...this.awaiting]) if (pending.stream === open) this.finish(id, err);
    };
    open.on('data', (reply: ReserveStreamReply) => this.finish(Number(reply.id), reply));
    open.on('error', broken);
    open.on('end', () => broken(failure('metering closed the reservations stream', grpc.status.UNAVAILABLE)));
    this.stream = open;
    return open;
  }

  /** A batch's answer, or why it has none. Each batch is finished once: a late answer after a timeout is dropped. */
  private finish(id: number, outcome: ReserveStreamReply | Error): void {
    const pending = this.awaiting.get(id);
    if (!pending) return;
    this.awaiting.delete(id);
    clearTimeout(pending.timer);
    pending.answer(outcome);
  }

  async release(reservationId: string, orgId: string): Promise<void> {
    await this.call('Release', { reservationId, orgId });
  }

  async endLease(leaseId: string, orgId: string, drawn: number): Promise<number> {
    return Number((await this.call<EndLeaseRequest, { returned: number }>('EndLease', { leaseId, orgId, drawn })).returned);
  }

  balance(orgId: string, ahead = false): Promise<number> {
    return (ahead ? this.balancesAhead : this.balancesWaited).add(orgId);
  }

  /** One batch of balance fetches as one GetBalances; an org metering does not know fails alone, NOT_FOUND. */
  private async sendBalances(orgIds: string[]): Promise<Array<number | Error>> {
    if (this.oneByOne) return this.balancesOneByOne(orgIds);
    let reply: BalancesReply;
    try {
      reply = await this.call<BalancesRequest, BalancesReply>('GetBalances', { orgIds: [...new Set(orgIds)] });
    } catch (e) {
      if ((e as grpc.ServiceError).code !== grpc.status.UNIMPLEMENTED) throw e;
      this.oneByOne = true;
      return this.balancesOneByOne(orgIds);
    }
    const found = new Map(reply.balances.map((b) => [b.orgId, Number(b.balance)]));
    return orgIds.map((orgId) => found.get(orgId) ?? failure(`unknown org "${orgId}"`, grpc.status.NOT_FOUND));
  }

  private balancesOneByOne(orgIds: string[]): Promise<Array<number | Error>> {
    return Promise.all(
      orgIds.map((orgId) =>
        this.call<{ orgId: string }, { balance: number }>('GetBalance', { orgId }).then(
          (r) => Number(r.balance),
          asError,
        ),
      ),
    );
  }

  close(): void {
    this.stream?.end();
    this.client.close();
  }
}
