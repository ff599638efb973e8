import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { credentials, loadPackageDefinition, Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { v7 as uuidv7 } from 'uuid';
import { eventually, freePort, repoRoot, Stack, uniqueId } from '../support/stack';

/**
 * SPEC §1: TOLLGATE_INTERNAL_TOKEN is the credential gateways present to metering's gRPC (metadata
 * `authorization: Bearer <token>`); metering refuses calls without it with UNAUTHENTICATED. Driven through the
 * real metering process with a client built from the .proto, as another service would build one.
 */
describe("metering's gRPC requires the internal token", () => {
  let stack: Stack;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  function reservations(): any {
    const definition = loadSync(join(repoRoot, 'libs/contracts/src/proto/metering.proto'), { keepCase: true, longs: String, defaults: true });
    const pkg = loadPackageDefinition(definition) as any;
    return new pkg.tollgate.metering.v1.Reservations(`127.0.0.1:${stack.ports.meteringGrpc}`, credentials.createInsecure());
  }

  function call<T>(client: any, method: string, request: unknown, authorization: string | null): Promise<T> {
    const md = new Metadata();
    if (authorization !== null) md.set('authorization', authorization);
    return new Promise((resolve, reject) => client[method](request, md, (err: Error | null, res: T) => (err ? reject(err) : resolve(res))));
  }

  const reserve = (orgId: string) => ({ reservation_id: uuidv7(), org_id: orgId, profile: 'trackyard', method: 'POST', route: '/search', entities: [], occurred_at: new Date().toISOString() });

  it('refuses Reserve, GetBalance and GetBalances without the token, with a wrong one, or with the admin token: UNAUTHENTICATED, and nothing is held', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('grpc-auth'));
    const client = reservations();
    for (const authorization of [null, 'Bearer wrong-token', `Bearer ${stack.adminToken}`, stack.internalToken, `Basic ${stack.internalToken}`]) {
      await expect(call(client, 'Reserve', reserve(orgId), authorization)).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
      await expect(call(client, 'GetBalance', { org_id: orgId }, authorization)).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
      await expect(call(client, 'GetBalances', { org_ids: [orgId] }, authorization)).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
    }
    const org = await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`);
    expect(org.body.balance).toBe(50);
    client.close();
  });

  it('serves a caller presenting Bearer <TOLLGATE_INTERNAL_TOKEN>', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('grpc-auth'));
    const client = reservations();
    const held = await call<{ granted: boolean; balance: string }>(client, 'Reserve', reserve(orgId), `Bearer ${stack.internalToken}`);
    expect(held).toMatchObject({ granted: true, balance: '49' });
    const balance = await call<{ balance: string }>(client, 'GetBalance', { org_id: orgId }, `Bearer ${stack.internalToken}`);
    expect(balance.balance).toBe('49');
    const balances = await call<{ balances: Array<{ org_id: string; balance: string }> }>(client, 'GetBalances', { org_ids: [orgId, 'no-such-org'] }, `Bearer ${stack.internalToken}`);
    expect(balances.balances).toEqual([{ org_id: orgId, balance: '49' }]);
    client.close();
  });

  it('ReserveBatch answers each hold in its position: granted, refused for want of credits, unknown org, skewed clock; and needs the token too', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('grpc-batch'));
    const client = reservations();
    const skewed = { ...reserve(orgId), occurred_at: new Date(Date.now() + 400 * 86_400_000).toISOString() };
    const tooMuch = Array.from({ length: 50 }, () => reserve(orgId));
    const requests = [reserve(orgId), reserve('no-such-org'), skewed, ...tooMuch];
    await expect(call(client, 'ReserveBatch', { requests }, null)).rejects.toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
    type Result = { reply: { granted: boolean; balance: string } | null; error_code: number; error_message: string };
    const answer = await call<{ results: Result[] }>(client, 'ReserveBatch', { requests }, `Bearer ${stack.internalToken}`);
    expect(answer.results).toHaveLength(requests.length);
    expect(answer.results[0]).toMatchObject({ reply: { granted: true, balance: '49' }, error_code: 0 });
    expect(answer.results[1]).toMatchObject({ reply: null, error_code: GrpcStatus.NOT_FOUND });
    expect(answer.results[2]).toMatchObject({ reply: null, error_code: GrpcStatus.INVALID_ARGUMENT, error_message: expect.stringMatching(/more than 5 minutes ahead/) });
    const rest = answer.results.slice(3).map((r) => r.reply?.granted);
    // 49 credits left for 50 holds: the first 49 in order are granted, the last refused; nothing overdraws.
    expect(rest.filter(Boolean)).toHaveLength(49);
    expect(rest[49]).toBe(false);
    expect((await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance).toBe(0);
    client.close();
  });

  it('ReserveStream needs the token, and answers each batch with its id and ReserveBatch\'s results', async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('grpc-stream'));
    const client = reservations();
    type Reply = { id: string; results: Array<{ reply: { granted: boolean; balance: string } | null; error_code: number }> };
    const open = (authorization: string | null) => {
      const md = new Metadata();
      if (authorization !== null) md.set('authorization', authorization);
      const stream = client.ReserveStream(md);
      const replies: Reply[] = [];
      const closed = new Promise<{ code: number }>((resolve) => {
        stream.on('data', (r: Reply) => replies.push(r));
        stream.on('error', (e: { code: number }) => resolve(e));
        stream.on('end', () => resolve({ code: GrpcStatus.OK }));
      });
      return { stream, replies, closed };
    };

    const refused = open(null);
    refused.stream.write({ id: 1, requests: [reserve(orgId)] });
    expect(await refused.closed).toMatchObject({ code: GrpcStatus.UNAUTHENTICATED });
    expect(refused.replies).toEqual([]);

    const served = open(`Bearer ${stack.internalToken}`);
    served.stream.write({ id: 7, requests: [reserve(orgId), reserve('no-such-org')] });
    served.stream.write({ id: 8, requests: [reserve(orgId)] });
    served.stream.end();
    expect(await served.closed).toEqual({ code: GrpcStatus.OK });
    const byId = new Map(served.replies.map((r) => [r.id, r.results]));
    expect([...byId.keys()].sort()).toEqual(['7', '8']);
    expect(byId.get('7')).toMatchObject([{ reply: { granted: true }, error_code: 0 }, { reply: null, error_code: GrpcStatus.NOT_FOUND }]);
    expect(byId.get('8')).toMatchObject([{ reply: { granted: true }, error_code: 0 }]);
    // 50 credits, two holds of 1 (the refused one touched nothing).
    expect((await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance).toBe(48);
    client.close();
  });

  it("metering's /metrics counts the holds its reservations thread decided, by outcome and by how each batch was written", async () => {
    const { orgId } = await stack.orgWithKey('free', uniqueId('grpc-metrics'));
    const client = reservations();
    const counted = async () => {
      const text = await (await fetch(`http://127.0.0.1:${stack.ports.metering}/metrics`)).text();
      const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
      return {
        granted: value('tollgate_holds_total{outcome="granted"}'),
        refused: value('tollgate_holds_total{outcome="refused"}'),
        failed: value('tollgate_holds_total{outcome="failed"}'),
        optimistic: value('tollgate_hold_batches_total{path="optimistic"}'),
      };
    };
    // The thread reports once a second: let the earlier tests' holds reach /metrics before taking the baseline.
    await new Promise((r) => setTimeout(r, 1500));
    const before = await counted();
    const token = `Bearer ${stack.internalToken}`;
    // 50 credits: one hold granted, one of 60 credits' worth refused (a batch of 60 holds of 1 on 49 left), one for no org.
    await call(client, 'Reserve', reserve(orgId), token);
    await call(client, 'ReserveBatch', { requests: Array.from({ length: 60 }, () => reserve(orgId)) }, token);
    await call(client, 'ReserveBatch', { requests: [reserve('no-such-org')] }, token);
    const after = await eventually(async () => {
      const now = await counted();
      return now.granted - before.granted >= 50 && now.failed > before.failed ? now : null;
    });
    expect(after.granted - before.granted).toBe(50);
    expect(after.refused - before.refused).toBe(11);
    expect(after.failed - before.failed).toBe(1);
    expect(after.optimistic - before.optimistic).toBeGreaterThanOrEqual(3);
    client.close();
  });

  it('the gateway presents it: a paid call leases credits and is charged', async () => {
    const { orgId, key } = await stack.orgWithKey('free', uniqueId('grpc-auth'));
    const res = await fetch(stack.gatewayUrl('/api/external/v1/search'), {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'internal token' }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-credits-remaining')).toBe('49');
    const ledger = await stack.admin<{ entries: Array<{ type: string }> }>('GET', `/admin/orgs/${orgId}/ledger`);
    expect(ledger.body.entries.map((e) => e.type)).toContain('lease'); // granted over the authenticated stream
  });

  it.each(['metering', 'gateway'])('%s with NODE_ENV=production and no TOLLGATE_INTERNAL_TOKEN stops at start, naming the variable', async (app) => {
    const env: Record<string, string> = { ...stack.env(), NODE_ENV: 'production', TOLLGATE_INTERNAL_TOKEN: '' };
    env.METERING_PORT = String(await freePort());
    env.METERING_GRPC_PORT = String(await freePort());
    env.GATEWAY_PORT = String(await freePort());
    const child = spawn(process.execPath, [join(repoRoot, 'dist', 'apps', app, 'src', 'main.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => (output += b.toString()));
    child.stderr.on('data', (b: Buffer) => (output += b.toString()));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(output).toMatch(/TOLLGATE_INTERNAL_TOKEN: must be set when NODE_ENV=production/);
  });
});
