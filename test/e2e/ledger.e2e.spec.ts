import { Kafka } from 'kafkajs';
import { Topics } from '@tollgate/contracts';
import { collect, produce, requestCompleted, testKafka } from '../support/kafka';
import { eventually, Stack, uniqueId } from '../support/stack';

interface Entry { seq: number; type: string; amount: number; balance_after: number; cause: string }

/** Exactly-once metering: redelivery, disorder, crashes and poison, through the real broker and database. */
describe('metering ledger (trackyard, events from another producer)', () => {
  let stack: Stack;
  let kafka: Kafka;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
    kafka = testKafka();
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  const ledger = async (orgId: string) => (await stack.admin<{ entries: Entry[] }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`)).body.entries;
  const charges = async (orgId: string) => (await ledger(orgId)).filter((e) => e.type === 'charge');
  const balance = async (orgId: string) => (await stack.admin<{ balance: number }>('GET', `/admin/orgs/${orgId}`)).body.balance;

  function expectLedgerConsistent(entries: Entry[], balanceNow: number) {
    expect(entries.map((e) => e.seq)).toEqual(entries.map((_, i) => i + 1));
    let running = 0;
    for (const e of entries) {
      running += e.amount;
      expect(e.balance_after).toBe(running);
    }
    expect(running).toBe(balanceNow);
  }

  it('meters the same event delivered 3 times once', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('dup'));
    const event = requestCompleted({ org_id: orgId });
    const value = JSON.stringify(event);
    await produce(kafka, [{ key: orgId, value }, { key: orgId, value }]);
    await produce(kafka, [{ key: orgId, value }]);
    await eventually(async () => (await charges(orgId)).length === 1);
    // Later events prove the duplicates were passed, not merely pending.
    await produce(kafka, [{ key: orgId, value: JSON.stringify(requestCompleted({ org_id: orgId })) }]);
    await eventually(async () => (await charges(orgId)).length === 2);
    expect(await balance(orgId)).toBe(498);
    expectLedgerConsistent(await ledger(orgId), 498);
  });

  it('publishes every ledger entry on tollgate.ledger.v1 once, keyed by org, in sequence order', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('outbox'));
    await produce(kafka, [{ key: orgId, value: JSON.stringify(requestCompleted({ org_id: orgId })) }]);
    await eventually(async () => (await charges(orgId)).length === 1);
    const entries = await ledger(orgId);
    const published = (await collect(kafka, Topics.Ledger, (seen) => seen.filter((m) => m.key === orgId).length >= entries.length))
      .filter((m) => m.key === orgId)
      .map((m) => JSON.parse(m.value!.toString('utf8')) as Entry);
    expect(published.map((e) => e.seq)).toEqual(entries.map((e) => e.seq));
    expect(published.map((e) => [e.type, e.amount])).toEqual(entries.map((e) => [e.type, e.amount]));
  });

  it('meters events that arrive out of order once each', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('order'));
    const t = Date.now();
    const events = [3, 1, 2].map((i) => requestCompleted({ org_id: orgId, occurred_at: new Date(t - i * 1000).toISOString() }));
    await produce(kafka, events.map((e) => ({ key: orgId, value: JSON.stringify(e) })));
    await produce(kafka, [{ key: orgId, value: JSON.stringify(events[1]) }]);
    await eventually(async () => (await charges(orgId)).length === 3);
    const causes = (await charges(orgId)).map((c) => c.cause).sort();
    expect(causes).toEqual(events.map((e) => `event:${e.event_id}`).sort());
    expectLedgerConsistent(await ledger(orgId), 497);
  });

  it('dead-letters a poison message and a schema-invalid event with the original bytes and a reason, and keeps metering', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('dlq'));
    const poison = Buffer.from(`{not json ${orgId}`);
    const invalid = JSON.stringify({ ...requestCompleted({ org_id: orgId }), status_code: 'two hundred' });
    const unknownOrg = JSON.stringify(requestCompleted({ org_id: `${orgId}-missing` }));
    const valid = requestCompleted({ org_id: orgId });
    await produce(kafka, [
      { key: orgId, value: poison },
      { key: orgId, value: invalid },
      { key: orgId, value: unknownOrg },
      { key: orgId, value: JSON.stringify(valid) },
    ]);
    await eventually(async () => (await charges(orgId)).length === 1);
    const dead = await collect(kafka, Topics.RequestCompletedDeadLetter, (seen) =>
      [poison.toString(), invalid, unknownOrg].every((v) => seen.some((m) => m.value?.toString() === v)),
    );
    const byValue = (v: string) => dead.find((m) => m.value?.toString() === v);
    expect(byValue(poison.toString())?.headers['x-dead-letter-reason']).toMatch(/not JSON/);
    expect(byValue(invalid)?.headers['x-dead-letter-reason']).toMatch(/status_code/);
    expect(byValue(unknownOrg)?.headers['x-dead-letter-reason']).toMatch(/unknown org_id/);
  });

  it('dead-letters an event from more than 5 minutes in the future', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('future'));
    const future = JSON.stringify(requestCompleted({ org_id: orgId, occurred_at: new Date(Date.now() + 6 * 60_000).toISOString() }));
    await produce(kafka, [{ key: orgId, value: future }, { key: orgId, value: JSON.stringify(requestCompleted({ org_id: orgId })) }]);
    await eventually(async () => (await charges(orgId)).length === 1);
    const dead = await collect(kafka, Topics.RequestCompletedDeadLetter, (seen) => seen.some((m) => m.value?.toString() === future));
    expect(dead.find((m) => m.value?.toString() === future)?.headers['x-dead-letter-reason']).toMatch(/future/);
  });

  it('loses and doubles nothing when metering is SIGKILLed between the database commit and the Kafka commit', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('crash'));
    await stack.stopProcess('metering');
    await stack.startApp('metering', 'metering', { TOLLGATE_FAILPOINT: 'metering-after-db-commit' });
    const events = Array.from({ length: 10 }, () => requestCompleted({ org_id: orgId }));
    await produce(kafka, events.map((e) => ({ key: orgId, value: JSON.stringify(e) })));
    // The failpoint kills metering right after its first batch commits to PostgreSQL.
    const crashed = stack.processes.get('metering')!;
    await eventually(async () => crashed.exitCode !== null || crashed.signalCode !== null, 20_000);
    expect(crashed.signalCode).toBe('SIGKILL');
    await stack.startApp('metering');
    await produce(kafka, [{ key: orgId, value: JSON.stringify(events[0]) }]);
    await eventually(async () => (await charges(orgId)).length === 10, 20_000);
    await new Promise((r) => setTimeout(r, 500));
    expect((await charges(orgId)).length).toBe(10);
    expectLedgerConsistent(await ledger(orgId), 490);
  }, 90_000);

  it('refuses to update or delete ledger entries (append-only in the database)', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('append'));
    const { Client } = await import('pg');
    const client = new Client({ connectionString: process.env.DATABASE_URL });
    await client.connect();
    try {
      await expect(client.query(`UPDATE ledger_entries SET amount = 0 WHERE org_id = $1`, [orgId])).rejects.toThrow(/append-only/);
      await expect(client.query(`DELETE FROM ledger_entries WHERE org_id = $1`, [orgId])).rejects.toThrow(/append-only/);
    } finally {
      await client.end();
    }
  });
});
