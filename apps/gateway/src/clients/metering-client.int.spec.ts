import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { BalancesReply, BalancesRequest, ProtoFiles, ReserveRequest, ReserveStreamReply, ReserveStreamRequest } from '@tollgate/contracts';
import { grpcLoaderOptions } from '@tollgate/platform';
import { GrpcMeteringClient } from './metering-client';

type HoldStream = grpc.ServerDuplexStream<ReserveStreamRequest, ReserveStreamReply>;

/**
 * The gateway's hold client over a real gRPC connection, against a Reservations server whose ReserveStream each
 * test scripts (answering late, out of order, or not at all; the real metering is driven by the e2e tests): every
 * hold gets exactly one outcome, and a stream that stops answering is replaced. Balance fetches go in batches, one
 * GetBalances each.
 */
describe('GrpcMeteringClient over ReserveStream and GetBalances (real gRPC)', () => {
  let server: grpc.Server;
  let address: string;
  let onStream: (call: HoldStream) => void;
  let streams = 0;
  /** What GetBalances and GetBalance answer (each test scripts them), and what they were asked. */
  let balances: (req: BalancesRequest) => BalancesReply | grpc.ServiceError;
  let balancesAsked: string[][] = [];
  let balanceAsked: string[] = [];

  beforeAll(async () => {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(ProtoFiles.Metering, grpcLoaderOptions)) as unknown as {
      tollgate: { metering: { v1: { Reservations: grpc.ServiceClientConstructor } } };
    };
    server = new grpc.Server();
    const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED });
    server.addService(pkg.tollgate.metering.v1.Reservations.service, {
      Reserve: unimplemented,
      ReserveBatch: unimplemented,
      Release: unimplemented,
      GetBalance: (call: grpc.ServerUnaryCall<{ orgId: string }, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        balanceAsked.push(call.request.orgId);
        cb(null, { orgId: call.request.orgId, balance: 5 });
      },
      GetBalances: (call: grpc.ServerUnaryCall<BalancesRequest, BalancesReply>, cb: grpc.sendUnaryData<BalancesReply>) => {
        balancesAsked.push(call.request.orgIds);
        const reply = balances(call.request);
        if ('code' in reply) cb(reply);
        else cb(null, reply);
      },
      ReserveStream: (call: HoldStream) => {
        streams++;
        onStream(call);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    address = `127.0.0.1:${port}`;
  });

  afterAll(() => server?.forceShutdown());
  beforeEach(() => {
    streams = 0;
    balancesAsked = [];
    balanceAsked = [];
  });

  const hold = (orgId: string): ReserveRequest => ({ reservationId: `r-${orgId}`, orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: new Date().toISOString() });
  const granted = (r: ReserveRequest) => ({ reply: { granted: true, reservationId: r.reservationId, requested: 1, shortfall: 0, balance: 7 }, errorCode: 0, errorMessage: '' });

  it('sends the holds of one loop turn as one batch on one stream, and answers each by the id of its batch, in any order', async () => {
    const seen: ReserveStreamRequest[] = [];
    onStream = (call) => {
      call.on('data', (req: ReserveStreamRequest) => {
        seen.push(req);
        // The first batch is answered after the second.
        setTimeout(() => call.write({ id: req.id, results: req.requests.map(granted) }), seen.length === 1 ? 200 : 0);
      });
    };
    const client = new GrpcMeteringClient(address, 'token');
    try {
      const first = Promise.all([client.reserve(hold('a')), client.reserve(hold('b'))]);
      await new Promise((r) => setTimeout(r, 20));
      const second = client.reserve(hold('c'));
      expect((await second).reservationId).toBe('r-c');
      expect((await first).map((r) => r.reservationId)).toEqual(['r-a', 'r-b']);
      expect(seen.map((b) => b.requests.map((q) => q.orgId))).toEqual([['a', 'b'], ['c']]);
      expect(streams).toBe(1);
    } finally {
      client.close();
    }
  });

  it('has at most two batches out: holds asked for meanwhile wait for an answer, then go together in one batch of at most 500', async () => {
    const seen: ReserveStreamRequest[] = [];
    const held: Array<() => void> = [];
    onStream = (call) =>
      call.on('data', (req: ReserveStreamRequest) => {
        seen.push(req);
        held.push(() => call.write({ id: req.id, results: req.requests.map(granted) }));
      });
    const client = new GrpcMeteringClient(address, 'token');
    const arrived = async (n: number) => {
      for (let i = 0; i < 100 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
      expect(seen).toHaveLength(n);
    };
    try {
      const first = client.reserve(hold('a'));
      await arrived(1);
      const second = client.reserve(hold('b'));
      await arrived(2);
      // Two batches out: these 600 wait.
      const waiting = Array.from({ length: 600 }, (_, i) => client.reserve(hold(`w${i}`)));
      await new Promise((r) => setTimeout(r, 50));
      expect(seen).toHaveLength(2);
      held[0]!();
      await first;
      // One answer frees one slot: the 600 go in one batch of 500 now, the last 100 once another answer comes.
      await arrived(3);
      await new Promise((r) => setTimeout(r, 50));
      expect(seen.map((b) => b.requests.length)).toEqual([1, 1, 500]);
      held[1]!();
      await second;
      await arrived(4);
      held[2]!();
      held[3]!();
      const replies = await Promise.all(waiting);
      expect(replies.map((r) => r.reservationId)).toEqual(Array.from({ length: 600 }, (_, i) => `r-w${i}`));
      expect(seen.map((b) => b.requests.length)).toEqual([1, 1, 500, 100]);
    } finally {
      client.close();
    }
  });

  it('fails the holds metering refuses one by one, with its code and message', async () => {
    onStream = (call) =>
      call.on('data', (req: ReserveStreamRequest) =>
        call.write({ id: req.id, results: req.requests.map((r) => (r.orgId === 'ghost' ? { reply: null, errorCode: grpc.status.NOT_FOUND, errorMessage: 'unknown org "ghost"' } : granted(r))) }),
      );
    const client = new GrpcMeteringClient(address, 'token');
    try {
      const [ok, ghost] = await Promise.allSettled([client.reserve(hold('a')), client.reserve(hold('ghost'))]);
      expect(ok).toMatchObject({ status: 'fulfilled', value: { granted: true } });
      expect(ghost).toMatchObject({ status: 'rejected', reason: { code: grpc.status.NOT_FOUND, message: 'unknown org "ghost"' } });
    } finally {
      client.close();
    }
  });

  it('fails a batch metering does not answer in time, drops its late answer, and sends the next batch on a new stream', async () => {
    const late: Array<() => void> = [];
    onStream = (call) =>
      call.on('data', (req: ReserveStreamRequest) => {
        const answer = () => call.write({ id: req.id, results: req.requests.map(granted) });
        if (streams === 1) late.push(answer);
        else answer();
      });
    const client = new GrpcMeteringClient(address, 'token', 300);
    try {
      await expect(client.reserve(hold('stalled'))).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
      for (const answer of late) answer(); // on a cancelled stream: goes nowhere
      expect((await client.reserve(hold('next'))).reservationId).toBe('r-next');
      expect(streams).toBe(2);
    } finally {
      client.close();
    }
  });

  it('fails every unanswered batch at once when metering ends the stream (a restart), then opens a new one', async () => {
    onStream = (call) => {
      if (streams === 1) call.on('data', () => setTimeout(() => call.end(), 50));
      else call.on('data', (req: ReserveStreamRequest) => call.write({ id: req.id, results: req.requests.map(granted) }));
    };
    const client = new GrpcMeteringClient(address, 'token', 5000);
    try {
      // UNAVAILABLE from the stream's end, not DEADLINE_EXCEEDED after 5 s.
      await expect(client.reserve(hold('cut'))).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
      expect((await client.reserve(hold('after'))).granted).toBe(true);
      expect(streams).toBe(2);
    } finally {
      client.close();
    }
  });

  const byOrg = (req: BalancesRequest, known = (id: string) => !id.startsWith('ghost')) => ({
    balances: req.orgIds.filter(known).map((orgId) => ({ orgId, balance: orgId.length })),
  });

  it('fetches the balances asked for in one loop turn with one GetBalances (each org once); an unknown org fails alone, NOT_FOUND', async () => {
    balances = (req) => byOrg(req);
    const client = new GrpcMeteringClient(address, 'token');
    try {
      const asked = await Promise.allSettled([client.balance('a'), client.balance('bbb'), client.balance('a'), client.balance('ghost')]);
      expect(asked.slice(0, 3)).toEqual([1, 3, 1].map((value) => ({ status: 'fulfilled', value })));
      expect(asked[3]).toMatchObject({ status: 'rejected', reason: { code: grpc.status.NOT_FOUND, message: 'unknown org "ghost"' } });
      expect(balancesAsked).toEqual([['a', 'bbb', 'ghost']]);
    } finally {
      client.close();
    }
  });

  it('lets refreshes ahead of need wait for company: those asked for within the linger go in one GetBalances', async () => {
    balances = (req) => byOrg(req);
    const client = new GrpcMeteringClient(address, 'token', 3000, 1000);
    try {
      const first = client.balance('a', true);
      await new Promise((r) => setTimeout(r, 20));
      const second = client.balance('bb', true);
      expect(balancesAsked).toEqual([]);
      // A fetch a call waits for does not linger.
      expect(await client.balance('ccc')).toBe(3);
      expect(await Promise.all([first, second])).toEqual([1, 2]);
      expect(balancesAsked).toEqual([['ccc'], ['a', 'bb']]);
    } finally {
      client.close();
    }
  });

  it('fails the batch when GetBalances fails, and asks GetBalance per org when metering does not have GetBalances (an older one)', async () => {
    balances = () => Object.assign(new Error('metering is busy'), { code: grpc.status.UNAVAILABLE, details: 'metering is busy', metadata: new grpc.Metadata() });
    const client = new GrpcMeteringClient(address, 'token');
    try {
      const failed = await Promise.allSettled([client.balance('a'), client.balance('b')]);
      expect(failed.map((f) => f.status === 'rejected' && (f.reason as grpc.ServiceError).code)).toEqual([grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE]);
      balances = () => Object.assign(new Error('unimplemented'), { code: grpc.status.UNIMPLEMENTED, details: '', metadata: new grpc.Metadata() });
      expect(await Promise.all([client.balance('a'), client.balance('b')])).toEqual([5, 5]);
      expect(await client.balance('c')).toBe(5);
      expect(balancesAsked).toEqual([['a', 'b'], ['a', 'b']]);
      expect(balanceAsked).toEqual(['a', 'b', 'c']);
    } finally {
      client.close();
    }
  });
});
