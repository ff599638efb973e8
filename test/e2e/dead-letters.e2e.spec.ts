import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Kafka } from 'kafkajs';
import { DeadLetterHeaders, RequestCompletedV1, Topics } from '@tollgate/contracts';
import { collect, produce, requestCompleted, testKafka } from '../support/kafka';
import { eventually, repoRoot, Stack, uniqueId } from '../support/stack';

interface Listed {
  id: string;
  partition: number;
  offset: string;
  status: string;
  reason: string;
  replayed_at: string | null;
  replays: number;
  value: string | null;
}

/** Poison on a live partition, and `npm run dlq`: nothing stops the partition, and a fix can re-drive what was refused. */
describe('dead letters (trackyard, events from another producer)', () => {
  let stack: Stack;
  let kafka: Kafka;

  beforeAll(async () => {
    stack = await Stack.start({ profile: 'trackyard' });
    kafka = testKafka();
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  const charges = async (orgId: string) =>
    (await stack.admin<{ entries: Array<{ type: string }> }>('GET', `/admin/orgs/${orgId}/ledger?limit=500`)).body.entries.filter((e) => e.type === 'charge').length;
  const dlq = (...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'dlq', ...args], { env: process.env, encoding: 'utf8', timeout: 60_000 });
  const listed = (): Listed[] => {
    const r = dlq('list', '--json');
    if (r.status !== 0) throw new Error(`dlq list exited ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout) as Listed[];
  };

  it('dead-letters a NUL in each string field, naming the field, and charges the valid event behind them on the same partition', async () => {
    const { orgId } = await stack.orgWithKey('starter', uniqueId('nul'));
    const nul = (over: Partial<RequestCompletedV1>) => JSON.stringify(requestCompleted({ org_id: orgId, ...over }));
    const poison: Array<[string, string]> = [
      ['event_id', nul({ event_id: `nul\u0000${orgId}` })],
      ['org_id', nul({ org_id: `${orgId}\u0000` })],
      ['api_key_id', nul({ api_key_id: 'key_\u0000' })],
      ['subject.id', nul({ subject: { kind: 'key', id: '\u0000' } })],
      ['profile', nul({ profile: 'trackyard\u0000' })],
      ['route', nul({ route: '/search\u0000' })],
      ['path', nul({ path: '/api/external/v1/search\u0000' })],
      ['entities.0', nul({ entities: ['c\u0000'] })],
      ['reservation_id', nul({ reservation_id: 'res_\u0000' })],
      ['request_id', nul({ request_id: 'req\u0000' })],
    ];
    const valid = requestCompleted({ org_id: orgId });
    // One key: one partition, poison first.
    await produce(kafka, [...poison.map(([, value]) => ({ key: orgId, value })), { key: orgId, value: JSON.stringify(valid) }]);

    await eventually(async () => (await charges(orgId)) === 1, 20_000);
    const dead = await collect(kafka, Topics.RequestCompletedDeadLetter, (seen) => poison.every(([, v]) => seen.some((m) => m.value?.toString() === v)));
    for (const [field, value] of poison) {
      const letter = dead.find((m) => m.value?.toString() === value);
      expect(letter?.headers[DeadLetterHeaders.Reason]).toBe(`${field} contains a NUL character (U+0000) at index ${indexOfNul(JSON.parse(value), field)}`);
      expect(letter?.headers[DeadLetterHeaders.OriginalTopic]).toBe(Topics.RequestCompleted);
    }
  }, 60_000);

  it('npm run dlq: lists a dead letter, replays it once the cause is fixed, and a second replay charges nothing more', async () => {
    // An event for an org that does not exist yet is refused; creating the org is the fix.
    const orgId = uniqueId('late-org');
    const event = JSON.stringify(requestCompleted({ org_id: orgId }));
    await produce(kafka, [{ key: orgId, value: event }]);
    const letter = await eventually(async () => listed().find((d) => d.value === event), 20_000);
    expect(letter).toMatchObject({ reason: `unknown org_id "${orgId}"`, replayed_at: null });
    const text = dlq('list');
    expect(text.status).toBe(0);
    expect(text.stdout).toContain(`${letter.id}\t${Topics.RequestCompleted}\t${letter.partition}\t${letter.offset}\t`);

    const org = await stack.admin('POST', '/admin/orgs', { id: orgId, name: 'late', plan: 'starter' });
    expect(org.status).toBe(201);
    const replayed = dlq('replay', '--id', letter.id);
    expect(replayed.stderr).toBe('');
    expect(replayed.stdout).toContain('dlq: replayed 1 dead letter(s)');
    expect(replayed.status).toBe(0);
    await eventually(async () => (await charges(orgId)) === 1, 20_000);
    expect(listed().find((d) => d.id === letter.id)).toMatchObject({ status: 'replayed', replays: 1 });
    expect(dlq('list', '--pending', '--json').stdout).not.toContain(`"id": "${letter.id}"`);

    // By offset this time; event_id dedupe keeps it at one charge.
    expect(dlq('replay', '--offset', letter.offset, '--partition', String(letter.partition)).status).toBe(0);
    await eventually(async () => listed().find((d) => d.id === letter.id)?.replays === 2);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await charges(orgId)).toBe(1);
  }, 90_000);

  it('npm run dlq: bad arguments and unknown ids exit non-zero and say why', () => {
    const bad = dlq('replay');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('say which dead letters');
    const unknown = dlq('replay', '--id', '999999999999');
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain('no dead letter with id 999999999999');
  });
});

function indexOfNul(event: Record<string, unknown>, field: string): number {
  const [head, tail] = field.split('.') as [string, string | undefined];
  const v = event[head] as unknown;
  const s = tail === undefined ? v : head === 'subject' ? (v as Record<string, string>)[tail] : (v as string[])[Number(tail)];
  return (s as string).indexOf('\u0000');
}
