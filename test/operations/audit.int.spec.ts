import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { DataSource } from 'typeorm';
import { v7 as uuidv7 } from 'uuid';
import { RequestCompletedV1 } from '@tollgate/contracts';
import { createKafkaMessaging, kafkaBrokers, Messaging, Publisher } from '@tollgate/messaging';
import { connectDatabase } from '@tollgate/persistence';
import { AdminService } from '../../apps/metering/src/admin/admin.service';
import { audit } from '../../apps/cli/src/commands/audit';
import { ProfileCatalog, RequestCompletedConsumer } from '@tollgate/ledger';
import { ReservationService } from '../../apps/metering/src/reservations/reservation.service';
import { CheckName } from '@tollgate/operations';

/**
 * `npm run audit` against real PostgreSQL and Kafka. Ledgers are written by the real code paths (AdminService,
 * ReservationService, the real consumer fed the very messages published on a topic of this run, at their
 * offsets), so a clean run proves the checks accept what metering writes. Then each test breaks one invariant of
 * a fresh org on purpose and the report must name that check and that org, with exit 1.
 */
describe('npm run audit (real PostgreSQL and Kafka)', () => {
  const catalog = ProfileCatalog.load('trackyard');
  const topic = `test.audit.${uuidv7()}`;
  const groupId = `test-audit-${uuidv7()}`;
  const repoRoot = join(__dirname, '../..');
  let ds: DataSource;
  let messaging: Messaging;
  let publisher: Publisher;
  let admin: AdminService;
  let consumer: RequestCompletedConsumer;

  beforeAll(async () => {
    ds = await connectDatabase({ migrate: true, poolSize: 4 });
    const kafkaAdmin = new Kafka({ clientId: 'tollgate-tests', brokers: kafkaBrokers(), logLevel: logLevel.NOTHING }).admin();
    await kafkaAdmin.connect();
    await kafkaAdmin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 1, replicationFactor: 1 }] });
    await kafkaAdmin.disconnect();
    messaging = createKafkaMessaging({ clientId: 'tollgate-tests' });
    publisher = await messaging.publisher();
    admin = new AdminService(ds, catalog);
    consumer = new RequestCompletedConsumer(ds, catalog, { groupId });
  });

  afterAll(async () => {
    await messaging?.close();
    await ds?.destroy();
  });

  const uid = (p: string) => `${p}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 7)}`;

  /** Publishes the messages on this run's topic, then meters exactly those, at the offsets Kafka gave them. */
  async function meter(values: Array<RequestCompletedV1 | Buffer>, orgId: string): Promise<void> {
    const start = (await messaging.endOffsets(topic)).get(0) ?? 0n;
    const bytes = values.map((v) => (Buffer.isBuffer(v) ? v : Buffer.from(JSON.stringify(v))));
    await publisher.publish(topic, bytes.map((value) => ({ key: orgId, value })));
    await consumer.handle({
      topic,
      partition: 0,
      nextOffset: String(start + BigInt(bytes.length)),
      messages: bytes.map((value, i) => ({ offset: String(start + BigInt(i)), key: Buffer.from(orgId), value, headers: {} })),
    });
  }

  function event(orgId: string, at: number, over: Partial<RequestCompletedV1> = {}): RequestCompletedV1 {
    return {
      event_id: uuidv7(), schema_version: 1, occurred_at: new Date(at).toISOString(), org_id: orgId, api_key_id: null,
      subject: { kind: 'key', id: 'k' }, profile: 'trackyard', method: 'POST', route: '/search', path: '/api/external/v1/search',
      status_code: 200, response_time_ms: 5, entities: [], reservation_id: null, decision: 'forwarded', ...over,
    };
  }

  async function hold(reservations: ReservationService, orgId: string, at: number, over: { profile?: string; method?: string; route?: string; entities?: string[] } = {}) {
    const r = await reservations.reserve({
      reservationId: uuidv7(), orgId, profile: over.profile ?? 'trackyard', method: over.method ?? 'POST', route: over.route ?? '/search', entities: over.entities ?? [], occurredAt: at,
    });
    expect(r.granted).toBe(true);
    return r.reservationId;
  }

  /**
   * A trackyard org with a bit of everything strict and eventual metering write: its allowance, a top-up, a hold
   * settled at its price, one settled at another price (a 500: released), one the gateway gave back, one the
   * sweeper expired, calls without a hold, a plan change, and a poison message dead-lettered.
   */
  async function busyOrg(prefix = 'audit'): Promise<string> {
    const orgId = uid(prefix);
    const now = Date.now();
    await admin.createOrg({ id: orgId, name: orgId, plan: 'starter' });
    await admin.grantCredits(orgId, { amount: 10, reason: 'goodwill', idempotency_key: `g-${orgId}` });
    const reservations = new ReservationService(ds, catalog, () => now);
    const settled = await hold(reservations, orgId, now);
    const failed = await hold(reservations, orgId, now + 1);
    const givenBack = await hold(reservations, orgId, now + 2);
    const timedOut = await hold(reservations, orgId, now + 3);
    expect(await reservations.release(givenBack, orgId)).toBe(true);
    expect(await reservations.release(timedOut, orgId, 'expired')).toBe(true);
    await meter(
      [
        event(orgId, now, { reservation_id: settled }),
        event(orgId, now + 1, { reservation_id: failed, status_code: 500 }),
        event(orgId, now + 4),
        event(orgId, now + 5, { status_code: 404 }),
        Buffer.from(`{not json ${orgId}`),
      ],
      orgId,
    );
    await admin.changePlan(orgId, { plan: 'pro' });
    await meter([event(orgId, now + 6)], orgId);
    return orgId;
  }

  /** A trace org paying per company: a top-up too small for a page (debt), paid off by the next grant; a held page. */
  async function perEntityOrg(): Promise<string> {
    const orgId = uid('audit-trace');
    const now = Date.now();
    await admin.createOrg({ id: orgId, name: orgId, plan: 'standard', profile: 'trace' });
    await admin.grantCredits(orgId, { amount: 1, reason: 'first', idempotency_key: `a-${orgId}` });
    const page = { profile: 'trace', method: 'GET', route: '/companies', path: '/v1/companies' };
    await meter([event(orgId, now, { ...page, entities: ['c_1', 'c_2', 'c_3'] })], orgId);
    await admin.grantCredits(orgId, { amount: 10, reason: 'second', idempotency_key: `b-${orgId}` });
    const reservations = new ReservationService(ds, catalog, () => now + 10);
    const held = await hold(reservations, orgId, now + 10, { profile: 'trace', method: 'GET', route: '/companies', entities: ['c_3', 'c_4', 'c_5'] });
    await meter([event(orgId, now + 10, { ...page, entities: ['c_3', 'c_4', 'c_5'], reservation_id: held })], orgId);
    return orgId;
  }

  /** Where the progress lines go in these tests: nowhere. */
  const quiet = { isTTY: false, write: () => true } as unknown as NodeJS.WriteStream;

  /**
   * A starter org across a month boundary: a hold taken on October 31st whose event arrives after a November call
   * rolled the month (October's allowance expired with the credits still held, November's granted), so the
   * settlement releases into a closed bucket and charges the call from those credits.
   */
  async function monthsOrg(): Promise<string> {
    const orgId = uid('audit-months');
    const utc = (iso: string) => Date.parse(iso);
    await new AdminService(ds, catalog, () => utc('2026-10-20T10:00:00Z')).createOrg({ id: orgId, name: orgId, plan: 'starter' });
    const oct31 = utc('2026-10-31T23:59:30Z');
    const held = await hold(new ReservationService(ds, catalog, () => oct31), orgId, oct31);
    await meter([event(orgId, utc('2026-10-25T12:00:00Z')), event(orgId, utc('2026-11-01T00:00:10Z'))], orgId);
    await meter([event(orgId, oct31, { reservation_id: held })], orgId);
    const types: Array<{ type: string }> = await ds.query(`SELECT type FROM ledger_entries WHERE org_id = $1 ORDER BY seq`, [orgId]);
    expect(types.map((t) => t.type)).toEqual(['grant', 'reservation', 'charge', 'expiry', 'grant', 'charge', 'release', 'charge']);
    return orgId;
  }

  async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await audit(args, { env: process.env, out: (s) => (out += s), err: (s) => (err += s), progress: quiet });
    return { code, out, err };
  }

  /** The checks the report says were violated, and the orgs it names for them. */
  function violated(out: string): Map<CheckName, Set<string>> {
    const found = new Map<CheckName, Set<string>>();
    for (const l of out.split('\n')) {
      const [check, org] = l.split('\t');
      if (!check || check.startsWith('#') || check === 'check' || check.startsWith('audit:') || org === undefined) continue;
      found.set(check as CheckName, (found.get(check as CheckName) ?? new Set()).add(org));
    }
    return found;
  }

  function expectOnly(result: { code: number; out: string }, check: CheckName, org: string): void {
    expect(result.code).toBe(1);
    expect([...violated(result.out).keys()]).toEqual([check]);
    expect([...violated(result.out).get(check)!]).toEqual([org]);
    expect(result.out).toContain(`# ${check}: `);
  }

  /** Runs `work` with the ledger's append-only triggers disabled, in one transaction: only the forgery commits. */
  async function forge(work: (q: (sql: string, params?: unknown[]) => Promise<unknown>) => Promise<void>): Promise<void> {
    await ds.transaction(async (m) => {
      await m.query(`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_update_delete`);
      await work((sql, params) => m.query(sql, params));
      await m.query(`ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_update_delete`);
    });
  }

  let clean: string[] = [];

  it('passes a ledger written by the real code paths, with exit 0; auditing every org names none of them', async () => {
    clean = [await busyOrg(), await perEntityOrg(), await monthsOrg()];
    const some = await run('--org', clean[0]!, '--org', clean[1]!, '--org', clean[2]!, '--group', groupId, '--read-topic');
    expect(some.err).toBe('');
    expect(violated(some.out)).toEqual(new Map());
    expect(some.out).toContain('# orgs: ' + clean.join(', '));
    expect(some.out).toContain('audit: clean: 10 check(s), 3 org(s)');
    expect(some.out).toContain('# offsets: consumed partitions read back from Kafka');
    expect(some.code).toBe(0);
    // Every org: other suites sharing this database may have left broken orgs of their own, but not these.
    const all = await run('--group', groupId);
    expect(all.out).toMatch(/# orgs: all \(\d+\)/);
    for (const orgs of violated(all.out).values()) for (const org of clean) expect(orgs).not.toContain(org);
  });

  it('sequence: a gap forged by renumbering the last entry is reported for that org', async () => {
    const orgId = await busyOrg('audit-seq');
    await forge(async (q) => {
      await q(`UPDATE ledger_entries SET seq = seq + 1 WHERE org_id = $1 AND seq = (SELECT MAX(seq) FROM ledger_entries WHERE org_id = $1)`, [orgId]);
      await q(`UPDATE accounts SET next_seq = next_seq + 1 WHERE org_id = $1`, [orgId]);
    });
    const r = await run('--org', orgId, '--group', groupId);
    expectOnly(r, 'sequence', orgId);
    expect(r.out).toMatch(/gap of 1/);
  });

  it('balance: a forged balance_after on the last entry is reported for that org', async () => {
    const orgId = await busyOrg('audit-balance');
    await forge((q) => q(`UPDATE ledger_entries SET balance_after = balance_after + 7 WHERE org_id = $1 AND seq = (SELECT MAX(seq) FROM ledger_entries WHERE org_id = $1)`, [orgId]).then(() => undefined));
    const r = await run('--org', orgId, '--group', groupId);
    expectOnly(r, 'balance', orgId);
  });

  it('projection: credits moved between two buckets of the accounts row (balance unchanged) are reported', async () => {
    const orgId = await busyOrg('audit-projection');
    await ds.query(
      `UPDATE accounts SET buckets = (SELECT jsonb_agg(CASE WHEN b->>'kind' = 'allowance' THEN jsonb_set(b, '{remaining}', to_jsonb((b->>'remaining')::int - 5))
                                                       ELSE jsonb_set(b, '{remaining}', to_jsonb((b->>'remaining')::int + 5)) END) FROM jsonb_array_elements(buckets) b)
        WHERE org_id = $1`,
      [orgId],
    );
    expectOnly(await run('--org', orgId, '--group', groupId), 'projection', orgId);
  });

  it('stale-holds: a hold left held an hour past its expiry is reported; a grace longer than that accepts it', async () => {
    const orgId = uid('audit-stale');
    const anHourAgo = Date.now() - 3_600_000;
    await admin.createOrg({ id: orgId, name: orgId, plan: 'starter' });
    await hold(new ReservationService(ds, catalog, () => anHourAgo), orgId, anHourAgo);
    const r = await run('--org', orgId, '--group', groupId);
    expectOnly(r, 'stale-holds', orgId);
    expect(r.out).toMatch(/still held 3\d\d\ds after expires_at/);
    expect((await run('--org', orgId, '--hold-grace', '7200', '--group', groupId)).code).toBe(0);
  });

  it('hold-entries: a held reservation marked released without its release entry is reported', async () => {
    const orgId = uid('audit-holds');
    const now = Date.now();
    await admin.createOrg({ id: orgId, name: orgId, plan: 'starter' });
    const id = await hold(new ReservationService(ds, catalog, () => now), orgId, now);
    await ds.query(`UPDATE reservations SET status = 'released', closed_at = now(), closed_by = 'gateway' WHERE id = $1`, [id]);
    const r = await run('--org', orgId, '--group', groupId);
    expectOnly(r, 'hold-entries', orgId);
    expect(r.out).toContain(`reservation ${id}`);
  });

  it('charges: a usage row whose credits differ from its charge entries is reported', async () => {
    const orgId = await busyOrg('audit-charges');
    await ds.query(
      `UPDATE usage_records SET credits = credits + 1 WHERE id = (SELECT MAX(id) FROM usage_records WHERE org_id = $1 AND credits > 0)`,
      [orgId],
    );
    expectOnly(await run('--org', orgId, '--group', groupId), 'charges', orgId);
  });

  it('charges: a hold settled at its price names its event, and a call paid by it that costs something else is reported with both', async () => {
    const orgId = await busyOrg('audit-paired');
    const [paid] = (await ds.query(
      `SELECT r.id, substr(r.closed_by, 7) AS event_id FROM reservations r JOIN usage_records u ON u.org_id = r.org_id AND u.event_id = substr(r.closed_by, 7)
        WHERE r.org_id = $1 AND r.status = 'settled' AND u.credits = r.credits`,
      [orgId],
    )) as Array<{ id: string; event_id: string }>;
    expect(paid).toBeDefined();
    await ds.query(`UPDATE usage_records SET credits = credits + 1 WHERE org_id = $1 AND event_id = $2`, [orgId, paid!.event_id]);
    const r = await run('--org', orgId, '--group', groupId);
    expectOnly(r, 'charges', orgId);
    expect(r.out).toContain(`reservation ${paid!.id} (settled by event ${paid!.event_id})`);
    expect(r.out).toContain(`usage row ${paid!.event_id}`);
  });

  it('offsets: a stored next_offset beyond the partition\'s end offset is reported (database-wide, no org)', async () => {
    await busyOrg('audit-offsets');
    await ds.query(`UPDATE consumer_offsets SET next_offset = next_offset + 1000 WHERE group_id = $1 AND topic = $2`, [groupId, topic]);
    try {
      const r = await run('--org', clean[0]!, '--group', groupId);
      expectOnly(r, 'offsets', '-');
      expect(r.out).toContain(`${topic}[0] (group ${groupId})`);
    } finally {
      await ds.query(`UPDATE consumer_offsets SET next_offset = next_offset - 1000 WHERE group_id = $1 AND topic = $2`, [groupId, topic]);
    }
  });

  it('offsets (read back): a message below the stored offset that was neither metered nor dead-lettered is named by its offset', async () => {
    const orgId = await busyOrg('audit-read-back');
    const lost = event(orgId, Date.now());
    const offset = (await messaging.endOffsets(topic)).get(0) ?? 0n;
    await publisher.publish(topic, [{ key: orgId, value: JSON.stringify(lost) }]);
    // The stored offset moves past it as if it had been metered.
    await ds.query(`UPDATE consumer_offsets SET next_offset = $3 WHERE group_id = $1 AND topic = $2`, [groupId, topic, String(offset + 1n)]);
    try {
      const r = await run('--org', orgId, '--group', groupId, '--read-topic');
      expectOnly(r, 'offsets', '-');
      expect(r.out).toContain(`${topic}[0]@${offset}\texpected=a usage row for its event or a dead letter at this offset\tfound=event ${lost.event_id} of ${orgId}: neither`);
    } finally {
      // Metered after all, so later audits of this topic find it.
      await ds.query(`UPDATE consumer_offsets SET next_offset = $3 WHERE group_id = $1 AND topic = $2`, [groupId, topic, String(offset)]);
      await consumer.handle({ topic, partition: 0, nextOffset: String(offset + 1n), messages: [{ offset: String(offset), key: Buffer.from(orgId), value: Buffer.from(JSON.stringify(lost)), headers: {} }] });
    }
  });

  it('append-only: with the UPDATE/DELETE trigger disabled the probe succeeds and is reported, and nothing it did stays', async () => {
    const before = await ds.query(`SELECT COUNT(*) AS n, SUM(amount) AS s FROM ledger_entries`);
    await ds.query(`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_update_delete`);
    let r;
    try {
      r = await run('--org', clean[0]!, '--group', groupId);
    } finally {
      await ds.query(`ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_update_delete`);
    }
    expectOnly(r, 'append-only', '-');
    expect(r.out).toContain('UPDATE succeeded');
    expect(r.out).toContain('DELETE succeeded');
    expect(r.out).not.toContain('TRUNCATE succeeded');
    expect(await ds.query(`SELECT COUNT(*) AS n, SUM(amount) AS s FROM ledger_entries`)).toEqual(before);
  });

  it('usage: a usage_totals counter that drifted from the usage rows is reported', async () => {
    const orgId = await busyOrg('audit-usage');
    await ds.query(`UPDATE usage_totals SET total = total + 1 WHERE org_id = $1`, [orgId]);
    expectOnly(await run('--org', orgId, '--group', groupId), 'usage', orgId);
  });

  it('usage: a re-access window no call charged is reported, and so is one moved back before its latest charge', async () => {
    const orgId = await perEntityOrg();
    await ds.query(`INSERT INTO reaccess_windows (org_id, entity_id, last_charged_at) VALUES ($1, 'c_never_charged', now() - interval '1 day')`, [orgId]);
    await ds.query(`UPDATE reaccess_windows SET last_charged_at = last_charged_at - interval '1 day' WHERE org_id = $1 AND entity_id = 'c_4'`, [orgId]);
    const r = await run('--org', orgId, '--group', groupId);
    expectOnly(r, 'usage', orgId);
    expect(r.out).toContain('re-access window of entity c_never_charged\texpected=a usage row that charged the entity');
    expect(r.out).toMatch(/re-access window of entity c_4\texpected=last_charged_at \S+ \(its latest charge\)/);
  });

  it('the built command: exit 0 clean, 1 with the report on stdout, 2 on bad arguments or an unknown org', () => {
    const cli = (...args: string[]) => spawnSync(process.execPath, [join(repoRoot, 'bin/tollgate.js'), 'audit', ...args], { env: process.env, encoding: 'utf8' });
    const ok = cli('--org', clean[0]!, '--check', 'sequence', '--check', 'balance', '--group', groupId);
    expect(ok.stdout).toContain('audit: clean: 2 check(s), 1 org(s)');
    expect(ok.status).toBe(0);
    const broken = cli('--check', 'usage');
    expect(broken.stdout).toMatch(/^usage\t/m);
    expect(broken.status).toBe(1);
    for (const args of [['--check', 'nonsense'], ['--all']]) {
      const bad = cli(...args);
      expect(bad.stderr).toContain('usage: tollgate audit');
      expect(bad.status).toBe(2);
    }
    const unknown = cli('--org', uid('nobody'));
    expect(unknown.stderr).toContain('unknown org');
    expect(unknown.status).toBe(2);
  });
});
