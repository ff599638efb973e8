import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { MaxBalancesPerCall } from '@tollgate/contracts';
import { ProfileCatalog } from '@tollgate/ledger';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../admin/admin.service';
import { ReservationService } from './reservation.service';
import { ReservationsGrpcController } from './reservations.grpc.controller';

/**
 * GetBalances (how gateways refresh the balances they keep), real PostgreSQL: each org's balance exactly as
 * GetBalance answers it (holds and leases taken off), unknown orgs left out, and bad input refused before any read.
 * The internal token that guards it is the server's (test/e2e/internal-token.e2e.spec.ts).
 */
describe('GetBalances at metering (real PostgreSQL)', () => {
  const catalog = ProfileCatalog.load('trackyard');
  let ds: DataSource;
  let grpc: ReservationsGrpcController;
  let reservations: ReservationService;

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 4 });
    reservations = new ReservationService(ds, catalog);
    grpc = new ReservationsGrpcController(reservations);
  });

  afterAll(async () => {
    await ds?.destroy();
  });

  async function orgWith(plan: string): Promise<string> {
    const org = `balances-${uuidv7()}`;
    await new AdminService(ds, catalog).createOrg({ id: org, name: org, plan });
    return org;
  }

  const hold = (orgId: string, lease?: number) =>
    grpc.reserve({ reservationId: lease ? `lease_t_${uuidv7()}` : uuidv7(), orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurredAt: new Date().toISOString(), leaseCredits: lease ?? 0, leaseMinimum: lease ? 2 : 0, gateway: 'gw-test' });

  const refusal = async (p: Promise<unknown>) => {
    const e = await p.then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).toBeInstanceOf(RpcException);
    return (e as RpcException).getError() as { code: number; message: string };
  };

  it('answers several orgs in one call, each as GetBalance answers it: holds and leases taken off', async () => {
    const [free, starter, pro] = [await orgWith('free'), await orgWith('starter'), await orgWith('pro')];
    await hold(free);
    await hold(free);
    expect(await hold(starter, 40)).toMatchObject({ granted: true, leaseCredits: 40 });
    const reply = await grpc.getBalances({ orgIds: [pro, free, starter] });
    const one = await Promise.all([pro, free, starter].map((orgId) => grpc.getBalance({ orgId })));
    expect(reply.balances).toEqual(one);
    expect(reply.balances.map((b) => b.balance)).toEqual([one[0]!.balance, 48, 460]);
  });

  it('leaves an unknown org out (GetBalance: NOT_FOUND), answers a repeated id once, and nothing for no ids', async () => {
    const org = await orgWith('free');
    const ghost = `ghost-${uuidv7()}`;
    expect(await grpc.getBalances({ orgIds: [ghost, org, org] })).toEqual({ balances: [{ orgId: org, balance: 50 }] });
    expect(await refusal(grpc.getBalance({ orgId: ghost }))).toMatchObject({ code: status.NOT_FOUND });
    expect(await grpc.getBalances({ orgIds: [] })).toEqual({ balances: [] });
  });

  it(`refuses more than ${MaxBalancesPerCall} ids, and a bad id, naming the field: INVALID_ARGUMENT`, async () => {
    const org = await orgWith('free');
    const many = Array.from({ length: MaxBalancesPerCall + 1 }, () => org);
    expect(await refusal(grpc.getBalances({ orgIds: many }))).toEqual({ code: status.INVALID_ARGUMENT, message: `org_ids has more than ${MaxBalancesPerCall} ids` });
    expect((await grpc.getBalances({ orgIds: many.slice(1) })).balances).toEqual([{ orgId: org, balance: 50 }]);
    expect(await refusal(grpc.getBalances({ orgIds: [org, 'x'.repeat(65)] }))).toEqual({ code: status.INVALID_ARGUMENT, message: 'org_ids.1 is longer than 64 characters' });
    expect(await refusal(grpc.getBalances({ orgIds: [org, org, 'bad\u0000id'] }))).toEqual({ code: status.INVALID_ARGUMENT, message: 'org_ids.2 contains a control character at index 3' });
    expect(await refusal(grpc.getBalances({ orgIds: [''] }))).toEqual({ code: status.INVALID_ARGUMENT, message: 'org_ids.0 is empty' });
  });
});
