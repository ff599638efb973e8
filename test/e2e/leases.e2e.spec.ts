import { DataSource } from 'typeorm';
import { CheckNames, runAudit } from '@tollgate/operations';
import { connectDatabase } from '@tollgate/persistence';
import { eventually, Stack, uniqueId } from '../support/stack';

/**
 * Strict credits with leases (SPEC §4), the whole system: three gateway processes spending leases of the same
 * orgs, real Kafka and PostgreSQL. The publish window is 3 s here, so a lease's rest comes back ~10 s after it was
 * taken even when its gateway died (5 s of draw time, the window, the sweeper's 5 s pace).
 */
describe('credit leases across three gateways (trace: per-entity prices)', () => {
  let stack: Stack;
  let ds: DataSource;
  const gateways = () => [stack.ports.gateway, ...stack.extraGatewayPorts];

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trace', extraGateways: 2, env: { RESERVATION_PUBLISH_WINDOW_SECONDS: '3' } });
    ds = await connectDatabase({ migrate: false, poolSize: 2 });
  }, 180_000);

  afterAll(async () => {
    await ds?.destroy();
    await stack?.stop();
  });

  async function orgWith(credits: number) {
    const org = await stack.orgWithKey('standard', uniqueId('lease'));
    expect((await stack.admin('POST', `/admin/orgs/${org.orgId}/credits`, { amount: credits, reason: 'test', idempotency_key: uniqueId('grant') })).status).toBe(201);
    // Room for the test's pace on every gateway (each counts its own minute without Redis).
    expect((await stack.admin('PUT', `/admin/orgs/${org.orgId}/limits`, { minute: 100_000, day: 1_000_000 })).status).toBeLessThan(300);
    return { ...org, granted: credits };
  }

  const call = (port: number, key: string, company: string) =>
    fetch(stack.gatewayUrl(`/v1/companies/${company}`, port), { headers: { authorization: `Bearer ${key}` } });

  const usage = async (orgId: string) =>
    (await ds.query(`SELECT request_id, status_code, credits::int, charged_entities, lease_id FROM usage_records WHERE org_id = $1`, [orgId])) as Array<{
      request_id: string; status_code: number; credits: number; charged_entities: string[]; lease_id: string | null;
    }>;
  const account = async (orgId: string) =>
    (await ds.query(`SELECT a.balance::int, a.debt::int, (SELECT COALESCE(SUM(amount), 0)::int FROM ledger_entries e WHERE e.org_id = a.org_id) AS ledger FROM accounts a WHERE a.org_id = $1`, [orgId]))[0] as {
      balance: number; debt: number; ledger: number;
    };
  const heldLeases = async (orgIds: string[]) => Number((await ds.query(`SELECT count(*) AS n FROM reservations WHERE org_id = ANY($1) AND kind = 'lease' AND status = 'held'`, [orgIds]))[0].n);
  const audit = async (orgIds: string[]) =>
    (await runAudit(ds, { orgs: orgIds, holdGraceSeconds: 30, group: null, checks: new Set(CheckNames.filter((c) => c !== 'offsets' && c !== 'append-only')) }, { broker: null })).violations;

  it('random traffic over three gateways and six orgs, scarce and ample: never below zero, every 2xx charged once, nothing stranded after a lease life', async () => {
    const orgs = [await orgWith(5), await orgWith(12), await orgWith(30), await orgWith(1000), await orgWith(1000), await orgWith(1000)];
    let seed = 42;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const plan = Array.from({ length: 480 }, () => {
      const org = orgs[random(orgs.length)]!;
      // 40 companies per org: a company seen again within the run is a re-access (free).
      return { org, port: gateways()[random(3)]!, company: `c_${org.orgId.replace(/[^a-z0-9]/g, '')}_${random(40)}` };
    });
    const answers: Array<{ org: (typeof orgs)[number]; status: number; requestId: string; company: string }> = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 12 }, async () => {
        while (next < plan.length) {
          const p = plan[next++]!;
          const res = await call(p.port, p.org.key, p.company);
          await res.arrayBuffer();
          answers.push({ org: p.org, status: res.status, requestId: res.headers.get('x-request-id')!, company: p.company });
        }
      }),
    );
    // Named on failure: any answer but a 200 or a 402, with its status and request id (to find in the logs).
    expect(answers.filter((a) => a.status !== 200 && a.status !== 402).map((a) => `${a.status} ${a.requestId}`)).toEqual([]);

    for (const org of orgs) {
      const mine = answers.filter((a) => a.org === org);
      const rows = await eventually(async () => {
        const r = await usage(org.orgId);
        return r.length === mine.length ? r : null;
      }, 60_000, 250);
      // Every answer is metered once, under its request id.
      expect(new Set(rows.map((r) => r.request_id)).size).toBe(mine.length);
      const ok = mine.filter((a) => a.status === 200);
      // Every company a 2xx returned is charged exactly once (re-access within 30 days is free), and only those.
      const charged = rows.flatMap((r) => r.charged_entities);
      expect(new Set(charged).size).toBe(charged.length);
      expect(new Set(charged)).toEqual(new Set(ok.map((a) => a.company)));
      const spent = rows.reduce((s, r) => s + r.credits, 0);
      expect(spent).toBe(charged.length);
      expect(spent).toBeLessThanOrEqual(org.granted);
      if (org.granted === 1000) expect(ok).toHaveLength(mine.length); // ample: nobody refused
      const a = await account(org.orgId);
      expect(a.debt).toBe(0);
      expect(a.balance).toBeGreaterThanOrEqual(0);
      expect(a.balance).toBe(a.ledger);
    }
    // The scarce orgs were refused at times (their re-accesses still answered, free), and leased at others.
    expect(answers.filter((a) => a.org.granted < 1000 && a.status === 402).length).toBeGreaterThan(0);

    // Nothing stranded: once every lease's draw time, the publish window and a sweep have passed, no lease is
    // held and every org's ledger balance is what it was granted less what its calls were charged.
    const ids = orgs.map((o) => o.orgId);
    await eventually(async () => (await heldLeases(ids)) === 0, 40_000, 500);
    for (const org of orgs) {
      const spent = (await usage(org.orgId)).reduce((s, r) => s + r.credits, 0);
      expect((await account(org.orgId)).balance).toBe(org.granted - spent);
    }
    expect(await audit(ids)).toEqual([]);
  }, 240_000);

  it('a gateway SIGKILLed with a lease open: its calls are charged, the lease\'s rest comes back, nothing is lost', async () => {
    const org = await orgWith(1000);
    const port = stack.extraGatewayPorts[1]!;
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await call(port, org.key, `c_killed_${i}`)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    // The lease is open (its gateway drew from it a moment ago) when the gateway dies: no EndLease.
    expect(await heldLeases([org.orgId])).toBeGreaterThan(0);
    await stack.kill('gateway-3');
    const rows = await eventually(async () => {
      const r = await usage(org.orgId);
      return r.length === 30 ? r : null;
    }, 30_000, 250);
    expect(rows.reduce((s, r) => s + r.credits, 0)).toBe(30);
    expect(rows.every((r) => r.lease_id !== null)).toBe(true);
    await eventually(async () => (await heldLeases([org.orgId])) === 0, 40_000, 500);
    expect(await account(org.orgId)).toMatchObject({ balance: 970, ledger: 970, debt: 0 });
    expect(await audit([org.orgId])).toEqual([]);
    await stack.startApp('gateway', 'gateway-3', { GATEWAY_PORT: String(port) });
  }, 120_000);

  it('a top-up reaches a gateway holding per call at once, and a revoked key is refused within 5 s while its org\'s lease is open', async () => {
    const org = await orgWith(3);
    const port = stack.ports.gateway;
    const first = await Promise.all([0, 1, 2, 3].map((i) => call(port, org.key, `c_topup_${i}`)));
    expect(first.map((r) => r.status).sort()).toEqual([200, 200, 200, 402]);
    expect((await stack.admin('POST', `/admin/orgs/${org.orgId}/credits`, { amount: 400, reason: 'top-up', idempotency_key: uniqueId('topup') })).status).toBe(201);
    // The gateway leases again once its per-call second is over: the top-up is spendable at once either way.
    const after = await call(port, org.key, 'c_topup_after');
    expect(after.status).toBe(200);
    await new Promise((r) => setTimeout(r, 1200));
    for (let i = 0; i < 5; i++) expect((await call(port, org.key, `c_topup_more_${i}`)).status).toBe(200);
    expect(await heldLeases([org.orgId])).toBeGreaterThan(0); // leasing again

    const keys = await stack.admin<{ keys: Array<{ id: string }> }>('GET', `/admin/orgs/${org.orgId}/keys`);
    expect((await stack.admin('DELETE', `/admin/keys/${org.keyId}`)).status).toBe(204);
    expect(keys.body.keys.length).toBeGreaterThan(0);
    // Until the gateways' key cache lets go, the key still works: on a company already paid for, so free.
    let calls = 10;
    const revokedAt = Date.now();
    await eventually(async () => {
      calls++;
      return (await call(port, org.key, 'c_topup_after')).status === 401;
    }, 5_500, 200);
    expect(Date.now() - revokedAt).toBeLessThan(5_500);
    const metered = await eventually(async () => {
      const r = await usage(org.orgId);
      return r.length === calls - 1 ? r : null; // the 401 has no org to record
    }, 30_000, 250);
    const spent = metered.reduce((s, r) => s + r.credits, 0);
    expect(spent).toBe(9);
    // The lease's undrawn credits come back when its gateway stops drawing from it.
    await eventually(async () => (await heldLeases([org.orgId])) === 0, 40_000, 500);
    expect(await account(org.orgId)).toMatchObject({ balance: 403 - 9, ledger: 403 - 9 });
    expect(await audit([org.orgId])).toEqual([]);
  }, 120_000);
});
